//! Compression choices: algorithms, levels, media types, and the zstd encoder settings.
//!
//! zstd is always run in its multithreaded mode (`nbWorkers ≥ 1`, even for one thread): zstd cuts
//! the input into jobs whose size depends only on the compression parameters, so the frame is the
//! same for any worker count ≥ 1, while `nbWorkers = 0` produces a different (single-job) frame.
//! The tests check both facts. The job size is fixed at 4 MiB rather than derived from the level
//! (8 MiB at level 3), which halves memory per worker for a 0.1% larger blob. The frame has a
//! checksum and no content size (the size is not known when streaming).

use std::io::{self, Write};

use rbuild_oci::media_types;

use super::LayerError;

/// gzip's default level (also Docker's, BuildKit's and pigz's).
pub const GZIP_DEFAULT_LEVEL: u32 = 6;
/// zstd's default level.
pub const ZSTD_DEFAULT_LEVEL: i32 = 3;
/// zstd worker threads at most. Each holds a job in and out plus its match tables: measured at
/// level 3 on 235 MB, peak RSS is 23 / 32 / 43 MB for 1 / 2 / 4 workers. More workers would
/// outrun the single-threaded walk, tar and sha256 in front of them anyway. (High levels need
/// far more per worker: level 19's tables alone are ~100 MB.)
pub(crate) const ZSTD_MAX_WORKERS: usize = 4;

/// zstd job size, fixed so that it depends on neither the level nor the machine.
pub(crate) const ZSTD_JOB_SIZE: u32 = 4 << 20;

/// How a layer's tar is compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    Uncompressed,
    /// Levels 0..=9.
    Gzip {
        level: u32,
    },
    /// Levels as zstd defines them (negative "fast" levels up to 22).
    Zstd {
        level: i32,
    },
}

impl Default for Compression {
    fn default() -> Self {
        Compression::Gzip {
            level: GZIP_DEFAULT_LEVEL,
        }
    }
}

impl Compression {
    /// From exporter options `compression=<name>` and `compression-level=<n>`.
    pub fn from_options(name: &str, level: Option<i64>) -> Result<Compression, LayerError> {
        let compression = match name {
            "uncompressed" => Compression::Uncompressed,
            "gzip" => Compression::Gzip {
                level: match level {
                    None => GZIP_DEFAULT_LEVEL,
                    Some(l) => u32::try_from(l).map_err(|_| gzip_level_error(l))?,
                },
            },
            "zstd" => Compression::Zstd {
                level: match level {
                    None => ZSTD_DEFAULT_LEVEL,
                    Some(l) => i32::try_from(l).map_err(|_| zstd_level_error(l))?,
                },
            },
            other => {
                return Err(LayerError::UnknownCompression {
                    name: other.to_string(),
                })
            }
        };
        compression.validate()?;
        Ok(compression)
    }

    /// The OCI media type of a layer compressed this way.
    pub fn media_type(&self) -> &'static str {
        match self {
            Compression::Uncompressed => media_types::OCI_LAYER,
            Compression::Gzip { .. } => media_types::OCI_LAYER_GZIP,
            Compression::Zstd { .. } => media_types::OCI_LAYER_ZSTD,
        }
    }

    /// Checks the level is in range.
    pub fn validate(&self) -> Result<(), LayerError> {
        match *self {
            Compression::Uncompressed => Ok(()),
            Compression::Gzip { level } if level <= 9 => Ok(()),
            Compression::Gzip { level } => Err(gzip_level_error(i64::from(level))),
            Compression::Zstd { level } if zstd::compression_level_range().contains(&level) => {
                Ok(())
            }
            Compression::Zstd { level } => Err(zstd_level_error(i64::from(level))),
        }
    }
}

fn gzip_level_error(level: i64) -> LayerError {
    LayerError::InvalidLevel {
        algorithm: "gzip",
        level,
        expected: "0..=9".to_string(),
    }
}

fn zstd_level_error(level: i64) -> LayerError {
    let range = zstd::compression_level_range();
    LayerError::InvalidLevel {
        algorithm: "zstd",
        level,
        expected: format!("{}..={}", range.start(), range.end()),
    }
}

/// A zstd encoder with the fixed parameters above and `workers` (clamped to
/// 1..=[`ZSTD_MAX_WORKERS`]) threads.
pub(crate) fn zstd_encoder<W: Write>(
    inner: W,
    level: i32,
    workers: usize,
) -> io::Result<zstd::stream::write::Encoder<'static, W>> {
    let mut encoder = zstd::stream::write::Encoder::new(inner, level)?;
    encoder.include_checksum(true)?;
    encoder.include_contentsize(false)?;
    encoder.long_distance_matching(false)?;
    encoder.set_parameter(zstd::zstd_safe::CParameter::JobSize(ZSTD_JOB_SIZE))?;
    let workers = workers.clamp(1, ZSTD_MAX_WORKERS);
    encoder.multithread(u32::try_from(workers).unwrap_or(1))?;
    Ok(encoder)
}
