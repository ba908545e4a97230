//! One HTTP client for every registry: base URLs, authentication (anonymous, basic, bearer
//! tokens from the challenge's token endpoint) and retries with backoff.
//!
//! Invariants:
//! - a request is first sent with whatever this client already holds for its registry and
//!   scopes (a cached token, or basic credentials once the registry asked for them); a 401 is
//!   answered once per request by authenticating from its `WWW-Authenticate` challenge;
//! - transport errors, 408, 429 and 5xx are retried `retries` times with exponential backoff
//!   (the request is rebuilt each time, so a streamed body is re-read from its start);
//! - plain HTTP is used only for `localhost`, `127.0.0.0/8`, `::1` and the registries named in
//!   [`ClientOptions::insecure`], and only when they do not answer HTTPS ([`Client::prepare`]),
//!   as Docker does; everything else is HTTPS with the system's roots.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use base64::Engine as _;
use serde::Deserialize;
use tokio::sync::Mutex;

use crate::challenge::{self, Challenge};
use crate::credentials::{self, Credential};
use crate::reference::DEFAULT_DOMAIN;
use crate::{Reference, RegistryError};

/// How the client reaches registries.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// Registries (`host[:port]`) reached over plain HTTP (`--insecure-registry`).
    pub insecure: Vec<String>,
    /// The docker config directory with `config.json` (default: `$DOCKER_CONFIG`, else
    /// `~/.docker`).
    pub docker_config: Option<PathBuf>,
    /// Blobs downloaded or uploaded at once.
    pub concurrency: usize,
    /// Blobs larger than this are pushed in chunks of this size (PATCH, then PUT); smaller ones
    /// in one PUT.
    pub chunk_size: u64,
    /// Attempts after the first for transient failures.
    pub retries: u32,
    /// The first backoff; doubled each retry.
    pub backoff: Duration,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            insecure: Vec::new(),
            docker_config: credentials::config_dir(),
            concurrency: 4,
            chunk_size: 64 << 20,
            retries: 4,
            backoff: Duration::from_millis(200),
        }
    }
}

/// What the client knows of one registry's authentication.
#[derive(Debug, Default)]
struct RegistryAuth {
    /// The last challenge it sent (what kind of auth it wants).
    challenge: Option<Challenge>,
    /// The credential from the docker config, looked up once.
    credential: Option<Option<Credential>>,
    /// Bearer tokens by scope set.
    tokens: HashMap<String, String>,
}

/// How a registry is reached, once [`Client::prepare`] found out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scheme {
    Https,
    /// HTTPS without certificate verification: only registries named `--insecure-registry`
    /// whose certificate does not verify, as Docker does for them.
    HttpsUnverified,
    Http,
}

/// A registry client shared by every pull and push of a command.
#[derive(Debug)]
pub struct Client {
    http: reqwest::Client,
    /// For [`Scheme::HttpsUnverified`] registries only.
    http_unverified: reqwest::Client,
    pub(crate) options: ClientOptions,
    auth: Mutex<HashMap<String, RegistryAuth>>,
    /// The scheme found by [`Client::prepare`] for registries that may be plain HTTP.
    schemes: std::sync::Mutex<HashMap<String, Scheme>>,
}

#[derive(Deserialize)]
struct TokenReply {
    #[serde(default)]
    token: Option<String>,
    #[serde(default)]
    access_token: Option<String>,
}

/// The HTTP method and shape of one request, rebuilt on every attempt.
pub(crate) type MakeRequest<'a> =
    dyn Fn(&reqwest::Client) -> Result<reqwest::RequestBuilder, RegistryError> + Send + Sync + 'a;

/// `url` without its query: pre-signed storage URLs carry their signature there, which must
/// not reach error messages and logs.
pub(crate) fn shown_url(url: &str) -> String {
    url.split('?').next().unwrap_or(url).to_string()
}

/// Reads at most `limit` bytes of a response body (a hostile registry cannot make rbuild
/// buffer more); `None` when the body is larger or broken.
pub(crate) async fn read_capped(mut response: reqwest::Response, limit: usize) -> Option<Vec<u8>> {
    let mut bytes = Vec::new();
    while let Ok(Some(chunk)) = response.chunk().await {
        if bytes.len() + chunk.len() > limit {
            return None;
        }
        bytes.extend_from_slice(&chunk);
    }
    Some(bytes)
}

/// The largest error body kept, and the largest token reply accepted.
const ERROR_BODY_LIMIT: usize = 64 << 10;
const TOKEN_REPLY_LIMIT: usize = 1 << 20;

