//! rbuild-digest: content addresses.
//!
//! A [`Digest`] is `sha256:` followed by exactly 64 lowercase hex digits; the constructor checks
//! it, so every `Digest` in the program is well formed and can be used as a file name. Digests are
//! computed while data streams ([`Digester`], [`DigestingReader`]) and checked while it is read
//! ([`VerifyingReader`]): nothing ever needs a whole blob in memory.

use std::fmt;
use std::io::{self, Read, Write};
use std::str::FromStr;
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::thread::JoinHandle;

use sha2::{Digest as _, Sha256};

/// Length of a sha256 digest in hex digits.
const SHA256_HEX_LEN: usize = 64;

/// A validated `sha256:<64 lowercase hex>` digest.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Digest {
    hex: String,
}

/// Why a string is not a digest.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DigestError {
    #[error("Unsupported digest algorithm in `{0}` (expected `sha256:`)")]
    Algorithm(String),
    #[error("Invalid sha256 digest `{0}` (expected 64 lowercase hex digits)")]
    Hex(String),
}

impl Digest {
    /// The digest of `bytes`.
    pub fn of(bytes: &[u8]) -> Digest {
        Digest::from_hash(Sha256::digest(bytes).as_slice())
    }

    fn from_hash(hash: &[u8]) -> Digest {
        let mut hex = String::with_capacity(SHA256_HEX_LEN);
        for byte in hash {
            hex.push(char::from_digit(u32::from(byte >> 4), 16).unwrap_or('0'));
            hex.push(char::from_digit(u32::from(byte & 0xf), 16).unwrap_or('0'));
        }
        Digest { hex }
    }

    /// The algorithm name (always `sha256` today).
    pub fn algorithm(&self) -> &'static str {
        "sha256"
    }

    /// The 64 hex digits, usable as a file name.
    pub fn hex(&self) -> &str {
        &self.hex
    }
}

impl FromStr for Digest {
    type Err = DigestError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let Some(hex) = s.strip_prefix("sha256:") else {
            return Err(DigestError::Algorithm(s.to_string()));
        };
        let valid = hex.len() == SHA256_HEX_LEN
            && hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        if !valid {
            return Err(DigestError::Hex(s.to_string()));
        }
        Ok(Digest {
            hex: hex.to_string(),
        })
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256:{}", self.hex)
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Digest(sha256:{})", self.hex)
    }
}

impl serde::Serialize for Digest {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Digest {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = String::deserialize(deserializer)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// Computes a digest and a byte count of everything written to it.
#[derive(Default)]
pub struct Digester {
    hasher: Sha256,
    len: u64,
}

impl fmt::Debug for Digester {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Digester").field("len", &self.len).finish()
    }
}

impl Digester {
    pub fn new() -> Self {
        Digester::default()
    }

    pub fn update(&mut self, bytes: &[u8]) {
        self.hasher.update(bytes);
        self.len += bytes.len() as u64;
    }

    /// Bytes seen so far.
    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The digest and size of everything written.
    pub fn finish(self) -> (Digest, u64) {
        (
            Digest::from_hash(self.hasher.finalize().as_slice()),
            self.len,
        )
    }
}

impl Write for Digester {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.update(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Bytes per chunk handed to a [`BackgroundDigester`]'s thread.
const CHUNK: usize = 256 << 10;
/// Chunks in flight: memory is bounded by about `(IN_FLIGHT + 3) × CHUNK` (1.75 MiB).
const IN_FLIGHT: usize = 4;

/// A digester whose hashing runs on its own thread, for streams where sha256 would otherwise
/// be most of the work (an uncompressed layer, applying a layer). `update` copies the bytes into
/// a chunk; full chunks go, in order, through a bounded channel to the hashing thread, which
/// hands the buffers back for reuse.
///
/// Invariant: the digest covers exactly the bytes passed to `update`, in order. Dropping it
/// (also on error paths) closes the channel and joins the thread: no thread outlives it.
pub struct BackgroundDigester {
    chunk: Vec<u8>,
    to_hasher: Option<SyncSender<Vec<u8>>>,
    spare: Receiver<Vec<u8>>,
    handle: Option<JoinHandle<(Digest, u64)>>,
}

impl fmt::Debug for BackgroundDigester {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BackgroundDigester")
            .field("buffered", &self.chunk.len())
            .finish()
    }
}

fn hasher_gone() -> io::Error {
    io::Error::other("the hashing thread stopped")
}

impl BackgroundDigester {
    /// Starts the hashing thread.
    pub fn new() -> io::Result<Self> {
        let (to_hasher, chunks) = sync_channel::<Vec<u8>>(IN_FLIGHT);
        let (give_back, spare) = sync_channel::<Vec<u8>>(IN_FLIGHT + 2);
        let handle = std::thread::Builder::new()
            .name("rbuild-digest".into())
            .spawn(move || {
                let mut digester = Digester::new();
                for mut chunk in chunks {
                    digester.update(&chunk);
                    chunk.clear();
                    // Enough spares, or the sender is gone: dropping the buffer is fine.
                    let _ = give_back.try_send(chunk);
                }
                digester.finish()
            })?;
        Ok(BackgroundDigester {
            chunk: Vec::with_capacity(CHUNK),
            to_hasher: Some(to_hasher),
            spare,
            handle: Some(handle),
        })
    }

