//! The system's tar, gzip and zstd read our layers.

use std::io::Write;
use std::process::{Command, Stdio};

use super::*;

/// Runs `cmd args` with `input` on stdin; its stdout.
fn run(cmd: &str, args: &[&str], input: &[u8]) -> Vec<u8> {
    let mut child = Command::new(cmd)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("`{cmd}` is needed by this test: {e}"));
    let mut stdin = child.stdin.take().unwrap();
    let input = input.to_vec();
    let feeder = std::thread::spawn(move || stdin.write_all(&input));
    let out = child.wait_with_output().unwrap();
    feeder.join().unwrap().unwrap();
    assert!(
        out.status.success(),
        "`{cmd} {args:?}` failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

fn sample_tree(root: &Path) {
    let long = format!("{}/{}", "p".repeat(150), "q".repeat(150));
    write(&root.join(&long), b"long");
    write(&root.join("bin/tool"), b"#!/bin/sh\necho hi\n");
    std::fs::hard_link(root.join("bin/tool"), root.join("bin/tool2")).unwrap();
    std::os::unix::fs::symlink("tool", root.join("bin/alias")).unwrap();
    whiteout(&root.join("removed"));
    mixed_tree(root, 40, 40 * 1024);
}

#[test]
fn system_tar_lists_the_layer() {
    let tmp = tempdir();
    sample_tree(tmp.path());
    let (_, blob) = layer(
        tmp.path(),
        SourceKind::OverlayUpper,
        &options(Compression::Uncompressed, 1),
    );
    let listing = String::from_utf8(run("tar", &["-tvf", "-"], &blob)).unwrap();
    let long = format!("{}/{}", "p".repeat(150), "q".repeat(150));
    assert!(listing.contains(&long), "{listing}");
    assert!(listing.contains("bin/tool2 link to bin/tool"), "{listing}");
    assert!(listing.contains("bin/alias -> tool"), "{listing}");
    assert!(listing.contains(".wh.removed"), "{listing}");
    let names = String::from_utf8(run("tar", &["-tf", "-"], &blob)).unwrap();
    let ours: Vec<String> = entries(&blob).into_iter().map(|i| i.path).collect();
    assert_eq!(names.lines().collect::<Vec<_>>(), ours);
}

#[test]
fn gzip_blob_is_one_valid_member_that_gunzips_to_the_diff_id() {
    let tmp = tempdir();
    sample_tree(tmp.path());
    for level in [0, 1, 6, 9] {
        let (desc, blob) = layer(
            tmp.path(),
            SourceKind::OverlayUpper,
            &options(Compression::Gzip { level }, 3),
        );
        run("gzip", &["-t"], &blob);
        let tar = run("gzip", &["-dc"], &blob);
        assert_eq!(
            rbuild_digest::Digest::of(&tar),
            desc.diff_id,
            "level {level}"
        );
        // A single member: the non-multi-member decoder reads all of it.
        let flate = decompress(&blob, Compression::Gzip { level });
        assert_eq!(flate, tar);
        let mut multi = Vec::new();
        std::io::Read::read_to_end(
            &mut flate2::read::MultiGzDecoder::new(&blob[..]),
            &mut multi,
        )
        .unwrap();
        assert_eq!(multi, tar);
    }
}

#[test]
fn zstd_blob_passes_zstd_test() {
    let tmp = tempdir();
    sample_tree(tmp.path());
    let (desc, blob) = layer(
        tmp.path(),
        SourceKind::OverlayUpper,
        &options(Compression::Zstd { level: 3 }, 2),
    );
    run("zstd", &["-t", "-q"], &blob);
    let tar = run("zstd", &["-dc"], &blob);
    assert_eq!(rbuild_digest::Digest::of(&tar), desc.diff_id);
}
