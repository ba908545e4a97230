//! Issue 3, point 9: an image made by rbuild's storage layer is accepted by the real tools.
//!
//! The image is the golden corpus' busybox base (imported from its skopeo OCI archive) plus one
//! layer with `/etc/hello`, written by our layer writer into our content store and exported by
//! our archive writer. Then: `skopeo inspect oci-archive:`, `umoci unpack`, `docker load` into a
//! private dockerd and `docker run ... cat /etc/hello`, and `image-summary.py` of the shared
//! tools for the layer's exact files. Tools come from Debian (installed by .ci/run).
#![allow(clippy::unwrap_used)]

use std::fs;
use std::path::Path;
use std::process::Command;

use rbuild_digest::Digest;
use rbuild_oci::model::{manifest_json, BlobRef, HistoryEntry, ImageBuilder};
use rbuild_oci::{media_types, write_image_archive, ArchiveImage};
use rbuild_snapshotter::content::ContentStore;
use rbuild_snapshotter::layer::{write_layer, Compression, LayerOptions, SourceKind};
use rbuild_test::{require_tool, Dockerd};

const NAME: &str = "rbuild-test/hello:1";
const HELLO: &str = "hello from rbuild\n";
const EPOCH: &str = "1970-01-01T00:00:00Z";

/// Builds the image into a fresh state root and exports it to `out`; returns the manifest digest.
fn build_image(state: &Path, out: &Path, compression: Compression) -> Digest {
    let store = ContentStore::open(state).unwrap();
    let base = rbuild_oci::import::import_tar(
        fs::File::open(rbuild_test::golden_base("busybox-oci.tar")).unwrap(),
        &store,
        ("linux", "amd64"),
    )
    .unwrap()
    .remove(0);

    let tree = tempfile::tempdir().unwrap();
    fs::create_dir(tree.path().join("etc")).unwrap();
    fs::write(tree.path().join("etc/hello"), HELLO).unwrap();
    let mut writer = store.writer().unwrap();
    let options = LayerOptions {
        compression,
        source_date_epoch: Some(0),
        threads: 0,
    };
    let layer = write_layer(tree.path(), SourceKind::PlainDir, &mut writer, &options).unwrap();
    writer
        .commit(Some(&layer.digest), Some(layer.size))
        .unwrap();

    let mut base_config = Vec::new();
    std::io::Read::read_to_end(
        &mut store.open_blob(&base.config.digest).unwrap(),
        &mut base_config,
    )
    .unwrap();
    let mut image = ImageBuilder::from_config_json(&base_config).unwrap();
    image
        .add_layer(
            &layer.diff_id,
            HistoryEntry {
                created: Some(EPOCH.into()),
                created_by: "COPY hello /etc/hello # buildkit".into(),
                ..HistoryEntry::default()
            },
        )
        .unwrap();
    image.set_created(Some(EPOCH.into()));
    let config_bytes = image.config_json().unwrap();
    let config = store.put_bytes(&config_bytes).unwrap();
    let config = BlobRef {
        digest: config.digest,
        size: config.size,
        media_type: media_types::OCI_CONFIG.into(),
    };
    let mut layers = base.layers.clone();
    layers.push(BlobRef {
        digest: layer.digest.clone(),
        size: layer.size,
        media_type: layer.media_type.into(),
    });
    let manifest_bytes = manifest_json(&config, &layers, false).unwrap();
    let manifest = store.put_bytes(&manifest_bytes).unwrap();
    let manifest = BlobRef {
        digest: manifest.digest,
        size: manifest.size,
        media_type: media_types::OCI_MANIFEST.into(),
    };
    let archive = ArchiveImage {
        manifest: manifest.clone(),
        config,
        layers,
        names: vec![NAME.into()],
        repo_tags: vec![NAME.into()],
        mtime: 0,
    };
    write_image_archive(fs::File::create(out).unwrap(), &archive, &store).unwrap();
    manifest.digest
}

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn same_inputs_give_the_same_archive_bytes() {
    let dir = tempfile::tempdir().unwrap();
    for compression in [
        Compression::Gzip { level: 6 },
        Compression::Zstd { level: 3 },
    ] {
        let a = build_image(
            &dir.path().join("s1"),
            &dir.path().join("a.tar"),
            compression,
        );
        let b = build_image(
            &dir.path().join("s2"),
            &dir.path().join("b.tar"),
            compression,
        );
        assert_eq!(a, b);
        assert_eq!(
            fs::read(dir.path().join("a.tar")).unwrap(),
            fs::read(dir.path().join("b.tar")).unwrap()
        );
    }
}

