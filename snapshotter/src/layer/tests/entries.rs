//! What each kind of inode becomes in the tar.

use std::fs;
use std::os::unix::fs::{lchown, symlink, PermissionsExt};

use rustix::fs::FileType;
use tar::EntryType;

use super::*;

#[test]
fn overlay_whiteouts_and_opaque_dirs_are_converted() {
    let tmp = tempdir();
    let up = tmp.path();
    whiteout(&up.join("gone"));
    fs::create_dir(up.join("etc")).unwrap();
    whiteout(&up.join("etc/passwd-"));
    write(&up.join("opq/new"), b"x");
    set_xattr(&up.join("opq"), "trusted.overlay.opaque", b"y");
    write(&up.join("uopq/-first"), b"y");
    // Not a marker: overlays are mounted without userxattr, so a step setting this must not
    // be able to fake an opaque directory.
    set_xattr(&up.join("uopq"), "user.overlay.opaque", b"y");
    write(&up.join("notopq/f"), b"z");
    set_xattr(&up.join("notopq"), "trusted.overlay.opaque", b"n");
    // Whiteouts overlayfs makes may all be links to one inode: never hardlink entries.
    fs::hard_link(up.join("gone"), up.join("gone2")).unwrap();

    let infos = read_back(up, SourceKind::OverlayUpper);
    assert_eq!(
        paths(&infos),
        [
            "etc/",
            "etc/.wh.passwd-",
            ".wh.gone",
            ".wh.gone2",
            "notopq/",
            "notopq/f",
            "opq/",
            "opq/.wh..wh..opq",
            "opq/new",
            "uopq/",
            "uopq/-first",
        ]
    );
    for wh in [
        ".wh.gone",
        ".wh.gone2",
        "etc/.wh.passwd-",
        "opq/.wh..wh..opq",
    ] {
        let info = find(&infos, wh);
        assert_eq!(
            (info.kind, info.size, info.xattrs.len()),
            (EntryType::Regular, 0, 0)
        );
    }
    assert!(
        infos.iter().all(|i| i.xattrs.is_empty()),
        "overlay xattrs leaked"
    );
}

#[test]
fn plain_dirs_keep_devices_and_ignore_overlay_conventions() {
    let tmp = tempdir();
    let d = tmp.path();
    whiteout(&d.join("null0"));
    mknod(
        &d.join("sda"),
        FileType::BlockDevice,
        0o660,
        rustix::fs::makedev(8, 1),
    );
    mknod(
        &d.join("tty"),
        FileType::CharacterDevice,
        0o620,
        rustix::fs::makedev(4, 1),
    );
    mknod(&d.join("pipe"), FileType::Fifo, 0o644, 0);
    fs::set_permissions(d.join("sda"), fs::Permissions::from_mode(0o660)).unwrap();
    write(&d.join("opq/f"), b"");
    set_xattr(&d.join("opq"), "trusted.overlay.opaque", b"y");
    let _socket = std::os::unix::net::UnixListener::bind(d.join("sock")).unwrap();

    let infos = read_back(d, SourceKind::PlainDir);
    assert_eq!(
        paths(&infos),
        ["null0", "opq/", "opq/f", "pipe", "sda", "tty"]
    );
    assert_eq!(find(&infos, "null0").dev, Some((0, 0)));
    assert_eq!(find(&infos, "null0").kind, EntryType::Char);
    assert_eq!(find(&infos, "sda").dev, Some((8, 1)));
    assert_eq!(find(&infos, "sda").kind, EntryType::Block);
    assert_eq!(find(&infos, "sda").mode, 0o660);
    assert_eq!(find(&infos, "tty").dev, Some((4, 1)));
    assert_eq!(find(&infos, "pipe").kind, EntryType::Fifo);
}

#[test]
fn hardlinks_point_at_the_first_path_in_order() {
    let tmp = tempdir();
    let d = tmp.path();
    write(&d.join("b/data"), b"shared contents");
    fs::hard_link(d.join("b/data"), d.join("a")).unwrap();
    fs::hard_link(d.join("b/data"), d.join("c")).unwrap();
    write(&d.join("single"), b"one link");

    let infos = read_back(d, SourceKind::PlainDir);
    assert_eq!(paths(&infos), ["a", "b/", "b/data", "c", "single"]);
    let a = find(&infos, "a");
    assert_eq!(
        (a.kind, a.data.as_slice()),
        (EntryType::Regular, &b"shared contents"[..])
    );
    for other in ["b/data", "c"] {
        let info = find(&infos, other);
        assert_eq!(info.kind, EntryType::Link);
        assert_eq!(info.link.as_deref(), Some("a"));
        assert_eq!(info.size, 0);
    }
    assert_eq!(find(&infos, "single").kind, EntryType::Regular);
}

