//! Why a registry operation failed.

use rbuild_snapshotter::content::ContentError;

/// Errors of the registry client. Messages name the registry, repository or blob involved.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error(transparent)]
    Reference(#[from] crate::ReferenceError),
    #[error("{what}: cannot reach {url}: {detail}")]
    Transport {
        what: String,
        url: String,
        detail: String,
    },
    #[error("{what}: {url} answered {status}{}", if body.is_empty() { String::new() } else { format!(": {body}") })]
    Status {
        what: String,
        url: String,
        status: u16,
        body: String,
    },
    #[error("{what}: the registry {registry} refused the credentials{}: {detail}", if *anonymous { " (none were found: `docker login` or ~/.docker/config.json)" } else { "" })]
    Unauthorized {
        what: String,
        registry: String,
        anonymous: bool,
        detail: String,
    },
    #[error("{0}: not found in the registry")]
    NotFound(String),
    #[error("`{reference}` has no image for {wanted}; the registry has: {available}")]
    NoPlatform {
        reference: String,
        wanted: String,
        available: String,
    },
    #[error("{what}: {detail}")]
    Invalid { what: String, detail: String },
    #[error("{what}: the registry sent content whose digest is {actual}, not {expected}; nothing was stored")]
    DigestMismatch {
        what: String,
        expected: String,
        actual: String,
    },
    #[error("{what}: {source}")]
    Content {
        what: String,
        #[source]
        source: ContentError,
    },
    #[error("credentials for {registry}: {detail}")]
    Credentials { registry: String, detail: String },
}

impl RegistryError {
    pub(crate) fn invalid(what: impl Into<String>, detail: impl std::fmt::Display) -> Self {
        RegistryError::Invalid {
            what: what.into(),
            detail: detail.to_string(),
        }
    }

    /// Whether trying again may help: transport errors, 408, 429 and 5xx.
    pub fn is_transient(&self) -> bool {
        match self {
            RegistryError::Transport { .. } => true,
            RegistryError::Status { status, .. } => {
                matches!(status, 408 | 429 | 500 | 502 | 503 | 504)
            }
            _ => false,
        }
    }
}
