#![allow(clippy::unwrap_used)]

use super::*;

fn rules(text: &str) -> IgnoreRules {
    match IgnoreRules::parse(text) {
        Ok(r) => r,
        Err(e) => panic!("{text:?}: {e}"),
    }
}

fn patterns(text: &str) -> Vec<String> {
    rules(text)
        .rules()
        .iter()
        .map(ToString::to_string)
        .collect()
}

fn excluded(pats: &[&str], path: &str) -> bool {
    IgnoreRules::from_patterns(pats).unwrap().is_excluded(path)
}

fn bad_line(text: &str) -> usize {
    match IgnoreRules::parse(text) {
        Err(e @ IgnoreError::BadPattern { .. }) => e.line(),
        other => panic!("{text:?}: expected a bad pattern, got {other:?}"),
    }
}

/// moby's `ignorefile` test: what `ReadAll` produces for each line.
#[test]
fn read_all_like_moby() {
    let content =
        "test1\n/test2\n/a/file/here\n\nlastfile\n# this is a comment\n! /inverted/abs/path\n!\n! ";
    let got: Vec<String> = content
        .split('\n')
        .filter(|l| !l.starts_with('#'))
        .filter_map(read_line)
        .collect();
    assert_eq!(
        got,
        [
            "test1",
            "test2",
            "a/file/here",
            "lastfile",
            "!inverted/abs/path",
            "!",
            "!"
        ]
    );
    // ... and `New` then rejects the lone `!` (line 8).
    assert_eq!(bad_line(content), 8);
    assert_eq!(
        patterns(
            "test1\n/test2\n/a/file/here\n\nlastfile\n# this is a comment\n! /inverted/abs/path\n"
        ),
        [
            "test1",
            "test2",
            "a/file/here",
            "lastfile",
            "!inverted/abs/path"
        ]
    );
}

#[test]
fn bom_comments_whitespace_and_line_numbers() {
    let r = rules(concat!(
        "\u{FEFF}# comment\r\n",
        "  node_modules  \r\n",
        "\n",
        "\t\n",
        "  # not a comment\n",
        "!  keep.txt\n",
        "\u{FEFF}x\n",
    ));
    let got: Vec<(String, bool, usize)> = r
        .rules()
        .iter()
        .map(|r| (r.pattern.clone(), r.exclusion, r.line))
        .collect();
    assert_eq!(
        got,
        [
            ("node_modules".to_owned(), false, 2),
            ("# not a comment".to_owned(), false, 5),
            ("keep.txt".to_owned(), true, 6),
            ("\u{FEFF}x".to_owned(), false, 7), // only the first line loses its BOM
        ]
    );
    assert_eq!(patterns("\u{FEFF}a"), ["a"]);
    assert_eq!(patterns("\u{FEFF}#a\nb"), ["b"]);
    assert!(rules("").is_empty());
    assert!(rules("\n\n# only comments\n   \n").is_empty());
    assert_eq!(patterns("a\u{A0}\n\u{3000}b"), ["a", "b"]); // Unicode whitespace is trimmed
}

#[test]
fn from_patterns_cleans_like_the_file() {
    let r = IgnoreRules::from_patterns(["  /a/ ", "", "#b", "! ./c", "d/../e"]).unwrap();
    let got: Vec<(String, usize)> = r.rules().iter().map(|r| (r.to_string(), r.line)).collect();
    let want = [("a", 1), ("#b", 3), ("!c", 4), ("e", 5)];
    assert_eq!(got, want.map(|(p, l)| (p.to_owned(), l)));
    assert!(r.is_excluded("#b"));
    assert!(IgnoreRules::from_patterns(Vec::<String>::new())
        .unwrap()
        .is_empty());
}

#[test]
fn cleaning() {
    let cases = [
        ("/a", "a"),
        ("./a", "a"),
        ("a/", "a"),
        ("a/../b", "b"),
        ("foo//bar/../baz", "foo/baz"),
        ("/foo/bar/", "foo/bar"),
        ("//a//b//", "a/b"),
        ("../a", "../a"),
        ("a /.", "a"), // cleaned to "a " by ReadAll, trimmed again by New
        ("!./a", "!a"),
        ("! /x/", "!x"),
        ("!a/../b", "!b"),
        (".", "."),
        ("./", "."),
        ("/", "/"),
        ("/..", "/"),
        ("**/", "**"),
    ];
    for (line, want) in cases {
        assert_eq!(patterns(line), [want], "{line:?}");
    }
    // `./ /.` cleans to a single space, which New then skips.
    assert!(rules("./ /.").is_empty());
}

