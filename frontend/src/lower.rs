//! Lowering: resolved stages → the build graph ([`rbuild_graph::Definition`]).
//!
//! Only the target's stages are lowered (the plan's `order`). Each stage starts at an image,
//! scratch, or another stage's last vertex; RUN becomes an exec vertex, COPY/ADD a copy vertex
//! (its source: the context, a stage, or an image), WORKDIR a mkdir vertex. Config-only
//! instructions (ENV, LABEL, CMD, ...) change the image config, not the filesystem, and make no
//! vertex: the caller builds the config from the same steps ([`crate::stages::Step`]).

use std::collections::BTreeMap;

use rbuild_graph::{Copy, Definition, Exec, ExecMount, Mkdir, Op, Vertex, VertexId};

use crate::diagnostic::{Diagnostic, Position};
use crate::instructions::{CacheSharing, Instruction, MountType, NetworkMode, SecurityMode};
use crate::stages::{BuildPlan, Source, Stage, Step, StepState};

/// What a `--build-context NAME=VALUE` makes of a name used in FROM, `COPY --from` or
/// `RUN --mount from=` (it wins over an image of that name, not over a stage).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NamedContext {
    /// A local directory: a build context of its own; `FROM NAME` starts from its files.
    Local,
    /// `docker-image://REF`: the name stands for another image reference.
    Image(String),
}

/// The lowered build.
#[derive(Debug, Clone)]
pub struct Lowered {
    pub definition: Definition,
    /// The last vertex of each lowered stage, by stage index.
    pub stage_outputs: BTreeMap<usize, VertexId>,
}

/// Lowers `plan`; `global_network` is `--network` (a RUN's own `--network` wins); `named` are
/// the `--build-context`s.
pub fn lower(
    plan: &BuildPlan,
    global_network: &str,
    named: &BTreeMap<String, NamedContext>,
) -> Result<Lowered, Diagnostic> {
    let mut lowering = Lowering {
        definition: Definition::default(),
        outputs: BTreeMap::new(),
        images: BTreeMap::new(),
        contexts: BTreeMap::new(),
        global_network,
        plan,
        named,
    };
    for &index in &plan.order {
        lowering.stage(&plan.stages[index])?;
    }
    let target = lowering.outputs.get(&plan.target).copied();
    lowering.definition.target = target;
    Ok(Lowered {
        definition: lowering.definition,
        stage_outputs: lowering.outputs,
    })
}

struct Lowering<'a> {
    definition: Definition,
    outputs: BTreeMap<usize, VertexId>,
    images: BTreeMap<String, VertexId>,
    contexts: BTreeMap<String, VertexId>,
    global_network: &'a str,
    plan: &'a BuildPlan,
    named: &'a BTreeMap<String, NamedContext>,
}

/// BuildKit's name for a stage in progress output.
pub fn stage_label(stage: &Stage) -> String {
    stage
        .name
        .clone()
        .unwrap_or_else(|| format!("stage-{}", stage.index))
}

fn is_fs_step(step: &Step) -> bool {
    matches!(
        step.instruction,
        Instruction::Run(_)
            | Instruction::Copy(_)
            | Instruction::Add(_)
            | Instruction::Workdir { .. }
    )
}

