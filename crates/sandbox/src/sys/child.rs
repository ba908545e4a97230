//! The child between `clone3` and `execve`: walks a [`ChildPlan`] and execs the step.
//!
//! Rules (see the parent module): no allocation, no locks, no panics, no destructors of parent
//! state. Every failure is reported to the parent as `(stage, errno)` on the error pipe and ends
//! the child with status 125. Every path given to the kernel is a `&CStr` the plan owns or a
//! stack buffer.

use std::ffi::CStr;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};

use rustix::fs::{Mode, OFlags, ResolveFlags};
use rustix::io::Errno;
use rustix::mount::{MountFlags, MountPropagationFlags, UnmountFlags};
use rustix::thread::{CapabilitySet, CapabilitySets};

use crate::plan::{stage, ChildFds, ChildPlan, MountStep};

/// Status of a child whose setup failed (the parent reads the reason from the error pipe).
pub(crate) const SETUP_FAILED: i32 = 125;

/// Runs the plan and execs; never returns.
pub(crate) fn enter(plan: &ChildPlan, fds: &ChildFds) -> ! {
    let error = fds.error.as_fd();
    match setup(plan, fds) {
        Ok(()) => {
            // execvp's search: a missing candidate (or one in a missing or unreadable
            // directory) moves on to the next; any other failure is the answer.
            let mut result = libc::ENOENT;
            for candidate in &plan.exec_candidates {
                match super::execve(candidate, plan.argv.as_ptrs(), plan.envp.as_ptrs()) {
                    libc::ENOENT | libc::ENOTDIR => {}
                    libc::EACCES => result = libc::EACCES,
                    other => {
                        result = other;
                        break;
                    }
                }
            }
            report(error, stage::EXEC, result)
        }
        Err((stage, errno)) => report(error, stage, errno.raw_os_error()),
    }
}

fn report(error: BorrowedFd<'_>, stage: u32, errno: i32) -> ! {
    let mut message = [0u8; 8];
    message[..4].copy_from_slice(&stage.to_ne_bytes());
    message[4..].copy_from_slice(&errno.to_ne_bytes());
    let _ = rustix::io::write(error, &message);
    super::exit(SETUP_FAILED)
}

type Step<T = ()> = Result<T, (u32, Errno)>;

fn at(stage: u32) -> impl Fn(Errno) -> (u32, Errno) {
    move |e| (stage, e)
}

