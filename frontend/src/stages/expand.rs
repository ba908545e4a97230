//! Expansion of one stage's instructions, tracking the state later instructions depend on.

use std::collections::BTreeSet;

use serde::Serialize;

use super::{parse_port_spec, stage_ref, BaseImage, BuildOptions, EnvList, Source};
use crate::diagnostic::Diagnostic;
use crate::dockerignore::go_clean;
use crate::instructions::{parse_mount, Copy, Instruction, KeyValue, Mount};
use crate::parser::Node;
use crate::shell::{Env, Lexer};

/// The default PATH BuildKit gives a stage that has none (Linux).
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// What a step runs with: variables (ENV and ARG values), working directory, user, shell.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StepState {
    /// Variables RUN sees and later words expand with: ENV and ARG, in order set.
    pub env: EnvList,
    /// The image config's `Env`: ENV only.
    pub image_env: EnvList,
    /// Names declared by ARG in this stage (and inherited from its parent stage).
    pub args: BTreeSet<String>,
    /// Absolute working directory.
    pub workdir: String,
    pub user: String,
    pub shell: Vec<String>,
}

impl Default for StepState {
    fn default() -> Self {
        StepState {
            env: EnvList::default(),
            image_env: EnvList::default(),
            args: BTreeSet::new(),
            workdir: "/".into(),
            user: String::new(),
            shell: vec!["/bin/sh".into(), "-c".into()],
        }
    }
}

impl StepState {
    /// FROM scratch: an empty config with the default PATH, as BuildKit gives it.
    pub fn scratch() -> Self {
        let env = EnvList::from_pairs([("PATH".to_string(), DEFAULT_PATH.to_string())]);
        StepState {
            env: env.clone(),
            image_env: env,
            ..StepState::default()
        }
    }

    /// FROM image: the image's config when known.
    pub fn from_base(base: Option<&BaseImage>) -> Self {
        let Some(base) = base else {
            return StepState::default();
        };
        let env = EnvList::from_pairs(base.env.iter().cloned());
        StepState {
            env: env.clone(),
            image_env: env,
            workdir: if base.working_dir.is_empty() {
                "/".into()
            } else {
                base.working_dir.clone()
            },
            user: base.user.clone(),
            ..StepState::default()
        }
    }
}

/// A RUN mount with its `from` resolved.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ResolvedMount {
    #[serde(flatten)]
    pub mount: Mount,
    /// Where the mount's source is read: the context, a stage or an image (bind and cache).
    pub source_of: Option<Source>,
}

/// One expanded instruction of a needed stage.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Step {
    /// 1-based first and last line.
    pub line: usize,
    pub end_line: usize,
    /// The instruction as written (logical line).
    pub source: String,
    /// The instruction with its words expanded.
    #[serde(flatten)]
    pub instruction: Instruction,
    /// COPY/ADD: where sources are read from.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub copy_source: Option<Source>,
    /// RUN: parsed mounts.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub mounts: Vec<ResolvedMount>,
    /// EXPOSE: normalised `port/proto` keys.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub exposed_ports: Vec<String>,
    /// RUN, COPY, ADD: the state they execute with.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state: Option<StepState>,
}

/// Expands one word, with the error located on `node`.
pub(crate) fn word(
    lexer: &Lexer,
    node: &Node,
    text: &str,
    env: &dyn Env,
) -> Result<String, Diagnostic> {
    lexer
        .process_word(text, env)
        .map_err(|e| node.diagnostic_on(format!("Failed to expand `{text}`: {}", e.message), text))
}

/// The raw `from=` of a `--mount` value, if any (it is never expanded, as in BuildKit).
pub(crate) fn mount_from(spec: &str) -> Option<String> {
    spec.split(',').find_map(|field| {
        let (k, v) = field.split_once('=')?;
        k.eq_ignore_ascii_case("from")
            .then(|| v.trim_matches('"').to_string())
    })
}

pub(crate) struct StageContext<'a> {
    pub lexer: &'a Lexer,
    pub options: &'a BuildOptions,
    pub meta_env: &'a EnvList,
    pub names: &'a [Option<String>],
    pub index: usize,
    pub state: StepState,
    pub consumed: &'a mut BTreeSet<String>,
}

