//! Parallel gzip, the pigz way: one gzip member whose deflate stream is cut into fixed blocks
//! compressed on worker threads.
//!
//! The input is cut every [`BLOCK_SIZE`] bytes, at offsets that depend on nothing but the input.
//! Each block is raw deflate from a fresh compressor primed with the previous block's last 32 KiB
//! as dictionary (so matches reach back across the cut, as in pigz), and ends with a sync flush
//! (an empty stored block, byte-aligned) except the last, which ends the stream. The blocks are
//! concatenated in order; the CRC-32 is combined from per-block CRCs. Every block's bytes are a
//! function of (level, dictionary, block), so the member is the same for any number of threads.
//!
//! Header: `1f 8b 08`, no flags, mtime 0, XFL 2 at level 9 / 4 at level 1 / else 0, OS 255
//! (unknown). Trailer: CRC-32 and length mod 2^32, little endian.
//!
//! Threads: job `i` goes to worker `i mod n` and every worker answers in order, so results are
//! collected in sequence without a reorder buffer. At most `2n` blocks are in flight (each
//! ≈ 128 KiB in + 32 KiB dictionary + ≈ 128 KiB out), which bounds memory.

use std::io::{self, Write};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::thread::Scope;

use flate2::{Compress, Compression, FlushCompress, Status};

/// Input bytes per deflate block (pigz's default).
pub(crate) const BLOCK_SIZE: usize = 128 * 1024;
/// Deflate's window: the dictionary handed to the next block.
const DICT_SIZE: usize = 32 * 1024;
/// More workers than this would not help one stream and would only hold memory.
pub(crate) const MAX_WORKERS: usize = 64;

struct Job {
    input: Vec<u8>,
    dict: Vec<u8>,
    last: bool,
}

struct Done {
    input: Vec<u8>,
    dict: Vec<u8>,
    output: io::Result<Vec<u8>>,
    crc: crc32fast::Hasher,
}

/// The gzip member header for `level`.
pub(crate) fn header(level: u32) -> [u8; 10] {
    let xfl = match level {
        9 => 2,
        1 => 4,
        _ => 0,
    };
    [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, xfl, 255]
}

/// A gzip writer compressing on `workers` scoped threads. Call [`ParallelGzip::finish`]; dropping
/// it instead abandons the stream (the threads then end).
pub(crate) struct ParallelGzip<W: Write> {
    inner: W,
    block: Vec<u8>,
    jobs: Vec<Sender<Job>>,
    results: Vec<Receiver<Done>>,
    sent: usize,
    received: usize,
    crc: crc32fast::Hasher,
    /// Input bytes so far.
    total: u64,
    /// The last [`DICT_SIZE`] bytes of the block sent last.
    dict: Vec<u8>,
    /// Buffers back from finished jobs, reused for new blocks and dictionaries.
    spare: Vec<Vec<u8>>,
}

impl<W: Write> std::fmt::Debug for ParallelGzip<W> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ParallelGzip")
            .field("workers", &self.jobs.len())
            .field("sent", &self.sent)
            .field("received", &self.received)
            .finish()
    }
}

impl<W: Write> ParallelGzip<W> {
    /// Starts `workers` (at least 1, at most [`MAX_WORKERS`]) threads in `scope`. The caller
    /// writes [`header`] to `inner` first.
    pub(crate) fn new<'scope>(
        scope: &'scope Scope<'scope, '_>,
        inner: W,
        level: u32,
        workers: usize,
    ) -> io::Result<Self> {
        let mut jobs = Vec::new();
        let mut results = Vec::new();
        for i in 0..workers.clamp(1, MAX_WORKERS) {
            let (job_tx, job_rx) = channel::<Job>();
            let (done_tx, done_rx) = channel::<Done>();
            std::thread::Builder::new()
                .name(format!("rbuild-gzip-{i}"))
                .spawn_scoped(scope, move || worker(level, &job_rx, &done_tx))?;
            jobs.push(job_tx);
            results.push(done_rx);
        }
        Ok(ParallelGzip {
            inner,
            block: Vec::with_capacity(BLOCK_SIZE),
            jobs,
            results,
            sent: 0,
            received: 0,
            crc: crc32fast::Hasher::new(),
            total: 0,
            dict: Vec::new(),
            spare: Vec::new(),
        })
    }

    fn dispatch(&mut self, last: bool) -> io::Result<()> {
        let fresh = self.spare.pop().unwrap_or_default();
        let input = std::mem::replace(&mut self.block, fresh);
        self.block.clear();
        // The next block's dictionary is this block's tail, taken here rather than from the
        // worker, so workers never wait for each other.
        let mut next_dict = self.spare.pop().unwrap_or_default();
        next_dict.clear();
        next_dict.extend_from_slice(&input[input.len().saturating_sub(DICT_SIZE)..]);
        let dict = std::mem::replace(&mut self.dict, next_dict);
        let job = Job { input, dict, last };
        let worker = self.sent % self.jobs.len();
        self.jobs[worker]
            .send(job)
            .map_err(|_| io::Error::other("gzip worker thread ended"))?;
        self.sent += 1;
        while self.sent - self.received >= 2 * self.jobs.len() {
            self.collect_one()?;
        }
        Ok(())
    }

    fn collect_one(&mut self) -> io::Result<()> {
        let worker = self.received % self.results.len();
        let done = self.results[worker]
            .recv()
            .map_err(|_| io::Error::other("gzip worker thread ended"))?;
        self.received += 1;
        let output = done.output?;
        self.inner.write_all(&output)?;
        self.crc.combine(&done.crc);
        self.spare.extend([done.input, done.dict]);
        Ok(())
    }

    /// Compresses what is left, writes the trailer and returns the inner writer.
    pub(crate) fn finish(mut self) -> io::Result<W> {
        self.dispatch(true)?;
        while self.received < self.sent {
            self.collect_one()?;
        }
        let crc = self.crc.clone().finalize();
        self.inner.write_all(&crc.to_le_bytes())?;
        self.inner.write_all(&(self.total as u32).to_le_bytes())?;
        Ok(self.inner)
    }
}

