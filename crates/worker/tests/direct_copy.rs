//! A COPY written straight into the upper directory (copy/direct.rs) must leave exactly the
//! upper directory that writing through the overlay leaves; where it cannot promise that,
//! `prepare` must decline. Real overlay mounts over a crafted lower layer.

use std::collections::BTreeMap;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use rbuild_snapshotter::snapshots::{SnapshotId, Snapshotter};
use rbuild_worker::copy::direct;
use rbuild_worker::copy::reuse::Reuse;
use rbuild_worker::copy::select::SourceRoot;
use rbuild_worker::copy::write::{write, WriteOptions};
use rbuild_worker::fsutil::open_root;

fn set_mtime(path: &Path, secs: i64) {
    let status = std::process::Command::new("touch")
        .args(["-h", "-d", &format!("@{secs}")])
        .arg(path)
        .status()
        .expect("touch");
    assert!(status.success());
}

/// The lower layer: dirs with odd owners, modes, an xattr and old times; a symlink; a file.
fn base(snapshots: &Snapshotter) -> SnapshotId {
    let view = snapshots.prepare(None).expect("view");
    let root = view.root().to_path_buf();
    std::fs::create_dir_all(root.join("opt/odd/deeper")).expect("test filesystem operation");
    std::fs::create_dir_all(root.join("app")).expect("test filesystem operation");
    std::fs::create_dir_all(root.join("shared")).expect("test filesystem operation");
    std::fs::write(root.join("app/existing.txt"), "old").expect("test filesystem operation");
    std::os::unix::fs::symlink("/opt", root.join("link")).expect("test filesystem operation");
    std::os::unix::fs::chown(root.join("opt/odd"), Some(5), Some(6))
        .expect("test filesystem operation");
    std::fs::set_permissions(root.join("opt/odd"), PermissionsExt::from_mode(0o750))
        .expect("test filesystem operation");
    std::fs::set_permissions(root.join("shared"), PermissionsExt::from_mode(0o1777))
        .expect("test filesystem operation");
    std::os::unix::fs::chown(root.join("shared"), Some(0), Some(7))
        .expect("test filesystem operation");
    std::fs::set_permissions(root.join("shared"), PermissionsExt::from_mode(0o3777))
        .expect("test filesystem operation");
    let status = std::process::Command::new("python3")
        .args([
            "-c",
            "import os,sys; os.setxattr(sys.argv[1], 'user.origin', b'lower')",
        ])
        .arg(root.join("opt/odd"))
        .status()
        .expect("python3 (package python3)");
    assert!(status.success());
    for p in ["opt/odd/deeper", "opt/odd", "opt", "app", "shared"] {
        set_mtime(&root.join(p), 1_000_000_000);
    }
    let id = SnapshotId::new("base").expect("test filesystem operation");
    snapshots.commit(view, &id, None).expect("commit");
    id
}

/// Everything about each entry of a tree that a layer records; times newer than `recent` are
/// only recorded as "recent" (the two ways run at different instants).
fn describe(root: &Path, recent: i64) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        let path = root.join(&rel);
        for entry in std::fs::read_dir(&path).expect("test filesystem operation") {
            let entry = entry.expect("test filesystem operation");
            let rel = rel.join(entry.file_name());
            let meta = std::fs::symlink_metadata(entry.path()).expect("test filesystem operation");
            let mtime = if meta.mtime() >= recent {
                "recent".to_string()
            } else {
                format!("{}.{}", meta.mtime(), meta.mtime_nsec())
            };
            let mut xattrs: Vec<String> = Vec::new();
            if !meta.file_type().is_symlink() {
                let out = std::process::Command::new("python3")
                    .args(["-c", "import os,sys; print(sorted(n for n in os.listxattr(sys.argv[1]) if not n.startswith('trusted.overlay.')))"])
                    .arg(entry.path())
                    .output()
                    .expect("test filesystem operation");
                xattrs.push(String::from_utf8_lossy(&out.stdout).trim().to_string());
            }
            let content = if meta.is_file() {
                std::fs::read_to_string(entry.path()).unwrap_or_default()
            } else if meta.file_type().is_symlink() {
                std::fs::read_link(entry.path())
                    .expect("test filesystem operation")
                    .display()
                    .to_string()
            } else {
                String::new()
            };
            out.insert(
                rel.display().to_string(),
                format!(
                    "{:o} {}:{} {mtime} {xattrs:?} {content:?}",
                    meta.mode(),
                    meta.uid(),
                    meta.gid()
                ),
            );
            if meta.is_dir() {
                stack.push(rel);
            }
        }
    }
    out
}

