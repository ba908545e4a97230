//! Snapshots: committed filesystem layers and the views builds work in.
//!
//! ```text
//! <state root>/snapshots-v1/
//!   committed/<id>/fs        one layer, in overlayfs form (whiteouts are 0/0 char devices,
//!                            opaque dirs carry trusted.overlay.opaque=y): an overlay lowerdir
//!   committed/<id>/parent    the parent snapshot's id (absent for a bottom layer)
//!   active/<pid>-<random>/   a view in use: upper/ work/ merged/
//! ```
//! A committed snapshot never changes. [`Snapshotter::prepare`] gives a [`View`] of a chain: an
//! overlayfs mount whose lowerdirs are the chain (top first) over a fresh upperdir; the upperdir
//! is exactly the step's diff, read by the layer writer without walking the lowers. A view with
//! no parent needs no mount at all: its root *is* its upperdir (the plain-directory backend).
//!
//! **Long chains.** The classic `mount(2)` takes the options in one page (about 40 lowerdir
//! paths of this layout). Longer chains are mounted with the new mount API, one `lowerdir+`
//! parameter per layer (Linux 6.8+), up to overlayfs' limit of 500 lowers. (Stacking read-only
//! group overlays instead would be wrong: a read-only overlay does not pass its whiteouts and
//! opaque markers up, so deleted files would reappear.)
//!
//! **Cleanup.** On commit the view is unmounted strictly: if a process still uses it the commit
//! fails (EBUSY) rather than let that process write into a committed layer. On drop (error
//! paths, cancellation: drop runs during unwinding) the mount is detached lazily and the view's
//! directory removed. Not yet done: after a `kill -9`, views and their mounts stay until a
//! prune; the planned private mount namespace at start-up (issue 5) will make the mounts vanish
//! with the process.
//!
//! **Crash safety.** Commit syncs the layer's filesystem (`syncfs`), builds `committed/<id>`
//! under the view's `commit/` and renames it into place: a snapshot is there complete or not at
//! all. `commit_unsynced` leaves the sync to the caller (the worker batches one sync for many
//! commits before it records them in the cache index). Two processes committing the same id race harmlessly: the first rename wins and the
//! loser's copy is discarded (same content by construction: ids are cache keys).

mod mounts;
#[cfg(test)]
mod tests;

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use mounts::{mount_overlay, unmount_detach, unmount_strict, OverlayOptions};

/// Why a snapshot operation failed.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error("Invalid snapshot id `{0}` (expected 1-128 characters of [A-Za-z0-9_.-])")]
    InvalidId(String),
    #[error("Snapshot `{0}` does not exist")]
    NotFound(String),
    #[error("Snapshot chain of `{0}` is corrupt: {1}")]
    Corrupt(String, String),
    #[error("Failed to {action} `{}`", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("Failed to mount the overlay at `{}` (is overlayfs available and are we root?)", target.display())]
    Mount {
        target: PathBuf,
        #[source]
        source: io::Error,
    },
}

fn io_err<'a>(
    action: &'static str,
    path: &'a Path,
) -> impl FnOnce(io::Error) -> SnapshotError + 'a {
    move |source| SnapshotError::Io {
        action,
        path: path.to_path_buf(),
        source,
    }
}

/// A snapshot id: 1-128 characters of `[A-Za-z0-9_.-]`, not `.` or `..` (a safe directory name).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SnapshotId(String);

