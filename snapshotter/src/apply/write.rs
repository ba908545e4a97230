//! Entry writers: one function per kind of archive entry, each acting on a parent directory
//! descriptor and one plain name with `*at` calls that never follow a symlink in that name.
//!
//! Order of metadata matters: content first, then owner (`chown` clears setuid/setgid and file
//! capabilities), then mode (so setuid survives; `fchmod` is not subject to the umask), then
//! extended attributes (so `security.capability` survives), then times (every earlier step
//! touches them). Directories get their times at the end of the layer, after their contents.

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use rustix::fs::{self as rfs, AtFlags, FileType, Gid, Mode, OFlags, Uid, XattrFlags};
use rustix::io::Errno;

use super::meta::Meta;
use super::remove::remove_all;
use super::ApplyError;

/// Size of the copy buffer for file contents.
const COPY_BUFFER: usize = 256 * 1024;

/// What was at an entry's name before the entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Slot {
    /// Nothing.
    Empty,
    /// A directory, kept because the entry is a directory too (they merge).
    KeptDir,
    /// Something that was removed: resolutions cached before may be stale.
    Replaced,
}

/// Makes room for an entry named `name` in `parent`, as containerd does: whatever is there is
/// removed (recursively), unless both are directories.
pub(crate) fn clear_slot(parent: BorrowedFd<'_>, name: &[u8], is_dir: bool) -> io::Result<Slot> {
    match rfs::statat(parent, name, AtFlags::SYMLINK_NOFOLLOW) {
        Err(Errno::NOENT) => Ok(Slot::Empty),
        Err(errno) => Err(errno.into()),
        Ok(stat) => {
            if is_dir && FileType::from_raw_mode(stat.st_mode) == FileType::Directory {
                Ok(Slot::KeptDir)
            } else {
                remove_all(parent, name)?;
                Ok(Slot::Replaced)
            }
        }
    }
}

/// Writes entries' data and metadata.
#[derive(Debug)]
pub(crate) struct Writer {
    same_owner: bool,
    euid: u32,
    egid: u32,
    buffer: Vec<u8>,
    /// Entries whose owner differs from ours and was left unset (`same_owner` off).
    pub(crate) owners_not_set: u64,
}

impl Writer {
    pub(crate) fn new(same_owner: bool) -> Self {
        Writer {
            same_owner,
            euid: rustix::process::geteuid().as_raw(),
            egid: rustix::process::getegid().as_raw(),
            buffer: vec![0; COPY_BUFFER],
            owners_not_set: 0,
        }
    }

    /// A directory; a kept one (`slot`) only gets the new metadata. Its times are the caller's.
    pub(crate) fn dir(
        &mut self,
        parent: BorrowedFd<'_>,
        name: &[u8],
        slot: Slot,
        meta: &Meta,
        entry: &str,
    ) -> Result<(), ApplyError> {
        if slot != Slot::KeptDir {
            rfs::mkdirat(parent, name, Mode::from_raw_mode(0o700))
                .map_err(|e| ApplyError::fs(entry, "create directory", e))?;
        }
        let fd = rfs::openat(
            parent,
            name,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| ApplyError::fs(entry, "open directory", e))?;
        self.fd_meta(&fd, meta, entry)
    }

