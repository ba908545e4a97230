//! The child's program: everything the process between `clone3` and `execve` needs, built in the
//! parent (where allocating is allowed) so that the child only walks it.
//!
//! Mount targets are paths relative to the rootfs. The child resolves each with
//! `openat2(RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS)` from a descriptor of the rootfs and mounts
//! onto `/proc/self/fd/N`, so no symlink in the image can send a mount outside the rootfs.

use std::ffi::{c_char, CString};
use std::os::fd::OwnedFd;

use rustix::mount::MountFlags;

/// One setup action of the child, in order.
#[derive(Debug)]
pub(crate) enum MountStep {
    /// A new filesystem (`proc`, `tmpfs`, `devpts`, `sysfs`, `mqueue`) at `target`.
    Filesystem {
        fstype: CString,
        target: CString,
        flags: MountFlags,
        data: CString,
        /// Skip when the target does not exist instead of failing.
        optional: bool,
        /// Resolve the target without following any symlink (the standard mounts: an image
        /// must not redirect `/proc` or `/sys`).
        strict: bool,
    },
    /// A bind mount of a host path at `target`, optionally made read-only.
    Bind {
        source: CString,
        target: CString,
        readonly: bool,
    },
    /// Hide a path: a read-only empty tmpfs over a directory, `/dev/null` over anything else.
    /// Skipped when the path does not exist.
    Mask { target: CString },
    /// Bind a path onto itself and make that read-only. Skipped when it does not exist.
    ReadOnly { target: CString },
    /// A device in `/dev` (the child's own nodev tmpfs): an empty file with the host's node
    /// (`host`, e.g. `/dev/null`) bind-mounted on it, which works where a node the step makes
    /// itself would not.
    Device { name: CString, host: CString },
    /// A symlink in `/dev`.
    Symlink { name: CString, target: CString },
    /// A directory in `/dev`, mode 0755 (or 01777 for `shm`, set by its tmpfs mount).
    DevDir { name: CString },
}

impl MountStep {
    /// Words for an error message: what this step does.
    pub(crate) fn describe(&self) -> String {
        let s = |c: &CString| c.to_string_lossy().into_owned();
        match self {
            MountStep::Filesystem { fstype, target, .. } => {
                format!("mount {} at /{}", s(fstype), s(target))
            }
            MountStep::Bind {
                source,
                target,
                readonly,
            } => format!(
                "bind-mount {} at /{}{}",
                s(source),
                s(target),
                if *readonly { " (read-only)" } else { "" }
            ),
            MountStep::Mask { target } => format!("mask /{}", s(target)),
            MountStep::ReadOnly { target } => format!("make /{} read-only", s(target)),
            MountStep::Device { name, .. } => format!("create /dev/{}", s(name)),
            MountStep::Symlink { name, .. } => format!("create the symlink /dev/{}", s(name)),
            MountStep::DevDir { name } => format!("create /dev/{}", s(name)),
        }
    }
}

/// File descriptors the child turns into its stdio or uses to talk to the parent.
#[derive(Debug)]
pub(crate) struct ChildFds {
    pub stdin: OwnedFd,
    pub stdout: OwnedFd,
    pub stderr: OwnedFd,
    /// Read end: the child waits for one byte (its cgroups are set) before doing anything.
    pub sync: OwnedFd,
    /// Write end (close-on-exec): a failing setup writes `(stage, errno)` here.
    pub error: OwnedFd,
}

/// Everything the child does, precomputed.
#[derive(Debug)]
pub(crate) struct ChildPlan {
    pub rootfs: CString,
    pub steps: Vec<MountStep>,
    pub hostname: CString,
    pub loopback_up: bool,
    pub cwd: CString,
    pub uid: u32,
    pub gid: u32,
    /// Supplementary groups (the primary gid is not added, as in BuildKit).
    pub groups: Vec<rustix::process::Gid>,
    /// Capabilities kept in the bounding set and, for root, permitted and effective.
    pub capabilities: u64,
    pub last_cap: u32,
    /// Paths to try for `argv[0]`, in order (execvp's search, see `exec_candidates`).
    pub exec_candidates: Vec<CString>,
    /// The PATH searched, for the error when no candidate exists.
    pub search_path: String,
    pub argv: CStringArray,
    pub envp: CStringArray,
}

