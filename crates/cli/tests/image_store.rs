//! `rbuild load`, `images`, `save`, `rmi` with a state root of the test's own.

use std::path::Path;
use std::process::{Command, Output, Stdio};

use rbuild_test::golden_base as golden;

fn rbuild(root: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_rbuild"))
        .arg("--root")
        .arg(root)
        .args(args)
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .output()
        .expect("rbuild runs")
}

fn ok(root: &Path, args: &[&str]) -> String {
    let out = rbuild(root, args);
    assert!(
        out.status.success(),
        "rbuild {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn load_list_save_reload_and_remove() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().join("root");
    let oci = golden("busybox-oci.tar");
    assert_eq!(
        ok(&root, &["load", "-i", oci.to_str().expect("utf-8")]),
        "Loaded image: rbuild-test/busybox:1\n"
    );
    let listing = ok(&root, &["images"]);
    assert!(
        listing
            .lines()
            .any(|l| l.starts_with("rbuild-test/busybox:1 ")),
        "{listing}"
    );

    let saved = dir.path().join("saved.tar");
    ok(
        &root,
        &[
            "save",
            "rbuild-test/busybox:1",
            "-o",
            saved.to_str().expect("utf-8"),
        ],
    );
    let other = dir.path().join("other");
    assert_eq!(
        ok(&other, &["load", "-i", saved.to_str().expect("utf-8")]),
        "Loaded image: rbuild-test/busybox:1\n"
    );
    let manifest = |root: &Path| {
        let record = std::fs::read_to_string(
            root.join("images-v1/docker.io%2Frbuild-test%2Fbusybox%3A1.json"),
        )
        .expect("record");
        let v: serde_json::Value = serde_json::from_str(&record).expect("json");
        v["manifest"].as_str().expect("digest").to_string()
    };
    assert_eq!(
        manifest(&root),
        manifest(&other),
        "a save/load round trip keeps the manifest"
    );

    assert_eq!(
        ok(&root, &["rmi", "rbuild-test/busybox:1"]),
        "Untagged: rbuild-test/busybox:1\n"
    );
    let out = rbuild(&root, &["save", "rbuild-test/busybox:1", "-o", "/dev/null"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("No image named `rbuild-test/busybox:1`"));
}

#[test]
fn loads_docker_save_archives_and_honours_rbuild_root() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = Command::new(env!("CARGO_BIN_EXE_rbuild"))
        .args(["load", "-i"])
        .arg(golden("docker-save.tar"))
        .env("RBUILD_ROOT", dir.path())
        .output()
        .expect("rbuild runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "Loaded image: rbuild-test/busybox:1\n"
    );
    assert!(dir.path().join("content-v1/sha256").is_dir());
}

#[test]
fn loading_something_else_is_a_clear_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let junk = dir.path().join("junk.txt");
    std::fs::write(
        &junk,
        "not a tar at all, just some text that is long enough to fill a header block ".repeat(10),
    )
    .expect("write");
    let out = rbuild(
        &dir.path().join("root"),
        &["load", "-i", junk.to_str().expect("utf-8")],
    );
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("expected an OCI image layout or docker-archive tar"),
        "{err}"
    );
}

#[test]
fn save_streams_to_stdout() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().join("root");
    ok(
        &root,
        &[
            "load",
            "-i",
            golden("busybox-oci.tar").to_str().expect("utf-8"),
        ],
    );
    let file = dir.path().join("saved.tar");
    ok(
        &root,
        &[
            "save",
            "rbuild-test/busybox:1",
            "-o",
            file.to_str().expect("utf-8"),
        ],
    );
    let streamed = rbuild(&root, &["save", "rbuild-test/busybox:1", "-o", "-"]);
    assert!(streamed.status.success());
    assert_eq!(
        streamed.stdout,
        std::fs::read(&file).expect("saved"),
        "stdout and file exports are identical"
    );
}
