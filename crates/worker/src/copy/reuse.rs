//! Hard links instead of copies, for a COPY written straight into its upper directory
//! ([`super::direct`]): a file that would come out exactly like an existing file of a
//! committed snapshot becomes a new link to that file.
//!
//! - From a stage (`COPY --from`): the source file itself, in the layer of the source
//!   snapshot's chain that provides it. overlayfs reports the real inode number of a
//!   non-directory, and the layer's file must have it.
//! - From a build context: the file at the same destination in the step's previous result,
//!   when the digest recorded for it there (`copied-v1.bin` beside that snapshot, written by
//!   [`Reuse::save`]) is the digest of the context file now. Not under `--no-cache`, which
//!   promises a build that reuses nothing.
//!
//! A link is made only when it gives the bytes and metadata a copy would: a regular file with
//! the wanted mode, owner, size and mtime (seconds and nanoseconds), without extended
//! attributes (the copy writes none), and never a second path of one view on one inode (a copy
//! makes separate files, and tools in later steps such as `tar` or `cp -a` would see a pair):
//! - within one COPY, an inode is linked once;
//! - a stage file is linked only while it has no other link (`st_nlink` 1), and never when
//!   the layer holding it is in the destination's own chain;
//! - a previous result is never in the chain of the step that replaces it.
//!
//! What a later step can still see is a link count above 1 (overlayfs reports the real one).
//! Committed snapshots never change, later steps copy up through overlayfs (which breaks the
//! link for the copied-up path), so sharing inodes between them is safe; removing a snapshot
//! only drops its links. Candidates are opened `O_PATH` (a device node is never opened) and
//! checked before linking. Every failure to link falls back to copying.
//!
//! ```text
//! copied-v2.bin   "RBCOPY1\n", then records: path length u32 LE, path (relative to the
//!                 rootfs), content digest of the file's bytes [32] (BLAKE3, as the stat
//!                 cache's; copied-v1.bin held sha256 digests and is not read)
//! ```

use std::collections::{HashMap, HashSet};
use std::ffi::CStr;
use std::os::fd::OwnedFd;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use rustix::fs::{AtFlags, Mode, OFlags, ResolveFlags};
use rustix::io::Errno;

use super::select::Entry;
use crate::statcache::StatCache;

const MAGIC: &[u8; 8] = b"RBCOPY1\n";
const MANIFEST: &str = "copied-v2.bin";

/// Where a snapshot's copied-file digests are kept: beside its layer directory.
pub fn manifest_path(layer_dir: &Path) -> PathBuf {
    layer_dir.parent().unwrap_or(Path::new("/")).join(MANIFEST)
}

/// What the copy of one file must give: owner and permission bits.
#[derive(Debug, Clone, Copy)]
pub struct Wanted {
    pub uid: u32,
    pub gid: u32,
    pub mode: u32,
}

#[derive(Debug)]
enum Candidates {
    /// The source view's root (the selection's host paths start with it) and the layers of
    /// its snapshot chain, top first, each with whether it is also in the destination's chain.
    Stage {
        root: PathBuf,
        layers: Vec<(OwnedFd, bool)>,
    },
    /// The previous result of the step and the digests of the files copied into it.
    Previous {
        layer: OwnedFd,
        digests: HashMap<String, [u8; 32]>,
    },
    None,
}

/// The link source of one COPY; shared by its copy threads.
#[derive(Debug)]
pub struct Reuse<'a> {
    candidates: Candidates,
    /// Set for a context copy: the context files' digests, recorded for the next build.
    context: Option<&'a StatCache>,
    /// The last write of each destination path, in write order: its digest, or `None` when
    /// what is there now cannot be vouched for (a later write replaced a recorded file).
    recorded: Mutex<HashMap<String, Option<[u8; 32]>>>,
    /// Inodes linked by this COPY: two copy threads can both see a stage file at st_nlink 1.
    linked_inodes: Mutex<HashSet<(u64, u64)>>,
}

fn open_dir(path: &Path) -> Option<OwnedFd> {
    crate::fsutil::open_root(path).ok()
}

