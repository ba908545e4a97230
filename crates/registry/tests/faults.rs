//! Pulls from registries that misbehave: a connection dropped mid-blob (with and without
//! range support), one that never completes, and a blob whose bytes do not match its digest.
//! The registry is a small HTTP server of the test's own on 127.0.0.1 that serves one image
//! and breaks the layer download as told.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rbuild_digest::Digest;
use rbuild_registry::pull::{pull, PullEvent};
use rbuild_registry::{Client, ClientOptions, Platform, Reference, RegistryError};
use rbuild_snapshotter::content::ContentStore;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    /// The first `n` layer responses stop half way; later ones are whole.
    DropFirst(usize),
    /// Every layer response stops half way.
    DropAlways,
    /// The layer's bytes are not the ones its digest names.
    WrongBytes,
    /// The first `n` layer requests are answered 503 Service Unavailable.
    UnavailableFirst(usize),
    /// No fault.
    None,
}

struct Image {
    /// A multi-platform index: the host's entry is `manifest`, and an s390x and an arm/v7 entry.
    index: Vec<u8>,
    manifest: Vec<u8>,
    config: Vec<u8>,
    layer: Vec<u8>,
}

fn image() -> Image {
    let layer: Vec<u8> = (0..(1u32 << 20))
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    let config = serde_json::to_vec(&serde_json::json!({
        "architecture": host_platform().architecture,
        "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": [Digest::of(&layer).to_string()]},
        "config": {}
    }))
    .expect("config json");
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": Digest::of(&config).to_string(), "size": config.len()},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": Digest::of(&layer).to_string(), "size": layer.len()}]
    }))
    .expect("manifest json");
    let index = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [
            {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": format!("sha256:{}", "1".repeat(64)), "size": 10,
             "platform": {"os": "linux", "architecture": "s390x"}},
            {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": Digest::of(&manifest).to_string(), "size": manifest.len(),
             "platform": {"os": "linux", "architecture": host_platform().architecture}},
            {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": format!("sha256:{}", "2".repeat(64)), "size": 10,
             "platform": {"os": "linux", "architecture": "arm", "variant": "v7"}},
        ]
    }))
    .expect("index json");
    Image {
        index,
        manifest,
        config,
        layer,
    }
}

struct FakeRegistry {
    port: u16,
    layer_requests: Arc<AtomicUsize>,
    ranges: Arc<Mutex<Vec<String>>>,
}

fn serve(fault: Fault, honour_range: bool) -> FakeRegistry {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let layer_requests = Arc::new(AtomicUsize::new(0));
    let ranges = Arc::new(Mutex::new(Vec::new()));
    let (count, seen) = (layer_requests.clone(), ranges.clone());
    let image = Arc::new(image());
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let (image, count, seen) = (image.clone(), count.clone(), seen.clone());
            std::thread::spawn(move || {
                let _ = handle(stream, &image, fault, honour_range, &count, &seen);
            });
        }
    });
    FakeRegistry {
        port,
        layer_requests,
        ranges,
    }
}

