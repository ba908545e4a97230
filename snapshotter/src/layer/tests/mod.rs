//! Tests on real trees: built in temporary directories, turned into layers, read back with the
//! `tar` crate (and, in `interop`, with the system's tar, gzip and zstd).
//!
//! They need root (mknod of whiteouts, `trusted.*` xattrs, chown) and fail with a clear message
//! without it.

#![allow(clippy::unwrap_used)]

mod determinism;
mod entries;
mod interop;

use std::fs;
use std::io::Read;
use std::path::Path;

use rustix::fs::{AtFlags, FileType, Mode, Timespec, Timestamps, XattrFlags, CWD};

use super::*;

pub(super) use rbuild_test::require_root;

pub(super) fn tempdir() -> tempfile::TempDir {
    require_root();
    tempfile::tempdir().unwrap()
}

pub(super) fn write(path: &Path, data: &[u8]) {
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent).unwrap();
    }
    fs::write(path, data).unwrap();
}

pub(super) fn mknod(path: &Path, file_type: FileType, mode: u32, dev: u64) {
    rustix::fs::mknodat(CWD, path, file_type, Mode::from_raw_mode(mode), dev).unwrap();
}

pub(super) fn whiteout(path: &Path) {
    mknod(path, FileType::CharacterDevice, 0, 0);
}

pub(super) fn set_xattr(path: &Path, name: &str, value: &[u8]) {
    rustix::fs::lsetxattr(path, name, value, XattrFlags::empty()).unwrap();
}

pub(super) fn set_mtime(path: &Path, secs: i64) {
    let t = Timespec {
        tv_sec: secs,
        tv_nsec: 0,
    };
    let times = Timestamps {
        last_access: t,
        last_modification: t,
    };
    rustix::fs::utimensat(CWD, path, &times, AtFlags::SYMLINK_NOFOLLOW).unwrap();
}

pub(super) fn options(compression: Compression, threads: usize) -> LayerOptions {
    LayerOptions {
        compression,
        source_date_epoch: None,
        threads,
    }
}

/// Writes the layer to memory (the tests' trees are small).
pub(super) fn layer(
    dir: &Path,
    kind: SourceKind,
    opts: &LayerOptions,
) -> (LayerDescriptor, Vec<u8>) {
    let mut blob = Vec::new();
    let desc = write_layer(dir, kind, &mut blob, opts).unwrap();
    assert_eq!(desc.size, blob.len() as u64);
    assert_eq!(desc.digest, rbuild_digest::Digest::of(&blob));
    assert_eq!(desc.media_type, opts.compression.media_type());
    (desc, blob)
}

pub(super) fn decompress(blob: &[u8], compression: Compression) -> Vec<u8> {
    let mut tar = Vec::new();
    match compression {
        Compression::Uncompressed => tar.extend_from_slice(blob),
        Compression::Gzip { .. } => {
            flate2::read::GzDecoder::new(blob)
                .read_to_end(&mut tar)
                .unwrap();
        }
        Compression::Zstd { .. } => tar = zstd::decode_all(blob).unwrap(),
    }
    tar
}

/// One entry as read back by the `tar` crate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Info {
    pub path: String,
    pub kind: tar::EntryType,
    pub mode: u32,
    pub uid: u64,
    pub gid: u64,
    pub mtime: u64,
    pub size: u64,
    pub link: Option<String>,
    pub dev: Option<(u32, u32)>,
    pub xattrs: Vec<(String, Vec<u8>)>,
    pub data: Vec<u8>,
}

pub(super) fn entries(tar_bytes: &[u8]) -> Vec<Info> {
    let mut archive = tar::Archive::new(tar_bytes);
    let mut out = Vec::new();
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        let mut xattrs = Vec::new();
        if let Some(pax) = entry.pax_extensions().unwrap() {
            for ext in pax {
                let ext = ext.unwrap();
                if let Some(name) = ext.key().unwrap().strip_prefix("SCHILY.xattr.") {
                    xattrs.push((name.to_string(), ext.value_bytes().to_vec()));
                }
            }
        }
        let h = entry.header().clone();
        let path = String::from_utf8(entry.path_bytes().into_owned()).unwrap();
        let link = entry
            .link_name_bytes()
            .map(|l| String::from_utf8(l.into_owned()).unwrap());
        let mut data = Vec::new();
        entry.read_to_end(&mut data).unwrap();
        let kind = h.entry_type();
        let dev = (kind.is_character_special() || kind.is_block_special()).then(|| {
            (
                h.device_major().unwrap().unwrap(),
                h.device_minor().unwrap().unwrap(),
            )
        });
        assert!(h.username_bytes().is_none_or(<[u8]>::is_empty));
        assert!(h.groupname_bytes().is_none_or(<[u8]>::is_empty));
        out.push(Info {
            path,
            kind,
            mode: h.mode().unwrap(),
            uid: h.uid().unwrap(),
            gid: h.gid().unwrap(),
            mtime: h.mtime().unwrap(),
            size: entry.size(),
            link,
            dev,
            xattrs,
            data,
        });
    }
    out
}

/// Layer of `dir` (uncompressed), read back.
pub(super) fn read_back(dir: &Path, kind: SourceKind) -> Vec<Info> {
    let (_, blob) = layer(dir, kind, &options(Compression::Uncompressed, 1));
    entries(&blob)
}

pub(super) fn find<'a>(infos: &'a [Info], path: &str) -> &'a Info {
    infos
        .iter()
        .find(|i| i.path == path)
        .unwrap_or_else(|| panic!("no entry `{path}` in {:?}", paths(infos)))
}

pub(super) fn paths(infos: &[Info]) -> Vec<&str> {
    infos.iter().map(|i| i.path.as_str()).collect()
}

/// A tree of `files` files of mixed compressible data, `size` bytes each on average.
pub(super) fn mixed_tree(root: &Path, files: usize, size: usize) {
    let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
    for i in 0..files {
        let mut data = Vec::with_capacity(size * 2);
        let len = size / 2 + (i * 7919) % size;
        while data.len() < len {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            if seed % 3 == 0 {
                data.extend_from_slice(&seed.to_le_bytes());
            } else {
                data.extend_from_slice(
                    format!("line {} of file {i}: {}\n", seed % 1000, seed % 7).as_bytes(),
                );
            }
        }
        data.truncate(len);
        write(&root.join(format!("d{}/f{i:05}.txt", i % 13)), &data);
    }
}
