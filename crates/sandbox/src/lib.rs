//! rbuild-sandbox: runs one RUN step in fresh Linux namespaces over a prepared rootfs.
//!
//! [`Sandbox::run`] takes a [`StepSpec`] (argv, env, cwd, resolved user, network and security
//! modes, `RUN --mount` mounts, resource limits) and a rootfs directory (normally the
//! snapshotter's overlay view) and returns the step's [`Outcome`] once every process of the
//! step is gone. The design, in the order things happen:
//!
//! 1. **Parent, before**: mount points are made inside the rootfs with `openat2(RESOLVE_IN_ROOT)`
//!    ([`rootfs`]); the executable is looked up in PATH inside the rootfs; secrets are written
//!    to a private runtime directory; a cgroup is made when limits are set ([`cgroups`]); the
//!    whole child program is precomputed ([`plan`]).
//! 2. **Clone** ([`sys`]): `clone3` with new mount, PID, IPC, UTS and cgroup namespaces (and a
//!    network namespace for `--network none`) makes the child PID 1 of its own PID namespace.
//!    No helper binary and no runc: a step costs one clone, a few dozen mounts and an exec.
//! 3. **Child**: waits until it is in its cgroups, sets SIGKILL as its parent-death signal
//!    (kill -9 of rbuild takes the step down with it), makes every mount private, mounts
//!    `/proc`, a tmpfs `/dev` with the standard nodes, `/dev/pts`, `/dev/shm`, `/dev/mqueue`, a
//!    read-only `/sys`, read-only `/etc/hosts`, `/etc/resolv.conf`, `/etc/hostname`, the step's
//!    mounts, then masks runc's sensitive `/proc` paths; `pivot_root`s into the rootfs and
//!    detaches the old root; sets the hostname ([`spec::HOSTNAME`]), brings `lo` up in a new
//!    network namespace, drops capabilities to Docker's default set ([`capabilities`]), switches
//!    to the user (groups, gid, uid), sets stdio (stdin is `/dev/null`) and execs.
//! 4. **Parent, during**: one thread polls the pidfd, the stdout/stderr pipes and a cancel
//!    eventfd; output goes line by line to an [`OutputSink`] and the last lines are kept.
//!    [`Cancel::cancel`] SIGKILLs PID 1, which makes the kernel kill the whole namespace.
//! 5. **Parent, after**: when PID 1 is reaped nothing of the step is left (no process, no
//!    mount: they lived in the step's mount namespace). OOM kills are read from the cgroup, the
//!    cgroup is removed, and the file stubs made for file mounts are deleted, so `/etc/hosts`
//!    and friends never reach the layer; directories made as mount points stay, as BuildKit
//!    leaves them.
//!
//! Network modes: `default` is the host's network namespace, which is what buildkitd does
//! without CNI, so `apt-get install` works; `host` is the same; `none` is a new namespace with
//! only `lo`. Not applied (as in neither issue nor BuildKit's defaults that rbuild copies yet):
//! seccomp and AppArmor profiles, and `no_new_privs` (off in Docker too, so `sudo` works).
//!
//! [`user`] resolves `USER` against the rootfs's passwd and group files (pure), and
//! [`CacheMounts`] keeps the persistent directories of `RUN --mount=type=cache`.

pub mod cache_mounts;
pub mod capabilities;
mod cgroups;
mod error;
mod output;
mod plan;
mod process;
mod rootfs;
mod spec;
mod sys;
pub mod user;

use std::ffi::CString;
use std::fs;
use std::os::fd::OwnedFd;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use rustix::mount::MountFlags;
use rustix::pipe::PipeFlags;

pub use cache_mounts::{CacheLease, CacheMounts, CacheOwner, Sharing};
pub use error::SandboxError;
pub use output::{Collect, Discard, OutputLine, OutputSink, Stream, MAX_LINE, TAIL_LINES};
pub use process::{Cancel, ExitStatus};
pub use spec::{
    shell_form, Mount, NetworkMode, ResourceLimits, SecurityMode, StepSpec, DEFAULT_PATH, HOSTNAME,
};

