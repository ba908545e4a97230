//! A build context bind-mounted into a RUN (`RUN --mount=type=bind`, from the context or a
//! named one) shows exactly what `.dockerignore` admits, as in BuildKit, which only ever receives
//! the admitted files. That is also exactly what the step's cache key covers: its mount parts come
//! from the same rules (`LocalWorker::mount_content` selects with them, and the walk here hides
//! what the selection's `list` skips), so an ignored file can neither change the step's output
//! without a cache miss nor leak into it.
//!
//! When the mounted directory holds ignored entries, the mount's source becomes a read-only
//! overlay of two lower layers: on top, a small tree holding a whiteout (a 0/0 character device)
//! for each hidden entry, whose directories carry the context directories' own owner, mode,
//! extended attributes and times; below, the context directory itself. Nothing is copied, and
//! the step cannot write to the user's files (no upper layer). The whiteout tree lives on a tmpfs
//! mounted in rbuild's private mount namespace: it can never overlap the context (a state root
//! inside the context would), and a killed build leaves nothing of it. The view keeps the
//! context's `nosuid`/`noexec`. Without ignored entries the directory is bound as it is.
//!
//! Names are handled as bytes: a name that is not UTF-8 is matched by its lossy form, as the
//! selection matches it, and hidden by its real name.
//!
//! The context is live: `context_check` makes sure, once the step is done, that it is still
//! what the step's key hashed.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use rbuild_frontend::dockerignore::IgnoreRules;

use crate::copy::select::join;
use rbuild_solver::WorkerError;
use rustix::fs::{FileType, Mode, Timestamps};
use rustix::mount::{MountFlags, UnmountFlags};

/// Where a state root's filtered views are made (`<pid>`-named, so prune can sweep those of
/// killed builds).
pub fn scratch_dir(state_root: &Path) -> PathBuf {
    state_root.join("run/contexts")
}

/// The filtered view of a context directory; unmounted and removed when dropped.
#[derive(Debug)]
pub struct FilteredContext {
    /// The scratch directory, with a tmpfs on it once `tmpfs` is set.
    dir: PathBuf,
    tmpfs: bool,
    merged: PathBuf,
    mounted: bool,
}

impl FilteredContext {
    /// The directory to bind-mount instead of the context directory.
    pub fn root(&self) -> &Path {
        &self.merged
    }
}

