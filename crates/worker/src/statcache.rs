//! The context stat cache: (device, inode, size, mtime, ctime) → content digest (BLAKE3, see
//! `source_file::digest_of`), kept under `<state root>/stat-v1/` across builds, so an unchanged
//! file is never read twice.
//!
//! ```text
//! stat-v1/cache.bin    "RBSTAT3\n", then 72-byte records, little-endian:
//!                      dev u64, ino u64, size u64, mtime_ns i64, ctime_ns i64, blake3 [32]
//! ```
//! (RBSTAT2 files held sha256 digests: ignored, like any other shape.)
//! A flat binary file (a no-op build of a 20,000-file context reads and checks every entry:
//! parsing JSON cost more than the statx walk itself). Written whole to a temp file and renamed
//! (a reader sees the old file or the new one); a file of any other shape is ignored (the
//! cache starts empty). The ctime catches writes that restore the mtime. Entries are only
//! trusted when all three stat fields match.

use std::collections::{HashMap, HashSet};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use crate::source_file::Origin;

/// (device, inode).
type Key = (u64, u64);

/// What a file's stat was when its digest was computed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Entry {
    size: u64,
    mtime: i64,
    ctime: i64,
    digest: [u8; 32],
}

const MAGIC: &[u8; 8] = b"RBSTAT3\n";
const RECORD: usize = 72;

/// Entries kept across builds before the cache is trimmed to what the last build saw.
pub const MAX_ENTRIES: usize = 500_000;

/// The content digest of the file at `path` that `meta` describes (an error if it is another
/// file now, or changed while it was read: its digest would be stored under `meta`).
fn hash_file_bytes(
    path: &Path,
    meta: &std::fs::Metadata,
    origin: Origin,
) -> std::io::Result<[u8; 32]> {
    let file = crate::source_file::open(path, meta, origin)?;
    let digest = crate::source_file::digest_of(&file)?;
    crate::source_file::check(&file, meta, origin)?;
    Ok(digest)
}

#[derive(Debug)]
pub struct StatCache {
    path: PathBuf,
    /// Read from `path` on first use: a build that copies nothing from a context never reads it.
    loaded: std::sync::Once,
    entries: std::sync::RwLock<HashMap<Key, Entry>>,
    dirty: Mutex<bool>,
    /// Keys looked up or added by this process, noted only once the cache holds more than
    /// [`MAX_ENTRIES`] / 2 entries (kept when the cache is trimmed).
    seen: Mutex<HashSet<Key>>,
    /// Keys of files hashed within [`RACY_SECONDS`] of their last change: kept for this
    /// process, never saved. With coarse timestamps (kernels before 6.13), a write in the same
    /// clock tick as the stat leaves size, mtime and ctime as they were; a later build must not
    /// trust the digest of such a file (git's "racily clean" entries).
    racy: Mutex<HashSet<Key>>,
}

/// How recent a change makes a digest too racy to save.
const RACY_SECONDS: i64 = 2;

fn u64_at(record: &[u8], at: usize) -> u64 {
    let mut bytes = [0u8; 8];
    if let Some(slice) = record.get(at..at + 8) {
        bytes.copy_from_slice(slice);
    }
    u64::from_le_bytes(bytes)
}

/// The records of a cache file; empty when it is not one.
fn decode(bytes: &[u8]) -> HashMap<Key, Entry> {
    let Some(body) = bytes.strip_prefix(MAGIC.as_slice()) else {
        return HashMap::new();
    };
    if body.len() % RECORD != 0 {
        return HashMap::new();
    }
    let mut map = HashMap::with_capacity(body.len() / RECORD);
    for record in body.chunks_exact(RECORD) {
        let mut digest = [0u8; 32];
        digest.copy_from_slice(&record[40..72]);
        map.insert(
            (u64_at(record, 0), u64_at(record, 8)),
            Entry {
                size: u64_at(record, 16),
                mtime: u64_at(record, 24) as i64,
                ctime: u64_at(record, 32) as i64,
                digest,
            },
        );
    }
    map
}

