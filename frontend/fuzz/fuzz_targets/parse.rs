//! Fuzzes the whole frontend on arbitrary bytes: parse, dump, type every instruction, resolve
//! the stages. Any panic, overflow or hang is a bug; errors are fine.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rbuild_frontend::instructions::parse_instruction;
use rbuild_frontend::parser::{dump, parse};
use rbuild_frontend::stages::{resolve, BuildOptions};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let Ok(ast) = parse(&text) else { return };
    let dumped = dump(&ast);
    assert!(dumped.lines().count() == ast.children.len());
    for node in &ast.children {
        let _ = parse_instruction(node);
    }
    let _ = resolve(&ast, &BuildOptions::default());
});
