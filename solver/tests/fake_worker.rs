//! The scheduler against a fake worker that records what it was asked: no root, no containers.

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rbuild_graph::{Definition, Exec, Mkdir, Op, Vertex, VertexId};
use rbuild_solver::{solve, CacheKey, Event, LogSink, Reporter, SolveOptions, Worker, WorkerError};

#[derive(Default)]
struct Fake {
    executed: Mutex<Vec<String>>,
    cache: Mutex<HashSet<String>>,
    running: AtomicUsize,
    max_running: AtomicUsize,
    cancelled: AtomicUsize,
    /// Names of vertices that fail.
    failing: HashSet<String>,
    delay: Duration,
    /// Names of vertices that take 100 times longer.
    slow: HashSet<String>,
}

impl Worker for Fake {
    type Output = String;

    fn content(
        &self,
        _: &Vertex,
        _: &[Option<String>],
    ) -> Result<BTreeMap<String, String>, WorkerError> {
        Ok(BTreeMap::new())
    }

    fn lookup(&self, vertex: &Vertex, key: &CacheKey) -> Option<String> {
        matches!(vertex.op, Op::Scratch)
            .then(String::new)
            .or_else(|| {
                self.cache
                    .lock()
                    .ok()?
                    .contains(&key.digest)
                    .then(|| vertex.name.clone())
            })
    }

    fn previous_parts(&self, _: &str) -> Option<BTreeMap<String, String>> {
        None
    }

    fn execute(
        &self,
        vertex: &Vertex,
        key: &CacheKey,
        _: &[String],
        log: &mut dyn LogSink,
    ) -> Result<String, WorkerError> {
        let now = self.running.fetch_add(1, Ordering::SeqCst) + 1;
        self.max_running.fetch_max(now, Ordering::SeqCst);
        log.line(rbuild_solver::LogStream::Stdout, vertex.name.as_bytes());
        // Work in small slices, watching for a cancel (as the sandbox does).
        let mut waited = Duration::ZERO;
        let delay = if self.slow.contains(&vertex.name) {
            self.delay * 100
        } else {
            self.delay
        };
        while waited < delay {
            if self.cancelled.load(Ordering::SeqCst) > 0 {
                self.running.fetch_sub(1, Ordering::SeqCst);
                return Err(WorkerError::cancelled());
            }
            std::thread::sleep(Duration::from_millis(5));
            waited += Duration::from_millis(5);
        }
        self.running.fetch_sub(1, Ordering::SeqCst);
        if self.failing.contains(&vertex.name) {
            return Err(WorkerError::new(format!("{} failed", vertex.name)));
        }
        self.executed
            .lock()
            .expect("lock")
            .push(vertex.name.clone());
        self.cache.lock().expect("lock").insert(key.digest.clone());
        Ok(vertex.name.clone())
    }

    fn cancel_all(&self) {
        self.cancelled.fetch_add(1, Ordering::SeqCst);
    }
}

#[derive(Default)]
struct Events(Mutex<Vec<Event>>);

impl Reporter for Events {
    fn event(&self, event: Event) {
        self.0.lock().expect("lock").push(event);
    }
}

fn vertex(op: Op, inputs: Vec<VertexId>, name: &str) -> Vertex {
    Vertex {
        op,
        inputs,
        name: name.to_string(),
        line: 0,
        end_line: 0,
        stage: Some(0),
        slot: name.to_string(),
        digest: String::new(),
    }
}

fn run_op(command: &str) -> Op {
    Op::Exec(Exec {
        args: vec!["sh".into(), "-c".into(), command.into()],
        env: Vec::new(),
        arg_names: Vec::new(),
        uncached_env: Vec::new(),
        cwd: "/".into(),
        user: String::new(),
        network: "none".into(),
        security: "sandbox".into(),
        mounts: Vec::new(),
    })
}

/// scratch -> a, scratch -> b, (a, b) -> final, where final is a mkdir over a with b as input.
fn diamond() -> Definition {
    let mut def = Definition::default();
    let scratch = def.add(vertex(Op::Scratch, vec![], "scratch"));
    let a = def.add(vertex(run_op("a"), vec![scratch], "a"));
    let b = def.add(vertex(run_op("b"), vec![scratch], "b"));
    let shared = def.add(vertex(run_op("shared"), vec![a], "shared"));
    // Two vertices read `shared`: it must run once.
    let left = def.add(vertex(run_op("left"), vec![shared, b], "left"));
    let right = def.add(vertex(
        Op::Mkdir(Mkdir {
            path: "/r".into(),
            user: String::new(),
        }),
        vec![shared],
        "right",
    ));
    let last = def.add(vertex(run_op("last"), vec![left, right], "last"));
    def.target = Some(last);
    def
}

