//! rbuild-solver: the content-addressed scheduler that turns a build graph into results.
//!
//! Not written yet (issue 5). The crate exists so the workspace has its final layout; it exports
//! nothing, and nothing depends on it. See docs/ARCHITECTURE.md for the design it will follow:
//! generic over `Worker`, `CacheIndex` and `Reporter` traits it defines, no OS access of its own.
