//! rbuild-snapshotter: where filesystem states live and how they become layers.
//!
//! - [`content`]: blobs by digest, written atomically and verified (`content-v1/`); it is the
//!   blob source and sink of `rbuild-oci`'s archive writer and importer.
//! - [`snapshots`]: committed layers with parent chains; writable views as overlayfs mounts.
//!
//! Still to come (issue 3): diff → layer and layer → tree; see docs/ARCHITECTURE.md.

mod blobs;
pub mod content;
pub mod snapshots;
