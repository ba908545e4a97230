//! Word accumulation for [`Lexer::process_words`](super::Lexer::process_words).
//!
//! Every scanning level (the whole word, or the inside of a `${name<op>...}`) collects the words
//! it sees, but the characters of the word in progress live in one buffer shared by all levels.
//! BuildKit works this way, and it has a visible consequence we reproduce on purpose: starting
//! the inside of a `${name<op>...}` clears the buffer, so the part of the current word that came
//! before it is lost (`a${x:-b}c` splits into `bc`). Plain `$x` and `${x}` do not clear it,
//! and text inside quotes is not affected (a quoted string joins the buffer only once closed).

/// The words of one scanning level; the current partial word is passed in as `buf`.
#[derive(Debug, Default)]
pub(crate) struct Words {
    words: Vec<String>,
    /// Set once anything was added since the last word break, even an empty quoted string.
    in_word: bool,
}

impl Words {
    /// An unquoted, unescaped character: whitespace ends the current word.
    pub(crate) fn add_char(&mut self, buf: &mut String, ch: char) {
        if ch.is_whitespace() {
            if self.in_word && !buf.is_empty() {
                self.words.push(std::mem::take(buf));
                self.in_word = false;
            }
        } else {
            self.add_raw_char(buf, ch);
        }
    }

    /// A character that never splits (escaped).
    pub(crate) fn add_raw_char(&mut self, buf: &mut String, ch: char) {
        buf.push(ch);
        self.in_word = true;
    }

    /// The value of an unquoted expansion: split on its whitespace.
    pub(crate) fn add_str(&mut self, buf: &mut String, s: &str) {
        for ch in s.chars() {
            self.add_char(buf, ch);
        }
    }

    /// A quoted string: kept whole.
    pub(crate) fn add_raw_str(&mut self, buf: &mut String, s: &str) {
        buf.push_str(s);
        self.in_word = true;
    }

    /// Closes the level, flushing a non-empty partial word.
    pub(crate) fn finish(mut self, buf: &mut String) -> Vec<String> {
        if !buf.is_empty() {
            self.words.push(std::mem::take(buf));
        }
        self.words
    }
}
