//! Writing selected sources into the destination rootfs with BuildKit's COPY rules:
//! - the destination is a directory when it ends in `/`, when there are several sources or a
//!   wildcard, or when it already is a directory; a directory source copies its *contents*;
//! - missing parents are created 0755, owned by the `--chown` user (root otherwise);
//! - owners: `--chown`, else 0:0 from the context, else the source's; modes are kept, except
//!   that `--chmod` (permission bits only, as Go's `os.FileMode` gives them) replaces the mode
//!   of every copied file and directory below the destination (not the destination itself);
//! - symlinks below a copied directory are copied as symlinks; mtimes are kept.
//!
//! Every name is created with `*at` calls on directories opened inside the rootfs, so a
//! symlink in the image can never send a write outside it.

use std::collections::HashMap;
use std::ffi::CString;
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;

use rbuild_solver::WorkerError;
use rustix::fs::{AtFlags, Mode, OFlags, Timestamps};
use rustix::io::Errno;

use super::select::{owner_of, Entry, Selected};
use crate::fsutil::{cstr, mkdir_all, remove_entry, Owner};

/// Options of one COPY.
#[derive(Debug, Clone)]
pub struct WriteOptions {
    /// Absolute destination inside the rootfs (as written: a trailing `/` matters).
    pub dest: String,
    pub chown: Option<Owner>,
    /// Permission bits for everything copied below the destination.
    pub chmod: Option<u32>,
    pub is_context: bool,
    /// `dest` names a directory (trailing `/`, several sources, a wildcard).
    pub dest_is_dir: bool,
}

/// A file to extract instead of copy (ADD of a local archive).
pub type Extract<'a> = &'a dyn Fn(&Entry, &OwnedFd) -> Result<bool, WorkerError>;

/// Copies every selection into the rootfs `root`.
pub fn write(
    root: &OwnedFd,
    selected: &[Selected],
    options: &WriteOptions,
    extract: Option<Extract<'_>>,
) -> Result<(), WorkerError> {
    let created_owner = options.chown.unwrap_or_default();
    let dest = options.dest.trim_end_matches('/');
    let dest = if dest.is_empty() { "/" } else { dest };
    let dest_exists_as_dir =
        crate::fsutil::open_in_root(root, dest, OFlags::PATH | OFlags::DIRECTORY).is_ok();
    for selection in selected {
        let top = &selection.entries[0];
        if selection.is_dir() {
            let dir = mkdir_all(root, dest, created_owner)?;
            // The destination directory itself takes the source directory's metadata only when
            // this copy created it.
            if !dest_exists_as_dir {
                set_metadata(&dir, None, &top.meta, options, false)?;
            }
            copy_tree(&dir, &selection.entries[1..], options)?;
            continue;
        }
        let (parent, name) = if options.dest_is_dir || dest_exists_as_dir {
            let name = std::path::Path::new(&selection.rel)
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| "root".into());
            (mkdir_all(root, dest, created_owner)?, name)
        } else {
            let (parent, name) = dest.rsplit_once('/').unwrap_or(("", dest));
            (
                mkdir_all(
                    root,
                    if parent.is_empty() { "/" } else { parent },
                    created_owner,
                )?,
                name.to_string(),
            )
        };
        if let Some(extract) = extract {
            // ADD: an archive is unpacked into the destination directory.
            let target_dir = mkdir_all(root, dest, created_owner)?;
            if extract(top, &target_dir)? {
                continue;
            }
        }
        copy_entry(&parent, &cstr(&name)?, top, options)?;
    }
    Ok(())
}

/// Copies entries (parents before children, paths relative to the copied directory) below `dir`.
fn copy_tree(dir: &OwnedFd, entries: &[Entry], options: &WriteOptions) -> Result<(), WorkerError> {
    let mut dirs: HashMap<String, OwnedFd> = HashMap::new();
    for entry in entries {
        let (parent_rel, name) = entry.rel.rsplit_once('/').unwrap_or(("", &entry.rel));
        let parent = if parent_rel.is_empty() {
            dir
        } else {
            dirs.get(parent_rel).ok_or_else(|| {
                WorkerError::new(format!("copy: parent of `{}` missing", entry.rel))
            })?
        };
        let name = cstr(name)?;
        if let Some(fd) = copy_entry(parent, &name, entry, options)? {
            dirs.insert(entry.rel.clone(), fd);
        }
    }
    // Directory metadata last-but-mtime: set after their contents are written.
    Ok(())
}

fn fail(what: &str, name: &CString, e: impl std::fmt::Display) -> WorkerError {
    WorkerError::new(format!(
        "copy: cannot {what} `{}`: {e}",
        name.to_string_lossy()
    ))
}

