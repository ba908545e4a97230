//! Hostile archives: each must fail or be neutralised into the root, with the canary next to
//! the root (and a few host paths) untouched.

use std::fs;
use std::os::unix::fs::MetadataExt;

use tar::EntryType;

use super::*;

fn passwd_links() -> u64 {
    fs::metadata("/etc/passwd").map(|m| m.nlink()).unwrap_or(0)
}

/// Applies `layer` in both modes (each in a fresh sandbox) and returns the results.
fn both_modes(layer: &[u8]) -> Vec<(Sandbox, Result<ApplyStats, ApplyError>)> {
    [ApplyMode::Flatten, ApplyMode::OverlayLayer]
        .into_iter()
        .map(|mode| {
            let sandbox = Sandbox::new();
            let result = sandbox.apply(layer, mode);
            sandbox.assert_contained();
            (sandbox, result)
        })
        .collect()
}

#[test]
fn dot_dot_above_root_is_an_error() {
    for name in ["../escape", "a/../../x", "/../escape", "./../x"] {
        let layer = Layer::new()
            .raw(EntryType::Regular, name, "", b"pwned")
            .finish();
        for (_, result) in both_modes(&layer) {
            assert!(
                matches!(result, Err(ApplyError::Escape { .. })),
                "{name}: {result:?}"
            );
        }
    }
}

#[test]
fn absolute_and_inner_dot_dot_paths_are_neutralised_into_the_root() {
    let layer = Layer::new()
        .raw(EntryType::Regular, "/abs/path", "", b"in root")
        .raw(EntryType::Regular, "a/../b", "", b"cleaned")
        .finish();
    for (sandbox, result) in both_modes(&layer) {
        result.unwrap();
        assert_eq!(
            fs::read_to_string(sandbox.path("abs/path")).unwrap(),
            "in root"
        );
        assert_eq!(fs::read_to_string(sandbox.path("b")).unwrap(), "cleaned");
        assert_eq!(file_type(&sandbox.path("a")), "missing");
    }
}

#[test]
fn writes_through_a_symlink_to_slash_stay_in_the_root() {
    let layer = Layer::new()
        .raw(EntryType::Symlink, "l", "/", b"")
        .raw(EntryType::Regular, "l/etc/x", "", b"pwned")
        .raw(EntryType::Regular, "l/pwned", "", b"pwned")
        .finish();
    for (sandbox, result) in both_modes(&layer) {
        result.unwrap();
        assert_eq!(fs::read_to_string(sandbox.path("etc/x")).unwrap(), "pwned");
        assert_eq!(fs::read_to_string(sandbox.path("pwned")).unwrap(), "pwned");
    }
}

#[test]
fn writes_through_symlinks_to_the_canary_stay_in_the_root() {
    // Each sandbox has its own canary path, so each archive is built for its sandbox.
    for mode in [ApplyMode::Flatten, ApplyMode::OverlayLayer] {
        let sandbox = Sandbox::new();
        let canary = sandbox.canary.to_str().unwrap().to_owned();
        let relative = "../canary";
        let layer = Layer::new()
            .raw(EntryType::Symlink, "abs", &canary, b"")
            .raw(EntryType::Regular, "abs/pwned", "", b"pwned")
            .raw(EntryType::Symlink, "up", "../../../../../../..", b"")
            .raw(EntryType::Regular, "up/x", "", b"pwned")
            .raw(EntryType::Symlink, "rel", relative, b"")
            .raw(EntryType::Regular, "rel/pwned", "", b"pwned")
            // chain: c1 -> c2 -> c3 -> ../canary
            .raw(EntryType::Symlink, "c3", relative, b"")
            .raw(EntryType::Symlink, "c2", "c3", b"")
            .raw(EntryType::Symlink, "c1", "./c2/", b"")
            .raw(EntryType::Regular, "c1/sub/file", "", b"pwned")
            .finish();
        sandbox.apply(&layer, mode).unwrap();
        sandbox.assert_contained();
        let inside = sandbox.canary_in_root();
        assert_eq!(fs::read_to_string(inside.join("pwned")).unwrap(), "pwned");
        assert_eq!(fs::read_to_string(sandbox.path("x")).unwrap(), "pwned");
        assert_eq!(
            fs::read_to_string(sandbox.path("canary/pwned")).unwrap(),
            "pwned"
        );
        assert_eq!(
            fs::read_to_string(sandbox.path("canary/sub/file")).unwrap(),
            "pwned"
        );
    }
}

