//! Digest plumbing: `Write` adapters that digest exactly the bytes their inner writer accepted.
//!
//! The compressed pipelines nest two of them: `Hashing(tar) → compressor → Hashing(blob) →
//! output`, so the diff_id and the blob digest come out of the same pass. The uncompressed
//! pipeline, where sha256 is the biggest cost, hashes on a second thread
//! ([`ThreadedHashingWriter`]) while the caller's thread walks the tree and writes.

use std::io::{self, Write};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::thread::JoinHandle;

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

/// Bytes per chunk handed to the hashing thread (and written to the output in one call).
const CHUNK: usize = 256 << 10;
/// Chunks in flight between the threads: memory is bounded by `(IN_FLIGHT + 2) × CHUNK`.
const IN_FLIGHT: usize = 4;

/// Like [`HashingWriter`], with the hashing on its own thread. Bytes are batched into chunks;
/// each full chunk is written to `inner` on the caller's thread and then sent, in order, to the
/// hasher, which returns the buffer for reuse. Digest order equals write order (one FIFO).
pub(crate) struct ThreadedHashingWriter<W> {
    inner: W,
    chunk: Vec<u8>,
    spare: Receiver<Vec<u8>>,
    hasher: HasherThread,
}

/// The hashing thread and the channel feeding it. Dropping it closes the channel and joins the
/// thread, so no thread outlives the writer, also on error paths.
struct HasherThread {
    to_hasher: Option<SyncSender<Vec<u8>>>,
    handle: Option<JoinHandle<(Digest, u64)>>,
}

impl HasherThread {
    fn send(&self, chunk: Vec<u8>) -> io::Result<()> {
        let sender = self.to_hasher.as_ref().ok_or_else(hasher_gone)?;
        sender.send(chunk).map_err(|_| hasher_gone())
    }

    fn finish(mut self) -> io::Result<(Digest, u64)> {
        drop(self.to_hasher.take());
        let handle = self.handle.take().ok_or_else(hasher_gone)?;
        handle.join().map_err(|_| hasher_gone())
    }
}

impl Drop for HasherThread {
    fn drop(&mut self) {
        drop(self.to_hasher.take());
        if let Some(handle) = self.handle.take() {
            let _ = handle.join();
        }
    }
}

impl<W> std::fmt::Debug for ThreadedHashingWriter<W> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ThreadedHashingWriter")
            .field("buffered", &self.chunk.len())
            .finish()
    }
}

impl<W: Write> ThreadedHashingWriter<W> {
    pub(crate) fn new(inner: W) -> io::Result<Self> {
        let (to_hasher, chunks) = sync_channel::<Vec<u8>>(IN_FLIGHT);
        let (give_back, spare) = sync_channel::<Vec<u8>>(IN_FLIGHT + 2);
        let hasher = std::thread::Builder::new()
            .name("rbuild-layer-hash".into())
            .spawn(move || {
                let mut digester = Digester::new();
                for mut chunk in chunks {
                    digester.update(&chunk);
                    chunk.clear();
                    // The writer may be gone or have enough spares: dropping the buffer is fine.
                    let _ = give_back.try_send(chunk);
                }
                digester.finish()
            })?;
        Ok(ThreadedHashingWriter {
            inner,
            chunk: Vec::with_capacity(CHUNK),
            spare,
            hasher: HasherThread {
                to_hasher: Some(to_hasher),
                handle: Some(hasher),
            },
        })
    }

    /// Writes the current chunk to `inner` and hands it to the hasher.
    fn ship(&mut self) -> io::Result<()> {
        if self.chunk.is_empty() {
            return Ok(());
        }
        self.inner.write_all(&self.chunk)?;
        let next = self
            .spare
            .try_recv()
            .unwrap_or_else(|_| Vec::with_capacity(CHUNK));
        let full = std::mem::replace(&mut self.chunk, next);
        self.hasher.send(full)
    }

    /// The inner writer, and the digest and size of everything written to it.
    pub(crate) fn finish(mut self) -> io::Result<(W, Digest, u64)> {
        self.ship()?;
        let (digest, size) = self.hasher.finish()?;
        Ok((self.inner, digest, size))
    }
}

fn hasher_gone() -> io::Error {
    io::Error::other("the layer hashing thread stopped")
}

impl<W: Write> Write for ThreadedHashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let room = CHUNK - self.chunk.len();
        let n = buf.len().min(room);
        self.chunk.extend_from_slice(&buf[..n]);
        if self.chunk.len() == CHUNK {
            self.ship()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.ship()?;
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
        let data: Vec<u8> = (0..3 * CHUNK + 12345)
            .map(|i| (i * 31 % 251) as u8)
            .collect();
        for step in [1usize, 511, 4096, CHUNK, CHUNK + 7, data.len()] {
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
        let err = w
            .write_all(&vec![0u8; 2 * CHUNK])
            .expect_err("broken output");
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
