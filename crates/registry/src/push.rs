//! Pushing an image from the content store: blobs (skipped when the registry has them, mounted
//! from another repository of the same registry when one is known to hold them, else uploaded
//! in one PUT or in chunks), then the manifest.
//!
//! Invariants: the manifest is PUT only after every blob it names is in the repository, so a
//! pull never sees a manifest with missing blobs; an upload that fails is retried from a new
//! upload session (the registry discards the old one).

use futures_util::{StreamExt, TryStreamExt};
use rbuild_digest::Digest;
use rbuild_oci::BlobRef;
use rbuild_snapshotter::content::ContentStore;
use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Seek, SeekFrom};

use crate::client::{status_error, Client};
use crate::{Reference, RegistryError};

/// How one blob reached the registry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlobOutcome {
    /// The registry had it.
    Exists,
    /// Mounted from another repository.
    Mounted,
    /// Uploaded in this many requests (1: one PUT; more: PATCHes of `chunk_size`, then a PUT).
    Uploaded { requests: u64 },
}

/// Progress of a push, for the caller to show.
#[derive(Debug, Clone)]
pub enum PushEvent {
    Blob {
        digest: Digest,
        size: u64,
        outcome: BlobOutcome,
    },
    Retrying {
        what: String,
        error: String,
    },
}

/// What to push: a manifest (already in the store) and the blobs it names.
#[derive(Debug, Clone)]
pub struct PushImage<'a> {
    pub manifest: &'a BlobRef,
    pub blobs: &'a [BlobRef],
    /// For blobs known to be in another repository (path) of the same registry (the base image
    /// it was pulled from): tried as a cross-repository mount before uploading.
    pub mount_from: &'a BTreeMap<Digest, String>,
}

fn push_scopes(reference: &Reference, mount_from: &BTreeMap<Digest, String>) -> Vec<String> {
    let mut scopes = vec![format!("repository:{}:pull,push", reference.path)];
    let sources: BTreeSet<&String> = mount_from.values().collect();
    for from in sources {
        if *from != reference.path {
            scopes.push(format!("repository:{from}:pull"));
        }
    }
    scopes
}

/// Pushes `image` to `reference` (its tag, or its digest); returns the manifest's digest.
pub async fn push(
    client: &Client,
    reference: &Reference,
    image: &PushImage<'_>,
    content: &ContentStore,
    progress: &(dyn Fn(PushEvent) + Send + Sync),
) -> Result<Digest, RegistryError> {
    client.prepare(&reference.domain).await;
    let scopes = push_scopes(reference, image.mount_from);
    futures_util::stream::iter(image.blobs.iter().map(|blob| {
        let scopes = &scopes;
        async move {
            let source = image.mount_from.get(&blob.digest).map(String::as_str);
            let outcome =
                push_blob(client, reference, scopes, blob, source, content, progress).await?;
            progress(PushEvent::Blob {
                digest: blob.digest.clone(),
                size: blob.size,
                outcome,
            });
            Ok::<_, RegistryError>(())
        }
    }))
    .buffer_unordered(client.options.concurrency.max(1))
    .try_collect::<Vec<()>>()
    .await?;

    let shown = reference.to_string();
    let bytes = std::fs::read(content.blob_path(&image.manifest.digest)).map_err(|e| {
        RegistryError::invalid(
            &shown,
            format!(
                "the manifest {} is not in the store: {e}",
                image.manifest.digest
            ),
        )
    })?;
    let digest = Digest::of(&bytes);
    let target = match (&reference.tag, &reference.digest) {
        (Some(tag), _) => tag.clone(),
        (None, Some(d)) => d.clone(),
        (None, None) => "latest".to_string(),
    };
    let url = client.url(reference, &format!("manifests/{target}"));
    let media_type = image.manifest.media_type.clone();
    let response = client
        .send(&reference.domain, &scopes, &shown, &|http| {
            Ok(http
                .put(&url)
                .header(reqwest::header::CONTENT_TYPE, media_type.as_str())
                .body(bytes.clone()))
        })
        .await?;
    if response.status().as_u16() != 201 && !response.status().is_success() {
        return Err(status_error(&format!("{shown}: manifest"), response).await);
    }
    if let Some(theirs) = response
        .headers()
        .get("docker-content-digest")
        .and_then(|v| v.to_str().ok())
    {
        if theirs != digest.to_string() {
            return Err(RegistryError::DigestMismatch {
                what: format!("{shown}: pushed manifest"),
                expected: digest.to_string(),
                actual: theirs.to_string(),
            });
        }
    }
    Ok(digest)
}

