//! Cache index entries made durable off the build's critical path.
//!
//! A step's snapshot is committed (renamed into place) without a sync and its index entry is
//! written at once, marked with this boot's id ([`IndexEntry::boot`]): trusted during this boot
//! (without a crash, the data is in the page cache or on disk), a miss after a reboot. One
//! background thread syncs the filesystem (`syncfs` of the state root) for every batch of
//! entries queued since its last sync and then rewrites them unmarked: durable for good.
//!
//! Invariant: an unmarked entry is written only after a sync that covers its snapshot, so
//! after a power loss every trusted entry points at a complete snapshot. When the build ends
//! ([`DurableIndex::finish`]) a sync in progress completes, but the entries still queued are
//! left marked rather than making the user wait for the disk: they serve every later build of
//! this boot, and after a reboot they are misses that prune removes.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};

use crate::index::{current_boot, CacheIndex, IndexEntry};

/// One finished step's index writes.
#[derive(Debug)]
pub struct PendingEntry {
    pub key: String,
    pub entry: IndexEntry,
    /// The step's slot and the key parts it had (for explaining the next miss).
    pub slot: String,
    pub parts: Arc<BTreeMap<String, String>>,
}

/// The queue and its thread.
#[derive(Debug)]
pub struct DurableIndex {
    sender: Mutex<Option<mpsc::Sender<(String, IndexEntry)>>>,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
    finishing: Arc<AtomicBool>,
}

impl DurableIndex {
    /// Starts the syncing thread for the index under `state_root`.
    pub fn start(state_root: PathBuf, index: CacheIndex) -> DurableIndex {
        let (sender, receiver) = mpsc::channel::<(String, IndexEntry)>();
        let finishing = Arc::new(AtomicBool::new(false));
        let stop = finishing.clone();
        let thread = std::thread::Builder::new()
            .name("index".into())
            .spawn(move || sync_batches(&state_root, &index, &receiver, &stop))
            .ok();
        DurableIndex {
            sender: Mutex::new(Some(sender)),
            thread: Mutex::new(thread),
            finishing,
        }
    }

    /// Writes `pending` now, marked with this boot, and queues it for the sync that unmarks
    /// it. Without a boot id to mark with (or without the thread) it is synced and written
    /// unmarked here.
    pub fn submit(&self, pending: PendingEntry, state_root: &std::path::Path, index: &CacheIndex) {
        let _ = index.put_parts(&pending.slot, &pending.parts);
        let queued = !current_boot().is_empty()
            && index
                .put(
                    &pending.key,
                    &IndexEntry {
                        boot: Some(current_boot().to_string()),
                        ..pending.entry.clone()
                    },
                )
                .is_ok()
            && self
                .sender
                .lock()
                .ok()
                .and_then(|s| s.clone())
                .is_some_and(|s| s.send((pending.key.clone(), pending.entry.clone())).is_ok());
        if !queued && sync(state_root) {
            let _ = index.put(&pending.key, &pending.entry);
        }
    }

    /// Stops the thread: a sync in progress completes (and its batch is unmarked); what is
    /// still queued stays marked with this boot.
    pub fn finish(&self) {
        self.finishing.store(true, Ordering::SeqCst);
        if let Ok(mut sender) = self.sender.lock() {
            sender.take();
        }
        if let Some(thread) = self.thread.lock().ok().and_then(|mut t| t.take()) {
            let _ = thread.join();
        }
    }
}

impl Drop for DurableIndex {
    fn drop(&mut self) {
        self.finish();
    }
}

fn sync_batches(
    state_root: &std::path::Path,
    index: &CacheIndex,
    receiver: &mpsc::Receiver<(String, IndexEntry)>,
    finishing: &AtomicBool,
) {
    while let Ok(first) = receiver.recv() {
        if finishing.load(Ordering::SeqCst) {
            return;
        }
        let mut batch = vec![first];
        batch.extend(receiver.try_iter());
        // A failed sync unmarks nothing: the entries stay boot-scoped.
        if sync(state_root) {
            for (key, entry) in &batch {
                // Best effort: a marked entry is still right during this boot.
                let _ = index.put(key, entry);
            }
        }
    }
}

/// `syncfs` of the filesystem holding the state root (snapshot files, their directories and
/// the renames that committed them).
fn sync(state_root: &std::path::Path) -> bool {
    std::fs::File::open(state_root)
        .and_then(|dir| rustix::fs::syncfs(&dir).map_err(std::io::Error::from))
        .is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queued_entries_are_written_by_finish() {
        let dir = tempfile::tempdir().expect("tempdir");
        let index = CacheIndex::open(dir.path());
        let durable = DurableIndex::start(dir.path().to_path_buf(), CacheIndex::open(dir.path()));
        for i in 0..3 {
            durable.submit(
                PendingEntry {
                    key: format!("key{i}"),
                    entry: IndexEntry {
                        snapshot: Some(format!("snap{i}")),
                        created: 7,
                        boot: None,
                    },
                    slot: format!("slot{i}"),
                    parts: Arc::new(BTreeMap::from([("op".to_string(), "exec".to_string())])),
                },
                dir.path(),
                &index,
            );
        }
        durable.finish();
        for i in 0..3 {
            let entry = index.get(&format!("key{i}")).expect("written");
            assert_eq!(entry.snapshot.as_deref(), Some(format!("snap{i}").as_str()));
            assert_eq!(
                index.previous_parts(&format!("slot{i}")).expect("parts")["op"],
                "exec"
            );
        }
        // After finish, a submission is written at once (after its own sync).
        durable.submit(
            PendingEntry {
                key: "late".into(),
                entry: IndexEntry {
                    snapshot: None,
                    created: 1,
                    boot: None,
                },
                slot: "late".into(),
                parts: Arc::new(BTreeMap::new()),
            },
            dir.path(),
            &index,
        );
        assert!(index.get("late").is_some());
    }
}
