//! Media types of the OCI image spec and of Docker's v2 schema 2.

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const OCI_LAYER: &str = "application/vnd.oci.image.layer.v1.tar";
pub const OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
pub const OCI_LAYER_ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";

pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_MANIFEST_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
pub const DOCKER_LAYER_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
pub const DOCKER_LAYER: &str = "application/vnd.docker.image.rootfs.diff.tar";

/// First bytes of a gzip stream.
pub const GZIP_MAGIC: &[u8] = &[0x1f, 0x8b];
/// First bytes of a zstd frame.
pub const ZSTD_MAGIC: &[u8] = &[0x28, 0xb5, 0x2f, 0xfd];

/// The OCI layer media type for a blob starting with `head` (gzip, zstd or plain tar).
pub fn layer_type_from_magic(head: &[u8]) -> &'static str {
    if head.starts_with(GZIP_MAGIC) {
        OCI_LAYER_GZIP
    } else if head.starts_with(ZSTD_MAGIC) {
        OCI_LAYER_ZSTD
    } else {
        OCI_LAYER
    }
}

/// The manifest media type, Docker v2 schema 2 or OCI.
pub fn manifest_type(docker: bool) -> &'static str {
    if docker {
        DOCKER_MANIFEST
    } else {
        OCI_MANIFEST
    }
}

/// The Docker equivalent of an OCI layer media type (for schema 2 manifests); `None` when
/// Docker has none (zstd).
pub fn docker_layer_type(oci: &str) -> Option<&'static str> {
    match oci {
        OCI_LAYER_GZIP | DOCKER_LAYER_GZIP => Some(DOCKER_LAYER_GZIP),
        OCI_LAYER | DOCKER_LAYER => Some(DOCKER_LAYER),
        _ => None,
    }
}

/// The OCI equivalent of a Docker layer media type (OCI types pass through).
pub fn oci_layer_type(media_type: &str) -> &str {
    match media_type {
        DOCKER_LAYER_GZIP => OCI_LAYER_GZIP,
        DOCKER_LAYER => OCI_LAYER,
        other => other,
    }
}

/// Whether `media_type` is an index / manifest list (OCI or Docker).
pub fn is_index(media_type: &str) -> bool {
    media_type == OCI_INDEX || media_type == DOCKER_MANIFEST_LIST
}
