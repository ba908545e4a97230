//! Pulling an image into the content store: tag → manifest (through an index by platform) →
//! config and layers, several blobs at once.
//!
//! Invariants:
//! - every stored byte is verified: manifests are hashed before they are stored (and a
//!   `Docker-Content-Digest` that disagrees is an error), blobs go through a content-store
//!   writer that checks digest and size on commit, so a wrong or truncated blob is never
//!   stored (its temporary file is removed);
//! - a blob already in the store is never downloaded again, and a manifest or index already
//!   stored is read locally once the tag's digest is known (a HEAD request);
//! - a download interrupted mid-body resumes with a `Range` request when the registry honours
//!   it and restarts from zero otherwise, within the client's retry budget.

use futures_util::{StreamExt, TryStreamExt};
use rbuild_digest::Digest;
use rbuild_oci::import::parse_manifest;
use rbuild_oci::media_types;
use rbuild_oci::BlobRef;
use rbuild_snapshotter::content::{ContentError, ContentStore};
use std::io::Write;

use crate::client::{status_error, Client};
use crate::platform::{self, Platform};
use crate::{Reference, RegistryError};

/// Manifests and indexes rbuild reads, in order of preference.
pub const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json";

/// Manifests and indexes are small; a larger one is refused before it is read.
const MANIFEST_LIMIT: usize = 8 << 20;
/// Image configs are read whole (history, env): a larger one is refused before it is fetched.
const CONFIG_LIMIT: u64 = 64 << 20;

/// What a pull stored.
#[derive(Debug, Clone)]
pub struct PulledImage {
    /// The digest the reference resolved to (an index's, for a multi-platform image).
    pub resolved: Digest,
    /// The platform's image manifest.
    pub manifest: BlobRef,
    pub config: BlobRef,
    pub layers: Vec<BlobRef>,
    /// Blobs actually downloaded (the others were in the store).
    pub downloaded: usize,
    /// Their bytes.
    pub downloaded_bytes: u64,
}

/// Progress of a pull, for the caller to show.
#[derive(Debug, Clone)]
pub enum PullEvent {
    Resolved { digest: Digest },
    BlobCached { digest: Digest },
    BlobDone { digest: Digest, size: u64 },
    Retrying { what: String, error: String },
}

pub(crate) fn pull_scope(reference: &Reference) -> Vec<String> {
    vec![format!("repository:{}:pull", reference.path)]
}

fn content_err(what: &str, source: ContentError) -> RegistryError {
    match source {
        ContentError::DigestMismatch { expected, actual } => RegistryError::DigestMismatch {
            what: what.to_string(),
            expected: expected.to_string(),
            actual: actual.to_string(),
        },
        source => RegistryError::Content {
            what: what.to_string(),
            source,
        },
    }
}