#[test]
fn a_symlink_replacing_a_directory_is_not_written_through() {
    for mode in [ApplyMode::Flatten, ApplyMode::OverlayLayer] {
        let sandbox = Sandbox::new();
        let canary = sandbox.canary.to_str().unwrap().to_owned();
        let layer = Layer::new()
            .raw(EntryType::Directory, "d/", "", b"")
            .raw(EntryType::Regular, "d/f", "", b"first")
            .raw(EntryType::Symlink, "d", &canary, b"")
            .raw(EntryType::Regular, "d/secret.txt", "", b"pwned")
            .raw(EntryType::Symlink, "f", &format!("{canary}/sub/file"), b"")
            .raw(EntryType::Regular, "f", "", b"replaces the symlink")
            .finish();
        sandbox.apply(&layer, mode).unwrap();
        sandbox.assert_contained();
        assert_eq!(file_type(&sandbox.path("d")), "symlink");
        let inside = sandbox.canary_in_root();
        assert_eq!(
            fs::read_to_string(inside.join("secret.txt")).unwrap(),
            "pwned"
        );
        assert_eq!(file_type(&sandbox.path("f")), "file");
    }
}

#[test]
fn hardlinks_cannot_reach_outside() {
    let passwd = passwd_links();
    for target in [
        "../outside",
        "a/../../outside",
        "/etc/passwd",
        "etc/passwd",
        "",
        "/",
    ] {
        let layer = Layer::new().raw(EntryType::Link, "h", target, b"").finish();
        for (sandbox, result) in both_modes(&layer) {
            assert!(result.is_err(), "hardlink to {target:?} was accepted");
            assert_eq!(file_type(&sandbox.path("h")), "missing");
        }
    }
    assert_eq!(passwd_links(), passwd, "/etc/passwd gained a link");
}

#[test]
fn hardlinks_through_symlinks_resolve_in_the_root() {
    let passwd = passwd_links();
    for mode in [ApplyMode::Flatten, ApplyMode::OverlayLayer] {
        let sandbox = Sandbox::new();
        let canary = sandbox.canary.to_str().unwrap().to_owned();
        let layer = Layer::new()
            .raw(EntryType::Symlink, "l", &canary, b"")
            .raw(EntryType::Link, "h", "l/secret.txt", b"")
            .finish();
        let error = sandbox.apply(&layer, mode).unwrap_err();
        assert!(error.to_string().contains("hardlink"), "{error}");
        sandbox.assert_contained();
        let layer = Layer::new()
            .raw(EntryType::Symlink, "etc", "/etc", b"")
            .raw(EntryType::Link, "p", "etc/passwd", b"")
            .finish();
        assert!(Sandbox::new().apply(&layer, mode).is_err());
        // A hardlink to a symlink links the symlink itself.
        let layer = Layer::new()
            .raw(EntryType::Symlink, "l", &canary, b"")
            .raw(EntryType::Link, "h", "l", b"")
            .finish();
        let sandbox = Sandbox::new();
        sandbox.apply(&layer, mode).unwrap();
        assert_eq!(file_type(&sandbox.path("h")), "symlink");
        sandbox.assert_contained();
    }
    assert_eq!(passwd_links(), passwd);
}

#[test]
fn whiteouts_cannot_delete_outside() {
    for name in ["../.wh.canary", "a/../../.wh.x"] {
        let layer = Layer::new().raw(EntryType::Regular, name, "", b"").finish();
        for (_, result) in both_modes(&layer) {
            assert!(
                matches!(result, Err(ApplyError::Escape { .. })),
                "{name}: {result:?}"
            );
        }
    }
    for mode in [ApplyMode::Flatten, ApplyMode::OverlayLayer] {
        let sandbox = Sandbox::new();
        let canary = sandbox.canary.to_str().unwrap().to_owned();
        let layer = Layer::new()
            .raw(EntryType::Symlink, "l", &canary, b"")
            .raw(EntryType::Regular, "l/.wh.secret.txt", "", b"")
            .raw(EntryType::Regular, "l/.wh..wh..opq", "", b"")
            .raw(EntryType::Symlink, "up", "../..", b"")
            .raw(EntryType::Regular, "up/.wh.canary", "", b"")
            .raw(EntryType::Regular, "up/.wh..wh..opq", "", b"")
            .finish();
        sandbox.apply(&layer, mode).unwrap();
        sandbox.assert_contained();
    }
}