/// Opens `rel` below `dir` (`O_PATH`: nothing is read, no device opened) without following
/// any symlink or leaving it.
fn open_beneath(dir: &OwnedFd, rel: &str) -> Result<OwnedFd, Errno> {
    rustix::fs::openat2(
        dir,
        rel,
        OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
        ResolveFlags::BENEATH
            | ResolveFlags::NO_SYMLINKS
            | ResolveFlags::NO_MAGICLINKS
            | ResolveFlags::NO_XDEV,
    )
}

fn decode(bytes: &[u8]) -> HashMap<String, [u8; 32]> {
    let mut map = HashMap::new();
    let Some(mut rest) = bytes.strip_prefix(MAGIC.as_slice()) else {
        return map;
    };
    while !rest.is_empty() {
        let Some((len, tail)) = rest.split_first_chunk::<4>() else {
            return HashMap::new();
        };
        let len = u32::from_le_bytes(*len) as usize;
        if tail.len() < len + 32 {
            return HashMap::new();
        }
        let (path, tail) = tail.split_at(len);
        let (digest, tail) = tail.split_at(32);
        let Ok(path) = std::str::from_utf8(path) else {
            return HashMap::new();
        };
        let mut d = [0u8; 32];
        d.copy_from_slice(digest);
        map.insert(path.to_string(), d);
        rest = tail;
    }
    map
}

fn encode(records: &[(String, [u8; 32])]) -> Vec<u8> {
    let mut out = Vec::with_capacity(MAGIC.len() + records.len() * 80);
    out.extend_from_slice(MAGIC);
    for (path, digest) in records {
        out.extend_from_slice(&(path.len() as u32).to_le_bytes());
        out.extend_from_slice(path.as_bytes());
        out.extend_from_slice(digest);
    }
    out
}

impl<'a> Reuse<'a> {
    fn new(candidates: Candidates, context: Option<&'a StatCache>) -> Reuse<'a> {
        Reuse {
            candidates,
            context,
            recorded: Mutex::new(HashMap::new()),
            linked_inodes: Mutex::new(HashSet::new()),
        }
    }

    /// Links from the snapshot chain `chain` (top first) that the source view at `root` shows;
    /// `destination` is the chain of the view the COPY writes into.
    pub fn from_stage(root: &Path, chain: &[PathBuf], destination: &[PathBuf]) -> Reuse<'static> {
        let layers: Option<Vec<(OwnedFd, bool)>> = chain
            .iter()
            .map(|p| Some((open_dir(p)?, destination.contains(p))))
            .collect();
        let candidates = match layers {
            Some(layers) => Candidates::Stage {
                root: root.to_path_buf(),
                layers,
            },
            None => Candidates::None,
        };
        Reuse::new(candidates, None)
    }