/// The records of `map`, but those of `skip`.
fn encode(map: &HashMap<Key, Entry>, skip: &HashSet<Key>) -> Vec<u8> {
    let mut out = Vec::with_capacity(MAGIC.len() + map.len() * RECORD);
    out.extend_from_slice(MAGIC);
    for (&(dev, ino), entry) in map.iter().filter(|(key, _)| !skip.contains(key)) {
        for value in [dev, ino, entry.size, entry.mtime as u64, entry.ctime as u64] {
            out.extend_from_slice(&value.to_le_bytes());
        }
        out.extend_from_slice(&entry.digest);
    }
    out
}

impl StatCache {
    pub fn open(state_root: &Path) -> StatCache {
        StatCache {
            path: state_root.join("stat-v1/cache.bin"),
            loaded: std::sync::Once::new(),
            entries: std::sync::RwLock::new(HashMap::new()),
            dirty: Mutex::new(false),
            seen: Mutex::new(HashSet::new()),
            racy: Mutex::new(HashSet::new()),
        }
    }

    fn key(meta: &std::fs::Metadata) -> (Key, Entry) {
        // Saturating: an mtime centuries away must not overflow (it only has to compare equal).
        let mtime = meta
            .mtime()
            .saturating_mul(1_000_000_000)
            .saturating_add(meta.mtime_nsec());
        let ctime = meta
            .ctime()
            .saturating_mul(1_000_000_000)
            .saturating_add(meta.ctime_nsec());
        (
            (meta.dev(), meta.ino()),
            Entry {
                size: meta.size(),
                mtime,
                ctime,
                digest: [0; 32],
            },
        )
    }

    /// The digest held for `key` when its stat is `entry`'s, and whether the cache is large
    /// enough that a save may trim it. Lookups from many threads share a read lock.
    fn lookup(&self, key: Key, entry: &Entry) -> (Option<[u8; 32]>, bool) {
        self.load();
        let Ok(map) = self.entries.read() else {
            return (None, false);
        };
        let known = map
            .get(&key)
            .filter(|k| (k.size, k.mtime, k.ctime) == (entry.size, entry.mtime, entry.ctime))
            .map(|k| k.digest);
        (known, map.len() > MAX_ENTRIES / 2)
    }

