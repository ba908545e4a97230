//! Heredocs (`<<EOF`, `<<-EOF`, `3<<"EOF"`) on RUN, COPY and ADD lines.
//!
//! BuildKit finds them by lexing the whole instruction line into shell words (quotes and escapes
//! kept, always with `\` as the escape) and taking each word of the form `[digits]<<[-]NAME`
//! where NAME has no `<`. NAME is lexed once more, with and without its quotes: if the counts of
//! quote characters differ, part of it was quoted and the body is not expanded later.

use nom::bytes::complete::{tag, take_while};
use nom::combinator::opt;
use nom::{IResult, Parser};

use crate::shell::Lexer;

/// One heredoc attached to an instruction.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Heredoc {
    /// The delimiter word, unquoted (`EOF` for `<<"EOF"`).
    pub name: String,
    /// The file descriptor before `<<` (0 when absent).
    pub file_descriptor: u32,
    /// Whether variables in the body are expanded (false when the delimiter was quoted).
    pub expand: bool,
    /// `<<-`: leading tabs are stripped from the body lines and the delimiter line.
    pub chomp: bool,
    /// The body: every line up to the delimiter line, each with its line ending.
    pub content: String,
}

impl Heredoc {
    /// The body with leading tabs removed from every line when `chomp` is set.
    pub fn chomped_content(&self) -> String {
        if !self.chomp {
            return self.content.clone();
        }
        self.content
            .split_inclusive('\n')
            .map(|l| l.trim_start_matches('\t'))
            .collect()
    }
}

fn marker(word: &str) -> IResult<&str, (&str, Option<&str>, &str)> {
    (
        take_while(|c: char| c.is_ascii_digit()),
        tag("<<"),
        opt(tag("-")),
    )
        .parse(word)
        .map(|(rest, (digits, _, dash))| ("", (digits, dash, rest)))
}

/// Parses one word as a heredoc marker. `Ok(None)` when it is not one.
pub fn parse_heredoc(word: &str) -> Result<Option<Heredoc>, String> {
    let Ok((_, (digits, dash, rest))) = marker(word) else {
        return Ok(None);
    };
    if rest.is_empty() || rest.contains('<') {
        return Ok(None);
    }
    let mut lexer = Lexer::new('\\');
    lexer.skip_unset_env = true;
    let words = lexer.process_words(rest, &()).map_err(|e| e.message)?;
    let [name] = words.as_slice() else {
        return Ok(None);
    };
    lexer.raw_quotes = true;
    let raw = lexer.process_words(rest, &()).map_err(|e| e.message)?;
    let [raw_name] = raw.as_slice() else {
        return Err(format!(
            "internal lexing of heredoc produced inconsistent results: {rest}"
        ));
    };
    let quotes = |s: &str| s.chars().filter(|c| *c == '\'' || *c == '"').count();
    Ok(Some(Heredoc {
        name: name.clone(),
        file_descriptor: digits.parse().unwrap_or(0),
        expand: quotes(name) == quotes(raw_name),
        chomp: dash.is_some(),
        content: String::new(),
    }))
}

/// `<<`, `<<-`, `3<<`: a heredoc operator without its word.
fn is_bare_operator(word: &str) -> bool {
    let rest = word.trim_start_matches(|c: char| c.is_ascii_digit());
    rest == "<<" || rest == "<<-"
}

/// The heredoc markers of an instruction line, in order (bodies still empty).
pub(crate) fn heredocs_in_line(line: &str) -> Result<Vec<Heredoc>, String> {
    let mut lexer = Lexer::new('\\');
    lexer.raw_quotes = true;
    lexer.raw_escapes = true;
    lexer.skip_unset_env = true;
    // BuildKit ignores a lexing error here: such a line simply has no heredoc.
    let words = lexer.process_words(line, &()).unwrap_or_default();
    let mut docs = Vec::new();
    let mut words = words.into_iter().peekable();
    while let Some(mut word) = words.next() {
        // Since BuildKit v0.22 blanks may separate the operator from its word (`<< EOF`).
        if is_bare_operator(&word) {
            if let Some(next) = words.next_if(|w| !w.starts_with('<')) {
                word.push_str(&next);
            }
        }
        if let Some(doc) = parse_heredoc(&word)? {
            docs.push(doc);
        }
    }
    Ok(docs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognises_markers() {
        let docs = heredocs_in_line("RUN 3<<-\"EOF\" cat <<X >f").expect("ok");
        assert_eq!(docs.len(), 2);
        assert_eq!(docs[0].name, "EOF");
        assert_eq!(docs[0].file_descriptor, 3);
        assert!(docs[0].chomp);
        assert!(!docs[0].expand);
        assert_eq!(docs[1].name, "X");
        assert!(docs[1].expand);
        assert!(heredocs_in_line("RUN echo '<<EOF'").expect("ok").is_empty());
        assert!(heredocs_in_line("RUN a<<EOF").expect("ok").is_empty());
        assert!(heredocs_in_line("RUN <<").expect("ok").is_empty());
        let spaced = heredocs_in_line("RUN cat << EOF <<-\t'X'").expect("ok");
        assert_eq!(
            (spaced[0].name.as_str(), spaced[1].name.as_str()),
            ("EOF", "X")
        );
        assert!(!spaced[1].expand && spaced[1].chomp);
        let dollar = heredocs_in_line("RUN <<$EOF").expect("ok");
        assert_eq!(dollar[0].name, "$EOF");
    }

    #[test]
    fn chomps_tabs() {
        let doc = Heredoc {
            name: "E".into(),
            file_descriptor: 0,
            expand: true,
            chomp: true,
            content: "\t\ta\n\tb\n".into(),
        };
        assert_eq!(doc.chomped_content(), "a\nb\n");
    }
}
