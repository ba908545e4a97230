//! Image config, manifest and index, built over `oci-spec` and serialised deterministically.
//!
//! Invariants: `rootfs.diff_ids` has one entry per history entry whose `empty_layer` is false,
//! in order ([`ImageBuilder::add_layer`] appends both together); JSON output has a fixed key
//! order and no insignificant whitespace, so equal images give equal digests.

use std::str::FromStr;

use oci_spec::image::{
    Arch, Config, ConfigBuilder, DescriptorBuilder, History, HistoryBuilder, ImageConfiguration,
    ImageConfigurationBuilder, ImageIndexBuilder, ImageManifestBuilder, MediaType, Os,
    PlatformBuilder, RootFsBuilder,
};
use rbuild_digest::Digest;

use crate::media_types;

/// Why an image document could not be built or read.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("Invalid image document: {0}")]
    Spec(#[from] oci_spec::OciSpecError),
    #[error("Invalid image JSON")]
    Json(#[from] serde_json::Error),
    #[error("Invalid digest `{0}` in image document")]
    Digest(String),
}

/// A blob as a descriptor names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlobRef {
    pub digest: Digest,
    pub size: u64,
    pub media_type: String,
}

/// One history entry of the config.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct HistoryEntry {
    /// RFC 3339 time, already clamped to the build's source date by the caller.
    pub created: Option<String>,
    pub created_by: String,
    pub comment: Option<String>,
}

/// Builds an image config step by step.
#[derive(Debug, Clone)]
pub struct ImageBuilder {
    config: ImageConfiguration,
    /// Keys of the runtime `config` object that oci-spec's `Config` has no field for
    /// (`Healthcheck`, `OnBuild`, `Shell`, `ArgsEscaped`, ...), kept verbatim so an image built
    /// FROM a Docker image does not silently lose them.
    runtime_extras: serde_json::Map<String, serde_json::Value>,
}

fn spec_digest(d: &Digest) -> Result<oci_spec::image::Digest, ModelError> {
    oci_spec::image::Digest::from_str(&d.to_string()).map_err(|_| ModelError::Digest(d.to_string()))
}

impl ImageBuilder {
    /// An empty image for `os/architecture[/variant]` (what `FROM scratch` starts from).
    pub fn scratch(
        os: &str,
        architecture: &str,
        variant: Option<&str>,
    ) -> Result<Self, ModelError> {
        let rootfs = RootFsBuilder::default()
            .typ("layers")
            .diff_ids(Vec::<String>::new())
            .build()?;
        let mut config = ImageConfigurationBuilder::default()
            .architecture(Arch::from(architecture))
            .os(Os::from(os))
            .rootfs(rootfs)
            .config(ConfigBuilder::default().build()?)
            .build()?;
        if let Some(v) = variant {
            config.set_variant(Some(v.to_string()));
        }
        config.set_history(Some(Vec::new()));
        Ok(ImageBuilder {
            config,
            runtime_extras: serde_json::Map::new(),
        })
    }

    /// Starts from a base image's config JSON.
    pub fn from_config_json(bytes: &[u8]) -> Result<Self, ModelError> {
        let raw: serde_json::Value = serde_json::from_slice(bytes)?;
        let mut config: ImageConfiguration = serde_json::from_value(raw.clone())?;
        if config.history().is_none() {
            config.set_history(Some(Vec::new()));
        }
        if config.config().is_none() {
            config.set_config(Some(ConfigBuilder::default().build()?));
        }
        // Whatever oci-spec does not model inside `config` is carried over as it was.
        let known = serde_json::to_value(config.config())?;
        let mut runtime_extras = serde_json::Map::new();
        if let Some(runtime) = raw.get("config").and_then(|c| c.as_object()) {
            for (key, value) in runtime {
                if known.get(key).is_none() && !value.is_null() {
                    runtime_extras.insert(key.clone(), value.clone());
                }
            }
        }
        Ok(ImageBuilder {
            config,
            runtime_extras,
        })
    }

    /// Sets (or, with `None`, removes) a runtime key oci-spec does not model, such as
    /// `Healthcheck`, `OnBuild` or `Shell`.
    pub fn set_runtime_extra(&mut self, key: &str, value: Option<serde_json::Value>) {
        match value {
            Some(v) => {
                self.runtime_extras.insert(key.to_string(), v);
            }
            None => {
                self.runtime_extras.remove(key);
            }
        }
    }

    /// A runtime key oci-spec does not model, if set.
    pub fn runtime_extra(&self, key: &str) -> Option<&serde_json::Value> {
        self.runtime_extras.get(key)
    }

    /// Changes the runtime part of the config (Env, Cmd, Entrypoint, WorkingDir, ...).
    pub fn update_runtime(&mut self, change: impl FnOnce(&mut Config)) {
        let mut runtime = self.config.config().clone().unwrap_or_default();
        change(&mut runtime);
        self.config.set_config(Some(runtime));
    }

