//! The syscall layer: the only code in rbuild allowed to use `unsafe`.
//!
//! rustix covers almost every call the sandbox makes, safely and without allocating. What it
//! leaves out is here, each block with the reason it is sound:
//! - [`fork_into_namespaces`]: `clone3` with new namespaces and a pidfd (std's `Command` cannot
//!   make the child PID 1 of a new PID namespace: `unshare(CLONE_NEWPID)` only affects
//!   grandchildren);
//! - [`execve`] and [`exit`]: the child's last calls;
//! - [`reset_signals`], [`drop_bounding_capability`], [`loopback_up`]: sigaction/sigprocmask,
//!   `PR_CAPBSET_DROP` by number and the `SIOCSIFFLAGS` ioctl, which rustix does not wrap.
//!
//! The child half of [`fork_into_namespaces`] must only make async-signal-safe calls until it
//! execs: another thread of the parent may have held the allocator's lock at the moment of the
//! clone. [`child`] is written to that rule (no allocation, no locks, no panics).
#![allow(unsafe_code)]

pub(crate) mod child;

use std::ffi::{c_char, CStr};
use std::io;
use std::os::fd::{FromRawFd, OwnedFd};

/// `struct clone_args` of `linux/sched.h` (version 2, 88 bytes).
#[repr(C)]
#[derive(Debug, Default)]
struct CloneArgs {
    flags: u64,
    pidfd: u64,
    child_tid: u64,
    parent_tid: u64,
    exit_signal: u64,
    stack: u64,
    stack_size: u64,
    tls: u64,
    set_tid: u64,
    set_tid_size: u64,
    cgroup: u64,
}

/// Blocks every signal in the calling thread and returns the previous mask, so that none of
/// rbuild's handlers can run in the child between clone and its own reset (as posix_spawn does).
pub(crate) fn block_signals() -> libc::sigset_t {
    // SAFETY: both sets are locals initialised by sigfillset/zeroed before use; sigprocmask
    // writes the old mask into `old`.
    unsafe {
        let mut all: libc::sigset_t = std::mem::zeroed();
        let mut old: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut all);
        libc::pthread_sigmask(libc::SIG_SETMASK, &all, &mut old);
        old
    }
}

/// Restores a mask saved by [`block_signals`].
pub(crate) fn restore_signals(old: &libc::sigset_t) {
    // SAFETY: `old` is a mask sigprocmask filled in; the out-pointer may be NULL.
    unsafe {
        libc::pthread_sigmask(libc::SIG_SETMASK, old, std::ptr::null_mut());
    }
}

/// Marks every descriptor from 3 up close-on-exec (`close_range(3, ~0, CLOSE_RANGE_CLOEXEC)`),
/// so nothing rbuild inherited without the flag reaches the step.
pub(crate) fn cloexec_from_3() -> io::Result<()> {
    // SAFETY: close_range takes integers only.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_close_range,
            3u32,
            u32::MAX,
            libc::CLOSE_RANGE_CLOEXEC,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Joins a new, anonymous session keyring (`keyctl(KEYCTL_JOIN_SESSION_KEYRING, NULL)`), so the
/// step cannot read the keys of rbuild's session.
pub(crate) fn new_session_keyring() -> io::Result<()> {
    const KEYCTL_JOIN_SESSION_KEYRING: libc::c_long = 1;
    // SAFETY: a NULL name asks for an anonymous keyring; no other pointer is passed.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_keyctl,
            KEYCTL_JOIN_SESSION_KEYRING,
            std::ptr::null::<c_char>(),
        )
    };
    if rc >= 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// `unshare(CLONE_NEWCGROUP)`: the calling process's current cgroup becomes the root of its
/// cgroup namespace.
pub(crate) fn unshare_cgroup_namespace() -> io::Result<()> {
    // SAFETY: CLONE_NEWCGROUP changes only the cgroup namespace, which no memory of this process
    // depends on (rustix marks unshare unsafe because some flags, e.g. CLONE_FILES, do).
    unsafe { rustix::thread::unshare_unsafe(rustix::thread::UnshareFlags::NEWCGROUP) }
        .map_err(io::Error::from)
}

/// Moves the calling process into a new mount namespace whose mounts are all private.
/// Must run before the process has a second thread (CLONE_NEWNS fails otherwise).
pub(crate) fn private_mount_namespace() -> io::Result<()> {
    // SAFETY: CLONE_NEWNS only gives this process its own copy of the mount table; no memory
    // of the process depends on it (rustix marks unshare unsafe for flags like CLONE_FILES).
    unsafe { rustix::thread::unshare_unsafe(rustix::thread::UnshareFlags::NEWNS) }
        .map_err(io::Error::from)?;
    rustix::mount::mount_change(
        c"/",
        rustix::mount::MountPropagationFlags::REC | rustix::mount::MountPropagationFlags::PRIVATE,
    )
    .map_err(io::Error::from)
}

/// Namespaces the step gets (`CLONE_NEW*`).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Namespaces {
    pub network: bool,
}

/// What [`fork_into_namespaces`] returns in each process.
#[derive(Debug)]
pub(crate) enum Forked {
    Parent { pid: i32, pidfd: OwnedFd },
    Child,
}

