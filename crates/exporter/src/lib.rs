//! rbuild-exporter: what a build's result becomes.
//!
//! - [`output`]: the `-o/--output` grammar of `docker buildx build` (`type=oci|docker|tar|local|
//!   image`, `dest=`, `compression=`, `compression-level=`, `oci-mediatypes=`, `name=`, `push=`),
//!   validated up front so an unsupported value is an error before anything is built.
//! - [`image`]: image archives (OCI layout + `docker load` manifest in one tar) with OCI or
//!   Docker media types, to a file or stdout.
//! - [`rootfs`]: the image's merged filesystem as a directory (`type=local`) or a deterministic
//!   tarball (`type=tar`), made by applying the layers in order with the snapshotter's secure
//!   applier.
//!
//! Push (`type=image,push=true`) and loading into an engine are issue 6: they parse here and
//! are refused with a clear error when exported.

pub mod image;
pub mod output;
pub mod rootfs;

pub use image::{export_image_archive, BuiltImage, ExportError};
pub use output::{parse_output, Dest, Output, OutputError, OutputKind};
pub use rootfs::{export_local, export_rootfs_tar};

/// Opens an output destination: a file (created or truncated) or stdout.
pub fn open_dest(dest: &Dest) -> std::io::Result<Box<dyn std::io::Write>> {
    Ok(match dest {
        Dest::Stdout => Box::new(std::io::BufWriter::new(std::io::stdout())),
        Dest::Path(path) => Box::new(std::io::BufWriter::new(std::fs::File::create(path)?)),
    })
}
