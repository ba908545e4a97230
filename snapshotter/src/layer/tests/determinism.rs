//! Same tree, same bytes: across runs and across thread counts, for every compression.

use std::io::Write;

use super::*;

/// A tree of many gzip blocks and several 4 MiB zstd jobs.
fn big_tree() -> tempfile::TempDir {
    let tmp = tempdir();
    mixed_tree(tmp.path(), 200, 64 * 1024);
    write(&tmp.path().join("zeros"), &vec![0u8; 3 * 1024 * 1024 + 17]);
    tmp
}

fn check_thread_independence(compression: Compression, threads: &[usize]) {
    let tree = big_tree();
    let (first, blob) = layer(
        tree.path(),
        SourceKind::PlainDir,
        &options(compression, threads[0]),
    );
    for &n in &threads[1..] {
        let (desc, other) = layer(tree.path(), SourceKind::PlainDir, &options(compression, n));
        assert_eq!(
            desc, first,
            "{compression:?} with {n} threads vs {}",
            threads[0]
        );
        assert!(other == blob);
    }
    let tar = decompress(&blob, compression);
    assert!(
        tar.len() > 12 * 1024 * 1024,
        "tree too small: {}",
        tar.len()
    );
    assert_eq!(rbuild_digest::Digest::of(&tar), first.diff_id);
    let (plain, _) = layer(
        tree.path(),
        SourceKind::PlainDir,
        &options(Compression::Uncompressed, 1),
    );
    assert_eq!(plain.diff_id, first.diff_id);
    assert_eq!(plain.digest, plain.diff_id);
}

#[test]
fn gzip_is_the_same_for_any_thread_count() {
    check_thread_independence(Compression::Gzip { level: 6 }, &[1, 4, 1, 3, 0]);
}

#[test]
fn zstd_is_the_same_for_any_thread_count() {
    check_thread_independence(Compression::Zstd { level: 3 }, &[1, 4, 1, 2, 0]);
}

#[test]
fn levels_change_the_blob_not_the_diff_id() {
    let tmp = tempdir();
    mixed_tree(tmp.path(), 20, 8 * 1024);
    let (g1, _) = layer(
        tmp.path(),
        SourceKind::PlainDir,
        &options(Compression::Gzip { level: 1 }, 2),
    );
    let (g9, _) = layer(
        tmp.path(),
        SourceKind::PlainDir,
        &options(Compression::Gzip { level: 9 }, 2),
    );
    let (z19, _) = layer(
        tmp.path(),
        SourceKind::PlainDir,
        &options(Compression::Zstd { level: 19 }, 2),
    );
    assert_eq!(g1.diff_id, g9.diff_id);
    assert_eq!(g1.diff_id, z19.diff_id);
    assert_ne!(g1.digest, g9.digest);
}

/// The fact `compress` relies on: zstd's multithreaded frame does not depend on the worker
/// count (≥ 1), but differs from the single-threaded (nbWorkers = 0) frame.
#[test]
fn zstd_worker_count_does_not_change_the_frame() {
    let tree = tempdir();
    mixed_tree(tree.path(), 150, 64 * 1024);
    let (_, tar) = layer(
        tree.path(),
        SourceKind::PlainDir,
        &options(Compression::Uncompressed, 1),
    );
    let frame = |workers: u32| {
        let mut enc = zstd::stream::write::Encoder::new(Vec::new(), 3).unwrap();
        enc.include_checksum(true).unwrap();
        enc.set_parameter(zstd::zstd_safe::CParameter::JobSize(
            compress::ZSTD_JOB_SIZE,
        ))
        .unwrap();
        enc.multithread(workers).unwrap();
        for chunk in tar.chunks(100_003) {
            enc.write_all(chunk).unwrap();
        }
        enc.finish().unwrap()
    };
    let one = frame(1);
    assert!(frame(2) == one);
    assert!(frame(4) == one);
    assert!(
        frame(0) != one,
        "single-threaded zstd now matches: the clamp to ≥ 1 worker could go"
    );
}

#[test]
fn two_runs_of_an_overlay_upperdir_agree() {
    let tmp = tempdir();
    let up = tmp.path();
    mixed_tree(up, 30, 4096);
    whiteout(&up.join("d1/gone"));
    set_xattr(&up.join("d2"), "trusted.overlay.opaque", b"y");
    let mut opts = options(Compression::Gzip { level: 6 }, 2);
    opts.source_date_epoch = Some(0);
    let (a, blob_a) = layer(up, SourceKind::OverlayUpper, &opts);
    let (b, blob_b) = layer(up, SourceKind::OverlayUpper, &opts);
    assert_eq!(a, b);
    assert!(blob_a == blob_b);
    assert!(entries(&decompress(&blob_a, opts.compression))
        .iter()
        .all(|i| i.mtime == 0));
}
