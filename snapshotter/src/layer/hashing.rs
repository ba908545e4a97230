//! Digest plumbing: `Write` adapters that digest exactly the bytes their inner writer accepted.
//!
//! The compressed pipelines nest two of them: `Hashing(tar) → compressor → Hashing(blob) →
//! output`, so the diff_id and the blob digest come out of the same pass. The uncompressed
//! pipeline, where sha256 is the biggest cost, hashes on a second thread
//! ([`ThreadedHashingWriter`]) while the caller's thread walks the tree and writes.

use std::io::{self, Write};

use rbuild_digest::{BackgroundDigester, Digest, Digester};

/// Digests and counts what passes through to `inner`.
#[derive(Debug)]
pub(crate) struct HashingWriter<W> {
    inner: W,
    digester: Digester,
}

impl<W: Write> HashingWriter<W> {
    pub(crate) fn new(inner: W) -> Self {
        HashingWriter {
            inner,
            digester: Digester::new(),
        }
    }

    /// The inner writer, and the digest and size of everything it accepted.
    pub(crate) fn finish(self) -> (W, Digest, u64) {
        let (digest, size) = self.digester.finish();
        (self.inner, digest, size)
    }
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.digester.update(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Like [`HashingWriter`], with the hashing on a background thread (see
/// [`rbuild_digest::BackgroundDigester`]); the caller's thread only walks, copies and writes.
#[derive(Debug)]
pub(crate) struct ThreadedHashingWriter<W> {
    inner: W,
    digester: BackgroundDigester,
}

impl<W: Write> ThreadedHashingWriter<W> {
    pub(crate) fn new(inner: W) -> io::Result<Self> {
        Ok(ThreadedHashingWriter {
            inner,
            digester: BackgroundDigester::new()?,
        })
    }

    /// The inner writer, and the digest and size of everything it accepted.
    pub(crate) fn finish(self) -> io::Result<(W, Digest, u64)> {
        let (digest, size) = self.digester.finish()?;
        Ok((self.inner, digest, size))
    }
}

impl<W: Write> Write for ThreadedHashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.digester.update(&buf[..n])?;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A writer that takes at most 3 bytes per call.
    struct Trickle(Vec<u8>);

    impl Write for Trickle {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            let n = buf.len().min(3);
            self.0.extend_from_slice(&buf[..n]);
            Ok(n)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn threaded_hashing_matches_one_shot_for_any_write_pattern() {
        let data: Vec<u8> = (0..3 * (256 << 10) + 12345)
            .map(|i| (i * 31 % 251) as u8)
            .collect();
        for step in [1usize, 511, 4096, 256 << 10, (256 << 10) + 7, data.len()] {
            let mut w = ThreadedHashingWriter::new(Vec::new()).expect("thread");
            for piece in data.chunks(step) {
                w.write_all(piece).expect("write");
            }
            let (inner, digest, size) = w.finish().expect("finish");
            assert_eq!(inner, data, "step {step}");
            assert_eq!(
                (digest, size),
                (Digest::of(&data), data.len() as u64),
                "step {step}"
            );
        }
        let (inner, digest, size) = ThreadedHashingWriter::new(Vec::new())
            .expect("thread")
            .finish()
            .expect("empty");
        assert!(inner.is_empty());
        assert_eq!((digest, size), (Digest::of(b""), 0));
    }

    struct Broken;

    impl Write for Broken {
        fn write(&mut self, _: &[u8]) -> io::Result<usize> {
            Err(io::Error::other("disk full"))
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn threaded_hashing_reports_write_errors_and_stops_its_thread() {
        let mut w = ThreadedHashingWriter::new(Broken).expect("thread");
        let err = w.write_all(&vec![0u8; 2 << 20]).expect_err("broken output");
        assert_eq!(err.to_string(), "disk full");
        drop(w);
    }

    #[test]
    fn digests_what_the_inner_writer_took() {
        let mut w = HashingWriter::new(Trickle(Vec::new()));
        w.write_all(b"hello world").expect("write");
        let (inner, digest, size) = w.finish();
        assert_eq!(inner.0, b"hello world");
        assert_eq!(digest, Digest::of(b"hello world"));
        assert_eq!(size, 11);
    }
}
