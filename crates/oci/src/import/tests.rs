#![allow(clippy::unwrap_used)]

use std::cell::RefCell;
use std::collections::HashMap;

use rbuild_digest::VerifyingReader;

use super::*;
use crate::archive::{write_image_archive, ArchiveImage};

#[derive(Default)]
struct Memory(RefCell<HashMap<Digest, Vec<u8>>>);

impl BlobSource for Memory {
    fn open_blob(&self, digest: &Digest) -> io::Result<Box<dyn Read + '_>> {
        match self.0.borrow().get(digest) {
            Some(b) => Ok(Box::new(io::Cursor::new(b.clone()))),
            None => Err(io::Error::new(io::ErrorKind::NotFound, "no blob")),
        }
    }
}

impl BlobStore for Memory {
    fn put(&self, reader: &mut dyn Read, expected: Option<&Digest>) -> io::Result<(Digest, u64)> {
        let mut bytes = Vec::new();
        match expected {
            Some(d) => VerifyingReader::new(reader, d.clone(), None).read_to_end(&mut bytes)?,
            None => reader.read_to_end(&mut bytes)?,
        };
        let digest = Digest::of(&bytes);
        let len = bytes.len() as u64;
        self.0.borrow_mut().insert(digest.clone(), bytes);
        Ok((digest, len))
    }

    fn blob_size(&self, digest: &Digest) -> io::Result<Option<u64>> {
        Ok(self.0.borrow().get(digest).map(|b| b.len() as u64))
    }
}

const AMD64: (&str, &str) = ("linux", "amd64");
const DIFF_ID: &str = "sha256:01e9def1fdec6458c4c8af8ff279c306321f43da4d3aa7e1064a6aca3fe18c48";

#[test]
fn imports_skopeo_oci_archive() {
    let store = Memory::default();
    let file = std::fs::File::open(rbuild_test::golden_base("busybox-oci.tar")).unwrap();
    let images = import_tar(file, &store, AMD64).unwrap();
    assert_eq!(images.len(), 1);
    let image = &images[0];
    assert_eq!(image.names, ["rbuild-test/busybox:1"]);
    assert_eq!(
        image.manifest.digest.to_string(),
        "sha256:7b564058c97101f89e60ad52b4d7c1baacc2716764ada0a9b962915cbdb1ae47"
    );
    assert_eq!(image.layers.len(), 1);
    assert_eq!(image.layers[0].size, 1_084_058);
    assert_eq!(image.layers[0].media_type, media_types::OCI_LAYER_GZIP);
}

#[test]
fn imports_docker_save_archive() {
    let store = Memory::default();
    let file = std::fs::File::open(rbuild_test::golden_base("docker-save.tar")).unwrap();
    let images = import_tar(file, &store, AMD64).unwrap();
    assert_eq!(images.len(), 1);
    let image = &images[0];
    assert_eq!(image.names, ["rbuild-test/busybox:1"]);
    assert_eq!(
        image.config.digest.to_string(),
        "sha256:ccef4b6a8812b0d4ab7ee96bfec15f0177d9f3413a580ef454a831e997074b35"
    );
    // docker save writes the layer uncompressed: its digest is the diff_id.
    assert_eq!(image.layers[0].digest.to_string(), DIFF_ID);
    assert_eq!(image.layers[0].media_type, media_types::OCI_LAYER);
}

#[test]
fn round_trips_our_own_archive() {
    let store = Memory::default();
    let file = std::fs::File::open(rbuild_test::golden_base("busybox-oci.tar")).unwrap();
    let image = import_tar(file, &store, AMD64).unwrap().remove(0);
    let mut out = Vec::new();
    let archive = ArchiveImage {
        manifest: image.manifest.clone(),
        config: image.config.clone(),
        layers: image.layers.clone(),
        names: vec!["example.com/copy:2".into()],
        repo_tags: vec!["example.com/copy:2".into()],
        mtime: 0,
    };
    write_image_archive(&mut out, &archive, &store).unwrap();
    let again = import_tar(&out[..], &Memory::default(), AMD64).unwrap();
    assert_eq!(again[0].names, ["example.com/copy:2"]);
    assert_eq!(again[0].manifest, image.manifest);
    assert_eq!(again[0].layers, image.layers);
}