#[test]
fn symlinks_keep_their_target_verbatim() {
    let tmp = tempdir();
    let d = tmp.path();
    let long_target = format!("../{}/x", "t".repeat(200));
    symlink("../lib/x.so", d.join("rel")).unwrap();
    symlink("/usr/bin/env", d.join("abs")).unwrap();
    symlink("nowhere", d.join("dangling")).unwrap();
    symlink(&long_target, d.join("long")).unwrap();
    lchown(d.join("abs"), Some(7), Some(8)).unwrap();

    let infos = read_back(d, SourceKind::PlainDir);
    for (path, target) in [
        ("rel", "../lib/x.so"),
        ("abs", "/usr/bin/env"),
        ("dangling", "nowhere"),
        ("long", long_target.as_str()),
    ] {
        let info = find(&infos, path);
        assert_eq!(info.kind, EntryType::Symlink);
        assert_eq!(info.link.as_deref(), Some(target));
    }
    assert_eq!((find(&infos, "abs").uid, find(&infos, "abs").gid), (7, 8));
}

#[test]
fn special_mode_bits_and_numeric_owners() {
    let tmp = tempdir();
    let d = tmp.path();
    write(&d.join("suid"), b"#!/bin/sh\n");
    write(&d.join("sgid"), b"");
    fs::create_dir(d.join("tmp")).unwrap();
    // chown clears setuid/setgid, so it comes first.
    lchown(d.join("suid"), Some(1234), Some(5678)).unwrap();
    lchown(d.join("tmp"), Some(65534), Some(100_000)).unwrap();
    fs::set_permissions(d.join("suid"), fs::Permissions::from_mode(0o4755)).unwrap();
    fs::set_permissions(d.join("sgid"), fs::Permissions::from_mode(0o2711)).unwrap();
    fs::set_permissions(d.join("tmp"), fs::Permissions::from_mode(0o1777)).unwrap();

    let infos = read_back(d, SourceKind::PlainDir);
    let suid = find(&infos, "suid");
    assert_eq!((suid.mode, suid.uid, suid.gid), (0o4755, 1234, 5678));
    assert_eq!(find(&infos, "sgid").mode, 0o2711);
    let tmp_dir = find(&infos, "tmp/");
    assert_eq!((tmp_dir.kind, tmp_dir.mode), (EntryType::Directory, 0o1777));
    assert_eq!((tmp_dir.uid, tmp_dir.gid), (65534, 100_000));
}

