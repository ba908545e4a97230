//! Recursive removal below a directory descriptor, never following a symlink.
//!
//! The walk holds one directory descriptor at a time: it descends with
//! `openat(O_NOFOLLOW | O_DIRECTORY)` and climbs back with `openat("..")`, which names the real
//! parent of a directory we are inside (it cannot be a symlink). Depth is therefore bounded by
//! memory for names, not by the stack or the descriptor limit.

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use rustix::fs::{self as rfs, AtFlags, Dir, Mode, OFlags};
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
    let mut current = open_child_dir(parent, name)?;
    let mut path: Vec<Vec<u8>> = Vec::new();
    let mut rescans = 0;
    loop {
        if let Some(child) = empty_files(&current)? {
            current = open_child_dir(current.as_fd(), &child)?;
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
