//! The overlayfs mount and unmount calls (through rustix's safe wrappers).

use std::io;
use std::path::{Path, PathBuf};

use rustix::mount::{mount, unmount, MountFlags, UnmountFlags};

/// What to mount: lowerdirs (top first) and, for a writable view, upperdir and workdir.
pub(crate) struct OverlayOptions<'a> {
    pub lowers: &'a [PathBuf],
    pub upper: Option<(&'a Path, &'a Path)>,
}

/// Characters overlayfs treats specially in lowerdir paths.
fn escape_path(path: &Path) -> io::Result<String> {
    let text = path.to_str().ok_or_else(|| {
        io::Error::new(io::ErrorKind::InvalidInput, "overlay paths must be UTF-8")
    })?;
    Ok(text
        .replace('\\', "\\\\")
        .replace(':', "\\:")
        .replace(',', "\\,"))
}

/// Mounts an overlay at `target`. `redirect_dir`, `metacopy` and `index` are off so the upperdir
/// holds whole files and plain whiteouts: the layer writer can read it without the lowers.
pub(crate) fn mount_overlay(target: &Path, options: &OverlayOptions<'_>) -> io::Result<()> {
    let lowers = options
        .lowers
        .iter()
        .map(|p| escape_path(p))
        .collect::<io::Result<Vec<_>>>()?;
    let mut data = format!("lowerdir={}", lowers.join(":"));
    let mut flags = MountFlags::empty();
    match options.upper {
        Some((upper, work)) => {
            data.push_str(&format!(
                ",upperdir={},workdir={},redirect_dir=off,metacopy=off,index=off",
                escape_path(upper)?,
                escape_path(work)?
            ));
        }
        None => flags |= MountFlags::RDONLY,
    }
    let data = std::ffi::CString::new(data)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL byte in overlay options"))?;
    mount("overlay", target, "overlay", flags, Some(data.as_c_str())).map_err(io::Error::from)
}

/// Detaches the mount at `target` (lazily, so a busy mount does not block cleanup).
pub(crate) fn unmount_detach(target: &Path) -> io::Result<()> {
    unmount(target, UnmountFlags::DETACH).map_err(io::Error::from)
}
