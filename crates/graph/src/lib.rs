//! rbuild-graph: the build IR, the only thing the frontend and the solver share.
//!
//! A [`Definition`] is a DAG (petgraph) of [`Vertex`]es, each an [`Op`] over its inputs. Input 0
//! of a filesystem op ([`Op::Exec`], [`Op::Copy`], [`Op::Mkdir`]) is the rootfs it changes; a
//! copy's source and a mount's source are further inputs, named by index. The solver never sees
//! a Dockerfile type: everything an op needs to run is in the op.
//!
//! Two identities, kept apart (as BuildKit does):
//! - [`Vertex::digest`]: "same node in this build", the hash of the canonical op and of its
//!   inputs' digests. Identical work in one build runs once.
//! - the cache key (solver): "same result across builds", which also covers the *content* an op
//!   reads (the files a COPY selects, the manifest an image name resolves to).

mod platform;

pub use platform::Platform;

use petgraph::graph::{DiGraph, NodeIndex};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

/// A vertex's position in its definition.
pub type VertexId = NodeIndex;

/// One operation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "lowercase")]
pub enum Op {
    /// An image from the local store (or, with issue 6, a registry), by reference as written.
    Image {
        reference: String,
    },
    /// The empty filesystem.
    Scratch,
    /// The build context (`name` is `context` or a `--build-context` name).
    Context {
        name: String,
    },
    Exec(Exec),
    Copy(Copy),
    Mkdir(Mkdir),
}

/// RUN.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Exec {
    /// argv (shell form already wrapped in the stage's SHELL).
    pub args: Vec<String>,
    /// `KEY=VALUE`, in order.
    pub env: Vec<String>,
    /// Names in `env` that come from ARG (reported as build args when they change the key).
    pub arg_names: Vec<String>,
    /// Names in `env` left out of the cache key (proxy build args, as in BuildKit).
    pub uncached_env: Vec<String>,
    pub cwd: String,
    /// The USER value as written (resolved against the rootfs when the step runs).
    pub user: String,
    /// `default`, `none` or `host`.
    pub network: String,
    /// `sandbox` or `insecure`.
    pub security: String,
    pub mounts: Vec<ExecMount>,
}

/// A `RUN --mount`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecMount {
    /// `bind`, `cache`, `tmpfs`, `secret` or `ssh`.
    pub kind: String,
    pub target: String,
    /// Input index of the source filesystem (bind, cache with `from`).
    pub input: Option<usize>,
    /// Path inside the source (`source=`), `/` by default.
    pub source: String,
    pub readonly: bool,
    /// cache: id (default: the target); secret/ssh: id.
    pub id: Option<String>,
    /// cache: `shared`, `private` or `locked`.
    pub sharing: Option<String>,
    pub mode: Option<u32>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    /// tmpfs: bytes.
    pub size: Option<u64>,
    /// secret/ssh: fail when the id was not given.
    pub required: bool,
}

/// COPY and ADD.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Copy {
    /// Input index of the source (the context or a stage).
    pub input: usize,
    /// Source paths as written (cleaned and clamped to the source root by the worker).
    pub sources: Vec<String>,
    /// Files given inline (heredocs): name and content.
    pub inline: Vec<(String, String)>,
    /// Destination: absolute, or relative to `cwd`.
    pub dest: String,
    pub cwd: String,
    /// `--chown` as written, resolved against the destination rootfs.
    pub chown: Option<String>,
    /// `--chmod` octal mode.
    pub chmod: Option<u32>,
    pub excludes: Vec<String>,
    /// ADD: unpack local tar archives.
    pub add: bool,
    /// ADD `--unpack`: `Some(false)` copies archives as files.
    pub unpack: Option<bool>,
    /// Whether the source is the build context (uid/gid become 0, .dockerignore applies).
    pub from_context: bool,
}

/// WORKDIR: create a directory (and its parents) owned by `user`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mkdir {
    pub path: String,
    pub user: String,
}

/// One node of the graph.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Vertex {
    pub op: Op,
    /// Inputs, in order (see [`Op`]).
    pub inputs: Vec<VertexId>,
    /// Progress label, BuildKit style: `[build 2/4] RUN make`.
    pub name: String,
    /// The Dockerfile line range it comes from (0 when none).
    pub line: usize,
    pub end_line: usize,
    /// The stage it belongs to, for `--no-cache-filter` and progress.
    pub stage: Option<usize>,
    /// A stable slot for "why did it miss": stage and step position, same across builds of
    /// the same Dockerfile.
    pub slot: String,
    /// Hash of the op and its inputs' digests, set by [`Definition::add`].
    pub digest: String,
}

/// The graph and its output vertex.
#[derive(Debug, Clone, Default)]
pub struct Definition {
    pub graph: DiGraph<Vertex, usize>,
    pub target: Option<VertexId>,
}

impl Definition {
    /// Adds a vertex after its inputs, computing its digest; an identical vertex (same op, same
    /// inputs) already in the graph is returned instead of a new one.
    pub fn add(&mut self, mut vertex: Vertex) -> VertexId {
        let mut hasher = Sha256::new();
        hasher.update(b"rbuild-vertex-v1\0");
        hasher.update(serde_json::to_vec(&vertex.op).unwrap_or_default());
        for input in &vertex.inputs {
            hasher.update(b"\0");
            hasher.update(self.graph[*input].digest.as_bytes());
        }
        vertex.digest = hex(&hasher.finalize());
        if let Some(existing) = self
            .graph
            .node_indices()
            .find(|i| self.graph[*i].digest == vertex.digest)
        {
            return existing;
        }
        let inputs = vertex.inputs.clone();
        let id = self.graph.add_node(vertex);
        for (position, input) in inputs.into_iter().enumerate() {
            self.graph.add_edge(input, id, position);
        }
        id
    }

