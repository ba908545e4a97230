use super::*;

fn dump_of(src: &str) -> String {
    dump(&parse(src).expect("parses"))
}

#[test]
fn basic_instructions() {
    assert_eq!(
        dump_of("FROM busybox AS b\nRUN echo hi\n"),
        "(from \"busybox\" \"AS\" \"b\")\n(run \"echo hi\")\n"
    );
}

#[test]
fn crlf_bom_no_trailing_newline_and_tabs() {
    assert_eq!(
        dump_of("\u{feff}FROM a\r\nRUN\tb \\\r\n\tc"),
        "(from \"a\")\n(run \"b \\tc\")\n"
    );
}

#[test]
fn comments_and_blank_lines_inside_continuation() {
    let ast = parse("FROM a\nRUN x \\\n# comment\n\n  && y\nCMD z\n").expect("parses");
    assert_eq!(ast.children[1].args, ["x   && y"]);
    assert_eq!(
        (ast.children[1].start_line, ast.children[1].end_line),
        (2, 5)
    );
    assert_eq!(ast.warnings.len(), 1);
}

#[test]
fn continuation_at_end_of_file() {
    assert_eq!(dump_of("FROM a\nRUN b \\"), "(from \"a\")\n(run \"b\")\n");
}

#[test]
fn escape_directive_and_windows_paths() {
    let ast = parse("# escape=`\nFROM a\nCOPY c:\\src `\n  d:\\dst\n").expect("parses");
    assert_eq!(ast.escape(), '`');
    assert_eq!(ast.children[1].args, ["c:\\src", "d:\\dst"]);
}

#[test]
fn directive_after_comment_is_a_comment() {
    let ast = parse("# hello\n# escape=`\nFROM a\nRUN b \\\n c\n").expect("parses");
    assert_eq!(ast.escape(), '\\');
    assert_eq!(ast.children[1].args, ["b  c"]);
}

#[test]
fn repeated_directive_is_an_error() {
    let err = parse("# syntax=a\n# syntax=b\nFROM x\n").expect_err("fails");
    assert_eq!(err.position.line, 2);
}

#[test]
fn heredocs_are_read_and_not_dumped() {
    let src = "FROM a\nRUN <<EOF cat >/x <<-'END'\necho $HOME\nEOF\n\tbody\n\tEND\nCMD c\n";
    let ast = parse(src).expect("parses");
    let run = &ast.children[1];
    assert_eq!(run.heredocs.len(), 2);
    assert_eq!(run.heredocs[0].content, "echo $HOME\n");
    assert!(run.heredocs[0].expand);
    assert_eq!(run.heredocs[1].content, "\tbody\n");
    assert!(!run.heredocs[1].expand);
    assert_eq!(run.end_line, 6);
    assert_eq!(
        dump(&ast).lines().nth(1),
        Some("(run \"<<EOF cat >/x <<-'END'\")")
    );
    assert_eq!(ast.children[2].keyword, "CMD");
}

#[test]
fn unterminated_heredoc_is_an_error() {
    let err = parse("FROM a\nRUN <<EOF\nx\n").expect_err("fails");
    assert_eq!(err.position, Position { line: 2, column: 5 });
}

#[test]
fn json_with_non_string_is_an_error_with_position() {
    let err = parse("FROM a\nCMD [\"a\", 1]\n").expect_err("fails");
    assert_eq!(err.position, Position { line: 2, column: 5 });
}

#[test]
fn shell_test_brackets_are_not_json() {
    assert_eq!(
        dump_of("FROM a\nRUN [ -d /x ] && echo y\n").lines().nth(1),
        Some("(run \"[ -d /x ] && echo y\")")
    );
}

#[test]
fn onbuild_nests_and_unknown_prints_empty() {
    assert_eq!(
        dump_of("FROM a\nONBUILD RUN echo test\nONBUILD\nFOO bar\n"),
        "(from \"a\")\n(onbuild (run \"echo test\"))\n(onbuild)\n(foo \"\")\n"
    );
}

#[test]
fn deep_onbuild_nesting_is_refused_without_overflow() {
    let src = format!("FROM a\n{}RUN x\n", "ONBUILD ".repeat(10_000));
    assert!(parse(&src).is_err());
}

#[test]
fn empty_and_comment_only_files_fail() {
    assert!(parse("").is_err());
    assert!(parse("# just a comment\n\n").is_err());
}

#[test]
fn flag_positions_map_to_columns() {
    let ast = parse("FROM a\nCOPY \\\n   --bogus=1 x y\n").expect("parses");
    let d = ast.children[1].diagnostic_on_flag("unknown flag", 0);
    assert_eq!(d.position, Position { line: 3, column: 4 });
    assert_eq!(d.len, 9);
}

#[test]
fn keywords_lowercase_like_go() {
    assert_eq!(
        dump_of("FROM a\n\u{130}\nFOO\u{3a3}\n")
            .lines()
            .skip(1)
            .collect::<Vec<_>>(),
        ["(i \"\")", "(foo\u{3c3} \"\")"]
    );
}

#[test]
fn heredoc_operator_may_be_followed_by_blanks() {
    let ast = parse("FROM a\nRUN cat << EOF\nbody\nEOF\nCMD x\n").expect("parses");
    assert_eq!(ast.children.len(), 3);
    assert_eq!(ast.children[1].heredocs[0].content, "body\n");
}
