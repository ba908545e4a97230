//! From an AST to the stages of a build: split, scoped, expanded, and pruned to the target.
//!
//! Rules reproduced from BuildKit's Dockerfile frontend:
//! - Only ARG may come before the first FROM. Those *meta* ARGs (with the predefined
//!   `TARGET*`/`BUILD*` platform args) are the only variables FROM lines and `COPY --from` see.
//! - Inside a stage, ARG and ENV both set the variables later instructions expand and RUN sees,
//!   the later one winning; only ENV reaches the image config. `ARG X` without a default takes
//!   the `--build-arg` value, else the meta ARG's value. A stage FROM another stage inherits its
//!   variables and config.
//! - Which words expand: ENV and LABEL keys and values, ARG defaults, COPY/ADD sources,
//!   destination, `--chown`, `--chmod`, `--checksum`, `--exclude`, heredoc bodies whose
//!   delimiter was not quoted (quotes kept), WORKDIR, USER, VOLUME, STOPSIGNAL, `RUN --mount`
//!   values, EXPOSE (split into words). RUN, CMD, ENTRYPOINT, SHELL, HEALTHCHECK, ONBUILD and
//!   MAINTAINER are never expanded (the shell does it at run time).
//! - Stages are referenced by name (case-insensitive) or index; a name that is not a stage is
//!   an image. Only the stages the target reaches (through FROM, `COPY --from` and
//!   `RUN --mount=from=`) are expanded and built; a cycle is an error.
//!
//! The frontend knows nothing of registries: the configs of base images, when known, come in
//! through [`BuildOptions::base_images`].

mod env;
mod expand;
mod platform;
mod ports;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use crate::diagnostic::{Diagnostic, Position};
use crate::instructions::{parse_instruction, Instruction};
use crate::parser::{Ast, Node};
use crate::shell::Lexer;
pub use env::EnvList;
pub use expand::{ResolvedMount, Step, StepState};
pub use platform::Platform;
pub use ports::parse_port_spec;

/// Build args that reach RUN steps without being declared, and never the image.
pub const PROXY_ARGS: [&str; 10] = [
    "HTTP_PROXY",
    "http_proxy",
    "HTTPS_PROXY",
    "https_proxy",
    "FTP_PROXY",
    "ftp_proxy",
    "NO_PROXY",
    "no_proxy",
    "ALL_PROXY",
    "all_proxy",
];

/// What the frontend knows of a base image's config.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct BaseImage {
    pub env: Vec<(String, String)>,
    pub working_dir: String,
    pub user: String,
    /// The image's ONBUILD triggers: run, in order, right after the FROM that names it.
    pub onbuild: Vec<String>,
}

/// Inputs of stage resolution besides the Dockerfile.
#[derive(Debug, Clone)]
pub struct BuildOptions {
    /// `--build-arg` values.
    pub build_args: BTreeMap<String, String>,
    /// `--target`: a stage name; `None` builds the last stage.
    pub target: Option<String>,
    pub target_platform: Platform,
    pub build_platform: Platform,
    /// Configs of base images, keyed by the expanded reference written in FROM.
    pub base_images: BTreeMap<String, BaseImage>,
}

impl Default for BuildOptions {
    fn default() -> Self {
        BuildOptions {
            build_args: BTreeMap::new(),
            target: None,
            target_platform: Platform::host(),
            build_platform: Platform::host(),
            base_images: BTreeMap::new(),
        }
    }
}

/// Where a stage starts, or where a `COPY --from`/mount reads.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Source {
    Scratch,
    Image { reference: String },
    Stage { index: usize },
    Context,
}

/// An ARG value as resolved.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ResolvedArg {
    pub name: String,
    pub value: Option<String>,
}

/// One stage.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Stage {
    pub index: usize,
    /// `AS name`, lowercased.
    pub name: Option<String>,
    pub base: Source,
    /// The expanded `--platform`, if given.
    pub platform: Option<String>,
    /// 1-based line of the FROM.
    pub line: usize,
    /// Whether the target needs this stage. Steps are expanded only for needed stages.
    pub needed: bool,
    /// Stages this one reads from (FROM, `COPY --from`, `RUN --mount=from=`), sorted.
    pub depends_on: Vec<usize>,
    pub steps: Vec<Step>,
}

/// The resolved build.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BuildPlan {
    pub meta_args: Vec<ResolvedArg>,
    pub stages: Vec<Stage>,
    /// Index of the target stage.
    pub target: usize,
    /// The needed stages, each after the stages it depends on.
    pub order: Vec<usize>,
    /// Proxy build args given, passed to RUN steps.
    pub proxy_env: Vec<(String, String)>,
    pub warnings: Vec<String>,
}

struct Parsed<'a> {
    node: &'a Node,
    instruction: Instruction,
}

