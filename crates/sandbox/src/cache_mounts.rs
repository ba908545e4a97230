//! Persistent directories for `RUN --mount=type=cache`, shared across steps and builds.
//!
//! ```text
//! <dir> (e.g. $RBUILD_ROOT/cache-mounts-v1)
//!   <sha256(id)>/            the cache's first instance
//!     .lock                  flock(2) target (never inside what the step sees)
//!     id                     the cache id, for `rbuild du`
//!     data/                  what the step sees at the mount target
//!   <sha256(id)>-<n>/        further instances, made for `sharing=private` when all are busy
//! ```
//!
//! Sharing modes, as in BuildKit: `shared` (the default) lets any number of steps use the data
//! at once (a shared lock, so `locked` users still wait for them); `locked` waits for sole use;
//! `private` takes an instance nobody else holds, creating a new one when all are busy. A lock
//! lives in the returned [`CacheLease`]: hold it for as long as the step runs. Locks are
//! advisory flocks, released by the kernel if rbuild dies.
//!
//! `data/` is created with the mount's `uid`, `gid` and `mode` (default 0:0 0755) the first
//! time; later uses get it as the last step left it.

use std::fs;
use std::os::fd::OwnedFd;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

use rustix::fs::FlockOperation;
use sha2::{Digest, Sha256};

use crate::error::SandboxError;

/// `sharing=` of a cache mount.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sharing {
    Shared,
    Private,
    Locked,
}

impl Sharing {
    pub fn parse(value: &str) -> Option<Sharing> {
        match value {
            "shared" => Some(Sharing::Shared),
            "private" => Some(Sharing::Private),
            "locked" => Some(Sharing::Locked),
            _ => None,
        }
    }
}

/// Owner and mode of a cache's data directory when it is first created.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheOwner {
    pub uid: u32,
    pub gid: u32,
    pub mode: u32,
}

impl Default for CacheOwner {
    fn default() -> Self {
        CacheOwner {
            uid: 0,
            gid: 0,
            mode: 0o755,
        }
    }
}

/// The cache mounts of one state root.
#[derive(Debug, Clone)]
pub struct CacheMounts {
    dir: PathBuf,
}

/// A cache directory in use; the lock is released on drop.
#[derive(Debug)]
pub struct CacheLease {
    data: PathBuf,
    _lock: OwnedFd,
}

impl CacheLease {
    /// The directory to bind-mount (read-write) at the mount target.
    pub fn path(&self) -> &Path {
        &self.data
    }
}

impl CacheMounts {
    pub fn open(dir: impl Into<PathBuf>) -> Result<CacheMounts, SandboxError> {
        let dir = dir.into();
        fs::create_dir_all(&dir).map_err(SandboxError::io(format!("create {}", dir.display())))?;
        Ok(CacheMounts { dir })
    }

    /// Takes cache `id` for one step.
    pub fn acquire(
        &self,
        id: &str,
        sharing: Sharing,
        owner: CacheOwner,
    ) -> Result<CacheLease, SandboxError> {
        let key = hex(&Sha256::digest(id.as_bytes()));
        match sharing {
            Sharing::Shared => self.instance(&key, id, owner, FlockOperation::LockShared),
            Sharing::Locked => self.instance(&key, id, owner, FlockOperation::LockExclusive),
            Sharing::Private => {
                for n in 0.. {
                    let name = if n == 0 {
                        key.clone()
                    } else {
                        format!("{key}-{n}")
                    };
                    match self.instance(&name, id, owner, FlockOperation::NonBlockingLockExclusive)
                    {
                        Err(SandboxError::Io(_, e))
                            if e.kind() == std::io::ErrorKind::WouldBlock =>
                        {
                            continue
                        }
                        other => return other,
                    }
                }
                unreachable!("the instance loop only ends by returning")
            }
        }
    }

