//! The walk: a depth-first traversal of the source directory in sorted order, classifying every
//! inode into what the layer will say about it.
//!
//! Order: the names of each directory are sorted by their bytes and a directory's contents follow
//! it at once, so entries come out sorted by path compared component by component (the order of
//! Go's `filepath.WalkDir`, which BuildKit and containerd use). The walk holds one sorted name list
//! per open directory, never the whole tree. The sort key is the name on disk: a whiteout
//! `.wh.x` takes the place of `x`, and `archive` writes an opaque directory's `.wh..wh..opq`
//! right after the directory (as containerd's and BuildKit's overlay differs do).
//!
//! Classification depends on the source: in an overlayfs upperdir a character device 0/0 (or a
//! file with an `overlay.whiteout` xattr) is a whiteout and a directory whose `trusted.` or
//! `user.overlay.opaque` is `y` is opaque; a plain directory has no such conventions. Overlay
//! attributes that make an upperdir depend on its lower layers (`redirect`, `metacopy`) are
//! errors: the lower layers are never walked.
//!
//! Inodes are read by path (`lstat`, `llistxattr`, `open(O_NOFOLLOW)`), so a path longer than
//! `PATH_MAX` (4096 bytes) under the source is an error naming it. Sockets are skipped.

use std::collections::HashMap;
use std::ffi::OsString;
use std::fs::{self, Metadata};
use std::io;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use super::{LayerError, SourceKind};

/// Extended attributes that go into the layer; every other one is dropped. Docker and
/// containerd carry exactly this one: a layer must not depend on host labels (`security.selinux`),
/// overlay bookkeeping (`trusted.overlay.*`) or desktop metadata (`user.*`).
const KEPT_XATTRS: &[&[u8]] = &[b"security.capability"];

/// rbuild mounts overlays without `userxattr`, so only `trusted.overlay.*` attributes are
/// overlay markers. `user.overlay.*` are ordinary user attributes a RUN step (or a base image)
/// may set: honouring them would let a step fake deletions in its own layer.
const OPAQUE_XATTRS: &[&[u8]] = &[b"trusted.overlay.opaque"];
const WHITEOUT_XATTRS: &[&[u8]] = &[b"trusted.overlay.whiteout"];
const FORBIDDEN_XATTRS: &[&[u8]] = &[b"trusted.overlay.redirect", b"trusted.overlay.metacopy"];

/// What one inode becomes in the layer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum NodeKind {
    File {
        size: u64,
    },
    Dir {
        opaque: bool,
    },
    Symlink {
        target: Vec<u8>,
    },
    /// A further link to a file already written at `target` (relative path).
    Hardlink {
        target: Vec<u8>,
    },
    Char {
        major: u32,
        minor: u32,
    },
    Block {
        major: u32,
        minor: u32,
    },
    Fifo,
    /// An overlay whiteout: the name is deleted from the lower layers.
    Whiteout,
}

/// One entry of the walk.
#[derive(Debug)]
pub(crate) struct Node {
    /// Path relative to the root, no leading `./`, no trailing `/`.
    pub rel: Vec<u8>,
    pub abs: PathBuf,
    pub kind: NodeKind,
    /// `st_mode & 0o7777`.
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    /// `st_mtime`, whole seconds.
    pub mtime: i64,
    /// Kept xattrs, sorted by name.
    pub xattrs: Vec<(Vec<u8>, Vec<u8>)>,
}

struct Frame {
    rel: Vec<u8>,
    abs: PathBuf,
    names: std::vec::IntoIter<OsString>,
}

/// Iterator over the tree in layer order.
pub(crate) struct Walker {
    source: SourceKind,
    stack: Vec<Frame>,
    /// First path seen for each multiply-linked inode, by `(st_dev, st_ino)`.
    links: HashMap<(u64, u64), Vec<u8>>,
}

