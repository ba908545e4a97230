//! Deterministic JSON: object keys sorted, no insignificant whitespace.
//!
//! `oci-spec` keeps annotations, labels, exposed ports and volumes in `HashMap`s, which serde
//! writes in a per-instance random order; two builds of the same image would then get different
//! digests. Every image document goes through [`to_vec`], which sorts keys at every level
//! whatever serde_json's map features are.

use serde::ser::{SerializeMap, SerializeSeq};
use serde::{Serialize, Serializer};
use serde_json::Value;

struct Canonical<'a>(&'a Value);

impl Serialize for Canonical<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            Value::Object(map) => {
                let mut keys: Vec<&String> = map.keys().collect();
                keys.sort();
                let mut out = serializer.serialize_map(Some(keys.len()))?;
                for key in keys {
                    if let Some(value) = map.get(key) {
                        out.serialize_entry(key, &Canonical(value))?;
                    }
                }
                out.end()
            }
            Value::Array(items) => {
                let mut out = serializer.serialize_seq(Some(items.len()))?;
                for item in items {
                    out.serialize_element(&Canonical(item))?;
                }
                out.end()
            }
            scalar => scalar.serialize(serializer),
        }
    }
}

/// Serialises `value` as canonical JSON bytes.
pub fn to_vec<T: Serialize>(value: &T) -> Result<Vec<u8>, serde_json::Error> {
    let value = serde_json::to_value(value)?;
    serde_json::to_vec(&Canonical(&value))
}

#[cfg(test)]
mod tests {
    #[test]
    fn sorts_keys_at_every_level() {
        let mut inner = std::collections::HashMap::new();
        for k in ["zeta", "alpha", "mid"] {
            inner.insert(k.to_string(), 1);
        }
        let outer = serde_json::json!({"b": [inner], "a": {"y": 1, "x": 2}});
        assert_eq!(
            String::from_utf8(super::to_vec(&outer).expect("json")).expect("utf-8"),
            r#"{"a":{"x":2,"y":1},"b":[{"alpha":1,"mid":1,"zeta":1}]}"#
        );
    }
}
