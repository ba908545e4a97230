//! Disk usage and pruning of a state root.
//!
//! Locking: every build holds `locks/gc.lock` shared for its whole life ([`BuildLock`]); prune
//! holds it exclusive, so it never deletes what a running build uses and builds never wait on
//! each other.
//!
//! What prune keeps: the cache entries it does not select (by `--all`, `--filter until=`,
//! `--keep-storage`, least recently used first), every snapshot such an entry reaches through its parents,
//! every blob an image record of the local store names (manifest, config, layers) or a kept
//! snapshot's memoised layer names. Everything else of the cache goes: unselected snapshots
//! (base-image layers are unpacked again from their blobs when needed), unreferenced blobs,
//! views and ingest files of dead processes, and with `--all` the cache-mount directories.
//! A layer of a kept image that is only a recipe (rbuild-snapshotter's `LazyLayer`) is made
//! into its blob before the snapshot it names is removed; recipes no image names go.

use std::collections::{HashMap, HashSet};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use rbuild_digest::Digest;
use rbuild_snapshotter::content::ContentStore;
use rbuild_snapshotter::images::ImageStore;
use rbuild_snapshotter::snapshots::{SnapshotId, Snapshotter};
use rustix::fs::FlockOperation;

use crate::disk_usage::{disk_usage, freed_by_removing, InodeLedger};
use crate::index::{CacheIndex, IndexEntry};

/// A held GC lock (shared for builds, exclusive for prune); released on drop.
#[derive(Debug)]
pub struct BuildLock {
    _fd: OwnedFd,
}

fn lock(state_root: &Path, operation: FlockOperation) -> std::io::Result<BuildLock> {
    let dir = state_root.join("locks");
    std::fs::create_dir_all(&dir)?;
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(dir.join("gc.lock"))?;
    let fd = OwnedFd::from(file);
    rustix::fs::flock(&fd, operation)?;
    Ok(BuildLock { _fd: fd })
}

/// The lock a build holds while it runs.
pub fn build_lock(state_root: &Path) -> std::io::Result<BuildLock> {
    lock(state_root, FlockOperation::LockShared)
}

/// Prune's lock: `Ok(None)` when a build holds the lock and `wait` is false.
pub fn prune_lock(state_root: &Path, wait: bool) -> std::io::Result<Option<BuildLock>> {
    let op = if wait {
        FlockOperation::LockExclusive
    } else {
        FlockOperation::NonBlockingLockExclusive
    };
    match lock(state_root, op) {
        Ok(l) => Ok(Some(l)),
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => Ok(None),
        Err(e) => Err(e),
    }
}

/// What `rbuild du` shows.
#[derive(Debug, Default)]
pub struct Usage {
    pub cache_entries: usize,
    pub snapshots: usize,
    pub snapshot_bytes: u64,
    pub blobs: usize,
    pub blob_bytes: u64,
    pub cache_mount_bytes: u64,
    pub images: usize,
}

pub fn usage(state_root: &Path) -> Result<Usage, String> {
    let snapshots = Snapshotter::open(state_root).map_err(|e| e.to_string())?;
    let content = ContentStore::open(state_root).map_err(|e| e.to_string())?;
    let images = ImageStore::open(state_root).map_err(|e| e.to_string())?;
    let ids = snapshots.list().map_err(|e| e.to_string())?;
    let blobs = content.list().map_err(|e| e.to_string())?;
    // Snapshots share the files a COPY hard-linked: each counted once.
    let mut ledger = InodeLedger::default();
    Ok(Usage {
        cache_entries: CacheIndex::open(state_root).entries().len(),
        snapshots: ids.len(),
        snapshot_bytes: ids
            .iter()
            .map(|id| ledger.add_tree(&snapshots.layer_dir(id)))
            .sum(),
        blobs: blobs.len(),
        blob_bytes: blobs.iter().map(|b| b.size).sum(),
        cache_mount_bytes: disk_usage(&state_root.join("cache-mounts-v1")),
        images: images.list().map(|l| l.len()).unwrap_or(0),
    })
}

/// What to prune.
#[derive(Debug, Clone, Default)]
pub struct PruneOptions {
    /// Every cache entry and the cache mounts.
    pub all: bool,
    /// Only cache entries no build has used for longer than this (`--filter until=`).
    pub unused_for: Option<Duration>,
    /// Delete the least recently used entries until the kept snapshots take at most this many
    /// bytes.
    pub keep_storage: Option<u64>,
}

