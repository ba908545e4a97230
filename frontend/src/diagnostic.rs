//! Errors with a location in the Dockerfile.
//!
//! Every error the frontend reports is a [`Diagnostic`]: a message, the 1-based line and column
//! (counted in characters, as editors do) of the offending text, how many characters of that line
//! it covers, and optionally what was expected. The CLI renders it rustc-style with the source
//! line and a caret; the frontend never prints.

use std::fmt;

/// A point in the Dockerfile: 1-based line, 1-based column counted in Unicode scalar values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
pub struct Position {
    pub line: usize,
    pub column: usize,
}

/// A frontend error, located in the source.
///
/// Invariant: `position.line >= 1` and `position.column >= 1`; `len` may be 0 (a point, e.g. the
/// end of the file).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct Diagnostic {
    /// What went wrong, capitalised, values in backticks.
    pub message: String,
    /// Where: the first character of the offending text.
    pub position: Position,
    /// How many characters (on `position.line`) the offending text covers.
    pub len: usize,
    /// What would have been accepted, when that is known.
    pub expected: Option<String>,
}

impl Diagnostic {
    /// A diagnostic at `position` covering `len` characters.
    pub fn new(message: impl Into<String>, position: Position, len: usize) -> Self {
        Diagnostic {
            message: message.into(),
            position: Position {
                line: position.line.max(1),
                column: position.column.max(1),
            },
            len,
            expected: None,
        }
    }

    /// Adds what was expected instead.
    pub fn expected(mut self, expected: impl Into<String>) -> Self {
        self.expected = Some(expected.into());
        self
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.message)?;
        if let Some(expected) = &self.expected {
            write!(f, " (expected {expected})")?;
        }
        Ok(())
    }
}