impl SnapshotId {
    pub fn new(id: impl Into<String>) -> Result<Self, SnapshotError> {
        let id = id.into();
        let valid = !id.is_empty()
            && id.len() <= 128
            && id != "."
            && id != ".."
            && id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b));
        if valid {
            Ok(SnapshotId(id))
        } else {
            Err(SnapshotError::InvalidId(id))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The snapshot store under a state root.
#[derive(Debug)]
pub struct Snapshotter {
    committed: PathBuf,
    active: PathBuf,
}

/// Distinguishes removals made by this process; the pid distinguishes processes.
static NEXT_REMOVAL: AtomicU64 = AtomicU64::new(0);

impl Snapshotter {
    /// Opens (creating if needed) `<state_root>/snapshots-v1`.
    pub fn open(state_root: &Path) -> Result<Self, SnapshotError> {
        let root = state_root.join("snapshots-v1");
        let committed = root.join("committed");
        let active = root.join("active");
        for dir in [&committed, &active] {
            fs::create_dir_all(dir).map_err(io_err("create", dir))?;
        }
        Ok(Snapshotter { committed, active })
    }

    fn dir(&self, id: &SnapshotId) -> PathBuf {
        self.committed.join(id.as_str())
    }

    /// Whether `id` is committed.
    pub fn exists(&self, id: &SnapshotId) -> bool {
        self.dir(id).join("fs").is_dir()
    }

    /// The layer directory of a committed snapshot.
    pub fn layer_dir(&self, id: &SnapshotId) -> PathBuf {
        self.dir(id).join("fs")
    }

    /// The parent of a committed snapshot.
    pub fn parent(&self, id: &SnapshotId) -> Result<Option<SnapshotId>, SnapshotError> {
        if !self.exists(id) {
            return Err(SnapshotError::NotFound(id.0.clone()));
        }
        let path = self.dir(id).join("parent");
        match fs::read_to_string(&path) {
            Ok(text) => Ok(Some(SnapshotId::new(text.trim())?)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_err("read", &path)(e)),
        }
    }

    /// The layer directories of `id` and its ancestors, top first.
    pub fn chain(&self, id: &SnapshotId) -> Result<Vec<PathBuf>, SnapshotError> {
        let mut out = Vec::new();
        let mut next = Some(id.clone());
        while let Some(current) = next {
            if out.len() > 10_000 {
                return Err(SnapshotError::Corrupt(id.0.clone(), "parent cycle".into()));
            }
            out.push(self.layer_dir(&current));
            next = self.parent(&current)?;
        }
        Ok(out)
    }

    /// A writable view of `parent` (or of an empty tree).
    pub fn prepare(&self, parent: Option<&SnapshotId>) -> Result<View, SnapshotError> {
        // A fresh, unique directory: a name reused after a crash can never collide.
        let dir = tempfile::Builder::new()
            .prefix(&format!("{}-", std::process::id()))
            .tempdir_in(&self.active)
            .map_err(io_err("create a view in", &self.active))?
            .keep();
        let mut view = View {
            dir: dir.clone(),
            upper: dir.join("upper"),
            root: dir.join("upper"),
            mounts: Vec::new(),
        };
        fs::create_dir(&view.upper).map_err(io_err("create", &view.upper))?;
        let Some(parent) = parent else {
            return Ok(view);
        };
        let lowers = self.chain(parent)?;
        let work = dir.join("work");
        let merged = dir.join("merged");
        for d in [&work, &merged] {
            fs::create_dir(d).map_err(io_err("create", d))?;
        }
        let options = OverlayOptions {
            lowers: &lowers,
            upper: &view.upper,
            work: &work,
            volatile: true,
        };
        mount_overlay(&merged, &options).map_err(|source| SnapshotError::Mount {
            target: merged.clone(),
            source,
        })?;
        view.mounts.push(merged.clone());
        view.root = merged;
        Ok(view)
    }

    /// Commits a view as snapshot `id` with `parent`, durably (synced before it is renamed into
    /// place). Idempotent: an existing `id` is kept.
    pub fn commit(
        &self,
        view: View,
        id: &SnapshotId,
        parent: Option<&SnapshotId>,
    ) -> Result<(), SnapshotError> {
        self.commit_with(view, id, parent, true)
    }

    /// [`Snapshotter::commit`] without its syncs: the snapshot is complete for every reader at
    /// once (a rename), but survives a power loss only after a later `syncfs` of this
    /// filesystem, which the caller must do before it records the snapshot anywhere durable.
    pub fn commit_unsynced(
        &self,
        view: View,
        id: &SnapshotId,
        parent: Option<&SnapshotId>,
    ) -> Result<(), SnapshotError> {
        self.commit_with(view, id, parent, false)
    }

    fn commit_with(
        &self,
        mut view: View,
        id: &SnapshotId,
        parent: Option<&SnapshotId>,
        durable: bool,
    ) -> Result<(), SnapshotError> {
        view.unmount_all(unmount_strict)?;
        if durable {
            let upper = fs::File::open(&view.upper).map_err(io_err("open", &view.upper))?;
            rustix::fs::syncfs(&upper).map_err(|e| io_err("sync", &view.upper)(e.into()))?;
        }
        let staging = view.dir.join("commit");
        fs::create_dir(&staging).map_err(io_err("create", &staging))?;
        let fs_dir = staging.join("fs");
        fs::rename(&view.upper, &fs_dir).map_err(io_err("move", &view.upper))?;
        if let Some(parent) = parent {
            let path = staging.join("parent");
            fs::write(&path, parent.as_str()).map_err(io_err("write", &path))?;
        }
        if durable {
            sync_dir(&staging)?;
        }
        let target = self.dir(id);
        match fs::rename(&staging, &target) {
            Ok(()) if durable => sync_dir(&self.committed),
            Ok(()) => Ok(()),
            // Another build committed the same id first: keep theirs.
            Err(_) if self.exists(id) => Ok(()),
            Err(e) => Err(io_err("commit", &target)(e)),
        }
    }

    /// Commits an already populated directory (e.g. an applied layer in overlay form) as `id`.
    /// The directory is moved, not copied; it must be on the same filesystem as the state root.
    pub fn commit_dir(
        &self,
        dir: &Path,
        id: &SnapshotId,
        parent: Option<&SnapshotId>,
    ) -> Result<(), SnapshotError> {
        let view = self.prepare(None)?;
        fs::remove_dir(&view.upper).map_err(io_err("remove", &view.upper))?;
        fs::rename(dir, &view.upper).map_err(io_err("move", dir))?;
        self.commit(view, id, parent)
    }

    /// Every committed snapshot.
    pub fn list(&self) -> Result<Vec<SnapshotId>, SnapshotError> {
        let entries = fs::read_dir(&self.committed).map_err(io_err("read", &self.committed))?;
        Ok(entries
            .flatten()
            .filter_map(|e| SnapshotId::new(e.file_name().to_string_lossy().into_owned()).ok())
            .filter(|id| self.exists(id))
            .collect())
    }

    /// Removes what crashed processes left under `active/`: views and half-made commits whose
    /// owner (the pid in the name) is gone. Returns how many were removed.
    pub fn remove_stale(&self) -> Result<usize, SnapshotError> {
        let entries = fs::read_dir(&self.active).map_err(io_err("read", &self.active))?;
        let mut removed = 0;
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let Some(pid) = name.split('-').next().and_then(|p| p.parse::<u32>().ok()) else {
                continue;
            };
            if Path::new("/proc").join(pid.to_string()).exists() {
                continue;
            }
            let path = entry.path();
            // A view of a dead process may still be mounted (if it ran outside a private mount
            // namespace): detach what is below it, then remove without crossing mounts.
            for target in mounts_below(&path) {
                let _ =
                    rustix::mount::unmount(target.as_str(), rustix::mount::UnmountFlags::DETACH);
            }
            crate::apply::remove_tree(&path).map_err(io_err("remove", &path))?;
            removed += 1;
        }
        Ok(removed)
    }

    /// Deletes a committed snapshot. Callers (GC) make sure nothing uses it.
    pub fn remove(&self, id: &SnapshotId) -> Result<bool, SnapshotError> {
        let dir = self.dir(id);
        if !dir.exists() {
            return Ok(false);
        }
        // Rename first so a crash mid-delete never leaves a half snapshot under its id.
        let n = NEXT_REMOVAL.fetch_add(1, Ordering::Relaxed);
        let doomed = self.active.join(format!("{}-{n}-rm", std::process::id()));
        fs::rename(&dir, &doomed).map_err(io_err("remove", &dir))?;
        crate::apply::remove_tree(&doomed).map_err(io_err("remove", &doomed))?;
        Ok(true)
    }
}

