//! Glob patterns of `${v#pat}`, `${v%pat}`, `${v/pat/repl}` and friends.
//!
//! BuildKit turns these patterns into Go regular expressions; we compile them into a tiny
//! token list instead and match it with a bit-parallel NFA simulation, which gives the same
//! answers without a regex engine:
//!
//! * `*` is any run of characters and `?` any single character, but neither crosses a `\n`
//!   (Go's `.` does not match a newline). Everything else is literal.
//! * `\*`, `\?` and `\\` are literal; `\}` and `\/` are literal `}` and `/` (the backslash is only
//!   there to hide the delimiter from the word scanner); a backslash before anything else, or at
//!   the very end, is the error `invalid escape '\x'` (U+FFFD standing in for the end).
//! * A byte-order mark at the start of the pattern text is ignored (Go's `text/scanner` skips it).
//!
//! Match selection mirrors the regex semantics BuildKit relies on. For these patterns
//! (literals, single-character wildcards and stars, all stars lazy or all greedy) Go's
//! leftmost-first rule comes down to: the leftmost start, then the shortest end for lazy stars
//! (`#`, `%`) or the longest end for greedy ones (`##`, `%%`, `/`, `//`).
//! Suffix trimming reverses the pattern (keeping `\x` pairs in order) and the value, exactly as
//! BuildKit does, so even its error messages come out the same.

/// One element of a compiled pattern.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tok {
    /// Exactly this character.
    Lit(char),
    /// Any one character except `\n`.
    Any,
    /// Any run of characters without `\n` (runs of stars are merged into one).
    Star,
}

/// A compiled glob pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Pattern {
    toks: Vec<Tok>,
}

impl Pattern {
    /// Compiles `src`; the error text is Go's (`invalid escape '\x'`).
    pub(crate) fn compile(src: &str) -> Result<Self, String> {
        let mut chars = src.chars().peekable();
        if chars.peek() == Some(&'\u{FEFF}') {
            chars.next();
        }
        let mut toks = Vec::new();
        while let Some(c) = chars.next() {
            let tok = match c {
                '*' if toks.last() == Some(&Tok::Star) => continue,
                '*' => Tok::Star,
                '?' => Tok::Any,
                '\\' => {
                    if matches!(chars.peek(), Some('}' | '/')) {
                        // The escaped delimiter is taken literally on the next turn.
                        continue;
                    }
                    match chars.next() {
                        Some(e @ ('*' | '?' | '\\')) => Tok::Lit(e),
                        other => {
                            return Err(format!(
                                "invalid escape '\\{}'",
                                other.unwrap_or('\u{FFFD}')
                            ))
                        }
                    }
                }
                other => Tok::Lit(other),
            };
            toks.push(tok);
        }
        Ok(Pattern { toks })
    }

    fn reversed(&self) -> Self {
        let mut toks = self.toks.clone();
        toks.reverse();
        Pattern { toks }
    }
}

/// Reverses pattern text, keeping each backslash together with the character it escapes
/// (`a\*c` becomes `c\*a`); a lone trailing backslash is an ordinary character here.
pub(crate) fn reverse_pattern(pattern: &str) -> String {
    let chars: Vec<char> = pattern.chars().collect();
    let mut units: Vec<&[char]> = Vec::with_capacity(chars.len());
    let mut rest = chars.as_slice();
    while let Some(&first) = rest.first() {
        let len = if first == '\\' && rest.len() > 1 {
            2
        } else {
            1
        };
        let (unit, tail) = rest.split_at(len);
        units.push(unit);
        rest = tail;
    }
    units.iter().rev().flat_map(|u| u.iter()).collect()
}

/// Word-sized bitset over NFA states.
type Bits = Vec<u64>;

/// Bit-parallel simulation of a pattern's NFA. State `i` means "the first `i` tokens are
/// matched"; state `toks.len()` accepts.
#[derive(Debug)]
struct Nfa {
    accept: usize,
    star: Bits,
    any: Bits,
    /// Per distinct literal character, the states expecting it (sorted by character).
    lits: Vec<(char, Bits)>,
    empty: Bits,
}

