//! The fixture both integration tests build on: the golden busybox base image imported into a
//! content store, plus one layer written by our layer writer, with its config.
#![allow(clippy::unwrap_used, dead_code)]

use std::fs;
use std::path::Path;

use rbuild_exporter::BuiltImage;
use rbuild_oci::model::{BlobRef, HistoryEntry, ImageBuilder};
use rbuild_snapshotter::content::ContentStore;
use rbuild_snapshotter::layer::{write_layer, Compression, LayerOptions, SourceKind};

/// Imports the golden base into a content store at `state` and adds a layer made from `tree`.
/// `created` (RFC 3339) sets the config's and the history entry's time when given.
pub fn image_with_layer(
    state: &Path,
    tree: &Path,
    kind: SourceKind,
    compression: Compression,
    created_by: &str,
    created: Option<&str>,
) -> (ContentStore, BuiltImage) {
    let store = ContentStore::open(state).unwrap();
    let base = rbuild_oci::import::import_tar(
        fs::File::open(rbuild_test::golden_base("busybox-oci.tar")).unwrap(),
        &store,
        ("linux", "amd64"),
    )
    .unwrap()
    .remove(0);
    let mut writer = store.writer().unwrap();
    let options = LayerOptions {
        compression,
        source_date_epoch: Some(0),
        threads: 0,
    };
    let layer = write_layer(tree, kind, &mut writer, &options).unwrap();
    writer
        .commit(Some(&layer.digest), Some(layer.size))
        .unwrap();

    let mut base_config = Vec::new();
    std::io::Read::read_to_end(
        &mut store.open_blob(&base.config.digest).unwrap(),
        &mut base_config,
    )
    .unwrap();
    let mut config = ImageBuilder::from_config_json(&base_config).unwrap();
    config
        .add_layer(
            &layer.diff_id,
            HistoryEntry {
                created: created.map(str::to_string),
                created_by: created_by.into(),
                ..HistoryEntry::default()
            },
        )
        .unwrap();
    if let Some(created) = created {
        config.set_created(Some(created.into()));
    }
    let stored = store.put_bytes(&config.config_json().unwrap()).unwrap();
    let mut layers = base.layers.clone();
    layers.push(BlobRef {
        digest: layer.digest,
        size: layer.size,
        media_type: layer.media_type.into(),
    });
    let config = BlobRef {
        digest: stored.digest,
        size: stored.size,
        media_type: rbuild_oci::media_types::OCI_CONFIG.into(),
    };
    (store, BuiltImage { config, layers })
}