struct StageHeader<'a> {
    from: &'a Parsed<'a>,
    body: Vec<&'a Parsed<'a>>,
    name: Option<String>,
    base: Source,
    platform: Option<String>,
}

/// Resolves the stages of a parsed Dockerfile.
pub fn resolve(ast: &Ast, options: &BuildOptions) -> Result<BuildPlan, Diagnostic> {
    let parsed = ast
        .children
        .iter()
        .map(|node| parse_instruction(node).map(|instruction| Parsed { node, instruction }))
        .collect::<Result<Vec<_>, _>>()?;
    let lexer = Lexer::new(ast.escape());
    let mut consumed = BTreeSet::new();

    let (meta, groups) = split_stages(&parsed)?;
    let mut meta_env = EnvList::from_pairs(
        platform::args(&options.target_platform, "TARGET")
            .into_iter()
            .chain(platform::args(&options.build_platform, "BUILD")),
    );
    let mut meta_args = Vec::new();
    for p in meta {
        let Instruction::Arg { args } = &p.instruction else {
            continue;
        };
        for decl in args {
            let value = match (options.build_args.get(&decl.name), &decl.default) {
                (Some(v), _) => {
                    consumed.insert(decl.name.clone());
                    Some(v.clone())
                }
                (None, Some(default)) => Some(expand::word(&lexer, p.node, default, &meta_env)?),
                (None, None) => None,
            };
            if let Some(v) = &value {
                meta_env.set(decl.name.clone(), v.clone());
            }
            meta_args.push(ResolvedArg {
                name: decl.name.clone(),
                value,
            });
        }
    }

    let headers = stage_headers(groups, &lexer, &meta_env)?;
    let names: Vec<Option<String>> = headers.iter().map(|h| h.name.clone()).collect();
    let mut deps = Vec::with_capacity(headers.len());
    let mut copy_froms = Vec::with_capacity(headers.len());
    for (index, header) in headers.iter().enumerate() {
        let (d, froms) = stage_dependencies(index, header, &names, &lexer, &meta_env)?;
        deps.push(d);
        copy_froms.push(froms);
    }
    let target = find_target(options, &headers)?;
    let order = dependency_order(target, &deps, &headers)?;

    let mut stages: Vec<Stage> = headers
        .iter()
        .enumerate()
        .map(|(index, h)| Stage {
            index,
            name: h.name.clone(),
            base: h.base.clone(),
            platform: h.platform.clone(),
            line: h.from.node.start_line,
            needed: order.contains(&index),
            depends_on: deps[index].iter().copied().collect(),
            steps: Vec::new(),
        })
        .collect();
    // Base images' ONBUILD triggers, parsed once; they run first in the stage.
    let mut triggers: BTreeMap<usize, Vec<(String, Ast)>> = BTreeMap::new();
    for &index in &order {
        let Source::Image { reference } = &headers[index].base else {
            continue;
        };
        let Some(base) = options.base_images.get(reference) else {
            continue;
        };
        let line = headers[index].from.node.start_line;
        for text in &base.onbuild {
            let ast =
                crate::parser::parse(text).map_err(|d| trigger_error(text, line, &d.message))?;
            triggers.entry(index).or_default().push((text.clone(), ast));
        }
    }
    let mut finals: BTreeMap<usize, StepState> = BTreeMap::new();
    for &index in &order {
        let header = &headers[index];
        let initial = match &header.base {
            Source::Stage { index: parent } => finals.get(parent).cloned().unwrap_or_default(),
            Source::Image { reference } => StepState::from_base(options.base_images.get(reference)),
            Source::Scratch | Source::Context => StepState::scratch(),
        };
        let mut ctx = expand::StageContext {
            lexer: &lexer,
            options,
            meta_env: &meta_env,
            names: &names,
            index,
            state: initial,
            consumed: &mut consumed,
        };
        let mut steps = Vec::with_capacity(header.body.len());
        let from_line = header.from.node.start_line;
        for (text, ast) in triggers.get(&index).map(Vec::as_slice).unwrap_or_default() {
            for node in &ast.children {
                let instruction = parse_instruction(node)
                    .map_err(|d| trigger_error(text, from_line, &d.message))?;
                if matches!(
                    instruction,
                    Instruction::From(_)
                        | Instruction::Onbuild { .. }
                        | Instruction::Maintainer { .. }
                ) {
                    return Err(trigger_error(
                        text,
                        from_line,
                        "FROM, ONBUILD and MAINTAINER are not allowed as ONBUILD triggers",
                    ));
                }
                let copy_source = match &instruction {
                    Instruction::Copy(copy) => match &copy.from {
                        Some(raw) => match stage_ref(raw, index, &names) {
                            Ok(source @ (Source::Image { .. } | Source::Context)) => Some(source),
                            _ => {
                                return Err(trigger_error(
                                    text,
                                    from_line,
                                    "an ONBUILD COPY --from can only name an image",
                                ))
                            }
                        },
                        None => None,
                    },
                    _ => None,
                };
                let mut step = ctx
                    .step(node, &instruction, copy_source)
                    .map_err(|d| trigger_error(text, from_line, &d.message))?;
                step.line = from_line;
                step.end_line = from_line;
                steps.push(step);
            }
        }
        for (p, from) in header.body.iter().zip(&copy_froms[index]) {
            steps.push(ctx.step(p.node, &p.instruction, from.clone())?);
        }
        finals.insert(index, ctx.state);
        stages[index].steps = steps;
    }

    let mut proxy_env = Vec::new();
    let mut warnings = Vec::new();
    for (name, value) in &options.build_args {
        if PROXY_ARGS.contains(&name.as_str()) {
            proxy_env.push((name.clone(), value.clone()));
        } else if !consumed.contains(name) {
            warnings.push(format!(
                "Build arg `{name}` was given but no ARG of the stages built declares it"
            ));
        }
    }
    Ok(BuildPlan {
        meta_args,
        stages,
        target,
        order,
        proxy_env,
        warnings,
    })
}

