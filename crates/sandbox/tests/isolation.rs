//! Namespaces, hostname, /proc, /dev, /sys, network modes and capabilities, in real namespaces.

mod common;

use common::{diff_paths, sh, Fixture};
use rbuild_sandbox::{capabilities, NetworkMode, SecurityMode};

#[test]
fn the_step_is_pid_1_with_its_own_hostname_and_sees_no_host_process() {
    let fx = Fixture::new();
    let view = fx.view();
    let out = fx.sh_ok(&fx.spec(
        &view,
        sh("echo pid=$$; hostname; cat /etc/hostname; ls /proc | grep -c '^[0-9][0-9]*$'"),
    ));
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "pid=1");
    assert_eq!(lines[1], "buildkitsandbox");
    assert_eq!(lines[2], "buildkitsandbox");
    // sh, ls, grep (and possibly a subshell): never the host's hundreds of processes.
    let visible: usize = lines[3].parse().expect("count");
    assert!(visible <= 4, "the step sees {visible} processes");
    // The host's PID 1 (init) is not the step's PID 1.
    let host_init = std::fs::read_to_string("/proc/1/cmdline").unwrap_or_default();
    let step_init = fx.sh_ok(&fx.spec(&view, sh("tr '\\0' ' ' < /proc/1/cmdline")));
    assert_ne!(step_init.trim(), host_init.replace('\0', " ").trim());
}

#[test]
fn proc_dev_and_sys_are_mounted_and_hardened() {
    let fx = Fixture::new();
    let view = fx.view();
    let out = fx.sh_ok(&fx.spec(
        &view,
        sh("ls /dev | tr '\\n' ' '; echo; \
            for l in fd stdin stdout stderr ptmx; do printf '%s ' $(readlink /dev/$l); done; echo; \
            head -c 4 /dev/zero | wc -c; \
            echo x > /dev/null && echo null-ok; \
            grep -q ' /sys .* ro,' /proc/self/mountinfo && echo sys-ro || echo sys-writable; \
            echo 1 > /proc/sys/vm/drop_caches 2>/dev/null && echo procsys-writable || echo procsys-ro; \
            echo timer_list=$(wc -c < /proc/timer_list); \
            echo firmware=$(ls /sys/firmware | wc -l)"),
    ));
    let lines: Vec<&str> = out.lines().collect();
    for node in [
        "null", "zero", "full", "random", "urandom", "tty", "pts", "shm", "mqueue", "fd", "stdin",
        "stdout", "stderr", "ptmx",
    ] {
        assert!(
            lines[0].split(' ').any(|n| n == node),
            "/dev lacks {node}: {}",
            lines[0]
        );
    }
    assert_eq!(
        lines[1].trim(),
        "/proc/self/fd /proc/self/fd/0 /proc/self/fd/1 /proc/self/fd/2 pts/ptmx"
    );
    assert_eq!(lines[2], "4");
    assert_eq!(lines[3], "null-ok");
    assert_eq!(lines[4], "sys-ro");
    assert_eq!(lines[5], "procsys-ro");
    // Masked as runc does (paths this kernel has): files by /dev/null, dirs by an empty tmpfs.
    assert!(std::fs::metadata("/proc/timer_list")
        .map(|m| m.len() == 0)
        .unwrap_or(false));
    assert_eq!(
        lines[6], "timer_list=0",
        "/proc/timer_list is masked by /dev/null"
    );
    assert!(
        std::fs::read_dir("/sys/firmware")
            .expect("host /sys/firmware")
            .count()
            > 0
    );
    assert_eq!(
        lines[7], "firmware=0",
        "/sys/firmware is masked by an empty tmpfs"
    );
}

