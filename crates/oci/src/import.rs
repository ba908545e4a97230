//! Importing images from files: an OCI image layout (tar or directory) or a docker-archive
//! (`docker save`, or BuildKit's combined OCI + docker tar).
//!
//! The tar is read once, front to back: `blobs/sha256/<hex>` entries go to the [`BlobStore`]
//! with their digest verified, legacy docker-save files (`<id>/layer.tar`, `<config>.json`) are
//! stored under the digest of their content, and the small metadata files are kept in memory.
//! Then `index.json` is resolved (nested indexes by platform) or, failing that, `manifest.json`
//! (a docker-archive gets an OCI manifest synthesised for it). Every blob a manifest references
//! must be in the store. Paths are only keys here: nothing is written to the filesystem.

use std::collections::BTreeMap;
use std::io::{self, Read};
use std::path::Path;

use rbuild_digest::Digest;
use serde_json::Value;

use crate::archive::BlobSource;
use crate::media_types;
use crate::model::{manifest_json, BlobRef};

/// Metadata files larger than this are refused (they are JSON of a few KB).
const METADATA_LIMIT: u64 = 16 << 20;

/// A blob store an importer writes to and reads manifests back from.
pub trait BlobStore: BlobSource {
    /// Stores a blob, verifying `expected` when given; returns its digest and size.
    fn put(&self, reader: &mut dyn Read, expected: Option<&Digest>) -> io::Result<(Digest, u64)>;
    /// The size of a stored blob, `None` when it is absent.
    fn blob_size(&self, digest: &Digest) -> io::Result<Option<u64>>;
}

/// A descriptor's blob must be stored, with the size the descriptor claims.
fn check_blob(store: &dyn BlobStore, blob: &BlobRef) -> Result<(), ImportError> {
    match store.blob_size(&blob.digest).map_err(ImportError::Read)? {
        None => Err(ImportError::MissingBlob(blob.digest.clone())),
        Some(size) if size != blob.size => Err(invalid(
            &blob.digest.to_string(),
            format!(
                "the descriptor says {} bytes, the blob has {size}",
                blob.size
            ),
        )),
        Some(_) => Ok(()),
    }
}

/// One image found in an archive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportedImage {
    /// Names as the archive gives them: index `io.containerd.image.name` or
    /// `org.opencontainers.image.ref.name` annotations, or docker `RepoTags`.
    pub names: Vec<String>,
    pub manifest: BlobRef,
    pub config: BlobRef,
    pub layers: Vec<BlobRef>,
}

