//! Whiteouts and opaque directories in both modes.

use std::fs;
use std::os::unix::fs::MetadataExt;

use tar::EntryType;

use super::*;

fn base() -> Vec<u8> {
    Layer::new()
        .dir("d", 0o755)
        .file("d/old", "old", 0o644)
        .dir("d/sub", 0o755)
        .file("d/sub/old", "old", 0o644)
        .file("gone", "x", 0o644)
        .dir("gonedir", 0o755)
        .file("gonedir/x", "x", 0o644)
        .symlink("gonelink", "/d")
        .finish()
}

#[test]
fn flatten_whiteouts_delete_recursively_and_leave_no_marker() {
    let sandbox = Sandbox::new();
    sandbox.apply(&base(), ApplyMode::Flatten).unwrap();
    let layer = Layer::new()
        .file(".wh.gone", "", 0o644)
        .file(".wh.gonedir", "", 0o644)
        .file(".wh.gonelink", "", 0o644)
        .file("d/.wh.never-existed", "", 0o644)
        .file("nowhere/.wh.x", "", 0o644)
        .finish();
    let stats = sandbox.apply(&layer, ApplyMode::Flatten).unwrap();
    assert_eq!(stats.entries, 5);
    for gone in [
        "gone",
        "gonedir",
        "gonelink",
        ".wh.gone",
        "nowhere",
        "d/.wh.never-existed",
    ] {
        assert_eq!(file_type(&sandbox.path(gone)), "missing", "{gone}");
    }
    assert_eq!(fs::read_to_string(sandbox.path("d/old")).unwrap(), "old");
    sandbox.assert_contained();
}

#[test]
fn flatten_opaque_first_hides_everything_older() {
    let sandbox = Sandbox::new();
    sandbox.apply(&base(), ApplyMode::Flatten).unwrap();
    let layer = Layer::new()
        .dir("d", 0o755)
        .file("d/.wh..wh..opq", "", 0o644)
        .file("d/new", "new", 0o644)
        .finish();
    sandbox.apply(&layer, ApplyMode::Flatten).unwrap();
    let mut names: Vec<_> = fs::read_dir(sandbox.path("d"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["new"]);
}

#[test]
fn flatten_opaque_after_entries_keeps_that_layers_entries() {
    let sandbox = Sandbox::new();
    sandbox.apply(&base(), ApplyMode::Flatten).unwrap();
    let layer = Layer::new()
        .file("d/new", "new", 0o644)
        .file("d/sub/newer", "newer", 0o644)
        .file("d/.wh..wh..opq", "", 0o644)
        .finish();
    sandbox.apply(&layer, ApplyMode::Flatten).unwrap();
    assert_eq!(fs::read_to_string(sandbox.path("d/new")).unwrap(), "new");
    assert_eq!(
        fs::read_to_string(sandbox.path("d/sub/newer")).unwrap(),
        "newer"
    );
    assert_eq!(file_type(&sandbox.path("d/old")), "missing");
    assert_eq!(
        file_type(&sandbox.path("d/sub/old")),
        "missing",
        "older content of a kept dir"
    );
    assert_eq!(file_type(&sandbox.path("d/.wh..wh..opq")), "missing");
    assert_eq!(
        file_type(&sandbox.path("gone")),
        "file",
        "outside the opaque dir"
    );
}

#[test]
fn overlay_layer_writes_overlayfs_whiteouts() {
    let sandbox = Sandbox::new();
    let layer = Layer::new()
        .dir("d", 0o755)
        .file("d/.wh..wh..opq", "", 0o644)
        .file("d/kept", "k", 0o644)
        .file(".wh.gone", "", 0o644)
        .file("e/.wh.implied", "", 0o644)
        .file(".wh..wh.plnk/123", "aufs", 0o644)
        .file(".wh..wh.aufs", "", 0o644)
        .finish();
    let stats = sandbox.apply(&layer, ApplyMode::OverlayLayer).unwrap();
    assert_eq!(stats.entries, 7);
    for (path, ty) in [("gone", "char"), ("e/implied", "char"), ("d/kept", "file")] {
        assert_eq!(file_type(&sandbox.path(path)), ty, "{path}");
    }
    let gone = fs::symlink_metadata(sandbox.path("gone")).unwrap();
    assert_eq!((gone.rdev(), gone.uid(), gone.gid()), (0, 0, 0));
    let mut value = [0u8; 8];
    let n =
        rustix::fs::getxattr(sandbox.path("d"), "trusted.overlay.opaque", &mut value[..]).unwrap();
    assert_eq!(&value[..n], b"y");
    for absent in ["d/.wh..wh..opq", ".wh.gone", ".wh..wh.plnk", ".wh..wh.aufs"] {
        assert_eq!(file_type(&sandbox.path(absent)), "missing", "{absent}");
    }
    sandbox.assert_contained();
}

#[test]
fn overlay_whiteout_replaces_an_entry_of_the_same_layer() {
    let sandbox = Sandbox::new();
    let layer = Layer::new()
        .file("x", "x", 0o644)
        .file(".wh.x", "", 0o644)
        .finish();
    sandbox.apply(&layer, ApplyMode::OverlayLayer).unwrap();
    assert_eq!(file_type(&sandbox.path("x")), "char");
}

#[test]
fn whiteouts_of_dot_names_are_invalid() {
    for name in [".wh..", ".wh.", "d/.wh.."] {
        let sandbox = Sandbox::new();
        let layer = Layer::new().raw(EntryType::Regular, name, "", b"").finish();
        for mode in [ApplyMode::Flatten, ApplyMode::OverlayLayer] {
            let error = sandbox.apply(&layer, mode).unwrap_err();
            assert!(
                matches!(error, ApplyError::InvalidPath { .. }),
                "{name}: {error}"
            );
        }
        sandbox.assert_contained();
    }
}
