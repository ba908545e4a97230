//! Starting the step's PID 1 and watching it until every process of the step is gone.
//!
//! One thread does all of it, from clone to reap, because the child's parent-death signal is
//! tied to the thread that cloned it: if that thread ended early, the step would be killed.
//! The thread waits in `poll(2)` on the pidfd, the two output pipes and the cancel eventfd.
//!
//! When PID 1 of a PID namespace exits, the kernel kills every other process in it and PID 1's
//! exit completes only once they are all gone; so when the pidfd reports the exit, the step
//! has no process left, its mount namespace (with every mount of the step) is released, and the
//! output pipes reach EOF.

use std::os::fd::{AsFd, OwnedFd};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustix::event::{EventfdFlags, PollFd, PollFlags};
use rustix::io::Errno;
use rustix::process::{Signal, WaitId, WaitIdOptions};

use crate::cgroups::StepCgroup;
use crate::error::SandboxError;
use crate::output::{LineSplitter, OutputSink, Stream, Tail};
use crate::plan::{stage, ChildFds, ChildPlan};
use crate::sys::{self, Forked, Namespaces};

/// Cancels running steps from any thread: [`Cancel::cancel`] kills the step's PID 1 (and so
/// every process of the step). Clones share the same state; once cancelled, it stays cancelled.
#[derive(Debug, Clone)]
pub struct Cancel {
    eventfd: Arc<OwnedFd>,
}

impl Cancel {
    pub fn new() -> Result<Cancel, SandboxError> {
        let fd = rustix::event::eventfd(0, EventfdFlags::CLOEXEC | EventfdFlags::NONBLOCK)
            .map_err(|e| SandboxError::Io("create an eventfd".into(), e.into()))?;
        Ok(Cancel {
            eventfd: Arc::new(fd),
        })
    }

    pub fn cancel(&self) {
        let _ = rustix::io::write(&*self.eventfd, &1u64.to_ne_bytes());
    }

    pub fn is_cancelled(&self) -> bool {
        let mut fds = [PollFd::new(&*self.eventfd, PollFlags::IN)];
        matches!(rustix::event::poll(&mut fds, Some(&rustix::time::Timespec::default())), Ok(n) if n > 0)
    }
}

/// How the step's PID 1 ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitStatus {
    Exited(i32),
    Signaled(i32),
}

impl ExitStatus {
    pub fn success(self) -> bool {
        self == ExitStatus::Exited(0)
    }

    /// The shell convention: the exit code, or 128 + the signal.
    pub fn code(self) -> i32 {
        match self {
            ExitStatus::Exited(code) => code,
            ExitStatus::Signaled(signal) => 128 + signal,
        }
    }
}

pub(crate) struct Finished {
    pub status: ExitStatus,
    pub tail: Tail,
    pub duration: Duration,
}

/// The parent's ends of the pipes.
pub(crate) struct ParentFds {
    pub stdout: OwnedFd,
    pub stderr: OwnedFd,
    pub sync: OwnedFd,
    pub error: OwnedFd,
}

/// Clones the child into its namespaces, releases it once it is in its cgroups, and waits for
/// it while passing output on. The plan's descriptors are the child's; they are closed in the
/// parent right after the clone.
pub(crate) fn run(
    plan: &ChildPlan,
    child_fds: ChildFds,
    parent: ParentFds,
    namespaces: Namespaces,
    cgroup: Option<&StepCgroup>,
    sink: &mut dyn OutputSink,
    cancel: &Cancel,
) -> Result<Finished, SandboxError> {
    if cancel.is_cancelled() {
        return Err(SandboxError::Cancelled);
    }
    let started = Instant::now();
    let saved_mask = sys::block_signals();
    let forked = sys::fork_into_namespaces(namespaces);
    if !matches!(forked, Ok(Forked::Child)) {
        sys::restore_signals(&saved_mask);
    }
    let (pid, pidfd) = match forked {
        Ok(Forked::Child) => sys::child::enter(plan, &child_fds),
        Ok(Forked::Parent { pid, pidfd }) => (pid, pidfd),
        Err(e) => {
            return Err(SandboxError::Setup {
                stage: "create the namespaces".into(),
                source: e,
            })
        }
    };
    // Close our copies of the child's ends, or the pipes would never reach EOF.
    drop(child_fds);
    // From here on, whatever fails, the child is killed and reaped (by the guard's drop).
    let mut guard = Reaper {
        pidfd: &pidfd,
        reaped: false,
    };
    if let Some(cgroup) = cgroup {
        cgroup.attach(pid)?;
    }
    rustix::io::write(&parent.sync, &[1])
        .map_err(|e| SandboxError::Io("start the step".into(), e.into()))?;
    drop(parent.sync);
    let setup = read_setup_error(&parent.error)?;
    drop(parent.error);
    if let Some((stage_number, errno)) = setup {
        guard.kill_and_reap();
        if stage_number == stage::EXEC && errno == libc::ENOENT {
            return Err(SandboxError::ExecutableNotFound {
                name: plan.argv_0().unwrap_or_default(),
                path: plan.search_path.clone(),
            });
        }
        return Err(SandboxError::Setup {
            stage: stage::describe(stage_number, plan),
            source: std::io::Error::from_raw_os_error(errno),
        });
    }

    let mut tail = Tail::default();
    let mut out = Pipe::new(parent.stdout, Stream::Stdout);
    let mut err = Pipe::new(parent.stderr, Stream::Stderr);
    let mut exited = false;
    let mut killed = false;
    let mut buffer = vec![0u8; 64 * 1024];
    while !(exited && out.closed() && err.closed()) {
        let mut fds = Vec::with_capacity(4);
        fds.push(PollFd::new(
            &pidfd,
            if exited {
                PollFlags::empty()
            } else {
                PollFlags::IN
            },
        ));
        fds.push(PollFd::new(
            &*cancel.eventfd,
            if killed {
                PollFlags::empty()
            } else {
                PollFlags::IN
            },
        ));
        let out_index = out.poll_fd(&mut fds);
        let err_index = err.poll_fd(&mut fds);
        match rustix::event::poll(&mut fds, None) {
            Ok(_) | Err(Errno::INTR) => {}
            Err(e) => return Err(SandboxError::Io("wait for the step".into(), e.into())),
        }
        let ready = |i: Option<usize>| i.map(|i| !fds[i].revents().is_empty()).unwrap_or(false);
        let (pid_ready, cancel_ready) =
            (!fds[0].revents().is_empty(), !fds[1].revents().is_empty());
        let (out_ready, err_ready) = (ready(out_index), ready(err_index));
        drop(fds);
        // A cancel that comes after PID 1 exited changes nothing: the step is finished.
        if cancel_ready && !killed && !exited {
            killed = true;
            let _ = rustix::process::pidfd_send_signal(&pidfd, Signal::KILL);
        }
        if out_ready {
            out.read(&mut buffer, sink, &mut tail);
        }
        if err_ready {
            err.read(&mut buffer, sink, &mut tail);
        }
        if pid_ready && !exited {
            exited = true;
        }
    }
    let status = guard.reap()?;
    if killed {
        return Err(SandboxError::Cancelled);
    }
    out.finish(sink, &mut tail);
    err.finish(sink, &mut tail);
    Ok(Finished {
        status,
        tail,
        duration: started.elapsed(),
    })
}

