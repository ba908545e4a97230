//! Conformance runner over a corpus root laid out like `shared/conformance`:
//! `dockerfile-parser/` (BuildKit's parser testfiles, negative cases and the line test),
//! `shell-envvar/` and `shell-words/` (BuildKit's expansion vectors) and `real-dockerfiles/`.
//!
//! The root comes from `RBUILD_CONFORMANCE`, else `<repo>/../shared/conformance`. A missing root
//! fails; a corpus folder missing from an existing root is skipped with a printed note. Each
//! test prints how many cases ran and reports every failing case, not just the first.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use rbuild_frontend::instructions::parse_instruction;
use rbuild_frontend::parser::{dump, parse};
use rbuild_frontend::shell::Lexer;

fn root() -> PathBuf {
    let root = match std::env::var_os("RBUILD_CONFORMANCE") {
        Some(dir) => PathBuf::from(dir),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/conformance"),
    };
    assert!(
        root.is_dir(),
        "conformance root {} does not exist: set RBUILD_CONFORMANCE to a corpus root",
        root.display()
    );
    root
}

/// The corpus folder, or None (with a note) when this root does not have it.
fn corpus(name: &str) -> Option<PathBuf> {
    let dir = root().join(name);
    if dir.is_dir() {
        Some(dir)
    } else {
        println!("{name}: absent from {}, skipped", root().display());
        None
    }
}

fn case_dirs(dir: &Path) -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    dirs
}