fn transport(what: &str, url: &str, e: &reqwest::Error) -> RegistryError {
    // The chain of sources says what actually failed (connection refused, reset, TLS).
    let mut detail = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        detail.push_str(": ");
        detail.push_str(&s.to_string());
        source = s.source();
    }
    RegistryError::Transport {
        what: what.to_string(),
        url: shown_url(url),
        detail: detail.replace(url, &shown_url(url)),
    }
}

/// The error for a response that is not what the caller wanted (its body, shortened).
pub(crate) async fn status_error(what: &str, response: reqwest::Response) -> RegistryError {
    let status = response.status().as_u16();
    let url = shown_url(response.url().as_str());
    let body = read_capped(response, ERROR_BODY_LIMIT)
        .await
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_else(|| "(a body too large to show)".to_string());
    let body: String = body.trim().chars().take(300).collect();
    if status == 404 {
        return RegistryError::NotFound(what.to_string());
    }
    RegistryError::Status {
        what: what.to_string(),
        url,
        status,
        body,
    }
}

impl Client {
    pub fn new(options: ClientOptions) -> Result<Client, RegistryError> {
        let builder = || {
            reqwest::Client::builder()
                .user_agent(concat!("rbuild/", env!("CARGO_PKG_VERSION")))
                .connect_timeout(Duration::from_secs(30))
                .read_timeout(Duration::from_secs(120))
                .pool_max_idle_per_host(16)
        };
        let http = builder()
            .build()
            .map_err(|e| transport("create the HTTP client", "", &e))?;
        let http_unverified = builder()
            .danger_accept_invalid_certs(true)
            .build()
            .map_err(|e| transport("create the HTTP client", "", &e))?;
        Ok(Client {
            http,
            http_unverified,
            options,
            auth: Mutex::new(HashMap::new()),
            schemes: std::sync::Mutex::new(HashMap::new()),
        })
    }

    /// The underlying HTTP client.
    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    /// Whether `domain` may be reached over plain HTTP: loopback, or `--insecure-registry`.
    fn may_be_plain(&self, domain: &str) -> bool {
        Reference {
            domain: domain.to_string(),
            path: String::new(),
            tag: None,
            digest: None,
        }
        .is_loopback()
            || self.options.insecure.iter().any(|i| i == domain)
    }

    /// For a registry that may be plain HTTP, finds out whether it speaks HTTPS (with a
    /// certificate the system's roots, or `SSL_CERT_FILE`, trust): if `/v2/` answers over
    /// HTTPS (or presents a certificate, trusted or not), HTTPS it is; otherwise plain HTTP, as
    /// Docker falls back. Other registries are always HTTPS. Remembered for the client's life.
    pub async fn prepare(&self, domain: &str) {
        if !self.may_be_plain(domain) {
            return;
        }
        if let Ok(known) = self.schemes.lock() {
            if known.contains_key(domain) {
                return;
            }
        }
        let probe = |http: &reqwest::Client| {
            http.get(format!("https://{domain}/v2/"))
                .timeout(Duration::from_secs(5))
                .send()
        };
        let insecure = self.options.insecure.iter().any(|i| i == domain);
        // A server that presented a certificate speaks TLS: falling back to plain HTTP would
        // only hide the certificate error (which the requests then report), unless the user
        // named the registry insecure.
        let scheme = match probe(&self.http).await {
            Ok(_) => Scheme::Https,
            Err(e) if transport("", "", &e).to_string().contains("certificate") => {
                if insecure && probe(&self.http_unverified).await.is_ok() {
                    Scheme::HttpsUnverified
                } else {
                    Scheme::Https
                }
            }
            Err(_) => Scheme::Http,
        };
        if let Ok(mut known) = self.schemes.lock() {
            known.insert(domain.to_string(), scheme);
        }
    }

    /// `http(s)://host[:port]` of a registry (Docker Hub's API lives at registry-1.docker.io).
    pub fn base_url(&self, domain: &str) -> String {
        let host = if domain == DEFAULT_DOMAIN {
            "registry-1.docker.io"
        } else {
            domain
        };
        let probed = self
            .schemes
            .lock()
            .ok()
            .and_then(|known| known.get(domain).copied());
        let scheme = match probed {
            Some(Scheme::Https | Scheme::HttpsUnverified) => "https",
            Some(Scheme::Http) => "http",
            None if self.may_be_plain(domain) => "http",
            None => "https",
        };
        format!("{scheme}://{host}")
    }

