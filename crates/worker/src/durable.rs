//! Cache index entries made durable in batches, off the build's critical path.
//!
//! A step's snapshot is committed (renamed into place) at once and its result used by the
//! steps after it; the index entries that let *later builds* reuse it are handed to one
//! background thread, which syncs the filesystem (`syncfs` of the state root) and only then
//! writes them. One sync covers every commit queued since the last one, instead of one sync per
//! step on the critical path.
//!
//! Invariant: an entry is on disk only after a sync that covers its snapshot, so after a power
//! loss every entry points at a complete snapshot; a snapshot whose entry was not written yet
//! is an orphan that prune removes. [`DurableIndex::finish`] (called when the build ends, also
//! after Ctrl-C) drains the queue; a process killed before that loses only the reuse of the
//! steps it had just finished, never consistency.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};

use crate::index::{CacheIndex, IndexEntry};

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
    sender: Mutex<Option<mpsc::Sender<PendingEntry>>>,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl DurableIndex {
    /// Starts the writer thread for the index under `state_root`.
    pub fn start(state_root: PathBuf, index: CacheIndex) -> DurableIndex {
        let (sender, receiver) = mpsc::channel::<PendingEntry>();
        let thread = std::thread::Builder::new()
            .name("index".into())
            .spawn(move || write_batches(&state_root, &index, &receiver))
            .ok();
        DurableIndex {
            sender: Mutex::new(Some(sender)),
            thread: Mutex::new(thread),
        }
    }

    /// Queues `pending`; written after the next sync. Without a thread (it could not be
    /// started) the entry is written here, after a sync of its own.
    pub fn submit(&self, pending: PendingEntry, state_root: &std::path::Path, index: &CacheIndex) {
        let rejected = match self.sender.lock().ok().and_then(|s| s.clone()) {
            Some(sender) => sender.send(pending).err().map(|e| e.0),
            None => Some(pending),
        };
        if let Some(pending) = rejected {
            if sync(state_root) {
                write(index, &pending);
            }
        }
    }

    /// Writes everything queued and stops the thread.
    pub fn finish(&self) {
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

fn write_batches(
    state_root: &std::path::Path,
    index: &CacheIndex,
    receiver: &mpsc::Receiver<PendingEntry>,
) {
    while let Ok(first) = receiver.recv() {
        let mut batch = vec![first];
        batch.extend(receiver.try_iter());
        // A failed sync writes nothing: the snapshots stay orphans for prune.
        if sync(state_root) {
            for pending in &batch {
                write(index, pending);
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

/// Best effort: an entry that cannot be written is a cache miss next time, never a wrong hit.
fn write(index: &CacheIndex, pending: &PendingEntry) {
    if index.put(&pending.key, &pending.entry).is_ok() {
        let _ = index.put_parts(&pending.slot, &pending.parts);
    }
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
