//! Progress renderers: the solver's events on stderr, as BuildKit users know them.
//!
//! - `plain`: `#N [stage i/n] INSTRUCTION`, `#N CACHED`, `#N 0.123 output line`, `#N DONE 1.2s`,
//!   plus a line saying why a step's cache missed (`#N cache miss: env var NAME changed`);
//! - `tty`: running steps live with timers (indicatif), finished ones collapsed to one line;
//! - `rawjson`: one JSON object per event; `quiet`: nothing.
//!
//! Every renderer also keeps the last lines of each step's output for the error report.

use std::collections::{BTreeMap, VecDeque};
use std::io::Write;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use rbuild_solver::{Event, LogStream, Reporter};

/// How progress is shown (`--progress`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Plain,
    Tty,
    RawJson,
    Quiet,
}

impl Mode {
    pub fn parse(value: &str, quiet: bool) -> anyhow::Result<Mode> {
        if quiet {
            return Ok(Mode::Quiet);
        }
        Ok(match value {
            "plain" => Mode::Plain,
            "tty" => Mode::Tty,
            "rawjson" => Mode::RawJson,
            "quiet" => Mode::Quiet,
            "auto" => {
                if std::io::IsTerminal::is_terminal(&std::io::stderr()) {
                    Mode::Tty
                } else {
                    Mode::Plain
                }
            }
            other => anyhow::bail!(
                "Invalid `--progress={other}`: expected auto, tty, plain, rawjson or quiet"
            ),
        })
    }
}

const TAIL: usize = 10;

struct State {
    started: BTreeMap<usize, Instant>,
    names: BTreeMap<usize, String>,
    tails: BTreeMap<usize, VecDeque<String>>,
    bars: BTreeMap<usize, ProgressBar>,
}

/// Renders events and keeps each step's last output lines.
pub struct Progress {
    mode: Mode,
    state: Mutex<State>,
    multi: Option<MultiProgress>,
    begun: Instant,
}

impl std::fmt::Debug for Progress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Progress")
            .field("mode", &self.mode)
            .finish()
    }
}

impl Progress {
    pub fn new(mode: Mode) -> Progress {
        let multi = (mode == Mode::Tty)
            .then(|| MultiProgress::with_draw_target(ProgressDrawTarget::stderr_with_hz(10)));
        Progress {
            mode,
            state: Mutex::new(State {
                started: BTreeMap::new(),
                names: BTreeMap::new(),
                tails: BTreeMap::new(),
                bars: BTreeMap::new(),
            }),
            multi,
            begun: Instant::now(),
        }
    }

    /// A line outside any step (`#0 ...`), e.g. the export.
    pub fn note(&self, text: &str) {
        match self.mode {
            Mode::Quiet => {}
            Mode::RawJson => self.json(serde_json::json!({"note": text})),
            Mode::Tty => {
                if let Some(multi) = &self.multi {
                    let _ = multi.println(format!("=> {text}"));
                }
            }
            Mode::Plain => eprintln!("#0 {text}"),
        }
    }

    /// The last output lines of step `vertex`.
    pub fn tail(&self, vertex: usize) -> Vec<String> {
        self.state
            .lock()
            .map(|s| {
                s.tails
                    .get(&vertex)
                    .map(|t| t.iter().cloned().collect())
                    .unwrap_or_default()
            })
            .unwrap_or_default()
    }

    /// The progress number of the step called `name`, if it started.
    pub fn number_of(&self, name: &str) -> Option<usize> {
        let state = self.state.lock().ok()?;
        state
            .names
            .iter()
            .find(|(_, n)| n.as_str() == name)
            .map(|(v, _)| *v)
    }

    pub fn elapsed(&self) -> Duration {
        self.begun.elapsed()
    }

    /// Stops live rendering (before the final report is printed).
    pub fn finish(&self) {
        if let Ok(mut state) = self.state.lock() {
            for (_, bar) in std::mem::take(&mut state.bars) {
                bar.finish_and_clear();
            }
        }
        if let Some(multi) = &self.multi {
            let _ = multi.clear();
        }
    }

    fn json(&self, value: serde_json::Value) {
        let mut err = std::io::stderr().lock();
        let _ = writeln!(err, "{value}");
    }
}

fn seconds(d: Duration) -> String {
    format!("{:.1}s", d.as_secs_f64())
}

