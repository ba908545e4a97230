//! Image references, with the grammar and normalisation of Docker's `distribution/reference`:
//!
//! ```text
//! reference  := name [ ":" tag ] [ "@" digest ]
//! name       := [ domain "/" ] component ( "/" component )*
//! domain     := host [ ":" port ]        (the first part, when it has a "." or ":" or is "localhost")
//! component  := [a-z0-9]+ ( ( "." | "_" | "__" | "-"+ ) [a-z0-9]+ )*
//! tag        := [A-Za-z0-9_] [A-Za-z0-9_.-]{0,127}
//! digest     := algorithm ":" hex        (sha256: 64 lowercase hex digits)
//! ```
//! Normalised: no domain means `docker.io`; a one-component name on `docker.io` gets
//! `library/`; neither tag nor digest means `:latest` (a digest alone pins, no tag is added).
//! The whole name is at most 255 characters. Uppercase in the repository is an error with
//! Docker's message.

use std::fmt;

/// Docker Hub, the registry of names without a domain.
pub const DEFAULT_DOMAIN: &str = "docker.io";
/// What `docker.io` names without a namespace are under.
pub const OFFICIAL_NAMESPACE: &str = "library";
pub const DEFAULT_TAG: &str = "latest";
const MAX_NAME: usize = 255;

/// A normalised image reference.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Reference {
    /// `docker.io`, `localhost:5000`, `127.0.0.1:5000`, `ghcr.io`, ...
    pub domain: String,
    /// `library/alpine`, `org/team/app`.
    pub path: String,
    /// `None` only when a digest pins the reference.
    pub tag: Option<String>,
    /// `sha256:<hex>`.
    pub digest: Option<String>,
}

/// Why a reference is invalid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReferenceError {
    #[error("invalid reference format: `{0}` is empty")]
    Empty(String),
    #[error("invalid reference format: repository name must be lowercase (`{0}`)")]
    Uppercase(String),
    #[error("invalid reference format: `{reference}`: {reason}")]
    Invalid { reference: String, reason: String },
    #[error("repository name must not be more than {MAX_NAME} characters (`{0}`)")]
    TooLong(String),
}

fn invalid(reference: &str, reason: impl Into<String>) -> ReferenceError {
    ReferenceError::Invalid {
        reference: reference.to_string(),
        reason: reason.into(),
    }
}

fn is_alnum(c: char) -> bool {
    c.is_ascii_lowercase() || c.is_ascii_digit()
}