impl Nfa {
    fn new(p: &Pattern) -> Self {
        let words = p.toks.len() / 64 + 1;
        let empty = vec![0u64; words];
        let mut star = empty.clone();
        let mut any = empty.clone();
        let mut lits: Vec<(char, Bits)> = Vec::new();
        for (i, tok) in p.toks.iter().enumerate() {
            let (w, b) = (i / 64, 1u64 << (i % 64));
            let target = match *tok {
                Tok::Star => &mut star,
                Tok::Any => &mut any,
                Tok::Lit(c) => match lits.binary_search_by(|(k, _)| k.cmp(&c)) {
                    Ok(at) => &mut lits[at].1,
                    Err(at) => {
                        lits.insert(at, (c, empty.clone()));
                        &mut lits[at].1
                    }
                },
            };
            if let Some(slot) = target.get_mut(w) {
                *slot |= b;
            }
        }
        Nfa {
            accept: p.toks.len(),
            star,
            any,
            lits,
            empty,
        }
    }

    fn start(&self) -> Bits {
        let mut s = self.empty.clone();
        if let Some(w) = s.first_mut() {
            *w = 1;
        }
        self.close(&mut s);
        s
    }

    fn accepts(&self, s: &Bits) -> bool {
        s.get(self.accept / 64)
            .is_some_and(|w| w & (1u64 << (self.accept % 64)) != 0)
    }

    /// Adds the states reachable by skipping a star (stars never follow each other, so one
    /// pass is enough).
    fn close(&self, s: &mut Bits) {
        let mut carry = 0u64;
        for (w, st) in s.iter_mut().zip(&self.star) {
            let moved = *w & st;
            let next_carry = moved >> 63;
            *w |= (moved << 1) | carry;
            carry = next_carry;
        }
    }

    /// Consumes `c` from state set `cur` into `out`.
    fn step(&self, cur: &Bits, c: char, out: &mut Bits) {
        let lit = match self.lits.binary_search_by(|(k, _)| k.cmp(&c)) {
            Ok(at) => self.lits.get(at).map(|(_, b)| b),
            Err(_) => None,
        };
        let lit = lit.unwrap_or(&self.empty);
        let not_nl = c != '\n';
        let mut carry = 0u64;
        for (i, o) in out.iter_mut().enumerate() {
            let cw = cur.get(i).copied().unwrap_or(0);
            let mut adv = cw & lit.get(i).copied().unwrap_or(0);
            let mut stay = 0;
            if not_nl {
                adv |= cw & self.any.get(i).copied().unwrap_or(0);
                stay = cw & self.star.get(i).copied().unwrap_or(0);
            }
            *o = (adv << 1) | carry | stay;
            carry = adv >> 63;
        }
        self.close(out);
    }

    /// End of a match anchored at `start`: the first (shortest) or last (longest) one.
    fn match_end(&self, text: &[char], start: usize, longest: bool) -> Option<usize> {
        let mut cur = self.start();
        let mut next = self.empty.clone();
        let mut found = None;
        let mut pos = start;
        loop {
            if self.accepts(&cur) {
                found = Some(pos);
                if !longest {
                    return found;
                }
            }
            let Some(&c) = text.get(pos) else { break };
            if cur.iter().all(|w| *w == 0) {
                break;
            }
            self.step(&cur, c, &mut next);
            std::mem::swap(&mut cur, &mut next);
            pos += 1;
        }
        found
    }
}

/// For every position `p` of `text` (0..=len), whether a match of the pattern starts there.
/// `rev` must be the NFA of the reversed pattern; one backward pass answers all positions.
fn match_starts(rev: &Nfa, text: &[char]) -> Vec<bool> {
    let mut starts = vec![false; text.len() + 1];
    let start = rev.start();
    let mut cur = start.clone();
    let mut next = rev.empty.clone();
    let mut p = text.len();
    loop {
        if let Some(slot) = starts.get_mut(p) {
            *slot = rev.accepts(&cur);
        }
        if p == 0 {
            break;
        }
        p -= 1;
        let c = text.get(p).copied().unwrap_or('\0');
        rev.step(&cur, c, &mut next);
        for (n, s) in next.iter_mut().zip(&start) {
            *n |= s;
        }
        std::mem::swap(&mut cur, &mut next);
    }
    starts
}

fn pattern_error(pattern: &str, err: &str) -> String {
    format!("invalid pattern ({pattern}) in substitution: {err}")
}

/// `${v#pat}` / `${v##pat}`: removes the shortest (or longest) matching prefix.
pub(crate) fn trim_prefix(pattern: &str, value: &str, longest: bool) -> Result<String, String> {
    let compiled = Pattern::compile(pattern).map_err(|e| pattern_error(pattern, &e))?;
    let text: Vec<char> = value.chars().collect();
    Ok(match Nfa::new(&compiled).match_end(&text, 0, longest) {
        Some(end) => text.get(end..).unwrap_or_default().iter().collect(),
        None => value.to_string(),
    })
}

