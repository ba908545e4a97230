//! rbuild-test: fixtures for tests that use real components.
//!
//! - [`shared_dir`], [`golden_base`]: the shared corpora beside the repository.
//! - [`require_tool`]: a missing tool fails the test with the Debian package to install, never a
//!   silent skip.
//! - [`Dockerd`]: a private dockerd (own data-root, exec-root and socket, no iptables, no bridge)
//!   started for a test and always stopped, with its mounts, when dropped.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The `shared/` folder beside the repository (read-only corpora and tools).
pub fn shared_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared");
    assert!(
        dir.is_dir(),
        "shared/ not found beside the repository at {}",
        dir.display()
    );
    dir
}

/// A file of the golden corpus' base images (`RBUILD_GOLDEN`, default `shared/conformance/golden`).
pub fn golden_base(file: &str) -> PathBuf {
    let root = std::env::var_os("RBUILD_GOLDEN")
        .map(PathBuf::from)
        .unwrap_or_else(|| shared_dir().join("conformance/golden"));
    let path = root.join("base").join(file);
    assert!(
        path.is_file(),
        "golden base image {} not found (set RBUILD_GOLDEN)",
        path.display()
    );
    path
}

/// Finds `tool` on PATH (or at an absolute path), or panics naming the package to install.
pub fn require_tool(tool: &str, package: &str) -> PathBuf {
    if Path::new(tool).is_absolute() && Path::new(tool).exists() {
        return PathBuf::from(tool);
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    for dir in std::env::split_paths(&path) {
        let candidate = dir.join(tool);
        if candidate.is_file() {
            return candidate;
        }
    }
    panic!("`{tool}` is required by this test: install the Debian package `{package}` (apt-get install {package}); .ci/run installs it in CI");
}

/// Panics unless running as root (namespaces, overlay, dockerd).
pub fn require_root() {
    assert!(
        rustix::process::geteuid().is_root(),
        "this test needs root (mounts, namespaces, dockerd); CI runs as root"
    );
}

/// A private dockerd for one test. Stopped (SIGTERM, then SIGKILL after 20 s) on drop.
#[derive(Debug)]
pub struct Dockerd {
    child: Child,
    dir: tempfile::TempDir,
    socket: PathBuf,
    client: PathBuf,
}

impl Dockerd {
    /// Starts dockerd (Debian `docker.io`) and waits until it answers.
    pub fn start() -> Dockerd {
        require_root();
        let dockerd = require_tool("/usr/sbin/dockerd", "docker.io");
        let client = require_tool("/usr/bin/docker", "docker.io");
        require_tool("containerd", "containerd");
        let dir = tempfile::Builder::new()
            .prefix("rbuild-dockerd-")
            .tempdir()
            .unwrap_or_else(|e| panic!("cannot create a dockerd directory: {e}"));
        let socket = dir.path().join("docker.sock");
        let log = std::fs::File::create(dir.path().join("dockerd.log"))
            .unwrap_or_else(|e| panic!("cannot create the dockerd log: {e}"));
        let child = Command::new(dockerd)
            .arg("--data-root")
            .arg(dir.path().join("data"))
            .arg("--exec-root")
            .arg(dir.path().join("exec"))
            .arg("--pidfile")
            .arg(dir.path().join("docker.pid"))
            .arg("-H")
            .arg(format!("unix://{}", socket.display()))
            .args([
                "--iptables=false",
                "--ip6tables=false",
                "--bridge=none",
                "--log-level=warn",
            ])
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap_or_else(|e| panic!("log: {e}")))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start dockerd: {e}"));
        let mut daemon = Dockerd {
            child,
            dir,
            socket,
            client,
        };
        daemon.wait_ready();
        daemon
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("dockerd exited early ({status}); log:\n{}", self.log());
            }
            if self.socket.exists()
                && self
                    .docker(&["version", "--format", "{{.Server.Version}}"])
                    .status
                    .success()
            {
                return;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        panic!("dockerd did not answer within 60 s; log:\n{}", self.log());
    }

    /// The daemon's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("dockerd.log")).unwrap_or_default()
    }

    /// `unix://...` address of the daemon, for `DOCKER_HOST`.
    pub fn host(&self) -> String {
        format!("unix://{}", self.socket.display())
    }

    /// Runs the docker client against this daemon.
    pub fn docker(&self, args: &[&str]) -> std::process::Output {
        Command::new(&self.client)
            .env("DOCKER_HOST", self.host())
            .env("DOCKER_CONFIG", self.dir.path().join("client"))
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("cannot run docker: {e}"))
    }

    /// Runs docker and returns stdout, panicking with stderr on failure.
    pub fn docker_ok(&self, args: &[&str]) -> String {
        let out = self.docker(args);
        assert!(
            out.status.success(),
            "docker {args:?} failed: {}\ndockerd log:\n{}",
            String::from_utf8_lossy(&out.stderr),
            self.log()
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Drop for Dockerd {
    fn drop(&mut self) {
        let pid = rustix::process::Pid::from_child(&self.child);
        let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        // Anything dockerd left mounted under its roots (overlay, shm, netns) goes before the
        // directory is removed, so the test leaves no mounts behind.
        unmount_below(self.dir.path());
    }
}

/// Detaches every mount at or below `dir`, deepest first.
pub fn unmount_below(dir: &Path) {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let prefix = dir.to_string_lossy().into_owned();
    let mut targets: Vec<&str> = info
        .lines()
        .filter_map(|line| line.split(' ').nth(4))
        .filter(|target| target.starts_with(&prefix))
        .collect();
    targets.sort_by_key(|t| std::cmp::Reverse(t.len()));
    for target in targets {
        let _ = rustix::mount::unmount(target, rustix::mount::UnmountFlags::DETACH);
    }
}

/// Whether `binary` is a 64-bit little-endian ELF without a program interpreter (PT_INTERP),
/// i.e. one that runs in a rootfs without a libc.
pub fn is_static_elf(binary: &[u8]) -> bool {
    let u16_at = |o: usize| {
        binary
            .get(o..o + 2)
            .map(|b| u16::from_le_bytes([b[0], b[1]]) as usize)
    };
    let u64_at = |o: usize| {
        binary
            .get(o..o + 8)
            .and_then(|b| b.try_into().ok())
            .map(|b: [u8; 8]| u64::from_le_bytes(b) as usize)
    };
    if !binary.starts_with(b"\x7fELF\x02\x01") {
        return false;
    }
    let (Some(phoff), Some(size), Some(count)) = (u64_at(0x20), u16_at(0x36), u16_at(0x38)) else {
        return false;
    };
    (0..count).all(|i| {
        let at = phoff + i * size;
        binary.get(at..at + 4) != Some(&3u32.to_le_bytes()[..])
    })
}

/// Users and groups of [`busybox_rootfs`]: root, `builder` (1000:1000, also in `extra` 2000),
/// and `nobody` (65534).
pub const BUSYBOX_PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\n\
builder:x:1000:1000:builder:/home/builder:/bin/sh\n\
nobody:x:65534:65534:nobody:/nonexistent:/bin/false\n";
pub const BUSYBOX_GROUP: &str =
    "root:x:0:\nbuilder:x:1000:\nextra:x:2000:builder\nnogroup:x:65534:\n";

/// Fills `dir` with a minimal rootfs from Debian's busybox-static: `/bin/busybox`, a symlink
/// in `/bin` for every applet, `/etc/passwd` and `/etc/group` ([`BUSYBOX_PASSWD`]), `/root`,
/// `/home/builder` (owned by 1000) and `/tmp` (1777). No `/dev`, `/proc`, `/sys`: like the
/// golden base image, those are left for the sandbox to make.
pub fn busybox_rootfs(dir: &Path) {
    use std::os::unix::fs::{symlink, PermissionsExt};
    let busybox = require_tool("/bin/busybox", "busybox-static");
    let list = Command::new(&busybox)
        .arg("--list")
        .output()
        .unwrap_or_else(|e| panic!("cannot run busybox: {e}"));
    let binary = std::fs::read(&busybox).unwrap_or_default();
    assert!(
        list.status.success() && is_static_elf(&binary),
        "/bin/busybox must be the static build: install the Debian package `busybox-static`"
    );
    fn io(what: &str, e: std::io::Error) -> ! {
        panic!("busybox rootfs: cannot {what}: {e}")
    }
    for sub in ["bin", "etc", "root", "home/builder", "tmp"] {
        std::fs::create_dir_all(dir.join(sub)).unwrap_or_else(|e| io("mkdir", e));
    }
    std::fs::copy(&busybox, dir.join("bin/busybox")).unwrap_or_else(|e| io("copy busybox", e));
    for applet in String::from_utf8_lossy(&list.stdout).lines() {
        if applet != "busybox" && !applet.is_empty() {
            let _ = symlink("busybox", dir.join("bin").join(applet));
        }
    }
    std::fs::write(dir.join("etc/passwd"), BUSYBOX_PASSWD)
        .unwrap_or_else(|e| io("write passwd", e));
    std::fs::write(dir.join("etc/group"), BUSYBOX_GROUP).unwrap_or_else(|e| io("write group", e));
    std::fs::set_permissions(dir.join("tmp"), std::fs::Permissions::from_mode(0o1777))
        .unwrap_or_else(|e| io("chmod /tmp", e));
    std::os::unix::fs::chown(dir.join("home/builder"), Some(1000), Some(1000))
        .unwrap_or_else(|e| io("chown /home/builder", e));
}

#[cfg(test)]
mod tests {
    #[test]
    fn static_and_dynamic_binaries_are_told_apart() {
        let sh = std::fs::read("/bin/sh").expect("/bin/sh");
        assert!(
            !super::is_static_elf(&sh),
            "/bin/sh is dynamically linked on Debian"
        );
        assert!(!super::is_static_elf(b"#!/bin/sh\n"));
        if let Ok(busybox) = std::fs::read("/bin/busybox") {
            assert!(
                super::is_static_elf(&busybox),
                "/bin/busybox should be busybox-static's"
            );
        }
    }
}

/// How a test [`Registry`] authenticates.
#[derive(Debug, Clone)]
pub enum RegistryAuth {
    None,
    /// htpasswd basic auth with this file (bcrypt entries, `htpasswd -Bbn`).
    Htpasswd(PathBuf),
    /// Bearer tokens from `realm`, signed by the key of `cert` (x5c), for `service`/`issuer`.
    Token {
        realm: String,
        service: String,
        issuer: String,
        cert: PathBuf,
    },
}

/// Debian's `docker-registry` on 127.0.0.1 at a free port, with its own storage; stopped on drop.
#[derive(Debug)]
pub struct Registry {
    child: Child,
    dir: tempfile::TempDir,
    pub port: u16,
}

impl Registry {
    /// Starts the registry (plain HTTP) and waits until it listens.
    pub fn start(auth: RegistryAuth) -> Registry {
        Registry::start_with(auth, None)
    }

    /// Starts the registry, serving HTTPS with `tls` = (certificate, key) when given.
    pub fn start_with(auth: RegistryAuth, tls: Option<(&Path, &Path)>) -> Registry {
        let binary = require_tool("docker-registry", "docker-registry");
        let dir = tempfile::Builder::new()
            .prefix("rbuild-registry-")
            .tempdir()
            .unwrap_or_else(|e| panic!("cannot create a registry directory: {e}"));
        let port = free_port();
        let tls_yaml = tls.map_or_else(String::new, |(cert, key)| {
            format!(
                "  tls:\n    certificate: {}\n    key: {}\n",
                cert.display(),
                key.display()
            )
        });
        let auth_yaml = match &auth {
            RegistryAuth::None => String::new(),
            RegistryAuth::Htpasswd(file) => format!(
                "auth:\n  htpasswd:\n    realm: rbuild-test\n    path: {}\n",
                file.display()
            ),
            RegistryAuth::Token {
                realm,
                service,
                issuer,
                cert,
            } => format!(
                "auth:\n  token:\n    realm: {realm}\n    service: {service}\n    issuer: {issuer}\n    rootcertbundle: {}\n",
                cert.display()
            ),
        };
        let config = format!(
            "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{port}\n{tls_yaml}{auth_yaml}",
            dir.path().join("data").display()
        );
        let config_path = dir.path().join("config.yml");
        std::fs::write(&config_path, config).unwrap_or_else(|e| panic!("registry config: {e}"));
        let log = std::fs::File::create(dir.path().join("registry.log"))
            .unwrap_or_else(|e| panic!("cannot create the registry log: {e}"));
        let child = Command::new(binary)
            .arg("serve")
            .arg(&config_path)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap_or_else(|e| panic!("log: {e}")))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start docker-registry: {e}"));
        let mut registry = Registry { child, dir, port };
        registry.wait_ready();
        registry
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "docker-registry exited early ({status}); log:\n{}",
                    self.log()
                );
            }
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!(
            "docker-registry did not listen within 30 s; log:\n{}",
            self.log()
        );
    }

    /// `127.0.0.1:PORT`.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("registry.log")).unwrap_or_default()
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A TCP port free on 127.0.0.1 right now (the kernel picks it).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or_else(|e| panic!("cannot find a free port: {e}"))
}