#[test]
fn skopeo_inspects_the_archive() {
    let skopeo = require_tool("skopeo", "skopeo");
    let dir = tempfile::tempdir().unwrap();
    let image = dir.path().join("img.tar");
    let manifest = build_image(
        &dir.path().join("state"),
        &image,
        Compression::Gzip { level: 6 },
    );
    let json = run(Command::new(skopeo)
        .arg("inspect")
        .arg(format!("oci-archive:{}", image.display())));
    let info: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(info["Digest"], manifest.to_string());
    assert_eq!(info["Layers"].as_array().unwrap().len(), 2);
    assert_eq!(info["Architecture"], "amd64");
}

#[test]
fn umoci_unpacks_the_layout() {
    let umoci = require_tool("umoci", "umoci");
    let dir = tempfile::tempdir().unwrap();
    let image = dir.path().join("img.tar");
    build_image(
        &dir.path().join("state"),
        &image,
        Compression::Gzip { level: 6 },
    );
    let layout = dir.path().join("layout");
    fs::create_dir(&layout).unwrap();
    run(Command::new("tar")
        .arg("-xf")
        .arg(&image)
        .arg("-C")
        .arg(&layout));
    let bundle = dir.path().join("bundle");
    run(Command::new(umoci)
        .arg("unpack")
        .arg("--image")
        .arg(format!("{}:{NAME}", layout.display()))
        .arg(&bundle));
    assert_eq!(
        fs::read_to_string(bundle.join("rootfs/etc/hello")).unwrap(),
        HELLO
    );
    assert!(bundle.join("rootfs/bin/busybox").is_file());
}

#[test]
fn docker_loads_and_runs_the_image() {
    let dir = tempfile::tempdir().unwrap();
    let image = dir.path().join("img.tar");
    build_image(
        &dir.path().join("state"),
        &image,
        Compression::Gzip { level: 6 },
    );
    let docker = Dockerd::start();
    let loaded = docker.docker_ok(&["load", "-i", image.to_str().unwrap()]);
    assert!(loaded.contains(NAME), "{loaded}");
    let out = docker.docker_ok(&[
        "run",
        "--rm",
        "--network",
        "none",
        NAME,
        "/bin/sh",
        "-c",
        "cat /etc/hello",
    ]);
    assert_eq!(out, HELLO);
}

#[test]
fn image_summary_shows_exactly_the_layer_files() {
    let python = require_tool("python3", "python3");
    let dir = tempfile::tempdir().unwrap();
    let image = dir.path().join("img.tar");
    build_image(
        &dir.path().join("state"),
        &image,
        Compression::Gzip { level: 6 },
    );
    let json = run(Command::new(python)
        .arg(rbuild_test::shared_dir().join("tools/image-summary.py"))
        .arg("--base")
        .arg(rbuild_test::golden_base("busybox-oci.tar"))
        .arg(&image));
    let summary: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(summary["layers"], 2);
    let files = summary["files"].as_array().unwrap();
    let hello = files.iter().find(|f| f["path"] == "/etc/hello").unwrap();
    assert_eq!(hello["type"], "file");
    assert_eq!(hello["text"], HELLO);
    assert_eq!(hello["uid"], 0);
    // Only /etc (its metadata) and /etc/hello differ from the base.
    let paths: Vec<&str> = files.iter().filter_map(|f| f["path"].as_str()).collect();
    assert!(
        paths.iter().all(|p| *p == "/etc" || *p == "/etc/hello"),
        "{paths:?}"
    );
}
