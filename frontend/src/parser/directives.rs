//! Parser directives: `# syntax=`, `# escape=`, `# check=` at the very top of a Dockerfile.
//!
//! BuildKit's rules: every line is offered to the directive parser until the first line that is
//! not a well-formed directive of a known name (a blank line, an ordinary comment, an
//! instruction); from then on nothing is a directive. A directive line is
//! `#`, any whitespace, then `NAME\s*=\s*VALUE\s*` (Go's `\s`) with NAME `[A-Za-z][A-Za-z0-9]*`, matched
//! case-insensitively against the known names. Repeating a directive is an error, and `escape`
//! accepts only `\` and `` ` ``.

use nom::bytes::complete::take_while;
use nom::character::complete::{char, satisfy};
use nom::combinator::recognize;
use nom::sequence::pair;
use nom::{IResult, Parser};

/// One directive as written.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Directive {
    /// Lowercased name: `syntax`, `escape` or `check`.
    pub name: String,
    /// The value, trimmed of trailing spaces and tabs.
    pub value: String,
    /// 1-based line of the directive.
    pub line: usize,
}

/// The directives of a file and the escape character they select.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Directives {
    /// The escape (and line-continuation) character: `\` unless `# escape=` set `` ` ``.
    pub escape: char,
    /// Every directive, in file order.
    pub parsed: Vec<Directive>,
    #[serde(skip)]
    done: bool,
}

impl Default for Directives {
    fn default() -> Self {
        Directives {
            escape: '\\',
            parsed: Vec::new(),
            done: false,
        }
    }
}

/// Why a directive line was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum DirectiveError {
    Repeated { name: String },
    InvalidEscape { value: String, offset: usize },
}

const KNOWN: [&str; 3] = ["syntax", "escape", "check"];

impl Directives {
    /// The value of directive `name` (lowercase), if present.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.parsed
            .iter()
            .find(|d| d.name == name)
            .map(|d| d.value.as_str())
    }

    /// Offers one line (newline removed; the first line of an instruction also left-trimmed).
    pub(crate) fn offer(&mut self, line: &str, line_number: usize) -> Result<(), DirectiveError> {
        if self.done {
            return Ok(());
        }
        let Some((name, value, value_offset)) = split_directive(line) else {
            self.done = true;
            return Ok(());
        };
        let name = name.to_ascii_lowercase();
        if !KNOWN.contains(&name.as_str()) {
            self.done = true;
            return Ok(());
        }
        if self.parsed.iter().any(|d| d.name == name) {
            return Err(DirectiveError::Repeated { name });
        }
        if name == "escape" {
            self.escape = match value {
                "\\" => '\\',
                "`" => '`',
                _ => {
                    return Err(DirectiveError::InvalidEscape {
                        value: value.to_string(),
                        offset: value_offset,
                    })
                }
            };
        }
        self.parsed.push(Directive {
            name,
            value: value.to_string(),
            line: line_number,
        });
        Ok(())
    }
}

/// Go regexp's `\s`: `[\t\n\f\r ]`.
fn is_go_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\n' | '\u{c}' | '\r')
}

fn blanks(input: &str) -> IResult<&str, &str> {
    take_while(is_go_space).parse(input)
}

fn directive_name(input: &str) -> IResult<&str, &str> {
    recognize(pair(
        satisfy(|c| c.is_ascii_alphabetic()),
        take_while(|c: char| c.is_ascii_alphanumeric()),
    ))
    .parse(input)
}

/// Splits `#` + any whitespace + `NAME\s*=\s*VALUE\s*` (BuildKit: the `#` is cut and Unicode
/// whitespace trimmed before its `^([a-zA-Z][a-zA-Z0-9]*)\s*=\s*(.+?)\s*$`). Returns name,
/// value and the value's byte offset in `line`.
fn split_directive(line: &str) -> Option<(&str, &str, usize)> {
    let after_hash = line.strip_prefix('#')?.trim_start();
    let mut head = (directive_name, blanks, char('='));
    let (after_eq, (name, _, _)) = head.parse(after_hash).ok()?;
    let after_eq_offset = line.len() - after_eq.len();
    let (value_start, _) = blanks(after_eq).ok()?;
    let value = value_start.trim_end_matches(is_go_space);
    if !value.is_empty() {
        let offset = line.len() - value_start.len();
        return Some((name, value, offset));
    }
    // Only blanks follow `=`: the lazy `(.+?)` then takes the last blank as the value.
    let last = after_eq.chars().last()?;
    let start = after_eq.len() - last.len_utf8();
    Some((name, &after_eq[start..], after_eq_offset + start))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_directives() {
        assert_eq!(split_directive("# escape=`"), Some(("escape", "`", 9)));
        assert_eq!(
            split_directive("#syntax = x/y "),
            Some(("syntax", "x/y", 10))
        );
        assert_eq!(split_directive("# ESCAPE=\\"), Some(("ESCAPE", "\\", 9)));
        assert_eq!(split_directive("# escape="), None);
        assert_eq!(split_directive("# escape= "), Some(("escape", " ", 9)));
        assert_eq!(split_directive("# not a directive"), None);
        assert_eq!(split_directive("FROM x"), None);
        assert_eq!(split_directive("# 1x=y"), None);
        assert_eq!(split_directive("#\rescape=`"), Some(("escape", "`", 9)));
        assert_eq!(
            split_directive("#\u{a0}escape=`"),
            Some(("escape", "`", 10))
        );
        assert_eq!(
            split_directive("# escape\u{c}=`\u{c}"),
            Some(("escape", "`", 10))
        );
        assert_eq!(split_directive("# escape \u{b}= x"), None);
    }

    #[test]
    fn stops_at_first_non_directive() {
        let mut d = Directives::default();
        d.offer("# escape=`", 1).expect("valid");
        assert_eq!(d.escape, '`');
        d.offer("# comment", 2).expect("valid");
        d.offer("# syntax=x", 3).expect("ignored");
        assert_eq!(d.get("syntax"), None);
    }

    #[test]
    fn unknown_name_ends_directives() {
        let mut d = Directives::default();
        d.offer("# foo=bar", 1).expect("valid");
        d.offer("# escape=`", 2).expect("ignored");
        assert_eq!(d.escape, '\\');
    }

    #[test]
    fn refuses_repeats_and_bad_escape() {
        let mut d = Directives::default();
        d.offer("# check=skip=all", 1).expect("valid");
        assert_eq!(
            d.offer("# CHECK=x", 2),
            Err(DirectiveError::Repeated {
                name: "check".into()
            })
        );
        let mut d = Directives::default();
        assert!(matches!(
            d.offer("# escape=x", 1),
            Err(DirectiveError::InvalidEscape { .. })
        ));
    }
}
