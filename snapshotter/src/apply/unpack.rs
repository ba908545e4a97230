//! The per-entry dispatch: clean the path, classify it, resolve its parent inside the root, make
//! room, and hand it to the right writer.

use std::io::Read;
use std::os::fd::AsFd;

use rustix::fs::Timespec;
use rustix::fs::{FileType, OFlags};
use tar::EntryType;

use super::meta::read_meta;
use super::resolve::{clean, join, CleanError, Resolver};
use super::whiteout::{self, LayerPaths, Whiteout};
use super::write::{clear_slot, hardlink, Slot, Writer};
use super::{ApplyError, ApplyMode, ApplyOptions};

/// Entry types that are unpacked (checked before anything on disk changes). PAX and GNU
/// long-name headers never reach us: the `tar` crate folds them into the next entry.
const SUPPORTED: &[EntryType] = &[
    EntryType::Regular,
    EntryType::Continuous,
    EntryType::Directory,
    EntryType::Symlink,
    EntryType::Link,
    EntryType::Char,
    EntryType::Block,
    EntryType::Fifo,
];

/// State carried across the entries of one layer.
#[derive(Debug)]
pub(crate) struct Unpacker {
    resolver: Resolver,
    mode: ApplyMode,
    allow_devices: bool,
    writer: Writer,
    /// Paths written by this layer (Flatten only: what an opaque marker keeps).
    layer: LayerPaths,
    /// Directory mtimes, applied once the whole layer is in.
    dir_times: Vec<(Vec<u8>, Timespec)>,
    pub(crate) entries: u64,
}

impl Unpacker {
    pub(crate) fn new(resolver: Resolver, options: &ApplyOptions) -> Self {
        Unpacker {
            resolver,
            mode: options.mode,
            allow_devices: options.allow_devices,
            writer: Writer::new(options.same_owner),
            layer: LayerPaths::default(),
            dir_times: Vec::new(),
            entries: 0,
        }
    }

    pub(crate) fn owners_not_set(&self) -> u64 {
        self.writer.owners_not_set
    }

    /// Applies one archive entry.
    pub(crate) fn entry<R: Read>(
        &mut self,
        mut entry: tar::Entry<'_, R>,
    ) -> Result<(), ApplyError> {
        let kind = entry.header().entry_type();
        if matches!(kind, EntryType::XGlobalHeader) {
            return Ok(());
        }
        self.entries += 1;
        let raw = entry.path_bytes().into_owned();
        let name = String::from_utf8_lossy(&raw).into_owned();
        let components = clean(&raw).map_err(|error| match error {
            CleanError::Escape => ApplyError::Escape {
                entry: name.clone(),
            },
            CleanError::Invalid => ApplyError::InvalidPath {
                entry: name.clone(),
            },
        })?;
        let Some((base, dir)) = components.split_last() else {
            return Ok(()); // the root itself: never replaced, never re-moded (as containerd)
        };
        let class = whiteout::classify(&components).ok_or_else(|| ApplyError::InvalidPath {
            entry: name.clone(),
        })?;
        match class {
            Whiteout::Meta => return Ok(()),
            Whiteout::Opaque => return self.opaque(dir, &name),
            Whiteout::Remove(target) => return self.whiteout(dir, target, &name),
            Whiteout::No => {}
        }
        if !SUPPORTED.contains(&kind) {
            return Err(ApplyError::UnsupportedType {
                entry: name,
                kind: format!("{kind:?}"),
            });
        }
        if matches!(kind, EntryType::Char | EntryType::Block) && !self.allow_devices {
            return Err(ApplyError::Device { entry: name });
        }
        let meta = read_meta(&mut entry, &name)?;
        let link_target = match kind {
            EntryType::Link | EntryType::Symlink => Some(
                entry
                    .link_name_bytes()
                    .map(|target| target.into_owned())
                    .unwrap_or_default(),
            ),
            _ => None,
        };
        let is_dir = kind == EntryType::Directory;
        // A hardlink's target is resolved before its own slot is cleared.
        let target_fd = match (&link_target, kind) {
            (Some(target), EntryType::Link) => Some(self.link_target(target, &name)?),
            _ => None,
        };
        let parent = self
            .resolver
            .parent(dir, true)
            .map_err(|e| ApplyError::fs(&name, "resolve parent directory", e))?;
        let slot = clear_slot(parent.as_fd(), base, is_dir)
            .map_err(|e| ApplyError::fs(&name, "replace existing path", e))?;
        if slot == Slot::Replaced {
            self.resolver.invalidate();
        }
        let parent_fd = parent.as_fd();
        match kind {
            EntryType::Directory => {
                self.writer.dir(parent_fd, base, slot, &meta, &name)?;
                self.dir_times.push((join(&components), meta.mtime));
            }
            EntryType::Regular | EntryType::Continuous => {
                self.writer
                    .file(parent_fd, base, &mut entry, &meta, &name)?;
            }
            EntryType::Symlink => {
                let target = link_target.unwrap_or_default();
                self.writer
                    .symlink(parent_fd, base, &target, &meta, &name)?;
            }
            EntryType::Link => {
                let (target_parent, target_name) =
                    target_fd.ok_or_else(|| ApplyError::InvalidPath {
                        entry: name.clone(),
                    })?;
                hardlink(target_parent.as_fd(), &target_name, parent_fd, base, &name)?;
            }
            EntryType::Char | EntryType::Block | EntryType::Fifo => {
                let file_type = match kind {
                    EntryType::Char => FileType::CharacterDevice,
                    EntryType::Block => FileType::BlockDevice,
                    _ => FileType::Fifo,
                };
                let device = match kind {
                    EntryType::Fifo => (0, 0),
                    _ => device_numbers(&entry, &name)?,
                };
                self.writer
                    .node(parent_fd, base, file_type, device, &meta, &name)?;
            }
            other => {
                return Err(ApplyError::UnsupportedType {
                    entry: name,
                    kind: format!("{other:?}"),
                })
            }
        }
        if self.mode == ApplyMode::Flatten {
            self.layer.insert(&components);
        }
        Ok(())
    }

