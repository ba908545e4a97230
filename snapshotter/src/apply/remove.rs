//! Recursive removal below a directory descriptor, never following a symlink.
//!
//! The walk holds one directory descriptor at a time: it descends with
//! `openat(O_NOFOLLOW | O_DIRECTORY)` and climbs back with `openat("..")`, which names the real
//! parent of a directory we are inside (it cannot be a symlink). Depth is therefore bounded by
//! memory for names, not by the stack or the descriptor limit.

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use std::path::Path;

use rustix::fs::{self as rfs, AtFlags, Dir, Mode, OFlags, StatxFlags};
use rustix::io::Errno;

/// How many times a directory is rescanned when `rmdir` still finds it non-empty.
const RESCANS: usize = 8;

/// Removes `name` in `parent` and, when it is a directory, everything below it. A missing name
/// is not an error.
pub(crate) fn remove_all(parent: BorrowedFd<'_>, name: &[u8]) -> io::Result<()> {
    match rfs::unlinkat(parent, name, AtFlags::empty()) {
        Ok(()) | Err(Errno::NOENT) => return Ok(()),
        Err(Errno::ISDIR) | Err(Errno::PERM) => {}
        Err(errno) => return Err(errno.into()),
    }
    let mount = mount_id(parent)?;
    let mut current = open_child_dir(parent, name)?;
    same_mount(current.as_fd(), mount)?;
    let mut path: Vec<Vec<u8>> = Vec::new();
    let mut rescans = 0;
    loop {
        if let Some(child) = empty_files(&current)? {
            current = open_child_dir(current.as_fd(), &child)?;
            same_mount(current.as_fd(), mount)?;
            path.push(child);
            continue;
        }
        let removed = match path.last() {
            Some(child) => {
                let up = rfs::openat(&current, "..", dir_flags(), Mode::empty())?;
                let result = rfs::unlinkat(&up, child.as_slice(), AtFlags::REMOVEDIR);
                if result.is_ok() {
                    current = up;
                }
                result
            }
            None => rfs::unlinkat(parent, name, AtFlags::REMOVEDIR),
        };
        match removed {
            Ok(()) | Err(Errno::NOENT) => {
                rescans = 0;
                if path.pop().is_none() {
                    return Ok(());
                }
            }
            Err(Errno::NOTEMPTY) if rescans < RESCANS => rescans += 1,
            Err(errno) => return Err(errno.into()),
        }
    }
}

/// Removes the directory tree at `path` (see [`remove_all`]): never through a symlink, never
/// across a mount point. A missing path is not an error.
pub fn remove_tree(path: &Path) -> io::Result<()> {
    let name = path.file_name().ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            "cannot remove a path without a final name",
        )
    })?;
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let parent = rfs::open(parent, dir_flags(), Mode::empty())?;
    remove_all(parent.as_fd(), std::os::unix::ffi::OsStrExt::as_bytes(name))
}

fn mount_id(dir: BorrowedFd<'_>) -> io::Result<u64> {
    Ok(rfs::statx(dir, "", AtFlags::EMPTY_PATH, StatxFlags::MNT_ID)?.stx_mnt_id)
}

fn same_mount(dir: BorrowedFd<'_>, mount: u64) -> io::Result<()> {
    if mount_id(dir)? == mount {
        Ok(())
    } else {
        Err(io::Error::other("refusing to remove across a mount point"))
    }
}

fn dir_flags() -> OFlags {
    OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC
}

fn open_child_dir(parent: BorrowedFd<'_>, name: &[u8]) -> io::Result<OwnedFd> {
    Ok(rfs::openat(parent, name, dir_flags(), Mode::empty())?)
}

/// Unlinks every non-directory in `dir`; returns the first subdirectory met (the caller descends
/// into it and comes back to rescan), or `None` when only directories already handled remain.
fn empty_files(dir: &OwnedFd) -> io::Result<Option<Vec<u8>>> {
    let mut entries = Dir::read_from(dir)?;
    while let Some(entry) = entries.read() {
        let entry = entry?;
        let child = entry.file_name().to_bytes();
        if child == b"." || child == b".." {
            continue;
        }
        match rfs::unlinkat(dir, child, AtFlags::empty()) {
            Ok(()) | Err(Errno::NOENT) => {}
            Err(Errno::ISDIR) | Err(Errno::PERM) => return Ok(Some(child.to_vec())),
            Err(errno) => return Err(errno.into()),
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    /// A bind mount inside the tree (same filesystem, so st_dev alone would not notice) stops
    /// the removal; the mounted directory's content is untouched.
    #[test]
    fn never_removes_across_a_mount_point() {
        rbuild_test::require_root();
        let dir = tempfile::tempdir().unwrap();
        let host = dir.path().join("host-data");
        std::fs::create_dir(&host).unwrap();
        std::fs::write(host.join("precious"), "keep").unwrap();
        let tree = dir.path().join("tree");
        std::fs::create_dir_all(tree.join("a/mnt")).unwrap();
        std::fs::write(tree.join("a/file"), "x").unwrap();
        rustix::mount::mount_bind(&host, tree.join("a/mnt")).unwrap();
        let result = remove_tree(&tree);
        rustix::mount::unmount(tree.join("a/mnt"), rustix::mount::UnmountFlags::DETACH).unwrap();
        let err = result.unwrap_err();
        assert!(err.to_string().contains("across a mount point"), "{err}");
        assert_eq!(
            std::fs::read_to_string(host.join("precious")).unwrap(),
            "keep"
        );
        remove_tree(&tree).unwrap();
        assert!(!tree.exists());
        remove_tree(&tree).unwrap();
    }

    #[test]
    fn removes_deep_trees_without_following_symlinks() {
        let dir = tempfile::tempdir().unwrap();
        let outside = dir.path().join("outside");
        std::fs::create_dir(&outside).unwrap();
        std::fs::write(outside.join("keep"), "keep").unwrap();
        let top = rfs::open(dir.path(), dir_flags(), Mode::empty()).unwrap();
        rfs::mkdirat(&top, "tree", Mode::from_raw_mode(0o755)).unwrap();
        let mut current = open_child_dir(top.as_fd(), b"tree").unwrap();
        for _ in 0..3000 {
            rfs::symlinkat(outside.as_path(), &current, "link").unwrap();
            let flags = OFlags::WRONLY | OFlags::CREATE | OFlags::CLOEXEC;
            rfs::openat(&current, "f", flags, Mode::from_raw_mode(0o644)).unwrap();
            rfs::mkdirat(&current, "d", Mode::from_raw_mode(0o755)).unwrap();
            current = open_child_dir(current.as_fd(), b"d").unwrap();
        }
        drop(current);
        remove_all(top.as_fd(), b"tree").unwrap();
        remove_all(top.as_fd(), b"missing").unwrap();
        assert!(!dir.path().join("tree").exists());
        assert_eq!(
            std::fs::read_to_string(outside.join("keep")).unwrap(),
            "keep"
        );
    }
}
