#![allow(clippy::unwrap_used)]

use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

use super::*;

use rbuild_test::require_root;

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

/// A 150-layer chain (beyond one page of mount options) with a whiteout and an opaque
/// directory deep inside: deletions must stay deleted through the whole stack.
#[test]
fn long_chains_keep_whiteouts_and_opaque_dirs() {
    require_root();
    let state = tempfile::tempdir().unwrap();
    let snaps = Snapshotter::open(state.path()).unwrap();
    let mut parent: Option<SnapshotId> = None;
    let layers = 150;
    for i in 0..layers {
        let view = snaps.prepare(None).unwrap();
        let root = view.root().to_path_buf();
        fs::write(root.join(format!("f{i}")), i.to_string()).unwrap();
        match i {
            0 => {
                fs::create_dir(root.join("d")).unwrap();
                fs::write(root.join("d/old"), "old").unwrap();
            }
            100 => {
                // A whiteout for f0 and an opaque d/ with new content, as an overlay upper has them.
                rustix::fs::mknodat(
                    rustix::fs::CWD,
                    root.join("f0"),
                    rustix::fs::FileType::CharacterDevice,
                    rustix::fs::Mode::empty(),
                    0,
                )
                .unwrap();
                fs::create_dir(root.join("d")).unwrap();
                rustix::fs::setxattr(
                    root.join("d"),
                    "trusted.overlay.opaque",
                    b"y",
                    rustix::fs::XattrFlags::empty(),
                )
                .unwrap();
                fs::write(root.join("d/new"), "new").unwrap();
            }
            _ => {}
        }
        let this = id(&format!("{i:064}"));
        snaps.commit(view, &this, parent.as_ref()).unwrap();
        parent = Some(this);
    }
    let top = parent.unwrap();
    let chain = snaps.chain(&top).unwrap();
    let options = mounts::OverlayOptions {
        lowers: &chain,
        upper: Path::new("/u"),
        work: Path::new("/w"),
        volatile: false,
    };
    assert!(
        mounts::option_string(&options).unwrap().len() > 4096,
        "the chain must need the new mount API"
    );
    let view = snaps.prepare(Some(&top)).unwrap();
    assert!(
        !view.root().join("f0").exists(),
        "a whiteout deep in the chain must hide f0"
    );
    assert!(
        !view.root().join("d/old").exists(),
        "an opaque dir deep in the chain must hide d/old"
    );
    assert_eq!(
        fs::read_to_string(view.root().join("d/new")).unwrap(),
        "new"
    );
    for i in 1..layers {
        assert_eq!(
            fs::read_to_string(view.root().join(format!("f{i}"))).unwrap(),
            i.to_string()
        );
    }
    assert_eq!(mounts_under(state.path()), 1);
    drop(view);
    assert_eq!(mounts_under(state.path()), 0);
}

#[test]
fn commit_refuses_a_view_still_in_use() {
    require_root();
    let state = tempfile::tempdir().unwrap();
    let snaps = Snapshotter::open(state.path()).unwrap();
    let base = snaps.prepare(None).unwrap();
    fs::write(base.root().join("f"), "f").unwrap();
    snaps.commit(base, &id("base"), None).unwrap();
    let view = snaps.prepare(Some(&id("base"))).unwrap();
    let busy = fs::File::open(view.root().join("f")).unwrap();
    let err = snaps
        .commit(view, &id("top"), Some(&id("base")))
        .unwrap_err();
    assert!(
        matches!(
            err,
            SnapshotError::Io {
                action: "unmount",
                ..
            }
        ),
        "{err}"
    );
    assert!(!snaps.exists(&id("top")));
    drop(busy);
    assert_eq!(
        mounts_under(state.path()),
        0,
        "the failed commit's view is detached when dropped"
    );
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

#[test]
fn views_are_volatile_overlays() {
    require_root();
    let state = tempfile::tempdir().unwrap();
    let snaps = Snapshotter::open(state.path()).unwrap();
    // A view without a parent is a plain directory; one on a parent is an overlay.
    let base = snaps.prepare(None).unwrap();
    fs::write(base.root().join("f"), "f").unwrap();
    let parent = id(&format!("{:064}", 1));
    snaps.commit(base, &parent, None).unwrap();
    let view = snaps.prepare(Some(&parent)).unwrap();
    let root = view.root().to_string_lossy().into_owned();
    let info = fs::read_to_string("/proc/self/mountinfo").unwrap();
    let line = info
        .lines()
        .find(|l| l.split(' ').nth(4) == Some(root.as_str()))
        .unwrap_or_else(|| panic!("no mount at {root}"));
    // Kernels before 5.10 have no `volatile`; this one (and CI's) does.
    assert!(line.contains("volatile"), "{line}");
}