/// An error in a base image's ONBUILD trigger, located at the FROM that ran it.
fn trigger_error(trigger: &str, from_line: usize, message: &str) -> Diagnostic {
    Diagnostic::new(
        format!("ONBUILD trigger `{trigger}` of the base image: {message}"),
        Position {
            line: from_line,
            column: 1,
        },
        0,
    )
}

type Groups<'a> = Vec<(&'a Parsed<'a>, Vec<&'a Parsed<'a>>)>;

fn split_stages<'a>(
    parsed: &'a [Parsed<'a>],
) -> Result<(Vec<&'a Parsed<'a>>, Groups<'a>), Diagnostic> {
    let mut meta = Vec::new();
    let mut groups: Groups<'a> = Vec::new();
    for p in parsed {
        match (&p.instruction, groups.last_mut()) {
            (Instruction::From(_), _) => groups.push((p, Vec::new())),
            (_, Some((_, body))) => body.push(p),
            (Instruction::Arg { .. }, None) => meta.push(p),
            (_, None) => {
                return Err(p
                    .node
                    .diagnostic(format!(
                        "{} before the first FROM: no build stage in current context",
                        p.node.keyword.to_uppercase()
                    ))
                    .expected("only ARG before the first FROM"))
            }
        }
    }
    if groups.is_empty() {
        let last = parsed.last().map_or(1, |p| p.node.start_line);
        return Err(Diagnostic::new(
            "The Dockerfile has no FROM instruction",
            Position {
                line: last,
                column: 1,
            },
            0,
        )
        .expected("a `FROM image` line to start a build stage"));
    }
    Ok((meta, groups))
}

fn stage_headers<'a>(
    groups: Groups<'a>,
    lexer: &Lexer,
    meta_env: &EnvList,
) -> Result<Vec<StageHeader<'a>>, Diagnostic> {
    let mut headers: Vec<StageHeader<'a>> = Vec::with_capacity(groups.len());
    for (from, body) in groups {
        let Instruction::From(f) = &from.instruction else {
            continue;
        };
        let image = expand::word(lexer, from.node, &f.image, meta_env)?;
        if image.is_empty() {
            return Err(from.node.diagnostic_on(
                format!("Base name `{}` should not be blank", f.image),
                &f.image,
            ));
        }
        let platform = match &f.platform {
            None => None,
            Some(p) => {
                let value = expand::word(lexer, from.node, p, meta_env)?;
                let parsed =
                    Platform::parse(&value).map_err(|e| from.node.diagnostic_on_flag(e, 0))?;
                Some(parsed.to_string())
            }
        };
        if let Some(name) = &f.alias {
            if headers.iter().any(|h| h.name.as_deref() == Some(name)) {
                return Err(from
                    .node
                    .diagnostic_on(format!("Duplicate stage name `{name}`"), name)
                    .expected("a name no other stage uses"));
            }
        }
        let base = if image == "scratch" {
            Source::Scratch
        } else if let Some(i) = stage_by_name(headers.iter().map(|h| h.name.as_deref()), &image) {
            Source::Stage { index: i }
        } else {
            Source::Image { reference: image }
        };
        headers.push(StageHeader {
            from,
            body,
            name: f.alias.clone(),
            base,
            platform,
        });
    }
    Ok(headers)
}

/// The index of the stage named `name`; stage names are stored lowercased and compared
/// case-insensitively.
fn stage_by_name<'a>(names: impl Iterator<Item = Option<&'a str>>, name: &str) -> Option<usize> {
    let lower = name.to_lowercase();
    names.into_iter().position(|n| n == Some(lower.as_str()))
}