    /// Sets directory times now that nothing more is written into them (setting a child's times
    /// does not touch its parent's, so order does not matter). A directory that was replaced or
    /// removed later in the layer is skipped.
    pub(crate) fn finish(self) -> Result<(), ApplyError> {
        for (path, mtime) in &self.dir_times {
            let fd = match self
                .resolver
                .open_nofollow(path, OFlags::RDONLY | OFlags::DIRECTORY)
            {
                Ok(fd) => fd,
                Err(_) => continue, // gone or no longer a directory
            };
            let times = rustix::fs::Timestamps {
                last_access: *mtime,
                last_modification: *mtime,
            };
            rustix::fs::futimens(&fd, &times).map_err(|e| {
                ApplyError::fs(&String::from_utf8_lossy(path), "set directory times", e)
            })?;
        }
        Ok(())
    }

    fn opaque(&mut self, dir: &[&[u8]], name: &str) -> Result<(), ApplyError> {
        let result = match self.mode {
            ApplyMode::Flatten => whiteout::flatten_opaque(&mut self.resolver, dir, &self.layer),
            ApplyMode::OverlayLayer => whiteout::overlay_opaque(&mut self.resolver, dir),
        };
        result.map_err(|e| ApplyError::fs(name, "make directory opaque", e))
    }

    fn whiteout(&mut self, dir: &[&[u8]], target: &[u8], name: &str) -> Result<(), ApplyError> {
        let create = self.mode == ApplyMode::OverlayLayer;
        let parent = match self.resolver.parent(dir, create) {
            Ok(parent) => parent,
            // Flatten: nothing to delete under a directory that does not exist.
            Err(error) if !create && error.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(error) => return Err(ApplyError::fs(name, "resolve parent directory", error)),
        };
        self.resolver.invalidate();
        let parent = parent.as_fd();
        let result = match self.mode {
            ApplyMode::Flatten => whiteout::flatten_remove(parent, target),
            ApplyMode::OverlayLayer => whiteout::overlay_remove(parent, target),
        };
        result.map_err(|e| ApplyError::fs(name, "apply whiteout", e))
    }

    /// Resolves a hardlink target inside the root: its parent through `openat2`, its last
    /// component as a plain name.
    fn link_target(
        &mut self,
        target: &[u8],
        name: &str,
    ) -> Result<(std::os::fd::OwnedFd, Vec<u8>), ApplyError> {
        let escape = || ApplyError::LinkEscape {
            entry: name.to_owned(),
            target: String::from_utf8_lossy(target).into_owned(),
        };
        let components = clean(target).map_err(|_| escape())?;
        let Some((base, dir)) = components.split_last() else {
            return Err(escape());
        };
        let fd = self
            .resolver
            .open_dir(dir, OFlags::PATH)
            .map_err(|e| ApplyError::fs(name, "resolve hardlink target", e))?;
        Ok((fd, base.to_vec()))
    }
}

fn device_numbers<R: Read>(
    entry: &tar::Entry<'_, R>,
    name: &str,
) -> Result<(u32, u32), ApplyError> {
    let header = entry.header();
    let bad = |key: &str| ApplyError::Pax {
        entry: name.to_owned(),
        key: key.to_owned(),
    };
    let major = header
        .device_major()
        .map_err(|_| bad("devmajor"))?
        .unwrap_or(0);
    let minor = header
        .device_minor()
        .map_err(|_| bad("devminor"))?
        .unwrap_or(0);
    Ok((major, minor))
}
