//! The argument nodes of each instruction, decided the way BuildKit's parser decides them.
//!
//! | instruction | arguments |
//! |---|---|
//! | FROM, EXPOSE | split on runs of `[ \t\v\f\r]` |
//! | ADD, COPY, VOLUME | a JSON string array, else split like FROM |
//! | RUN, CMD, ENTRYPOINT, SHELL | a JSON string array, else the whole text as one argument |
//! | MAINTAINER, USER, WORKDIR, STOPSIGNAL | the whole text |
//! | ARG | quote-aware words, quotes kept |
//! | ENV, LABEL | key/value triples (`key`, `value`, `=` or `""` for the legacy form) |
//! | HEALTHCHECK | the type word, then the rest like RUN |
//! | ONBUILD | a nested instruction (handled by the caller) |
//! | anything else | one empty argument |
//!
//! Invalid JSON is not an error (it falls back to the non-JSON rule); a valid JSON array with a
//! non-string element is.

/// Arguments of one instruction.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct Args {
    pub values: Vec<String>,
    /// The arguments came from a JSON array (exec form).
    pub json: bool,
}

/// An argument error, at a byte offset of the instruction's argument text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ArgsError {
    pub message: String,
    pub offset: usize,
    pub len: usize,
    pub expected: Option<String>,
}

/// Splits on runs of the ASCII blanks BuildKit's `reWhitespace` knows.
pub(crate) fn is_split_blank(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\u{b}' | '\u{c}' | '\r')
}