/// `${v%pat}` / `${v%%pat}`: removes the shortest (or longest) matching suffix, by trimming the
/// reversed pattern off the reversed value as BuildKit does.
pub(crate) fn trim_suffix(pattern: &str, value: &str, longest: bool) -> Result<String, String> {
    let reversed: String = value.chars().rev().collect();
    let trimmed = trim_prefix(&reverse_pattern(pattern), &reversed, longest)?;
    Ok(trimmed.chars().rev().collect())
}

/// One piece of a Go `Regexp.Expand` template, for a pattern without capture groups.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Text(String),
    /// `$0` or `${0}`: the whole match.
    Match,
}

/// Parses a replacement as Go's `ReplaceAllString` does: `$$` is `$`, `$0`/`${0}` the match,
/// any other well-formed `$name`/`${name}` nothing (there are no groups), and a `$` that does
/// not start a well-formed reference stays literal.
fn parse_template(template: &str) -> Vec<Piece> {
    let chars: Vec<char> = template.chars().collect();
    let mut pieces = Vec::new();
    let mut text = String::new();
    let mut i = 0;
    while let Some(&c) = chars.get(i) {
        i += 1;
        if c != '$' {
            text.push(c);
            continue;
        }
        if chars.get(i) == Some(&'$') {
            text.push('$');
            i += 1;
            continue;
        }
        let braced = chars.get(i) == Some(&'{');
        let name_start = if braced { i + 1 } else { i };
        let mut end = name_start;
        while chars
            .get(end)
            .is_some_and(|&ch| super::is_letter(ch) || super::is_digit(ch) || ch == '_')
        {
            end += 1;
        }
        let closed = !braced || chars.get(end) == Some(&'}');
        if end == name_start || !closed {
            // Malformed reference: the `$` is literal, scanning goes on after it.
            text.push('$');
            continue;
        }
        let name = chars.get(name_start..end).unwrap_or_default();
        i = if braced { end + 1 } else { end };
        if group_number(name) == Some(0) {
            pieces.push(Piece::Text(std::mem::take(&mut text)));
            pieces.push(Piece::Match);
        }
    }
    pieces.push(Piece::Text(text));
    pieces
}

/// The group number a template name denotes, following Go's rules (ASCII digits only, no
/// leading zero, below 10^8 before the last digit).
fn group_number(name: &[char]) -> Option<u64> {
    let mut num: u64 = 0;
    for &c in name {
        let d = c.to_digit(10).filter(|_| c.is_ascii_digit())?;
        if num >= 100_000_000 {
            return None;
        }
        num = num * 10 + u64::from(d);
    }
    if name.len() > 1 && name.first() == Some(&'0') {
        return None;
    }
    Some(num)
}

/// `${v/pat/repl}` (first match, replacement inserted literally) and `${v//pat/repl}` (every
/// match, Go `ReplaceAllString` semantics including its template expansion and its rule that
/// an empty match right after a previous match is not replaced).
pub(crate) fn replace(
    pattern: &str,
    value: &str,
    replacement: &str,
    all: bool,
) -> Result<String, String> {
    let compiled = Pattern::compile(pattern).map_err(|e| pattern_error(pattern, &e))?;
    let text: Vec<char> = value.chars().collect();
    let fwd = Nfa::new(&compiled);
    let starts = match_starts(&Nfa::new(&compiled.reversed()), &text);
    let find_from = |from: usize| -> Option<(usize, usize)> {
        let s = (from..starts.len()).find(|&p| starts.get(p).copied().unwrap_or(false))?;
        fwd.match_end(&text, s, true).map(|e| (s, e))
    };
    let slice = |a: usize, b: usize| text.get(a..b).unwrap_or_default().iter();

    if !all {
        return Ok(match find_from(0) {
            Some((s, e)) => {
                let mut out: String = slice(0, s).collect();
                out.push_str(replacement);
                out.extend(slice(e, text.len()));
                out
            }
            None => value.to_string(),
        });
    }

    let template = parse_template(replacement);
    let mut out = String::with_capacity(value.len());
    let mut last_end = 0;
    let mut search = 0;
    while search <= text.len() {
        let Some((s, e)) = find_from(search) else {
            break;
        };
        out.extend(slice(last_end, s));
        if e > last_end || s == 0 {
            for piece in &template {
                match piece {
                    Piece::Text(t) => out.push_str(t),
                    Piece::Match => out.extend(slice(s, e)),
                }
            }
        }
        last_end = e;
        search = if e > search { e } else { search + 1 };
    }
    out.extend(slice(last_end, text.len()));
    Ok(out)
}
