//! RUN: the step in the sandbox over a view of its parent, its `--mount`s mapped onto the
//! sandbox's mount kinds.

use std::collections::BTreeMap;
use std::path::PathBuf;

use rbuild_frontend::dockerignore::IgnoreRules;
use rbuild_graph::ExecMount;
use rbuild_sandbox::{
    CacheLease, CacheMounts, CacheOwner, Mount, NetworkMode, SecurityMode, Sharing,
};
use rbuild_snapshotter::snapshots::View;
use rbuild_solver::WorkerError;
use rustix::fs::OFlags;

use crate::fsutil::{fd_path, open_in_root, open_root};

/// Things a step's mounts hold on to while it runs (leases, read-only views of sources, views
/// of contexts without their ignored files).
#[derive(Debug, Default)]
pub struct Held {
    pub leases: Vec<CacheLease>,
    pub views: Vec<View>,
    pub contexts: Vec<crate::context_mount::FilteredContext>,
}

/// Where a bind mount's source lives.
#[derive(Debug)]
pub enum MountSource<'a> {
    /// A build context: the user's own directory, never writable by a step, seen without what
    /// its `.dockerignore` excludes.
    Context {
        dir: PathBuf,
        ignore: &'a IgnoreRules,
        /// Where a view without the ignored files is made (crate::context_mount).
        scratch: PathBuf,
    },
    /// A host directory (a view of a stage).
    Dir(PathBuf),
    /// The empty filesystem (`from=scratch`).
    Empty,
}

/// Where a secret's bytes come from.
#[derive(Clone)]
pub enum SecretValue {
    /// `--secret id=ID,src=FILE`: read when a step mounts it.
    File(PathBuf),
    /// `--secret id=ID,env=VAR`: the value, held in memory only (never written to a file
    /// outside the step's private runtime directory).
    Data(Vec<u8>),
}

impl std::fmt::Debug for SecretValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SecretValue::File(path) => write!(f, "File({})", path.display()),
            SecretValue::Data(_) => f.write_str("Data(<redacted>)"),
        }
    }
}

/// What the build was given for secrets and ssh (`--secret id=..,src=..`, `--ssh id=socket`).
#[derive(Debug, Clone, Default)]
pub struct Secrets {
    pub secrets: BTreeMap<String, SecretValue>,
    pub ssh: BTreeMap<String, PathBuf>,
}

pub fn network(mode: &str) -> Result<NetworkMode, WorkerError> {
    NetworkMode::parse(mode).ok_or_else(|| {
        WorkerError::new(format!(
            "unsupported network mode `{mode}` (default, none, host)"
        ))
    })
}

pub fn security(mode: &str) -> SecurityMode {
    if mode == "insecure" {
        SecurityMode::Insecure
    } else {
        SecurityMode::Sandbox
    }
}