impl Lowering<'_> {
    fn vertex(
        &mut self,
        op: Op,
        inputs: Vec<VertexId>,
        name: String,
        stage: usize,
        slot: String,
        lines: (usize, usize),
    ) -> VertexId {
        self.definition.add(Vertex {
            op,
            inputs,
            name,
            line: lines.0,
            end_line: lines.1,
            stage: Some(stage),
            slot,
            digest: String::new(),
        })
    }

    fn image(&mut self, reference: &str) -> VertexId {
        if let Some(id) = self.images.get(reference) {
            return *id;
        }
        let id = self.definition.add(Vertex {
            op: Op::Image {
                reference: reference.to_string(),
            },
            inputs: Vec::new(),
            name: format!("[internal] load metadata for {reference}"),
            line: 0,
            end_line: 0,
            stage: None,
            slot: format!("image:{reference}"),
            digest: String::new(),
        });
        self.images.insert(reference.to_string(), id);
        id
    }

    fn context(&mut self, name: &str) -> VertexId {
        if let Some(id) = self.contexts.get(name) {
            return *id;
        }
        let label = if name == "context" {
            "[internal] load build context".to_string()
        } else {
            format!("[internal] load build context {name}")
        };
        let id = self.definition.add(Vertex {
            op: Op::Context {
                name: name.to_string(),
            },
            inputs: Vec::new(),
            name: label,
            line: 0,
            end_line: 0,
            stage: None,
            slot: format!("context:{name}"),
            digest: String::new(),
        });
        self.contexts.insert(name.to_string(), id);
        id
    }

    fn source(&mut self, source: &Source, line: usize) -> Result<VertexId, Diagnostic> {
        match source {
            Source::Context => Ok(self.context("context")),
            Source::Image { reference } => match self.named.get(reference) {
                Some(NamedContext::Local) => Ok(self.context(reference)),
                Some(NamedContext::Image(other)) => {
                    let other = other.clone();
                    Ok(self.image(&other))
                }
                None => Ok(self.image(reference)),
            },
            Source::Scratch => Ok(self.definition.add(Vertex {
                op: Op::Scratch,
                inputs: Vec::new(),
                name: "scratch".into(),
                line: 0,
                end_line: 0,
                stage: None,
                slot: "scratch".into(),
                digest: String::new(),
            })),
            Source::Stage { index } => self.outputs.get(index).copied().ok_or_else(|| {
                Diagnostic::new(
                    format!("stage {index} is used before it is built"),
                    Position { line, column: 1 },
                    0,
                )
            }),
        }
    }

    /// A stage's starting filesystem. `FROM NAME` of a local named context is its files copied
    /// onto scratch (keyed by their content, like a COPY).
    fn base(&mut self, stage: &Stage, label: &str, total: usize) -> Result<VertexId, Diagnostic> {
        if let Source::Image { reference } = &stage.base {
            if self.named.get(reference) == Some(&NamedContext::Local) {
                let scratch = self.source(&Source::Scratch, stage.line)?;
                let context = self.context(reference);
                let op = Op::Copy(Copy {
                    input: 1,
                    sources: vec![".".into()],
                    inline: Vec::new(),
                    dest: "/".into(),
                    cwd: "/".into(),
                    chown: None,
                    chmod: None,
                    excludes: Vec::new(),
                    add: false,
                    unpack: None,
                    from_context: true,
                });
                let name = format!("[{label} 1/{total}] FROM {reference} (build context)");
                let slot = format!("{}/from", stage.index);
                return Ok(self.vertex(
                    op,
                    vec![scratch, context],
                    name,
                    stage.index,
                    slot,
                    (stage.line, stage.line),
                ));
            }
        }
        self.source(&stage.base, stage.line)
    }

    fn stage(&mut self, stage: &Stage) -> Result<(), Diagnostic> {
        let label = stage_label(stage);
        let total = 1 + stage.steps.iter().filter(|s| is_fs_step(s)).count();
        let mut current = self.base(stage, &label, total)?;
        let mut position = 1;
        for (step_index, step) in stage.steps.iter().enumerate() {
            if !is_fs_step(step) {
                continue;
            }
            position += 1;
            let name = format!("[{label} {position}/{total}] {}", step.source.trim());
            let slot = format!("{}/{}", stage.index, step_index);
            let lines = (step.line, step.end_line);
            let state = step.state.clone().unwrap_or_default();
            current = match &step.instruction {
                Instruction::Run(run) => {
                    let mut inputs = vec![current];
                    let mut mounts = Vec::new();
                    for resolved in &step.mounts {
                        let m = &resolved.mount;
                        let input = match &resolved.source_of {
                            Some(source)
                                if matches!(m.kind, MountType::Bind | MountType::Cache) =>
                            {
                                let id = self.source(source, step.line)?;
                                inputs.push(id);
                                Some(inputs.len() - 1)
                            }
                            _ => None,
                        };
                        // secret and ssh: `source=` is another spelling of the id (BuildKit).
                        let is_secret = matches!(m.kind, MountType::Secret | MountType::Ssh);
                        mounts.push(ExecMount {
                            kind: mount_kind(m.kind).into(),
                            target: m.target.clone().unwrap_or_default(),
                            input,
                            source: if is_secret {
                                String::new()
                            } else {
                                m.source.clone().unwrap_or_else(|| "/".into())
                            },
                            readonly: m.readonly,
                            id: if is_secret {
                                m.id.clone().or_else(|| m.source.clone())
                            } else {
                                m.id.clone()
                            },
                            sharing: m.sharing.map(|s| sharing(s).to_string()),
                            mode: m.mode,
                            uid: m.uid,
                            gid: m.gid,
                            size: m.size,
                            required: m.required,
                        });
                    }
                    let network = match run.network {
                        Some(NetworkMode::None) => "none",
                        Some(NetworkMode::Host) => "host",
                        Some(NetworkMode::Default) => "default",
                        None => self.global_network,
                    };
                    let exec = Exec {
                        args: run_args(run, &state),
                        env: exec_env(&state, &self.plan.proxy_env),
                        arg_names: state
                            .args
                            .iter()
                            .filter(|name| state.env.contains(name))
                            .cloned()
                            .collect(),
                        uncached_env: self
                            .plan
                            .proxy_env
                            .iter()
                            .filter(|(key, _)| !state.env.contains(key))
                            .map(|(key, _)| key.clone())
                            .collect(),
                        cwd: state.workdir.clone(),
                        user: state.user.clone(),
                        network: network.to_string(),
                        security: match run.security {
                            Some(SecurityMode::Insecure) => "insecure".into(),
                            _ => "sandbox".into(),
                        },
                        mounts,
                    };
                    self.vertex(Op::Exec(exec), inputs, name, stage.index, slot, lines)
                }
                Instruction::Copy(copy) | Instruction::Add(copy) => {
                    let add = matches!(step.instruction, Instruction::Add(_));
                    let source = step.copy_source.clone().unwrap_or(Source::Context);
                    let from_context = source == Source::Context;
                    let source_id = self.source(&source, step.line)?;
                    let chmod = match &copy.chmod {
                        Some(text) => Some(u32::from_str_radix(text, 8).map_err(|_| {
                            Diagnostic::new(
                                format!("invalid --chmod value `{text}`: expected an octal mode"),
                                Position {
                                    line: step.line,
                                    column: 1,
                                },
                                0,
                            )
                        })?),
                        None => None,
                    };
                    if copy.checksum.is_some() {
                        return Err(Diagnostic::new(
                            "`ADD --checksum` is not supported yet (it verifies remote sources, which need the registry client, issue 6)",
                            Position { line: step.line, column: 1 },
                            0,
                        ));
                    }
                    if copy.parents {
                        return Err(Diagnostic::new(
                            "`--parents` is not supported yet",
                            Position {
                                line: step.line,
                                column: 1,
                            },
                            0,
                        ));
                    }
                    let op = Op::Copy(Copy {
                        input: 1,
                        sources: copy.sources.clone(),
                        inline: copy
                            .inline_sources
                            .iter()
                            .map(|s| (s.name.clone(), s.content.clone()))
                            .collect(),
                        dest: copy.dest.clone(),
                        cwd: state.workdir.clone(),
                        chown: copy.chown.clone(),
                        chmod,
                        excludes: copy.excludes.clone(),
                        add,
                        unpack: copy.unpack,
                        from_context,
                    });
                    self.vertex(op, vec![current, source_id], name, stage.index, slot, lines)
                }
                Instruction::Workdir { .. } => {
                    let op = Op::Mkdir(Mkdir {
                        path: state.workdir.clone(),
                        user: state.user.clone(),
                    });
                    self.vertex(op, vec![current], name, stage.index, slot, lines)
                }
                _ => current,
            };
        }
        self.outputs.insert(stage.index, current);
        Ok(())
    }
}