fn options(jobs: Option<usize>) -> SolveOptions {
    SolveOptions {
        no_cache: false,
        no_cache_stages: Default::default(),
        jobs,
        cpu_slots: 2,
    }
}

fn solve_with(
    worker: Arc<Fake>,
    def: Definition,
    jobs: Option<usize>,
) -> (
    Result<rbuild_solver::Solved<String>, rbuild_solver::SolveError>,
    Arc<Events>,
) {
    let events = Arc::new(Events::default());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let result = runtime.block_on(solve(Arc::new(def), worker, events.clone(), options(jobs)));
    (result, events)
}

#[test]
fn every_vertex_runs_once_inputs_first_and_a_rebuild_hits() {
    let worker = Arc::new(Fake {
        delay: Duration::from_millis(20),
        ..Fake::default()
    });
    let (result, _) = solve_with(worker.clone(), diamond(), None);
    let solved = result.expect("solved");
    assert_eq!(solved.output, "last");
    let order = worker.executed.lock().expect("lock").clone();
    assert_eq!(order.len(), 6, "{order:?}");
    assert_eq!(order.iter().filter(|n| *n == "shared").count(), 1);
    let pos = |n: &str| order.iter().position(|x| x == n).expect("ran");
    assert!(pos("a") < pos("shared") && pos("shared") < pos("left") && pos("left") < pos("last"));
    // Same graph again: everything is a cache hit, nothing runs.
    let (result, events) = solve_with(worker.clone(), diamond(), None);
    let solved = result.expect("solved");
    assert_eq!((solved.executed, solved.cached), (0, 6));
    assert_eq!(worker.executed.lock().expect("lock").len(), 6);
    let cached = events
        .0
        .lock()
        .expect("lock")
        .iter()
        .filter(|e| matches!(e, Event::Cached { .. }))
        .count();
    assert_eq!(cached, 6);
}

#[test]
fn independent_vertices_overlap_and_jobs_bounds_them() {
    let worker = Arc::new(Fake {
        delay: Duration::from_millis(100),
        ..Fake::default()
    });
    solve_with(worker.clone(), diamond(), None)
        .0
        .expect("solved");
    assert!(
        worker.max_running.load(Ordering::SeqCst) >= 2,
        "a and b never ran together"
    );
    let worker = Arc::new(Fake {
        delay: Duration::from_millis(30),
        ..Fake::default()
    });
    solve_with(worker.clone(), diamond(), Some(1))
        .0
        .expect("solved");
    assert_eq!(
        worker.max_running.load(Ordering::SeqCst),
        1,
        "--jobs 1 ran two at once"
    );
}

#[test]
fn the_first_failure_cancels_the_rest_and_is_the_error_reported() {
    let worker = Arc::new(Fake {
        delay: Duration::from_millis(50),
        failing: HashSet::from(["b".to_string()]),
        slow: HashSet::from(["a".to_string()]),
        ..Fake::default()
    });
    // `a` runs far longer than `b` (both start together); `b` fails, `a` must be cancelled.
    let mut def = Definition::default();
    let scratch = def.add(vertex(Op::Scratch, vec![], "scratch"));
    let slow = def.add(vertex(run_op("slow"), vec![scratch], "a"));
    let b = def.add(vertex(run_op("b"), vec![scratch], "b"));
    let last = def.add(vertex(run_op("last"), vec![slow, b], "last"));
    def.target = Some(last);
    let worker_slow = Arc::new(Fake {
        delay: Duration::from_secs(5),
        ..Fake::default()
    });
    drop(worker_slow);
    let (result, events) = solve_with(worker.clone(), def, None);
    let error = result.expect_err("must fail");
    assert_eq!(error.name, "b");
    assert_eq!(error.error.message, "b failed");
    assert!(
        worker.cancelled.load(Ordering::SeqCst) > 0,
        "nothing was cancelled"
    );
    assert!(!worker
        .executed
        .lock()
        .expect("lock")
        .contains(&"last".to_string()));
    let failed = events
        .0
        .lock()
        .expect("lock")
        .iter()
        .filter(|e| matches!(e, Event::Failed { .. }))
        .count();
    assert_eq!(failed, 1, "only the real failure is reported as a failure");
}