    /// A copy from a build context: links from `previous` (the layer directory of the step's
    /// last result) when given, and records what it writes for the next build.
    pub fn from_context(cache: &'a StatCache, previous: Option<&Path>) -> Reuse<'a> {
        let candidates = previous
            .and_then(|layer_dir| {
                let digests = decode(&std::fs::read(manifest_path(layer_dir)).ok()?);
                Some(Candidates::Previous {
                    layer: open_dir(layer_dir)?,
                    digests: Some(digests).filter(|d| !d.is_empty())?,
                })
            })
            .unwrap_or(Candidates::None);
        Reuse::new(candidates, Some(cache))
    }

    /// The context file's digest (the key already hashed it).
    fn context_digest(&self, entry: &Entry) -> Option<[u8; 32]> {
        self.context?.known_digest(&entry.meta)
    }

    /// The open file a copy of `entry` to `dest_path` may be linked to.
    fn candidate(&self, dest_path: &str, entry: &Entry) -> Option<(OwnedFd, Option<[u8; 32]>)> {
        match &self.candidates {
            Candidates::None => None,
            Candidates::Stage { root, layers } => {
                let rel = entry.host.strip_prefix(root).ok()?.to_str()?;
                for (layer, shared) in layers {
                    match open_beneath(layer, rel) {
                        Ok(fd) => {
                            let stat = rustix::fs::fstat(&fd).ok()?;
                            let usable =
                                !shared && stat.st_ino == entry.meta.ino() && stat.st_nlink == 1;
                            return usable.then_some((fd, None));
                        }
                        Err(Errno::NOENT) | Err(Errno::NOTDIR) => continue,
                        Err(_) => return None,
                    }
                }
                None
            }
            Candidates::Previous { layer, digests } => {
                let digest = self.context_digest(entry)?;
                if digests.get(dest_path) != Some(&digest) {
                    return None;
                }
                Some((open_beneath(layer, dest_path).ok()?, Some(digest)))
            }
        }
    }

    /// Makes `name` in `parent` a link to a file equal to what copying `entry` (as `wanted`)
    /// to `dest_path` would give; false (and nothing made) when there is none.
    pub fn link(
        &self,
        parent: &OwnedFd,
        name: &CStr,
        dest_path: &str,
        entry: &Entry,
        wanted: Wanted,
    ) -> bool {
        let Some((fd, digest)) = self.candidate(dest_path, entry) else {
            return false;
        };
        let Ok(stat) = rustix::fs::fstat(&fd) else {
            return false;
        };
        let meta = &entry.meta;
        let same = rustix::fs::FileType::from_raw_mode(stat.st_mode)
            == rustix::fs::FileType::RegularFile
            && stat.st_mode & 0o7777 == wanted.mode
            && (stat.st_uid, stat.st_gid) == (wanted.uid, wanted.gid)
            && stat.st_size as u64 == meta.size()
            && stat.st_mtime == meta.mtime()
            && stat.st_mtime_nsec as i64 == meta.mtime_nsec();
        // An O_PATH descriptor has no xattr calls of its own: through its /proc link.
        let proc_path = format!("/proc/self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(&fd));
        let no_xattrs = matches!(
            rustix::fs::listxattr(proc_path.as_str(), &mut [0u8; 0][..]),
            Ok(0)
        );
        if !same || !no_xattrs {
            return false;
        }
        let inode = (stat.st_dev, stat.st_ino);
        if !self
            .linked_inodes
            .lock()
            .is_ok_and(|mut set| set.insert(inode))
        {
            return false;
        }
        if rustix::fs::linkat(&fd, c"", parent, name, AtFlags::EMPTY_PATH).is_err() {
            return false;
        }
        self.note(dest_path, digest);
        true
    }

    /// After `entry` was copied to `dest_path` (unchanged while it was read: see
    /// `source_file`): records its digest for the next build, if it is a context file.
    pub fn copied(&self, dest_path: &str, entry: &Entry) {
        if self.context.is_none() {
            return;
        }
        self.note(dest_path, self.context_digest(entry));
    }

    /// After anything other than a regular file was written at `dest_path`.
    pub fn replaced(&self, dest_path: &str) {
        self.note(dest_path, None);
    }

    /// The last write at `dest_path` (a later write of a path replaces an earlier one).
    fn note(&self, dest_path: &str, digest: Option<[u8; 32]>) {
        if self.context.is_none() {
            return;
        }
        if let Ok(mut recorded) = self.recorded.lock() {
            recorded.insert(dest_path.to_string(), digest);
        }
    }

    /// Writes the digests of the context files this copy wrote beside the snapshot whose
    /// layer directory is `layer_dir` (temp file + rename; without it the next build copies).
    pub fn save(&self, layer_dir: &Path) -> std::io::Result<()> {
        if self.context.is_none() {
            return Ok(());
        }
        let recorded = std::mem::take(&mut *self.recorded.lock().map_err(|_| {
            std::io::Error::other("a copy thread panicked while recording digests")
        })?);
        let mut recorded: Vec<(String, [u8; 32])> = recorded
            .into_iter()
            .filter_map(|(path, digest)| Some((path, digest?)))
            .collect();
        if recorded.is_empty() {
            return Ok(());
        }
        recorded.sort();
        crate::fsutil::replace_file(&manifest_path(layer_dir), &encode(&recorded))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifests_round_trip_and_damaged_ones_read_as_empty() {
        let records = vec![
            ("a/b".to_string(), [1u8; 32]),
            ("src/ünïcode name".to_string(), [2u8; 32]),
        ];
        let bytes = encode(&records);
        let map = decode(&bytes);
        assert_eq!(map.len(), 2);
        assert_eq!(map["a/b"], [1u8; 32]);
        assert!(decode(&bytes[..bytes.len() - 1]).is_empty());
        assert!(decode(b"something else").is_empty());
    }
}