#[test]
fn capability_xattr_round_trips_and_others_are_dropped() {
    let tmp = tempdir();
    let d = tmp.path();
    // vfs_cap_data v2 for cap_net_bind_service, effective: binary, with NUL bytes.
    let cap: &[u8] = &[1, 0, 0, 2, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
    write(&d.join("ping"), b"\x7fELF");
    set_xattr(&d.join("ping"), "security.capability", cap);
    set_xattr(&d.join("ping"), "user.note", b"dropped");
    set_xattr(&d.join("ping"), "trusted.overlay.origin", b"dropped");

    for kind in [SourceKind::PlainDir, SourceKind::OverlayUpper] {
        let infos = read_back(d, kind);
        let ping = find(&infos, "ping");
        assert_eq!(
            ping.xattrs,
            [("security.capability".to_string(), cap.to_vec())]
        );
        assert_eq!(ping.data, b"\x7fELF");
    }
}

#[test]
fn long_paths_use_pax() {
    let tmp = tempdir();
    let d = tmp.path();
    let rel: String = (0..5).map(|i| format!("{}{i}/", "d".repeat(48))).collect();
    let file = format!("{rel}{}", "f".repeat(50));
    assert_eq!(file.len(), 300);
    write(&d.join(&file), b"deep");

    let infos = read_back(d, SourceKind::PlainDir);
    let deep = find(&infos, &file);
    assert_eq!(deep.data, b"deep");
    assert_eq!(infos.len(), 6);
}

#[test]
fn entries_are_sorted_by_path_bytes_directories_first() {
    let tmp = tempdir();
    let d = tmp.path();
    for f in ["a/b", "a.txt", "B", "_x", "a-b", "é", "a/a/z", "z"] {
        write(&d.join(f), b"");
    }
    let infos = read_back(d, SourceKind::PlainDir);
    assert_eq!(
        paths(&infos),
        ["B", "_x", "a/", "a/a/", "a/a/z", "a/b", "a-b", "a.txt", "z", "é"]
    );
}

#[test]
fn mtimes_are_clamped_to_source_date_epoch() {
    let tmp = tempdir();
    let d = tmp.path();
    write(&d.join("old"), b"");
    write(&d.join("new/f"), b"");
    symlink("old", d.join("link")).unwrap();
    set_mtime(&d.join("old"), 1_000_000_000);
    set_mtime(&d.join("new/f"), 2_000_000_000);
    set_mtime(&d.join("new"), 2_000_000_001);
    set_mtime(&d.join("link"), 1_900_000_000);

    let infos = read_back(d, SourceKind::PlainDir);
    assert_eq!(find(&infos, "new/f").mtime, 2_000_000_000);

    let mut opts = options(Compression::Uncompressed, 1);
    opts.source_date_epoch = Some(1_500_000_000);
    let (_, blob) = layer(d, SourceKind::PlainDir, &opts);
    let infos = entries(&blob);
    assert_eq!(find(&infos, "old").mtime, 1_000_000_000);
    assert_eq!(find(&infos, "new/").mtime, 1_500_000_000);
    assert_eq!(find(&infos, "new/f").mtime, 1_500_000_000);
    assert_eq!(find(&infos, "link").mtime, 1_500_000_000);
}

#[test]
fn empty_dir_is_two_zero_blocks() {
    let tmp = tempdir();
    for compression in [
        Compression::Uncompressed,
        Compression::Gzip { level: 6 },
        Compression::Zstd { level: 3 },
    ] {
        let (desc, blob) = layer(
            tmp.path(),
            SourceKind::OverlayUpper,
            &options(compression, 0),
        );
        let tar = decompress(&blob, compression);
        assert_eq!(tar, vec![0u8; 1024]);
        assert_eq!(desc.diff_id, rbuild_digest::Digest::of(&[0u8; 1024]));
    }
}

#[test]
fn refusals_name_the_path() {
    let tmp = tempdir();
    let d = tmp.path();
    write(&d.join("file"), b"");
    let err = write_layer(
        &d.join("file"),
        SourceKind::PlainDir,
        &mut Vec::new(),
        &LayerOptions::default(),
    )
    .unwrap_err();
    assert!(matches!(err, LayerError::NotADirectory { .. }), "{err}");

    write(&d.join("src/.wh.sneaky"), b"");
    let err = write_layer(
        &d.join("src"),
        SourceKind::PlainDir,
        &mut Vec::new(),
        &LayerOptions::default(),
    )
    .unwrap_err();
    assert!(err.to_string().contains(".wh.sneaky"), "{err}");

    write(&d.join("up/meta"), b"");
    set_xattr(&d.join("up/meta"), "trusted.overlay.metacopy", b"");
    let err = write_layer(
        &d.join("up"),
        SourceKind::OverlayUpper,
        &mut Vec::new(),
        &LayerOptions::default(),
    )
    .unwrap_err();
    assert!(matches!(err, LayerError::OverlayFeature { .. }), "{err}");

    let bad = options(Compression::Gzip { level: 10 }, 1);
    let err = write_layer(d, SourceKind::PlainDir, &mut Vec::new(), &bad).unwrap_err();
    assert_eq!(
        err.to_string(),
        "Invalid gzip compression level `10` (expected 0..=9)"
    );
    assert!(Compression::from_options("zstd", Some(99)).is_err());
    assert!(Compression::from_options("lz4", None).is_err());
    assert_eq!(
        Compression::from_options("zstd", Some(19)).unwrap(),
        Compression::Zstd { level: 19 }
    );
}

/// A writer that fails once it has taken `limit` bytes.
struct Failing {
    taken: usize,
    limit: usize,
}

impl std::io::Write for Failing {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.taken >= self.limit {
            return Err(std::io::Error::other("disk full"));
        }
        let n = buf.len().min(self.limit - self.taken);
        self.taken += n;
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn a_failing_output_is_an_error_not_a_hang() {
    let tmp = tempdir();
    mixed_tree(tmp.path(), 60, 64 * 1024);
    for compression in [
        Compression::Uncompressed,
        Compression::Gzip { level: 6 },
        Compression::Zstd { level: 3 },
    ] {
        for limit in [0, 5, 100_000] {
            let mut out = Failing { taken: 0, limit };
            let err = write_layer(
                tmp.path(),
                SourceKind::PlainDir,
                &mut out,
                &options(compression, 4),
            )
            .unwrap_err();
            assert!(
                matches!(err, LayerError::Write { .. }),
                "{compression:?} {limit}: {err}"
            );
            let source = std::error::Error::source(&err).unwrap().to_string();
            assert_eq!(source, "disk full");
        }
    }
}
