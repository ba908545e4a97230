//! Applying a layer: an OCI/Docker layer tarball (gzip, zstd or plain, told apart by magic
//! bytes) unpacked into a directory, whiteouts honoured, and no entry able to reach outside that
//! directory.
//!
//! # Two targets
//! [`ApplyMode::Flatten`] applies onto a full root filesystem: `.wh.NAME` deletes `NAME`
//! recursively and `.wh..wh..opq` empties its directory of everything that did not come from the
//! same layer. [`ApplyMode::OverlayLayer`] unpacks into an empty directory that will be an
//! overlayfs lowerdir, so whiteouts are written in overlayfs' own form: a 0/0 character device
//! and the `trusted.overlay.opaque=y` attribute. See `whiteout` for both.
//!
//! # Containment
//! The archive is hostile until proven otherwise, and the root is a directory we hold open. The
//! rule is that no path is ever handed to the kernel as a path from `/` or through a symlink it
//! could follow outside:
//!
//! - *Text.* An entry's name is cleaned lexically first (`resolve::clean`): a leading `/` is
//!   dropped (so `/etc/x` lands in `<root>/etc/x`, as with containerd), `a/../b` becomes `b`, and a
//!   `..` that would climb above the root is an error. An entry that cleans to the root itself is
//!   skipped, so the root can never be replaced, removed or re-moded.
//! - *Parents.* The parent directory is opened with `openat2(root_fd, parent,
//!   RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS)`: the kernel resolves every symlink on the way as
//!   if `root` were `/` (an absolute target restarts at the root, `..` stops there, `/proc`
//!   magic links are refused). A layer that plants `l -> /` or `l -> ../../..` and then writes
//!   `l/x` writes `<root>/x`. Missing parents are created one by one, each inside the directory
//!   its own parent resolved to.
//! - *Last component.* Writers act on `(parent_fd, name)` with `*at` calls and `O_NOFOLLOW` /
//!   `AT_SYMLINK_NOFOLLOW`; whatever occupies the name is removed first (recursively, without
//!   following symlinks) unless a directory meets a directory. A symlink in the last place is
//!   therefore replaced, never written through.
//! - *Hardlinks and whiteouts* go through the same two steps: a hardlink target is cleaned and its
//!   parent resolved in the root (`linkat` without `AT_SYMLINK_FOLLOW` links a symlink itself);
//!   a whiteout deletes one name in an in-root parent, and `.wh..` / `.wh.` are invalid.
//! - *Symlink entries* may point anywhere: their target is data, only ever read back through the
//!   same in-root resolution.
//!
//! # Metadata
//! Owners are applied when `same_owner` (default: running as root), otherwise counted in
//! [`ApplyStats::owners_not_set`]. Modes keep setuid/setgid/sticky and ignore the umask. PAX
//! `SCHILY.xattr.*` records are applied to files and directories (`trusted.overlay.*` from an
//! archive is dropped: it would let a layer fake whiteouts). Directory times are set after the
//! whole layer, so their own contents do not bump them.
//!
//! # Streaming
//! Nothing holds a whole layer: entries stream from the decompressor, the uncompressed tar
//! passes through a digester (the diff_id), and what is kept per layer is paths only (directory
//! times, and in Flatten mode the set of written paths that opaque markers consult).

mod decompress;
mod error;
mod meta;
mod remove;
pub use remove::remove_tree;
mod resolve;
mod unpack;
pub(crate) mod whiteout;
mod write;

#[cfg(test)]
mod tests;

use std::io::{self, Read};
use std::path::Path;

use rbuild_digest::{BackgroundDigestingReader, Digest};

pub use error::ApplyError;

use resolve::Resolver;
use unpack::Unpacker;

/// Where a layer is applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApplyMode {
    /// Onto a full root filesystem: whiteouts delete.
    Flatten,
    /// Into an empty overlayfs lowerdir: whiteouts become overlayfs whiteouts.
    OverlayLayer,
}

/// How a layer is applied.
#[derive(Debug, Clone)]
pub struct ApplyOptions {
    pub mode: ApplyMode,
    /// Create character and block devices; when false a device entry is an error.
    pub allow_devices: bool,
    /// Give entries the archive's owner (needs root).
    pub same_owner: bool,
}

impl ApplyOptions {
    /// Options for `mode`: no devices, owners applied when running as root.
    pub fn new(mode: ApplyMode) -> Self {
        ApplyOptions {
            mode,
            allow_devices: false,
            same_owner: rustix::process::geteuid().is_root(),
        }
    }
}

/// What applying a layer did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApplyStats {
    /// Archive entries read (whiteouts and skipped entries included, PAX global headers not).
    pub entries: u64,
    /// Size of the uncompressed tar stream.
    pub bytes: u64,
    /// sha256 of the uncompressed tar stream, to check against the image config's diff_ids.
    pub diff_id: Digest,
    /// Entries with a foreign owner left unset because `same_owner` was off.
    pub owners_not_set: u64,
}

/// Unpacks the layer read from `reader` into `root` (an existing directory).
///
/// On error the root may hold part of the layer, but never anything outside it.
pub fn apply_layer(
    reader: impl Read,
    root: &Path,
    options: &ApplyOptions,
) -> Result<ApplyStats, ApplyError> {
    let resolver = Resolver::new(root).map_err(|source| ApplyError::Root {
        root: root.to_owned(),
        source,
    })?;
    let (_, tar_stream) = decompress::decompress(reader)?;
    // The diff_id is hashed on a background thread: sha256 costs as much as the unpacking.
    let mut digesting = BackgroundDigestingReader::new(tar_stream).map_err(ApplyError::Read)?;
    let mut unpacker = Unpacker::new(resolver, options);
    {
        let mut archive = tar::Archive::new(&mut digesting);
        for entry in archive.entries().map_err(ApplyError::Read)? {
            unpacker.entry(entry.map_err(ApplyError::Read)?)?;
        }
    }
    // The digest covers the whole stream, end-of-archive blocks and padding included.
    io::copy(&mut digesting, &mut io::sink()).map_err(ApplyError::Read)?;
    let entries = unpacker.entries;
    let owners_not_set = unpacker.owners_not_set();
    unpacker.finish()?;
    let (diff_id, bytes) = digesting.finish().map_err(ApplyError::Read)?;
    Ok(ApplyStats {
        entries,
        bytes,
        diff_id,
        owners_not_set,
    })
}
