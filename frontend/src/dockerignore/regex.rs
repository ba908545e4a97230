//! A small engine for the Go `regexp` (RE2) syntax that moby's pattern translation can emit.
//!
//! moby turns a pattern into a regular expression by substituting `*`, `?` and `**` and
//! escaping `.+()|{}$`, but passes `[`, `]`, `^` and every `\x` escape through unchanged, so
//! the *regex* parser decides what those mean: `\d` is a digit class, `\Q...\E` quotes, `[*]`
//! becomes `[[^/]*]` (a class followed by a star and a literal `]`), a reversed range is an
//! error. [`super::syntax`] parses that syntax with Go's rules (flags `ClassNL | OneLine |
//! PerlX`: `^`/`$` only at the ends of the text, `.` does not match `\n`, negated classes do)
//! and this module runs it as a Thompson NFA (Pike VM without captures):
//! `O(len(text) * len(program))`, no backtracking.
//!
//! Not supported (reported as an error): `\p{..}`/`\P{..}` Unicode classes (no tables without
//! extra dependencies), alternation, `(?flags)` groups and `{n,m}` repeats. The last three
//! cannot be produced by moby's translation (it escapes `|`, `(`, `)`, `{`, `}`).

use super::syntax::{parse, Look, Node, Ranges, Rep};

#[derive(Debug, Clone)]
enum Inst {
    Class(Ranges),
    Split(usize, usize),
    Jmp(usize),
    Look(Look),
    Match,
}

/// A compiled regular expression; matching is an unanchored search like Go's `MatchString`.
#[derive(Debug, Clone)]
pub(crate) struct Regex {
    prog: Vec<Inst>,
    /// The program starts with `^`, so threads only ever start at position 0.
    anchored: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Search,
    PathOrParents,
    Extension,
}

/// Where the VM stands: what the zero-width assertions see.
#[derive(Debug, Clone, Copy)]
struct Ctx {
    begin: bool,
    end: bool,
    /// Whether the position is a word boundary; `None` when the next character is unknown.
    boundary: Option<bool>,
}

impl Ctx {
    /// The context between `prev` and `next`; with `open_end`, a missing `next` means the
    /// text goes on with unknown characters.
    fn new(prev: Option<char>, next: Option<char>, begin: bool, open_end: bool) -> Ctx {
        let unknown = next.is_none() && open_end;
        Ctx {
            begin,
            end: next.is_none() && !open_end,
            boundary: if unknown {
                None
            } else {
                Some(is_word(prev) != is_word(next))
            },
        }
    }

    fn holds(self, look: Look) -> bool {
        match look {
            Look::BeginText => self.begin,
            Look::EndText => self.end,
            Look::WordBoundary => self.boundary.unwrap_or(true),
            Look::NotWordBoundary => self.boundary.is_none_or(|b| !b),
        }
    }
}

/// A set of program counters, in insertion order, with O(1) membership.
#[derive(Debug)]
struct Threads {
    dense: Vec<usize>,
    seen: Vec<bool>,
}

impl Threads {
    fn new(n: usize) -> Self {
        Threads {
            dense: Vec::with_capacity(n),
            seen: vec![false; n],
        }
    }

    fn clear(&mut self) {
        for &pc in &self.dense {
            if let Some(s) = self.seen.get_mut(pc) {
                *s = false;
            }
        }
        self.dense.clear();
    }
}

fn is_word(c: Option<char>) -> bool {
    c.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_')
}

impl Regex {
    /// Parses `re` with Go's `regexp.Compile` rules (for the supported subset).
    pub(crate) fn new(re: &str) -> Result<Regex, String> {
        let chars: Vec<char> = re.chars().collect();
        let node = parse(&chars)?;
        let mut prog = Vec::new();
        emit(&node, &mut prog);
        prog.push(Inst::Match);
        let anchored = matches!(prog.first(), Some(Inst::Look(Look::BeginText)));
        Ok(Regex { prog, anchored })
    }

    /// Whether the expression matches somewhere in `text` (Go's `MatchString`).
    pub(crate) fn is_match(&self, text: &str) -> bool {
        self.run(text, Mode::Search)
    }

    /// Whether the expression matches `path` or one of its parents (each prefix of `path`
    /// ending before a `/`), in a single pass over `path`.
    pub(crate) fn matches_path_or_parent(&self, path: &str) -> bool {
        self.run(path, Mode::PathOrParents)
    }

    /// Whether some text `prefix + s` with a non-empty `s` might match. Exact for everything
    /// but `\b`/`\B` right after the prefix, which are assumed to hold (a safe over-estimate).
    pub(crate) fn may_match_extension(&self, prefix: &str) -> bool {
        self.run(prefix, Mode::Extension)
    }

