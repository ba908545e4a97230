//! Cache index entries made durable off the build's critical path.
//!
//! A step's snapshot is committed (renamed into place) without a sync and its index entry is
//! written at once, marked with this boot's id ([`IndexEntry::boot`]): trusted during this boot
//! (without a crash, the data is in the page cache or on disk), a miss after a reboot. The index
//! thread makes entries durable: one `syncfs` of the state root for everything queued, then the
//! entries rewritten unmarked.
//!
//! It lets an entry settle for [`SETTLE`] first, so a build that ends sooner neither waits for
//! the disk nor competes with it (a sync of a large COPY's snapshot took half a second here);
//! the kernel's own writeback flushes the data meanwhile. What is still queued when the build
//! ends ([`DurableIndex::finish`]; a sync in progress completes first) goes to a journal,
//! `cache-v1/pending/<pid>.json`. The index thread of the next rbuild process adopts the
//! journals of ended processes and, once their entries have settled (counted from when the
//! journal was written), syncs and unmarks them: the next build pays a sync that has little
//! left to write. Journals of an earlier boot are dropped (their
//! entries are misses, and prune removes them).
//!
//! Invariants: an entry is written unmarked only after a sync that began after its snapshot was
//! committed (entries are queued, and journaled, only once written). An adopted entry is
//! unmarked only while the index still holds it as journaled: a build may have replaced it, and
//! prune (which never runs beside a build: gc lock) may have removed it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::index::{current_boot, CacheIndex, IndexEntry};

/// How long an entry waits before the sync that makes it durable.
pub const SETTLE: Duration = Duration::from_secs(2);

/// One finished step's index writes.
#[derive(Debug)]
pub struct PendingEntry {
    pub key: String,
    pub entry: IndexEntry,
    /// The step's slot and the key parts it had (for explaining the next miss).
    pub slot: String,
    pub parts: Arc<BTreeMap<String, String>>,
}

/// An entry waiting for its sync.
#[derive(Debug)]
struct Queued {
    since: Instant,
    key: String,
    entry: IndexEntry,
    /// From another process's journal: unmarked only if the index still holds it.
    adopted: bool,
}

/// The queue and its thread.
#[derive(Debug)]
pub struct DurableIndex {
    sender: Mutex<Option<mpsc::Sender<(String, IndexEntry)>>>,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
    finishing: Arc<AtomicBool>,
}

impl DurableIndex {
    /// Starts the index thread for the index under `state_root` (it adopts the journals of
    /// ended processes first).
    pub fn start(state_root: PathBuf, index: CacheIndex) -> DurableIndex {
        Self::start_with(state_root, index, SETTLE)
    }