/// Pulls `reference` for `platform` into `content`.
pub async fn pull(
    client: &Client,
    reference: &Reference,
    platform: &Platform,
    content: &ContentStore,
    progress: &(dyn Fn(PullEvent) + Send + Sync),
) -> Result<PulledImage, RegistryError> {
    let shown = reference.to_string();
    client.prepare(&reference.domain).await;
    let (resolved, mut bytes, mut media_type) = resolve_top(client, reference, content).await?;
    progress(PullEvent::Resolved {
        digest: resolved.clone(),
    });
    let mut manifest_digest = resolved.clone();
    for _ in 0..4 {
        if !media_types::is_index(&media_type) {
            break;
        }
        let index: serde_json::Value = serde_json::from_slice(&bytes)
            .map_err(|e| RegistryError::invalid(&shown, format!("invalid index: {e}")))?;
        let entry =
            platform::select(&index, platform).map_err(|available| RegistryError::NoPlatform {
                reference: shown.clone(),
                wanted: platform.to_string(),
                available,
            })?;
        let digest: Digest = entry["digest"]
            .as_str()
            .and_then(|d| d.parse().ok())
            .ok_or_else(|| RegistryError::invalid(&shown, "an index entry has no valid digest"))?;
        let (b, t) = manifest_by_digest(client, reference, &digest, content).await?;
        bytes = b;
        media_type = entry["mediaType"].as_str().map(str::to_string).unwrap_or(t);
        manifest_digest = digest;
    }
    if media_types::is_index(&media_type) {
        return Err(RegistryError::invalid(&shown, "indexes nested too deeply"));
    }
    if media_type.starts_with("application/vnd.docker.distribution.manifest.v1") {
        return Err(RegistryError::invalid(
            &shown,
            "the registry serves only a Docker schema 1 manifest, which rbuild does not read (push the image again with a current client)",
        ));
    }
    let (config, layers) = parse_manifest(&bytes)
        .map_err(|e| RegistryError::invalid(&shown, format!("invalid manifest: {e}")))?;
    if config.size > CONFIG_LIMIT {
        return Err(RegistryError::invalid(
            &shown,
            format!(
                "the image config is {} bytes; rbuild reads configs up to 64 MiB",
                config.size
            ),
        ));
    }
    // The config first: it says the image's platform, which must be the one asked for.
    let config_downloaded = if content.size(&config.digest).ok().flatten() == Some(config.size) {
        None
    } else {
        fetch_blob(client, reference, &config, content, progress).await?;
        Some(config.size)
    };
    check_platform(content, &config, platform, &shown)?;
    let blobs: Vec<BlobRef> = layers.clone();
    let mut results: Vec<Option<u64>> = futures_util::stream::iter(blobs.into_iter().map(|blob| {
        let shown = &shown;
        async move {
            if content.size(&blob.digest).ok().flatten() == Some(blob.size) {
                progress(PullEvent::BlobCached {
                    digest: blob.digest.clone(),
                });
                return Ok(None);
            }
            fetch_blob(client, reference, &blob, content, progress)
                .await
                .map_err(|e| match e {
                    RegistryError::NotFound(_) => {
                        RegistryError::NotFound(format!("{shown}: blob {}", blob.digest))
                    }
                    e => e,
                })?;
            progress(PullEvent::BlobDone {
                digest: blob.digest.clone(),
                size: blob.size,
            });
            Ok::<_, RegistryError>(Some(blob.size))
        }
    }))
    .buffer_unordered(client.options.concurrency.max(1))
    .try_collect()
    .await?;
    results.push(config_downloaded);
    let downloaded = results.iter().flatten().count();
    let downloaded_bytes = results.iter().flatten().sum();
    Ok(PulledImage {
        resolved,
        manifest: BlobRef {
            digest: manifest_digest,
            size: bytes.len() as u64,
            media_type: media_types::manifest_type(media_type == media_types::DOCKER_MANIFEST)
                .to_string(),
        },
        config,
        layers,
        downloaded,
        downloaded_bytes,
    })
}

/// An image manifest (not an index) names one platform, in its config: it must be `wanted`.
fn check_platform(
    content: &ContentStore,
    config: &BlobRef,
    wanted: &Platform,
    shown: &str,
) -> Result<(), RegistryError> {
    let bytes = std::fs::read(content.blob_path(&config.digest))
        .map_err(|e| RegistryError::invalid(shown, format!("cannot read the config: {e}")))?;
    let doc: serde_json::Value = serde_json::from_slice(&bytes)
        .map_err(|e| RegistryError::invalid(shown, format!("invalid config: {e}")))?;
    let has = |key: &str| doc[key].as_str().filter(|v| !v.is_empty());
    if has("os").is_none() && has("architecture").is_none() {
        return Ok(());
    }
    if platform::matches(wanted, &doc) {
        return Ok(());
    }
    let mut available = format!(
        "{}/{}",
        has("os").unwrap_or("?"),
        has("architecture").unwrap_or("?")
    );
    if let Some(v) = has("variant") {
        available.push('/');
        available.push_str(v);
    }
    Err(RegistryError::NoPlatform {
        reference: shown.to_string(),
        wanted: wanted.to_string(),
        available,
    })
}

