//! The scanner proper: quotes, escapes and `$` expansions over one input word.
//!
//! The structure follows BuildKit's recursive descent: a level scans until a stop character
//! (end of input, `}` or `/`), handing `$` and quotes to their own routines, and a
//! `${name<op>...}` opens a nested level for its argument. Which escape mode a level uses is
//! passed down explicitly (BuildKit keeps it in mutable state with the same scoping).

use std::collections::BTreeSet;

use super::pattern;
use super::words::Words;
use super::{is_digit, is_letter, Env, Lexer, ShellError};

/// Deepest nesting of `${name<op>...}` accepted; BuildKit has no limit, we refuse to recurse
/// without bound.
pub(crate) const MAX_NESTING: usize = 64;

/// State of one expansion run.
pub(crate) struct Expander<'a> {
    lex: &'a Lexer,
    env: &'a dyn Env,
    chars: Vec<char>,
    pos: usize,
    capture: bool,
    pub(crate) matched: BTreeSet<String>,
    pub(crate) unmatched: BTreeSet<String>,
    /// The partial word, shared by all levels (see [`super::words`]).
    word_buf: String,
    depth: usize,
}

fn err(message: impl Into<String>, offset: usize) -> ShellError {
    ShellError {
        message: message.into(),
        offset,
    }
}

/// The special parameters that form a one-character name.
fn is_special_param(c: char) -> bool {
    matches!(c, '@' | '*' | '#' | '?' | '-' | '$' | '!' | '0')
}

/// What a scanning level produced.
pub(crate) struct Level {
    pub(crate) text: String,
    pub(crate) words: Vec<String>,
}

