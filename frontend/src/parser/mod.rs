//! The Dockerfile parser: text → [`Ast`], exactly as BuildKit's parser splits it.
//!
//! The grammar is line-oriented, so the parser is too: [`lines`] joins physical lines into
//! logical ones (continuations, comments and blank lines inside them) and keeps a map back to the
//! file; [`directives`] handles `# escape=` and friends; [`node`] splits a logical line into
//! keyword, [`flags`] and [`args`]; [`heredoc`] reads heredoc bodies. Small token grammars
//! (directives, heredoc markers) use nom.
//!
//! Invariants: the parser never panics and never recurses more than a few levels, whatever the
//! input; every error is a [`Diagnostic`] with a line and column in the file.

mod args;
mod directives;
mod dump;
mod flags;
mod goquote;
mod heredoc;
mod lines;
mod node;

pub use directives::{Directive, Directives};
pub use dump::dump;
pub use flags::FlagWord;
pub use goquote::go_quote;
pub use heredoc::{parse_heredoc, Heredoc};
pub use lines::SourceMap;
pub use node::Node;

use crate::diagnostic::{Diagnostic, Position};
use directives::DirectiveError;
use lines::{trim_continuation, trim_newline, LogicalLine};

/// A parsed Dockerfile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ast {
    /// The instructions, in file order.
    pub children: Vec<Node>,
    /// The parser directives found at the top.
    pub directives: Directives,
    /// Non-fatal findings (e.g. empty continuation lines), in file order.
    pub warnings: Vec<Warning>,
}

impl Ast {
    /// The escape character in force for this file.
    pub fn escape(&self) -> char {
        self.directives.escape
    }
}

/// Something worth telling the user that does not stop the build.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Warning {
    pub message: String,
    pub line: usize,
}

/// Parses a whole Dockerfile.
pub fn parse(source: &str) -> Result<Ast, Diagnostic> {
    let lines: Vec<&str> = source.split_inclusive('\n').collect();
    let mut directives = Directives::default();
    let mut children = Vec::new();
    let mut warnings = Vec::new();
    let mut next = 0usize;

    while let Some(&physical) = lines.get(next) {
        next += 1;
        let line_number = next;
        let raw = if line_number == 1 {
            physical.strip_prefix('\u{feff}').unwrap_or(physical)
        } else {
            physical
        };
        let bom = physical.len() - raw.len();
        let text = trim_newline(raw);
        let token = text.trim_start();
        let token_col = bom + text.len() - token.len();
        directives
            .offer(token, line_number)
            .map_err(|e| directive_error(e, line_number, physical, token_col))?;
        let token = if token.starts_with('#') { "" } else { token };
        let (first, mut ends) = trim_continuation(token, directives.escape);
        if ends && first.is_empty() {
            continue;
        }

        let mut logical = LogicalLine::default();
        logical.push(first, line_number, physical, token_col);
        let mut empty_continuation = false;
        while !ends {
            let Some(&physical) = lines.get(next) else {
                break;
            };
            next += 1;
            let text = trim_newline(physical);
            let content = text.trim_start();
            // Comment lines are dropped and blank lines skipped inside a continuation.
            if content.starts_with('#') {
                continue;
            }
            if content.is_empty() {
                empty_continuation = true;
                continue;
            }
            let (piece, piece_ends) = trim_continuation(text, directives.escape);
            ends = piece_ends;
            logical.push(piece, next, physical, 0);
        }
        if empty_continuation {
            warnings.push(Warning {
                message: "Empty continuation line".into(),
                line: line_number,
            });
        }

        let mut node = node::node_from_line(&logical.text, logical.map, directives.escape, 0)?;
        node.start_line = line_number;
        if node.original.contains("<<") && node.can_contain_heredoc() {
            let markers = heredoc::heredocs_in_line(&node.original).map_err(|message| {
                node.diagnostic_on(format!("Invalid heredoc: {message}"), "<<")
            })?;
            for mut doc in markers {
                let mut terminated = false;
                while let Some(&body_line) = lines.get(next) {
                    next += 1;
                    let mut candidate = trim_newline(body_line);
                    if doc.chomp {
                        candidate = candidate.trim_start_matches('\t');
                    }
                    if candidate == doc.name {
                        terminated = true;
                        break;
                    }
                    doc.content.push_str(body_line);
                }
                if !terminated {
                    let mut d = node.diagnostic_on(
                        format!("Unterminated heredoc `{}`", doc.name),
                        &format!("<<{}", doc.name),
                    );
                    d.expected = Some(format!("a line `{}` ending the heredoc", doc.name));
                    return Err(d);
                }
                node.heredocs.push(doc);
            }
        }
        node.end_line = next;
        children.push(node);
    }

    if children.is_empty() {
        let line = lines.len().max(1);
        let column = lines.last().map_or(0, |l| trim_newline(l).chars().count()) + 1;
        return Err(
            Diagnostic::new("File with no instructions", Position { line, column }, 0)
                .expected("at least one instruction, e.g. `FROM image`"),
        );
    }
    Ok(Ast {
        children,
        directives,
        warnings,
    })
}

fn directive_error(e: DirectiveError, line: usize, physical: &str, token_col: usize) -> Diagnostic {
    let column_of = |byte: usize| physical.get(..byte).map_or(0, |s| s.chars().count()) + 1;
    match e {
        DirectiveError::Repeated { name } => Diagnostic::new(
            format!("Only one `{name}` parser directive can be used"),
            Position {
                line,
                column: column_of(token_col),
            },
            trim_newline(physical).trim().chars().count(),
        ),
        DirectiveError::InvalidEscape { value, offset } => Diagnostic::new(
            format!("Invalid escape token `{value}`"),
            Position {
                line,
                column: column_of(token_col + offset),
            },
            value.chars().count(),
        )
        .expected("`\\` or `` ` ``"),
    }
}

#[cfg(test)]
mod tests;
