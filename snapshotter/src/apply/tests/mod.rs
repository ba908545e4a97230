//! Tests on a real filesystem, as root: every archive is built in memory and applied into a
//! fresh root with a canary directory beside it that no archive may touch.
#![allow(clippy::unwrap_used)]

mod hostile;
mod normal;
mod whiteouts;

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use tar::{EntryType, Header};

use super::{apply_layer, ApplyError, ApplyMode, ApplyOptions, ApplyStats};

/// A root to apply into and a canary directory next to it.
pub(super) struct Sandbox {
    _dir: tempfile::TempDir,
    top: PathBuf,
    pub root: PathBuf,
    pub canary: PathBuf,
    before: Snapshot,
}

type Snapshot = BTreeMap<PathBuf, String>;

/// Paths on the host that an escaping archive would create.
const HOST_PROBES: &[&str] = &[
    "/escape",
    "/x",
    "/pwned",
    "/etc/x",
    "/etc/pwned",
    "/abs/path",
];

impl Sandbox {
    pub(super) fn new() -> Self {
        assert!(
            rustix::process::geteuid().is_root(),
            "the apply tests must run as root: they chown, mknod and set trusted.* xattrs"
        );
        let dir = tempfile::Builder::new().prefix("apply").tempdir().unwrap();
        let top = dir.path().to_owned();
        let root = top.join("root");
        let canary = top.join("canary");
        fs::create_dir(&root).unwrap();
        fs::create_dir_all(canary.join("sub")).unwrap();
        fs::write(canary.join("secret.txt"), "canary").unwrap();
        fs::write(canary.join("sub/file"), "deep canary").unwrap();
        for probe in HOST_PROBES {
            assert!(
                !Path::new(probe).exists(),
                "host path {probe} exists before the test"
            );
        }
        let before = snapshot(&top, &canary);
        Sandbox {
            _dir: dir,
            top,
            root,
            canary,
            before,
        }
    }

    pub(super) fn apply(&self, layer: &[u8], mode: ApplyMode) -> Result<ApplyStats, ApplyError> {
        let options = ApplyOptions::new(mode);
        apply_layer(layer, &self.root, &options)
    }

    /// Nothing outside the root changed: the canary, the sandbox's top level, the host probes.
    pub(super) fn assert_contained(&self) {
        assert_eq!(
            snapshot(&self.top, &self.canary),
            self.before,
            "canary changed"
        );
        for probe in HOST_PROBES {
            assert!(!Path::new(probe).exists(), "escaped to host path {probe}");
        }
    }

    pub(super) fn path(&self, relative: &str) -> PathBuf {
        self.root.join(relative)
    }

    /// The canary's absolute path without its leading `/`, as it would appear inside the root.
    pub(super) fn canary_in_root(&self) -> PathBuf {
        self.root.join(self.canary.strip_prefix("/").unwrap())
    }
}

/// The top level of the sandbox plus every canary entry with its metadata and content.
fn snapshot(top: &Path, canary: &Path) -> Snapshot {
    let mut map = BTreeMap::new();
    let mut names: Vec<_> = fs::read_dir(top)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    names.sort();
    map.insert(PathBuf::from("<top>"), format!("{names:?}"));
    let mut pending = vec![canary.to_owned()];
    while let Some(path) = pending.pop() {
        let meta = fs::symlink_metadata(&path).unwrap();
        let mut line = format!(
            "{:o} {}:{} n{} s{} m{}",
            meta.mode(),
            meta.uid(),
            meta.gid(),
            meta.nlink(),
            meta.size(),
            meta.mtime()
        );
        if meta.is_dir() {
            for entry in fs::read_dir(&path).unwrap() {
                pending.push(entry.unwrap().path());
            }
        } else if meta.is_file() {
            line.push_str(&fs::read_to_string(&path).unwrap());
        }
        map.insert(path, line);
    }
    map
}

/// An archive built in memory.
pub(super) struct Layer {
    builder: tar::Builder<Vec<u8>>,
}

pub(super) const MTIME: u64 = 1_600_000_000;

impl Layer {
    pub(super) fn new() -> Self {
        Layer {
            builder: tar::Builder::new(Vec::new()),
        }
    }

    fn header(kind: EntryType, mode: u32) -> Header {
        let mut header = Header::new_gnu();
        header.set_entry_type(kind);
        header.set_mode(mode);
        header.set_mtime(MTIME);
        header.set_uid(0);
        header.set_gid(0);
        header.set_size(0);
        header
    }

    pub(super) fn dir(mut self, path: &str, mode: u32) -> Self {
        let mut header = Self::header(EntryType::Directory, mode);
        self.builder
            .append_data(&mut header, path, &[][..])
            .unwrap();
        self
    }

    pub(super) fn file(mut self, path: &str, content: &str, mode: u32) -> Self {
        let mut header = Self::header(EntryType::Regular, mode);
        header.set_size(content.len() as u64);
        self.builder
            .append_data(&mut header, path, content.as_bytes())
            .unwrap();
        self
    }

    /// Any entry, with its header adjusted by `edit` (owner, times, devices).
    pub(super) fn entry(
        mut self,
        kind: EntryType,
        path: &str,
        content: &[u8],
        edit: impl FnOnce(&mut Header),
    ) -> Self {
        let mut header = Self::header(kind, 0o644);
        header.set_size(content.len() as u64);
        edit(&mut header);
        self.builder
            .append_data(&mut header, path, content)
            .unwrap();
        self
    }

    pub(super) fn symlink(mut self, path: &str, target: &str) -> Self {
        let mut header = Self::header(EntryType::Symlink, 0o777);
        self.builder.append_link(&mut header, path, target).unwrap();
        self
    }

    pub(super) fn hardlink(mut self, path: &str, target: &str) -> Self {
        let mut header = Self::header(EntryType::Link, 0o644);
        self.builder.append_link(&mut header, path, target).unwrap();
        self
    }

    /// PAX records for the next entry.
    pub(super) fn pax(mut self, records: &[(&str, &[u8])]) -> Self {
        self.builder
            .append_pax_extensions(records.iter().copied())
            .unwrap();
        self
    }

    /// An entry whose name and link name are written straight into the header bytes (the `tar`
    /// crate refuses `..` and other hostile names).
    pub(super) fn raw(mut self, kind: EntryType, name: &str, link: &str, content: &[u8]) -> Self {
        let mode = if kind == EntryType::Directory {
            0o755
        } else {
            0o644
        };
        let mut header = Self::header(kind, mode);
        header.set_size(content.len() as u64);
        let old = header.as_old_mut();
        assert!(name.len() <= old.name.len() && link.len() <= old.linkname.len());
        old.name[..name.len()].copy_from_slice(name.as_bytes());
        old.linkname[..link.len()].copy_from_slice(link.as_bytes());
        header.set_cksum();
        self.builder.append(&header, content).unwrap();
        self
    }

    pub(super) fn finish(self) -> Vec<u8> {
        self.builder.into_inner().unwrap()
    }
}

pub(super) fn file_type(path: &Path) -> &'static str {
    let Ok(meta) = fs::symlink_metadata(path) else {
        return "missing";
    };
    let kind = meta.file_type();
    if kind.is_symlink() {
        "symlink"
    } else if kind.is_dir() {
        "dir"
    } else if kind.is_file() {
        "file"
    } else if kind.is_char_device() {
        "char"
    } else if kind.is_block_device() {
        "block"
    } else if kind.is_fifo() {
        "fifo"
    } else {
        "other"
    }
}
