//! rbuild-solver: turns a build graph into results, reusing what the cache has.
//!
//! Generic over a [`Worker`] (which runs ops, reads content for keys, and keeps the cache
//! index) and a [`Reporter`] (which receives progress [`Event`]s); it never touches the OS
//! itself and never sees a Dockerfile type. Per needed vertex, once its inputs are solved:
//!
//! 1. `worker.content(vertex, inputs)`: what the op reads besides its inputs' keys (an image's
//!    manifest digest, a checksum of every file a COPY selects);
//! 2. the cache key from the op, the inputs' keys and that content ([`key`]);
//! 3. `worker.lookup(key)`: a hit reuses the result (unless `--no-cache` or the stage is in
//!    `--no-cache-filter`); a miss is explained against the parts the same step had last time,
//!    then `worker.execute` runs it (`--jobs` at once; by default RUN steps unbounded and
//!    rbuild's own CPU-bound ops one per core).
//!
//! Scheduling ([`solve`]): every vertex is a shared future that awaits its inputs' futures, so a
//! vertex starts as soon as its own inputs are done, independent stages run concurrently, and a
//! vertex read by several others runs once. The first failure cancels the build: the solver
//! asks the worker to kill everything in flight ([`Worker::cancel_all`]) and returns that error.

pub mod key;
mod solve;

use std::collections::BTreeMap;

use rbuild_graph::Vertex;

pub use key::{explain_miss, CacheKey, DIGEST_SCHEME};
pub use solve::{solve, SolveError, SolveOptions, Solved};

/// An error of the worker, with the text the user should see.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct WorkerError {
    pub message: String,
    /// Set when the error is the result of a cancellation, not a failure of its own.
    pub cancelled: bool,
}

impl WorkerError {
    pub fn new(message: impl Into<String>) -> WorkerError {
        WorkerError {
            message: message.into(),
            cancelled: false,
        }
    }

    pub fn cancelled() -> WorkerError {
        WorkerError {
            message: "cancelled".into(),
            cancelled: true,
        }
    }
}

/// The input whose content an op's key reads (a COPY's source), if any.
pub fn content_input(vertex: &Vertex) -> Option<usize> {
    match &vertex.op {
        rbuild_graph::Op::Copy(copy) => Some(copy.input),
        _ => None,
    }
}

/// Which stream a log line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogStream {
    Stdout,
    Stderr,
}

/// Receives a running op's output lines.
pub trait LogSink {
    fn line(&mut self, stream: LogStream, line: &[u8]);
}

/// Runs ops. Every method may block (the solver calls them on blocking threads).
pub trait Worker: Send + Sync + 'static {
    /// An op's result: a filesystem snapshot, the context, ...
    type Output: Clone + Send + Sync + 'static;

    /// Content the op reads besides its inputs' keys, as named parts of its key (a COPY's
    /// files, the files a RUN bind-mounts from a build context, an image's manifest). `inputs`
    /// holds the outputs known so far: for an op with a [`content_input`] (a COPY's source)
    /// only that one, as soon as it is ready, while the others may still be running; for the
    /// others, all of them.
    fn content(
        &self,
        vertex: &Vertex,
        inputs: &[Option<Self::Output>],
    ) -> Result<BTreeMap<String, String>, WorkerError>;

    /// The cached result of `key`, if the cache holds one.
    fn lookup(&self, vertex: &Vertex, key: &CacheKey) -> Option<Self::Output>;

    /// The key parts the step at `slot` had the last time it ran.
    fn previous_parts(&self, slot: &str) -> Option<BTreeMap<String, String>>;

    /// Runs the op; the result must be stored under `key` (so a later lookup finds it) and the
    /// key's parts under the vertex's slot.
    fn execute(
        &self,
        vertex: &Vertex,
        key: &CacheKey,
        inputs: &[Self::Output],
        log: &mut dyn LogSink,
    ) -> Result<Self::Output, WorkerError>;

    /// Kills every op in flight (their `execute` then returns an error soon).
    fn cancel_all(&self);
}

/// What happened to a vertex. `vertex` numbers are progress numbers (`#N`), given in the
/// order vertices start.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    Started {
        vertex: usize,
        name: String,
    },
    Cached {
        vertex: usize,
    },
    /// The vertex will run; why the cache missed.
    Missed {
        vertex: usize,
        reason: String,
    },
    Log {
        vertex: usize,
        stream: LogStream,
        line: Vec<u8>,
    },
    Done {
        vertex: usize,
        seconds: f64,
    },
    Failed {
        vertex: usize,
        error: String,
    },
}

/// Receives progress events (from any thread).
pub trait Reporter: Send + Sync + 'static {
    fn event(&self, event: Event);
}
