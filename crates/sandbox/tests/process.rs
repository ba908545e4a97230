//! The step's process: user, environment, working directory, exec form, stdin, exit status,
//! output streaming.

mod common;

use common::{diff_paths, sh, Fixture};
use rbuild_sandbox::{resolve_user_in_rootfs, ExitStatus, OutputSink, SandboxError, Stream};

#[test]
fn user_by_name_gets_its_ids_groups_and_home() {
    let fx = Fixture::new();
    let view = fx.view();
    let mut spec = fx.spec(
        &view,
        sh("id -u; id -g; id -G; echo $HOME; touch /tmp/owned; stat -c %u:%g /tmp/owned"),
    );
    spec.user = resolve_user_in_rootfs(view.root(), "builder").expect("user");
    assert_eq!(
        fx.sh_ok(&spec),
        "1000\n1000\n1000 2000\n/home/builder\n1000:1000\n"
    );
}

#[test]
fn user_by_ids_and_by_name_with_group() {
    let fx = Fixture::new();
    let view = fx.view();
    for (user, expected) in [
        ("1000:2000", "1000\n2000\n2000\n/home/builder\n"),
        ("4242", "4242\n0\n0\n/\n"),
        ("builder:extra", "1000\n2000\n2000\n/home/builder\n"),
        ("nobody", "65534\n65534\n65534\n/nonexistent\n"),
    ] {
        let mut spec = fx.spec(&view, sh("id -u; id -g; id -G; echo $HOME"));
        spec.user = resolve_user_in_rootfs(view.root(), user).expect("user");
        assert_eq!(fx.sh_ok(&spec), expected, "USER {user}");
    }
    let error = resolve_user_in_rootfs(view.root(), "ghost").expect_err("unknown user");
    assert!(error.to_string().contains("ghost"), "{error}");
}

#[test]
fn environment_gets_a_default_path_and_home_and_keeps_the_steps_vars() {
    let fx = Fixture::new();
    let view = fx.view();
    // `env` exec'd directly (no shell adding PWD or SHLVL) prints exactly the step's env.
    let mut spec = fx.spec(&view, vec!["env".into()]);
    spec.env = vec!["GREETING=hello world".into()];
    assert_eq!(
        fx.sh_ok(&spec),
        "GREETING=hello world\nPATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\nHOME=/root\n"
    );
    // The step's own PATH wins, and is the one executables are looked up in.
    let mut spec = fx.spec(&view, vec!["busybox".into(), "echo".into(), "found".into()]);
    spec.env = vec!["PATH=/nowhere:/bin".into()];
    assert_eq!(fx.sh_ok(&spec), "found\n");
}

#[test]
fn the_working_directory_is_created_when_missing() {
    let fx = Fixture::new();
    let view = fx.view();
    let mut spec = fx.spec(&view, sh("pwd; touch here"));
    spec.cwd = "/work/deep/dir".into();
    assert_eq!(fx.sh_ok(&spec), "/work/deep/dir\n");
    assert!(view.upper().join("work/deep/dir/here").is_file());
    assert!(diff_paths(view.upper()).contains(&"work/deep/dir".to_string()));
}

#[test]
fn exec_form_runs_without_a_shell_and_a_missing_binary_is_a_clear_error() {
    let fx = Fixture::new();
    let view = fx.view();
    let spec = fx.spec(&view, vec!["echo".into(), "$HOME".into(), "a  b".into()]);
    assert_eq!(fx.sh_ok(&spec), "$HOME a  b\n");
    let (result, _) = fx.run(&fx.spec(&view, vec!["no-such-tool".into()]));
    match result {
        Err(SandboxError::ExecutableNotFound { name, .. }) => assert_eq!(name, "no-such-tool"),
        other => panic!("expected ExecutableNotFound, got {other:?}"),
    }
}

