//! The cache index: cache key → result, and step slot → the key parts it had last time.
//!
//! ```text
//! cache-v1/keys/<key hex>.json     {"snapshot": "<id>" | null, "created": <unix secs>}
//! cache-v1/slots/<sha256(slot)>.json   the key parts of the slot's last run (why it missed)
//! ```
//! An entry is written (temp file + rename) only after its snapshot is committed, so a reader
//! (another rbuild process too) sees a complete entry pointing at a complete snapshot, or
//! nothing; kill -9 at any moment leaves at worst an unreferenced snapshot for prune. Entries
//! never lock: two builds computing the same key both commit, the last rename wins, and both
//! snapshots are valid results.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct IndexEntry {
    /// The result's snapshot (`None`: the empty filesystem).
    pub snapshot: Option<String>,
    pub created: u64,
}

#[derive(Debug, Clone)]
pub struct CacheIndex {
    keys: PathBuf,
    slots: PathBuf,
}

fn write_atomic(dir: &Path, name: &str, bytes: &[u8]) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
    std::io::Write::write_all(&mut tmp, bytes)?;
    tmp.persist(dir.join(name)).map_err(|e| e.error)?;
    Ok(())
}

impl CacheIndex {
    pub fn open(state_root: &Path) -> CacheIndex {
        CacheIndex {
            keys: state_root.join("cache-v1/keys"),
            slots: state_root.join("cache-v1/slots"),
        }
    }

    pub fn get(&self, key: &str) -> Option<IndexEntry> {
        let bytes = std::fs::read(self.keys.join(format!("{key}.json"))).ok()?;
        serde_json::from_slice(&bytes).ok()
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

    /// Every entry (for `du` and prune).
    pub fn entries(&self) -> Vec<(String, IndexEntry)> {
        let Ok(dir) = std::fs::read_dir(&self.keys) else {
            return Vec::new();
        };
        dir.flatten()
            .filter_map(|e| {
                let name = e.file_name().to_string_lossy().into_owned();
                let key = name.strip_suffix(".json")?.to_string();
                let entry = serde_json::from_slice(&std::fs::read(e.path()).ok()?).ok()?;
                Some((key, entry))
            })
            .collect()
    }

    pub fn remove(&self, key: &str) {
        let _ = std::fs::remove_file(self.keys.join(format!("{key}.json")));
    }
}
