//! rbuild-registry: talking to OCI distribution registries (issue 6).
//!
//! So far only [`reference`]: image references parsed and normalised exactly as Docker does
//! (`alpine` → `docker.io/library/alpine:latest`), the first piece the registry client, the
//! local image store and `--build-context docker-image://` will share.

pub mod reference;

pub use reference::{Reference, ReferenceError};
