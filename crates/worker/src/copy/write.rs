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

use super::reuse::{Reuse, Wanted};
use super::select::{owner_of, Entry, Selected};
use crate::fsutil::{cstr, mkdir_all, remove_entry, Owner};

/// Options of one COPY.
#[derive(Debug, Clone)]
pub struct WriteOptions<'a> {
    /// Absolute destination inside the rootfs (as written: a trailing `/` matters).
    pub dest: String,
    pub chown: Option<Owner>,
    /// Permission bits for everything copied below the destination.
    pub chmod: Option<u32>,
    pub is_context: bool,
    /// `dest` names a directory (trailing `/`, several sources, a wildcard).
    pub dest_is_dir: bool,
    /// The digests a context COPY's key used: a source whose ctime alone moved since is
    /// copied only if its bytes still have that digest (see `source_file`).
    pub digests: Option<&'a crate::statcache::StatCache>,
}

/// ADD of a local archive: given the entry and a way to make the destination directory, it
/// unpacks and returns true, or returns false (without calling `make_dir`) for a plain file.
pub type Extract<'a> =
    &'a dyn Fn(&Entry, &dyn Fn() -> Result<OwnedFd, WorkerError>) -> Result<bool, WorkerError>;

/// Where copied files go, for [`Reuse`]: set only when `root` is written directly (paths
/// relative to it name the entries; see [`super::direct`]).
#[derive(Clone, Copy)]
struct Target<'a> {
    reuse: Option<&'a Reuse<'a>>,
    /// The directory the entries are made in, relative to the rootfs ("" for the root).
    base: &'a str,
}

impl Target<'_> {
    fn path_of(&self, rel: &str) -> String {
        if self.base.is_empty() {
            rel.to_string()
        } else {
            format!("{}/{rel}", self.base)
        }
    }
}

/// Copies every selection into the rootfs `root`. With `reuse`, `root` must be the view's
/// upper directory prepared by [`super::direct::prepare`], and files may be hard links.
pub fn write(
    root: &OwnedFd,
    selected: &[Selected],
    options: &WriteOptions<'_>,
    extract: Option<Extract<'_>>,
    reuse: Option<&Reuse<'_>>,
) -> Result<(), WorkerError> {
    let created_owner = options.chown.unwrap_or_default();
    let dest = options.dest.trim_end_matches('/');
    let dest = if dest.is_empty() { "/" } else { dest };
    let dest_rel = super::direct::relative_dest(dest);
    for selection in selected {
        // Checked again for every source: an earlier one may just have made it.
        let dest_exists_as_dir =
            crate::fsutil::open_in_root(root, dest, OFlags::PATH | OFlags::DIRECTORY).is_ok();
        let top = &selection.entries[0];
        if selection.is_dir() {
            let dir = mkdir_all(root, dest, created_owner)?;
            // The destination directory itself takes the source directory's metadata only when
            // this copy created it.
            if !dest_exists_as_dir {
                set_metadata(&dir, &top.meta, options, false)?;
            }
            let target = Target {
                reuse,
                base: &dest_rel,
            };
            copy_tree(
                &dir,
                !dest_exists_as_dir,
                &selection.entries[1..],
                options,
                target,
            )?;
            continue;
        }
        let (parent, parent_rel, name) = if options.dest_is_dir || dest_exists_as_dir {
            let name = std::path::Path::new(&selection.rel)
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| "root".into());
            (
                mkdir_all(root, dest, created_owner)?,
                dest_rel.clone(),
                name,
            )
        } else {
            let (parent, name) = dest.rsplit_once('/').unwrap_or(("", dest));
            let parent = if parent.is_empty() { "/" } else { parent };
            (
                mkdir_all(root, parent, created_owner)?,
                super::direct::relative_dest(parent),
                name.to_string(),
            )
        };
        if let Some(extract) = extract {
            // ADD: an archive is unpacked into the destination directory (made only then).
            let make_dir = || mkdir_all(root, dest, created_owner);
            if extract(top, &make_dir)? {
                continue;
            }
        }
        let parent = dir_info(parent, false);
        let target = Target {
            reuse,
            base: &parent_rel,
        };
        copy_entry(&parent, &cstr(&name)?, top, options, target, &name)?;
    }
    Ok(())
}

/// A directory of the copy: its descriptor, whether this copy made it (then nothing in it can
/// exist yet), and whether it is setgid (new entries then take its group).
struct DirInfo {
    fd: OwnedFd,
    fresh: bool,
    setgid: bool,
}

fn dir_info(fd: OwnedFd, fresh: bool) -> DirInfo {
    let setgid = rustix::fs::fstat(&fd).is_ok_and(|s| s.st_mode & 0o2000 != 0);
    DirInfo { fd, fresh, setgid }
}

