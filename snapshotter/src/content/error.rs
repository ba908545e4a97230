//! The content store's one error type.

use std::io;
use std::path::{Path, PathBuf};

use rbuild_digest::Digest;

/// Everything that can go wrong in the content store. Every message names the path or the
/// digest concerned; the underlying I/O error, when there is one, is the `#[source]`.
#[derive(Debug, thiserror::Error)]
pub enum ContentError {
    /// A filesystem operation failed. `action` reads as a verb phrase ("create directory").
    #[error("Failed to {action} `{path}`")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    /// Moving a finished temporary file to its blob name failed.
    #[error("Failed to move `{from}` into the content store as `{to}`")]
    Rename {
        from: PathBuf,
        to: PathBuf,
        #[source]
        source: io::Error,
    },

    /// Reading the caller's stream during [`ContentStore::import`](super::ContentStore::import)
    /// failed; the partial temporary file has been removed.
    #[error("Failed to read the content being imported into `{path}`")]
    ReadSource {
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    /// No blob with this digest is stored.
    #[error("Blob `{digest}` not found (no file `{path}`)")]
    NotFound { digest: Digest, path: PathBuf },

    /// Something other than a regular file sits where the blob should be.
    #[error("Expected blob `{digest}` to be a regular file at `{path}`")]
    NotABlob { digest: Digest, path: PathBuf },

    /// The written content does not have the digest the caller expected; nothing was stored.
    #[error("Content digest mismatch: expected `{expected}`, got `{actual}`")]
    DigestMismatch { expected: Digest, actual: Digest },

    /// The written content does not have the size the caller expected; nothing was stored.
    #[error("Content `{digest}` has {actual} bytes, expected {expected}")]
    SizeMismatch {
        digest: Digest,
        expected: u64,
        actual: u64,
    },

    /// A layer blob could not be made from its recipe: the snapshot it names is gone or no
    /// longer gives that layer. Nothing was stored.
    #[error(
        "Layer `{digest}` cannot be made from snapshot `{snapshot}`: {why}; build the image again (with --no-cache if this repeats)"
    )]
    LazyLayer {
        digest: Digest,
        snapshot: String,
        why: String,
    },

    /// A stored blob's content no longer hashes to its name (found by `verify`).
    #[error("Blob `{digest}` is corrupt: `{path}` hashes to `{actual}`")]
    Corrupt {
        digest: Digest,
        actual: Digest,
        path: PathBuf,
    },
}

impl ContentError {
    /// An I/O error while doing `action` on `path`.
    pub fn io(action: &'static str, path: &Path, source: io::Error) -> ContentError {
        ContentError::Io {
            action,
            path: path.to_path_buf(),
            source,
        }
    }

    /// True for [`ContentError::NotFound`].
    pub fn is_not_found(&self) -> bool {
        matches!(self, ContentError::NotFound { .. })
    }
}
