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
