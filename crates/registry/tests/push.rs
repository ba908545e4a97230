//! Push against Debian's docker-registry (started on 127.0.0.1 by the test): monolithic and
//! chunked uploads, HEAD skips, and the pushed image pulled back intact.

use std::sync::Mutex;

use rbuild_digest::Digest;
use rbuild_oci::BlobRef;
use rbuild_registry::pull::{pull, PullEvent};
use rbuild_registry::push::{push, BlobOutcome, PushEvent, PushImage};
use rbuild_registry::{Client, ClientOptions, Platform, Reference};
use rbuild_snapshotter::content::ContentStore;
use rbuild_test::{Registry, RegistryAuth};

fn host_platform() -> Platform {
    Platform::host()
}

fn blob(content: &ContentStore, bytes: &[u8], media_type: &str) -> BlobRef {
    let stored = content.put_bytes(bytes).expect("store");
    BlobRef {
        digest: stored.digest,
        size: stored.size,
        media_type: media_type.to_string(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunked_and_monolithic_uploads_then_pull_back() {
    let registry = Registry::start(RegistryAuth::None);
    let dir = tempfile::tempdir().expect("tempdir");
    let content = ContentStore::open(&dir.path().join("a")).expect("store");
    let big: Vec<u8> = (0..(3u32 << 20) + 12345)
        .map(|i| (i.wrapping_mul(2654435761) >> 11) as u8)
        .collect();
    let small = b"a small layer".to_vec();
    let layers = [
        blob(&content, &big, "application/vnd.oci.image.layer.v1.tar"),
        blob(&content, &small, "application/vnd.oci.image.layer.v1.tar"),
    ];
    let config_json = serde_json::to_vec(&serde_json::json!({
        "architecture": host_platform().architecture, "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": [Digest::of(&big).to_string(), Digest::of(&small).to_string()]},
    }))
    .expect("json");
    let config = blob(
        &content,
        &config_json,
        "application/vnd.oci.image.config.v1+json",
    );
    let manifest_json =
        rbuild_oci::model::manifest_json(&config, &layers, false).expect("manifest");
    let manifest = blob(
        &content,
        &manifest_json,
        "application/vnd.oci.image.manifest.v1+json",
    );

    let client = Client::new(ClientOptions {
        docker_config: None,
        chunk_size: 1 << 20,
        ..ClientOptions::default()
    })
    .expect("client");
    let reference = Reference::parse(&format!("{}/chunked/img:1", registry.host())).expect("ref");
    let mut blobs = layers.to_vec();
    blobs.push(config.clone());
    let mounts = Default::default();
    let image = PushImage {
        manifest: &manifest,
        blobs: &blobs,
        mount_from: &mounts,
    };
    let outcomes = Mutex::new(Vec::new());
    let record = |e: PushEvent| {
        if let PushEvent::Blob {
            digest, outcome, ..
        } = e
        {
            outcomes.lock().expect("lock").push((digest, outcome));
        }
    };
    let digest = push(&client, &reference, &image, &content, &record)
        .await
        .expect("push");
    assert_eq!(digest, manifest.digest);
    let seen = outcomes.lock().expect("lock").clone();
    let outcome_of = |d: &Digest| seen.iter().find(|(x, _)| x == d).map(|(_, o)| *o);
    assert_eq!(
        outcome_of(&layers[0].digest),
        Some(BlobOutcome::Uploaded { requests: 5 }),
        "4 PATCHes of at most 1 MiB, then the closing PUT"
    );
    assert_eq!(
        outcome_of(&layers[1].digest),
        Some(BlobOutcome::Uploaded { requests: 1 })
    );

    // Again: the registry has every blob.
    outcomes.lock().expect("lock").clear();
    push(&client, &reference, &image, &content, &record)
        .await
        .expect("push again");
    assert!(
        outcomes
            .lock()
            .expect("lock")
            .iter()
            .all(|(_, o)| *o == BlobOutcome::Exists),
        "{:?}",
        outcomes.lock().expect("lock")
    );

    // Pulled into another store: every blob arrives and verifies.
    let other = ContentStore::open(&dir.path().join("b")).expect("store");
    let ignore = |_: PullEvent| {};
    let pulled = pull(&client, &reference, &host_platform(), &other, &ignore)
        .await
        .expect("pull back");
    assert_eq!(pulled.manifest.digest, manifest.digest);
    for blob in &blobs {
        other.verify(&blob.digest).expect("blob pulled back intact");
    }
}
