//! Diff → OCI layer: a directory becomes a deterministic, compressed layer tar, with its
//! diff_id and blob digest computed in the same streaming pass.
//!
//! # Sources
//! A layer is made from one directory, of one of two kinds ([`SourceKind`]):
//! - an **overlayfs upperdir** (the diff of a RUN step). Its whiteouts (character devices 0/0)
//!   become `.wh.<name>` entries and its opaque directories (`trusted.overlay.opaque=y`; rbuild
//!   never mounts with `userxattr`, so `user.overlay.*` is ignored) are followed by a
//!   `<dir>/.wh..wh..opq` entry.
//!   Lower layers are never read, so an upperdir that points into them (`redirect` or `metacopy`
//!   attributes) is refused;
//! - a **plain directory** (COPY results built without overlay), taken as it is.
//!
//! # Determinism
//! The same tree gives the same tar, hence the same diff_id, and the same compressed blob on
//! every run, machine and thread count:
//! - entries come in sorted order: names sorted by bytes within each directory, each directory
//!   directly followed by its contents, so paths are sorted component by component (`walk`;
//!   `a/`, `a/b`, `a-b`, `a.txt`: Go's `WalkDir` order, which BuildKit's layers have too). A
//!   whiteout sits where its name sits; `.wh..wh..opq` comes first in its directory;
//! - headers carry only what the tree says: numeric uid/gid (no uname/gname), permission bits
//!   with setuid/setgid/sticky, whole-second mtime clamped to `source_date_epoch` when given, no
//!   atime/ctime, and the `security.capability` xattr; the exact bytes are listed in `header`;
//! - hardlinks are decided by walk order: the first path of an inode is the file, later ones
//!   link to it;
//! - gzip cuts its input at fixed offsets, whatever the number of threads (`gzip`); zstd runs in
//!   its multithreaded mode, whose output does not depend on the worker count (`compress`).
//!   Both compressors are pure functions of their input and level: zlib-rs picks CPU-specific
//!   code only where the result is the same (match length, hash sliding; the same 235 MB tree
//!   gave the same blob with and without AVX2), and the zstd version is pinned by the lock file.
//!   The deflate backend is flate2's `zlib-rs` (needed for dictionaries): should a C zlib feature
//!   of flate2 ever be enabled in the build, flate2 switches to it and gzip blobs change (still
//!   deterministic), so a change of backend is a change of cache identity.
//!
//! # One pass, bounded memory
//! ```text
//! walk ─► tar headers + file bytes ─► Hashing (diff_id) ─► compressor ─► Hashing (digest) ─► out
//! ```
//! Nothing holds a layer: the walk keeps one sorted name list per open directory and the
//! first path of each multiply-linked inode, file contents pass through one 256 KiB buffer, gzip
//! keeps at most two 128 KiB blocks per worker in flight, and zstd at most four workers with 4 MiB
//! jobs. Measured peak RSS on a 235 MB tree: 3 MB uncompressed, 10 MB gzip, 32 MB zstd (2 cores).
//! For `Uncompressed` the blob is the tar, so it is digested once.
//!
//! # Errors
//! Every failure is a [`LayerError`] naming the path involved, with the OS error as its source. A
//! file that changes size while it is read is an error rather than a corrupt or silently
//! different layer; a name starting with `.wh.` is refused because appliers would take it for a
//! whiteout.

mod archive;
mod compress;
mod error;
mod gzip;
mod hashing;
mod header;
mod walk;

#[cfg(test)]
mod tests;

use std::io::Write;
use std::path::Path;

use rbuild_digest::Digest;

pub use compress::{Compression, GZIP_DEFAULT_LEVEL, ZSTD_DEFAULT_LEVEL};

/// The version of the bytes [`write_layer`] makes of a tree. Bump it with any change to them:
/// digests remembered without their blob (layer memos, lazy layer recipes) name it, so ones
/// made by another version are not trusted.
pub const FORMAT: u32 = 1;
pub use error::LayerError;

