//! Path resolution: every archive path becomes a parent directory descriptor inside the root
//! plus one plain name.
//!
//! Two steps, both refusing to leave the root:
//! 1. [`clean`] works on the text alone: a leading `/` is dropped (as containerd does), empty and
//!    `.` components vanish, `..` removes the previous component, and a `..` with nothing left to
//!    remove is an escape. What comes out has no `..`, no `/` inside a component and no NUL.
//! 2. [`Resolver::parent`] opens the parent directory with `openat2(RESOLVE_IN_ROOT |
//!    RESOLVE_NO_MAGICLINKS)` relative to a descriptor of the root. The kernel then follows any
//!    symlink met on the way as if the root were `/`: an absolute target restarts at the root and
//!    `..` stops there. The last component is never resolved here; the writers act on it with
//!    `*at` calls and `O_NOFOLLOW`, so a symlink in the last place is replaced, never followed.

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::Path;
use std::rc::Rc;

use rustix::fs::{self as rfs, Mode, OFlags, ResolveFlags};
use rustix::io::Errno;

/// Mode of directories created because an entry needs them but the archive has none.
const IMPLIED_DIR_MODE: u32 = 0o755;

/// How many times an `openat2` that returned `EAGAIN` (a concurrent rename) is retried.
const EAGAIN_RETRIES: usize = 16;

/// Dangling symlinks followed while creating one parent path (the kernel's own limit is 40).
const MAX_SYMLINK_HOPS: usize = 40;

/// Why a path could not be cleaned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CleanError {
    /// A `..` would climb above the root.
    Escape,
    /// The path contains a NUL byte.
    Invalid,
}

/// The components of `raw` once cleaned lexically (see the module docs). An empty result means
/// the root itself.
pub(crate) fn clean(raw: &[u8]) -> Result<Vec<&[u8]>, CleanError> {
    if raw.contains(&0) {
        return Err(CleanError::Invalid);
    }
    let mut components: Vec<&[u8]> = Vec::new();
    for component in raw.split(|&byte| byte == b'/') {
        match component {
            b"" | b"." => {}
            b".." => {
                if components.pop().is_none() {
                    return Err(CleanError::Escape);
                }
            }
            name => components.push(name),
        }
    }
    Ok(components)
}

/// Joins cleaned components with `/` (the empty path is `.`).
pub(crate) fn join(components: &[&[u8]]) -> Vec<u8> {
    if components.is_empty() {
        return b".".to_vec();
    }
    let mut joined = Vec::with_capacity(components.iter().map(|c| c.len() + 1).sum());
    for (index, component) in components.iter().enumerate() {
        if index > 0 {
            joined.push(b'/');
        }
        joined.extend_from_slice(component);
    }
    joined
}

/// Opens directories inside one root, remembering the last parent it opened.
///
/// Invariant: the cached descriptor is the directory that `cached_path` resolves to now. Every
/// change that could alter a resolution (any unlink, rmdir or replacement) must call
/// [`Resolver::invalidate`]; creating a new name cannot change how an existing path resolves.
#[derive(Debug)]
pub(crate) struct Resolver {
    root: Rc<OwnedFd>,
    cached_path: Vec<u8>,
    cached: Option<Rc<OwnedFd>>,
}