#[test]
fn dot_and_root_patterns_match_nothing() {
    for p in [".", "/", "./", "/.."] {
        let r = IgnoreRules::from_patterns([p]).unwrap();
        for path in ["a", "a/b", ".", "", "/", ".a"] {
            assert!(!r.is_excluded(path), "{p:?} excludes {path:?}");
        }
    }
}

#[test]
fn illegal_exclusions() {
    assert_eq!(bad_line("a\n!"), 2);
    assert_eq!(bad_line("!/"), 1);
    assert_eq!(bad_line("a\nb\n!   "), 3);
    let err = IgnoreRules::from_patterns(["!"]).unwrap_err();
    assert!(
        err.to_string().contains("illegal exclusion pattern"),
        "{err}"
    );
}

#[test]
fn bad_patterns() {
    for (text, line) in [
        ("[", 1),
        ("ok\na[", 2),
        ("ok\n\n# c\n[]a]", 4),
        ("[-x]", 1),
        ("[x-]", 1),
        ("[a-b-c]", 1),
        ("[^", 1),
        ("x\\", 1),
        ("!x[", 1),
        ("[z-a]", 1),         // passes filepath.Match, fails regexp.Compile
        ("[Local-Only]/", 1), // moby issue 52203
        ("a\\e", 1),          // not a Go regex escape
        ("a\\1", 1),
        ("a\\pL", 1), // Unicode classes are not supported
    ] {
        assert_eq!(bad_line(text), line, "{text:?}");
    }
    let err = IgnoreRules::parse("ok\n  [  ").unwrap_err();
    assert_eq!(
        err,
        IgnoreError::BadPattern {
            line: 2,
            pattern: "[".to_owned(),
            reason: "syntax error in pattern".to_owned()
        }
    );
    assert_eq!(
        err.to_string(),
        "line 2: invalid pattern `[`: syntax error in pattern"
    );
}

#[test]
fn line_too_long() {
    let long = "a".repeat(MAX_LINE_LEN);
    let err = IgnoreRules::parse(&format!("x\n{long}\n")).unwrap_err();
    assert_eq!(
        err,
        IgnoreError::LineTooLong {
            line: 2,
            len: MAX_LINE_LEN
        }
    );
    // Even when an earlier line is bad: moby reads the whole file first.
    assert!(matches!(
        IgnoreRules::parse(&format!("[\n{long}")),
        Err(IgnoreError::LineTooLong { .. })
    ));
    let fits = "a".repeat(MAX_LINE_LEN - 1);
    assert_eq!(rules(&format!("{fits}\n")).rules().len(), 1);
}

#[test]
fn wildcards() {
    assert!(excluded(&["*"], "fileutils.go"));
    assert!(excluded(&["*.go"], "fileutils.go"));
    assert!(!excluded(&["*.go"], "fileutils.rs"));
    assert!(!excluded(&["*.go"], "dir/fileutils.go"));
    assert!(excluded(&["*/*.go"], "dir/fileutils.go"));
    assert!(excluded(&["a?c"], "abc"));
    assert!(!excluded(&["a?c"], "ac"));
    assert!(!excluded(&["a?c"], "a/c"));
    assert!(excluded(&["[a-c]x"], "bx"));
    assert!(!excluded(&["[a-c]x"], "dx"));
    assert!(excluded(&["[^a-c]x"], "dx"));
    assert!(!excluded(&["[!a]x"], "bx")); // `!` is not negation
    assert!(excluded(&["[!a]x"], "!x"));
    assert!(excluded(&["\\*"], "*"));
    assert!(!excluded(&["\\*"], "a"));
    assert!(excluded(&["a\\?"], "a?"));
    assert!(!excluded(&["a\\?"], "ab"));
    assert!(excluded(&["\\[x\\]"], "[x]"));
    assert!(excluded(&["a\\\\"], "a\\"));
    assert!(excluded(&["a\\ b*"], "a bc"));
    // Escaped letters are Go regex escapes, not literal letters.
    assert!(excluded(&["\\a"], "\u{7}"));
    assert!(!excluded(&["\\a"], "a"));
    assert!(excluded(&["v\\d"], "v1"));
}

