//! rbuild-snapshotter: content store, overlay snapshots, diff → layer and layer → tree.
//!
//! Not written yet (issue 3). The crate exists so the workspace has its final layout; it exports
//! nothing, and nothing depends on it. See docs/ARCHITECTURE.md for the design it will follow.
