//! rbuild-worker: runs the solver's ops on this machine.
//!
//! [`LocalWorker`] implements [`rbuild_solver::Worker`] over the state root: base images come
//! from the local image store and become snapshots ([`image`]); RUN runs in the sandbox over an
//! overlay view of its parent ([`exec`]); COPY/ADD select sources, key them by content and write
//! them into a view ([`copy`]); WORKDIR creates its directory; every result is committed as a
//! snapshot and recorded in the cache index ([`index`]). It is the only crate that joins
//! storage, sandbox and (later) network.

mod context_check;
pub mod context_mount;
pub mod copy;
pub mod disk_usage;
mod durable;
pub mod exec;
pub mod fsutil;
pub mod gc;
pub mod image;
pub mod index;
pub mod layers;
mod source_file;
pub mod statcache;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use rbuild_frontend::dockerignore::IgnoreRules;
use rbuild_graph::{Op, Vertex};
use rbuild_sandbox::{CacheMounts, Cancel, ResourceLimits, Sandbox, SandboxError, StepSpec};
use rbuild_snapshotter::content::ContentStore;
use rbuild_snapshotter::images::ImageStore;
use rbuild_snapshotter::snapshots::{SnapshotId, Snapshotter, View};
use rbuild_solver::{CacheKey, LogSink, LogStream, Worker, WorkerError};

use copy::select::SourceRoot;
use exec::{Held, MountSource, Secrets};
use index::{CacheIndex, IndexEntry};
use statcache::StatCache;

/// A result: a filesystem (`None`: empty), or a build context (by name: `context` is the
/// main one, others come from `--build-context NAME=DIR`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    Rootfs(Option<SnapshotId>),
    Context(String),
}

/// The build context: a directory read in place, filtered by `.dockerignore`.
#[derive(Debug)]
pub struct BuildContext {
    pub dir: PathBuf,
    pub ignore: IgnoreRules,
}

impl BuildContext {
    /// The context as a RUN's bind mount reads it: `.dockerignore` applied, no `--exclude`.
    fn source_root(&self) -> SourceRoot<'_> {
        SourceRoot {
            root: &self.dir,
            ignore: Some(&self.ignore),
            excludes: None,
            is_context: true,
        }
    }
}

/// Options of a build that the worker applies to every op.
#[derive(Debug, Default)]
pub struct WorkerOptions {
    pub secrets: Secrets,
    pub limits: ResourceLimits,
    /// Prefix of every slot (the Dockerfile and context paths), so "why it missed" compares a
    /// step with the same step of the same project.
    pub slot_prefix: String,
}

/// Which layers the export will need, written as soon as their step commits (overlapping the
/// steps still running) instead of all at the end.
#[derive(Debug, Clone)]
pub struct EagerLayers {
    pub compression: rbuild_snapshotter::layer::Compression,
    pub source_date_epoch: Option<i64>,
    /// The stages whose snapshots make the image's layers.
    pub stages: std::collections::BTreeSet<usize>,
    /// Uncompressed layers are hashed, not stored (layers.rs: lazy layers).
    pub lazy: bool,
}

/// Runs ops against one state root.
#[derive(Debug)]
pub struct LocalWorker {
    root: PathBuf,
    pub content: ContentStore,
    pub snapshots: Snapshotter,
    pub images: ImageStore,
    sandbox: Sandbox,
    caches: CacheMounts,
    index: CacheIndex,
    stat_cache: StatCache,
    contexts: BTreeMap<String, BuildContext>,
    options: WorkerOptions,
    cancel: Cancel,
    /// Image references resolved in this build (so a tag is read once per build).
    resolved: Mutex<BTreeMap<String, image::ResolvedImage>>,
    /// Context selections made for a COPY's key, reused when the COPY runs (by vertex digest).
    selections: Mutex<BTreeMap<String, std::sync::Arc<Vec<copy::select::Selected>>>>,
    /// Context selections made for a RUN's bind-mount key parts, checked again once the step
    /// has run (by vertex digest; see `context_check`).
    mount_selections: Mutex<BTreeMap<String, Vec<(String, copy::select::Selected)>>>,
    /// Layers to write in the background as soon as their snapshot is committed.
    eager_layers: Option<EagerLayers>,
    /// `--no-cache`: nothing of earlier builds is reused, not even files to link.
    no_cache: bool,
    /// `--no-cache-filter`: the stages for which the same holds.
    no_cache_stages: std::collections::BTreeSet<usize>,
    background: Mutex<Vec<std::thread::JoinHandle<()>>>,
    /// Index entries waiting for the sync that makes their snapshots durable.
    durable: durable::DurableIndex,
    /// Held (shared) for the worker's life: prune waits until no build runs.
    _gc_lock: gc::BuildLock,
}