fn setup(plan: &ChildPlan, fds: &ChildFds) -> Step {
    // Wait until the parent has put us in our cgroups. EOF means the parent is gone.
    let mut byte = [0u8; 1];
    match rustix::io::read(&fds.sync, &mut byte) {
        Ok(1) => {}
        Ok(_) => return Err((stage::SYNC, Errno::PIPE)),
        Err(e) => return Err((stage::SYNC, e)),
    }
    // If rbuild dies (even by kill -9), PID 1 of the step dies, and with it every process of
    // the step and the mount namespace holding its mounts. (Set again after the credentials
    // change: the kernel clears it when the uid or gid changes.)
    rustix::process::set_parent_process_death_signal(Some(rustix::process::Signal::KILL))
        .map_err(at(stage::DEATH_SIGNAL))?;
    // Now that the parent has put us in the step's cgroup, that cgroup becomes our root.
    super::unshare_cgroup_namespace().map_err(|e| (stage::CGROUP_NS, io_errno(&e)))?;
    super::new_session_keyring().map_err(|e| (stage::KEYRING, io_errno(&e)))?;
    // Out of rbuild's session: a terminal's Ctrl-C reaches rbuild, which then cancels the step.
    rustix::process::setsid().map_err(at(stage::SETSID))?;
    super::reset_signals().map_err(|e| (stage::SIGNALS, io_errno(&e)))?;
    rustix::process::umask(Mode::empty());

    rustix::mount::mount_change(
        c"/",
        MountPropagationFlags::REC | MountPropagationFlags::PRIVATE,
    )
    .map_err(at(stage::PRIVATE))?;
    rustix::mount::mount_bind_recursive(plan.rootfs.as_c_str(), plan.rootfs.as_c_str())
        .map_err(at(stage::BIND_ROOT))?;
    // nodev: a device node the step makes (it has CAP_MKNOD, as under Docker) or an image
    // brings cannot be opened; /dev gets its devices as binds of the host's nodes instead.
    rustix::mount::mount_remount(
        plan.rootfs.as_c_str(),
        MountFlags::BIND | MountFlags::NODEV,
        c"",
    )
    .map_err(at(stage::BIND_ROOT))?;
    let root = rustix::fs::open(
        plan.rootfs.as_c_str(),
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(at(stage::OPEN_ROOT))?;

    for (i, step) in plan.steps.iter().enumerate() {
        run_step(root.as_fd(), step).map_err(at(stage::MOUNT + i as u32))?;
    }

    rustix::system::sethostname(plan.hostname.as_bytes()).map_err(at(stage::HOSTNAME))?;
    if plan.loopback_up {
        super::loopback_up().map_err(|e| (stage::LOOPBACK, io_errno(&e)))?;
    }

    // pivot_root(".", ".") stacks the old root on top of the new one; detaching it leaves only
    // the rootfs (the runc way, which needs no directory for the old root inside the image).
    rustix::process::fchdir(&root).map_err(at(stage::PIVOT_ROOT))?;
    rustix::process::pivot_root(c".", c".").map_err(at(stage::PIVOT_ROOT))?;
    rustix::mount::unmount(c".", UnmountFlags::DETACH).map_err(at(stage::DETACH_OLD_ROOT))?;
    rustix::process::chdir(c"/").map_err(at(stage::DETACH_OLD_ROOT))?;
    drop(root);
    rustix::process::chdir(plan.cwd.as_c_str()).map_err(at(stage::CWD))?;

    set_credentials(plan)?;
    rustix::process::set_parent_process_death_signal(Some(rustix::process::Signal::KILL))
        .map_err(at(stage::DEATH_SIGNAL))?;
    rustix::process::umask(Mode::from_raw_mode(0o022));

    rustix::stdio::dup2_stdin(&fds.stdin).map_err(at(stage::STDIO))?;
    rustix::stdio::dup2_stdout(&fds.stdout).map_err(at(stage::STDIO))?;
    rustix::stdio::dup2_stderr(&fds.stderr).map_err(at(stage::STDIO))?;
    super::cloexec_from_3().map_err(|e| (stage::CLOSE_FDS, io_errno(&e)))?;
    Ok(())
}

/// Bounding set, then capabilities, then groups and ids: changing ids needs CAP_SETUID and
/// CAP_SETGID, which the default set keeps; a non-root uid then clears permitted and effective.
fn set_credentials(plan: &ChildPlan) -> Step {
    for capability in 0..=plan.last_cap {
        if plan.capabilities & (1u64 << capability) == 0 {
            super::drop_bounding_capability(capability)
                .map_err(|e| (stage::BOUNDING_SET, io_errno(&e)))?;
        }
    }
    rustix::thread::clear_ambient_capability_set().map_err(at(stage::CAPABILITIES))?;
    let set = CapabilitySet::from_bits_retain(plan.capabilities);
    rustix::thread::set_capabilities(
        None,
        CapabilitySets {
            effective: set,
            permitted: set,
            inheritable: CapabilitySet::empty(),
        },
    )
    .map_err(at(stage::CAPABILITIES))?;
    rustix::thread::set_thread_groups(&plan.groups).map_err(at(stage::GROUPS))?;
    let gid = rustix::process::Gid::from_raw(plan.gid);
    rustix::thread::set_thread_res_gid(gid, gid, gid).map_err(at(stage::GID))?;
    let uid = rustix::process::Uid::from_raw(plan.uid);
    rustix::thread::set_thread_res_uid(uid, uid, uid).map_err(at(stage::UID))?;
    Ok(())
}

fn run_step(root: BorrowedFd<'_>, step: &MountStep) -> Result<(), Errno> {
    match step {
        MountStep::Filesystem {
            fstype,
            target,
            flags,
            data,
            optional,
            strict,
        } => {
            let Some(target) = open_target(root, target, *optional, *strict)? else {
                return Ok(());
            };
            let path = FdPath::new(&target);
            rustix::mount::mount(
                fstype.as_c_str(),
                path.as_c_str(),
                fstype.as_c_str(),
                *flags,
                Some(data.as_c_str()),
            )
        }
        MountStep::Bind {
            source,
            target,
            readonly,
        } => {
            let fd = open_target(root, target, false, false)?.ok_or(Errno::NOENT)?;
            let resolved = ResolvedPath::of(&fd)?;
            rustix::mount::mount_bind(source.as_c_str(), FdPath::new(&fd).as_c_str())?;
            let extra = if *readonly {
                MountFlags::RDONLY | MountFlags::NODEV
            } else {
                MountFlags::NODEV
            };
            remount_bind(&resolved, extra)
        }
        MountStep::Mask { target } => {
            let Some(fd) = open_target(root, target, true, true)? else {
                return Ok(());
            };
            let path = FdPath::new(&fd);
            if rustix::fs::fstat(&fd)?.st_mode & 0o170000 == 0o040000 {
                rustix::mount::mount(
                    c"tmpfs",
                    path.as_c_str(),
                    c"tmpfs",
                    MountFlags::RDONLY,
                    Some(c""),
                )
            } else {
                rustix::mount::mount_bind(c"/dev/null", path.as_c_str())
            }
        }
        MountStep::ReadOnly { target } => {
            let Some(fd) = open_target(root, target, true, true)? else {
                return Ok(());
            };
            let resolved = ResolvedPath::of(&fd)?;
            let path = FdPath::new(&fd);
            rustix::mount::mount_bind(path.as_c_str(), path.as_c_str())?;
            remount_bind(&resolved, MountFlags::RDONLY)
        }
        MountStep::Device { name, host } => {
            let dev = open_dev(root)?;
            let file = rustix::fs::openat(
                &dev,
                name.as_c_str(),
                OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::from_raw_mode(0o666),
            )?;
            rustix::mount::mount_bind(host.as_c_str(), FdPath::new(&file).as_c_str())
        }
        MountStep::Symlink { name, target } => {
            let dev = open_dev(root)?;
            rustix::fs::symlinkat(target.as_c_str(), &dev, name.as_c_str())
        }
        MountStep::DevDir { name } => {
            let dev = open_dev(root)?;
            rustix::fs::mkdirat(&dev, name.as_c_str(), Mode::from_raw_mode(0o755))
        }
    }
}

/// Sets the flags of the bind mount just made at `resolved` (a symlink-free absolute path
/// taken before the mount, so it names exactly the new mount): the flags it inherited from its
/// source (nosuid, nodev, noexec, read-only) plus `extra`.
fn remount_bind(resolved: &ResolvedPath, extra: MountFlags) -> Result<(), Errno> {
    let path = resolved.as_c_str();
    let mounted = rustix::fs::open(
        path,
        OFlags::PATH | OFlags::CLOEXEC | OFlags::NOFOLLOW,
        Mode::empty(),
    )?;
    let current = rustix::fs::fstatvfs(&mounted)?.f_flag;
    drop(mounted);
    let mut flags = MountFlags::BIND | extra;
    for (bit, flag) in [
        (rustix::fs::StatVfsMountFlags::NOSUID, MountFlags::NOSUID),
        (rustix::fs::StatVfsMountFlags::NODEV, MountFlags::NODEV),
        (rustix::fs::StatVfsMountFlags::NOEXEC, MountFlags::NOEXEC),
        (rustix::fs::StatVfsMountFlags::RDONLY, MountFlags::RDONLY),
    ] {
        if current.contains(bit) {
            flags |= flag;
        }
    }
    rustix::mount::mount_remount(path, flags, c"")
}

/// `/dev` of the rootfs, which the parent checked is a real directory and which holds the
/// child's own tmpfs by the time devices are made: no symlink may be followed to reach it.
fn open_dev(root: BorrowedFd<'_>) -> Result<OwnedFd, Errno> {
    rustix::fs::openat2(
        root,
        c"dev",
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
        ResolveFlags::IN_ROOT | ResolveFlags::NO_SYMLINKS,
    )
}

/// Opens `path` (relative) with the rootfs as `/`: `..` and absolute symlinks stay inside it;
/// `strict` follows no symlink at all. `Ok(None)` when it does not exist and `optional` is set.
fn open_target(
    root: BorrowedFd<'_>,
    path: &CStr,
    optional: bool,
    strict: bool,
) -> Result<Option<OwnedFd>, Errno> {
    let mut resolve = ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS;
    if strict {
        resolve |= ResolveFlags::NO_SYMLINKS;
    }
    match rustix::fs::openat2(
        root,
        path,
        OFlags::PATH | OFlags::CLOEXEC,
        Mode::empty(),
        resolve,
    ) {
        Ok(fd) => Ok(Some(fd)),
        Err(Errno::NOENT) if optional => Ok(None),
        Err(e) => Err(e),
    }
}

fn io_errno(error: &std::io::Error) -> Errno {
    Errno::from_raw_os_error(error.raw_os_error().unwrap_or(libc::EIO))
}

/// The absolute path a descriptor names, read from its `/proc/self/fd` link into a stack
/// buffer. The kernel's answer has no symlink in it.
struct ResolvedPath {
    buffer: [u8; 4096],
    len: usize,
}

impl ResolvedPath {
    fn of(fd: &OwnedFd) -> Result<ResolvedPath, Errno> {
        let link = FdPath::new(fd);
        let mut buffer = [0u8; 4096];
        let len =
            rustix::fs::readlinkat_raw(rustix::fs::CWD, link.as_c_str(), &mut buffer[..4095])?;
        if len == 0 || len >= 4095 || buffer[0] != b'/' || buffer[..len].contains(&0) {
            return Err(Errno::NAMETOOLONG);
        }
        buffer[len] = 0;
        Ok(ResolvedPath {
            buffer,
            len: len + 1,
        })
    }

    fn as_c_str(&self) -> &CStr {
        CStr::from_bytes_with_nul(&self.buffer[..self.len]).unwrap_or(c"/nonexistent")
    }
}

/// `/proc/self/fd/N` in a stack buffer, NUL-terminated.
struct FdPath {
    buffer: [u8; 40],
    len: usize,
}

impl FdPath {
    fn new(fd: &OwnedFd) -> FdPath {
        const PREFIX: &[u8] = b"/proc/self/fd/";
        let mut buffer = [0u8; 40];
        buffer[..PREFIX.len()].copy_from_slice(PREFIX);
        let mut len = PREFIX.len();
        let mut digits = [0u8; 12];
        let mut n = fd.as_raw_fd().unsigned_abs();
        let mut count = 0;
        loop {
            digits[count] = b'0' + (n % 10) as u8;
            count += 1;
            n /= 10;
            if n == 0 {
                break;
            }
        }
        for i in (0..count).rev() {
            buffer[len] = digits[i];
            len += 1;
        }
        FdPath {
            buffer,
            len: len + 1,
        }
    }

    fn as_c_str(&self) -> &CStr {
        // The buffer holds the prefix, at most 10 digits and a NUL, and no other NUL.
        CStr::from_bytes_with_nul(&self.buffer[..self.len]).unwrap_or(c"/proc/self/fd/-1")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fd_path_formats_the_descriptor_number() {
        let fd: OwnedFd = std::fs::File::open("/dev/null").expect("open").into();
        let expected = format!("/proc/self/fd/{}", fd.as_raw_fd());
        assert_eq!(
            FdPath::new(&fd).as_c_str().to_str().expect("utf8"),
            expected
        );
    }
}
