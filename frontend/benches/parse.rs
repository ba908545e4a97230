//! Throughput of the frontend on the real-world corpus: parse, type every instruction and
//! resolve the stages (expansion included) of every file, per iteration.
//!
//! Corpus root: `RBUILD_CONFORMANCE` or `<repo>/../shared/conformance`. Run with
//! `scripts/bench-frontend.sh`, which also times `wc -l` on the same bytes.

use std::path::{Path, PathBuf};

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use rbuild_frontend::instructions::parse_instruction;
use rbuild_frontend::parser::parse;
use rbuild_frontend::stages::{resolve, BuildOptions};

fn corpus() -> Vec<String> {
    let root = std::env::var_os("RBUILD_CONFORMANCE")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/conformance"));
    let dir = root.join("real-dockerfiles");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "Dockerfile"))
        .collect();
    files.sort();
    files
        .iter()
        .map(|f| String::from_utf8_lossy(&std::fs::read(f).expect("read corpus file")).into_owned())
        .collect()
}

fn frontend(c: &mut Criterion) {
    let files = corpus();
    let bytes: usize = files.iter().map(String::len).sum();
    let options = BuildOptions::default();
    let mut group = c.benchmark_group("real-dockerfiles");
    group.throughput(Throughput::Bytes(bytes as u64));
    group.bench_function("parse", |b| {
        b.iter(|| {
            for f in &files {
                black_box(parse(black_box(f)).ok());
            }
        })
    });
    group.bench_function("parse+type+expand", |b| {
        b.iter(|| {
            for f in &files {
                if let Ok(ast) = parse(black_box(f)) {
                    for node in &ast.children {
                        black_box(parse_instruction(node).ok());
                    }
                    black_box(resolve(&ast, &options).ok());
                }
            }
        })
    });
    group.finish();
}

criterion_group!(benches, frontend);
criterion_main!(benches);
