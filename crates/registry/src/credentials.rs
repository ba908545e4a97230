//! Credentials as the docker CLI keeps them: `$DOCKER_CONFIG/config.json` (default
//! `~/.docker/config.json`) with `auths` entries (`auth` = base64 `user:password`, or
//! `username`/`password`, or an `identitytoken`), and credential helpers named by
//! `credHelpers` (per registry) or `credsStore` (for all), run as `docker-credential-NAME get`
//! with the registry on stdin.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use base64::Engine as _;
use serde::Deserialize;

use crate::RegistryError;

/// What to present to a registry.
#[derive(Clone, PartialEq, Eq)]
pub enum Credential {
    Basic {
        username: String,
        password: String,
    },
    /// An OAuth2 refresh token (`docker login` with an identity provider).
    IdentityToken(String),
}

impl std::fmt::Debug for Credential {
    /// Never prints a secret.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Credential::Basic { username, .. } => write!(f, "Basic({username}, ***)"),
            Credential::IdentityToken(_) => write!(f, "IdentityToken(***)"),
        }
    }
}

#[derive(Debug, Default, Deserialize)]
struct ConfigFile {
    #[serde(default)]
    auths: std::collections::BTreeMap<String, AuthEntry>,
    #[serde(default, rename = "credsStore")]
    creds_store: Option<String>,
    #[serde(default, rename = "credHelpers")]
    cred_helpers: std::collections::BTreeMap<String, String>,
}

#[derive(Debug, Default, Deserialize)]
struct AuthEntry {
    #[serde(default)]
    auth: Option<String>,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    password: Option<String>,
    #[serde(default)]
    identitytoken: Option<String>,
}

#[derive(Debug, Deserialize)]
struct HelperReply {
    #[serde(rename = "Username", default)]
    username: String,
    #[serde(rename = "Secret", default)]
    secret: String,
}

/// The docker config directory: `$DOCKER_CONFIG`, else `$HOME/.docker`.
pub fn config_dir() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("DOCKER_CONFIG").filter(|d| !d.is_empty()) {
        return Some(PathBuf::from(dir));
    }
    std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".docker"))
}

/// The keys under which docker may have stored `domain` in `auths`.
fn key_matches(key: &str, domain: &str) -> bool {
    let host = key
        .trim_start_matches("https://")
        .trim_start_matches("http://");
    let host = host.split('/').next().unwrap_or(host);
    if domain == crate::reference::DEFAULT_DOMAIN {
        matches!(
            host,
            "docker.io" | "index.docker.io" | "registry-1.docker.io" | "registry.hub.docker.com"
        )
    } else {
        host == domain
    }
}

/// The name docker's helpers know `domain` by (Docker Hub's is its v1 index URL).
fn helper_server(domain: &str) -> String {
    if domain == crate::reference::DEFAULT_DOMAIN {
        "https://index.docker.io/v1/".to_string()
    } else {
        domain.to_string()
    }
}

/// Looks up the credential for `domain` in the config under `dir` (none: `Ok(None)`).
pub fn lookup(dir: Option<&Path>, domain: &str) -> Result<Option<Credential>, RegistryError> {
    let Some(dir) = dir else { return Ok(None) };
    let path = dir.join("config.json");
    let bytes = match std::fs::read(&path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(RegistryError::Credentials {
                registry: domain.to_string(),
                detail: format!("cannot read {}: {e}", path.display()),
            })
        }
    };
    let config: ConfigFile =
        serde_json::from_slice(&bytes).map_err(|e| RegistryError::Credentials {
            registry: domain.to_string(),
            detail: format!("{} is not valid: {e}", path.display()),
        })?;
    let helper = config
        .cred_helpers
        .iter()
        .find(|(k, _)| key_matches(k, domain))
        .map(|(_, v)| v.clone())
        .or(config.creds_store.clone());
    if let Some(helper) = helper.filter(|h| !h.is_empty()) {
        if let Some(found) = run_helper(&helper, domain)? {
            return Ok(Some(found));
        }
    }
    let Some(entry) = config
        .auths
        .iter()
        .find(|(k, _)| key_matches(k, domain))
        .map(|(_, v)| v)
    else {
        return Ok(None);
    };
    if let Some(token) = entry.identitytoken.as_ref().filter(|t| !t.is_empty()) {
        return Ok(Some(Credential::IdentityToken(token.clone())));
    }
    if let Some(auth) = entry.auth.as_ref().filter(|a| !a.is_empty()) {
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(auth.trim())
            .ok()
            .and_then(|d| String::from_utf8(d).ok())
            .ok_or_else(|| RegistryError::Credentials {
                registry: domain.to_string(),
                detail: format!(
                    "the `auth` of {} is not base64 of user:password",
                    path.display()
                ),
            })?;
        let (username, password) =
            decoded
                .split_once(':')
                .ok_or_else(|| RegistryError::Credentials {
                    registry: domain.to_string(),
                    detail: format!("the `auth` of {} has no `:`", path.display()),
                })?;
        return Ok(Some(Credential::Basic {
            username: username.to_string(),
            password: password.to_string(),
        }));
    }
    match (&entry.username, &entry.password) {
        (Some(u), Some(p)) if !u.is_empty() => Ok(Some(Credential::Basic {
            username: u.clone(),
            password: p.clone(),
        })),
        _ => Ok(None),
    }
}

