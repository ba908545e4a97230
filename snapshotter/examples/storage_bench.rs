//! Storage benchmark (issue 3, point 10): a generated image-like tree, layer writing, layer apply.
//!
//! ```text
//! cargo build --release -p rbuild-snapshotter --example storage_bench
//! storage_bench gen DIR                      # 20,000 files, 200 MB, ~370 dirs, 200 symlinks
//! storage_bench layer DIR gzip|zstd|zstd:N|none OUT # OUT `-` = stdout (the report then goes to stderr)
//! storage_bench apply TAR DEST               # Flatten onto DEST (created if missing)
//! ```
//! `scripts/bench-storage.sh` runs all three next to GNU tar, pigz and zstd.
//!
//! Reports are one line of `key=value` fields for the script to read. `seconds` is the wall time
//! of the `write_layer` / `apply_layer` call alone (file open included, process start-up not).
//! For a compressed layer the uncompressed tar size (for MB/s) is found afterwards, outside the
//! timing, by a second uncompressed pass into a byte counter, whose diff_id must match.
//!
//! The tree mixes text (60% of the files), code-like binary (30%) and random bytes (10%) over
//! a size distribution with many small files and a few up to 700 KB: its tar (216 MB) gzips
//! 2.45x, like common base images. It is a pure function of the constants below: same bytes,
//! names, modes and mtimes on every run (owners are the caller's), so its layer digests are
//! comparable between machines.

use std::error::Error;
use std::fs::{self, File};
use std::io::{self, BufReader, Write};
use std::os::fd::AsFd;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use rbuild_snapshotter::apply::{apply_layer, ApplyMode, ApplyOptions};
use rbuild_snapshotter::layer::{write_layer, Compression, LayerOptions, SourceKind};
use rustix::fs::{AtFlags, Timespec, Timestamps, CWD};

/// Regular files in the tree (symlinks come on top).
const FILES: usize = 20_000;
/// Sum of the regular files' sizes.
const TOTAL_BYTES: u64 = 200_000_000;
const SYMLINKS: usize = 200;
/// mtime of every entry (2023-11-14).
const MTIME: i64 = 1_700_000_000;
const SEED: u64 = 0x2545_f491_4f6c_dd1d;
/// Top-level directories, as in a root filesystem.
const TOPS: [&str; 12] = [
    "bin", "etc", "home", "lib", "lib64", "opt", "root", "sbin", "srv", "usr", "var", "app",
];
/// Package directories under each top-level one.
const PACKAGES: usize = 24;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let result = match args.as_slice() {
        ["gen", dir] => generate(Path::new(dir)),
        ["layer", dir, algorithm, out] => layer(Path::new(dir), algorithm, out),
        ["apply", tar, dest] => apply(Path::new(tar), Path::new(dest)),
        _ => {
            eprintln!(
                "usage: storage_bench gen DIR | layer DIR gzip|zstd|none OUT | apply TAR DEST"
            );
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprint!("storage_bench: {error}");
            let mut source = error.source();
            while let Some(cause) = source {
                eprint!(": {cause}");
                source = cause.source();
            }
            eprintln!();
            ExitCode::FAILURE
        }
    }
}

/// xorshift64*: small, fast and the same everywhere.
#[derive(Debug)]
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn range(&mut self, low: u64, high: u64) -> u64 {
        low + self.below(high - low)
    }
}

/// What a file's bytes look like.
#[derive(Debug, Clone, Copy)]
enum Kind {
    /// Source, configuration, docs: words from a skewed vocabulary (gzip -6: ~3.3x).
    Text,
    /// Executables and libraries: repeated instruction patterns, small integers, zero runs and
    /// some noise (gzip -6: ~2.4x).
    Binary,
    /// Already compressed data (archives, images): random bytes.
    Random,
}

#[derive(Debug)]
struct Generator {
    rng: Rng,
    words: Vec<Vec<u8>>,
    opcodes: Vec<[u8; 4]>,
}

impl Generator {
    fn new() -> Self {
        let mut rng = Rng(SEED);
        const LETTERS: &[u8] = b"etaoinshrdlcumwfgypbvkjxqz_";
        let words = (0..1024)
            .map(|_| {
                let len = rng.range(2, 11);
                (0..len)
                    .map(|_| {
                        // Skewed towards frequent letters, as in real text.
                        let a = rng.below(LETTERS.len() as u64);
                        let b = rng.below(LETTERS.len() as u64);
                        LETTERS[a.min(b) as usize]
                    })
                    .collect()
            })
            .collect();
        let opcodes = (0..96)
            .map(|_| rng.next().to_le_bytes()[..4].try_into().unwrap_or([0; 4]))
            .collect();
        Generator {
            rng,
            words,
            opcodes,
        }
    }

