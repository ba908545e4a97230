//! The local image store: image names → manifests in the content store.
//!
//! ```text
//! <state root>/images-v1/<name, percent-encoded>.json   an ImageRecord: name, manifest
//!                                                       (digest, size, media type), config,
//!                                                       layer sizes
//! ```
//! One small JSON file per name, written to a temp file and renamed (atomic: a reader sees the
//! old record or the new one, never a torn one; concurrent taggers of one name: last rename
//! wins). The blobs themselves live in the content store; removing a name never deletes blobs
//! (garbage collection does, issue 5).
//!
//! Names are stored as the caller gives them, with `:latest` added when there is neither tag
//! nor digest. rbuild's callers give full normalised references (`busybox` →
//! `docker.io/library/busybox:latest`, rbuild-registry's `Reference`); this store does not
//! depend on the registry crate, so it checks only the characters.

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use rbuild_digest::Digest;
use serde::{Deserialize, Serialize};

/// One named image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageRecord {
    pub name: String,
    pub manifest: Digest,
    pub manifest_size: u64,
    pub manifest_media_type: String,
    pub config: Digest,
    /// Compressed sizes of the layers, in order (for `rbuild images`).
    pub layer_sizes: Vec<u64>,
}

impl ImageRecord {
    /// The record naming `name` the image of `manifest`, whose config and layers it lists.
    pub fn new(
        name: String,
        manifest: &rbuild_oci::BlobRef,
        config: &rbuild_oci::BlobRef,
        layers: &[rbuild_oci::BlobRef],
    ) -> ImageRecord {
        ImageRecord {
            name,
            manifest: manifest.digest.clone(),
            manifest_size: manifest.size,
            manifest_media_type: manifest.media_type.clone(),
            config: config.digest.clone(),
            layer_sizes: layers.iter().map(|l| l.size).collect(),
        }
    }
}

/// Why an image-store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum ImageStoreError {
    #[error("Invalid image name `{0}`")]
    InvalidName(String),
    #[error("No image named `{0}` in the local store")]
    NotFound(String),
    #[error("Failed to {action} `{}`", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("Corrupt image record `{}`", path.display())]
    Corrupt {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
}

/// The store under `<state root>/images-v1`.
#[derive(Debug)]
pub struct ImageStore {
    dir: PathBuf,
}

/// `name` with `:latest` when it has neither tag nor digest.
pub fn normalize_name(name: &str) -> Result<String, ImageStoreError> {
    let valid = !name.is_empty()
        && name.len() <= 512
        && !name.starts_with(['/', '-', '.', ':'])
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"/._-:@".contains(&b));
    if !valid {
        return Err(ImageStoreError::InvalidName(name.to_string()));
    }
    Ok(with_default_tag(name))
}

/// `name` with `:latest` appended when it has neither a tag (a `:` after the last `/`) nor a
/// digest, as docker does. No validation: see [`normalize_name`].
pub fn with_default_tag(name: &str) -> String {
    let last = name.rsplit('/').next().unwrap_or(name);
    if last.contains(':') || name.contains('@') {
        name.to_string()
    } else {
        format!("{name}:latest")
    }
}

/// File name for a normalised image name: `/`, `:` and `@` percent-encoded.
fn file_name(name: &str) -> String {
    let mut out = String::with_capacity(name.len() + 8);
    for c in name.chars() {
        match c {
            '/' => out.push_str("%2F"),
            ':' => out.push_str("%3A"),
            '@' => out.push_str("%40"),
            '%' => out.push_str("%25"),
            c => out.push(c),
        }
    }
    out.push_str(".json");
    out
}

impl ImageStore {
    pub fn open(state_root: &Path) -> Result<Self, ImageStoreError> {
        let dir = state_root.join("images-v1");
        fs::create_dir_all(&dir).map_err(|source| ImageStoreError::Io {
            action: "create",
            path: dir.clone(),
            source,
        })?;
        Ok(ImageStore { dir })
    }