    /// A regular file with the entry's content; returns the bytes written.
    pub(crate) fn file(
        &mut self,
        parent: BorrowedFd<'_>,
        name: &[u8],
        content: &mut impl Read,
        meta: &Meta,
        entry: &str,
    ) -> Result<u64, ApplyError> {
        let fd = rfs::openat(
            parent,
            name,
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o600),
        )
        .map_err(|e| ApplyError::fs(entry, "create file", e))?;
        let mut file = File::from(fd);
        let mut written = 0u64;
        loop {
            let n = match content.read(&mut self.buffer) {
                Ok(0) => break,
                Ok(n) => n,
                Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
                Err(source) => {
                    return Err(ApplyError::Entry {
                        entry: entry.to_owned(),
                        source,
                    })
                }
            };
            file.write_all(&self.buffer[..n])
                .map_err(|e| ApplyError::fs(entry, "write file", e))?;
            written += n as u64;
        }
        let fd = OwnedFd::from(file);
        self.fd_meta(&fd, meta, entry)?;
        rfs::futimens(&fd, &meta.timestamps())
            .map_err(|e| ApplyError::fs(entry, "set times", e))?;
        Ok(written)
    }

    /// A symlink; its target is data and may point anywhere. Extended attributes are not applied
    /// to symlinks.
    pub(crate) fn symlink(
        &mut self,
        parent: BorrowedFd<'_>,
        name: &[u8],
        target: &[u8],
        meta: &Meta,
        entry: &str,
    ) -> Result<(), ApplyError> {
        rfs::symlinkat(target, parent, name)
            .map_err(|e| ApplyError::fs(entry, "create symlink", e))?;
        self.at_owner(parent, name, meta, entry)?;
        rfs::utimensat(parent, name, &meta.timestamps(), AtFlags::SYMLINK_NOFOLLOW)
            .map_err(|e| ApplyError::fs(entry, "set times", e))
    }

    /// A character or block device or a fifo (the caller checked devices are allowed).
    /// Extended attributes are not applied to these.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn node(
        &mut self,
        parent: BorrowedFd<'_>,
        name: &[u8],
        kind: FileType,
        (major, minor): (u32, u32),
        meta: &Meta,
        entry: &str,
    ) -> Result<(), ApplyError> {
        rfs::mknodat(
            parent,
            name,
            kind,
            Mode::from_raw_mode(0o600),
            rfs::makedev(major, minor),
        )
        .map_err(|e| ApplyError::fs(entry, "create node", e))?;
        self.at_owner(parent, name, meta, entry)?;
        // The node was just created with O_EXCL semantics, so the name is not a symlink.
        rfs::chmodat(
            parent,
            name,
            Mode::from_raw_mode(meta.mode),
            AtFlags::empty(),
        )
        .map_err(|e| ApplyError::fs(entry, "set mode", e))?;
        rfs::utimensat(parent, name, &meta.timestamps(), AtFlags::SYMLINK_NOFOLLOW)
            .map_err(|e| ApplyError::fs(entry, "set times", e))
    }

    /// Owner (when allowed), mode and extended attributes through an open descriptor.
    fn fd_meta(&mut self, fd: &OwnedFd, meta: &Meta, entry: &str) -> Result<(), ApplyError> {
        if self.owner_wanted(meta) {
            rfs::fchown(
                fd,
                Some(Uid::from_raw(meta.uid)),
                Some(Gid::from_raw(meta.gid)),
            )
            .map_err(|e| ApplyError::fs(entry, "set owner", e))?;
        }
        rfs::fchmod(fd, Mode::from_raw_mode(meta.mode))
            .map_err(|e| ApplyError::fs(entry, "set mode", e))?;
        for (name, value) in &meta.xattrs {
            rfs::fsetxattr(fd.as_fd(), name.as_slice(), value, XattrFlags::empty())
                .map_err(|e| ApplyError::fs(entry, "set extended attribute", e))?;
        }
        Ok(())
    }

    fn at_owner(
        &mut self,
        parent: BorrowedFd<'_>,
        name: &[u8],
        meta: &Meta,
        entry: &str,
    ) -> Result<(), ApplyError> {
        if self.owner_wanted(meta) {
            rfs::chownat(
                parent,
                name,
                Some(Uid::from_raw(meta.uid)),
                Some(Gid::from_raw(meta.gid)),
                AtFlags::SYMLINK_NOFOLLOW,
            )
            .map_err(|e| ApplyError::fs(entry, "set owner", e))?;
        }
        Ok(())
    }

    /// Whether to chown; counts the entries whose foreign owner is left unset.
    fn owner_wanted(&mut self, meta: &Meta) -> bool {
        if self.same_owner {
            return true;
        }
        if meta.uid != self.euid || meta.gid != self.egid {
            self.owners_not_set += 1;
        }
        false
    }
}

/// A hard link `name` in `parent` to `target_name` in `target_parent` (both resolved inside the
/// root by the caller). A symlink target is linked itself, never followed.
pub(crate) fn hardlink(
    target_parent: BorrowedFd<'_>,
    target_name: &[u8],
    parent: BorrowedFd<'_>,
    name: &[u8],
    entry: &str,
) -> Result<(), ApplyError> {
    rfs::linkat(target_parent, target_name, parent, name, AtFlags::empty())
        .map_err(|e| ApplyError::fs(entry, "create hardlink", e))
}
