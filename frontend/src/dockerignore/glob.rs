//! Ports of the Go `path/filepath` functions whose exact behaviour the ignore rules (and COPY
//! source wildcards) depend on, Unix flavour: [`go_match`] (`filepath.Match`) and [`go_clean`]
//! (`filepath.Clean`).
//!
//! `go_match` works on bytes like Go does: `*` skips forward one *byte* at a time, `?` and
//! classes decode one UTF-8 sequence (an invalid byte counts as one U+FFFD), literals compare
//! byte by byte. Like Go 1.16+, the whole pattern is checked for syntax errors even when the
//! match fails early, so `go_match(p, ".")` is a complete syntax check (moby uses it so).
//! The algorithm is Go's: chunks between stars are matched leftmost-first, which is exact for
//! globs and needs at most `O(len(pattern) * len(name))` steps, never backtracking
//! exponentially.

/// Error from [`go_match`]: Go's `filepath.ErrBadPattern`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum GlobError {
    /// The pattern is malformed: an unterminated or empty `[...]` class, a class range or
    /// member starting with `-` or `]`, or a trailing `\`.
    #[error("syntax error in pattern")]
    BadPattern,
}

/// Go's `filepath.Match` on Linux: whether `name` as a whole matches the shell pattern.
///
/// Syntax: `*` matches any run of non-`/` characters, `?` one non-`/` character,
/// `[abc]`, `[a-z]`, `[^a-z]` one character in (or, with `^`, not in) the class (classes may
/// match `/`; `!` is not a negation), `\c` the character `c` (also inside classes). Any other
/// character matches itself. Errors are [`GlobError::BadPattern`], reported for the whole
/// pattern whatever `name` is.
pub fn go_match(pattern: &str, name: &str) -> Result<bool, GlobError> {
    let mut pattern = pattern.as_bytes();
    let mut name = name.as_bytes();
    'chunks: while !pattern.is_empty() {
        let (star, chunk, rest) = scan_chunk(pattern);
        pattern = rest;
        if star && chunk.is_empty() {
            // A trailing `*` matches the rest of the name unless it has a `/`.
            return Ok(!name.contains(&b'/'));
        }
        // Look for a match at the current position.
        let (tail, ok) = match_chunk(chunk, name)?;
        // The last chunk must exhaust the name, otherwise a star may still do better.
        if ok && (tail.is_empty() || !pattern.is_empty()) {
            name = tail;
            continue;
        }
        if star {
            // Look for a match skipping i+1 bytes; a star cannot skip a `/`.
            let mut i = 0;
            while i < name.len() && name.get(i) != Some(&b'/') {
                let (tail, ok) = match_chunk(chunk, name.get(i + 1..).unwrap_or_default())?;
                if ok && (tail.is_empty() || !pattern.is_empty()) {
                    name = tail;
                    continue 'chunks;
                }
                i += 1;
            }
        }
        // Before answering no, check that the rest of the pattern is well formed.
        while !pattern.is_empty() {
            let (_, chunk, rest) = scan_chunk(pattern);
            pattern = rest;
            match_chunk(chunk, b"")?;
        }
        return Ok(false);
    }
    Ok(name.is_empty())
}

/// Splits off the next segment of the pattern: a run of stars (reported as `star`) and the
/// star-free chunk after it. Stars inside `[...]` do not end a chunk.
fn scan_chunk(pattern: &[u8]) -> (bool, &[u8], &[u8]) {
    let mut pattern = pattern;
    let mut star = false;
    while let [b'*', rest @ ..] = pattern {
        pattern = rest;
        star = true;
    }
    let mut in_range = false;
    let mut i = 0;
    while let Some(&b) = pattern.get(i) {
        match b {
            // Error checking happens in `match_chunk`.
            b'\\' if i + 1 < pattern.len() => i += 1,
            b'[' => in_range = true,
            b']' => in_range = false,
            b'*' if !in_range => break,
            _ => {}
        }
        i += 1;
    }
    let (chunk, rest) = pattern.split_at(i.min(pattern.len()));
    (star, chunk, rest)
}

