//! Typed instructions: each AST [`Node`] checked against what its instruction accepts.
//!
//! This layer knows every instruction of the Dockerfile reference, which flags each one takes,
//! and how many arguments. It does not expand variables (that needs the stage's environment and
//! happens in [`crate::stages`]); it does turn heredoc sources into inline sources and shell form
//! into "prepend the shell" commands. Errors point at the offending word.

mod flags;
pub mod healthcheck;
pub mod mount;

use serde::Serialize;

use crate::diagnostic::Diagnostic;
use crate::parser::{parse_heredoc, Heredoc, Node};
use flags::{check, flag, Kind};
pub use healthcheck::{parse_go_duration, Healthcheck};
pub use mount::{parse_mount, CacheSharing, Mount, MountType};

/// Every instruction keyword, lowercase.
pub const KEYWORDS: [&str; 18] = [
    "add",
    "arg",
    "cmd",
    "copy",
    "entrypoint",
    "env",
    "expose",
    "from",
    "healthcheck",
    "label",
    "maintainer",
    "onbuild",
    "run",
    "shell",
    "stopsignal",
    "user",
    "volume",
    "workdir",
];

/// A command line: exec form (`["a", "b"]`) or shell form (one string run by the stage's SHELL).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Command {
    pub args: Vec<String>,
    /// Shell form: `args` is one string to be run as `SHELL... args[0]`.
    pub shell_form: bool,
}

/// FROM.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct From {
    /// Image reference or stage name, unexpanded.
    pub image: String,
    /// `AS name`, lowercased and validated.
    pub alias: Option<String>,
    pub platform: Option<String>,
}

/// RUN.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Run {
    pub command: Command,
    /// Heredoc files attached to the command.
    pub heredocs: Vec<Heredoc>,
    /// Raw `--mount` values (parsed after expansion, see [`parse_mount`]).
    pub mounts: Vec<String>,
    pub network: Option<NetworkMode>,
    pub security: Option<SecurityMode>,
}

/// `RUN --network`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum NetworkMode {
    Default,
    None,
    Host,
}

/// `RUN --security`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SecurityMode {
    Sandbox,
    Insecure,
}

/// A source given inline by a heredoc (`COPY <<EOF /dst`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct InlineSource {
    /// The heredoc name, which is also the file name.
    pub name: String,
    pub content: String,
    /// Whether variables in the content are expanded.
    pub expand: bool,
}

/// COPY and ADD.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Copy {
    pub sources: Vec<String>,
    pub inline_sources: Vec<InlineSource>,
    pub dest: String,
    /// `--from` (COPY only): stage name, stage index or image.
    pub from: Option<String>,
    pub chown: Option<String>,
    pub chmod: Option<String>,
    pub link: bool,
    pub parents: bool,
    pub excludes: Vec<String>,
    /// `--checksum` (ADD only).
    pub checksum: Option<String>,
    /// `--keep-git-dir` (ADD only).
    pub keep_git_dir: bool,
    /// `--unpack` (ADD only): `None` when not given.
    pub unpack: Option<bool>,
}

/// A `KEY=value` pair of ENV or LABEL, unexpanded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KeyValue {
    pub key: String,
    pub value: String,
}

/// One name of an ARG instruction, with its default.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ArgDecl {
    pub name: String,
    pub default: Option<String>,
}

/// A typed instruction.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "instruction", rename_all = "UPPERCASE")]
pub enum Instruction {
    From(From),
    Run(Run),
    Cmd(Command),
    Entrypoint(Command),
    Shell { shell: Vec<String> },
    Label { labels: Vec<KeyValue> },
    Maintainer { name: String },
    Expose { ports: Vec<String> },
    Env { vars: Vec<KeyValue> },
    Add(Copy),
    Copy(Copy),
    Volume { paths: Vec<String> },
    User { user: String },
    Workdir { path: String },
    Arg { args: Vec<ArgDecl> },
    Onbuild { expression: String },
    Stopsignal { signal: String },
    Healthcheck(Healthcheck),
}

