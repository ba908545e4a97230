//! Raw command-line flags (clap). Validation happens in the command modules.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// rbuild: a daemonless Dockerfile build engine.
///
/// `rbuild [FLAGS] CONTEXT` is short for `rbuild build [FLAGS] CONTEXT`.
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

/// Subcommand names: a command line naming none of them is a build (`rbuild [FLAGS] CONTEXT`).
const SUBCOMMANDS: [&str; 14] = [
    "build", "run", "load", "save", "pull", "push", "tag", "images", "rmi", "du", "prune", "debug",
    "help", "--help",
];

/// The command line with `build` inserted when it names no subcommand (and is not a bare
/// `--version`/`-h`), so `rbuild -t app .` means `rbuild build -t app .`.
pub fn with_default_subcommand(args: Vec<std::ffi::OsString>) -> Vec<std::ffi::OsString> {
    let names_one = args.iter().skip(1).any(|a| {
        let a = a.to_string_lossy();
        SUBCOMMANDS.contains(&a.as_ref()) || a == "-h" || a == "-V" || a == "--version"
    });
    if names_one || args.len() < 2 {
        return args;
    }
    let mut out = Vec::with_capacity(args.len() + 1);
    let mut rest = args.into_iter();
    out.extend(rest.next());
    out.push("build".into());
    out.extend(rest);
    out
}

