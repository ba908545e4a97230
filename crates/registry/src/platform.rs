//! Platforms and index entry selection live in rbuild-oci (one rule for pulls and for OCI
//! layouts); re-exported here for the registry's callers.

pub use rbuild_oci::platform::{matches, select, Platform};