fn io_err(what: &str) -> impl Fn(std::io::Error) -> WorkerError + '_ {
    move |e| WorkerError::new(format!("{what}: {e}"))
}

impl LocalWorker {
    /// A worker for a build whose contexts are `contexts` (by name; the main one is `context`).
    pub fn open(
        state_root: &Path,
        contexts: BTreeMap<String, BuildContext>,
        options: WorkerOptions,
    ) -> Result<LocalWorker, WorkerError> {
        let e = |x: &dyn std::fmt::Display| WorkerError::new(x.to_string());
        let gc_lock = gc::build_lock(state_root).map_err(|x| e(&x))?;
        Ok(LocalWorker {
            root: state_root.to_path_buf(),
            content: ContentStore::open(state_root).map_err(|x| e(&x))?,
            snapshots: Snapshotter::open(state_root).map_err(|x| e(&x))?,
            images: ImageStore::open(state_root).map_err(|x| e(&x))?,
            sandbox: Sandbox::new(state_root.join("run")).map_err(|x| e(&x))?,
            caches: CacheMounts::open(state_root.join("cache-mounts-v1")).map_err(|x| e(&x))?,
            index: CacheIndex::open(state_root),
            durable: durable::DurableIndex::start(
                state_root.to_path_buf(),
                CacheIndex::open(state_root),
            ),
            stat_cache: StatCache::open(state_root),
            contexts,
            options,
            cancel: Cancel::new().map_err(|x| e(&x))?,
            resolved: Mutex::new(BTreeMap::new()),
            selections: Mutex::new(BTreeMap::new()),
            mount_selections: Mutex::new(BTreeMap::new()),
            eager_layers: None,
            no_cache: false,
            no_cache_stages: std::collections::BTreeSet::new(),
            background: Mutex::new(Vec::new()),
            _gc_lock: gc_lock,
        })
    }

    /// The resolved base image of `reference` (manifest, config, layers).
    pub fn resolve_image(&self, reference: &str) -> Result<image::ResolvedImage, WorkerError> {
        if let Some(known) = self
            .resolved
            .lock()
            .ok()
            .and_then(|m| m.get(reference).cloned())
        {
            return Ok(known);
        }
        let resolved = image::resolve(&self.images, &self.content, reference)?;
        if let Ok(mut map) = self.resolved.lock() {
            map.insert(reference.to_string(), resolved.clone());
        }
        Ok(resolved)
    }

    /// What `--no-cache` and `--no-cache-filter` say: such steps link no file of an earlier
    /// build's results into theirs (copy/reuse.rs).
    pub fn set_no_cache(&mut self, all: bool, stages: std::collections::BTreeSet<usize>) {
        self.no_cache = all;
        self.no_cache_stages = stages;
    }

    /// Writes the layers of `layers.stages` in the background as their steps commit.
    pub fn set_eager_layers(&mut self, layers: EagerLayers) {
        self.eager_layers = Some(layers);
    }

    /// Waits for the background layer writes and saves what must outlive the build (the stat
    /// cache).
    pub fn finish(&self) {
        self.durable.finish();
        let handles = self
            .background
            .lock()
            .map(|mut h| std::mem::take(&mut *h))
            .unwrap_or_default();
        for handle in handles {
            let _ = handle.join();
        }
        let _ = self.stat_cache.save();
    }

    fn write_layer_soon(&self, stage: Option<usize>, id: &SnapshotId) {
        let Some(eager) = &self.eager_layers else {
            return;
        };
        if !stage.is_some_and(|s| eager.stages.contains(&s)) {
            return;
        }
        let (root, id, eager) = (self.root.clone(), id.clone(), eager.clone());
        let handle = std::thread::Builder::new()
            .name("layer".into())
            .spawn(move || {
                // Best effort: the export writes it itself if this fails.
                if let (Ok(snapshots), Ok(content)) =
                    (Snapshotter::open(&root), ContentStore::open(&root))
                {
                    let _ = layers::step_layer(
                        &snapshots,
                        &content,
                        &id,
                        eager.compression,
                        eager.source_date_epoch,
                        eager.lazy,
                    );
                }
            });
        if let (Ok(handle), Ok(mut all)) = (handle, self.background.lock()) {
            all.push(handle);
        }
    }

