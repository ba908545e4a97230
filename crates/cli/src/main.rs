//! `rbuild`: the command-line entry point.
//!
//! Arguments are parsed twice, ripgrep-style: clap gives raw flags ([`args`]), then each command
//! validates them into the objects it needs. Libraries never print; this crate owns stdout
//! (data) and stderr (diagnostics), and picks the exit code: 0 success, 1 a user error (bad
//! Dockerfile, bad flag value), 2 a usage error (clap), 101 never (no panics by design).

mod args;
mod context;
mod debug;
mod images;
mod render;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = args::Cli::parse();
    let result = match cli.command {
        args::Command::Debug(cmd) => debug::run(cmd),
        args::Command::Load { input } => images::load(&cli.root, &input),
        args::Command::Save { name, output } => images::save(&cli.root, &name, &output),
        args::Command::Images => images::list(&cli.root),
        args::Command::Rmi { names } => images::remove(&cli.root, &names),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            render::error(&err);
            ExitCode::FAILURE
        }
    }
}
