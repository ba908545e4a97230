//! Safe access to a rootfs the worker writes into (a snapshot view): every path is resolved
//! with `openat2(RESOLVE_IN_ROOT)`, every name created with `*at` calls on the resolved parent,
//! so symlinks in an image never lead a COPY, ADD or WORKDIR outside the rootfs.

use std::ffi::CString;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};

use rustix::fs::{Mode, OFlags, ResolveFlags};
use rustix::io::Errno;

use rbuild_solver::WorkerError;

/// Opens a directory to resolve paths in.
pub fn open_root(path: &Path) -> Result<OwnedFd, WorkerError> {
    rustix::fs::open(
        path,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| WorkerError::new(format!("cannot open {}: {e}", path.display())))
}

fn in_root() -> ResolveFlags {
    ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS
}

/// Opens `rel` inside `root` (symlinks resolved with `root` as `/`).
pub fn open_in_root(root: &OwnedFd, rel: &str, flags: OFlags) -> Result<OwnedFd, Errno> {
    let rel = rel.trim_start_matches('/');
    rustix::fs::openat2(
        root,
        if rel.is_empty() { "." } else { rel },
        flags | OFlags::CLOEXEC,
        Mode::empty(),
        in_root(),
    )
}

/// The host path a descriptor refers to (after in-root resolution, no symlink left in it).
pub fn fd_path(fd: &OwnedFd) -> Result<PathBuf, WorkerError> {
    let link = format!("/proc/self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(fd));
    std::fs::read_link(&link).map_err(|e| WorkerError::new(format!("cannot resolve {link}: {e}")))
}

/// Replaces the file at `path` with `bytes` at once: written to a temp file beside it, renamed
/// over it. A reader (of this process or another) sees the old content or the new, never a
/// part, and concurrent writers never share a temp file. Not synced.
pub fn replace_file(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
    std::io::Write::write_all(&mut tmp, bytes)?;
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}

/// `syncfs` of the filesystem holding `path`: everything written to it so far is on disk.
pub fn sync_filesystem(path: &Path) -> std::io::Result<()> {
    let dir = std::fs::File::open(path)?;
    rustix::fs::syncfs(&dir).map_err(std::io::Error::from)
}

/// Owner for what a step creates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Owner {
    pub uid: u32,
    pub gid: u32,
}

/// Makes `path` (absolute inside the rootfs) a directory, creating missing components 0755
/// with `owner`; returns a descriptor of it (O_DIRECTORY, usable for `*at` calls).
///
/// Symlinks are followed with the rootfs as `/`, also when their target does not exist yet:
/// it is created there (as BuildKit's `mkdir -p` does), never outside the rootfs.
pub fn mkdir_all(root: &OwnedFd, path: &str, owner: Owner) -> Result<OwnedFd, WorkerError> {
    let fail = |what: &str, e: Errno| WorkerError::new(format!("cannot {what} `{path}`: {e}"));
    let mut pending: std::collections::VecDeque<String> = path
        .split('/')
        .filter(|c| !c.is_empty() && *c != ".")
        .map(str::to_string)
        .collect();
    let mut resolved: Vec<String> = Vec::new();
    let mut current =
        open_in_root(root, "", OFlags::RDONLY | OFlags::DIRECTORY).map_err(|e| fail("open", e))?;
    let mut links = 0;
    while let Some(name) = pending.pop_front() {
        if name == ".." {
            resolved.pop();
            current = open_in_root(
                root,
                &resolved.join("/"),
                OFlags::RDONLY | OFlags::DIRECTORY,
            )
            .map_err(|e| fail("open", e))?;
            continue;
        }
        let cname = cstr(&name)?;
        match rustix::fs::statat(
            &current,
            cname.as_c_str(),
            rustix::fs::AtFlags::SYMLINK_NOFOLLOW,
        ) {
            Ok(stat) if stat.st_mode & 0o170000 == 0o120000 => {
                links += 1;
                if links > 40 {
                    return Err(fail("resolve", Errno::LOOP));
                }
                let target = rustix::fs::readlinkat(&current, cname.as_c_str(), Vec::new())
                    .map_err(|e| fail("read a link in", e))?;
                let target = target.to_string_lossy().into_owned();
                if target.starts_with('/') {
                    resolved.clear();
                    current = open_in_root(root, "", OFlags::RDONLY | OFlags::DIRECTORY)
                        .map_err(|e| fail("open", e))?;
                }
                for (i, part) in target
                    .split('/')
                    .filter(|c| !c.is_empty() && *c != ".")
                    .enumerate()
                {
                    pending.insert(i, part.to_string());
                }
            }
            Ok(stat) if stat.st_mode & 0o170000 == 0o040000 => {
                current = rustix::fs::openat(
                    &current,
                    cname.as_c_str(),
                    OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                    Mode::empty(),
                )
                .map_err(|e| fail("open", e))?;
                resolved.push(name);
            }
            Ok(_) => {
                return Err(WorkerError::new(format!(
                    "cannot create `{path}`: `/{}` is not a directory",
                    resolved
                        .iter()
                        .chain(std::iter::once(&name))
                        .cloned()
                        .collect::<Vec<_>>()
                        .join("/")
                )))
            }
            Err(Errno::NOENT) => {
                match rustix::fs::mkdirat(&current, cname.as_c_str(), Mode::from_raw_mode(0o755)) {
                    Ok(()) | Err(Errno::EXIST) => {}
                    Err(e) => return Err(fail("create", e)),
                }
                let fd = rustix::fs::openat(
                    &current,
                    cname.as_c_str(),
                    OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                    Mode::empty(),
                )
                .map_err(|e| fail("open", e))?;
                rustix::fs::fchmod(&fd, Mode::from_raw_mode(0o755))
                    .map_err(|e| fail("chmod", e))?;
                rustix::fs::fchown(
                    &fd,
                    Some(rustix::process::Uid::from_raw(owner.uid)),
                    Some(rustix::process::Gid::from_raw(owner.gid)),
                )
                .map_err(|e| fail("chown", e))?;
                current = fd;
                resolved.push(name);
            }
            Err(e) => return Err(fail("inspect", e)),
        }
    }
    Ok(current)
}