    fn start_with(state_root: PathBuf, index: CacheIndex, settle: Duration) -> DurableIndex {
        let (sender, receiver) = mpsc::channel::<(String, IndexEntry)>();
        let finishing = Arc::new(AtomicBool::new(false));
        let stop = finishing.clone();
        let thread = std::thread::Builder::new()
            .name("index".into())
            .spawn(move || {
                let journals = journal_dir(&state_root);
                let queued = adopt_journals(&journals);
                run(&state_root, &index, &receiver, &stop, queued, settle);
            })
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
    pub fn submit(&self, pending: PendingEntry, state_root: &Path, index: &CacheIndex) {
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
    /// still queued goes to this process's journal, for the next process to make durable.
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

fn journal_dir(state_root: &Path) -> PathBuf {
    state_root.join("cache-v1/pending")
}

/// The thread: syncs once the oldest queued entry has settled, until the build finishes;
/// then journals what is left.
fn run(
    state_root: &Path,
    index: &CacheIndex,
    receiver: &mpsc::Receiver<(String, IndexEntry)>,
    finishing: &AtomicBool,
    mut queued: Vec<Queued>,
    settle: Duration,
) {
    loop {
        let wait = queued.first().map_or(Duration::from_secs(3600), |q| {
            settle.saturating_sub(q.since.elapsed())
        });
        match receiver.recv_timeout(wait) {
            Ok((key, entry)) => queued.push(Queued {
                since: Instant::now(),
                key,
                entry,
                adopted: false,
            }),
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
        if finishing.load(Ordering::SeqCst) {
            break;
        }
        if queued.first().is_some_and(|q| q.since.elapsed() >= settle) {
            // One sync covers every snapshot committed before it began: the whole queue.
            let batch = std::mem::take(&mut queued);
            if sync(state_root) {
                unmark(index, &batch);
            } else {
                // A failed sync unmarks nothing: the entries stay boot-scoped, and queued.
                queued = batch;
            }
        }
    }
    queued.extend(receiver.try_iter().map(|(key, entry)| Queued {
        since: Instant::now(),
        key,
        entry,
        adopted: false,
    }));
    write_journal(&journal_dir(state_root), &queued);
}

/// Rewrites the synced entries unmarked (best effort: a marked entry is still right during
/// this boot).
fn unmark(index: &CacheIndex, batch: &[Queued]) {
    for q in batch {
        if q.adopted {
            let marked = Some(current_boot().to_string());
            let still = index
                .get(&q.key)
                .is_some_and(|now| now.snapshot == q.entry.snapshot && now.boot == marked);
            if !still {
                continue;
            }
        }
        let _ = index.put(&q.key, &q.entry);
    }
}

/// One journal: the entries of one process (unmarked form), with the boot they belong to.
#[derive(serde::Serialize, serde::Deserialize)]
struct Journal {
    boot: String,
    entries: Vec<(String, IndexEntry)>,
}

/// Writes this process's journal (temp file + rename), if anything is left to make durable.
fn write_journal(dir: &Path, queued: &[Queued]) {
    if queued.is_empty() || current_boot().is_empty() {
        return;
    }
    let journal = Journal {
        boot: current_boot().to_string(),
        entries: queued
            .iter()
            .map(|q| (q.key.clone(), q.entry.clone()))
            .collect(),
    };
    let Ok(bytes) = serde_json::to_vec(&journal) else {
        return;
    };
    let path = dir.join(format!("{}.json", std::process::id()));
    // Best effort: without the journal the entries stay boot-scoped (misses after a reboot).
    let _ = std::fs::create_dir_all(dir).and_then(|()| crate::fsutil::replace_file(&path, &bytes));
}

/// Takes the journals of processes that have ended (a live one's may still grow): their
/// entries of this boot, queued as adopted since the journal was written (so those of a build
/// that ended long enough ago are synced at once, and a run of short builds does not pass them
/// on for ever); the files are removed.
fn adopt_journals(dir: &Path) -> Vec<Queued> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut queued = Vec::new();
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|n| n.strip_suffix(".json"))
            .and_then(|p| p.parse::<i32>().ok())
        else {
            continue;
        };
        let alive = pid == std::process::id() as i32
            || rustix::process::Pid::from_raw(pid)
                .is_some_and(|pid| rustix::process::test_kill_process(pid).is_ok());
        if alive {
            continue;
        }
        let written = entry
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| std::time::SystemTime::now().duration_since(t).ok())
            .unwrap_or_default()
            .min(Duration::from_secs(3600));
        let since = Instant::now()
            .checked_sub(written)
            .unwrap_or_else(Instant::now);
        let journal = std::fs::read(entry.path())
            .ok()
            .and_then(|bytes| serde_json::from_slice::<Journal>(&bytes).ok());
        let _ = std::fs::remove_file(entry.path());
        let Some(journal) = journal.filter(|j| j.boot == current_boot()) else {
            continue;
        };
        queued.extend(journal.entries.into_iter().map(|(key, entry)| Queued {
            since,
            key,
            entry,
            adopted: true,
        }));
    }
    queued
}