/// What prune removed.
#[derive(Debug, Default)]
pub struct PruneReport {
    pub entries: usize,
    pub snapshots: usize,
    pub blobs: usize,
    pub bytes: u64,
    pub stale: usize,
    /// Recipes of kept images' layers whose blobs could not be made: their snapshots were
    /// kept (for now), or the recipe was dropped when it never can be (why, for each).
    pub kept_for_images: Vec<String>,
}

/// Adds the snapshot `entry` names and its ancestors to `into` (up to one already there).
fn entry_chain(snapshots: &Snapshotter, entry: &IndexEntry, into: &mut HashSet<String>) {
    let mut next = entry
        .snapshot
        .as_ref()
        .and_then(|s| SnapshotId::new(s.clone()).ok());
    while let Some(id) = next {
        if !into.insert(id.as_str().to_string()) {
            return;
        }
        next = snapshots.parent(&id).ok().flatten();
    }
}

/// Prunes the state root; the caller holds [`prune_lock`].
pub fn prune(
    state_root: &Path,
    options: &PruneOptions,
    _lock: &BuildLock,
) -> Result<PruneReport, String> {
    let snapshots = Snapshotter::open(state_root).map_err(|e| e.to_string())?;
    let content = ContentStore::open(state_root).map_err(|e| e.to_string())?;
    let images = ImageStore::open(state_root).map_err(|e| e.to_string())?;
    let index = CacheIndex::open(state_root);
    let mut report = PruneReport {
        stale: snapshots.remove_stale().map_err(|e| e.to_string())?,
        ..PruneReport::default()
    };
    // Layer unpacking, stdin contexts and filtered context mounts of killed builds
    // (`<what>-<pid>-<random>`).
    report.stale += remove_dead_pid_dirs(&state_root.join("snapshots-v1/unpack"), "layer-");
    report.stale += remove_dead_pid_dirs(state_root, "context-");
    report.stale +=
        remove_dead_pid_dirs(&crate::context_mount::scratch_dir(state_root), "context-");
    let _ = content.clean_ingest(Duration::from_secs(3600));

    let now = SystemTime::now();
    let mut records = index.entries();
    // Most recently used first: `--keep-storage` spends its budget in this order.
    records.sort_by_key(|r| std::cmp::Reverse(r.last_used));
    let mut kept = Vec::new();
    for record in records {
        // Entries of an earlier boot that were never synced may point at truncated snapshots.
        let selected = options.all
            || !record.entry.trusted()
            || options.unused_for.is_some_and(|age| {
                now.duration_since(record.last_used)
                    .is_ok_and(|idle| idle > age)
            });
        if selected {
            index.remove(&record.key);
            report.entries += 1;
        } else {
            kept.push(record);
        }
    }
    if let Some(limit) = options.keep_storage {
        // The most recently used entries stay while their snapshots fit; from the first that
        // does not, every less recently used one goes (as BuildKit removes the least recently
        // used records until the rest fits). A file linked from several snapshots is paid once.
        let mut used = 0u64;
        let mut budgeted = HashSet::new();
        let mut ledger = InodeLedger::default();
        let mut full = false;
        let mut still = Vec::new();
        for record in kept {
            if !full {
                let mut chain = HashSet::new();
                entry_chain(&snapshots, &record.entry, &mut chain);
                // Counted into the ledger at once: nothing is budgeted after a refusal.
                let extra: u64 = chain
                    .iter()
                    .filter(|id| !budgeted.contains(*id))
                    .filter_map(|id| SnapshotId::new(id.clone()).ok())
                    .map(|id| ledger.add_tree(&snapshots.layer_dir(&id)))
                    .sum();
                full = used + extra > limit;
                if !full {
                    used += extra;
                    budgeted.extend(chain);
                    still.push(record);
                    continue;
                }
            }
            index.remove(&record.key);
            report.entries += 1;
        }
        kept = still;
    }

    let mut keep_snapshots = HashSet::new();
    for record in &kept {
        entry_chain(&snapshots, &record.entry, &mut keep_snapshots);
    }
    let mut keep_blobs: HashSet<String> = HashSet::new();
    for record in images.list().map_err(|e| e.to_string())? {
        keep_blobs.insert(record.manifest.to_string());
        keep_blobs.insert(record.config.to_string());
        if let Ok(bytes) = std::fs::read(content.blob_path(&record.manifest)) {
            if let Ok((config, layers)) = rbuild_oci::import::parse_manifest(&bytes) {
                keep_blobs.insert(config.digest.to_string());
                keep_blobs.extend(layers.iter().map(|l| l.digest.to_string()));
            }
        }
    }
    // Layers of kept images that exist only as recipes become blobs before their snapshots go.
    let mut recipes: HashMap<String, Vec<Digest>> = HashMap::new();
    for (digest, recipe) in content.lazy_layers() {
        if keep_blobs.contains(&digest.to_string()) {
            recipes.entry(recipe.snapshot).or_default().push(digest);
        } else {
            content.delete_lazy(&digest);
        }
    }
    for id in snapshots.list().map_err(|e| e.to_string())? {
        if !keep_snapshots.contains(id.as_str()) {
            // A blob that cannot be made for now (a full disk, say) keeps its snapshot: the
            // image stays usable, and the next prune tries again. A recipe that can never be
            // made (its snapshot gives other bytes) is dropped.
            let mut failed = Vec::new();
            for digest in recipes.get(id.as_str()).into_iter().flatten() {
                match content.materialize(digest) {
                    Ok(_) => {}
                    Err(e @ rbuild_snapshotter::content::ContentError::LazyLayer { .. }) => {
                        content.delete_lazy(digest);
                        report.kept_for_images.push(format!("dropped: {e}"));
                    }
                    Err(e) => failed.push(e.to_string()),
                }
            }
            if !failed.is_empty() {
                report.kept_for_images.extend(failed);
                continue;
            }
        }
        if keep_snapshots.contains(id.as_str()) {
            let dir = snapshots.layer_dir(&id);
            for memo in memo_blobs(dir.parent().unwrap_or(Path::new("/"))) {
                keep_blobs.insert(memo);
            }
            continue;
        }
        report.bytes += freed_by_removing(&snapshots.layer_dir(&id));
        if snapshots.remove(&id).map_err(|e| e.to_string())? {
            report.snapshots += 1;
        }
    }
    for blob in content.list().map_err(|e| e.to_string())? {
        if !keep_blobs.contains(&blob.digest.to_string())
            && content.delete(&blob.digest).map_err(|e| e.to_string())?
        {
            report.blobs += 1;
            report.bytes += blob.size;
        }
    }
    if options.all {
        report.bytes += remove_cache_mounts(&state_root.join("cache-mounts-v1"));
    }
    Ok(report)
}

