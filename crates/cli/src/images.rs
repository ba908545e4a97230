//! `rbuild load`, `save`, `images`, `rmi`: the local image store from the command line.

use std::fs::File;
use std::io::{BufReader, Read, Write};
use std::path::Path;

use anyhow::{Context, Result};
use rbuild_digest::Digest;
use rbuild_frontend::stages::Platform;
use rbuild_oci::import::{import_tar, parse_manifest};
use rbuild_oci::model::BlobRef;
use rbuild_oci::{write_image_archive, ArchiveImage};
use rbuild_snapshotter::content::ContentStore;
use rbuild_snapshotter::images::{ImageRecord, ImageStore};
use rbuild_worker::image::lookup;

fn stores(root: &Path) -> Result<(ContentStore, ImageStore)> {
    let content = ContentStore::open(root)
        .with_context(|| format!("Failed to open the state root `{}`", root.display()))?;
    let images = ImageStore::open(root)
        .with_context(|| format!("Failed to open the state root `{}`", root.display()))?;
    Ok((content, images))
}

pub fn load(root: &Path, input: &Path) -> Result<()> {
    let (content, images) = stores(root)?;
    let reader: Box<dyn Read> = if input == Path::new("-") {
        Box::new(std::io::stdin().lock())
    } else {
        Box::new(BufReader::new(File::open(input).with_context(|| {
            format!("Failed to open `{}`", input.display())
        })?))
    };
    let host = Platform::host();
    let imported = import_tar(
        reader,
        &content,
        (host.os.as_str(), host.architecture.as_str()),
    )
    .with_context(|| format!("Failed to load `{}`", input.display()))?;
    let mut out = std::io::stdout().lock();
    for image in imported {
        if image.names.is_empty() {
            writeln!(out, "Loaded image ID: {}", image.config.digest)?;
            continue;
        }
        for name in &image.names {
            let record = ImageRecord::new(
                crate::registry::canonical(name)?,
                &image.manifest,
                &image.config,
                &image.layers,
            );
            images
                .tag(&record)
                .with_context(|| format!("Failed to name the image `{name}`"))?;
            writeln!(out, "Loaded image: {name}")?;
        }
    }
    Ok(())
}

/// The short form Docker shows (`busybox:latest`); a name that does not parse as is.
fn familiar(name: &str) -> String {
    rbuild_registry::Reference::parse(name).map_or_else(|_| name.to_string(), |r| r.familiar())
}

fn read_blob(content: &ContentStore, digest: &Digest) -> Result<Vec<u8>> {
    let mut bytes = Vec::new();
    content
        .open_blob(digest)?
        .read_to_end(&mut bytes)
        .with_context(|| format!("Failed to read blob {digest}"))?;
    Ok(bytes)
}

pub fn save(root: &Path, name: &str, output: &Path) -> Result<()> {
    let (content, images) = stores(root)?;
    let record = lookup(&images, name)?;
    let (config, layers) = parse_manifest(&read_blob(&content, &record.manifest)?)
        .with_context(|| format!("The manifest of `{}` is unreadable", record.name))?;
    let archive = ArchiveImage {
        manifest: BlobRef {
            digest: record.manifest.clone(),
            size: record.manifest_size,
            media_type: record.manifest_media_type.clone(),
        },
        config,
        layers,
        names: vec![familiar(&record.name)],
        repo_tags: vec![familiar(&record.name)],
        mtime: 0,
    };
    if output == Path::new("-") {
        let mut out = std::io::BufWriter::new(std::io::stdout().lock());
        write_image_archive(&mut out, &archive, &content)
            .context("Failed to write the archive to stdout")?;
        out.flush()
            .context("Failed to write the archive to stdout")?;
        return Ok(());
    }
    // Written beside the destination and renamed when complete: a failed save never leaves a
    // truncated archive that looks whole.
    let dir = match output.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let tmp = tempfile::NamedTempFile::new_in(dir)
        .with_context(|| format!("Failed to create a temporary file in `{}`", dir.display()))?;
    let mut out = std::io::BufWriter::new(tmp);
    write_image_archive(&mut out, &archive, &content)
        .with_context(|| format!("Failed to write `{}`", output.display()))?;
    let tmp = out
        .into_inner()
        .map_err(|e| e.into_error())
        .with_context(|| format!("Failed to write `{}`", output.display()))?;
    tmp.persist(output)
        .map_err(|e| e.error)
        .with_context(|| format!("Failed to write `{}`", output.display()))?;
    Ok(())
}

/// `1.5MB`, as `docker images` prints sizes.
pub fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["B", "kB", "MB", "GB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1000.0 && unit < UNITS.len() - 1 {
        value /= 1000.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes}B")
    } else {
        format!("{value:.1}{}", UNITS[unit])
    }
}

pub fn list(root: &Path) -> Result<()> {
    let images = ImageStore::open(root)
        .with_context(|| format!("Failed to open the state root `{}`", root.display()))?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "{:<48} {:<14} SIZE", "NAME", "IMAGE ID")?;
    for record in images.list()? {
        let id: String = record.config.hex().chars().take(12).collect();
        let size = human_size(
            record
                .layer_sizes
                .iter()
                .fold(0u64, |a, b| a.saturating_add(*b)),
        );
        writeln!(out, "{:<48} {id:<14} {size}", familiar(&record.name))?;
    }
    Ok(())
}

pub fn remove(root: &Path, names: &[String]) -> Result<()> {
    let images = ImageStore::open(root)
        .with_context(|| format!("Failed to open the state root `{}`", root.display()))?;
    let mut out = std::io::stdout().lock();
    for name in names {
        let record = images.remove(&lookup(&images, name)?.name)?;
        writeln!(out, "Untagged: {}", familiar(&record.name))?;
    }
    Ok(())
}

/// `rbuild tag SOURCE TARGET`: another name for a stored image.
pub fn tag(root: &Path, source: &str, target: &str) -> Result<()> {
    let images = ImageStore::open(root)
        .with_context(|| format!("Failed to open the state root `{}`", root.display()))?;
    let record = lookup(&images, source)?;
    images.tag(&ImageRecord {
        name: crate::registry::canonical(target)?,
        ..record
    })?;
    Ok(())
}
