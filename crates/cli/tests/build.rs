//! `rbuild build` end to end, through the binary: the cache-correctness regressions BuildKit
//! users hit, why a step missed, reproducibility, error reports, interruption, parallelism.
//! Base image: the golden corpus' busybox, imported with `rbuild load -i`.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

struct Project {
    dir: tempfile::TempDir,
    root: PathBuf,
    ctx: PathBuf,
}

fn rbuild() -> Command {
    Command::new(env!("CARGO_BIN_EXE_rbuild"))
}

impl Project {
    fn new() -> Project {
        rbuild_test::require_root();
        let dir = tempfile::Builder::new()
            .prefix("rbuild-build-test-")
            .tempdir()
            .expect("tempdir");
        let root = dir.path().join("state");
        let ctx = dir.path().join("ctx");
        std::fs::create_dir_all(&ctx).expect("ctx");
        load_base(&root);
        Project { dir, root, ctx }
    }

    /// `rbuild --root <this project's state root>`.
    fn rbuild(&self) -> Command {
        let mut command = rbuild();
        command.arg("--root").arg(&self.root);
        command
    }

    fn write(&self, rel: &str, text: &str) {
        let path = self.ctx.join(rel);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(path, text).expect("write");
    }

    fn dockerfile(&self, text: &str) {
        self.write("Dockerfile", text);
    }

    /// Builds with plain progress; returns the output.
    fn build(&self, args: &[&str]) -> Output {
        self.rbuild()
            .args(["build", "--progress", "plain", "--network", "none"])
            .args(args)
            .arg(&self.ctx)
            .stdin(Stdio::null())
            .output()
            .expect("run rbuild")
    }

    /// Builds, expecting a failure; returns the progress and the error.
    fn build_err(&self, args: &[&str]) -> String {
        let out = self.build(args);
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(!out.status.success(), "the build succeeded:\n{err}");
        err
    }

    fn build_ok(&self, args: &[&str]) -> String {
        let out = self.build(args);
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(out.status.success(), "build failed:\n{err}");
        err
    }

    /// Builds and exports the rootfs to a fresh directory; returns the progress and the dir.
    fn build_rootfs(&self, args: &[&str]) -> (String, PathBuf) {
        let dest = self.dir.path().join(format!("rootfs-{}", rand_suffix()));
        let spec = format!("type=local,dest={}", dest.display());
        let mut all = args.to_vec();
        all.extend(["-o", &spec]);
        (self.build_ok(&all), dest)
    }
}