    /// The whole config document.
    pub fn config(&self) -> &ImageConfiguration {
        &self.config
    }

    pub fn set_created(&mut self, created: Option<String>) {
        self.config.set_created(created);
    }

    pub fn set_author(&mut self, author: Option<String>) {
        self.config.set_author(author);
    }

    /// Appends a history entry; `empty_layer` marks a config-only step (set by the two public
    /// callers, so it always agrees with whether a diff_id was added).
    fn push_history(&mut self, entry: &HistoryEntry, empty_layer: bool) -> Result<(), ModelError> {
        let mut builder = HistoryBuilder::default().created_by(entry.created_by.clone());
        if let Some(created) = &entry.created {
            builder = builder.created(created.clone());
        }
        if let Some(comment) = &entry.comment {
            builder = builder.comment(comment.clone());
        }
        if empty_layer {
            builder = builder.empty_layer(true);
        }
        let history: History = builder.build()?;
        self.config
            .history_mut()
            .get_or_insert_with(Vec::new)
            .push(history);
        Ok(())
    }

    /// Records a config-only step.
    pub fn add_empty_layer(&mut self, entry: HistoryEntry) -> Result<(), ModelError> {
        self.push_history(&entry, true)
    }

    /// Appends a layer: its diff_id and its history entry, together.
    pub fn add_layer(&mut self, diff_id: &Digest, entry: HistoryEntry) -> Result<(), ModelError> {
        self.push_history(&entry, false)?;
        self.config
            .rootfs_mut()
            .diff_ids_mut()
            .push(diff_id.to_string());
        Ok(())
    }

    /// Number of layers (diff_ids).
    pub fn layer_count(&self) -> usize {
        self.config.rootfs().diff_ids().len()
    }

    /// The config as JSON bytes.
    pub fn config_json(&self) -> Result<Vec<u8>, ModelError> {
        let mut doc = serde_json::to_value(&self.config)?;
        if !self.runtime_extras.is_empty() {
            if let Some(runtime) = doc.get_mut("config").and_then(|c| c.as_object_mut()) {
                for (key, value) in &self.runtime_extras {
                    runtime.insert(key.clone(), value.clone());
                }
            }
        }
        Ok(crate::canonical::to_vec(&doc)?)
    }
}

/// A manifest for `config` and `layers`: OCI media types, or Docker v2 schema 2 ones when
/// `docker` is set (layers then use the Docker layer types).
pub fn manifest_json(
    config: &BlobRef,
    layers: &[BlobRef],
    docker: bool,
) -> Result<Vec<u8>, ModelError> {
    let manifest_type = media_types::manifest_type(docker);
    let config_type = if docker {
        media_types::DOCKER_CONFIG
    } else {
        media_types::OCI_CONFIG
    };
    let config_desc = DescriptorBuilder::default()
        .media_type(MediaType::from(config_type))
        .digest(spec_digest(&config.digest)?)
        .size(config.size)
        .build()?;
    let mut layer_descs = Vec::with_capacity(layers.len());
    for layer in layers {
        let media_type = if docker {
            media_types::docker_layer_type(&layer.media_type).unwrap_or(layer.media_type.as_str())
        } else {
            media_types::oci_layer_type(&layer.media_type)
        };
        layer_descs.push(
            DescriptorBuilder::default()
                .media_type(MediaType::from(media_type))
                .digest(spec_digest(&layer.digest)?)
                .size(layer.size)
                .build()?,
        );
    }
    let manifest = ImageManifestBuilder::default()
        .schema_version(2u32)
        .media_type(MediaType::from(manifest_type))
        .config(config_desc)
        .layers(layer_descs)
        .build()?;
    Ok(crate::canonical::to_vec(&manifest)?)
}

