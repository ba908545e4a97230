//! A busybox base snapshot, overlay views over it, and a sandbox to run steps in them.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use rbuild_sandbox::{Cancel, Collect, Outcome, Sandbox, SandboxError, StepSpec};
use rbuild_snapshotter::snapshots::{SnapshotId, Snapshotter, View};

pub struct Fixture {
    pub dir: tempfile::TempDir,
    pub snapshots: Snapshotter,
    pub base: SnapshotId,
    pub sandbox: Sandbox,
}

impl Fixture {
    pub fn new() -> Fixture {
        rbuild_test::require_root();
        let dir = tempfile::Builder::new()
            .prefix("rbuild-sandbox-test-")
            .tempdir()
            .expect("tempdir");
        let snapshots = Snapshotter::open(&dir.path().join("state")).expect("snapshotter");
        let rootfs = dir.path().join("state/busybox");
        std::fs::create_dir_all(&rootfs).expect("mkdir");
        rbuild_test::busybox_rootfs(&rootfs);
        let base = SnapshotId::new("busybox").expect("id");
        snapshots
            .commit_dir(&rootfs, &base, None)
            .expect("commit base");
        let sandbox = Sandbox::new(dir.path().join("run")).expect("sandbox");
        Fixture {
            dir,
            snapshots,
            base,
            sandbox,
        }
    }

    /// A fresh writable overlay view over the busybox base.
    pub fn view(&self) -> View {
        self.snapshots
            .prepare(Some(&self.base))
            .expect("prepare view")
    }

    pub fn spec(&self, view: &View, args: Vec<String>) -> StepSpec {
        StepSpec::new(view.root(), args)
    }

    /// Runs `spec`, collecting its output.
    pub fn run(&self, spec: &StepSpec) -> (Result<Outcome, SandboxError>, Collect) {
        let mut out = Collect::default();
        let cancel = Cancel::new().expect("cancel");
        let result = self.sandbox.run(spec, &mut out, &cancel);
        (result, out)
    }

    /// Runs a shell command as root in a new view; panics unless it exits 0. Returns stdout.
    pub fn sh_ok(&self, spec: &StepSpec) -> String {
        let (result, out) = self.run(spec);
        let outcome = result.unwrap_or_else(|e| panic!("step failed to run: {e:?}"));
        assert!(
            outcome.success(),
            "{}\nstdout:\n{}stderr:\n{}",
            outcome.failure_message(&spec.args),
            out.text(rbuild_sandbox::Stream::Stdout),
            out.text(rbuild_sandbox::Stream::Stderr)
        );
        out.text(rbuild_sandbox::Stream::Stdout)
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }
}

pub fn sh(command: &str) -> Vec<String> {
    rbuild_sandbox::shell_form(&[], command)
}

/// Every path in an upperdir, relative, sorted (what the step's layer would hold).
pub fn diff_paths(upper: &Path) -> Vec<String> {
    let mut out = Vec::new();
    walk(upper, upper, &mut out);
    out.sort();
    out
}

fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        out.push(
            path.strip_prefix(root)
                .expect("prefix")
                .to_string_lossy()
                .into_owned(),
        );
        if entry.file_type().map(|t| t.is_dir()).unwrap_or(false) {
            walk(root, &path, out);
        }
    }
}

/// Host processes whose command line starts with `marker`.
pub fn processes_with(marker: &str) -> Vec<String> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").expect("proc").flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if !name.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        if let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) {
            let text = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            if text.starts_with(marker) {
                found.push(format!("{name}: {text}"));
            }
        }
    }
    found
}

/// Mounts of this process at or below `dir`.
pub fn mounts_below(dir: &Path) -> Vec<String> {
    let prefix = dir.to_string_lossy().into_owned();
    std::fs::read_to_string("/proc/self/mountinfo")
        .expect("mountinfo")
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .filter(|t| t.starts_with(&prefix))
        .map(str::to_string)
        .collect()
}