    /// The HTTP client for `domain` (the unverified one only for an insecure registry whose
    /// certificate does not verify).
    fn http_for(&self, domain: &str) -> &reqwest::Client {
        let unverified = self
            .schemes
            .lock()
            .ok()
            .and_then(|known| known.get(domain).copied())
            == Some(Scheme::HttpsUnverified);
        if unverified {
            &self.http_unverified
        } else {
            &self.http
        }
    }

    /// Whether `url` is on the registry `domain` itself (scheme, host and port): credentials
    /// go there and nowhere else (upload locations and redirects may name other hosts).
    fn is_registry_url(&self, domain: &str, url: &reqwest::Url) -> bool {
        let Ok(base) = reqwest::Url::parse(&self.base_url(domain)) else {
            return false;
        };
        base.scheme() == url.scheme()
            && base.host_str() == url.host_str()
            && base.port_or_known_default() == url.port_or_known_default()
    }

    /// `<base>/v2/<path>/<rest>`.
    pub fn url(&self, reference: &Reference, rest: &str) -> String {
        format!(
            "{}/v2/{}/{rest}",
            self.base_url(&reference.domain),
            reference.path
        )
    }

    /// Sends the request `make` builds, authenticating and retrying as the module says.
    /// `scopes` are the token scopes it needs (`repository:NAME:pull`, ...).
    pub(crate) async fn send(
        &self,
        domain: &str,
        scopes: &[String],
        what: &str,
        make: &MakeRequest<'_>,
    ) -> Result<reqwest::Response, RegistryError> {
        self.send_with_retries(domain, scopes, what, make, self.options.retries)
            .await
    }

    /// [`Client::send`] with `retries` attempts after the first for transient failures (0 for
    /// requests that must not be repeated blindly, such as an upload chunk the registry may
    /// already have taken).
    pub(crate) async fn send_with_retries(
        &self,
        domain: &str,
        scopes: &[String],
        what: &str,
        make: &MakeRequest<'_>,
        retries: u32,
    ) -> Result<reqwest::Response, RegistryError> {
        let mut attempt = 0;
        let mut authenticated = false;
        loop {
            let (client, request) = make(self.http_for(domain))?.build_split();
            let mut request = request.map_err(|e| transport(what, "", &e))?;
            if self.is_registry_url(domain, request.url()) {
                if let Some(header) = self.authorization(domain, scopes).await {
                    let value = reqwest::header::HeaderValue::from_str(&header).map_err(|_| {
                        RegistryError::invalid(what, "a credential is not a valid header value")
                    })?;
                    request
                        .headers_mut()
                        .insert(reqwest::header::AUTHORIZATION, value);
                }
            }
            let url = request.url().to_string();
            let error = match client.execute(request).await {
                // Only the registry itself may ask for credentials (not a host it redirected
                // to).
                Ok(response)
                    if response.status() == reqwest::StatusCode::UNAUTHORIZED
                        && self.is_registry_url(domain, response.url()) =>
                {
                    let challenges: Vec<Challenge> = response
                        .headers()
                        .get_all(reqwest::header::WWW_AUTHENTICATE)
                        .iter()
                        .filter_map(|v| v.to_str().ok())
                        .flat_map(challenge::parse)
                        .collect();
                    let detail = status_error(what, response).await.to_string();
                    if authenticated || challenges.is_empty() {
                        let anonymous = self.credential(domain).await?.is_none();
                        return Err(RegistryError::Unauthorized {
                            what: what.to_string(),
                            registry: domain.to_string(),
                            anonymous,
                            detail,
                        });
                    }
                    self.authenticate(domain, scopes, what, challenges).await?;
                    authenticated = true;
                    continue;
                }
                Ok(response)
                    if matches!(
                        response.status().as_u16(),
                        408 | 429 | 500 | 502 | 503 | 504
                    ) =>
                {
                    status_error(what, response).await
                }
                Ok(response) => return Ok(response),
                Err(e) => transport(what, &url, &e),
            };
            if attempt >= retries {
                return Err(error);
            }
            tokio::time::sleep(self.backoff(attempt)).await;
            attempt += 1;
        }
    }

    /// The wait before retry `attempt` (0-based).
    pub(crate) fn backoff(&self, attempt: u32) -> Duration {
        self.options.backoff * 2u32.saturating_pow(attempt.min(6))
    }

