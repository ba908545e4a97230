//! Bytes directory trees take on disk (allocated blocks), when a file may be a hard link into
//! another tree: a COPY links equal files of committed snapshots (`copy::reuse`), so summing
//! each snapshot's blocks would count such a file once per snapshot.
//!
//! A walk never crosses into another filesystem and never follows a symlink. An inode with one
//! link is counted where it is met; one with more links is counted once per [`InodeLedger`], and
//! freed by a removal only when the last of its links goes.

use std::collections::{HashMap, HashSet};
use std::fs::Metadata;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// (device, inode).
type Inode = (u64, u64);

fn blocks(meta: &Metadata) -> u64 {
    meta.blocks() * 512
}

/// Whether the inode may also be reachable from another path.
fn shared(meta: &Metadata) -> bool {
    !meta.is_dir() && meta.nlink() > 1
}

/// Calls `visit` for `path` and everything below it on the same filesystem.
fn walk(path: &Path, visit: &mut dyn FnMut(&Metadata)) {
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return;
    };
    walk_from(path, &meta, meta.dev(), visit);
}

fn walk_from(path: &Path, meta: &Metadata, dev: u64, visit: &mut dyn FnMut(&Metadata)) {
    visit(meta);
    if !meta.is_dir() {
        return;
    }
    let Ok(entries) = std::fs::read_dir(path) else {
        return;
    };
    for entry in entries.flatten() {
        // An fstatat on the open directory; a symlink is stat'ed itself.
        if let Ok(child) = entry.metadata() {
            if child.dev() == dev {
                walk_from(&entry.path(), &child, dev, visit);
            }
        }
    }
}

/// Every block of the tree at `path`, a shared inode as often as it is met there once.
pub fn disk_usage(path: &Path) -> u64 {
    let mut seen = HashSet::new();
    let mut total = 0;
    walk(path, &mut |meta| {
        if !shared(meta) || seen.insert((meta.dev(), meta.ino())) {
            total += blocks(meta);
        }
    });
    total
}

/// The inodes already counted, across trees.
#[derive(Debug, Default)]
pub struct InodeLedger {
    counted: HashSet<Inode>,
}

impl InodeLedger {
    /// Counts the tree at `path`; returns the bytes it added (what was not counted yet).
    pub fn add_tree(&mut self, path: &Path) -> u64 {
        let mut bytes = 0;
        walk(path, &mut |meta| {
            if !shared(meta) || self.counted.insert((meta.dev(), meta.ino())) {
                bytes += blocks(meta);
            }
        });
        bytes
    }
}

/// The bytes removing the tree at `path` frees: everything but the files other paths (outside
/// it) still link.
pub fn freed_by_removing(path: &Path) -> u64 {
    let mut links_inside: HashMap<Inode, u64> = HashMap::new();
    let mut bytes = 0;
    walk(path, &mut |meta| {
        if !shared(meta) {
            bytes += blocks(meta);
            return;
        }
        let met = links_inside.entry((meta.dev(), meta.ino())).or_insert(0);
        *met += 1;
        if *met == meta.nlink() {
            bytes += blocks(meta);
        }
    });
    bytes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_linked_from_two_trees_is_counted_once_and_freed_with_its_last_link() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (a, b) = (dir.path().join("a"), dir.path().join("b"));
        std::fs::create_dir_all(&a).expect("mkdir");
        std::fs::create_dir_all(&b).expect("mkdir");
        std::fs::write(a.join("big"), vec![7u8; 1 << 20]).expect("write");
        std::fs::hard_link(a.join("big"), b.join("big")).expect("link");
        // Two links inside one tree are one file too.
        std::fs::hard_link(a.join("big"), a.join("big2")).expect("link");
        let big = blocks(&std::fs::metadata(a.join("big")).expect("stat"));
        let dir_a = blocks(&std::fs::metadata(&a).expect("stat"));
        let dir_b = blocks(&std::fs::metadata(&b).expect("stat"));
        assert!(big >= 1 << 20);

        assert_eq!(disk_usage(&a), dir_a + big);
        let mut ledger = InodeLedger::default();
        assert_eq!(ledger.add_tree(&a), dir_a + big);
        assert_eq!(ledger.add_tree(&b), dir_b, "already counted");

        assert_eq!(freed_by_removing(&a), dir_a, "b still links it");
        std::fs::remove_dir_all(&a).expect("rm");
        assert_eq!(freed_by_removing(&b), dir_b + big, "the last link");
    }
}
