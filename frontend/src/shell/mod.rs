//! The shell-word lexer: variable expansion, quote removal and word splitting of Dockerfile
//! instruction arguments, reproducing BuildKit's `frontend/dockerfile/shell` lexer exactly.
//!
//! # Design
//!
//! The input word is scanned once, left to right, by a small recursive-descent scanner
//! (`expand.rs`): a *level* scans up to a stop character (end of input, or the `}` / `/` that
//! closes a `${...}` argument), quotes and `$` get their own routines, and the argument of a
//! `${name<op>...}` is a nested level. Each level produces the expanded text (for
//! [`Lexer::process_word`]) and, at the same time, the split words (for
//! [`Lexer::process_words`], see `words.rs`). Glob patterns are compiled and matched by
//! `pattern.rs` with a bit-parallel NFA, not a regex engine. Nesting of `${...}` is capped at
//! 64 levels, so no input can exhaust the stack; nothing here indexes unchecked or unwraps.
//!
//! # BuildKit behaviours reproduced
//!
//! * `$name`, `${name}`; names are a run of digits (`$1x` is `$1` then `x`), one special
//!   parameter character (`@ * # ? - $ ! 0`), or a run of Unicode letters (category L), decimal
//!   digits (Nd) and `_`. A `$` not followed by a name is literal (`$.` stays `$.`).
//! * `${name-word}`, `${name:-word}`, `${name+word}`, `${name:+word}`, `${name?msg}`,
//!   `${name:?msg}` (error `name: msg`, by default `is not allowed to be unset` / `... empty`),
//!   `${name#pat}`, `${name##pat}`, `${name%pat}`, `${name%%pat}`, `${name/pat/repl}`,
//!   `${name//pat/repl}`. Arguments nest and expand; the doubled `#`/`%` is recognised on the
//!   *expanded* argument, as in BuildKit.
//! * Errors: `${}`, `${:...}`, `${{`, a missing `}` or `/`, `${name:=x}`, `${name:x}`,
//!   `${name:#x}`, `${name:%x}`, `${name.}` (unsupported modifier), unterminated quotes, and an
//!   invalid escape in a pattern. Messages are BuildKit's, without its
//!   `failed to process "<word>": ` prefix; [`ShellError::offset`] says where the problem was
//!   found (end of input for anything unterminated, the operator for an unsupported modifier,
//!   the `$` for `?` and pattern errors, the offending character for a bad substitution).
//! * Quotes: `'...'` is literal; inside `"..."` the escape character only escapes `"`, `$` and
//!   itself and stays before anything else. Outside quotes the escape character makes the next
//!   character literal and a trailing one is dropped. The arguments of `#`/`%` and both parts
//!   of `/`/`//` are scanned with escape characters kept (the pattern compiler needs `\*`),
//!   while those of `-`/`+`/`?` have them processed even in `raw_escapes` mode. The pattern
//!   compiler always uses `\`, whatever the escape character.
//! * Word splitting: whitespace (`char::is_whitespace`, the same set as Go's `unicode.IsSpace`)
//!   splits words when it is unquoted, including inside unquoted expansions; quoted and escaped
//!   text never splits, and empty words are dropped. BuildKit shares one partial-word buffer
//!   between nesting levels, so a `${name<op>...}` discards the part of the current word scanned
//!   before it; this is reproduced (see `words.rs`).
//! * Modes: `raw_quotes` keeps quote characters, `raw_escapes` keeps escape characters,
//!   `skip_unset_env` leaves references to unset variables as written (`$name`, `${name}`,
//!   `${name<op><expanded argument>}`, and `${name/pat/repl}` with a single slash even for
//!   `//`), `skip_process_quotes` treats quotes as ordinary characters.
//! * `/` inserts its replacement literally; `//` follows Go's `ReplaceAllString`: `$$` is `$`,
//!   `$0`/`${0}` is the matched text, other `$name`/`${name}` are empty, a malformed `$` stays,
//!   and an empty match right after the previous match is not replaced.
//! * A byte-order mark at the very start of the word (or of a pattern) is skipped, as Go's
//!   `text/scanner` does.

mod expand;
mod pattern;
mod words;

#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::hash::BuildHasher;

use unicode_general_category::{get_general_category, GeneralCategory};

/// A read-only variable lookup.
pub trait Env {
    /// The value of `name`, or `None` when it is unset (an empty value is set).
    fn get(&self, name: &str) -> Option<&str>;
}

impl<S: BuildHasher> Env for HashMap<String, String, S> {
    fn get(&self, name: &str) -> Option<&str> {
        HashMap::get(self, name).map(String::as_str)
    }
}

