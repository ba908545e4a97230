//! The registry and engine clients from the command line: `rbuild pull`, `rbuild push`, the
//! base images of a build (pulled as `--pull` says), `--push` and `--load`.

use std::collections::BTreeSet;
use std::io::Write;
use std::path::Path;

use anyhow::{anyhow, bail, Context, Result};
use rbuild_oci::import::parse_manifest;
use rbuild_oci::BlobRef;
use rbuild_registry::pull::{PullEvent, PulledImage};
use rbuild_registry::push::{BlobOutcome, PushEvent, PushImage};
use rbuild_registry::{Client, ClientOptions, Platform, Reference};
use rbuild_snapshotter::content::ContentStore;
use rbuild_snapshotter::images::{ImageRecord, ImageStore};

/// When a build contacts registries for its base images (`--pull`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PullPolicy {
    /// Pull images missing from the local store (no flag: what `docker build` does).
    Missing,
    /// Resolve every tag in its registry; download only blobs not stored (`--pull`).
    Always,
    /// Never contact a registry (`--pull=false`).
    Never,
}

impl PullPolicy {
    pub fn parse(value: Option<&str>) -> Result<PullPolicy> {
        Ok(match value {
            None => PullPolicy::Missing,
            Some("" | "true" | "always" | "1") => PullPolicy::Always,
            Some("false" | "never" | "0") => PullPolicy::Never,
            Some("missing") => PullPolicy::Missing,
            Some(other) => {
                bail!("Invalid `--pull={other}`: expected true, false, always, missing or never")
            }
        })
    }
}

/// The full, normalised name an image is stored under (`busybox` →
/// `docker.io/library/busybox:latest`).
pub fn canonical(name: &str) -> Result<String> {
    Ok(Reference::parse(name)
        .with_context(|| format!("Invalid image name `{name}`"))?
        .to_string())
}

pub fn client(insecure: &[String]) -> Result<Client> {
    Client::new(ClientOptions {
        insecure: insecure.to_vec(),
        ..ClientOptions::default()
    })
    .map_err(|e| anyhow!("{e}"))
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("Failed to start the I/O runtime")
}

/// Pulls `reference` into the store and names it; prints one line per event to stderr.
async fn pull_one(
    client: &Client,
    content: &ContentStore,
    images: &ImageStore,
    reference: &Reference,
    platform: &Platform,
    quiet: bool,
) -> Result<PulledImage> {
    let shown = reference.familiar();
    let report = |event: PullEvent| {
        if quiet {
            return;
        }
        let line = match event {
            PullEvent::Resolved { digest } => format!("resolve {shown}: {digest}"),
            PullEvent::BlobCached { .. } => return,
            PullEvent::BlobDone { digest, size } => {
                format!(
                    "pull {shown}: {digest} {} done",
                    crate::images::human_size(size)
                )
            }
            PullEvent::Retrying { what, error } => format!("retry {what}: {error}"),
        };
        eprintln!("#0 {line}");
    };
    let pulled = rbuild_registry::pull::pull(client, reference, platform, content, &report)
        .await
        .map_err(|e| anyhow!("Failed to pull `{shown}`: {e}"))?;
    images
        .tag(&ImageRecord::new(
            reference.to_string(),
            &pulled.manifest,
            &pulled.config,
            &pulled.layers,
        ))
        .map_err(|e| anyhow!("{e}"))?;
    Ok(pulled)
}

/// Whether the stored image's config names `platform` (a config without os/architecture
/// counts as any).
fn is_for_platform(content: &ContentStore, record: &ImageRecord, platform: &Platform) -> bool {
    let Ok(bytes) = std::fs::read(content.blob_path(&record.config)) else {
        return false;
    };
    let doc: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or_default();
    if doc["architecture"].as_str().is_none_or(str::is_empty) {
        return true;
    }
    rbuild_registry::platform::matches(platform, &doc)
}