    pub fn sandbox(&self) -> &Sandbox {
        &self.sandbox
    }

    pub fn cancel_handle(&self) -> Cancel {
        self.cancel.clone()
    }

    fn view(&self, parent: &Output) -> Result<View, WorkerError> {
        let parent = match parent {
            Output::Rootfs(id) => id.as_ref(),
            Output::Context(_) => {
                return Err(WorkerError::new("a build context is not a root filesystem"))
            }
        };
        self.snapshots
            .prepare(parent)
            .map_err(|e| WorkerError::new(e.to_string()))
    }

    /// A directory to read a source from: the context, or a (throwaway) view of a snapshot.
    fn source_dir(
        &self,
        source: &Output,
        held: &mut Vec<View>,
    ) -> Result<Option<PathBuf>, WorkerError> {
        match source {
            Output::Context(name) => Ok(Some(self.context(name)?.dir.clone())),
            Output::Rootfs(None) => Ok(None),
            Output::Rootfs(Some(_)) => {
                let view = self.view(source)?;
                let root = view.root().to_path_buf();
                held.push(view);
                Ok(Some(root))
            }
        }
    }

    fn context(&self, name: &str) -> Result<&BuildContext, WorkerError> {
        self.contexts
            .get(name)
            .ok_or_else(|| WorkerError::new(format!("this build has no build context `{name}`")))
    }

    fn commit(
        &self,
        view: View,
        key: &CacheKey,
        parent: &Output,
        vertex: &Vertex,
    ) -> Result<Output, WorkerError> {
        let slot = vertex.slot.as_str();
        let parent = match parent {
            Output::Rootfs(id) => id.clone(),
            Output::Context(_) => None,
        };
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let id = SnapshotId::new(format!("k-{}-{:x}", &key.digest[..32], nanos))
            .map_err(|e| WorkerError::new(e.to_string()))?;
        // The sync that makes the snapshot durable is batched on the index thread; until then
        // the index entry is trusted during this boot only (durable.rs).
        self.snapshots
            .commit_unsynced(view, &id, parent.as_ref())
            .map_err(|e| WorkerError::new(e.to_string()))?;
        let created = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        self.durable.submit(
            durable::PendingEntry {
                key: key.digest.clone(),
                entry: IndexEntry {
                    snapshot: Some(id.as_str().to_string()),
                    created,
                    boot: None,
                },
                slot: self.slot(slot),
                parts: key.parts.clone(),
            },
            &self.root,
            &self.index,
        );
        self.write_layer_soon(vertex.stage, &id);
        Ok(Output::Rootfs(Some(id)))
    }

    fn slot(&self, slot: &str) -> String {
        format!("{}\0{slot}", self.options.slot_prefix)
    }

