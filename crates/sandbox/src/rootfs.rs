//! Parent-side work on the step's rootfs, done before the step starts and after it ends.
//!
//! Every path is resolved with `openat2(RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS)` from a
//! descriptor of the rootfs, and every name is created with `*at` calls on the resolved parent,
//! so no symlink in the image can make rbuild create or read anything outside the rootfs. No
//! process of the step runs while this code does, so what it checked stays true until the child
//! mounts.
//!
//! Mount points: directories (`/dev`, `/proc`, `/sys`, directory mounts, the working directory)
//! are created 0755 root:root when missing and left in the rootfs, as BuildKit leaves them in the
//! layer. Files (`/etc/hosts`, `/etc/resolv.conf`, `/etc/hostname`, secrets, file binds) get an
//! empty stub, which [`Stubs::remove`] deletes after the step together with any directory that
//! was created only to hold it: a file mount never leaves a trace in the diff.

use std::ffi::{CString, OsStr};
use std::io::Read;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use rustix::fs::{AtFlags, Mode, OFlags, ResolveFlags};
use rustix::io::Errno;

use crate::error::SandboxError;

/// What a mount point must be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Dir,
    File,
}

/// An open rootfs.
#[derive(Debug)]
pub(crate) struct Rootfs {
    fd: OwnedFd,
}

/// Something the preparation created for a file mount, to delete after the step: a name in a
/// resolved parent directory.
#[derive(Debug)]
struct Created {
    parent: OwnedFd,
    name: CString,
    dir: bool,
}

/// The stubs of file mounts, deleted by [`Stubs::remove`] (in reverse creation order).
#[derive(Debug, Default)]
pub(crate) struct Stubs {
    created: Vec<Created>,
}

fn open_flags() -> OFlags {
    OFlags::PATH | OFlags::CLOEXEC
}

fn in_root() -> ResolveFlags {
    ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS
}

impl Rootfs {
    pub(crate) fn open(path: &Path) -> Result<Rootfs, SandboxError> {
        let fd = rustix::fs::open(
            path,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| SandboxError::rootfs(path, "open the rootfs", e))?;
        Ok(Rootfs { fd })
    }

    /// Makes sure `path` (absolute inside the rootfs) exists as `kind`, creating what is
    /// missing. Created entries are recorded in `stubs` when `kind` is a file.
    pub(crate) fn ensure(
        &self,
        path: &str,
        kind: Kind,
        stubs: &mut Stubs,
    ) -> Result<(), SandboxError> {
        let components: Vec<&str> = path
            .split('/')
            .filter(|c| !c.is_empty() && *c != ".")
            .collect();
        if components.contains(&"..") {
            return Err(SandboxError::BadPath(path.to_string(), "it contains `..`"));
        }
        let mut parent = rustix::io::fcntl_dupfd_cloexec(&self.fd, 0)
            .map_err(|e| SandboxError::rootfs(Path::new(path), "open the rootfs", e))?;
        let mut prefix = String::new();
        let mut created_here = Vec::new();
        for (i, name) in components.iter().enumerate() {
            let last = i + 1 == components.len();
            if !prefix.is_empty() {
                prefix.push('/');
            }
            prefix.push_str(name);
            let want = if last { kind } else { Kind::Dir };
            let err =
                |what: &'static str| move |e: Errno| SandboxError::rootfs(Path::new(path), what, e);
            match self.open_rel(&prefix) {
                Ok(fd) => {
                    let stat = rustix::fs::fstat(&fd).map_err(err("inspect"))?;
                    let is_dir = stat.st_mode & 0o170000 == 0o040000;
                    if want == Kind::Dir && !is_dir {
                        return Err(SandboxError::MountPoint {
                            path: format!("/{prefix}"),
                            problem: "is not a directory",
                        });
                    }
                    if want == Kind::File && is_dir {
                        return Err(SandboxError::MountPoint {
                            path: format!("/{prefix}"),
                            problem: "is a directory, the mount is a file",
                        });
                    }
                    parent = fd;
                }
                Err(Errno::NOENT) => {
                    let cname = CString::new(*name).map_err(|_| {
                        SandboxError::BadPath(path.to_string(), "it contains a NUL byte")
                    })?;
                    create(&parent, &cname, want).map_err(|e| match e {
                        // ENOENT from the lookup, EEXIST on create: a dangling symlink.
                        Errno::EXIST => SandboxError::MountPoint {
                            path: format!("/{prefix}"),
                            problem: "is a dangling symlink",
                        },
                        e => err("create")(e),
                    })?;
                    let fd = self.open_rel(&prefix).map_err(err("open"))?;
                    created_here.push(Created {
                        parent: rustix::io::fcntl_dupfd_cloexec(&parent, 0).map_err(err("open"))?,
                        name: cname,
                        dir: want == Kind::Dir,
                    });
                    parent = fd;
                }
                Err(e) => return Err(err("open")(e)),
            }
        }
        if kind == Kind::File {
            stubs.created.extend(created_here);
        }
        Ok(())
    }