/// An OCI index with one entry per name for `manifest` (`org.opencontainers.image.ref.name`
/// and `io.containerd.image.name` annotations), or one unnamed entry.
pub fn index_json(
    manifest: &BlobRef,
    names: &[String],
    platform: Option<(&str, &str)>,
) -> Result<Vec<u8>, ModelError> {
    let mut entries = Vec::new();
    let plain: [Option<&String>; 1] = [None];
    let named: Vec<Option<&String>> = names.iter().map(Some).collect();
    for name in if names.is_empty() {
        plain.to_vec()
    } else {
        named
    } {
        let mut builder = DescriptorBuilder::default()
            .media_type(MediaType::from(manifest.media_type.as_str()))
            .digest(spec_digest(&manifest.digest)?)
            .size(manifest.size);
        if let Some(name) = name {
            let annotations: std::collections::HashMap<String, String> = [
                ("io.containerd.image.name".to_string(), name.clone()),
                (
                    "org.opencontainers.image.ref.name".to_string(),
                    name.clone(),
                ),
            ]
            .into_iter()
            .collect();
            builder = builder.annotations(annotations);
        }
        if let Some((os, arch)) = platform {
            builder = builder.platform(
                PlatformBuilder::default()
                    .os(Os::from(os))
                    .architecture(Arch::from(arch))
                    .build()?,
            );
        }
        entries.push(builder.build()?);
    }
    let index = ImageIndexBuilder::default()
        .schema_version(2u32)
        .media_type(MediaType::ImageIndex)
        .manifests(entries)
        .build()?;
    Ok(crate::canonical::to_vec(&index)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_tracks_layers_and_history() {
        let mut b = ImageBuilder::scratch("linux", "amd64", None).expect("scratch");
        b.update_runtime(|c| {
            c.set_env(Some(vec!["PATH=/bin".into()]));
        });
        b.add_empty_layer(HistoryEntry {
            created_by: "ENV PATH=/bin".into(),
            ..HistoryEntry::default()
        })
        .expect("history");
        let diff = Digest::of(b"layer");
        b.add_layer(
            &diff,
            HistoryEntry {
                created_by: "RUN x".into(),
                ..HistoryEntry::default()
            },
        )
        .expect("layer");
        let json: serde_json::Value =
            serde_json::from_slice(&b.config_json().expect("json")).expect("parse");
        assert_eq!(json["rootfs"]["diff_ids"][0], diff.to_string());
        assert_eq!(json["history"][0]["empty_layer"], true);
        assert!(json["history"][1].get("empty_layer").is_none());
        assert_eq!(json["architecture"], "amd64");
        assert_eq!(json["config"]["Env"][0], "PATH=/bin");
        assert_eq!(
            b.config_json().expect("again"),
            b.config_json().expect("stable")
        );
    }

    #[test]
    fn docker_only_config_keys_survive_a_rebuild() {
        let base = br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]},
            "config":{"Env":["A=1"],"Healthcheck":{"Test":["CMD-SHELL","true"],"Interval":30000000000},
            "OnBuild":["RUN echo hi"],"Shell":["/bin/bash","-c"],"ArgsEscaped":true}}"#;
        let mut b = ImageBuilder::from_config_json(base).expect("base");
        assert!(b.runtime_extra("Healthcheck").is_some());
        b.set_runtime_extra("Shell", None);
        b.update_runtime(|c| {
            c.set_env(Some(vec!["A=2".into()]));
        });
        let json: serde_json::Value =
            serde_json::from_slice(&b.config_json().expect("json")).expect("parse");
        assert_eq!(json["config"]["Env"][0], "A=2");
        assert_eq!(json["config"]["Healthcheck"]["Interval"], 30_000_000_000u64);
        assert_eq!(json["config"]["OnBuild"][0], "RUN echo hi");
        assert_eq!(json["config"]["ArgsEscaped"], true);
        assert!(json["config"].get("Shell").is_none());
    }

    #[test]
    fn manifests_and_index() {
        let config = BlobRef {
            digest: Digest::of(b"{}"),
            size: 2,
            media_type: media_types::OCI_CONFIG.into(),
        };
        let layer = BlobRef {
            digest: Digest::of(b"l"),
            size: 1,
            media_type: media_types::OCI_LAYER_GZIP.into(),
        };
        let oci: serde_json::Value = serde_json::from_slice(
            &manifest_json(&config, std::slice::from_ref(&layer), false).expect("oci"),
        )
        .expect("json");
        assert_eq!(oci["mediaType"], media_types::OCI_MANIFEST);
        assert_eq!(oci["layers"][0]["mediaType"], media_types::OCI_LAYER_GZIP);
        let docker: serde_json::Value =
            serde_json::from_slice(&manifest_json(&config, &[layer], true).expect("docker"))
                .expect("json");
        assert_eq!(docker["config"]["mediaType"], media_types::DOCKER_CONFIG);
        assert_eq!(
            docker["layers"][0]["mediaType"],
            media_types::DOCKER_LAYER_GZIP
        );
        let manifest = BlobRef {
            digest: Digest::of(b"m"),
            size: 1,
            media_type: media_types::OCI_MANIFEST.into(),
        };
        let index: serde_json::Value = serde_json::from_slice(
            &index_json(
                &manifest,
                &["rbuild-test/busybox:1".into()],
                Some(("linux", "amd64")),
            )
            .expect("index"),
        )
        .expect("json");
        assert_eq!(
            index["manifests"][0]["annotations"]["org.opencontainers.image.ref.name"],
            "rbuild-test/busybox:1"
        );
        assert_eq!(index["manifests"][0]["platform"]["architecture"], "amd64");
        // Annotations live in a HashMap: independent builds must still give identical bytes.
        let names = ["a/b:1".to_string(), "c:2".to_string()];
        let first = index_json(&manifest, &names, None).expect("index");
        for _ in 0..20 {
            assert_eq!(index_json(&manifest, &names, None).expect("index"), first);
        }
    }
}
