//! The `rbuild debug` commands, run as a user runs them.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};

fn rbuild(args: &[&str], stdin: Option<&str>) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_rbuild"))
        .args(args)
        .env("NO_COLOR", "1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("rbuild starts");
    if let Some(text) = stdin {
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(text.as_bytes())
            .expect("write stdin");
    }
    drop(child.stdin.take());
    child.wait_with_output().expect("rbuild finishes")
}

fn write_dockerfile(dir: &Path, text: &str) -> String {
    let path = dir.join("Dockerfile");
    std::fs::write(&path, text).expect("write Dockerfile");
    path.to_string_lossy().into_owned()
}

#[test]
fn dump_ast_prints_buildkit_format() {
    let out = rbuild(
        &["debug", "dump-ast", "-"],
        Some("FROM a AS b\nCOPY --from=b x /y\nONBUILD RUN t\n"),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "(from \"a\" \"AS\" \"b\")\n(copy [\"--from=b\"] \"x\" \"/y\")\n(onbuild (run \"t\"))\n"
    );
}

#[test]
fn parse_error_is_located_with_caret_and_expectation() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = write_dockerfile(dir.path(), "FROM a\nCMD [\"x\", 1]\n");
    let out = rbuild(&["debug", "dump-ast", &file], None);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&format!("{file}:2:5")), "{err}");
    assert!(err.contains("CMD [\"x\", 1]"), "{err}");
    assert!(err.contains('^'), "{err}");
    assert!(err.contains("expected"), "{err}");
    assert!(out.stdout.is_empty());
}

#[test]
fn unknown_flag_is_an_error_naming_the_flag() {
    let out = rbuild(
        &["debug", "stages", "-"],
        Some("FROM a\nCOPY --form=x a b\n"),
    );
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("Unknown flag `--form` for COPY"), "{err}");
    assert!(err.contains("<stdin>:2:6"), "{err}");
}

#[test]
fn stages_json_with_build_args_and_target() {
    let text = "ARG V=1\nFROM busybox:$V AS one\nARG V\nRUN echo $V\nFROM scratch AS two\nCOPY --from=one /a /a\nFROM scratch AS three\n";
    let out = rbuild(
        &[
            "debug",
            "stages",
            "--build-arg",
            "V=2",
            "--target",
            "two",
            "-",
        ],
        Some(text),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let plan: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(plan["target"], 1);
    assert_eq!(plan["order"], serde_json::json!([0, 1]));
    assert_eq!(plan["stages"][0]["base"]["reference"], "busybox:2");
    assert_eq!(plan["stages"][2]["needed"], false);
    let run = &plan["stages"][0]["steps"][1];
    assert_eq!(run["instruction"], "RUN");
    assert!(run["state"]["env"]
        .as_array()
        .expect("env")
        .contains(&serde_json::json!(["V", "2"])));
}

#[test]
fn missing_target_lists_the_stages() {
    let out = rbuild(
        &["debug", "stages", "--target", "nope", "-"],
        Some("FROM scratch AS a\n"),
    );
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("Target stage `nope` could not be found"),
        "{err}"
    );
    assert!(err.contains("`a`"), "{err}");
}

#[test]
fn bundled_example_resolves() {
    let example =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../testdata/examples/hello/Dockerfile");
    let out = rbuild(
        &["debug", "stages", example.to_str().expect("utf-8 path")],
        None,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let plan: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(plan["order"], serde_json::json!([0, 1]));
}

#[test]
fn missing_file_is_a_clear_error() {
    let out = rbuild(&["debug", "dump-ast", "/nonexistent/Dockerfile"], None);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("Failed to read the Dockerfile `/nonexistent/Dockerfile`"),
        "{err}"
    );
}

fn touch(root: &Path, rel: &str) {
    let path = root.join(rel);
    std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
    std::fs::write(path, rel).expect("write");
}

fn context_listing(args: &[&str]) -> Vec<String> {
    let out = rbuild(args, None);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}

#[test]
fn context_honours_dockerignore_with_exceptions() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path();
    for rel in [
        "Dockerfile",
        "src/main.rs",
        "docs/a.md",
        "docs/README.md",
        "target/x/y.o",
        "node_modules/m/i.js",
    ] {
        touch(root, rel);
    }
    std::fs::write(
        root.join(".dockerignore"),
        "# build output\ntarget\n/node_modules/\ndocs/*.md\n!docs/README.md\n",
    )
    .expect("write ignore");
    let ctx = root.to_str().expect("utf-8");
    assert_eq!(
        context_listing(&["debug", "context", ctx]),
        [
            ".dockerignore",
            "Dockerfile",
            "docs",
            "docs/README.md",
            "src",
            "src/main.rs"
        ]
    );
}

#[test]
fn dockerfile_specific_ignore_file_wins() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path();
    for rel in ["app.Dockerfile", "a.txt", "b.txt"] {
        touch(root, rel);
    }
    std::fs::write(root.join(".dockerignore"), "a.txt\n").expect("write ignore");
    std::fs::write(root.join("app.Dockerfile.dockerignore"), "b.txt\n").expect("write ignore");
    let ctx = root.to_str().expect("utf-8");
    let file = root.join("app.Dockerfile");
    let listing = context_listing(&["debug", "context", "-f", file.to_str().expect("utf-8"), ctx]);
    assert!(listing.contains(&"a.txt".to_string()), "{listing:?}");
    assert!(!listing.contains(&"b.txt".to_string()), "{listing:?}");
}

#[test]
fn bad_ignore_pattern_is_an_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join(".dockerignore"), "ok\n[\n").expect("write ignore");
    let out = rbuild(
        &["debug", "context", dir.path().to_str().expect("utf-8")],
        None,
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("Invalid ignore file"));
}