/// Matches a star-free chunk against the start of `s`, returning the rest of `s` and whether it
/// matched. After a mismatch the chunk is still parsed to the end so that syntax errors are
/// always found.
fn match_chunk<'s>(chunk: &[u8], s: &'s [u8]) -> Result<(&'s [u8], bool), GlobError> {
    let mut chunk = chunk;
    let mut s = s;
    let mut failed = false;
    while let Some((&c, after)) = chunk.split_first() {
        if !failed && s.is_empty() {
            failed = true;
        }
        match c {
            b'[' => {
                let mut r = 0;
                if !failed {
                    let (rune, n) = decode_rune(s);
                    r = rune;
                    s = s.get(n..).unwrap_or_default();
                }
                chunk = after;
                let negated = chunk.first() == Some(&b'^');
                if negated {
                    chunk = chunk.get(1..).unwrap_or_default();
                }
                let mut matched = false;
                let mut ranges = 0usize;
                loop {
                    if ranges > 0 {
                        if let Some(rest) = chunk.strip_prefix(b"]") {
                            chunk = rest;
                            break;
                        }
                    }
                    let (lo, rest) = get_esc(chunk)?;
                    chunk = rest;
                    let mut hi = lo;
                    if let Some(rest) = chunk.strip_prefix(b"-") {
                        let (h, rest) = get_esc(rest)?;
                        hi = h;
                        chunk = rest;
                    }
                    if lo <= r && r <= hi {
                        matched = true;
                    }
                    ranges += 1;
                }
                if matched == negated {
                    failed = true;
                }
            }
            b'?' => {
                if !failed {
                    if s.first() == Some(&b'/') {
                        failed = true;
                    }
                    let (_, n) = decode_rune(s);
                    s = s.get(n..).unwrap_or_default();
                }
                chunk = after;
            }
            _ => {
                let literal = if c == b'\\' {
                    let Some((&escaped, after_escaped)) = after.split_first() else {
                        return Err(GlobError::BadPattern);
                    };
                    chunk = after_escaped;
                    escaped
                } else {
                    chunk = after;
                    c
                };
                if !failed {
                    match s.split_first() {
                        Some((&b, rest)) if b == literal => s = rest,
                        _ => failed = true,
                    }
                }
            }
        }
    }
    if failed {
        Ok((&[], false))
    } else {
        Ok((s, true))
    }
}

/// Reads a possibly escaped character of a class; the rest of the chunk must not be empty
/// (there must at least be the closing `]`).
fn get_esc(chunk: &[u8]) -> Result<(u32, &[u8]), GlobError> {
    let chunk = match chunk.first() {
        None | Some(b'-') | Some(b']') => return Err(GlobError::BadPattern),
        Some(b'\\') => match chunk.get(1..) {
            Some(rest) if !rest.is_empty() => rest,
            _ => return Err(GlobError::BadPattern),
        },
        Some(_) => chunk,
    };
    let (r, n) = decode_rune(chunk);
    if r == REPLACEMENT && n == 1 {
        return Err(GlobError::BadPattern);
    }
    match chunk.get(n..) {
        Some(rest) if !rest.is_empty() => Ok((r, rest)),
        _ => Err(GlobError::BadPattern),
    }
}

const REPLACEMENT: u32 = 0xFFFD;

