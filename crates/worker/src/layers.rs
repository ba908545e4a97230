//! A step's layer: its snapshot's upper dir as a deterministic layer blob in the content store,
//! memoised beside the snapshot per (compression, source date) so it is written once.
//!
//! ```text
//! snapshots-v1/committed/<id>/layer-<tar|gzipN|zstdN>-<epoch|now>-f<writer format>.json
//!     {digest, size, media_type, diff_id}
//! ```
//! The memo is written (temp file + rename) only after its blob is committed; a memo whose blob
//! is gone (pruned) is ignored and the layer written again.
//!
//! A *lazy* uncompressed layer (an image only named into the local store) is hashed but not
//! stored: the memo is written at once, and [`record_lazy`] later stores the recipe that makes
//! the blob when something reads it (rbuild-snapshotter's `content::LazyLayer`), once the
//! caller has made the snapshot durable.

use std::path::Path;

use rbuild_digest::Digest;
use rbuild_snapshotter::content::ContentStore;
use rbuild_snapshotter::layer::{write_layer, Compression, LayerOptions, SourceKind};
use rbuild_snapshotter::snapshots::{SnapshotId, Snapshotter};
use serde::{Deserialize, Serialize};

/// One layer of an image: its blob and its diff_id.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Layer {
    pub digest: String,
    pub size: u64,
    pub media_type: String,
    pub diff_id: String,
}

impl From<&rbuild_snapshotter::layer::LayerDescriptor> for Layer {
    fn from(desc: &rbuild_snapshotter::layer::LayerDescriptor) -> Layer {
        Layer {
            digest: desc.digest.to_string(),
            size: desc.size,
            media_type: desc.media_type.to_string(),
            diff_id: desc.diff_id.to_string(),
        }
    }
}

fn memo_name(compression: Compression, epoch: Option<i64>) -> String {
    let comp = match compression {
        Compression::Uncompressed => "tar".to_string(),
        Compression::Gzip { level } => format!("gzip{level}"),
        Compression::Zstd { level } => format!("zstd{level}"),
    };
    let epoch = epoch.map_or("now".to_string(), |e| e.to_string());
    // The writer's format too: a lazy layer's memo is trusted without its blob.
    format!(
        "layer-{comp}-{epoch}-f{}.json",
        rbuild_snapshotter::layer::FORMAT
    )
}

/// The layer of snapshot `id`. With `lazy` (uncompressed only), the blob is not written: the
/// caller must [`record_lazy`] the layer before an image names it.
pub fn step_layer(
    snapshots: &Snapshotter,
    content: &ContentStore,
    id: &SnapshotId,
    compression: Compression,
    epoch: Option<i64>,
    lazy: bool,
) -> Result<Layer, String> {
    let lazy = lazy && compression == Compression::Uncompressed;
    let fs_dir = snapshots.layer_dir(id);
    let memo = fs_dir
        .parent()
        .unwrap_or(Path::new("/"))
        .join(memo_name(compression, epoch));
    if let Some(layer) = std::fs::read(&memo)
        .ok()
        .and_then(|b| serde_json::from_slice::<Layer>(&b).ok())
    {
        if let Ok(digest) = layer.digest.parse::<Digest>() {
            // A committed snapshot never changes: its memo stays true without the blob.
            if lazy || content.contains(&digest) {
                return Ok(layer);
            }
        }
    }
    let options = LayerOptions {
        compression,
        source_date_epoch: epoch,
        threads: 0,
    };
    let failed = |e: rbuild_snapshotter::layer::LayerError| {
        format!(
            "Failed to write the layer of snapshot `{}`: {e}",
            id.as_str()
        )
    };
    let desc = if lazy {
        // Hashed only: the blob is made from the snapshot when something first reads it.
        write_layer(
            &fs_dir,
            SourceKind::OverlayUpper,
            &mut std::io::sink(),
            &options,
        )
        .map_err(failed)?
    } else {
        // The layer writer hashes exactly the bytes it writes: the store need not hash them
        // again.
        let mut writer = content
            .writer_for_computed()
            .map_err(|e| format!("Failed to start a layer blob: {e}"))?;
        let desc = write_layer(&fs_dir, SourceKind::OverlayUpper, &mut writer, &options)
            .map_err(failed)?;
        writer
            .commit(Some(&desc.digest), Some(desc.size))
            .map_err(|e| format!("Failed to store a layer blob: {e}"))?;
        desc
    };
    let layer = Layer::from(&desc);
    write_memo(&memo, &layer);
    Ok(layer)
}

/// Best effort: without the memo the layer is just written again next time.
fn write_memo(memo: &Path, layer: &Layer) {
    if let Ok(bytes) = serde_json::to_vec(layer) {
        let _ = crate::fsutil::replace_file(memo, &bytes);
    }
}

/// Stores the recipe of a lazy layer of snapshot `id` (unless its blob or recipe is stored);
/// returns whether it wrote one. The snapshot must be durable (synced) by now.
pub fn record_lazy(
    content: &ContentStore,
    id: &SnapshotId,
    layer: &Layer,
    epoch: Option<i64>,
) -> Result<bool, String> {
    let digest: Digest = layer
        .digest
        .parse()
        .map_err(|e| format!("layer digest `{}`: {e:?}", layer.digest))?;
    if content.contains(&digest) {
        return Ok(false);
    }
    let recipe = rbuild_snapshotter::content::LazyLayer {
        format: rbuild_snapshotter::layer::FORMAT,
        snapshot: id.as_str().to_string(),
        source_date_epoch: epoch,
        size: layer.size,
    };
    content
        .put_lazy_layer(&digest, &recipe)
        .map_err(|e| format!("Failed to record layer `{digest}`: {e}"))?;
    Ok(true)
}