/// Copies entries (parents before children, paths relative to the copied directory) below `dir`:
/// directories first, in order; then every other entry, spread over the cores; then the
/// directories' metadata, children first, so their mtimes stay as copied.
fn copy_tree(
    dir: &OwnedFd,
    fresh: bool,
    entries: &[Entry],
    options: &WriteOptions<'_>,
    target: Target<'_>,
) -> Result<(), WorkerError> {
    let root = rustix::io::fcntl_dupfd_cloexec(dir, 0)
        .map_err(|e| WorkerError::new(format!("copy: {e}")))?;
    let mut dirs: HashMap<&str, DirInfo> = HashMap::new();
    dirs.insert("", dir_info(root, fresh));
    let mut made_dirs: Vec<&Entry> = Vec::new();
    let mut others: Vec<&Entry> = Vec::new();
    for entry in entries {
        let (parent_rel, name) = entry.rel.rsplit_once('/').unwrap_or(("", &entry.rel));
        if !entry.meta.is_dir() {
            others.push(entry);
            continue;
        }
        let parent = dirs
            .get(parent_rel)
            .ok_or_else(|| WorkerError::new(format!("copy: parent of `{}` missing", entry.rel)))?;
        let name = cstr(name)?;
        let (fd, fresh) = make_dir(parent, &name)?;
        if let Some(reuse) = target.reuse {
            reuse.replaced(&target.path_of(&entry.rel));
        }
        dirs.insert(entry.rel.as_str(), dir_info(fd, fresh));
        made_dirs.push(entry);
    }
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(others.len().max(1));
    let chunk = others.len().div_ceil(threads).max(1);
    let dirs_ref = &dirs;
    let results: Vec<Result<(), WorkerError>> = std::thread::scope(|scope| {
        others
            .chunks(chunk)
            .map(|part| {
                scope.spawn(move || {
                    for entry in part {
                        let (parent_rel, name) =
                            entry.rel.rsplit_once('/').unwrap_or(("", &entry.rel));
                        let parent = dirs_ref.get(parent_rel).ok_or_else(|| {
                            WorkerError::new(format!("copy: parent of `{}` missing", entry.rel))
                        })?;
                        copy_entry(parent, &cstr(name)?, entry, options, target, &entry.rel)?;
                    }
                    Ok(())
                })
            })
            .collect::<Vec<_>>()
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(WorkerError::new("copy: a thread panicked")))
            })
            .collect()
    });
    for result in results {
        result?;
    }
    for entry in made_dirs.iter().rev() {
        if let Some(info) = dirs.get(entry.rel.as_str()) {
            set_metadata(&info.fd, &entry.meta, options, true)?;
        }
    }
    Ok(())
}

fn fail(what: &str, name: &CString, e: impl std::fmt::Display) -> WorkerError {
    WorkerError::new(format!(
        "copy: cannot {what} `{}`: {e}",
        name.to_string_lossy()
    ))
}

/// Makes (or reuses) directory `name` in `parent`; returns it and whether it is new.
fn make_dir(parent: &DirInfo, name: &CString) -> Result<(OwnedFd, bool), WorkerError> {
    let existing = if parent.fresh {
        None
    } else {
        rustix::fs::statat(&parent.fd, name.as_c_str(), AtFlags::SYMLINK_NOFOLLOW).ok()
    };
    let is_dir = existing
        .as_ref()
        .is_some_and(|s| s.st_mode & 0o170000 == 0o040000);
    if existing.is_some() && !is_dir {
        remove_entry(&parent.fd, name).map_err(|e| fail("replace", name, e))?;
    }
    if !is_dir {
        rustix::fs::mkdirat(&parent.fd, name.as_c_str(), Mode::from_raw_mode(0o700))
            .map_err(|e| fail("create", name, e))?;
    }
    let fd = rustix::fs::openat(
        &parent.fd,
        name.as_c_str(),
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| fail("open", name, e))?;
    Ok((fd, !is_dir))
}

/// The process umask (read once from /proc: changing it to read it would race other threads).
fn umask() -> u32 {
    static UMASK: std::sync::OnceLock<u32> = std::sync::OnceLock::new();
    *UMASK.get_or_init(|| {
        std::fs::read_to_string("/proc/self/status")
            .ok()
            .and_then(|s| {
                s.lines()
                    .find_map(|l| l.strip_prefix("Umask:").map(|v| v.trim().to_string()))
            })
            .and_then(|v| u32::from_str_radix(&v, 8).ok())
            .unwrap_or(0o777)
    })
}

