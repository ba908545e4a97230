//! Resource limits for one step, with a cgroup of its own per controller.
//!
//! The layout is read from `/proc/self/mountinfo` and `/proc/self/cgroup`, so it works on pure
//! cgroup v2, on v1, and on the hybrid layout (v1 controllers plus a v2 mount, as on Debian 12
//! with systemd's legacy mode): each controller (memory, cpu, pids) is used from the hierarchy
//! that holds it. The step's cgroup is created below rbuild's own cgroup in that hierarchy,
//! named `rbuild-<pid>-<n>`, filled with the child before it does anything (the child waits on
//! a pipe), checked for OOM kills after the step, and removed.
//!
//! v1 files: `memory.limit_in_bytes` + `memory.memsw.limit_in_bytes` (when swap accounting is
//! on), `cpu.shares`, `cpu.cfs_period_us`/`cpu.cfs_quota_us`, `pids.max`; OOM kills from
//! `memory.oom_control`. v2 files: `memory.max` + `memory.swap.max = 0`, `cpu.weight` (shares
//! converted as runc does), `cpu.max`, `pids.max`; OOM kills from `memory.events`. On v2 the
//! controllers must be delegated to rbuild's cgroup (`cgroup.subtree_control`); when the kernel
//! refuses, the error says so.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::error::SandboxError;
use crate::spec::ResourceLimits;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Version {
    V1,
    V2,
}

#[derive(Debug)]
struct Controller {
    name: &'static str,
    version: Version,
    /// The step's cgroup directory.
    dir: PathBuf,
}

/// The step's cgroups; removed on drop.
#[derive(Debug)]
pub(crate) struct StepCgroup {
    controllers: Vec<Controller>,
    memory_limit: Option<u64>,
}

static NEXT: AtomicU64 = AtomicU64::new(0);

fn cgroup_err(what: String) -> impl FnOnce(std::io::Error) -> SandboxError {
    move |e| SandboxError::Cgroup(what, e)
}

impl StepCgroup {
    /// Creates the cgroups `limits` needs and writes the limits.
    pub(crate) fn create(limits: &ResourceLimits) -> Result<StepCgroup, SandboxError> {
        let layout = Layout::read()?;
        let name = format!(
            "rbuild-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let mut cgroup = StepCgroup {
            controllers: Vec::new(),
            memory_limit: limits.memory,
        };
        let mut wanted = Vec::new();
        if limits.memory.is_some() {
            wanted.push("memory");
        }
        if limits.cpu_shares.is_some() || limits.cpu_quota.is_some() {
            wanted.push("cpu");
        }
        if limits.pids.is_some() {
            wanted.push("pids");
        }
        for controller in wanted {
            let (version, parent) = layout.locate(controller)?;
            if version == Version::V2 {
                enable_v2_controller(&parent, controller)?;
            }
            let dir = parent.join(&name);
            fs::create_dir(&dir).map_err(cgroup_err(format!("create {}", dir.display())))?;
            cgroup.controllers.push(Controller {
                name: controller,
                version,
                dir,
            });
        }
        for controller in &cgroup.controllers {
            controller.apply(limits)?;
        }
        Ok(cgroup)
    }

    /// Moves `pid` into every cgroup of the step.
    pub(crate) fn attach(&self, pid: i32) -> Result<(), SandboxError> {
        for controller in &self.controllers {
            write(&controller.dir, "cgroup.procs", &pid.to_string())?;
        }
        Ok(())
    }

    /// The memory limit, when the kernel's OOM killer killed a process of the step.
    pub(crate) fn oom_killed(&self) -> Option<u64> {
        let memory = self.controllers.iter().find(|c| c.name == "memory")?;
        let file = match memory.version {
            Version::V1 => "memory.oom_control",
            Version::V2 => "memory.events",
        };
        let text = fs::read_to_string(memory.dir.join(file)).ok()?;
        let kills: u64 = text
            .lines()
            .find_map(|l| l.strip_prefix("oom_kill "))
            .and_then(|n| n.trim().parse().ok())?;
        (kills > 0).then_some(self.memory_limit.unwrap_or(0))
    }
}

impl Drop for StepCgroup {
    fn drop(&mut self) {
        for controller in &self.controllers {
            // The step's processes are reaped before this runs; the kernel may still be
            // finishing their exit for a moment, which shows as EBUSY.
            for _ in 0..50 {
                match fs::remove_dir(&controller.dir) {
                    Err(e) if e.raw_os_error() == Some(libc::EBUSY) => {
                        std::thread::sleep(std::time::Duration::from_millis(2))
                    }
                    _ => break,
                }
            }
        }
    }
}

