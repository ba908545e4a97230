//! Writing a COPY straight into its view's upper directory instead of through the overlay.
//!
//! A file written through an overlayfs mount lands in the upper directory anyway; writing it
//! there directly lets the copy hard-link files from other (committed, immutable) snapshots,
//! which the overlay refuses across its mount ([`super::reuse`]). The two ways must give the
//! same upper directory, so the direct way is taken only when that is easy to guarantee:
//!
//! - the destination path, as far as it exists in the view, is made of real directories (no
//!   symlink to follow, no `.` or `..`);
//! - every name the copy creates in the deepest existing directory `W` of that path is new:
//!   nothing of the lower layers is replaced, so no whiteout or opaque directory is needed;
//! - overlayfs's copy-up of `W` and its ancestors is done by hand first: each is made in the
//!   upper directory with the merged view's owner, mode, extended attributes and times, as
//!   overlayfs does (it restores an ancestor's times after copying up a child into it). The
//!   copy's first new entry then bumps `W`'s mtime, as it would through the overlay.
//!
//! Otherwise (or for heredocs and ADD, or a COPY that makes nothing) the caller writes through
//! the overlay as before.
//!
//! The overlay stays mounted while its upper directory is written (the kernel calls changing
//! an upper directory under a mounted overlay undefined): nothing reads through the merged view
//! between [`prepare`] and the commit, which unmounts it and keeps only the upper directory.

use std::os::fd::OwnedFd;
use std::path::Path;

use rbuild_solver::WorkerError;
use rustix::fs::{AtFlags, Mode, OFlags, Timestamps};
use rustix::io::Errno;

use super::select::Selected;
use crate::fsutil::cstr;

const S_IFMT: u32 = 0o170000;
const S_IFDIR: u32 = 0o040000;

/// The cleaned components of an absolute destination, or `None` when one is `..`.
fn components(dest: &str) -> Option<Vec<&str>> {
    let parts: Vec<&str> = dest
        .split('/')
        .filter(|c| !c.is_empty() && *c != ".")
        .collect();
    (!parts.contains(&"..")).then_some(parts)
}

/// The destination as a path relative to the rootfs (`a/b`, or `` for `/`), as the direct
/// writer names entries for [`super::reuse`].
pub fn relative_dest(dest: &str) -> String {
    components(dest).unwrap_or_default().join("/")
}

fn err(what: &str, path: &str, e: Errno) -> WorkerError {
    WorkerError::new(format!("copy: cannot {what} `/{path}`: {e}"))
}

/// Opens the upper directory for a direct write of `selected` to `dest`, after copying up the
/// destination's existing directories; `None` when the copy must go through the overlay.
/// `merged` is the view's root, `upper` its upper directory (the same when the view has no
/// lower layers).
pub fn prepare(
    merged: &Path,
    upper: &Path,
    dest: &str,
    selected: &[Selected],
) -> Result<Option<OwnedFd>, WorkerError> {
    let Some(parts) = components(dest) else {
        return Ok(None);
    };
    let open_dir = |path: &Path| {
        rustix::fs::open(
            path,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| WorkerError::new(format!("copy: cannot open {}: {e}", path.display())))
    };
    let merged_root = open_dir(merged)?;
    // The existing part of the destination: real directories only (merged-view descriptors).
    let mut existing: Vec<OwnedFd> = Vec::new();
    for part in &parts {
        let name = cstr(part)?;
        let dir = existing.last().unwrap_or(&merged_root);
        let next = match rustix::fs::statat(dir, name.as_c_str(), AtFlags::SYMLINK_NOFOLLOW) {
            Ok(stat) if stat.st_mode & S_IFMT == S_IFDIR => rustix::fs::openat(
                dir,
                name.as_c_str(),
                OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::empty(),
            )
            .map_err(|e| err("open", part, e))?,
            Err(Errno::NOENT) => break,
            // A symlink or a file on the way: the overlay's rules apply.
            Ok(_) => return Ok(None),
            Err(e) => return Err(err("inspect", part, e)),
        };
        existing.push(next);
    }
    let whole_dest_exists = existing.len() == parts.len();
    // Into an existing directory: only new names, and at least one (a COPY that makes nothing
    // leaves the upper directory empty, which a copy-up would not).
    let deepest = existing.last().unwrap_or(&merged_root);
    if whole_dest_exists && new_names_in_dest(deepest, selected)? != Some(true) {
        return Ok(None);
    }
    let upper_root = open_dir(upper)?;
    if merged == upper {
        return Ok(Some(upper_root));
    }
    if copy_up(&upper_root, &existing, &parts).is_err() {
        // E.g. an xattr this filesystem refuses: undo, and let the overlay copy up its way.
        // Left in place, the stray directories would meet the overlay's own copy-up.
        if let Some(first) = parts.first() {
            crate::fsutil::remove_entry(&upper_root, &cstr(first)?)
                .map_err(|e| err("undo the copy-up of", first, e))?;
        }
        return Ok(None);
    }
    Ok(Some(upper_root))
}