/// Creates one entry named `name` in `parent`; returns the directory's descriptor for dirs.
fn copy_entry(
    parent: &OwnedFd,
    name: &CString,
    entry: &Entry,
    options: &WriteOptions,
) -> Result<Option<OwnedFd>, WorkerError> {
    let meta = &entry.meta;
    let existing = rustix::fs::statat(parent, name.as_c_str(), AtFlags::SYMLINK_NOFOLLOW).ok();
    let existing_is_dir = existing
        .as_ref()
        .is_some_and(|s| s.st_mode & 0o170000 == 0o040000);
    if existing.is_some() && !(meta.is_dir() && existing_is_dir) {
        remove_entry(parent, name).map_err(|e| fail("replace", name, e))?;
    }
    let file_type = meta.file_type();
    if file_type.is_dir() {
        if !existing_is_dir {
            rustix::fs::mkdirat(parent, name.as_c_str(), Mode::from_raw_mode(0o700))
                .map_err(|e| fail("create", name, e))?;
        }
        let fd = rustix::fs::openat(
            parent,
            name.as_c_str(),
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| fail("open", name, e))?;
        set_metadata(&fd, None, meta, options, true)?;
        return Ok(Some(fd));
    }
    if file_type.is_symlink() {
        let target = entry.link_target.clone().unwrap_or_default();
        let target =
            CString::new(target.as_os_str().as_bytes()).map_err(|e| fail("link", name, e))?;
        rustix::fs::symlinkat(target.as_c_str(), parent, name.as_c_str())
            .map_err(|e| fail("create the symlink", name, e))?;
        let (uid, gid) = options
            .chown
            .map(|o| (o.uid, o.gid))
            .unwrap_or_else(|| owner_of(meta, options.is_context));
        rustix::fs::chownat(
            parent,
            name.as_c_str(),
            Some(rustix::process::Uid::from_raw(uid)),
            Some(rustix::process::Gid::from_raw(gid)),
            AtFlags::SYMLINK_NOFOLLOW,
        )
        .map_err(|e| fail("chown", name, e))?;
        let times = timestamps(meta);
        let _ = rustix::fs::utimensat(parent, name.as_c_str(), &times, AtFlags::SYMLINK_NOFOLLOW);
        return Ok(None);
    }
    if file_type.is_file() {
        let out = rustix::fs::openat(
            parent,
            name.as_c_str(),
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o600),
        )
        .map_err(|e| fail("create", name, e))?;
        let mut source = std::fs::File::open(&entry.host).map_err(|e| fail("read", name, e))?;
        let mut out = std::fs::File::from(out);
        std::io::copy(&mut source, &mut out).map_err(|e| fail("write", name, e))?;
        let fd = OwnedFd::from(out);
        set_metadata(&fd, None, meta, options, true)?;
        return Ok(None);
    }
    // FIFOs, sockets and devices: made again from their type and number.
    use std::os::unix::fs::FileTypeExt;
    let kind = if file_type.is_fifo() {
        rustix::fs::FileType::Fifo
    } else if file_type.is_char_device() {
        rustix::fs::FileType::CharacterDevice
    } else if file_type.is_block_device() {
        rustix::fs::FileType::BlockDevice
    } else {
        rustix::fs::FileType::Socket
    };
    match rustix::fs::mknodat(
        parent,
        name.as_c_str(),
        kind,
        Mode::from_raw_mode(0o600),
        meta.rdev(),
    ) {
        Ok(()) => {}
        Err(Errno::PERM) => return Ok(None),
        Err(e) => return Err(fail("create", name, e)),
    }
    let fd = rustix::fs::openat(
        parent,
        name.as_c_str(),
        OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| fail("open", name, e))?;
    let _ = fd;
    let (uid, gid) = options
        .chown
        .map(|o| (o.uid, o.gid))
        .unwrap_or_else(|| owner_of(meta, options.is_context));
    rustix::fs::chownat(
        parent,
        name.as_c_str(),
        Some(rustix::process::Uid::from_raw(uid)),
        Some(rustix::process::Gid::from_raw(gid)),
        AtFlags::SYMLINK_NOFOLLOW,
    )
    .map_err(|e| fail("chown", name, e))?;
    rustix::fs::chmodat(
        parent,
        name.as_c_str(),
        Mode::from_raw_mode(meta.mode() & 0o7777),
        AtFlags::empty(),
    )
    .map_err(|e| fail("chmod", name, e))?;
    Ok(None)
}

/// Owner, then mode (chown clears setuid bits), then times, on an open file or directory.
/// `below_dest`: the entry is below the destination, where `--chmod` applies.
fn set_metadata(
    fd: &OwnedFd,
    _name: Option<&CString>,
    meta: &std::fs::Metadata,
    options: &WriteOptions,
    below_dest: bool,
) -> Result<(), WorkerError> {
    let err = |what: &str, e: Errno| WorkerError::new(format!("copy: cannot {what}: {e}"));
    let (uid, gid) = options
        .chown
        .map(|o| (o.uid, o.gid))
        .unwrap_or_else(|| owner_of(meta, options.is_context));
    rustix::fs::fchown(
        fd,
        Some(rustix::process::Uid::from_raw(uid)),
        Some(rustix::process::Gid::from_raw(gid)),
    )
    .map_err(|e| err("chown", e))?;
    let mode = match options.chmod {
        Some(chmod) if below_dest => chmod & 0o777,
        _ => meta.mode() & 0o7777,
    };
    rustix::fs::fchmod(fd, Mode::from_raw_mode(mode)).map_err(|e| err("chmod", e))?;
    let _ = rustix::fs::futimens(fd, &timestamps(meta));
    Ok(())
}

fn timestamps(meta: &std::fs::Metadata) -> Timestamps {
    let mtime = rustix::fs::Timespec {
        tv_sec: meta.mtime(),
        tv_nsec: meta.mtime_nsec() as _,
    };
    Timestamps {
        last_access: mtime,
        last_modification: mtime,
    }
}