impl<W: Write> Write for ParallelGzip<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let room = BLOCK_SIZE - self.block.len();
        let n = room.min(buf.len());
        if self.block.capacity() < BLOCK_SIZE {
            self.block.reserve_exact(BLOCK_SIZE - self.block.len());
        }
        self.block.extend_from_slice(&buf[..n]);
        self.total += n as u64;
        if self.block.len() == BLOCK_SIZE {
            self.dispatch(false)?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        // Flushing must not cut a block: that would make the output depend on flush calls.
        Ok(())
    }
}

fn worker(level: u32, jobs: &Receiver<Job>, done: &Sender<Done>) {
    while let Ok(job) = jobs.recv() {
        let mut crc = crc32fast::Hasher::new();
        crc.update(&job.input);
        // A fresh compressor per block: zlib-rs 0.6.8's `reset()` does not bring a compressor
        // back to its fresh state (seen at levels 1 and 6), so reusing one made a block's bytes
        // depend on what its worker compressed before, i.e. on the thread count. The test below
        // catches that.
        let mut compress = Compress::new(Compression::new(level), false);
        let output = deflate_block(&mut compress, &job.dict, &job.input, job.last);
        let reply = Done {
            input: job.input,
            dict: job.dict,
            output,
            crc,
        };
        if done.send(reply).is_err() {
            return;
        }
    }
}

/// Raw deflate of one block, primed with `dict`; sync-flushed, or finished if `last`.
fn deflate_block(
    compress: &mut Compress,
    dict: &[u8],
    input: &[u8],
    last: bool,
) -> io::Result<Vec<u8>> {
    if !dict.is_empty() {
        compress.set_dictionary(dict).map_err(io::Error::other)?;
    }
    let flush = if last {
        FlushCompress::Finish
    } else {
        FlushCompress::Sync
    };
    let mut out = Vec::with_capacity(input.len() + input.len() / 16 + 1024);
    loop {
        let consumed = usize::try_from(compress.total_in()).map_err(io::Error::other)?;
        if out.len() == out.capacity() {
            out.reserve(64 * 1024);
        }
        let status = compress
            .compress_vec(&input[consumed..], &mut out, flush)
            .map_err(io::Error::other)?;
        let all_in = compress.total_in() as usize == input.len();
        match status {
            Status::StreamEnd => return Ok(out),
            // A sync flush is complete once all input is in and room was left over.
            _ if !last && all_in && out.len() < out.capacity() => return Ok(out),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::io::Read;

    use super::*;

    fn gzip(data: &[u8], level: u32, workers: usize, chunk: usize) -> Vec<u8> {
        std::thread::scope(|scope| {
            let mut out = header(level).to_vec();
            let mut gz = ParallelGzip::new(scope, &mut out, level, workers).unwrap();
            for piece in data.chunks(chunk.max(1)) {
                gz.write_all(piece).unwrap();
            }
            gz.finish().unwrap();
            out
        })
    }

    #[test]
    fn block_boundaries_round_trip_and_ignore_threads_and_write_sizes() {
        let text: Vec<u8> = (0..4 * BLOCK_SIZE as u32)
            .flat_map(|i| (i / 7 % 251).to_le_bytes())
            .collect();
        for len in [
            0,
            1,
            BLOCK_SIZE - 1,
            BLOCK_SIZE,
            BLOCK_SIZE + 1,
            3 * BLOCK_SIZE + 5,
        ] {
            let data = &text[..len];
            for level in [0, 1, 6, 9] {
                let one = gzip(data, level, 1, 4096);
                assert!(gzip(data, level, 3, 1000) == one, "len {len} level {level}");
                assert!(
                    gzip(data, level, 2, 7 * BLOCK_SIZE) == one,
                    "len {len} level {level}"
                );
                let mut back = Vec::new();
                flate2::read::GzDecoder::new(&one[..])
                    .read_to_end(&mut back)
                    .unwrap();
                assert!(back == data, "len {len} level {level}");
            }
        }
    }
}