    fn run_exec(
        &self,
        vertex: &Vertex,
        exec: &rbuild_graph::Exec,
        key: &CacheKey,
        inputs: &[Output],
        log: &mut dyn LogSink,
    ) -> Result<Output, WorkerError> {
        // Taken now, so that a failed or cancelled step leaves nothing behind.
        let mounted = self
            .mount_selections
            .lock()
            .ok()
            .and_then(|mut m| m.remove(&vertex.digest));
        let mut held = Held::default();
        let view = self.view(&inputs[0])?;
        let mut env = exec.env.clone();
        let mut mounts = Vec::new();
        for (i, mount) in exec.mounts.iter().enumerate() {
            let source = match mount.input {
                Some(input) => Some(
                    match (
                        &inputs[input],
                        self.source_dir(&inputs[input], &mut held.views)?,
                    ) {
                        (Output::Context(name), Some(dir)) => MountSource::Context {
                            dir,
                            ignore: &self.context(name)?.ignore,
                            scratch: context_mount::scratch_dir(&self.root),
                        },
                        (_, Some(dir)) => MountSource::Dir(dir),
                        (_, None) => MountSource::Empty,
                    },
                ),
                None if mount.kind == "bind" => {
                    let context = self.context("context")?;
                    Some(MountSource::Context {
                        dir: context.dir.clone(),
                        ignore: &context.ignore,
                        scratch: context_mount::scratch_dir(&self.root),
                    })
                }
                None => None,
            };
            if let Some(m) = exec::map_mount(
                mount,
                i,
                source,
                &self.caches,
                &self.options.secrets,
                &mut env,
                &mut held,
            )? {
                mounts.push(m);
            }
        }
        let user = rbuild_sandbox::resolve_user_in_rootfs(view.root(), &exec.user)
            .map_err(|e| WorkerError::new(e.to_string()))?;
        let spec = StepSpec {
            rootfs: view.root().to_path_buf(),
            args: exec.args.clone(),
            env,
            cwd: exec.cwd.clone(),
            user,
            network: exec::network(&exec.network)?,
            security: exec::security(&exec.security),
            mounts,
            limits: self.options.limits.clone(),
        };
        let mut sink = Sink(log);
        let outcome = match self.sandbox.run(&spec, &mut sink, &self.cancel) {
            Ok(outcome) => outcome,
            Err(SandboxError::Cancelled) => return Err(WorkerError::cancelled()),
            Err(e) => return Err(WorkerError::new(format!("{e}{}", source_chain(&e)))),
        };
        drop(held);
        if !outcome.success() {
            return Err(WorkerError::new(outcome.failure_message(&exec.args)));
        }
        // The step saw the context live: it must still be what the key hashed.
        if let Some(path) = self.first_changed_context(mounted.unwrap_or_default())? {
            return Err(WorkerError::new(format!(
                "the build context's `{path}`, bind-mounted into this step, changed while the \
                 step ran (its cache key hashed it before): build again, and exclude files that \
                 change during builds in .dockerignore"
            )));
        }
        self.commit(view, key, &inputs[0], vertex)
    }

    fn run_copy(
        &self,
        vertex: &Vertex,
        op: &rbuild_graph::Copy,
        key: &CacheKey,
        inputs: &[Output],
    ) -> Result<Output, WorkerError> {
        let mut views = Vec::new();
        let view = self.view(&inputs[0])?;
        let dest = if op.dest.starts_with('/') {
            op.dest.clone()
        } else {
            format!("{}/{}", op.cwd.trim_end_matches('/'), op.dest)
        };
        let root_fd = fsutil::open_root(view.root())?;
        let chown = match &op.chown {
            Some(spec) => Some(fsutil::resolve_owner(view.root(), spec)?),
            None => None,
        };
        let memo = self
            .selections
            .lock()
            .ok()
            .and_then(|mut m| m.remove(&vertex.digest));
        let (selected, is_context) = match memo {
            Some(selected) => (selected, true),
            None => {
                let (selected, is_context) = self.select(op, &inputs[op.input], &mut views)?;
                (std::sync::Arc::new(selected), is_context)
            }
        };
        let any_wildcard = selected.iter().any(|s| s.wildcard);
        let options = copy::write::WriteOptions {
            dest: dest.clone(),
            chown,
            chmod: op.chmod,
            is_context,
            dest_is_dir: dest.ends_with('/')
                || op.sources.len() + op.inline.len() > 1
                || any_wildcard,
            digests: Some(&self.stat_cache),
        };
        if op.add {
            for source in &op.sources {
                if source.contains("://") || source.starts_with("git@") {
                    return Err(WorkerError::new(format!("ADD `{source}`: remote sources need network access, which rbuild does not do yet; download the file into the context")));
                }
            }
        }
        let extract = |entry: &copy::select::Entry,
                       make_dir: &dyn Fn() -> Result<std::os::fd::OwnedFd, WorkerError>|
         -> Result<bool, WorkerError> {
            let origin = source_file::Origin::of(is_context);
            if op.unpack == Some(false) || archive_kind(entry, origin).is_none() {
                return Ok(false);
            }
            let dir = make_dir()?;
            let target = fsutil::fd_path(&dir)?;
            let file = source_file::open(&entry.host, &entry.meta, origin).map_err(|e| {
                WorkerError::new(format!("ADD: cannot read {}: {e}", entry.host.display()))
            })?;
            let mut apply = rbuild_snapshotter::apply::ApplyOptions::new(
                rbuild_snapshotter::apply::ApplyMode::Flatten,
            );
            apply.allow_devices = true;
            let mut reader = std::io::BufReader::new(file);
            let unpacked = rbuild_snapshotter::apply::apply_layer(&mut reader, &target, &apply);
            // An archive that changed while it was read explains an unpack error best.
            let archive = reader.get_ref();
            source_file::confirm(
                archive,
                &entry.meta,
                origin,
                archive,
                Some(&self.stat_cache),
            )
            .map_err(|e| {
                WorkerError::new(format!("ADD: cannot read {}: {e}", entry.host.display()))
            })?;
            unpacked.map_err(|e| {
                WorkerError::new(format!("ADD: cannot unpack {}: {e}", entry.host.display()))
            })?;
            Ok(true)
        };
        if !op.inline.is_empty() {
            write_heredocs(&root_fd, op, &dest, &options)?;
        }
        // Straight into the upper directory when that is the same as through the overlay: files
        // may then be hard links to equal files of committed snapshots (copy/direct.rs).
        let direct = if op.inline.is_empty() && !op.add {
            copy::direct::prepare(view.root(), view.upper(), &dest, &selected)?
        } else {
            None
        };
        let reuse = match (&direct, &inputs[op.input]) {
            (None, _) => None,
            (Some(_), Output::Rootfs(Some(id))) => {
                let chain = self
                    .snapshots
                    .chain(id)
                    .map_err(|e| WorkerError::new(e.to_string()))?;
                let destination = match &inputs[0] {
                    Output::Rootfs(Some(parent)) => self
                        .snapshots
                        .chain(parent)
                        .map_err(|e| WorkerError::new(e.to_string()))?,
                    _ => Vec::new(),
                };
                views.first().map(|source| {
                    copy::reuse::Reuse::from_stage(source.root(), &chain, &destination)
                })
            }
            (Some(_), Output::Context(_)) => {
                let previous = self.previous_result(vertex, key);
                let previous = previous.as_ref().map(|id| self.snapshots.layer_dir(id));
                Some(copy::reuse::Reuse::from_context(
                    &self.stat_cache,
                    previous.as_deref(),
                ))
            }
            (Some(_), Output::Rootfs(None)) => None,
        };
        copy::write::write(
            direct.as_ref().unwrap_or(&root_fd),
            &selected,
            &options,
            if op.add { Some(&extract) } else { None },
            reuse.as_ref(),
        )?;
        drop(direct);
        drop(root_fd);
        drop(selected);
        drop(views);
        let output = self.commit(view, key, &inputs[0], vertex)?;
        if let (Some(reuse), Output::Rootfs(Some(id))) = (&reuse, &output) {
            // Best effort: without it the next build of this step copies every file again.
            let _ = reuse.save(&self.snapshots.layer_dir(id));
        }
        Ok(output)
    }

