//! Content keys of a COPY: one part per selected entry, from its name, type, mode, owner (not
//! for the context, whose owners become 0:0), symlink target and bytes; never host mtimes or
//! inode numbers. Files are hashed on all cores, through the stat cache.

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;

use rbuild_solver::WorkerError;
use sha2::{Digest as _, Sha256};

use super::select::{kind, owner_of, Selected};
use crate::source_file::Origin;
use crate::statcache::StatCache;

/// `content <path>` parts for every entry of every selection.
pub fn content_parts(
    selected: &[Selected],
    is_context: bool,
    cache: &StatCache,
) -> Result<BTreeMap<String, String>, WorkerError> {
    let entries: Vec<(String, &super::select::Entry)> = selected
        .iter()
        .flat_map(|s| {
            s.entries.iter().map(move |e| {
                let path = s.path_of(e);
                (if path.is_empty() { ".".into() } else { path }, e)
            })
        })
        .collect();
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(entries.len().max(1));
    let chunk = entries.len().div_ceil(threads.max(1)).max(1);
    // Each thread owns its share of the paths (moved into its result, not copied).
    let mut shares: Vec<Vec<(String, &super::select::Entry)>> = Vec::new();
    let mut rest = entries.into_iter();
    loop {
        let share: Vec<_> = rest.by_ref().take(chunk).collect();
        if share.is_empty() {
            break;
        }
        shares.push(share);
    }
    let results: Vec<Result<Vec<(String, String)>, WorkerError>> = std::thread::scope(|scope| {
        shares
            .into_iter()
            .map(|share| scope.spawn(move || checksum_share(share, is_context, cache)))
            .collect::<Vec<_>>()
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(WorkerError::new("a checksum thread panicked")))
            })
            .collect()
    });
    let mut parts = BTreeMap::new();
    for result in results {
        parts.extend(result?);
    }
    Ok(parts)
}

/// The parts of one thread's share: per entry, the first 128 bits (hex) of
/// sha256("<kind>\0<mode octal>\0<uid>:<gid>\0<link target>\0<content digest hex (BLAKE3)>").
fn checksum_share(
    share: Vec<(String, &super::select::Entry)>,
    is_context: bool,
    cache: &StatCache,
) -> Result<Vec<(String, String)>, WorkerError> {
    use std::fmt::Write as _;
    let mut out = Vec::with_capacity(share.len());
    let mut text = String::with_capacity(256);
    for (path, entry) in share {
        let meta = &entry.meta;
        text.clear();
        let (uid, gid) = owner_of(meta, is_context);
        let _ = write!(
            text,
            "{}\0{:o}\0{uid}:{gid}\0",
            kind(meta),
            meta.mode() & 0o7777
        );
        if let Some(target) = &entry.link_target {
            text.push_str(&target.to_string_lossy());
        }
        text.push('\0');
        if meta.is_file() {
            let digest = cache
                .digest_bytes(&entry.host, meta, Origin::of(is_context))
                .map_err(|e| {
                    WorkerError::new(format!("cannot read {}: {e}", entry.host.display()))
                })?;
            push_hex(&mut text, &digest);
        }
        let hash = Sha256::digest(text.as_bytes());
        let mut value = String::with_capacity(32);
        push_hex(&mut value, &hash[..16]);
        out.push((path, value));
    }
    Ok(out)
}

fn push_hex(out: &mut String, bytes: &[u8]) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for b in bytes {
        out.push(DIGITS[usize::from(b >> 4)] as char);
        out.push(DIGITS[usize::from(b & 15)] as char);
    }
}
