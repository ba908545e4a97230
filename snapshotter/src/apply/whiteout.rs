//! Whiteouts: how a layer deletes what the layers below it put there.
//!
//! In the archive a deletion is a file named `.wh.NAME` beside `NAME`, and an opaque directory
//! (one whose lower contents are all hidden) holds a file `.wh..wh..opq`. Other names under the
//! `.wh..wh.` prefix are AUFS bookkeeping (`.wh..wh.plnk`, `.wh..wh.aufs`) and are skipped, with
//! everything below them.
//!
//! - [`ApplyMode::Flatten`](super::ApplyMode::Flatten) performs the deletion on the tree.
//!   "Everything that did not come from this same layer" is known from [`LayerPaths`], the set of
//!   paths (and their ancestors) the layer has written so far; an opaque marker met after some of
//!   its directory's entries therefore keeps them.
//! - [`ApplyMode::OverlayLayer`](super::ApplyMode::OverlayLayer) writes overlayfs' own form: a
//!   0/0 character device for a deleted name and `trusted.overlay.opaque=y` on an opaque
//!   directory.

use std::collections::HashSet;
use std::io;
use std::os::fd::{AsFd, BorrowedFd};

use rustix::fs::{self as rfs, Dir, FileType, Mode, OFlags, XattrFlags};
use rustix::io::Errno;

use super::remove::remove_all;
use super::resolve::{join, Resolver};

/// The whiteout wire format, shared with the layer writer (`crate::layer`).
pub(crate) const WHITEOUT_PREFIX: &[u8] = b".wh.";
const META_PREFIX: &[u8] = b".wh..wh.";
pub(crate) const OPAQUE_MARKER: &[u8] = b".wh..wh..opq";
const OPAQUE_XATTR: &str = "trusted.overlay.opaque";

/// What a cleaned archive path means with respect to whiteouts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Whiteout<'a> {
    /// An ordinary entry.
    No,
    /// `.wh..wh..opq`: the parent directory is opaque.
    Opaque,
    /// `.wh.NAME`: delete `NAME` in the parent directory.
    Remove(&'a [u8]),
    /// AUFS metadata (or something below it): skip.
    Meta,
}

/// Classifies cleaned `components` (the last is the entry's name). A whiteout of `.` or `..`,
/// or of nothing, is `None`: the caller rejects it as an invalid path.
pub(crate) fn classify<'a>(components: &[&'a [u8]]) -> Option<Whiteout<'a>> {
    let Some((base, parents)) = components.split_last() else {
        return Some(Whiteout::No);
    };
    if parents.iter().any(|parent| parent.starts_with(META_PREFIX)) {
        return Some(Whiteout::Meta);
    }
    if *base == OPAQUE_MARKER {
        return Some(Whiteout::Opaque);
    }
    if base.starts_with(META_PREFIX) {
        return Some(Whiteout::Meta);
    }
    match base.strip_prefix(WHITEOUT_PREFIX) {
        None => Some(Whiteout::No),
        Some(b"" | b"." | b"..") => None,
        Some(name) => Some(Whiteout::Remove(name)),
    }
}

/// The paths a layer has written so far, with all their ancestors (Flatten mode only).
#[derive(Debug, Default)]
pub(crate) struct LayerPaths {
    paths: HashSet<Vec<u8>>,
}

impl LayerPaths {
    /// Records `components` and each of its ancestors.
    pub(crate) fn insert(&mut self, components: &[&[u8]]) {
        for depth in (1..=components.len()).rev() {
            if !self.paths.insert(join(&components[..depth])) {
                break; // its ancestors are already in
            }
        }
    }

    fn contains(&self, path: &[u8]) -> bool {
        self.paths.contains(path)
    }
}

/// Flatten: deletes `name` (recursively) in `parent`; a missing name is fine.
pub(crate) fn flatten_remove(parent: BorrowedFd<'_>, name: &[u8]) -> io::Result<()> {
    remove_all(parent, name)
}

/// Flatten: empties directory `dir` (cleaned components) of everything not in `layer`,
/// descending into kept directories (their older contents are hidden too). A missing `dir` is
/// created, as for any entry.
pub(crate) fn flatten_opaque(
    resolver: &mut Resolver,
    dir: &[&[u8]],
    layer: &LayerPaths,
) -> io::Result<()> {
    resolver.parent(dir, true)?;
    let top = resolver.open_dir(dir, OFlags::RDONLY)?;
    let mut pending = vec![(join(dir), Some(top))];
    while let Some((path, opened)) = pending.pop() {
        let opened = match opened {
            Some(fd) => Ok(fd),
            None => resolver.open_nofollow(&path, OFlags::RDONLY | OFlags::DIRECTORY),
        };
        let fd = match opened {
            Ok(fd) => fd,
            Err(error) => match error.raw_os_error() {
                // A kept entry that is not a real directory (a symlink, a file): nothing below.
                Some(code) if code == Errno::LOOP.raw_os_error() => continue,
                Some(code) if code == Errno::NOTDIR.raw_os_error() => continue,
                _ => return Err(error),
            },
        };
        let mut entries = Dir::read_from(&fd)?;
        while let Some(entry) = entries.read() {
            let entry = entry?;
            let child = entry.file_name().to_bytes();
            if child == b"." || child == b".." {
                continue;
            }
            let mut child_path = if path == b"." {
                Vec::new()
            } else {
                path.clone()
            };
            if !child_path.is_empty() {
                child_path.push(b'/');
            }
            child_path.extend_from_slice(child);
            if layer.contains(&child_path) {
                if entry.file_type() == FileType::Directory
                    || entry.file_type() == FileType::Unknown
                {
                    pending.push((child_path, None));
                }
            } else {
                remove_all(fd.as_fd(), child)?;
            }
        }
    }
    resolver.invalidate();
    Ok(())
}

/// OverlayLayer: `name` in `parent` becomes a 0/0 character device (anything there is replaced).
pub(crate) fn overlay_remove(parent: BorrowedFd<'_>, name: &[u8]) -> io::Result<()> {
    remove_all(parent, name)?;
    rfs::mknodat(
        parent,
        name,
        FileType::CharacterDevice,
        Mode::empty(),
        rfs::makedev(0, 0),
    )?;
    Ok(())
}

/// OverlayLayer: marks directory `dir` opaque (creating it when missing).
pub(crate) fn overlay_opaque(resolver: &mut Resolver, dir: &[&[u8]]) -> io::Result<()> {
    resolver.parent(dir, true)?;
    let fd = resolver.open_dir(dir, OFlags::RDONLY)?;
    rfs::fsetxattr(&fd, OPAQUE_XATTR, b"y", XattrFlags::empty())?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classify_names() {
        assert_eq!(classify(&[b"a", b"b"]), Some(Whiteout::No));
        assert_eq!(classify(&[b"a", b".wh.b"]), Some(Whiteout::Remove(b"b")));
        assert_eq!(classify(&[b"a", b".wh..wh..opq"]), Some(Whiteout::Opaque));
        assert_eq!(classify(&[b".wh..wh.plnk"]), Some(Whiteout::Meta));
        assert_eq!(classify(&[b".wh..wh.plnk", b"123"]), Some(Whiteout::Meta));
        assert_eq!(classify(&[b".wh.."]), None);
        assert_eq!(classify(&[b".wh."]), None);
        assert_eq!(classify(&[]), Some(Whiteout::No));
    }
}
