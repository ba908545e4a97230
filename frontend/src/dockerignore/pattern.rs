//! One cleaned pattern compiled the way moby's `patternmatcher` compiles it.
//!
//! moby scans the pattern once and picks the cheapest of four match kinds:
//! - exact: no wildcard at all, compared with `==`;
//! - prefix: literal text then a trailing `**` (`dir/**`): a byte-prefix test on the text
//!   before `**`, so `dir/**` matches `dir/x` but not `dir`;
//! - suffix: the pattern *starts* with `**` and every later character is literal
//!   (`**/foo`, `**file`): a byte-suffix test on the text after `**`, plus `**/foo` matching
//!   `foo` itself; note that `**file` therefore also matches `xfile`;
//! - regexp: anything else, translated to a Go regular expression (`*` to `[^/]*`, `?` to
//!   `[^/]`, `**` to `(.*/)?` or a final `.*`, `.+()|{}$` escaped, `[`, `]` and `\x` passed
//!   through) and evaluated by [`super::regex`].

use super::regex::Regex;

/// The compiled form of one pattern.
#[derive(Debug, Clone)]
pub(crate) enum Matcher {
    /// The path equals the pattern.
    Exact(String),
    /// The path starts with this (the pattern without its trailing `**`).
    Prefix(String),
    /// The path ends with these bytes (the pattern without its first two bytes), or equals
    /// them without their leading `/`.
    Suffix(Vec<u8>),
    /// The translated regular expression.
    Regex(Regex),
}

/// Characters that are special in a regex but not in a `filepath.Match` pattern; moby
/// escapes them when translating.
fn should_escape(c: char) -> bool {
    matches!(c, '.' | '+' | '(' | ')' | '|' | '{' | '}' | '$')
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Exact,
    Prefix,
    Suffix,
    Regexp,
}

/// moby's scan of a cleaned pattern: the match kind and, for [`Kind::Regexp`], the regular
/// expression (the string is built for every kind, like moby does, but only used then).
fn translate(cleaned: &str) -> (Kind, String) {
    let chars: Vec<char> = cleaned.chars().collect();
    // Go's text/scanner skips a byte-order mark at the very start.
    let mut next = usize::from(chars.first() == Some(&'\u{FEFF}'));
    let mut kind = Kind::Exact;
    let mut re = String::from("^");
    let mut first = true;
    while let Some(&c) = chars.get(next) {
        next += 1;
        match c {
            '*' if chars.get(next) == Some(&'*') => {
                next += 1;
                // `**/` is treated as `**`.
                if chars.get(next) == Some(&'/') {
                    next += 1;
                }
                if next >= chars.len() {
                    // A final `**` accepts everything, like .gitignore.
                    if kind == Kind::Exact {
                        kind = Kind::Prefix;
                    } else {
                        re.push_str(".*");
                        kind = Kind::Regexp;
                    }
                } else {
                    // Any number of directories, even none.
                    re.push_str("(.*/)?");
                    kind = Kind::Regexp;
                }
                if first {
                    kind = Kind::Suffix;
                }
            }
            '*' => {
                re.push_str("[^/]*");
                kind = Kind::Regexp;
            }
            '?' => {
                re.push_str("[^/]");
                kind = Kind::Regexp;
            }
            c if should_escape(c) => {
                re.push('\\');
                re.push(c);
            }
            '\\' => match chars.get(next) {
                Some(&escaped) => {
                    next += 1;
                    re.push('\\');
                    re.push(escaped);
                    kind = Kind::Regexp;
                }
                None => re.push('\\'),
            },
            '[' | ']' => {
                re.push(c);
                kind = Kind::Regexp;
            }
            c => re.push(c),
        }
        first = false;
    }
    (kind, re)
}

impl Matcher {
    /// Compiles a cleaned pattern (no `!`); errors are regex syntax errors.
    pub(crate) fn compile(cleaned: &str) -> Result<Matcher, String> {
        let (kind, mut re) = translate(cleaned);
        Ok(match kind {
            Kind::Exact => Matcher::Exact(cleaned.to_owned()),
            Kind::Prefix => {
                Matcher::Prefix(cleaned.strip_suffix("**").unwrap_or(cleaned).to_owned())
            }
            Kind::Suffix => {
                Matcher::Suffix(cleaned.as_bytes().get(2..).unwrap_or_default().to_vec())
            }
            Kind::Regexp => {
                re.push('$');
                Matcher::Regex(Regex::new(&re)?)
            }
        })
    }

    /// Whether this pattern matches `path` itself (moby's `Pattern.match`).
    pub(crate) fn is_match(&self, path: &str) -> bool {
        match self {
            Matcher::Exact(p) => path == p,
            Matcher::Prefix(p) => path.starts_with(p.as_str()),
            Matcher::Suffix(s) => {
                let path = path.as_bytes();
                path.ends_with(s) || (s.first() == Some(&b'/') && s.get(1..) == Some(path))
            }
            Matcher::Regex(re) => re.is_match(path),
        }
    }

    /// Whether this pattern matches `path` or one of its `parents` (moby's parent check).
    pub(crate) fn matches_path_or_parent(&self, path: &str, parents: &[&str]) -> bool {
        match self {
            Matcher::Regex(re) => re.matches_path_or_parent(path),
            _ => self.is_match(path) || parents.iter().any(|p| self.is_match(p)),
        }
    }