    /// The snapshot of the last result of `vertex`'s step, unless this build reuses nothing
    /// for it (`--no-cache`, `--no-cache-filter`).
    fn previous_result(&self, vertex: &Vertex, key: &CacheKey) -> Option<SnapshotId> {
        let no_cache = self.no_cache
            || vertex
                .stage
                .is_some_and(|s| self.no_cache_stages.contains(&s));
        if no_cache {
            return None;
        }
        let parts = self.previous_parts(&vertex.slot)?;
        let previous = CacheKey::from_parts(parts);
        if previous.digest == key.digest {
            return None;
        }
        let id = SnapshotId::new(self.index.get(&previous.digest)?.snapshot?).ok()?;
        self.snapshots.exists(&id).then_some(id)
    }

    /// Where the content parts of `op`'s selection from the stage snapshot `id` are kept:
    /// beside the snapshot (removed with it), named by a hash of the op.
    fn selection_memo(
        &self,
        id: &SnapshotId,
        op: &rbuild_graph::Copy,
    ) -> Result<std::path::PathBuf, WorkerError> {
        let op_json = serde_json::to_vec(op).map_err(|e| WorkerError::new(e.to_string()))?;
        let hash = rbuild_graph::hex(&<sha2::Sha256 as sha2::Digest>::digest(&op_json));
        let dir = self.snapshots.layer_dir(id);
        Ok(dir
            .parent()
            .unwrap_or(std::path::Path::new("/"))
            .join(format!(
                "selection-v{}-{}.json",
                copy::select::RULES_VERSION,
                &hash[..32]
            )))
    }

