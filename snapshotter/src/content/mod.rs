//! The content store: immutable blobs (layers, configs, manifests) named by their sha256 digest.
//!
//! A blob's name is the digest of its content, so a name can only ever stand for one content.
//! The whole design follows from keeping that true on disk, through crashes and with several
//! rbuild processes sharing one state root.
//!
//! # Layout (version 1)
//!
//! ```text
//! $RBUILD_ROOT/                      the state root (default /var/lib/rbuild)
//! └── content-v1/                    this store; an incompatible layout gets a new name
//!     ├── sha256/
//!     │   ├── 2cf24dba5fb0a30e…      one blob per file: name = 64 hex digits of its digest,
//!     │   └── …                      regular file, mode 0444, never modified in place
//!     ├── ingest/
//!     │   ├── 4121-Xq3vB9…           writes in progress: `<pid>-<random>`, mode 0600,
//!     │   └── …                      read by no one, removed on commit, failure or drop
//!     └── lazy/
//!         └── 2cf24dba…json          recipes of uncompressed layers not written yet (see
//!                                    [`LazyLayer`]): made into blobs when first opened
//! ```
//!
//! `ingest/` sits beside `sha256/` on purpose: a temporary file and its blob name are on the same
//! filesystem, so moving one to the other is a `rename`, which is atomic.
//!
//! # Writing, and why a crash never leaves a wrong blob
//!
//! A [`BlobWriter`] streams into a new file in `ingest/` while computing the digest and byte
//! count (nothing is ever held in memory whole). [`BlobWriter::commit`] then:
//!
//! 1. checks digest and size against what the caller expected, if anything; on a mismatch the
//!    temporary file is removed and nothing is stored;
//! 2. makes the file read-only and `fsync`s it: its data and inode are on disk;
//! 3. renames it to `sha256/<hex>`, refusing to replace an existing name;
//! 4. `fsync`s `sha256/`, so the new name is on disk too, and only then returns `Ok`.
//!
//! A name in `sha256/` is only ever created by step 3, and step 3 only runs on a file whose
//! content was hashed to that very name and already made durable in step 2. A crash before step 3
//! leaves at most a temporary file in `ingest/`, which nobody reads; a crash between 3 and 4
//! leaves the name either absent or pointing at the complete file. So at every instant, and after
//! any crash, `sha256/<hex>` is either missing or holds exactly the content that hashes to `hex`.
//! (Damage from outside, such as a disk error or someone writing as root, is what
//! [`ContentStore::verify`] is for.)
//!
//! # Several processes, no lock
//!
//! Writes take no lock, because there is nothing for a lock to protect:
//! - every writer has its own temporary file, created with `O_EXCL` under a random name, so no
//!   two writers ever touch the same file;
//! - the only shared step is the rename into `sha256/`, which the kernel makes atomic, and which
//!   never replaces an existing blob (`renameat2(RENAME_NOREPLACE)`, or `link` + `unlink`);
//! - two writers that race for one name both carry content that hashes to that name: the same
//!   bytes. Whoever wins, the result is the same blob; the loser finds the name taken, drops its
//!   temporary file, `fsync`s the directory (the winner may not have yet) and reports success.
//!   (One exception: a file there whose size differs from the verified content is damaged
//!   beyond doubt, and is replaced, atomically, by a plain `rename`.)
//!
//! Readers need no lock either: a blob is never modified in place, and an open file descriptor
//! keeps its content even if the blob is deleted meanwhile.
//!
//! What a lock is still needed for is *liveness*, which this module does not know about: garbage
//! collection must not delete a blob that a concurrent build has just found with
//! [`ContentStore::contains`] and is about to reference. That lock belongs to the GC and the
//! callers (under `$RBUILD_ROOT/locks/`), not to the store.
//!
//! # Stale temporary files
//!
//! A process killed mid-write leaves its file in `ingest/`. [`ContentStore::clean_ingest`]
//! removes temporary files whose last modification is older than a given age. A live writer
//! modifies its file at least every 64 KiB of input (the buffer size), so the rule is: pass an
//! age far longer than any writer can stall (an hour or a day; never zero while builds run). Even
//! a wrong guess cannot corrupt anything: a writer whose file was cleaned fails its commit (the
//! rename finds no file) and stores nothing.
//!
//! # Deleting
//!
//! [`ContentStore::delete`] unlinks without an `fsync` of the directory: if a crash brings the
//! blob back, it is still correct content and the next GC removes it again.

mod error;
mod lazy;
mod writer;

#[cfg(test)]
mod tests;

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use rbuild_digest::{Digest, Digester};

pub use error::ContentError;
pub use lazy::LazyLayer;
pub use writer::BlobWriter;

/// The store's directory under the state root; the suffix is the layout version.
pub const CONTENT_DIR: &str = "content-v1";
const BLOBS_DIR: &str = "sha256";
const INGEST_DIR: &str = "ingest";