/// The digest, bytes and media type the reference names: by digest from the store or the
/// registry; by tag, a HEAD for the digest, then the store or a GET.
async fn resolve_top(
    client: &Client,
    reference: &Reference,
    content: &ContentStore,
) -> Result<(Digest, Vec<u8>, String), RegistryError> {
    let shown = reference.to_string();
    if let Some(pinned) = &reference.digest {
        let digest: Digest = pinned
            .parse()
            .map_err(|_| RegistryError::invalid(&shown, "unsupported digest"))?;
        let (bytes, media_type) = manifest_by_digest(client, reference, &digest, content).await?;
        return Ok((digest, bytes, media_type));
    }
    let tag = reference.tag.as_deref().unwrap_or("latest");
    let url = client.url(reference, &format!("manifests/{tag}"));
    let scopes = pull_scope(reference);
    let head = client
        .send(&reference.domain, &scopes, &shown, &|http| {
            Ok(http
                .head(&url)
                .header(reqwest::header::ACCEPT, MANIFEST_ACCEPT))
        })
        .await?;
    if head.status() == reqwest::StatusCode::NOT_FOUND {
        return Err(RegistryError::NotFound(shown));
    }
    let known: Option<Digest> = head
        .headers()
        .get("docker-content-digest")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok());
    if let Some(digest) = known.filter(|d| content.contains(d)) {
        if let Ok(bytes) = std::fs::read(content.blob_path(&digest)) {
            let media_type = media_type_of(&bytes, None);
            return Ok((digest, bytes, media_type));
        }
    }
    let (digest, bytes, media_type) = get_manifest(client, reference, tag, None).await?;
    store_manifest(content, &shown, &bytes)?;
    Ok((digest, bytes, media_type))
}

/// The manifest `digest` of `reference`'s repository, from the store or the registry (then
/// stored).
async fn manifest_by_digest(
    client: &Client,
    reference: &Reference,
    digest: &Digest,
    content: &ContentStore,
) -> Result<(Vec<u8>, String), RegistryError> {
    if content.contains(digest) {
        if let Ok(bytes) = std::fs::read(content.blob_path(digest)) {
            let media_type = media_type_of(&bytes, None);
            return Ok((bytes, media_type));
        }
    }
    let (_, bytes, media_type) =
        get_manifest(client, reference, &digest.to_string(), Some(digest)).await?;
    store_manifest(content, &reference.to_string(), &bytes)?;
    Ok((bytes, media_type))
}

fn store_manifest(content: &ContentStore, what: &str, bytes: &[u8]) -> Result<(), RegistryError> {
    content
        .put_bytes(bytes)
        .map(|_| ())
        .map_err(|e| content_err(what, e))
}

/// The media type of a manifest: its `mediaType` field, else the Content-Type, else by shape.
fn media_type_of(bytes: &[u8], content_type: Option<&str>) -> String {
    let doc: serde_json::Value = serde_json::from_slice(bytes).unwrap_or_default();
    if let Some(t) = doc["mediaType"].as_str() {
        return t.to_string();
    }
    if let Some(t) = content_type.filter(|t| !t.is_empty() && !t.starts_with("application/json")) {
        return t.split(';').next().unwrap_or(t).trim().to_string();
    }
    if doc["manifests"].is_array() {
        media_types::OCI_INDEX.to_string()
    } else {
        media_types::OCI_MANIFEST.to_string()
    }
}