impl Env for BTreeMap<String, String> {
    fn get(&self, name: &str) -> Option<&str> {
        BTreeMap::get(self, name).map(String::as_str)
    }
}

/// A list of assignments; the last entry for a name wins.
impl Env for [(String, String)] {
    fn get(&self, name: &str) -> Option<&str> {
        self.iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// A list of assignments; the last entry for a name wins.
impl Env for Vec<(String, String)> {
    fn get(&self, name: &str) -> Option<&str> {
        Env::get(self.as_slice(), name)
    }
}

/// No variables at all.
impl Env for () {
    fn get(&self, _name: &str) -> Option<&str> {
        None
    }
}

impl<T: Env + ?Sized> Env for &T {
    fn get(&self, name: &str) -> Option<&str> {
        (**self).get(name)
    }
}

/// The lexer configuration: escape character and processing modes (BuildKit's `shell.Lex`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lexer {
    /// The escape character: `\` by default, `` ` `` with `# escape=`` ` ``.
    pub escape: char,
    /// Keep quote characters in the output.
    pub raw_quotes: bool,
    /// Keep escape characters in the output.
    pub raw_escapes: bool,
    /// Leave references to unset variables as written instead of expanding them to nothing.
    pub skip_unset_env: bool,
    /// Treat quotes as ordinary characters.
    pub skip_process_quotes: bool,
}

impl Default for Lexer {
    fn default() -> Self {
        Lexer::new('\\')
    }
}

/// The result of [`Lexer::process_word_with_matches`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expanded {
    /// The expanded word.
    pub value: String,
    /// Names that were looked up and found set.
    pub matched: BTreeSet<String>,
    /// Names that were looked up and found unset.
    pub unmatched: BTreeSet<String>,
}

/// An expansion error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ShellError {
    /// BuildKit's message, e.g. `syntax error: missing '}'` or `NAME: is not allowed to be unset`.
    pub message: String,
    /// 0-based char offset into the input word where the problem was detected
    pub offset: usize,
}

impl Lexer {
    /// A lexer with escape character `escape` and every mode off.
    pub fn new(escape: char) -> Self {
        Lexer {
            escape,
            raw_quotes: false,
            raw_escapes: false,
            skip_unset_env: false,
            skip_process_quotes: false,
        }
    }

    /// Expands `word` into a single string (BuildKit `ProcessWord`): whitespace is kept.
    pub fn process_word(&self, word: &str, env: &dyn Env) -> Result<String, ShellError> {
        if self.is_literal(word) {
            return Ok(word.to_string());
        }
        expand::Expander::new(self, env, word, false)
            .run()
            .map(|level| level.text)
    }

    /// Whether expansion would return `word` unchanged: it has no `$`, no quote, no escape
    /// character and no leading byte-order mark (the only things the lexer transforms). Most
    /// instruction words are like this; they are returned without running the lexer.
    fn is_literal(&self, word: &str) -> bool {
        !word.starts_with('\u{feff}') && !word.contains(['$', '\'', '"', self.escape])
    }

    /// Expands `word` and splits it into words on unquoted whitespace, including whitespace
    /// produced by unquoted expansions (BuildKit `ProcessWords`).
    pub fn process_words(&self, word: &str, env: &dyn Env) -> Result<Vec<String>, ShellError> {
        expand::Expander::new(self, env, word, false)
            .run()
            .map(|level| level.words)
    }

    /// Like [`Lexer::process_word`], also reporting which variable names were looked up and
    /// whether they were set (BuildKit `ProcessWordWithMatches`).
    pub fn process_word_with_matches(
        &self,
        word: &str,
        env: &dyn Env,
    ) -> Result<Expanded, ShellError> {
        let mut expander = expand::Expander::new(self, env, word, true);
        let level = expander.run()?;
        Ok(Expanded {
            value: level.text,
            matched: std::mem::take(&mut expander.matched),
            unmatched: std::mem::take(&mut expander.unmatched),
        })
    }
}

/// Go's `unicode.IsLetter`: general category L*.
fn is_letter(c: char) -> bool {
    if c.is_ascii() {
        return c.is_ascii_alphabetic();
    }
    matches!(
        get_general_category(c),
        GeneralCategory::UppercaseLetter
            | GeneralCategory::LowercaseLetter
            | GeneralCategory::TitlecaseLetter
            | GeneralCategory::ModifierLetter
            | GeneralCategory::OtherLetter
    )
}

/// Go's `unicode.IsDigit`: general category Nd.
fn is_digit(c: char) -> bool {
    if c.is_ascii() {
        return c.is_ascii_digit();
    }
    get_general_category(c) == GeneralCategory::DecimalNumber
}