#[test]
fn exit_codes_signals_and_the_failure_report() {
    let fx = Fixture::new();
    let view = fx.view();
    let args = sh("echo first; echo to-stderr >&2; exit 3");
    let (result, _) = fx.run(&fx.spec(&view, args.clone()));
    let outcome = result.expect("ran");
    assert_eq!(outcome.status, ExitStatus::Exited(3));
    let message = outcome.failure_message(&args);
    assert_eq!(message, "process \"/bin/sh -c echo first; echo to-stderr >&2; exit 3\" did not complete successfully: exit code: 3");
    let tail: Vec<(Stream, String)> = outcome
        .tail
        .iter()
        .map(|l| (l.stream, String::from_utf8_lossy(&l.text).into_owned()))
        .collect();
    assert!(tail.contains(&(Stream::Stdout, "first".into())), "{tail:?}");
    assert!(
        tail.contains(&(Stream::Stderr, "to-stderr".into())),
        "{tail:?}"
    );

    // A child killed by a signal: its shell sees 128 + n.
    assert_eq!(
        fx.sh_ok(&fx.spec(&view, sh("sh -c 'kill -9 $$'; echo status=$?"))),
        "status=137\n"
    );
    // PID 1 of a PID namespace ignores signals it has no handler for, even from itself.
    let spec = fx.spec(
        &view,
        vec![
            "sh".into(),
            "-c".into(),
            "kill -TERM $$; echo survived".into(),
        ],
    );
    assert_eq!(fx.sh_ok(&spec), "survived\n");
}

#[test]
fn stdin_is_dev_null() {
    let fx = Fixture::new();
    let view = fx.view();
    assert_eq!(
        fx.sh_ok(&fx.spec(&view, sh("cat; readlink /proc/self/fd/0"))),
        "/dev/null\n"
    );
}

/// Records when each line arrived.
struct Timed {
    start: std::time::Instant,
    lines: Vec<(std::time::Duration, String)>,
}

impl OutputSink for Timed {
    fn line(&mut self, _: Stream, line: &[u8]) {
        self.lines.push((
            self.start.elapsed(),
            String::from_utf8_lossy(line).into_owned(),
        ));
    }
}

#[test]
fn output_is_streamed_line_by_line_as_it_is_written() {
    let fx = Fixture::new();
    let view = fx.view();
    let spec = fx.spec(&view, sh("echo one; sleep 0.4; echo two"));
    let mut sink = Timed {
        start: std::time::Instant::now(),
        lines: Vec::new(),
    };
    let cancel = rbuild_sandbox::Cancel::new().expect("cancel");
    let outcome = fx.sandbox.run(&spec, &mut sink, &cancel).expect("ran");
    assert!(outcome.success());
    let texts: Vec<&str> = sink.lines.iter().map(|(_, t)| t.as_str()).collect();
    assert_eq!(texts, ["one", "two"]);
    // "one" arrived before the sleep ended, not batched with "two" at exit.
    assert!(
        sink.lines[1].0 - sink.lines[0].0 >= std::time::Duration::from_millis(300),
        "{:?}",
        sink.lines
    );
}

#[test]
fn a_tool_only_a_mount_provides_is_found_through_path() {
    let fx = Fixture::new();
    let view = fx.view();
    let tools = fx.path("tools");
    std::fs::create_dir_all(&tools).expect("mkdir");
    std::fs::write(
        tools.join("hello-tool"),
        "#!/bin/sh\necho from the mounted tool\n",
    )
    .expect("write");
    std::fs::set_permissions(
        tools.join("hello-tool"),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .expect("chmod");
    let mut spec = fx.spec(&view, vec!["hello-tool".into()]);
    spec.env = vec!["PATH=/usr/bin:/opt/tools:/bin".into()];
    spec.mounts.push(rbuild_sandbox::Mount::Bind {
        source: tools,
        target: "/opt/tools".into(),
        readonly: true,
    });
    assert_eq!(fx.sh_ok(&spec), "from the mounted tool\n");
}