/// Runs `docker-credential-NAME get`. "credentials not found" is `Ok(None)`.
fn run_helper(name: &str, domain: &str) -> Result<Option<Credential>, RegistryError> {
    let program = format!("docker-credential-{name}");
    let fail = |detail: String| RegistryError::Credentials {
        registry: domain.to_string(),
        detail,
    };
    let mut child = Command::new(&program)
        .arg("get")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| fail(format!("cannot run the credential helper `{program}`: {e}")))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(helper_server(domain).as_bytes())
            .map_err(|e| fail(format!("`{program} get`: {e}")))?;
    }
    let out = child
        .wait_with_output()
        .map_err(|e| fail(format!("`{program} get`: {e}")))?;
    if !out.status.success() {
        let text = String::from_utf8_lossy(&out.stdout).to_string()
            + &String::from_utf8_lossy(&out.stderr);
        if text.to_lowercase().contains("credentials not found") {
            return Ok(None);
        }
        return Err(fail(format!(
            "`{program} get` failed ({}): {}",
            out.status,
            text.trim()
        )));
    }
    let reply: HelperReply = serde_json::from_slice(&out.stdout)
        .map_err(|e| fail(format!("`{program} get` printed invalid JSON: {e}")))?;
    if reply.username == "<token>" {
        return Ok(Some(Credential::IdentityToken(reply.secret)));
    }
    Ok(Some(Credential::Basic {
        username: reply.username,
        password: reply.secret,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, text: &str) {
        std::fs::write(dir.join("config.json"), text).expect("write config");
    }

    #[test]
    fn auths_entries_by_host_and_url() {
        let dir = tempfile::tempdir().expect("tempdir");
        let auth = base64::engine::general_purpose::STANDARD.encode("alice:s3cr:et");
        write(
            dir.path(),
            &format!(
                r#"{{"auths": {{"https://index.docker.io/v1/": {{"auth": "{auth}"}},
                     "127.0.0.1:5000": {{"username": "bob", "password": "pw"}},
                     "http://reg.example:8443/v2/": {{"identitytoken": "tok"}}}}}}"#
            ),
        );
        let basic = |u: &str, p: &str| {
            Some(Credential::Basic {
                username: u.into(),
                password: p.into(),
            })
        };
        assert_eq!(
            lookup(Some(dir.path()), "docker.io").expect("hub"),
            basic("alice", "s3cr:et")
        );
        assert_eq!(
            lookup(Some(dir.path()), "127.0.0.1:5000").expect("local"),
            basic("bob", "pw")
        );
        assert_eq!(
            lookup(Some(dir.path()), "reg.example:8443").expect("token"),
            Some(Credential::IdentityToken("tok".into()))
        );
        assert_eq!(
            lookup(Some(dir.path()), "other.example").expect("none"),
            None
        );
        assert_eq!(lookup(None, "docker.io").expect("no dir"), None);
    }

    #[test]
    fn credential_helper_is_run_with_the_server_on_stdin() {
        let dir = tempfile::tempdir().expect("tempdir");
        let bin = dir.path().join("bin");
        std::fs::create_dir(&bin).expect("mkdir");
        let helper = bin.join("docker-credential-rbuildtest");
        std::fs::write(
            &helper,
            "#!/bin/sh\nread server\n[ \"$1\" = get ] || exit 3\nif [ \"$server\" = 127.0.0.1:5001 ]; then echo '{\"ServerURL\":\"x\",\"Username\":\"helper-user\",\"Secret\":\"helper-pw\"}'; else echo 'credentials not found in native keychain'; exit 1; fi\n",
        )
        .expect("write helper");
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&helper, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        write(
            dir.path(),
            r#"{"credHelpers": {"127.0.0.1:5001": "rbuildtest"}, "credsStore": "rbuildtest"}"#,
        );
        let path = format!(
            "{}:{}",
            bin.display(),
            std::env::var("PATH").unwrap_or_default()
        );
        // The helper is found through PATH; set it for this process (tests in this module do
        // not read PATH otherwise).
        std::env::set_var("PATH", path);
        assert_eq!(
            lookup(Some(dir.path()), "127.0.0.1:5001").expect("helper"),
            Some(Credential::Basic {
                username: "helper-user".into(),
                password: "helper-pw".into()
            })
        );
        // credsStore answers "not found" for another registry: no credential, no error.
        assert_eq!(
            lookup(Some(dir.path()), "127.0.0.1:5002").expect("none"),
            None
        );
    }
}