/// Mount points at or below `dir`, deepest first.
fn mounts_below(dir: &Path) -> Vec<String> {
    let prefix = dir.to_string_lossy().into_owned();
    let mut targets: Vec<String> = fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .filter(|t| t.starts_with(&prefix))
        .map(str::to_string)
        .collect();
    targets.sort_by_key(|t| std::cmp::Reverse(t.len()));
    targets
}

fn sync_dir(dir: &Path) -> Result<(), SnapshotError> {
    crate::sync_dir(dir).map_err(io_err("sync", dir))
}

/// A writable view of a snapshot chain. Unmounted and removed on drop.
#[derive(Debug)]
pub struct View {
    dir: PathBuf,
    upper: PathBuf,
    root: PathBuf,
    /// Mounted targets, in mount order (unmounted in reverse).
    mounts: Vec<PathBuf>,
}

impl View {
    /// The root filesystem the step sees.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The upperdir: everything the step changed, in overlayfs form.
    pub fn upper(&self) -> &Path {
        &self.upper
    }

    fn unmount_all(&mut self, unmount: fn(&Path) -> io::Result<()>) -> Result<(), SnapshotError> {
        while let Some(target) = self.mounts.pop() {
            if let Err(source) = unmount(&target) {
                self.mounts.push(target.clone());
                return Err(io_err("unmount", &target)(source));
            }
        }
        Ok(())
    }
}

impl Drop for View {
    fn drop(&mut self) {
        // Only remove the directory once nothing is mounted below it: removing through a live
        // overlay would write whiteouts instead of freeing space.
        if self.unmount_all(unmount_detach).is_ok() {
            // Never across a mount: anything still mounted inside stays, rather than being deleted.
            let _ = crate::apply::remove_tree(&self.dir);
        }
    }
}