    fn ship(&mut self) -> io::Result<()> {
        if self.chunk.is_empty() {
            return Ok(());
        }
        let next = self
            .spare
            .try_recv()
            .unwrap_or_else(|_| Vec::with_capacity(CHUNK));
        let full = std::mem::replace(&mut self.chunk, next);
        let sender = self.to_hasher.as_ref().ok_or_else(hasher_gone)?;
        sender.send(full).map_err(|_| hasher_gone())
    }

    /// Adds `bytes` to the digest.
    pub fn update(&mut self, mut bytes: &[u8]) -> io::Result<()> {
        while !bytes.is_empty() {
            let take = bytes.len().min(CHUNK - self.chunk.len());
            self.chunk.extend_from_slice(&bytes[..take]);
            bytes = &bytes[take..];
            if self.chunk.len() == CHUNK {
                self.ship()?;
            }
        }
        Ok(())
    }

    /// The digest and size of everything passed to `update`.
    pub fn finish(mut self) -> io::Result<(Digest, u64)> {
        self.ship()?;
        drop(self.to_hasher.take());
        let handle = self.handle.take().ok_or_else(hasher_gone)?;
        handle.join().map_err(|_| hasher_gone())
    }
}

impl Drop for BackgroundDigester {
    fn drop(&mut self) {
        drop(self.to_hasher.take());
        if let Some(handle) = self.handle.take() {
            let _ = handle.join();
        }
    }
}

/// A reader that digests what passes through it on a background thread.
#[derive(Debug)]
pub struct BackgroundDigestingReader<R> {
    inner: R,
    digester: BackgroundDigester,
}

impl<R: Read> BackgroundDigestingReader<R> {
    pub fn new(inner: R) -> io::Result<Self> {
        Ok(BackgroundDigestingReader {
            inner,
            digester: BackgroundDigester::new()?,
        })
    }

    /// The digest and size of what was read so far.
    pub fn finish(self) -> io::Result<(Digest, u64)> {
        self.digester.finish()
    }
}

impl<R: Read> Read for BackgroundDigestingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.digester.update(&buf[..n])?;
        Ok(n)
    }
}

/// A reader that digests what passes through it.
#[derive(Debug)]
pub struct DigestingReader<R> {
    inner: R,
    digester: Digester,
}

impl<R: Read> DigestingReader<R> {
    pub fn new(inner: R) -> Self {
        DigestingReader {
            inner,
            digester: Digester::new(),
        }
    }

    /// The digest and size of what was read so far.
    pub fn finish(self) -> (Digest, u64) {
        self.digester.finish()
    }
}

impl<R: Read> Read for DigestingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.digester.update(&buf[..n]);
        Ok(n)
    }
}

/// A reader that fails at end of input unless the data had the expected digest (and size, when
/// given), and fails as soon as it has read more than the expected size.
///
/// Invariants: once it has returned `Ok(0)` the content is verified and every later read is
/// `Ok(0)` (more data from a non-fused source is an error, never passed on); once it has
/// failed, every later read fails the same way. A mismatch is `io::ErrorKind::InvalidData`
/// naming both digests.
#[derive(Debug)]
pub struct VerifyingReader<R> {
    inner: R,
    digester: Digester,
    expected: Digest,
    expected_size: Option<u64>,
    state: VerifyState,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum VerifyState {
    Reading,
    Verified,
    Failed(String),
}

impl<R: Read> VerifyingReader<R> {
    pub fn new(inner: R, expected: Digest, expected_size: Option<u64>) -> Self {
        VerifyingReader {
            inner,
            digester: Digester::new(),
            expected,
            expected_size,
            state: VerifyState::Reading,
        }
    }

    fn fail(&mut self, message: String) -> io::Error {
        self.state = VerifyState::Failed(message.clone());
        io::Error::new(io::ErrorKind::InvalidData, message)
    }