/// Types one AST node.
pub fn parse_instruction(node: &Node) -> Result<Instruction, Diagnostic> {
    let name = node.name();
    let takes_flags = matches!(name, "from" | "run" | "add" | "copy" | "healthcheck");
    if KEYWORDS.contains(&name) && !takes_flags {
        check(node, &[])?;
    }
    Ok(match name {
        "from" => Instruction::From(parse_from(node)?),
        "run" => Instruction::Run(parse_run(node)?),
        "cmd" | "entrypoint" => {
            let command = command(node);
            if name == "cmd" {
                Instruction::Cmd(command)
            } else {
                Instruction::Entrypoint(command)
            }
        }
        "shell" => {
            if node.args.is_empty() {
                return Err(at_least_one(node));
            }
            if !node.json {
                return Err(node
                    .diagnostic_on(
                        "SHELL requires the arguments to be in JSON form",
                        &node.args[0],
                    )
                    .expected("`SHELL [\"executable\", \"parameters\"]`"));
            }
            Instruction::Shell {
                shell: node.args.clone(),
            }
        }
        "label" | "env" => {
            let pairs = key_values(node)?;
            if name == "env" {
                Instruction::Env { vars: pairs }
            } else {
                Instruction::Label { labels: pairs }
            }
        }
        "maintainer" => Instruction::Maintainer {
            name: exactly_one(node)?,
        },
        "expose" => {
            if node.args.is_empty() {
                return Err(at_least_one(node));
            }
            Instruction::Expose {
                ports: node.args.clone(),
            }
        }
        "add" | "copy" => {
            let copy = parse_copy(node, name == "add")?;
            if name == "add" {
                Instruction::Add(copy)
            } else {
                Instruction::Copy(copy)
            }
        }
        "volume" => {
            if node.args.is_empty() {
                return Err(at_least_one(node));
            }
            let mut paths = Vec::with_capacity(node.args.len());
            for path in &node.args {
                let path = path.trim();
                if path.is_empty() {
                    return Err(node.diagnostic("VOLUME specified can not be an empty string"));
                }
                paths.push(path.to_string());
            }
            Instruction::Volume { paths }
        }
        "user" => Instruction::User {
            user: exactly_one(node)?,
        },
        "workdir" => Instruction::Workdir {
            path: exactly_one(node)?,
        },
        "stopsignal" => Instruction::Stopsignal {
            signal: exactly_one(node)?,
        },
        "arg" => Instruction::Arg {
            args: parse_arg(node)?,
        },
        "onbuild" => Instruction::Onbuild {
            expression: parse_onbuild(node)?,
        },
        "healthcheck" => Instruction::Healthcheck(healthcheck::parse(node)?),
        _ => return Err(unknown_instruction(node)),
    })
}

fn unknown_instruction(node: &Node) -> Diagnostic {
    let d = node.diagnostic(format!("Unknown instruction: `{}`", node.keyword));
    match flags::closest(&KEYWORDS, node.name()) {
        Some(k) => d.expected(format!("`{}`?", k.to_uppercase())),
        None => d.expected("an instruction of the Dockerfile reference, e.g. FROM, RUN, COPY"),
    }
}

fn at_least_one(node: &Node) -> Diagnostic {
    node.diagnostic(format!(
        "{} requires at least one argument",
        node.keyword.to_uppercase()
    ))
}

fn exactly_one(node: &Node) -> Result<String, Diagnostic> {
    match node.args.as_slice() {
        [one] => Ok(one.clone()),
        _ => Err(node.diagnostic(format!(
            "{} requires exactly one argument",
            node.keyword.to_uppercase()
        ))),
    }
}

fn command(node: &Node) -> Command {
    Command {
        args: if node.json {
            node.args.clone()
        } else if node.args.is_empty() {
            Vec::new()
        } else {
            vec![node.args.join(" ")]
        },
        shell_form: !node.json,
    }
}

/// Stage names: lowercase letter first, then `[a-z0-9-_.]`.
pub fn is_valid_stage_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "-_.".contains(c))
}

fn parse_from(node: &Node) -> Result<From, Diagnostic> {
    let flags = check(node, &[flag("platform", Kind::String)])?;
    let alias = match node.args.as_slice() {
        [_] => None,
        [_, as_word, name] if as_word.eq_ignore_ascii_case("as") => {
            let lower = name.to_lowercase();
            if !is_valid_stage_name(&lower) {
                return Err(node
                    .diagnostic_on(format!("Invalid name for build stage: `{name}`"), name)
                    .expected("a name that starts with a letter and contains only letters, digits, `-`, `_` and `.`"));
            }
            Some(lower)
        }
        _ => {
            return Err(node
                .diagnostic("FROM requires either one or three arguments")
                .expected("`FROM image` or `FROM image AS name`"))
        }
    };
    Ok(From {
        image: node.args[0].clone(),
        alias,
        platform: flags.string("platform"),
    })
}

fn parse_run(node: &Node) -> Result<Run, Diagnostic> {
    let flags = check(
        node,
        &[
            flag("mount", Kind::Strings),
            flag("network", Kind::String),
            flag("security", Kind::String),
        ],
    )?;
    let network = match flags.string("network").as_deref() {
        None => None,
        Some("default") => Some(NetworkMode::Default),
        Some("none") => Some(NetworkMode::None),
        Some("host") => Some(NetworkMode::Host),
        Some(other) => {
            return Err(node
                .diagnostic_on_flag(
                    format!("Unsupported network mode `{other}`"),
                    flags.position("network"),
                )
                .expected("`default`, `none` or `host`"))
        }
    };
    let security = match flags.string("security").as_deref() {
        None => None,
        Some("sandbox") => Some(SecurityMode::Sandbox),
        Some("insecure") => Some(SecurityMode::Insecure),
        Some(other) => {
            return Err(node
                .diagnostic_on_flag(
                    format!("Unsupported security mode `{other}`"),
                    flags.position("security"),
                )
                .expected("`sandbox` or `insecure`"))
        }
    };
    let command = command(node);
    if command.args.is_empty() && node.heredocs.is_empty() {
        return Err(at_least_one(node));
    }
    Ok(Run {
        command,
        heredocs: node.heredocs.clone(),
        mounts: flags.list("mount"),
        network,
        security,
    })
}

