//! rbuild-registry: talking to OCI distribution registries.
//!
//! - [`reference`]: image references parsed and normalised exactly as Docker does
//!   (`alpine` → `docker.io/library/alpine:latest`);
//! - [`client`]: one HTTP client per command, with auth ([`challenge`], [`credentials`]) and
//!   retries;
//! - [`pull`]: tag → index → manifest → blobs into the content store, verified;
//! - [`push`]: blobs (HEAD, mount, upload) then the manifest.

pub mod challenge;
pub mod client;
pub mod credentials;
mod error;
pub mod platform;
pub mod pull;
pub mod push;
pub mod reference;

pub use client::{Client, ClientOptions};
pub use error::RegistryError;
pub use platform::Platform;
pub use reference::{Reference, ReferenceError};
