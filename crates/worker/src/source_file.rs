//! Reading a file a COPY or ADD selected: the very inode the selection saw, in the state the
//! selection saw it.
//!
//! A context is read in place, while the user may still be editing it. A step's key holds the
//! digests of its sources as they were when the key was computed; if a file changed between
//! that and the copy, the step would store under its key bytes the key does not describe, and
//! every later build with the old content would be served the new one. So each read opens
//! without following a symlink in the last component, checks that the descriptor is the file
//! the selection stat'ed (device, inode, size, mtime and ctime to the nanosecond), and checks
//! the same again once everything was read. A mismatch fails the read with
//! [`ChangedDuringBuild`] in the error: the step fails, and nothing is stored under its key.
//!
//! The inode check also makes the read safe against a component swapped for a symlink: the
//! file read is the one that was selected inside the context, wherever the path now leads.

use std::fs::{File, Metadata};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::Path;

/// The error (inside an `io::Error`) of a source that changed during the build.
#[derive(Debug)]
pub struct ChangedDuringBuild;

impl std::fmt::Display for ChangedDuringBuild {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(
            "it changed while the build was reading it (written, replaced or removed since the \
             build started); build again, and exclude files that change during builds in \
             .dockerignore",
        )
    }
}

impl std::error::Error for ChangedDuringBuild {}

fn changed() -> std::io::Error {
    std::io::Error::other(ChangedDuringBuild)
}

/// Where a source file lives: what may change about it while its bytes stay the same.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// A directory the user may edit during the build (the context, a named context): size,
    /// mtime and ctime must all hold (the ctime catches a write that put the mtime back).
    Context,
    /// A committed snapshot: its bytes never change, but rbuild hard-links its files into
    /// later snapshots, which moves their ctime; size and mtime must hold.
    Snapshot,
}

impl Origin {
    pub fn of(is_context: bool) -> Origin {
        if is_context {
            Origin::Context
        } else {
            Origin::Snapshot
        }
    }
}

/// Whether `now` is the file `then` described, unchanged as far as its `origin` tells.
pub fn unchanged(now: &Metadata, then: &Metadata, origin: Origin) -> bool {
    (now.dev(), now.ino(), now.size()) == (then.dev(), then.ino(), then.size())
        && (now.mtime(), now.mtime_nsec()) == (then.mtime(), then.mtime_nsec())
        && (origin == Origin::Snapshot
            || (now.ctime(), now.ctime_nsec()) == (then.ctime(), then.ctime_nsec()))
}

/// Opens the file at `path` for reading if it is still the file `expected` describes.
pub fn open(path: &Path, expected: &Metadata, origin: Origin) -> std::io::Result<File> {
    let file = std::fs::OpenOptions::new()
        .read(true)
        // O_NONBLOCK: a FIFO swapped in would block the open before the inode check refuses
        // it (on a regular file the flag changes nothing).
        .custom_flags(open_flags())
        .open(path)
        .map_err(|e| {
            // Gone, or a symlink now (ELOOP under O_NOFOLLOW), or a directory on the way
            // replaced by a file.
            let errno = rustix::io::Errno::from_io_error(&e);
            let gone = [
                rustix::io::Errno::NOENT,
                rustix::io::Errno::LOOP,
                rustix::io::Errno::NOTDIR,
            ];
            if errno.is_some_and(|errno| gone.contains(&errno)) {
                changed()
            } else {
                e
            }
        })?;
    check(&file, expected, origin)?;
    Ok(file)
}

/// After reading `file` (from [`open`]): it is still as `expected` described, so what was
/// read is what the selection hashed.
pub fn check(file: &File, expected: &Metadata, origin: Origin) -> std::io::Result<()> {
    if unchanged(&file.metadata()?, expected, origin) {
        Ok(())
    } else {
        Err(changed())
    }
}

/// `O_NOFOLLOW | O_NONBLOCK`, as the `i32` `custom_flags` takes.
fn open_flags() -> i32 {
    // Small positive constants (0o400000 | 0o4000 on x86_64): they fit.
    i32::try_from((rustix::fs::OFlags::NOFOLLOW | rustix::fs::OFlags::NONBLOCK).bits()).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_written_or_swapped_after_it_was_stat_ed_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("f");
        std::fs::write(&path, "one").expect("write");
        let seen = std::fs::symlink_metadata(&path).expect("stat");
        let file = open(&path, &seen, Origin::Context).expect("unchanged");
        check(&file, &seen, Origin::Context).expect("still unchanged");

        // Rewritten in place (same inode; ctime moves even if mtime is put back).
        std::fs::write(&path, "two").expect("write");
        std::fs::File::options()
            .write(true)
            .open(&path)
            .and_then(|f| f.set_modified(seen.modified().expect("mtime")))
            .expect("restore mtime");
        let err = check(&file, &seen, Origin::Context).expect_err("written");
        assert!(err.to_string().contains("changed while the build"), "{err}");
        assert!(open(&path, &seen, Origin::Context).is_err());

        // Replaced by a symlink to a file outside.
        let outside = dir.path().join("outside");
        std::fs::write(&outside, "secret").expect("write");
        let path2 = dir.path().join("g");
        std::fs::write(&path2, "mine").expect("write");
        let seen2 = std::fs::symlink_metadata(&path2).expect("stat");
        std::fs::remove_file(&path2).expect("rm");
        std::os::unix::fs::symlink(&outside, &path2).expect("symlink");
        let err = open(&path2, &seen2, Origin::Snapshot).expect_err("symlink");
        assert!(err.to_string().contains("changed while the build"), "{err}");
        // Removed.
        std::fs::remove_file(&path2).expect("rm");
        assert!(open(&path2, &seen2, Origin::Context)
            .expect_err("gone")
            .to_string()
            .contains("changed while the build"));
    }

    #[test]
    fn a_snapshot_file_may_gain_links_but_not_change() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("f");
        std::fs::write(&path, "bytes").expect("write");
        let seen = std::fs::symlink_metadata(&path).expect("stat");
        std::fs::hard_link(&path, dir.path().join("link")).expect("link");
        let file = open(&path, &seen, Origin::Snapshot).expect("a new link changes no byte");
        assert!(check(&file, &seen, Origin::Context).is_err(), "ctime moved");
        std::fs::write(&path, "BYTES").expect("write");
        assert!(
            check(&file, &seen, Origin::Snapshot).is_err(),
            "mtime moved"
        );
    }
}