fn read_lossy(path: &Path) -> String {
    let bytes = fs::read(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    String::from_utf8_lossy(&bytes).into_owned()
}

fn finish(corpus: &str, ran: usize, failures: Vec<String>) {
    println!(
        "{corpus}: {} passed, {} failed",
        ran - failures.len(),
        failures.len()
    );
    assert!(
        failures.is_empty(),
        "{corpus} failures:\n{}",
        failures.join("\n\n")
    );
    assert!(ran > 0, "{corpus}: no case ran");
}

#[test]
fn dockerfile_parser_positive() {
    let Some(dir) = corpus("dockerfile-parser") else {
        return;
    };
    let cases = dir.join("testfiles");
    let mut failures = Vec::new();
    let mut ran = 0;
    for case in case_dirs(&cases) {
        ran += 1;
        let name = case
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let expected = read_lossy(&case.join("result"));
        match parse(&read_lossy(&case.join("Dockerfile"))) {
            Ok(ast) => {
                let got = dump(&ast);
                if got != expected {
                    failures.push(format!(
                        "{name}: dump differs\n--- expected\n{expected}--- got\n{got}"
                    ));
                }
            }
            Err(e) => failures.push(format!("{name}: parse failed: {e} at {:?}", e.position)),
        }
    }
    finish("dockerfile-parser/testfiles", ran, failures);
}

#[test]
fn dockerfile_parser_negative() {
    let Some(dir) = corpus("dockerfile-parser") else {
        return;
    };
    let mut failures = Vec::new();
    let mut ran = 0;
    for case in case_dirs(&dir.join("testfiles-negative")) {
        ran += 1;
        let source = read_lossy(&case.join("Dockerfile"));
        // A negative case may fail in the parser or when its instructions are typed.
        let rejected = match parse(&source) {
            Err(_) => true,
            Ok(ast) => ast.children.iter().any(|n| parse_instruction(n).is_err()),
        };
        if !rejected {
            failures.push(format!("{}: accepted, must fail", case.display()));
        }
    }
    finish("dockerfile-parser/testfiles-negative", ran, failures);
}

#[test]
fn dockerfile_parser_line_numbers() {
    let Some(dir) = corpus("dockerfile-parser") else {
        return;
    };
    let file = dir.join("testfile-line/Dockerfile");
    if !file.is_file() {
        println!("dockerfile-parser/testfile-line: absent, skipped");
        return;
    }
    let ast = parse(&read_lossy(&file)).expect("testfile-line parses");
    let spans: Vec<(usize, usize)> = ast
        .children
        .iter()
        .map(|n| (n.start_line, n.end_line))
        .collect();
    let root = (spans.first().map(|s| s.0), spans.last().map(|s| s.1));
    assert_eq!(root, (Some(5), Some(31)), "root span");
    assert_eq!(spans, [(5, 5), (11, 12), (17, 31)], "instruction spans");
    finish("dockerfile-parser/testfile-line", 1, Vec::new());
}

#[test]
fn shell_envvar() {
    let Some(dir) = corpus("shell-envvar") else {
        return;
    };
    let text = read_lossy(&dir.join("envVarTest"));
    let env: Vec<(String, String)> = [
        ("PWD", "/home"),
        ("SHELL", "bash"),
        ("KOREAN", "한국어"),
        ("NULL", ""),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let lexer = Lexer::new('\\');
    let mut failures = Vec::new();
    let mut ran = 0;
    for (number, line) in text.lines().enumerate() {
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let fields: Vec<&str> = line.split('|').map(str::trim).collect();
        let [tag, input, expected] = fields.as_slice() else {
            panic!("envVarTest line {}: not 3 fields: {line}", number + 1);
        };
        match *tag {
            "W" => continue,
            "A" | "U" => {}
            other => panic!("envVarTest line {}: bad platform tag {other}", number + 1),
        }
        ran += 1;
        let got = lexer.process_word(input, &env);
        let ok = match (&got, *expected) {
            (Err(_), "error") => true,
            (Ok(value), expected) => expected != "error" && value == expected,
            (Err(_), _) => false,
        };
        if !ok {
            failures.push(format!(
                "line {}: `{input}` expected `{expected}`, got {got:?}",
                number + 1
            ));
        }
    }
    finish("shell-envvar", ran, failures);
}

#[test]
fn shell_words() {
    let Some(dir) = corpus("shell-words") else {
        return;
    };
    let text = read_lossy(&dir.join("wordsTest"));
    let mut env: BTreeMap<String, String> = BTreeMap::new();
    let lexer = Lexer::new('\\');
    let mut failures = Vec::new();
    let mut ran = 0;
    for (number, line) in text.lines().enumerate() {
        if line.starts_with('#') {
            continue;
        }
        if let Some(assignment) = line.strip_prefix("ENV ") {
            let (k, v) = assignment
                .trim_start()
                .split_once('=')
                .expect("ENV line has =");
            env.insert(k.to_string(), v.to_string());
            continue;
        }
        let (input, expected) = line
            .split_once('|')
            .unwrap_or_else(|| panic!("wordsTest line {}: no `|`", number + 1));
        let input = input.trim();
        let expected: Vec<&str> = expected.trim_start_matches(' ').split(',').collect();
        ran += 1;
        let got = lexer.process_words(input, &env);
        let ok = match &got {
            Err(_) => expected == ["error"],
            Ok(words) => words
                .iter()
                .map(String::as_str)
                .eq(expected.iter().copied()),
        };
        if !ok {
            failures.push(format!(
                "line {}: `{input}` expected {expected:?}, got {got:?}",
                number + 1
            ));
        }
    }
    finish("shell-words", ran, failures);
}

#[test]
fn real_dockerfiles() {
    let Some(dir) = corpus("real-dockerfiles") else {
        return;
    };
    let mut files: Vec<PathBuf> = fs::read_dir(&dir)
        .expect("list real-dockerfiles")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "Dockerfile"))
        .collect();
    files.sort();
    let mut failures = Vec::new();
    for file in &files {
        let source = read_lossy(file);
        let ast = match parse(&source) {
            Ok(ast) => ast,
            Err(e) => {
                failures.push(format!("{}: {e} at {:?}", file.display(), e.position));
                continue;
            }
        };
        for node in &ast.children {
            if let Err(e) = parse_instruction(node) {
                failures.push(format!("{}: {e} at {:?}", file.display(), e.position));
            }
        }
        // The dump must be stable: the same input dumps the same way twice.
        let again = parse(&source).map(|a| dump(&a));
        if again.as_deref() != Ok(dump(&ast).as_str()) {
            failures.push(format!("{}: unstable dump", file.display()));
        }
    }
    finish("real-dockerfiles", files.len(), failures);
}