#[test]
fn double_star() {
    assert!(excluded(&["**/foo"], "foo"));
    assert!(excluded(&["**/foo"], "a/b/foo"));
    assert!(excluded(&["**/foo"], "a/foo/bar")); // below a matched directory
    assert!(!excluded(&["**/foo"], "a/xfoo"));
    assert!(excluded(&["foo/**"], "foo/a/b"));
    assert!(!excluded(&["foo/**"], "foo"));
    assert!(excluded(&["a/**/b"], "a/b"));
    assert!(excluded(&["a/**/b"], "a/x/y/b"));
    assert!(!excluded(&["a/**/b"], "a/x/yb"));
    assert!(excluded(&["**/*.log"], "x/y/z.log"));
    assert!(excluded(&["**"], "anything/at/all"));
}

#[test]
fn parent_directories() {
    assert!(excluded(&["docs"], "docs"));
    assert!(excluded(&["docs"], "docs/a/b.md"));
    assert!(!excluded(&["docs"], "docsx/a"));
    assert!(!excluded(&["docs"], "x/docs"));
    assert!(excluded(&["a/b"], "a/b/c/d"));
    assert!(excluded(&["*/b"], "a/b/c"));
    assert!(excluded(&["a*"], "ab/c"));
}

#[test]
fn exceptions_in_both_orders() {
    let r = IgnoreRules::from_patterns(["*.md", "!README.md"]).unwrap();
    assert!(!r.is_excluded("README.md"));
    assert!(r.is_excluded("CHANGES.md"));
    let r = IgnoreRules::from_patterns(["!x", "x"]).unwrap();
    assert!(r.is_excluded("x"));
    let r = IgnoreRules::from_patterns(["x", "!x", "x"]).unwrap();
    assert!(r.is_excluded("x/y"));
    // moby's own tests.
    assert!(excluded(&["!fileutils.go", "*.go"], "fileutils.go"));
    assert!(!excluded(&["*.go", "!fileutils.go"], "fileutils.go"));
    assert!(!excluded(&["docs", "!docs/README.md"], "docs/README.md"));
    assert!(!excluded(&["docs/", "!docs/README.md"], "docs/README.md"));
    assert!(!excluded(&["docs/*", "!docs/README.md"], "docs/README.md"));
    assert!(excluded(&["docs", "!docs/README.md"], "docs/other.md"));
    // An exception on a directory re-includes its content.
    assert!(!excluded(&["*", "!src"], "src/main.rs"));
    assert!(excluded(&["*", "!src", "src/*.tmp"], "src/a.tmp"));
}

#[test]
fn excluded_by_reports_the_deciding_rule() {
    let r = rules("# c\nx*\n*.md\n!README.md\nREADME.md\n");
    let rule = r.excluded_by("xa.md").unwrap();
    assert_eq!((rule.pattern.as_str(), rule.line), ("*.md", 3));
    // moby stops evaluating inclusions once a path is excluded; the last matching one is
    // reported all the same.
    let rule = r.excluded_by("x1").unwrap();
    assert_eq!(
        (rule.pattern.as_str(), rule.exclusion, rule.line),
        ("x*", false, 2)
    );
    let rule = r.excluded_by("README.md").unwrap();
    assert_eq!(rule.line, 5);
    assert_eq!(r.excluded_by("other"), None);
    assert_eq!(r.excluded_by(""), None);
    let r = rules("*.md\n!README.md\n");
    assert_eq!(r.excluded_by("README.md"), None);
    assert_eq!(r.excluded_by("a.md").map(|r| r.line), Some(1));
    assert_eq!(r.rules()[1].to_string(), "!README.md");
}

