//! `rbuild run IMAGE [CMD...]`: the image's ENTRYPOINT + CMD (or the given command) in the
//! sandbox over a throwaway view of the image, as `docker run --rm` would, without an engine.

use std::path::Path;

use anyhow::{anyhow, Result};
use rbuild_sandbox::{Cancel, OutputSink, StepSpec, Stream};
use rbuild_worker::LocalWorker;

use crate::args::RunArgs;
use crate::build::strings;

struct Passthrough;

impl OutputSink for Passthrough {
    fn line(&mut self, stream: Stream, line: &[u8]) {
        use std::io::Write;
        let _ = match stream {
            Stream::Stdout => {
                let mut out = std::io::stdout().lock();
                out.write_all(line).and_then(|()| out.write_all(b"\n"))
            }
            Stream::Stderr => {
                let mut err = std::io::stderr().lock();
                err.write_all(line).and_then(|()| err.write_all(b"\n"))
            }
        };
    }
}

/// Runs the image; returns its exit code.
pub fn run(root: &Path, args: &RunArgs) -> Result<u8> {
    // As `docker run`: an image missing from the store is pulled first.
    crate::registry::ensure_images(
        root,
        &std::collections::BTreeSet::from([args.image.clone()]),
        crate::registry::PullPolicy::Missing,
        &rbuild_frontend::stages::Platform::host(),
        &[],
        false,
    )?;
    let worker = LocalWorker::open(root, Default::default(), Default::default())
        .map_err(|e| anyhow!("{e}"))?;
    let image = worker
        .resolve_image(&args.image)
        .map_err(|e| anyhow!("{e}"))?;
    let top = rbuild_worker::image::unpack(
        &worker.snapshots,
        &worker.content,
        root,
        &args.image,
        &image,
    )
    .map_err(|e| anyhow!("{e}"))?;
    let doc: serde_json::Value = serde_json::from_slice(&image.config)?;
    let runtime = &doc["config"];
    let mut argv = strings(&runtime["Entrypoint"]);
    if args.command.is_empty() {
        argv.extend(strings(&runtime["Cmd"]));
    } else {
        argv.extend(args.command.iter().cloned());
    }
    if argv.is_empty() {
        anyhow::bail!("`{}` has no ENTRYPOINT or CMD: give a command", args.image);
    }
    let view = worker
        .snapshots
        .prepare(top.as_ref())
        .map_err(|e| anyhow!("{e}"))?;
    let mut spec = StepSpec::new(view.root(), argv);
    spec.env = strings(&runtime["Env"]);
    spec.env.extend(args.env.iter().cloned());
    spec.cwd = runtime["WorkingDir"]
        .as_str()
        .filter(|w| !w.is_empty())
        .unwrap_or("/")
        .to_string();
    let user = args
        .user
        .clone()
        .unwrap_or_else(|| runtime["User"].as_str().unwrap_or_default().to_string());
    spec.user = rbuild_sandbox::resolve_user_in_rootfs(view.root(), &user)?;
    spec.network = rbuild_sandbox::NetworkMode::parse(&args.network).ok_or_else(|| {
        anyhow!(
            "Invalid `--network {}`: expected default, none or host",
            args.network
        )
    })?;
    let cancel = Cancel::new()?;
    let on_signal = cancel.clone();
    // Ctrl-C stops the container (and only then rbuild), as `docker run` does.
    let _ = std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build();
            if let Ok(runtime) = runtime {
                runtime.block_on(async {
                    let _ = tokio::signal::ctrl_c().await;
                });
                on_signal.cancel();
            }
        });
    let outcome = worker.sandbox().run(&spec, &mut Passthrough, &cancel);
    drop(view);
    match outcome {
        Ok(outcome) => Ok(outcome.status.code().clamp(0, 255) as u8),
        Err(rbuild_sandbox::SandboxError::Cancelled) => Ok(crate::build::INTERRUPTED),
        Err(e) => Err(e.into()),
    }
}