/// Imports the golden corpus' busybox into the state root `root`.
fn load_base(root: &Path) {
    let out = rbuild()
        .arg("--root")
        .arg(root)
        .args(["load", "-i"])
        .arg(rbuild_test::golden_base("busybox-oci.tar"))
        .output()
        .expect("load");
    assert!(
        out.status.success(),
        "load: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn rand_suffix() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos())
}

/// The progress lines about the step whose label contains `needle`: (CACHED?, miss reason).
fn step_status(progress: &str, needle: &str) -> String {
    let number = progress
        .lines()
        .find(|l| l.starts_with('#') && l.contains(needle) && l.contains('['))
        .and_then(|l| l.split_whitespace().next())
        .unwrap_or_else(|| panic!("no step `{needle}` in:\n{progress}"))
        .to_string();
    progress
        .lines()
        .filter(|l| l.starts_with(&format!("{number} ")))
        .filter_map(|l| {
            let rest = &l[number.len() + 1..];
            (rest == "CACHED" || rest.starts_with("cache miss:")).then(|| rest.to_string())
        })
        .next()
        .unwrap_or_default()
}

fn read(dir: &Path, rel: &str) -> String {
    std::fs::read_to_string(dir.join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

#[test]
fn multi_source_copy_misses_when_only_the_second_file_changes() {
    // moby/buildkit#853
    let p = Project::new();
    p.dockerfile("FROM rbuild-test/busybox:1\nWORKDIR /app\nCOPY Gemfile Gemfile.lock ./\nRUN cat Gemfile.lock > /out\n");
    p.write("Gemfile", "gem 'a'\n");
    p.write("Gemfile.lock", "a (1.0)\n");
    p.build_ok(&[]);
    p.write("Gemfile.lock", "a (2.0)\n");
    let (progress, rootfs) = p.build_rootfs(&[]);
    assert_eq!(
        step_status(&progress, "COPY Gemfile"),
        "cache miss: file Gemfile.lock changed"
    );
    assert_eq!(read(&rootfs, "out"), "a (2.0)\n");
}

#[test]
fn wildcard_copy_misses_after_a_rename_without_content_change() {
    // moby/buildkit#2008
    let p = Project::new();
    p.dockerfile("FROM rbuild-test/busybox:1\nCOPY *.txt /d/\n");
    p.write("a.txt", "same\n");
    p.build_ok(&[]);
    std::fs::rename(p.ctx.join("a.txt"), p.ctx.join("b.txt")).expect("rename");
    let (progress, rootfs) = p.build_rootfs(&[]);
    assert!(
        step_status(&progress, "COPY *.txt").starts_with("cache miss:"),
        "{progress}"
    );
    assert!(rootfs.join("d/b.txt").exists() && !rootfs.join("d/a.txt").exists());
}

#[test]
fn copy_from_a_rebuilt_stage_hits_below_when_the_file_is_unchanged() {
    let p = Project::new();
    p.dockerfile(
        "FROM rbuild-test/busybox:1 AS builder\nARG V\nRUN echo $V > /v && echo same > /f\n\
         FROM rbuild-test/busybox:1\nCOPY --from=builder /f /f\nRUN cat /f > /g\n",
    );
    p.build_ok(&["--build-arg", "V=1"]);
    let progress = p.build_ok(&["--build-arg", "V=2"]);
    assert_eq!(
        step_status(&progress, "RUN echo $V"),
        "cache miss: build arg V changed"
    );
    assert_eq!(step_status(&progress, "COPY --from=builder"), "CACHED");
    assert_eq!(step_status(&progress, "RUN cat /f"), "CACHED");
}

#[test]
fn a_bind_mount_of_a_file_made_by_a_run_keys_the_reading_run() {
    let p = Project::new();
    p.dockerfile(
        "FROM rbuild-test/busybox:1 AS data\nARG V\nRUN echo $V > /data\n\
         FROM rbuild-test/busybox:1\nRUN --mount=type=bind,from=data,source=/data,target=/m cat /m > /out\n",
    );
    let (_, first) = p.build_rootfs(&["--build-arg", "V=1"]);
    assert_eq!(read(&first, "out"), "1\n");
    let (progress, second) = p.build_rootfs(&["--build-arg", "V=2"]);
    assert_eq!(
        step_status(&progress, "RUN --mount"),
        "cache miss: mount source 1 changed"
    );
    assert_eq!(read(&second, "out"), "2\n");
}

#[test]
fn build_args_undeclared_hit_and_declared_before_a_run_miss() {
    let p = Project::new();
    p.dockerfile(
        "FROM rbuild-test/busybox:1\nRUN echo first > /a\nARG DECLARED\nRUN echo fixed > /b\n",
    );
    p.build_ok(&["--build-arg", "DECLARED=1"]);
    let progress = p.build_ok(&["--build-arg", "DECLARED=1", "--build-arg", "UNDECLARED=x"]);
    assert_eq!(step_status(&progress, "RUN echo first"), "CACHED");
    assert_eq!(step_status(&progress, "RUN echo fixed"), "CACHED");
    // The value is in the RUN's environment, so a new one misses even if unused (as BuildKit).
    let progress = p.build_ok(&["--build-arg", "DECLARED=2"]);
    assert_eq!(step_status(&progress, "RUN echo first"), "CACHED");
    assert_eq!(
        step_status(&progress, "RUN echo fixed"),
        "cache miss: build arg DECLARED changed"
    );
}

#[test]
fn exact_instruction_text_keys_a_run_and_touching_a_file_does_not() {
    let p = Project::new();
    p.dockerfile("FROM rbuild-test/busybox:1\nCOPY f /f\nRUN echo  one > /x\n");
    p.write("f", "content\n");
    p.build_ok(&[]);
    // Same bytes, new mtime: a hit.
    let later = std::time::SystemTime::now() + std::time::Duration::from_secs(5);
    std::fs::File::options()
        .write(true)
        .open(p.ctx.join("f"))
        .expect("open")
        .set_modified(later)
        .expect("touch");
    let progress = p.build_ok(&[]);
    assert_eq!(step_status(&progress, "COPY f"), "CACHED");
    // One space less: a different instruction.
    p.dockerfile("FROM rbuild-test/busybox:1\nCOPY f /f\nRUN echo one > /x\n");
    let progress = p.build_ok(&[]);
    assert_eq!(step_status(&progress, "COPY f"), "CACHED");
    assert!(
        step_status(&progress, "RUN echo one").starts_with("cache miss:"),
        "{progress}"
    );
    // --no-cache runs everything.
    let progress = p.build_ok(&["--no-cache"]);
    assert_eq!(step_status(&progress, "COPY f"), "cache miss: --no-cache");
}

#[test]
fn env_changes_are_named() {
    let p = Project::new();
    p.dockerfile("FROM rbuild-test/busybox:1\nENV MODE=a\nRUN echo $MODE > /m\n");
    p.build_ok(&[]);
    p.dockerfile("FROM rbuild-test/busybox:1\nENV MODE=b\nRUN echo $MODE > /m\n");
    let progress = p.build_ok(&[]);
    assert_eq!(
        step_status(&progress, "RUN echo $MODE"),
        "cache miss: env var MODE changed"
    );
}

/// Builds the project on state root `root` with `args`; returns the image digest that
/// `--metadata-file` reports.
fn metadata_digest(p: &Project, root: &Path, args: &[&str]) -> String {
    let meta = p.dir.path().join(format!("meta-{}.json", rand_suffix()));
    let out = rbuild()
        .arg("--root")
        .arg(root)
        .args(["build", "--progress", "plain", "--network", "none"])
        .args(args)
        .arg("--metadata-file")
        .arg(&meta)
        .arg(&p.ctx)
        .output()
        .expect("build");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let meta: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&meta).expect("meta")).expect("json");
    meta["containerimage.digest"]
        .as_str()
        .expect("digest")
        .to_string()
}

/// A `--no-cache` build exported as an OCI archive: its digest and the archive's bytes.
fn oci_digest(p: &Project, root: &Path, extra: &[&str]) -> (String, Vec<u8>) {
    let tar = p.dir.path().join(format!("img-{}.tar", rand_suffix()));
    let spec = format!("type=oci,dest={}", tar.display());
    let mut args = vec!["--no-cache"];
    args.extend(extra);
    args.extend(["-o", &spec]);
    let digest = metadata_digest(p, root, &args);
    (digest, std::fs::read(&tar).expect("tar"))
}

#[test]
fn two_state_roots_and_any_job_count_give_the_same_image() {
    let p = Project::new();
    p.dockerfile(
        "FROM rbuild-test/busybox:1 AS a\nRUN echo a > /a && sleep 0.2\n\
         FROM rbuild-test/busybox:1 AS b\nRUN echo b > /b\n\
         FROM rbuild-test/busybox:1\nCOPY --from=a /a /a\nCOPY --from=b /b /b\nCOPY f /f\nRUN ls / > /listing && mkdir -p /var/lib/app && touch /var/lib/app/state\n",
    );
    p.write("f", "x\n");
    let (first, first_tar) = oci_digest(&p, &p.root, &["--jobs", "1"]);
    let other = p.dir.path().join("other-state");
    load_base(&other);
    let (second, second_tar) = oci_digest(&p, &other, &["--jobs", "8"]);
    assert_eq!(first, second, "same inputs, different image digests");
    assert!(
        first_tar == second_tar,
        "the OCI archives differ byte for byte"
    );
}

#[test]
fn a_failing_run_reports_the_line_the_command_the_code_and_the_output() {
    let p = Project::new();
    p.dockerfile("FROM rbuild-test/busybox:1\nRUN echo ok\nRUN echo before \\\n && echo oops >&2 \\\n && exit 3\nRUN echo never\n");
    let out = p.build(&[]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("exit code: 3"), "{err}");
    assert!(err.contains("did not complete successfully"), "{err}");
    assert!(err.contains(">>> RUN echo before"), "{err}");
    assert!(err.contains(">>>  && exit 3"), "{err}");
    assert!(
        err.contains("  | before") && err.contains("  | oops"),
        "{err}"
    );
    assert!(
        !err.contains("#4 [stage-0 4/4] RUN echo never"),
        "a step after the failure started:\n{err}"
    );
}

#[test]
fn a_missing_copy_source_names_the_dockerignore_rule() {
    let p = Project::new();
    p.dockerfile("FROM rbuild-test/busybox:1\nCOPY secret.key /\n");
    p.write("secret.key", "k");
    p.write(".dockerignore", "# keys stay out\n*.key\n");
    let err = p.build_err(&[]);
    assert!(
        err.contains("secret.key") && err.contains(".dockerignore line 2: `*.key`"),
        "{err}"
    );
}

#[test]
fn context_symlinks_are_followed_at_the_top_and_kept_below() {
    let p = Project::new();
    p.dockerfile("FROM rbuild-test/busybox:1\nCOPY link-to-real /followed.txt\nCOPY tree /tree/\n");
    p.write("real.txt", "real\n");
    p.write("tree/file.txt", "file\n");
    std::os::unix::fs::symlink("real.txt", p.ctx.join("link-to-real")).expect("symlink");
    std::os::unix::fs::symlink("file.txt", p.ctx.join("tree/self-link")).expect("symlink");
    std::os::unix::fs::symlink("../real.txt", p.ctx.join("tree/inner-link")).expect("symlink");
    // A symlink out of the context is followed only inside it: /etc/passwd of the context.
    std::os::unix::fs::symlink("/etc/hostname", p.ctx.join("escape")).expect("symlink");
    let (_, rootfs) = p.build_rootfs(&[]);
    assert_eq!(read(&rootfs, "followed.txt"), "real\n");
    assert!(std::fs::symlink_metadata(rootfs.join("followed.txt"))
        .expect("stat")
        .is_file());
    assert_eq!(
        std::fs::read_link(rootfs.join("tree/self-link")).expect("link"),
        Path::new("file.txt")
    );
    assert_eq!(
        std::fs::read_link(rootfs.join("tree/inner-link")).expect("link"),
        Path::new("../real.txt")
    );
    p.dockerfile("FROM rbuild-test/busybox:1\nCOPY escape /escaped\n");
    let out = p.build(&[]);
    assert!(
        !out.status.success(),
        "a symlink to a host file outside the context was copied"
    );
}

#[test]
fn independent_stages_run_at_the_same_time() {
    let p = Project::new();
    p.dockerfile(
        "FROM rbuild-test/busybox:1 AS one\nRUN sleep 0.5 # one\n\
         FROM rbuild-test/busybox:1 AS two\nRUN sleep 0.5 # two\n\
         FROM rbuild-test/busybox:1\nCOPY --from=one /etc/passwd /one\nCOPY --from=two /etc/passwd /two\n",
    );
    let out = p
        .rbuild()
        .args(["build", "--progress", "rawjson", "--network", "none"])
        .arg(&p.ctx)
        .output()
        .expect("build");
    assert!(out.status.success());
    let events: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stderr)
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let vertex_of = |needle: &str| {
        events
            .iter()
            .find(|e| e["started"].as_str().is_some_and(|s| s.contains(needle)))
            .and_then(|e| e["vertex"].as_u64())
            .unwrap_or_else(|| panic!("no {needle}"))
    };
    let (one, two) = (vertex_of("# one"), vertex_of("# two"));
    let position =
        |pred: &dyn Fn(&serde_json::Value) -> bool| events.iter().position(pred).expect("event");
    let first_done =
        position(&|e| e["done"].is_number() && (e["vertex"] == one || e["vertex"] == two));
    // Both RUNs were underway (missed, i.e. about to run) before either finished.
    for v in [one, two] {
        let missed = position(&|e| e["vertex"] == v && e["miss"].is_string());
        assert!(
            missed < first_done,
            "stage {v} started only after the other finished"
        );
    }
}

