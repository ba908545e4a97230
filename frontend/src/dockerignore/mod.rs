//! `.dockerignore` rules with moby's semantics, re-implemented from the behaviour of
//! `github.com/moby/patternmatcher` (`ignorefile.ReadAll` then `patternmatcher.New` and
//! `MatchesOrParentMatches`), which BuildKit's Dockerfile frontend uses for the build context.
//!
//! # Design
//! The module is pure: it gets the file's text and answers questions about paths.
//! [`IgnoreRules::parse`] runs the two moby stages over the whole file, then compiles every
//! pattern (`pattern.rs`) into one of moby's four match kinds (exact, prefix, suffix, regular
//! expression). moby builds a Go regular expression for the general case, and its quirks
//! follow from Go's regex syntax, so `syntax.rs` (parser) and `regex.rs` (linear-time NFA)
//! implement that syntax, the subset the translation can produce, instead of approximating
//! it with a glob matcher. `glob.rs` ports Go's `filepath.Match` (moby's syntax check, and
//! [`go_match`] for COPY wildcards) and `filepath.Clean` ([`go_clean`]).
//!
//! Which file to read is the CLI's business: [`ignore_file_candidates`] lists BuildKit's
//! choices (`<Dockerfile>.dockerignore` first, then `.dockerignore`). For walkers,
//! [`IgnoreRules::can_skip_dir`] says when a whole excluded directory can be pruned.
//!
//! # Reading the file (`ignorefile.ReadAll`)
//! - Lines are split on `\n`, one trailing `\r` dropped; a UTF-8 BOM is dropped from the first
//!   line. A line of 64 KiB or more is an error (Go's `bufio.Scanner` limit).
//! - A line starting with `#` (before any trimming) is a comment; `  # x` is a pattern.
//! - The line is trimmed of Unicode whitespace; empty lines are skipped.
//! - A leading `!` marks an exception; the rest is trimmed again.
//! - The rest is cleaned like Go's `filepath.Clean` and one leading `/` removed:
//!   `/a`, `./a`, `a/` all become `a`, `foo//bar/../baz` becomes `foo/baz`.
//!
//! # Compiling (`patternmatcher.New`)
//! - Each pattern is trimmed and cleaned again (so `a /.` ends up as `a`), the `!` split off
//!   *after* that second cleaning. A lone `!` (also from `!/`) is an error
//!   (`illegal exclusion pattern`).
//! - `.` (from `.` or `./`) stays a pattern that matches nothing, as does `/`.
//! - The pattern must pass Go's `filepath.Match` syntax check (e.g. `[`, `a[`, `[]a]`, `[-x]`,
//!   a trailing `\` are errors).
//!
//! # Matching (`MatchesOrParentMatches`)
//! - `*` matches a run of non-`/` characters, `?` one non-`/` character, `\` escapes the
//!   next punctuation character (`\*`, `\[`, `\\`), `**` any number of path segments
//!   including none (`**/foo`, `foo/**`, `a/**/b`), a final `**` anything (but `dir/**` does
//!   not match `dir` itself).
//! - `[...]` classes are regex classes: `[^...]` negates (`!` does not), they may match `/`,
//!   and wildcards inside them are translated too (`[*]` matches `]`, not `*`).
//! - Escapes reach the regex as they are: `\d` is a digit, `\a` is BEL (not `a`), `\Q`
//!   quotes the rest; escapes Go's regex rejects (`\e`, `\1`) are errors.
//! - A pattern starting with `**` followed only by literal text is a textual suffix test
//!   (`**file` matches `xfile`).
//! - A path is excluded when it or any of its parent directories matches a rule; rules
//!   are applied in order, later rules win, and an `!exception` re-includes what earlier
//!   rules excluded.
//!
//! # Deliberate differences
//! - A pattern whose regular expression does not compile (`[z-a]`, `[Local-Only]`, `\e`) is
//!   rejected by [`IgnoreRules::parse`]; moby accepts it and fails the build later, when the
//!   pattern is first evaluated.
//! - Unicode class escapes (`\pL`, `\p{Greek}`) are rejected; moby's regex accepts them.
//! - Paths are cleaned before matching and the context root is never excluded.
//! - [`IgnoreRules::excluded_by`] reports the *last* inclusion rule matching a path; moby
//!   does not evaluate inclusions once a path is excluded (the verdict is the same).
//! - Only Linux semantics (no Windows `\` separators); text is UTF-8 (`&str`).

mod glob;
mod pattern;
mod regex;
mod syntax;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_moby;

pub use glob::{go_clean, go_match, GlobError};

use pattern::Matcher;

/// The name of the ignore file at the root of the build context.
pub const DOCKERIGNORE_NAME: &str = ".dockerignore";