/// Blank-separated words. Callers pass trimmed text, so no field is empty.
pub(crate) fn split_blanks(rest: &str) -> Vec<String> {
    rest.split(is_split_blank)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

/// Splits `rest` at its first run of blanks into two parts (Go's `Split(rest, 2)`).
fn split_blanks_once(rest: &str) -> Option<(&str, &str)> {
    let start = rest.find(is_split_blank)?;
    let head = &rest[..start];
    let tail = rest[start..].trim_start_matches(is_split_blank);
    Some((head, tail))
}

enum Json {
    Strings(Vec<String>),
    NotStrings { offset: usize },
    Invalid,
}

fn parse_json(rest: &str) -> Json {
    let trimmed = rest.trim_start();
    if !trimmed.starts_with('[') {
        return Json::Invalid;
    }
    let repaired;
    let text = if trimmed.contains("\\u") {
        repaired = replace_lone_surrogates(trimmed);
        repaired.as_str()
    } else {
        trimmed
    };
    match serde_json::from_str::<Vec<serde_json::Value>>(text) {
        Ok(values) => {
            let mut out = Vec::with_capacity(values.len());
            for value in values {
                match value {
                    serde_json::Value::String(s) => out.push(s),
                    _ => {
                        return Json::NotStrings {
                            offset: rest.len() - trimmed.len(),
                        }
                    }
                }
            }
            Json::Strings(out)
        }
        Err(_) => Json::Invalid,
    }
}

/// Go's JSON decoder turns a `\\uD800`-`\\uDFFF` escape that is not half of a valid pair into
/// U+FFFD; serde_json rejects it. Rewrite exactly those escapes (inside strings) to `\\ufffd`.
fn replace_lone_surrogates(json: &str) -> String {
    let hex_at = |i: usize| -> Option<u32> {
        let digits = json.get(i..i + 4)?;
        u32::from_str_radix(digits, 16)
            .ok()
            .filter(|_| digits.bytes().all(|b| b.is_ascii_hexdigit()))
    };
    let escape_at = |i: usize| -> Option<u32> {
        if json.get(i..i + 2) == Some("\\u") {
            hex_at(i + 2)
        } else {
            None
        }
    };
    let mut out = String::with_capacity(json.len());
    let mut in_string = false;
    let mut i = 0;
    while let Some(c) = json[i..].chars().next() {
        if !in_string {
            in_string = c == '"';
            out.push(c);
            i += c.len_utf8();
            continue;
        }
        match c {
            '"' => {
                in_string = false;
                out.push(c);
                i += 1;
            }
            '\\' => match escape_at(i) {
                Some(0xd800..=0xdbff) if matches!(escape_at(i + 6), Some(0xdc00..=0xdfff)) => {
                    out.push_str(&json[i..i + 12]);
                    i += 12;
                }
                Some(0xd800..=0xdfff) => {
                    out.push_str("\\ufffd");
                    i += 6;
                }
                _ => {
                    // Any other escape: copy the backslash and the escaped character.
                    out.push('\\');
                    i += 1;
                    if let Some(next) = json[i..].chars().next() {
                        out.push(next);
                        i += next.len_utf8();
                    }
                }
            },
            _ => {
                out.push(c);
                i += c.len_utf8();
            }
        }
    }
    out
}

fn not_string_array(offset: usize, rest: &str) -> ArgsError {
    ArgsError {
        message: "JSON array must contain only strings".into(),
        offset,
        len: rest.trim_end().len().saturating_sub(offset).max(1),
        expected: Some("a JSON array of strings, e.g. `[\"executable\", \"param\"]`".into()),
    }
}

/// RUN, CMD, ENTRYPOINT, SHELL: a JSON string array, else one argument.
pub(crate) fn maybe_json(rest: &str) -> Result<Args, ArgsError> {
    if rest.is_empty() {
        return Ok(Args::default());
    }
    match parse_json(rest) {
        Json::Strings(values) => Ok(Args { values, json: true }),
        Json::NotStrings { offset } => Err(not_string_array(offset, rest)),
        Json::Invalid => Ok(Args {
            values: vec![rest.to_string()],
            json: false,
        }),
    }
}

/// ADD, COPY, VOLUME: a JSON string array, else blank-separated words.
pub(crate) fn maybe_json_list(rest: &str) -> Result<Args, ArgsError> {
    match parse_json(rest) {
        Json::Strings(values) => Ok(Args { values, json: true }),
        Json::NotStrings { offset } => Err(not_string_array(offset, rest)),
        Json::Invalid => Ok(Args {
            values: split_blanks(rest),
            json: false,
        }),
    }
}

/// MAINTAINER, USER, WORKDIR, STOPSIGNAL: the whole text.
pub(crate) fn whole(rest: &str) -> Args {
    Args {
        values: if rest.is_empty() {
            Vec::new()
        } else {
            vec![rest.to_string()]
        },
        json: false,
    }
}

/// HEALTHCHECK: the type word, then the rest like RUN.
pub(crate) fn healthcheck(rest: &str) -> Result<Args, ArgsError> {
    let sep = rest.find(char::is_whitespace).unwrap_or(rest.len());
    if sep == 0 {
        return Ok(Args::default());
    }
    let after = rest[sep..].trim_start();
    let mut cmd = maybe_json(after).map_err(|mut e| {
        e.offset += rest.len() - after.len();
        e
    })?;
    cmd.values.insert(0, rest[..sep].to_string());
    Ok(cmd)
}

/// Quote-aware words that keep their quotes and escapes (ARG, ENV, LABEL).
pub(crate) fn words(rest: &str, escape: char) -> Vec<String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut quote: Option<char> = None;
    let mut blank_ok = false;
    let mut chars = rest.chars();
    while let Some(ch) = chars.next() {
        if let Some(q) = quote {
            if ch == q {
                quote = None;
            }
            if ch == escape && q != '\'' {
                match chars.next() {
                    Some(next) => {
                        word.push(ch);
                        word.push(next);
                    }
                    None => quote = None,
                }
                continue;
            }
            word.push(ch);
            continue;
        }
        if !in_word {
            if ch.is_whitespace() {
                continue;
            }
            in_word = true;
        }
        if ch.is_whitespace() {
            if blank_ok || !word.is_empty() {
                words.push(std::mem::take(&mut word));
            }
            in_word = false;
            blank_ok = false;
            continue;
        }
        if ch == '\'' || ch == '"' {
            quote = Some(ch);
            blank_ok = true;
        }
        if ch == escape {
            if let Some(next) = chars.next() {
                word.push(ch);
                word.push(next);
            }
            continue;
        }
        word.push(ch);
    }
    if (in_word || quote.is_some()) && (blank_ok || !word.is_empty()) {
        words.push(word);
    }
    words
}

