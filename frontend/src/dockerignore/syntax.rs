//! The parser for the Go `regexp` syntax used by [`super::regex`], with Go's rules for the
//! flags `regexp.Compile` sets (`ClassNL | OneLine | PerlX | UnicodeGroups`): Perl classes
//! (`\d \s \w`, ASCII), POSIX classes (`[[:alpha:]]`), `\A \z \b \B`, `\Q...\E`, octal,
//! `\x..` and C escapes, escaped punctuation, non-greedy suffixes; a `]` or `-` first in a
//! class is literal, a reversed range or an unknown escape is an error, and stacked repetition
//! operators (`a**`) are errors as in Go.

const MAX_RUNE: u32 = 0x10_FFFF;
/// Go's limit on nesting (`maxHeight`); unreachable from moby's translation.
const MAX_DEPTH: usize = 1000;

/// A character set as sorted, non-overlapping, non-adjacent inclusive ranges of code points.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(super) struct Ranges(pub(super) Vec<(u32, u32)>);

impl Ranges {
    fn single(c: u32) -> Self {
        Ranges(vec![(c, c)])
    }

    fn from_pairs(pairs: &[(u32, u32)]) -> Self {
        let mut r = Ranges(pairs.to_vec());
        r.normalize();
        r
    }

    fn extend(&mut self, other: &Ranges) {
        self.0.extend_from_slice(&other.0);
    }

    fn normalize(&mut self) {
        self.0.sort_unstable();
        let mut merged: Vec<(u32, u32)> = Vec::with_capacity(self.0.len());
        for &(lo, hi) in &self.0 {
            match merged.last_mut() {
                Some(last) if lo <= last.1.saturating_add(1) => last.1 = last.1.max(hi),
                _ => merged.push((lo, hi)),
            }
        }
        self.0 = merged;
    }

    /// The complement within `0..=MAX_RUNE` (the set must be normalized).
    fn negated(&self) -> Ranges {
        let mut out = Vec::with_capacity(self.0.len() + 1);
        let mut next = 0u32;
        for &(lo, hi) in &self.0 {
            if lo > next {
                out.push((next, lo - 1));
            }
            next = hi.saturating_add(1);
        }
        if next <= MAX_RUNE {
            out.push((next, MAX_RUNE));
        }
        Ranges(out)
    }

    pub(super) fn contains(&self, c: u32) -> bool {
        self.0
            .binary_search_by(|&(lo, hi)| {
                if hi < c {
                    std::cmp::Ordering::Less
                } else if lo > c {
                    std::cmp::Ordering::Greater
                } else {
                    std::cmp::Ordering::Equal
                }
            })
            .is_ok()
    }
}

/// Zero-width assertions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Look {
    BeginText,
    EndText,
    WordBoundary,
    NotWordBoundary,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Rep {
    Star,
    Plus,
    Quest,
}

#[derive(Debug, Clone)]
pub(super) enum Node {
    Class(Ranges),
    Look(Look),
    Concat(Vec<Node>),
    Repeat(Box<Node>, Rep),
}

fn escaped(chars: &[char]) -> String {
    chars.iter().collect()
}