/// Buffer size for copying a caller's stream in [`ContentStore::import`].
const COPY_BUFFER_SIZE: usize = 64 * 1024;

/// A blob's address and size, as the OCI descriptors that point at it need them.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct Descriptor {
    pub digest: Digest,
    pub size: u64,
}

/// A handle on `<state root>/content-v1`. Cheap to clone; holds only paths, so any number of
/// handles (in one process or many) may use the same store at once.
#[derive(Debug, Clone)]
pub struct ContentStore {
    root: PathBuf,
    blobs_dir: PathBuf,
    ingest_dir: PathBuf,
}

impl ContentStore {
    /// Opens the store under `state_root`, creating its directories if needed.
    pub fn open(state_root: &Path) -> Result<ContentStore, ContentError> {
        let root = state_root.join(CONTENT_DIR);
        let store = ContentStore {
            blobs_dir: root.join(BLOBS_DIR),
            ingest_dir: root.join(INGEST_DIR),
            root,
        };
        let mut created = false;
        for dir in [&store.blobs_dir, &store.ingest_dir] {
            if !dir.is_dir() {
                fs::create_dir_all(dir)
                    .map_err(|e| ContentError::io("create directory", dir, e))?;
                created = true;
            }
        }
        // Make freshly created directories durable, so a committed blob cannot vanish with them
        // (existing ones were made durable by the open that created them).
        if created {
            sync_dir(&store.root)?;
            sync_dir(state_root)?;
        }
        Ok(store)
    }

    /// `<state root>/content-v1`.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where the blob `digest` lives (whether or not it exists).
    pub fn blob_path(&self, digest: &Digest) -> PathBuf {
        self.blobs_dir.join(digest.hex())
    }

    /// Whether the blob is stored, or has a recipe ([`LazyLayer`]) to be made from when opened
    /// (which fails if the recipe's snapshot is gone or changed).
    pub fn contains(&self, digest: &Digest) -> bool {
        fs::symlink_metadata(self.blob_path(digest)).is_ok_and(|m| m.is_file())
            || self.lazy_layer(digest).is_some()
    }

    /// The blob's size, or `None` if it is not stored.
    pub fn size(&self, digest: &Digest) -> Result<Option<u64>, ContentError> {
        let path = self.blob_path(digest);
        match fs::symlink_metadata(&path) {
            Ok(meta) if meta.is_file() => Ok(Some(meta.len())),
            Ok(_) => Err(ContentError::NotABlob {
                digest: digest.clone(),
                path,
            }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(ContentError::io("inspect blob", &path, e)),
        }
    }

    /// Opens the blob for reading, making it first if only its recipe is stored; a missing
    /// blob is [`ContentError::NotFound`].
    pub fn open_blob(&self, digest: &Digest) -> Result<File, ContentError> {
        let path = self.blob_path(digest);
        match File::open(&path) {
            Ok(file) => Ok(file),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                self.materialize(digest)?;
                File::open(&path).map_err(|e| ContentError::io("open blob", &path, e))
            }
            Err(e) => Err(ContentError::io("open blob", &path, e)),
        }
    }

    /// Starts a streaming write; see [`BlobWriter`].
    pub fn writer(&self) -> Result<BlobWriter, ContentError> {
        BlobWriter::create(&self.ingest_dir, &self.blobs_dir, true)
    }

    /// A streaming write whose digest the caller computes over the very bytes it writes (the
    /// layer writer hashes its output in the same pass): the store does not hash them again,
    /// and [`BlobWriter::commit`] then needs the digest and size, and checks the size.
    pub fn writer_for_computed(&self) -> Result<BlobWriter, ContentError> {
        BlobWriter::create(&self.ingest_dir, &self.blobs_dir, false)
    }

    /// Stores `bytes` (if not stored already) and returns their descriptor.
    pub fn put_bytes(&self, bytes: &[u8]) -> Result<Descriptor, ContentError> {
        let digest = Digest::of(bytes);
        let size = bytes.len() as u64;
        if let Some(found) = self.existing(&digest, Some(size))? {
            return Ok(found);
        }
        let mut writer = self.writer()?;
        writer
            .write_all(bytes)
            .map_err(|e| ContentError::io("write", writer.temp_path(), e))?;
        writer.commit(Some(&digest), Some(size))
    }