/// Makes every image of `references` available in the local store as `policy` says.
pub fn ensure_images(
    root: &Path,
    references: &BTreeSet<String>,
    policy: PullPolicy,
    platform: &Platform,
    insecure: &[String],
    quiet: bool,
) -> Result<()> {
    let content = ContentStore::open(root).map_err(|e| anyhow!("{e}"))?;
    let images = ImageStore::open(root).map_err(|e| anyhow!("{e}"))?;
    let mut wanted = Vec::new();
    for text in references {
        if text == "scratch" {
            continue;
        }
        if text.starts_with(OCI_LAYOUT_DOMAIN) {
            // Imported from a local layout by `--build-context`: nothing to pull.
            continue;
        }
        let reference = Reference::parse(text).with_context(|| format!("FROM `{text}`"))?;
        // An image of another platform (pulled with `rbuild pull --platform`) does not count,
        // unless nothing may be pulled.
        let record = rbuild_worker::image::lookup(&images, text).ok();
        let have = record
            .as_ref()
            .is_some_and(|r| policy == PullPolicy::Never || is_for_platform(&content, r, platform));
        match policy {
            PullPolicy::Never if !have => bail!(
                "The image `{text}` is not in the local store and `--pull=false` forbids pulling it"
            ),
            PullPolicy::Never => {}
            PullPolicy::Missing if have => {}
            // A digest names one image for ever: the stored one is it.
            PullPolicy::Always if have && reference.digest.is_some() => {}
            _ => wanted.push(reference),
        }
    }
    if wanted.is_empty() {
        return Ok(());
    }
    let client = client(insecure)?;
    runtime()?.block_on(async {
        let pulls = wanted
            .iter()
            .map(|r| pull_one(&client, &content, &images, r, platform, quiet));
        futures_util::future::try_join_all(pulls).await.map(|_| ())
    })
}

/// `rbuild pull REF`.
pub fn pull_command(
    root: &Path,
    name: &str,
    platform: Option<&str>,
    insecure: &[String],
) -> Result<()> {
    let reference =
        Reference::parse(name).with_context(|| format!("Invalid image name `{name}`"))?;
    let platform = match platform {
        Some(p) => Platform::parse(p)
            .map_err(|e| anyhow!(e))
            .context("Invalid `--platform`")?,
        None => Platform::host(),
    };
    let content = ContentStore::open(root).map_err(|e| anyhow!("{e}"))?;
    let images = ImageStore::open(root).map_err(|e| anyhow!("{e}"))?;
    let client = client(insecure)?;
    let pulled = runtime()?.block_on(pull_one(
        &client, &content, &images, &reference, &platform, false,
    ))?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "Digest: {}", pulled.resolved)?;
    writeln!(
        out,
        "Pulled {} ({} of {} blobs downloaded, {})",
        reference.familiar(),
        pulled.downloaded,
        pulled.layers.len() + 1,
        crate::images::human_size(pulled.downloaded_bytes)
    )?;
    Ok(())
}

/// Where each blob may be mounted from: images of the store named in the target's registry
/// (another repository), `preferred` ones (the build's base images) first. A wrong guess
/// costs nothing: a mount the registry cannot do starts an ordinary upload.
fn mount_candidates(
    root: &Path,
    content: &ContentStore,
    target: &Reference,
    preferred: &[String],
    blobs: &[BlobRef],
) -> Result<std::collections::BTreeMap<rbuild_digest::Digest, String>> {
    // Token requests name every source repository: a few are enough.
    const MAX_SOURCES: usize = 8;
    let wanted: BTreeSet<&rbuild_digest::Digest> = blobs.iter().map(|b| &b.digest).collect();
    let images = ImageStore::open(root).map_err(|e| anyhow!("{e}"))?;
    let mut names: Vec<String> = preferred.iter().filter_map(|p| canonical(p).ok()).collect();
    names.extend(
        images
            .list()
            .map_err(|e| anyhow!("{e}"))?
            .into_iter()
            .map(|r| r.name),
    );
    let mut map = std::collections::BTreeMap::new();
    for name in names {
        let Ok(source) = Reference::parse(&name) else {
            continue;
        };
        if source.domain != target.domain || source.path == target.path {
            continue;
        }
        let Ok(record) = images.get(&name) else {
            continue;
        };
        let Ok(bytes) = std::fs::read(content.blob_path(&record.manifest)) else {
            continue;
        };
        let Ok((config, layers)) = parse_manifest(&bytes) else {
            continue;
        };
        let sources: BTreeSet<&String> = map.values().collect();
        if sources.len() >= MAX_SOURCES && !sources.contains(&source.path) {
            continue;
        }
        for blob in layers.into_iter().chain(std::iter::once(config)) {
            if wanted.contains(&blob.digest) {
                map.entry(blob.digest)
                    .or_insert_with(|| source.path.clone());
            }
        }
    }
    Ok(map)
}