    /// Whether this pattern might match some path that starts with `dir_slash` (a directory
    /// path followed by `/`) and continues. May say yes when it cannot; never says no
    /// when it can.
    pub(crate) fn may_match_below(&self, dir_slash: &str) -> bool {
        match self {
            Matcher::Exact(p) => p.len() > dir_slash.len() && p.starts_with(dir_slash),
            Matcher::Prefix(p) => p.starts_with(dir_slash) || dir_slash.starts_with(p.as_str()),
            // `dir/` + anything + the suffix always ends with the suffix.
            Matcher::Suffix(_) => true,
            Matcher::Regex(re) => re.may_match_extension(dir_slash),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn compile(p: &str) -> Matcher {
        match Matcher::compile(p) {
            Ok(m) => m,
            Err(e) => panic!("{p}: {e}"),
        }
    }

    /// moby's `compileTests`: the match kind picked and the regex built (Linux).
    #[test]
    fn compile_table() {
        let cases: &[(&str, &str, &str)] = &[
            ("*", "regexp", "^[^/]*$"),
            ("file*", "regexp", "^file[^/]*$"),
            ("*file", "regexp", "^[^/]*file$"),
            ("a*/b", "regexp", "^a[^/]*/b$"),
            ("**", "suffix", ""),
            ("**/**", "regexp", "^(.*/)?.*$"),
            ("dir/**", "prefix", ""),
            ("**/dir", "suffix", ""),
            ("**/dir2/*", "regexp", "^(.*/)?dir2/[^/]*$"),
            ("**/dir2/**", "regexp", "^(.*/)?dir2/.*$"),
            ("**file", "suffix", ""),
            ("**/file*txt", "regexp", "^(.*/)?file[^/]*txt$"),
            ("**/**/*.txt", "regexp", "^(.*/)?(.*/)?[^/]*\\.txt$"),
            ("a[b-d]e", "regexp", "^a[b-d]e$"),
            (".*", "regexp", "^\\.[^/]*$"),
            ("abc.def", "exact", ""),
            ("abc?def", "regexp", "^abc[^/]def$"),
            ("**/foo/bar", "suffix", ""),
            ("a(b)c/def", "exact", ""),
            ("a.|)$(}+{bc", "exact", ""),
            (
                "dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl",
                "exact",
                "",
            ),
        ];
        for (pattern, kind, regex) in cases {
            let got = match compile(pattern) {
                Matcher::Exact(_) => "exact",
                Matcher::Prefix(_) => "prefix",
                Matcher::Suffix(_) => "suffix",
                Matcher::Regex(_) => "regexp",
            };
            assert_eq!(got, *kind, "kind of {pattern:?}");
            if *kind == "regexp" {
                assert_eq!(translate(pattern).1 + "$", *regex, "regex of {pattern:?}");
            }
        }
    }

    #[test]
    fn kinds_match() {
        assert!(compile("dir/**").is_match("dir/a/b"));
        assert!(!compile("dir/**").is_match("dir"));
        assert!(compile("**/foo").is_match("foo"));
        assert!(compile("**/foo").is_match("a/b/foo"));
        assert!(!compile("**/foo").is_match("afoo"));
        assert!(compile("**foo").is_match("afoo")); // moby's suffix test is textual
        assert!(compile("**").is_match("anything/at/all"));
        assert!(compile("a\\*b").is_match("a*b"));
        assert!(!compile("a\\*b").is_match("axb"));
        assert!(compile("a\\\\").is_match("a\\"));
        assert!(compile("[*]").is_match("]")); // moby's translation gives `^[[^/]*]$`
        assert!(!compile("[*]").is_match("*"));
        assert!(compile("a\\d").is_match("a7")); // `\d` reaches the regex unchanged
        assert!(compile("**.md").is_match("a/b/c.md")); // suffix kind: crosses directories
        assert!(compile("**/a.b").is_match("x/a.b"));
        assert!(!compile("**/a.b").is_match("x/aXb"));
        assert!(Matcher::compile("[z-a]").is_err());
        assert!(Matcher::compile("a\\e").is_err());
    }

    #[test]
    fn leading_bom() {
        // text/scanner drops the BOM, so `**` still counts as the first token and moby
        // slices the suffix two *bytes* in, in the middle of the BOM.
        let m = compile("\u{FEFF}**/foo");
        assert!(m.is_match("\u{FF}**/foo"));
        assert!(!m.is_match("x/foo"));
        assert_eq!(
            translate("\u{FEFF}a*"),
            (Kind::Regexp, "^a[^/]*".to_owned())
        );
    }

    #[test]
    fn below() {
        assert!(compile("a/b").may_match_below("a/"));
        assert!(!compile("a/b").may_match_below("a/b/"));
        assert!(!compile("a").may_match_below("a/"));
        assert!(compile("a/**").may_match_below("a/b/"));
        assert!(compile("a/b/**").may_match_below("a/"));
        assert!(!compile("c/**").may_match_below("a/"));
        assert!(compile("**/x").may_match_below("a/"));
        assert!(compile("a/*.md").may_match_below("a/"));
        assert!(!compile("b/*.md").may_match_below("a/"));
        assert!(!compile("*.md").may_match_below("a/"));
    }
}