/// Maps one `RUN --mount` to a sandbox mount (`None`: an optional secret or ssh that was not
/// given). `source` is the mount's `from` filesystem for bind and cache mounts.
pub fn map_mount(
    mount: &ExecMount,
    index: usize,
    source: Option<MountSource>,
    caches: &CacheMounts,
    secrets: &Secrets,
    env: &mut Vec<String>,
    held: &mut Held,
) -> Result<Option<Mount>, WorkerError> {
    match mount.kind.as_str() {
        "bind" => {
            let (root, filter) = match source {
                Some(MountSource::Context { .. }) if !mount.readonly => {
                    return Err(WorkerError::new(format!(
                        "bind mount at `{}`: a writable (rw) bind of the build context is not supported yet: \
                         the step would write into your own files (BuildKit throws such writes away); \
                         drop `rw`, or COPY the files in first",
                        mount.target
                    )))
                }
                Some(MountSource::Context {
                    dir,
                    ignore,
                    scratch,
                }) => (dir, Some((ignore, scratch))),
                Some(MountSource::Dir(dir)) => (dir, None),
                Some(MountSource::Empty) | None => {
                    return Err(WorkerError::new(format!(
                        "bind mount at `{}`: its source is empty",
                        mount.target
                    )))
                }
            };
            // Resolved inside the source: a symlink there cannot expose the host.
            let root_fd = open_root(&root)?;
            let fd = open_in_root(&root_fd, &mount.source, OFlags::PATH).map_err(|e| {
                WorkerError::new(format!("bind mount source `{}`: {e}", mount.source))
            })?;
            let mut source = fd_path(&fd)?;
            if let Some((ignore, scratch)) = filter {
                // The context as the step's key sees it: without its ignored files.
                let real_root = fd_path(&root_fd)?;
                if let Some(view) =
                    crate::context_mount::filtered(&real_root, ignore, &source, &scratch)?
                {
                    source = view.root().to_path_buf();
                    held.contexts.push(view);
                }
            }
            Ok(Some(Mount::Bind {
                source,
                target: mount.target.clone(),
                readonly: mount.readonly,
            }))
        }
        "cache" => {
            let id = mount.id.clone().unwrap_or_else(|| mount.target.clone());
            let sharing = match mount.sharing.as_deref() {
                Some(s) => Sharing::parse(s).unwrap_or(Sharing::Shared),
                None => Sharing::Shared,
            };
            let owner = CacheOwner {
                uid: mount.uid.unwrap_or(0),
                gid: mount.gid.unwrap_or(0),
                mode: mount.mode.unwrap_or(0o755),
            };
            let lease = caches
                .acquire(&id, sharing, owner)
                .map_err(|e| WorkerError::new(e.to_string()))?;
            let path = lease.path().to_path_buf();
            held.leases.push(lease);
            Ok(Some(Mount::Bind {
                source: path,
                target: mount.target.clone(),
                readonly: mount.readonly,
            }))
        }
        "tmpfs" => Ok(Some(Mount::Tmpfs {
            target: mount.target.clone(),
            size: mount.size,
        })),
        "secret" => {
            let id = mount.id.clone().unwrap_or_else(|| {
                std::path::Path::new(&mount.target)
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default()
            });
            let Some(value) = secrets.secrets.get(&id) else {
                if mount.required {
                    return Err(WorkerError::new(format!(
                        "secret `{id}` is required but was not given (--secret id={id},src=FILE)"
                    )));
                }
                return Ok(None);
            };
            let data = match value {
                SecretValue::Data(bytes) => bytes.clone(),
                SecretValue::File(path) => std::fs::read(path).map_err(|e| {
                    WorkerError::new(format!(
                        "secret `{id}`: cannot read {}: {e}",
                        path.display()
                    ))
                })?,
            };
            let target = if mount.target.is_empty() {
                format!("/run/secrets/{id}")
            } else {
                mount.target.clone()
            };
            Ok(Some(Mount::Secret {
                data,
                target,
                uid: mount.uid.unwrap_or(0),
                gid: mount.gid.unwrap_or(0),
                mode: mount.mode.unwrap_or(0o400),
            }))
        }
        "ssh" => {
            let id = mount.id.clone().unwrap_or_else(|| "default".into());
            let Some(socket) = secrets.ssh.get(&id) else {
                if mount.required {
                    return Err(WorkerError::new(format!(
                        "ssh agent `{id}` is required but was not given (--ssh {id}=SOCKET)"
                    )));
                }
                return Ok(None);
            };
            let target = if mount.target.is_empty() {
                format!("/run/buildkit/ssh_agent.{index}")
            } else {
                mount.target.clone()
            };
            env.push(format!("SSH_AUTH_SOCK={target}"));
            Ok(Some(Mount::Bind {
                source: socket.clone(),
                target,
                readonly: false,
            }))
        }
        other => Err(WorkerError::new(format!(
            "unsupported mount type `{other}`"
        ))),
    }
}
