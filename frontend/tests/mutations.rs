//! No input makes the frontend panic: every Dockerfile of the conformance corpora (BuildKit's
//! parser testfiles, the real-world Dockerfiles, the golden cases), and thousands of mutants of
//! them, go through the whole frontend (parse, stage resolution with build args, lowering to
//! the build graph), which must return a value or a diagnostic.
//!
//! The mutants are deterministic (a fixed-seed xorshift): cuts, duplications, truncations and
//! insertions of the tokens the grammar turns on (line continuations, quotes, `${`, heredoc
//! openers, flags, JSON brackets, parser directives, NULs, non-ASCII, CRs). The corpus root
//! comes from `RBUILD_CONFORMANCE`, else `<repo>/../shared/conformance`.

use std::collections::BTreeMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};

use rbuild_frontend::lower::lower;
use rbuild_frontend::parser::parse;
use rbuild_frontend::stages::{resolve, BaseImage, BuildOptions};

/// Mutants made of each seed.
const MUTANTS_PER_SEED: usize = 60;

const TOKENS: &[&str] = &[
    "\\",
    "\\\n",
    "\n",
    "\r\n",
    "\r",
    " ",
    "\t",
    "$",
    "${",
    "}",
    "${A:-",
    "${A:+x}",
    "${A#",
    "$$",
    "\"",
    "'",
    "`",
    "[",
    "]",
    "[\"",
    "\",",
    ",",
    "=",
    "--mount=type=bind,source=",
    "--from=",
    "--chown=",
    "--chmod=",
    "--platform=",
    "--network=",
    "--exclude=",
    "--link",
    "<<EOF\n",
    "<<-EOF",
    "<<'EOF'",
    "\nEOF\n",
    "EOF",
    "#",
    "# syntax=x\n",
    "# escape=`\n",
    "# escape=\\\n",
    "FROM ",
    "FROM scratch AS ",
    " AS ",
    "ARG ",
    "ENV ",
    "COPY ",
    "ADD ",
    "RUN ",
    "ONBUILD ",
    "HEALTHCHECK ",
    "CMD ",
    "SHELL ",
    "WORKDIR ",
    "USER ",
    "EXPOSE ",
    "LABEL ",
    "VOLUME ",
    "STOPSIGNAL ",
    "ENTRYPOINT ",
    "MAINTAINER ",
    "*",
    "?",
    "..",
    "/",
    "\u{0}",
    "é",
    "\u{feff}",
    "0",
    "-1",
    "99999999999999999999",
    ":",
    "@sha256:",
    "a\\ b",
];

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next() % n as u64) as usize
        }
    }
}

fn root() -> PathBuf {
    match std::env::var_os("RBUILD_CONFORMANCE") {
        Some(dir) => PathBuf::from(dir),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/conformance"),
    }
}

/// Every file below `dir` whose name says it is a Dockerfile.
fn dockerfiles(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let mut paths: Vec<PathBuf> = entries.flatten().map(|e| e.path()).collect();
    paths.sort();
    for path in paths {
        if path.is_dir() {
            dockerfiles(&path, out);
        } else if path
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.contains("Dockerfile") || n.ends_with(".dockerfile"))
        {
            out.push(path);
        }
    }
}

/// Cuts, duplicates, truncates or inserts at char boundaries.
fn mutate(seed: &str, rng: &mut Rng) -> String {
    let chars: Vec<char> = seed.chars().collect();
    let mut out: Vec<char> = chars.clone();
    for _ in 0..=rng.below(3) {
        let at = rng.below(out.len() + 1);
        match rng.below(4) {
            0 => {
                let end = (at + 1 + rng.below(40)).min(out.len());
                out.drain(at.min(end)..end);
            }
            1 => {
                let end = (at + 1 + rng.below(80)).min(out.len());
                let piece: Vec<char> = out[at.min(end)..end].to_vec();
                let to = rng.below(out.len() + 1);
                out.splice(to..to, piece);
            }
            2 => out.truncate(at),
            _ => {
                let token = TOKENS[rng.below(TOKENS.len())];
                out.splice(at..at, token.chars());
            }
        }
    }
    out.into_iter().collect()
}

/// The whole frontend on `source`; `Err` only for a panic.
fn frontend(source: &str) -> Result<(), String> {
    let options = BuildOptions {
        build_args: BTreeMap::from([
            ("A".to_string(), "value with spaces".to_string()),
            ("VERSION".to_string(), "1.2.3".to_string()),
        ]),
        base_images: BTreeMap::from([(
            "base".to_string(),
            BaseImage {
                env: vec![("PATH".to_string(), "/bin".to_string())],
                working_dir: "/w".to_string(),
                user: "1:1".to_string(),
                onbuild: vec!["RUN echo ${A}".to_string(), "COPY . /src".to_string()],
            },
        )]),
        ..BuildOptions::default()
    };
    catch_unwind(AssertUnwindSafe(|| {
        if let Ok(ast) = parse(source) {
            if let Ok(plan) = resolve(&ast, &options) {
                let _ = lower(&plan, "default", &BTreeMap::new());
            }
        }
    }))
    .map_err(|panic| {
        panic
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_else(|| "a panic".to_string())
    })
}

#[test]
fn no_dockerfile_or_mutant_of_one_makes_the_frontend_panic() {
    let root = root();
    assert!(
        root.is_dir(),
        "conformance root {} does not exist: set RBUILD_CONFORMANCE to a corpus root",
        root.display()
    );
    let mut seeds = Vec::new();
    dockerfiles(&root, &mut seeds);
    assert!(
        seeds.len() >= 20,
        "only {} Dockerfiles under {}",
        seeds.len(),
        root.display()
    );
    // The panic hook would print every caught panic; failures are listed below instead.
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut failures = Vec::new();
    let mut ran = 0;
    for path in &seeds {
        let bytes = std::fs::read(path).expect("read a seed");
        let seed = String::from_utf8_lossy(&bytes).into_owned();
        // A FROM naming the base image with ONBUILD triggers, so the mutants reach them.
        let seed_with_base = format!("FROM base AS onbuilt\n{seed}");
        for source in [seed.clone(), seed_with_base] {
            ran += 1;
            if let Err(panic) = frontend(&source) {
                failures.push(format!("{}: {panic}", path.display()));
            }
            for _ in 0..MUTANTS_PER_SEED {
                let mutant = mutate(&source, &mut rng);
                ran += 1;
                if let Err(panic) = frontend(&mutant) {
                    failures.push(format!(
                        "a mutant of {}: {panic}\n--- mutant ---\n{mutant}\n---",
                        path.display()
                    ));
                }
            }
        }
    }
    std::panic::set_hook(hook);
    println!(
        "{ran} inputs from {} seeds, {} panics",
        seeds.len(),
        failures.len()
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