/// Creates one non-directory entry named `name` in `parent`; `rel` is its path below
/// `target.base`.
fn copy_entry(
    parent: &DirInfo,
    name: &CString,
    entry: &Entry,
    options: &WriteOptions<'_>,
    target: Target<'_>,
    rel: &str,
) -> Result<(), WorkerError> {
    let meta = &entry.meta;
    if !parent.fresh
        && rustix::fs::statat(&parent.fd, name.as_c_str(), AtFlags::SYMLINK_NOFOLLOW).is_ok()
    {
        remove_entry(&parent.fd, name).map_err(|e| fail("replace", name, e))?;
    }
    let (uid, gid) = options
        .chown
        .map(|o| (o.uid, o.gid))
        .unwrap_or_else(|| owner_of(meta, options.is_context));
    // Made by root: owned 0:0 already, unless the directory hands down its group.
    let needs_chown = (uid, gid) != (0, 0) || parent.setgid;
    let file_type = meta.file_type();
    if let (Some(reuse), false) = (target.reuse, file_type.is_file()) {
        reuse.replaced(&target.path_of(rel));
    }
    if file_type.is_symlink() {
        let target = entry.link_target.clone().unwrap_or_default();
        let target =
            CString::new(target.as_os_str().as_bytes()).map_err(|e| fail("link", name, e))?;
        rustix::fs::symlinkat(target.as_c_str(), &parent.fd, name.as_c_str())
            .map_err(|e| fail("create the symlink", name, e))?;
        if needs_chown {
            chown_nofollow(parent, name, uid, gid)?;
        }
        let _ = rustix::fs::utimensat(
            &parent.fd,
            name.as_c_str(),
            &timestamps(meta),
            AtFlags::SYMLINK_NOFOLLOW,
        );
        return Ok(());
    }
    let mode = match options.chmod {
        Some(chmod) => chmod & 0o777,
        None => meta.mode() & 0o7777,
    };
    if file_type.is_file() {
        let dest_path = target.reuse.map(|_| target.path_of(rel));
        if let (Some(reuse), Some(path)) = (target.reuse, &dest_path) {
            let wanted = Wanted { uid, gid, mode };
            if reuse.link(&parent.fd, name.as_c_str(), path, entry, wanted) {
                return Ok(());
            }
        }
        // Read-write: a copy whose source became uncertain is read back to be checked.
        let out = rustix::fs::openat(
            &parent.fd,
            name.as_c_str(),
            OFlags::RDWR | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_raw_mode(mode & 0o777),
        )
        .map_err(|e| fail("create", name, e))?;
        let origin = crate::source_file::Origin::of(options.is_context);
        let mut source = crate::source_file::open(&entry.host, meta, origin)
            .map_err(|e| fail("read", name, e))?;
        let mut out = std::fs::File::from(out);
        std::io::copy(&mut source, &mut out).map_err(|e| fail("write", name, e))?;
        // What was copied is what the step's key hashed.
        crate::source_file::confirm(&source, meta, origin, &out, options.digests)
            .map_err(|e| fail("read", name, e))?;
        let fd = OwnedFd::from(out);
        if needs_chown {
            rustix::fs::fchown(
                &fd,
                Some(rustix::process::Uid::from_raw(uid)),
                Some(rustix::process::Gid::from_raw(gid)),
            )
            .map_err(|e| fail("chown", name, e))?;
        }
        // The creation mode was cut by the umask, and chown clears setuid bits: fix up only then.
        if mode & 0o7000 != 0 || mode & umask() != 0 {
            rustix::fs::fchmod(&fd, Mode::from_raw_mode(mode))
                .map_err(|e| fail("chmod", name, e))?;
        }
        let _ = rustix::fs::futimens(&fd, &timestamps(meta));
        if let (Some(reuse), Some(path)) = (target.reuse, &dest_path) {
            reuse.copied(path, entry);
        }
        return Ok(());
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
        &parent.fd,
        name.as_c_str(),
        kind,
        Mode::from_raw_mode(0o600),
        meta.rdev(),
    ) {
        Ok(()) => {}
        Err(Errno::PERM) => return Ok(()),
        Err(e) => return Err(fail("create", name, e)),
    }
    chown_nofollow(parent, name, uid, gid)?;
    rustix::fs::chmodat(
        &parent.fd,
        name.as_c_str(),
        Mode::from_raw_mode(mode),
        AtFlags::empty(),
    )
    .map_err(|e| fail("chmod", name, e))?;
    Ok(())
}

/// chown of `name` in `parent` itself (a symlink is not followed).
fn chown_nofollow(parent: &DirInfo, name: &CString, uid: u32, gid: u32) -> Result<(), WorkerError> {
    rustix::fs::chownat(
        &parent.fd,
        name.as_c_str(),
        Some(rustix::process::Uid::from_raw(uid)),
        Some(rustix::process::Gid::from_raw(gid)),
        AtFlags::SYMLINK_NOFOLLOW,
    )
    .map_err(|e| fail("chown", name, e))
}

/// Owner, then mode (chown clears setuid bits), then times, on an open file or directory.
/// `below_dest`: the entry is below the destination, where `--chmod` applies.
fn set_metadata(
    fd: &OwnedFd,
    meta: &std::fs::Metadata,
    options: &WriteOptions<'_>,
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