#[test]
fn paths_are_cleaned_and_root_is_never_excluded() {
    let r = IgnoreRules::from_patterns(["**", "a"]).unwrap();
    for root in ["", ".", "/", "./", "a/.."] {
        assert!(!r.is_excluded(root), "{root:?}");
    }
    let r = IgnoreRules::from_patterns(["a/b"]).unwrap();
    for path in ["a/b", "/a/b", "./a/b", "a//b/", "a/x/../b/c"] {
        assert!(r.is_excluded(path), "{path:?}");
    }
}

#[test]
fn can_skip_dir() {
    let r = rules("node_modules\nbuild/\n*.tmp\n");
    assert!(r.can_skip_dir("node_modules"));
    assert!(r.can_skip_dir("node_modules/x"));
    assert!(r.can_skip_dir("build"));
    assert!(!r.can_skip_dir("src"));
    assert!(!r.can_skip_dir(""));

    let r = rules("node_modules\n!node_modules/keep.txt\n");
    assert!(!r.can_skip_dir("node_modules"));
    assert!(r.is_excluded("node_modules/other"));
    assert!(!r.is_excluded("node_modules/keep.txt"));

    let r = rules("*\n!**/keep\n");
    assert!(!r.can_skip_dir("anything"));

    let r = rules("build\n!*.md\n!other/x\n");
    assert!(r.can_skip_dir("build")); // no exception can reach below build/
    let r = rules("build\n!build/*/*.md\n");
    assert!(!r.can_skip_dir("build"));
    assert!(!r.can_skip_dir("build/sub"));
    assert!(r.can_skip_dir("build/sub/deeper")); // `build/*/*.md` stops one level down
    let r = rules("a\n!a/b/**\n");
    assert!(!r.can_skip_dir("a"));
    assert!(!r.can_skip_dir("a/b"));
    assert!(r.can_skip_dir("a/c"));
    // Exceptions before the last inclusion matching the directory do not matter.
    let r = rules("!**/*.md\nnode_modules\n");
    assert!(r.can_skip_dir("node_modules"));
    let r = rules("node_modules\n!**/*.md\n");
    assert!(!r.can_skip_dir("node_modules"));
    let r = rules("a\n!a/keep\na\n");
    assert!(r.can_skip_dir("a"));
    assert!(r.is_excluded("a/keep"));
}

/// Small exhaustive check of `can_skip_dir`'s promise on a fixed tree.
#[test]
fn can_skip_dir_is_sound() {
    let names = ["a", "b", "k.md", "keep"];
    let mut tree: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
    for _ in 0..2 {
        let deeper: Vec<String> = tree
            .iter()
            .flat_map(|p| names.iter().map(move |n| format!("{p}/{n}")))
            .collect();
        tree.extend(deeper);
    }
    let files = [
        "a\n!a/keep",
        "a\n!**/keep",
        "*\n!*.md",
        "a\n!a/*/k.md",
        "**/b\n!a/b/keep\nb/keep",
        "a/**\n!a/b\n",
        "a\nb\n!b/a\n!a/a/a",
        "*/*\n![ab]/k.md",
        "a\n!a?/x\n!?/b",
        "a\n!a\\/b",
        "*\n!**k*",
        "!**/keep\na",
        "a\n!**/keep\na/*",
        "!a/b\na\n!a/a\n*/a",
    ];
    let pool = [
        "a",
        "b",
        "*",
        "**",
        "a/*",
        "*/a",
        "**/keep",
        "a/**",
        "k*",
        "*.md",
        "a/b",
        "[ab]",
        "?/?",
        "**/b/**",
        "a/**/keep",
        "b/k.md",
    ];
    let mut rng = Lcg(99);
    let mut random_files = Vec::new();
    for _ in 0..300 {
        let n = 1 + rng.next(4);
        let lines: Vec<String> = (0..n)
            .map(|_| {
                let bang = if rng.next(2) == 0 { "!" } else { "" };
                format!("{bang}{}", pool[rng.next(pool.len())])
            })
            .collect();
        random_files.push(lines.join("\n"));
    }
    for file in files.iter().map(|f| (*f).to_owned()).chain(random_files) {
        let r = rules(&file);
        for dir in &tree {
            if !r.can_skip_dir(dir) {
                continue;
            }
            let prefix = format!("{dir}/");
            for path in tree.iter().filter(|p| p.starts_with(&prefix)) {
                assert!(
                    r.is_excluded(path),
                    "{file:?}: skipped {dir} but {path} is included"
                );
            }
        }
    }
}