impl Resolver {
    /// Opens `root` (which must be a directory; a symlink given by the caller is followed).
    pub(crate) fn new(root: &Path) -> io::Result<Self> {
        let root = rfs::open(
            root,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        Ok(Resolver {
            root: Rc::new(root),
            cached_path: Vec::new(),
            cached: None,
        })
    }

    /// Forgets the cached parent; see the type's invariant.
    pub(crate) fn invalidate(&mut self) {
        self.cached = None;
    }

    /// An `O_PATH` descriptor of the directory `dir` (cleaned components) inside the root. With
    /// `create`, missing directories are made (mode 0755, owner of the process) one by one, each
    /// inside the directory its parent resolved to.
    pub(crate) fn parent(&mut self, dir: &[&[u8]], create: bool) -> io::Result<Rc<OwnedFd>> {
        if dir.is_empty() {
            return Ok(Rc::clone(&self.root));
        }
        let joined = join(dir);
        let hit = self.cached.is_some() && self.cached_path == joined;
        if !hit {
            let fd = match self.open_dir(dir, OFlags::PATH) {
                Err(error) if create && error.kind() == io::ErrorKind::NotFound => {
                    self.create_dirs(dir)?
                }
                other => other?,
            };
            self.cached = Some(Rc::new(fd));
            self.cached_path = joined;
        }
        match &self.cached {
            Some(fd) => Ok(Rc::clone(fd)),
            None => Err(io::Error::other("parent cache lost")),
        }
    }

    /// Opens the directory `dir` inside the root with extra `flags` (e.g. `O_PATH`, or
    /// `O_RDONLY` when the descriptor is used for `fsetxattr` or `futimens`).
    pub(crate) fn open_dir(&self, dir: &[&[u8]], flags: OFlags) -> io::Result<OwnedFd> {
        open_in_root(self.root.as_fd(), &join(dir), flags | OFlags::DIRECTORY)
    }

    /// Opens `path` inside the root without following a symlink in its last component (for
    /// metadata passes over entries that may have been replaced since).
    /// `path` is cleaned components joined with `/`.
    pub(crate) fn open_nofollow(&self, path: &[u8], flags: OFlags) -> io::Result<OwnedFd> {
        open_in_root(self.root.as_fd(), path, flags | OFlags::NOFOLLOW)
    }

    /// Walks `dir` one component at a time, creating what is missing. A dangling symlink on the
    /// way is followed the way containerd's `RootPath` does (its target, read as text, is put in
    /// its place and the walk restarts), so that its target is created inside the root; the
    /// kernel still resolves every prefix with `RESOLVE_IN_ROOT`, `..` included.
    fn create_dirs(&self, dir: &[&[u8]]) -> io::Result<OwnedFd> {
        let mut components: Vec<Vec<u8>> = dir.iter().map(|c| c.to_vec()).collect();
        let mut hops = 0;
        'restart: loop {
            let mut current = self.open_dir(&[], OFlags::PATH)?;
            for depth in 1..=components.len() {
                let prefix: Vec<&[u8]> = components[..depth].iter().map(Vec::as_slice).collect();
                match self.open_dir(&prefix, OFlags::PATH) {
                    Ok(fd) => {
                        current = fd;
                        continue;
                    }
                    Err(error) if error.kind() == io::ErrorKind::NotFound => {}
                    Err(error) => return Err(error),
                }
                let name = prefix[depth - 1];
                match rfs::mkdirat(&current, name, Mode::from_raw_mode(IMPLIED_DIR_MODE)) {
                    Ok(()) => {
                        current = self.open_dir(&prefix, OFlags::PATH)?;
                        continue;
                    }
                    Err(Errno::EXIST) => {}
                    Err(errno) => return Err(errno.into()),
                }
                // Something exists but does not resolve: a dangling symlink.
                hops += 1;
                if hops > MAX_SYMLINK_HOPS {
                    return Err(Errno::LOOP.into());
                }
                let target = rfs::readlinkat(&current, name, Vec::new())?;
                let target = target.as_bytes();
                let mut replaced: Vec<Vec<u8>> = if target.starts_with(b"/") {
                    Vec::new()
                } else {
                    components[..depth - 1].to_vec()
                };
                replaced.extend(
                    target
                        .split(|&byte| byte == b'/')
                        .filter(|c| !c.is_empty() && *c != b".")
                        .map(<[u8]>::to_vec),
                );
                replaced.extend(components[depth..].iter().cloned());
                components = replaced;
                continue 'restart;
            }
            return Ok(current);
        }
    }
}

/// `openat2(root, path, flags | O_CLOEXEC, RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS)`,
/// retried while the kernel reports a concurrent rename.
fn open_in_root(root: BorrowedFd<'_>, path: &[u8], flags: OFlags) -> io::Result<OwnedFd> {
    let resolve = ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS;
    let flags = flags | OFlags::CLOEXEC;
    let mut attempts = 0;
    loop {
        match rfs::openat2(root, path, flags, Mode::empty(), resolve) {
            Err(Errno::AGAIN) if attempts < EAGAIN_RETRIES => attempts += 1,
            other => return other.map_err(io::Error::from),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cleaned(raw: &str) -> Result<Vec<String>, CleanError> {
        clean(raw.as_bytes()).map(|components| {
            components
                .iter()
                .map(|c| String::from_utf8_lossy(c).into_owned())
                .collect()
        })
    }

    #[test]
    fn clean_strips_roots_dots_and_inner_parents() {
        assert_eq!(cleaned("/abs/path"), Ok(vec!["abs".into(), "path".into()]));
        assert_eq!(
            cleaned("./a//b/./c/"),
            Ok(vec!["a".into(), "b".into(), "c".into()])
        );
        assert_eq!(cleaned("a/../b"), Ok(vec!["b".into()]));
        assert_eq!(cleaned("./"), Ok(vec![]));
        assert_eq!(cleaned("/"), Ok(vec![]));
    }

    #[test]
    fn clean_refuses_climbing_above_root() {
        assert_eq!(cleaned("../escape"), Err(CleanError::Escape));
        assert_eq!(cleaned("a/../../x"), Err(CleanError::Escape));
        assert_eq!(cleaned("/../x"), Err(CleanError::Escape));
        assert_eq!(clean(b"a\0b"), Err(CleanError::Invalid));
    }

    #[test]
    fn join_uses_dot_for_root() {
        assert_eq!(join(&[]), b".".to_vec());
        assert_eq!(join(&[b"a", b"b"]), b"a/b".to_vec());
    }
}