fn handle(
    mut stream: TcpStream,
    image: &Image,
    fault: Fault,
    honour_range: bool,
    count: &AtomicUsize,
    seen: &Mutex<Vec<String>>,
) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 {
            return Ok(());
        }
        let mut parts = line.split_whitespace();
        let method = parts.next().unwrap_or_default().to_string();
        let path = parts.next().unwrap_or_default().to_string();
        let mut range = None;
        loop {
            let mut header = String::new();
            if reader.read_line(&mut header)? == 0 || header == "\r\n" {
                break;
            }
            if let Some((k, v)) = header.split_once(':') {
                if k.eq_ignore_ascii_case("range") {
                    range = Some(v.trim().to_string());
                }
            }
        }
        let layer_path = format!("/v2/test/img/blobs/{}", Digest::of(&image.layer));
        let config_path = format!("/v2/test/img/blobs/{}", Digest::of(&image.config));
        let (status, mut body, extra): (&str, Vec<u8>, String) = if path == "/v2/" {
            ("200 OK", b"{}".to_vec(), String::new())
        } else if path == "/v2/test/img/manifests/multi" {
            (
                "200 OK",
                image.index.clone(),
                format!(
                    "Content-Type: application/vnd.oci.image.index.v1+json\r\nDocker-Content-Digest: {}\r\n",
                    Digest::of(&image.index)
                ),
            )
        } else if path == "/v2/test/img/manifests/1"
            || path == format!("/v2/test/img/manifests/{}", Digest::of(&image.manifest))
        {
            (
                "200 OK",
                image.manifest.clone(),
                format!(
                    "Content-Type: application/vnd.oci.image.manifest.v1+json\r\nDocker-Content-Digest: {}\r\n",
                    Digest::of(&image.manifest)
                ),
            )
        } else if path == config_path {
            ("200 OK", image.config.clone(), String::new())
        } else if path == layer_path {
            let n = count.fetch_add(1, Ordering::SeqCst);
            if let Fault::UnavailableFirst(k) = fault {
                if n < k {
                    let body = "{\"errors\":[{\"code\":\"UNAVAILABLE\"}]}";
                    write!(
                        stream,
                        "HTTP/1.1 503 Service Unavailable\r\nContent-Length: {}\r\n\r\n{body}",
                        body.len()
                    )?;
                    continue;
                }
            }
            let mut bytes = image.layer.clone();
            if fault == Fault::WrongBytes {
                bytes[1000] ^= 0xff;
            }
            let start = match (&range, honour_range) {
                (Some(r), true) => {
                    seen.lock().expect("lock").push(r.clone());
                    r.trim_start_matches("bytes=")
                        .trim_end_matches('-')
                        .parse::<usize>()
                        .unwrap_or(0)
                }
                _ => 0,
            };
            let total = bytes.len();
            let body = bytes.split_off(start);
            let head = if start > 0 {
                format!(
                    "HTTP/1.1 206 Partial Content\r\nContent-Range: bytes {start}-{}/{total}\r\nContent-Length: {}\r\n\r\n",
                    total - 1,
                    body.len()
                )
            } else {
                format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", body.len())
            };
            stream.write_all(head.as_bytes())?;
            let broken = match fault {
                Fault::DropFirst(k) => n < k,
                Fault::DropAlways => true,
                Fault::WrongBytes | Fault::UnavailableFirst(_) | Fault::None => false,
            };
            if broken {
                // Half of what was promised, then the connection goes away.
                stream.write_all(&body[..body.len() / 2])?;
                stream.flush()?;
                let _ = stream.shutdown(std::net::Shutdown::Both);
                return Ok(());
            }
            stream.write_all(&body)?;
            continue;
        } else {
            (
                "404 Not Found",
                b"{\"errors\":[{\"code\":\"BLOB_UNKNOWN\"}]}".to_vec(),
                String::new(),
            )
        };
        let length = body.len();
        if method == "HEAD" {
            body.clear();
        }
        write!(
            stream,
            "HTTP/1.1 {status}\r\nContent-Length: {length}\r\n{extra}\r\n"
        )?;
        stream.write_all(&body)?;
        stream.flush()?;
    }
}

fn client() -> Client {
    Client::new(ClientOptions {
        docker_config: None,
        retries: 3,
        backoff: Duration::from_millis(10),
        ..ClientOptions::default()
    })
    .expect("client")
}

fn host_platform() -> Platform {
    Platform::host()
}

async fn pull_from(
    registry: &FakeRegistry,
    content: &ContentStore,
) -> Result<rbuild_registry::pull::PulledImage, RegistryError> {
    pull_tag(registry, content, "1", &host_platform()).await
}

async fn pull_tag(
    registry: &FakeRegistry,
    content: &ContentStore,
    tag: &str,
    platform: &Platform,
) -> Result<rbuild_registry::pull::PulledImage, RegistryError> {
    let reference = Reference::parse(&format!("127.0.0.1:{}/test/img:{tag}", registry.port))
        .expect("reference");
    let ignore = |_: PullEvent| {};
    pull(&client(), &reference, platform, content, &ignore).await
}