    /// Checks that `path` is a directory reached without any symlink (for `/dev`, where the
    /// child creates device nodes by name).
    pub(crate) fn require_plain_dir(&self, path: &str) -> Result<(), SandboxError> {
        let rel = path.trim_start_matches('/');
        let fd = rustix::fs::openat2(
            &self.fd,
            rel,
            open_flags() | OFlags::DIRECTORY,
            Mode::empty(),
            in_root() | ResolveFlags::NO_SYMLINKS,
        );
        fd.map(drop).map_err(|_| SandboxError::MountPoint {
            path: path.to_string(),
            problem: "must be a directory, not a symlink",
        })
    }

    fn open_rel(&self, rel: &str) -> Result<OwnedFd, Errno> {
        rustix::fs::openat2(&self.fd, rel, open_flags(), Mode::empty(), in_root())
    }

    /// Reads a regular file inside the rootfs (at most `limit` bytes); `None` if it is absent.
    pub(crate) fn read_file(
        &self,
        path: &str,
        limit: u64,
    ) -> Result<Option<Vec<u8>>, SandboxError> {
        let rel = path.trim_start_matches('/');
        let fd = match rustix::fs::openat2(
            &self.fd,
            rel,
            OFlags::RDONLY | OFlags::CLOEXEC | OFlags::NONBLOCK,
            Mode::empty(),
            in_root(),
        ) {
            Ok(fd) => fd,
            Err(Errno::NOENT) | Err(Errno::NOTDIR) => return Ok(None),
            Err(e) => return Err(SandboxError::rootfs(Path::new(path), "open", e)),
        };
        let stat = rustix::fs::fstat(&fd)
            .map_err(|e| SandboxError::rootfs(Path::new(path), "inspect", e))?;
        if stat.st_mode & 0o170000 != 0o100000 {
            return Ok(None);
        }
        let mut data = Vec::new();
        std::fs::File::from(fd)
            .take(limit)
            .read_to_end(&mut data)
            .map_err(|e| SandboxError::Io(format!("read {path} in the rootfs"), e))?;
        Ok(Some(data))
    }
}

fn create(parent: &OwnedFd, name: &CString, kind: Kind) -> Result<(), Errno> {
    match kind {
        Kind::Dir => {
            rustix::fs::mkdirat(parent, name.as_c_str(), Mode::from_raw_mode(0o755))?;
            // The process umask must not decide the mode a layer records.
            let fd = rustix::fs::openat(
                parent,
                name.as_c_str(),
                OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::empty(),
            )?;
            rustix::fs::fchmod(&fd, Mode::from_raw_mode(0o755))
        }
        Kind::File => {
            let fd = rustix::fs::openat(
                parent,
                name.as_c_str(),
                OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::from_raw_mode(0o644),
            )?;
            rustix::fs::fchmod(&fd, Mode::from_raw_mode(0o644))
        }
    }
}

impl Stubs {
    /// Deletes the stubs, newest first. A directory that is no longer empty (the step put
    /// something of its own there) is kept. Goes on past a failure; reports the first.
    pub(crate) fn remove(&mut self) -> Result<(), SandboxError> {
        let mut first_error = None;
        while let Some(entry) = self.created.pop() {
            let flags = if entry.dir {
                AtFlags::REMOVEDIR
            } else {
                AtFlags::empty()
            };
            match rustix::fs::unlinkat(entry.parent.as_fd(), entry.name.as_c_str(), flags) {
                Ok(()) | Err(Errno::NOENT) | Err(Errno::NOTEMPTY) => {}
                Err(e) => {
                    let name = Path::new(OsStr::from_bytes(entry.name.as_bytes()));
                    first_error.get_or_insert(SandboxError::rootfs(
                        name,
                        "remove the mount stub",
                        e,
                    ));
                }
            }
        }
        first_error.map_or(Ok(()), Err)
    }
}

impl Drop for Stubs {
    /// A stub must never reach a layer, even when the step's caller unwinds.
    fn drop(&mut self) {
        let _ = self.remove();
    }
}