#[test]
fn the_layer_gets_the_mount_point_dirs_but_nothing_of_the_etc_files() {
    let fx = Fixture::new();
    let view = fx.view();
    let out = fx.sh_ok(&fx.spec(
        &view,
        sh("cat /etc/hosts; test -s /etc/resolv.conf || echo empty-resolv"),
    ));
    assert!(
        out.contains("127.0.0.1\tlocalhost buildkitsandbox"),
        "{out}"
    );
    let paths = diff_paths(view.upper());
    // /etc is copied up (as in BuildKit, only its mtime changes); the stubs in it are gone.
    assert_eq!(
        paths,
        ["dev", "etc", "proc", "sys"],
        "the diff holds {paths:?}"
    );
    for dir in ["dev", "proc", "sys"] {
        let meta = std::fs::metadata(view.upper().join(dir)).expect("stat");
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        assert_eq!(
            (meta.permissions().mode() & 0o7777, meta.uid(), meta.gid()),
            (0o755, 0, 0)
        );
        assert_eq!(
            std::fs::read_dir(view.upper().join(dir))
                .expect("ls")
                .count(),
            0
        );
    }
}

#[test]
fn without_etc_in_the_image_no_etc_reaches_the_layer() {
    use std::os::unix::fs::FileTypeExt;
    let fx = Fixture::new();
    let view = fx.view();
    // Deleting /etc in the view leaves a whiteout in the upper dir.
    std::fs::remove_dir_all(view.root().join("etc")).expect("rm /etc");
    let whiteout = |p: &std::path::Path| {
        std::fs::symlink_metadata(p)
            .map(|m| m.file_type().is_char_device())
            .unwrap_or(false)
    };
    assert!(whiteout(&view.upper().join("etc")));
    let out = fx.sh_ok(&fx.spec(&view, sh("cat /etc/hostname")));
    assert_eq!(out, "buildkitsandbox\n");
    assert!(
        whiteout(&view.upper().join("etc")),
        "the step's stubs replaced the /etc whiteout"
    );
    assert!(
        !view.root().join("etc").exists(),
        "/etc came back after the step"
    );
}

#[test]
fn network_none_has_only_loopback_and_it_is_up() {
    let fx = Fixture::new();
    let view = fx.view();
    let mut spec = fx.spec(
        &view,
        sh("tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d ' '; cat /sys/class/net/lo/flags"),
    );
    spec.network = NetworkMode::None;
    let out = fx.sh_ok(&spec);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "lo");
    let flags = u32::from_str_radix(lines[1].trim_start_matches("0x"), 16).expect("flags");
    assert_eq!(flags & 1, 1, "lo is not up (flags {})", lines[1]);
    assert_eq!(lines.len(), 2, "more than lo: {out}");
}

#[test]
fn network_default_is_the_hosts_network() {
    let fx = Fixture::new();
    let view = fx.view();
    let host = std::fs::read_to_string("/proc/net/dev").expect("host net");
    let host_ifaces: Vec<String> = host
        .lines()
        .skip(2)
        .filter_map(|l| l.split(':').next())
        .map(|s| s.trim().to_string())
        .collect();
    for mode in [NetworkMode::Default, NetworkMode::Host] {
        let mut spec = fx.spec(
            &view,
            sh("tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d ' '"),
        );
        spec.network = mode;
        let out = fx.sh_ok(&spec);
        let mut seen: Vec<String> = out.lines().map(str::to_string).collect();
        let mut expected = host_ifaces.clone();
        seen.sort();
        expected.sort();
        assert_eq!(seen, expected, "{mode:?}");
    }
}

fn cap_line(status: &str, name: &str) -> u64 {
    let value = status
        .lines()
        .find_map(|l| l.strip_prefix(name))
        .unwrap_or_else(|| panic!("no {name} in {status}"));
    u64::from_str_radix(value.trim_start_matches(':').trim(), 16).expect("hex")
}