    /// Records (or replaces) `record` under its name.
    pub fn tag(&self, record: &ImageRecord) -> Result<(), ImageStoreError> {
        let name = normalize_name(&record.name)?;
        let record = ImageRecord {
            name: name.clone(),
            ..record.clone()
        };
        let path = self.dir.join(file_name(&name));
        let io_err = |action: &'static str| {
            let path = path.clone();
            move |source| ImageStoreError::Io {
                action,
                path,
                source,
            }
        };
        let mut tmp =
            tempfile::NamedTempFile::new_in(&self.dir).map_err(io_err("create a temp file for"))?;
        let bytes =
            serde_json::to_vec_pretty(&record).map_err(|source| ImageStoreError::Corrupt {
                path: path.clone(),
                source,
            })?;
        tmp.write_all(&bytes).map_err(io_err("write"))?;
        tmp.as_file().sync_all().map_err(io_err("sync"))?;
        tmp.persist(&path).map_err(|e| io_err("write")(e.error))?;
        Ok(())
    }

    /// The record for `name`.
    pub fn get(&self, name: &str) -> Result<ImageRecord, ImageStoreError> {
        let name = normalize_name(name)?;
        let path = self.dir.join(file_name(&name));
        let bytes = match fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(ImageStoreError::NotFound(name))
            }
            Err(source) => {
                return Err(ImageStoreError::Io {
                    action: "read",
                    path,
                    source,
                })
            }
        };
        serde_json::from_slice(&bytes).map_err(|source| ImageStoreError::Corrupt { path, source })
    }

    /// Removes `name`; returns its record.
    pub fn remove(&self, name: &str) -> Result<ImageRecord, ImageStoreError> {
        let record = self.get(name)?;
        let path = self.dir.join(file_name(&record.name));
        fs::remove_file(&path).map_err(|source| ImageStoreError::Io {
            action: "remove",
            path,
            source,
        })?;
        Ok(record)
    }

    /// Every record, sorted by name.
    pub fn list(&self) -> Result<Vec<ImageRecord>, ImageStoreError> {
        let entries = fs::read_dir(&self.dir).map_err(|source| ImageStoreError::Io {
            action: "list",
            path: self.dir.clone(),
            source,
        })?;
        let mut records = Vec::new();
        for entry in entries.flatten() {
            let path = entry.path();
            if path.extension().is_none_or(|e| e != "json") {
                continue;
            }
            let bytes = fs::read(&path).map_err(|source| ImageStoreError::Io {
                action: "read",
                path: path.clone(),
                source,
            })?;
            records.push(
                serde_json::from_slice(&bytes)
                    .map_err(|source| ImageStoreError::Corrupt { path, source })?,
            );
        }
        records.sort_by(|a: &ImageRecord, b| a.name.cmp(&b.name));
        Ok(records)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn record(name: &str, manifest: &[u8]) -> ImageRecord {
        ImageRecord {
            name: name.into(),
            manifest: Digest::of(manifest),
            manifest_size: manifest.len() as u64,
            manifest_media_type: "application/vnd.oci.image.manifest.v1+json".into(),
            config: Digest::of(b"config"),
            layer_sizes: vec![1, 2],
        }
    }

    #[test]
    fn tag_get_list_remove() {
        let dir = tempfile::tempdir().unwrap();
        let store = ImageStore::open(dir.path()).unwrap();
        store.tag(&record("rbuild-test/busybox:1", b"m1")).unwrap();
        store.tag(&record("app", b"m2")).unwrap();
        store.tag(&record("localhost:5000/app", b"m3")).unwrap();
        assert_eq!(store.get("app:latest").unwrap().manifest, Digest::of(b"m2"));
        assert_eq!(store.get("app").unwrap().name, "app:latest");
        assert_eq!(
            store.get("localhost:5000/app").unwrap().name,
            "localhost:5000/app:latest"
        );
        store.tag(&record("app", b"m4")).unwrap();
        assert_eq!(store.get("app").unwrap().manifest, Digest::of(b"m4"));
        let names: Vec<String> = store.list().unwrap().into_iter().map(|r| r.name).collect();
        assert_eq!(
            names,
            [
                "app:latest",
                "localhost:5000/app:latest",
                "rbuild-test/busybox:1"
            ]
        );
        store.remove("app").unwrap();
        assert!(matches!(
            store.get("app"),
            Err(ImageStoreError::NotFound(_))
        ));
        assert!(matches!(
            store.remove("app"),
            Err(ImageStoreError::NotFound(_))
        ));
    }

    #[test]
    fn names_are_checked() {
        for bad in ["", "/x", "a b", "../x", "-x", "a\nb"] {
            assert!(normalize_name(bad).is_err(), "{bad:?}");
        }
        assert_eq!(normalize_name("a/b@sha256:00").unwrap(), "a/b@sha256:00");
    }
}
