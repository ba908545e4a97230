//! Reading a file a COPY or ADD selected: the very inode the selection saw, in the state the
//! selection saw it.
//!
//! A context is read in place, while the user may still be editing it. A step's key holds the
//! digests of its sources as they were when the key was computed; if a file changed between
//! that and the copy, the step would store under its key bytes the key does not describe, and
//! every later build with the old content would be served the new one. So each read opens
//! without following a symlink in the last component, checks that the descriptor is the file
//! the selection stat'ed (device, inode, size and mtime to the nanosecond), and checks the same
//! again once everything was read. A mismatch fails the read with [`ChangedDuringBuild`] in the
//! error: the step fails, and nothing is stored under its key. A context file whose ctime alone
//! moved (a chmod, a new hard link, or a write that put the mtime back) is
//! [`Verdict::BytesUncertain`]: the caller compares the bytes it got with the digest the key
//! used ([`digest_of`], `StatCache::known_digest`) before it trusts them.
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
    /// A directory the user may edit during the build (the context, a named context): size
    /// and mtime must hold, and a moved ctime makes the bytes uncertain.
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

/// What a second look at a source file tells, when it is still the same inode with the same
/// size and mtime.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Nothing its origin keeps moved.
    Same,
    /// A context file whose ctime moved: only its bytes can tell whether it changed.
    BytesUncertain,
}

/// `None` when `now` is another file than `then`, or its size or mtime moved.
pub fn compare(now: &Metadata, then: &Metadata, origin: Origin) -> Option<Verdict> {
    let same_file = (now.dev(), now.ino(), now.size()) == (then.dev(), then.ino(), then.size())
        && (now.mtime(), now.mtime_nsec()) == (then.mtime(), then.mtime_nsec());
    let same_ctime = (now.ctime(), now.ctime_nsec()) == (then.ctime(), then.ctime_nsec());
    match (same_file, origin == Origin::Snapshot || same_ctime) {
        (false, _) => None,
        (true, true) => Some(Verdict::Same),
        (true, false) => Some(Verdict::BytesUncertain),
    }
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

/// After reading `file` (from [`open`]): it is still the file `expected` described; with
/// [`Verdict::BytesUncertain`], what was read must still be compared with the key's digest.
pub fn check(file: &File, expected: &Metadata, origin: Origin) -> std::io::Result<Verdict> {
    compare(&file.metadata()?, expected, origin).ok_or_else(changed)
}

/// The name of [`digest_of`]'s scheme, as a step's key parts record it beside the digests
/// (`rbuild_solver::DIGEST_SCHEME`).
pub const DIGEST_SCHEME_NAME: &str = "blake3";

/// The content digest of the bytes of `file` from its start (read with `pread`: the offset
/// stays). BLAKE3: what a step's key holds of a file is rbuild's own, never an OCI digest, and
/// BLAKE3 hashes at 2-3x sha256's speed with SIMD. Read, never mapped: a file truncated while it
/// is hashed must be an error, not a SIGBUS.
pub fn digest_of(file: &File) -> std::io::Result<[u8; 32]> {
    let mut hasher = blake3::Hasher::new();
    let mut buffer = vec![0u8; 256 << 10];
    let mut offset = 0u64;
    loop {
        let n = rustix::io::pread(file, &mut buffer, offset)?;
        if n == 0 {
            break;
        }
        hasher.update(&buffer[..n]);
        offset += n as u64;
    }
    Ok(*hasher.finalize().as_bytes())
}

/// After a read whose source was [`Verdict::BytesUncertain`]: fails unless the bytes of `file`
/// (the copy made, or the source itself) are those the key hashed (`key_digest`; `None` when
/// this process remembers no digest for the source, which is refused too).
pub fn verify_bytes(file: &File, key_digest: Option<[u8; 32]>) -> std::io::Result<()> {
    match key_digest {
        Some(digest) if digest_of(file)? == digest => Ok(()),
        _ => Err(changed()),
    }
}

/// After reading `source` (from [`open`]) into `result` (the copy made, or `source` itself):
/// fails unless `source` is still the file `expected` described and, when only its ctime
/// moved, `result` holds the bytes the key hashed (`digests`' digest for `expected`).
pub fn confirm(
    source: &File,
    expected: &Metadata,
    origin: Origin,
    result: &File,
    digests: Option<&crate::statcache::StatCache>,
) -> std::io::Result<()> {
    match check(source, expected, origin)? {
        Verdict::Same => Ok(()),
        Verdict::BytesUncertain => {
            verify_bytes(result, digests.and_then(|d| d.known_digest(expected)))
        }
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
        assert_eq!(
            check(&file, &seen, Origin::Context).expect("still unchanged"),
            Verdict::Same
        );
        let one = digest_of(&file).expect("digest");

        // Rewritten in place with the same size, the mtime put back: only the ctime moved, so
        // the bytes must be compared with the key's digest.
        std::thread::sleep(std::time::Duration::from_millis(20));
        std::fs::write(&path, "two").expect("write");
        std::fs::File::options()
            .write(true)
            .open(&path)
            .and_then(|f| f.set_modified(seen.modified().expect("mtime")))
            .expect("restore mtime");
        assert_eq!(
            check(&file, &seen, Origin::Context).expect("same size and mtime"),
            Verdict::BytesUncertain
        );
        let err = verify_bytes(&file, Some(one)).expect_err("other bytes");
        assert!(err.to_string().contains("changed while the build"), "{err}");
        // A longer write is a change by size alone.
        std::fs::write(&path, "three").expect("write");
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
    fn a_new_link_changes_no_byte() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("f");
        std::fs::write(&path, "bytes").expect("write");
        let seen = std::fs::symlink_metadata(&path).expect("stat");
        let digest = digest_of(&std::fs::File::open(&path).expect("open")).expect("digest");
        std::thread::sleep(std::time::Duration::from_millis(20));
        std::fs::hard_link(&path, dir.path().join("link")).expect("link");
        let file = open(&path, &seen, Origin::Snapshot).expect("a new link changes no byte");
        assert_eq!(
            check(&file, &seen, Origin::Snapshot).expect("snapshot"),
            Verdict::Same
        );
        // In a context the moved ctime needs the bytes, which are the same.
        assert_eq!(
            check(&file, &seen, Origin::Context).expect("context"),
            Verdict::BytesUncertain
        );
        verify_bytes(&file, Some(digest)).expect("same bytes");
        assert!(
            verify_bytes(&file, None).is_err(),
            "nothing to compare with"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
        std::fs::write(&path, "other bytes").expect("write");
        assert!(
            check(&file, &seen, Origin::Snapshot).is_err(),
            "size and mtime moved"
        );
    }
}
