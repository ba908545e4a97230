//! A step's layer: its snapshot's upper dir as a deterministic layer blob in the content store,
//! memoised beside the snapshot per (compression, source date) so it is written once.
//!
//! ```text
//! snapshots-v1/committed/<id>/layer-<tar|gzipN|zstdN>-<epoch|now>.json   {digest, size, media_type, diff_id}
//! ```
//! The memo is written (temp file + rename) only after its blob is committed; a memo whose blob
//! is gone (pruned) is ignored and the layer written again.

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

fn memo_name(compression: Compression, epoch: Option<i64>) -> String {
    let comp = match compression {
        Compression::Uncompressed => "tar".to_string(),
        Compression::Gzip { level } => format!("gzip{level}"),
        Compression::Zstd { level } => format!("zstd{level}"),
    };
    let epoch = epoch.map_or("now".to_string(), |e| e.to_string());
    format!("layer-{comp}-{epoch}.json")
}

pub fn step_layer(
    snapshots: &Snapshotter,
    content: &ContentStore,
    id: &SnapshotId,
    compression: Compression,
    epoch: Option<i64>,
) -> Result<Layer, String> {
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
            if content.contains(&digest) {
                return Ok(layer);
            }
        }
    }
    // The layer writer hashes exactly the bytes it writes: the store need not hash them again.
    let mut writer = content
        .writer_for_computed()
        .map_err(|e| format!("Failed to start a layer blob: {e}"))?;
    let options = LayerOptions {
        compression,
        source_date_epoch: epoch,
        threads: 0,
    };
    let desc =
        write_layer(&fs_dir, SourceKind::OverlayUpper, &mut writer, &options).map_err(|e| {
            format!(
                "Failed to write the layer of snapshot `{}`: {e}",
                id.as_str()
            )
        })?;
    writer
        .commit(Some(&desc.digest), Some(desc.size))
        .map_err(|e| format!("Failed to store a layer blob: {e}"))?;
    let layer = Layer {
        digest: desc.digest.to_string(),
        size: desc.size,
        media_type: desc.media_type.to_string(),
        diff_id: desc.diff_id.to_string(),
    };
    // Best effort: without the memo the layer is just written again next time.
    if let Ok(bytes) = serde_json::to_vec(&layer) {
        let tmp = memo.with_extension("tmp");
        if std::fs::write(&tmp, bytes).is_ok() {
            let _ = std::fs::rename(&tmp, &memo);
        }
    }
    Ok(layer)
}
