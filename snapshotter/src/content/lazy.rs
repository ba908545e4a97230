//! Layer blobs kept as a recipe until something reads them.
//!
//! An uncompressed layer of a built image is the deterministic tar of a committed snapshot
//! ([`crate::layer::write_layer`] over its upper directory, with the build's source date). An
//! image that is only named into the local store needs the layer's digest, not its bytes; storing
//! the bytes as well doubles the disk traffic of a build (the snapshot, then the tar of it). So
//! the store can hold a recipe instead, and makes the blob, verified against its name like any
//! write, the first time something opens it: `save`, `push`, `--load`, an unpack.
//!
//! ```text
//! content-v1/lazy/<hex>.json   {"snapshot": "<id>", "source_date_epoch": <secs> | null, "size": <bytes>}
//! ```
//!
//! Invariants:
//! - a recipe is written (temp file + rename, fsynced) only after the caller made its snapshot
//!   durable, so a recipe never outlives the data it names;
//! - making the blob recomputes its digest and compares it with the name before the blob is
//!   stored: a snapshot that changed or vanished gives an error, never a wrong blob;
//! - a snapshot that a kept image's recipe names must not be removed first: prune makes those
//!   blobs before it removes their snapshots (see the worker's gc).

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use rbuild_digest::Digest;
use serde::{Deserialize, Serialize};

use super::{ContentError, ContentStore};
use crate::layer::{write_layer, Compression, LayerOptions, SourceKind};
use crate::snapshots::{SnapshotId, Snapshotter};

pub(super) const LAZY_DIR: &str = "lazy";

/// How to make an uncompressed layer blob again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LazyLayer {
    /// [`crate::layer::FORMAT`] of the layer writer that computed the digest; a recipe of
    /// another format cannot be made again (it is dropped when tried).
    #[serde(default)]
    pub format: u32,
    /// The committed snapshot whose upper directory is the layer.
    pub snapshot: String,
    pub source_date_epoch: Option<i64>,
    /// The tar's size in bytes.
    pub size: u64,
}

impl ContentStore {
    fn lazy_dir(&self) -> PathBuf {
        self.root.join(LAZY_DIR)
    }

    fn recipe_path(&self, digest: &Digest) -> PathBuf {
        self.lazy_dir().join(format!("{}.json", digest.hex()))
    }

    /// The recipe of `digest`, if it has one of this layer writer's format (one of another
    /// format may still be tried by [`ContentStore::materialize`], whose digest check decides).
    pub fn lazy_layer(&self, digest: &Digest) -> Option<LazyLayer> {
        self.any_lazy_layer(digest)
            .filter(|r| r.format == crate::layer::FORMAT)
    }

    fn any_lazy_layer(&self, digest: &Digest) -> Option<LazyLayer> {
        let bytes = fs::read(self.recipe_path(digest)).ok()?;
        serde_json::from_slice(&bytes).ok()
    }

    /// Records that the uncompressed layer `digest` is made from `recipe`. The caller must have
    /// made the snapshot durable first (module docs).
    pub fn put_lazy_layer(&self, digest: &Digest, recipe: &LazyLayer) -> Result<(), ContentError> {
        let dir = self.lazy_dir();
        if !dir.is_dir() {
            fs::create_dir_all(&dir).map_err(|e| ContentError::io("create directory", &dir, e))?;
            super::sync_dir(&self.root)?;
        }
        let bytes = serde_json::to_vec(recipe).map_err(|e| {
            ContentError::io("encode a layer recipe for", &dir, io::Error::other(e))
        })?;
        let mut tmp = tempfile::NamedTempFile::new_in(&dir)
            .map_err(|e| ContentError::io("create a temporary file in", &dir, e))?;
        io::Write::write_all(&mut tmp, &bytes)
            .and_then(|()| tmp.as_file().sync_all())
            .map_err(|e| ContentError::io("write", tmp.path(), e))?;
        let path = self.recipe_path(digest);
        tmp.persist(&path)
            .map_err(|e| ContentError::io("store the layer recipe", &path, e.error))?;
        super::sync_dir(&dir)
    }

    /// Every recipe (of any writer format), with the digest it makes.
    pub fn lazy_layers(&self) -> Vec<(Digest, LazyLayer)> {
        let Ok(entries) = fs::read_dir(self.lazy_dir()) else {
            return Vec::new();
        };
        let mut out: Vec<(Digest, LazyLayer)> = entries
            .flatten()
            .filter_map(|entry| {
                let name = entry
                    .file_name()
                    .to_str()?
                    .strip_suffix(".json")?
                    .to_string();
                let digest = format!("sha256:{name}").parse::<Digest>().ok()?;
                Some((digest.clone(), self.any_lazy_layer(&digest)?))
            })
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    /// Removes the recipe of `digest` (not the blob); returns whether there was one.
    pub fn delete_lazy(&self, digest: &Digest) -> bool {
        fs::remove_file(self.recipe_path(digest)).is_ok()
    }

    /// Makes the blob `digest` from its recipe if it is not stored yet; returns whether it did.
    /// Without blob or recipe this is [`ContentError::NotFound`]. The recipe is removed once
    /// the blob is stored.
    pub fn materialize(&self, digest: &Digest) -> Result<bool, ContentError> {
        if self.size(digest)?.is_some() {
            return Ok(false);
        }
        match self.make_from_recipe(digest) {
            Ok(()) => {
                self.delete_lazy(digest);
                Ok(true)
            }
            // Another process (a prune, a push) made it meanwhile, perhaps just before
            // removing the snapshot.
            Err(_) if self.size(digest).ok().flatten().is_some() => Ok(false),
            Err(e) => Err(e),
        }
    }

    fn make_from_recipe(&self, digest: &Digest) -> Result<(), ContentError> {
        let Some(recipe) = self.any_lazy_layer(digest) else {
            return Err(ContentError::NotFound {
                digest: digest.clone(),
                path: self.blob_path(digest),
            });
        };
        let lost = |why: String| ContentError::LazyLayer {
            digest: digest.clone(),
            snapshot: recipe.snapshot.clone(),
            why,
        };
        let state_root = self.root.parent().unwrap_or(Path::new("/"));
        let snapshots = Snapshotter::open(state_root).map_err(|e| lost(e.to_string()))?;
        let id = SnapshotId::new(recipe.snapshot.clone()).map_err(|e| lost(e.to_string()))?;
        if !snapshots.exists(&id) {
            return Err(lost("the snapshot is gone".into()));
        }
        let mut writer = self.writer_for_computed()?;
        let options = LayerOptions {
            compression: Compression::Uncompressed,
            source_date_epoch: recipe.source_date_epoch,
            threads: 0,
        };
        let made = write_layer(
            &snapshots.layer_dir(&id),
            SourceKind::OverlayUpper,
            &mut writer,
            &options,
        )
        .map_err(|e| lost(e.to_string()))?;
        // The writer does not hash: compare before the blob gets the name.
        if made.digest != *digest || made.size != recipe.size {
            let why = if recipe.format != crate::layer::FORMAT {
                format!(
                    "it was recorded by another version of rbuild's layer writer (format {}, \
                     this one writes {})",
                    recipe.format,
                    crate::layer::FORMAT
                )
            } else {
                format!(
                    "the snapshot now gives `{}` ({} bytes)",
                    made.digest, made.size
                )
            };
            return Err(lost(why));
        }
        writer.commit(Some(&made.digest), Some(made.size))?;
        Ok(())
    }
}
