//! `rbuild`: the command-line entry point.
//!
//! Arguments are parsed twice, ripgrep-style: clap gives raw flags ([`args`]), then each command
//! validates them into the objects it needs. Libraries never print; this crate owns stdout
//! (data) and stderr (progress and diagnostics), and picks the exit code: 0 success, 1 a user
//! error (bad Dockerfile, bad flag value, failed step), 2 a usage error (clap), 130 a build
//! stopped by Ctrl-C/SIGTERM; a `rbuild run` exits with its command's code.

mod args;
mod build;
mod cache;
mod context;
mod debug;
mod images;
mod registry;
mod render;
mod run;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = args::Cli::parse_from(args::with_default_subcommand(std::env::args_os().collect()));
    if matches!(cli.command, args::Command::Build(_) | args::Command::Run(_)) {
        // Before any thread exists: every mount of this process then dies with it.
        if let Err(e) = rbuild_sandbox::enter_private_mount_namespace() {
            render::error(&anyhow::Error::new(e));
            return ExitCode::FAILURE;
        }
    }
    let result = match cli.command {
        args::Command::Debug(cmd) => debug::run(cmd).map(|()| 0),
        args::Command::Load { input } => images::load(&cli.root, &input).map(|()| 0),
        args::Command::Save { name, output } => images::save(&cli.root, &name, &output).map(|()| 0),
        args::Command::Pull {
            name,
            platform,
            insecure_registries,
        } => registry::pull_command(&cli.root, &name, platform.as_deref(), &insecure_registries)
            .map(|()| 0),
        args::Command::Push {
            name,
            insecure_registries,
        } => registry::push_command(&cli.root, &name, &insecure_registries).map(|()| 0),
        args::Command::Tag { source, target } => {
            images::tag(&cli.root, &source, &target).map(|()| 0)
        }
        args::Command::Images => images::list(&cli.root).map(|()| 0),
        args::Command::Rmi { names } => images::remove(&cli.root, &names).map(|()| 0),
        args::Command::Build(build_args) => build::run(&cli.root, &build_args),
        args::Command::Run(run_args) => run::run(&cli.root, &run_args),
        args::Command::Du => cache::du(&cli.root).map(|()| 0),
        args::Command::Prune(prune_args) => cache::prune(&cli.root, &prune_args).map(|()| 0),
    };
    match result {
        Ok(code) => ExitCode::from(code),
        Err(err) => {
            if let Some(reported) = err.downcast_ref::<build::Reported>() {
                eprintln!("error: {reported}");
                return ExitCode::from(if reported.interrupted {
                    build::INTERRUPTED
                } else {
                    1
                });
            }
            render::error(&err);
            ExitCode::FAILURE
        }
    }
}