impl Controller {
    fn apply(&self, limits: &ResourceLimits) -> Result<(), SandboxError> {
        let dir = &self.dir;
        match (self.name, self.version) {
            ("memory", Version::V1) => {
                if let Some(bytes) = limits.memory {
                    write(dir, "memory.limit_in_bytes", &bytes.to_string())?;
                    if dir.join("memory.memsw.limit_in_bytes").exists() {
                        write(dir, "memory.memsw.limit_in_bytes", &bytes.to_string())?;
                    }
                }
            }
            ("memory", Version::V2) => {
                if let Some(bytes) = limits.memory {
                    write(dir, "memory.max", &bytes.to_string())?;
                    if dir.join("memory.swap.max").exists() {
                        write(dir, "memory.swap.max", "0")?;
                    }
                }
            }
            ("cpu", Version::V1) => {
                if let Some(shares) = limits.cpu_shares {
                    write(dir, "cpu.shares", &shares.to_string())?;
                }
                if let Some(quota) = limits.cpu_quota {
                    let period = limits.cpu_period.unwrap_or(100_000);
                    write(dir, "cpu.cfs_period_us", &period.to_string())?;
                    write(dir, "cpu.cfs_quota_us", &quota.to_string())?;
                }
            }
            ("cpu", Version::V2) => {
                if let Some(shares) = limits.cpu_shares {
                    write(dir, "cpu.weight", &shares_to_weight(shares).to_string())?;
                }
                if let Some(quota) = limits.cpu_quota {
                    let period = limits.cpu_period.unwrap_or(100_000);
                    write(dir, "cpu.max", &format!("{quota} {period}"))?;
                }
            }
            ("pids", _) => {
                if let Some(max) = limits.pids {
                    write(dir, "pids.max", &max.to_string())?;
                }
            }
            _ => {}
        }
        Ok(())
    }
}

/// runc's conversion of cgroup v1 `cpu.shares` (2..=262144) to v2 `cpu.weight` (1..=10000).
fn shares_to_weight(shares: u64) -> u64 {
    let shares = shares.clamp(2, 262_144);
    1 + ((shares - 2) * 9999) / 262_142
}

fn write(dir: &Path, file: &str, value: &str) -> Result<(), SandboxError> {
    let path = dir.join(file);
    fs::write(&path, value).map_err(cgroup_err(format!("write `{value}` to {}", path.display())))
}

fn enable_v2_controller(parent: &Path, controller: &str) -> Result<(), SandboxError> {
    let enabled = fs::read_to_string(parent.join("cgroup.subtree_control")).unwrap_or_default();
    if enabled.split_whitespace().any(|c| c == controller) {
        return Ok(());
    }
    let path = parent.join("cgroup.subtree_control");
    fs::write(&path, format!("+{controller}")).map_err(|e| {
        SandboxError::Cgroup(
            format!(
                "enable the {controller} controller in {} (on cgroup v2 rbuild needs a delegated cgroup with no processes of its own, e.g. `systemd-run --scope -p Delegate=yes`)",
                parent.display()
            ),
            e,
        )
    })
}

/// Where each hierarchy is mounted and where rbuild sits in it.
#[derive(Debug)]
struct Layout {
    /// (controllers, mount point, mount root) of each v1 hierarchy.
    v1_mounts: Vec<(Vec<String>, PathBuf, String)>,
    /// (mount point, mount root) of the v2 hierarchy.
    v2_mount: Option<(PathBuf, String)>,
    /// (controllers, path) from /proc/self/cgroup; v2 has no controllers ("0::/path").
    membership: Vec<(Vec<String>, String)>,
}

impl Layout {
    fn read() -> Result<Layout, SandboxError> {
        let mountinfo = fs::read_to_string("/proc/self/mountinfo")
            .map_err(cgroup_err("read /proc/self/mountinfo".into()))?;
        let cgroup = fs::read_to_string("/proc/self/cgroup")
            .map_err(cgroup_err("read /proc/self/cgroup".into()))?;
        Ok(Layout::parse(&mountinfo, &cgroup))
    }

