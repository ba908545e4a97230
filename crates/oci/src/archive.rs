//! One tarball that is both an OCI image layout and a `docker load` archive.
//!
//! ```text
//! oci-layout                 {"imageLayoutVersion":"1.0.0"}
//! index.json                 OCI index: the manifest, once per name (ref.name annotations)
//! manifest.json              docker load: [{"Config": "blobs/sha256/..", "RepoTags": [..], "Layers": [..]}]
//! blobs/sha256/<hex>         manifest, config and layers, sorted by digest, each once
//! ```
//! Entries are written in that order with fixed metadata (root-owned, 0644 files and 0755
//! directories, one mtime), so the same image gives the same archive bytes. Every blob is copied
//! from the [`BlobSource`] while its length and digest are checked: a source that returns other
//! bytes than the descriptor says fails the export instead of writing a corrupt archive.

use std::collections::BTreeMap;
use std::io::{self, Read, Write};

use rbuild_digest::{Digest, VerifyingReader};
use serde::Serialize;

use crate::model::BlobRef;

/// Where blobs are read from (the content store, in rbuild).
pub trait BlobSource {
    fn open_blob(&self, digest: &Digest) -> io::Result<Box<dyn Read + '_>>;
}

/// An image to export.
#[derive(Debug, Clone)]
pub struct ArchiveImage {
    pub manifest: BlobRef,
    pub config: BlobRef,
    pub layers: Vec<BlobRef>,
    /// Names for index.json's `org.opencontainers.image.ref.name` (whole references).
    pub names: Vec<String>,
    /// Names for manifest.json's `RepoTags` (as `docker load` expects: `name:tag`).
    pub repo_tags: Vec<String>,
    /// mtime of every entry (the build's source date).
    pub mtime: u64,
}

