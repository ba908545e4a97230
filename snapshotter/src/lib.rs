//! rbuild-snapshotter: where filesystem states live and how they become layers.
//!
//! - [`content`]: blobs by digest, written atomically and verified (`content-v1/`); it is the
//!   blob source and sink of `rbuild-oci`'s archive writer and importer.
//! - [`images`]: the local image store, names → manifests (`images-v1/`).
//! - [`apply`]: a layer tar (gzip, zstd or plain) unpacked onto a root filesystem or into an
//!   overlay layer directory, whiteouts honoured, no entry able to leave the root.
//! - [`layer`]: an upperdir or plain directory → a deterministic OCI layer tar, compressed
//!   (parallel gzip, zstd or none) with diff_id and blob digest computed in the same pass.
//! - [`snapshots`]: committed layers with parent chains; writable views as overlayfs mounts.

pub mod apply;
mod blobs;
pub mod content;
pub mod images;
pub mod layer;
pub mod snapshots;

/// fsyncs a directory, so entries created or renamed in it survive a crash.
pub(crate) fn sync_dir(dir: &std::path::Path) -> std::io::Result<()> {
    std::fs::File::open(dir).and_then(|d| d.sync_all())
}
