//! Error printing: Dockerfile diagnostics rustc-style (annotate-snippets), other errors as a
//! cause chain. Colour only on a terminal and never with `NO_COLOR` set.

use std::io::IsTerminal;
use std::path::Path;

use annotate_snippets::{Level, Renderer, Snippet};
use rbuild_frontend::diagnostic::Diagnostic;

/// A diagnostic with the file it is about, so it can be shown with its source line.
#[derive(Debug)]
pub struct SourceError {
    path: String,
    source: String,
    diagnostic: Diagnostic,
}

impl SourceError {
    pub fn new(path: &Path, source: &str, diagnostic: Diagnostic) -> Self {
        SourceError {
            path: if path == Path::new("-") {
                "<stdin>".into()
            } else {
                path.display().to_string()
            },
            source: source.to_string(),
            diagnostic,
        }
    }

    /// The rendered report: message, `--> file:line:column`, the line, a caret, what was expected.
    pub fn render(&self, styled: bool) -> String {
        let d = &self.diagnostic;
        let line_text = self
            .source
            .split('\n')
            .nth(d.position.line.saturating_sub(1))
            .unwrap_or("")
            .trim_end_matches('\r');
        let line_text = line_text.strip_prefix('\u{feff}').unwrap_or(line_text);
        let start = byte_of_column(line_text, d.position.column);
        let end = byte_of_column(line_text, d.position.column + d.len.max(1)).max(start);
        let label = d.expected.as_ref().map(|e| format!("expected {e}"));
        let annotation = Level::Error
            .span(start..end)
            .label(label.as_deref().unwrap_or(""));
        let snippet = Snippet::source(line_text)
            .line_start(d.position.line)
            .origin(&self.path)
            .fold(false)
            .annotation(annotation);
        let location = format!("{}:{}:{}", self.path, d.position.line, d.position.column);
        let title = format!("{} ({location})", d.message);
        let message = Level::Error.title(&title).snippet(snippet);
        let renderer = if styled {
            Renderer::styled()
        } else {
            Renderer::plain()
        };
        let rendered = renderer.render(message).to_string();
        rendered
    }
}

impl std::fmt::Display for SourceError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let d = &self.diagnostic;
        write!(
            f,
            "{}:{}:{}: {}",
            self.path, d.position.line, d.position.column, d
        )
    }
}

impl std::error::Error for SourceError {}

/// Byte offset of 1-based char `column` in `line`, clamped to the line's end.
fn byte_of_column(line: &str, column: usize) -> usize {
    line.char_indices()
        .nth(column.saturating_sub(1))
        .map_or(line.len(), |(i, _)| i)
}

fn use_color() -> bool {
    std::env::var_os("NO_COLOR").is_none() && std::io::stderr().is_terminal()
}

/// Prints an error to stderr.
pub fn error(err: &anyhow::Error) {
    if let Some(source_error) = err.downcast_ref::<SourceError>() {
        eprintln!("{}", source_error.render(use_color()));
        return;
    }
    eprintln!("error: {err}");
    for cause in err.chain().skip(1) {
        eprintln!("  caused by: {cause}");
    }
}