struct Case {
    sources: &'static [&'static str],
    dest: &'static str,
    /// Whether the direct way may be taken.
    direct: bool,
}

fn run_case(
    snapshots: &Snapshotter,
    base: &SnapshotId,
    context: &Path,
    cache_root: &Path,
    case: &Case,
) {
    let recent = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("test filesystem operation")
        .as_secs() as i64
        - 5;
    let source = SourceRoot {
        root: context,
        ignore: None,
        excludes: None,
        is_context: true,
    };
    let sources: Vec<String> = case.sources.iter().map(|s| s.to_string()).collect();
    let selected = source.select(&sources).expect("select");
    let options = WriteOptions {
        dest: case.dest.to_string(),
        chown: None,
        chmod: None,
        is_context: true,
        dest_is_dir: case.dest.ends_with('/') || sources.len() > 1,
        digests: None,
    };
    // Through the overlay.
    let through = snapshots.prepare(Some(base)).expect("view");
    let merged = open_root(through.root()).expect("test filesystem operation");
    write(&merged, &selected, &options, None, None).expect("write through the overlay");
    drop(merged);
    // Straight into the upper directory.
    let straight = snapshots.prepare(Some(base)).expect("view");
    let upper =
        direct::prepare(straight.root(), straight.upper(), case.dest, &selected).expect("prepare");
    assert_eq!(
        upper.is_some(),
        case.direct,
        "{}: direct way taken or not",
        case.dest
    );
    let Some(upper) = upper else { return };
    let cache = rbuild_worker::statcache::StatCache::open(cache_root);
    let reuse = Reuse::from_context(&cache, None);
    write(&upper, &selected, &options, None, Some(&reuse)).expect("write straight");
    drop(upper);
    // Committing unmounts the overlays.
    let a_id = SnapshotId::new(format!("a{}", case.dest.replace('/', "_")))
        .expect("test filesystem operation");
    let b_id = SnapshotId::new(format!("b{}", case.dest.replace('/', "_")))
        .expect("test filesystem operation");
    snapshots
        .commit(through, &a_id, Some(base))
        .expect("test filesystem operation");
    snapshots
        .commit(straight, &b_id, Some(base))
        .expect("test filesystem operation");
    let through = describe(&snapshots.layer_dir(&a_id), recent);
    let straight = describe(&snapshots.layer_dir(&b_id), recent);
    assert!(!through.is_empty());
    assert_eq!(through, straight, "COPY {:?} {}", case.sources, case.dest);
}

#[test]
fn writing_straight_into_the_upper_dir_equals_writing_through_the_overlay() {
    rbuild_test::require_root();
    let state = tempfile::tempdir_in("/var/tmp").expect("tempdir");
    let snapshots = Snapshotter::open(state.path()).expect("snapshotter");
    let base = base(&snapshots);
    let context = state.path().join("context");
    std::fs::create_dir_all(context.join("dir/sub")).expect("test filesystem operation");
    std::fs::write(context.join("file.txt"), "file").expect("test filesystem operation");
    std::fs::write(context.join("dir/a"), "a").expect("test filesystem operation");
    std::fs::write(context.join("dir/sub/b"), "b").expect("test filesystem operation");
    std::fs::create_dir_all(context.join("empty")).expect("test filesystem operation");
    set_mtime(&context.join("file.txt"), 1_200_000_000);
    let cases = [
        // New below an existing dir with odd metadata (copied up by hand).
        Case {
            sources: &["dir"],
            dest: "/opt/odd/deeper/new/",
            direct: true,
        },
        Case {
            sources: &["file.txt"],
            dest: "/opt/odd/renamed.txt",
            direct: true,
        },
        // Into an existing directory, new names only (WORKDIR /app; COPY . .).
        Case {
            sources: &["dir"],
            dest: "/app",
            direct: true,
        },
        // Into a setgid, sticky directory.
        Case {
            sources: &["file.txt", "dir"],
            dest: "/shared/",
            direct: true,
        },
        Case {
            sources: &["dir"],
            dest: "/",
            direct: true,
        },
        // Declined: a copy that makes nothing in an existing directory (the overlay would
        // not copy it up), through a symlink, and over an existing name.
        Case {
            sources: &["empty"],
            dest: "/opt/odd",
            direct: false,
        },
        Case {
            sources: &["file.txt"],
            dest: "/link/x.txt",
            direct: false,
        },
        Case {
            sources: &["file.txt"],
            dest: "/app/existing.txt",
            direct: false,
        },
        Case {
            sources: &["file.txt"],
            dest: "/opt/../app/y.txt",
            direct: false,
        },
    ];
    for case in &cases {
        run_case(&snapshots, &base, &context, state.path(), case);
    }
}
