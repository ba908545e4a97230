//! `WWW-Authenticate` challenges (RFC 7235): `Bearer realm="...",service="...",scope="..."`
//! or `Basic realm="..."`.

use std::collections::BTreeMap;

/// One challenge: its scheme (lowercased) and parameters (keys lowercased).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    pub scheme: String,
    pub params: BTreeMap<String, String>,
}

impl Challenge {
    pub fn param(&self, key: &str) -> Option<&str> {
        self.params.get(key).map(String::as_str)
    }
}

/// Parses every challenge of one header value. Unparsable tails are dropped, never a panic.
pub fn parse(header: &str) -> Vec<Challenge> {
    let mut out: Vec<Challenge> = Vec::new();
    let mut rest = header.trim();
    while !rest.is_empty() {
        // A scheme token, then parameters `key=value` or `key="quoted"`, comma separated. A
        // token followed by a space and not by `=` starts the next challenge.
        let token_end = rest
            .find(|c: char| c.is_whitespace() || c == ',' || c == '=')
            .unwrap_or(rest.len());
        let token = &rest[..token_end];
        let after = rest[token_end..].trim_start();
        if after.starts_with('=') && !out.is_empty() {
            // A parameter of the current challenge.
            let (value, tail) = parse_value(after[1..].trim_start());
            if let Some(last) = out.last_mut() {
                last.params.insert(token.to_ascii_lowercase(), value);
            }
            rest = tail.trim_start().trim_start_matches(',').trim_start();
        } else if token.is_empty() {
            // Stray punctuation (`,`, `=` with no challenge yet): skip one character, so every
            // turn of the loop consumes input.
            let mut chars = rest.chars();
            chars.next();
            rest = chars.as_str().trim_start();
        } else {
            out.push(Challenge {
                scheme: token.to_ascii_lowercase(),
                params: BTreeMap::new(),
            });
            rest = after.trim_start_matches(',').trim_start();
        }
    }
    out
}

/// A parameter value: a quoted string (with `\` escapes) or a token up to the next comma.
fn parse_value(text: &str) -> (String, &str) {
    if let Some(quoted) = text.strip_prefix('"') {
        let mut value = String::new();
        let mut chars = quoted.char_indices();
        while let Some((i, c)) = chars.next() {
            match c {
                '\\' => {
                    if let Some((_, escaped)) = chars.next() {
                        value.push(escaped);
                    }
                }
                '"' => return (value, &quoted[i + 1..]),
                c => value.push(c),
            }
        }
        (value, "")
    } else {
        let end = text.find(',').unwrap_or(text.len());
        (text[..end].trim().to_string(), &text[end..])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_challenge_with_quoted_params() {
        let c = parse(
            r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/alpine:pull,push""#,
        );
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].scheme, "bearer");
        assert_eq!(c[0].param("realm"), Some("https://auth.docker.io/token"));
        assert_eq!(c[0].param("service"), Some("registry.docker.io"));
        assert_eq!(
            c[0].param("scope"),
            Some("repository:library/alpine:pull,push")
        );
    }

    #[test]
    fn basic_and_several_challenges() {
        let c = parse(r#"Basic realm="Registry Realm", Bearer realm=http://x/t,service=s"#);
        assert_eq!(c.len(), 2);
        assert_eq!(c[0].scheme, "basic");
        assert_eq!(c[0].param("realm"), Some("Registry Realm"));
        assert_eq!(c[1].scheme, "bearer");
        assert_eq!(c[1].param("realm"), Some("http://x/t"));
        assert_eq!(c[1].param("service"), Some("s"));
    }

    #[test]
    fn garbage_never_panics() {
        for text in [
            "",
            "=",
            "\"",
            "Bearer realm=\"",
            ",,,",
            "a=b",
            "Bearer ,=,=\"\\",
            ",=x",
            "==",
            "=,=",
            " , = Basic",
        ] {
            // Also: every input ends (this loop used to spin on `,=x`).
            let _ = parse(text);
        }
    }
}