/// Parses a whole expression into a node tree.
pub(super) fn parse(chars: &[char]) -> Result<Node, String> {
    let mut stack: Vec<Vec<Node>> = vec![Vec::new()];
    let mut last_repeat = false;
    let mut i = 0;
    while let Some(&c) = chars.get(i) {
        let mut repeat = false;
        let mut atom: Option<Node> = None;
        match c {
            '(' => {
                if chars.get(i + 1) == Some(&'?') {
                    return Err("`(?` groups are not supported".to_owned());
                }
                if stack.len() > MAX_DEPTH {
                    return Err("expression nests too deeply".to_owned());
                }
                stack.push(Vec::new());
                i += 1;
            }
            ')' => {
                if stack.len() < 2 {
                    return Err("unexpected )".to_owned());
                }
                let group = stack.pop().unwrap_or_default();
                atom = Some(Node::Concat(group));
                i += 1;
            }
            '|' => return Err("alternation is not supported".to_owned()),
            '*' | '+' | '?' => {
                let rep = match c {
                    '*' => Rep::Star,
                    '+' => Rep::Plus,
                    _ => Rep::Quest,
                };
                let mut end = i + 1;
                if chars.get(end) == Some(&'?') {
                    end += 1; // non-greedy: the same for a yes/no match
                }
                let op = escaped(chars.get(i..end).unwrap_or_default());
                if last_repeat {
                    return Err(format!("invalid nested repetition operator: `{op}`"));
                }
                let frame = stack.last_mut().ok_or("parser stack underflow")?;
                let Some(sub) = frame.pop() else {
                    return Err(format!("missing argument to repetition operator: `{op}`"));
                };
                frame.push(Node::Repeat(Box::new(sub), rep));
                repeat = true;
                i = end;
            }
            '{' if is_repeat(chars.get(i..).unwrap_or_default()) => {
                return Err("`{n,m}` repetition is not supported".to_owned());
            }
            '^' => {
                atom = Some(Node::Look(Look::BeginText));
                i += 1;
            }
            '$' => {
                atom = Some(Node::Look(Look::EndText));
                i += 1;
            }
            '.' => {
                atom = Some(Node::Class(Ranges(vec![(0, 9), (11, MAX_RUNE)])));
                i += 1;
            }
            '[' => {
                let (class, next) = parse_class(chars, i)?;
                atom = Some(Node::Class(class));
                i = next;
            }
            '\\' => match chars.get(i + 1) {
                Some('Q') => {
                    // `\Q...\E`: everything up to `\E` (or the end) is literal.
                    let frame = stack.last_mut().ok_or("parser stack underflow")?;
                    let mut j = i + 2;
                    while let Some(&q) = chars.get(j) {
                        if q == '\\' && chars.get(j + 1) == Some(&'E') {
                            j += 2;
                            break;
                        }
                        frame.push(Node::Class(Ranges::single(u32::from(q))));
                        j += 1;
                    }
                    i = j;
                }
                Some(&e) => {
                    let look = match e {
                        'A' => Some(Look::BeginText),
                        'z' => Some(Look::EndText),
                        'b' => Some(Look::WordBoundary),
                        'B' => Some(Look::NotWordBoundary),
                        _ => None,
                    };
                    if let Some(look) = look {
                        atom = Some(Node::Look(look));
                        i += 2;
                    } else if e == 'C' {
                        return Err("invalid escape sequence: `\\C`".to_owned());
                    } else if let Some(class) = class_escape(chars, i)? {
                        atom = Some(Node::Class(class));
                        i += 2;
                    } else {
                        let (r, next) = parse_escape(chars, i)?;
                        atom = Some(Node::Class(Ranges::single(r)));
                        i = next;
                    }
                }
                None => return Err("trailing backslash at end of expression".to_owned()),
            },
            _ => {
                atom = Some(Node::Class(Ranges::single(u32::from(c))));
                i += 1;
            }
        }
        if let Some(atom) = atom {
            stack.last_mut().ok_or("parser stack underflow")?.push(atom);
        }
        last_repeat = repeat;
    }
    if stack.len() != 1 {
        return Err("missing closing )".to_owned());
    }
    Ok(Node::Concat(stack.pop().unwrap_or_default()))
}

/// Whether `{...}` at the start of `s` is a Go repeat (`{n}`, `{n,}`, `{n,m}`).
fn is_repeat(s: &[char]) -> bool {
    let mut i = 1;
    let digits = |i: &mut usize| {
        let start = *i;
        while s.get(*i).is_some_and(char::is_ascii_digit) {
            *i += 1;
        }
        *i > start
    };
    if !digits(&mut i) {
        return false;
    }
    if s.get(i) == Some(&',') {
        i += 1;
        digits(&mut i);
    }
    s.get(i) == Some(&'}')
}

