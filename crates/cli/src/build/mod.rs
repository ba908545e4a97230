//! `rbuild build`: Dockerfile → stages → graph → solver (with the local worker) → image →
//! outputs. This module wires the pieces and owns the terminal; each piece lives in its crate.

mod config;
mod export;
pub mod progress;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{anyhow, bail, Context, Result};
use rbuild_frontend::lower::{lower, NamedContext};
use rbuild_frontend::parser;
use rbuild_frontend::stages::{self, BaseImage, BuildOptions, BuildPlan, Platform, Source};
use rbuild_sandbox::ResourceLimits;
use rbuild_snapshotter::images::{ImageRecord, ImageStore};
use rbuild_snapshotter::layer::Compression;
use rbuild_solver::{solve, SolveOptions};
use rbuild_worker::exec::Secrets;
use rbuild_worker::{BuildContext, LocalWorker, Output, WorkerOptions};

use crate::args::BuildArgs;
use crate::render::SourceError;

pub use config::{rfc3339, strings};
use progress::{Mode, Progress};

/// Exit status of a build stopped by Ctrl-C or SIGTERM.
pub const INTERRUPTED: u8 = 130;

/// A build error whose text is already rendered (the failing step's report).
#[derive(Debug)]
pub struct Reported {
    pub text: String,
    pub interrupted: bool,
}

