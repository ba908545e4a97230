#![allow(clippy::unwrap_used)]

use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

use super::*;

fn require_root() {
    assert!(
        rustix::process::geteuid().is_root(),
        "snapshot tests mount overlayfs and must run as root (CI runs as root)"
    );
}

fn mounts_under(dir: &Path) -> usize {
    let info = fs::read_to_string("/proc/self/mountinfo").unwrap();
    let needle = dir.to_str().unwrap();
    info.lines().filter(|l| l.contains(needle)).count()
}

fn id(s: &str) -> SnapshotId {
    SnapshotId::new(s).unwrap()
}

#[test]
fn ids_are_safe_names() {
    for bad in ["", ".", "..", "a/b", "a b", &"x".repeat(129)] {
        assert!(SnapshotId::new(bad).is_err(), "{bad:?}");
    }
    assert!(SnapshotId::new("sha256-abc_1.2").is_ok());
}

#[test]
fn layers_stack_and_deletions_become_whiteouts() {
    require_root();
    let state = tempfile::tempdir().unwrap();
    let snaps = Snapshotter::open(state.path()).unwrap();

    let base = snaps.prepare(None).unwrap();
    assert_eq!(base.root(), base.upper());
    fs::write(base.root().join("keep"), "k").unwrap();
    fs::write(base.root().join("gone"), "g").unwrap();
    fs::create_dir(base.root().join("dir")).unwrap();
    fs::write(base.root().join("dir/old"), "o").unwrap();
    snaps.commit(base, &id("a"), None).unwrap();

    let view = snaps.prepare(Some(&id("a"))).unwrap();
    assert_eq!(fs::read_to_string(view.root().join("keep")).unwrap(), "k");
    fs::remove_file(view.root().join("gone")).unwrap();
    fs::write(view.root().join("new"), "n").unwrap();
    let whiteout = fs::symlink_metadata(view.upper().join("gone")).unwrap();
    assert!(whiteout.file_type().is_char_device() && whiteout.rdev() == 0);
    assert!(
        !view.upper().join("keep").exists(),
        "the upperdir holds only the diff"
    );
    assert_eq!(mounts_under(state.path()), 1);
    snaps.commit(view, &id("b"), Some(&id("a"))).unwrap();
    assert_eq!(mounts_under(state.path()), 0);

    assert_eq!(snaps.parent(&id("b")).unwrap(), Some(id("a")));
    assert_eq!(snaps.chain(&id("b")).unwrap().len(), 2);
    let view = snaps.prepare(Some(&id("b"))).unwrap();
    assert!(!view.root().join("gone").exists());
    assert_eq!(fs::read_to_string(view.root().join("new")).unwrap(), "n");
    assert_eq!(
        fs::read_to_string(view.root().join("dir/old")).unwrap(),
        "o"
    );
    drop(view);
    assert_eq!(mounts_under(state.path()), 0);
    assert_eq!(
        fs::read_dir(state.path().join("snapshots-v1/active"))
            .unwrap()
            .count(),
        0
    );
}

#[test]
fn commit_is_idempotent_and_remove_works() {
    require_root();
    let state = tempfile::tempdir().unwrap();
    let snaps = Snapshotter::open(state.path()).unwrap();
    let first = snaps.prepare(None).unwrap();
    fs::write(first.root().join("f"), "first").unwrap();
    snaps.commit(first, &id("same"), None).unwrap();
    let second = snaps.prepare(None).unwrap();
    fs::write(second.root().join("f"), "second").unwrap();
    snaps.commit(second, &id("same"), None).unwrap();
    assert_eq!(
        fs::read_to_string(snaps.layer_dir(&id("same")).join("f")).unwrap(),
        "first"
    );
    assert!(snaps.remove(&id("same")).unwrap());
    assert!(!snaps.exists(&id("same")));
    assert!(!snaps.remove(&id("same")).unwrap());
    assert!(matches!(
        snaps.parent(&id("same")),
        Err(SnapshotError::NotFound(_))
    ));
}

#[test]
fn chains_longer_than_one_mount_page_are_grouped() {
    require_root();
    let state = tempfile::tempdir().unwrap();
    let snaps = Snapshotter::open(state.path()).unwrap();
    let mut parent: Option<SnapshotId> = None;
    let layers = 150;
    for i in 0..layers {
        let view = snaps.prepare(None).unwrap();
        fs::write(view.root().join(format!("f{i}")), i.to_string()).unwrap();
        // 64-character ids, like cache-key digests.
        let this = id(&format!("{i:064}"));
        snaps.commit(view, &this, parent.as_ref()).unwrap();
        parent = Some(this);
    }
    let top = parent.unwrap();
    assert!(option_len(&snaps.chain(&top).unwrap()) > MOUNT_DATA_LIMIT);
    let view = snaps.prepare(Some(&top)).unwrap();
    for i in 0..layers {
        assert_eq!(
            fs::read_to_string(view.root().join(format!("f{i}"))).unwrap(),
            i.to_string()
        );
    }
    fs::write(view.root().join("top"), "t").unwrap();
    assert!(view.upper().join("top").exists());
    assert!(mounts_under(state.path()) > 1, "expected group mounts");
    drop(view);
    assert_eq!(mounts_under(state.path()), 0);
}

#[test]
fn commit_dir_moves_a_populated_directory() {
    require_root();
    let state = tempfile::tempdir().unwrap();
    let snaps = Snapshotter::open(state.path()).unwrap();
    let staging = state.path().join("staging");
    fs::create_dir(&staging).unwrap();
    fs::write(staging.join("x"), "x").unwrap();
    snaps.commit_dir(&staging, &id("applied"), None).unwrap();
    assert!(!staging.exists());
    assert_eq!(
        fs::read_to_string(snaps.layer_dir(&id("applied")).join("x")).unwrap(),
        "x"
    );
}
