//! Content keys of a COPY: one part per selected entry, from its name, type, mode, owner (not
//! for the context, whose owners become 0:0), symlink target and bytes; never host mtimes or
//! inode numbers. Files are hashed on all cores, through the stat cache.

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;

use rbuild_solver::WorkerError;
use sha2::{Digest as _, Sha256};

use super::select::{kind, owner_of, Selected};
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
                let path = match (s.rel.is_empty(), e.rel.is_empty()) {
                    (true, true) => ".".to_string(),
                    (true, false) => e.rel.clone(),
                    (false, true) => s.rel.clone(),
                    (false, false) => format!("{}/{}", s.rel, e.rel),
                };
                (path, e)
            })
        })
        .collect();
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(entries.len().max(1));
    let chunk = entries.len().div_ceil(threads.max(1)).max(1);
    let results: Vec<Result<Vec<(String, String)>, WorkerError>> = std::thread::scope(|scope| {
        entries
            .chunks(chunk)
            .map(|part| {
                scope.spawn(move || {
                    part.iter()
                        .map(|(path, entry)| {
                            let meta = &entry.meta;
                            let content = if meta.is_file() {
                                cache.digest(&entry.host, meta).map_err(|e| {
                                    WorkerError::new(format!(
                                        "cannot read {}: {e}",
                                        entry.host.display()
                                    ))
                                })?
                            } else {
                                String::new()
                            };
                            let (uid, gid) = owner_of(meta, is_context);
                            let target = entry
                                .link_target
                                .as_ref()
                                .map(|t| t.to_string_lossy().into_owned())
                                .unwrap_or_default();
                            let mut hasher = Sha256::new();
                            hasher.update(format!(
                                "{}\0{:o}\0{uid}:{gid}\0{target}\0{content}",
                                kind(meta),
                                meta.mode() & 0o7777
                            ));
                            Ok((
                                path.clone(),
                                rbuild_graph::hex(&hasher.finalize())[..32].to_string(),
                            ))
                        })
                        .collect()
                })
            })
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