impl std::fmt::Display for Reported {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

impl std::error::Error for Reported {}

struct Inputs {
    context: PathBuf,
    _context_tmp: Option<tempfile::TempDir>,
    dockerfile: PathBuf,
    source: String,
}

fn read_inputs(args: &BuildArgs, root: &Path) -> Result<Inputs> {
    let Some(context) = args.context.clone() else {
        bail!("`rbuild build` needs a CONTEXT (a directory, or `-` for a tar on stdin)");
    };
    let (context, tmp) = if context == Path::new("-") {
        // A tar context on stdin: unpacked safely (inside the directory, no devices).
        std::fs::create_dir_all(root)
            .with_context(|| format!("Failed to create {}", root.display()))?;
        let dir = tempfile::Builder::new()
            .prefix(&format!("context-{}-", std::process::id()))
            .tempdir_in(root)
            .context("Failed to make a context directory")?;
        let mut options = rbuild_snapshotter::apply::ApplyOptions::new(
            rbuild_snapshotter::apply::ApplyMode::Flatten,
        );
        options.same_owner = false;
        rbuild_snapshotter::apply::apply_layer(std::io::stdin().lock(), dir.path(), &options)
            .context("Failed to read the context tar from stdin")?;
        (dir.path().to_path_buf(), Some(dir))
    } else {
        let canonical = std::fs::canonicalize(&context)
            .with_context(|| format!("The build context `{}` does not exist", context.display()))?;
        if !canonical.is_dir() {
            bail!(
                "The build context `{}` is not a directory",
                context.display()
            );
        }
        (canonical, None)
    };
    let dockerfile = args
        .file
        .clone()
        .unwrap_or_else(|| context.join("Dockerfile"));
    let source = crate::debug::read_dockerfile(&dockerfile)?;
    Ok(Inputs {
        context,
        _context_tmp: tmp,
        dockerfile,
        source,
    })
}

/// The build's source date: `SOURCE_DATE_EPOCH` (environment, then build arg), else the time of
/// the last commit touching the context when it is in a git work tree, else 0.
/// `--timestamp=now`: none (times are the build's).
fn source_date(
    args: &BuildArgs,
    build_args: &BTreeMap<String, String>,
    context: &Path,
    from_stdin: bool,
) -> Result<Option<i64>> {
    match args.timestamp.as_deref() {
        Some("now") => return Ok(None),
        Some(other) => {
            return other.parse().map(Some).map_err(|_| {
                anyhow!("Invalid `--timestamp={other}`: expected `now` or seconds since the epoch")
            })
        }
        None => {}
    }
    let from = std::env::var("SOURCE_DATE_EPOCH")
        .ok()
        .or_else(|| build_args.get("SOURCE_DATE_EPOCH").cloned());
    if let Some(value) = from {
        return value.trim().parse().map(Some).map_err(|_| {
            anyhow!("Invalid SOURCE_DATE_EPOCH `{value}`: expected seconds since the epoch")
        });
    }
    if from_stdin {
        // A tar from stdin carries no trusted repository (its .git/config could run commands).
        return Ok(Some(0));
    }
    if std::env::var_os("GIT_DIR").is_none() && !in_git_work_tree(context) {
        // Not a repository: no need to start git (a few ms of every build).
        return Ok(Some(0));
    }
    let git = std::process::Command::new("git")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .args(["-c", "core.fsmonitor=false", "-C"])
        .arg(context)
        .args([
            "log",
            "-1",
            "--no-show-signature",
            "--format=%ct",
            "--",
            ".",
        ])
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .output();
    if let Ok(out) = git {
        if out.status.success() {
            if let Ok(t) = String::from_utf8_lossy(&out.stdout).trim().parse() {
                return Ok(Some(t));
            }
        }
    }
    Ok(Some(0))
}

/// Whether `dir` or one of its ancestors has a `.git` (directory, or file of a worktree or
/// submodule): git's own discovery, without its other ways (`GIT_DIR` is checked apart).
fn in_git_work_tree(dir: &Path) -> bool {
    let dir = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
    dir.ancestors()
        .any(|d| std::fs::symlink_metadata(d.join(".git")).is_ok())
}

pub fn parse_size(text: &str) -> Result<u64> {
    let lower = text.trim().to_ascii_lowercase();
    let (digits, unit) = lower.split_at(
        lower
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(lower.len()),
    );
    let n: u64 = digits
        .parse()
        .map_err(|_| anyhow!("Invalid size `{text}`"))?;
    let mult = match unit.trim_end_matches('b') {
        "" => 1,
        "k" => 1 << 10,
        "m" => 1 << 20,
        "g" => 1 << 30,
        _ => bail!("Invalid size `{text}`: use bytes or a k, m or g suffix"),
    };
    n.checked_mul(mult)
        .ok_or_else(|| anyhow!("Invalid size `{text}`: too large"))
}

fn secrets(args: &BuildArgs) -> Result<Secrets> {
    let mut out = Secrets::default();
    for spec in &args.secrets {
        let mut id = None;
        let mut src = None;
        let mut data = None;
        for field in spec.split(',') {
            match field.split_once('=') {
                Some(("id", v)) => id = Some(v.to_string()),
                Some(("src" | "source", v)) => src = Some(PathBuf::from(v)),
                Some(("env", v)) => {
                    // Held in memory: the value never goes to a file outside the step.
                    let value = std::env::var_os(v).with_context(|| {
                        format!("`--secret {spec}`: the environment has no `{v}`")
                    })?;
                    data = Some(value.as_encoded_bytes().to_vec());
                }
                Some(("type", "file" | "env")) => {}
                _ => bail!("Invalid `--secret {spec}`: expected id=ID,src=FILE or id=ID,env=VAR"),
            }
        }
        let id = id.ok_or_else(|| anyhow!("Invalid `--secret {spec}`: `id=` is missing"))?;
        let value = match (src, data) {
            (Some(path), None) => rbuild_worker::exec::SecretValue::File(path),
            (None, Some(bytes)) => rbuild_worker::exec::SecretValue::Data(bytes),
            _ => bail!("Invalid `--secret {spec}`: give exactly one of `src=FILE` and `env=VAR`"),
        };
        out.secrets.insert(id, value);
    }
    for spec in &args.ssh {
        let (id, socket) = match spec.split_once('=') {
            Some((id, socket)) => (id.to_string(), PathBuf::from(socket)),
            None => (
                spec.clone(),
                std::env::var_os("SSH_AUTH_SOCK")
                    .map(PathBuf::from)
                    .ok_or_else(|| anyhow!("`--ssh {spec}`: SSH_AUTH_SOCK is not set"))?,
            ),
        };
        out.ssh.insert(id, socket);
    }
    Ok(out)
}

/// `--build-context NAME=DIR`, `NAME=docker-image://REF` and `NAME=oci-layout://PATH[:TAG|@DIGEST]`,
/// as buildx spells them (a layout's image is imported into the local store).
fn named_contexts(
    root: &Path,
    args: &BuildArgs,
) -> Result<(BTreeMap<String, NamedContext>, BTreeMap<String, PathBuf>)> {
    let mut named = BTreeMap::new();
    let mut dirs = BTreeMap::new();
    for spec in &args.build_contexts {
        let (name, value) = spec
            .split_once('=')
            .ok_or_else(|| anyhow!("Invalid `--build-context {spec}`: expected NAME=VALUE"))?;
        if name.is_empty() || name == "context" {
            bail!("Invalid `--build-context {spec}`: the name must not be empty or `context`");
        }
        if let Some(reference) = value.strip_prefix("docker-image://") {
            crate::registry::canonical(reference)
                .with_context(|| format!("Invalid `--build-context {spec}`"))?;
            named.insert(name.to_string(), NamedContext::Image(reference.to_string()));
        } else if let Some(layout) = value.strip_prefix("oci-layout://") {
            let stored = crate::registry::import_oci_layout(root, layout)
                .with_context(|| format!("`--build-context {spec}`"))?;
            named.insert(name.to_string(), NamedContext::Image(stored));
        } else if value.contains("://") || value.starts_with("git@") {
            bail!("`--build-context {spec}`: URL and git contexts are not supported (local directories, docker-image:// and oci-layout:// are)");
        } else {
            let dir = std::fs::canonicalize(value)
                .with_context(|| format!("`--build-context {spec}`: `{value}` does not exist"))?;
            if !dir.is_dir() {
                bail!("`--build-context {spec}`: `{value}` is not a directory");
            }
            named.insert(name.to_string(), NamedContext::Local);
            dirs.insert(name.to_string(), dir);
        }
    }
    Ok((named, dirs))
}

/// The name a `--build-context` matches by, as BuildKit compares them: the familiar form
/// without `:latest` (`docker.io/library/alpine:latest`, `alpine:latest` and `alpine` are one).
fn context_key(name: &str) -> String {
    rbuild_registry::Reference::parse(name).map_or_else(
        |_| name.to_string(),
        |r| {
            let familiar = r.familiar();
            familiar
                .strip_suffix(":latest")
                .map(str::to_string)
                .unwrap_or(familiar)
        },
    )
}

/// Makes `FROM docker.io/library/alpine:latest` (and every other spelling of a name) find a
/// `--build-context alpine=...`: each reference the stages read that names a context under
/// another spelling becomes an alias of it.
fn alias_normalised_names(
    named: &mut BTreeMap<String, NamedContext>,
    dirs: &mut BTreeMap<String, PathBuf>,
    references: &BTreeSet<String>,
) {
    let by_key: BTreeMap<String, String> = named
        .keys()
        .map(|name| (context_key(name), name.clone()))
        .collect();
    for reference in references {
        if named.contains_key(reference) {
            continue;
        }
        let Some(name) = by_key.get(&context_key(reference)) else {
            continue;
        };
        if let Some(context) = named.get(name).cloned() {
            named.insert(reference.clone(), context);
        }
        if let Some(dir) = dirs.get(name).cloned() {
            dirs.insert(reference.clone(), dir);
        }
    }
}

/// Every image reference the needed stages read (FROM, COPY --from, RUN --mount from=), with
/// `--build-context` names replaced (a local one is not an image; an alias is its target).
fn resolved_image_refs(
    plan: &BuildPlan,
    named: &BTreeMap<String, NamedContext>,
) -> BTreeSet<String> {
    image_refs(plan)
        .into_iter()
        .filter_map(|r| match named.get(&r) {
            Some(NamedContext::Local) => None,
            Some(NamedContext::Image(other)) => Some(other.clone()),
            None => Some(r),
        })
        .collect()
}

/// Every image reference the needed stages read (FROM, COPY --from, RUN --mount from=).
fn image_refs(plan: &BuildPlan) -> BTreeSet<String> {
    let mut refs = BTreeSet::new();
    for &i in &plan.order {
        let stage = &plan.stages[i];
        let mut add = |s: &Source| {
            if let Source::Image { reference } = s {
                refs.insert(reference.clone());
            }
        };
        add(&stage.base);
        for step in &stage.steps {
            if let Some(s) = &step.copy_source {
                add(s);
            }
            for m in &step.mounts {
                if let Some(s) = &m.source_of {
                    add(s);
                }
            }
        }
    }
    refs
}

fn base_image(config: &[u8]) -> BaseImage {
    let doc: serde_json::Value = serde_json::from_slice(config).unwrap_or_default();
    let runtime = &doc["config"];
    BaseImage {
        env: strings(&runtime["Env"])
            .into_iter()
            .map(|e| {
                let (k, v) = e.split_once('=').unwrap_or((&e, ""));
                (k.to_string(), v.to_string())
            })
            .collect(),
        working_dir: runtime["WorkingDir"]
            .as_str()
            .unwrap_or_default()
            .to_string(),
        user: runtime["User"].as_str().unwrap_or_default().to_string(),
        onbuild: strings(&runtime["OnBuild"]),
    }
}

/// Runs a build; returns the process exit code.
pub fn run(root: &Path, args: &BuildArgs) -> Result<u8> {
    let pull_policy = crate::registry::PullPolicy::parse(args.pull.as_deref())?;
    let mode = Mode::parse(&args.progress, args.quiet)?;
    let inputs = read_inputs(args, root)?;
    let build_args = crate::debug::parse_build_args(&args.build_args)?;
    let epoch = source_date(
        args,
        &build_args,
        &inputs.context,
        inputs._context_tmp.is_some(),
    )?;
    let host = Platform::host();
    let mut options = BuildOptions {
        build_args,
        target: args.target.clone(),
        ..BuildOptions::default()
    };
    if let Some(p) = &args.platform {
        let platform = Platform::parse(p)
            .map_err(|e| anyhow!(e))
            .context("Invalid `--platform`")?;
        if platform != host {
            bail!("`--platform {p}`: rbuild builds for the host's platform only ({host}); it does not emulate other architectures");
        }
        options.target_platform = platform;
    }
    let dockerfile = &inputs.dockerfile;
    let source = &inputs.source;
    let src_err = |d| SourceError::new(dockerfile, source, d);
    let ast = parser::parse(source).map_err(src_err)?;
    if ast.children.is_empty() {
        bail!(
            "The Dockerfile `{}` has no instructions",
            dockerfile.display()
        );
    }

    let (ignore, _) = crate::context::ignore_rules(&inputs.context, dockerfile)?;
    let slot_prefix = format!("{}\0{}", dockerfile.display(), inputs.context.display());
    let limits = ResourceLimits {
        memory: args.memory.as_deref().map(parse_size).transpose()?,
        cpu_shares: args.cpu_shares,
        cpu_quota: args.cpu_quota,
        cpu_period: args.cpu_period,
        pids: args.pids_limit,
    };
    let (mut named, mut named_dirs) = named_contexts(root, args)?;
    // Two passes: the base images' configs (ENV, WORKDIR, USER, ONBUILD) shape the stages.
    let first = stages::resolve(&ast, &options).map_err(src_err)?;
    alias_normalised_names(&mut named, &mut named_dirs, &image_refs(&first));
    let mut contexts = BTreeMap::from([(
        "context".to_string(),
        BuildContext {
            dir: inputs.context.clone(),
            ignore,
        },
    )]);
    for (name, dir) in named_dirs {
        let none = rbuild_frontend::dockerignore::IgnoreRules::from_patterns(Vec::<String>::new())
            .map_err(|e| anyhow!("{e}"))?;
        contexts.insert(name, BuildContext { dir, ignore: none });
    }
    let worker = LocalWorker::open(
        root,
        contexts,
        WorkerOptions {
            secrets: secrets(args)?,
            limits,
            slot_prefix,
        },
    )
    .map_err(|e| anyhow!("{e}"))?;

    let target_platform = options.target_platform.clone();
    let ensure_images = |plan: &BuildPlan| {
        crate::registry::ensure_images(
            root,
            &resolved_image_refs(plan, &named),
            pull_policy,
            &target_platform,
            &args.insecure_registries,
            mode == Mode::Quiet,
        )
    };
    ensure_images(&first)?;
    for reference in image_refs(&first) {
        let target = match named.get(&reference) {
            Some(NamedContext::Local) => continue,
            Some(NamedContext::Image(other)) => other.clone(),
            None => reference.clone(),
        };
        if let Ok(image) = worker.resolve_image(&target) {
            options
                .base_images
                .insert(reference, base_image(&image.config));
        }
    }
    let plan = stages::resolve(&ast, &options).map_err(src_err)?;
    // ONBUILD triggers of the base images may name more images.
    ensure_images(&plan)?;
    for warning in ast
        .warnings
        .iter()
        .map(|w| format!("line {}: {}", w.line, w.message))
        .chain(plan.warnings.iter().cloned())
    {
        if mode != Mode::Quiet {
            eprintln!("warning: {warning}");
        }
    }
    let lowered = lower(&plan, &args.network, &named).map_err(src_err)?;
    let definition = Arc::new(lowered.definition);
    let mut no_cache_stages = BTreeSet::new();
    for name in &args.no_cache_filter {
        let index = plan
            .stages
            .iter()
            .find(|s| {
                s.name.as_deref() == Some(&name.to_lowercase()) || s.index.to_string() == *name
            })
            .map(|s| s.index)
            .ok_or_else(|| anyhow!("`--no-cache-filter {name}`: no stage has that name"))?;
        no_cache_stages.insert(index);
    }
    let mut worker = worker;
    worker.set_no_cache(args.no_cache, no_cache_stages.clone());
    let solve_options = SolveOptions {
        no_cache: args.no_cache,
        no_cache_stages,
        jobs: args.jobs,
        cpu_slots: std::thread::available_parallelism().map_or(2, |n| n.get()),
    };

    let mut output_specs = args.outputs.clone();
    if args.load {
        output_specs.push("type=docker".to_string());
    }
    if args.push {
        if args.tags.is_empty() {
            bail!("`--push` needs a name: add `-t REGISTRY/NAME:TAG`");
        }
        // One CSV field `"name=a,b"` (quotes doubled), as buildx writes it.
        let names = args.tags.join(",").replace('"', "\"\"");
        output_specs.push(format!("type=image,\"name={names}\",push=true"));
    }
    let outputs = output_specs
        .iter()
        .map(|o| rbuild_exporter::output::parse_output(o).map_err(|e| anyhow!("{e}")))
        .collect::<Result<Vec<_>>>()?;
    // Layers are compressed for image outputs (gzip unless `compression=` says otherwise); an
    // image only named into the local store keeps plain tar layers: hashing them costs a tenth
    // of compressing them, and `rbuild save`/`docker load` read them as they are.
    let compression = outputs
        .iter()
        .find(|o| match o.kind {
            rbuild_exporter::output::OutputKind::Oci => true,
            // Loaded into an engine (no dest): plain tar, which the engine reads fastest.
            rbuild_exporter::output::OutputKind::Docker => o.dest.is_some(),
            rbuild_exporter::output::OutputKind::Image => o.push,
            _ => false,
        })
        .map_or(Compression::Uncompressed, |o| o.compression);
    // Named into the local store only: uncompressed layers are hashed, and their blobs made from
    // the snapshots when something first reads them (`save`, `push`, a later `--load`).
    let lazy = outputs.is_empty() && compression == Compression::Uncompressed;
    // The image's layers (the target's stage chain) are written as their steps commit.
    worker.set_eager_layers(rbuild_worker::EagerLayers {
        compression,
        source_date_epoch: epoch,
        stages: config::stage_chain(&plan).0.into_iter().collect(),
        lazy,
    });
    let worker = Arc::new(worker);
    let progress = Arc::new(Progress::new(mode));
    progress.note(&format!(
        "[internal] load build definition from {}",
        dockerfile.display()
    ));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .max_blocking_threads(64)
        .enable_all()
        .build()
        .context("Failed to start the scheduler")?;
    let cancel = worker.cancel_handle();
    let (result, interrupted) = runtime.block_on(async {
        let solving = solve(definition.clone(), worker.clone(), progress.clone(), solve_options);
        let mut solving = std::pin::pin!(solving);
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
        tokio::select! {
            result = &mut solving => (result, false),
            _ = tokio::signal::ctrl_c() => {
                cancel.cancel();
                (solving.await, true)
            }
            _ = async { match term.as_mut() { Some(t) => { t.recv().await; } None => std::future::pending::<()>().await } } => {
                cancel.cancel();
                (solving.await, true)
            }
        }
    });
    drop(runtime);
    worker.finish();
    progress.finish();
    let solved = match result {
        Ok(solved) if !interrupted => solved,
        Ok(_) | Err(_) if interrupted => {
            return Err(Reported {
                text: "the build was interrupted; every step was stopped and its mounts removed"
                    .into(),
                interrupted: true,
            }
            .into());
        }
        Err(error) => {
            return Err(failure_report(&error, &definition, dockerfile, source, &progress).into())
        }
        Ok(_) => unreachable!("covered above"),
    };
    let Output::Rootfs(top) = solved.output else {
        bail!("the target is not a filesystem");
    };

    // The image: config from the base and the stage chain, layers from the snapshot chain.
    let (chain, base_ref) = config::stage_chain(&plan);
    // The bottom of the stage chain: an image (perhaps through a docker-image:// alias), or a
    // local build context, whose files are then the first layer.
    let (base_image_ref, base_from_context) = match base_ref.as_ref().map(|r| (r, named.get(r))) {
        Some((r, Some(NamedContext::Local))) => (None, Some(r.clone())),
        Some((_, Some(NamedContext::Image(other)))) => (Some(other.clone()), None),
        Some((r, None)) => (Some(r.clone()), None),
        None => (None, None),
    };
    let base = match &base_image_ref {
        Some(reference) => Some(
            worker
                .resolve_image(reference)
                .map_err(|e| anyhow!("{e}"))?,
        ),
        None => None,
    };
    let created = rfc3339(epoch.unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64)
    }));
    let mut image_config = config::ImageConfig::new(
        base.as_ref().map(|b| b.config.as_slice()),
        host.architecture.as_str(),
    )?;
    if let Some(name) = &base_from_context {
        image_config.add_layer_entry(&format!("FROM {name} (build context)"), &created);
    }
    for &index in &chain {
        image_config.begin_stage();
        for step in &plan.stages[index].steps {
            image_config.apply(step, &created);
        }
    }
    for label in &args.labels {
        let (k, v) = label.split_once('=').unwrap_or((label, ""));
        let step = stages::Step {
            line: 0,
            end_line: 0,
            source: format!("LABEL {k}={v}"),
            instruction: rbuild_frontend::instructions::Instruction::Label {
                labels: vec![rbuild_frontend::instructions::KeyValue {
                    key: k.into(),
                    value: v.into(),
                }],
            },
            copy_source: None,
            mounts: Vec::new(),
            exposed_ports: Vec::new(),
            state: None,
        };
        image_config.apply(&step, &created);
    }

    let mut known = HashMap::new();
    for reference in resolved_image_refs(&plan, &named) {
        if let Ok(image) = worker.resolve_image(&reference) {
            for ((blob, diff_id), id) in image.layers.iter().zip(image.snapshot_ids()) {
                known.insert(
                    id,
                    export::Layer {
                        digest: blob.digest.to_string(),
                        size: blob.size,
                        media_type: blob.media_type.clone(),
                        diff_id: diff_id.to_string(),
                    },
                );
            }
        }
    }
    progress.note("exporting layers");
    let image_layers = export::layers(
        &worker.snapshots,
        &worker.content,
        top.as_ref(),
        &known,
        compression,
        epoch,
        lazy,
    )?;
    if lazy {
        export::record_lazy_layers(root, &worker.content, &image_layers, epoch)?;
    }
    let (layers, base_count) = (image_layers.layers, image_layers.base);
    let ours: Vec<String> = layers[base_count..]
        .iter()
        .map(|l| l.diff_id.clone())
        .collect();
    if ours.len() != image_config.layer_steps {
        bail!(
            "internal error: {} layers for {} filesystem steps",
            ours.len(),
            image_config.layer_steps
        );
    }
    let config_json = image_config.finish(&ours, &created)?;
    let docker_types = outputs
        .iter()
        .any(|o| o.kind == rbuild_exporter::output::OutputKind::Docker);
    let stored = export::store_image(&worker.content, &config_json, &layers, docker_types)?;
    let image_id = stored.built.config.digest.to_string();

    for tag in &args.tags {
        name_image(root, &stored, tag)?;
        progress.note(&format!("naming to {tag}"));
    }
    let mut manifest_digest = stored.manifest.digest.to_string();
    for output in &outputs {
        let context = OutputContext {
            tags: &args.tags,
            epoch,
            root,
            base_images: &resolved_image_refs(&plan, &named),
            insecure: &args.insecure_registries,
            quiet: mode == Mode::Quiet,
        };
        manifest_digest =
            write_output(&worker, output, &stored, &layers, &context)?.unwrap_or(manifest_digest);
    }
    if let Some(path) = &args.iidfile {
        std::fs::write(path, &image_id)
            .with_context(|| format!("Failed to write {}", path.display()))?;
    }
    if let Some(path) = &args.metadata_file {
        let meta = serde_json::json!({
            "containerimage.digest": manifest_digest,
            "containerimage.config.digest": image_id,
            "image.name": args.tags.join(","),
        });
        std::fs::write(path, serde_json::to_vec_pretty(&meta)?)
            .with_context(|| format!("Failed to write {}", path.display()))?;
    }
    if mode == Mode::Quiet {
        println!("{image_id}");
    } else {
        eprintln!(
            "#0 DONE image {image_id} ({} steps run, {} cached) in {:.1}s",
            solved.executed,
            solved.cached,
            progress.elapsed().as_secs_f64()
        );
    }
    Ok(0)
}

