//! Leading `--flag` words of an instruction, split as BuildKit's parser splits them.
//!
//! Flags are the leading whitespace-separated words that start with `--`; the first other word
//! ends them, and so does a word that is exactly `--` (which is dropped). Inside a flag word,
//! quotes are removed and the escape character makes the next character literal. Flags are not
//! checked here; [`crate::instructions`] knows which instruction accepts which flag.

/// One flag word as written, without its quotes.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct FlagWord {
    /// The unquoted text, e.g. `--from=build`.
    pub text: String,
    /// Byte offset of the word in the instruction's logical line.
    #[serde(skip)]
    pub offset: usize,
}

enum Phase {
    Spaces,
    Word,
    Quote(char),
}

/// Splits the flags off `line` (the text after the keyword). Returns the byte offset in `line`
/// where the rest starts and the flags, whose offsets are relative to `line` plus `base`.
pub(crate) fn extract_flags(line: &str, escape: char, base: usize) -> (usize, Vec<FlagWord>) {
    let mut flags = Vec::new();
    let mut word = String::new();
    let mut word_start = 0;
    let mut blank_ok = false;
    let mut phase = Phase::Spaces;
    let mut chars = line.char_indices().peekable();
    while let Some((pos, ch)) = chars.next() {
        match phase {
            Phase::Spaces => {
                if ch.is_whitespace() {
                    continue;
                }
                if ch != '-' || chars.peek().map(|c| c.1) != Some('-') {
                    return (pos, flags);
                }
                // The first `-` of a flag word: neither blank, quote nor escape.
                word_start = pos;
                word.push(ch);
                phase = Phase::Word;
            }
            Phase::Word => {
                if ch.is_whitespace() {
                    if word == "--" {
                        return (pos, flags);
                    }
                    if blank_ok || !word.is_empty() {
                        flags.push(FlagWord {
                            text: std::mem::take(&mut word),
                            offset: base + word_start,
                        });
                    }
                    blank_ok = false;
                    phase = Phase::Spaces;
                } else if ch == '\'' || ch == '"' {
                    phase = Phase::Quote(ch);
                    blank_ok = true;
                } else if ch == escape {
                    // An escape at the very end is dropped.
                    if let Some((_, next)) = chars.next() {
                        word.push(next);
                    }
                } else {
                    word.push(ch);
                }
            }
            Phase::Quote(quote) => {
                if ch == quote {
                    phase = Phase::Word;
                } else if ch == escape {
                    match chars.next() {
                        Some((_, next)) => word.push(next),
                        None => phase = Phase::Word,
                    }
                } else {
                    word.push(ch);
                }
            }
        }
    }
    if !matches!(phase, Phase::Spaces) && word != "--" && (blank_ok || !word.is_empty()) {
        flags.push(FlagWord {
            text: word,
            offset: base + word_start,
        });
    }
    (line.len(), flags)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(line: &str) -> (String, Vec<String>) {
        let (rest, flags) = extract_flags(line, '\\', 0);
        (
            line[rest..].to_string(),
            flags.into_iter().map(|f| f.text).collect(),
        )
    }

    #[test]
    fn splits_flags() {
        assert_eq!(
            texts("--from=a --chown=1:1 src dst"),
            (
                "src dst".into(),
                vec!["--from=a".into(), "--chown=1:1".into()]
            )
        );
        assert_eq!(texts("--x=\"a b\" y"), ("y".into(), vec!["--x=a b".into()]));
        assert_eq!(texts("-- a b"), (" a b".into(), vec![]));
        assert_eq!(texts("a --b"), ("a --b".into(), vec![]));
        assert_eq!(texts("--link"), ("".into(), vec!["--link".into()]));
        assert_eq!(texts("--a\\ b c"), ("c".into(), vec!["--a b".into()]));
        assert_eq!(texts("--"), ("".into(), vec![]));
        assert_eq!(texts("-x"), ("-x".into(), vec![]));
    }
}
