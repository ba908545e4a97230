//! One instruction of the AST and how it is built from a logical line.

use super::args::{self, Args, ArgsError};
use super::flags::{extract_flags, FlagWord};
use super::heredoc::Heredoc;
use super::lines::SourceMap;
use crate::diagnostic::{Diagnostic, Position};

/// ONBUILD may nest an instruction; BuildKit refuses `ONBUILD ONBUILD` later, we refuse deep
/// nesting here so hostile input cannot exhaust the stack.
const MAX_NESTING: usize = 8;

/// One instruction as the parser sees it: keyword, flags, argument nodes, heredocs, lines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    /// The instruction word exactly as written (`From`, `RUN`, ...).
    pub keyword: String,
    /// Leading `--flag` words, unquoted.
    pub flags: Vec<FlagWord>,
    /// Argument nodes (see [`super::args`] for what they are per instruction).
    pub args: Vec<String>,
    /// The arguments came from a JSON array (exec form).
    pub json: bool,
    /// ONBUILD's trigger instruction.
    pub subcommand: Option<Box<Node>>,
    /// Heredocs read after this instruction's line, in order.
    pub heredocs: Vec<Heredoc>,
    /// The logical line (continuations joined) this node was parsed from.
    pub original: String,
    /// 1-based first and last physical line (the last includes skipped lines and heredoc bodies).
    pub start_line: usize,
    pub end_line: usize,
    /// Byte offset in `original` where the arguments start (after the flags).
    pub args_offset: usize,
    /// `keyword` lowercased once, the way Go's `strings.ToLower` does it.
    lower: String,
    pub(crate) map: SourceMap,
}

impl Node {
    /// The lowercased keyword, the key every later stage dispatches on.
    pub fn name(&self) -> &str {
        &self.lower
    }

    /// Position of byte `offset` of `original`.
    pub fn position_of(&self, offset: usize) -> Position {
        self.map.position(&self.original, offset)
    }

    /// A diagnostic about the text at byte `offset` of `original`, `len` bytes long.
    pub fn diagnostic_at(
        &self,
        message: impl Into<String>,
        offset: usize,
        len: usize,
    ) -> Diagnostic {
        let len_chars = self
            .original
            .get(offset..offset.saturating_add(len).min(self.original.len()))
            .map_or(1, |s| s.chars().count());
        Diagnostic::new(message, self.position_of(offset), len_chars)
    }

    /// A diagnostic pointing at the keyword.
    pub fn diagnostic(&self, message: impl Into<String>) -> Diagnostic {
        let offset = self.original.len() - self.original.trim_start().len();
        self.diagnostic_at(message, offset, self.keyword.len())
    }

    /// A diagnostic pointing at the first occurrence of `needle` in the arguments (or at the
    /// keyword when it cannot be found, e.g. text that came out of JSON escapes).
    pub fn diagnostic_on(&self, message: impl Into<String>, needle: &str) -> Diagnostic {
        let found = (!needle.is_empty())
            .then(|| self.original.get(self.args_offset..))
            .flatten()
            .and_then(|args| args.find(needle))
            .map(|at| at + self.args_offset);
        match found {
            Some(at) => self.diagnostic_at(message, at, needle.len()),
            None => self.diagnostic(message),
        }
    }

    /// A diagnostic pointing at flag number `index`.
    pub fn diagnostic_on_flag(&self, message: impl Into<String>, index: usize) -> Diagnostic {
        match self.flags.get(index) {
            Some(flag) => {
                let len = self.original[flag.offset..]
                    .find(char::is_whitespace)
                    .unwrap_or(self.original.len() - flag.offset);
                self.diagnostic_at(message, flag.offset, len)
            }
            None => self.diagnostic(message),
        }
    }