#[test]
fn capabilities_are_dockers_default_set() {
    let fx = Fixture::new();
    let view = fx.view();
    let root = fx.sh_ok(&fx.spec(&view, sh("grep Cap /proc/self/status")));
    let default = capabilities::default_mask();
    assert_eq!(default, 0xa804_25fb);
    assert_eq!(cap_line(&root, "CapEff"), default, "{root}");
    assert_eq!(cap_line(&root, "CapPrm"), default);
    assert_eq!(cap_line(&root, "CapBnd"), default);
    assert_eq!(cap_line(&root, "CapInh"), 0);
    assert_eq!(cap_line(&root, "CapAmb"), 0);

    let mut spec = fx.spec(&view, sh("grep Cap /proc/self/status"));
    spec.user = rbuild_sandbox::resolve_user_in_rootfs(view.root(), "builder").expect("user");
    let user = fx.sh_ok(&spec);
    assert_eq!(cap_line(&user, "CapEff"), 0, "{user}");
    assert_eq!(cap_line(&user, "CapPrm"), 0);
    assert_eq!(cap_line(&user, "CapBnd"), default);

    // Without CAP_SYS_ADMIN a root step cannot mount.
    let (result, _) = fx.run(&fx.spec(
        &view,
        sh("mkdir -p /mnt && mount -t tmpfs none /mnt 2>/dev/null"),
    ));
    assert!(
        !result.expect("ran").success(),
        "mount worked without CAP_SYS_ADMIN"
    );
}

#[test]
fn security_insecure_gets_every_capability_and_a_writable_sys() {
    let fx = Fixture::new();
    let view = fx.view();
    let mut spec = fx.spec(&view, sh("grep CapEff /proc/self/status; ls /proc/acpi >/dev/null 2>&1; mkdir -p /mnt && mount -t tmpfs none /mnt && echo mounted"));
    spec.security = SecurityMode::Insecure;
    let out = fx.sh_ok(&spec);
    // Every capability rbuild itself holds (a restricted host may lack some of the kernel's).
    let own = std::fs::read_to_string("/proc/self/status").expect("status");
    assert_eq!(cap_line(&out, "CapEff"), cap_line(&own, "CapPrm"), "{out}");
    assert!(
        cap_line(&out, "CapEff") & (1 << 21) != 0,
        "no CAP_SYS_ADMIN: {out}"
    );
    assert!(out.contains("mounted"));
}

#[test]
fn a_dev_symlink_in_the_image_is_refused() {
    let fx = Fixture::new();
    let view = fx.view();
    std::os::unix::fs::symlink("/tmp", view.root().join("dev")).expect("symlink");
    let (result, _) = fx.run(&fx.spec(&view, sh("true")));
    let error = result.expect_err("must refuse");
    assert!(error.to_string().contains("/dev"), "{error}");
}

#[test]
fn a_mount_target_behind_an_absolute_symlink_stays_inside_the_rootfs() {
    let fx = Fixture::new();
    let view = fx.view();
    let outside = fx.path("outside");
    std::fs::create_dir_all(&outside).expect("mkdir");
    // The same absolute path inside the rootfs is where the symlink really leads.
    let inside = view
        .root()
        .join(outside.strip_prefix("/").expect("absolute"));
    std::fs::create_dir_all(&inside).expect("mkdir inside");
    // /mnt -> <host path>: resolved inside the rootfs, so the tmpfs lands in <rootfs>/<host path>.
    std::os::unix::fs::symlink(&outside, view.root().join("mnt")).expect("symlink");
    let mut spec = fx.spec(&view, sh("echo secret > /mnt/x && cat /mnt/x"));
    spec.mounts.push(rbuild_sandbox::Mount::Tmpfs {
        target: "/mnt".into(),
        size: None,
    });
    assert_eq!(fx.sh_ok(&spec), "secret\n");
    assert_eq!(
        std::fs::read_dir(&outside).expect("ls").count(),
        0,
        "the mount escaped the rootfs"
    );
    // A symlink to a path that exists nowhere inside the rootfs is refused, not followed out.
    let view = fx.view();
    std::os::unix::fs::symlink(&outside, view.root().join("mnt")).expect("symlink");
    let mut spec = fx.spec(&view, sh("true"));
    spec.mounts.push(rbuild_sandbox::Mount::Tmpfs {
        target: "/mnt".into(),
        size: None,
    });
    let error = fx.run(&spec).0.expect_err("dangling");
    assert!(error.to_string().contains("dangling symlink"), "{error}");
}