    /// The content digest of the file at `path` with `meta` (from the cache when its stat
    /// matches).
    pub fn digest_bytes(
        &self,
        path: &Path,
        meta: &std::fs::Metadata,
        origin: Origin,
    ) -> std::io::Result<[u8; 32]> {
        let (key, mut entry) = Self::key(meta);
        let (known, large) = self.lookup(key, &entry);
        self.note_seen(key, large);
        if let Some(digest) = known {
            return Ok(digest);
        }
        entry.digest = hash_file_bytes(path, meta, origin)?;
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(i64::MAX, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
        if now.saturating_sub(meta.ctime().max(meta.mtime())) < RACY_SECONDS {
            if let Ok(mut racy) = self.racy.lock() {
                racy.insert(key);
            }
        }
        if let (Ok(mut map), Ok(mut dirty)) = (self.entries.write(), self.dirty.lock()) {
            map.insert(key, entry);
            *dirty = true;
        }
        Ok(entry.digest)
    }

    /// The digest this cache holds for the file `meta` describes, without reading it (the one
    /// a step's key used).
    pub fn known_digest(&self, meta: &std::fs::Metadata) -> Option<[u8; 32]> {
        let (key, entry) = Self::key(meta);
        self.lookup(key, &entry).0
    }

    /// Reads the cache file into `entries`, once (before any lookup or save).
    fn load(&self) {
        self.loaded.call_once(|| {
            let found = std::fs::read(&self.path)
                .map(|b| decode(&b))
                .unwrap_or_default();
            if let Ok(mut map) = self.entries.write() {
                *map = found;
            }
        });
    }

    /// Remembers that this process used `key`, once the cache is large enough that a save may
    /// trim it (below that, nothing is trimmed and the bookkeeping would only cost).
    fn note_seen(&self, key: Key, large: bool) {
        if large {
            if let Ok(mut seen) = self.seen.lock() {
                seen.insert(key);
            }
        }
    }

    /// Writes the cache back if it changed (atomically). A cache past [`MAX_ENTRIES`] keeps
    /// only the entries of files seen by this process.
    pub fn save(&self) -> std::io::Result<()> {
        let dirty = self.dirty.lock().map(|d| *d).unwrap_or(false);
        if !dirty {
            return Ok(());
        }
        let bytes = {
            let mut map = self
                .entries
                .write()
                .map_err(|_| std::io::Error::other("stat cache lock poisoned"))?;
            if map.len() > MAX_ENTRIES {
                // Every lookup was noted (the cache was past MAX_ENTRIES / 2 when it began).
                if let Ok(seen) = self.seen.lock() {
                    map.retain(|key, _| seen.contains(key));
                }
            }
            match self.racy.lock() {
                Ok(racy) => encode(&map, &racy),
                Err(_) => encode(&map, &HashSet::new()),
            }
        };
        let dir = self.path.parent().unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir)?;
        let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
        std::io::Write::write_all(&mut tmp, &bytes)?;
        tmp.persist(&self.path).map_err(|e| e.error)?;
        // The JSON cache of earlier versions is dead weight once this one exists.
        let _ = std::fs::remove_file(dir.join("cache.json"));
        if let Ok(mut d) = self.dirty.lock() {
            *d = false;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_bad_files_are_empty_caches() {
        let mut map = HashMap::new();
        map.insert(
            (65024, 42),
            Entry {
                size: 7,
                mtime: -5,
                ctime: 1_796_000_899_045_845_035,
                digest: [9; 32],
            },
        );
        map.insert(
            (1, u64::MAX),
            Entry {
                size: 0,
                mtime: 0,
                ctime: 0,
                digest: [0xab; 32],
            },
        );
        let bytes = encode(&map, &HashSet::new());
        assert_eq!(bytes.len(), 8 + 2 * RECORD);
        assert_eq!(decode(&bytes), map);
        assert!(decode(&bytes[..bytes.len() - 1]).is_empty(), "torn file");
        assert!(
            decode(b"{\"65024:1\": [1, 2, 3, \"x\"]}").is_empty(),
            "old JSON"
        );
        assert!(decode(b"").is_empty());
    }

    #[test]
    fn digests_of_files_changed_in_the_last_seconds_are_not_saved() {
        let dir = tempfile::tempdir().expect("tempdir");
        let old = dir.path().join("old");
        std::fs::write(&old, "settled").expect("write");
        std::thread::sleep(std::time::Duration::from_millis(2100));
        let new = dir.path().join("new");
        std::fs::write(&new, "just written").expect("write");
        let cache = StatCache::open(dir.path());
        let old_meta = std::fs::symlink_metadata(&old).expect("stat");
        let new_meta = std::fs::symlink_metadata(&new).expect("stat");
        for (path, meta) in [(&old, &old_meta), (&new, &new_meta)] {
            cache
                .digest_bytes(path, meta, Origin::Context)
                .expect("digest");
            assert!(cache.known_digest(meta).is_some(), "kept for this process");
        }
        cache.save().expect("save");
        let reopened = StatCache::open(dir.path());
        assert!(reopened.known_digest(&old_meta).is_some(), "saved");
        assert!(
            reopened.known_digest(&new_meta).is_none(),
            "a write in the same clock tick could have left the stat as it was"
        );
    }

    #[test]
    fn a_changed_file_is_hashed_again() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("f");
        std::fs::write(&file, "one").expect("write");
        let cache = StatCache::open(dir.path());
        let meta = std::fs::symlink_metadata(&file).expect("stat");
        let first = cache
            .digest_bytes(&file, &meta, Origin::Context)
            .expect("digest");
        assert_eq!(
            first,
            hash_file_bytes(&file, &meta, Origin::Context).expect("hash")
        );
        cache.save().expect("save");
        let reopened = StatCache::open(dir.path());
        assert_eq!(
            reopened
                .digest_bytes(&file, &meta, Origin::Context)
                .expect("cached"),
            first
        );
        std::fs::write(&file, "two").expect("write");
        let meta = std::fs::symlink_metadata(&file).expect("stat");
        let second = reopened
            .digest_bytes(&file, &meta, Origin::Context)
            .expect("digest");
        assert_ne!(second, first);
        assert_eq!(
            second,
            hash_file_bytes(&file, &meta, Origin::Context).expect("hash")
        );
        // A digest is only ever stored for the file as it was stat'ed.
        std::fs::write(&file, "three").expect("write");
        let empty = tempfile::tempdir().expect("tempdir");
        let err = StatCache::open(empty.path())
            .digest_bytes(&file, &meta, Origin::Context)
            .expect_err("changed since the stat");
        assert!(err.to_string().contains("changed while the build"), "{err}");
    }
}