#[test]
fn interrupting_a_build_exits_130_and_leaves_nothing_running() {
    let p = Project::new();
    p.dockerfile("FROM rbuild-test/busybox:1\nRUN echo started && sleep 41.5\n");
    let mut child = p
        .rbuild()
        .args(["build", "--progress", "plain", "--network", "none"])
        .arg(&p.ctx)
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let stderr = child.stderr.take().expect("stderr");
    let mut lines = std::io::BufRead::lines(std::io::BufReader::new(stderr));
    for line in lines.by_ref() {
        if line.expect("line").contains("started") {
            break;
        }
    }
    let pid = rustix::process::Pid::from_raw(child.id() as i32).expect("pid");
    rustix::process::kill_process(pid, rustix::process::Signal::INT).expect("SIGINT");
    let status = child.wait().expect("wait");
    assert_eq!(status.code(), Some(130));
    let sleepers = std::fs::read_dir("/proc")
        .expect("proc")
        .flatten()
        .filter(|e| {
            std::fs::read(e.path().join("cmdline")).is_ok_and(|c| c.starts_with(b"sleep\x0041.5"))
        })
        .count();
    assert_eq!(sleepers, 0, "the step survived the interrupt");
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
    assert!(
        !mounts.contains(p.root.to_string_lossy().as_ref()),
        "mounts left behind"
    );
}

#[test]
fn rbuild_run_runs_what_was_built() {
    let p = Project::new();
    p.dockerfile("FROM rbuild-test/busybox:1\nENV WHO=world\nCMD [\"/bin/sh\", \"-c\", \"echo hello $WHO; exit 4\"]\n");
    p.build_ok(&["-t", "test/hello:1"]);
    let out = p
        .rbuild()
        .args(["run", "--rm", "test/hello:1"])
        .output()
        .expect("run");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "hello world\n");
    assert_eq!(out.status.code(), Some(4));
    let out = p
        .rbuild()
        .args(["run", "test/hello:1", "cat", "/etc/hostname"])
        .output()
        .expect("run");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "buildkitsandbox\n");
}

#[test]
fn dockerfile_and_context_can_come_from_stdin() {
    let p = Project::new();
    p.write("data.txt", "from a tar\n");
    let tar = Command::new("tar")
        .arg("-C")
        .arg(&p.ctx)
        .args(["-cf", "-", "data.txt"])
        .output()
        .expect("tar");
    let dockerfile = p.dir.path().join("Dockerfile.stdin");
    std::fs::write(&dockerfile, "FROM rbuild-test/busybox:1\nCOPY data.txt /\n").expect("write");
    let dest = p.dir.path().join("out");
    let mut child = p
        .rbuild()
        .args(["build", "--progress", "quiet", "-f"])
        .arg(&dockerfile)
        .arg("-o")
        .arg(format!("type=local,dest={}", dest.display()))
        .arg("-")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn");
    std::io::Write::write_all(&mut child.stdin.take().expect("stdin"), &tar.stdout).expect("feed");
    let out = child.wait_with_output().expect("wait");
    assert!(out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stdout).starts_with("sha256:"),
        "-q prints the image id"
    );
    assert_eq!(read(&dest, "data.txt"), "from a tar\n");
}

#[test]
fn debug_graph_shows_the_needed_vertices() {
    let p = Project::new();
    p.dockerfile("FROM rbuild-test/busybox:1 AS unused\nRUN true\nFROM rbuild-test/busybox:1\nWORKDIR /w\nRUN echo hi\n");
    let out = rbuild()
        .args(["debug", "graph", "--format", "dot"])
        .arg(p.ctx.join("Dockerfile"))
        .output()
        .expect("graph");
    let dot = String::from_utf8_lossy(&out.stdout);
    assert!(dot.starts_with("digraph build {"), "{dot}");
    assert!(
        dot.contains("[stage-1 2/3] WORKDIR /w") && dot.contains("[stage-1 3/3] RUN echo hi"),
        "{dot}"
    );
    assert!(
        !dot.contains("RUN true"),
        "an unused stage is in the graph:\n{dot}"
    );
}

#[test]
fn a_context_file_changed_after_its_step_was_keyed_is_never_stored_under_the_old_key() {
    let p = Project::new();
    p.dockerfile("FROM rbuild-test/busybox:1\nRUN echo waiting && sleep 1\nCOPY f /f\n");
    p.write("f", "old\n");
    // The COPY's key hashes `f` when the build starts; `f` is rewritten while the RUN before
    // the COPY still sleeps.
    let (ok, progress) = build_while(&p, "RUN echo waiting", || {
        p.write("f", "new, written during the build\n")
    });
    assert!(!ok, "copied bytes its key did not hash:\n{progress}");
    assert!(
        progress.contains("cannot read `f`") && progress.contains("changed while the build"),
        "{progress}"
    );
    // Nothing was stored under the old content's key: the old content builds the old file.
    p.write("f", "old\n");
    let (_, rootfs) = p.build_rootfs(&[]);
    assert_eq!(read(&rootfs, "f"), "old\n");
    p.write("f", "new\n");
    let (_, rootfs) = p.build_rootfs(&[]);
    assert_eq!(read(&rootfs, "f"), "new\n");
}

/// Starts a build of `p`, waits for a progress line containing `marker`, calls `meanwhile`,
/// and returns whether the build succeeded and its whole progress.
fn build_while(p: &Project, marker: &str, meanwhile: impl FnOnce()) -> (bool, String) {
    let mut build = p
        .rbuild()
        .args(["build", "--progress", "plain", "--network", "none"])
        .arg(&p.ctx)
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let stderr = build.stderr.take().expect("stderr");
    let mut progress = String::new();
    let mut lines = std::io::BufRead::lines(std::io::BufReader::new(stderr));
    for line in lines.by_ref() {
        let line = line.expect("line");
        progress.push_str(&line);
        progress.push('\n');
        if line.contains(marker) {
            break;
        }
    }
    meanwhile();
    for line in lines {
        progress.push_str(&line.expect("line"));
        progress.push('\n');
    }
    (build.wait().expect("wait").success(), progress)
}

#[test]
fn a_context_file_changed_while_a_step_bind_mounts_it_fails_the_step() {
    let p = Project::new();
    p.dockerfile(
        "FROM rbuild-test/busybox:1\n\
         RUN --mount=type=bind,target=/ctx echo started && sleep 1 && cat /ctx/f > /out\n",
    );
    p.write("f", "old\n");
    let (ok, progress) = build_while(&p, "started", || p.write("f", "new\n"));
    assert!(!ok, "stored a result its key did not describe:\n{progress}");
    assert!(
        progress.contains("the build context's `f`") && progress.contains("changed while"),
        "{progress}"
    );
    p.write("f", "old\n");
    let (_, rootfs) = p.build_rootfs(&[]);
    assert_eq!(read(&rootfs, "out"), "old\n");
}