pub fn cstr(name: &str) -> Result<CString, WorkerError> {
    CString::new(name)
        .map_err(|_| WorkerError::new(format!("invalid name `{name}`: it contains a NUL byte")))
}

/// Resolves `--chown`/WORKDIR users: `user[:group]` against the rootfs's passwd and group,
/// as BuildKit does for COPY: a numeric user not in passwd keeps its number as the group too.
pub fn resolve_owner(rootfs: &Path, spec: &str) -> Result<Owner, WorkerError> {
    if spec.is_empty() {
        return Ok(Owner::default());
    }
    let read = |file: &str| -> Option<String> {
        let root = open_root(rootfs).ok()?;
        let fd = open_in_root(&root, file, OFlags::RDONLY).ok()?;
        let mut text = String::new();
        std::io::Read::read_to_string(
            &mut std::io::Read::take(std::fs::File::from(fd), 4 << 20),
            &mut text,
        )
        .ok()?;
        Some(text)
    };
    let passwd = read("/etc/passwd").unwrap_or_default();
    let group = read("/etc/group").unwrap_or_default();
    let users = rbuild_sandbox::user::parse_passwd(&passwd);
    let groups = rbuild_sandbox::user::parse_group(&group);
    let (user, group_part) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    let entry = match user.parse::<u32>() {
        Ok(uid) => users
            .iter()
            .find(|u| u.uid == uid)
            .cloned()
            .map(Ok)
            .unwrap_or(Err(uid)),
        Err(_) => Ok(users
            .iter()
            .find(|u| u.name == user)
            .cloned()
            .ok_or_else(|| {
                WorkerError::new(format!(
                    "unable to find user {user}: no matching entries in passwd file"
                ))
            })?),
    };
    let (uid, default_gid) = match &entry {
        Ok(e) => (e.uid, e.gid),
        Err(uid) => (*uid, *uid),
    };
    let gid = match group_part {
        None | Some("") => default_gid,
        Some(g) => match g.parse::<u32>() {
            Ok(gid) => gid,
            Err(_) => groups
                .iter()
                .find(|e| e.name == g)
                .map(|e| e.gid)
                .ok_or_else(|| {
                    WorkerError::new(format!(
                        "unable to find group {g}: no matching entries in group file"
                    ))
                })?,
        },
    };
    Ok(Owner { uid, gid })
}

/// Removes whatever is at `name` in `dir` (a tree too), never following symlinks.
pub fn remove_entry(dir: &OwnedFd, name: &CString) -> Result<(), Errno> {
    match rustix::fs::unlinkat(dir, name.as_c_str(), rustix::fs::AtFlags::empty()) {
        Ok(()) | Err(Errno::NOENT) => Ok(()),
        Err(Errno::ISDIR) | Err(Errno::PERM) => {
            let child = rustix::fs::openat(
                dir,
                name.as_c_str(),
                OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::empty(),
            )?;
            let mut names = Vec::new();
            for entry in rustix::fs::Dir::read_from(&child)? {
                let entry = entry?;
                let n = entry.file_name().to_bytes();
                if n != b"." && n != b".." {
                    names.push(CString::from(entry.file_name()));
                }
            }
            for n in names {
                remove_entry(&child, &n)?;
            }
            rustix::fs::unlinkat(dir.as_fd(), name.as_c_str(), rustix::fs::AtFlags::REMOVEDIR)
        }
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chown_specs_resolve_like_buildkit() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(dir.path().join("etc")).expect("mkdir");
        std::fs::write(
            dir.path().join("etc/passwd"),
            "root:x:0:0::/root:/bin/sh\napp:x:1000:1000::/home/app:/bin/sh\n",
        )
        .expect("passwd");
        std::fs::write(
            dir.path().join("etc/group"),
            "root:x:0:\napp:x:1000:\nweb:x:33:\n",
        )
        .expect("group");
        let owner = |spec: &str| resolve_owner(dir.path(), spec).map(|o| (o.uid, o.gid));
        assert_eq!(owner("").expect("empty"), (0, 0));
        assert_eq!(owner("app").expect("name"), (1000, 1000));
        assert_eq!(owner("app:web").expect("names"), (1000, 33));
        assert_eq!(
            owner("42").expect("uid"),
            (42, 42),
            "an unknown numeric user keeps its number as the group"
        );
        assert_eq!(owner("1000:7").expect("ids"), (1000, 7));
        assert!(owner("ghost").is_err());
        assert!(owner("app:nogroup").is_err());
    }

    #[test]
    fn mkdir_all_stays_inside_the_root() {
        let dir = tempfile::tempdir().expect("tempdir");
        let outside = tempfile::tempdir().expect("outside");
        std::os::unix::fs::symlink(outside.path(), dir.path().join("link")).expect("symlink");
        let root = open_root(dir.path()).expect("root");
        mkdir_all(&root, "/link/made/here", Owner::default()).expect("mkdir");
        assert_eq!(
            std::fs::read_dir(outside.path()).expect("ls").count(),
            0,
            "created outside the root"
        );
        let inside = dir
            .path()
            .join(outside.path().strip_prefix("/").expect("abs"))
            .join("made/here");
        assert!(
            inside.is_dir(),
            "the symlink was not resolved inside the root"
        );
    }
}