#[test]
fn host_processes_can_be_neither_seen_nor_signalled() {
    let fx = Fixture::new();
    let view = fx.view();
    let mut host = std::process::Command::new("sleep")
        .arg("35.5")
        .spawn()
        .expect("host sleep");
    let pid = host.id();
    let out = fx.sh_ok(&fx.spec(
        &view,
        sh(&format!("test -e /proc/{pid} && echo visible || echo hidden; kill -9 {pid} 2>/dev/null && echo killed || echo refused")),
    ));
    let alive = host.try_wait().expect("try_wait").is_none();
    let _ = host.kill();
    let _ = host.wait();
    assert_eq!(out, "hidden\nrefused\n");
    assert!(alive, "the step killed a host process");
}

#[test]
fn an_ssh_agent_socket_can_be_forwarded() {
    let fx = Fixture::new();
    let view = fx.view();
    let socket = fx.path("agent.sock");
    let _listener = std::os::unix::net::UnixListener::bind(&socket).expect("listen");
    let mut spec = fx.spec(&view, sh("test -S $SSH_AUTH_SOCK && echo socket"));
    spec.env
        .push("SSH_AUTH_SOCK=/run/buildkit/ssh_agent.0".into());
    spec.mounts.push(rbuild_sandbox::Mount::Bind {
        source: socket,
        target: "/run/buildkit/ssh_agent.0".into(),
        readonly: false,
    });
    assert_eq!(fx.sh_ok(&spec), "socket\n");
    assert!(
        !diff_paths(view.upper())
            .iter()
            .any(|p| p.starts_with("run")),
        "the socket's stub stayed"
    );
}

#[test]
fn device_nodes_made_by_the_step_cannot_be_opened() {
    let fx = Fixture::new();
    let view = fx.view();
    // CAP_MKNOD is in Docker's set, so mknod works; opening the node must not (no host disk).
    let out = fx.sh_ok(&fx.spec(
        &view,
        sh("mknod /mem c 1 1 && echo made; head -c 1 /mem >/dev/null 2>&1 && echo opened || echo refused; \
            mknod /dev/mem2 c 1 1 2>/dev/null; head -c 1 /dev/mem2 >/dev/null 2>&1 && echo dev-opened || echo dev-refused; \
            echo ok > /dev/null && head -c 1 /dev/zero | wc -c"),
    ));
    assert_eq!(out, "made\nrefused\ndev-refused\n1\n");
}

#[test]
fn a_symlinked_proc_or_sys_is_refused() {
    for dir in ["proc", "sys"] {
        let fx = Fixture::new();
        let view = fx.view();
        std::fs::create_dir_all(view.root().join("real")).expect("mkdir");
        std::os::unix::fs::symlink("/real", view.root().join(dir)).expect("symlink");
        let error = fx
            .run(&fx.spec(&view, sh("true")))
            .0
            .expect_err("must refuse");
        assert!(error.to_string().contains(&format!("/{dir}")), "{error}");
    }
}

#[test]
fn the_cgroup_namespace_is_rooted_at_the_steps_cgroup() {
    let fx = Fixture::new();
    let view = fx.view();
    let mut spec = fx.spec(&view, sh("cat /proc/self/cgroup"));
    spec.limits.pids = Some(100);
    let out = fx.sh_ok(&spec);
    let pids_line = out
        .lines()
        .find(|l| l.contains(":pids:"))
        .unwrap_or_else(|| panic!("{out}"));
    assert!(
        pids_line.ends_with(":/"),
        "the step sees its cgroup path: {pids_line}"
    );
}