/// Why an archive could not be written.
#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    #[error("Failed to read blob {digest} for the archive")]
    Blob {
        digest: Digest,
        #[source]
        source: io::Error,
    },
    #[error("Failed to write the archive")]
    Write(#[source] io::Error),
    #[error(transparent)]
    Model(#[from] crate::model::ModelError),
    #[error("Invalid archive JSON")]
    Json(#[from] serde_json::Error),
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct DockerManifestEntry {
    config: String,
    repo_tags: Vec<String>,
    layers: Vec<String>,
}

fn blob_path(digest: &Digest) -> String {
    format!("blobs/sha256/{}", digest.hex())
}

fn header(
    path: &str,
    size: u64,
    mode: u32,
    mtime: u64,
    kind: tar::EntryType,
) -> io::Result<tar::Header> {
    let mut h = tar::Header::new_ustar();
    h.set_path(path)?;
    h.set_size(size);
    h.set_mode(mode);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(mtime);
    h.set_entry_type(kind);
    h.set_cksum();
    Ok(h)
}

/// Writes `image` as an OCI-layout + docker-archive tarball to `out`.
pub fn write_image_archive(
    out: impl Write,
    image: &ArchiveImage,
    source: &dyn BlobSource,
) -> Result<(), ArchiveError> {
    let mut builder = tar::Builder::new(out);
    let index = crate::model::index_json(&image.manifest, &image.names, None)?;
    let docker = crate::canonical::to_vec(&[DockerManifestEntry {
        config: blob_path(&image.config.digest),
        repo_tags: image.repo_tags.clone(),
        layers: image.layers.iter().map(|l| blob_path(&l.digest)).collect(),
    }])?;
    let small: [(&str, &[u8]); 3] = [
        ("oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#),
        ("index.json", &index),
        ("manifest.json", &docker),
    ];
    let write_err = ArchiveError::Write;
    for (path, bytes) in small {
        let h = header(
            path,
            bytes.len() as u64,
            0o644,
            image.mtime,
            tar::EntryType::Regular,
        )
        .map_err(write_err)?;
        builder.append(&h, bytes).map_err(ArchiveError::Write)?;
    }
    for dir in ["blobs/", "blobs/sha256/"] {
        let h = header(dir, 0, 0o755, image.mtime, tar::EntryType::Directory)
            .map_err(ArchiveError::Write)?;
        builder
            .append(&h, io::empty())
            .map_err(ArchiveError::Write)?;
    }
    let mut blobs: BTreeMap<&Digest, u64> = BTreeMap::new();
    for blob in std::iter::once(&image.manifest)
        .chain(std::iter::once(&image.config))
        .chain(&image.layers)
    {
        blobs.insert(&blob.digest, blob.size);
    }
    for (digest, size) in blobs {
        let blob_err = |source: io::Error| ArchiveError::Blob {
            digest: digest.clone(),
            source,
        };
        let reader = source.open_blob(digest).map_err(blob_err)?;
        // Fails as soon as the blob is longer than `size`, and at its end if it is shorter or
        // its digest differs, so tar never writes other bytes than the header announces.
        let mut verifying = VerifyingReader::new(reader, digest.clone(), Some(size));
        let h = header(
            &blob_path(digest),
            size,
            0o644,
            image.mtime,
            tar::EntryType::Regular,
        )
        .map_err(ArchiveError::Write)?;
        builder.append(&h, &mut verifying).map_err(blob_err)?;
    }
    builder
        .into_inner()
        .and_then(|mut w| w.flush())
        .map_err(ArchiveError::Write)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media_types;
    use std::collections::HashMap;

    struct Memory(HashMap<Digest, Vec<u8>>);

    impl BlobSource for Memory {
        fn open_blob(&self, digest: &Digest) -> io::Result<Box<dyn Read + '_>> {
            match self.0.get(digest) {
                Some(b) => Ok(Box::new(&b[..])),
                None => Err(io::Error::new(io::ErrorKind::NotFound, "no blob")),
            }
        }
    }

    fn blob(store: &mut HashMap<Digest, Vec<u8>>, bytes: &[u8], media_type: &str) -> BlobRef {
        let digest = Digest::of(bytes);
        store.insert(digest.clone(), bytes.to_vec());
        BlobRef {
            digest,
            size: bytes.len() as u64,
            media_type: media_type.into(),
        }
    }

    fn image(store: &mut HashMap<Digest, Vec<u8>>) -> ArchiveImage {
        let layer = blob(store, b"layer bytes", media_types::OCI_LAYER);
        let config = blob(store, b"{\"config\":{}}", media_types::OCI_CONFIG);
        let manifest_bytes =
            crate::model::manifest_json(&config, std::slice::from_ref(&layer), false)
                .expect("manifest");
        let manifest = blob(store, &manifest_bytes, media_types::OCI_MANIFEST);
        ArchiveImage {
            manifest,
            config,
            layers: vec![layer],
            names: vec!["example.com/app:1".into()],
            repo_tags: vec!["example.com/app:1".into()],
            mtime: 0,
        }
    }

    #[test]
    fn writes_layout_and_docker_manifest_deterministically() {
        let mut store = HashMap::new();
        let img = image(&mut store);
        let source = Memory(store);
        let mut a = Vec::new();
        write_image_archive(&mut a, &img, &source).expect("archive");
        let mut b = Vec::new();
        write_image_archive(&mut b, &img, &source).expect("archive");
        assert_eq!(a, b);
        let mut names = Vec::new();
        let mut docker = None;
        let mut archive = tar::Archive::new(&a[..]);
        for entry in archive.entries().expect("entries") {
            let mut entry = entry.expect("entry");
            let path = entry.path().expect("path").to_string_lossy().into_owned();
            if path == "manifest.json" {
                let mut s = String::new();
                entry.read_to_string(&mut s).expect("read");
                docker = Some(s);
            }
            names.push(path);
        }
        assert_eq!(
            &names[..5],
            [
                "oci-layout",
                "index.json",
                "manifest.json",
                "blobs/",
                "blobs/sha256/"
            ]
        );
        assert_eq!(names.len(), 8);
        let docker: serde_json::Value =
            serde_json::from_str(&docker.expect("manifest.json")).expect("json");
        assert_eq!(
            docker[0]["Config"],
            format!("blobs/sha256/{}", img.config.digest.hex())
        );
        assert_eq!(docker[0]["RepoTags"][0], "example.com/app:1");
    }

    #[test]
    fn corrupt_blob_fails_the_export() {
        let mut store = HashMap::new();
        let img = image(&mut store);
        if let Some(bytes) = store.get_mut(&img.layers[0].digest) {
            bytes[0] ^= 1;
        }
        let err = write_image_archive(io::sink(), &img, &Memory(store)).expect_err("corrupt");
        assert!(matches!(err, ArchiveError::Blob { .. }), "{err}");
    }
}