    fn parse(mountinfo: &str, cgroup: &str) -> Layout {
        let mut layout = Layout {
            v1_mounts: Vec::new(),
            v2_mount: None,
            membership: Vec::new(),
        };
        for line in mountinfo.lines() {
            let fields: Vec<&str> = line.split(' ').collect();
            let Some(dash) = fields.iter().position(|f| *f == "-") else {
                continue;
            };
            let (Some(root), Some(point), Some(fstype), Some(options)) = (
                fields.get(3),
                fields.get(4),
                fields.get(dash + 1),
                fields.get(dash + 3),
            ) else {
                continue;
            };
            match *fstype {
                "cgroup" => layout.v1_mounts.push((
                    options.split(',').map(str::to_string).collect(),
                    PathBuf::from(unescape(point)),
                    root.to_string(),
                )),
                "cgroup2" => {
                    layout.v2_mount = Some((PathBuf::from(unescape(point)), root.to_string()))
                }
                _ => {}
            }
        }
        for line in cgroup.lines() {
            let mut parts = line.splitn(3, ':');
            let (_, Some(controllers), Some(path)) = (parts.next(), parts.next(), parts.next())
            else {
                continue;
            };
            let controllers = controllers
                .split(',')
                .filter(|c| !c.is_empty())
                .map(str::to_string)
                .collect();
            layout.membership.push((controllers, path.to_string()));
        }
        layout
    }

    /// The hierarchy holding `controller` and rbuild's cgroup directory in it.
    fn locate(&self, controller: &str) -> Result<(Version, PathBuf), SandboxError> {
        let has = |list: &[String]| list.iter().any(|c| c == controller);
        if let Some((_, point, root)) = self.v1_mounts.iter().find(|(opts, _, _)| has(opts)) {
            if let Some((_, path)) = self.membership.iter().find(|(c, _)| has(c)) {
                return Ok((Version::V1, join_cgroup(point, root, path)));
            }
        }
        if let Some((point, root)) = &self.v2_mount {
            if let Some((_, path)) = self.membership.iter().find(|(c, _)| c.is_empty()) {
                let dir = join_cgroup(point, root, path);
                let available =
                    fs::read_to_string(point.join("cgroup.controllers")).unwrap_or_default();
                if available.split_whitespace().any(|c| c == controller) {
                    return Ok((Version::V2, dir));
                }
            }
        }
        Err(SandboxError::Cgroup(
            format!("no cgroup hierarchy on this machine has the `{controller}` controller"),
            std::io::Error::from(std::io::ErrorKind::NotFound),
        ))
    }
}

/// Mount point + (cgroup path relative to the mount's root).
fn join_cgroup(point: &Path, mount_root: &str, path: &str) -> PathBuf {
    let relative = path
        .strip_prefix(mount_root)
        .unwrap_or(path)
        .trim_start_matches('/');
    point.join(relative)
}

/// mountinfo escapes space, tab, newline and backslash as `\ooo`.
fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\'
            && i + 3 < bytes.len()
            && bytes[i + 1..i + 4]
                .iter()
                .all(|b| (b'0'..=b'7').contains(b))
        {
            out.push(
                (bytes[i + 1] - b'0') * 64 + (bytes[i + 2] - b'0') * 8 + (bytes[i + 3] - b'0'),
            );
            i += 4;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    const HYBRID_MOUNTINFO: &str = "\
30 25 0:26 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
33 30 0:29 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
34 30 0:30 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
35 30 0:31 / /sys/fs/cgroup/cpu,cpuacct rw,relatime - cgroup cgroup rw,cpu,cpuacct
36 30 0:32 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";
    const HYBRID_CGROUP: &str = "\
4:memory:/process_api/abc
3:pids:/
2:cpu,cpuacct:/
0::/
";

    #[test]
    fn hybrid_layout_uses_the_v1_hierarchy_of_each_controller() {
        let layout = Layout::parse(HYBRID_MOUNTINFO, HYBRID_CGROUP);
        assert_eq!(
            layout.locate("memory").expect("memory"),
            (
                Version::V1,
                PathBuf::from("/sys/fs/cgroup/memory/process_api/abc")
            )
        );
        assert_eq!(
            layout.locate("cpu").expect("cpu"),
            (Version::V1, PathBuf::from("/sys/fs/cgroup/cpu,cpuacct"))
        );
        assert_eq!(
            layout.locate("pids").expect("pids"),
            (Version::V1, PathBuf::from("/sys/fs/cgroup/pids"))
        );
    }

    #[test]
    fn a_cgroup_namespace_root_is_stripped_from_the_path() {
        let mountinfo = "36 30 0:32 /outer /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n";
        let layout = Layout::parse(mountinfo, "0::/outer/inner\n");
        assert_eq!(
            join_cgroup(&layout.v2_mount.expect("v2").0, "/outer", "/outer/inner"),
            PathBuf::from("/sys/fs/cgroup/inner")
        );
    }

    #[test]
    fn shares_convert_to_weights_like_runc() {
        assert_eq!(shares_to_weight(2), 1);
        assert_eq!(shares_to_weight(1024), 39);
        assert_eq!(shares_to_weight(262_144), 10_000);
    }

    #[test]
    fn mountinfo_escapes_are_decoded() {
        assert_eq!(unescape(r"/a\040b"), "/a b");
    }
}
