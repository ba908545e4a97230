//! The cache index: cache key → result, and step slot → the key parts it had last time.
//!
//! ```text
//! cache-v1/keys/<key hex>.json     {"snapshot": "<id>" | null, "created": <unix secs>}
//! cache-v1/slots/<sha256(slot)>.json   the key parts of the slot's last run (why it missed)
//! ```
//! An entry's last use is its file's mtime: written when the entry is, set again on every hit
//! ([`CacheIndex::touch`]: one `utimensat`, the content never rewritten). Prune goes by it, as
//! BuildKit does: least recently used first, and `until=` spares what was used since.
//! An entry is written (temp file + rename) only after its snapshot is committed, so a reader
//! (another rbuild process too) sees a complete entry pointing at a complete snapshot, or
//! nothing; kill -9 at any moment leaves at worst an unreferenced snapshot for prune. An entry
//! written before its snapshot was synced carries the boot it was written in and is trusted
//! only during that boot (see [`IndexEntry::boot`]), so a power loss never leaves a trusted
//! entry pointing at a truncated snapshot. Entries
//! never lock: two builds computing the same key both commit, the last rename wins, and both
//! snapshots are valid results.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct IndexEntry {
    /// The result's snapshot (`None`: the empty filesystem).
    pub snapshot: Option<String>,
    pub created: u64,
    /// Set while the snapshot may not be on stable storage yet: the boot (kernel boot id) the
    /// entry was written in. Such an entry is trusted only during that boot (without a crash
    /// the data is in the page cache or on disk); after a reboot it is a miss and prune removes
    /// it. Cleared (rewritten) once a sync covering the snapshot has completed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub boot: Option<String>,
}

/// This boot's id (`/proc/sys/kernel/random/boot_id`); empty when it cannot be read, which
/// matches no entry's, so boot-scoped entries are then never trusted.
pub fn current_boot() -> &'static str {
    static BOOT: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    BOOT.get_or_init(|| {
        std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
            .map(|s| s.trim().to_string())
            .unwrap_or_default()
    })
}

impl IndexEntry {
    /// Whether the entry may be used now (durable, or written during this boot).
    pub fn trusted(&self) -> bool {
        match &self.boot {
            None => true,
            Some(boot) => !boot.is_empty() && boot == current_boot(),
        }
    }
}

/// An entry as `du` and prune see it.
#[derive(Debug, Clone)]
pub struct IndexRecord {
    pub key: String,
    pub entry: IndexEntry,
    /// When a build last used the entry (its file's mtime; never before `created`).
    pub last_used: SystemTime,
}

#[derive(Debug, Clone)]
pub struct CacheIndex {
    keys: PathBuf,
    slots: PathBuf,
}

fn write_atomic(dir: &Path, name: &str, bytes: &[u8]) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    crate::fsutil::replace_file(&dir.join(name), bytes)
}

impl CacheIndex {
    pub fn open(state_root: &Path) -> CacheIndex {
        CacheIndex {
            keys: state_root.join("cache-v1/keys"),
            slots: state_root.join("cache-v1/slots"),
        }
    }

    /// The entry of `key`, if there is one that may be used ([`IndexEntry::trusted`]).
    pub fn get(&self, key: &str) -> Option<IndexEntry> {
        let bytes = std::fs::read(self.keys.join(format!("{key}.json"))).ok()?;
        serde_json::from_slice::<IndexEntry>(&bytes)
            .ok()
            .filter(IndexEntry::trusted)
    }

    pub fn put(&self, key: &str, entry: &IndexEntry) -> std::io::Result<()> {
        let bytes = serde_json::to_vec(entry).map_err(std::io::Error::other)?;
        write_atomic(&self.keys, &format!("{key}.json"), &bytes)
    }

    fn slot_name(slot: &str) -> String {
        format!(
            "{}.json",
            rbuild_graph::hex(&Sha256::digest(slot.as_bytes()))
        )
    }

    pub fn previous_parts(&self, slot: &str) -> Option<BTreeMap<String, String>> {
        let bytes = std::fs::read(self.slots.join(Self::slot_name(slot))).ok()?;
        serde_json::from_slice(&bytes).ok()
    }

    pub fn put_parts(&self, slot: &str, parts: &BTreeMap<String, String>) -> std::io::Result<()> {
        let bytes = serde_json::to_vec(parts).map_err(std::io::Error::other)?;
        write_atomic(&self.slots, &Self::slot_name(slot), &bytes)
    }