    /// A diagnostic pointing at the first flag whose text contains `needle` (e.g. the value of
    /// `--mount=...` or `--from=...`), or at the keyword.
    pub fn diagnostic_on_flag_text(&self, message: impl Into<String>, needle: &str) -> Diagnostic {
        let index = self
            .flags
            .iter()
            .position(|f| f.text.contains(needle))
            .unwrap_or(usize::MAX);
        self.diagnostic_on_flag(message, index)
    }

    /// Whether heredocs are looked for after this line: RUN, COPY, ADD (also as ONBUILD's
    /// trigger) in non-JSON form.
    pub(crate) fn can_contain_heredoc(&self) -> bool {
        let node = match &self.subcommand {
            Some(sub) if self.name() == "onbuild" => sub.as_ref(),
            _ => self,
        };
        !node.json && matches!(node.name(), "add" | "copy" | "run")
    }
}

/// Go's `strings.ToLower`: each character on its own, one character each (so `İ` → `i` and a
/// final `Σ` → `σ`, unlike Rust's context-sensitive `str::to_lowercase`).
pub(crate) fn go_lowercase(s: &str) -> String {
    s.chars()
        .map(|c| match c {
            '\u{130}' => 'i',
            c => c.to_lowercase().next().unwrap_or(c),
        })
        .collect()
}

/// Builds a node from a logical line. `escape` is the file's escape character.
pub(crate) fn node_from_line(
    line: &str,
    map: SourceMap,
    escape: char,
    depth: usize,
) -> Result<Node, Diagnostic> {
    let lead = line.len() - line.trim_start().len();
    let trimmed = line.trim();
    let keyword_end = trimmed.find(args::is_split_blank).unwrap_or(trimmed.len());
    let keyword = &trimmed[..keyword_end];
    let after = trimmed[keyword_end..].trim_start_matches(args::is_split_blank);
    let after_offset = lead + trimmed.len() - after.len();
    let (rest_at, flags) = extract_flags(after, escape, after_offset);
    let rest_raw = &after[rest_at..];
    let rest = rest_raw.trim();
    let args_offset = after_offset + rest_at + (rest_raw.len() - rest_raw.trim_start().len());

    let mut node = Node {
        keyword: keyword.to_string(),
        flags,
        args: Vec::new(),
        json: false,
        subcommand: None,
        heredocs: Vec::new(),
        original: line.to_string(),
        start_line: 0,
        end_line: 0,
        args_offset,
        lower: go_lowercase(keyword),
        map,
    };
    let parsed: Result<Args, ArgsError> = match node.lower.as_str() {
        "add" | "copy" | "volume" => args::maybe_json_list(rest),
        "run" | "cmd" | "entrypoint" | "shell" => args::maybe_json(rest),
        "from" | "expose" => Ok(Args {
            values: args::split_blanks(rest),
            json: false,
        }),
        "maintainer" | "user" | "workdir" | "stopsignal" => Ok(args::whole(rest)),
        "arg" => Ok(Args {
            values: args::words(rest, escape),
            json: false,
        }),
        "env" => args::name_values(rest, "ENV", escape),
        "label" => args::name_values(rest, "LABEL", escape),
        "healthcheck" => args::healthcheck(rest),
        "onbuild" => {
            if !rest.is_empty() {
                if depth >= MAX_NESTING {
                    return Err(node.diagnostic("ONBUILD triggers are nested too deeply"));
                }
                let sub_map = node.map.shifted(line, args_offset);
                let sub = node_from_line(rest, sub_map, escape, depth + 1)?;
                node.subcommand = Some(Box::new(sub));
            }
            Ok(Args::default())
        }
        _ => Ok(Args {
            values: vec![String::new()],
            json: false,
        }),
    };
    match parsed {
        Ok(args) => {
            node.args = args.values;
            node.json = args.json;
            Ok(node)
        }
        Err(e) => {
            let mut d = node.diagnostic_at(e.message, args_offset + e.offset, e.len);
            d.expected = e.expected;
            Err(d)
        }
    }
}
