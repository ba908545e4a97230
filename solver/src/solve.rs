//! The scheduler: one shared future per needed vertex.

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use futures::future::{BoxFuture, FutureExt, Shared};
use rbuild_graph::{Definition, Op, VertexId};
use tokio::sync::Semaphore;

use crate::key::{explain_miss, key_parts, CacheKey};
use crate::{Event, LogSink, LogStream, Reporter, Worker, WorkerError};

/// How to solve.
#[derive(Debug, Clone)]
pub struct SolveOptions {
    /// `--no-cache`: run every op, refreshing the cache entries.
    pub no_cache: bool,
    /// `--no-cache-filter`: stage indexes whose ops always run.
    pub no_cache_stages: BTreeSet<usize>,
    /// `--jobs`: ops executing at once, whatever their kind. `None`: RUN steps (which mostly
    /// wait on their own processes) are not bounded by rbuild, and its own CPU-bound ops
    /// (copying, checksums) run at most `cpu_slots` at once.
    pub jobs: Option<usize>,
    /// The number of cores, for rbuild's CPU-bound ops when `jobs` is not given.
    pub cpu_slots: usize,
}

/// The target's result and key.
#[derive(Debug, Clone)]
pub struct Solved<T> {
    pub output: T,
    pub key: CacheKey,
    /// Vertices that ran / were cached.
    pub executed: usize,
    pub cached: usize,
}

/// Why the build failed: the first failing vertex and its error.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{name}: {error}")]
pub struct SolveError {
    pub vertex: Option<VertexId>,
    pub name: String,
    pub error: WorkerError,
}

type VertexResult<T> = Result<(CacheKey, T), Arc<SolveError>>;
type VertexFuture<T> = Shared<BoxFuture<'static, VertexResult<T>>>;

struct Shared_<W: Worker> {
    definition: Arc<Definition>,
    worker: Arc<W>,
    reporter: Arc<dyn Reporter>,
    options: SolveOptions,
    /// Permits for RUN steps and for everything else (one semaphore when `--jobs` is given).
    exec_slots: Arc<Semaphore>,
    cpu_slots: Arc<Semaphore>,
    next_number: AtomicUsize,
    executed: AtomicUsize,
    cached: AtomicUsize,
}

/// Solves the definition's target.
pub async fn solve<W: Worker>(
    definition: Arc<Definition>,
    worker: Arc<W>,
    reporter: Arc<dyn Reporter>,
    options: SolveOptions,
) -> Result<Solved<W::Output>, SolveError> {
    let Some(target) = definition.target else {
        return Err(SolveError {
            vertex: None,
            name: "build".into(),
            error: WorkerError::new("the build has no target"),
        });
    };
    let (exec_slots, cpu_slots) = match options.jobs {
        Some(jobs) => {
            let one = Arc::new(Semaphore::new(jobs.max(1)));
            (one.clone(), one)
        }
        None => (
            Arc::new(Semaphore::new(Semaphore::MAX_PERMITS)),
            Arc::new(Semaphore::new(options.cpu_slots.max(1))),
        ),
    };
    let state = Arc::new(Shared_ {
        exec_slots,
        cpu_slots,
        definition: definition.clone(),
        worker: worker.clone(),
        reporter,
        options,
        next_number: AtomicUsize::new(1),
        executed: AtomicUsize::new(0),
        cached: AtomicUsize::new(0),
    });
    let mut futures: HashMap<VertexId, VertexFuture<W::Output>> = HashMap::new();
    for id in definition.needed() {
        let inputs: Vec<VertexFuture<W::Output>> = definition.graph[id]
            .inputs
            .iter()
            .map(|input| futures[input].clone())
            .collect();
        let state = state.clone();
        let future = async move { solve_vertex(state, id, inputs).await }
            .boxed()
            .shared();
        futures.insert(id, future);
    }
    // Drive every vertex, not only the target's chain: a failure anywhere surfaces at once.
    let all: Vec<_> = futures.values().cloned().map(|f| tokio::spawn(f)).collect();
    let result = futures[&target].clone().await;
    if result.is_err() {
        worker.cancel_all();
    }
    for handle in all {
        let _ = handle.await;
    }
    match result {
        Ok((key, output)) => Ok(Solved {
            output,
            key,
            executed: state.executed.load(Ordering::Relaxed),
            cached: state.cached.load(Ordering::Relaxed),
        }),
        Err(error) => Err((*error).clone()),
    }
}