/// Why an import failed.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("Failed to read the archive (expected an OCI image layout or docker-archive tar)")]
    Read(#[source] io::Error),
    #[error("Failed to store `{path}` from the archive")]
    Store {
        path: String,
        #[source]
        source: io::Error,
    },
    #[error("Not an OCI image layout or docker archive: no index.json or manifest.json")]
    UnknownFormat,
    #[error("Invalid `{what}` in the archive: {reason}")]
    Invalid { what: String, reason: String },
    #[error("Blob {0} is referenced by the image but missing from the archive")]
    MissingBlob(Digest),
    #[error("No image for platform {wanted} in the index (available: {available})")]
    NoPlatform { wanted: String, available: String },
    #[error(transparent)]
    Model(#[from] crate::model::ModelError),
}

fn invalid(what: &str, reason: impl Into<String>) -> ImportError {
    ImportError::Invalid {
        what: what.to_string(),
        reason: reason.into(),
    }
}

/// Imports every image of an archive read from `reader`. `platform` is `(os, architecture)`,
/// used to choose in multi-platform indexes.
pub fn import_tar(
    reader: impl Read,
    store: &dyn BlobStore,
    platform: (&str, &str),
) -> Result<Vec<ImportedImage>, ImportError> {
    let mut archive = tar::Archive::new(reader);
    let mut metadata: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    let mut by_path: BTreeMap<String, (Digest, u64)> = BTreeMap::new();
    let mut links: Vec<(String, String)> = Vec::new();
    for entry in archive.entries().map_err(ImportError::Read)? {
        let mut entry = entry.map_err(ImportError::Read)?;
        let kind = entry.header().entry_type();
        let path = entry
            .path()
            .map_err(ImportError::Read)?
            .to_string_lossy()
            .into_owned();
        let path = path.trim_start_matches("./").to_string();
        if kind == tar::EntryType::Symlink || kind == tar::EntryType::Link {
            // docker save writes a layer shared by several images once and links the others.
            if let Some(target) = entry.link_name().map_err(ImportError::Read)? {
                let target = target.to_string_lossy().into_owned();
                let symlink = kind == tar::EntryType::Symlink;
                links.push((path.clone(), resolve_link(&path, &target, symlink)));
            }
            continue;
        }
        if kind != tar::EntryType::Regular {
            continue;
        }
        let store_err = |source| ImportError::Store {
            path: path.clone(),
            source,
        };
        if let Some(hex) = path.strip_prefix("blobs/sha256/") {
            let digest: Digest = format!("sha256:{hex}")
                .parse()
                .map_err(|_| invalid(&path, "blob name is not a sha256 digest"))?;
            store.put(&mut entry, Some(&digest)).map_err(store_err)?;
        } else if matches!(
            path.as_str(),
            "index.json" | "oci-layout" | "manifest.json" | "repositories"
        ) {
            if entry.size() > METADATA_LIMIT {
                return Err(invalid(&path, "too large"));
            }
            let mut bytes = Vec::new();
            entry.read_to_end(&mut bytes).map_err(ImportError::Read)?;
            metadata.insert(path, bytes);
        } else if !(path.ends_with("/json") || path.ends_with("/VERSION")) {
            let stored = store.put(&mut entry, None).map_err(store_err)?;
            by_path.insert(path, stored);
        }
    }
    for (path, target) in links {
        if let Some(stored) = by_path.get(&target).cloned() {
            by_path.insert(path, stored);
        }
    }
    resolve(&metadata, &by_path, store, platform)
}

/// The archive path a link entry points at: symlinks relative to their directory, hard links
/// relative to the archive root; `.` and `..` resolved lexically (never above the root).
fn resolve_link(path: &str, target: &str, symlink: bool) -> String {
    let mut parts: Vec<&str> = if symlink && !target.starts_with('/') {
        path.split('/').collect::<Vec<_>>()
    } else {
        Vec::new()
    };
    if symlink && !target.starts_with('/') {
        parts.pop();
    }
    for part in target.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            p => parts.push(p),
        }
    }
    parts.join("/")
}

/// Imports an OCI image layout directory.
pub fn import_layout_dir(
    dir: &Path,
    store: &dyn BlobStore,
    platform: (&str, &str),
) -> Result<Vec<ImportedImage>, ImportError> {
    let mut metadata = BTreeMap::new();
    let index_path = dir.join("index.json");
    let index = std::fs::read(&index_path).map_err(ImportError::Read)?;
    metadata.insert("index.json".to_string(), index);
    let blobs = dir.join("blobs").join("sha256");
    for entry in std::fs::read_dir(&blobs).map_err(ImportError::Read)? {
        let entry = entry.map_err(ImportError::Read)?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let digest: Digest = format!("sha256:{name}")
            .parse()
            .map_err(|_| invalid(&name, "blob name is not a sha256 digest"))?;
        let mut file = std::fs::File::open(entry.path()).map_err(ImportError::Read)?;
        store
            .put(&mut file, Some(&digest))
            .map_err(|source| ImportError::Store { path: name, source })?;
    }
    resolve(&metadata, &BTreeMap::new(), store, platform)
}