    fn select(
        &self,
        op: &rbuild_graph::Copy,
        source: &Output,
        views: &mut Vec<View>,
    ) -> Result<(Vec<copy::select::Selected>, bool), WorkerError> {
        let is_context = matches!(source, Output::Context(_));
        let Some(dir) = self.source_dir(source, views)? else {
            return Err(WorkerError::new(format!(
                "COPY: `{}` not found: the source stage is empty",
                op.sources.join(" ")
            )));
        };
        let ignore = match source {
            Output::Context(name) => Some(&self.context(name)?.ignore),
            Output::Rootfs(_) => None,
        };
        let excludes = if op.excludes.is_empty() {
            None
        } else {
            Some(
                IgnoreRules::from_patterns(op.excludes.iter())
                    .map_err(|e| WorkerError::new(format!("--exclude: {e}")))?,
            )
        };
        let root = SourceRoot {
            root: &dir,
            ignore,
            excludes,
            is_context,
        };
        Ok((root.select(&op.sources)?, is_context))
    }

    /// Files a RUN bind-mounts from a build context, keyed by content like a COPY's (a
    /// context's own key is only its name, and the files can change between builds).
    fn mount_content(
        &self,
        vertex: &Vertex,
        exec: &rbuild_graph::Exec,
        inputs: &[Option<Output>],
    ) -> Result<BTreeMap<String, String>, WorkerError> {
        let mut parts = BTreeMap::new();
        let mut hashed = Vec::new();
        for (i, mount) in exec.mounts.iter().enumerate() {
            if mount.kind != "bind" {
                continue;
            }
            let Some(Some(Output::Context(name))) =
                mount.input.map(|n| inputs.get(n).cloned().flatten())
            else {
                continue;
            };
            let context = self.context(&name)?;
            let root = context.source_root();
            // The path the mount binds, taken literally (not a pattern).
            let selected = vec![root.select_path(&mount.source)?];
            for (path, digest) in copy::checksum::content_parts(&selected, true, &self.stat_cache)?
            {
                parts.insert(format!("mount{i}:{path}"), digest);
            }
            hashed.extend(selected.into_iter().map(|s| (name.clone(), s)));
        }
        if !hashed.is_empty() {
            if let Ok(mut memo) = self.mount_selections.lock() {
                memo.insert(vertex.digest.clone(), hashed);
            }
        }
        Ok(parts)
    }

    /// The first entry of these context selections (by context name) that changed since a
    /// step's key hashed it (see `context_check`).
    fn first_changed_context(
        &self,
        selections: Vec<(String, copy::select::Selected)>,
    ) -> Result<Option<String>, WorkerError> {
        for (name, selection) in selections {
            let context = self.context(&name)?;
            let root = context.source_root();
            let changed = context_check::first_changed(
                &root,
                std::slice::from_ref(&selection),
                &self.stat_cache,
            );
            if changed.is_some() {
                return Ok(changed);
            }
        }
        Ok(None)
    }

    fn run_mkdir(
        &self,
        vertex: &Vertex,
        op: &rbuild_graph::Mkdir,
        key: &CacheKey,
        inputs: &[Output],
    ) -> Result<Output, WorkerError> {
        let view = self.view(&inputs[0])?;
        let owner = if op.user.is_empty() {
            fsutil::Owner::default()
        } else {
            let user = rbuild_sandbox::resolve_user_in_rootfs(view.root(), &op.user)
                .map_err(|e| WorkerError::new(e.to_string()))?;
            fsutil::Owner {
                uid: user.uid,
                gid: user.gid,
            }
        };
        let root_fd = fsutil::open_root(view.root())?;
        fsutil::mkdir_all(&root_fd, &op.path, owner)?;
        drop(root_fd);
        self.commit(view, key, &inputs[0], vertex)
    }
}

