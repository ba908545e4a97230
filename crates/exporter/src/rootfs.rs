//! The image's merged filesystem: a directory (`type=local`) or a tarball (`type=tar`).
//!
//! Layers are applied in order with the snapshotter's secure applier (whiteouts honoured, no
//! entry able to leave the staging root) into a staging directory beside the destination, which
//! is renamed into place only when complete: an interrupted export leaves no half-written
//! destination. The tarball is the staging tree written by the layer writer, uncompressed, so it
//! is deterministic (sorted, fixed metadata, mtimes clamped to the source date).

use std::fs;
use std::io::Write;
use std::path::Path;

use rbuild_oci::model::BlobRef;
use rbuild_snapshotter::apply::{apply_layer, ApplyMode, ApplyOptions};
use rbuild_snapshotter::content::ContentStore;
use rbuild_snapshotter::layer::{write_layer, Compression, LayerOptions, SourceKind};

use crate::image::ExportError;

fn io_err<'a>(
    action: &'static str,
    path: &'a Path,
) -> impl FnOnce(std::io::Error) -> ExportError + 'a {
    move |source| ExportError::Io {
        action,
        path: path.to_path_buf(),
        source,
    }
}

fn flatten_into(store: &ContentStore, layers: &[BlobRef], root: &Path) -> Result<(), ExportError> {
    let mut options = ApplyOptions::new(ApplyMode::Flatten);
    options.allow_devices = options.same_owner;
    for layer in layers {
        let blob = store.open_blob(&layer.digest)?;
        apply_layer(std::io::BufReader::new(blob), root, &options)?;
    }
    Ok(())
}

/// Writes the merged filesystem of `layers` to the directory `dest`, which must not exist or be
/// empty (files of an earlier export are never mixed with this one's).
pub fn export_local(
    store: &ContentStore,
    layers: &[BlobRef],
    dest: &Path,
) -> Result<(), ExportError> {
    match fs::read_dir(dest) {
        Ok(mut entries) => {
            if entries.next().is_some() {
                return Err(ExportError::DestNotEmpty(dest.to_path_buf()));
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io_err("read", dest)(e)),
    }
    let parent = match dest.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => std::path::PathBuf::from("."),
    };
    fs::create_dir_all(&parent).map_err(io_err("create", &parent))?;
    let staging = tempfile::Builder::new()
        .prefix(".rbuild-export-")
        .tempdir_in(&parent)
        .map_err(io_err("create a staging directory in", &parent))?;
    flatten_into(store, layers, staging.path())?;
    if dest.exists() {
        fs::remove_dir(dest).map_err(io_err("replace", dest))?;
    }
    // Renamed while still owned by the TempDir: if the rename fails, dropping it cleans up.
    fs::rename(staging.path(), dest).map_err(io_err("move the export to", dest))?;
    let _ = staging.keep();
    Ok(())
}

/// Writes the merged filesystem of `layers` as a tarball to `out`. `scratch` is where the
/// staging tree is made (the state root: it can hold a whole rootfs).
pub fn export_rootfs_tar(
    store: &ContentStore,
    layers: &[BlobRef],
    scratch: &Path,
    source_date_epoch: Option<i64>,
    out: &mut dyn Write,
) -> Result<(), ExportError> {
    fs::create_dir_all(scratch).map_err(io_err("create", scratch))?;
    let staging = tempfile::Builder::new()
        .prefix("rootfs-")
        .tempdir_in(scratch)
        .map_err(io_err("create a staging directory in", scratch))?;
    flatten_into(store, layers, staging.path())?;
    let options = LayerOptions {
        compression: Compression::Uncompressed,
        source_date_epoch,
        threads: 1,
    };
    write_layer(staging.path(), SourceKind::PlainDir, out, &options)?;
    out.flush().map_err(io_err("write", scratch))?;
    Ok(())
}