impl<'a> Expander<'a> {
    pub(crate) fn new(lex: &'a Lexer, env: &'a dyn Env, word: &str, capture: bool) -> Self {
        let chars: Vec<char> = word.chars().collect();
        // Go's text/scanner drops a byte-order mark at the very start of its input.
        let pos = usize::from(chars.first() == Some(&'\u{FEFF}'));
        Expander {
            lex,
            env,
            chars,
            pos,
            capture,
            matched: BTreeSet::new(),
            unmatched: BTreeSet::new(),
            word_buf: String::new(),
            depth: 0,
        }
    }

    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }

    fn next(&mut self) -> Option<char> {
        let c = self.peek();
        if c.is_some() {
            self.pos += 1;
        }
        c
    }

    fn at_end(&self) -> bool {
        self.pos >= self.chars.len()
    }

    fn eof_offset(&self) -> usize {
        self.chars.len()
    }

    /// Scans the whole word.
    pub(crate) fn run(&mut self) -> Result<Level, ShellError> {
        self.stop_on(None, self.lex.raw_escapes)
    }

    /// Scans until `stop` (consumed) or the end of input, which is an error when a stop
    /// character was expected.
    fn stop_on(&mut self, stop: Option<char>, raw_escapes: bool) -> Result<Level, ShellError> {
        let mut text = String::new();
        let mut words = Words::default();
        self.word_buf.clear();
        let quotes = !self.lex.skip_process_quotes;

        while let Some(ch) = self.peek() {
            if stop == Some(ch) {
                self.pos += 1;
                let words = words.finish(&mut self.word_buf);
                return Ok(Level { text, words });
            }
            match ch {
                '$' => {
                    let value = self.dollar()?;
                    text.push_str(&value);
                    words.add_str(&mut self.word_buf, &value);
                }
                '\'' if quotes => {
                    let value = self.single_quote()?;
                    text.push_str(&value);
                    words.add_raw_str(&mut self.word_buf, &value);
                }
                '"' if quotes => {
                    let value = self.double_quote(raw_escapes)?;
                    text.push_str(&value);
                    words.add_raw_str(&mut self.word_buf, &value);
                }
                _ => {
                    self.pos += 1;
                    if ch == self.lex.escape {
                        if raw_escapes {
                            words.add_raw_char(&mut self.word_buf, ch);
                            text.push(ch);
                        }
                        // The escape makes the next character literal; a trailing one is dropped.
                        let Some(escaped) = self.next() else { break };
                        words.add_raw_char(&mut self.word_buf, escaped);
                        text.push(escaped);
                    } else {
                        words.add_char(&mut self.word_buf, ch);
                        text.push(ch);
                    }
                }
            }
        }
        if let Some(stop) = stop {
            return Err(err(
                format!("unexpected end of statement while looking for matching {stop}"),
                self.eof_offset(),
            ));
        }
        let words = words.finish(&mut self.word_buf);
        Ok(Level { text, words })
    }

    /// `'...'`: everything literal up to the next single quote.
    fn single_quote(&mut self) -> Result<String, ShellError> {
        let mut out = String::new();
        let raw = self.lex.raw_quotes;
        if let Some(q) = self.next() {
            if raw {
                out.push(q);
            }
        }
        loop {
            match self.next() {
                None => {
                    return Err(err(
                        "unexpected end of statement while looking for matching single-quote",
                        self.eof_offset(),
                    ))
                }
                Some('\'') => {
                    if raw {
                        out.push('\'');
                    }
                    return Ok(out);
                }
                Some(c) => out.push(c),
            }
        }
    }

    /// `"..."`: `$` expands; the escape character only escapes `"`, `$` and itself and is kept
    /// before anything else.
    fn double_quote(&mut self, raw_escapes: bool) -> Result<String, ShellError> {
        let mut out = String::new();
        let raw = self.lex.raw_quotes;
        if let Some(q) = self.next() {
            if raw {
                out.push(q);
            }
        }
        loop {
            match self.peek() {
                None => {
                    return Err(err(
                        "unexpected end of statement while looking for matching double-quote",
                        self.eof_offset(),
                    ))
                }
                Some('"') => {
                    self.pos += 1;
                    if raw {
                        out.push('"');
                    }
                    return Ok(out);
                }
                Some('$') => {
                    let value = self.dollar()?;
                    out.push_str(&value);
                }
                Some(mut c) => {
                    self.pos += 1;
                    let escape = self.lex.escape;
                    if c == escape {
                        if raw_escapes {
                            out.push(c);
                        }
                        match self.peek() {
                            // Dropped here; the loop then reports the missing quote.
                            None => continue,
                            Some(n) if n == '"' || n == '$' || n == escape => {
                                self.pos += 1;
                                c = n;
                            }
                            Some(_) => {}
                        }
                    }
                    out.push(c);
                }
            }
        }
    }

    /// Reads a parameter name: a run of digits, one special-parameter character, or a run of
    /// letters, digits and underscores. May be empty.
    fn name(&mut self) -> String {
        let mut name = String::new();
        while let Some(c) = self.peek() {
            if name.is_empty() && is_digit(c) {
                while let Some(d) = self.peek().filter(|&d| is_digit(d)) {
                    name.push(d);
                    self.pos += 1;
                }
                return name;
            }
            if name.is_empty() && is_special_param(c) {
                self.pos += 1;
                return c.to_string();
            }
            if !(is_letter(c) || is_digit(c) || c == '_') {
                break;
            }
            name.push(c);
            self.pos += 1;
        }
        name
    }

    fn lookup(&mut self, name: &str) -> Option<String> {
        let value = self.env.get(name).map(str::to_owned);
        if self.capture {
            let set = if value.is_some() {
                &mut self.matched
            } else {
                &mut self.unmatched
            };
            if !set.contains(name) {
                set.insert(name.to_owned());
            }
        }
        value
    }

    /// Scans a nested level, turning "ran out of input" into `missing_msg`.
    fn nested(
        &mut self,
        stop: char,
        raw_escapes: bool,
        missing_msg: &str,
    ) -> Result<String, ShellError> {
        match self.stop_on(Some(stop), raw_escapes) {
            Ok(level) => Ok(level.text),
            Err(_) if self.at_end() => Err(err(missing_msg, self.eof_offset())),
            Err(e) => Err(e),
        }
    }

    /// A `$` at the cursor: `$name`, `${name}` or `${name<op>...}`.
    fn dollar(&mut self) -> Result<String, ShellError> {
        let start = self.pos;
        self.pos += 1;
        if self.peek() != Some('{') {
            let name = self.name();
            if name.is_empty() {
                return Ok("$".to_owned());
            }
            return Ok(match self.lookup(&name) {
                Some(v) => v,
                None if self.lex.skip_unset_env => format!("${name}"),
                None => String::new(),
            });
        }
        self.pos += 1;
        match self.peek() {
            None => return Err(err("syntax error: missing '}'", self.eof_offset())),
            Some('{' | '}' | ':') => return Err(err("syntax error: bad substitution", self.pos)),
            Some(_) => {}
        }
        if self.depth >= MAX_NESTING {
            return Err(err(
                format!("syntax error: substitutions nested deeper than {MAX_NESTING} levels"),
                start,
            ));
        }
        self.depth += 1;
        let result = self.braced(start);
        self.depth -= 1;
        result
    }

    /// The rest of `${`: a name, then `}` or an operator with its argument(s).
    fn braced(&mut self, start: usize) -> Result<String, ShellError> {
        let name = self.name();
        let op_at = self.pos;
        let first = self.next();
        match first {
            Some('}') => Ok(match self.lookup(&name) {
                Some(v) => v,
                None if self.lex.skip_unset_env => format!("${{{name}}}"),
                None => String::new(),
            }),
            Some(c @ (':' | '+' | '-' | '?' | '#' | '%')) => {
                let colon = c == ':';
                let op = if colon { self.next() } else { Some(c) };
                // Go renders the end of input as U+FFFD.
                let op_char = op.unwrap_or('\u{FFFD}');
                let ops = if colon {
                    format!(":{op_char}")
                } else {
                    op_char.to_string()
                };
                let is_pattern = matches!(op, Some('#' | '%'));
                if colon && is_pattern {
                    return Err(unsupported(&ops, op_at));
                }
                let word = self.nested('}', is_pattern, "syntax error: missing '}'")?;
                let value = self.lookup(&name);
                if value.is_none() && self.lex.skip_unset_env {
                    return Ok(format!("${{{name}{ops}{word}}}"));
                }
                let modifier = Modifier {
                    name: &name,
                    op,
                    text: &ops,
                    colon,
                    start,
                    op_at,
                };
                modifier.apply(value, word)
            }
            Some('/') => {
                let all = self.peek() == Some('/');
                if all {
                    self.pos += 1;
                }
                let pat = self.nested('/', true, "syntax error: missing '/' in ${}")?;
                let repl = self.nested('}', true, "syntax error: missing '}'")?;
                let value = match self.lookup(&name) {
                    Some(v) => v,
                    None if self.lex.skip_unset_env => {
                        return Ok(format!("${{{name}/{pat}/{repl}}}"))
                    }
                    None => String::new(),
                };
                pattern::replace(&pat, &value, &repl, all).map_err(|m| err(m, start))
            }
            other => Err(unsupported(&other.unwrap_or('\u{FFFD}').to_string(), op_at)),
        }
    }
}