    /// Copies `reader` into the store, checking digest and size when given.
    ///
    /// With `expected` given and that blob already stored (with `expected_size`, if given), this
    /// returns at once without reading `reader`. With `expected_size` given, at most one byte
    /// more than it is read, so a lying source cannot fill the disk.
    pub fn import(
        &self,
        reader: impl Read,
        expected: Option<&Digest>,
        expected_size: Option<u64>,
    ) -> Result<Descriptor, ContentError> {
        if let Some(digest) = expected {
            if let Some(found) = self.existing(digest, expected_size)? {
                return Ok(found);
            }
        }
        let limit = expected_size.map_or(u64::MAX, |size| size.saturating_add(1));
        let mut reader = reader.take(limit);
        let mut writer = self.writer()?;
        let mut buf = vec![0u8; COPY_BUFFER_SIZE];
        loop {
            let n = match reader.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(source) => {
                    return Err(ContentError::ReadSource {
                        path: writer.temp_path().to_path_buf(),
                        source,
                    })
                }
            };
            let chunk = buf.get(..n).unwrap_or(&buf);
            writer
                .write_all(chunk)
                .map_err(|e| ContentError::io("write", writer.temp_path(), e))?;
        }
        writer.commit(expected, expected_size)
    }

    /// Re-hashes a stored blob; [`ContentError::Corrupt`] if it no longer matches its name.
    pub fn verify(&self, digest: &Digest) -> Result<(), ContentError> {
        let path = self.blob_path(digest);
        let mut file = self.open_blob(digest)?;
        let mut digester = Digester::new();
        io::copy(&mut file, &mut digester).map_err(|e| ContentError::io("read blob", &path, e))?;
        let (actual, _) = digester.finish();
        if actual != *digest {
            return Err(ContentError::Corrupt {
                digest: digest.clone(),
                actual,
                path,
            });
        }
        Ok(())
    }

    /// Removes a blob and its recipe (for GC); returns whether the blob existed.
    pub fn delete(&self, digest: &Digest) -> Result<bool, ContentError> {
        self.delete_lazy(digest);
        let path = self.blob_path(digest);
        match fs::remove_file(&path) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(ContentError::io("delete blob", &path, e)),
        }
    }

    /// Every stored blob with its size, sorted by digest. Files in `sha256/` whose name is not a
    /// digest, and anything that is not a regular file, are not blobs and are skipped.
    pub fn list(&self) -> Result<Vec<Descriptor>, ContentError> {
        let dir = &self.blobs_dir;
        let entries = fs::read_dir(dir).map_err(|e| ContentError::io("list", dir, e))?;
        let mut blobs = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| ContentError::io("list", dir, e))?;
            let Some(digest) = entry
                .file_name()
                .to_str()
                .and_then(|hex| format!("sha256:{hex}").parse::<Digest>().ok())
            else {
                continue;
            };
            // Does not follow symlinks. A blob deleted since `read_dir` is simply gone.
            let meta = match entry.metadata() {
                Ok(meta) => meta,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(ContentError::io("inspect blob", &entry.path(), e)),
            };
            if meta.is_file() {
                blobs.push(Descriptor {
                    digest,
                    size: meta.len(),
                });
            }
        }
        blobs.sort_by(|a, b| a.digest.cmp(&b.digest));
        Ok(blobs)
    }

    /// Removes files in `ingest/` last modified more than `older_than` ago; returns how many.
    /// See the module docs for how to choose the age.
    pub fn clean_ingest(&self, older_than: Duration) -> Result<usize, ContentError> {
        let dir = &self.ingest_dir;
        let entries = fs::read_dir(dir).map_err(|e| ContentError::io("list", dir, e))?;
        let now = SystemTime::now();
        let mut removed = 0;
        for entry in entries {
            let entry = entry.map_err(|e| ContentError::io("list", dir, e))?;
            let path = entry.path();
            let meta = match entry.metadata() {
                Ok(meta) => meta,
                // Committed (renamed away) or dropped since `read_dir`.
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(ContentError::io("inspect temporary file", &path, e)),
            };
            if !meta.is_file() {
                continue;
            }
            let modified = meta
                .modified()
                .map_err(|e| ContentError::io("read the modification time of", &path, e))?;
            // A modification time in the future counts as age zero: kept.
            let age = now.duration_since(modified).unwrap_or(Duration::ZERO);
            if age <= older_than {
                continue;
            }
            match fs::remove_file(&path) {
                Ok(()) => removed += 1,
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(ContentError::io("remove temporary file", &path, e)),
            }
        }
        Ok(removed)
    }

    /// The descriptor of a stored blob of the given digest (and size, if given), after making
    /// sure its name is durable: another process may have renamed it in without its `fsync` yet.
    fn existing(
        &self,
        digest: &Digest,
        size: Option<u64>,
    ) -> Result<Option<Descriptor>, ContentError> {
        match self.size(digest)? {
            Some(found) if size.is_none_or(|size| size == found) => {
                sync_dir(&self.blobs_dir)?;
                Ok(Some(Descriptor {
                    digest: digest.clone(),
                    size: found,
                }))
            }
            _ => Ok(None),
        }
    }
}

/// `fsync`s a directory, making the names in it durable.
fn sync_dir(dir: &Path) -> Result<(), ContentError> {
    crate::sync_dir(dir).map_err(|e| ContentError::io("fsync directory", dir, e))
}