/// Go's `utf8.DecodeRune`: the first character and its length; `(U+FFFD, 1)` for an invalid
/// sequence and `(U+FFFD, 0)` for empty input.
pub(crate) fn decode_rune(b: &[u8]) -> (u32, usize) {
    let Some(&lead) = b.first() else {
        return (REPLACEMENT, 0);
    };
    let len = match lead {
        0x00..=0x7F => return (u32::from(lead), 1),
        0xC2..=0xDF => 2,
        0xE0..=0xEF => 3,
        0xF0..=0xF4 => 4,
        _ => return (REPLACEMENT, 1),
    };
    match b
        .get(..len)
        .and_then(|s| std::str::from_utf8(s).ok())
        .and_then(|s| s.chars().next())
    {
        Some(c) => (u32::from(c), len),
        None => (REPLACEMENT, 1),
    }
}

/// Go's `filepath.Clean` on Linux: the shortest equivalent path by purely lexical processing
/// (repeated `/` collapsed, `.` elements dropped, `x/..` removed, `..` at the root dropped);
/// `"."` for an empty result; a trailing `/` only for the root itself.
pub fn go_clean(path: &str) -> String {
    if path.is_empty() {
        return ".".to_owned();
    }
    let rooted = path.starts_with('/');
    let mut out: Vec<&str> = Vec::new();
    for element in path.split('/') {
        match element {
            "" | "." => {}
            ".." => {
                if out.last().is_some_and(|last| *last != "..") {
                    out.pop();
                } else if !rooted {
                    out.push("..");
                }
            }
            name => out.push(name),
        }
    }
    let joined = out.join("/");
    if rooted {
        format!("/{joined}")
    } else if joined.is_empty() {
        ".".to_owned()
    } else {
        joined
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BAD: Result<bool, GlobError> = Err(GlobError::BadPattern);

    /// The table of Go's own `filepath` match tests (Unix), inputs and expected results.
    #[test]
    fn go_match_table() {
        let cases: &[(&str, &str, Result<bool, GlobError>)] = &[
            ("abc", "abc", Ok(true)),
            ("*", "abc", Ok(true)),
            ("*c", "abc", Ok(true)),
            ("a*", "a", Ok(true)),
            ("a*", "abc", Ok(true)),
            ("a*", "ab/c", Ok(false)),
            ("a*/b", "abc/b", Ok(true)),
            ("a*/b", "a/c/b", Ok(false)),
            ("a*b*c*d*e*/f", "axbxcxdxe/f", Ok(true)),
            ("a*b*c*d*e*/f", "axbxcxdxexxx/f", Ok(true)),
            ("a*b*c*d*e*/f", "axbxcxdxe/xxx/f", Ok(false)),
            ("a*b*c*d*e*/f", "axbxcxdxexxx/fff", Ok(false)),
            ("a*b?c*x", "abxbbxdbxebxczzx", Ok(true)),
            ("a*b?c*x", "abxbbxdbxebxczzy", Ok(false)),
            ("ab[c]", "abc", Ok(true)),
            ("ab[b-d]", "abc", Ok(true)),
            ("ab[e-g]", "abc", Ok(false)),
            ("ab[^c]", "abc", Ok(false)),
            ("ab[^b-d]", "abc", Ok(false)),
            ("ab[^e-g]", "abc", Ok(true)),
            ("a\\*b", "a*b", Ok(true)),
            ("a\\*b", "ab", Ok(false)),
            ("a?b", "a☺b", Ok(true)),
            ("a[^a]b", "a☺b", Ok(true)),
            ("a???b", "a☺b", Ok(false)),
            ("a[^a][^a][^a]b", "a☺b", Ok(false)),
            ("[a-ζ]*", "α", Ok(true)),
            ("*[a-ζ]", "A", Ok(false)),
            ("a?b", "a/b", Ok(false)),
            ("a*b", "a/b", Ok(false)),
            ("[\\]a]", "]", Ok(true)),
            ("[\\-]", "-", Ok(true)),
            ("[x\\-]", "x", Ok(true)),
            ("[x\\-]", "-", Ok(true)),
            ("[x\\-]", "z", Ok(false)),
            ("[\\-x]", "x", Ok(true)),
            ("[\\-x]", "-", Ok(true)),
            ("[\\-x]", "a", Ok(false)),
            ("[]a]", "]", BAD),
            ("[-]", "-", BAD),
            ("[x-]", "x", BAD),
            ("[x-]", "-", BAD),
            ("[x-]", "z", BAD),
            ("[-x]", "x", BAD),
            ("[-x]", "-", BAD),
            ("[-x]", "a", BAD),
            ("\\", "a", BAD),
            ("[a-b-c]", "a", BAD),
            ("[", "a", BAD),
            ("[^", "a", BAD),
            ("[^bc", "a", BAD),
            ("a[", "a", BAD),
            ("a[", "ab", BAD),
            ("a[", "x", BAD),
            ("a/b[", "x", BAD),
            ("*x", "xxx", Ok(true)),
        ];
        for (pattern, name, want) in cases {
            assert_eq!(
                go_match(pattern, name),
                *want,
                "Match({pattern:?}, {name:?})"
            );
        }
    }

    #[test]
    fn go_match_extra() {
        // Errors are found even when the mismatch happens before the bad part.
        assert_eq!(go_match("x*[", "abc"), BAD);
        assert_eq!(go_match("b*\\", "a"), BAD);
        assert_eq!(go_match("[Local-Only]", "."), Ok(false)); // a reversed range is no error here
        assert_eq!(go_match("", ""), Ok(true));
        assert_eq!(go_match("", "a"), Ok(false));
        assert_eq!(go_match("**", "abc"), Ok(true));
        assert_eq!(go_match("[!a]", "!"), Ok(true)); // `!` is a plain member
        assert_eq!(go_match("[!a]", "b"), Ok(false));
        assert_eq!(go_match("[*]", "*"), Ok(true));
        assert_eq!(go_match("[a-c]", "/"), Ok(false));
        assert_eq!(go_match("[^a]", "/"), Ok(true)); // classes may match the separator
        assert_eq!(go_match("*.go", "main.go"), Ok(true));
        assert_eq!(go_match("*/*.go", "cmd/main.go"), Ok(true));
        // Stars skip bytes, so a `?` can match a lone continuation byte as Go's does.
        assert_eq!(go_match("*??", "☺"), Ok(true));
        assert_eq!(go_match("??", "☺"), Ok(false));
    }

    #[test]
    fn go_match_is_not_exponential() {
        let name = "a".repeat(2000);
        let pattern = format!("{}b", "a*".repeat(200));
        assert_eq!(go_match(&pattern, &name), Ok(false));
    }

    #[test]
    fn clean() {
        let cases = [
            ("", "."),
            (".", "."),
            ("./", "."),
            ("/", "/"),
            ("//", "/"),
            ("a/", "a"),
            ("./a", "a"),
            ("/a", "/a"),
            ("a//b", "a/b"),
            ("a/./b", "a/b"),
            ("a/../b", "b"),
            ("foo//bar/../baz", "foo/baz"),
            ("a/..", "."),
            ("../a", "../a"),
            ("a/../..", ".."),
            ("../../a/../b", "../../b"),
            ("/..", "/"),
            ("/../a", "/a"),
            ("!a/../b", "b"),
            ("a /.", "a "),
        ];
        for (input, want) in cases {
            assert_eq!(go_clean(input), want, "Clean({input:?})");
        }
    }

    #[test]
    fn decode() {
        assert_eq!(decode_rune(b""), (REPLACEMENT, 0));
        assert_eq!(decode_rune(b"a"), (u32::from('a'), 1));
        assert_eq!(decode_rune("☺x".as_bytes()), (0x263A, 3));
        assert_eq!(decode_rune(&[0x98, 0xBA]), (REPLACEMENT, 1));
        assert_eq!(decode_rune(&[0xE2, 0x98]), (REPLACEMENT, 1));
        assert_eq!(decode_rune(&[0xC0, 0x80]), (REPLACEMENT, 1));
    }
}