/// Forks the calling thread into new mount, PID, IPC, UTS and cgroup namespaces (and a network
/// namespace when asked), like `fork` otherwise: the child runs on a copy of the caller's stack
/// and returns [`Forked::Child`]. The parent gets the child's pid and a pidfd for it.
///
/// The caller's child branch must call only async-signal-safe code and end in [`execve`] or
/// [`exit`]; it must never return into the caller's frames' destructors.
pub(crate) fn fork_into_namespaces(ns: Namespaces) -> io::Result<Forked> {
    // No CLONE_NEWCGROUP here: the child unshares its cgroup namespace only once the parent
    // has moved it into its step cgroup, so that cgroup is the namespace's root.
    let mut flags = (libc::CLONE_NEWNS
        | libc::CLONE_NEWPID
        | libc::CLONE_NEWIPC
        | libc::CLONE_NEWUTS
        | libc::CLONE_PIDFD) as u64;
    if ns.network {
        flags |= libc::CLONE_NEWNET as u64;
    }
    let mut pidfd: libc::c_int = -1;
    let args = CloneArgs {
        flags,
        pidfd: std::ptr::addr_of_mut!(pidfd) as u64,
        exit_signal: libc::SIGCHLD as u64,
        ..CloneArgs::default()
    };
    // SAFETY: clone3 without CLONE_VM and with a zero stack behaves like fork(2): the child gets
    // a private copy of the address space and continues from this call on a copy of this
    // thread's stack. `args` and `pidfd` are live for the call. The child branch is restricted
    // (see the function's contract) to async-signal-safe work, which is what makes forking a
    // multi-threaded process sound.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_clone3,
            std::ptr::addr_of!(args),
            std::mem::size_of::<CloneArgs>(),
        )
    };
    match ret {
        -1 => Err(io::Error::last_os_error()),
        0 => Ok(Forked::Child),
        pid => {
            // SAFETY: with CLONE_PIDFD the kernel stored a new, open file descriptor that
            // nothing else owns in `pidfd` before returning the child's pid.
            let pidfd = unsafe { OwnedFd::from_raw_fd(pidfd) };
            Ok(Forked::Parent {
                pid: pid as i32,
                pidfd,
            })
        }
    }
}

/// `execve(path, argv, envp)`; returns only on failure, with the errno.
///
/// `argv` and `envp` must be NULL-terminated arrays of pointers to live C strings.
pub(crate) fn execve(path: &CStr, argv: &[*const c_char], envp: &[*const c_char]) -> i32 {
    debug_assert!(argv.last().is_some_and(|p| p.is_null()));
    debug_assert!(envp.last().is_some_and(|p| p.is_null()));
    // SAFETY: `path` is a C string; the plan builder made both arrays NULL-terminated and every
    // pointer in them points into a CString the plan owns, which outlives this call.
    unsafe { libc::execve(path.as_ptr(), argv.as_ptr(), envp.as_ptr()) };
    io::Error::last_os_error()
        .raw_os_error()
        .unwrap_or(libc::EINVAL)
}

/// `_exit(code)`: ends the child without running any of the parent's destructors or atexit
/// handlers (which would touch state copied from other threads).
pub(crate) fn exit(code: i32) -> ! {
    // SAFETY: _exit is async-signal-safe and takes no pointers.
    unsafe { libc::_exit(code) }
}

/// Sets every catchable signal back to its default action and clears the signal mask. execve
/// keeps ignored signals ignored (Rust ignores SIGPIPE), and a step must start as a fresh
/// process would.
pub(crate) fn reset_signals() -> io::Result<()> {
    for signal in 1..libc::SIGRTMIN() {
        if signal == libc::SIGKILL || signal == libc::SIGSTOP {
            continue;
        }
        // SAFETY: SIG_DFL is a valid disposition for every catchable signal; signal(2) is
        // async-signal-safe. Invalid numbers (32, 33 are reserved by glibc) just fail.
        unsafe { libc::signal(signal, libc::SIG_DFL) };
    }
    // SAFETY: `set` is a local, initialised by sigemptyset before use; the old-set pointer is
    // NULL, which sigprocmask allows.
    let rc = unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigprocmask(libc::SIG_SETMASK, &set, std::ptr::null_mut())
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// `prctl(PR_CAPBSET_DROP, capability)`: removes one capability, by number, from the bounding set.
pub(crate) fn drop_bounding_capability(capability: u32) -> io::Result<()> {
    // SAFETY: PR_CAPBSET_DROP takes an integer argument and no pointers.
    let rc = unsafe {
        libc::prctl(
            libc::PR_CAPBSET_DROP,
            capability as libc::c_ulong,
            0 as libc::c_ulong,
            0 as libc::c_ulong,
            0 as libc::c_ulong,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Brings `lo` up in the calling process's network namespace (a new namespace has it down).
pub(crate) fn loopback_up() -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let socket = rustix::net::socket(
        rustix::net::AddressFamily::INET,
        rustix::net::SocketType::DGRAM,
        None,
    )?;
    // SAFETY: `ifreq` is plain old data; zeroed is a valid value. The name fits (3 bytes + NUL
    // in IFNAMSIZ = 16). The ioctls read and write only this struct, which lives for the calls.
    unsafe {
        let mut request: libc::ifreq = std::mem::zeroed();
        for (slot, byte) in request.ifr_name.iter_mut().zip(b"lo\0") {
            *slot = *byte as c_char;
        }
        if libc::ioctl(socket.as_raw_fd(), libc::SIOCGIFFLAGS, &mut request) != 0 {
            return Err(io::Error::last_os_error());
        }
        request.ifr_ifru.ifru_flags |= (libc::IFF_UP | libc::IFF_RUNNING) as libc::c_short;
        if libc::ioctl(socket.as_raw_fd(), libc::SIOCSIFFLAGS, &request) != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}