    /// Runs the VM over `text`.
    ///
    /// - `Search`: whether `text` has a match.
    /// - `PathOrParents`: also, at each `/`, whether the text before it would match. Run over
    ///   just that prefix, the VM would be in the same state there except that `$`/`\z` would
    ///   hold (`\b`/`\B` are unaffected: `/` and the end of text are both non-word), so the
    ///   threads there are closed again with that assertion true.
    /// - `Extension`: `text` is a prefix of some longer text; whether a match was found or
    ///   some thread is still alive at its end.
    fn run(&self, text: &str, mode: Mode) -> bool {
        let n = self.prog.len();
        let mut clist = Threads::new(n);
        let mut nlist = Threads::new(n);
        let mut scratch = Threads::new(if mode == Mode::PathOrParents { n } else { 0 });
        let mut stack = Vec::new();
        let open_end = mode == Mode::Extension;
        let mut chars = text.chars().peekable();
        let mut prev: Option<char> = None;
        let mut at_start = true;
        loop {
            let ctx = Ctx::new(prev, chars.peek().copied(), at_start, open_end);
            if (at_start || !self.anchored) && self.add(&mut clist, 0, ctx, &mut stack) {
                return true;
            }
            let Some(c) = chars.next() else {
                break;
            };
            if clist.dense.is_empty() && self.anchored {
                return false;
            }
            if mode == Mode::PathOrParents && c == '/' && !at_start {
                let end = Ctx {
                    begin: false,
                    end: true,
                    boundary: Some(is_word(prev)),
                };
                scratch.clear();
                for &pc in &clist.dense {
                    if self.add(&mut scratch, pc, end, &mut stack) {
                        return true;
                    }
                }
            }
            let next_ctx = Ctx::new(Some(c), chars.peek().copied(), false, open_end);
            for &pc in &clist.dense {
                if let Some(Inst::Class(r)) = self.prog.get(pc) {
                    if r.contains(u32::from(c))
                        && self.add(&mut nlist, pc + 1, next_ctx, &mut stack)
                    {
                        return true;
                    }
                }
            }
            std::mem::swap(&mut clist, &mut nlist);
            nlist.clear();
            prev = Some(c);
            at_start = false;
        }
        open_end
            && clist
                .dense
                .iter()
                .any(|&pc| matches!(self.prog.get(pc), Some(Inst::Class(_))))
    }

    /// Adds the thread `pc` and everything reachable from it without consuming input;
    /// returns whether `Match` was reached.
    fn add(&self, set: &mut Threads, pc: usize, ctx: Ctx, stack: &mut Vec<usize>) -> bool {
        let mut matched = false;
        stack.clear();
        stack.push(pc);
        while let Some(pc) = stack.pop() {
            match set.seen.get_mut(pc) {
                Some(seen) if !*seen => *seen = true,
                _ => continue,
            }
            set.dense.push(pc);
            match self.prog.get(pc) {
                Some(Inst::Split(a, b)) => {
                    stack.push(*b);
                    stack.push(*a);
                }
                Some(Inst::Jmp(a)) => stack.push(*a),
                Some(Inst::Look(look)) => {
                    if ctx.holds(*look) {
                        stack.push(pc + 1);
                    }
                }
                Some(Inst::Match) => matched = true,
                Some(Inst::Class(_)) | None => {}
            }
        }
        matched
    }
}

fn emit(node: &Node, prog: &mut Vec<Inst>) {
    match node {
        Node::Class(r) => prog.push(Inst::Class(r.clone())),
        Node::Look(look) => prog.push(Inst::Look(*look)),
        Node::Concat(nodes) => nodes.iter().for_each(|n| emit(n, prog)),
        Node::Repeat(sub, Rep::Plus) => {
            let start = prog.len();
            emit(sub, prog);
            let after = prog.len() + 1;
            prog.push(Inst::Split(start, after));
        }
        Node::Repeat(sub, rep) => {
            let split = prog.len();
            prog.push(Inst::Split(0, 0));
            emit(sub, prog);
            if *rep == Rep::Star {
                prog.push(Inst::Jmp(split));
            }
            let end = prog.len();
            if let Some(slot) = prog.get_mut(split) {
                *slot = Inst::Split(split + 1, end);
            }
        }
    }
}