fn mount_kind(kind: MountType) -> &'static str {
    match kind {
        MountType::Bind => "bind",
        MountType::Cache => "cache",
        MountType::Tmpfs => "tmpfs",
        MountType::Secret => "secret",
        MountType::Ssh => "ssh",
    }
}

fn sharing(sharing: CacheSharing) -> &'static str {
    match sharing {
        CacheSharing::Shared => "shared",
        CacheSharing::Private => "private",
        CacheSharing::Locked => "locked",
    }
}

/// argv of a RUN: exec form as is; shell form through the stage's SHELL, with any heredoc
/// bodies appended so the shell reads them as here-documents (what BuildKit runs too).
fn run_args(run: &crate::instructions::Run, state: &StepState) -> Vec<String> {
    if !run.command.shell_form {
        return run.command.args.clone();
    }
    let mut script = run.command.args.join(" ");
    for heredoc in &run.heredocs {
        script.push('\n');
        script.push_str(&heredoc.content);
        if !heredoc.content.ends_with('\n') && !heredoc.content.is_empty() {
            script.push('\n');
        }
        script.push_str(&heredoc.name);
    }
    let mut args = state.shell.clone();
    args.push(script);
    args
}

/// The RUN environment: ENV and ARG values in scope (later wins), then proxy build args.
fn exec_env(state: &StepState, proxy: &[(String, String)]) -> Vec<String> {
    let mut env: Vec<String> = state
        .env
        .pairs()
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    for (key, value) in proxy {
        if !state.env.contains(key) {
            env.push(format!("{key}={value}"));
        }
    }
    env
}