/// `\d \D \s \S \w \W` (ASCII, as in Go) at `chars[i]`, and the unsupported `\p`/`\P`.
fn class_escape(chars: &[char], i: usize) -> Result<Option<Ranges>, String> {
    if chars.get(i) != Some(&'\\') {
        return Ok(None);
    }
    let Some(&e) = chars.get(i + 1) else {
        return Ok(None);
    };
    let base: &[(u32, u32)] = match e.to_ascii_lowercase() {
        'd' => &[(0x30, 0x39)],
        's' => &[(0x09, 0x0A), (0x0C, 0x0D), (0x20, 0x20)],
        'w' => &[(0x30, 0x39), (0x41, 0x5A), (0x5F, 0x5F), (0x61, 0x7A)],
        'p' => return Err(format!("Unicode class escape `\\{e}` is not supported")),
        _ => return Ok(None),
    };
    let ranges = Ranges::from_pairs(base);
    Ok(Some(if e.is_ascii_uppercase() {
        ranges.negated()
    } else {
        ranges
    }))
}

/// The POSIX class named like `[:alpha:]` or `[:^alpha:]`.
fn posix_class(name: &str) -> Option<Ranges> {
    let (negate, bare) = match name.strip_prefix("[:^") {
        Some(rest) => (true, rest),
        None => (false, name.strip_prefix("[:")?),
    };
    let pairs: &[(u8, u8)] = match bare.strip_suffix(":]")? {
        "alnum" => &[(b'0', b'9'), (b'A', b'Z'), (b'a', b'z')],
        "alpha" => &[(b'A', b'Z'), (b'a', b'z')],
        "ascii" => &[(0x00, 0x7F)],
        "blank" => &[(b'\t', b'\t'), (b' ', b' ')],
        "cntrl" => &[(0x00, 0x1F), (0x7F, 0x7F)],
        "digit" => &[(b'0', b'9')],
        "graph" => &[(b'!', b'~')],
        "lower" => &[(b'a', b'z')],
        "print" => &[(b' ', b'~')],
        "punct" => &[(b'!', b'/'), (b':', b'@'), (b'[', b'`'), (b'{', b'~')],
        "space" => &[(b'\t', b'\r'), (b' ', b' ')],
        "upper" => &[(b'A', b'Z')],
        "word" => &[(b'0', b'9'), (b'A', b'Z'), (b'a', b'z'), (b'_', b'_')],
        "xdigit" => &[(b'0', b'9'), (b'A', b'F'), (b'a', b'f')],
        _ => return None,
    };
    let pairs: Vec<(u32, u32)> = pairs
        .iter()
        .map(|&(lo, hi)| (u32::from(lo), u32::from(hi)))
        .collect();
    let ranges = Ranges::from_pairs(&pairs);
    Some(if negate { ranges.negated() } else { ranges })
}

