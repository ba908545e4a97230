//! `rbuild du` and `rbuild prune`.

use std::path::Path;
use std::time::Duration;

use anyhow::{anyhow, bail, Result};
use rbuild_worker::gc;

use crate::args::PruneArgs;
use crate::images::human_size as human;

pub fn du(root: &Path) -> Result<()> {
    let usage = gc::usage(root).map_err(|e| anyhow!(e))?;
    println!("{:<28}{:>10}{:>12}", "WHAT", "COUNT", "SIZE");
    println!(
        "{:<28}{:>10}{:>12}",
        "build cache entries", usage.cache_entries, ""
    );
    println!(
        "{:<28}{:>10}{:>12}",
        "snapshots",
        usage.snapshots,
        human(usage.snapshot_bytes)
    );
    println!(
        "{:<28}{:>10}{:>12}",
        "blobs (layers, configs)",
        usage.blobs,
        human(usage.blob_bytes)
    );
    println!(
        "{:<28}{:>10}{:>12}",
        "cache mounts",
        "",
        human(usage.cache_mount_bytes)
    );
    println!("{:<28}{:>10}{:>12}", "images (names)", usage.images, "");
    println!(
        "{:<28}{:>10}{:>12}",
        "total",
        "",
        human(usage.snapshot_bytes + usage.blob_bytes + usage.cache_mount_bytes)
    );
    Ok(())
}

pub fn prune(root: &Path, args: &PruneArgs) -> Result<()> {
    let mut options = gc::PruneOptions {
        all: args.all,
        ..gc::PruneOptions::default()
    };
    for filter in &args.filter {
        let Some(duration) = filter.strip_prefix("until=") else {
            bail!("Invalid `--filter {filter}`: only `until=DURATION` is supported");
        };
        let ns = rbuild_frontend::instructions::parse_go_duration(duration)
            .map_err(|e| anyhow!("Invalid `--filter {filter}`: {e}"))?;
        options.unused_for = Some(Duration::from_nanos(ns.max(0) as u64));
    }
    if let Some(size) = &args.keep_storage {
        options.keep_storage = Some(crate::build::parse_size(size)?);
    }
    let lock = match gc::prune_lock(root, false)? {
        Some(lock) => lock,
        None => {
            eprintln!(
                "waiting for the builds running on {} to finish...",
                root.display()
            );
            gc::prune_lock(root, true)?
                .ok_or_else(|| anyhow!("could not lock {}", root.display()))?
        }
    };
    let report = gc::prune(root, &options, &lock).map_err(|e| anyhow!(e))?;
    println!(
        "Deleted {} cache entries, {} snapshots, {} blobs, {} stale views; reclaimed {}",
        report.entries,
        report.snapshots,
        report.blobs,
        report.stale,
        human(report.bytes)
    );
    for why in &report.kept_for_images {
        eprintln!("warning: an image's layer kept as a recipe: {why}");
    }
    Ok(())
}
