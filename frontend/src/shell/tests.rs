#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet, HashMap};

use super::expand::MAX_NESTING;
use super::{Env, Lexer, ShellError};

fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// The fixed environment of BuildKit's envVarTest, plus a few extras.
fn std_env() -> Vec<(String, String)> {
    env(&[
        ("PWD", "/home"),
        ("SHELL", "bash"),
        ("KOREAN", "한국어"),
        ("NULL", ""),
        ("SP", " a  b "),
        ("FOO", "xxyy"),
    ])
}

fn word(w: &str) -> String {
    Lexer::new('\\')
        .process_word(w, &std_env())
        .unwrap_or_else(|e| panic!("{w:?}: {e:?}"))
}

fn word_in(lex: Lexer, w: &str, e: &[(&str, &str)]) -> String {
    lex.process_word(w, &env(e))
        .unwrap_or_else(|err| panic!("{w:?}: {err:?}"))
}

fn error(w: &str) -> ShellError {
    Lexer::new('\\').process_word(w, &std_env()).expect_err(w)
}

fn words(lex: Lexer, w: &str, e: &[(&str, &str)]) -> Vec<String> {
    lex.process_words(w, &env(e))
        .unwrap_or_else(|err| panic!("{w:?}: {err:?}"))
}

fn raw_lexer(raw_quotes: bool, raw_escapes: bool, skip_unset: bool) -> Lexer {
    Lexer {
        raw_quotes,
        raw_escapes,
        skip_unset_env: skip_unset,
        ..Lexer::new('\\')
    }
}

