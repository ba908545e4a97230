//! Digest plumbing: a `Write` adapter that digests exactly the bytes its inner writer accepted.
//!
//! The pipeline nests two of them: `Hashing(tar) → compressor → Hashing(blob) → output`, so the
//! diff_id and the blob digest come out of the same pass.

use std::io::{self, Write};

use rbuild_digest::{Digest, Digester};

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
    fn digests_what_the_inner_writer_took() {
        let mut w = HashingWriter::new(Trickle(Vec::new()));
        w.write_all(b"hello world").expect("write");
        let (inner, digest, size) = w.finish();
        assert_eq!(inner.0, b"hello world");
        assert_eq!(digest, Digest::of(b"hello world"));
        assert_eq!(size, 11);
    }
}
