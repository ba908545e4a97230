//! Base images: from the local image store into snapshots, one per layer.
//!
//! A layer's snapshot is named after its chain id (`sha256(parent chain id + " " + diff_id)`,
//! the OCI definition), so an image whose first layers another image shares reuses their
//! snapshots, and unpacking is skipped when the snapshot exists. A layer is applied in overlay
//! form (whiteouts as 0/0 devices) into a directory beside the snapshots and committed by rename.

use rbuild_digest::Digest;
use rbuild_oci::import::parse_manifest;
use rbuild_oci::BlobRef;
use rbuild_snapshotter::apply::{apply_layer, ApplyMode, ApplyOptions};
use rbuild_snapshotter::content::ContentStore;
use rbuild_snapshotter::images::{ImageRecord, ImageStore};
use rbuild_snapshotter::snapshots::{SnapshotId, Snapshotter};
use rbuild_solver::WorkerError;
use sha2::{Digest as _, Sha256};

/// What the store knows of an image name.
#[derive(Debug, Clone)]
pub struct ResolvedImage {
    pub manifest: Digest,
    pub config: Vec<u8>,
    /// (blob, diff_id) of each layer, bottom first.
    pub layers: Vec<(BlobRef, Digest)>,
}

impl ResolvedImage {
    /// The snapshot id of each layer (`layer-<chain id hex>`), bottom first.
    pub fn snapshot_ids(&self) -> Vec<String> {
        let mut chain = String::new();
        self.layers
            .iter()
            .map(|(_, diff_id)| {
                chain = if chain.is_empty() {
                    diff_id.to_string()
                } else {
                    format!(
                        "sha256:{}",
                        rbuild_graph::hex(&Sha256::digest(format!("{chain} {diff_id}").as_bytes()))
                    )
                };
                format!("layer-{}", &chain["sha256:".len()..])
            })
            .collect()
    }
}

fn err(reference: &str, e: impl std::fmt::Display) -> WorkerError {
    WorkerError::new(format!("image `{reference}`: {e}"))
}

/// The record of `reference`: under its normalised name (`busybox` →
/// `docker.io/library/busybox:latest`), or as written (stores of older rbuilds); a
/// digest-pinned reference also matches any record of that manifest digest. Every command
/// that names a stored image finds it through this.
pub fn lookup(
    images: &ImageStore,
    reference: &str,
) -> Result<ImageRecord, rbuild_snapshotter::images::ImageStoreError> {
    let parsed = rbuild_registry::Reference::parse(reference).ok();
    if let Some(found) = parsed
        .as_ref()
        .and_then(|r| images.get(&r.to_string()).ok())
    {
        return Ok(found);
    }
    if let Some(digest) = parsed.as_ref().and_then(|r| r.digest.clone()) {
        if let Some(found) = images
            .list()?
            .into_iter()
            .find(|r| r.manifest.to_string() == digest)
        {
            return Ok(found);
        }
    }
    images.get(reference)
}

/// Looks `reference` up in the local image store and reads its manifest and config.
pub fn resolve(
    images: &ImageStore,
    content: &ContentStore,
    reference: &str,
) -> Result<ResolvedImage, WorkerError> {
    let record = lookup(images, reference).map_err(|e| {
        WorkerError::new(format!(
            "{e}: pull it (`rbuild pull`, or build without `--pull=false`) or import it with `rbuild load -i IMAGE.tar`"
        ))
    })?;
    let manifest =
        std::fs::read(content.blob_path(&record.manifest)).map_err(|e| err(reference, e))?;
    let (config_ref, layer_refs) = parse_manifest(&manifest).map_err(|e| err(reference, e))?;
    let config =
        std::fs::read(content.blob_path(&config_ref.digest)).map_err(|e| err(reference, e))?;
    let doc: serde_json::Value = serde_json::from_slice(&config).map_err(|e| err(reference, e))?;
    let diff_ids: Vec<Digest> = doc["rootfs"]["diff_ids"]
        .as_array()
        .map(|ids| {
            ids.iter()
                .filter_map(|d| d.as_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default();
    if diff_ids.len() != layer_refs.len() {
        return Err(err(
            reference,
            "the config's diff_ids do not match the manifest's layers",
        ));
    }
    Ok(ResolvedImage {
        manifest: record.manifest,
        config,
        layers: layer_refs.into_iter().zip(diff_ids).collect(),
    })
}

/// Makes sure every layer of `image` is a snapshot; returns the top one (`None`: no layers).
pub fn unpack(
    snapshots: &Snapshotter,
    content: &ContentStore,
    state_root: &std::path::Path,
    reference: &str,
    image: &ResolvedImage,
) -> Result<Option<SnapshotId>, WorkerError> {
    let mut parent: Option<SnapshotId> = None;
    for ((blob, diff_id), id) in image.layers.iter().zip(image.snapshot_ids()) {
        let blob = &blob.digest;
        let id = SnapshotId::new(id).map_err(|e| err(reference, e))?;
        if !snapshots.exists(&id) {
            let staging_root = state_root.join("snapshots-v1/unpack");
            std::fs::create_dir_all(&staging_root).map_err(|e| err(reference, e))?;
            let staging = tempfile::Builder::new()
                .prefix("layer-")
                .tempdir_in(&staging_root)
                .map_err(|e| err(reference, e))?;
            let dir = staging.path().join("fs");
            std::fs::create_dir(&dir).map_err(|e| err(reference, e))?;
            let file = content.open_blob(blob).map_err(|e| err(reference, e))?;
            let stats = apply_layer(
                std::io::BufReader::with_capacity(1 << 20, file),
                &dir,
                &ApplyOptions::new(ApplyMode::OverlayLayer),
            )
            .map_err(|e| err(reference, e))?;
            if &stats.diff_id != diff_id {
                return Err(err(
                    reference,
                    format!(
                        "layer {blob} has diff_id {}, the config says {diff_id}",
                        stats.diff_id
                    ),
                ));
            }
            snapshots
                .commit_dir(&dir, &id, parent.as_ref())
                .map_err(|e| err(reference, e))?;
        }
        parent = Some(id);
    }
    Ok(parent)
}
