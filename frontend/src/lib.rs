//! rbuild-frontend: the Dockerfile, from bytes to typed, expanded build stages.
//!
//! The frontend is pure: it does no I/O, starts no process and never touches the network. The
//! CLI reads files and hands their text in; everything here is a function of its inputs.
//!
//! Layers, each with one job:
//! - [`parser`]: the line-level grammar BuildKit's parser implements (directives, continuations,
//!   comments, heredocs, flags, JSON vs shell form) producing an [`parser::Ast`] with line spans,
//!   plus [`parser::dump`], the BuildKit AST dump used by the conformance corpus.
//! - [`shell`]: the shell-word lexer (`$v`, `${v:-x}`, quotes, escapes, word splitting) that
//!   BuildKit applies to instruction arguments.
//! - [`instructions`]: typed instructions built from AST nodes, flags checked per instruction.
//! - [`stages`]: stage splitting, ARG/ENV scoping and expansion, stage references and the set of
//!   stages a target needs.
//! - [`dockerignore`]: `.dockerignore` rules with moby's matching semantics.
//! - [`diagnostic`]: errors with file, line and column, rendered by the CLI.

pub mod diagnostic;
pub mod dockerignore;
pub mod instructions;
pub mod lower;
pub mod parser;
pub mod shell;
pub mod stages;
