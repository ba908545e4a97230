//! The context stat cache: (device, inode, size, mtime, ctime) → sha256 of the content, kept
//! under `<state root>/stat-v1/` across builds, so an unchanged file is never read twice.
//!
//! ```text
//! stat-v1/cache.json    {"<dev>:<ino>": [size, mtime_ns, ctime_ns, "<hex digest>"], ...}
//! ```
//! Written whole to a temp file and renamed (a reader sees the old map or the new one); the
//! ctime in the key catches writes that restore the mtime. Entries are only trusted when all
//! four stat fields match.

use std::collections::HashMap;
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use sha2::{Digest as _, Sha256};

type Entry = (u64, i64, i64, String);

/// Entries kept across builds before the cache is trimmed to what the last build saw.
pub const MAX_ENTRIES: usize = 500_000;

/// The hex sha256 of a file's bytes.
pub fn hash_file(path: &Path) -> std::io::Result<String> {
    let mut file = std::fs::File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; 256 << 10];
    loop {
        let n = file.read(&mut buffer)?;
        if n == 0 {
            break;
        }
        hasher.update(&buffer[..n]);
    }
    Ok(rbuild_graph::hex(&hasher.finalize()))
}

#[derive(Debug)]
pub struct StatCache {
    path: PathBuf,
    entries: Mutex<HashMap<String, Entry>>,
    dirty: Mutex<bool>,
    /// Keys looked up or added by this process (kept when the cache is trimmed).
    seen: Mutex<std::collections::HashSet<String>>,
}

impl StatCache {
    pub fn open(state_root: &Path) -> StatCache {
        let path = state_root.join("stat-v1/cache.json");
        let entries = std::fs::read(&path)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default();
        StatCache {
            path,
            entries: Mutex::new(entries),
            dirty: Mutex::new(false),
            seen: Mutex::new(std::collections::HashSet::new()),
        }
    }

    fn key(meta: &std::fs::Metadata) -> (String, Entry) {
        let key = format!("{}:{}", meta.dev(), meta.ino());
        // Saturating: an mtime centuries away must not overflow (it only has to compare equal).
        let mtime = meta
            .mtime()
            .saturating_mul(1_000_000_000)
            .saturating_add(meta.mtime_nsec());
        let ctime = meta
            .ctime()
            .saturating_mul(1_000_000_000)
            .saturating_add(meta.ctime_nsec());
        (key, (meta.size(), mtime, ctime, String::new()))
    }

    /// The hex sha256 of the file at `path` with `meta` (from the cache when its stat matches).
    pub fn digest(&self, path: &Path, meta: &std::fs::Metadata) -> std::io::Result<String> {
        let (key, mut entry) = Self::key(meta);
        if let Ok(mut seen) = self.seen.lock() {
            seen.insert(key.clone());
        }
        if let Ok(map) = self.entries.lock() {
            if let Some(known) = map.get(&key) {
                if (known.0, known.1, known.2) == (entry.0, entry.1, entry.2) {
                    return Ok(known.3.clone());
                }
            }
        }
        entry.3 = hash_file(path)?;
        let digest = entry.3.clone();
        if let (Ok(mut map), Ok(mut dirty)) = (self.entries.lock(), self.dirty.lock()) {
            map.insert(key, entry);
            *dirty = true;
        }
        Ok(digest)
    }

    /// Writes the cache back if it changed (atomically). A cache past [`MAX_ENTRIES`] keeps
    /// only the entries of files seen by this process.
    pub fn save(&self) -> std::io::Result<()> {
        let dirty = self.dirty.lock().map(|d| *d).unwrap_or(false);
        if !dirty {
            return Ok(());
        }
        let bytes = {
            let map = self
                .entries
                .lock()
                .map_err(|_| std::io::Error::other("stat cache lock poisoned"))?;
            serde_json::to_vec(&*map).map_err(std::io::Error::other)?
        };
        let dir = self.path.parent().unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir)?;
        let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
        std::io::Write::write_all(&mut tmp, &bytes)?;
        tmp.persist(&self.path).map_err(|e| e.error)?;
        if let Ok(mut d) = self.dirty.lock() {
            *d = false;
        }
        Ok(())
    }
}
