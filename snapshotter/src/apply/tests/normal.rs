//! Ordinary layers: entry types, metadata, compression, replacement rules.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{MetadataExt, PermissionsExt};

use tar::EntryType;

use super::super::decompress::{decompress, Compression};
use super::*;

/// A v2 `security.capability` blob granting CAP_NET_RAW (bit 13), effective.
const CAP_NET_RAW: &[u8] = &[
    0x01, 0x00, 0x00, 0x02, 0x00, 0x20, 0x00, 0x00, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
];

fn xattr(path: &std::path::Path, name: &str) -> Option<Vec<u8>> {
    let mut buffer = vec![0u8; 256];
    let n = rustix::fs::lgetxattr(path, name, &mut buffer[..]).ok()?;
    buffer.truncate(n);
    Some(buffer)
}

fn mode(path: &std::path::Path) -> u32 {
    fs::symlink_metadata(path).unwrap().permissions().mode() & 0o7777
}

fn every_kind() -> Vec<u8> {
    Layer::new()
        .entry(EntryType::Directory, "etc/", b"", |h| {
            h.set_mode(0o750);
            h.set_uid(1000);
            h.set_gid(1001);
            h.set_mtime(1_000);
        })
        .file("etc/hosts", "127.0.0.1 localhost\n", 0o644)
        .dir("tmp", 0o1777)
        .pax(&[
            ("SCHILY.xattr.security.capability", CAP_NET_RAW),
            ("SCHILY.xattr.trusted.overlay.opaque", b"y"),
            ("SCHILY.xattr.user.note", b"hello"),
        ])
        .entry(EntryType::Regular, "bin/ping", b"\x7fELF", |h| {
            h.set_mode(0o4755);
            h.set_mtime(2_000);
        })
        .entry(EntryType::Regular, "bin/wall", b"wall", |h| {
            h.set_mode(0o2755);
            h.set_uid(1234);
            h.set_gid(5678);
        })
        .symlink("bin/sh", "/bin/busybox")
        .hardlink("bin/ping6", "bin/ping")
        .entry(EntryType::Fifo, "run/fifo", b"", |h| h.set_mode(0o600))
        .entry(EntryType::Char, "dev/null", b"", |h| {
            h.set_mode(0o666);
            h.set_device_major(1).unwrap();
            h.set_device_minor(3).unwrap();
        })
        .entry(EntryType::Block, "dev/loop0", b"", |h| {
            h.set_mode(0o660);
            h.set_device_major(7).unwrap();
            h.set_device_minor(0).unwrap();
        })
        .finish()
}

#[test]
fn every_entry_type_with_modes_owners_times_and_xattrs() {
    let sandbox = Sandbox::new();
    let layer = every_kind();
    let mut options = ApplyOptions::new(ApplyMode::Flatten);
    options.allow_devices = true;
    let stats = apply_layer(&layer[..], &sandbox.root, &options).unwrap();
    assert_eq!(stats.entries, 10);
    assert_eq!(stats.bytes, layer.len() as u64);
    assert_eq!(stats.diff_id, rbuild_digest::Digest::of(&layer));
    assert_eq!(stats.owners_not_set, 0);

    let etc = fs::symlink_metadata(sandbox.path("etc")).unwrap();
    assert_eq!(
        (etc.mode() & 0o7777, etc.uid(), etc.gid()),
        (0o750, 1000, 1001)
    );
    assert_eq!(
        etc.mtime(),
        1_000,
        "directory mtime is set after its contents"
    );
    assert_eq!(
        fs::read_to_string(sandbox.path("etc/hosts")).unwrap(),
        "127.0.0.1 localhost\n"
    );
    assert_eq!(mode(&sandbox.path("tmp")), 0o1777);

    let ping = fs::symlink_metadata(sandbox.path("bin/ping")).unwrap();
    assert_eq!(ping.mode() & 0o7777, 0o4755, "setuid survives chown");
    assert_eq!(ping.mtime(), 2_000);
    assert_eq!(ping.nlink(), 2);
    assert_eq!(
        fs::metadata(sandbox.path("bin/ping6")).unwrap().ino(),
        ping.ino()
    );
    assert_eq!(
        xattr(&sandbox.path("bin/ping"), "security.capability").unwrap(),
        CAP_NET_RAW
    );
    assert_eq!(
        xattr(&sandbox.path("bin/ping"), "user.note").unwrap(),
        b"hello"
    );
    assert_eq!(
        xattr(&sandbox.path("bin/ping"), "trusted.overlay.opaque"),
        None
    );

    let wall = fs::symlink_metadata(sandbox.path("bin/wall")).unwrap();
    assert_eq!(
        (wall.mode() & 0o7777, wall.uid(), wall.gid()),
        (0o2755, 1234, 5678)
    );
    assert_eq!(
        fs::read_link(sandbox.path("bin/sh")).unwrap().to_str(),
        Some("/bin/busybox")
    );
    assert_eq!(file_type(&sandbox.path("run/fifo")), "fifo");
    assert_eq!(mode(&sandbox.path("run/fifo")), 0o600);
    let null = fs::symlink_metadata(sandbox.path("dev/null")).unwrap();
    assert_eq!(
        (file_type(&sandbox.path("dev/null")), null.rdev()),
        ("char", rustix::fs::makedev(1, 3))
    );
    assert_eq!(null.mode() & 0o7777, 0o666);
    assert_eq!(file_type(&sandbox.path("dev/loop0")), "block");
    assert_eq!(mode(&sandbox.path("run")), 0o755, "implied parent");
    sandbox.assert_contained();
}