impl Reporter for Progress {
    fn event(&self, event: Event) {
        let Ok(mut state) = self.state.lock() else {
            return;
        };
        if let Event::Log { vertex, line, .. } = &event {
            let tail = state.tails.entry(*vertex).or_default();
            if tail.len() == TAIL {
                tail.pop_front();
            }
            tail.push_back(String::from_utf8_lossy(line).into_owned());
        }
        if let Event::Started { vertex, name } = &event {
            state.started.insert(*vertex, Instant::now());
            state.names.insert(*vertex, name.clone());
        }
        match self.mode {
            Mode::Quiet => {}
            Mode::RawJson => {
                let value = match &event {
                    Event::Started { vertex, name } => {
                        serde_json::json!({"vertex": vertex, "started": name})
                    }
                    Event::Cached { vertex } => {
                        serde_json::json!({"vertex": vertex, "cached": true})
                    }
                    Event::Missed { vertex, reason } => {
                        serde_json::json!({"vertex": vertex, "miss": reason})
                    }
                    Event::Log {
                        vertex,
                        stream,
                        line,
                    } => serde_json::json!({
                        "vertex": vertex,
                        "stream": if *stream == LogStream::Stdout { 1 } else { 2 },
                        "line": String::from_utf8_lossy(line),
                    }),
                    Event::Done { vertex, seconds } => {
                        serde_json::json!({"vertex": vertex, "done": seconds})
                    }
                    Event::Failed { vertex, error } => {
                        serde_json::json!({"vertex": vertex, "error": error})
                    }
                };
                self.json(value);
            }
            Mode::Plain => {
                let mut err = std::io::stderr().lock();
                let _ = match &event {
                    Event::Started { vertex, name } => writeln!(err, "#{vertex} {name}"),
                    Event::Cached { vertex } => writeln!(err, "#{vertex} CACHED"),
                    Event::Missed { vertex, reason } => {
                        writeln!(err, "#{vertex} cache miss: {reason}")
                    }
                    Event::Log { vertex, line, .. } => {
                        let since = state
                            .started
                            .get(vertex)
                            .map(|s| s.elapsed())
                            .unwrap_or_default();
                        writeln!(
                            err,
                            "#{vertex} {:.3} {}",
                            since.as_secs_f64(),
                            String::from_utf8_lossy(line)
                        )
                    }
                    Event::Done { vertex, seconds } => {
                        writeln!(err, "#{vertex} DONE {seconds:.1}s")
                    }
                    Event::Failed { vertex, error } => writeln!(err, "#{vertex} ERROR: {error}"),
                };
            }
            Mode::Tty => self.tty(&mut state, event),
        }
    }
}

impl Progress {
    fn tty(&self, state: &mut State, event: Event) {
        let Some(multi) = &self.multi else { return };
        match event {
            Event::Started { vertex, name } => {
                let bar = multi.add(ProgressBar::new_spinner());
                bar.set_style(
                    ProgressStyle::with_template("{spinner} {msg} {elapsed:>4}")
                        .unwrap_or_else(|_| ProgressStyle::default_spinner()),
                );
                bar.set_message(name);
                bar.enable_steady_tick(Duration::from_millis(100));
                state.bars.insert(vertex, bar);
            }
            Event::Cached { vertex } => {
                if let Some(bar) = state.bars.remove(&vertex) {
                    bar.finish_and_clear();
                }
                let name = state.names.get(&vertex).cloned().unwrap_or_default();
                let _ = multi.println(format!(" => CACHED {name}"));
            }
            Event::Missed { .. } => {}
            Event::Log { vertex, line, .. } => {
                if let Some(bar) = state.bars.get(&vertex) {
                    let name = state.names.get(&vertex).cloned().unwrap_or_default();
                    let text = String::from_utf8_lossy(&line);
                    let short: String = text.chars().take(60).collect();
                    bar.set_message(format!("{name}  | {short}"));
                }
            }
            Event::Done { vertex, .. } => {
                if let Some(bar) = state.bars.remove(&vertex) {
                    bar.finish_and_clear();
                }
                let name = state.names.get(&vertex).cloned().unwrap_or_default();
                let took = state
                    .started
                    .get(&vertex)
                    .map(|s| s.elapsed())
                    .unwrap_or_default();
                let _ = multi.println(format!(" => {name} {}", seconds(took)));
            }
            Event::Failed { vertex, error } => {
                if let Some(bar) = state.bars.remove(&vertex) {
                    bar.finish_and_clear();
                }
                let name = state.names.get(&vertex).cloned().unwrap_or_default();
                let _ = multi.println(format!(" => ERROR {name}: {error}"));
            }
        }
    }
}
