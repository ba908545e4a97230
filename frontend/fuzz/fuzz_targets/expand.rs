//! Fuzzes the shell-word expander in every mode on arbitrary words.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rbuild_frontend::shell::Lexer;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else { return };
    let word = String::from_utf8_lossy(rest);
    let mut lexer = Lexer::new(if mode & 1 == 0 { '\\' } else { '`' });
    lexer.raw_quotes = mode & 2 != 0;
    lexer.raw_escapes = mode & 4 != 0;
    lexer.skip_unset_env = mode & 8 != 0;
    lexer.skip_process_quotes = mode & 16 != 0;
    let env: Vec<(String, String)> = vec![
        ("A".into(), "a b  c".into()),
        ("EMPTY".into(), String::new()),
        ("PATH".into(), "/usr/bin:/bin".into()),
        ("U".into(), "한국어*?".into()),
    ];
    let _ = lexer.process_word(&word, &env);
    let _ = lexer.process_words(&word, &env);
    let _ = lexer.process_word_with_matches(&word, &env);
});
