//! From the target's snapshot to an image: layers (the base image's own blobs, then one
//! deterministic layer per step, memoised per snapshot), config, manifest; then the outputs.

use std::collections::HashMap;
use std::path::Path;

use anyhow::{Context, Result};
use rbuild_digest::Digest;
use rbuild_exporter::image::BuiltImage;
use rbuild_oci::media_types;
use rbuild_oci::model::{manifest_json, BlobRef};
use rbuild_snapshotter::content::ContentStore;
use rbuild_snapshotter::layer::{write_layer, Compression, LayerOptions, SourceKind};
use rbuild_snapshotter::snapshots::{SnapshotId, Snapshotter};
use serde::{Deserialize, Serialize};

/// One layer of the image: its blob and its diff_id.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Layer {
    pub digest: String,
    pub size: u64,
    pub media_type: String,
    pub diff_id: String,
}

impl Layer {
    pub fn blob(&self) -> Result<BlobRef> {
        Ok(BlobRef {
            digest: self.digest.parse().map_err(|e| anyhow::anyhow!("{e:?}"))?,
            size: self.size,
            media_type: self.media_type.clone(),
        })
    }
}

/// The snapshots from `top` down to the root, top first.
fn chain(snapshots: &Snapshotter, top: Option<&SnapshotId>) -> Result<Vec<SnapshotId>> {
    let mut out = Vec::new();
    let mut next = top.cloned();
    while let Some(id) = next {
        next = snapshots
            .parent(&id)
            .with_context(|| format!("Snapshot `{}`", id.as_str()))?;
        out.push(id);
    }
    Ok(out)
}

/// The layers of the image whose top snapshot is `top`: snapshots that are layers of a base
/// image (`known`, by snapshot id) keep their original blob; the others are written once per
/// compression and source date, then memoised beside the snapshot.
pub fn layers(
    snapshots: &Snapshotter,
    content: &ContentStore,
    top: Option<&SnapshotId>,
    known: &HashMap<String, Layer>,
    compression: Compression,
    source_date_epoch: Option<i64>,
) -> Result<(Vec<Layer>, usize)> {
    let mut ids = chain(snapshots, top)?;
    ids.reverse();
    let mut out = Vec::new();
    let mut base = 0;
    for id in ids {
        if let Some(layer) = known.get(id.as_str()) {
            out.push(layer.clone());
            base += 1;
            continue;
        }
        out.push(step_layer(
            snapshots,
            content,
            &id,
            compression,
            source_date_epoch,
        )?);
    }
    Ok((out, base))
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

fn step_layer(
    snapshots: &Snapshotter,
    content: &ContentStore,
    id: &SnapshotId,
    compression: Compression,
    epoch: Option<i64>,
) -> Result<Layer> {
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
        .context("Failed to start a layer blob")?;
    let options = LayerOptions {
        compression,
        source_date_epoch: epoch,
        threads: 0,
    };
    let desc = write_layer(&fs_dir, SourceKind::OverlayUpper, &mut writer, &options)
        .with_context(|| format!("Failed to write the layer of snapshot `{}`", id.as_str()))?;
    writer
        .commit(Some(&desc.digest), Some(desc.size))
        .context("Failed to store a layer blob")?;
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

/// The image in the content store: config blob, manifest blob (Docker or OCI media types).
#[derive(Debug, Clone)]
pub struct StoredImage {
    pub built: BuiltImage,
    pub manifest: BlobRef,
}

pub fn store_image(
    content: &ContentStore,
    config_json: &[u8],
    layers: &[Layer],
    docker_media_types: bool,
) -> Result<StoredImage> {
    let stored = content
        .put_bytes(config_json)
        .context("Failed to store the image config")?;
    let config = BlobRef {
        digest: stored.digest,
        size: stored.size,
        media_type: if docker_media_types {
            media_types::DOCKER_CONFIG
        } else {
            media_types::OCI_CONFIG
        }
        .to_string(),
    };
    let layer_refs = layers.iter().map(Layer::blob).collect::<Result<Vec<_>>>()?;
    let manifest_bytes = manifest_json(&config, &layer_refs, docker_media_types)
        .context("Failed to make the manifest")?;
    let stored = content
        .put_bytes(&manifest_bytes)
        .context("Failed to store the manifest")?;
    Ok(StoredImage {
        built: BuiltImage {
            config,
            layers: layer_refs,
        },
        manifest: BlobRef {
            digest: stored.digest,
            size: stored.size,
            media_type: media_types::manifest_type(docker_media_types).to_string(),
        },
    })
}
