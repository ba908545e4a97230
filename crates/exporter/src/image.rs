//! Image archives: the built image's manifest (OCI or Docker media types) written into the
//! content store, then one tar that is an OCI layout and a `docker load` archive.

use std::io::{self, Write};
use std::path::PathBuf;

use rbuild_digest::Digest;
use rbuild_oci::model::{manifest_json, BlobRef};
use rbuild_oci::{media_types, write_image_archive, ArchiveImage};
use rbuild_snapshotter::content::ContentStore;
use rbuild_snapshotter::images::with_default_tag;

/// A built image: its config and layers, all in the content store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuiltImage {
    pub config: BlobRef,
    pub layers: Vec<BlobRef>,
}

/// Why an export failed.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error(transparent)]
    Content(#[from] rbuild_snapshotter::content::ContentError),
    #[error(transparent)]
    Apply(#[from] rbuild_snapshotter::apply::ApplyError),
    #[error(transparent)]
    Layer(#[from] rbuild_snapshotter::layer::LayerError),
    #[error(transparent)]
    Archive(#[from] rbuild_oci::ArchiveError),
    #[error(transparent)]
    Model(#[from] rbuild_oci::ModelError),
    #[error("Failed to {action} `{}`", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("Export destination `{}` exists and is not an empty directory", .0.display())]
    DestNotEmpty(PathBuf),
}

/// Writes the manifest for `image` into `store` and the archive to `out`; returns the manifest
/// digest. `mtime` is the build's source date.
pub fn export_image_archive(
    store: &ContentStore,
    image: &BuiltImage,
    names: &[String],
    docker_media_types: bool,
    mtime: u64,
    out: &mut dyn Write,
) -> Result<Digest, ExportError> {
    // manifest_json picks the config's media type from `docker_media_types`; the archive only
    // reads the config's digest and size.
    let bytes = manifest_json(&image.config, &image.layers, docker_media_types)?;
    let stored = store.put_bytes(&bytes)?;
    let manifest = BlobRef {
        digest: stored.digest.clone(),
        size: stored.size,
        media_type: media_types::manifest_type(docker_media_types).to_string(),
    };
    let archive = ArchiveImage {
        manifest,
        config: image.config.clone(),
        layers: image.layers.clone(),
        names: names.to_vec(),
        // docker load wants `name:tag`.
        repo_tags: names.iter().map(|n| with_default_tag(n)).collect(),
        mtime,
    };
    write_image_archive(&mut *out, &archive, store)?;
    out.flush().map_err(|source| ExportError::Io {
        action: "write",
        path: PathBuf::from("<output>"),
        source,
    })?;
    Ok(stored.digest)
}

#[cfg(test)]
mod tests {
    use super::with_default_tag as repo_tag;

    #[test]
    fn repo_tags_get_latest() {
        assert_eq!(repo_tag("app"), "app:latest");
        assert_eq!(repo_tag("localhost:5000/app"), "localhost:5000/app:latest");
        assert_eq!(repo_tag("localhost:5000/app:1"), "localhost:5000/app:1");
    }
}