    /// Checks digest and size at end of input.
    fn verify_end(&mut self) -> io::Result<()> {
        let (got, len) = std::mem::take(&mut self.digester).finish();
        if let Some(size) = self.expected_size {
            if len != size {
                return Err(self.fail(format!(
                    "Content of {} has {len} bytes, expected {size}",
                    self.expected
                )));
            }
        }
        if got != self.expected {
            return Err(self.fail(format!(
                "Content digest mismatch: expected {}, got {got}",
                self.expected
            )));
        }
        self.state = VerifyState::Verified;
        Ok(())
    }
}

impl<R: Read> Read for VerifyingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match &self.state {
            VerifyState::Failed(message) => {
                return Err(io::Error::new(io::ErrorKind::InvalidData, message.clone()))
            }
            VerifyState::Verified => {
                let mut probe = [0u8; 1];
                return match self.inner.read(&mut probe)? {
                    0 => Ok(0),
                    _ => Err(self.fail(format!(
                        "Content of {} continued after its end",
                        self.expected
                    ))),
                };
            }
            VerifyState::Reading => {}
        }
        if buf.is_empty() {
            return Ok(0);
        }
        let n = self.inner.read(buf)?;
        self.digester.update(&buf[..n]);
        if let Some(size) = self.expected_size {
            if self.digester.len() > size {
                return Err(self.fail(format!(
                    "Content of {} is longer than the expected {size} bytes",
                    self.expected
                )));
            }
        }
        if n == 0 {
            self.verify_end()?;
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EMPTY: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn parses_and_prints() {
        let d: Digest = EMPTY.parse().expect("valid");
        assert_eq!(d.to_string(), EMPTY);
        assert_eq!(Digest::of(b""), d);
        assert!("sha512:00".parse::<Digest>().is_err());
        assert!("sha256:E3B0".parse::<Digest>().is_err());
        assert!(EMPTY.to_uppercase().parse::<Digest>().is_err());
        assert!(format!("{EMPTY}0").parse::<Digest>().is_err());
        let json = serde_json::to_string(&d).expect("ser");
        assert_eq!(json, format!("\"{EMPTY}\""));
        assert_eq!(serde_json::from_str::<Digest>(&json).expect("de"), d);
        assert!(serde_json::from_str::<Digest>("\"sha256:zz\"").is_err());
    }

    #[test]
    fn streaming_matches_one_shot() {
        let data = vec![7u8; 100_000];
        let mut d = Digester::new();
        for chunk in data.chunks(333) {
            d.write_all(chunk).expect("write");
        }
        assert_eq!(d.finish(), (Digest::of(&data), 100_000));
        let mut r = DigestingReader::new(&data[..]);
        io::copy(&mut r, &mut io::sink()).expect("copy");
        assert_eq!(r.finish().0, Digest::of(&data));
    }

    #[test]
    fn background_digesting_matches_one_shot() {
        let data: Vec<u8> = (0..3 * CHUNK + 12345)
            .map(|i| (i * 31 % 251) as u8)
            .collect();
        for step in [1usize, 511, CHUNK, CHUNK + 7, data.len()] {
            let mut d = BackgroundDigester::new().expect("thread");
            for piece in data.chunks(step) {
                d.update(piece).expect("update");
            }
            assert_eq!(
                d.finish().expect("finish"),
                (Digest::of(&data), data.len() as u64)
            );
        }
        let empty = BackgroundDigester::new().expect("thread");
        assert_eq!(empty.finish().expect("finish"), (Digest::of(b""), 0));
        let mut r = BackgroundDigestingReader::new(&data[..]).expect("thread");
        let mut out = Vec::new();
        r.read_to_end(&mut out).expect("read");
        assert_eq!(out, data);
        assert_eq!(r.finish().expect("finish").0, Digest::of(&data));
        // Dropped unfinished: the thread is joined, nothing hangs.
        let mut unfinished = BackgroundDigester::new().expect("thread");
        unfinished.update(&data).expect("update");
        drop(unfinished);
    }

    #[test]
    fn verifying_reader_accepts_and_rejects() {
        let data = b"hello".to_vec();
        let good = Digest::of(&data);
        let mut ok = VerifyingReader::new(&data[..], good.clone(), Some(5));
        let mut out = Vec::new();
        ok.read_to_end(&mut out).expect("verified");
        assert_eq!(out, data);

        let mut bad = VerifyingReader::new(&b"hellp"[..], good.clone(), None);
        let err = bad.read_to_end(&mut Vec::new()).expect_err("mismatch");
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);

        let mut long = VerifyingReader::new(&b"hello!"[..], good.clone(), Some(5));
        assert!(long.read_to_end(&mut Vec::new()).is_err());
        let mut short = VerifyingReader::new(&b"hell"[..], good.clone(), Some(5));
        assert!(short.read_to_end(&mut Vec::new()).is_err());
        assert!(
            short.read(&mut [0u8; 8]).is_err(),
            "a failed reader stays failed"
        );
    }

    /// A source that returns EOF once, then more data (not fused).
    struct Unfused(u8);

    impl Read for Unfused {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            self.0 += 1;
            match self.0 {
                1 => {
                    buf[..5].copy_from_slice(b"hello");
                    Ok(5)
                }
                2 => Ok(0),
                _ => {
                    buf[0] = b'!';
                    Ok(1)
                }
            }
        }
    }

    #[test]
    fn data_after_a_verified_end_is_an_error() {
        let mut r = VerifyingReader::new(Unfused(0), Digest::of(b"hello"), Some(5));
        let mut buf = [0u8; 16];
        assert_eq!(r.read(&mut buf).expect("data"), 5);
        assert_eq!(r.read(&mut buf).expect("verified end"), 0);
        assert!(r.read(&mut buf).is_err(), "no unverified byte may pass");
    }
}