impl Drop for FilteredContext {
    fn drop(&mut self) {
        if self.mounted {
            let _ = rustix::mount::unmount(&self.merged, UnmountFlags::DETACH);
        }
        if self.tmpfs {
            let _ = rustix::mount::unmount(&self.dir, UnmountFlags::DETACH);
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn err(what: &str, path: &Path, e: impl std::fmt::Display) -> WorkerError {
    WorkerError::new(format!("cannot {what} {}: {e}", path.display()))
}

/// The entries below `dir` (paths relative to it, as bytes) that the rules hide; `rel` is
/// `dir`'s path relative to the context root. Only the topmost hidden path of a hidden subtree
/// is listed. The rules decide as in the selection's walk (`copy::select`): an excluded
/// directory is looked into only when an exception could admit something below it, and is
/// hidden whole when nothing is. Returns whether anything below `dir` stays visible.
fn hidden_entries(
    dir: &Path,
    rel: &str,
    ignore: &IgnoreRules,
    below: &Path,
    out: &mut Vec<PathBuf>,
) -> Result<bool, WorkerError> {
    let read = std::fs::read_dir(dir).map_err(|e| err("read", dir, e))?;
    let mut visible = false;
    for entry in read {
        let entry = entry.map_err(|e| err("read", dir, e))?;
        let name: OsString = entry.file_name();
        let context_rel = join(rel, &name.to_string_lossy());
        let mount_rel = below.join(&name);
        // file_type does not follow symlinks: a symlinked directory is an entry, not a walk.
        let is_dir = entry.file_type().is_ok_and(|t| t.is_dir());
        let excluded = ignore.is_excluded(&context_rel);
        if excluded && (!is_dir || ignore.can_skip_dir(&context_rel)) {
            out.push(mount_rel);
        } else if excluded {
            let mut inside = Vec::new();
            if hidden_entries(&entry.path(), &context_rel, ignore, &mount_rel, &mut inside)? {
                out.extend(inside);
                visible = true;
            } else {
                out.push(mount_rel);
            }
        } else {
            visible = true;
            if is_dir {
                hidden_entries(&entry.path(), &context_rel, ignore, &mount_rel, out)?;
            }
        }
    }
    Ok(visible)
}

/// Makes the whiteout tree's directory `dir` look like the context's `like`: owner, mode and
/// extended attributes (times are set last by the caller).
fn copy_dir_metadata(dir: &Path, like: &Path) -> Result<std::fs::Metadata, WorkerError> {
    let meta = std::fs::symlink_metadata(like).map_err(|e| err("stat", like, e))?;
    std::os::unix::fs::chown(dir, Some(meta.uid()), Some(meta.gid()))
        .map_err(|e| err("chown", dir, e))?;
    std::fs::set_permissions(
        dir,
        std::os::unix::fs::PermissionsExt::from_mode(meta.mode() & 0o7777),
    )
    .map_err(|e| err("chmod", dir, e))?;
    let open = |p: &Path| {
        rustix::fs::open(
            p,
            rustix::fs::OFlags::RDONLY
                | rustix::fs::OFlags::DIRECTORY
                | rustix::fs::OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| err("open", p, e))
    };
    crate::copy::direct::copy_xattrs(&open(like)?, &open(dir)?)
        .map_err(|e| err("copy the extended attributes of", like, e))?;
    Ok(meta)
}

fn set_times(dir: &Path, like: &std::fs::Metadata) {
    let times = Timestamps {
        last_access: rustix::fs::Timespec {
            tv_sec: like.atime(),
            tv_nsec: like.atime_nsec() as _,
        },
        last_modification: rustix::fs::Timespec {
            tv_sec: like.mtime(),
            tv_nsec: like.mtime_nsec() as _,
        },
    };
    let _ = rustix::fs::utimensat(
        rustix::fs::CWD,
        dir,
        &times,
        rustix::fs::AtFlags::SYMLINK_NOFOLLOW,
    );
}

/// Escapes a path for an overlayfs option string (`\`, `:` and `,` are special there).
fn escape(path: &Path) -> Vec<u8> {
    let mut out = Vec::new();
    for &b in path.as_os_str().as_bytes() {
        if matches!(b, b'\\' | b':' | b',') {
            out.push(b'\\');
        }
        out.push(b);
    }
    out
}

/// The view of `source` (a directory inside the context at `context_root`, symlinks already
/// resolved inside it) that hides what `ignore` excludes; `None` when nothing is hidden and
/// `source` can be bound as it is. The scratch directory goes under `scratch`.
pub fn filtered(
    context_root: &Path,
    ignore: &IgnoreRules,
    source: &Path,
    scratch: &Path,
) -> Result<Option<FilteredContext>, WorkerError> {
    if !source.is_dir() {
        return Ok(None);
    }
    let rel = source
        .strip_prefix(context_root)
        .map_err(|_| {
            WorkerError::new(format!(
                "bind mount source {} is not inside the build context {}",
                source.display(),
                context_root.display()
            ))
        })?
        .to_string_lossy()
        .into_owned();
    let mut hidden = Vec::new();
    hidden_entries(source, &rel, ignore, Path::new(""), &mut hidden)?;
    if hidden.is_empty() {
        return Ok(None);
    }
    std::fs::create_dir_all(scratch).map_err(|e| err("create", scratch, e))?;
    let dir = tempfile::Builder::new()
        .prefix(&format!("context-{}-", std::process::id()))
        .tempdir_in(scratch)
        .map_err(|e| err("create a directory in", scratch, e))?
        .keep();
    let mut view = FilteredContext {
        merged: dir.join("merged"),
        dir,
        tmpfs: false,
        mounted: false,
    };
    rustix::mount::mount(
        c"tmpfs",
        &view.dir,
        c"tmpfs",
        MountFlags::NODEV | MountFlags::NOSUID | MountFlags::NOEXEC,
        Some(c"mode=0700"),
    )
    .map_err(|e| err("mount a tmpfs on", &view.dir, e))?;
    view.tmpfs = true;
    let whiteouts = view.dir.join("whiteouts");
    for d in [&whiteouts, &view.merged] {
        std::fs::create_dir(d).map_err(|e| err("create", d, e))?;
    }
    // The whiteout tree's directories, each like its context counterpart.
    let mut dirs: BTreeMap<PathBuf, std::fs::Metadata> = BTreeMap::new();
    dirs.insert(PathBuf::new(), copy_dir_metadata(&whiteouts, source)?);
    for path in &hidden {
        let mut parent = PathBuf::new();
        let parts: Vec<_> = path.components().collect();
        for part in &parts[..parts.len().saturating_sub(1)] {
            parent.push(part);
            if !dirs.contains_key(&parent) {
                let made = whiteouts.join(&parent);
                std::fs::create_dir(&made).map_err(|e| err("create", &made, e))?;
                dirs.insert(
                    parent.clone(),
                    copy_dir_metadata(&made, &source.join(&parent))?,
                );
            }
        }
        let node = whiteouts.join(path);
        rustix::fs::mknodat(
            rustix::fs::CWD,
            &node,
            FileType::CharacterDevice,
            Mode::empty(),
            0,
        )
        .map_err(|e| err("create a whiteout at", &node, e))?;
    }
    // Times innermost first (making children changed the parents').
    for (rel, meta) in dirs.iter().rev() {
        set_times(&whiteouts.join(rel), meta);
    }
    let mut options = b"lowerdir=".to_vec();
    options.extend(escape(&whiteouts));
    options.push(b':');
    options.extend(escape(source));
    let options = std::ffi::CString::new(options)
        .map_err(|_| WorkerError::new("a context path holds a NUL byte"))?;
    // The context's own nosuid/noexec carry over, as they would to a plain bind.
    let mut flags = MountFlags::RDONLY | MountFlags::NODEV;
    let statvfs = rustix::fs::statvfs(source).map_err(|e| err("inspect", source, e))?;
    for (bit, flag) in [
        (rustix::fs::StatVfsMountFlags::NOSUID, MountFlags::NOSUID),
        (rustix::fs::StatVfsMountFlags::NOEXEC, MountFlags::NOEXEC),
    ] {
        if statvfs.f_flag.contains(bit) {
            flags |= flag;
        }
    }
    rustix::mount::mount(
        c"overlay",
        &view.merged,
        c"overlay",
        flags,
        Some(options.as_c_str()),
    )
    .map_err(|e| {
        WorkerError::new(format!(
            "cannot mount the build context at {} without its .dockerignored files \
             (an overlay over it failed: {e}; overlayfs cannot use a case-insensitive \
             filesystem or a third level of stacking as a lower layer)",
            source.display()
        ))
    })?;
    view.mounted = true;
    Ok(Some(view))
}