/// `syncfs` of the filesystem holding the state root (snapshot files, their directories and
/// the renames that committed them).
fn sync(state_root: &Path) -> bool {
    crate::fsutil::sync_filesystem(state_root).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pending(key: &str, snapshot: &str) -> PendingEntry {
        PendingEntry {
            key: key.into(),
            entry: IndexEntry {
                snapshot: Some(snapshot.into()),
                created: 7,
                boot: None,
            },
            slot: format!("slot-{key}"),
            parts: Arc::new(BTreeMap::new()),
        }
    }

    fn boot_of(index: &CacheIndex, key: &str) -> Option<Option<String>> {
        index.get(key).map(|e| e.boot)
    }

    /// Polls until `done` or 10 s.
    fn eventually(mut done: impl FnMut() -> bool) -> bool {
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(10) {
            if done() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    #[test]
    fn settled_entries_are_synced_and_unmarked_during_the_build() {
        let dir = tempfile::tempdir().expect("tempdir");
        let index = CacheIndex::open(dir.path());
        let durable = DurableIndex::start_with(
            dir.path().to_path_buf(),
            CacheIndex::open(dir.path()),
            Duration::ZERO,
        );
        durable.submit(pending("k", "snap"), dir.path(), &index);
        assert!(
            eventually(|| boot_of(&index, "k") == Some(None)),
            "never unmarked"
        );
        durable.finish();
        assert!(
            !journal_dir(dir.path()).exists()
                || std::fs::read_dir(journal_dir(dir.path()))
                    .expect("dir")
                    .count()
                    == 0
        );
    }

    #[test]
    fn what_a_short_build_leaves_marked_the_next_process_makes_durable() {
        let dir = tempfile::tempdir().expect("tempdir");
        let index = CacheIndex::open(dir.path());
        let durable = DurableIndex::start(dir.path().to_path_buf(), CacheIndex::open(dir.path()));
        for (key, snapshot) in [("kept", "a"), ("replaced", "b"), ("pruned", "c")] {
            durable.submit(pending(key, snapshot), dir.path(), &index);
        }
        // Ended before the entries settled: no sync waited for, the entries still marked.
        durable.finish();
        for key in ["kept", "replaced", "pruned"] {
            assert_eq!(boot_of(&index, key), Some(Some(current_boot().to_string())));
        }
        let journals = journal_dir(dir.path());
        let own = journals.join(format!("{}.json", std::process::id()));
        assert!(own.is_file(), "no journal");
        // As if that process had ended (no pid reaches 4194304); meanwhile a build replaced
        // one entry and prune removed another.
        std::fs::rename(&own, journals.join("4194304.json")).expect("rename");
        index
            .put(
                "replaced",
                &IndexEntry {
                    snapshot: Some("newer".into()),
                    created: 8,
                    boot: Some(current_boot().to_string()),
                },
            )
            .expect("put");
        index.remove("pruned");
        let next = DurableIndex::start_with(
            dir.path().to_path_buf(),
            CacheIndex::open(dir.path()),
            Duration::ZERO,
        );
        // The adopted entries are synced at once (settle 0) and the journal is gone.
        assert!(
            eventually(|| boot_of(&index, "kept") == Some(None)),
            "never unmarked"
        );
        next.finish();
        let replaced = index.get("replaced").expect("still there");
        assert_eq!(
            replaced.snapshot.as_deref(),
            Some("newer"),
            "not overwritten"
        );
        assert_eq!(
            replaced.boot.as_deref(),
            Some(current_boot()),
            "not unmarked"
        );
        assert!(index.get("pruned").is_none(), "resurrected");
        assert!(!journals.join("4194304.json").exists());
    }

    #[test]
    fn a_journal_written_long_ago_is_synced_without_settling_again() {
        let dir = tempfile::tempdir().expect("tempdir");
        let index = CacheIndex::open(dir.path());
        let durable = DurableIndex::start(dir.path().to_path_buf(), CacheIndex::open(dir.path()));
        durable.submit(pending("old", "s"), dir.path(), &index);
        durable.finish();
        let journals = journal_dir(dir.path());
        let dead = journals.join("4194304.json");
        std::fs::rename(journals.join(format!("{}.json", std::process::id())), &dead)
            .expect("rename");
        std::fs::File::options()
            .write(true)
            .open(&dead)
            .and_then(|f| f.set_modified(std::time::SystemTime::now() - Duration::from_secs(120)))
            .expect("age the journal");
        // Settling takes a minute here: only the journal's age lets the sync happen at once.
        let next = DurableIndex::start_with(
            dir.path().to_path_buf(),
            CacheIndex::open(dir.path()),
            Duration::from_secs(60),
        );
        assert!(
            eventually(|| boot_of(&index, "old") == Some(None)),
            "not synced"
        );
        next.finish();
    }

    #[test]
    fn journals_of_another_boot_are_dropped() {
        let dir = tempfile::tempdir().expect("tempdir");
        let journals = journal_dir(dir.path());
        std::fs::create_dir_all(&journals).expect("mkdir");
        let old = Journal {
            boot: "00000000-0000-0000-0000-000000000000".into(),
            entries: vec![(
                "k".into(),
                IndexEntry {
                    snapshot: Some("s".into()),
                    created: 1,
                    boot: None,
                },
            )],
        };
        std::fs::write(
            journals.join("4194304.json"),
            serde_json::to_vec(&old).expect("json"),
        )
        .expect("write");
        assert!(adopt_journals(&journals).is_empty());
        assert!(!journals.join("4194304.json").exists());
    }

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
