//! A step with limits leaves no cgroup behind. Alone in its test binary: the cgroup names carry
//! the process id, so no other test's step can be mistaken for a leftover.

mod common;

use common::{sh, Fixture};
use rbuild_sandbox::ResourceLimits;

#[test]
fn limits_leave_no_cgroup_behind() {
    let fx = Fixture::new();
    let view = fx.view();
    let mut spec = fx.spec(&view, sh("true"));
    spec.limits = ResourceLimits {
        memory: Some(64 << 20),
        pids: Some(64),
        ..ResourceLimits::default()
    };
    fx.sh_ok(&spec);
    let prefix = format!("rbuild-{}-", std::process::id());
    let mut leftovers = Vec::new();
    for controller in ["memory", "pids", "unified"] {
        let output = std::process::Command::new("find")
            .args([
                &format!("/sys/fs/cgroup/{controller}"),
                "-maxdepth",
                "4",
                "-name",
                &format!("{prefix}*"),
            ])
            .output()
            .expect("find");
        leftovers.extend(
            String::from_utf8_lossy(&output.stdout)
                .lines()
                .map(str::to_string),
        );
    }
    assert_eq!(leftovers, Vec::<String>::new());
}
