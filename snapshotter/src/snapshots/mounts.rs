//! The overlayfs mount and unmount calls (through rustix's safe wrappers).
//!
//! A view is mounted with the classic `mount(2)` when its option string fits in one page, the
//! size the kernel copies. Longer chains use the new mount API (`fsopen` + one `lowerdir+` per
//! layer, Linux 6.8+), which has no such limit; overlayfs itself allows at most 500 lowers.

use std::io;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

use rustix::fs::CWD;
use rustix::mount::{
    fsconfig_create, fsconfig_set_string, fsmount, fsopen, mount, move_mount, unmount,
    FsMountFlags, FsOpenFlags, MountAttrFlags, MountFlags, MoveMountFlags, UnmountFlags,
};

/// The kernel copies mount options into one page (including the terminating NUL).
const PAGE_LIMIT: usize = 4095;

/// The most lower layers overlayfs stacks.
pub(crate) const MAX_LOWERS: usize = 500;

/// Options that keep an upperdir a plain diff (whole files, plain whiteouts).
const DIFF_FRIENDLY: [(&str, &str); 3] = [
    ("redirect_dir", "off"),
    ("metacopy", "off"),
    ("index", "off"),
];

/// What to mount: lowerdirs (top first), upperdir and workdir.
pub(crate) struct OverlayOptions<'a> {
    pub lowers: &'a [PathBuf],
    pub upper: &'a Path,
    pub work: &'a Path,
    /// overlayfs `volatile` (Linux 5.10+): the overlay never syncs its upper filesystem, not on
    /// fsync and not on unmount. Unmounting a view whose step left 80 MB dirty otherwise waits
    /// for the whole upper filesystem's writeback (60-100 ms here). Views are throwaway and a
    /// commit's durability comes from an explicit syncfs of the upper filesystem, so nothing
    /// relies on the overlay's own syncs. Kernels without it mount without it.
    pub volatile: bool,
}

fn utf8(path: &Path) -> io::Result<&str> {
    path.to_str()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "overlay paths must be UTF-8"))
}

/// Characters overlayfs treats specially in the classic option string.
fn escape_path(path: &Path) -> io::Result<String> {
    Ok(utf8(path)?
        .replace('\\', "\\\\")
        .replace(':', "\\:")
        .replace(',', "\\,"))
}

/// The classic `mount(2)` option string for `options`.
pub(crate) fn option_string(options: &OverlayOptions<'_>) -> io::Result<String> {
    let lowers = options
        .lowers
        .iter()
        .map(|p| escape_path(p))
        .collect::<io::Result<Vec<_>>>()?;
    let mut data = format!(
        "lowerdir={},upperdir={},workdir={}",
        lowers.join(":"),
        escape_path(options.upper)?,
        escape_path(options.work)?
    );
    for (key, value) in DIFF_FRIENDLY {
        data.push_str(&format!(",{key}={value}"));
    }
    if options.volatile {
        data.push_str(",volatile");
    }
    Ok(data)
}

/// Mounts an overlay at `target`; a `volatile` mount the kernel refuses (older than 5.10) is
/// retried without it.
pub(crate) fn mount_overlay(target: &Path, options: &OverlayOptions<'_>) -> io::Result<()> {
    match mount_overlay_once(target, options) {
        Err(e)
            if options.volatile
                && e.raw_os_error() == Some(rustix::io::Errno::INVAL.raw_os_error()) =>
        {
            mount_overlay_once(
                target,
                &OverlayOptions {
                    volatile: false,
                    ..*options
                },
            )
        }
        result => result,
    }
}

fn mount_overlay_once(target: &Path, options: &OverlayOptions<'_>) -> io::Result<()> {
    if options.lowers.len() > MAX_LOWERS {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "{} lower layers; overlayfs stacks at most {MAX_LOWERS}",
                options.lowers.len()
            ),
        ));
    }
    let data = option_string(options)?;
    if data.len() <= PAGE_LIMIT {
        let data = std::ffi::CString::new(data).map_err(|_| {
            io::Error::new(io::ErrorKind::InvalidInput, "NUL byte in overlay options")
        })?;
        return mount(
            "overlay",
            target,
            "overlay",
            MountFlags::empty(),
            Some(data.as_c_str()),
        )
        .map_err(io::Error::from);
    }
    mount_overlay_fsconfig(target, options)
}

/// The new mount API: each lower layer is its own `lowerdir+` parameter (no escaping, no page
/// limit).
fn mount_overlay_fsconfig(target: &Path, options: &OverlayOptions<'_>) -> io::Result<()> {
    let fs = fsopen("overlay", FsOpenFlags::FSOPEN_CLOEXEC)?;
    for lower in options.lowers {
        fsconfig_set_string(fs.as_fd(), "lowerdir+", utf8(lower)?)?;
    }
    fsconfig_set_string(fs.as_fd(), "upperdir", utf8(options.upper)?)?;
    fsconfig_set_string(fs.as_fd(), "workdir", utf8(options.work)?)?;
    for (key, value) in DIFF_FRIENDLY {
        fsconfig_set_string(fs.as_fd(), key, value)?;
    }
    if options.volatile {
        rustix::mount::fsconfig_set_flag(fs.as_fd(), "volatile")?;
    }
    fsconfig_create(fs.as_fd())?;
    let mnt = fsmount(
        fs.as_fd(),
        FsMountFlags::FSMOUNT_CLOEXEC,
        MountAttrFlags::empty(),
    )?;
    move_mount(
        mnt.as_fd(),
        "",
        CWD,
        target,
        MoveMountFlags::MOVE_MOUNT_F_EMPTY_PATH,
    )?;
    Ok(())
}

/// Unmounts `target` now; fails (EBUSY) while anything still uses it. Used before commit, so a
/// lingering process can never keep writing into a committed layer.
///
/// EBUSY is retried for up to about two seconds: in a multi-threaded builder a sibling step's
/// sandbox child inherits (close-on-exec) descriptors into this view at its clone and holds
/// them for the few milliseconds until its exec. A process that really keeps the view busy
/// (one still writing into the layer) outlasts that and still fails the commit.
///
/// The wait is a poll every millisecond for the first 100 ms (the usual case: a step's mount
/// namespace is released a few to a hundred milliseconds after its last process exits, and
/// doubling sleeps overshot that by up to as much again), then every 20 ms.
pub(crate) fn unmount_strict(target: &Path) -> io::Result<()> {
    let started = std::time::Instant::now();
    loop {
        match unmount(target, UnmountFlags::empty()) {
            Err(rustix::io::Errno::BUSY)
                if started.elapsed() < std::time::Duration::from_secs(2) =>
            {
                let delay = if started.elapsed() < std::time::Duration::from_millis(100) {
                    std::time::Duration::from_millis(1)
                } else {
                    std::time::Duration::from_millis(20)
                };
                std::thread::sleep(delay);
            }
            result => return result.map_err(io::Error::from),
        }
    }
}

/// Detaches the mount at `target` (lazily, so a busy mount does not block cleanup on drop).
pub(crate) fn unmount_detach(target: &Path) -> io::Result<()> {
    unmount(target, UnmountFlags::DETACH).map_err(io::Error::from)
}