#[test]
fn copy_exclude_patterns_match_paths_below_each_source_as_in_buildkit() {
    let p = Project::new();
    for file in [
        "app/storage/views/v.html",
        "app/storage/cache/c",
        "app/main.txt",
        "dir1/a.1",
        "dir1/a.2",
        "dir1/dir2/a.1",
        "home.txt",
        "homer.sh",
    ] {
        p.write(file, file);
    }
    p.dockerfile(
        "FROM rbuild-test/busybox:1\n\
         COPY --exclude=storage/views app/ /app/\n\
         COPY --exclude=*.1 dir1 /d1/\n\
         COPY --exclude=**/*.1 dir1 /d2/\n\
         COPY --exclude=*.txt hom* /h/\n\
         COPY --exclude=app/main.txt . /all/\n",
    );
    let (progress, rootfs) = p.build_rootfs(&[]);
    let present = |rel: &str| rootfs.join(rel).exists();
    for (rel, wanted) in [
        // Relative to the source `app/`, not to the context.
        ("app/storage/cache/c", true),
        ("app/storage/views", false),
        ("app/main.txt", true),
        // `*.1` is one level deep, as in .dockerignore; `**/*.1` any.
        ("d1/a.1", false),
        ("d1/a.2", true),
        ("d1/dir2/a.1", true),
        ("d2/a.1", false),
        ("d2/dir2/a.1", false),
        ("d2/dir2", true),
        // A file source by its name.
        ("h/home.txt", false),
        ("h/homer.sh", true),
        // The context as the source: context paths.
        ("all/app/main.txt", false),
        ("all/app/storage/views/v.html", true),
    ] {
        assert_eq!(present(rel), wanted, "{rel}\n{progress}");
    }
}

#[test]
fn what_changes_no_hashed_byte_during_a_build_fails_nothing() {
    let p = Project::new();
    p.write(".dockerignore", "**/*.swp\n");
    p.write("f", "content\n");
    p.write("src/main.c", "int main;\n");
    // A new hard link and a chmod back move `f`'s ctime only: its bytes settle it. An editor's
    // ignored swap file appearing in a bind-mounted directory changes none of what the step
    // may see.
    p.dockerfile(
        "FROM rbuild-test/busybox:1\n\
         RUN --mount=type=bind,source=src,target=/src echo waiting && sleep 1 && cat /src/main.c > /built\n\
         COPY f /f\n",
    );
    let (ok, progress) = build_while(&p, "echo waiting", || {
        std::fs::hard_link(p.ctx.join("f"), p.dir.path().join("f-link")).expect("link");
        std::fs::write(p.ctx.join("src/.main.c.swp"), "swap").expect("swap file");
    });
    assert!(ok, "{progress}");
    let (progress, rootfs) = p.build_rootfs(&[]);
    assert_eq!(read(&rootfs, "f"), "content\n");
    assert_eq!(read(&rootfs, "built"), "int main;\n");
    assert_eq!(step_status(&progress, "COPY f /f"), "CACHED");
}

#[test]
fn prune_waits_for_running_builds_and_keeps_images_usable() {
    let p = Project::new();
    p.dockerfile("FROM rbuild-test/busybox:1\nRUN echo built > /b\nCMD [\"cat\", \"/b\"]\n");
    p.build_ok(&["-t", "test/pruned:1"]);
    // A build in progress holds the GC lock: prune waits for it.
    p.dockerfile("FROM rbuild-test/busybox:1\nRUN echo slow && sleep 1.5 && echo done > /slow\n");
    let (ok, progress) = build_while(&p, " slow", || {
        let prune = p.rbuild().args(["prune", "--all"]).output().expect("prune");
        assert!(
            prune.status.success(),
            "{}",
            String::from_utf8_lossy(&prune.stderr)
        );
        assert!(
            String::from_utf8_lossy(&prune.stderr).contains("waiting for the builds"),
            "prune did not wait"
        );
    });
    assert!(ok, "the build running during prune failed:\n{progress}");
    let du = p.rbuild().arg("du").output().expect("du");
    let du = String::from_utf8_lossy(&du.stdout);
    assert!(
        du.lines()
            .any(|l| l.starts_with("snapshots") && l.split_whitespace().nth(1) == Some("0")),
        "{du}"
    );
    let run = p
        .rbuild()
        .args(["run", "test/pruned:1"])
        .output()
        .expect("run");
    assert_eq!(String::from_utf8_lossy(&run.stdout), "built\n");
}

#[test]
fn onbuild_triggers_of_the_base_run_after_from_and_are_not_inherited() {
    let p = Project::new();
    p.dockerfile(
        "FROM rbuild-test/busybox:1\nONBUILD RUN echo triggered > /t\nONBUILD COPY f /from-child-context\n",
    );
    p.build_ok(&["-t", "test/onbuild-base:1"]);
    p.dockerfile("FROM test/onbuild-base:1\nRUN cat /t > /seen\n");
    p.write("f", "child context\n");
    let meta = p.dir.path().join("meta.json");
    let (progress, rootfs) = p.build_rootfs(&[
        "--metadata-file",
        meta.to_str().expect("utf8"),
        "-t",
        "test/onbuild-child:1",
    ]);
    assert_eq!(read(&rootfs, "seen"), "triggered\n", "{progress}");
    assert_eq!(read(&rootfs, "from-child-context"), "child context\n");
    // The child's config has no OnBuild: `rbuild save` + the config blob would show it; the
    // simplest check is a grandchild, which must not run the triggers again.
    p.dockerfile("FROM test/onbuild-child:1\nRUN test ! -e /t2 && echo ok > /grandchild\n");
    let progress = p.build_ok(&[]);
    assert!(
        !progress.contains("echo triggered"),
        "a grandchild ran the triggers:\n{progress}"
    );
}

#[test]
fn named_build_contexts_feed_from_copy_and_mounts() {
    let p = Project::new();
    let extra = p.dir.path().join("extra");
    std::fs::create_dir_all(extra.join("bin")).expect("mkdir");
    std::fs::write(extra.join("data.txt"), "from the named context\n").expect("write");
    std::fs::write(extra.join("bin/tool"), "#!/bin/sh\necho tool\n").expect("write");
    p.dockerfile(
        "FROM rbuild-test/busybox:1 AS base\nRUN echo base > /base\n\
         FROM extra AS files\n\
         FROM base\nCOPY --from=extra /data.txt /data.txt\nCOPY --from=files /bin/tool /tool\n\
         RUN --mount=type=bind,from=extra,target=/mnt cat /mnt/data.txt > /mounted\n\
         COPY --from=alias /etc/passwd /passwd-from-alias\n",
    );
    let extra_arg = format!("extra={}", extra.display());
    let (_, rootfs) = p.build_rootfs(&[
        "--build-context",
        &extra_arg,
        "--build-context",
        "alias=docker-image://rbuild-test/busybox:1",
    ]);
    assert_eq!(read(&rootfs, "data.txt"), "from the named context\n");
    assert_eq!(read(&rootfs, "tool"), "#!/bin/sh\necho tool\n");
    assert_eq!(read(&rootfs, "mounted"), "from the named context\n");
    assert!(read(&rootfs, "passwd-from-alias").starts_with("root:"));
    // The named context is keyed by content too: a change there misses, nothing else does.
    std::fs::write(extra.join("data.txt"), "changed\n").expect("write");
    let progress = p.build_ok(&[
        "--build-context",
        &extra_arg,
        "--build-context",
        "alias=docker-image://rbuild-test/busybox:1",
    ]);
    assert_eq!(step_status(&progress, "RUN echo base"), "CACHED");
    assert_eq!(
        step_status(&progress, "COPY --from=extra"),
        "cache miss: file data.txt changed"
    );
    let out = p.build(&["--build-context", "x=oci-layout:///nowhere"]);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("oci-layout://"),
        "unsupported kinds are named"
    );
}