/// Copies the golden busybox base image into `dest` (`docker://...`) with skopeo.
pub fn skopeo_seed_busybox(dest: &str, creds: Option<&str>) {
    let skopeo = require_tool("skopeo", "skopeo");
    let mut command = Command::new(skopeo);
    command.args(["copy", "-q", "--dest-tls-verify=false"]);
    if let Some(creds) = creds {
        command.args(["--dest-creds", creds]);
    }
    let out = command
        .arg(format!(
            "oci-archive:{}",
            golden_base("busybox-oci.tar").display()
        ))
        .arg(dest)
        .output()
        .unwrap_or_else(|e| panic!("cannot run skopeo: {e}"));
    assert!(
        out.status.success(),
        "skopeo copy to {dest} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Podman's Docker-compatible API service (`podman system service`) with a store of its own,
/// for one test; stopped on drop. Containers run with runc and cgroupfs (no systemd here, and
/// crun refuses hybrid cgroup hierarchies) and rlimits within this machine's hard limits.
#[derive(Debug)]
pub struct PodmanService {
    child: Child,
    dir: tempfile::TempDir,
    socket: PathBuf,
}

impl PodmanService {
    pub fn start() -> PodmanService {
        require_root();
        require_tool("podman", "podman");
        require_tool("runc", "runc");
        let dir = tempfile::Builder::new()
            .prefix("rbuild-podman-")
            .tempdir()
            .unwrap_or_else(|e| panic!("cannot create a podman directory: {e}"));
        let socket = dir.path().join("podman.sock");
        let log = std::fs::File::create(dir.path().join("podman.log"))
            .unwrap_or_else(|e| panic!("cannot create the podman log: {e}"));
        let child = Command::new("podman")
            .args(Self::global_args(dir.path()))
            .args(["system", "service", "--time=0"])
            .arg(format!("unix://{}", socket.display()))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap_or_else(|e| panic!("log: {e}")))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start podman system service: {e}"));
        let mut service = PodmanService { child, dir, socket };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(Some(status)) = service.child.try_wait() {
                panic!(
                    "podman system service exited early ({status}); log:\n{}",
                    service.log()
                );
            }
            if std::os::unix::net::UnixStream::connect(&service.socket).is_ok() {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "podman did not listen within 30 s:\n{}",
                service.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        service
    }

    fn global_args(dir: &Path) -> Vec<String> {
        vec![
            format!("--root={}", dir.join("storage").display()),
            format!("--runroot={}", dir.join("run").display()),
            "--storage-driver=vfs".into(),
            "--cgroup-manager=cgroupfs".into(),
            "--events-backend=file".into(),
            "--runtime=runc".into(),
        ]
    }

    /// `unix://...`, for `DOCKER_HOST`.
    pub fn host(&self) -> String {
        format!("unix://{}", self.socket.display())
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("podman.log")).unwrap_or_default()
    }

    /// Runs the podman CLI on this service's store.
    pub fn podman(&self, args: &[&str]) -> std::process::Output {
        Command::new("podman")
            .args(Self::global_args(self.dir.path()))
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("cannot run podman: {e}"))
    }

    /// `podman run --rm` of `image` without network; returns stdout, panicking on failure.
    pub fn run_ok(&self, image: &str) -> String {
        let out = self.podman(&[
            "run",
            "--rm",
            "--network=none",
            "--ulimit=nofile=1024:1024",
            "--ulimit=nproc=1024:1024",
            image,
        ]);
        assert!(
            out.status.success(),
            "podman run {image}: {}\nservice log:\n{}",
            String::from_utf8_lossy(&out.stderr),
            self.log()
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Drop for PodmanService {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        unmount_below(self.dir.path());
    }
}

/// A self-signed RSA certificate and its key (`DIR/NAME.crt`, `DIR/NAME.key`) made by openssl
/// for one day, with subject `/CN=CN` and the `-addext` extensions given.
pub fn self_signed_certificate(
    dir: &Path,
    name: &str,
    cn: &str,
    extensions: &[&str],
) -> (PathBuf, PathBuf) {
    let (cert, key) = (
        dir.join(format!("{name}.crt")),
        dir.join(format!("{name}.key")),
    );
    let mut command = Command::new(require_tool("openssl", "openssl"));
    command
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
        ])
        .arg("-subj")
        .arg(format!("/CN={cn}"));
    for extension in extensions {
        command.args(["-addext", extension]);
    }
    let out = command
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .unwrap_or_else(|e| panic!("cannot run openssl: {e}"));
    assert!(
        out.status.success(),
        "openssl req: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    (cert, key)
}
