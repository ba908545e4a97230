//! Raw command-line flags (clap). Validation happens in the command modules.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// rbuild: a daemonless Dockerfile build engine.
#[derive(Debug, Parser)]
#[command(name = "rbuild", version, about)]
pub struct Cli {
    /// State directory: content store, snapshots, images, cache.
    #[arg(
        long,
        global = true,
        env = "RBUILD_ROOT",
        default_value = "/var/lib/rbuild",
        value_name = "DIR"
    )]
    pub root: PathBuf,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Import images from an OCI-layout or docker-archive tarball into the local store.
    Load {
        /// The tarball (`-` for stdin).
        #[arg(short = 'i', long = "input", value_name = "FILE")]
        input: PathBuf,
    },
    /// Write an image from the local store as a tarball (OCI layout + docker load archive).
    Save {
        /// The image name.
        name: String,
        /// Where to write it (`-` for stdout).
        #[arg(short = 'o', long = "output", value_name = "FILE")]
        output: PathBuf,
    },
    /// List the images of the local store.
    Images,
    /// Remove image names from the local store (blobs stay until pruned).
    Rmi {
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// Inspect how rbuild reads a Dockerfile.
    #[command(subcommand)]
    Debug(DebugCommand),
}

#[derive(Debug, Subcommand)]
pub enum DebugCommand {
    /// Print the parsed Dockerfile in BuildKit's AST dump format.
    DumpAst {
        /// The Dockerfile (`-` for stdin).
        file: PathBuf,
    },
    /// Print the build stages, with ARG/ENV expanded, as JSON.
    Stages(StagesArgs),
    /// List the files of a build context that .dockerignore lets through.
    Context(ContextArgs),
}

#[derive(Debug, Args)]
pub struct ContextArgs {
    /// The Dockerfile whose `<Dockerfile>.dockerignore` takes precedence (default: CONTEXT/Dockerfile).
    #[arg(short = 'f', long = "file")]
    pub file: Option<PathBuf>,
    /// The build context directory.
    pub context: PathBuf,
}

#[derive(Debug, Args)]
pub struct StagesArgs {
    /// Set a build-time variable (`KEY=VALUE`, or `KEY` to take it from the environment).
    #[arg(long = "build-arg", value_name = "KEY[=VALUE]")]
    pub build_args: Vec<String>,
    /// The stage to build (default: the last one).
    #[arg(long)]
    pub target: Option<String>,
    /// Target platform (`os/arch[/variant]`, default: this machine's).
    #[arg(long)]
    pub platform: Option<String>,
    /// The Dockerfile (`-` for stdin).
    pub file: PathBuf,
}
