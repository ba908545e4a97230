//! A build context bind-mounted into a RUN (`RUN --mount=type=bind`, from the context or a
//! named one) shows exactly what `.dockerignore` admits, as in BuildKit, which only ever receives
//! the admitted files. That is also exactly what the step's cache key covers: its mount parts come
//! from the same selection (`LocalWorker::mount_content`), so an ignored file can neither change
//! the step's output without a cache miss nor leak into it.
//!
//! When the mounted directory holds ignored entries, the mount's source becomes a read-only
//! overlay of two lower layers: on top, a small tree holding a whiteout (a 0/0 character device)
//! for each hidden entry, whose directories carry the context directories' own owner, mode and
//! times; below, the context directory itself. Nothing is copied, and the step cannot write to
//! the user's files (no upper layer). An ignored directory that an exception (`!pattern`) could
//! re-include something from is kept and looked into, as the selection does. Without ignored
//! entries the directory is bound as it is.

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use rbuild_frontend::dockerignore::IgnoreRules;
use rbuild_solver::WorkerError;
use rustix::fs::{FileType, Mode, Timestamps};

/// The filtered view of a context directory; unmounted and removed when dropped.
#[derive(Debug)]
pub struct FilteredContext {
    dir: PathBuf,
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
            let _ = rustix::mount::unmount(&self.merged, rustix::mount::UnmountFlags::DETACH);
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn join(base: &str, name: &str) -> String {
    if base.is_empty() {
        name.to_string()
    } else {
        format!("{base}/{name}")
    }
}

/// The entries below `dir` (paths relative to it) that the rules hide; `rel` is `dir`'s path
/// relative to the context root. Only the topmost hidden path of a hidden subtree is listed.
fn hidden_entries(
    dir: &Path,
    rel: &str,
    ignore: &IgnoreRules,
    below: &str,
    out: &mut Vec<String>,
) -> Result<(), WorkerError> {
    let read = std::fs::read_dir(dir)
        .map_err(|e| WorkerError::new(format!("cannot read {}: {e}", dir.display())))?;
    for entry in read {
        let entry =
            entry.map_err(|e| WorkerError::new(format!("cannot read {}: {e}", dir.display())))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let context_rel = join(rel, &name);
        let mount_rel = join(below, &name);
        let is_dir = entry.file_type().is_ok_and(|t| t.is_dir());
        if ignore.is_excluded(&context_rel) && (!is_dir || ignore.can_skip_dir(&context_rel)) {
            out.push(mount_rel);
        } else if is_dir {
            hidden_entries(&entry.path(), &context_rel, ignore, &mount_rel, out)?;
        }
    }
    Ok(())
}

/// Makes `dir` look like `like` (owner, mode; times are set last by the caller).
fn copy_dir_metadata(dir: &Path, like: &std::fs::Metadata) -> Result<(), WorkerError> {
    let fail = |e: std::io::Error| {
        WorkerError::new(format!(
            "cannot prepare the filtered context at {}: {e}",
            dir.display()
        ))
    };
    std::os::unix::fs::chown(dir, Some(like.uid()), Some(like.gid())).map_err(fail)?;
    std::fs::set_permissions(
        dir,
        std::os::unix::fs::PermissionsExt::from_mode(like.mode() & 0o7777),
    )
    .map_err(fail)
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

/// Escapes a path for an overlayfs option string.
fn escape(path: &Path) -> Result<String, WorkerError> {
    let text = path.to_str().ok_or_else(|| {
        WorkerError::new(format!(
            "the path {} is not UTF-8, which an overlay mount option cannot hold",
            path.display()
        ))
    })?;
    Ok(text
        .replace('\\', "\\\\")
        .replace(':', "\\:")
        .replace(',', "\\,"))
}

/// The view of `source` (a directory inside the context at `context_root`, symlinks already
/// resolved inside it) that hides what `ignore` excludes; `None` when nothing is hidden and
/// `source` can be bound as it is. Scratch directories go under `scratch`.
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
    hidden_entries(source, &rel, ignore, "", &mut hidden)?;
    if hidden.is_empty() {
        return Ok(None);
    }
    std::fs::create_dir_all(scratch)
        .map_err(|e| WorkerError::new(format!("cannot create {}: {e}", scratch.display())))?;
    let dir = tempfile::Builder::new()
        .prefix(&format!("context-{}-", std::process::id()))
        .tempdir_in(scratch)
        .map_err(|e| {
            WorkerError::new(format!(
                "cannot create a directory in {}: {e}",
                scratch.display()
            ))
        })?
        .keep();
    let mut view = FilteredContext {
        merged: dir.join("merged"),
        dir,
        mounted: false,
    };
    let whiteouts = view.dir.join("whiteouts");
    for d in [&whiteouts, &view.merged] {
        std::fs::create_dir(d)
            .map_err(|e| WorkerError::new(format!("cannot create {}: {e}", d.display())))?;
    }
    // Directories of the whiteout tree, each like its context counterpart.
    let mut dirs: BTreeMap<String, std::fs::Metadata> = BTreeMap::new();
    let meta_of = |rel: &str| {
        std::fs::symlink_metadata(source.join(rel)).map_err(|e| {
            WorkerError::new(format!("cannot stat {}: {e}", source.join(rel).display()))
        })
    };
    dirs.insert(String::new(), meta_of("")?);
    for path in &hidden {
        let mut parent = String::new();
        let parts: Vec<&str> = path.split('/').collect();
        for part in &parts[..parts.len() - 1] {
            parent = join(&parent, part);
            if !dirs.contains_key(&parent) {
                let meta = meta_of(&parent)?;
                let made = whiteouts.join(&parent);
                std::fs::create_dir(&made).map_err(|e| {
                    WorkerError::new(format!("cannot create {}: {e}", made.display()))
                })?;
                dirs.insert(parent.clone(), meta);
            }
        }
        let node = whiteouts.join(path);
        rustix::fs::mknodat(
            rustix::fs::CWD,
            &node,
            FileType::CharacterDevice,
            Mode::from_raw_mode(0o000),
            0,
        )
        .map_err(|e| {
            WorkerError::new(format!(
                "cannot create a whiteout at {}: {e}",
                node.display()
            ))
        })?;
    }
    // Owners and modes, then times innermost first (making children changed the parents').
    for (rel, meta) in &dirs {
        copy_dir_metadata(&whiteouts.join(rel), meta)?;
    }
    for (rel, meta) in dirs.iter().rev() {
        set_times(&whiteouts.join(rel), meta);
    }
    let options = std::ffi::CString::new(format!(
        "lowerdir={}:{}",
        escape(&whiteouts)?,
        escape(source)?
    ))
    .map_err(|_| WorkerError::new("a context path holds a NUL byte"))?;
    rustix::mount::mount(
        c"overlay",
        &view.merged,
        c"overlay",
        rustix::mount::MountFlags::RDONLY | rustix::mount::MountFlags::NODEV,
        Some(options.as_c_str()),
    )
    .map_err(|e| {
        WorkerError::new(format!(
            "cannot mount the build context at {} without its .dockerignored files \
             (an overlay over it failed: {e})",
            source.display()
        ))
    })?;
    view.mounted = true;
    Ok(Some(view))
}
