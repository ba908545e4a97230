//! `rbuild build --load` and `-o type=docker` (no dest) into real engines through the Engine
//! API: a private dockerd and Podman's API service, each started by the test; the loaded image
//! is then run by that engine.

use std::path::Path;
use std::process::{Command, Output, Stdio};

use rbuild_test::{Dockerd, PodmanService};

fn rbuild(root: &Path, args: &[&str], docker_host: &str) -> Output {
    Command::new(env!("CARGO_BIN_EXE_rbuild"))
        .arg("--root")
        .arg(root)
        .args(args)
        .env("NO_COLOR", "1")
        .env("DOCKER_HOST", docker_host)
        .stdin(Stdio::null())
        .output()
        .expect("rbuild runs")
}

fn ok(root: &Path, args: &[&str], docker_host: &str) -> String {
    let out = rbuild(root, args, docker_host);
    assert!(
        out.status.success(),
        "rbuild {args:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A state root with the golden busybox base, and a two-stage app on it printing `message`.
fn setup(dir: &Path, message: &str) -> (std::path::PathBuf, std::path::PathBuf) {
    let root = dir.join("root");
    let base = rbuild_test::golden_base("busybox-oci.tar");
    ok(
        &root,
        &["load", "-i", base.to_str().expect("utf-8")],
        "unix:///nonexistent",
    );
    let ctx = dir.join("app");
    std::fs::create_dir_all(&ctx).expect("mkdir");
    std::fs::write(
        ctx.join("Dockerfile"),
        format!("FROM rbuild-test/busybox:1 AS b\nRUN echo '{message}' > /msg\nFROM rbuild-test/busybox:1\nCOPY --from=b /msg /msg\nCMD [\"cat\", \"/msg\"]\n"),
    )
    .expect("Dockerfile");
    (root, ctx)
}

#[test]
fn load_into_dockerd_and_run_there() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (root, ctx) = setup(dir.path(), "loaded into dockerd");
    let dockerd = Dockerd::start();
    let log = ok(
        &root,
        &[
            "build",
            "--progress",
            "plain",
            "-t",
            "rbuild-e2e/app:1",
            "-t",
            "rbuild-e2e/app:latest",
            "--load",
            ctx.to_str().expect("utf-8"),
        ],
        &dockerd.host(),
    );
    assert!(
        log.contains("engine: Loaded image: rbuild-e2e/app:1"),
        "{log}"
    );
    let images = dockerd.docker_ok(&["images", "--format", "{{.Repository}}:{{.Tag}}"]);
    assert!(images.contains("rbuild-e2e/app:1"), "{images}");
    assert!(
        images.contains("rbuild-e2e/app:latest"),
        "every -t is a tag: {images}"
    );
    let out = dockerd.docker_ok(&["run", "--rm", "--network", "none", "rbuild-e2e/app:1"]);
    assert_eq!(out, "loaded into dockerd\n");
}

#[test]
fn load_into_podman_and_run_there() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (root, ctx) = setup(dir.path(), "loaded into podman");
    let podman = PodmanService::start();
    let log = ok(
        &root,
        &[
            "build",
            "--progress",
            "plain",
            "-t",
            "rbuild-e2e/app:2",
            "-o",
            "type=docker",
            ctx.to_str().expect("utf-8"),
        ],
        &podman.host(),
    );
    assert!(log.contains("engine: Loaded image"), "{log}");
    assert_eq!(podman.run_ok("rbuild-e2e/app:2"), "loaded into podman\n");
}

#[test]
fn an_engine_that_is_not_there_is_a_clear_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (root, ctx) = setup(dir.path(), "nowhere");
    let sock = dir.path().join("no.sock");
    let out = rbuild(
        &root,
        &["build", "-q", "--load", ctx.to_str().expect("utf-8")],
        &format!("unix://{}", sock.display()),
    );
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("cannot connect to the engine at unix://"),
        "{err}"
    );
    assert!(err.contains("DOCKER_HOST"), "{err}");
}
