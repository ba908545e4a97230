//! The one error type of layer application.

use std::io;
use std::path::PathBuf;

/// Why a layer could not be applied.
///
/// Every variant about an archive entry names the entry (its path as written in the archive,
/// lossily decoded); the OS or decoder error, when there is one, is the `#[source]`.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error("Failed to open the root directory `{}`", root.display())]
    Root {
        root: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("Failed to read the layer")]
    Read(#[source] io::Error),
    #[error("Unsupported layer compression `{0}` (expected gzip, zstd or plain tar)")]
    Compression(&'static str),
    #[error("Failed to read the archive entry `{entry}`")]
    Entry {
        entry: String,
        #[source]
        source: io::Error,
    },
    #[error("Entry `{entry}` has an invalid path")]
    InvalidPath { entry: String },
    #[error("Entry `{entry}` escapes the root")]
    Escape { entry: String },
    #[error("Hardlink `{entry}` targets `{target}`, which is outside the root or invalid")]
    LinkEscape { entry: String, target: String },
    #[error("Entry `{entry}` is a device node and device nodes are not allowed")]
    Device { entry: String },
    #[error("Entry `{entry}` has an unsupported type ({kind})")]
    UnsupportedType { entry: String, kind: String },
    #[error("Entry `{entry}` has an invalid PAX header `{key}`")]
    Pax { entry: String, key: String },
    #[error("Failed to {action} for entry `{entry}`")]
    Fs {
        entry: String,
        action: &'static str,
        #[source]
        source: io::Error,
    },
}

impl ApplyError {
    /// An OS failure while doing `action` for `entry`.
    pub(crate) fn fs(entry: &str, action: &'static str, source: impl Into<io::Error>) -> Self {
        ApplyError::Fs {
            entry: entry.to_owned(),
            action,
            source: source.into(),
        }
    }
}
