//! [`BlobWriter`]: one write in progress, from its temporary file in `ingest/` to its blob name.

use std::fs::{self, Permissions};
use std::io::{self, BufWriter, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use rbuild_digest::{Digest, Digester};
use tempfile::NamedTempFile;

use super::{sync_dir, ContentError, Descriptor};

/// Mode of every committed blob: nobody (short of root) writes to it again.
pub(super) const BLOB_MODE: u32 = 0o444;

/// Write buffer size: large enough that small writes (tar headers) do not each cost a syscall.
const BUFFER_SIZE: usize = 64 * 1024;

/// A blob being written. Bytes go to a fresh temporary file in `ingest/` while their digest and
/// count are computed; [`BlobWriter::commit`] checks them and moves the file to its blob name.
///
/// Dropping a writer without committing removes its temporary file (and so does every failed
/// commit). A killed process cannot run that drop; its file is left for
/// [`ContentStore::clean_ingest`](super::ContentStore::clean_ingest).
#[derive(Debug)]
pub struct BlobWriter {
    out: BufWriter<NamedTempFile>,
    /// `None` for a writer whose caller computes the digest of the same bytes itself (see
    /// [`BlobWriter::commit_computed`]).
    digester: Option<Digester>,
    written: u64,
    blobs_dir: PathBuf,
}

impl BlobWriter {
    /// Creates the temporary file: `<ingest>/<pid>-<random>`, opened with `O_CREAT|O_EXCL`, so no
    /// two writers, in this process or another, ever share one.
    pub(super) fn create(
        ingest_dir: &Path,
        blobs_dir: &Path,
        hash: bool,
    ) -> Result<BlobWriter, ContentError> {
        let prefix = format!("{}-", std::process::id());
        let temp = tempfile::Builder::new()
            .prefix(&prefix)
            .tempfile_in(ingest_dir)
            .map_err(|e| ContentError::io("create a temporary file in", ingest_dir, e))?;
        Ok(BlobWriter {
            out: BufWriter::with_capacity(BUFFER_SIZE, temp),
            digester: hash.then(Digester::new),
            written: 0,
            blobs_dir: blobs_dir.to_path_buf(),
        })
    }

    /// Bytes written so far.
    pub fn written(&self) -> u64 {
        self.written
    }

    /// The temporary file in `ingest/` (for error messages and diagnostics).
    pub fn temp_path(&self) -> &Path {
        self.out.get_ref().path()
    }

    /// Finishes the write. When `expected`/`expected_size` are given and differ from what was
    /// written, the temporary file is removed, nothing is stored and the error names both values.
    /// Otherwise the file is made read-only, fsynced, renamed to `sha256/<hex>` (never replacing
    /// an existing blob, see below) and the directory is fsynced: when this returns `Ok`, the
    /// blob survives a crash.
    ///
    /// If the blob already exists (written earlier, or by a racing writer a moment ago) the
    /// existing file is kept and the temporary file dropped. The one exception is an existing file
    /// whose size differs from the verified content: it cannot be right, so it is atomically
    /// replaced.
    pub fn commit(
        self,
        expected: Option<&Digest>,
        expected_size: Option<u64>,
    ) -> Result<Descriptor, ContentError> {
        let BlobWriter {
            out,
            digester,
            written,
            blobs_dir,
        } = self;
        // A writer made by `writer_for_computed` has no digester: its caller names the blob.
        let Some(digester) = digester else {
            let (Some(digest), Some(size)) = (expected, expected_size) else {
                return Err(ContentError::io(
                    "commit without a digest",
                    out.get_ref().path(),
                    io::Error::other("a writer for a computed digest needs the digest and size"),
                ));
            };
            if size != written {
                return Err(ContentError::SizeMismatch {
                    digest: digest.clone(),
                    expected: size,
                    actual: written,
                });
            }
            return finish(out, blobs_dir, digest.clone(), size);
        };
        let temp_path = out.get_ref().path().to_path_buf();
        // On error the `IntoInnerError` (and with it the temporary file) is dropped: removed.
        let temp = out
            .into_inner()
            .map_err(|e| ContentError::io("write", &temp_path, e.into_error()))?;
        let (digest, size) = digester.finish();
        if let Some(expected) = expected {
            if *expected != digest {
                return Err(ContentError::DigestMismatch {
                    expected: expected.clone(),
                    actual: digest,
                });
            }
        }
        if let Some(expected) = expected_size {
            if expected != size {
                return Err(ContentError::SizeMismatch {
                    digest,
                    expected,
                    actual: size,
                });
            }
        }
        finish_temp(temp, &temp_path, blobs_dir, digest, size)
    }
}

/// Flushes a writer's buffer, then [`finish_temp`].
fn finish(
    out: BufWriter<NamedTempFile>,
    blobs_dir: PathBuf,
    digest: Digest,
    size: u64,
) -> Result<Descriptor, ContentError> {
    let temp_path = out.get_ref().path().to_path_buf();
    let temp = out
        .into_inner()
        .map_err(|e| ContentError::io("write", &temp_path, e.into_error()))?;
    finish_temp(temp, &temp_path, blobs_dir, digest, size)
}

/// Read-only, fsync, rename to `sha256/<hex>` (never replacing), fsync the directory.
fn finish_temp(
    temp: NamedTempFile,
    temp_path: &Path,
    blobs_dir: PathBuf,
    digest: Digest,
    size: u64,
) -> Result<Descriptor, ContentError> {
    let file = temp.as_file();
    file.set_permissions(Permissions::from_mode(BLOB_MODE))
        .map_err(|e| ContentError::io("make read-only", temp_path, e))?;
    // Data and inode reach the disk before the name does (see the module docs).
    file.sync_all()
        .map_err(|e| ContentError::io("fsync", temp_path, e))?;
    let dest = blobs_dir.join(digest.hex());
    persist(temp, temp_path, &dest, &digest, size)?;
    // The new name (or a racing writer's, which we now rely on) becomes durable.
    sync_dir(&blobs_dir)?;
    Ok(Descriptor { digest, size })
}

/// Renames `temp` to `dest` unless `dest` exists (`renameat2(RENAME_NOREPLACE)`, or
/// `link` + `unlink` where the filesystem lacks it: both atomic and both refusing to replace).
fn persist(
    temp: NamedTempFile,
    temp_path: &Path,
    dest: &Path,
    digest: &Digest,
    size: u64,
) -> Result<(), ContentError> {
    let rename_error = |source| ContentError::Rename {
        from: temp_path.to_path_buf(),
        to: dest.to_path_buf(),
        source,
    };
    let err = match temp.persist_noclobber(dest) {
        Ok(_) => return Ok(()),
        Err(err) if err.error.kind() == io::ErrorKind::AlreadyExists => err,
        Err(err) => return Err(rename_error(err.error)),
    };
    let existing =
        fs::symlink_metadata(dest).map_err(|e| ContentError::io("inspect blob", dest, e))?;
    if !existing.is_file() {
        return Err(ContentError::NotABlob {
            digest: digest.clone(),
            path: dest.to_path_buf(),
        });
    }
    if existing.len() == size {
        // Same name, same size: the same content (or damage only `verify` can see). Keep it;
        // dropping `err.file` removes our temporary file.
        return Ok(());
    }
    // A blob of the wrong size is damaged beyond doubt; our content is verified. Replace it
    // atomically: open readers keep the old inode, new readers see the whole new file.
    err.file
        .persist(dest)
        .map(|_| ())
        .map_err(|e| rename_error(e.error))
}

impl Write for BlobWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.out.write(buf)?;
        // `n <= buf.len()` by the `Write` contract; `get` keeps a broken writer from panicking.
        if let Some(digester) = &mut self.digester {
            digester.update(buf.get(..n).unwrap_or(buf));
        }
        self.written += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}
