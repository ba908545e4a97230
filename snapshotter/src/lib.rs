//! rbuild-snapshotter: where filesystem states live and how they become layers.
//!
//! - [`content`]: blobs by digest, written atomically and verified (`content-v1/`); it is the
//!   blob source and sink of `rbuild-oci`'s archive writer and importer.
//! - [`apply`]: a layer tar (gzip, zstd or plain) unpacked onto a root filesystem or into an
//!   overlay layer directory, whiteouts honoured, no entry able to leave the root.
//! - [`snapshots`]: committed layers with parent chains; writable views as overlayfs mounts.
//!
//! Still to come (issue 3): diff → layer; see docs/ARCHITECTURE.md.

pub mod apply;
mod blobs;
pub mod content;
pub mod snapshots;
