//! `rbuild debug context`: the files of a build context after `.dockerignore`.
//!
//! The ignore file is BuildKit's choice: `<Dockerfile>.dockerignore` beside the Dockerfile when
//! it exists (even empty), else `.dockerignore` at the context root; never both. The walk does not
//! follow symlinks and prunes excluded directories unless an exception rule may re-include
//! something below them.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use rbuild_frontend::dockerignore::{IgnoreRules, DOCKERIGNORE_NAME};

use crate::args::ContextArgs;

/// Reads the ignore rules that apply to a build of `context` with `dockerfile`, and the file
/// they came from.
pub fn ignore_rules(context: &Path, dockerfile: &Path) -> Result<(IgnoreRules, Option<PathBuf>)> {
    let mut specific = dockerfile.as_os_str().to_owned();
    specific.push(DOCKERIGNORE_NAME);
    for candidate in [PathBuf::from(specific), context.join(DOCKERIGNORE_NAME)] {
        match fs::read(&candidate) {
            Ok(bytes) => {
                let text = String::from_utf8_lossy(&bytes);
                let rules = IgnoreRules::parse(&text)
                    .with_context(|| format!("Invalid ignore file `{}`", candidate.display()))?;
                return Ok((rules, Some(candidate)));
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => {
                return Err(e).with_context(|| format!("Failed to read `{}`", candidate.display()))
            }
        }
    }
    Ok((IgnoreRules::default(), None))
}

/// The context's paths (relative, `/`-separated, sorted) that the rules let through.
pub fn included_paths(context: &Path, rules: &IgnoreRules) -> Result<Vec<String>> {
    let mut out = Vec::new();
    let mut pending = vec![(context.to_path_buf(), String::new())];
    while let Some((dir, prefix)) = pending.pop() {
        let entries =
            fs::read_dir(&dir).with_context(|| format!("Failed to list `{}`", dir.display()))?;
        for entry in entries {
            let entry = entry.with_context(|| format!("Failed to list `{}`", dir.display()))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let rel = if prefix.is_empty() {
                name
            } else {
                format!("{prefix}/{name}")
            };
            let is_dir = entry
                .file_type()
                .with_context(|| format!("Failed to stat `{}`", entry.path().display()))?
                .is_dir();
            let excluded = rules.is_excluded(&rel);
            if is_dir && !(excluded && rules.can_skip_dir(&rel)) {
                pending.push((entry.path(), rel.clone()));
            }
            if !excluded {
                out.push(rel);
            }
        }
    }
    out.sort();
    Ok(out)
}

pub fn list(args: &ContextArgs) -> Result<()> {
    let dockerfile = args
        .file
        .clone()
        .unwrap_or_else(|| args.context.join("Dockerfile"));
    let (rules, source) = ignore_rules(&args.context, &dockerfile)?;
    if let Some(source) = source {
        eprintln!("ignore rules from {}", source.display());
    }
    let paths = included_paths(&args.context, &rules)?;
    let mut out = std::io::stdout().lock();
    for path in paths {
        if let Err(e) = writeln!(out, "{path}") {
            if e.kind() == std::io::ErrorKind::BrokenPipe {
                return Ok(());
            }
            return Err(e).context("Failed to write to stdout");
        }
    }
    Ok(())
}