    fn instance(
        &self,
        name: &str,
        id: &str,
        owner: CacheOwner,
        lock: FlockOperation,
    ) -> Result<CacheLease, SandboxError> {
        let dir = self.dir.join(name);
        let io = |what: &str, p: &Path| SandboxError::io(format!("{what} {}", p.display()));
        fs::create_dir_all(&dir).map_err(io("create", &dir))?;
        let lock_path = dir.join(".lock");
        let file = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(io("open", &lock_path))?;
        let fd = OwnedFd::from(file);
        rustix::fs::flock(&fd, lock)
            .map_err(|e| SandboxError::Io(format!("lock {}", lock_path.display()), e.into()))?;
        let data = dir.join("data");
        if !data.is_dir() {
            // Built aside and renamed, so a crash never leaves a data dir with the wrong owner.
            static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
            let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let staging = dir.join(format!("data.new-{}-{n}", std::process::id()));
            let _ = fs::remove_dir(&staging);
            fs::DirBuilder::new()
                .mode(owner.mode & 0o7777)
                .create(&staging)
                .map_err(io("create", &staging))?;
            fs::set_permissions(&staging, fs::Permissions::from_mode(owner.mode & 0o7777))
                .map_err(io("chmod", &staging))?;
            std::os::unix::fs::chown(&staging, Some(owner.uid), Some(owner.gid))
                .map_err(io("chown", &staging))?;
            fs::write(dir.join("id"), id).map_err(io("write the id of", &dir))?;
            if let Err(e) = fs::rename(&staging, &data) {
                let _ = fs::remove_dir(&staging);
                if !data.is_dir() {
                    return Err(io("create", &data)(e));
                }
            }
        }
        Ok(CacheLease { data, _lock: fd })
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> (tempfile::TempDir, CacheMounts) {
        let dir = tempfile::tempdir().expect("tempdir");
        let mounts = CacheMounts::open(dir.path().join("cache-mounts-v1")).expect("open");
        (dir, mounts)
    }

    #[test]
    fn the_same_id_is_the_same_directory_and_keeps_its_content() {
        let (_dir, mounts) = store();
        let first = mounts
            .acquire("go-build", Sharing::Shared, CacheOwner::default())
            .expect("first");
        fs::write(first.path().join("object"), "x").expect("write");
        drop(first);
        let again = mounts
            .acquire("go-build", Sharing::Locked, CacheOwner::default())
            .expect("again");
        assert_eq!(
            fs::read_to_string(again.path().join("object")).expect("read"),
            "x"
        );
        let other = mounts
            .acquire("other", Sharing::Shared, CacheOwner::default())
            .expect("other");
        assert_ne!(other.path(), again.path());
    }

    #[test]
    fn private_takes_a_new_instance_while_the_first_is_held() {
        let (_dir, mounts) = store();
        let held = mounts
            .acquire("apt", Sharing::Private, CacheOwner::default())
            .expect("held");
        let second = mounts
            .acquire("apt", Sharing::Private, CacheOwner::default())
            .expect("second");
        assert_ne!(held.path(), second.path());
        let third = mounts
            .acquire("apt", Sharing::Private, CacheOwner::default())
            .expect("third");
        assert_ne!(
            third.path(),
            second.path(),
            "the freed first instance is reused"
        );
    }

    #[test]
    fn shared_users_coexist() {
        let (_dir, mounts) = store();
        let a = mounts
            .acquire("c", Sharing::Shared, CacheOwner::default())
            .expect("a");
        let b = mounts
            .acquire("c", Sharing::Shared, CacheOwner::default())
            .expect("b");
        assert_eq!(a.path(), b.path());
    }

    #[test]
    fn the_data_dir_gets_the_owner_and_mode_on_creation() {
        use std::os::unix::fs::MetadataExt;
        let (_dir, mounts) = store();
        let owner = CacheOwner {
            uid: 1234,
            gid: 5678,
            mode: 0o700,
        };
        let lease = mounts
            .acquire("owned", Sharing::Shared, owner)
            .expect("lease");
        let meta = fs::metadata(lease.path()).expect("stat");
        assert_eq!(
            (meta.uid(), meta.gid(), meta.mode() & 0o7777),
            (1234, 5678, 0o700)
        );
    }
}