#[test]
fn candidates() {
    assert_eq!(
        ignore_file_candidates("Dockerfile"),
        ["Dockerfile.dockerignore", ".dockerignore"]
    );
    assert_eq!(
        ignore_file_candidates("sub/app.Dockerfile"),
        ["sub/app.Dockerfile.dockerignore", ".dockerignore"]
    );
    assert_eq!(
        ignore_file_candidates("./build//app.Dockerfile"),
        ["build/app.Dockerfile.dockerignore", ".dockerignore"]
    );
    assert_eq!(
        ignore_file_candidates(""),
        ["Dockerfile.dockerignore", ".dockerignore"]
    );
}

/// A tiny deterministic generator for the property tests.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self, n: usize) -> usize {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        ((self.0 >> 33) as usize) % n.max(1)
    }

    fn string(&mut self, alphabet: &[&str], max_len: usize) -> String {
        let len = self.next(max_len + 1);
        (0..len)
            .map(|_| alphabet[self.next(alphabet.len())])
            .collect()
    }
}

/// Without `**`, moby's regex translation agrees with Go's `filepath.Match` applied to the
/// path and each of its parents.
#[test]
fn agrees_with_go_match_for_plain_globs() {
    let mut rng = Lcg(7);
    let pattern_alphabet = [
        "a", "b", "/", "*", "?", "[ab]", "[^a]", "[a-b]", "\\*", "\\.", ".",
    ];
    let path_alphabet = ["a", "b", "/", "."];
    for _ in 0..3000 {
        let pattern = rng.string(&pattern_alphabet, 6);
        if pattern.contains("**") {
            continue;
        }
        let Ok(r) = IgnoreRules::from_patterns([&pattern]) else {
            continue;
        };
        let Some(rule) = r.rules().first() else {
            continue;
        };
        let path = rng.string(&path_alphabet, 6);
        let Some(clean) = normalize_path(&path) else {
            continue;
        };
        let mut candidates: Vec<&str> =
            clean.match_indices('/').map(|(i, _)| &clean[..i]).collect();
        candidates.push(&clean);
        let expected = candidates
            .iter()
            .any(|c| go_match(&rule.pattern, c) == Ok(true));
        assert_eq!(
            r.is_excluded(&path),
            expected,
            "pattern {pattern:?} path {path:?}"
        );
    }
}

/// Arbitrary input never panics.
#[test]
fn no_panics_on_arbitrary_input() {
    let mut rng = Lcg(42);
    let alphabet = [
        "a", "/", "*", "**", "?", "[", "]", "^", "!", "\\", "-", ".", "{", "}", "(", ")", "$", "|",
        ":", "d", "Q", "E", "p", "x", "0", "7", "\u{FEFF}", "☺", " ", "\n", "\r", "#", "b", "z",
    ];
    for _ in 0..4000 {
        let text = rng.string(&alphabet, 24);
        let path = rng.string(&alphabet, 12);
        let _ = go_match(&text, &path);
        let _ = go_clean(&text);
        let _ = ignore_file_candidates(&path);
        if let Ok(r) = IgnoreRules::parse(&text) {
            let _ = r.is_excluded(&path);
            let _ = r.excluded_by(&path);
            let _ = r.can_skip_dir(&path);
        }
    }
}

/// Linear-time matching: with a backtracking matcher these would not finish. (No timing
/// assertion: speed goals live in benchmarks, never in timed tests.)
#[test]
fn hostile_patterns_match_without_backtracking() {
    let pattern = format!("{}b", "*a".repeat(500));
    let path = "a".repeat(3000);
    let r =
        IgnoreRules::from_patterns([&pattern, "**/**/**/**/**/**/x", "a**a**a**a**a**c"]).unwrap();
    assert!(!r.is_excluded(&path));
    assert!(!r.is_excluded(&format!("{path}/{path}")));
}