#[test]
fn devices_are_refused_unless_allowed() {
    for kind in [EntryType::Char, EntryType::Block] {
        let layer = Layer::new().raw(kind, "dev/sda", "", b"").finish();
        for (sandbox, result) in both_modes(&layer) {
            let error = result.unwrap_err();
            assert!(matches!(error, ApplyError::Device { .. }), "{error}");
            assert!(error.to_string().contains("dev/sda"), "{error}");
            assert_eq!(file_type(&sandbox.path("dev/sda")), "missing");
        }
    }
}

#[test]
fn the_root_itself_is_never_replaced() {
    let layer = Layer::new()
        .raw(EntryType::Directory, "./", "", b"")
        .raw(EntryType::Symlink, "/", "/etc", b"")
        .raw(EntryType::Regular, ".", "", b"file")
        .raw(EntryType::Regular, "a/..", "", b"file")
        .raw(EntryType::Regular, ".wh..wh..opq", "", b"")
        .finish();
    for (sandbox, result) in both_modes(&layer) {
        result.unwrap();
        assert_eq!(file_type(&sandbox.root), "dir");
        let mode = fs::metadata(&sandbox.root).unwrap().mode() & 0o7777;
        assert_eq!(mode, 0o755, "root re-moded");
    }
}

#[test]
fn nul_bytes_and_unknown_types_are_errors() {
    let layer = Layer::new()
        .pax(&[("path", b"a\0b")])
        .entry(EntryType::Regular, "x", b"", |_| {})
        .finish();
    let sandbox = Sandbox::new();
    assert!(sandbox.apply(&layer, ApplyMode::Flatten).is_err());
    fs::write(sandbox.path("unknown"), "kept").unwrap();
    let layer = Layer::new()
        .raw(EntryType::new(b'Z'), "unknown", "", b"")
        .finish();
    let error = sandbox.apply(&layer, ApplyMode::Flatten).unwrap_err();
    assert!(
        matches!(error, ApplyError::UnsupportedType { .. }),
        "{error}"
    );
    assert_eq!(fs::read_to_string(sandbox.path("unknown")).unwrap(), "kept");
    sandbox.assert_contained();
}

#[test]
fn removals_unlink_symlinks_instead_of_following_them() {
    for mode in [ApplyMode::Flatten, ApplyMode::OverlayLayer] {
        let sandbox = Sandbox::new();
        let canary = sandbox.canary.to_str().unwrap().to_owned();
        let mut deep = String::from("gone");
        let mut base = Layer::new();
        for _ in 0..10 {
            base = base
                .raw(
                    EntryType::Symlink,
                    &format!("{deep}/to-canary"),
                    &canary,
                    b"",
                )
                .raw(
                    EntryType::Symlink,
                    &format!("{deep}/up"),
                    "../../../../..",
                    b"",
                );
            deep.push_str("/d");
        }
        let base = base
            .dir("opaque", 0o755)
            .symlink("opaque/to-canary", &canary)
            .symlink("opaque/to-secret", &format!("{canary}/secret.txt"))
            .symlink("file-over-dir/link", &canary)
            .finish();
        sandbox.apply(&base, mode).unwrap();
        let top = Layer::new()
            .file(".wh.gone", "", 0o644)
            .file("opaque/.wh..wh..opq", "", 0o644)
            .file("file-over-dir", "now a file", 0o644)
            .finish();
        sandbox.apply(&top, mode).unwrap();
        sandbox.assert_contained();
        if mode == ApplyMode::Flatten {
            assert_eq!(file_type(&sandbox.path("gone")), "missing");
            assert_eq!(file_type(&sandbox.path("opaque/to-canary")), "missing");
        }
        assert_eq!(file_type(&sandbox.path("file-over-dir")), "file");
    }
}
