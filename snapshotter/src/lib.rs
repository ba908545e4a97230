//! rbuild-snapshotter: where filesystem states live and how they become layers.
//!
//! - [`snapshots`]: committed layers with parent chains; writable views as overlayfs mounts.
//!
//! Written so far: snapshots. The content store, diff → layer and layer → tree modules are
//! being added (issue 3); see docs/ARCHITECTURE.md.

pub mod snapshots;
