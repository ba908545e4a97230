//! Exports of the golden busybox base image (plus a layer with a whiteout) through the content
//! store: rootfs directory, rootfs tarball, docker-media-type archive read back by skopeo.
#![allow(clippy::unwrap_used)]

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::Command;

use rbuild_exporter::{
    export_image_archive, export_local, export_rootfs_tar, BuiltImage, ExportError,
};
use rbuild_snapshotter::content::ContentStore;
use rbuild_snapshotter::layer::{Compression, SourceKind};
use rbuild_test::{require_root, require_tool};

mod common;

/// The base image plus a layer that deletes /etc/passwd (an overlay whiteout) and adds /etc/motd.
fn image(state: &Path) -> (ContentStore, BuiltImage) {
    require_root();
    let upper = tempfile::tempdir().unwrap();
    fs::create_dir(upper.path().join("etc")).unwrap();
    fs::write(upper.path().join("etc/motd"), "welcome\n").unwrap();
    rustix::fs::mknodat(
        rustix::fs::CWD,
        upper.path().join("etc/passwd"),
        rustix::fs::FileType::CharacterDevice,
        rustix::fs::Mode::empty(),
        0,
    )
    .unwrap();
    common::image_with_layer(
        state,
        upper.path(),
        SourceKind::OverlayUpper,
        Compression::Gzip { level: 6 },
        "RUN rm /etc/passwd && echo welcome > /etc/motd",
        None,
    )
}

#[test]
fn local_export_is_the_merged_filesystem() {
    let dir = tempfile::tempdir().unwrap();
    let (store, image) = image(&dir.path().join("state"));
    let dest = dir.path().join("out/rootfs");
    export_local(&store, &image.layers, &dest).unwrap();
    let busybox = fs::metadata(dest.join("bin/busybox")).unwrap();
    assert_eq!(busybox.len(), 1_982_256);
    assert_eq!(busybox.permissions().mode() & 0o7777, 0o755);
    assert_eq!(
        fs::read_link(dest.join("bin/sh")).unwrap(),
        Path::new("busybox")
    );
    assert_eq!(
        fs::read_to_string(dest.join("etc/motd")).unwrap(),
        "welcome\n"
    );
    assert!(
        !dest.join("etc/passwd").exists(),
        "the whiteout must delete the base's file"
    );
    assert_eq!(fs::metadata(dest.join("tmp")).unwrap().uid(), 0);
    // No staging directory is left beside the destination.
    assert_eq!(fs::read_dir(dir.path().join("out")).unwrap().count(), 1);
    // A non-empty destination is refused, not mixed.
    let err = export_local(&store, &image.layers, &dest).unwrap_err();
    assert!(matches!(err, ExportError::DestNotEmpty(_)), "{err}");
}

#[test]
fn rootfs_tar_is_deterministic_and_complete() {
    let dir = tempfile::tempdir().unwrap();
    let (store, image) = image(&dir.path().join("state"));
    let mut a = Vec::new();
    export_rootfs_tar(
        &store,
        &image.layers,
        &dir.path().join("scratch"),
        Some(0),
        &mut a,
    )
    .unwrap();
    let mut b = Vec::new();
    export_rootfs_tar(
        &store,
        &image.layers,
        &dir.path().join("scratch"),
        Some(0),
        &mut b,
    )
    .unwrap();
    assert_eq!(a, b);
    let mut names = Vec::new();
    for entry in tar::Archive::new(&a[..]).entries().unwrap() {
        let entry = entry.unwrap();
        assert_eq!(entry.header().mtime().unwrap(), 0);
        names.push(entry.path().unwrap().to_string_lossy().into_owned());
    }
    for expected in ["bin/", "bin/busybox", "bin/sh", "etc/motd", "tmp/"] {
        assert!(
            names.iter().any(|n| n == expected),
            "{expected} missing from {names:?}"
        );
    }
    assert!(!names.iter().any(|n| n == "etc/passwd"));
    assert_eq!(fs::read_dir(dir.path().join("scratch")).unwrap().count(), 0);
}

#[test]
fn docker_media_type_archive_is_read_by_skopeo() {
    let skopeo = require_tool("skopeo", "skopeo");
    let dir = tempfile::tempdir().unwrap();
    let (store, image) = image(&dir.path().join("state"));
    let path = dir.path().join("img.tar");
    let mut file = fs::File::create(&path).unwrap();
    let manifest = export_image_archive(
        &store,
        &image,
        &["rbuild-test/exported".into()],
        true,
        0,
        &mut file,
    )
    .unwrap();
    drop(file);
    let out = Command::new(skopeo)
        .arg("inspect")
        .arg("--raw")
        .arg(format!("oci-archive:{}", path.display()))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let raw: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(raw["mediaType"], rbuild_oci::media_types::DOCKER_MANIFEST);
    assert_eq!(
        raw["layers"][1]["mediaType"],
        rbuild_oci::media_types::DOCKER_LAYER_GZIP
    );
    let docker = Command::new(require_tool("skopeo", "skopeo"))
        .arg("inspect")
        .arg(format!("docker-archive:{}", path.display()))
        .output()
        .unwrap();
    assert!(
        docker.status.success(),
        "{}",
        String::from_utf8_lossy(&docker.stderr)
    );
    let info: serde_json::Value = serde_json::from_slice(&docker.stdout).unwrap();
    assert_eq!(info["Layers"].as_array().unwrap().len(), 2);
    // docker load reads the tag from manifest.json; a name without a tag gets `:latest`.
    let mut archive = tar::Archive::new(fs::File::open(&path).unwrap());
    let entry = archive
        .entries()
        .unwrap()
        .map(|e| e.unwrap())
        .find(|e| e.path().unwrap().to_str() == Some("manifest.json"))
        .unwrap();
    let docker_manifest: serde_json::Value = serde_json::from_reader(entry).unwrap();
    assert_eq!(
        docker_manifest[0]["RepoTags"][0],
        "rbuild-test/exported:latest"
    );
    assert!(manifest.to_string().starts_with("sha256:"));
}