use plan::{CStringArray, ChildFds, ChildPlan, MountStep};
use rootfs::{Kind, Rootfs, Stubs};

/// Paths runc masks by default (read-only empty tmpfs or `/dev/null` over them).
const MASKED_PATHS: [&str; 11] = [
    "proc/acpi",
    "proc/asound",
    "proc/kcore",
    "proc/keys",
    "proc/latency_stats",
    "proc/timer_list",
    "proc/timer_stats",
    "proc/sched_debug",
    "proc/scsi",
    "sys/firmware",
    "sys/devices/virtual/powercap",
];

/// Paths runc makes read-only by default.
const READONLY_PATHS: [&str; 5] = [
    "proc/bus",
    "proc/fs",
    "proc/irq",
    "proc/sys",
    "proc/sysrq-trigger",
];

/// `/dev` devices, bound from the host's nodes (the step's `/dev` itself is nodev).
const DEVICES: [&str; 6] = ["null", "zero", "full", "random", "urandom", "tty"];

const DEV_LINKS: [(&str, &str); 5] = [
    ("fd", "/proc/self/fd"),
    ("stdin", "/proc/self/fd/0"),
    ("stdout", "/proc/self/fd/1"),
    ("stderr", "/proc/self/fd/2"),
    ("ptmx", "pts/ptmx"),
];

/// How a step ended.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub status: ExitStatus,
    /// `Some(limit)` when the kernel's OOM killer killed a process of the step (limit in bytes).
    pub oom_killed: Option<u64>,
    /// The last [`TAIL_LINES`] lines of output, both streams, in order.
    pub tail: Vec<OutputLine>,
    /// From clone to reap.
    pub duration: Duration,
}

impl Outcome {
    pub fn success(&self) -> bool {
        self.status.success()
    }

    /// BuildKit's wording for a failed step, plus the OOM cause when there is one.
    pub fn failure_message(&self, args: &[String]) -> String {
        let command = args.join(" ");
        let mut message = format!(
            "process \"{command}\" did not complete successfully: exit code: {}",
            self.status.code()
        );
        if let ExitStatus::Signaled(signal) = self.status {
            message.push_str(&format!(" (killed by signal {signal})"));
        }
        if let Some(limit) = self.oom_killed {
            message.push_str(&format!(
                "; the kernel's OOM killer killed it: the step went over its memory limit of {limit} bytes (--memory)"
            ));
        }
        message
    }
}