/// `[a-z0-9]+ ( ( "." | "_" | "__" | "-"+ ) [a-z0-9]+ )*`
fn valid_component(component: &str) -> bool {
    let bytes: Vec<char> = component.chars().collect();
    if bytes.is_empty() || !is_alnum(bytes[0]) || !is_alnum(bytes[bytes.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < bytes.len() {
        if is_alnum(bytes[i]) {
            i += 1;
            continue;
        }
        // A separator: ".", "_", "__" or a run of "-", followed by an alphanumeric.
        let start = i;
        match bytes[i] {
            '.' => i += 1,
            '_' => {
                i += 1;
                if bytes.get(i) == Some(&'_') {
                    i += 1;
                }
            }
            '-' => {
                while bytes.get(i) == Some(&'-') {
                    i += 1;
                }
            }
            _ => return false,
        }
        if i == start || !bytes.get(i).is_some_and(|c| is_alnum(*c)) {
            return false;
        }
    }
    true
}

/// `host [":" port]`: DNS-ish labels (letters, digits, "-", "."), or a bracketed IPv6 address.
fn valid_domain(domain: &str) -> bool {
    let valid_port = |port: &str| !port.is_empty() && port.chars().all(|c| c.is_ascii_digit());
    if let Some(rest) = domain.strip_prefix('[') {
        let Some((inner, after)) = rest.split_once(']') else {
            return false;
        };
        let port_ok = after.is_empty() || after.strip_prefix(':').is_some_and(valid_port);
        return port_ok
            && !inner.is_empty()
            && inner.chars().all(|c| c.is_ascii_hexdigit() || c == ':');
    }
    let (host, port) = match domain.split_once(':') {
        Some((h, p)) => (h, Some(p)),
        None => (domain, None),
    };
    if port.is_some_and(|p| !valid_port(p)) {
        return false;
    }
    !host.is_empty()
        && host.split('.').all(|label| {
            !label.is_empty()
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

fn valid_tag(tag: &str) -> bool {
    let mut chars = tag.chars();
    let Some(first) = chars.next() else {
        return false;
    };
    tag.len() <= 128
        && (first.is_ascii_alphanumeric() || first == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

fn valid_digest(digest: &str) -> bool {
    match digest.split_once(':') {
        Some(("sha256", hex)) => {
            hex.len() == 64
                && hex
                    .chars()
                    .all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c))
        }
        Some(("sha512", hex)) => {
            hex.len() == 128
                && hex
                    .chars()
                    .all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c))
        }
        _ => false,
    }
}

impl Reference {
    /// Parses and normalises `text` as `docker pull` would.
    pub fn parse(text: &str) -> Result<Reference, ReferenceError> {
        if text.is_empty() {
            return Err(ReferenceError::Empty(text.to_string()));
        }
        let (rest, digest) = match text.split_once('@') {
            Some((rest, digest)) => {
                if !valid_digest(digest) {
                    return Err(invalid(text, format!("`{digest}` is not a valid digest")));
                }
                (rest, Some(digest.to_string()))
            }
            None => (text, None),
        };
        // A tag is after the last ":" that comes after the last "/" (a port is before it).
        let last_slash = rest.rfind('/').map_or(0, |i| i + 1);
        let (name, tag) = match rest[last_slash..].rfind(':') {
            Some(i) => {
                let tag = &rest[last_slash + i + 1..];
                if !valid_tag(tag) {
                    return Err(invalid(text, format!("`{tag}` is not a valid tag")));
                }
                (&rest[..last_slash + i], Some(tag.to_string()))
            }
            None => (rest, None),
        };
        if name.is_empty() {
            return Err(invalid(text, "the repository name is empty"));
        }
        let (domain, path) = match name.split_once('/') {
            Some((first, path))
                if first.contains('.') || first.contains(':') || first == "localhost" =>
            {
                if !valid_domain(first) {
                    return Err(invalid(
                        text,
                        format!("`{first}` is not a valid registry host"),
                    ));
                }
                (first.to_string(), path.to_string())
            }
            _ => (DEFAULT_DOMAIN.to_string(), name.to_string()),
        };
        if path.chars().any(|c| c.is_ascii_uppercase()) {
            return Err(ReferenceError::Uppercase(text.to_string()));
        }
        if let Some(bad) = path.split('/').find(|c| !valid_component(c)) {
            return Err(invalid(
                text,
                format!("`{bad}` is not a valid path component"),
            ));
        }
        let path = if domain == DEFAULT_DOMAIN && !path.contains('/') {
            format!("{OFFICIAL_NAMESPACE}/{path}")
        } else {
            path
        };
        if domain.len() + 1 + path.len() > MAX_NAME {
            return Err(ReferenceError::TooLong(text.to_string()));
        }
        let tag = match (tag, &digest) {
            (None, None) => Some(DEFAULT_TAG.to_string()),
            (tag, _) => tag,
        };
        Ok(Reference {
            domain,
            path,
            tag,
            digest,
        })
    }

    /// `domain/path`.
    pub fn name(&self) -> String {
        format!("{}/{}", self.domain, self.path)
    }

    /// The shortest form Docker shows: `alpine:3`, `org/app:1`, `localhost:5000/app:1`.
    pub fn familiar(&self) -> String {
        let name = if self.domain == DEFAULT_DOMAIN {
            self.path
                .strip_prefix("library/")
                .unwrap_or(&self.path)
                .to_string()
        } else {
            self.name()
        };
        let mut out = name;
        if let Some(tag) = &self.tag {
            out.push(':');
            out.push_str(tag);
        }
        if let Some(digest) = &self.digest {
            out.push('@');
            out.push_str(digest);
        }
        out
    }

    /// Whether the registry is reached over plain HTTP by default, as Docker does: only
    /// `localhost` and loopback addresses (others need `--insecure-registry`).
    pub fn is_loopback(&self) -> bool {
        let host = self
            .domain
            .rsplit_once(':')
            .map_or(self.domain.as_str(), |(h, p)| {
                if p.chars().all(|c| c.is_ascii_digit()) {
                    h
                } else {
                    self.domain.as_str()
                }
            });
        host == "localhost" || host.starts_with("127.") || host == "[::1]"
    }
}

impl fmt::Display for Reference {
    /// The full form: `docker.io/library/alpine:latest`, with `@digest` when pinned.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.name())?;
        if let Some(tag) = &self.tag {
            write!(f, ":{tag}")?;
        }
        if let Some(digest) = &self.digest {
            write!(f, "@{digest}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEX: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    fn full(text: &str) -> String {
        Reference::parse(text)
            .unwrap_or_else(|e| panic!("{text}: {e}"))
            .to_string()
    }

    #[test]
    fn names_are_normalised_as_docker_does() {
        assert_eq!(full("alpine"), "docker.io/library/alpine:latest");
        assert_eq!(full("alpine:3.19"), "docker.io/library/alpine:3.19");
        assert_eq!(full("library/alpine"), "docker.io/library/alpine:latest");
        assert_eq!(full("docker.io/alpine"), "docker.io/library/alpine:latest");
        assert_eq!(full("org/app:1"), "docker.io/org/app:1");
        assert_eq!(
            full("ghcr.io/org/team/app:v1.2-rc_3"),
            "ghcr.io/org/team/app:v1.2-rc_3"
        );
        assert_eq!(full("localhost/app"), "localhost/app:latest");
        assert_eq!(full("localhost:5000/app:1"), "localhost:5000/app:1");
        assert_eq!(
            full("127.0.0.1:5000/bench/busybox:1"),
            "127.0.0.1:5000/bench/busybox:1"
        );
        assert_eq!(full("[::1]:5000/app"), "[::1]:5000/app:latest");
        assert_eq!(full("[::1]/app"), "[::1]/app:latest");
    }

    #[test]
    fn digests_pin_and_keep_a_given_tag() {
        let pinned = format!("alpine@sha256:{HEX}");
        let r = Reference::parse(&pinned).expect("pinned");
        assert_eq!(r.tag, None);
        assert_eq!(
            r.to_string(),
            format!("docker.io/library/alpine@sha256:{HEX}")
        );
        let both = Reference::parse(&format!("localhost:5000/app:1@sha256:{HEX}")).expect("both");
        assert_eq!(
            (both.tag.as_deref(), both.digest.is_some()),
            (Some("1"), true)
        );
    }

    #[test]
    fn familiar_names_are_the_short_form() {
        assert_eq!(
            Reference::parse("alpine").expect("a").familiar(),
            "alpine:latest"
        );
        assert_eq!(
            Reference::parse("docker.io/org/app:2")
                .expect("b")
                .familiar(),
            "org/app:2"
        );
        assert_eq!(
            Reference::parse("localhost:5000/app")
                .expect("c")
                .familiar(),
            "localhost:5000/app:latest"
        );
    }

    #[test]
    fn invalid_references_are_refused_with_a_reason() {
        assert!(matches!(
            Reference::parse("Alpine"),
            Err(ReferenceError::Uppercase(_))
        ));
        assert!(matches!(
            Reference::parse(""),
            Err(ReferenceError::Empty(_))
        ));
        for bad in [
            "alpine:",
            "alpine:-x",
            ":tag",
            "a//b",
            "a/-b",
            "a/b-",
            "a..b",
            "a___b",
            "alpine@sha256:abc",
            "alpine@md5:0123",
            "local host:5000/app",
            "example.com:port/app",
            "[::1:5000/app",
            "[::1]:/app",
        ] {
            assert!(Reference::parse(bad).is_err(), "`{bad}` was accepted");
        }
        let long = format!("{}:1", "a".repeat(300));
        assert!(matches!(
            Reference::parse(&long),
            Err(ReferenceError::TooLong(_))
        ));
        let tag = format!("app:{}", "t".repeat(129));
        assert!(Reference::parse(&tag).is_err());
    }

    #[test]
    fn separators_follow_the_component_grammar() {
        for good in ["a.b", "a_b", "a__b", "a-b", "a---b", "a0.b1_c2__d3-e4"] {
            assert!(valid_component(good), "{good}");
        }
        for bad in [
            "", ".a", "a.", "a..b", "a___b", "a_.b", "-a", "a-", "a/b", "A",
        ] {
            assert!(!valid_component(bad), "{bad}");
        }
    }

    #[test]
    fn only_loopback_registries_are_plain_http_by_default() {
        assert!(Reference::parse("localhost:5000/a")
            .expect("l")
            .is_loopback());
        assert!(Reference::parse("127.0.0.1:5000/a")
            .expect("i")
            .is_loopback());
        assert!(Reference::parse("[::1]:5000/a").expect("6").is_loopback());
        assert!(!Reference::parse("registry.example.com/a")
            .expect("r")
            .is_loopback());
        assert!(!Reference::parse("alpine").expect("h").is_loopback());
    }
}