/// GETs `manifests/<tag or digest>`, hashing the body; a body whose digest differs from
/// `expected` or from the registry's `Docker-Content-Digest` is an error.
async fn get_manifest(
    client: &Client,
    reference: &Reference,
    tag_or_digest: &str,
    expected: Option<&Digest>,
) -> Result<(Digest, Vec<u8>, String), RegistryError> {
    let shown = reference.to_string();
    let url = client.url(reference, &format!("manifests/{tag_or_digest}"));
    let response = client
        .send(&reference.domain, &pull_scope(reference), &shown, &|http| {
            Ok(http
                .get(&url)
                .header(reqwest::header::ACCEPT, MANIFEST_ACCEPT))
        })
        .await?;
    if !response.status().is_success() {
        return Err(status_error(&shown, response).await);
    }
    let header_digest: Option<Digest> = response
        .headers()
        .get("docker-content-digest")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok());
    let content_type = response
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let mut bytes = Vec::new();
    let mut stream = response.bytes_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| RegistryError::Transport {
            what: shown.clone(),
            url: url.clone(),
            detail: e.to_string(),
        })?;
        if bytes.len() + chunk.len() > MANIFEST_LIMIT {
            return Err(RegistryError::invalid(
                &shown,
                "the manifest is larger than 8 MiB",
            ));
        }
        bytes.extend_from_slice(&chunk);
    }
    let actual = Digest::of(&bytes);
    for want in expected.into_iter().chain(header_digest.as_ref()) {
        if *want != actual {
            return Err(RegistryError::DigestMismatch {
                what: format!("{shown}: manifest"),
                expected: want.to_string(),
                actual: actual.to_string(),
            });
        }
    }
    let media_type = media_type_of(&bytes, content_type.as_deref());
    Ok((actual, bytes, media_type))
}

/// Downloads one blob into the store, resuming or restarting after a broken body.
async fn fetch_blob(
    client: &Client,
    reference: &Reference,
    blob: &BlobRef,
    content: &ContentStore,
    progress: &(dyn Fn(PullEvent) + Send + Sync),
) -> Result<(), RegistryError> {
    let what = format!("{reference}: blob {}", blob.digest);
    let url = client.url(reference, &format!("blobs/{}", blob.digest));
    let scopes = pull_scope(reference);
    let mut writer = content.writer().map_err(|e| content_err(&what, e))?;
    let mut failures = 0u32;
    loop {
        let offset = writer.written();
        if offset == blob.size && offset > 0 {
            // Every byte arrived before the connection broke: the commit checks them.
            break;
        }
        let response = client
            .send(&reference.domain, &scopes, &what, &|http| {
                let request = http.get(&url);
                Ok(if offset > 0 {
                    request.header(reqwest::header::RANGE, format!("bytes={offset}-"))
                } else {
                    request
                })
            })
            .await?;
        match response.status().as_u16() {
            200 if offset > 0 => {
                // The registry ignored the range: start again from the first byte.
                writer = content.writer().map_err(|e| content_err(&what, e))?;
            }
            200 => {}
            206 if offset > 0 => {
                let starts_at_offset = response
                    .headers()
                    .get(reqwest::header::CONTENT_RANGE)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.strip_prefix("bytes "))
                    .and_then(|v| v.split('-').next())
                    .and_then(|v| v.parse::<u64>().ok())
                    == Some(offset);
                if !starts_at_offset {
                    return Err(RegistryError::invalid(
                        &what,
                        "the registry answered a range request with another range",
                    ));
                }
            }
            _ => return Err(status_error(&what, response).await),
        }
        let mut stream = response.bytes_stream();
        let mut broken = None;
        while let Some(chunk) = stream.next().await {
            match chunk {
                Ok(chunk) => {
                    if writer.written() + chunk.len() as u64 > blob.size {
                        return Err(RegistryError::invalid(
                            &what,
                            format!("the registry sent more than the {} bytes the manifest names; nothing was stored", blob.size),
                        ));
                    }
                    writer.write_all(&chunk).map_err(|e| {
                        content_err(&what, ContentError::io("write", writer.temp_path(), e))
                    })?;
                }
                Err(e) => {
                    broken = Some(e);
                    break;
                }
            }
        }
        let Some(error) = broken else {
            break;
        };
        if failures >= client.options.retries {
            return Err(RegistryError::Transport {
                what: what.clone(),
                url: url.clone(),
                detail: format!(
                    "the download broke off {} times, the last after {} of {} bytes: {error}",
                    failures + 1,
                    writer.written(),
                    blob.size
                ),
            });
        }
        progress(PullEvent::Retrying {
            what: what.clone(),
            error: format!("broke off after {} bytes: {error}", writer.written()),
        });
        tokio::time::sleep(client.backoff(failures)).await;
        failures += 1;
    }
    writer
        .commit(Some(&blob.digest), Some(blob.size))
        .map_err(|e| content_err(&what, e))?;
    Ok(())
}