    /// The credential for `domain`, looked up once. The lookup may run a credential helper,
    /// so it runs on a blocking thread, with no lock held, and at most 60 s.
    async fn credential(&self, domain: &str) -> Result<Option<Credential>, RegistryError> {
        if let Some(known) = self
            .auth
            .lock()
            .await
            .get(domain)
            .and_then(|e| e.credential.clone())
        {
            return Ok(known);
        }
        let dir = self.options.docker_config.clone();
        let name = domain.to_string();
        let lookup =
            tokio::task::spawn_blocking(move || credentials::lookup(dir.as_deref(), &name));
        let found = match tokio::time::timeout(Duration::from_secs(60), lookup).await {
            Ok(Ok(found)) => found?,
            Ok(Err(e)) => {
                return Err(RegistryError::Credentials {
                    registry: domain.to_string(),
                    detail: format!("the lookup failed: {e}"),
                })
            }
            Err(_) => {
                return Err(RegistryError::Credentials {
                    registry: domain.to_string(),
                    detail: "the credential helper did not answer within 60 s".to_string(),
                })
            }
        };
        let mut auth = self.auth.lock().await;
        auth.entry(domain.to_string()).or_default().credential = Some(found.clone());
        Ok(found)
    }

    /// The Authorization header for a request to `domain` needing `scopes`, if any is known.
    async fn authorization(&self, domain: &str, scopes: &[String]) -> Option<String> {
        let auth = self.auth.lock().await;
        let entry = auth.get(domain)?;
        match entry.challenge.as_ref()?.scheme.as_str() {
            "bearer" => entry
                .tokens
                .get(&scopes.join(" "))
                .map(|t| format!("Bearer {t}")),
            "basic" => match entry.credential.as_ref()?.as_ref()? {
                Credential::Basic { username, password } => Some(basic_header(username, password)),
                Credential::IdentityToken(_) => None,
            },
            _ => None,
        }
    }

    /// Answers a challenge: remembers basic credentials, or gets a bearer token for `scopes`.
    async fn authenticate(
        &self,
        domain: &str,
        scopes: &[String],
        what: &str,
        challenges: Vec<Challenge>,
    ) -> Result<(), RegistryError> {
        let credential = self.credential(domain).await?;
        let chosen = challenges
            .iter()
            .find(|c| c.scheme == "bearer")
            .or_else(|| challenges.iter().find(|c| c.scheme == "basic"))
            .cloned()
            .ok_or_else(|| {
                RegistryError::invalid(
                    what,
                    format!(
                        "{domain} asks for an authentication scheme rbuild does not speak ({})",
                        challenges
                            .iter()
                            .map(|c| c.scheme.clone())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                )
            })?;
        if chosen.scheme == "basic" {
            if !matches!(credential, Some(Credential::Basic { .. })) {
                return Err(RegistryError::Unauthorized {
                    what: what.to_string(),
                    registry: domain.to_string(),
                    anonymous: true,
                    detail: "the registry wants basic authentication".to_string(),
                });
            }
            let mut auth = self.auth.lock().await;
            auth.entry(domain.to_string()).or_default().challenge = Some(chosen);
            return Ok(());
        }
        let token = self
            .fetch_token(domain, &chosen, scopes, credential.as_ref(), what)
            .await?;
        let mut auth = self.auth.lock().await;
        let entry = auth.entry(domain.to_string()).or_default();
        entry.challenge = Some(chosen);
        entry.tokens.insert(scopes.join(" "), token);
        Ok(())
    }

    /// Asks the challenge's token endpoint for a token covering `scopes`: GET with basic
    /// credentials (or none), or the OAuth2 refresh-token POST for an identity token.
    async fn fetch_token(
        &self,
        domain: &str,
        challenge: &Challenge,
        scopes: &[String],
        credential: Option<&Credential>,
        what: &str,
    ) -> Result<String, RegistryError> {
        let realm = challenge.param("realm").ok_or_else(|| {
            RegistryError::invalid(what, format!("{domain}'s bearer challenge has no realm"))
        })?;
        let mut url = reqwest::Url::parse(realm).map_err(|e| {
            RegistryError::invalid(what, format!("{domain}'s token realm `{realm}`: {e}"))
        })?;
        if url.scheme() != "https" && self.base_url(domain).starts_with("https://") {
            return Err(RegistryError::invalid(
                what,
                format!("{domain} is HTTPS but names a plain-HTTP token endpoint `{realm}`; rbuild does not send credentials there"),
            ));
        }
        // An insecure registry's unverified TLS extends to its own host only.
        let token_http = if self.is_registry_url(domain, &url) {
            self.http_for(domain)
        } else {
            &self.http
        };
        let service = challenge.param("service").unwrap_or_default();
        let request = match credential {
            Some(Credential::IdentityToken(refresh)) => {
                let scope = scopes.join(" ");
                let form = [
                    ("grant_type", "refresh_token"),
                    ("refresh_token", refresh.as_str()),
                    ("service", service),
                    ("scope", scope.as_str()),
                    ("client_id", "rbuild"),
                ];
                let body = form
                    .iter()
                    .map(|(k, v)| format!("{k}={}", form_encode(v)))
                    .collect::<Vec<_>>()
                    .join("&");
                token_http
                    .post(url.clone())
                    .header(
                        reqwest::header::CONTENT_TYPE,
                        "application/x-www-form-urlencoded",
                    )
                    .body(body)
            }
            other => {
                {
                    let mut query = url.query_pairs_mut();
                    if !service.is_empty() {
                        query.append_pair("service", service);
                    }
                    for scope in scopes {
                        query.append_pair("scope", scope);
                    }
                }
                let request = token_http.get(url.clone());
                match other {
                    Some(Credential::Basic { username, password }) => request.header(
                        reqwest::header::AUTHORIZATION,
                        basic_header(username, password),
                    ),
                    _ => request,
                }
            }
        };
        let what_token = format!("{what}: token from {}", shown_url(url.as_str()));
        let response = request
            .send()
            .await
            .map_err(|e| transport(&what_token, url.as_str(), &e))?;
        if response.status() == reqwest::StatusCode::UNAUTHORIZED
            || response.status() == reqwest::StatusCode::FORBIDDEN
        {
            let detail = status_error(&what_token, response).await.to_string();
            return Err(RegistryError::Unauthorized {
                what: what.to_string(),
                registry: domain.to_string(),
                anonymous: credential.is_none(),
                detail,
            });
        }
        if !response.status().is_success() {
            return Err(status_error(&what_token, response).await);
        }
        let bytes = read_capped(response, TOKEN_REPLY_LIMIT)
            .await
            .ok_or_else(|| {
                RegistryError::invalid(
                    &what_token,
                    "the token reply is larger than 1 MiB or broken",
                )
            })?;
        let reply: TokenReply = serde_json::from_slice(&bytes)
            .map_err(|e| RegistryError::invalid(&what_token, format!("not a token reply: {e}")))?;
        reply
            .token
            .or(reply.access_token)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| RegistryError::invalid(&what_token, "the reply has no token"))
    }
}