/// Names the built image `name` (normalised) in the local image store.
fn name_image(root: &Path, stored: &export::StoredImage, name: &str) -> Result<()> {
    ImageStore::open(root)
        .map_err(|e| anyhow!("{e}"))?
        .tag(&ImageRecord::new(
            crate::registry::canonical(name)?,
            &stored.manifest,
            &stored.built.config,
            &stored.built.layers,
        ))
        .map_err(|e| anyhow!("{e}"))
}

/// What every output of one build shares.
struct OutputContext<'a> {
    tags: &'a [String],
    epoch: Option<i64>,
    root: &'a Path,
    /// The build's base images: where pushed blobs may be mounted from.
    base_images: &'a BTreeSet<String>,
    insecure: &'a [String],
    quiet: bool,
}

/// Writes one output; returns the manifest digest it produced, if it names one.
fn write_output(
    worker: &LocalWorker,
    output: &rbuild_exporter::output::Output,
    stored: &export::StoredImage,
    layers: &[export::Layer],
    context: &OutputContext<'_>,
) -> Result<Option<String>> {
    use rbuild_exporter::output::{Dest, OutputKind};
    let (epoch, root) = (context.epoch, context.root);
    let mut names = output.names.clone();
    if names.is_empty() {
        names = context.tags.to_vec();
    }
    if output.kind == OutputKind::Image {
        if !output.push {
            // Kept in the local store (names given by `-t`/`name=`).
            for name in &output.names {
                name_image(root, stored, name)?;
            }
            return Ok(None);
        }
        let bases: Vec<String> = context.base_images.iter().cloned().collect();
        let mut digest = None;
        for name in &names {
            let pushed = crate::registry::push_manifest(
                root,
                &stored.manifest,
                name,
                &bases,
                context.insecure,
            )?;
            if !context.quiet {
                eprintln!("#0 pushed {name}@{pushed}");
            }
            digest = Some(pushed);
        }
        return Ok(digest);
    }
    if output.kind == OutputKind::Docker && output.dest.is_none() {
        let messages = crate::registry::load_into_engine(
            &worker.content,
            &stored.built,
            &names,
            epoch.unwrap_or(0).max(0) as u64,
        )?;
        if !context.quiet {
            for message in messages {
                eprintln!("#0 engine: {message}");
            }
        }
        return Ok(None);
    }
    let dest = output
        .dest
        .clone()
        .ok_or_else(|| anyhow!("This output needs `dest=`"))?;
    let blobs = layers
        .iter()
        .map(export::blob)
        .collect::<Result<Vec<_>>>()?;
    // Opened only by the kinds that write one stream (`type=local` writes a directory).
    let open = || {
        rbuild_exporter::open_dest(&dest)
            .with_context(|| format!("Failed to open the output {dest:?}"))
    };
    match output.kind {
        OutputKind::Oci | OutputKind::Docker => {
            let digest = rbuild_exporter::image::export_image_archive(
                &worker.content,
                &stored.built,
                &names,
                output.kind == OutputKind::Docker || output.docker_media_types,
                epoch.unwrap_or(0).max(0) as u64,
                &mut open()?,
            )
            .map_err(|e| anyhow!("{e}"))?;
            Ok(Some(digest.to_string()))
        }
        OutputKind::Tar => {
            rbuild_exporter::rootfs::export_rootfs_tar(
                &worker.content,
                &blobs,
                &root.join("tmp"),
                epoch,
                &mut open()?,
            )
            .map_err(|e| anyhow!("{e}"))?;
            Ok(None)
        }
        OutputKind::Local => {
            let Dest::Path(path) = dest else {
                bail!("`type=local` needs `dest=DIR`");
            };
            rbuild_exporter::rootfs::export_local(&worker.content, &blobs, &path)
                .map_err(|e| anyhow!("{e}"))?;
            Ok(None)
        }
        // Pushed or named above.
        OutputKind::Image => Ok(None),
    }
}