/// A parsed `${name<op>word}` operator (not `/`).
struct Modifier<'n> {
    name: &'n str,
    /// The operator character after the optional colon (`None`: end of input).
    op: Option<char>,
    /// The operator as written (`-`, `:-`, ...), for error messages.
    text: &'n str,
    /// A colon was present: an empty value counts as unset.
    colon: bool,
    /// Offset of the `$`.
    start: usize,
    /// Offset of the operator.
    op_at: usize,
}

impl Modifier<'_> {
    fn apply(&self, value: Option<String>, word: String) -> Result<String, ShellError> {
        let null = value.as_ref().is_none_or(|v| self.colon && v.is_empty());
        match self.op {
            Some('-') => Ok(if null {
                word
            } else {
                value.unwrap_or_default()
            }),
            Some('+') => Ok(if null { String::new() } else { word }),
            Some('?') => match value {
                None => Err(self.required(word, "is not allowed to be unset")),
                Some(_) if null => Err(self.required(word, "is not allowed to be empty")),
                Some(v) => Ok(v),
            },
            Some('#' | '%') => trim(self.op, value.unwrap_or_default(), word, self.start),
            _ => Err(unsupported(self.text, self.op_at)),
        }
    }

    /// The error of `${name?msg}` / `${name:?msg}`.
    fn required(&self, word: String, default: &str) -> ShellError {
        let msg = if word.is_empty() {
            default.to_owned()
        } else {
            word
        };
        err(format!("{}: {msg}", self.name), self.start)
    }
}

fn unsupported(op: &str, offset: usize) -> ShellError {
    err(
        format!("unsupported modifier ({op}) in substitution"),
        offset,
    )
}

/// `#`, `##`, `%`, `%%`: a doubled operator (seen as the argument's first character after
/// expansion, as in BuildKit) selects the longest match.
fn trim(op: Option<char>, value: String, word: String, start: usize) -> Result<String, ShellError> {
    let (longest, pat) = match (word.chars().next(), op) {
        (Some(f), Some(o)) if f == o => (true, word.get(f.len_utf8()..).unwrap_or_default()),
        _ => (false, word.as_str()),
    };
    let res = if op == Some('%') {
        pattern::trim_suffix(pat, &value, longest)
    } else {
        pattern::trim_prefix(pat, &value, longest)
    };
    res.map_err(|m| err(m, start))
}