/// Renders a program for debugging and tests.
#[cfg(test)]
fn dump(re: &Regex) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    for (i, inst) in re.prog.iter().enumerate() {
        let _ = writeln!(out, "{i}: {inst:?}");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(re: &str, text: &str) -> bool {
        match Regex::new(re) {
            Ok(r) => r.is_match(text),
            Err(e) => panic!("{re}: {e}"),
        }
    }

    #[test]
    fn basics() {
        assert!(m("^a[^/]*$", "abc"));
        assert!(!m("^a[^/]*$", "ab/c"));
        assert!(m("^(.*/)?dir2/[^/]*$", "dir/dir2/file"));
        assert!(m("^(.*/)?dir2/[^/]*$", "dir2/file"));
        assert!(!m("^(.*/)?dir2/[^/]*$", "dir2/file/"));
        assert!(m("^(.*/)?(.*/)?[^/]*\\.txt$", "file.txt"));
        assert!(m("^a[b-d]e$", "ace"));
        assert!(!m("^a[b-d]e$", "aae"));
        assert!(m("^a[^b-d]e$", "aze"));
        assert!(m("^a[^b-d]e$", "a/e")); // regex classes may match `/`
        assert!(!m("^.$", "\n")); // `.` excludes newline
        assert!(m("^[^/]$", "\n")); // negated classes include it (ClassNL)
        assert!(m("ab", "xaby")); // unanchored search
        assert!(!m("^ab", "xab"));
        assert!(m("^a+$", "aaa"));
        assert!(m("^a*?$", ""));
    }

    #[test]
    fn moby_translation_quirks() {
        // `[*]` becomes `[[^/]*]`: a class {[,^,/} repeated, then a literal `]`.
        assert!(m("^[[^/]*]$", "]"));
        assert!(m("^[[^/]*]$", "^/]"));
        assert!(!m("^[[^/]*]$", "*"));
        // `\Q` quotes the rest, including the `$` moby appends.
        assert!(m("^a\\Qb$", "ab$x"));
        assert!(!m("^a\\Qb$", "ab"));
        assert!(m("^a\\Qb*\\E.$", "ab*c"));
        // A `^` in the middle can only match at the start of the text.
        assert!(!m("^a[^/]*^b$", "axb"));
        assert!(m("^[^/]*^b$", "b"));
    }

    #[test]
    fn escapes_and_classes() {
        assert!(m("^a\\d$", "a1"));
        assert!(!m("^a\\d$", "ad"));
        assert!(m("^\\D\\w\\s\\S\\W$", "x_ y-"));
        assert!(m("^\\x41\\x{263a}\\101\\0$", "A☺A\0"));
        assert!(m("^\\t\\n\\r\\f\\v\\a$", "\t\n\r\x0c\x0b\x07"));
        assert!(m("^[[:alpha:]]+[[:^alpha:]]$", "ab1"));
        assert!(m("^[\\d\\-]+$", "1-2"));
        assert!(m("^[]a]$", "]"));
        assert!(m("^[a-]$", "-"));
        assert!(!m("^\\bab\\B$", "ab"));
        assert!(m("^\\bab\\b$", "ab"));
        assert!(m("\\Aab\\z", "ab"));
        for bad in [
            "\\e",
            "\\1",
            "\\8",
            "\\x",
            "\\x4",
            "\\x{}",
            "\\x{110000}",
            "\\C",
            "\\é",
            "[z-a]",
            "[Local-Only]",
            "[a",
            "[[:foo:]]",
            "a**",
            "a*??",
            "*",
            "(a",
            "a)",
            "a|b",
            "\\pL",
            "[\\pL]",
            "a{2}",
            "(?i)a",
            "\\",
        ] {
            assert!(Regex::new(bad).is_err(), "{bad:?} should not compile");
        }
        assert!(m("^a{$", "a{"));
        assert!(m("^a\\_$", "a_"));
    }

    #[test]
    fn path_or_parent() {
        let r = Regex::new("^a[^/]*$").expect("compiles");
        assert!(r.matches_path_or_parent("ab/c/d"));
        assert!(r.matches_path_or_parent("ab"));
        assert!(!r.matches_path_or_parent("b/ab"));
        let r = Regex::new("^(.*/)?x\\b$").expect("compiles");
        assert!(r.matches_path_or_parent("a/x/y"));
        assert!(!r.matches_path_or_parent("a/xy/z"));
        let r = Regex::new("^a/b[^/]$").expect("compiles");
        assert!(r.matches_path_or_parent("a/bc/d/e"));
        assert!(!r.matches_path_or_parent("a/bcd/e"));
        assert!(!r.matches_path_or_parent("a/b"));
        // Every prefix ending before a `/` agrees with matching that prefix on its own.
        for re in [
            "^a[^/]*$",
            "^(.*/)?b$",
            "^[^/]*/[^/]*$",
            "^a\\Qb",
            "^a\\b$",
            "^(.*/)?.*$",
        ] {
            let r = Regex::new(re).expect("compiles");
            for path in [
                "a", "a/b", "ab/b/c", "x/a/b", "a/b/c/d", "ab$/x", "a/", "b/b",
            ] {
                let parents = path.match_indices('/').filter(|(i, _)| *i > 0);
                let expected =
                    r.is_match(path) || parents.into_iter().any(|(i, _)| r.is_match(&path[..i]));
                assert_eq!(r.matches_path_or_parent(path), expected, "{re} on {path}");
            }
        }
    }

    #[test]
    fn extension() {
        let r = Regex::new("^a/b[^/]*$").expect("compiles");
        assert!(r.may_match_extension("a/"));
        assert!(!r.may_match_extension("c/"));
        assert!(!r.may_match_extension("a/bx/"));
        let r = Regex::new("^(.*/)?keep$").expect("compiles");
        assert!(r.may_match_extension("x/y/"));
        let r = Regex::new("^a$").expect("compiles");
        assert!(!r.may_match_extension("a"));
        let r = Regex::new("^a\\Qb").expect("compiles");
        assert!(r.may_match_extension("ab/"));
        assert!(!dump(&r).is_empty());
    }

    #[test]
    fn linear_time() {
        let re = format!("^{}$", "[^/]*a".repeat(300));
        let r = Regex::new(&re).expect("compiles");
        let text = "a".repeat(299) + "b";
        assert!(!r.is_match(&text));
    }
}
