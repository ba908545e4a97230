//! rbuild-oci: the image model and the archive formats images travel in.
//!
//! - [`media_types`]: the OCI and Docker v2 schema 2 media types, in one place.
//! - [`model`]: building an image config (`rootfs.diff_ids`, `history` with `empty_layer`), a
//!   manifest and an index over `oci-spec`'s types, serialised deterministically (the same inputs
//!   give the same bytes, hence the same digests).
//! - [`archive`]: one tarball that is at once an OCI image layout (`oci-layout`, `index.json`,
//!   `blobs/sha256/...`) and a `docker load` archive (`manifest.json` pointing into `blobs/`), as
//!   BuildKit's docker exporter writes it. Blobs come from a [`archive::BlobSource`], so this
//!   crate never depends on where they are stored.
//! - [`import`]: OCI layouts (tar or directory) and docker-archives read into a [`import::BlobStore`].
//! - [`platform`]: `os/architecture[/variant]` and choosing an index entry by it.

pub mod archive;
pub mod canonical;
pub mod import;
pub mod media_types;
pub mod model;
pub mod platform;

pub use archive::{write_image_archive, ArchiveError, ArchiveImage, BlobSource};
pub use model::{BlobRef, HistoryEntry, ImageBuilder, ModelError};