    fn fill(&mut self, kind: Kind, size: usize) -> Vec<u8> {
        let mut data = Vec::with_capacity(size + 16);
        let rng = &mut self.rng;
        match kind {
            Kind::Text => {
                let mut column = 0;
                while data.len() < size {
                    let r = rng.next();
                    // Zipf-like: a product of uniform indices favours small ones.
                    let index = ((r & 0x3ff) * ((r >> 10) & 0x3ff) * ((r >> 44) & 0x3ff)) >> 20;
                    let word = &self.words[index as usize];
                    data.extend_from_slice(word);
                    column += word.len() + 1;
                    match (r >> 20) % 16 {
                        0 => data.extend_from_slice(b", "),
                        1 => data.extend_from_slice(b" = "),
                        2 => data.extend_from_slice(b"("),
                        3 => data.extend_from_slice(b");"),
                        _ => data.push(b' '),
                    }
                    if column > 40 + (r >> 32) as usize % 60 {
                        data.push(b'\n');
                        let indent = (r >> 40) % 4 * 4;
                        data.extend(std::iter::repeat_n(b' ', indent as usize));
                        column = 0;
                    }
                }
            }
            Kind::Binary => {
                while data.len() < size {
                    let r = rng.next();
                    match r % 10 {
                        0..=5 => {
                            let op = self.opcodes[((r >> 8) % 96) as usize];
                            data.extend_from_slice(&op);
                        }
                        6 => data.extend_from_slice(&((r >> 16) % 512).to_le_bytes()[..4]),
                        7 | 8 => data.extend_from_slice(&[0; 8]),
                        _ => data.extend_from_slice(&(r >> 8).to_le_bytes()[..6]),
                    }
                }
            }
            Kind::Random => {
                while data.len() < size {
                    data.extend_from_slice(&rng.next().to_le_bytes());
                }
            }
        }
        data.truncate(size);
        data
    }
}

/// Writes the tree into `root`, which must be missing or empty.
fn generate(root: &Path) -> Result<(), Box<dyn Error>> {
    fs::create_dir_all(root)?;
    if fs::read_dir(root)?.next().is_some() {
        return Err(format!("{} is not empty", root.display()).into());
    }
    let mut generator = Generator::new();

    // Directories: TOPS × PACKAGES, and every 8th package gets share/doc below it.
    let mut dirs: Vec<PathBuf> = Vec::new();
    let mut leaves: Vec<PathBuf> = Vec::new();
    for top in TOPS {
        dirs.push(PathBuf::from(top));
        for package in 0..PACKAGES {
            let dir = PathBuf::from(format!("{top}/pkg-{package:02}"));
            dirs.push(dir.clone());
            leaves.push(dir.clone());
            if package % 8 == 0 {
                dirs.push(dir.join("share"));
                dirs.push(dir.join("share/doc"));
                leaves.push(dir.join("share/doc"));
            }
        }
    }
    for dir in &dirs {
        fs::create_dir(root.join(dir))?;
    }

    // Sizes: many small files, fewer large ones, then scaled so that they sum to TOTAL_BYTES.
    let rng = &mut generator.rng;
    let mut sizes: Vec<u64> = (0..FILES)
        .map(|_| match rng.below(1000) {
            0..=599 => rng.range(100, 4_096),
            600..=899 => rng.range(4_096, 16_384),
            900..=994 => rng.range(16_384, 65_536),
            _ => rng.range(100_000, 700_000),
        })
        .collect();
    let sum: u64 = sizes.iter().sum();
    for size in &mut sizes {
        *size = (u128::from(*size) * u128::from(TOTAL_BYTES) / u128::from(sum)) as u64;
    }
    let short = TOTAL_BYTES - sizes.iter().sum::<u64>();
    sizes[0] += short;

    let mut files: Vec<PathBuf> = Vec::with_capacity(FILES);
    for (i, &size) in sizes.iter().enumerate() {
        let r = generator.rng.below(100);
        let (kind, extension, mode) = match r {
            0..=59 => (Kind::Text, ["txt", "py", "conf", "h", "js"][i % 5], 0o644),
            60..=89 => (Kind::Binary, ["so", "bin", "o"][i % 3], 0o755),
            _ => (Kind::Random, ["gz", "png", "jar"][i % 3], 0o644),
        };
        let dir = &leaves[generator.rng.below(leaves.len() as u64) as usize];
        // 1% of the names are long (> 100 bytes: PAX / GNU long-name entries).
        let stem = if i % 100 == 7 {
            "a-rather-long-file-name-as-found-in-node-modules-and-python-site-packages".repeat(2)
        } else {
            format!("file-{}", i % 7)
        };
        let path = dir.join(format!("{stem}-{i:05}.{extension}"));
        let data = generator.fill(kind, size as usize);
        let full = root.join(&path);
        fs::write(&full, &data)?;
        fs::set_permissions(&full, fs::Permissions::from_mode(mode))?;
        files.push(path);
    }

    // Symlinks: relative to files and directories elsewhere in the tree, some absolute.
    let mut links: Vec<PathBuf> = Vec::with_capacity(SYMLINKS);
    for i in 0..SYMLINKS {
        let dir = &leaves[generator.rng.below(leaves.len() as u64) as usize];
        let target = if i % 4 == 3 {
            &dirs[generator.rng.below(dirs.len() as u64) as usize]
        } else {
            &files[generator.rng.below(files.len() as u64) as usize]
        };
        let target = if i % 10 == 9 {
            Path::new("/").join(target)
        } else {
            let up = "../".repeat(dir.components().count());
            PathBuf::from(up).join(target)
        };
        let link = dir.join(format!("link-{i:03}"));
        symlink(&target, root.join(&link))?;
        links.push(link);
    }

    // Times last: creating entries changes their directory's mtime.
    let time = Timespec {
        tv_sec: MTIME,
        tv_nsec: 0,
    };
    let times = Timestamps {
        last_access: time,
        last_modification: time,
    };
    for path in files.iter().chain(&links).chain(&dirs) {
        rustix::fs::utimensat(CWD, root.join(path), &times, AtFlags::SYMLINK_NOFOLLOW)
            .map_err(|e| format!("{}: {e}", path.display()))?;
    }
    for dir in &dirs {
        fs::set_permissions(root.join(dir), fs::Permissions::from_mode(0o755))?;
    }
    fs::set_permissions(root, fs::Permissions::from_mode(0o755))?;
    rustix::fs::utimensat(CWD, root, &times, AtFlags::empty())?;
    println!(
        "gen files={FILES} bytes={TOTAL_BYTES} dirs={} symlinks={SYMLINKS}",
        dirs.len()
    );
    Ok(())
}