/// Resolves a stage reference (`--from`, `from=`) seen in stage `current`.
fn stage_ref(value: &str, current: usize, names: &[Option<String>]) -> Result<Source, String> {
    let index = match stage_by_name(names.iter().map(Option::as_deref), value) {
        Some(i) => i,
        None => match value.parse::<usize>() {
            Ok(i) if i < names.len() => i,
            Ok(i) => {
                return Err(format!(
                    "Invalid stage index {i}: the Dockerfile has {} stages",
                    names.len()
                ))
            }
            Err(_) => {
                return Ok(Source::Image {
                    reference: value.to_string(),
                })
            }
        },
    };
    if index == current {
        return Err(format!(
            "Stage `{value}` cannot read from itself (circular dependency)"
        ));
    }
    Ok(Source::Stage { index })
}

type CopyFroms = Vec<Option<Source>>;

fn stage_dependencies(
    index: usize,
    header: &StageHeader<'_>,
    names: &[Option<String>],
    lexer: &Lexer,
    meta_env: &EnvList,
) -> Result<(BTreeSet<usize>, CopyFroms), Diagnostic> {
    let mut deps = BTreeSet::new();
    if let Source::Stage { index: parent } = header.base {
        deps.insert(parent);
    }
    let mut froms = Vec::with_capacity(header.body.len());
    for p in &header.body {
        let mut from_source = None;
        match &p.instruction {
            Instruction::Copy(copy) => {
                if let Some(raw) = &copy.from {
                    let value = expand::word(lexer, p.node, raw, meta_env)?;
                    let source = stage_ref(&value, index, names)
                        .map_err(|e| p.node.diagnostic_on_flag_text(e, raw))?;
                    from_source = Some(source);
                }
            }
            Instruction::Run(run) => {
                for raw in &run.mounts {
                    if let Some(from) = expand::mount_from(raw) {
                        let source = stage_ref(&from, index, names)
                            .map_err(|e| p.node.diagnostic_on_flag_text(e, raw))?;
                        if let Source::Stage { index } = source {
                            deps.insert(index);
                        }
                    }
                }
            }
            _ => {}
        }
        if let Some(Source::Stage { index }) = from_source {
            deps.insert(index);
        }
        froms.push(from_source);
    }
    Ok((deps, froms))
}

fn find_target(options: &BuildOptions, headers: &[StageHeader<'_>]) -> Result<usize, Diagnostic> {
    let last = headers.len().saturating_sub(1);
    let Some(target) = &options.target else {
        return Ok(last);
    };
    if let Some(i) = stage_by_name(headers.iter().map(|h| h.name.as_deref()), target) {
        return Ok(i);
    }
    let names: Vec<String> = headers
        .iter()
        .filter_map(|h| h.name.as_ref().map(|n| format!("`{n}`")))
        .collect();
    let first = headers.first().map_or(1, |h| h.from.node.start_line);
    Err(Diagnostic::new(
        format!("Target stage `{target}` could not be found"),
        Position {
            line: first,
            column: 1,
        },
        0,
    )
    .expected(if names.is_empty() {
        "no --target: this Dockerfile names no stage (`FROM image AS name`)".to_string()
    } else {
        format!("one of {}", names.join(", "))
    }))
}

/// Depth-first post-order from the target: dependencies first; a back edge is a cycle.
fn dependency_order(
    target: usize,
    deps: &[BTreeSet<usize>],
    headers: &[StageHeader<'_>],
) -> Result<Vec<usize>, Diagnostic> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        Active,
        Done,
    }
    let mut marks = vec![Mark::New; deps.len()];
    let mut order = Vec::new();
    // Explicit stack of (stage, next dependency position) so deep chains cannot overflow.
    let mut stack = vec![(target, 0usize)];
    marks[target] = Mark::Active;
    while let Some((stage, pos)) = stack.last().copied() {
        let next = deps[stage].iter().nth(pos).copied();
        match next {
            Some(dep) => {
                if let Some(top) = stack.last_mut() {
                    top.1 += 1;
                }
                match marks[dep] {
                    Mark::New => {
                        marks[dep] = Mark::Active;
                        stack.push((dep, 0));
                    }
                    Mark::Active => {
                        let node = headers[stage].from.node;
                        return Err(node.diagnostic(format!(
                            "Circular dependency between build stages {} and {}",
                            stage_label(headers, stage),
                            stage_label(headers, dep)
                        )));
                    }
                    Mark::Done => {}
                }
            }
            None => {
                marks[stage] = Mark::Done;
                order.push(stage);
                stack.pop();
            }
        }
    }
    Ok(order)
}

fn stage_label(headers: &[StageHeader<'_>], index: usize) -> String {
    match headers.get(index).and_then(|h| h.name.as_ref()) {
        Some(name) => format!("`{name}`"),
        None => format!("#{index}"),
    }
}