impl ChildPlan {
    /// argv[0], for messages.
    pub(crate) fn argv_0(&self) -> Option<String> {
        self.argv.first().map(|s| s.to_string_lossy().into_owned())
    }
}

/// A NULL-terminated `char *[]` over strings it owns (for execve).
#[derive(Debug)]
pub(crate) struct CStringArray {
    _strings: Vec<CString>,
    pointers: Vec<*const c_char>,
}

impl CStringArray {
    pub(crate) fn new(strings: Vec<CString>) -> CStringArray {
        let mut pointers: Vec<*const c_char> = strings.iter().map(|s| s.as_ptr()).collect();
        pointers.push(std::ptr::null());
        CStringArray {
            _strings: strings,
            pointers,
        }
    }

    /// The first string.
    pub(crate) fn first(&self) -> Option<&CString> {
        self._strings.first()
    }

    /// The pointer array, NULL-terminated. Valid as long as `self` lives (a CString's buffer
    /// does not move when the Vec holding it does).
    pub(crate) fn as_ptrs(&self) -> &[*const c_char] {
        &self.pointers
    }
}

/// Where the child failed, sent to the parent as `(stage, errno)`.
pub(crate) mod stage {
    pub const SYNC: u32 = 1;
    pub const DEATH_SIGNAL: u32 = 2;
    pub const SETSID: u32 = 3;
    pub const SIGNALS: u32 = 4;
    pub const PRIVATE: u32 = 5;
    pub const BIND_ROOT: u32 = 6;
    pub const OPEN_ROOT: u32 = 7;
    pub const HOSTNAME: u32 = 8;
    pub const LOOPBACK: u32 = 9;
    pub const PIVOT_ROOT: u32 = 10;
    pub const DETACH_OLD_ROOT: u32 = 11;
    pub const CWD: u32 = 12;
    pub const BOUNDING_SET: u32 = 13;
    pub const CAPABILITIES: u32 = 14;
    pub const GROUPS: u32 = 15;
    pub const GID: u32 = 16;
    pub const UID: u32 = 17;
    pub const STDIO: u32 = 18;
    pub const EXEC: u32 = 19;
    pub const CGROUP_NS: u32 = 20;
    pub const KEYRING: u32 = 21;
    pub const CLOSE_FDS: u32 = 22;
    /// `MOUNT + i`: step `i` of [`super::ChildPlan::steps`].
    pub const MOUNT: u32 = 1000;

    /// Words for a stage number.
    pub fn describe(stage: u32, plan: &super::ChildPlan) -> String {
        match stage {
            SYNC => "wait for the parent".into(),
            DEATH_SIGNAL => "set the parent-death signal".into(),
            SETSID => "start a session".into(),
            SIGNALS => "reset signal handlers".into(),
            PRIVATE => "make the mount namespace private".into(),
            BIND_ROOT => "bind the rootfs onto itself".into(),
            OPEN_ROOT => "open the rootfs".into(),
            HOSTNAME => "set the hostname".into(),
            LOOPBACK => "bring up lo".into(),
            PIVOT_ROOT => "pivot_root into the rootfs".into(),
            DETACH_OLD_ROOT => "detach the old root".into(),
            CWD => format!("enter the working directory {}", plan.cwd.to_string_lossy()),
            BOUNDING_SET => "drop capabilities from the bounding set".into(),
            CAPABILITIES => "set capabilities".into(),
            GROUPS => "set supplementary groups".into(),
            GID => format!("switch to gid {}", plan.gid),
            UID => format!("switch to uid {}", plan.uid),
            STDIO => "set up stdin/stdout/stderr".into(),
            EXEC => format!(
                "exec {}",
                plan.argv_0().unwrap_or_else(|| "the command".into())
            ),
            CGROUP_NS => "create the cgroup namespace".into(),
            KEYRING => "join a new session keyring".into(),
            CLOSE_FDS => "mark inherited descriptors close-on-exec".into(),
            n if n >= MOUNT => plan
                .steps
                .get((n - MOUNT) as usize)
                .map(|s| s.describe())
                .unwrap_or_else(|| format!("setup step {n}")),
            n => format!("setup step {n}"),
        }
    }
}
