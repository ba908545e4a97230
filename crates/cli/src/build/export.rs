//! From the target's snapshot to an image: layers (the base image's own blobs, then one
//! deterministic layer per step, memoised per snapshot), config, manifest; then the outputs.

use std::collections::HashMap;

use anyhow::{Context, Result};
use rbuild_exporter::image::BuiltImage;
use rbuild_oci::media_types;
use rbuild_oci::model::{manifest_json, BlobRef};
use rbuild_snapshotter::content::ContentStore;
use rbuild_snapshotter::layer::Compression;
use rbuild_snapshotter::snapshots::{SnapshotId, Snapshotter};

pub use rbuild_worker::layers::Layer;

/// A layer's blob descriptor.
pub fn blob(layer: &Layer) -> Result<BlobRef> {
    Ok(BlobRef {
        digest: layer.digest.parse().map_err(|e| anyhow::anyhow!("{e:?}"))?,
        size: layer.size,
        media_type: layer.media_type.clone(),
    })
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

/// The layers of an image, bottom first.
#[derive(Debug)]
pub struct ImageLayers {
    pub layers: Vec<Layer>,
    /// How many of them are the base image's.
    pub base: usize,
    /// The snapshots of the others (the build's steps), in the same order.
    pub step_snapshots: Vec<SnapshotId>,
}

/// The layers of the image whose top snapshot is `top`: snapshots that are layers of a base
/// image (`known`, by snapshot id) keep their original blob; the others are written once per
/// compression and source date (only hashed when `lazy`; see
/// [`rbuild_worker::layers::step_layer`]), then memoised beside the snapshot.
pub fn layers(
    snapshots: &Snapshotter,
    content: &ContentStore,
    top: Option<&SnapshotId>,
    known: &HashMap<String, Layer>,
    compression: Compression,
    source_date_epoch: Option<i64>,
    lazy: bool,
) -> Result<ImageLayers> {
    let mut ids = chain(snapshots, top)?;
    ids.reverse();
    let mut out = ImageLayers {
        layers: Vec::new(),
        base: 0,
        step_snapshots: Vec::new(),
    };
    for id in ids {
        if let Some(layer) = known.get(id.as_str()) {
            out.layers.push(layer.clone());
            out.base += 1;
            continue;
        }
        out.layers.push(
            rbuild_worker::layers::step_layer(
                snapshots,
                content,
                &id,
                compression,
                source_date_epoch,
                lazy,
            )
            .map_err(|e| anyhow::anyhow!("{e}"))?,
        );
        out.step_snapshots.push(id);
    }
    Ok(out)
}

/// Stores the recipes of the image's lazy layers that the store has neither as a blob nor as
/// a recipe. Their snapshots were committed without a sync, so the state root's filesystem is
/// synced first (only when there is a recipe to write): a recipe never names data a power
/// loss could take.
pub fn record_lazy_layers(
    state_root: &std::path::Path,
    content: &ContentStore,
    layers: &ImageLayers,
    source_date_epoch: Option<i64>,
) -> Result<()> {
    let steps = &layers.layers[layers.base..];
    let missing: Vec<(&SnapshotId, &Layer)> = layers
        .step_snapshots
        .iter()
        .zip(steps)
        .filter(|(_, layer)| {
            layer
                .digest
                .parse()
                .map_or(true, |digest| !content.contains(&digest))
        })
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    rbuild_worker::fsutil::sync_filesystem(state_root)
        .with_context(|| format!("Failed to sync the filesystem of {}", state_root.display()))?;
    for (id, layer) in missing {
        rbuild_worker::layers::record_lazy(content, id, layer, source_date_epoch)
            .map_err(|e| anyhow::anyhow!("{e}"))?;
    }
    Ok(())
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
    let layer_refs = layers.iter().map(blob).collect::<Result<Vec<_>>>()?;
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