impl StageContext<'_> {
    fn expand(&self, node: &Node, text: &str) -> Result<String, Diagnostic> {
        word(self.lexer, node, text, &self.state.env)
    }

    fn expand_opt(&self, node: &Node, text: &Option<String>) -> Result<Option<String>, Diagnostic> {
        text.as_ref().map(|t| self.expand(node, t)).transpose()
    }

    fn expand_pairs(&self, node: &Node, pairs: &[KeyValue]) -> Result<Vec<KeyValue>, Diagnostic> {
        pairs
            .iter()
            .map(|kv| {
                Ok(KeyValue {
                    key: self.expand(node, &kv.key)?,
                    value: self.expand(node, &kv.value)?,
                })
            })
            .collect()
    }

    fn expand_copy(&self, node: &Node, copy: &Copy) -> Result<Copy, Diagnostic> {
        let raw = Lexer {
            skip_process_quotes: true,
            ..Lexer::new('\\')
        };
        let mut out = copy.clone();
        out.sources = copy
            .sources
            .iter()
            .map(|s| self.expand(node, s))
            .collect::<Result<_, _>>()?;
        out.dest = self.expand(node, &copy.dest)?;
        out.chown = self.expand_opt(node, &copy.chown)?;
        out.chmod = self.expand_opt(node, &copy.chmod)?;
        out.checksum = self.expand_opt(node, &copy.checksum)?;
        out.excludes = copy
            .excludes
            .iter()
            .map(|s| self.expand(node, s))
            .collect::<Result<_, _>>()?;
        for inline in &mut out.inline_sources {
            if inline.expand {
                inline.content = word(&raw, node, &inline.content, &self.state.env)?;
            }
        }
        Ok(out)
    }

    /// Expands one instruction and applies its effect on the stage state.
    pub fn step(
        &mut self,
        node: &Node,
        instruction: &Instruction,
        copy_source: Option<Source>,
    ) -> Result<Step, Diagnostic> {
        let mut step = Step {
            line: node.start_line,
            end_line: node.end_line,
            source: node.original.trim().to_string(),
            instruction: instruction.clone(),
            copy_source: None,
            mounts: Vec::new(),
            exposed_ports: Vec::new(),
            state: None,
        };
        match instruction {
            Instruction::Arg { args } => {
                for decl in args {
                    let value = if let Some(v) = self.options.build_args.get(&decl.name) {
                        self.consumed.insert(decl.name.clone());
                        Some(v.clone())
                    } else if let Some(default) = &decl.default {
                        Some(self.expand(node, default)?)
                    } else {
                        self.meta_env.get(&decl.name).map(str::to_string)
                    };
                    if let Some(v) = value {
                        self.state.env.set(decl.name.clone(), v);
                    }
                    self.state.args.insert(decl.name.clone());
                }
            }
            Instruction::Env { vars } => {
                let vars = self.expand_pairs(node, vars)?;
                for kv in &vars {
                    self.state.env.set(kv.key.clone(), kv.value.clone());
                    self.state.image_env.set(kv.key.clone(), kv.value.clone());
                }
                step.instruction = Instruction::Env { vars };
            }
            Instruction::Label { labels } => {
                step.instruction = Instruction::Label {
                    labels: self.expand_pairs(node, labels)?,
                };
            }
            Instruction::Copy(copy) | Instruction::Add(copy) => {
                let expanded = self.expand_copy(node, copy)?;
                step.instruction = if matches!(instruction, Instruction::Copy(_)) {
                    Instruction::Copy(expanded)
                } else {
                    Instruction::Add(expanded)
                };
                step.copy_source = Some(copy_source.unwrap_or(Source::Context));
                step.state = Some(self.state.clone());
            }
            Instruction::Workdir { path } => {
                let path = self.expand(node, path)?;
                self.state.workdir = if path.starts_with('/') {
                    go_clean(&path)
                } else {
                    go_clean(&format!("{}/{}", self.state.workdir, path))
                };
                step.instruction = Instruction::Workdir { path };
                step.state = Some(self.state.clone());
            }
            Instruction::User { user } => {
                let user = self.expand(node, user)?;
                self.state.user = user.clone();
                step.instruction = Instruction::User { user };
            }
            Instruction::Volume { paths } => {
                let paths = paths
                    .iter()
                    .map(|p| self.expand(node, p))
                    .collect::<Result<_, _>>()?;
                step.instruction = Instruction::Volume { paths };
            }
            Instruction::Stopsignal { signal } => {
                step.instruction = Instruction::Stopsignal {
                    signal: self.expand(node, signal)?,
                };
            }
            Instruction::Expose { ports } => {
                let mut words = Vec::new();
                for p in ports {
                    let split = self.lexer.process_words(p, &self.state.env).map_err(|e| {
                        node.diagnostic_on(format!("Failed to expand `{p}`: {}", e.message), p)
                    })?;
                    words.extend(split);
                }
                for w in &words {
                    let keys = parse_port_spec(w).map_err(|e| node.diagnostic_on(e, w))?;
                    step.exposed_ports.extend(keys);
                }
                step.instruction = Instruction::Expose { ports: words };
            }
            Instruction::Shell { shell } => self.state.shell = shell.clone(),
            Instruction::Run(run) => {
                for raw in &run.mounts {
                    let env = &self.state.env;
                    let lexer = self.lexer;
                    let mount = parse_mount(raw, &mut |v| {
                        lexer.process_word(v, env).map_err(|e| e.message)
                    })
                    .map_err(|e| {
                        node.diagnostic_on_flag_text(format!("Invalid --mount: {e}"), raw)
                    })?;
                    let source_of = match (&mount.from, mount.kind) {
                        (Some(from), _) => Some(
                            stage_ref(from, self.index, self.names)
                                .map_err(|e| node.diagnostic_on_flag_text(e, raw))?,
                        ),
                        (None, crate::instructions::MountType::Bind) => Some(Source::Context),
                        _ => None,
                    };
                    step.mounts.push(ResolvedMount { mount, source_of });
                }
                step.state = Some(self.state.clone());
            }
            _ => {}
        }
        Ok(step)
    }
}
