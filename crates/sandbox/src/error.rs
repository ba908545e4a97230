//! The sandbox's errors: one enum, the cause kept as a source.

use std::path::{Path, PathBuf};

/// Why a step could not be run (a step that ran and failed is an [`crate::Outcome`], not this).
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    #[error("Cannot {what} `{}` in the rootfs", path.display())]
    Rootfs {
        path: PathBuf,
        what: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("Cannot use `{path}` as a mount point: it {problem}")]
    MountPoint { path: String, problem: &'static str },
    #[error("Invalid path `{0}`: {1}")]
    BadPath(String, &'static str),
    #[error("Invalid step: {0}")]
    InvalidSpec(String),
    #[error("exec: `{name}`: executable file not found in $PATH (`{path}`)")]
    ExecutableNotFound { name: String, path: String },
    #[error("The sandbox could not {stage}")]
    Setup {
        stage: String,
        #[source]
        source: std::io::Error,
    },
    #[error("Cannot set resource limits: {0}")]
    Cgroup(String, #[source] std::io::Error),
    #[error("Cannot {0}")]
    Io(String, #[source] std::io::Error),
    #[error(transparent)]
    User(#[from] crate::user::UserError),
    #[error("The step was cancelled")]
    Cancelled,
}

impl SandboxError {
    pub(crate) fn rootfs(
        path: &Path,
        what: &'static str,
        errno: rustix::io::Errno,
    ) -> SandboxError {
        SandboxError::Rootfs {
            path: path.to_path_buf(),
            what,
            source: errno.into(),
        }
    }

    pub(crate) fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> SandboxError {
        let what = what.into();
        move |e| SandboxError::Io(what, e)
    }
}