/// Reads the child's setup report: EOF means execve succeeded (the pipe is close-on-exec).
fn read_setup_error(fd: &OwnedFd) -> Result<Option<(u32, i32)>, SandboxError> {
    let mut message = [0u8; 8];
    let mut filled = 0;
    while filled < message.len() {
        match rustix::io::read(fd, &mut message[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(Errno::INTR) => {}
            Err(e) => {
                return Err(SandboxError::Io(
                    "read the step's setup report".into(),
                    e.into(),
                ))
            }
        }
    }
    if filled < message.len() {
        return Ok(None);
    }
    let stage = u32::from_ne_bytes([message[0], message[1], message[2], message[3]]);
    let errno = i32::from_ne_bytes([message[4], message[5], message[6], message[7]]);
    Ok(Some((stage, errno)))
}

/// Kills and reaps the child unless it was reaped normally.
struct Reaper<'a> {
    pidfd: &'a OwnedFd,
    reaped: bool,
}

impl Reaper<'_> {
    fn reap(&mut self) -> Result<ExitStatus, SandboxError> {
        loop {
            match rustix::process::waitid(WaitId::PidFd(self.pidfd.as_fd()), WaitIdOptions::EXITED)
            {
                Ok(Some(status)) => {
                    self.reaped = true;
                    return Ok(match (status.exit_status(), status.terminating_signal()) {
                        (Some(code), _) => ExitStatus::Exited(code),
                        (None, Some(signal)) => ExitStatus::Signaled(signal),
                        (None, None) => ExitStatus::Exited(status.raw_code()),
                    });
                }
                Ok(None) | Err(Errno::INTR) => continue,
                Err(e) => {
                    self.reaped = true;
                    return Err(SandboxError::Io("reap the step".into(), e.into()));
                }
            }
        }
    }

    fn kill_and_reap(&mut self) {
        let _ = rustix::process::pidfd_send_signal(self.pidfd, Signal::KILL);
        let _ = self.reap();
    }
}

impl Drop for Reaper<'_> {
    fn drop(&mut self) {
        if !self.reaped {
            self.kill_and_reap();
        }
    }
}

/// One output pipe of the step.
struct Pipe {
    fd: Option<OwnedFd>,
    lines: LineSplitter,
}

impl Pipe {
    fn new(fd: OwnedFd, stream: Stream) -> Pipe {
        Pipe {
            fd: Some(fd),
            lines: LineSplitter::new(stream),
        }
    }

    fn closed(&self) -> bool {
        self.fd.is_none()
    }

    fn poll_fd<'a>(&'a self, fds: &mut Vec<PollFd<'a>>) -> Option<usize> {
        let fd = self.fd.as_ref()?;
        fds.push(PollFd::new(fd, PollFlags::IN));
        Some(fds.len() - 1)
    }

    fn read(&mut self, buffer: &mut [u8], sink: &mut dyn OutputSink, tail: &mut Tail) {
        let Some(fd) = &self.fd else { return };
        match rustix::io::read(fd, &mut *buffer) {
            Ok(0) => self.fd = None,
            Ok(n) => self.lines.push(&buffer[..n], sink, tail),
            Err(Errno::INTR) | Err(Errno::AGAIN) => {}
            Err(_) => self.fd = None,
        }
    }

    fn finish(&mut self, sink: &mut dyn OutputSink, tail: &mut Tail) {
        self.lines.finish(sink, tail);
    }
}