/// The report of a failed build: the step, its Dockerfile lines marked, the error, and the
/// last lines of its output.
fn failure_report(
    error: &rbuild_solver::SolveError,
    definition: &rbuild_graph::Definition,
    dockerfile: &Path,
    source: &str,
    progress: &Progress,
) -> Reported {
    let mut text = String::new();
    let vertex = error.vertex.map(|v| definition.vertex(v));
    let number = progress.number_of(&error.name);
    text.push_str(&format!(
        "failed to solve: {}: {}\n",
        error.name, error.error
    ));
    if let Some(v) = vertex.filter(|v| v.line > 0) {
        text.push_str(&format!(" --> {}:{}\n", dockerfile.display(), v.line));
        let lines: Vec<&str> = source.lines().collect();
        let first = v.line.saturating_sub(2).max(1);
        let last = (v.end_line.max(v.line) + 1).min(lines.len());
        for n in first..=last {
            let marker = if n >= v.line && n <= v.end_line.max(v.line) {
                ">>>"
            } else {
                "   "
            };
            text.push_str(&format!(
                " {n:>4} {marker} {}\n",
                lines.get(n - 1).unwrap_or(&"")
            ));
        }
    }
    if let Some(number) = number {
        let tail = progress.tail(number);
        if !tail.is_empty() {
            text.push_str(&format!("last {} lines of output:\n", tail.len()));
            for line in tail {
                text.push_str(&format!("  | {line}\n"));
            }
        }
    }
    Reported {
        text: text.trim_end().to_string(),
        interrupted: false,
    }
}
