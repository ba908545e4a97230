//! Physical lines → logical lines, with a map back to the file.
//!
//! BuildKit's line rules: a line is split on LF and loses every trailing CR/LF; the escape
//! character ends a line as a continuation when it is the last character apart from trailing
//! spaces and tabs and the character before it is not also the escape character (a line made only
//! of the escape character continues too). The continuation character and its trailing blanks go,
//! the next physical line is appended as is (not left-trimmed), comment lines and blank lines
//! inside a continuation are skipped.
//!
//! A [`SourceMap`] remembers, for every piece of the logical line, the physical line and column it
//! came from, so an error found anywhere in an instruction points at the right place.

use crate::diagnostic::Position;

/// Removes every trailing `\r` and `\n` (Go's `bytes.TrimRight(line, "\r\n")`).
pub(crate) fn trim_newline(line: &str) -> &str {
    line.trim_end_matches(['\r', '\n'])
}

/// Splits a continuation off `line`: returns the kept text and `true` when the line ends the
/// instruction, `false` when it continues on the next line.
pub(crate) fn trim_continuation(line: &str, escape: char) -> (&str, bool) {
    let body = line.trim_end_matches([' ', '\t']);
    let Some(before) = body.strip_suffix(escape) else {
        return (line, true);
    };
    if before.is_empty() {
        return ("", false);
    }
    if before.ends_with(escape) {
        return (line, true);
    }
    (before, false)
}

/// Where one piece of a logical line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Segment {
    /// Byte offset of the piece in the logical line.
    logical: usize,
    /// 1-based physical line.
    line: usize,
    /// 1-based character column of the piece's first character on that line.
    column: usize,
}

/// Maps byte offsets of a logical line back to physical positions.
///
/// Invariant: segments are sorted by `logical`, and the first starts at 0.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SourceMap {
    segments: Vec<Segment>,
}

impl SourceMap {
    /// The position of byte `offset` of `text` (the logical line this map was built for, or a
    /// suffix of it for a map made by [`SourceMap::shifted`]).
    pub fn position(&self, text: &str, offset: usize) -> Position {
        let offset = offset.min(text.len());
        let index = self
            .segments
            .partition_point(|s| s.logical <= offset)
            .saturating_sub(1);
        let Some(segment) = self.segments.get(index) else {
            return Position { line: 1, column: 1 };
        };
        let start = segment.logical.min(offset);
        let chars = text.get(start..offset).map_or(0, |s| s.chars().count());
        Position {
            line: segment.line,
            column: segment.column + chars,
        }
    }

    /// The map of `text[delta..]`, where `text` is the line this map was built for.
    pub fn shifted(&self, text: &str, delta: usize) -> SourceMap {
        let delta = delta.min(text.len());
        let first = self
            .segments
            .partition_point(|s| s.logical <= delta)
            .saturating_sub(1);
        let segments = self
            .segments
            .iter()
            .skip(first)
            .map(|s| {
                if s.logical <= delta {
                    let skipped = text.get(s.logical..delta).map_or(0, |t| t.chars().count());
                    Segment {
                        logical: 0,
                        line: s.line,
                        column: s.column + skipped,
                    }
                } else {
                    Segment {
                        logical: s.logical - delta,
                        ..*s
                    }
                }
            })
            .collect();
        SourceMap { segments }
    }
}

/// A logical line under construction.
#[derive(Debug, Default)]
pub(crate) struct LogicalLine {
    pub text: String,
    pub map: SourceMap,
}

impl LogicalLine {
    /// Appends `piece`, which starts at byte `byte_col` of physical line `line` (`physical`).
    pub fn push(&mut self, piece: &str, line: usize, physical: &str, byte_col: usize) {
        let column = physical.get(..byte_col).map_or(0, |s| s.chars().count()) + 1;
        self.map.segments.push(Segment {
            logical: self.text.len(),
            line,
            column,
        });
        self.text.push_str(piece);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn continuation_rules() {
        assert_eq!(trim_continuation("a \\", '\\'), ("a ", false));
        assert_eq!(trim_continuation("a\\  \t", '\\'), ("a", false));
        assert_eq!(trim_continuation("a\\\\", '\\'), ("a\\\\", true));
        assert_eq!(trim_continuation("\\", '\\'), ("", false));
        assert_eq!(trim_continuation("  \\ ", '\\'), ("  ", false));
        assert_eq!(trim_continuation("a `", '`'), ("a ", false));
        assert_eq!(trim_continuation("c:\\", '`'), ("c:\\", true));
        assert_eq!(trim_continuation("abc", '\\'), ("abc", true));
    }

    #[test]
    fn maps_offsets_back() {
        let mut l = LogicalLine::default();
        l.push("RUN a ", 3, "  RUN a \\", 2);
        l.push("  b", 4, "  b", 0);
        let text = l.text.clone();
        assert_eq!(l.map.position(&text, 0), Position { line: 3, column: 3 });
        assert_eq!(l.map.position(&text, 4), Position { line: 3, column: 7 });
        assert_eq!(l.map.position(&text, 8), Position { line: 4, column: 3 });
        let sub = l.map.shifted(&text, 4);
        assert_eq!(sub.position(&text[4..], 0), Position { line: 3, column: 7 });
        assert_eq!(sub.position(&text[4..], 4), Position { line: 4, column: 3 });
    }
}
