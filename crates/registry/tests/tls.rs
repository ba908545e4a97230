//! HTTPS: a docker-registry on 127.0.0.1 serving TLS with a certificate of the test's own. Its
//! own process, because trusting that certificate means pointing `SSL_CERT_FILE` (read by the
//! system-roots loader) at it.

use std::process::Command;

use rbuild_registry::pull::{pull, PullEvent};
use rbuild_registry::{Client, ClientOptions, Platform, Reference};
use rbuild_snapshotter::content::ContentStore;
use rbuild_test::{require_tool, Registry, RegistryAuth};

fn host_platform() -> Platform {
    Platform::host()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_with_a_trusted_certificate_and_a_certificate_error_when_untrusted() {
    let dir = tempfile::tempdir().expect("tempdir");
    // rustls refuses a CA certificate as a server's: the certificate says it is not one.
    let (cert, key) = rbuild_test::self_signed_certificate(
        dir.path(),
        "reg",
        "127.0.0.1",
        &[
            "subjectAltName=IP:127.0.0.1",
            "basicConstraints=critical,CA:FALSE",
            "keyUsage=digitalSignature,keyEncipherment",
            "extendedKeyUsage=serverAuth",
        ],
    );
    let registry = Registry::start_with(RegistryAuth::None, Some((&cert, &key)));
    // skopeo trusts the certificate through a certs.d-style directory.
    let certs = dir.path().join("certs");
    std::fs::create_dir_all(&certs).expect("mkdir");
    std::fs::copy(&cert, certs.join("ca.crt")).expect("copy cert");
    let out = Command::new(require_tool("skopeo", "skopeo"))
        .args(["copy", "-q"])
        .arg(format!("--dest-cert-dir={}", certs.display()))
        .arg(format!(
            "oci-archive:{}",
            rbuild_test::golden_base("busybox-oci.tar").display()
        ))
        .arg(format!("docker://{}/tls/busybox:1", registry.host()))
        .output()
        .expect("skopeo");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let reference = Reference::parse(&format!("{}/tls/busybox:1", registry.host())).expect("ref");
    let ignore = |_: PullEvent| {};
    let options = || ClientOptions {
        docker_config: None,
        retries: 0,
        ..ClientOptions::default()
    };

    // Untrusted: HTTPS fails verification, and the error says so (no fallback to plain HTTP,
    // which a server that presents a certificate does not speak).
    std::env::remove_var("SSL_CERT_FILE");
    let untrusted = Client::new(options()).expect("client");
    let store = ContentStore::open(&dir.path().join("a")).expect("store");
    let error = pull(&untrusted, &reference, &host_platform(), &store, &ignore)
        .await
        .expect_err("an untrusted certificate is refused");
    assert_eq!(
        untrusted.base_url(&reference.domain),
        format!("https://{}", registry.host())
    );
    assert!(error.to_string().contains("certificate"), "{error}");
    assert!(error.to_string().contains("UnknownIssuer"), "{error}");

    // Named insecure (`--insecure-registry`): HTTPS without verification, as Docker does.
    let insecure = Client::new(ClientOptions {
        insecure: vec![registry.host()],
        ..options()
    })
    .expect("client");
    let store = ContentStore::open(&dir.path().join("c")).expect("store");
    pull(&insecure, &reference, &host_platform(), &store, &ignore)
        .await
        .expect("an insecure registry's certificate is not verified");
    assert_eq!(
        insecure.base_url(&reference.domain),
        format!("https://{}", registry.host())
    );

    // Trusted through SSL_CERT_FILE: HTTPS, verified.
    std::env::set_var("SSL_CERT_FILE", &cert);
    let trusted = Client::new(options()).expect("client");
    let store = ContentStore::open(&dir.path().join("b")).expect("store");
    let pulled = pull(&trusted, &reference, &host_platform(), &store, &ignore)
        .await
        .expect("pull over https");
    assert_eq!(
        trusted.base_url(&reference.domain),
        format!("https://{}", registry.host())
    );
    store.verify(&pulled.layers[0].digest).expect("layer");
}
