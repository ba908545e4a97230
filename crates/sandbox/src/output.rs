//! The step's output: split into lines as it arrives, handed to the caller, and the last lines
//! kept for the error report.

use std::collections::VecDeque;

/// Which stream a line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

/// One line of output, without its newline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutputLine {
    pub stream: Stream,
    pub text: Vec<u8>,
}

/// Receives the step's output line by line, as it is written (the solver turns these into
/// progress events; libraries never print).
pub trait OutputSink {
    fn line(&mut self, stream: Stream, line: &[u8]);
}

/// Discards output (the tail is still kept in the [`crate::Outcome`]).
#[derive(Debug, Default)]
pub struct Discard;

impl OutputSink for Discard {
    fn line(&mut self, _: Stream, _: &[u8]) {}
}

/// Collects every line (tests, small commands).
#[derive(Debug, Default)]
pub struct Collect {
    pub lines: Vec<OutputLine>,
}

impl Collect {
    /// The lines of one stream joined with newlines.
    pub fn text(&self, stream: Stream) -> String {
        let mut out = String::new();
        for line in self.lines.iter().filter(|l| l.stream == stream) {
            out.push_str(&String::from_utf8_lossy(&line.text));
            out.push('\n');
        }
        out
    }
}

impl OutputSink for Collect {
    fn line(&mut self, stream: Stream, line: &[u8]) {
        self.lines.push(OutputLine {
            stream,
            text: line.to_vec(),
        });
    }
}

/// A line longer than this is passed on in pieces (a step printing without newlines must not
/// grow rbuild's memory).
pub const MAX_LINE: usize = 64 * 1024;

/// How many lines the outcome keeps for an error report.
pub const TAIL_LINES: usize = 20;

/// Splits one stream's bytes into lines.
#[derive(Debug)]
pub(crate) struct LineSplitter {
    stream: Stream,
    pending: Vec<u8>,
}

impl LineSplitter {
    pub(crate) fn new(stream: Stream) -> LineSplitter {
        LineSplitter {
            stream,
            pending: Vec::new(),
        }
    }

    /// Feeds bytes; complete lines go to `sink` and `tail`.
    pub(crate) fn push(&mut self, mut bytes: &[u8], sink: &mut dyn OutputSink, tail: &mut Tail) {
        while let Some(newline) = bytes.iter().position(|&b| b == b'\n') {
            self.pending.extend_from_slice(&bytes[..newline]);
            self.emit(sink, tail);
            bytes = &bytes[newline + 1..];
        }
        self.pending.extend_from_slice(bytes);
        while self.pending.len() >= MAX_LINE {
            let rest = self.pending.split_off(MAX_LINE);
            self.emit(sink, tail);
            self.pending = rest;
        }
    }

    /// End of stream: a last line without a newline is still a line.
    pub(crate) fn finish(&mut self, sink: &mut dyn OutputSink, tail: &mut Tail) {
        if !self.pending.is_empty() {
            self.emit(sink, tail);
        }
    }

    fn emit(&mut self, sink: &mut dyn OutputSink, tail: &mut Tail) {
        let line = std::mem::take(&mut self.pending);
        sink.line(self.stream, &line);
        tail.push(OutputLine {
            stream: self.stream,
            text: line,
        });
    }
}

/// The last [`TAIL_LINES`] lines of both streams, in arrival order.
#[derive(Debug, Default)]
pub(crate) struct Tail {
    lines: VecDeque<OutputLine>,
}

impl Tail {
    fn push(&mut self, line: OutputLine) {
        if self.lines.len() == TAIL_LINES {
            self.lines.pop_front();
        }
        self.lines.push_back(line);
    }

    pub(crate) fn into_vec(self) -> Vec<OutputLine> {
        self.lines.into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_split_across_chunks_and_a_last_line_without_newline() {
        let mut sink = Collect::default();
        let mut tail = Tail::default();
        let mut splitter = LineSplitter::new(Stream::Stdout);
        splitter.push(b"hel", &mut sink, &mut tail);
        splitter.push(b"lo\nwor", &mut sink, &mut tail);
        splitter.push(b"ld\n\nlast", &mut sink, &mut tail);
        splitter.finish(&mut sink, &mut tail);
        assert_eq!(sink.text(Stream::Stdout), "hello\nworld\n\nlast\n");
    }

    #[test]
    fn long_lines_are_cut_and_the_tail_keeps_the_last_lines() {
        let mut sink = Collect::default();
        let mut tail = Tail::default();
        let mut splitter = LineSplitter::new(Stream::Stderr);
        splitter.push(&vec![b'x'; MAX_LINE * 2 + 5], &mut sink, &mut tail);
        splitter.finish(&mut sink, &mut tail);
        let sizes: Vec<usize> = sink.lines.iter().map(|l| l.text.len()).collect();
        assert_eq!(sizes, [MAX_LINE, MAX_LINE, 5]);
        for i in 0..30 {
            splitter.push(format!("{i}\n").as_bytes(), &mut sink, &mut tail);
        }
        let kept = tail.into_vec();
        assert_eq!(kept.len(), TAIL_LINES);
        assert_eq!(kept[0].text, b"10");
        assert_eq!(kept[TAIL_LINES - 1].text, b"29");
    }
}
