//! Nothing is left behind: no process, no mount, after success, failure and cancellation.

mod common;

use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::{mounts_below, processes_with, sh, Fixture};
use rbuild_sandbox::{Cancel, OutputSink, SandboxError, Stream};

/// Tells the test when the step printed `ready`.
struct Ready(mpsc::Sender<()>);

impl OutputSink for Ready {
    fn line(&mut self, _: Stream, line: &[u8]) {
        if line == b"ready" {
            let _ = self.0.send(());
        }
    }
}

/// Waits (up to 30 s) until `count` processes run `marker`: a line the step printed can come
/// before its background commands have exec'd.
fn wait_for_processes(marker: &str, count: usize) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while processes_with(marker).len() < count && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(
        processes_with(marker).len(),
        count,
        "the step's processes never started"
    );
}

fn assert_nothing_left(fx: &Fixture, view: rbuild_snapshotter::snapshots::View, marker: &str) {
    assert_eq!(
        processes_with(marker),
        Vec::<String>::new(),
        "processes of the step survived"
    );
    // Only the view's own overlay is mounted; the step's mounts lived in its namespace.
    let mounts = mounts_below(view.root());
    assert_eq!(
        mounts,
        [view.root().to_string_lossy().into_owned()],
        "mounts left: {mounts:?}"
    );
    // A strict unmount (EBUSY fails) succeeds: nothing holds the rootfs.
    let id = rbuild_snapshotter::snapshots::SnapshotId::new(format!(
        "after-{}",
        marker.replace([' ', '.'], "-")
    ))
    .expect("id");
    fx.snapshots
        .commit(view, &id, Some(&fx.base))
        .expect("commit after the step");
}

#[test]
fn background_processes_die_with_the_step_on_success_and_failure() {
    let fx = Fixture::new();
    for (marker, exit) in [("31.5", "0"), ("32.5", "7")] {
        let view = fx.view();
        let started = Instant::now();
        // Background sleepers that would outlive a plain `sh -c`: the PID namespace ends them.
        let (result, _) = fx.run(&fx.spec(
            &view,
            sh(&format!("sleep {marker} & sleep {marker} & exit {exit}")),
        ));
        let outcome = result.expect("ran");
        assert_eq!(outcome.status.code().to_string(), exit);
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "waited for the sleepers"
        );
        assert_nothing_left(&fx, view, &format!("sleep {marker}"));
    }
}

#[test]
fn cancelling_kills_every_process_of_the_step() {
    let fx = Fixture::new();
    let view = fx.view();
    let marker = "sleep 33.5";
    let spec = fx.spec(
        &view,
        sh(&format!("{marker} & {marker} & echo ready; wait")),
    );
    let cancel = Cancel::new().expect("cancel");
    let (tx, rx) = mpsc::channel();
    let result = std::thread::scope(|scope| {
        let runner = scope.spawn(|| fx.sandbox.run(&spec, &mut Ready(tx), &cancel));
        rx.recv_timeout(Duration::from_secs(20))
            .expect("the step never said ready");
        wait_for_processes(marker, 2);
        let cancelled_at = Instant::now();
        cancel.cancel();
        let result = runner.join().expect("join");
        assert!(cancelled_at.elapsed() < Duration::from_secs(5));
        result
    });
    assert!(matches!(result, Err(SandboxError::Cancelled)), "{result:?}");
    assert_nothing_left(&fx, view, marker);
}

#[test]
fn a_step_killed_from_outside_is_reported_and_cleaned_up() {
    let fx = Fixture::new();
    let view = fx.view();
    let marker = "sleep 34.5";
    let spec = fx.spec(&view, sh(&format!("{marker} & echo ready; exec {marker}")));
    let cancel = Cancel::new().expect("cancel");
    let (tx, rx) = mpsc::channel();
    let result = std::thread::scope(|scope| {
        let runner = scope.spawn(|| fx.sandbox.run(&spec, &mut Ready(tx), &cancel));
        rx.recv_timeout(Duration::from_secs(20)).expect("ready");
        // Kill the step's PID 1 (the exec'd sleep) from the host, as the OOM killer would.
        // `ready` comes just before the exec: wait until both sleeps exist.
        wait_for_processes(marker, 2);
        let pids: Vec<String> = processes_with(marker);
        assert_eq!(pids.len(), 2, "{pids:?}");
        for entry in pids {
            let pid: i32 = entry
                .split(':')
                .next()
                .and_then(|p| p.parse().ok())
                .expect("pid");
            let _ = rustix::process::kill_process(
                rustix::process::Pid::from_raw(pid).expect("pid"),
                rustix::process::Signal::KILL,
            );
        }
        runner.join().expect("join")
    });
    let outcome = result.expect("ran");
    assert_eq!(outcome.status, rbuild_sandbox::ExitStatus::Signaled(9));
    assert_eq!(outcome.status.code(), 137);
    assert_nothing_left(&fx, view, marker);
}

/// Run only by `killing_rbuild_kills_the_step`, in a process of its own that the test kills.
#[test]
#[ignore = "helper: run by killing_rbuild_kills_the_step in a child process"]
fn helper_run_a_long_step() {
    let fx = Fixture::new();
    let view = fx.view();
    let marker = std::env::var("RBUILD_TEST_MARKER").expect("marker");
    let mut spec = fx.spec(&view, sh(&format!("{marker} & exec {marker}")));
    // A non-root user: the kernel clears the parent-death signal when ids change, so this is
    // the case that needs it set again after the switch.
    spec.user = rbuild_sandbox::resolve_user_in_rootfs(view.root(), "builder").expect("user");
    let _ = fx.run(&spec);
}

#[test]
fn killing_rbuild_kills_the_step() {
    rbuild_test::require_root();
    let marker = "sleep 36.5";
    let mut child = std::process::Command::new(std::env::current_exe().expect("exe"))
        .args([
            "--exact",
            "helper_run_a_long_step",
            "--ignored",
            "--nocapture",
        ])
        .env("RBUILD_TEST_MARKER", marker)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn the helper");
    wait_for_processes(marker, 2);
    child.kill().expect("kill -9 the helper"); // SIGKILL: no destructor, no cleanup code runs
    let _ = child.wait();
    // The parent-death signal kills PID 1, and with it the whole PID namespace.
    let deadline = Instant::now() + Duration::from_secs(5);
    while !processes_with(marker).is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(
        processes_with(marker),
        Vec::<String>::new(),
        "the step outlived rbuild"
    );
    // The helper's own overlay view outlives it (a private mount namespace for the state root
    // is the solver's job, issue 5): detach it and remove the helper's directory.
    let view_marker = format!("/snapshots-v1/active/{}-", child.id());
    let info = std::fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
    for target in info.lines().filter_map(|l| l.split(' ').nth(4)) {
        if let Some((fixture_dir, _)) = target.split_once(&view_marker) {
            rustix::mount::unmount(target, rustix::mount::UnmountFlags::DETACH)
                .expect("detach the helper's view");
            let _ = std::fs::remove_dir_all(fixture_dir.trim_end_matches("/state"));
        }
    }
}
