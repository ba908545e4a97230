//! The content store as the blob source and sink of image archives (`rbuild-oci`).

use std::io::{self, Read};

use rbuild_digest::Digest;
use rbuild_oci::import::BlobStore;
use rbuild_oci::BlobSource;

use crate::content::{ContentError, ContentStore};

fn to_io(e: ContentError) -> io::Error {
    let kind = if e.is_not_found() {
        io::ErrorKind::NotFound
    } else {
        io::ErrorKind::Other
    };
    io::Error::new(kind, e)
}

impl BlobSource for ContentStore {
    fn open_blob(&self, digest: &Digest) -> io::Result<Box<dyn Read + '_>> {
        ContentStore::open_blob(self, digest)
            .map(|f| Box::new(f) as Box<dyn Read>)
            .map_err(to_io)
    }
}

impl BlobStore for ContentStore {
    fn put(&self, reader: &mut dyn Read, expected: Option<&Digest>) -> io::Result<(Digest, u64)> {
        self.import(reader, expected, None)
            .map(|d| (d.digest, d.size))
            .map_err(to_io)
    }

    fn blob_size(&self, digest: &Digest) -> io::Result<Option<u64>> {
        self.size(digest).map_err(to_io)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn imports_into_and_exports_from_the_content_store() {
        let state = tempfile::tempdir().unwrap();
        let store = ContentStore::open(state.path()).unwrap();
        let file = std::fs::File::open(rbuild_test::golden_base("busybox-oci.tar")).unwrap();
        let image = rbuild_oci::import::import_tar(file, &store, ("linux", "amd64"))
            .unwrap()
            .remove(0);
        for blob in std::iter::once(&image.config).chain(&image.layers) {
            assert!(store.contains(&blob.digest));
            store.verify(&blob.digest).unwrap();
        }
        let mut out = Vec::new();
        let archive = rbuild_oci::ArchiveImage {
            manifest: image.manifest.clone(),
            config: image.config.clone(),
            layers: image.layers.clone(),
            names: image.names.clone(),
            repo_tags: image.names.clone(),
            mtime: 0,
        };
        rbuild_oci::write_image_archive(&mut out, &archive, &store).unwrap();
        assert!(out.len() > 1_000_000);
        let missing = Digest::of(b"not stored");
        let err = BlobSource::open_blob(&store, &missing).err().unwrap();
        assert_eq!(err.kind(), io::ErrorKind::NotFound);
    }
}