fn basic_header(username: &str, password: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{username}:{password}"))
    )
}

/// `application/x-www-form-urlencoded` encoding of one value.
fn form_encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'*' => {
                out.push(b as char)
            }
            b' ' => out.push('+'),
            b => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_http_only_for_loopback_and_insecure_registries() {
        let client = Client::new(ClientOptions {
            insecure: vec!["reg.lan:5000".into()],
            ..ClientOptions::default()
        })
        .expect("client");
        assert_eq!(client.base_url("docker.io"), "https://registry-1.docker.io");
        assert_eq!(client.base_url("ghcr.io"), "https://ghcr.io");
        assert_eq!(client.base_url("localhost:5000"), "http://localhost:5000");
        assert_eq!(client.base_url("127.0.0.1:39999"), "http://127.0.0.1:39999");
        assert_eq!(client.base_url("reg.lan:5000"), "http://reg.lan:5000");
        assert_eq!(client.base_url("reg.lan:5001"), "https://reg.lan:5001");
    }

    #[test]
    fn credentials_go_to_the_registry_itself_only() {
        let client = Client::new(ClientOptions::default()).expect("client");
        let url = |u: &str| reqwest::Url::parse(u).expect("url");
        let domain = "127.0.0.1:5000";
        assert!(client.is_registry_url(
            domain,
            &url("http://127.0.0.1:5000/v2/a/blobs/uploads/x?_state=1")
        ));
        assert!(
            !client.is_registry_url(domain, &url("http://127.0.0.1:5001/v2/")),
            "other port"
        );
        assert!(
            !client.is_registry_url(domain, &url("http://10.0.0.1:5000/v2/")),
            "other host"
        );
        assert!(
            !client.is_registry_url(domain, &url("https://127.0.0.1:5000/v2/")),
            "other scheme"
        );
        assert!(client.is_registry_url("ghcr.io", &url("https://ghcr.io:443/v2/")));
        assert!(!client.is_registry_url("ghcr.io", &url("https://storage.example/blob?sig=x")));
    }

    #[test]
    fn error_urls_lose_their_query() {
        assert_eq!(
            shown_url("https://storage.example/blob/x?X-Amz-Signature=secret"),
            "https://storage.example/blob/x"
        );
    }

    #[test]
    fn form_values_are_encoded() {
        assert_eq!(
            form_encode("repository:a/b:pull push"),
            "repository%3Aa%2Fb%3Apull+push"
        );
    }
}