/// Counts what is written to it.
#[derive(Debug, Default)]
struct Counter(u64);

impl Write for Counter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0 += buf.len() as u64;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fn layer(dir: &Path, algorithm: &str, out: &str) -> Result<(), Box<dyn Error>> {
    let compression = match algorithm {
        "gzip" => Compression::Gzip { level: 6 },
        "zstd" => Compression::Zstd { level: 3 },
        // `zstd:N`: another level (the zstd CLI's `-N`).
        zstd if zstd.starts_with("zstd:") => Compression::Zstd {
            level: zstd[5..].parse()?,
        },
        "none" => Compression::Uncompressed,
        other => return Err(format!("unknown compression {other:?}").into()),
    };
    let options = LayerOptions {
        compression,
        source_date_epoch: None,
        threads: 0,
    };
    let to_stdout = out == "-";
    let start = Instant::now();
    let mut sink = if to_stdout {
        File::from(io::stdout().as_fd().try_clone_to_owned()?)
    } else {
        File::create(out).map_err(|e| format!("{out}: {e}"))?
    };
    let descriptor = write_layer(dir, SourceKind::PlainDir, &mut sink, &options)?;
    let seconds = start.elapsed().as_secs_f64();
    drop(sink);

    let tar_bytes = if compression == Compression::Uncompressed {
        descriptor.size
    } else {
        let mut counter = Counter::default();
        let plain = LayerOptions {
            compression: Compression::Uncompressed,
            ..options.clone()
        };
        let tar = write_layer(dir, SourceKind::PlainDir, &mut counter, &plain)?;
        if tar.diff_id != descriptor.diff_id {
            return Err(format!(
                "diff_id of the uncompressed pass {} differs from {}",
                tar.diff_id, descriptor.diff_id
            )
            .into());
        }
        counter.0
    };
    let name = match compression {
        Compression::Gzip { level } => format!("gzip-{level}"),
        Compression::Zstd { level } => format!("zstd-{level}"),
        Compression::Uncompressed => "none".to_string(),
    };
    let report = format!(
        "layer compression={name} seconds={seconds:.3} tar_bytes={tar_bytes} mb_per_s={:.1} \
         blob_bytes={} diff_id={} digest={}",
        tar_bytes as f64 / seconds / 1e6,
        descriptor.size,
        descriptor.diff_id,
        descriptor.digest,
    );
    if to_stdout {
        eprintln!("{report}");
    } else {
        println!("{report}");
    }
    Ok(())
}

fn apply(tar: &Path, dest: &Path) -> Result<(), Box<dyn Error>> {
    fs::create_dir_all(dest)?;
    let start = Instant::now();
    let file = File::open(tar).map_err(|e| format!("{}: {e}", tar.display()))?;
    let stats = apply_layer(
        BufReader::with_capacity(1 << 20, file),
        dest,
        &ApplyOptions::new(ApplyMode::Flatten),
    )?;
    let seconds = start.elapsed().as_secs_f64();
    println!(
        "apply seconds={seconds:.3} entries={} tar_bytes={} mb_per_s={:.1} diff_id={} \
         owners_not_set={}",
        stats.entries,
        stats.bytes,
        stats.bytes as f64 / seconds / 1e6,
        stats.diff_id,
        stats.owners_not_set,
    );
    Ok(())
}