    /// Marks the entry of `key` as used now. Best effort: a failed touch only makes the entry
    /// look older to prune.
    pub fn touch(&self, key: &str) {
        let times = rustix::fs::Timestamps {
            last_access: rustix::fs::Timespec {
                tv_sec: 0,
                tv_nsec: rustix::fs::UTIME_OMIT,
            },
            last_modification: rustix::fs::Timespec {
                tv_sec: 0,
                tv_nsec: rustix::fs::UTIME_NOW,
            },
        };
        let _ = rustix::fs::utimensat(
            rustix::fs::CWD,
            self.keys.join(format!("{key}.json")),
            &times,
            rustix::fs::AtFlags::empty(),
        );
    }

    /// Every entry (for `du` and prune).
    pub fn entries(&self) -> Vec<IndexRecord> {
        let Ok(dir) = std::fs::read_dir(&self.keys) else {
            return Vec::new();
        };
        dir.flatten()
            .filter_map(|e| {
                let name = e.file_name().to_string_lossy().into_owned();
                let key = name.strip_suffix(".json")?.to_string();
                let file = std::fs::File::open(e.path()).ok()?;
                let modified = file.metadata().and_then(|m| m.modified()).ok();
                let entry: IndexEntry =
                    serde_json::from_reader(std::io::BufReader::new(file)).ok()?;
                let created = UNIX_EPOCH + Duration::from_secs(entry.created);
                let last_used = modified.map_or(created, |m| m.max(created));
                Some(IndexRecord {
                    key,
                    entry,
                    last_used,
                })
            })
            .collect()
    }

    pub fn remove(&self, key: &str) {
        let _ = std::fs::remove_file(self.keys.join(format!("{key}.json")));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_of_another_boot_that_were_never_synced_are_not_trusted() {
        let dir = tempfile::tempdir().expect("tempdir");
        let index = CacheIndex::open(dir.path());
        let entry = |boot: Option<&str>| IndexEntry {
            snapshot: Some("k-x".into()),
            created: 1,
            boot: boot.map(str::to_string),
        };
        index.put("durable", &entry(None)).expect("put");
        index
            .put("this-boot", &entry(Some(current_boot())))
            .expect("put");
        index
            .put(
                "other-boot",
                &entry(Some("00000000-dead-beef-0000-000000000000")),
            )
            .expect("put");
        assert!(!current_boot().is_empty(), "Linux has a boot id");
        assert!(index.get("durable").is_some());
        assert!(index.get("this-boot").is_some());
        assert!(
            index.get("other-boot").is_none(),
            "may point at a truncated snapshot"
        );
        // Listed for prune, which removes it.
        assert!(index
            .entries()
            .iter()
            .any(|r| r.key == "other-boot" && !r.entry.trusted()));
        // Entries of older rbuilds have no `boot` field: durable.
        std::fs::write(
            dir.path().join("cache-v1/keys/old.json"),
            r#"{"snapshot":"k-y","created":5}"#,
        )
        .expect("write");
        assert!(index.get("old").is_some());
    }

    #[test]
    fn a_touch_makes_an_entry_the_most_recently_used() {
        let dir = tempfile::tempdir().expect("tempdir");
        let index = CacheIndex::open(dir.path());
        for key in ["first", "second"] {
            let entry = IndexEntry {
                snapshot: None,
                created: 1,
                boot: None,
            };
            index.put(key, &entry).expect("put");
        }
        let day_ago = SystemTime::now() - Duration::from_secs(86_400);
        for key in ["first", "second"] {
            std::fs::File::options()
                .write(true)
                .open(dir.path().join(format!("cache-v1/keys/{key}.json")))
                .and_then(|f| f.set_modified(day_ago))
                .expect("age the entry");
        }
        index.touch("first");
        let records = index.entries();
        let used = |key: &str| {
            records
                .iter()
                .find(|r| r.key == key)
                .map(|r| r.last_used)
                .expect("listed")
        };
        assert!(used("first") > SystemTime::now() - Duration::from_secs(60));
        assert!(used("second") < SystemTime::now() - Duration::from_secs(3600));
        assert_eq!(
            index.get("first").map(|e| e.created),
            Some(1),
            "content kept"
        );
    }
}
