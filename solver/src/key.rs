//! Cache keys: "same result across builds".
//!
//! A key is the sha256 of its *parts*, a sorted map of named strings: the op's own fields
//! (command text exactly as written, each env var, user, cwd, mounts, network, security; a
//! copy's sources, destination and flags; a mkdir's path and owner), the key of each input, and
//! the content the worker read for it (the manifest an image name resolved to, a checksum of
//! every file a COPY selects). The parts are kept next to the result so a later miss can say
//! which one changed ([`explain_miss`]).

use std::collections::BTreeMap;

use rbuild_graph::{Op, Vertex};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

/// Bumped whenever what a key covers changes, so old cache entries are never reused wrongly.
pub const KEY_VERSION: &str = "rbuild-cache-key-v1";

/// A cache key and what it was made of.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CacheKey {
    /// Hex sha256 of the parts.
    pub digest: String,
    /// Shared: a COPY of a large context has a part per file, and a key is handed to every
    /// consumer of its vertex (a clone must not copy twenty thousand strings).
    pub parts: std::sync::Arc<BTreeMap<String, String>>,
}

impl CacheKey {
    pub fn from_parts(parts: BTreeMap<String, String>) -> CacheKey {
        let mut hasher = Sha256::new();
        hasher.update(KEY_VERSION.as_bytes());
        for (name, value) in &parts {
            // Length-prefixed, so no two part lists hash alike by shifting a boundary.
            for field in [name, value] {
                hasher.update((field.len() as u64).to_le_bytes());
                hasher.update(field.as_bytes());
            }
        }
        CacheKey {
            digest: rbuild_graph::hex(&hasher.finalize()),
            parts: std::sync::Arc::new(parts),
        }
    }
}

/// The parts of `vertex`'s key: its op, its inputs' keys, and the content the worker read.
pub fn key_parts(
    vertex: &Vertex,
    input_keys: &[&CacheKey],
    content: BTreeMap<String, String>,
) -> BTreeMap<String, String> {
    let mut parts = BTreeMap::new();
    let json = |v: &dyn erased::Json| v.json();
    match &vertex.op {
        Op::Image { reference } => {
            parts.insert("op".into(), "image".into());
            parts.insert("image".into(), reference.clone());
        }
        Op::Scratch => {
            parts.insert("op".into(), "scratch".into());
        }
        Op::Context { name } => {
            parts.insert("op".into(), "context".into());
            parts.insert("context".into(), name.clone());
        }
        Op::Exec(exec) => {
            parts.insert("op".into(), "exec".into());
            parts.insert("command".into(), json(&exec.args));
            for (i, var) in exec.env.iter().enumerate() {
                let (name, value) = var.split_once('=').unwrap_or((var, ""));
                if exec.uncached_env.iter().any(|n| n == name) {
                    continue;
                }
                let kind = if exec.arg_names.iter().any(|n| n == name) {
                    "arg"
                } else {
                    "env"
                };
                // Position matters for the process (later wins), so it is part of the value.
                parts.insert(format!("{kind} {name}"), format!("{value}\u{0}{i}"));
            }
            parts.insert("cwd".into(), exec.cwd.clone());
            parts.insert("user".into(), exec.user.clone());
            parts.insert("network".into(), exec.network.clone());
            parts.insert("security".into(), exec.security.clone());
            for (i, mount) in exec.mounts.iter().enumerate() {
                parts.insert(format!("mount {i}"), json(mount));
            }
        }
        Op::Copy(copy) => {
            parts.insert("op".into(), if copy.add { "add" } else { "copy" }.into());
            parts.insert("sources".into(), json(&copy.sources));
            parts.insert("inline".into(), json(&copy.inline));
            parts.insert("dest".into(), copy.dest.clone());
            parts.insert("cwd".into(), copy.cwd.clone());
            parts.insert("chown".into(), json(&copy.chown));
            parts.insert("chmod".into(), json(&copy.chmod));
            parts.insert("excludes".into(), json(&copy.excludes));
        }
        Op::Mkdir(mkdir) => {
            parts.insert("op".into(), "mkdir".into());
            parts.insert("path".into(), mkdir.path.clone());
            parts.insert("user".into(), mkdir.user.clone());
        }
    }
    for (i, key) in input_keys.iter().enumerate() {
        // The source of a copy is keyed by the content it selects, not by how it was built:
        // a rebuilt stage with the same files hits below.
        let content_keyed = matches!(&vertex.op, Op::Copy(c) if c.input == i);
        if !content_keyed {
            parts.insert(format!("input {i}"), key.digest.clone());
        }
    }
    for (name, value) in content {
        parts.insert(format!("content {name}"), value);
    }
    parts
}

mod erased {
    pub trait Json {
        fn json(&self) -> String;
    }
    impl<T: serde::Serialize> Json for T {
        fn json(&self) -> String {
            serde_json::to_string(self).unwrap_or_default()
        }
    }
}

