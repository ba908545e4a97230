//! RUN --mount kinds: secret, cache, tmpfs, bind; what reaches the layer.

mod common;

use common::{diff_paths, sh, Fixture};
use rbuild_sandbox::{CacheMounts, CacheOwner, Mount, Sharing};

#[test]
fn a_secret_is_readable_in_the_step_and_absent_from_the_diff() {
    let fx = Fixture::new();
    let view = fx.view();
    let mut spec = fx.spec(&view, sh("cat /run/secrets/token; echo; stat -c '%a %u' /run/secrets/token; echo x > /run/secrets/token 2>/dev/null || echo read-only"));
    spec.mounts.push(Mount::Secret {
        data: b"s3cr3t-value".to_vec(),
        target: "/run/secrets/token".into(),
        uid: 0,
        gid: 0,
        mode: 0o400,
    });
    assert_eq!(fx.sh_ok(&spec), "s3cr3t-value\n400 0\nread-only\n");
    let paths = diff_paths(view.upper());
    assert!(
        !paths.iter().any(|p| p.starts_with("run")),
        "secret traces in the diff: {paths:?}"
    );
    let leaked = std::process::Command::new("grep")
        .args(["-r", "-l", "s3cr3t-value"])
        .arg(view.upper())
        .arg(fx.path("run"))
        .output()
        .expect("grep");
    assert!(
        leaked.stdout.is_empty(),
        "the secret is still on disk: {}",
        String::from_utf8_lossy(&leaked.stdout)
    );
}

#[test]
fn a_cache_mount_persists_across_two_builds_and_stays_out_of_the_layer() {
    let fx = Fixture::new();
    let caches = CacheMounts::open(fx.path("state/cache-mounts-v1")).expect("caches");
    for (round, expected) in [(1, "1\n"), (2, "1\n2\n")] {
        let view = fx.view();
        let lease = caches
            .acquire("apt-lists", Sharing::Locked, CacheOwner::default())
            .expect("lease");
        let mut spec = fx.spec(
            &view,
            sh(&format!(
                "echo {round} >> /var/cache/demo/rounds; cat /var/cache/demo/rounds"
            )),
        );
        spec.mounts.push(Mount::Bind {
            source: lease.path().to_path_buf(),
            target: "/var/cache/demo".into(),
            readonly: false,
        });
        assert_eq!(fx.sh_ok(&spec), expected, "round {round}");
        let paths = diff_paths(view.upper());
        // The target directory stays (as BuildKit leaves it), empty.
        assert!(paths.contains(&"var/cache/demo".to_string()), "{paths:?}");
        assert!(
            !paths.iter().any(|p| p.contains("rounds")),
            "cache content in the layer: {paths:?}"
        );
    }
}

#[test]
fn tmpfs_and_bind_mounts() {
    let fx = Fixture::new();
    let view = fx.view();
    let source = fx.path("context");
    std::fs::create_dir_all(&source).expect("mkdir");
    std::fs::write(source.join("input.txt"), "from the context\n").expect("write");
    let mut spec = fx.spec(
        &view,
        sh(
            "cat /src/input.txt; touch /src/new 2>/dev/null || echo ro; \
            echo scratch > /scratch/file; df /scratch | tail -1 | awk '{print $2}'; \
            cat /one-file",
        ),
    );
    spec.mounts = vec![
        Mount::Bind {
            source: source.clone(),
            target: "/src".into(),
            readonly: true,
        },
        Mount::Tmpfs {
            target: "/scratch".into(),
            size: Some(1 << 20),
        },
        Mount::Bind {
            source: source.join("input.txt"),
            target: "/one-file".into(),
            readonly: true,
        },
    ];
    assert_eq!(
        fx.sh_ok(&spec),
        "from the context\nro\n1024\nfrom the context\n"
    );
    let paths = diff_paths(view.upper());
    assert!(
        paths.contains(&"src".to_string()) && paths.contains(&"scratch".to_string()),
        "{paths:?}"
    );
    assert!(
        !paths
            .iter()
            .any(|p| p.starts_with("scratch/") || p.starts_with("src/")),
        "{paths:?}"
    );
    assert!(
        !paths.contains(&"one-file".to_string()),
        "a file mount left its stub: {paths:?}"
    );
    assert!(!source.join("new").exists());
}
