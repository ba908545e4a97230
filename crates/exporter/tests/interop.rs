//! Issue 3, point 9: an image made by rbuild's storage layer is accepted by the real tools.
//!
//! The image is the golden corpus' busybox base (imported from its skopeo OCI archive) plus one
//! layer with `/etc/hello`, written by our layer writer into our content store and exported by
//! `export_image_archive`. Then: `skopeo inspect oci-archive:`, `umoci unpack`, `docker load` into a
//! private dockerd and `docker run ... cat /etc/hello`, and `image-summary.py` of the shared
//! tools for the layer's exact files. Tools come from Debian (installed by .ci/run).
#![allow(clippy::unwrap_used)]

use std::fs;
use std::path::Path;
use std::process::Command;

use rbuild_digest::Digest;
use rbuild_exporter::export_image_archive;
use rbuild_snapshotter::layer::{Compression, SourceKind};
use rbuild_test::{require_tool, Dockerd};

mod common;

const NAME: &str = "rbuild-test/hello:1";
const HELLO: &str = "hello from rbuild\n";
const EPOCH: &str = "1970-01-01T00:00:00Z";

/// Builds the image into a fresh state root and exports it to `out`; returns the manifest digest.
fn build_image(state: &Path, out: &Path, compression: Compression) -> Digest {
    let tree = tempfile::tempdir().unwrap();
    fs::create_dir(tree.path().join("etc")).unwrap();
    fs::write(tree.path().join("etc/hello"), HELLO).unwrap();
    let (store, image) = common::image_with_layer(
        state,
        tree.path(),
        SourceKind::PlainDir,
        compression,
        "COPY hello /etc/hello # buildkit",
        Some(EPOCH),
    );
    let mut file = fs::File::create(out).unwrap();
    export_image_archive(&store, &image, &[NAME.into()], false, 0, &mut file).unwrap()
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