use hashing::{HashingWriter, ThreadedHashingWriter};
use walk::Walker;

/// How a layer is written. The default is gzip level 6, no clamping, all cores.
#[derive(Debug, Clone, Default)]
pub struct LayerOptions {
    pub compression: Compression,
    /// Clamp every mtime to at most this many seconds since the epoch.
    pub source_date_epoch: Option<i64>,
    /// Compression threads; 0 = all cores. Never changes the output.
    pub threads: usize,
}

/// What was written: the digest of the uncompressed tar (`diff_id`, for the image config) and
/// the digest, size and media type of the blob (for the manifest).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerDescriptor {
    pub diff_id: Digest,
    pub digest: Digest,
    pub size: u64,
    pub media_type: &'static str,
}

/// What kind of directory a layer is made from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceKind {
    /// An overlayfs upper directory: whiteouts and opaque directories are converted.
    OverlayUpper,
    /// A plain directory: every inode is taken as it is.
    PlainDir,
}

/// Writes the layer of `dir` to `out` and describes it.
///
/// `out` receives the blob and nothing else; it is flushed but not synced. On error, what was
/// written to `out` is garbage.
pub fn write_layer(
    dir: &Path,
    kind: SourceKind,
    out: &mut dyn Write,
    options: &LayerOptions,
) -> Result<LayerDescriptor, LayerError> {
    options.compression.validate()?;
    let walker = Walker::new(dir, kind)?;
    let threads = match options.threads {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
        n => n,
    };
    let epoch = options.source_date_epoch;
    let (diff_id, digest, size) = match options.compression {
        Compression::Uncompressed => {
            // sha256 is most of the cost here: it runs on its own thread.
            let buffered = std::io::BufWriter::with_capacity(256 << 10, out);
            let mut tar = ThreadedHashingWriter::new(buffered).map_err(LayerError::write)?;
            archive::write_tar(walker, &mut tar, epoch)?;
            let (mut inner, diff_id, size) = tar.finish().map_err(LayerError::write)?;
            inner.flush().map_err(LayerError::write)?;
            (diff_id.clone(), diff_id, size)
        }
        Compression::Gzip { level } => write_gzip(walker, out, level, threads, epoch)?,
        Compression::Zstd { level } => {
            let blob = HashingWriter::new(out);
            let encoder = compress::zstd_encoder(blob, level, threads).map_err(|source| {
                LayerError::Compressor {
                    algorithm: "zstd",
                    source,
                }
            })?;
            let mut tar = HashingWriter::new(encoder);
            archive::write_tar(walker, &mut tar, epoch)?;
            let (encoder, diff_id, _) = tar.finish();
            let blob = encoder.finish().map_err(LayerError::write)?;
            let (out, digest, size) = blob.finish();
            out.flush().map_err(LayerError::write)?;
            (diff_id, digest, size)
        }
    };
    Ok(LayerDescriptor {
        diff_id,
        digest,
        size,
        media_type: options.compression.media_type(),
    })
}

/// The gzip pipeline; its worker threads live exactly as long as this call.
fn write_gzip(
    walker: Walker,
    out: &mut dyn Write,
    level: u32,
    threads: usize,
    epoch: Option<i64>,
) -> Result<(Digest, Digest, u64), LayerError> {
    std::thread::scope(|scope| {
        let mut blob = HashingWriter::new(out);
        blob.write_all(&gzip::header(level))
            .map_err(LayerError::write)?;
        let gz = gzip::ParallelGzip::new(scope, blob, level, threads)
            .map_err(|source| LayerError::Spawn { source })?;
        let mut tar = HashingWriter::new(gz);
        archive::write_tar(walker, &mut tar, epoch)?;
        let (gz, diff_id, _) = tar.finish();
        let blob = gz.finish().map_err(LayerError::write)?;
        let (out, digest, size) = blob.finish();
        out.flush().map_err(LayerError::write)?;
        Ok((diff_id, digest, size))
    })
}