fn resolve(
    metadata: &BTreeMap<String, Vec<u8>>,
    by_path: &BTreeMap<String, (Digest, u64)>,
    store: &dyn BlobStore,
    platform: (&str, &str),
) -> Result<Vec<ImportedImage>, ImportError> {
    if let Some(index) = metadata.get("index.json") {
        let index: Value =
            serde_json::from_slice(index).map_err(|e| invalid("index.json", e.to_string()))?;
        let mut images = Vec::new();
        for desc in manifests_of(&index, "index.json")? {
            let names = names_of(desc);
            let manifest = select_manifest(desc, store, platform, 0)?;
            images.push(read_manifest(manifest, names, store)?);
        }
        return Ok(images);
    }
    if let Some(manifest) = metadata.get("manifest.json") {
        return docker_images(manifest, by_path, store);
    }
    Err(ImportError::UnknownFormat)
}

fn manifests_of<'a>(index: &'a Value, what: &str) -> Result<&'a Vec<Value>, ImportError> {
    index["manifests"]
        .as_array()
        .ok_or_else(|| invalid(what, "no `manifests` array"))
}

fn names_of(desc: &Value) -> Vec<String> {
    let annotations = &desc["annotations"];
    [
        "io.containerd.image.name",
        "org.opencontainers.image.ref.name",
    ]
    .iter()
    .find_map(|key| annotations[key].as_str())
    .map(|name| vec![name.to_string()])
    .unwrap_or_default()
}

fn blob_ref(desc: &Value, what: &str) -> Result<BlobRef, ImportError> {
    let digest = desc["digest"]
        .as_str()
        .and_then(|d| d.parse::<Digest>().ok())
        .ok_or_else(|| invalid(what, "descriptor without a valid sha256 digest"))?;
    let size = desc["size"]
        .as_u64()
        .ok_or_else(|| invalid(what, "descriptor without a size"))?;
    let media_type = desc["mediaType"].as_str().unwrap_or_default().to_string();
    Ok(BlobRef {
        digest,
        size,
        media_type,
    })
}

fn read_json(store: &dyn BlobStore, blob: &BlobRef) -> Result<Value, ImportError> {
    check_blob(store, blob)?;
    let mut reader = store
        .open_blob(&blob.digest)
        .map_err(|_| ImportError::MissingBlob(blob.digest.clone()))?;
    let mut bytes = Vec::new();
    reader
        .by_ref()
        .take(METADATA_LIMIT)
        .read_to_end(&mut bytes)
        .map_err(ImportError::Read)?;
    serde_json::from_slice(&bytes).map_err(|e| invalid(&blob.digest.to_string(), e.to_string()))
}

/// Follows nested indexes to the manifest for `platform`.
fn select_manifest(
    desc: &Value,
    store: &dyn BlobStore,
    platform: (&str, &str),
    depth: usize,
) -> Result<BlobRef, ImportError> {
    let blob = blob_ref(desc, "index.json")?;
    if !media_types::is_index(&blob.media_type) {
        return Ok(blob);
    }
    if depth > 4 {
        return Err(invalid("index.json", "indexes nested too deeply"));
    }
    let nested = read_json(store, &blob)?;
    // Checks the index's shape (a `manifests` array) before choosing in it.
    manifests_of(&nested, &blob.digest.to_string())?;
    let wanted = crate::platform::Platform::new(platform.0, platform.1, None);
    match crate::platform::select(&nested, &wanted) {
        Ok(chosen) => select_manifest(chosen, store, platform, depth + 1),
        Err(available) => Err(ImportError::NoPlatform {
            wanted: wanted.to_string(),
            available,
        }),
    }
}

/// The config and layer descriptors of an image manifest (OCI or Docker schema 2).
pub fn parse_manifest(bytes: &[u8]) -> Result<(BlobRef, Vec<BlobRef>), ImportError> {
    let doc: Value =
        serde_json::from_slice(bytes).map_err(|e| invalid("manifest", e.to_string()))?;
    manifest_parts(&doc, "manifest")
}