/// The content part a worker adds beside file digests to name how it computes them (never a
/// file's path: those are relative). A change of it explains a miss by itself.
pub const DIGEST_SCHEME: &str = "/digest";

/// Why a key missed, given the parts the same step had last time (`None`: never built).
pub fn explain_miss(
    previous: Option<&BTreeMap<String, String>>,
    now: &BTreeMap<String, String>,
) -> String {
    let Some(previous) = previous else {
        return "no cache entry (first build of this step)".into();
    };
    let scheme = format!("content {DIGEST_SCHEME}");
    if let Some(now_scheme) = now.get(&scheme) {
        if previous.get(&scheme) != Some(now_scheme) {
            let before = previous.get(&scheme).map_or("sha256", String::as_str);
            return format!(
                "files are hashed another way since this step last ran ({before} -> {now_scheme}, \
                 an rbuild upgrade): its file digests are all new"
            );
        }
    }
    let mut changed: Vec<String> = Vec::new();
    for (name, value) in now {
        if previous.get(name) != Some(value) {
            changed.push(describe(name, previous.contains_key(name)));
        }
    }
    for name in previous.keys() {
        if !now.contains_key(name) {
            changed.push(describe_removed(name));
        }
    }
    if changed.is_empty() {
        return "no cache entry (the same inputs were built before, but the result is gone)".into();
    }
    // The parent alone explains a chain of misses; say it first.
    changed.sort_by_key(|c| !c.starts_with("parent"));
    let total = changed.len();
    changed.truncate(4);
    let more = if total > 4 {
        format!(" and {} more", total - 4)
    } else {
        String::new()
    };
    format!("{}{more}", changed.join(", "))
}

fn describe(part: &str, existed: bool) -> String {
    let verb = if existed { "changed" } else { "added" };
    if part == "input 0" {
        return "parent step changed".into();
    }
    if let Some(n) = part.strip_prefix("input ") {
        return format!("mount source {n} changed");
    }
    if let Some(name) = part.strip_prefix("env ") {
        return format!("env var {name} {verb}");
    }
    if let Some(name) = part.strip_prefix("arg ") {
        return format!("build arg {name} {verb}");
    }
    if let Some(path) = part.strip_prefix("content ") {
        return match path {
            "manifest" => "image changed".into(),
            _ => format!("file {path} {verb}"),
        };
    }
    match part {
        "command" => "instruction text changed".into(),
        other => format!("{other} changed"),
    }
}

fn describe_removed(part: &str) -> String {
    if let Some(name) = part.strip_prefix("env ") {
        return format!("env var {name} removed");
    }
    if let Some(name) = part.strip_prefix("arg ") {
        return format!("build arg {name} removed");
    }
    if let Some(path) = part.strip_prefix("content ") {
        return format!("file {path} removed");
    }
    format!("{part} removed")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    #[test]
    fn keys_differ_by_any_part_and_not_by_order_of_insertion() {
        let a = CacheKey::from_parts(parts(&[("command", "[\"a\"]"), ("cwd", "/")]));
        let b = CacheKey::from_parts(parts(&[("cwd", "/"), ("command", "[\"a\"]")]));
        let c = CacheKey::from_parts(parts(&[("command", "[\"a \"]"), ("cwd", "/")]));
        assert_eq!(a.digest, b.digest);
        assert_ne!(a.digest, c.digest);
        // Boundaries are length-prefixed.
        let d = CacheKey::from_parts(parts(&[("ab", "c")]));
        let e = CacheKey::from_parts(parts(&[("a", "bc")]));
        assert_ne!(d.digest, e.digest);
    }

    #[test]
    fn misses_name_what_changed() {
        let before = parts(&[
            ("input 0", "p1"),
            ("env NAME", "x\u{0}0"),
            ("content a/b.txt", "d1"),
            ("command", "c"),
        ]);
        let after = parts(&[
            ("input 0", "p1"),
            ("env NAME", "y\u{0}0"),
            ("content a/b.txt", "d2"),
            ("command", "c"),
        ]);
        assert_eq!(
            explain_miss(Some(&before), &after),
            "file a/b.txt changed, env var NAME changed"
        );
        let parent = parts(&[
            ("input 0", "p2"),
            ("env NAME", "x\u{0}0"),
            ("content a/b.txt", "d1"),
            ("command", "c"),
        ]);
        assert_eq!(explain_miss(Some(&before), &parent), "parent step changed");
        assert!(explain_miss(None, &after).starts_with("no cache entry"));
        // Digests of another scheme are no file change.
        let mut hashed = parts(&[("content a/b.txt", "d3")]);
        hashed.insert(format!("content {DIGEST_SCHEME}"), "blake3".into());
        assert_eq!(
            explain_miss(Some(&before), &hashed),
            "files are hashed another way since this step last ran (sha256 -> blake3, an rbuild \
             upgrade): its file digests are all new"
        );
    }
}
