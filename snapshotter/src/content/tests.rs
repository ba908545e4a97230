//! Tests on the real filesystem (a fresh temporary state root each).
#![allow(clippy::unwrap_used)]

use std::fs::{self, File, FileTimes};
use std::io::{self, Read, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use rbuild_digest::Digest;
use tempfile::TempDir;

use super::{BlobWriter, ContentError, ContentStore, Descriptor};

fn store() -> (TempDir, ContentStore) {
    let dir = tempfile::tempdir().unwrap();
    let store = ContentStore::open(dir.path()).unwrap();
    (dir, store)
}

fn ingest_files(store: &ContentStore) -> Vec<PathBuf> {
    let dir = store.root().join("ingest");
    fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect()
}

fn read_blob(store: &ContentStore, digest: &Digest) -> Vec<u8> {
    let mut out = Vec::new();
    store
        .open_blob(digest)
        .unwrap()
        .read_to_end(&mut out)
        .unwrap();
    out
}

/// Deterministic bytes that differ per `seed`.
fn pattern(seed: u8, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

fn write_in_chunks(store: &ContentStore, data: &[u8], chunk: usize) -> BlobWriter {
    let mut writer = store.writer().unwrap();
    for piece in data.chunks(chunk) {
        writer.write_all(piece).unwrap();
    }
    writer
}

#[test]
fn open_creates_the_versioned_layout() {
    let dir = tempfile::tempdir().unwrap();
    let store = ContentStore::open(&dir.path().join("state")).unwrap();
    assert_eq!(store.root(), dir.path().join("state/content-v1"));
    assert!(dir.path().join("state/content-v1/sha256").is_dir());
    assert!(dir.path().join("state/content-v1/ingest").is_dir());
    // Opening again is fine and sees the same (empty) store.
    let again = ContentStore::open(&dir.path().join("state")).unwrap();
    assert!(again.list().unwrap().is_empty());
}

#[test]
fn round_trip_through_all_write_paths() {
    let (_dir, store) = store();
    let hello = store.put_bytes(b"hello").unwrap();
    assert_eq!(hello.digest, Digest::of(b"hello"));
    assert_eq!(hello.size, 5);
    assert!(store.contains(&hello.digest));
    assert_eq!(store.size(&hello.digest).unwrap(), Some(5));
    assert_eq!(read_blob(&store, &hello.digest), b"hello");
    let path = store.blob_path(&hello.digest);
    assert_eq!(path, store.root().join("sha256").join(hello.digest.hex()));
    assert!(path.is_file());

    let big = pattern(1, 1_000_003);
    let writer = write_in_chunks(&store, &big, 4099);
    assert_eq!(writer.written(), big.len() as u64);
    let streamed = writer.commit(None, None).unwrap();
    assert_eq!(streamed.digest, Digest::of(&big));
    assert_eq!(read_blob(&store, &streamed.digest), big);

    let data = pattern(2, 300_000);
    let d = Digest::of(&data);
    let imported = store.import(&data[..], Some(&d), Some(300_000)).unwrap();
    assert_eq!(
        imported,
        Descriptor {
            digest: d.clone(),
            size: 300_000
        }
    );
    store.verify(&d).unwrap();
    let unchecked = store.import(&b"free"[..], None, None).unwrap();
    assert_eq!(unchecked.digest, Digest::of(b"free"));
    assert!(ingest_files(&store).is_empty());

    let json = r#"{"digest":"sha256:2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824","size":5}"#;
    assert_eq!(serde_json::to_string(&hello).unwrap(), json);
    assert_eq!(serde_json::from_str::<Descriptor>(json).unwrap(), hello);
}

#[test]
fn digest_mismatch_stores_nothing() {
    let (_dir, store) = store();
    let wrong = Digest::of(b"something else");
    let mut writer = store.writer().unwrap();
    writer.write_all(b"hello").unwrap();
    let err = writer.commit(Some(&wrong), None).unwrap_err();
    let ContentError::DigestMismatch { expected, actual } = &err else {
        panic!("unexpected error {err:?}");
    };
    assert_eq!((expected, actual), (&wrong, &Digest::of(b"hello")));
    let message = err.to_string();
    assert!(message.contains(&wrong.to_string()), "{message}");
    assert!(
        message.contains(&Digest::of(b"hello").to_string()),
        "{message}"
    );

    let err = store
        .import(&b"hello"[..], Some(&wrong), Some(5))
        .unwrap_err();
    assert!(
        matches!(err, ContentError::DigestMismatch { .. }),
        "{err:?}"
    );
    assert!(!store.contains(&wrong));
    assert!(!store.contains(&Digest::of(b"hello")));
    assert!(store.list().unwrap().is_empty());
    assert!(ingest_files(&store).is_empty());
}

#[test]
fn size_mismatch_stores_nothing_and_bounds_the_read() {
    let (_dir, store) = store();
    let d = Digest::of(b"hello");
    let err = store.import(&b"hello"[..], Some(&d), Some(4)).unwrap_err();
    let ContentError::SizeMismatch {
        digest,
        expected,
        actual,
    } = &err
    else {
        panic!("unexpected error {err:?}");
    };
    assert_eq!((digest, *expected, *actual), (&d, 4, 5));
    assert!(err.to_string().contains(&d.to_string()));

    // A source far longer than announced is cut off one byte past the expected size.
    let long = vec![0u8; 10_000_000];
    let err = store.import(&long[..], None, Some(10)).unwrap_err();
    assert!(
        matches!(
            err,
            ContentError::SizeMismatch {
                expected: 10,
                actual: 11,
                ..
            }
        ),
        "{err:?}"
    );
    let mut writer = store.writer().unwrap();
    writer.write_all(b"hello").unwrap();
    let err = writer.commit(None, Some(6)).unwrap_err();
    assert!(matches!(err, ContentError::SizeMismatch { .. }), "{err:?}");
    assert!(store.list().unwrap().is_empty());
    assert!(ingest_files(&store).is_empty());
}

/// A reader that fails: proves a stored blob short-circuits `import` without reading.
struct Unreadable;
impl Read for Unreadable {
    fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
        Err(io::Error::other("must not be read"))
    }
}

#[test]
fn rewriting_a_blob_is_idempotent_and_keeps_the_file() {
    let (_dir, store) = store();
    let first = store.put_bytes(b"same").unwrap();
    let path = store.blob_path(&first.digest);
    let inode = fs::metadata(&path).unwrap().ino();
    assert_eq!(store.put_bytes(b"same").unwrap(), first);
    // Through a writer the fast path is skipped: the rename finds the name taken.
    let mut writer = store.writer().unwrap();
    writer.write_all(b"same").unwrap();
    assert_eq!(writer.commit(Some(&first.digest), Some(4)).unwrap(), first);
    let again = store
        .import(Unreadable, Some(&first.digest), Some(4))
        .unwrap();
    assert_eq!(again, first);
    assert_eq!(
        fs::metadata(&path).unwrap().ino(),
        inode,
        "existing blob was replaced"
    );
    assert_eq!(store.list().unwrap(), vec![first]);
    assert!(ingest_files(&store).is_empty());

    // A failing source is reported with the temporary path and leaves nothing.
    let err = store.import(Unreadable, None, None).unwrap_err();
    assert!(matches!(err, ContentError::ReadSource { .. }), "{err:?}");
    assert!(ingest_files(&store).is_empty());
}

#[test]
fn missing_blobs_are_typed_not_found() {
    let (_dir, store) = store();
    let d = Digest::of(b"absent");
    assert!(!store.contains(&d));
    assert_eq!(store.size(&d).unwrap(), None);
    let err = store.open_blob(&d).unwrap_err();
    assert!(err.is_not_found(), "{err:?}");
    assert!(err.to_string().contains(&d.to_string()));
    assert!(store.verify(&d).unwrap_err().is_not_found());
    assert!(!store.delete(&d).unwrap());
}

#[test]
fn threads_write_same_and_different_blobs_concurrently() {
    let (_dir, store) = store();
    let shared = pattern(7, 2_000_000);
    let results: Vec<(Descriptor, Descriptor)> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..8u8)
            .map(|i| {
                let (store, shared) = (&store, &shared);
                scope.spawn(move || {
                    let own = pattern(100 + i, 500_000 + usize::from(i));
                    let same = write_in_chunks(store, shared, 65_536 + usize::from(i))
                        .commit(Some(&Digest::of(shared)), None)
                        .unwrap();
                    let own = write_in_chunks(store, &own, 10_000)
                        .commit(None, None)
                        .unwrap();
                    (same, own)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let shared_digest = Digest::of(&shared);
    for (same, own) in &results {
        assert_eq!(same.digest, shared_digest);
        store.verify(&own.digest).unwrap();
    }
    let listed = store.list().unwrap();
    assert_eq!(listed.len(), 9);
    for blob in &listed {
        store.verify(&blob.digest).unwrap();
    }
    assert_eq!(read_blob(&store, &shared_digest), shared);
    assert!(ingest_files(&store).is_empty());
}

/// Environment variable that turns [`child_process_writer`] from a no-op into a child writer.
const CHILD_ENV: &str = "RBUILD_CONTENT_TEST_CHILD_ROOT";
const CHILD_BLOB_LEN: usize = 3 * 1024 * 1024;

/// The full test name of `child_process_writer` (the crate name is not part of it).
fn child_test_name() -> String {
    let module = module_path!();
    let module = module.split_once("::").map_or(module, |(_, rest)| rest);
    format!("{module}::child_process_writer")
}

/// Child mode of [`processes_write_the_same_blob_concurrently`]; does nothing in a normal run.
#[test]
fn child_process_writer() {
    let Some(root) = std::env::var_os(CHILD_ENV) else {
        return;
    };
    let root = PathBuf::from(root);
    let store = ContentStore::open(&root).unwrap();
    let data = pattern(42, CHILD_BLOB_LEN);
    let expected = Digest::of(&data);
    // Start together with the siblings: wait for the parent's go file.
    let deadline = Instant::now() + Duration::from_secs(60);
    while !root.join("go").exists() {
        assert!(Instant::now() < deadline, "no go signal");
        std::thread::sleep(Duration::from_millis(2));
    }
    for round in 0..3 {
        let writer = write_in_chunks(&store, &data, 32 * 1024 + round);
        let got = writer
            .commit(Some(&expected), Some(data.len() as u64))
            .unwrap();
        assert_eq!(got.digest, expected);
    }
    println!("child committed {expected}");
}

#[test]
fn processes_write_the_same_blob_concurrently() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let store = ContentStore::open(root).unwrap();
    let exe = std::env::current_exe().unwrap();
    let children: Vec<_> = (0..4)
        .map(|_| {
            Command::new(&exe)
                .args([
                    child_test_name().as_str(),
                    "--exact",
                    "--nocapture",
                    "--test-threads=1",
                ])
                .env(CHILD_ENV, root)
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    File::create(root.join("go")).unwrap();
    let expected = Digest::of(&pattern(42, CHILD_BLOB_LEN));
    for child in children {
        let out = child.wait_with_output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "child failed:\n{stdout}\n{stderr}");
        // Guards against the child silently running no test (a renamed test, a filter typo).
        assert!(
            stdout.contains(&format!("child committed {expected}")),
            "{stdout}"
        );
    }
    let listed = store.list().unwrap();
    assert_eq!(
        listed,
        vec![Descriptor {
            digest: expected.clone(),
            size: CHILD_BLOB_LEN as u64
        }]
    );
    store.verify(&expected).unwrap();
    assert!(ingest_files(&store).is_empty());
}

#[test]
fn dropped_writer_leaves_nothing() {
    let (_dir, store) = store();
    let mut writer = store.writer().unwrap();
    writer.write_all(&pattern(3, 200_000)).unwrap();
    writer.write_all(b"tail in the buffer").unwrap();
    let temp = writer.temp_path().to_path_buf();
    assert!(temp.starts_with(store.root().join("ingest")));
    assert_eq!(ingest_files(&store), vec![temp.clone()]);
    drop(writer);
    assert!(!temp.exists());
    assert!(ingest_files(&store).is_empty());
    assert!(store.list().unwrap().is_empty());
}

fn age_file(path: &Path, age: Duration) {
    // Read-only open works for directories too; futimens needs only ownership.
    let file = File::open(path).unwrap();
    let then = SystemTime::now() - age;
    file.set_times(FileTimes::new().set_modified(then).set_accessed(then))
        .unwrap();
}

#[test]
fn clean_ingest_removes_only_old_temporary_files() {
    let (_dir, store) = store();
    let ingest = store.root().join("ingest");
    // What a process killed mid-write leaves behind.
    let stale = ingest.join("999999-stale");
    fs::write(&stale, b"half a layer").unwrap();
    age_file(&stale, Duration::from_secs(2 * 3600));
    fs::create_dir(ingest.join("not-a-file")).unwrap();
    age_file(&ingest.join("not-a-file"), Duration::from_secs(2 * 3600));
    let mut live = store.writer().unwrap();
    live.write_all(&pattern(5, 100_000)).unwrap();

    assert_eq!(store.clean_ingest(Duration::from_secs(3600)).unwrap(), 1);
    assert!(!stale.exists());
    assert!(live.temp_path().exists());
    assert!(ingest.join("not-a-file").is_dir());
    let committed = live.commit(None, None).unwrap();
    store.verify(&committed.digest).unwrap();
    assert_eq!(store.clean_ingest(Duration::from_secs(3600)).unwrap(), 0);
}

#[test]
fn cleaning_a_live_writer_fails_its_commit_cleanly() {
    let (_dir, store) = store();
    let mut live = store.writer().unwrap();
    live.write_all(&pattern(6, 100_000)).unwrap();
    age_file(live.temp_path(), Duration::from_secs(10));
    assert_eq!(store.clean_ingest(Duration::from_secs(1)).unwrap(), 1);
    let err = live.commit(None, None).unwrap_err();
    assert!(matches!(err, ContentError::Rename { .. }), "{err:?}");
    assert!(store.list().unwrap().is_empty());
    assert!(ingest_files(&store).is_empty());
}

#[test]
fn list_and_delete() {
    let (_dir, store) = store();
    let mut expected: Vec<Descriptor> = [&b"a"[..], b"bb", b"ccc"]
        .iter()
        .map(|bytes| store.put_bytes(bytes).unwrap())
        .collect();
    expected.sort_by(|a, b| a.digest.cmp(&b.digest));
    // Not blobs: a stray file with a non-digest name, and a directory.
    fs::write(store.root().join("sha256/README"), b"x").unwrap();
    fs::create_dir(store.root().join("sha256").join("0".repeat(64))).unwrap();
    assert_eq!(store.list().unwrap(), expected);

    let position = expected.iter().position(|d| d.size == 2).unwrap();
    let gone = expected.remove(position);
    assert!(store.delete(&gone.digest).unwrap());
    assert!(!store.delete(&gone.digest).unwrap());
    assert!(!store.contains(&gone.digest));
    assert_eq!(store.list().unwrap(), expected);
    // A deleted blob can be written again.
    assert_eq!(store.put_bytes(b"bb").unwrap(), gone);
}

#[test]
fn blobs_are_read_only() {
    let (_dir, store) = store();
    let small = store.put_bytes(b"ro").unwrap();
    let big = write_in_chunks(&store, &pattern(9, 70_000), 1000)
        .commit(None, None)
        .unwrap();
    for blob in [small, big] {
        let mode = fs::metadata(store.blob_path(&blob.digest))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o7777, 0o444, "{}", blob.digest);
    }
}

fn corrupt(path: &Path, bytes: &[u8]) {
    fs::set_permissions(path, fs::Permissions::from_mode(0o644)).unwrap();
    fs::write(path, bytes).unwrap();
}

#[test]
fn verify_catches_corruption_and_a_rewrite_heals_a_wrong_size() {
    let (_dir, store) = store();
    let blob = store.put_bytes(b"precious").unwrap();
    let path = store.blob_path(&blob.digest);
    store.verify(&blob.digest).unwrap();

    corrupt(&path, b"PRECIOUS");
    let err = store.verify(&blob.digest).unwrap_err();
    let ContentError::Corrupt { digest, actual, .. } = &err else {
        panic!("unexpected error {err:?}");
    };
    assert_eq!((digest, actual), (&blob.digest, &Digest::of(b"PRECIOUS")));
    assert!(err.to_string().contains(&path.display().to_string()));

    // Same size: a rewrite keeps the existing file (only verify can tell it is damaged) ...
    store.put_bytes(b"precious").unwrap();
    assert!(store.verify(&blob.digest).is_err());
    // ... a wrong size is damage beyond doubt, and the verified content replaces it.
    corrupt(&path, b"trunc");
    assert_eq!(store.put_bytes(b"precious").unwrap(), blob);
    store.verify(&blob.digest).unwrap();
    let mode = fs::metadata(&path).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o444);
    assert!(ingest_files(&store).is_empty());
}

#[test]
fn a_non_file_at_a_blob_name_is_an_error() {
    let (_dir, store) = store();
    let d = Digest::of(b"dir");
    fs::create_dir(store.blob_path(&d)).unwrap();
    assert!(!store.contains(&d));
    let err = store.put_bytes(b"dir").unwrap_err();
    assert!(matches!(err, ContentError::NotABlob { .. }), "{err:?}");
    assert!(err.to_string().contains(d.hex()));
    let mut writer = store.writer().unwrap();
    writer.write_all(b"dir").unwrap();
    let err = writer.commit(None, None).unwrap_err();
    assert!(matches!(err, ContentError::NotABlob { .. }), "{err:?}");
    assert!(ingest_files(&store).is_empty());
}

/// A committed snapshot holding `files`, and the digest and size of its uncompressed layer.
fn lazy_snapshot(state: &Path, id: &str, files: &[(&str, &[u8])]) -> (Digest, u64) {
    use crate::layer::{write_layer, Compression, LayerOptions, SourceKind};
    use crate::snapshots::{SnapshotId, Snapshotter};
    let snapshots = Snapshotter::open(state).unwrap();
    let view = snapshots.prepare(None).unwrap();
    for (name, bytes) in files {
        fs::write(view.root().join(name), bytes).unwrap();
    }
    let id = SnapshotId::new(id).unwrap();
    snapshots.commit(view, &id, None).unwrap();
    let options = LayerOptions {
        compression: Compression::Uncompressed,
        source_date_epoch: Some(0),
        threads: 0,
    };
    let desc = write_layer(
        &snapshots.layer_dir(&id),
        SourceKind::OverlayUpper,
        &mut io::sink(),
        &options,
    )
    .unwrap();
    (desc.digest, desc.size)
}

#[test]
fn a_lazy_layer_becomes_its_blob_when_first_opened() {
    let (dir, store) = store();
    let (digest, size) = lazy_snapshot(dir.path(), "lazy-a", &[("hello", b"hello\n")]);
    let recipe = recipe_for("lazy-a", size);
    store.put_lazy_layer(&digest, &recipe).unwrap();
    assert!(store.contains(&digest), "a recipe counts as stored");
    assert_eq!(store.size(&digest).unwrap(), None, "but no bytes yet");
    assert_eq!(store.lazy_layers(), vec![(digest.clone(), recipe)]);
    let bytes = read_blob(&store, &digest);
    assert_eq!(Digest::of(&bytes), digest);
    assert_eq!(bytes.len() as u64, size);
    store.verify(&digest).unwrap();
    assert!(!store.materialize(&digest).unwrap(), "made once");
    assert!(
        store.lazy_layers().is_empty(),
        "the recipe goes once the blob is there"
    );
    assert!(store.delete(&digest).unwrap());
    assert!(!store.contains(&digest));
    // A recipe of another writer format does not count as stored, but is tried when opened:
    // the digest check decides (here the bytes are the same).
    let old = super::LazyLayer {
        format: 0,
        ..recipe_for("lazy-a", size)
    };
    store.put_lazy_layer(&digest, &old).unwrap();
    assert!(!store.contains(&digest));
    assert_eq!(read_blob(&store, &digest).len() as u64, size);
}

/// A recipe of this writer's format for snapshot `id` with source date 0.
fn recipe_for(id: &str, size: u64) -> super::LazyLayer {
    super::LazyLayer {
        format: crate::layer::FORMAT,
        snapshot: id.into(),
        source_date_epoch: Some(0),
        size,
    }
}

#[test]
fn a_recipe_whose_snapshot_changed_or_vanished_stores_nothing() {
    let (dir, store) = store();
    let (digest, size) = lazy_snapshot(dir.path(), "lazy-b", &[("f", b"one\n")]);
    let recipe = recipe_for("lazy-b", size);
    store.put_lazy_layer(&digest, &recipe).unwrap();
    // Damage from outside: the snapshot's file changes.
    let layer = dir.path().join("snapshots-v1/committed/lazy-b/fs/f");
    assert!(layer.is_file(), "snapshot layout: {}", layer.display());
    fs::write(&layer, b"two\n").unwrap();
    let err = store.open_blob(&digest).unwrap_err();
    assert!(
        matches!(err, ContentError::LazyLayer { .. }),
        "unexpected error: {err}"
    );
    assert!(err.to_string().contains("build the image again"), "{err}");
    assert_eq!(store.size(&digest).unwrap(), None, "no wrong blob stored");
    assert!(ingest_files(&store).is_empty());
    // A recipe naming a snapshot that is gone.
    let gone = super::LazyLayer {
        snapshot: "never-made".into(),
        ..recipe
    };
    let other = Digest::of(b"other");
    store.put_lazy_layer(&other, &gone).unwrap();
    let err = store.materialize(&other).unwrap_err();
    assert!(err.to_string().contains("snapshot is gone"), "{err}");
}
