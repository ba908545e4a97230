//! `rbuild debug ...`: the frontend's view of a Dockerfile.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::Path;

use anyhow::{bail, Context, Result};
use rbuild_frontend::parser::{self, dump};
use rbuild_frontend::stages::{self, BuildOptions, Platform};

use crate::args::{DebugCommand, StagesArgs};
use crate::render::SourceError;

pub fn run(cmd: DebugCommand) -> Result<()> {
    match cmd {
        DebugCommand::DumpAst { file } => {
            let source = read_dockerfile(&file)?;
            let ast = parser::parse(&source).map_err(|d| SourceError::new(&file, &source, d))?;
            write_stdout(&dump(&ast))
        }
        DebugCommand::Stages(args) => stages(args),
        DebugCommand::Context(args) => crate::context::list(&args),
        DebugCommand::Graph(args) => graph(args),
    }
}

fn graph(args: crate::args::GraphArgs) -> Result<()> {
    let source = read_dockerfile(&args.file)?;
    let options = BuildOptions {
        build_args: parse_build_args(&args.build_args)?,
        target: args.target.clone(),
        ..BuildOptions::default()
    };
    let ast = parser::parse(&source).map_err(|d| SourceError::new(&args.file, &source, d))?;
    let plan =
        stages::resolve(&ast, &options).map_err(|d| SourceError::new(&args.file, &source, d))?;
    let lowered = rbuild_frontend::lower::lower(&plan, "default", &Default::default())
        .map_err(|d| SourceError::new(&args.file, &source, d))?;
    match args.format.as_str() {
        "dot" => write_stdout(&lowered.definition.to_dot()),
        "json" => {
            let json = serde_json::to_string_pretty(&lowered.definition.to_json())
                .context("Failed to serialise the graph")?;
            write_stdout(&format!("{json}\n"))
        }
        other => bail!("Invalid `--format {other}`: expected dot or json"),
    }
}

fn stages(args: StagesArgs) -> Result<()> {
    let source = read_dockerfile(&args.file)?;
    let mut options = BuildOptions {
        build_args: parse_build_args(&args.build_args)?,
        target: args.target.clone(),
        ..BuildOptions::default()
    };
    if let Some(p) = &args.platform {
        options.target_platform = Platform::parse(p)
            .map_err(|e| anyhow::anyhow!(e))
            .context("Invalid `--platform`")?;
    }
    let ast = parser::parse(&source).map_err(|d| SourceError::new(&args.file, &source, d))?;
    let plan =
        stages::resolve(&ast, &options).map_err(|d| SourceError::new(&args.file, &source, d))?;
    for warning in ast
        .warnings
        .iter()
        .map(|w| format!("line {}: {}", w.line, w.message))
        .chain(plan.warnings.iter().cloned())
    {
        eprintln!("warning: {warning}");
    }
    let json = serde_json::to_string_pretty(&plan).context("Failed to serialise the stages")?;
    write_stdout(&format!("{json}\n"))
}

/// `KEY=VALUE`, or `KEY` alone to take the value from the environment (docker's rule: a `KEY`
/// unset in the environment is left out).
pub fn parse_build_args(raw: &[String]) -> Result<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    for item in raw {
        let (key, value) = match item.split_once('=') {
            Some((k, v)) => (k.to_string(), Some(v.to_string())),
            None => (item.clone(), std::env::var(item).ok()),
        };
        if key.is_empty() {
            bail!("Invalid `--build-arg {item}`: the name is empty (expected KEY=VALUE)");
        }
        if let Some(value) = value {
            out.insert(key, value);
        }
    }
    Ok(out)
}

pub fn read_dockerfile(path: &Path) -> Result<String> {
    let mut bytes = Vec::new();
    if path == Path::new("-") {
        std::io::stdin()
            .read_to_end(&mut bytes)
            .context("Failed to read the Dockerfile from stdin")?;
    } else {
        bytes = std::fs::read(path)
            .with_context(|| format!("Failed to read the Dockerfile `{}`", path.display()))?;
    }
    // Invalid UTF-8 is replaced (U+FFFD) rather than refused: BuildKit accepts any bytes.
    Ok(String::from_utf8(bytes)
        .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned()))
}

fn write_stdout(text: &str) -> Result<()> {
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Ok(()) => Ok(()),
        // A closed pipe (`| head`) is not an error worth reporting.
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        Err(e) => Err(e).context("Failed to write to stdout"),
    }
}