/// Runs steps. One per state root; [`Sandbox::run`] may be called from many threads at once.
#[derive(Debug)]
pub struct Sandbox {
    runtime_dir: PathBuf,
    etc_files: [(PathBuf, &'static str); 3],
    last_cap: u32,
    /// rbuild's own permitted capabilities: a step never gets more (`--security=insecure` gets
    /// exactly these).
    own_capabilities: u64,
}

impl Sandbox {
    /// A sandbox keeping its per-step files (the `/etc` files every step sees, secrets while a
    /// step runs) in `runtime_dir` (created 0700).
    pub fn new(runtime_dir: impl Into<PathBuf>) -> Result<Sandbox, SandboxError> {
        let runtime_dir = runtime_dir.into();
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&runtime_dir)
            .map_err(SandboxError::io(format!(
                "create {}",
                runtime_dir.display()
            )))?;
        let write = |name: &str, content: &[u8]| -> Result<PathBuf, SandboxError> {
            let path = runtime_dir.join(name);
            fs::write(&path, content)
                .map_err(SandboxError::io(format!("write {}", path.display())))?;
            Ok(path)
        };
        let hosts =
            format!("127.0.0.1\tlocalhost {HOSTNAME}\n::1\tlocalhost ip6-localhost ip6-loopback\n");
        let resolv = fs::read("/etc/resolv.conf").unwrap_or_default();
        let etc_files = [
            (write("hosts", hosts.as_bytes())?, "/etc/hosts"),
            (write("resolv.conf", &resolv)?, "/etc/resolv.conf"),
            (
                write("hostname", format!("{HOSTNAME}\n").as_bytes())?,
                "/etc/hostname",
            ),
        ];
        // Capability masks are u64: a kernel with more than 64 capabilities keeps the rest.
        let last_cap = capabilities::last_cap()
            .map_err(SandboxError::io("read the kernel's last capability"))?
            .min(63);
        sweep_stale_step_dirs(&runtime_dir);
        let own_capabilities = rustix::thread::capabilities(None)
            .map_err(|e| SandboxError::Io("read rbuild's capabilities".into(), e.into()))?
            .permitted
            .bits()
            & capabilities::all_mask(last_cap);
        Ok(Sandbox {
            runtime_dir,
            etc_files,
            last_cap,
            own_capabilities,
        })
    }

    /// Runs `spec` to completion (or until `cancel`), passing its output to `sink` line by line.
    ///
    /// Blocks the calling thread for the whole step (call it from a blocking-task thread). On
    /// return, whatever the result, no process of the step is alive, no mount of the step
    /// exists, its cgroup is gone and its file stubs are removed from the rootfs.
    pub fn run(
        &self,
        spec: &StepSpec,
        sink: &mut dyn OutputSink,
        cancel: &Cancel,
    ) -> Result<Outcome, SandboxError> {
        validate(spec)?;
        let rootfs = Rootfs::open(&spec.rootfs)?;
        let mut stubs = Stubs::default();
        let secrets = tempfile::Builder::new()
            .prefix(&format!("step-{}-", std::process::id()))
            .tempdir_in(&self.runtime_dir)
            .map_err(SandboxError::io("create a step directory"))?;
        let result = self.prepare_and_run(spec, &rootfs, &mut stubs, secrets.path(), sink, cancel);
        let cleanup = stubs.remove();
        let outcome = result?;
        cleanup?;
        Ok(outcome)
    }

    fn prepare_and_run(
        &self,
        spec: &StepSpec,
        rootfs: &Rootfs,
        stubs: &mut Stubs,
        step_dir: &Path,
        sink: &mut dyn OutputSink,
        cancel: &Cancel,
    ) -> Result<Outcome, SandboxError> {
        let insecure = spec.security == SecurityMode::Insecure;
        for dir in ["/dev", "/proc", "/sys"] {
            rootfs.ensure(dir, Kind::Dir, stubs)?;
            // The standard mounts and the /proc masks are resolved without following symlinks:
            // an image must not be able to move /proc where the masks do not reach.
            rootfs.require_plain_dir(dir)?;
        }
        rootfs.ensure(&spec.cwd, Kind::Dir, stubs)?;

        let mut steps = standard_mounts(insecure);
        for (source, target) in &self.etc_files {
            // An image whose /etc/hosts is a dangling symlink or a directory simply goes without.
            match rootfs.ensure(target, Kind::File, stubs) {
                Ok(()) => steps.push(MountStep::Bind {
                    source: cstring(source.as_os_str().as_encoded_bytes())?,
                    target: rel(target)?,
                    readonly: true,
                }),
                Err(SandboxError::MountPoint { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        for (i, mount) in spec.mounts.iter().enumerate() {
            steps.push(prepare_mount(mount, i, rootfs, stubs, step_dir)?);
        }
        if !insecure {
            steps.extend(
                MASKED_PATHS
                    .iter()
                    .map(|p| MountStep::Mask { target: lit(p) }),
            );
            steps.extend(
                READONLY_PATHS
                    .iter()
                    .map(|p| MountStep::ReadOnly { target: lit(p) }),
            );
        }

        let env = environment(spec);
        let search_path = env
            .iter()
            .rev()
            .find_map(|e| e.strip_prefix("PATH="))
            .unwrap_or(DEFAULT_PATH)
            .to_string();
        let candidates = exec_candidates(&spec.args[0], &search_path);

        // Only the supplementary groups: BuildKit (dockerd 20.10, the golden corpus' reference)
        // does not add the primary gid, so `id` shows no `groups=` for a user without any.
        let groups: Vec<rustix::process::Gid> = spec
            .user
            .additional_gids
            .iter()
            .map(|gid| rustix::process::Gid::from_raw(*gid))
            .collect();
        let plan = ChildPlan {
            rootfs: cstring(spec.rootfs.as_os_str().as_encoded_bytes())?,
            steps,
            hostname: lit(HOSTNAME),
            loopback_up: spec.network.own_namespace(),
            cwd: cstring(spec.cwd.as_bytes())?,
            uid: spec.user.uid,
            gid: spec.user.gid,
            groups,
            capabilities: if insecure {
                self.own_capabilities
            } else {
                capabilities::default_mask() & self.own_capabilities
            },
            last_cap: self.last_cap,
            exec_candidates: candidates
                .iter()
                .map(|c| cstring(c.as_bytes()))
                .collect::<Result<_, _>>()?,
            search_path: search_path.clone(),
            argv: CStringArray::new(
                spec.args
                    .iter()
                    .map(|a| cstring(a.as_bytes()))
                    .collect::<Result<_, _>>()?,
            ),
            envp: CStringArray::new(
                env.iter()
                    .map(|e| cstring(e.as_bytes()))
                    .collect::<Result<_, _>>()?,
            ),
        };

        let pipe = || {
            rustix::pipe::pipe_with(PipeFlags::CLOEXEC)
                .map_err(|e| SandboxError::Io("create a pipe".into(), e.into()))
        };
        let (stdout_read, stdout_write) = pipe()?;
        let (stderr_read, stderr_write) = pipe()?;
        let (sync_read, sync_write) = pipe()?;
        let (error_read, error_write) = pipe()?;
        let stdin: OwnedFd = fs::File::open("/dev/null")
            .map_err(SandboxError::io("open /dev/null"))?
            .into();
        let child_fds = ChildFds {
            stdin,
            stdout: stdout_write,
            stderr: stderr_write,
            sync: sync_read,
            error: error_write,
        };
        let parent_fds = process::ParentFds {
            stdout: stdout_read,
            stderr: stderr_read,
            sync: sync_write,
            error: error_read,
        };
        let cgroup = if spec.limits.any() {
            Some(cgroups::StepCgroup::create(&spec.limits)?)
        } else {
            None
        };
        let namespaces = sys::Namespaces {
            network: spec.network.own_namespace(),
        };
        let finished = process::run(
            &plan,
            child_fds,
            parent_fds,
            namespaces,
            cgroup.as_ref(),
            sink,
            cancel,
        )?;
        let oom_killed = cgroup.as_ref().and_then(|c| c.oom_killed());
        Ok(Outcome {
            status: finished.status,
            oom_killed,
            tail: finished.tail.into_vec(),
            duration: finished.duration,
        })
    }
}

/// Puts rbuild in a mount namespace of its own, with every mount private, so that every mount
/// it makes (snapshot views, the steps') disappears with the process, even after kill -9.
/// Call it first thing in `main`, before any thread exists.
pub fn enter_private_mount_namespace() -> Result<(), SandboxError> {
    sys::private_mount_namespace().map_err(|e| SandboxError::Setup {
        stage: "enter a private mount namespace (rbuild needs root)".into(),
        source: e,
    })
}

/// Resolves a `USER` value against the rootfs's `/etc/passwd` and `/etc/group`, read inside the
/// rootfs (symlinks cannot lead out of it) and capped at 4 MiB each.
pub fn resolve_user_in_rootfs(rootfs: &Path, user: &str) -> Result<user::ExecUser, SandboxError> {
    const LIMIT: u64 = 4 << 20;
    let root = Rootfs::open(rootfs)?;
    let text = |path: &str| -> Result<Option<String>, SandboxError> {
        Ok(root
            .read_file(path, LIMIT)?
            .map(|bytes| String::from_utf8_lossy(&bytes).into_owned()))
    };
    let passwd = text("/etc/passwd")?;
    let group = text("/etc/group")?;
    Ok(user::resolve_user(
        user,
        passwd.as_deref(),
        group.as_deref(),
    )?)
}

/// Removes the step directories (secrets) of rbuild processes that died without cleaning up:
/// `step-<pid>-*` whose pid no longer exists.
fn sweep_stale_step_dirs(runtime_dir: &Path) {
    let Ok(entries) = fs::read_dir(runtime_dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(pid) = name.strip_prefix("step-").and_then(|r| r.split('-').next()) else {
            continue;
        };
        if pid.parse::<u32>().is_ok() && !Path::new("/proc").join(pid).exists() {
            let _ = fs::remove_dir_all(entry.path());
        }
    }
}

/// Where the child looks for `argv[0]`, in order, as execvp(3) does: the name itself when it
/// has a `/`, else each PATH directory (an empty one meaning the working directory). The
/// child tries them after its mounts are in place, so a tool a `RUN --mount` provides is found.
fn exec_candidates(name: &str, path: &str) -> Vec<String> {
    if name.contains('/') {
        return vec![name.to_string()];
    }
    path.split(':')
        .map(|dir| if dir.is_empty() { "." } else { dir })
        .map(|dir| format!("{}/{}", dir.trim_end_matches('/'), name))
        .collect()
}

fn validate(spec: &StepSpec) -> Result<(), SandboxError> {
    if spec.args.is_empty() || spec.args[0].is_empty() {
        return Err(SandboxError::InvalidSpec("the command is empty".into()));
    }
    if !spec.cwd.starts_with('/') {
        return Err(SandboxError::InvalidSpec(format!(
            "the working directory `{}` is not absolute",
            spec.cwd
        )));
    }
    for mount in &spec.mounts {
        let target = mount.target();
        if !target.starts_with('/') {
            return Err(SandboxError::InvalidSpec(format!(
                "the mount target `{target}` is not absolute"
            )));
        }
    }
    Ok(())
}

/// The step's environment: the spec's, plus PATH and HOME when it sets none.
fn environment(spec: &StepSpec) -> Vec<String> {
    let mut env = spec.env.clone();
    if !env.iter().any(|e| e.starts_with("PATH=")) {
        env.push(format!("PATH={DEFAULT_PATH}"));
    }
    if !env.iter().any(|e| e.starts_with("HOME=")) {
        env.push(format!("HOME={}", spec.user.home));
    }
    env
}

/// `/proc`, `/dev` and its contents, `/sys`, in mount order.
fn standard_mounts(insecure: bool) -> Vec<MountStep> {
    let fs = |fstype: &str, target: &str, flags: MountFlags, data: &str| MountStep::Filesystem {
        fstype: lit(fstype),
        target: lit(target),
        flags,
        data: lit(data),
        optional: false,
        strict: true,
    };
    let hardened = MountFlags::NOSUID | MountFlags::NODEV | MountFlags::NOEXEC;
    let mut steps = vec![
        fs("proc", "proc", hardened, ""),
        fs(
            "tmpfs",
            "dev",
            MountFlags::NOSUID | MountFlags::STRICTATIME,
            "mode=755,size=65536k",
        ),
    ];
    steps.extend(["pts", "shm", "mqueue"].map(|name| MountStep::DevDir { name: lit(name) }));
    steps.push(fs(
        "devpts",
        "dev/pts",
        MountFlags::NOSUID | MountFlags::NOEXEC,
        "newinstance,ptmxmode=0666,mode=0620,gid=5",
    ));
    steps.push(fs("tmpfs", "dev/shm", hardened, "mode=1777,size=65536k"));
    steps.push(fs("mqueue", "dev/mqueue", hardened, ""));
    steps.extend(DEVICES.iter().map(|name| MountStep::Device {
        name: lit(name),
        host: lit(&format!("/dev/{name}")),
    }));
    steps.extend(DEV_LINKS.iter().map(|(name, target)| MountStep::Symlink {
        name: lit(name),
        target: lit(target),
    }));
    let sys_flags = if insecure {
        hardened
    } else {
        hardened | MountFlags::RDONLY
    };
    steps.push(fs("sysfs", "sys", sys_flags, ""));
    steps
}

/// Makes the mount point of a `RUN --mount` and the child's step for it.
fn prepare_mount(
    mount: &Mount,
    index: usize,
    rootfs: &Rootfs,
    stubs: &mut Stubs,
    step_dir: &Path,
) -> Result<MountStep, SandboxError> {
    match mount {
        Mount::Bind {
            source,
            target,
            readonly,
        } => {
            let meta = fs::symlink_metadata(source).map_err(SandboxError::io(format!(
                "inspect the mount source {}",
                source.display()
            )))?;
            if meta.file_type().is_symlink() {
                return Err(SandboxError::InvalidSpec(format!(
                    "the mount source {} is a symlink",
                    source.display()
                )));
            }
            let kind = if meta.is_dir() { Kind::Dir } else { Kind::File };
            rootfs.ensure(target, kind, stubs)?;
            Ok(MountStep::Bind {
                source: cstring(source.as_os_str().as_encoded_bytes())?,
                target: rel(target)?,
                readonly: *readonly,
            })
        }
        Mount::Tmpfs { target, size } => {
            rootfs.ensure(target, Kind::Dir, stubs)?;
            Ok(MountStep::Filesystem {
                fstype: lit("tmpfs"),
                target: rel(target)?,
                flags: MountFlags::NOSUID | MountFlags::NODEV,
                data: cstring(
                    size.map(|s| format!("size={s}"))
                        .unwrap_or_default()
                        .as_bytes(),
                )?,
                optional: false,
                strict: false,
            })
        }
        Mount::Secret {
            data,
            target,
            uid,
            gid,
            mode,
        } => {
            let path = step_dir.join(format!("secret-{index}"));
            let mut options = fs::OpenOptions::new();
            options.write(true).create_new(true).mode(0o600);
            let io =
                |what: &str| SandboxError::io(format!("{what} the secret file {}", path.display()));
            std::io::Write::write_all(&mut options.open(&path).map_err(io("create"))?, data)
                .map_err(io("write"))?;
            std::os::unix::fs::chown(&path, Some(*uid), Some(*gid)).map_err(io("chown"))?;
            fs::set_permissions(
                &path,
                std::os::unix::fs::PermissionsExt::from_mode(*mode & 0o7777),
            )
            .map_err(io("chmod"))?;
            rootfs.ensure(target, Kind::File, stubs)?;
            Ok(MountStep::Bind {
                source: cstring(path.as_os_str().as_encoded_bytes())?,
                target: rel(target)?,
                readonly: true,
            })
        }
    }
}

fn cstring(bytes: &[u8]) -> Result<CString, SandboxError> {
    CString::new(bytes).map_err(|_| {
        SandboxError::BadPath(
            String::from_utf8_lossy(bytes).into_owned(),
            "it contains a NUL byte",
        )
    })
}

/// A path inside the rootfs, relative (for openat2 from the rootfs descriptor).
fn rel(path: &str) -> Result<CString, SandboxError> {
    let trimmed = path.trim_start_matches('/');
    cstring(if trimmed.is_empty() {
        b"."
    } else {
        trimmed.as_bytes()
    })
}

/// A C string from a constant without NUL bytes.
fn lit(s: &str) -> CString {
    CString::new(s).unwrap_or_default()
}