/// Pushes the stored image `manifest` to `target`; returns the pushed manifest digest.
pub fn push_manifest(
    root: &Path,
    manifest: &BlobRef,
    target: &str,
    mount_sources: &[String],
    insecure: &[String],
) -> Result<String> {
    let reference =
        Reference::parse(target).with_context(|| format!("Invalid image name `{target}`"))?;
    let content = ContentStore::open(root).map_err(|e| anyhow!("{e}"))?;
    let bytes = std::fs::read(content.blob_path(&manifest.digest))
        .with_context(|| format!("The manifest {} is not in the store", manifest.digest))?;
    let (config, layers) = parse_manifest(&bytes).map_err(|e| anyhow!("{e}"))?;
    let mut blobs = layers;
    blobs.push(config);
    let mount_from = mount_candidates(root, &content, &reference, mount_sources, &blobs)?;
    let client = client(insecure)?;
    let shown = reference.familiar();
    let report = |event: PushEvent| {
        let line = match event {
            PushEvent::Blob {
                digest,
                size,
                outcome,
            } => format!(
                "push {shown}: {digest} {} {}",
                crate::images::human_size(size),
                match outcome {
                    BlobOutcome::Exists => "already there",
                    BlobOutcome::Mounted => "mounted",
                    BlobOutcome::Uploaded { .. } => "uploaded",
                }
            ),
            PushEvent::Retrying { what, error } => format!("retry {what}: {error}"),
        };
        eprintln!("#0 {line}");
    };
    let digest = runtime()?
        .block_on(rbuild_registry::push::push(
            &client,
            &reference,
            &PushImage {
                manifest,
                blobs: &blobs,
                mount_from: &mount_from,
            },
            &content,
            &report,
        ))
        .map_err(|e| anyhow!("Failed to push `{shown}`: {e}"))?;
    Ok(digest.to_string())
}

/// `rbuild push NAME`: a stored image to the registry its name says.
pub fn push_command(root: &Path, name: &str, insecure: &[String]) -> Result<()> {
    let images = ImageStore::open(root).map_err(|e| anyhow!("{e}"))?;
    let record = rbuild_worker::image::lookup(&images, name).map_err(|e| anyhow!("{e}"))?;
    let manifest = BlobRef {
        digest: record.manifest.clone(),
        size: record.manifest_size,
        media_type: record.manifest_media_type.clone(),
    };
    let digest = push_manifest(root, &manifest, name, &[], insecure)?;
    println!(
        "{}: digest: {digest} size: {}",
        Reference::parse(name)?.familiar(),
        record.manifest_size
    );
    Ok(())
}

/// Streams a docker-archive of the image into the engine `DOCKER_HOST` names, tagged `names`.
pub fn load_into_engine(
    content: &ContentStore,
    image: &rbuild_exporter::image::BuiltImage,
    names: &[String],
    mtime: u64,
) -> Result<Vec<String>> {
    let endpoint = rbuild_engine::Endpoint::from_env().map_err(|e| anyhow!("{e}"))?;
    let (sender, receiver) = tokio::sync::mpsc::channel::<std::io::Result<bytes::Bytes>>(16);
    let stream = futures_util::stream::unfold(receiver, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    });
    let rt = runtime()?;
    let load = rt.spawn(async move { rbuild_engine::load_image(&endpoint, stream).await });
    // The archive is written on this thread into the channel while the runtime sends it.
    let mut writer = ChannelWriter {
        sender: sender.clone(),
        buffer: Vec::with_capacity(CHUNK),
    };
    let written = rbuild_exporter::image::export_image_archive(
        content,
        image,
        names,
        true,
        mtime,
        &mut writer,
    )
    .map_err(|e| anyhow!("{e}"));
    let flushed = writer.flush();
    if let Err(e) = &written {
        let _ = sender.blocking_send(Err(std::io::Error::other(e.to_string())));
    }
    drop(writer);
    drop(sender);
    let loaded = rt
        .block_on(load)
        .map_err(|e| anyhow!("the load task failed: {e}"))?;
    // The engine's answer first when it refused the image: the local write then failed only
    // because the connection closed. A local failure with an engine that said nothing is the
    // local error.
    match (loaded, written) {
        (Err(engine), _) => Err(anyhow!(
            "Failed to load the image into the engine: {engine}"
        )),
        (Ok(_), Err(local)) => Err(local.context("Failed to write the image for the engine")),
        (Ok(messages), Ok(_)) => {
            flushed.context("Failed to stream the image to the engine")?;
            Ok(messages)
        }
    }
}