/// COPY/ADD heredoc sources (`COPY <<EOF /dest`): each a file named after its heredoc, with
/// the same destination rules as a file source (a single one to a path not ending in `/` and
/// not a directory is that file). Written with `*at` calls on a directory opened inside the
/// rootfs; a name with a `/` (or `.`/`..`) is refused, so no heredoc name can leave it.
fn write_heredocs(
    root: &std::os::fd::OwnedFd,
    op: &rbuild_graph::Copy,
    dest: &str,
    options: &copy::write::WriteOptions<'_>,
) -> Result<(), WorkerError> {
    use rustix::fs::{Mode, OFlags};
    let owner = options.chown.unwrap_or_default();
    let dest_is_dir = options.dest_is_dir
        || fsutil::open_in_root(root, dest, OFlags::PATH | OFlags::DIRECTORY).is_ok();
    for (name, text) in &op.inline {
        if name.is_empty() || name.contains('/') || name == "." || name == ".." {
            return Err(WorkerError::new(format!(
                "invalid heredoc name `{name}`: it must be a plain file name"
            )));
        }
        let (dir_path, file_name) = if dest_is_dir {
            (dest.trim_end_matches('/').to_string(), name.clone())
        } else {
            let trimmed = dest.trim_end_matches('/');
            let (parent, file) = trimmed.rsplit_once('/').unwrap_or(("", trimmed));
            (parent.to_string(), file.to_string())
        };
        let dir = fsutil::mkdir_all(
            root,
            if dir_path.is_empty() { "/" } else { &dir_path },
            owner,
        )?;
        let cname = fsutil::cstr(&file_name)?;
        fsutil::remove_entry(&dir, &cname).map_err(|e| {
            WorkerError::new(format!(
                "heredoc `{name}`: cannot replace `{file_name}`: {e}"
            ))
        })?;
        let fd = rustix::fs::openat(
            &dir,
            cname.as_c_str(),
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o600),
        )
        .map_err(|e| {
            WorkerError::new(format!(
                "heredoc `{name}`: cannot create `{file_name}`: {e}"
            ))
        })?;
        let mut file = std::fs::File::from(fd);
        std::io::Write::write_all(&mut file, text.as_bytes())
            .map_err(io_err("write a heredoc file"))?;
        rustix::fs::fchown(
            &file,
            Some(rustix::process::Uid::from_raw(owner.uid)),
            Some(rustix::process::Gid::from_raw(owner.gid)),
        )
        .map_err(|e| WorkerError::new(format!("heredoc `{name}`: chown: {e}")))?;
        let mode = op.chmod.map(|m| m & 0o777).unwrap_or(0o644);
        rustix::fs::fchmod(&file, Mode::from_raw_mode(mode))
            .map_err(|e| WorkerError::new(format!("heredoc `{name}`: chmod: {e}")))?;
    }
    Ok(())
}

fn source_chain(error: &dyn std::error::Error) -> String {
    let mut out = String::new();
    let mut next = error.source();
    while let Some(e) = next {
        out.push_str(&format!(": {e}"));
        next = e.source();
    }
    out
}

/// File digests in content parts come with the name of their scheme, so that a change of
/// scheme explains a miss better than every file changing (`explain_miss`).
fn with_digest_scheme(mut parts: BTreeMap<String, String>) -> BTreeMap<String, String> {
    if !parts.is_empty() {
        parts.insert(
            rbuild_solver::DIGEST_SCHEME.to_string(),
            source_file::DIGEST_SCHEME_NAME.to_string(),
        );
    }
    parts
}

/// Local archives ADD unpacks: tar, gzip and zstd (what the layer reader handles).
fn archive_kind(entry: &copy::select::Entry, origin: source_file::Origin) -> Option<&'static str> {
    if !entry.meta.is_file() {
        return None;
    }
    let mut head = [0u8; 512];
    let mut file = source_file::open(&entry.host, &entry.meta, origin).ok()?;
    let n = std::io::Read::read(&mut file, &mut head).ok()?;
    let head = &head[..n];
    if head.starts_with(&[0x1f, 0x8b]) {
        Some("gzip")
    } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Some("zstd")
    } else if n >= 262 && &head[257..262] == b"ustar" {
        Some("tar")
    } else {
        None
    }
}

struct Sink<'a>(&'a mut dyn LogSink);

impl rbuild_sandbox::OutputSink for Sink<'_> {
    fn line(&mut self, stream: rbuild_sandbox::Stream, line: &[u8]) {
        let stream = match stream {
            rbuild_sandbox::Stream::Stdout => LogStream::Stdout,
            rbuild_sandbox::Stream::Stderr => LogStream::Stderr,
        };
        self.0.line(stream, line);
    }
}

impl Worker for LocalWorker {
    type Output = Output;