async fn push_blob(
    client: &Client,
    reference: &Reference,
    scopes: &[String],
    blob: &BlobRef,
    mount_from: Option<&str>,
    content: &ContentStore,
    progress: &(dyn Fn(PushEvent) + Send + Sync),
) -> Result<BlobOutcome, RegistryError> {
    let what = format!("push {reference}: blob {}", blob.digest);
    let head_url = client.url(reference, &format!("blobs/{}", blob.digest));
    let head = client
        .send(&reference.domain, scopes, &what, &|http| {
            Ok(http.head(&head_url))
        })
        .await?;
    if head.status().is_success() {
        return Ok(BlobOutcome::Exists);
    }
    if head.status().as_u16() != 404 {
        return Err(status_error(&what, head).await);
    }
    // A layer of a locally built image may be a recipe still: make its blob now that the
    // registry lacks it, on a blocking thread (a whole tar is written).
    let store = content.clone();
    let digest = blob.digest.clone();
    match tokio::task::spawn_blocking(move || store.materialize(&digest)).await {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => return Err(RegistryError::invalid(&what, e)),
        Err(e) => return Err(RegistryError::invalid(&what, e)),
    }
    let path = content.blob_path(&blob.digest);
    if !path.exists() {
        return Err(RegistryError::invalid(
            &what,
            "the blob is not in the local store",
        ));
    }
    let mut failures = 0;
    loop {
        match upload_once(client, reference, scopes, blob, mount_from, &path, &what).await {
            Ok(outcome) => return Ok(outcome),
            Err(e) if e.is_transient() && failures < client.options.retries => {
                progress(PushEvent::Retrying {
                    what: what.clone(),
                    error: e.to_string(),
                });
                tokio::time::sleep(client.backoff(failures)).await;
                failures += 1;
            }
            Err(e) => return Err(e),
        }
    }
}

/// An absolute URL for a `Location` header (registries may send a path).
fn absolute(
    client: &Client,
    reference: &Reference,
    location: &str,
) -> Result<reqwest::Url, RegistryError> {
    let base = reqwest::Url::parse(&client.base_url(&reference.domain))
        .map_err(|e| RegistryError::invalid(reference.to_string(), e))?;
    base.join(location).map_err(|e| {
        RegistryError::invalid(
            reference.to_string(),
            format!("bad upload location `{location}`: {e}"),
        )
    })
}

fn location(
    client: &Client,
    reference: &Reference,
    response: &reqwest::Response,
    what: &str,
) -> Result<reqwest::Url, RegistryError> {
    let text = response
        .headers()
        .get(reqwest::header::LOCATION)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| RegistryError::invalid(what, "the registry gave no upload location"))?;
    absolute(client, reference, text)
}