fn tar_of(files: &[(&str, &[u8])]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (path, bytes) in files {
        let mut h = tar::Header::new_ustar();
        h.set_path(path).unwrap();
        h.set_size(bytes.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        b.append(&h, *bytes).unwrap();
    }
    b.into_inner().unwrap()
}

#[test]
fn rejects_wrong_blob_content_missing_blobs_and_unknown_formats() {
    let wrong = format!("blobs/sha256/{}", Digest::of(b"right").hex());
    let err = import_tar(
        &tar_of(&[(&wrong, b"wrong")])[..],
        &Memory::default(),
        AMD64,
    )
    .unwrap_err();
    assert!(matches!(err, ImportError::Store { .. }), "{err}");

    let missing = Digest::of(b"nothing");
    let index = format!(
        r#"{{"schemaVersion":2,"manifests":[{{"mediaType":"{}","digest":"{missing}","size":7}}]}}"#,
        media_types::OCI_MANIFEST
    );
    let err = import_tar(
        &tar_of(&[("index.json", index.as_bytes())])[..],
        &Memory::default(),
        AMD64,
    )
    .unwrap_err();
    assert!(matches!(err, ImportError::MissingBlob(_)), "{err}");

    let err = import_tar(
        &tar_of(&[("hello.txt", b"hi")])[..],
        &Memory::default(),
        AMD64,
    )
    .unwrap_err();
    assert!(matches!(err, ImportError::UnknownFormat), "{err}");
}

#[test]
fn picks_the_platform_from_a_nested_index() {
    let store = Memory::default();
    let file = std::fs::File::open(rbuild_test::golden_base("busybox-oci.tar")).unwrap();
    let image = import_tar(file, &store, AMD64).unwrap().remove(0);
    let nested = format!(
        r#"{{"schemaVersion":2,"mediaType":"{}","manifests":[{{"mediaType":"{}","digest":"{}","size":{},"platform":{{"os":"linux","architecture":"amd64"}}}}]}}"#,
        media_types::OCI_INDEX,
        media_types::OCI_MANIFEST,
        image.manifest.digest,
        image.manifest.size
    );
    let (nested_digest, nested_size) = store.put(&mut nested.as_bytes(), None).unwrap();
    let top = format!(
        r#"{{"schemaVersion":2,"manifests":[{{"mediaType":"{}","digest":"{nested_digest}","size":{nested_size}}}]}}"#,
        media_types::OCI_INDEX
    );
    let mut metadata = BTreeMap::new();
    metadata.insert("index.json".to_string(), top.into_bytes());
    let found = resolve(&metadata, &BTreeMap::new(), &store, AMD64).unwrap();
    assert_eq!(found[0].manifest, image.manifest);
    let err = resolve(&metadata, &BTreeMap::new(), &store, ("linux", "s390x")).unwrap_err();
    assert!(err.to_string().contains("linux/amd64"), "{err}");
}

#[test]
fn descriptor_sizes_are_checked() {
    let store = Memory::default();
    let (layer, _) = store.put(&mut &b"layer"[..], None).unwrap();
    let (config, config_size) = store.put(&mut &b"{}"[..], None).unwrap();
    let manifest = format!(
        r#"{{"schemaVersion":2,"config":{{"mediaType":"{}","digest":"{config}","size":{config_size}}},"layers":[{{"mediaType":"{}","digest":"{layer}","size":999}}]}}"#,
        media_types::OCI_CONFIG,
        media_types::OCI_LAYER
    );
    let (m, m_size) = store.put(&mut manifest.as_bytes(), None).unwrap();
    let index = format!(
        r#"{{"schemaVersion":2,"manifests":[{{"mediaType":"{}","digest":"{m}","size":{m_size}}}]}}"#,
        media_types::OCI_MANIFEST
    );
    let mut metadata = BTreeMap::new();
    metadata.insert("index.json".to_string(), index.into_bytes());
    let err = resolve(&metadata, &BTreeMap::new(), &store, AMD64).unwrap_err();
    assert!(
        err.to_string().contains("says 999 bytes, the blob has 5"),
        "{err}"
    );
}

#[test]
fn links_resolve_inside_the_archive() {
    assert_eq!(
        resolve_link("a/layer.tar", "../b/layer.tar", true),
        "b/layer.tar"
    );
    assert_eq!(
        resolve_link("a/layer.tar", "b/layer.tar", false),
        "b/layer.tar"
    );
    assert_eq!(resolve_link("a/layer.tar", "../../../x", true), "x");
    assert_eq!(resolve_link("a/l", "/abs/y", true), "abs/y");
}