#[test]
fn memory_limit_flags_reach_run_steps_and_an_oom_kill_is_named() {
    let p = Project::new();
    p.dockerfile("FROM rbuild-test/busybox:1\nRUN head -c 67108864 /dev/zero | tail > /dev/null\n");
    let out = p.build(&["--memory", "16m", "--pids-limit", "64"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("OOM killer") && err.contains("16777216 bytes (--memory)"),
        "{err}"
    );
    let out = p.build(&["--memory", "lots"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("Invalid size `lots`"));
}

#[test]
fn heredoc_names_cannot_leave_the_rootfs_and_a_single_one_is_the_destination_file() {
    let p = Project::new();
    p.dockerfile(
        "FROM rbuild-test/busybox:1\nCOPY <<app.conf /etc/app.conf\nsetting=1\napp.conf\n",
    );
    let (_, rootfs) = p.build_rootfs(&[]);
    assert_eq!(read(&rootfs, "etc/app.conf"), "setting=1\n");
    let victim = p.dir.path().join("victim");
    std::fs::write(&victim, "untouched").expect("write");
    p.dockerfile(&format!(
        "FROM rbuild-test/busybox:1\nCOPY <<{} /tmp/\nowned\n{}\n",
        victim.display(),
        victim.display()
    ));
    let out = p.build(&[]);
    assert!(
        !out.status.success(),
        "a heredoc named with a path was accepted"
    );
    assert_eq!(
        std::fs::read_to_string(&victim).expect("read"),
        "untouched",
        "a heredoc wrote a host file"
    );
}

#[test]
fn a_context_bind_mount_is_keyed_by_the_files_it_shows() {
    let p = Project::new();
    p.dockerfile("FROM rbuild-test/busybox:1\nRUN --mount=type=bind,source=src,target=/src cat /src/main.c > /built\n");
    p.write("src/main.c", "v1\n");
    let (_, first) = p.build_rootfs(&[]);
    assert_eq!(read(&first, "built"), "v1\n");
    p.write("src/main.c", "v2\n");
    let (progress, second) = p.build_rootfs(&[]);
    assert_eq!(
        step_status(&progress, "RUN --mount"),
        "cache miss: file mount0:src/main.c changed"
    );
    assert_eq!(read(&second, "built"), "v2\n");
}

#[test]
fn a_bind_mount_source_is_a_path_not_a_pattern() {
    let p = Project::new();
    p.dockerfile(
        "FROM rbuild-test/busybox:1\nRUN --mount=type=bind,source=data[1],target=/d cat /d/f > /built\n",
    );
    p.write("data[1]/f", "bracketed v1\n");
    p.write("data1/f", "plain\n");
    let (_, first) = p.build_rootfs(&[]);
    assert_eq!(read(&first, "built"), "bracketed v1\n");
    // The key follows the directory the step reads, not what `data[1]` matches as a glob.
    p.write("data[1]/f", "bracketed v2\n");
    let (progress, second) = p.build_rootfs(&[]);
    assert_eq!(
        step_status(&progress, "RUN --mount"),
        "cache miss: file mount0:data[1]/f changed"
    );
    assert_eq!(read(&second, "built"), "bracketed v2\n");
}

#[test]
fn secrets_from_env_and_source_ids_are_mounted_and_never_written_outside() {
    let p = Project::new();
    p.dockerfile(
        "FROM rbuild-test/busybox:1\n\
         RUN --mount=type=secret,id=token cat /run/secrets/token > /dev/null && echo ok1 > /one\n\
         RUN --mount=type=secret,source=npmrc,target=/root/.npmrc test -s /root/.npmrc && echo ok2 > /two\n",
    );
    let npmrc = p.dir.path().join("npmrc");
    std::fs::write(&npmrc, "registry=x\n").expect("write");
    let dest = p.dir.path().join("out-secrets");
    let out = p
        .rbuild()
        .args([
            "build",
            "--progress",
            "plain",
            "--network",
            "none",
            "--secret",
            "id=token,env=RBUILD_TEST_TOKEN",
            "--secret",
        ])
        .arg(format!("id=npmrc,src={}", npmrc.display()))
        .arg("-o")
        .arg(format!("type=local,dest={}", dest.display()))
        .arg(&p.ctx)
        .env("RBUILD_TEST_TOKEN", "t0ps3cret")
        .output()
        .expect("build");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(read(&dest, "one"), "ok1\n");
    assert_eq!(read(&dest, "two"), "ok2\n");
    // Not in the state root (layers, cache, run/), not in the build's output.
    let leaked = Command::new("grep")
        .args(["-rl", "t0ps3cret"])
        .arg(p.dir.path())
        .output()
        .expect("grep");
    let leaked = String::from_utf8_lossy(&leaked.stdout);
    assert!(
        leaked.trim().is_empty(),
        "the env secret reached disk: {leaked}"
    );
    let stray = std::fs::read_dir(std::env::temp_dir())
        .expect("tmp")
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with("rbuild-secret-")
        })
        .count();
    assert_eq!(stray, 0, "a secret directory was left in the temp dir");
}

#[test]
fn add_of_a_plain_file_over_an_existing_file_and_two_directory_sources() {
    let p = Project::new();
    p.dockerfile("FROM rbuild-test/busybox:1\nADD app.conf /etc/passwd\nCOPY a/ b/ /merged/\n");
    p.write("app.conf", "replaced\n");
    p.write("a/same.txt", "from a\n");
    p.write("b/same.txt", "from b\n");
    p.write("b/only-b.txt", "b\n");
    let (_, rootfs) = p.build_rootfs(&[]);
    assert_eq!(read(&rootfs, "etc/passwd"), "replaced\n");
    assert_eq!(read(&rootfs, "merged/same.txt"), "from b\n");
    assert_eq!(read(&rootfs, "merged/only-b.txt"), "b\n");
}

#[test]
fn a_writable_bind_of_the_context_is_refused_and_the_files_stay_untouched() {
    let p = Project::new();
    p.write("keep.txt", "mine\n");
    p.dockerfile(
        "FROM rbuild-test/busybox:1\nRUN --mount=type=bind,target=/ctx,rw rm -f /ctx/keep.txt\n",
    );
    let err = p.build_err(&[]);
    assert!(
        err.contains("writable (rw) bind of the build context"),
        "{err}"
    );
    assert_eq!(read(&p.ctx, "keep.txt"), "mine\n");
    // Read-only (the default) works, and the step cannot write through it.
    p.dockerfile("FROM rbuild-test/busybox:1\nRUN --mount=type=bind,target=/ctx cat /ctx/keep.txt > /seen && ! rm /ctx/keep.txt 2>/dev/null\n");
    let (_, rootfs) = p.build_rootfs(&[]);
    assert_eq!(read(&rootfs, "seen"), "mine\n");
    assert_eq!(read(&p.ctx, "keep.txt"), "mine\n");
}