    fn content(
        &self,
        vertex: &Vertex,
        inputs: &[Option<Output>],
    ) -> Result<BTreeMap<String, String>, WorkerError> {
        match &vertex.op {
            Op::Image { reference } => {
                let image = self.resolve_image(reference)?;
                Ok(BTreeMap::from([(
                    "manifest".to_string(),
                    image.manifest.to_string(),
                )]))
            }
            Op::Copy(op) => {
                let source = inputs
                    .get(op.input)
                    .and_then(Option::as_ref)
                    .ok_or_else(|| WorkerError::new("COPY: its source is missing"))?;
                // A stage's snapshot never changes once committed: what a COPY selects from
                // it hashes to the same parts for ever, so they are kept beside the snapshot
                // (a no-op rebuild then mounts no view of the source stage).
                let memo = match source {
                    Output::Rootfs(Some(id)) => Some(self.selection_memo(id, op)?),
                    _ => None,
                };
                if let Some(parts) = memo
                    .as_ref()
                    .and_then(|path| std::fs::read(path).ok())
                    .and_then(|bytes| serde_json::from_slice(&bytes).ok())
                {
                    return Ok(with_digest_scheme(parts));
                }
                let mut views = Vec::new();
                let (selected, is_context) = self.select(op, source, &mut views)?;
                let parts = copy::checksum::content_parts(&selected, is_context, &self.stat_cache)?;
                if let Some(path) = &memo {
                    // Best effort: without the memo the next build selects again.
                    let _ = write_memo(path, &parts);
                }
                // A context selection stays valid (its paths are the context's): keep it for
                // the copy itself. A stage's is read through a view that ends here.
                if is_context {
                    if let Ok(mut memo) = self.selections.lock() {
                        memo.insert(vertex.digest.clone(), std::sync::Arc::new(selected));
                    }
                }
                Ok(with_digest_scheme(parts))
            }
            Op::Exec(exec) => self
                .mount_content(vertex, exec, inputs)
                .map(with_digest_scheme),
            _ => Ok(BTreeMap::new()),
        }
    }

    fn lookup(&self, vertex: &Vertex, key: &CacheKey) -> Option<Output> {
        match &vertex.op {
            Op::Scratch => Some(Output::Rootfs(None)),
            Op::Context { name } => self
                .contexts
                .contains_key(name)
                .then(|| Output::Context(name.clone())),
            // An image is "cached" once all its layers are snapshots; unpack otherwise.
            Op::Image { .. } => None,
            _ => {
                let entry = self.index.get(&key.digest)?;
                let output = match entry.snapshot {
                    None => Output::Rootfs(None),
                    Some(id) => {
                        let id = SnapshotId::new(id).ok()?;
                        if !self.snapshots.exists(&id) {
                            return None;
                        }
                        Output::Rootfs(Some(id))
                    }
                };
                // A hit is a use: prune removes the least recently used entries first.
                self.index.touch(&key.digest);
                // The selections its key was computed from are not needed any more.
                if let Ok(mut memo) = self.mount_selections.lock() {
                    memo.remove(&vertex.digest);
                }
                if let Ok(mut memo) = self.selections.lock() {
                    memo.remove(&vertex.digest);
                }
                Some(output)
            }
        }
    }

    fn previous_parts(&self, slot: &str) -> Option<BTreeMap<String, String>> {
        self.index.previous_parts(&self.slot(slot))
    }

    fn execute(
        &self,
        vertex: &Vertex,
        key: &CacheKey,
        inputs: &[Output],
        log: &mut dyn LogSink,
    ) -> Result<Output, WorkerError> {
        if self.cancel.is_cancelled() {
            return Err(WorkerError::cancelled());
        }
        match &vertex.op {
            Op::Scratch => Ok(Output::Rootfs(None)),
            Op::Context { name } => {
                self.context(name)?;
                Ok(Output::Context(name.clone()))
            }
            Op::Image { reference } => {
                let image = self.resolve_image(reference)?;
                let top = image::unpack(
                    &self.snapshots,
                    &self.content,
                    &self.root,
                    reference,
                    &image,
                )?;
                Ok(Output::Rootfs(top))
            }
            Op::Exec(exec) => self.run_exec(vertex, exec, key, inputs, log),
            Op::Copy(op) => self.run_copy(vertex, op, key, inputs),
            Op::Mkdir(op) => self.run_mkdir(vertex, op, key, inputs),
        }
    }

    fn cancel_all(&self) {
        self.cancel.cancel();
    }
}

/// Writes `parts` as JSON to `path` atomically (temp file in the same directory, renamed).
fn write_memo(path: &std::path::Path, parts: &BTreeMap<String, String>) -> std::io::Result<()> {
    let bytes = serde_json::to_vec(parts).map_err(std::io::Error::other)?;
    fsutil::replace_file(path, &bytes)
}