/// Removes the `<prefix><pid>-*` directories in `dir` whose process is gone.
fn remove_dead_pid_dirs(dir: &Path, prefix: &str) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    let mut removed = 0;
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(pid) = name
            .strip_prefix(prefix)
            .and_then(|r| r.split('-').next())
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        if !Path::new("/proc").join(pid.to_string()).exists()
            && std::fs::remove_dir_all(entry.path()).is_ok()
        {
            removed += 1;
        }
    }
    removed
}

/// Blob digests named by the layer memos of a snapshot directory.
fn memo_blobs(dir: &Path) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("layer-"))
        .filter_map(|e| std::fs::read(e.path()).ok())
        .filter_map(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
        .filter_map(|v| v["digest"].as_str().map(str::to_string))
        .filter(|d| d.parse::<Digest>().is_ok())
        .collect()
}

/// Removes every cache-mount instance no step holds (an instance in use keeps its lock).
fn remove_cache_mounts(dir: &Path) -> u64 {
    let mut freed = 0;
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    for entry in entries.flatten() {
        let path: PathBuf = entry.path();
        let Ok(file) = std::fs::OpenOptions::new()
            .write(true)
            .open(path.join(".lock"))
        else {
            continue;
        };
        let fd = OwnedFd::from(file);
        if rustix::fs::flock(&fd, FlockOperation::NonBlockingLockExclusive).is_ok() {
            freed += freed_by_removing(&path);
            let _ = std::fs::remove_dir_all(&path);
        }
    }
    freed
}
