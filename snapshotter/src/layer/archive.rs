//! The tar stream: walk entries → headers and file contents → a `Write`.
//!
//! Whiteouts become empty regular files named `.wh.<name>` carrying the whiteout inode's mode,
//! owner and mtime; an opaque directory is followed at once (before its children, where every
//! applier expects it) by an empty `<dir>/.wh..wh..opq` carrying the directory's mode, owner
//! and mtime. File contents are copied through one reused buffer.

use std::fs::File;
use std::io::{Read, Write};
use std::path::Path;

use super::header::{self, HeaderSpec, TypeFlag};
use super::walk::{Node, NodeKind, Walker};
use super::LayerError;
use crate::apply::whiteout::{OPAQUE_MARKER, WHITEOUT_PREFIX};

/// Buffer for file contents.
const COPY_BUF: usize = 256 * 1024;

/// Writes the whole archive, end-of-archive blocks included.
pub(crate) fn write_tar(
    walker: Walker,
    sink: &mut dyn Write,
    source_date_epoch: Option<i64>,
) -> Result<(), LayerError> {
    let mut head = Vec::with_capacity(header::BLOCK * 4);
    let mut buf = vec![0u8; COPY_BUF];
    for node in walker {
        let node = node?;
        let mtime = match source_date_epoch {
            Some(epoch) => node.mtime.min(epoch),
            None => node.mtime,
        };
        head.clear();
        write_node(&node, mtime, &mut head);
        sink.write_all(&head).map_err(LayerError::write)?;
        if let NodeKind::File { size } = node.kind {
            copy_file(&node.abs, size, sink, &mut buf)?;
        }
    }
    sink.write_all(&[0u8; 2 * header::BLOCK])
        .map_err(LayerError::write)
}

/// Encodes the header(s) of one node into `out`.
fn write_node(node: &Node, mtime: i64, out: &mut Vec<u8>) {
    let mut spec = HeaderSpec {
        path: &node.rel,
        typeflag: TypeFlag::Regular,
        mode: node.mode,
        uid: u64::from(node.uid),
        gid: u64::from(node.gid),
        size: 0,
        mtime,
        link: b"",
        dev_major: 0,
        dev_minor: 0,
        xattrs: &node.xattrs,
    };
    let dir_path;
    let whiteout_path;
    match &node.kind {
        NodeKind::File { size } => spec.size = *size,
        NodeKind::Dir { opaque } => {
            dir_path = [node.rel.as_slice(), b"/"].concat();
            spec.path = &dir_path;
            spec.typeflag = TypeFlag::Directory;
            header::encode(&spec, out);
            if *opaque {
                let opq = [node.rel.as_slice(), b"/", OPAQUE_MARKER].concat();
                let marker = HeaderSpec {
                    path: &opq,
                    xattrs: &[],
                    ..marker_spec(&spec)
                };
                header::encode(&marker, out);
            }
            return;
        }
        NodeKind::Symlink { target } => {
            spec.typeflag = TypeFlag::Symlink;
            spec.link = target;
        }
        NodeKind::Hardlink { target } => {
            spec.typeflag = TypeFlag::Hardlink;
            spec.link = target;
        }
        NodeKind::Char { major, minor } => {
            spec.typeflag = TypeFlag::Char;
            (spec.dev_major, spec.dev_minor) = (*major, *minor);
        }
        NodeKind::Block { major, minor } => {
            spec.typeflag = TypeFlag::Block;
            (spec.dev_major, spec.dev_minor) = (*major, *minor);
        }
        NodeKind::Fifo => spec.typeflag = TypeFlag::Fifo,
        NodeKind::Whiteout => {
            whiteout_path = whiteout_name(&node.rel);
            let marker = HeaderSpec {
                path: &whiteout_path,
                xattrs: &[],
                ..marker_spec(&spec)
            };
            header::encode(&marker, out);
            return;
        }
    }
    header::encode(&spec, out);
}

/// An empty regular file with the owner, mode and mtime of `spec`.
fn marker_spec<'a>(spec: &HeaderSpec<'a>) -> HeaderSpec<'a> {
    HeaderSpec {
        path: spec.path,
        typeflag: TypeFlag::Regular,
        mode: spec.mode,
        uid: spec.uid,
        gid: spec.gid,
        size: 0,
        mtime: spec.mtime,
        link: b"",
        dev_major: 0,
        dev_minor: 0,
        xattrs: &[],
    }
}

/// `a/b/name` → `a/b/.wh.name`.
fn whiteout_name(rel: &[u8]) -> Vec<u8> {
    let split = rel.iter().rposition(|&b| b == b'/').map_or(0, |i| i + 1);
    [&rel[..split], WHITEOUT_PREFIX, &rel[split..]].concat()
}

/// Copies exactly `size` bytes of the file and its padding; a file that is shorter or longer
/// than its `stat` said is an error (the header is already written).
fn copy_file(
    path: &Path,
    size: u64,
    sink: &mut dyn Write,
    buf: &mut [u8],
) -> Result<(), LayerError> {
    let read_err = |source| LayerError::ReadFile {
        path: path.to_path_buf(),
        source,
    };
    let mut file = open_nofollow(path).map_err(read_err)?;
    let mut left = size;
    while left > 0 {
        let want = usize::try_from(left).unwrap_or(usize::MAX).min(buf.len());
        let n = match file.read(&mut buf[..want]) {
            Ok(0) => {
                return Err(LayerError::FileChanged {
                    path: path.to_path_buf(),
                    expected: size,
                })
            }
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(read_err(e)),
        };
        sink.write_all(&buf[..n]).map_err(LayerError::write)?;
        left -= n as u64;
    }
    let mut probe = [0u8; 1];
    if file.read(&mut probe).map_err(read_err)? != 0 {
        return Err(LayerError::FileChanged {
            path: path.to_path_buf(),
            expected: size,
        });
    }
    let pad = header::padding(size);
    sink.write_all(&[0u8; header::BLOCK][..pad])
        .map_err(LayerError::write)
}

/// Opens for reading without following a symlink swapped in since the walk saw a file.
fn open_nofollow(path: &Path) -> std::io::Result<File> {
    use rustix::fs::{Mode, OFlags};
    let fd = rustix::fs::open(
        path,
        OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    Ok(File::from(fd))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whiteout_names() {
        assert_eq!(whiteout_name(b"a"), b".wh.a");
        assert_eq!(whiteout_name(b"x/y/z"), b"x/y/.wh.z");
    }
}