#[test]
fn prune_sweeps_what_killed_builds_left() {
    let p = Project::new();
    p.dockerfile("FROM rbuild-test/busybox:1\nRUN true\n");
    p.build_ok(&[]);
    // What a kill -9 leaves: an unpack staging dir and a stdin context of a dead pid (this
    // test's pid space never reaches 4194304, the kernel's maximum).
    let dead = 4_194_304;
    let unpack = p
        .root
        .join(format!("snapshots-v1/unpack/layer-{dead}-x/fs"));
    let context = p.root.join(format!("context-{dead}-y"));
    let active = p.root.join(format!("snapshots-v1/active/{dead}-z/upper"));
    for dir in [&unpack, &context, &active] {
        std::fs::create_dir_all(dir).expect("mkdir");
    }
    let out = p.rbuild().arg("prune").output().expect("prune");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("3 stale"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    for dir in [&unpack, &context, &active] {
        assert!(!dir.exists(), "{} survived prune", dir.display());
    }
    // Without --all the build cache itself stays.
    let progress = p.build_ok(&[]);
    assert_eq!(step_status(&progress, "RUN true"), "CACHED");
}

#[test]
fn keep_storage_keeps_only_the_most_recently_used_entries_that_fit() {
    let p = Project::new();
    let build = |step: &str| {
        p.dockerfile(&format!("FROM rbuild-test/busybox:1\n{step}\n"));
        p.build_ok(&[])
    };
    let (small_old, large, small_new) = (
        "RUN echo old > /c",
        "RUN head -c 16777216 /dev/zero > /b",
        "RUN echo new > /a",
    );
    // Last used: small_old, then large, then small_new.
    build(small_old);
    age_cache_entries(&p.root);
    build(large);
    build(small_new);
    // 6 MiB holds the base and either small step, not the large one: once the large one does
    // not fit, the older small one goes too, although it would fit.
    let out = p
        .rbuild()
        .args(["prune", "--keep-storage", "6m"])
        .output()
        .expect("prune");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(step_status(&build(small_new), small_new), "CACHED");
    for step in [large, small_old] {
        let progress = build(step);
        assert!(
            step_status(&progress, step).starts_with("cache miss"),
            "{progress}"
        );
    }
}

/// Makes every cache entry of `root` look made and last used two days ago.
fn age_cache_entries(root: &Path) {
    let two_days_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(2 * 86_400);
    let secs = two_days_ago
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_secs();
    for entry in std::fs::read_dir(root.join("cache-v1/keys"))
        .expect("keys")
        .flatten()
    {
        let mut value: serde_json::Value =
            serde_json::from_slice(&std::fs::read(entry.path()).expect("read")).expect("json");
        value["created"] = secs.into();
        std::fs::write(entry.path(), value.to_string()).expect("write");
        std::fs::File::options()
            .write(true)
            .open(entry.path())
            .and_then(|f| f.set_modified(two_days_ago))
            .expect("age an entry");
    }
}

#[test]
fn prune_removes_the_least_recently_used_entries_first() {
    let p = Project::new();
    let step_a = "RUN head -c 8388608 /dev/zero > /a";
    let step_b = "RUN head -c 8388608 /dev/zero > /b";
    let build = |step: &str| {
        p.dockerfile(&format!("FROM rbuild-test/busybox:1\n{step}\n"));
        p.build_ok(&[])
    };
    let prune = |args: &[&str]| {
        let out = p.rbuild().arg("prune").args(args).output().expect("prune");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    // A is made two days ago and B now, but A is the one used last.
    build(step_a);
    age_cache_entries(&p.root);
    build(step_b);
    assert_eq!(step_status(&build(step_a), step_a), "CACHED");
    // 12 MiB holds the base image and one 8 MiB step: the recently used one stays.
    prune(&["--keep-storage", "12m"]);
    assert_eq!(step_status(&build(step_a), step_a), "CACHED");
    let progress = build(step_b);
    assert!(
        step_status(&progress, step_b).starts_with("cache miss"),
        "{progress}"
    );
    // `until=24h` removes what no build used in the last day, however recently it was made.
    age_cache_entries(&p.root);
    assert_eq!(step_status(&build(step_a), step_a), "CACHED");
    prune(&["--filter", "until=24h"]);
    assert_eq!(step_status(&build(step_a), step_a), "CACHED");
    let progress = build(step_b);
    assert!(
        step_status(&progress, step_b).starts_with("cache miss"),
        "{progress}"
    );
}

#[test]
fn entries_written_before_a_sync_in_an_earlier_boot_are_misses_and_pruned() {
    let p = Project::new();
    p.dockerfile("FROM rbuild-test/busybox:1\nRUN echo one > /one\n");
    p.build_ok(&[]);
    // What a power loss may leave: entries written before the sync that covered their
    // snapshots, in a boot that is over.
    let keys = p.root.join("cache-v1/keys");
    let mark_foreign = || {
        for entry in std::fs::read_dir(&keys).expect("keys").flatten() {
            let mut value: serde_json::Value =
                serde_json::from_slice(&std::fs::read(entry.path()).expect("read")).expect("json");
            value["boot"] = "00000000-0000-0000-0000-000000000000".into();
            std::fs::write(entry.path(), value.to_string()).expect("write");
        }
    };
    mark_foreign();
    let progress = p.build_ok(&[]);
    assert!(
        step_status(&progress, "RUN echo one").starts_with("cache miss"),
        "{progress}"
    );
    // Written in this boot: trusted (whether or not the sync has marked it durable yet).
    let progress = p.build_ok(&[]);
    assert_eq!(step_status(&progress, "RUN echo one"), "CACHED");
    mark_foreign();
    let out = p.rbuild().arg("prune").output().expect("prune");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        std::fs::read_dir(&keys).expect("keys").count(),
        0,
        "prune removes the untrusted entries: {}",
        String::from_utf8_lossy(&out.stdout)
    );
}

/// Every committed snapshot's copy of `rel` (below its `fs/`): (inode, link count, mtime).
fn snapshot_copies(root: &Path, rel: &str) -> Vec<(u64, u64, i64)> {
    use std::os::unix::fs::MetadataExt;
    let mut out = Vec::new();
    for entry in std::fs::read_dir(root.join("snapshots-v1/committed")).expect("snapshots") {
        let path = entry.expect("entry").path().join("fs").join(rel);
        if let Ok(meta) = std::fs::symlink_metadata(&path) {
            out.push((meta.ino(), meta.nlink(), meta.mtime()));
        }
    }
    out.sort();
    out
}

/// The SIZE column of `rbuild du`'s line `what`, in bytes.
fn du_bytes(p: &Project, what: &str) -> f64 {
    let out = p.rbuild().arg("du").output().expect("du");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let line = text
        .lines()
        .find(|l| l.starts_with(what))
        .unwrap_or_else(|| panic!("no `{what}` in:\n{text}"));
    let size = line.split_whitespace().last().expect("size");
    let digits = size.trim_end_matches(|c: char| c.is_ascii_alphabetic());
    let unit = match &size[digits.len()..] {
        "B" => 1.0,
        "kB" => 1e3,
        "MB" => 1e6,
        "GB" => 1e9,
        other => panic!("unit `{other}` in {line}"),
    };
    digits.parse::<f64>().expect("number") * unit
}

#[test]
fn du_and_prune_count_a_file_linked_into_two_snapshots_once() {
    let p = Project::new();
    p.dockerfile(
        "FROM rbuild-test/busybox:1 AS s\nRUN head -c 16777216 /dev/urandom > /big\n\
         FROM rbuild-test/busybox:1\nCOPY --from=s /big /big\n",
    );
    p.build_ok(&[]);
    let copies = snapshot_copies(&p.root, "big");
    assert!(
        copies.len() == 2 && copies[0].0 == copies[1].0,
        "the COPY did not link the stage's file: {copies:?}"
    );
    // 16 MiB once, with the base image's few MB; twice would be over 33 MB.
    let snapshots = du_bytes(&p, "snapshots");
    assert!(
        (16.7e6..26e6).contains(&snapshots),
        "snapshots take {snapshots} bytes"
    );
    // Room for the base and one copy of the file keeps both entries: the file is paid once.
    let out = p
        .rbuild()
        .args(["prune", "--keep-storage", "24m"])
        .output()
        .expect("prune");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let progress = p.build_ok(&[]);
    assert_eq!(step_status(&progress, "COPY --from=s /big /big"), "CACHED");
    assert_eq!(step_status(&progress, "RUN head -c"), "CACHED");
}

/// The image digest of a `-t` build.
fn built_digest(p: &Project, root: &Path, extra: &[&str]) -> String {
    let mut args = vec!["-t", "linked"];
    args.extend(extra);
    metadata_digest(p, root, &args)
}

#[test]
fn a_context_copy_links_the_unchanged_files_of_its_last_result() {
    let p = Project::new();
    p.dockerfile("FROM rbuild-test/busybox:1\nCOPY . /src\nRUN cat /src/edit.txt > /seen\n");
    p.write("keep.txt", "keep\n");
    p.write("dir/big.bin", &"0123456789".repeat(100_000));
    p.write("edit.txt", "v1\n");
    built_digest(&p, &p.root, &[]);
    p.write("edit.txt", "v2\n");
    let edited = built_digest(&p, &p.root, &[]);
    let keep = snapshot_copies(&p.root, "src/keep.txt");
    assert_eq!(keep.len(), 2, "one copy per COPY result: {keep:?}");
    assert_eq!(
        keep[0].0, keep[1].0,
        "the unchanged file is linked: {keep:?}"
    );
    assert_eq!(keep[0].1, 2);
    assert_eq!(snapshot_copies(&p.root, "src/dir/big.bin")[0].1, 2);
    let edit = snapshot_copies(&p.root, "src/edit.txt");
    assert!(
        edit.len() == 2 && edit[0].0 != edit[1].0 && edit[0].1 == 1,
        "{edit:?}"
    );

    // The same image as copying everything on a fresh state root.
    let other = p.dir.path().join("other-state");
    load_base(&other);
    assert_eq!(edited, built_digest(&p, &other, &[]));
    assert_eq!(snapshot_copies(&other, "src/keep.txt")[0].1, 1);

    // A touched file keeps its content but not its mtime: copied, with the new mtime.
    let touched = p.ctx.join("keep.txt");
    let status = Command::new("touch")
        .args(["-d", "2011-11-11T11:11:11Z"])
        .arg(&touched)
        .status()
        .expect("touch");
    assert!(status.success());
    p.write("edit.txt", "v3\n");
    built_digest(&p, &p.root, &[]);
    let keep = snapshot_copies(&p.root, "src/keep.txt");
    let fresh: Vec<_> = keep.iter().filter(|c| c.2 == 1_321_009_871).collect();
    assert!(fresh.len() == 1 && fresh[0].1 == 1, "{keep:?}");

    // --no-cache reuses nothing of earlier builds.
    p.write("edit.txt", "v4\n");
    built_digest(&p, &p.root, &["--no-cache"]);
    let keep = snapshot_copies(&p.root, "src/keep.txt");
    assert_eq!(keep.len(), 4, "{keep:?}");
    assert!(
        keep.iter().filter(|c| c.1 == 1).count() == 2,
        "the --no-cache result is a fresh copy: {keep:?}"
    );
}

#[test]
fn copy_from_a_stage_links_its_files_but_never_joins_two_paths() {
    let p = Project::new();
    p.dockerfile(
        "FROM rbuild-test/busybox:1 AS a\nRUN echo data > /out && echo pair > /h1 && ln /h1 /h2 && echo own > /own\n\
         FROM a AS b\nCOPY --from=a /own /own-copy\n\
         FROM rbuild-test/busybox:1\nCOPY --from=a /out /out1\nCOPY --from=a /h1 /h2 /pair/\n\
         COPY --from=a /out /again\nCOPY --from=b /own-copy /own-final\n",
    );
    let (_, rootfs) = p.build_rootfs(&[]);
    let out = snapshot_copies(&p.root, "out");
    let out1 = snapshot_copies(&p.root, "out1");
    assert!(
        out.len() == 1 && out1.len() == 1 && out[0].0 == out1[0].0 && out1[0].1 == 2,
        "the copied file is the stage's file: {out:?} {out1:?}"
    );
    let (h1, h2) = (
        snapshot_copies(&p.root, "pair/h1"),
        snapshot_copies(&p.root, "pair/h2"),
    );
    assert!(h1[0].0 != h2[0].0, "a copy makes two files: {h1:?} {h2:?}");
    use std::os::unix::fs::MetadataExt;
    for name in ["pair/h1", "pair/h2"] {
        assert_eq!(read(&rootfs, name), "pair\n");
        let meta = std::fs::symlink_metadata(rootfs.join(name)).expect("exported");
        assert_eq!(meta.nlink(), 1, "{name} is no hard link in the image");
    }
    assert_eq!(read(&rootfs, "out1"), "data\n");
    assert_eq!(read(&rootfs, "again"), "data\n");
    assert_eq!(read(&rootfs, "own-final"), "own\n");
    // No view ever holds two paths of one inode: a stage file already linked once is copied
    // (the final stage shows /out1 and /again), and so is a file of the destination's own
    // chain (stage b is built on a).
    let again = snapshot_copies(&p.root, "again");
    assert!(again.len() == 1 && again[0].1 == 1, "{again:?} {out:?}");
    let (own, own_copy) = (
        snapshot_copies(&p.root, "own"),
        snapshot_copies(&p.root, "own-copy"),
    );
    assert!(
        own.len() == 1 && own_copy.len() == 1 && own[0].0 != own_copy[0].0,
        "{own:?} {own_copy:?}"
    );
}

#[test]
fn a_context_copy_never_links_a_file_that_a_later_source_replaced() {
    use sha2::Digest as _;
    let p = Project::new();
    p.dockerfile("FROM rbuild-test/busybox:1\nCOPY a/ b/ /app/\n");
    // Two contents whose digests sort one way: a manifest keeping the larger digest for the
    // path (and not the last write) would vouch for the wrong file.
    let (mut x, mut y) = ("contents one\n".to_string(), "contents two\n".to_string());
    if sha2::Sha256::digest(x.as_bytes()) < sha2::Sha256::digest(y.as_bytes()) {
        std::mem::swap(&mut x, &mut y);
    }
    let pin = |rel: &str| {
        let status = Command::new("touch")
            .args(["-d", "2001-01-01T00:00:00Z"])
            .arg(p.ctx.join(rel))
            .status()
            .expect("touch");
        assert!(status.success());
    };
    p.write("a/config", &x);
    p.write("b/config", &y);
    pin("a/config");
    pin("b/config");
    let (_, first) = p.build_rootfs(&[]);
    assert_eq!(read(&first, "app/config"), y, "the later source wins");
    // Same sizes and mtimes; now b holds what a held.
    p.write("a/config", "contents six\n");
    p.write("b/config", &x);
    pin("a/config");
    pin("b/config");
    let (_, second) = p.build_rootfs(&[]);
    assert_eq!(read(&second, "app/config"), x);
}

#[test]
fn an_image_only_named_keeps_its_layers_as_recipes_until_they_are_read() {
    let p = Project::new();
    p.dockerfile("FROM rbuild-test/busybox:1\nRUN echo lazy > /l\nCMD [\"cat\", \"/l\"]\n");
    let progress = p.build_ok(&["-t", "test/lazy:1"]);
    assert!(progress.contains("naming to test/lazy:1"), "{progress}");
    let recipes: Vec<String> = std::fs::read_dir(p.root.join("content-v1/lazy"))
        .expect("a recipe directory")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(recipes.len(), 1, "one step layer: {recipes:?}");
    let hex = recipes[0].trim_end_matches(".json");
    let blob = p.root.join("content-v1/sha256").join(hex);
    assert!(!blob.exists(), "the layer is not written at build time");

    // `save` makes it; `load` into another state root checks every digest.
    let archive = p.dir.path().join("lazy.tar");
    let save = p
        .rbuild()
        .args(["save", "test/lazy:1", "-o"])
        .arg(&archive)
        .output()
        .expect("save");
    assert!(
        save.status.success(),
        "{}",
        String::from_utf8_lossy(&save.stderr)
    );
    assert!(blob.is_file(), "made when first read");
    let other = p.dir.path().join("other-state");
    for args in [
        vec!["load", "-i", archive.to_str().expect("utf-8")],
        vec!["run", "test/lazy:1"],
    ] {
        let out = rbuild()
            .arg("--root")
            .arg(&other)
            .args(&args)
            .output()
            .expect("rbuild");
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        if args[0] == "run" {
            assert_eq!(String::from_utf8_lossy(&out.stdout), "lazy\n");
        }
    }
}

#[test]
fn a_context_bind_mount_shows_only_what_dockerignore_admits() {
    let p = Project::new();
    p.dockerfile(
        "FROM rbuild-test/busybox:1\n\
         RUN --mount=type=bind,target=/ctx cd /ctx && find . | sort > /seen && stat -c '%a %u' private > /private-dir\n\
         RUN --mount=type=bind,source=deep,target=/deep find /deep | sort > /deep-seen\n\
         RUN --mount=type=bind,source=logs,target=/logs find /logs | sort > /logs-seen\n\
         COPY logs /copied-logs\n\
         COPY log* /globbed/\n",
    );
    p.write(
        ".dockerignore",
        "secret.txt\nlogs\n!logs/keep.log\n**/*.tmp\nprivate/hidden\n*.key\ncache\n!cache/keep\n",
    );
    // A name that is not UTF-8 is hidden by its real bytes.
    std::fs::write(
        p.ctx
            .join(<std::ffi::OsStr as std::os::unix::ffi::OsStrExt>::from_bytes(b"secret\xff.key")),
        "k\n",
    )
    .expect("write");
    p.write("secret.txt", "do not show\n");
    p.write("app.c", "int main;\n");
    p.write("logs/keep.log", "kept\n");
    p.write("logs/drop.log", "dropped\n");
    // Excluded directories where the exception admits nothing: not there at all.
    p.write("logs/old/x.log", "old\n");
    p.write("cache/other", "o\n");
    p.write("deep/a/b.tmp", "temp\n");
    p.write("deep/a/c.txt", "c\n");
    p.write("private/hidden", "h\n");
    p.write("private/shown", "s\n");
    let private = p.ctx.join("private");
    std::fs::set_permissions(
        &private,
        std::os::unix::fs::PermissionsExt::from_mode(0o700),
    )
    .expect("chmod");
    std::os::unix::fs::chown(&private, Some(1234), None).expect("chown");
    let (_, rootfs) = p.build_rootfs(&[]);
    assert_eq!(
        read(&rootfs, "seen"),
        ".\n./.dockerignore\n./Dockerfile\n./app.c\n./deep\n./deep/a\n./deep/a/c.txt\n./logs\n./logs/keep.log\n./private\n./private/shown\n"
    );
    // A subdirectory as the source: the rules still apply by context path.
    assert_eq!(
        read(&rootfs, "deep-seen"),
        "/deep\n/deep/a\n/deep/a/c.txt\n"
    );
    // An excluded directory with an admitted file below it is there, holding just that file,
    // as a mount source, a COPY source and a wildcard match (as in BuildKit).
    assert_eq!(read(&rootfs, "logs-seen"), "/logs\n/logs/keep.log\n");
    assert_eq!(read(&rootfs, "copied-logs/keep.log"), "kept\n");
    assert!(!rootfs.join("copied-logs/old").exists());
    assert_eq!(read(&rootfs, "globbed/keep.log"), "kept\n");
    assert_eq!(
        read(&rootfs, "private-dir"),
        "700 1234\n",
        "a directory holding hidden entries keeps its owner and mode"
    );
    // An ignored file changing neither misses the cache nor shows.
    p.write("secret.txt", "still hidden\n");
    let (progress, _) = p.build_rootfs(&[]);
    assert_eq!(
        step_status(&progress, "RUN --mount=type=bind,target=/ctx"),
        "CACHED"
    );
    // Nothing is left mounted or behind in the state root.
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
    assert!(
        !mounts.contains(p.root.to_str().expect("utf-8")),
        "{mounts}"
    );
    let leftovers: Vec<_> = std::fs::read_dir(p.root.join("run/contexts"))
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    assert!(leftovers.is_empty(), "{leftovers:?}");

    // One where the exception admits nothing is not a source.
    p.dockerfile("FROM rbuild-test/busybox:1\nCOPY cache /c\n");
    let err = p.build_err(&[]);
    assert!(
        err.contains("\"/cache\" not found") && err.contains("excluded by .dockerignore"),
        "{err}"
    );
}

#[test]
fn tty_progress_draws_running_steps_live_and_collapses_finished_ones() {
    let p = Project::new();
    p.dockerfile(
        "FROM rbuild-test/busybox:1\nRUN for i in 1 2 3 4; do echo tick$i; sleep 0.3; done\n",
    );
    // A pseudo-terminal, as a developer's shell gives: `script` runs the build on one.
    // script(1) runs the command with $SHELL -c: a known shell, and quoted paths.
    let quote = |p: &Path| format!("'{}'", p.display().to_string().replace('\'', "'\\''"));
    let command = format!(
        "{} --root {} build --progress tty --network none -t test/tty:1 {}",
        quote(Path::new(env!("CARGO_BIN_EXE_rbuild"))),
        quote(&p.root),
        quote(&p.ctx)
    );
    let out = Command::new(rbuild_test::require_tool("script", "bsdutils"))
        .env("SHELL", "/bin/sh")
        .args(["-qfec", &command, "/dev/null"])
        .stdin(Stdio::null())
        .output()
        .expect("script");
    let screen = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{screen}");
    // Live: the running step's spinner shows its latest output line and is redrawn in place.
    assert!(
        screen.contains("RUN for i in 1 2 3 4") && screen.contains("| tick"),
        "{screen}"
    );
    assert!(
        screen.contains("\u{1b}["),
        "no terminal control sequences:\n{screen}"
    );
    // Collapsed: the step once done is one line with its time (` => NAME 1.2s`); no
    // plain-mode lines.
    let done = " => [stage-0 2/2] RUN for i in 1 2 3 4; do echo tick$i; sleep 0.3; done ";
    let took = screen
        .split(done)
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_default();
    assert!(
        took.strip_suffix('s')
            .is_some_and(|t| t.parse::<f64>().is_ok_and(|t| t >= 1.0)),
        "no collapsed line with the step's time (got {took:?}):\n{screen}"
    );
    assert!(!screen.contains("#2 [stage-0"), "{screen}");
    assert!(
        screen.contains("image sha256:"),
        "no summary line:\n{screen}"
    );
}