/// One attempt: start (or mount), then upload monolithically or in chunks.
async fn upload_once(
    client: &Client,
    reference: &Reference,
    scopes: &[String],
    blob: &BlobRef,
    mount_from: Option<&str>,
    path: &std::path::Path,
    what: &str,
) -> Result<BlobOutcome, RegistryError> {
    let start_url = client.url(reference, "blobs/uploads/");
    let mut upload: Option<reqwest::Url> = None;
    if let Some(from) = mount_from.filter(|f| *f != reference.path) {
        let digest = blob.digest.to_string();
        let response = client
            .send(&reference.domain, scopes, what, &|http| {
                Ok(http
                    .post(&start_url)
                    .query(&[("mount", digest.as_str()), ("from", from)])
                    .header(reqwest::header::CONTENT_LENGTH, 0))
            })
            .await?;
        match response.status().as_u16() {
            201 => return Ok(BlobOutcome::Mounted),
            // Not mountable: the registry started an ordinary upload instead.
            202 => upload = Some(location(client, reference, &response, what)?),
            _ => {}
        }
    }
    let mut url = match upload {
        Some(url) => url,
        None => {
            let response = client
                .send(&reference.domain, scopes, what, &|http| {
                    Ok(http
                        .post(&start_url)
                        .header(reqwest::header::CONTENT_LENGTH, 0))
                })
                .await?;
            if response.status().as_u16() != 202 {
                return Err(status_error(what, response).await);
            }
            location(client, reference, &response, what)?
        }
    };
    let chunk = client.options.chunk_size.max(1);
    if blob.size > chunk {
        // Chunked: PATCH each range, following the Location the registry returns.
        let mut offset = 0u64;
        let mut requests = 1;
        while offset < blob.size {
            let len = chunk.min(blob.size - offset);
            let bytes = read_range(path, offset, len, what)?;
            let patch_url = url.clone();
            let range = format!("{offset}-{}", offset + len - 1);
            // Not retried by itself: the registry may have taken the chunk before the error;
            // a failed chunk fails this attempt, and the blob starts again in a new session.
            let response = client
                .send_with_retries(
                    &reference.domain,
                    scopes,
                    what,
                    &|http| {
                        Ok(http
                            .patch(patch_url.clone())
                            .header(reqwest::header::CONTENT_TYPE, "application/octet-stream")
                            .header(reqwest::header::CONTENT_RANGE, range.as_str())
                            .body(bytes.clone()))
                    },
                    0,
                )
                .await?;
            if response.status().as_u16() != 202 {
                return Err(status_error(what, response).await);
            }
            url = location(client, reference, &response, what)?;
            offset += len;
            requests += 1;
        }
        let mut finish = url.clone();
        finish
            .query_pairs_mut()
            .append_pair("digest", &blob.digest.to_string());
        let response = client
            .send(&reference.domain, scopes, what, &|http| {
                Ok(http
                    .put(finish.clone())
                    .header(reqwest::header::CONTENT_LENGTH, 0))
            })
            .await?;
        if !response.status().is_success() {
            return Err(status_error(what, response).await);
        }
        return Ok(BlobOutcome::Uploaded { requests });
    }
    let mut finish = url;
    finish
        .query_pairs_mut()
        .append_pair("digest", &blob.digest.to_string());
    let size = blob.size;
    let response = client
        .send(&reference.domain, scopes, what, &|http| {
            let file = std::fs::File::open(path)
                .map_err(|e| RegistryError::invalid(what, format!("cannot read the blob: {e}")))?;
            let stream = tokio_util::io::ReaderStream::with_capacity(
                tokio::fs::File::from_std(file),
                256 << 10,
            );
            Ok(http
                .put(finish.clone())
                .header(reqwest::header::CONTENT_TYPE, "application/octet-stream")
                .header(reqwest::header::CONTENT_LENGTH, size)
                .body(reqwest::Body::wrap_stream(stream)))
        })
        .await?;
    if !response.status().is_success() {
        return Err(status_error(what, response).await);
    }
    Ok(BlobOutcome::Uploaded { requests: 1 })
}

fn read_range(
    path: &std::path::Path,
    offset: u64,
    len: u64,
    what: &str,
) -> Result<Vec<u8>, RegistryError> {
    let fail =
        |e: std::io::Error| RegistryError::invalid(what, format!("cannot read the blob: {e}"));
    let mut file = std::fs::File::open(path).map_err(fail)?;
    file.seek(SeekFrom::Start(offset)).map_err(fail)?;
    let mut bytes = Vec::with_capacity(len as usize);
    file.take(len).read_to_end(&mut bytes).map_err(fail)?;
    if bytes.len() as u64 != len {
        return Err(RegistryError::invalid(
            what,
            "the stored blob is shorter than its descriptor",
        ));
    }
    Ok(bytes)
}