fn parse_copy(node: &Node, is_add: bool) -> Result<Copy, Diagnostic> {
    let keyword = if is_add { "ADD" } else { "COPY" };
    let mut specs = vec![
        flag("chown", Kind::String),
        flag("chmod", Kind::String),
        flag("link", Kind::Bool),
        flag("parents", Kind::Bool),
        flag("exclude", Kind::Strings),
    ];
    if is_add {
        specs.extend([
            flag("checksum", Kind::String),
            flag("keep-git-dir", Kind::Bool),
            flag("unpack", Kind::Bool),
        ]);
    } else {
        specs.push(flag("from", Kind::String));
    }
    let flags = check(node, &specs)?;
    let Some((dest, sources)) = node.args.split_last().filter(|(_, s)| !s.is_empty()) else {
        return Err(node
            .diagnostic(format!("{keyword} requires at least two arguments, but only one was provided. Destination could not be determined"))
            .expected(format!("`{keyword} SOURCE... DEST`")));
    };
    if parse_heredoc(dest).ok().flatten().is_some() {
        return Err(node.diagnostic_on(
            format!("{keyword} cannot accept a heredoc as a destination"),
            dest,
        ));
    }
    let mut paths = Vec::new();
    let mut inline_sources = Vec::new();
    for source in sources {
        match parse_heredoc(source).ok().flatten() {
            Some(marker) => {
                let body = node.heredocs.iter().find(|h| h.name == marker.name);
                inline_sources.push(InlineSource {
                    name: marker.name.clone(),
                    content: body.map(Heredoc::chomped_content).unwrap_or_default(),
                    expand: marker.expand,
                });
            }
            None => paths.push(source.clone()),
        }
    }
    let unpack = flags.opt_bool("unpack");
    Ok(Copy {
        sources: paths,
        inline_sources,
        dest: dest.clone(),
        from: flags.string("from"),
        chown: flags.string("chown"),
        chmod: flags.string("chmod"),
        link: flags.bool("link"),
        parents: flags.bool("parents"),
        excludes: flags.list("exclude"),
        checksum: flags.string("checksum"),
        keep_git_dir: flags.bool("keep-git-dir"),
        unpack,
    })
}

fn key_values(node: &Node) -> Result<Vec<KeyValue>, Diagnostic> {
    let keyword = node.keyword.to_uppercase();
    if node.args.is_empty() {
        return Err(at_least_one(node));
    }
    if node.args.len() % 3 != 0 {
        return Err(node.diagnostic(format!("Bad input to {keyword}, too many arguments")));
    }
    let mut pairs = Vec::with_capacity(node.args.len() / 3);
    for triple in node.args.chunks(3) {
        if triple[0].is_empty() {
            return Err(node
                .diagnostic_on(format!("{keyword} names can not be blank"), "=")
                .expected("`name=value`"));
        }
        pairs.push(KeyValue {
            key: triple[0].clone(),
            value: triple[1].clone(),
        });
    }
    Ok(pairs)
}

fn parse_arg(node: &Node) -> Result<Vec<ArgDecl>, Diagnostic> {
    if node.args.is_empty() {
        return Err(at_least_one(node));
    }
    let mut args = Vec::with_capacity(node.args.len());
    for word in &node.args {
        let (name, default) = match word.split_once('=') {
            Some((k, v)) => (k, Some(v.to_string())),
            None => (word.as_str(), None),
        };
        if name.is_empty() {
            return Err(node
                .diagnostic_on("ARG names can not be blank", word)
                .expected("`ARG name` or `ARG name=default`"));
        }
        args.push(ArgDecl {
            name: name.to_string(),
            default,
        });
    }
    Ok(args)
}

fn parse_onbuild(node: &Node) -> Result<String, Diagnostic> {
    let Some(trigger) = &node.subcommand else {
        return Err(at_least_one(node));
    };
    match trigger.name() {
        "onbuild" => {
            return Err(node.diagnostic_on(
                "Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed",
                &trigger.keyword,
            ))
        }
        "from" | "maintainer" => {
            return Err(node.diagnostic_on(
                format!(
                    "{} isn't allowed as an ONBUILD trigger",
                    trigger.keyword.to_uppercase()
                ),
                &trigger.keyword,
            ))
        }
        _ => {}
    }
    let mut expression = node
        .original
        .get(node.args_offset..)
        .unwrap_or("")
        .trim_end()
        .to_string();
    for doc in &node.heredocs {
        expression.push('\n');
        expression.push_str(&doc.content);
        expression.push_str(&doc.name);
    }
    Ok(expression)
}

#[cfg(test)]
mod tests;