const CHUNK: usize = 256 << 10;

/// A `Write` that sends full chunks to the engine request's body.
struct ChannelWriter {
    sender: tokio::sync::mpsc::Sender<std::io::Result<bytes::Bytes>>,
    buffer: Vec<u8>,
}

impl Write for ChannelWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.buffer.extend_from_slice(data);
        if self.buffer.len() >= CHUNK {
            self.flush()?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        if self.buffer.is_empty() {
            return Ok(());
        }
        let chunk = bytes::Bytes::from(std::mem::replace(
            &mut self.buffer,
            Vec::with_capacity(CHUNK),
        ));
        self.sender
            .blocking_send(Ok(chunk))
            .map_err(|_| std::io::Error::other("the engine closed the connection"))
    }
}

/// The domain of the names `--build-context NAME=oci-layout://...` images get in the local
/// store (`.invalid`: never a registry, so never pulled).
pub const OCI_LAYOUT_DOMAIN: &str = "oci-layout.rbuild.invalid";

/// Imports the image `oci-layout://PATH[:TAG|@DIGEST]` names (default tag `latest`, or the
/// layout's only image) and names it in the local store; returns that name.
pub fn import_oci_layout(root: &Path, value: &str) -> Result<String> {
    use sha2::Digest as _;
    let (path, selector) = if let Some((p, d)) = value.rsplit_once('@') {
        (p, Some(format!("@{d}")))
    } else {
        let last_slash = value.rfind('/').map_or(0, |i| i + 1);
        match value[last_slash..].rfind(':') {
            Some(i) => (
                &value[..last_slash + i],
                Some(value[last_slash + i + 1..].to_string()),
            ),
            None => (value, None),
        }
    };
    let dir = std::fs::canonicalize(path)
        .with_context(|| format!("oci-layout://{value}: `{path}` does not exist"))?;
    let content = ContentStore::open(root).map_err(|e| anyhow!("{e}"))?;
    let host = Platform::host();
    let imported = rbuild_oci::import::import_layout_dir(
        &dir,
        &content,
        (host.os.as_str(), host.architecture.as_str()),
    )
    .with_context(|| format!("oci-layout://{value}: not a readable OCI image layout"))?;
    let chosen = match selector.as_deref() {
        Some(digest) if digest.starts_with('@') => imported
            .iter()
            .find(|i| i.manifest.digest.to_string() == digest[1..]),
        Some(tag) => imported.iter().find(|i| {
            i.names
                .iter()
                .any(|n| n == tag || n.rsplit_once(':').is_some_and(|(_, t)| t == tag))
        }),
        None if imported.len() == 1 => imported.first(),
        None => imported.iter().find(|i| {
            i.names
                .iter()
                .any(|n| n == "latest" || n.ends_with(":latest"))
        }),
    };
    let Some(image) = chosen else {
        let names: Vec<String> = imported
            .iter()
            .map(|i| {
                i.names
                    .first()
                    .cloned()
                    .unwrap_or_else(|| i.manifest.digest.to_string())
            })
            .collect();
        bail!(
            "oci-layout://{value}: no image {} in the layout (it has: {})",
            selector.as_deref().unwrap_or("tagged `latest`"),
            names.join(", ")
        );
    };
    let path_id = rbuild_graph::hex(&sha2::Sha256::digest(dir.as_os_str().as_encoded_bytes()));
    let name = format!(
        "{OCI_LAYOUT_DOMAIN}/{}@{}",
        &path_id[..16],
        image.manifest.digest
    );
    let images = ImageStore::open(root).map_err(|e| anyhow!("{e}"))?;
    images
        .tag(&ImageRecord::new(
            name.clone(),
            &image.manifest,
            &image.config,
            &image.layers,
        ))
        .map_err(|e| anyhow!("{e}"))?;
    Ok(name)
}
