//! What one step runs: the process, its rootfs, its mounts, its network, privileges and limits.

use std::path::PathBuf;

use crate::user::ExecUser;

/// The PATH a step gets when its environment sets none (BuildKit's and runc's default).
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The hostname every step sees. BuildKit's name, so scripts that look at it behave the same.
pub const HOSTNAME: &str = "buildkitsandbox";

/// One step to run. The rootfs is a directory the caller prepared (usually a snapshotter view);
/// the sandbox writes into it only the mount-point stubs it needs, and removes again every stub
/// that is a file (see [`crate::Sandbox::run`]).
#[derive(Debug, Clone)]
pub struct StepSpec {
    /// The root filesystem (host path). Must not be a symlink.
    pub rootfs: PathBuf,
    /// argv; `args[0]` is looked up in PATH inside the rootfs unless it contains a `/`.
    /// Shell form is built by the caller with [`shell_form`].
    pub args: Vec<String>,
    /// `KEY=VALUE` pairs, in order. PATH and HOME are added when missing.
    pub env: Vec<String>,
    /// Working directory inside the rootfs (absolute); created (0755, root) when missing.
    pub cwd: String,
    /// The resolved user (see [`crate::user::resolve_user`]).
    pub user: ExecUser,
    pub network: NetworkMode,
    pub security: SecurityMode,
    /// `RUN --mount` mounts, applied in order after the standard ones.
    pub mounts: Vec<Mount>,
    pub limits: ResourceLimits,
}

impl StepSpec {
    /// A step running `args` as root in `/` with no extra mounts, host network, default security.
    pub fn new(rootfs: impl Into<PathBuf>, args: Vec<String>) -> StepSpec {
        StepSpec {
            rootfs: rootfs.into(),
            args,
            env: Vec::new(),
            cwd: "/".into(),
            user: ExecUser {
                uid: 0,
                gid: 0,
                additional_gids: Vec::new(),
                home: "/root".into(),
            },
            network: NetworkMode::Default,
            security: SecurityMode::Sandbox,
            mounts: Vec::new(),
            limits: ResourceLimits::default(),
        }
    }
}

/// argv of a shell-form RUN: the stage's SHELL (default `/bin/sh -c`) followed by the command.
pub fn shell_form(shell: &[String], command: &str) -> Vec<String> {
    let mut args = if shell.is_empty() {
        vec!["/bin/sh".to_string(), "-c".to_string()]
    } else {
        shell.to_vec()
    };
    args.push(command.to_string());
    args
}

/// `--network` / `RUN --network`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NetworkMode {
    /// What buildkitd does when no CNI is configured: the host's network namespace, so package
    /// managers reach their mirrors. The step still gets its own `/etc/hosts` and hostname.
    Default,
    /// A fresh network namespace with only `lo`, which is up.
    None,
    /// The host's network namespace (same as `Default` here; kept apart for the cache key).
    Host,
}

impl NetworkMode {
    /// Parses `default`, `none` or `host`.
    pub fn parse(value: &str) -> Option<NetworkMode> {
        match value {
            "default" => Some(NetworkMode::Default),
            "none" => Some(NetworkMode::None),
            "host" => Some(NetworkMode::Host),
            _ => None,
        }
    }

    pub(crate) fn own_namespace(self) -> bool {
        self == NetworkMode::None
    }
}

/// `RUN --security=`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecurityMode {
    /// Docker's default capability set, sensitive `/proc` paths masked or read-only, `/sys`
    /// read-only.
    Sandbox,
    /// `--security=insecure`: every capability, nothing masked, `/sys` writable.
    Insecure,
}

/// A `RUN --mount`, in the sandbox's terms. The worker maps the Dockerfile types onto these:
/// `bind` (from a snapshot or the context) and `cache` (a [`crate::CacheMounts`] lease) are
/// [`Mount::Bind`], `tmpfs` is [`Mount::Tmpfs`], `secret` is [`Mount::Secret`], `ssh` is a
/// [`Mount::Bind`] of the agent socket (with `SSH_AUTH_SOCK` in the env).
#[derive(Debug, Clone)]
pub enum Mount {
    /// A host directory or file (not followed if it is a symlink) at `target`.
    Bind {
        source: PathBuf,
        target: String,
        readonly: bool,
    },
    /// A fresh tmpfs at `target`; `size` in bytes (the kernel's default, half of RAM, if none).
    Tmpfs { target: String, size: Option<u64> },
    /// A file with `data` at `target`, read-only, owned by `uid:gid` with `mode`. It lives in
    /// the sandbox's runtime directory for the step only; nothing of it reaches the rootfs.
    Secret {
        data: Vec<u8>,
        target: String,
        uid: u32,
        gid: u32,
        mode: u32,
    },
}

impl Mount {
    pub(crate) fn target(&self) -> &str {
        match self {
            Mount::Bind { target, .. }
            | Mount::Tmpfs { target, .. }
            | Mount::Secret { target, .. } => target,
        }
    }
}

/// Limits for the step's processes, enforced with cgroups (v1 or v2, whichever holds the
/// controller). `None` means unlimited.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ResourceLimits {
    /// `--memory`: bytes of memory (and of memory+swap, so the limit cannot be dodged by swap).
    pub memory: Option<u64>,
    /// `--cpu-shares`: relative weight (Docker's 2..=262144, 1024 = default).
    pub cpu_shares: Option<u64>,
    /// `--cpu-quota` with `--cpu-period` (default 100000 µs): CPU time per period.
    pub cpu_quota: Option<u64>,
    pub cpu_period: Option<u64>,
    /// `--pids-limit`: maximum number of tasks.
    pub pids: Option<u64>,
}

impl ResourceLimits {
    pub(crate) fn any(&self) -> bool {
        self != &ResourceLimits::default()
    }
}
