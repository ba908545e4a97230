//! rbuild against a real registry: Debian's `docker-registry` started on 127.0.0.1 by each
//! test (anonymous, htpasswd basic auth, and bearer tokens from a token server of the test's
//! own), seeded by skopeo; results read back with `skopeo inspect` and `skopeo copy`.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use base64::Engine as _;
use rbuild_test::{require_root, require_tool, skopeo_seed_busybox, Registry, RegistryAuth};

fn rbuild(root: &Path, args: &[&str], env: &[(&str, &Path)]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_rbuild"));
    command
        .arg("--root")
        .arg(root)
        .args(args)
        .env("NO_COLOR", "1")
        // No credentials of the machine's user leak into a test.
        .env("DOCKER_CONFIG", root.join("no-docker-config"))
        .stdin(Stdio::null());
    for (k, v) in env {
        command.env(k, v);
    }
    command.output().expect("rbuild runs")
}

fn ok(root: &Path, args: &[&str], env: &[(&str, &Path)]) -> Output {
    let out = rbuild(root, args, env);
    assert!(
        out.status.success(),
        "rbuild {args:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn text(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr)
}

fn skopeo(args: &[&str]) -> String {
    let out = Command::new(require_tool("skopeo", "skopeo"))
        .args(args)
        .output()
        .expect("skopeo runs");
    assert!(
        out.status.success(),
        "skopeo {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A two-stage build on a base from the registry; the result prints its message.
fn app_context(dir: &Path, base: &str, message: &str) -> PathBuf {
    let ctx = dir.join("app");
    std::fs::create_dir_all(&ctx).expect("mkdir");
    std::fs::write(
        ctx.join("Dockerfile"),
        format!(
            "FROM {base} AS build\nRUN echo '{message}' > /msg\nFROM {base}\nCOPY --from=build /msg /msg\nCMD [\"cat\", \"/msg\"]\n"
        ),
    )
    .expect("Dockerfile");
    ctx
}

fn docker_config(dir: &Path, host: &str, user: &str, password: &str) -> PathBuf {
    let config = dir.join("docker-config");
    std::fs::create_dir_all(&config).expect("mkdir");
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    std::fs::write(
        config.join("config.json"),
        format!(r#"{{"auths": {{"{host}": {{"auth": "{auth}"}}}}}}"#),
    )
    .expect("config.json");
    config
}

#[test]
fn pull_build_push_and_read_back_with_skopeo() {
    require_root();
    let registry = Registry::start(RegistryAuth::None);
    let host = registry.host();
    skopeo_seed_busybox(&format!("docker://{host}/test/busybox:1"), None);
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().join("root");

    // Pull: every blob once; a second pull downloads nothing.
    let base = format!("{host}/test/busybox:1");
    let first = ok(&root, &["pull", &base], &[]);
    assert!(
        text(&first).contains("2 of 2 blobs downloaded"),
        "{}",
        text(&first)
    );
    let again = ok(&root, &["pull", &base], &[]);
    assert!(
        text(&again).contains("0 of 2 blobs downloaded"),
        "{}",
        text(&again)
    );
    // The same image as Docker schema 2 (skopeo converts): another manifest, the same blobs.
    let out = Command::new(require_tool("skopeo", "skopeo"))
        .args(["copy", "-q", "--dest-tls-verify=false", "--format", "v2s2"])
        .arg(format!(
            "oci-archive:{}",
            rbuild_test::golden_base("busybox-oci.tar").display()
        ))
        .arg(format!("docker://{host}/test/busybox:v2s2"))
        .output()
        .expect("skopeo");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v2s2 = ok(&root, &["pull", &format!("{host}/test/busybox:v2s2")], &[]);
    assert!(text(&v2s2).contains("Pulled"), "{}", text(&v2s2));
    let record: serde_json::Value = serde_json::from_slice(
        &std::fs::read(root.join(format!(
            "images-v1/{}",
            format!("{host}/test/busybox:v2s2.json")
                .replace('/', "%2F")
                .replace(':', "%3A")
        )))
        .expect("v2s2 record"),
    )
    .expect("json");
    assert_eq!(
        record["manifest_media_type"].as_str(),
        Some("application/vnd.docker.distribution.manifest.v2+json")
    );

    // A build whose base is missing pulls it; the result is pushed with --push.
    let other_root = dir.path().join("root2");
    let ctx = app_context(dir.path(), &base, "pushed by rbuild");
    let target = format!("{host}/test/app:1");
    let meta = dir.path().join("meta.json");
    let built = ok(
        &other_root,
        &[
            "build",
            "--progress",
            "plain",
            "-t",
            &target,
            "--push",
            "--metadata-file",
            meta.to_str().expect("utf-8"),
            ctx.to_str().expect("utf-8"),
        ],
        &[],
    );
    let log = text(&built);
    assert!(
        log.contains("mounted"),
        "base layers are mounted from test/busybox:\n{log}"
    );
    assert!(log.contains("uploaded"), "{log}");
    let meta: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&meta).expect("metadata")).expect("json");
    let pushed = meta["containerimage.digest"]
        .as_str()
        .expect("digest")
        .to_string();

    let inspect: serde_json::Value = serde_json::from_str(&skopeo(&[
        "inspect",
        "--tls-verify=false",
        &format!("docker://{target}"),
    ]))
    .expect("inspect json");
    assert_eq!(inspect["Digest"].as_str(), Some(pushed.as_str()));
    assert_eq!(
        inspect["Layers"].as_array().map(Vec::len),
        Some(2),
        "the base layer and the COPY"
    );
    let layout = dir.path().join("layout");
    skopeo(&[
        "copy",
        "-q",
        "--src-tls-verify=false",
        &format!("docker://{target}"),
        &format!("oci:{}:app", layout.display()),
    ]);
    assert!(layout.join("index.json").is_file());

    // Named contexts: the pushed image through its OCI layout and through the registry.
    let named = dir.path().join("named");
    std::fs::create_dir_all(&named).expect("mkdir");
    std::fs::write(
        named.join("Dockerfile"),
        // Named contexts match every spelling of their name, as in BuildKit.
        "FROM docker.io/library/fromlayout:latest\nCOPY --from=fromregistry /msg /again\nRUN cat /msg /again\nCMD [\"cat\", \"/again\"]\n",
    )
    .expect("Dockerfile");
    let fourth = dir.path().join("root4");
    ok(
        &fourth,
        &[
            "build",
            "-q",
            "-t",
            "named:1",
            "--build-context",
            &format!("fromlayout=oci-layout://{}:app", layout.display()),
            "--build-context",
            &format!("fromregistry=docker-image://{target}"),
            named.to_str().expect("utf-8"),
        ],
        &[],
    );
    let run = ok(&fourth, &["run", "named:1"], &[]);
    assert_eq!(String::from_utf8_lossy(&run.stdout), "pushed by rbuild\n");
    // An image only named (its step layers kept as recipes) pushes whole.
    let named_target = format!("{host}/test/named:1");
    ok(&fourth, &["tag", "named:1", &named_target], &[]);
    let pushed_named = ok(&fourth, &["push", &named_target], &[]);
    assert!(
        text(&pushed_named).contains("uploaded"),
        "{}",
        text(&pushed_named)
    );
    let copied = dir.path().join("named-copy");
    skopeo(&[
        "copy",
        "-q",
        "--src-tls-verify=false",
        &format!("docker://{named_target}"),
        &format!("oci:{}:named", copied.display()),
    ]);
    assert!(copied.join("index.json").is_file());
    // The layout's image by digest.
    ok(
        &fourth,
        &[
            "build",
            "-q",
            "--build-context",
            &format!("fromlayout=oci-layout://{}@{pushed}", layout.display()),
            "--build-context",
            &format!("fromregistry=docker-image://{target}"),
            named.to_str().expect("utf-8"),
        ],
        &[],
    );
    let missing_tag = rbuild(
        &fourth,
        &[
            "build",
            "-q",
            "--build-context",
            &format!("fromlayout=oci-layout://{}:nope", layout.display()),
            "--build-context",
            &format!("fromregistry=docker-image://{target}"),
            named.to_str().expect("utf-8"),
        ],
        &[],
    );
    assert_eq!(missing_tag.status.code(), Some(1));
    assert!(
        text(&missing_tag).contains("no image nope in the layout (it has: app)"),
        "{}",
        text(&missing_tag)
    );

    // Pushing the same image again finds every blob in place.
    let repush = ok(&other_root, &["push", &target], &[]);
    assert!(text(&repush).contains(&pushed), "{}", text(&repush));
    assert!(!text(&repush).contains("uploaded"), "{}", text(&repush));

    // A third machine runs the pushed image (`run` pulls it, as `docker run` does).
    let third = dir.path().join("root3");
    let run = ok(&third, &["run", &target], &[]);
    assert_eq!(String::from_utf8_lossy(&run.stdout), "pushed by rbuild\n");

    // Cached base, registry gone: the default and --pull=false need no network, nor does a
    // digest-pinned FROM; --pull must reach the registry and says so.
    let manifest_digest = {
        let record: serde_json::Value = serde_json::from_slice(
            &std::fs::read(other_root.join(format!(
                "images-v1/{}",
                format!("{base}.json").replace('/', "%2F").replace(':', "%3A")
            )))
            .expect("base record"),
        )
        .expect("json");
        record["manifest"].as_str().expect("digest").to_string()
    };
    let ctx2 = app_context(&dir.path().join("again"), &base, "offline");
    let resolved = ok(
        &other_root,
        &[
            "build",
            "--progress",
            "plain",
            "--pull",
            ctx2.to_str().expect("utf-8"),
        ],
        &[],
    );
    let log = text(&resolved);
    assert!(
        log.contains(&format!("resolve {base}: sha256:")),
        "--pull resolves the tag:\n{log}"
    );
    assert!(
        !log.contains(&format!("pull {base}:")),
        "but downloads no blob:\n{log}"
    );
    drop(registry);
    ok(
        &other_root,
        &["build", "-q", ctx2.to_str().expect("utf-8")],
        &[],
    );
    ok(
        &other_root,
        &["build", "-q", "--pull=false", ctx2.to_str().expect("utf-8")],
        &[],
    );
    let pinned = app_context(
        &dir.path().join("pinned"),
        &format!("{host}/test/busybox@{manifest_digest}"),
        "pinned",
    );
    ok(
        &other_root,
        &["build", "-q", pinned.to_str().expect("utf-8")],
        &[],
    );
    let online = rbuild(
        &other_root,
        &["build", "-q", "--pull", ctx2.to_str().expect("utf-8")],
        &[],
    );
    assert_eq!(online.status.code(), Some(1));
    assert!(text(&online).contains("cannot reach"), "{}", text(&online));
}

#[test]
fn basic_auth_credentials_come_from_the_docker_config() {
    require_root();
    let dir = tempfile::tempdir().expect("tempdir");
    let htpasswd = require_tool("htpasswd", "apache2-utils");
    let out = Command::new(htpasswd)
        .args(["-Bbn", "alice", "wonderland"])
        .output()
        .expect("htpasswd");
    assert!(out.status.success());
    let file = dir.path().join("htpasswd");
    std::fs::write(&file, &out.stdout).expect("htpasswd file");
    let registry = Registry::start(RegistryAuth::Htpasswd(file));
    let host = registry.host();
    skopeo_seed_busybox(
        &format!("docker://{host}/team/busybox:1"),
        Some("alice:wonderland"),
    );
    let root = dir.path().join("root");
    let base = format!("{host}/team/busybox:1");

    let anonymous = rbuild(&root, &["pull", &base], &[]);
    assert_eq!(anonymous.status.code(), Some(1));
    assert!(
        text(&anonymous).contains("refused the credentials (none were found"),
        "{}",
        text(&anonymous)
    );
    let wrong = docker_config(&dir.path().join("wrong"), &host, "alice", "nope");
    let refused = rbuild(&root, &["pull", &base], &[("DOCKER_CONFIG", &wrong)]);
    assert_eq!(refused.status.code(), Some(1));
    assert!(
        text(&refused).contains("refused the credentials"),
        "{}",
        text(&refused)
    );

    let good = docker_config(&dir.path().join("good"), &host, "alice", "wonderland");
    let ctx = app_context(dir.path(), &base, "basic auth");
    let target = format!("{host}/team/app:1");
    ok(
        &root,
        &[
            "build",
            "-q",
            "-t",
            &target,
            "--push",
            ctx.to_str().expect("utf-8"),
        ],
        &[("DOCKER_CONFIG", &good)],
    );
    let inspect = skopeo(&[
        "inspect",
        "--tls-verify=false",
        "--creds",
        "alice:wonderland",
        &format!("docker://{target}"),
    ]);
    assert!(inspect.contains("\"Digest\""), "{inspect}");
}

/// A token server: `GET /token?service=..&scope=..` with basic auth `bob:builder` grants what
/// the scopes ask; anyone else gets a token with no access. Tokens are RS256 JWTs signed by
/// `openssl` with the key whose certificate the registry trusts (sent as `x5c`).
struct TokenServer {
    port: u16,
    cert: PathBuf,
    requests: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

fn b64url(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

fn start_token_server(dir: &Path, service: &str, issuer: &str) -> TokenServer {
    let openssl = require_tool("openssl", "openssl");
    let (cert, key) = rbuild_test::self_signed_certificate(dir, "token", "rbuild-test-token", &[]);
    let der = Command::new(&openssl)
        .args(["x509", "-outform", "DER", "-in"])
        .arg(&cert)
        .output()
        .expect("openssl x509");
    assert!(der.status.success());
    let x5c = base64::engine::general_purpose::STANDARD.encode(&der.stdout);
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let requests = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = requests.clone();
    let (service, issuer) = (service.to_string(), issuer.to_string());
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let mut reader = BufReader::new(stream.try_clone().expect("clone"));
            let mut line = String::new();
            if reader.read_line(&mut line).is_err() {
                continue;
            }
            let mut authorization = String::new();
            loop {
                let mut header = String::new();
                if reader.read_line(&mut header).unwrap_or(0) == 0 || header == "\r\n" {
                    break;
                }
                if let Some((k, v)) = header.split_once(':') {
                    if k.eq_ignore_ascii_case("authorization") {
                        authorization = v.trim().to_string();
                    }
                }
            }
            let target = line
                .split_whitespace()
                .nth(1)
                .unwrap_or_default()
                .to_string();
            seen.lock().expect("lock").push(target.clone());
            let query = target.split_once('?').map(|(_, q)| q).unwrap_or_default();
            let mut scopes = Vec::new();
            for pair in query.split('&') {
                if let Some(("scope", v)) = pair.split_once('=') {
                    scopes.push(
                        v.replace("%3A", ":")
                            .replace("%2F", "/")
                            .replace("%2C", ","),
                    );
                }
            }
            let expected = format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode("bob:builder")
            );
            let user = (authorization == expected).then_some("bob");
            let access: Vec<serde_json::Value> = scopes
                .iter()
                .filter(|_| user.is_some())
                .filter_map(|s| {
                    let mut parts = s.splitn(3, ':');
                    let (kind, name, actions) = (parts.next()?, parts.next()?, parts.next()?);
                    Some(serde_json::json!({"type": kind, "name": name, "actions": actions.split(',').collect::<Vec<_>>()}))
                })
                .collect();
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            let header = serde_json::json!({"typ": "JWT", "alg": "RS256", "x5c": [x5c]});
            let claims = serde_json::json!({
                "iss": issuer, "sub": user.unwrap_or(""), "aud": service,
                "exp": now + 600, "nbf": now - 60, "iat": now - 60,
                "jti": format!("{now}-{}", seen.lock().map(|v| v.len()).unwrap_or(0)),
                "access": access,
            });
            let signing_input = format!(
                "{}.{}",
                b64url(header.to_string().as_bytes()),
                b64url(claims.to_string().as_bytes())
            );
            let mut sign = Command::new(&openssl)
                .args(["dgst", "-sha256", "-sign"])
                .arg(&key)
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .spawn()
                .expect("openssl dgst");
            sign.stdin
                .take()
                .expect("stdin")
                .write_all(signing_input.as_bytes())
                .expect("sign input");
            let signature = sign.wait_with_output().expect("signature").stdout;
            let token = format!("{signing_input}.{}", b64url(&signature));
            let body = serde_json::json!({"token": token, "expires_in": 600}).to_string();
            let mut stream = stream;
            let _ = write!(
                stream,
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    TokenServer {
        port,
        cert,
        requests,
    }
}

#[test]
fn bearer_tokens_from_the_registrys_token_server() {
    require_root();
    let dir = tempfile::tempdir().expect("tempdir");
    let tokens = start_token_server(dir.path(), "rbuild-test-registry", "rbuild-test-issuer");
    let registry = Registry::start(RegistryAuth::Token {
        realm: format!("http://127.0.0.1:{}/token", tokens.port),
        service: "rbuild-test-registry".into(),
        issuer: "rbuild-test-issuer".into(),
        cert: tokens.cert.clone(),
    });
    let host = registry.host();
    skopeo_seed_busybox(
        &format!("docker://{host}/ci/busybox:1"),
        Some("bob:builder"),
    );
    let root = dir.path().join("root");
    let base = format!("{host}/ci/busybox:1");

    // An anonymous token grants nothing: the registry's refusal is reported.
    let anonymous = rbuild(&root, &["pull", &base], &[]);
    assert_eq!(anonymous.status.code(), Some(1), "{}", text(&anonymous));
    assert!(
        text(&anonymous).contains("refused the credentials"),
        "{}",
        text(&anonymous)
    );

    let config = docker_config(dir.path(), &host, "bob", "builder");
    let ctx = app_context(dir.path(), &base, "bearer");
    let target = format!("{host}/ci/app:1");
    let built = ok(
        &root,
        &[
            "build",
            "--progress",
            "plain",
            // The buildx spelling of --push, without a local name.
            "-o",
            &format!("type=image,name={target},push=true"),
            ctx.to_str().expect("utf-8"),
        ],
        &[("DOCKER_CONFIG", &config)],
    );
    // The push asked for one token covering push on the target and pull on the base (mount).
    let asked = tokens.requests.lock().expect("lock").clone();
    assert!(
        asked
            .iter()
            .any(|r| r.contains("scope=repository%3Aci%2Fapp%3Apull%2Cpush")
                && r.contains("scope=repository%3Aci%2Fbusybox%3Apull")
                && r.contains("service=rbuild-test-registry")),
        "{asked:#?}"
    );
    assert!(text(&built).contains("mounted"), "{}", text(&built));
    let inspect = skopeo(&[
        "inspect",
        "--tls-verify=false",
        "--creds",
        "bob:builder",
        &format!("docker://{target}"),
    ]);
    assert!(inspect.contains("\"Digest\""), "{inspect}");
}