/// Go's `bufio.Scanner` refuses a line of this many bytes or more.
const MAX_LINE_LEN: usize = 64 * 1024;

/// The compiled rules of one ignore file, in file order.
#[derive(Debug, Clone, Default)]
pub struct IgnoreRules {
    rules: Vec<IgnoreRule>,
    matchers: Vec<Matcher>,
}

/// One rule of an ignore file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IgnoreRule {
    /// The pattern after cleaning, without the `!`: the text that is matched.
    pub pattern: String,
    /// `true` for an exception (`!pattern`), which re-includes paths.
    pub exclusion: bool,
    /// The 1-based line of the file (or position in the list) the rule comes from.
    pub line: usize,
}

impl std::fmt::Display for IgnoreRule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.exclusion {
            write!(f, "!{}", self.pattern)
        } else {
            f.write_str(&self.pattern)
        }
    }
}

/// Why an ignore file could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IgnoreError {
    /// A pattern is malformed.
    #[error("line {line}: invalid pattern `{pattern}`: {reason}")]
    BadPattern {
        /// 1-based line of the pattern.
        line: usize,
        /// The pattern as written, trimmed.
        pattern: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A line is longer than Go's line reader accepts (moby fails to read the file).
    #[error("line {line}: line too long ({len} bytes, at most 65535 are read)")]
    LineTooLong {
        /// 1-based line number.
        line: usize,
        /// Its length in bytes.
        len: usize,
    },
}

impl IgnoreError {
    /// The 1-based line the error is about.
    pub fn line(&self) -> usize {
        match self {
            IgnoreError::BadPattern { line, .. } | IgnoreError::LineTooLong { line, .. } => *line,
        }
    }
}

/// `ignorefile.ReadAll`'s handling of one non-comment line: the pattern text, or `None` for
/// a blank line.
fn read_line(line: &str) -> Option<String> {
    let pattern = line.trim();
    if pattern.is_empty() {
        return None;
    }
    let (invert, rest) = match pattern.strip_prefix('!') {
        Some(rest) => (true, rest.trim()),
        None => (false, pattern),
    };
    let mut out = String::new();
    if invert {
        out.push('!');
    }
    if !rest.is_empty() {
        let cleaned = go_clean(rest);
        match cleaned.strip_prefix('/') {
            Some(relative) if !relative.is_empty() => out.push_str(relative),
            _ => out.push_str(&cleaned),
        }
    }
    Some(out)
}

impl IgnoreRules {
    /// Parses the text of an ignore file.
    pub fn parse(text: &str) -> Result<Self, IgnoreError> {
        let mut patterns = Vec::new();
        let mut pieces = text.split('\n').enumerate().peekable();
        while let Some((index, piece)) = pieces.next() {
            if pieces.peek().is_none() && piece.is_empty() {
                break; // nothing after the last newline
            }
            let line = index + 1;
            if piece.len() >= MAX_LINE_LEN {
                return Err(IgnoreError::LineTooLong {
                    line,
                    len: piece.len(),
                });
            }
            let mut piece = piece.strip_suffix('\r').unwrap_or(piece);
            if index == 0 {
                piece = piece.strip_prefix('\u{FEFF}').unwrap_or(piece);
            }
            if piece.starts_with('#') {
                continue;
            }
            if let Some(pattern) = read_line(piece) {
                patterns.push((line, piece.trim(), pattern));
            }
        }
        Self::compile(patterns)
    }

