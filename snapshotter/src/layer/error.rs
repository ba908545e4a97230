//! The one error type of layer writing.

use std::io;
use std::path::PathBuf;

/// Why a layer could not be written. Filesystem errors name the path; the OS error is the
/// `#[source]`.
#[derive(Debug, thiserror::Error)]
pub enum LayerError {
    #[error("Layer source `{path}` is not a directory")]
    NotADirectory { path: PathBuf },
    #[error("Failed to read metadata of `{path}`")]
    Stat {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("Failed to list directory `{path}`")]
    ReadDir {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("Failed to read symlink `{path}`")]
    ReadLink {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("Failed to read extended attributes of `{path}`")]
    Xattr {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("Failed to read file `{path}`")]
    ReadFile {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("File `{path}` changed while it was archived (expected {expected} bytes)")]
    FileChanged { path: PathBuf, expected: u64 },
    #[error("`{path}` has a name starting with `.wh.`, which a layer reserves for whiteouts")]
    ReservedName { path: PathBuf },
    #[error(
        "`{path}` carries the overlay attribute `{attribute}`: the upper directory depends on \
         lower layers (mount overlayfs with `redirect_dir=off,metacopy=off`)"
    )]
    OverlayFeature { path: PathBuf, attribute: String },
    #[error("Invalid {algorithm} compression level `{level}` (expected {expected})")]
    InvalidLevel {
        algorithm: &'static str,
        level: i64,
        expected: String,
    },
    #[error("Unknown compression `{name}` (expected `gzip`, `zstd` or `uncompressed`)")]
    UnknownCompression { name: String },
    #[error("Failed to start a compression thread")]
    Spawn {
        #[source]
        source: io::Error,
    },
    #[error("Failed to set up {algorithm} compression")]
    Compressor {
        algorithm: &'static str,
        #[source]
        source: io::Error,
    },
    #[error("Failed to write the layer")]
    Write {
        #[source]
        source: io::Error,
    },
}

impl LayerError {
    pub(crate) fn write(source: io::Error) -> LayerError {
        LayerError::Write { source }
    }
}