/// ENV and LABEL: `key value` (legacy) or `key=value ...`, as triples.
pub(crate) fn name_values(rest: &str, keyword: &str, escape: char) -> Result<Args, ArgsError> {
    let words = words(rest, escape);
    let Some(first) = words.first() else {
        return Ok(Args::default());
    };
    if !first.contains('=') {
        let Some((key, value)) = split_blanks_once(rest) else {
            return Err(ArgsError {
                message: format!("{keyword} must have two arguments"),
                offset: 0,
                len: rest.len(),
                expected: Some(format!("`{keyword} name=value` or `{keyword} name value`")),
            });
        };
        return Ok(Args {
            values: vec![key.to_string(), value.to_string(), String::new()],
            json: false,
        });
    }
    let mut values = Vec::with_capacity(words.len() * 3);
    for word in &words {
        let Some((key, value)) = word.split_once('=') else {
            let offset = rest.find(word.as_str()).unwrap_or(0);
            return Err(ArgsError {
                message: format!("Syntax error - can't find = in `{word}`"),
                offset,
                len: word.len(),
                expected: Some("name=value".into()),
            });
        };
        values.extend([key.to_string(), value.to_string(), "=".to_string()]);
    }
    Ok(Args {
        values,
        json: false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_or_shell() {
        assert_eq!(maybe_json("[\"a\", \"b\"]").expect("ok").values, ["a", "b"]);
        assert!(maybe_json("[\"a\", \"b\"]").expect("ok").json);
        assert_eq!(maybe_json("['a']").expect("ok").values, ["['a']"]);
        assert_eq!(
            maybe_json("[ -d /x ] && y").expect("ok").values,
            ["[ -d /x ] && y"]
        );
        assert!(maybe_json("[\"a\", [\"b\"]]").is_err());
        assert!(maybe_json("[]").expect("ok").values.is_empty());
        assert_eq!(
            maybe_json(r#"["\ud800"]"#).expect("ok").values,
            ["\u{fffd}"]
        );
        assert_eq!(
            maybe_json(r#"["\ud83d\ude00", "\\ud800"]"#)
                .expect("ok")
                .values,
            ["😀", "\\ud800"]
        );
        assert_eq!(
            maybe_json(r#"["\udc00x\ud800"]"#).expect("ok").values,
            ["\u{fffd}x\u{fffd}"]
        );
    }

    #[test]
    fn words_keep_quotes() {
        assert_eq!(words("a=\"1 2\" b", '\\'), ["a=\"1 2\"", "b"]);
        assert_eq!(words("a=c\\ d", '\\'), ["a=c\\ d"]);
        assert_eq!(words("\"\"", '\\'), ["\"\""]);
        assert_eq!(words("x\\", '\\'), ["x"]);
        assert_eq!(words("'a\\' b", '\\'), ["'a\\'", "b"]);
    }

    #[test]
    fn env_forms() {
        let args = name_values("a=\"x y\" b=c\\ d", "ENV", '\\').expect("ok");
        assert_eq!(args.values, ["a", "\"x y\"", "=", "b", "c\\ d", "="]);
        let args = name_values("KEY some value", "ENV", '\\').expect("ok");
        assert_eq!(args.values, ["KEY", "some value", ""]);
        assert!(name_values("KEY", "ENV", '\\').is_err());
        assert!(name_values("a=b c", "ENV", '\\').is_err());
    }

    #[test]
    fn healthcheck_type_then_command() {
        assert_eq!(healthcheck("CMD a b").expect("ok").values, ["CMD", "a b"]);
        assert_eq!(healthcheck("NONE").expect("ok").values, ["NONE"]);
        assert!(healthcheck("").expect("ok").values.is_empty());
    }
}