#[test]
fn owners_are_left_and_counted_without_same_owner() {
    let sandbox = Sandbox::new();
    let layer = Layer::new()
        .entry(EntryType::Regular, "a", b"a", |h| h.set_uid(42))
        .file("b", "b", 0o644)
        .finish();
    let mut options = ApplyOptions::new(ApplyMode::Flatten);
    options.same_owner = false;
    let stats = apply_layer(&layer[..], &sandbox.root, &options).unwrap();
    assert_eq!(stats.owners_not_set, 1);
    assert_eq!(fs::metadata(sandbox.path("a")).unwrap().uid(), 0);
}

#[test]
fn long_pax_names_and_link_targets() {
    let sandbox = Sandbox::new();
    let deep = format!("{}/{}", "d".repeat(120), "f".repeat(150));
    let target = format!("/{}", "t".repeat(200));
    let layer = Layer::new()
        .file(&deep, "deep", 0o644)
        .pax(&[("path", format!("p/{}", "q".repeat(180)).as_bytes())])
        .entry(EntryType::Regular, "short", b"pax", |_| {})
        .symlink("longlink", &target)
        .pax(&[("mtime", b"1234.5"), ("uid", b"3000000"), ("gid", b"77")])
        .entry(EntryType::Regular, "paxmeta", b"", |_| {})
        .finish();
    sandbox.apply(&layer, ApplyMode::Flatten).unwrap();
    assert_eq!(fs::read_to_string(sandbox.path(&deep)).unwrap(), "deep");
    let pax_path = sandbox.path(&format!("p/{}", "q".repeat(180)));
    assert_eq!(fs::read_to_string(pax_path).unwrap(), "pax");
    assert_eq!(
        fs::read_link(sandbox.path("longlink")).unwrap().to_str(),
        Some(&*target)
    );
    let meta = fs::metadata(sandbox.path("paxmeta")).unwrap();
    assert_eq!((meta.mtime(), meta.mtime_nsec()), (1234, 500_000_000));
    assert_eq!((meta.uid(), meta.gid()), (3_000_000, 77));
}

#[test]
fn gzip_zstd_and_plain_are_detected_and_digested_uncompressed() {
    let layer = Layer::new().file("hello", "world", 0o644).finish();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&layer).unwrap();
    let gz = gz.finish().unwrap();
    let zst = zstd::stream::encode_all(&layer[..], 3).unwrap();
    for (bytes, expected) in [
        (&layer, Compression::None),
        (&gz, Compression::Gzip),
        (&zst, Compression::Zstd),
    ] {
        let (found, _) = decompress(&bytes[..]).unwrap();
        assert_eq!(found, expected);
        let sandbox = Sandbox::new();
        let stats = sandbox.apply(bytes, ApplyMode::Flatten).unwrap();
        assert_eq!(stats.diff_id, rbuild_digest::Digest::of(&layer));
        assert_eq!(stats.bytes, layer.len() as u64);
        assert_eq!(fs::read_to_string(sandbox.path("hello")).unwrap(), "world");
    }
    let xz = [0xfd, b'7', b'z', b'X', b'Z', 0, 1, 2];
    assert!(matches!(
        decompress(&xz[..]),
        Err(ApplyError::Compression("xz"))
    ));
}

#[test]
fn replacement_follows_containerd() {
    let sandbox = Sandbox::new();
    let base = Layer::new()
        .dir("file-over-dir", 0o755)
        .file("file-over-dir/child", "x", 0o644)
        .file("dir-over-file", "x", 0o644)
        .dir("symlink-over-dir", 0o755)
        .file("symlink-over-dir/child", "x", 0o644)
        .dir("merge", 0o755)
        .file("merge/old", "old", 0o644)
        .file("target", "target", 0o644)
        .symlink("file-over-symlink", "target")
        .finish();
    sandbox.apply(&base, ApplyMode::Flatten).unwrap();
    let top = Layer::new()
        .file("file-over-dir", "now a file", 0o644)
        .dir("dir-over-file", 0o700)
        .symlink("symlink-over-dir", "merge")
        .dir("merge", 0o711)
        .file("merge/new", "new", 0o644)
        .file("file-over-symlink", "mine", 0o600)
        .finish();
    sandbox.apply(&top, ApplyMode::Flatten).unwrap();
    assert_eq!(
        fs::read_to_string(sandbox.path("file-over-dir")).unwrap(),
        "now a file"
    );
    assert_eq!(file_type(&sandbox.path("dir-over-file")), "dir");
    assert_eq!(mode(&sandbox.path("dir-over-file")), 0o700);
    assert_eq!(file_type(&sandbox.path("symlink-over-dir")), "symlink");
    assert_eq!(
        fs::read_to_string(sandbox.path("merge/old")).unwrap(),
        "old"
    );
    assert_eq!(
        fs::read_to_string(sandbox.path("merge/new")).unwrap(),
        "new"
    );
    assert_eq!(mode(&sandbox.path("merge")), 0o711);
    assert_eq!(file_type(&sandbox.path("file-over-symlink")), "file");
    assert_eq!(
        fs::read_to_string(sandbox.path("target")).unwrap(),
        "target"
    );
    sandbox.assert_contained();
}

#[test]
fn a_corrupt_stream_is_an_error_not_a_panic() {
    let sandbox = Sandbox::new();
    let mut layer = Layer::new().file("a", "aaaa", 0o644).finish();
    layer[148] ^= 0x55; // checksum field
    assert!(sandbox.apply(&layer, ApplyMode::Flatten).is_err());
    let gz = [0x1f, 0x8b, 0, 0, 0, 0];
    assert!(sandbox.apply(&gz, ApplyMode::Flatten).is_err());
}
