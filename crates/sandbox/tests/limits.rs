//! Resource limits through cgroups (this machine: the v1 controllers of the hybrid layout).

mod common;

use common::{sh, Fixture};
use rbuild_sandbox::ResourceLimits;

#[test]
fn a_step_over_its_memory_limit_is_reported_as_an_oom_kill() {
    let fx = Fixture::new();
    let view = fx.view();
    // 64 MiB into a tmpfs-backed file counts against the step's memory cgroup (16 MiB).
    let args = sh("head -c 67108864 /dev/zero | tail > /dev/null; echo done");
    let mut spec = fx.spec(&view, args.clone());
    spec.limits = ResourceLimits {
        memory: Some(16 << 20),
        ..ResourceLimits::default()
    };
    let (result, _) = fx.run(&spec);
    let outcome = result.expect("ran");
    assert_eq!(outcome.oom_killed, Some(16 << 20), "{outcome:?}");
    let message = outcome.failure_message(&args);
    assert!(
        message.contains("OOM killer") && message.contains("16777216 bytes"),
        "{message}"
    );
}

#[test]
fn pids_and_cpu_limits_apply() {
    let fx = Fixture::new();
    let view = fx.view();
    // Eight background children cannot all exist under pids.max=4: some fork fails, and
    // busybox sh reports it and exits. (Counting the failures through a pipeline raced with
    // the pipeline's own forks, which the same limit may refuse first.)
    let args = sh("for i in 1 2 3 4 5 6 7 8; do sleep 1 & done; wait; echo all-started");
    let mut spec = fx.spec(&view, args.clone());
    spec.limits = ResourceLimits {
        pids: Some(4),
        cpu_shares: Some(512),
        cpu_quota: Some(50_000),
        cpu_period: Some(100_000),
        ..ResourceLimits::default()
    };
    let (result, out) = fx.run(&spec);
    let outcome = result.expect("ran");
    let stdout = out.text(rbuild_sandbox::Stream::Stdout);
    let stderr = out.text(rbuild_sandbox::Stream::Stderr);
    assert!(
        !outcome.success() && !stdout.contains("all-started"),
        "every fork succeeded under pids.max=4: {stdout} {outcome:?}"
    );
    assert!(
        stderr.contains("can't fork") && stderr.contains("Resource temporarily unavailable"),
        "the refused fork is not what failed the step: {stderr} {}",
        outcome.failure_message(&args)
    );
    // The same step without limits forks freely.
    let free = fx.sh_ok(&fx.spec(
        &view,
        sh("for i in 1 2 3 4 5 6 7 8; do true & done; wait; echo ok"),
    ));
    assert_eq!(free, "ok\n");
}
