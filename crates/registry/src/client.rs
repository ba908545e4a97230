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

/// A registry client shared by every pull and push of a command.
#[derive(Debug)]
pub struct Client {
    http: reqwest::Client,
    pub(crate) options: ClientOptions,
    auth: Mutex<HashMap<String, RegistryAuth>>,
    /// The scheme found by [`Client::prepare`] for registries that may be plain HTTP.
    schemes: std::sync::Mutex<HashMap<String, &'static str>>,
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
        url: url.to_string(),
        detail,
    }
}

/// The error for a response that is not what the caller wanted (its body, shortened).
pub(crate) async fn status_error(what: &str, response: reqwest::Response) -> RegistryError {
    let status = response.status().as_u16();
    let url = response.url().to_string();
    let body = response.text().await.unwrap_or_default();
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
        let http = reqwest::Client::builder()
            .user_agent(concat!("rbuild/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(Duration::from_secs(30))
            .read_timeout(Duration::from_secs(120))
            .pool_max_idle_per_host(16)
            .build()
            .map_err(|e| transport("create the HTTP client", "", &e))?;
        Ok(Client {
            http,
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
        let probe = self
            .http
            .get(format!("https://{domain}/v2/"))
            .timeout(Duration::from_secs(5))
            .send()
            .await;
        // A server that presented a certificate speaks TLS: falling back to plain HTTP would
        // only hide the certificate error, which the requests then report.
        let scheme = match &probe {
            Ok(_) => "https",
            Err(e) if transport("", "", e).to_string().contains("certificate") => "https",
            Err(_) => "http",
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
            Some(scheme) => scheme,
            None if self.may_be_plain(domain) => "http",
            None => "https",
        };
        format!("{scheme}://{host}")
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
        let mut attempt = 0;
        let mut authenticated = false;
        loop {
            let mut request = make(&self.http)?;
            if let Some(header) = self.authorization(domain, scopes).await {
                request = request.header(reqwest::header::AUTHORIZATION, header);
            }
            let (client, request) = request.build_split();
            let request = request.map_err(|e| transport(what, "", &e))?;
            let url = request.url().to_string();
            let error = match client.execute(request).await {
                Ok(response) if response.status() == reqwest::StatusCode::UNAUTHORIZED => {
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
            if attempt >= self.options.retries {
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

    async fn credential(&self, domain: &str) -> Result<Option<Credential>, RegistryError> {
        let mut auth = self.auth.lock().await;
        let entry = auth.entry(domain.to_string()).or_default();
        if entry.credential.is_none() {
            entry.credential = Some(credentials::lookup(
                self.options.docker_config.as_deref(),
                domain,
            )?);
        }
        Ok(entry.credential.clone().flatten())
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
                self.http
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
                let request = self.http.get(url.clone());
                match other {
                    Some(Credential::Basic { username, password }) => request.header(
                        reqwest::header::AUTHORIZATION,
                        basic_header(username, password),
                    ),
                    _ => request,
                }
            }
        };
        let what_token = format!("{what}: token from {}", url.as_str());
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
        let reply: TokenReply = response
            .json()
            .await
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
    fn form_values_are_encoded() {
        assert_eq!(
            form_encode("repository:a/b:pull push"),
            "repository%3Aa%2Fb%3Apull+push"
        );
    }
}
