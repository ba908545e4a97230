//! Choosing one manifest of an index (manifest list) by platform, as `docker pull` does: the
//! one rule for pulls (rbuild-registry) and for OCI layouts and archives ([`crate::import`]).

use serde_json::Value;

pub use rbuild_graph::Platform;

/// Whether an index entry's `platform` object names `wanted`. A missing variant on either side
/// matches (arm64 images rarely say `v8`); a given one must be equal.
pub fn matches(wanted: &Platform, platform: &Value) -> bool {
    let os = platform["os"].as_str().unwrap_or_default();
    let arch = platform["architecture"].as_str().unwrap_or_default();
    if os != wanted.os || arch != wanted.architecture {
        return false;
    }
    match (wanted.variant.as_deref(), platform["variant"].as_str()) {
        (Some(want), Some(have)) => want == have,
        _ => true,
    }
}

/// The entry of `index` for `platform`: an exact variant match first, then any match.
/// `Err` lists what the index has.
pub fn select<'a>(index: &'a Value, platform: &Platform) -> Result<&'a Value, String> {
    let entries = index["manifests"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or(&[]);
    let exact = entries.iter().find(|e| {
        matches(platform, &e["platform"])
            && e["platform"]["variant"].as_str() == platform.variant.as_deref()
    });
    if let Some(found) =
        exact.or_else(|| entries.iter().find(|e| matches(platform, &e["platform"])))
    {
        return Ok(found);
    }
    let available: Vec<String> = entries
        .iter()
        .map(|e| {
            let p = &e["platform"];
            let mut s = format!(
                "{}/{}",
                p["os"].as_str().unwrap_or("?"),
                p["architecture"].as_str().unwrap_or("?")
            );
            if let Some(v) = p["variant"].as_str() {
                s.push('/');
                s.push_str(v);
            }
            s
        })
        .collect();
    Err(if available.is_empty() {
        "nothing (the index is empty)".to_string()
    } else {
        available.join(", ")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn index() -> Value {
        serde_json::json!({"manifests": [
            {"digest": "sha256:a", "platform": {"os": "linux", "architecture": "arm", "variant": "v6"}},
            {"digest": "sha256:b", "platform": {"os": "linux", "architecture": "arm", "variant": "v7"}},
            {"digest": "sha256:c", "platform": {"os": "linux", "architecture": "amd64"}},
            {"digest": "sha256:d", "platform": {"os": "linux", "architecture": "arm64", "variant": "v8"}},
        ]})
    }

    #[test]
    fn chooses_by_os_architecture_and_variant() {
        let idx = index();
        let pick =
            |p: Platform| select(&idx, &p).map(|e| e["digest"].as_str().unwrap_or("").to_string());
        assert_eq!(
            pick(Platform::new("linux", "amd64", None)),
            Ok("sha256:c".into())
        );
        assert_eq!(
            pick(Platform::new("linux", "arm", Some("v7"))),
            Ok("sha256:b".into())
        );
        assert_eq!(
            pick(Platform::new("linux", "arm64", None)),
            Ok("sha256:d".into())
        );
        let err = pick(Platform::new("linux", "s390x", None)).expect_err("no s390x");
        assert_eq!(
            err,
            "linux/arm/v6, linux/arm/v7, linux/amd64, linux/arm64/v8"
        );
    }
}
