//! The predefined platform build args (`TARGETPLATFORM`, `BUILDOS`, ...). Platforms themselves
//! are rbuild-graph's.

pub use rbuild_graph::Platform;

/// The predefined args of `platform` with the given prefix (`TARGET` or `BUILD`).
pub(crate) fn args(platform: &Platform, prefix: &str) -> Vec<(String, String)> {
    vec![
        (format!("{prefix}PLATFORM"), platform.to_string()),
        (format!("{prefix}OS"), platform.os.clone()),
        (format!("{prefix}ARCH"), platform.architecture.clone()),
        (
            format!("{prefix}VARIANT"),
            platform.variant.clone().unwrap_or_default(),
        ),
    ]
}