impl std::fmt::Debug for Walker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Walker")
            .field("source", &self.source)
            .field("depth", &self.stack.len())
            .finish()
    }
}

impl Walker {
    /// Starts a walk of `root`'s contents (the root itself is not an entry).
    pub(crate) fn new(root: &Path, source: SourceKind) -> Result<Walker, LayerError> {
        let meta = fs::symlink_metadata(root).map_err(|source| LayerError::Stat {
            path: root.to_path_buf(),
            source,
        })?;
        if !meta.is_dir() {
            return Err(LayerError::NotADirectory {
                path: root.to_path_buf(),
            });
        }
        let frame = open_dir(Vec::new(), root.to_path_buf())?;
        Ok(Walker {
            source,
            stack: vec![frame],
            links: HashMap::new(),
        })
    }

    fn node(&mut self, rel: Vec<u8>, abs: PathBuf) -> Result<Option<Node>, LayerError> {
        let meta = fs::symlink_metadata(&abs).map_err(|source| LayerError::Stat {
            path: abs.clone(),
            source,
        })?;
        let ft = meta.file_type();
        if ft.is_socket() {
            return Ok(None);
        }
        let names = list_xattrs(&abs)?;
        let overlay = self.source == SourceKind::OverlayUpper;
        if overlay {
            if let Some(attr) = names
                .iter()
                .find(|n| FORBIDDEN_XATTRS.contains(&n.as_slice()))
            {
                return Err(LayerError::OverlayFeature {
                    path: abs,
                    attribute: String::from_utf8_lossy(attr).into_owned(),
                });
            }
        }
        let has = |set: &[&[u8]]| names.iter().any(|n| set.contains(&n.as_slice()));
        let rdev = meta.rdev();
        let (major, minor) = (rustix::fs::major(rdev), rustix::fs::minor(rdev));
        let whiteout = overlay
            && ((ft.is_char_device() && rdev == 0) || (ft.is_file() && has(WHITEOUT_XATTRS)));
        let kind = if ft.is_dir() {
            let opaque = overlay && has(OPAQUE_XATTRS) && is_opaque(&abs, &names)?;
            NodeKind::Dir { opaque }
        } else if whiteout {
            NodeKind::Whiteout
        } else if let Some(target) = self.earlier_link(&rel, &meta) {
            NodeKind::Hardlink { target }
        } else if ft.is_file() {
            NodeKind::File { size: meta.len() }
        } else if ft.is_symlink() {
            let target = fs::read_link(&abs).map_err(|source| LayerError::ReadLink {
                path: abs.clone(),
                source,
            })?;
            NodeKind::Symlink {
                target: target.into_os_string().into_vec(),
            }
        } else if ft.is_char_device() {
            NodeKind::Char { major, minor }
        } else if ft.is_block_device() {
            NodeKind::Block { major, minor }
        } else {
            NodeKind::Fifo
        };
        let mut xattrs = Vec::new();
        for name in names.iter().filter(|n| KEPT_XATTRS.contains(&n.as_slice())) {
            if let Some(value) = get_xattr(&abs, name)? {
                xattrs.push((name.clone(), value));
            }
        }
        xattrs.sort();
        Ok(Some(Node {
            rel,
            abs,
            kind,
            mode: meta.mode() & 0o7777,
            uid: meta.uid(),
            gid: meta.gid(),
            mtime: meta.mtime(),
            xattrs,
        }))
    }

    /// For a non-directory with several links: the first path of its inode, or `None` (and it
    /// is remembered) when this is the first.
    fn earlier_link(&mut self, rel: &[u8], meta: &Metadata) -> Option<Vec<u8>> {
        if meta.nlink() < 2 {
            return None;
        }
        let key = (meta.dev(), meta.ino());
        if let Some(first) = self.links.get(&key) {
            return Some(first.clone());
        }
        self.links.insert(key, rel.to_vec());
        None
    }
}