    pub fn vertex(&self, id: VertexId) -> &Vertex {
        &self.graph[id]
    }

    /// The vertices the target needs, each after its inputs.
    pub fn needed(&self) -> Vec<VertexId> {
        let Some(target) = self.target else {
            return Vec::new();
        };
        let mut order = Vec::new();
        let mut seen = std::collections::HashSet::new();
        let mut stack = vec![(target, false)];
        while let Some((id, expanded)) = stack.pop() {
            if expanded {
                order.push(id);
                continue;
            }
            if !seen.insert(id) {
                continue;
            }
            stack.push((id, true));
            for input in self.graph[id].inputs.iter().rev() {
                if !seen.contains(input) {
                    stack.push((*input, false));
                }
            }
        }
        order
    }

    /// Graphviz text of the needed vertices.
    pub fn to_dot(&self) -> String {
        let mut out = String::from(
            "digraph build {\n  rankdir=TB;\n  node [shape=box, fontname=monospace];\n",
        );
        for id in self.needed() {
            let v = &self.graph[id];
            let label = v.name.replace('\\', "\\\\").replace('"', "\\\"");
            out.push_str(&format!("  v{} [label=\"{}\"];\n", id.index(), label));
            for (position, input) in v.inputs.iter().enumerate() {
                out.push_str(&format!(
                    "  v{} -> v{} [label=\"{}\"];\n",
                    input.index(),
                    id.index(),
                    position
                ));
            }
        }
        out.push_str("}\n");
        out
    }

    /// JSON of the needed vertices: id, name, op, inputs, digest.
    pub fn to_json(&self) -> serde_json::Value {
        let vertices: Vec<serde_json::Value> = self
            .needed()
            .into_iter()
            .map(|id| {
                let v = &self.graph[id];
                serde_json::json!({
                    "id": id.index(),
                    "name": v.name,
                    "line": v.line,
                    "op": v.op,
                    "inputs": v.inputs.iter().map(|i| i.index()).collect::<Vec<_>>(),
                    "digest": v.digest,
                })
            })
            .collect();
        serde_json::json!({ "target": self.target.map(|t| t.index()), "vertices": vertices })
    }
}

/// Lower-case hex of bytes.
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(DIGITS[(b >> 4) as usize] as char);
        out.push(DIGITS[(b & 15) as usize] as char);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vertex(op: Op, inputs: Vec<VertexId>) -> Vertex {
        Vertex {
            op,
            inputs,
            name: String::new(),
            line: 0,
            end_line: 0,
            stage: None,
            slot: String::new(),
            digest: String::new(),
        }
    }

    #[test]
    fn identical_vertices_are_one_and_needed_lists_inputs_first() {
        let mut def = Definition::default();
        let image = def.add(vertex(
            Op::Image {
                reference: "busybox".into(),
            },
            vec![],
        ));
        let again = def.add(vertex(
            Op::Image {
                reference: "busybox".into(),
            },
            vec![],
        ));
        assert_eq!(image, again);
        let dir = def.add(vertex(
            Op::Mkdir(Mkdir {
                path: "/a".into(),
                user: String::new(),
            }),
            vec![image],
        ));
        let ctx = def.add(vertex(
            Op::Context {
                name: "context".into(),
            },
            vec![],
        ));
        let unused = def.add(vertex(Op::Scratch, vec![]));
        let copy = def.add(vertex(
            Op::Copy(Copy {
                input: 1,
                sources: vec!["a".into()],
                inline: vec![],
                dest: "/".into(),
                cwd: "/".into(),
                chown: None,
                chmod: None,
                excludes: vec![],
                add: false,
                unpack: None,
                from_context: true,
            }),
            vec![dir, ctx],
        ));
        def.target = Some(copy);
        let needed = def.needed();
        assert_eq!(needed.len(), 4);
        assert!(!needed.contains(&unused));
        let pos = |id| needed.iter().position(|x| *x == id).expect("present");
        assert!(pos(image) < pos(dir) && pos(dir) < pos(copy) && pos(ctx) < pos(copy));
        assert!(def
            .to_dot()
            .contains(&format!("v{} -> v{}", dir.index(), copy.index())));
    }

    #[test]
    fn the_digest_covers_inputs() {
        let mut def = Definition::default();
        let a = def.add(vertex(
            Op::Image {
                reference: "a".into(),
            },
            vec![],
        ));
        let b = def.add(vertex(
            Op::Image {
                reference: "b".into(),
            },
            vec![],
        ));
        let mk = |input| {
            vertex(
                Op::Mkdir(Mkdir {
                    path: "/x".into(),
                    user: String::new(),
                }),
                vec![input],
            )
        };
        let on_a = def.add(mk(a));
        let on_b = def.add(mk(b));
        assert_ne!(def.vertex(on_a).digest, def.vertex(on_b).digest);
    }
}