fn ingest_is_empty(root: &std::path::Path) -> bool {
    std::fs::read_dir(root.join("content-v1/ingest"))
        .map(|mut d| d.next().is_none())
        .unwrap_or(false)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_download_resumes_with_a_range_request() {
    let registry = serve(Fault::DropFirst(2), true);
    let dir = tempfile::tempdir().expect("tempdir");
    let content = ContentStore::open(dir.path()).expect("store");
    let pulled = pull_from(&registry, &content).await.expect("pull resumes");
    let layer = &pulled.layers[0].digest;
    content
        .verify(layer)
        .expect("the stored layer is whole and correct");
    assert_eq!(registry.layer_requests.load(Ordering::SeqCst), 3);
    let ranges = registry.ranges.lock().expect("lock").clone();
    assert_eq!(
        ranges,
        ["bytes=524288-", "bytes=786432-"],
        "each retry asks for the rest"
    );
    assert!(ingest_is_empty(dir.path()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_download_restarts_when_ranges_are_ignored() {
    let registry = serve(Fault::DropFirst(1), false);
    let dir = tempfile::tempdir().expect("tempdir");
    let content = ContentStore::open(dir.path()).expect("store");
    let pulled = pull_from(&registry, &content).await.expect("pull restarts");
    content
        .verify(&pulled.layers[0].digest)
        .expect("whole layer");
    assert_eq!(registry.layer_requests.load(Ordering::SeqCst), 2);
    assert!(ingest_is_empty(dir.path()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_download_that_never_completes_fails_and_stores_nothing() {
    let registry = serve(Fault::DropAlways, true);
    let dir = tempfile::tempdir().expect("tempdir");
    let content = ContentStore::open(dir.path()).expect("store");
    let error = pull_from(&registry, &content).await.expect_err("must fail");
    let text = error.to_string();
    assert!(matches!(error, RegistryError::Transport { .. }), "{text}");
    assert!(text.contains("broke off 4 times"), "{text}");
    let layer = Digest::of(&image().layer);
    assert!(!content.contains(&layer), "a partial layer was stored");
    assert!(
        ingest_is_empty(dir.path()),
        "a partial download was left behind"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blob_whose_digest_does_not_match_is_rejected() {
    let registry = serve(Fault::WrongBytes, true);
    let dir = tempfile::tempdir().expect("tempdir");
    let content = ContentStore::open(dir.path()).expect("store");
    let error = pull_from(&registry, &content).await.expect_err("must fail");
    let text = error.to_string();
    assert!(
        matches!(error, RegistryError::DigestMismatch { .. }),
        "{text}"
    );
    assert!(text.contains("nothing was stored"), "{text}");
    let layer = Digest::of(&image().layer);
    assert!(!content.contains(&layer));
    assert_eq!(
        content.list().expect("list").len(),
        2,
        "only the manifest and the config are stored"
    );
    assert!(ingest_is_empty(dir.path()));
    // Nothing read from the wrong blob reached the store: a read of the layer fails cleanly.
    let mut sink = Vec::new();
    assert!(content
        .open_blob(&layer)
        .map(|mut f| f.read_to_end(&mut sink))
        .is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transient_503_answers_are_retried() {
    let registry = serve(Fault::UnavailableFirst(2), true);
    let dir = tempfile::tempdir().expect("tempdir");
    let content = ContentStore::open(dir.path()).expect("store");
    let pulled = pull_from(&registry, &content)
        .await
        .expect("pull after retries");
    content
        .verify(&pulled.layers[0].digest)
        .expect("whole layer");
    assert_eq!(registry.layer_requests.load(Ordering::SeqCst), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_index_is_resolved_to_the_requested_platform() {
    let registry = serve(Fault::None, true);
    let dir = tempfile::tempdir().expect("tempdir");
    let content = ContentStore::open(dir.path()).expect("store");
    let pulled = pull_tag(&registry, &content, "multi", &host_platform())
        .await
        .expect("the host's entry");
    let image = image();
    assert_eq!(
        pulled.resolved,
        Digest::of(&image.index),
        "the tag names the index"
    );
    assert_eq!(pulled.manifest.digest, Digest::of(&image.manifest));
    assert!(
        content.contains(&Digest::of(&image.index)),
        "the index is kept"
    );

    let error = pull_tag(
        &registry,
        &content,
        "multi",
        &Platform::new("linux", "riscv64", None),
    )
    .await
    .expect_err("no riscv64 entry");
    let text = error.to_string();
    assert!(matches!(error, RegistryError::NoPlatform { .. }), "{text}");
    assert!(text.contains("has no image for linux/riscv64"), "{text}");
    assert!(
        text.contains(&format!(
            "linux/s390x, linux/{}, linux/arm/v7",
            host_platform().architecture
        )),
        "the error lists what the index has: {text}"
    );
}