fn manifest_parts(doc: &Value, what: &str) -> Result<(BlobRef, Vec<BlobRef>), ImportError> {
    let config = blob_ref(&doc["config"], what)?;
    let layers = doc["layers"]
        .as_array()
        .ok_or_else(|| invalid(what, "manifest without layers"))?
        .iter()
        .map(|l| blob_ref(l, what))
        .collect::<Result<Vec<_>, _>>()?;
    Ok((config, layers))
}

fn read_manifest(
    manifest: BlobRef,
    names: Vec<String>,
    store: &dyn BlobStore,
) -> Result<ImportedImage, ImportError> {
    let doc = read_json(store, &manifest)?;
    let (config, layers) = manifest_parts(&doc, &manifest.digest.to_string())?;
    for blob in std::iter::once(&config).chain(&layers) {
        check_blob(store, blob)?;
    }
    Ok(ImportedImage {
        names,
        manifest,
        config,
        layers,
    })
}

/// Layer media type from the first bytes of the blob.
fn sniff_layer_type(store: &dyn BlobStore, digest: &Digest) -> Result<&'static str, ImportError> {
    let mut head = Vec::with_capacity(4);
    let reader = store
        .open_blob(digest)
        .map_err(|_| ImportError::MissingBlob(digest.clone()))?;
    reader
        .take(4)
        .read_to_end(&mut head)
        .map_err(ImportError::Read)?;
    Ok(media_types::layer_type_from_magic(&head))
}

fn docker_images(
    manifest: &[u8],
    by_path: &BTreeMap<String, (Digest, u64)>,
    store: &dyn BlobStore,
) -> Result<Vec<ImportedImage>, ImportError> {
    let entries: Value =
        serde_json::from_slice(manifest).map_err(|e| invalid("manifest.json", e.to_string()))?;
    let entries = entries
        .as_array()
        .ok_or_else(|| invalid("manifest.json", "not an array"))?;
    let lookup = |path: &str| -> Result<(Digest, u64), ImportError> {
        if let Some(found) = by_path.get(path.trim_start_matches("./")) {
            return Ok(found.clone());
        }
        // BuildKit's combined archives point into blobs/sha256/.
        let digest: Digest = path
            .strip_prefix("blobs/sha256/")
            .and_then(|hex| format!("sha256:{hex}").parse().ok())
            .ok_or_else(|| invalid("manifest.json", format!("`{path}` is not in the archive")))?;
        let size = store
            .blob_size(&digest)
            .map_err(ImportError::Read)?
            .ok_or_else(|| ImportError::MissingBlob(digest.clone()))?;
        Ok((digest, size))
    };
    let mut images = Vec::new();
    for entry in entries {
        let config_path = entry["Config"]
            .as_str()
            .ok_or_else(|| invalid("manifest.json", "entry without Config"))?;
        let (digest, size) = lookup(config_path)?;
        let config = BlobRef {
            digest,
            size,
            media_type: media_types::OCI_CONFIG.into(),
        };
        let mut layers = Vec::new();
        for path in entry["Layers"].as_array().into_iter().flatten() {
            let path = path
                .as_str()
                .ok_or_else(|| invalid("manifest.json", "layer path is not a string"))?;
            let (digest, size) = lookup(path)?;
            let media_type = sniff_layer_type(store, &digest)?.to_string();
            layers.push(BlobRef {
                digest,
                size,
                media_type,
            });
        }
        let bytes = manifest_json(&config, &layers, false)?;
        let (digest, size) =
            store
                .put(&mut &bytes[..], None)
                .map_err(|source| ImportError::Store {
                    path: "manifest (synthesised)".into(),
                    source,
                })?;
        let names = entry["RepoTags"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|t| t.as_str().map(str::to_string))
            .collect();
        images.push(ImportedImage {
            names,
            manifest: BlobRef {
                digest,
                size,
                media_type: media_types::OCI_MANIFEST.into(),
            },
            config,
            layers,
        });
    }
    Ok(images)
}

#[cfg(test)]
mod tests;
