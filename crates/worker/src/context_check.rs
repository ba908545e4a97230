//! After a step that saw a build context live (`RUN --mount=type=bind` of it): is the context
//! still what the step's key hashed? A file the user edits while the step runs would change the
//! step's output without changing its key, so a change fails the step, which then stores
//! nothing.
//!
//! What counts is what the key covers: an entry's kind, mode, owner, link target and bytes, and
//! which names a directory holds among those `.dockerignore` admits. So a file is compared as a
//! COPY source is (`source_file`: same inode, size and mtime; a moved ctime alone is settled by
//! its bytes), and a directory whose own stat moved is listed again with the same rules: an
//! ignored file appearing in it (an editor's swap file) changes nothing.

use std::collections::HashMap;
use std::fs::Metadata;
use std::os::unix::fs::MetadataExt;

use crate::copy::select::{Entry, Selected, SourceRoot};
use crate::source_file::{compare, verify_bytes, Origin, Verdict};
use crate::statcache::StatCache;

/// The path (below the context) of the first entry of `selected`, a selection of `root` as a
/// step's key hashed it, that is not what the key describes any more.
pub fn first_changed(
    root: &SourceRoot<'_>,
    selected: &[Selected],
    digests: &StatCache,
) -> Option<String> {
    for selection in selected {
        // The admitted names of each directory of the selection, in the selection's order.
        let mut names: HashMap<&str, Vec<&str>> = HashMap::new();
        for entry in selection.entries.iter().skip(1) {
            let (parent, name) = entry.rel.rsplit_once('/').unwrap_or(("", &entry.rel));
            names.entry(parent).or_default().push(name);
        }
        for entry in &selection.entries {
            let path = selection.path_of(entry);
            let still = std::fs::symlink_metadata(&entry.host).is_ok_and(|now| {
                if entry.meta.is_dir() {
                    same_dir(root, entry, &now, &path, names.get(entry.rel.as_str()))
                } else {
                    same_non_dir(entry, &now, digests)
                }
            });
            if !still {
                return Some(if path.is_empty() { ".".into() } else { path });
            }
        }
    }
    None
}

fn same_owner_and_mode(now: &Metadata, then: &Metadata) -> bool {
    (now.dev(), now.ino(), now.mode(), now.uid(), now.gid())
        == (then.dev(), then.ino(), then.mode(), then.uid(), then.gid())
}

fn same_dir(
    root: &SourceRoot<'_>,
    entry: &Entry,
    now: &Metadata,
    path: &str,
    selected_names: Option<&Vec<&str>>,
) -> bool {
    if !now.is_dir() || !same_owner_and_mode(now, &entry.meta) {
        return false;
    }
    let unmoved = (now.mtime(), now.mtime_nsec(), now.ctime(), now.ctime_nsec())
        == (
            entry.meta.mtime(),
            entry.meta.mtime_nsec(),
            entry.meta.ctime(),
            entry.meta.ctime_nsec(),
        );
    if unmoved {
        return true;
    }
    let empty = Vec::new();
    let selected_names = selected_names.unwrap_or(&empty);
    root.admitted_names(&entry.host, path).is_ok_and(|listed| {
        listed
            .iter()
            .map(String::as_str)
            .eq(selected_names.iter().copied())
    })
}

fn same_non_dir(entry: &Entry, now: &Metadata, digests: &StatCache) -> bool {
    if !same_owner_and_mode(now, &entry.meta) {
        return false;
    }
    match compare(now, &entry.meta, Origin::Context) {
        None => false,
        Some(Verdict::Same) => true,
        // The ctime moved: the link target or the bytes tell.
        Some(Verdict::BytesUncertain) if now.file_type().is_symlink() => {
            std::fs::read_link(&entry.host).ok() == entry.link_target
        }
        Some(Verdict::BytesUncertain) => {
            now.is_file()
                && crate::source_file::open(&entry.host, &entry.meta, Origin::Context)
                    .and_then(|file| verify_bytes(&file, digests.known_digest(&entry.meta)))
                    .is_ok()
        }
    }
}