async fn solve_vertex<W: Worker>(
    state: Arc<Shared_<W>>,
    id: VertexId,
    inputs: Vec<VertexFuture<W::Output>>,
) -> VertexResult<W::Output> {
    let fail = |error: WorkerError| {
        let vertex = &state.definition.graph[id];
        Arc::new(SolveError {
            vertex: Some(id),
            name: vertex.name.clone(),
            error,
        })
    };
    let vertex = state.definition.graph[id].clone();
    let silent = matches!(vertex.op, Op::Scratch | Op::Context { .. });

    // A COPY's files are checksummed as soon as its source is ready, while the parent chain
    // may still be running; a missing source file fails the build at once.
    let input_count = inputs.len();
    let mut early_content = None;
    if let Some(i) = crate::content_input(&vertex) {
        if let Some(Ok((_, source))) = match inputs.get(i) {
            Some(future) => Some(future.clone().await),
            None => None,
        } {
            let mut known: Vec<Option<W::Output>> = vec![None; input_count];
            known[i] = Some(source);
            let worker = state.worker.clone();
            let vertex_c = vertex.clone();
            let content = tokio::task::spawn_blocking(move || worker.content(&vertex_c, &known))
                .await
                .map_err(|e| fail(WorkerError::new(format!("worker panicked: {e}"))))?;
            match content {
                Ok(parts) => early_content = Some(parts),
                Err(error) => {
                    if !silent {
                        let number = state.next_number.fetch_add(1, Ordering::Relaxed);
                        state.reporter.event(Event::Started {
                            vertex: number,
                            name: vertex.name.clone(),
                        });
                        state.reporter.event(Event::Failed {
                            vertex: number,
                            error: error.message.clone(),
                        });
                    }
                    state.worker.cancel_all();
                    return Err(fail(error));
                }
            }
        }
    }

    let mut input_keys = Vec::with_capacity(input_count);
    let mut input_outputs = Vec::with_capacity(input_count);
    let results = futures::future::join_all(inputs).await;
    // A failed input: report the real failure, not a sibling's cancellation.
    if let Some(error) = results
        .iter()
        .filter_map(|r| r.as_ref().err())
        .min_by_key(|e| e.error.cancelled)
    {
        return Err(error.clone());
    }
    for (key, output) in results.into_iter().flatten() {
        input_keys.push(key);
        input_outputs.push(output);
    }
    let content = match early_content {
        Some(parts) => parts,
        None => {
            let worker = state.worker.clone();
            let vertex_c = vertex.clone();
            let known: Vec<Option<W::Output>> = input_outputs.iter().cloned().map(Some).collect();
            tokio::task::spawn_blocking(move || worker.content(&vertex_c, &known))
                .await
                .map_err(|e| fail(WorkerError::new(format!("worker panicked: {e}"))))?
                .map_err(fail)?
        }
    };
    let key_refs: Vec<&CacheKey> = input_keys.iter().collect();
    let key = CacheKey::from_parts(key_parts(&vertex, &key_refs, content));

    let number = if silent {
        0
    } else {
        state.next_number.fetch_add(1, Ordering::Relaxed)
    };
    let report = |event: Event| {
        if !silent {
            state.reporter.event(event)
        }
    };
    report(Event::Started {
        vertex: number,
        name: vertex.name.clone(),
    });
    let bypass = state.options.no_cache
        || vertex
            .stage
            .is_some_and(|s| state.options.no_cache_stages.contains(&s));
    let always_run = matches!(
        vertex.op,
        Op::Image { .. } | Op::Scratch | Op::Context { .. }
    );
    if !bypass || always_run {
        let worker = state.worker.clone();
        let (vertex_c, key_c) = (vertex.clone(), key.clone());
        let hit = tokio::task::spawn_blocking(move || worker.lookup(&vertex_c, &key_c))
            .await
            .map_err(|e| fail(WorkerError::new(format!("worker panicked: {e}"))))?;
        if let Some(output) = hit {
            if !always_run {
                state.cached.fetch_add(1, Ordering::Relaxed);
                report(Event::Cached { vertex: number });
            } else {
                report(Event::Done {
                    vertex: number,
                    seconds: 0.0,
                });
            }
            return Ok((key, output));
        }
    }
    if !always_run {
        let reason = if bypass {
            "--no-cache".to_string()
        } else {
            let worker = state.worker.clone();
            let slot = vertex.slot.clone();
            let previous = tokio::task::spawn_blocking(move || worker.previous_parts(&slot))
                .await
                .ok()
                .flatten();
            explain_miss(previous.as_ref(), &key.parts)
        };
        report(Event::Missed {
            vertex: number,
            reason,
        });
    }

    let slots = if matches!(vertex.op, Op::Exec(_)) {
        &state.exec_slots
    } else {
        &state.cpu_slots
    };
    let _permit = slots
        .acquire()
        .await
        .map_err(|_| fail(WorkerError::cancelled()))?;
    let started = Instant::now();
    let worker = state.worker.clone();
    let reporter = state.reporter.clone();
    let (vertex_c, key_c) = (vertex.clone(), key.clone());
    let result = tokio::task::spawn_blocking(move || {
        let mut sink = Forward {
            reporter,
            vertex: number,
            silent,
        };
        worker.execute(&vertex_c, &key_c, &input_outputs, &mut sink)
    })
    .await
    .map_err(|e| fail(WorkerError::new(format!("worker panicked: {e}"))))?;
    match result {
        Ok(output) => {
            if !always_run {
                state.executed.fetch_add(1, Ordering::Relaxed);
            }
            report(Event::Done {
                vertex: number,
                seconds: started.elapsed().as_secs_f64(),
            });
            Ok((key, output))
        }
        Err(error) => {
            if !error.cancelled {
                report(Event::Failed {
                    vertex: number,
                    error: error.message.clone(),
                });
                state.worker.cancel_all();
            }
            Err(fail(error))
        }
    }
}

struct Forward {
    reporter: Arc<dyn Reporter>,
    vertex: usize,
    silent: bool,
}

impl LogSink for Forward {
    fn line(&mut self, stream: LogStream, line: &[u8]) {
        if !self.silent {
            self.reporter.event(Event::Log {
                vertex: self.vertex,
                stream,
                line: line.to_vec(),
            });
        }
    }
}