/// `rbuild build`: flags named as `docker buildx build` names them.
#[derive(Debug, Args, Default, Clone)]
pub struct BuildArgs {
    /// The build context: a directory, or `-` for a tar on stdin.
    #[arg(value_name = "CONTEXT")]
    pub context: Option<PathBuf>,
    /// Name (and tag) the image in the local store; repeatable.
    #[arg(short = 't', long = "tag", value_name = "NAME")]
    pub tags: Vec<String>,
    /// The Dockerfile (default: CONTEXT/Dockerfile; `-` for stdin).
    #[arg(short = 'f', long = "file", value_name = "PATH")]
    pub file: Option<PathBuf>,
    /// Set a build-time variable (`KEY=VALUE`, or `KEY` to take it from the environment).
    #[arg(long = "build-arg", value_name = "KEY[=VALUE]")]
    pub build_args: Vec<String>,
    /// The stage to build (default: the last one).
    #[arg(long)]
    pub target: Option<String>,
    /// Run every step, refreshing the cache.
    #[arg(long)]
    pub no_cache: bool,
    /// Run every step of these stages (repeatable).
    #[arg(long = "no-cache-filter", value_name = "STAGE")]
    pub no_cache_filter: Vec<String>,
    /// Outputs: `type=oci|docker|tar|local,dest=...` (repeatable).
    #[arg(short = 'o', long = "output", value_name = "SPEC")]
    pub outputs: Vec<String>,
    /// `auto`, `tty`, `plain`, `rawjson` or `quiet`.
    #[arg(long, default_value = "auto")]
    pub progress: String,
    /// Write the image ID (the config digest) to this file.
    #[arg(long, value_name = "FILE")]
    pub iidfile: Option<PathBuf>,
    /// Write JSON with the image and config digests to this file.
    #[arg(long = "metadata-file", value_name = "FILE")]
    pub metadata_file: Option<PathBuf>,
    /// Network for RUN steps: `default` (the host's), `none`, `host`.
    #[arg(long, default_value = "default")]
    pub network: String,
    /// Named build contexts for FROM / COPY --from / RUN --mount from=: `NAME=DIR`,
    /// `NAME=docker-image://REF` or `NAME=oci-layout://PATH[:TAG|@DIGEST]` (repeatable).
    #[arg(long = "build-context", value_name = "NAME=VALUE")]
    pub build_contexts: Vec<String>,
    /// Target platform (only the host's: rbuild does not emulate).
    #[arg(long)]
    pub platform: Option<String>,
    /// Set a label on the image (repeatable).
    #[arg(long = "label", value_name = "KEY=VALUE")]
    pub labels: Vec<String>,
    /// A secret for `RUN --mount=type=secret`: `id=ID,src=FILE` (or `env=VAR`).
    #[arg(long = "secret", value_name = "id=ID,src=FILE")]
    pub secrets: Vec<String>,
    /// An ssh agent socket for `RUN --mount=type=ssh`: `default` or `ID=SOCKET`.
    #[arg(long = "ssh", value_name = "ID[=SOCKET]")]
    pub ssh: Vec<String>,
    /// Print only the image ID.
    #[arg(short = 'q', long)]
    pub quiet: bool,
    /// Steps run at once (default: RUN steps unbounded, rbuild's own copying and hashing at
    /// most one per core).
    #[arg(long)]
    pub jobs: Option<usize>,
    /// `SOURCE_DATE_EPOCH`-style clamp (default) or `now` for the current time.
    #[arg(long, value_name = "now")]
    pub timestamp: Option<String>,
    /// Memory limit of each RUN step (bytes, or with k/m/g).
    #[arg(long)]
    pub memory: Option<String>,
    /// CPU shares (relative weight) of each RUN step.
    #[arg(long = "cpu-shares")]
    pub cpu_shares: Option<u64>,
    /// CPU quota of each RUN step, microseconds per `--cpu-period`.
    #[arg(long = "cpu-quota")]
    pub cpu_quota: Option<u64>,
    /// CPU period for `--cpu-quota` (default 100000).
    #[arg(long = "cpu-period")]
    pub cpu_period: Option<u64>,
    /// Maximum number of processes of each RUN step.
    #[arg(long = "pids-limit")]
    pub pids_limit: Option<u64>,
    /// Load the image into the Docker-compatible engine `DOCKER_HOST` names (= `-o type=docker`).
    #[arg(long)]
    pub load: bool,
    /// Push the image to the registry each `-t` names (= `-o type=image,push=true`).
    #[arg(long)]
    pub push: bool,
    /// Base images: `--pull` resolves every tag in its registry; `--pull=false` never contacts
    /// one. Without the flag, images missing from the local store are pulled.
    #[arg(long, value_name = "BOOL", num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub pull: Option<String>,
    /// A registry (`HOST[:PORT]`) reached over plain HTTP (repeatable; loopback ones always are).
    #[arg(long = "insecure-registry", value_name = "HOST[:PORT]")]
    pub insecure_registries: Vec<String>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Build an image from a Dockerfile.
    Build(Box<BuildArgs>),
    /// Run an image's command (or CMD...) in the sandbox, removing the container afterwards.
    Run(RunArgs),
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
    /// Pull an image from its registry into the local store.
    Pull {
        /// The image reference (`busybox`, `127.0.0.1:5000/app:1`, `name@sha256:...`).
        name: String,
        /// The platform to choose in a multi-platform image (default: this machine's).
        #[arg(long)]
        platform: Option<String>,
        /// A registry reached over plain HTTP (repeatable).
        #[arg(long = "insecure-registry", value_name = "HOST[:PORT]")]
        insecure_registries: Vec<String>,
    },
    /// Push an image of the local store to the registry its name says.
    Push {
        name: String,
        /// A registry reached over plain HTTP (repeatable).
        #[arg(long = "insecure-registry", value_name = "HOST[:PORT]")]
        insecure_registries: Vec<String>,
    },
    /// Give a stored image another name.
    Tag { source: String, target: String },
    /// List the images of the local store.
    Images,
    /// Remove image names from the local store (blobs stay until pruned).
    Rmi {
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// Show the disk usage of the state root (build cache, blobs, cache mounts).
    Du,
    /// Free build cache; never deletes what a running build uses (it waits for running builds).
    Prune(PruneArgs),
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
    /// Print the build graph (the ops the target needs).
    Graph(GraphArgs),
}

#[derive(Debug, Args)]
pub struct PruneArgs {
    /// Remove the whole build cache, cache mounts included (images stay).
    #[arg(short = 'a', long)]
    pub all: bool,
    /// Keep at most this much snapshot storage (bytes or k/m/g), removing the least recently
    /// used cache entries first.
    #[arg(long = "keep-storage", value_name = "SIZE")]
    pub keep_storage: Option<String>,
    /// `until=DURATION` (Go syntax, e.g. `24h`): remove cache entries no build has used for
    /// longer than that.
    #[arg(long, value_name = "until=DURATION")]
    pub filter: Vec<String>,
    /// Accepted for docker compatibility (rbuild never asks).
    #[arg(short = 'f', long)]
    pub force: bool,
}

#[derive(Debug, Args)]
pub struct GraphArgs {
    /// `dot` or `json`.
    #[arg(long, default_value = "dot")]
    pub format: String,
    #[arg(long = "build-arg", value_name = "KEY[=VALUE]")]
    pub build_args: Vec<String>,
    #[arg(long)]
    pub target: Option<String>,
    /// The Dockerfile (`-` for stdin).
    pub file: PathBuf,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// Network: `default`, `none` or `host`.
    #[arg(long, default_value = "default")]
    pub network: String,
    /// Run as this user (default: the image's USER).
    #[arg(short = 'u', long)]
    pub user: Option<String>,
    /// Extra environment (`KEY=VALUE`, repeatable).
    #[arg(short = 'e', long = "env")]
    pub env: Vec<String>,
    /// Accepted for docker compatibility: the container is always removed.
    #[arg(long)]
    pub rm: bool,
    /// The image in the local store.
    pub image: String,
    /// The command (default: the image's ENTRYPOINT + CMD).
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub command: Vec<String>,
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