impl Iterator for Walker {
    type Item = Result<Node, LayerError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            let frame = self.stack.last_mut()?;
            let Some(name) = frame.names.next() else {
                self.stack.pop();
                continue;
            };
            let mut rel = frame.rel.clone();
            if !rel.is_empty() {
                rel.push(b'/');
            }
            rel.extend_from_slice(name.as_bytes());
            let abs = frame.abs.join(&name);
            if name
                .as_bytes()
                .starts_with(crate::apply::whiteout::WHITEOUT_PREFIX)
            {
                return Some(Err(LayerError::ReservedName { path: abs }));
            }
            match self.node(rel, abs) {
                Err(e) => return Some(Err(e)),
                Ok(None) => continue,
                Ok(Some(node)) => {
                    if matches!(node.kind, NodeKind::Dir { .. }) {
                        match open_dir(node.rel.clone(), node.abs.clone()) {
                            Ok(frame) => self.stack.push(frame),
                            Err(e) => return Some(Err(e)),
                        }
                    }
                    return Some(Ok(node));
                }
            }
        }
    }
}

fn open_dir(rel: Vec<u8>, abs: PathBuf) -> Result<Frame, LayerError> {
    let read_err = |source| LayerError::ReadDir {
        path: abs.clone(),
        source,
    };
    let mut names = Vec::new();
    for entry in fs::read_dir(&abs).map_err(read_err)? {
        names.push(entry.map_err(read_err)?.file_name());
    }
    names.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
    Ok(Frame {
        rel,
        abs,
        names: names.into_iter(),
    })
}

fn is_opaque(path: &Path, names: &[Vec<u8>]) -> Result<bool, LayerError> {
    for name in names
        .iter()
        .filter(|n| OPAQUE_XATTRS.contains(&n.as_slice()))
    {
        if get_xattr(path, name)?.as_deref() == Some(b"y") {
            return Ok(true);
        }
    }
    Ok(false)
}

fn xattr_error(path: &Path, err: rustix::io::Errno) -> LayerError {
    LayerError::Xattr {
        path: path.to_path_buf(),
        source: io::Error::from(err),
    }
}

/// The xattr names of `path` (not following symlinks); none where the filesystem has none.
fn list_xattrs(path: &Path) -> Result<Vec<Vec<u8>>, LayerError> {
    let mut buf = vec![0u8; 256];
    let len = loop {
        match rustix::fs::llistxattr(path, &mut buf[..]) {
            Ok(len) => break len,
            Err(rustix::io::Errno::RANGE) => {
                let want = rustix::fs::llistxattr_query(path).map_err(|e| xattr_error(path, e))?;
                buf.resize(want.max(buf.len() * 2), 0);
            }
            Err(rustix::io::Errno::NOTSUP) => return Ok(Vec::new()),
            Err(e) => return Err(xattr_error(path, e)),
        }
    };
    Ok(buf[..len]
        .split(|&b| b == 0)
        .filter(|n| !n.is_empty())
        .map(<[u8]>::to_vec)
        .collect())
}

/// The value of one xattr, or `None` if it vanished since it was listed.
fn get_xattr(path: &Path, name: &[u8]) -> Result<Option<Vec<u8>>, LayerError> {
    let name = OsString::from_vec(name.to_vec());
    let mut buf = vec![0u8; 256];
    loop {
        match rustix::fs::lgetxattr(path, name.as_os_str(), &mut buf[..]) {
            Ok(len) => {
                buf.truncate(len);
                return Ok(Some(buf));
            }
            Err(rustix::io::Errno::RANGE) => {
                let want = rustix::fs::lgetxattr_query(path, name.as_os_str())
                    .map_err(|e| xattr_error(path, e))?;
                buf.resize(want.max(buf.len() * 2), 0);
            }
            Err(rustix::io::Errno::NODATA) => return Ok(None),
            Err(e) => return Err(xattr_error(path, e)),
        }
    }
}