/// Parses the class starting at `chars[start] == '['`; returns it and the index after `]`.
fn parse_class(chars: &[char], start: usize) -> Result<(Ranges, usize), String> {
    let missing = || {
        format!(
            "missing closing ]: `{}`",
            escaped(chars.get(start..).unwrap_or_default())
        )
    };
    let mut t = start + 1;
    let negate = chars.get(t) == Some(&'^');
    if negate {
        t += 1;
    }
    let mut class = Ranges::default();
    let mut first = true;
    loop {
        match chars.get(t) {
            None => return Err(missing()),
            Some(']') if !first => {
                t += 1;
                break;
            }
            Some(_) => {}
        }
        first = false;
        // POSIX `[:name:]`, when a closing `:]` follows somewhere.
        if chars.get(t) == Some(&'[') && chars.get(t + 1) == Some(&':') && chars.len() > t + 2 {
            let rest = chars.get(t + 2..).unwrap_or_default();
            if let Some(k) = rest.windows(2).position(|w| w == [':', ']']) {
                let end = t + 2 + k + 2;
                let name = escaped(chars.get(t..end).unwrap_or_default());
                let group = posix_class(&name)
                    .ok_or_else(|| format!("invalid character class range: `{name}`"))?;
                class.extend(&group);
                t = end;
                continue;
            }
        }
        if let Some(group) = class_escape(chars, t)? {
            class.extend(&group);
            t += 2;
            continue;
        }
        let range_start = t;
        let (lo, next) = parse_class_char(chars, t).ok_or_else(missing)??;
        t = next;
        let mut hi = lo;
        if chars.get(t) == Some(&'-') && chars.get(t + 1).is_some_and(|&c| c != ']') {
            let (h, next) = parse_class_char(chars, t + 1).ok_or_else(missing)??;
            t = next;
            hi = h;
            if hi < lo {
                let text = escaped(chars.get(range_start..t).unwrap_or_default());
                return Err(format!("invalid character class range: `{text}`"));
            }
        }
        class.0.push((lo, hi));
    }
    class.normalize();
    // ClassNL is set, so a negated class also matches `\n`: a plain complement.
    Ok((if negate { class.negated() } else { class }, t))
}

/// One class member character; `None` at the end of input.
fn parse_class_char(chars: &[char], t: usize) -> Option<Result<(u32, usize), String>> {
    match chars.get(t)? {
        '\\' => Some(parse_escape(chars, t)),
        &c => Some(Ok((u32::from(c), t + 1))),
    }
}

/// Go's `parseEscape` at `chars[i] == '\\'`: octal, `\x..`, C escapes and escaped punctuation.
fn parse_escape(chars: &[char], i: usize) -> Result<(u32, usize), String> {
    let Some(&c) = chars.get(i + 1) else {
        return Err("trailing backslash at end of expression".to_owned());
    };
    let mut t = i + 2;
    let octal = |c: Option<&char>| c.and_then(|c| c.to_digit(8));
    let hex = |c: Option<&char>| c.and_then(|c| c.to_digit(16));
    let invalid = |end: usize| {
        let mut msg = String::from("invalid escape sequence: `");
        msg.push_str(&escaped(
            chars.get(i..end.min(chars.len())).unwrap_or_default(),
        ));
        msg.push('`');
        msg
    };
    match c {
        '1'..='7' if octal(chars.get(t)).is_none() => Err(invalid(t)), // a backreference
        '0'..='7' => {
            let mut r = c.to_digit(8).unwrap_or(0);
            for _ in 1..3 {
                let Some(d) = octal(chars.get(t)) else { break };
                r = r * 8 + d;
                t += 1;
            }
            Ok((r, t))
        }
        'x' => {
            if chars.get(t) == Some(&'{') {
                t += 1;
                let mut r: u32 = 0;
                let mut digits = 0;
                loop {
                    match chars.get(t) {
                        Some('}') if digits > 0 => return Ok((r, t + 1)),
                        c => match hex(c) {
                            Some(d) => {
                                r = r * 16 + d;
                                if r > MAX_RUNE {
                                    return Err(invalid(t + 1));
                                }
                                digits += 1;
                                t += 1;
                            }
                            None => return Err(invalid(t + 1)),
                        },
                    }
                }
            }
            match (hex(chars.get(t)), hex(chars.get(t + 1))) {
                (Some(x), Some(y)) => Ok((x * 16 + y, t + 2)),
                _ => Err(invalid(t + 2)),
            }
        }
        'a' => Ok((7, t)),
        'f' => Ok((0x0C, t)),
        'n' => Ok((0x0A, t)),
        'r' => Ok((0x0D, t)),
        't' => Ok((0x09, t)),
        'v' => Ok((0x0B, t)),
        c if c.is_ascii() && !c.is_ascii_alphanumeric() => Ok((u32::from(c), t)),
        _ => Err(invalid(t)),
    }
}