/// Whether every name the copy makes directly in the existing destination directory is new.
/// (An existing directory receives a directory source's children, and a file by its name.)
/// `None` when the copy makes no name there at all.
fn new_names_in_dest(dest: &OwnedFd, selected: &[Selected]) -> Result<Option<bool>, WorkerError> {
    let mut any = false;
    for selection in selected {
        let names: Vec<&str> = if selection.is_dir() {
            selection.entries[1..]
                .iter()
                .filter(|e| !e.rel.contains('/'))
                .map(|e| e.rel.as_str())
                .collect()
        } else {
            vec![Path::new(&selection.rel)
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or("root")]
        };
        for name in names {
            any = true;
            let name = cstr(name)?;
            match rustix::fs::statat(dest, name.as_c_str(), AtFlags::SYMLINK_NOFOLLOW) {
                Err(Errno::NOENT) => {}
                Ok(_) => return Ok(Some(false)),
                Err(e) => {
                    return Err(WorkerError::new(format!(
                        "copy: cannot inspect `{}`: {e}",
                        name.to_string_lossy()
                    )))
                }
            }
        }
    }
    Ok(any.then_some(true))
}

/// Makes the existing directories of the destination (`existing`: their merged-view
/// descriptors, root excluded, outermost first) in the upper directory as overlayfs's copy-up
/// would.
fn copy_up(upper_root: &OwnedFd, existing: &[OwnedFd], parts: &[&str]) -> Result<(), WorkerError> {
    let mut made: Vec<(OwnedFd, rustix::fs::Stat)> = Vec::new();
    let mut parent = rustix::io::fcntl_dupfd_cloexec(upper_root, 0)
        .map_err(|e| WorkerError::new(format!("copy: {e}")))?;
    for (depth, lower) in existing.iter().enumerate() {
        let path = parts[..=depth].join("/");
        let name = cstr(parts[depth])?;
        let stat = rustix::fs::fstat(lower).map_err(|e| err("inspect", &path, e))?;
        match rustix::fs::mkdirat(&parent, name.as_c_str(), Mode::from_raw_mode(0o700)) {
            Ok(()) | Err(Errno::EXIST) => {}
            Err(e) => return Err(err("create", &path, e)),
        }
        let dir = rustix::fs::openat(
            &parent,
            name.as_c_str(),
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| err("open", &path, e))?;
        rustix::fs::fchown(
            &dir,
            Some(rustix::process::Uid::from_raw(stat.st_uid)),
            Some(rustix::process::Gid::from_raw(stat.st_gid)),
        )
        .map_err(|e| err("chown", &path, e))?;
        // After the chown, which clears setuid/setgid bits.
        rustix::fs::fchmod(&dir, Mode::from_raw_mode(stat.st_mode & 0o7777))
            .map_err(|e| err("chmod", &path, e))?;
        copy_xattrs(lower, &dir).map_err(|e| err("copy the extended attributes of", &path, e))?;
        parent = rustix::io::fcntl_dupfd_cloexec(&dir, 0)
            .map_err(|e| WorkerError::new(format!("copy: {e}")))?;
        made.push((dir, stat));
    }
    // Times last, innermost first: making a child changed each parent's mtime.
    for (dir, stat) in made.iter().rev() {
        let times = Timestamps {
            last_access: rustix::fs::Timespec {
                tv_sec: stat.st_atime as _,
                tv_nsec: stat.st_atime_nsec as _,
            },
            last_modification: rustix::fs::Timespec {
                tv_sec: stat.st_mtime as _,
                tv_nsec: stat.st_mtime_nsec as _,
            },
        };
        let _ = rustix::fs::futimens(dir, &times);
    }
    Ok(())
}

/// Copies every extended attribute overlayfs shows for `from` (it hides its own) to `to`.
pub(crate) fn copy_xattrs(from: &OwnedFd, to: &OwnedFd) -> Result<(), Errno> {
    let mut names = vec![0u8; 1024];
    let len = loop {
        match rustix::fs::flistxattr(from, &mut names[..]) {
            Ok(n) => break n,
            Err(Errno::RANGE) => names.resize(names.len() * 4, 0),
            Err(Errno::NOTSUP) => return Ok(()),
            Err(e) => return Err(e),
        }
    };
    for name in names[..len].split(|b| *b == 0).filter(|n| !n.is_empty()) {
        if name.starts_with(b"trusted.overlay.") {
            continue;
        }
        let name = std::ffi::CString::new(name).map_err(|_| Errno::INVAL)?;
        let mut value = vec![0u8; 256];
        let n = loop {
            match rustix::fs::fgetxattr(from, name.as_c_str(), &mut value[..]) {
                Ok(n) => break n,
                Err(Errno::RANGE) => value.resize(value.len() * 4, 0),
                Err(e) => return Err(e),
            }
        };
        rustix::fs::fsetxattr(
            to,
            name.as_c_str(),
            &value[..n],
            rustix::fs::XattrFlags::empty(),
        )?;
    }
    Ok(())
}