#[test]
fn quotes_and_escapes() {
    assert_eq!(word("he'll'o"), "hello");
    assert_eq!(word(r"he\'llo"), "he'llo");
    assert_eq!(word(r#""abc\tdef""#), r"abc\tdef");
    assert_eq!(word(r#""abc\\tdef""#), r"abc\tdef");
    assert_eq!(word(r"hello\"), "hello");
    assert_eq!(word(r"hello\\"), r"hello\");
    assert_eq!(word(r"'hello\there'"), r"hello\there");
    assert_eq!(word(r#""he\$PWD""#), "he$PWD");
    assert_eq!(word(r#""he\\$PWD""#), r"he\/home");
    assert_eq!(word(r#""a\"b""#), r#"a"b"#);
    assert_eq!(word(r"안녕\t하세요"), "안녕t하세요");
    let tick = Lexer::new('`');
    assert_eq!(word_in(tick, r"C:\dir`$x`'", &[]), r"C:\dir$x'");
    assert_eq!(word_in(tick, r#""a`"b\c""#, &[]), r#"a"b\c"#);
}

#[test]
fn unterminated_quotes_are_errors() {
    let e = error(r#""hello\""#);
    assert_eq!(
        e.message,
        "unexpected end of statement while looking for matching double-quote"
    );
    assert_eq!(e.offset, 8);
    let e = error("he'llo");
    assert_eq!(
        e.message,
        "unexpected end of statement while looking for matching single-quote"
    );
    assert!(Lexer::new('\\').process_word(r"he\\'llo", &()).is_err());
}

#[test]
fn names() {
    assert_eq!(word("$."), "$.");
    assert_eq!(word("a$"), "a$");
    assert_eq!(word("he$PWD"), "he/home");
    assert_eq!(word("$PWD.x"), "/home.x");
    assert_eq!(word("안녕$KOREAN"), "안녕한국어");
    assert_eq!(word("$1x"), "x");
    assert_eq!(word("$999aaa"), "aaa");
    assert_eq!(word("$@@@"), "@@");
    assert_eq!(word("$$$"), "$");
    assert_eq!(word("$0abc"), "abc");
    let e = &[("é1_", "v"), ("٣", "arabic-digit"), ("x", "X")];
    assert_eq!(word_in(Lexer::new('\\'), "$é1_!", e), "v!");
    // A non-ASCII decimal digit starts a digit name; other number categories end a name.
    assert_eq!(word_in(Lexer::new('\\'), "$٣", e), "arabic-digit");
    assert_eq!(word_in(Lexer::new('\\'), "$x²", e), "X²");
}

#[test]
fn braces_and_syntax_errors() {
    assert_eq!(word("he${PWD}"), "he/home");
    assert_eq!(word("${aaa}}"), "}");
    assert_eq!(word(r"\${}aaa"), "${}aaa");
    for bad in ["${}", "he${}xx", "${:}", "${:-bbb}", "${{x}"] {
        assert_eq!(
            error(bad).message,
            "syntax error: bad substitution",
            "{bad}"
        );
    }
    assert_eq!(error("he${}xx").offset, 4);
    assert_eq!(error("${").message, "syntax error: missing '}'");
    assert_eq!(error("${aaa:-bbb").message, "syntax error: missing '}'");
    assert_eq!(error("${aaa:-bbb").offset, 10);
    assert_eq!(error("${a:-'x}").message, "syntax error: missing '}'");
    // A missing `}` right after a name is reported as a modifier, with U+FFFD for the end.
    let e = error("x${PWD");
    assert_eq!(e.message, "unsupported modifier (\u{FFFD}) in substitution");
    assert_eq!(e.offset, 6);
    assert_eq!(
        error("${.}").message,
        "unsupported modifier (.) in substitution"
    );
    assert_eq!(
        error("${#v}").message,
        "unsupported modifier (v) in substitution"
    );
}

#[test]
fn unsupported_modifiers() {
    for (w, op) in [
        ("${PWD:=000}", ":="),
        ("${XXX:YYY}", ":Y"),
        ("${PWD:#x}", ":#"),
        ("${PWD:%x}", ":%"),
        ("${PWD=x}", "="),
    ] {
        let e = error(w);
        assert_eq!(
            e.message,
            format!("unsupported modifier ({op}) in substitution")
        );
        assert_eq!(e.offset, 5, "{w}");
    }
    // The argument is scanned first, so its own errors win.
    assert_eq!(error("${PWD:=${a:?boom}}").message, "a: boom");
}

#[test]
fn default_and_alternative() {
    assert_eq!(word("he${PWD:-000}xx"), "he/homexx");
    assert_eq!(word("he${XXX:-${YYY:-yyy}}xx"), "heyyyxx");
    assert_eq!(word("${NULL:-d}|${NULL-d}|${XXX-d}"), "d||d");
    assert_eq!(word("${NULL:+a}|${NULL+a}|${XXX+a}|${PWD+a}"), "|a||a");
    assert_eq!(word("he${PWD:+${PWD}:}xx"), "he/home:xx");
    assert_eq!(word(r"he${XXX:-\${PWD}z}xx"), "he${PWDz}xx");
    assert_eq!(word("${aaa:-bbb}}"), "bbb}");
    assert_eq!(word("${1:-bbb}${@:-x}${0:+y}"), "bbbx");
    assert_eq!(word(r#"${XXX:-"a b"'c'}"#), "a bc");
    // An empty name is allowed after `${` when an operator follows; `-` is a name.
    assert_eq!(word("${+y}${%y}${/a/b}"), "");
    assert_eq!(
        error("${-x}").message,
        "unsupported modifier (x) in substitution"
    );
}

#[test]
fn required_values() {
    assert_eq!(word("he${PWD?}"), "he/home");
    assert_eq!(word("he${NULL?}"), "he");
    let e = error("he${XXX:?}");
    assert_eq!(e.message, "XXX: is not allowed to be unset");
    assert_eq!(e.offset, 2);
    assert_eq!(
        error("${NULL:?}").message,
        "NULL: is not allowed to be empty"
    );
    assert_eq!(error("${XXX?}").message, "XXX: is not allowed to be unset");
    assert_eq!(error("${XXX?must $SHELL}").message, "XXX: must bash");
    assert_eq!(error("${NULL:?nope}").message, "NULL: nope");
}

#[test]
fn prefix_and_suffix_trimming() {
    let lex = Lexer::new('\\');
    let e = &[("FOO", "xxyy"), ("BAR", "x"), ("EMPTY", "")];
    for (w, want) in [
        ("${FOO#*x*y}", "y"),
        ("${FOO#*}", "xxyy"),
        ("${FOO##*}", ""),
        ("${FOO#$BAR}", "xyy"),
        ("${FOO#$EMPTY}", "xxyy"),
        ("${FOO#}", "xxyy"),
        ("${FOO##*x}", "yy"),
        ("${FOO##}", "xxyy"),
        ("${FOO%y*}", "xxy"),
        ("${FOO%%y*}", "xx"),
        ("${FOO%?}", "xxy"),
        ("${FOO%%$EMPTY}", "xxyy"),
        ("${FOO#nomatch}", "xxyy"),
        ("${UNSET#*}", ""),
        ("${ABC:-.}${FOO%x}${ABC:-.}", ".xxyy."),
    ] {
        assert_eq!(word_in(lex, w, e), want, "{w}");
    }
    let special = &[("FOO", r"()[]{}^$.*?|\x"), ("S", "xx**"), ("T", "a***yy*")];
    assert_eq!(word_in(lex, r"${FOO#()[]{\}^$.\*\?|\\}", special), "x");
    assert_eq!(word_in(lex, r"${S%%\**}", special), "xx");
    assert_eq!(word_in(lex, r"${T%%\**\*}", special), "a");
    assert_eq!(word_in(lex, r"${T#?\?}", &[("T", "???y")]), "?y");
    // The doubled operator may come from an expansion or a quote, as in BuildKit.
    assert_eq!(
        word_in(lex, "${FOO#$H}", &[("FOO", "aab"), ("H", "#*a")]),
        "b"
    );
    assert_eq!(word_in(lex, r##"${FOO#"#"*x}"##, &[("FOO", "xxyy")]), "yy");
    // Wildcards do not cross newlines.
    assert_eq!(word_in(lex, "${V##*}", &[("V", "ab\ncd")]), "\ncd");
    assert_eq!(word_in(lex, "${V%%*}", &[("V", "ab\ncd")]), "ab\n");
    assert_eq!(word_in(lex, "${V#a?c}", &[("V", "a\nc")]), "a\nc");
}

#[test]
fn pattern_escapes() {
    let lex = Lexer::new('\\');
    let e = &[("V", "a}b/c")];
    assert_eq!(word_in(lex, r"${V#a\}}", e), "b/c");
    assert_eq!(word_in(lex, r"${V/\//-}", e), "a}b-c");
    let err = lex.process_word(r"x${V#a\b}", &env(e)).unwrap_err();
    assert_eq!(
        err.message,
        r"invalid pattern (a\b) in substitution: invalid escape '\b'"
    );
    assert_eq!(err.offset, 1);
    // Suffix patterns are reported reversed, like BuildKit does.
    let err = lex.process_word(r"${V%a\b}", &env(e)).unwrap_err();
    assert_eq!(
        err.message,
        r"invalid pattern (\ba) in substitution: invalid escape '\b'"
    );
    // With the backtick escape, a pattern can end in a lone backslash.
    let tick = Lexer::new('`');
    let err = tick.process_word(r"${V#a\}", &env(e)).unwrap_err();
    assert_eq!(
        err.message,
        "invalid pattern (a\\) in substitution: invalid escape '\\\u{FFFD}'"
    );
    // A pattern coming from a variable is still a pattern.
    let err = lex
        .process_word("${V#$P}", &env(&[("P", r"\q")]))
        .unwrap_err();
    assert!(err.message.ends_with(r"invalid escape '\q'"), "{err:?}");
}

#[test]
fn replace_first_and_all() {
    let lex = Lexer::new('\\');
    type Case<'a> = (&'a str, &'a [(&'a str, &'a str)], &'a str);
    let cases: &[Case] = &[
        (
            "${FOO/$NEEDLE/.} - ${FOO//$NEEDLE/.}",
            &[("FOO", "/foo*/*/*.txt"), ("NEEDLE", r"\*/")],
            "/foo.*/*.txt - /foo..*.txt",
        ),
        (
            "${FOO/$NEEDLE/} - ${FOO//$NEEDLE/}",
            &[("FOO", "/tmp/tmp/bar.txt"), ("NEEDLE", "/tmp")],
            "/tmp/bar.txt - /bar.txt",
        ),
        (
            "${FOO/$N/$R} - ${FOO//$N/$R}",
            &[("FOO", "/a/foo/b/c.txt"), ("N", "/?/"), ("R", "/")],
            "/foo/b/c.txt - /foo/c.txt",
        ),
        (
            r"${FOO//\//\/}",
            &[("FOO", "/tmp/foo.txt")],
            r"\/tmp\/foo.txt",
        ),
        ("${FOO/$BAR/ww}", &[("FOO", "xxyy"), ("BAR", "")], "wwxxyy"),
        ("${FOO///}", &[("FOO", "xxyy")], "xxyy"),
        ("${FOO///}", &[], ""),
        ("${FOO//*/r}", &[("FOO", "ab")], "r"),
        ("${FOO/a*/r}", &[("FOO", "xabab")], "xr"),
        ("${FOO//a/r}", &[("FOO", "banana")], "brnrnr"),
        // Empty matches: each position, but not right after a previous match.
        ("${FOO///-}", &[("FOO", "ab")], "-a-b-"),
        ("${FOO//*/-}", &[("FOO", "a\nb")], "-\n-"),
        ("${FOO//x*/-}", &[("FOO", "axbxc")], "a-"),
    ];
    for (w, e, want) in cases {
        assert_eq!(word_in(lex, w, e), *want, "{w}");
    }
}

#[test]
fn replace_all_templates() {
    let lex = Lexer::new('\\');
    let e = &[
        ("V", "abcb"),
        ("R", "<$0>"),
        ("S", "[${0}|$$|$1|$x|${y}|$|${z|$.]"),
    ];
    // The single replacement is literal, the global one expands Go templates.
    assert_eq!(word_in(lex, "${V/b/$R}", e), "a<$0>cb");
    assert_eq!(word_in(lex, "${V//b/$R}", e), "a<b>c<b>");
    assert_eq!(
        word_in(lex, "${V//b/$S}", e),
        "a[b|$||||$|${z|$.]c[b|$||||$|${z|$.]"
    );
    assert_eq!(word_in(lex, "${V//b/'$00$01${0a}'}", e), "ac");
    assert_eq!(word_in(lex, r"${V//b/\$0}", e), r"a\bc\b");
}

#[test]
fn skip_unset_env_mode() {
    let lex = raw_lexer(false, false, true);
    let e = &[("SET", "v"), ("EMPTY", "")];
    for (w, want) in [
        ("$UNSET-$SET-$EMPTY.", "$UNSET-v-."),
        ("${UNSET}${SET}", "${UNSET}v"),
        ("${UNSET:-a b}", "${UNSET:-a b}"),
        ("${UNSET-$SET}", "${UNSET-v}"),
        ("${UNSET:+x}${UNSET?m}", "${UNSET:+x}${UNSET?m}"),
        ("${UNSET##*}", "${UNSET##*}"),
        ("${UNSET//a/b}", "${UNSET/a/b}"),
        ("${UNSET:=x}", "${UNSET:=x}"),
        ("${SET:-x}${EMPTY:-d}", "vd"),
        ("$1$@", "$1$@"),
    ] {
        assert_eq!(word_in(lex, w, e), want, "{w}");
    }
    assert!(lex.process_word("${SET:=x}", &env(e)).is_err());
    assert!(lex.process_word("${EMPTY:?}", &env(e)).is_err());
}

#[test]
fn raw_quotes_and_escapes_modes() {
    let e: &[(&str, &str)] = &[("V", "v")];
    let rq = raw_lexer(true, false, false);
    assert_eq!(word_in(rq, r#"'a $V'"b $V""#, e), r#"'a $V'"b v""#);
    let re = raw_lexer(false, true, false);
    assert_eq!(word_in(re, r"a\ b\$V\", e), r"a\ b\$V\");
    // Inside double quotes an escape before an ordinary character is doubled (BuildKit quirk).
    assert_eq!(word_in(re, r#""\t\"\$V""#, e), r#"\\t\"\$V"#);
    // `-`/`+`/`?` arguments are always scanned with escapes processed.
    assert_eq!(word_in(re, r"${X:-a\b}", e), "ab");
    let sq = Lexer {
        skip_process_quotes: true,
        ..Lexer::new('\\')
    };
    assert_eq!(word_in(sq, r#"'a $V' "\$V""#, e), r#"'a v' "$V""#);
    assert_eq!(words(sq, r#"'a b'"#, e), ["'a", "b'"]);
}

#[test]
fn heredoc_detection_modes() {
    // The parser scans a line with raw quotes, raw escapes and unset variables kept...
    let line = raw_lexer(true, true, true);
    assert_eq!(
        words(line, r#"cat <<EOF <<-"E O" <<'x'$V >\ f"#, &[]),
        ["cat", "<<EOF", r#"<<-"E O""#, "<<'x'$V", r">\ f"].map(String::from)
    );
    assert_eq!(words(line, r"<<E\OF ${A:-b}", &[]), [r"<<E\OF", "${A:-b}"]);
    // ...then the delimiter with and without raw quotes, comparing quote counts.
    let plain = raw_lexer(false, false, true);
    let quoted = raw_lexer(true, false, true);
    for (delim, name, raw) in [
        ("EOF", "EOF", "EOF"),
        (r#""EOF""#, "EOF", r#""EOF""#),
        ("'E'OF", "EOF", "'E'OF"),
        (r"eo\'f", "eo'f", "eo'f"),
        ("$X", "$X", "$X"),
    ] {
        assert_eq!(words(plain, delim, &[]), [name], "{delim}");
        assert_eq!(words(quoted, delim, &[]), [raw], "{delim}");
    }
}

#[test]
fn word_splitting() {
    let lex = Lexer::new('\\');
    let e = &[
        ("space", "abc  def"),
        ("leading", "  ab c"),
        ("trailing", "ab c   "),
    ];
    assert_eq!(words(lex, "hello${space}bye", e), ["helloabc", "defbye"]);
    assert_eq!(words(lex, r#"hello"${space}"bye"#, e), ["helloabc  defbye"]);
    assert_eq!(words(lex, "hello${leading}def", e), ["hello", "ab", "cdef"]);
    assert_eq!(words(lex, r#"hel"lo${trailing}""#, e), ["helloab c   "]);
    assert_eq!(words(lex, r"hello\ there  x", e), ["hello there", "x"]);
    assert_eq!(words(lex, r#"  "" '' a "#, e), ["a"]);
    assert_eq!(words(lex, "a\u{00A0}b\u{2003}c", e), ["a", "b", "c"]);
    assert!(words(lex, "", e).is_empty());
    assert!(lex.process_words("'a", &()).is_err());
}

#[test]
fn operator_arguments_reset_the_partial_word() {
    // BuildKit shares one partial-word buffer across nesting levels: the text of the current
    // word before a `${name<op>...}` is dropped from the split words (not from the value).
    let lex = Lexer::new('\\');
    let e: &[(&str, &str)] = &[("X", "x")];
    assert_eq!(words(lex, "a${U:-b}c d", e), ["bc", "d"]);
    assert_eq!(word_in(lex, "a${U:-b}c d", e), "abc d");
    assert_eq!(words(lex, r#"p "q"${X#y} r"#, e), ["p", "x", "r"]);
    // Inside quotes nothing is lost: quoted text is not in the shared buffer yet.
    assert_eq!(words(lex, r#"p "q${X#y}" r"#, e), ["p", "qx", "r"]);
    assert_eq!(words(lex, "a${X}b a$X", e), ["axb", "ax"]);
}

#[test]
fn matches_are_reported() {
    let lex = Lexer::new('\\');
    let e = env(&[("FOO", "xxx"), ("BAR", "")]);
    let r = lex
        .process_word_with_matches("${FOO:-aaa} ${BAR:-bbb} ${BAZ:-ccc} $1", &e)
        .unwrap();
    assert_eq!(r.value, "xxx bbb ccc ");
    let set = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<BTreeSet<_>>();
    assert_eq!(r.matched, set(&["FOO", "BAR"]));
    assert_eq!(r.unmatched, set(&["BAZ", "1"]));
    let r = lex.process_word_with_matches("x", &e).unwrap();
    assert!(r.matched.is_empty() && r.unmatched.is_empty());
}

#[test]
fn env_implementations() {
    let v = env(&[("A", "1"), ("A", "2")]);
    assert_eq!(Env::get(&v, "A"), Some("2"));
    assert_eq!(Env::get(v.as_slice(), "B"), None);
    let h: HashMap<String, String> = [("A".to_string(), String::new())].into();
    assert_eq!(Env::get(&h, "A"), Some(""));
    let b: BTreeMap<String, String> = [("A".to_string(), "b".to_string())].into();
    assert_eq!(Lexer::new('\\').process_word("$A", &b).unwrap(), "b");
    assert_eq!(Env::get(&(), "A"), None);
    assert_eq!(Lexer::default(), Lexer::new('\\'));
}

#[test]
fn leading_byte_order_mark_is_skipped() {
    let lex = Lexer::new('\\');
    assert_eq!(word_in(lex, "\u{FEFF}a\u{FEFF}", &[]), "a\u{FEFF}");
    assert_eq!(lex.process_word("\u{FEFF}'", &()).unwrap_err().offset, 2);
    assert_eq!(
        word_in(lex, "${V#$P}", &[("V", "ab"), ("P", "\u{FEFF}a")]),
        "b"
    );
}

#[test]
fn nesting_is_capped() {
    let lex = Lexer::new('\\');
    let nest = |n: usize| format!("{}x{}", "${a:-".repeat(n), "}".repeat(n));
    assert_eq!(lex.process_word(&nest(MAX_NESTING), &()).unwrap(), "x");
    let e = lex.process_word(&nest(MAX_NESTING + 1), &()).unwrap_err();
    assert!(e.message.contains("nested"), "{e:?}");
    assert_eq!(e.offset, 5 * MAX_NESTING);
    let deep = format!("{}x", "\"${a:-".repeat(100_000));
    assert!(lex.process_word(&deep, &()).is_err());
}

#[test]
fn long_inputs_stay_fast() {
    let lex = Lexer::new('\\');
    let long = "ab".repeat(100_000);
    let star = "*a".repeat(500);
    let bstar = "*b".repeat(500);
    let e = env(&[("V", &long), ("P", &star), ("Q", &bstar)]);
    let start = std::time::Instant::now();
    assert_eq!(lex.process_word("${V//b/}", &e).unwrap().len(), 100_000);
    assert_eq!(lex.process_word("${V//?/c}", &e).unwrap().len(), 200_000);
    assert_eq!(lex.process_word("${V#$P}", &e).unwrap().len(), 199_001);
    assert_eq!(lex.process_word("${V%$Q}", &e).unwrap().len(), 199_001);
    assert_eq!(lex.process_word("${V%%$Q}", &e).unwrap(), "");
    assert_eq!(lex.process_word("${V%%$P}", &e).unwrap().len(), 200_000);
    assert_eq!(lex.process_word("${V/$P/}", &e).unwrap(), "b");
    assert_eq!(lex.process_word("${V//*x/}", &e).unwrap().len(), 200_000);
    let word = format!("{}$S", "a$S ".repeat(20_000));
    let e = env(&[("S", " x  y ")]);
    assert_eq!(lex.process_words(&word, &e).unwrap().len(), 60_002);
    assert!(start.elapsed().as_secs() < 20, "{:?}", start.elapsed());
}

#[test]
fn arbitrary_input_never_panics() {
    const ALPHABET: &[char] = &[
        '$', '{', '}', ':', '-', '+', '?', '#', '%', '/', '\\', '\'', '"', '*', ' ', 'a', '1', '@',
        '\n', '`', 'é', '\u{FEFF}', '=', '0',
    ];
    let e = env(&[("a", "a*b ?"), ("1", "\\"), ("@", "")]);
    let mut seed: u64 = 0x2545_f491_4f6c_dd1d;
    for i in 0..20_000 {
        let mut w = String::new();
        for _ in 0..(i % 24) {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            w.push(ALPHABET[(seed % ALPHABET.len() as u64) as usize]);
        }
        for escape in ['\\', '`'] {
            let lex = Lexer {
                raw_quotes: i % 2 == 0,
                raw_escapes: i % 3 == 0,
                skip_unset_env: i % 5 == 0,
                skip_process_quotes: i % 7 == 0,
                escape,
            };
            if let Err(err) = lex.process_word_with_matches(&w, &e) {
                assert!(err.offset <= w.chars().count(), "{w:?} {err:?}");
            }
            let _ = lex.process_words(&w, &e);
        }
    }
}

#[test]
fn literal_fast_path_agrees_with_the_lexer() {
    let env: Vec<(String, String)> = vec![("A".into(), "x".into())];
    for word in [
        "plain",
        "with space",
        "/usr/local/bin",
        "a\tb",
        "",
        "한국어",
        "x=1,y=2",
        "`tick",
    ] {
        let lexer = Lexer::new('\\');
        let full = super::expand::Expander::new(&lexer, &env, word, false)
            .run()
            .map(|l| l.text);
        assert_eq!(lexer.process_word(word, &env), full, "{word:?}");
    }
}
