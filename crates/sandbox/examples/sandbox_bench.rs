//! Times a `true` step end to end: overlay view mount, namespaces, mounts, exec, wait, unmount.
//!
//! ```text
//! sandbox_bench --make-rootfs DIR             write the busybox rootfs used by the peers' bundle
//! sandbox_bench [--runs N] [--network none|default] [--rootfs DIR]
//! ```
//! Prints one line: `median_ms=… p10_ms=… p90_ms=… runs=… network=…`. Run as root. Used by
//! scripts/bench-sandbox.sh, which times `runc run` and `crun run` on the same rootfs.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use rbuild_sandbox::{Cancel, Discard, NetworkMode, Sandbox, StepSpec};
use rbuild_snapshotter::snapshots::{SnapshotId, Snapshotter};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let value = |flag: &str| {
        args.iter()
            .position(|a| a == flag)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    if let Some(dir) = value("--make-rootfs") {
        std::fs::create_dir_all(&dir).expect("mkdir rootfs");
        rbuild_test::busybox_rootfs(&PathBuf::from(dir));
        return;
    }
    let runs: usize = value("--runs").map_or(200, |r| r.parse().expect("--runs N"));
    let network = value("--network").unwrap_or_else(|| "none".into());
    let mode = NetworkMode::parse(&network).expect("--network none|default|host");

    let state = tempfile::Builder::new()
        .prefix("rbuild-sandbox-bench-")
        .tempdir()
        .expect("state dir");
    let snapshots = Snapshotter::open(&state.path().join("state")).expect("snapshotter");
    let base_dir = state.path().join("state/base");
    std::fs::create_dir_all(&base_dir).expect("mkdir");
    match value("--rootfs") {
        Some(dir) => {
            let status = std::process::Command::new("cp")
                .args(["-a", &format!("{dir}/."), &base_dir.to_string_lossy()])
                .status()
                .expect("cp");
            assert!(status.success(), "cannot copy the rootfs {dir}");
        }
        None => rbuild_test::busybox_rootfs(&base_dir),
    }
    let base = SnapshotId::new("base").expect("id");
    snapshots
        .commit_dir(&base_dir, &base, None)
        .expect("commit");
    let sandbox = Sandbox::new(state.path().join("run")).expect("sandbox");
    let cancel = Cancel::new().expect("cancel");

    let mut times = Vec::with_capacity(runs);
    for i in 0..runs + 5 {
        let started = Instant::now();
        let view = snapshots.prepare(Some(&base)).expect("view");
        let mut spec = StepSpec::new(view.root(), vec!["true".into()]);
        spec.network = mode;
        let outcome = sandbox.run(&spec, &mut Discard, &cancel).expect("run");
        assert!(outcome.success(), "true failed: {outcome:?}");
        drop(view); // unmount and remove the view
        if i >= 5 {
            times.push(started.elapsed());
        }
    }
    times.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let at = |q: f64| times[((times.len() - 1) as f64 * q).round() as usize];
    println!(
        "median_ms={:.3} p10_ms={:.3} p90_ms={:.3} runs={runs} network={network}",
        ms(at(0.5)),
        ms(at(0.1)),
        ms(at(0.9))
    );
}