    /// Builds rules from patterns that are already split into lines. Each gets the same
    /// trimming, `!` handling and cleaning as a line of a file, but `#` is not special; the
    /// rule's `line` is its 1-based position in `patterns`.
    pub fn from_patterns<I, S>(patterns: I) -> Result<Self, IgnoreError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let owned: Vec<(usize, String)> = patterns
            .into_iter()
            .enumerate()
            .map(|(i, p)| (i + 1, p.as_ref().to_owned()))
            .collect();
        let mut lines = Vec::new();
        for (line, text) in &owned {
            if let Some(pattern) = read_line(text) {
                lines.push((*line, text.trim(), pattern));
            }
        }
        Self::compile(lines)
    }

    /// `patternmatcher.New` over `(line, source text, ReadAll output)` triples.
    fn compile(patterns: Vec<(usize, &str, String)>) -> Result<Self, IgnoreError> {
        let mut rules = IgnoreRules::default();
        for (line, source, pattern) in patterns {
            let bad = |reason: String| IgnoreError::BadPattern {
                line,
                pattern: source.to_owned(),
                reason,
            };
            let pattern = pattern.trim();
            if pattern.is_empty() {
                continue;
            }
            let cleaned = go_clean(pattern);
            let (exclusion, cleaned) = match cleaned.strip_prefix('!') {
                Some("") => return Err(bad("illegal exclusion pattern: \"!\"".to_owned())),
                Some(rest) => (true, rest.to_owned()),
                None => (false, cleaned),
            };
            if let Err(e) = go_match(&cleaned, ".") {
                return Err(bad(e.to_string()));
            }
            let matcher = Matcher::compile(&cleaned)
                .map_err(|e| bad(format!("syntax error in pattern (regexp: {e})")))?;
            rules.rules.push(IgnoreRule {
                pattern: cleaned,
                exclusion,
                line,
            });
            rules.matchers.push(matcher);
        }
        Ok(rules)
    }

    /// The rules, in file order.
    pub fn rules(&self) -> &[IgnoreRule] {
        &self.rules
    }

    /// Whether there are no rules (nothing is excluded).
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// Whether `path` (relative to the context root, `/`-separated) is excluded: moby's
    /// `MatchesOrParentMatches`. The path is cleaned first; the root is never excluded.
    pub fn is_excluded(&self, path: &str) -> bool {
        self.decide(path, false).is_some()
    }

    /// The rule that excludes `path`: the last inclusion rule matching it (or a parent) with
    /// no exception re-including it afterwards; `None` when `path` is not excluded.
    pub fn excluded_by(&self, path: &str) -> Option<&IgnoreRule> {
        self.decide(path, true).and_then(|i| self.rules.get(i))
    }

    /// Whether a walker may skip the excluded directory `dir` without looking inside: `false`
    /// when `dir` is not excluded or some exception rule could re-include a path below it.
    ///
    /// Sound: when it returns `true`, every path below `dir` is excluded too. Rules also
    /// match what lies below the paths they match, so the last inclusion rule matching `dir`
    /// excludes every path below it, and after that rule only an exception that matches
    /// something strictly below `dir` could re-include one; those are looked for (with a
    /// safe over-estimate for regular expressions).
    pub fn can_skip_dir(&self, dir: &str) -> bool {
        let Some(dir) = normalize_path(dir) else {
            return false;
        };
        // The last inclusion rule matching `dir` also matches everything below it, so only
        // the exceptions after it can re-include anything there.
        let Some(last) = self.decide(&dir, true) else {
            return false;
        };
        let below = format!("{dir}/");
        !self
            .rules
            .iter()
            .zip(&self.matchers)
            .skip(last + 1)
            .any(|(rule, matcher)| rule.exclusion && matcher.may_match_below(&below))
    }

    /// The index of the rule that left `path` excluded, if it is. Without `last`, inclusion
    /// rules are skipped once the path is excluded, as moby does; with it they are still
    /// checked so that the last matching one is reported (the answer is the same).
    fn decide(&self, path: &str, last: bool) -> Option<usize> {
        let path = normalize_path(path)?;
        let parents: Vec<&str> = path
            .match_indices('/')
            .filter_map(|(i, _)| path.get(..i))
            .collect();
        let mut excluded_by: Option<usize> = None;
        for (index, (rule, matcher)) in self.rules.iter().zip(&self.matchers).enumerate() {
            // An inclusion cannot change an excluded path, nor an exception an included one.
            let relevant = if rule.exclusion {
                excluded_by.is_some()
            } else {
                excluded_by.is_none() || last
            };
            if !relevant {
                continue;
            }
            let hit = matcher.matches_path_or_parent(&path, &parents);
            if hit {
                excluded_by = if rule.exclusion { None } else { Some(index) };
            }
        }
        excluded_by
    }
}

/// Cleans a context-relative path; `None` for the context root itself.
fn normalize_path(path: &str) -> Option<String> {
    let cleaned = go_clean(path);
    let relative = cleaned.trim_start_matches('/');
    if relative.is_empty() || relative == "." {
        None
    } else {
        Some(relative.to_owned())
    }
}

/// The ignore files BuildKit would use for the Dockerfile at `dockerfile_path_in_context`, in
/// priority order, as context-relative paths: `<Dockerfile path>.dockerignore` next to the
/// Dockerfile, then `.dockerignore` at the root. The first that exists is used, even when it
/// is empty; the other is then not read at all (they are never merged). An empty path means
/// the default `Dockerfile`.
pub fn ignore_file_candidates(dockerfile_path_in_context: &str) -> Vec<String> {
    let dockerfile =
        normalize_path(dockerfile_path_in_context).unwrap_or_else(|| "Dockerfile".to_owned());
    vec![
        format!("{dockerfile}{DOCKERIGNORE_NAME}"),
        DOCKERIGNORE_NAME.to_owned(),
    ]
}
