//! `-o/--output` specs, spelled as `docker buildx build` spells them.
//!
//! `type=KIND,key=value,...` (CSV); the shorthands `-o DIR` (= `type=local,dest=DIR`) and
//! `-o -` (= `type=tar,dest=-`). Every key is checked against what its type accepts; a value we
//! do not support is an error naming it, never ignored.

use std::path::PathBuf;

use rbuild_snapshotter::layer::Compression;

/// Where an export goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Dest {
    Stdout,
    Path(PathBuf),
}

/// The exporter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputKind {
    /// OCI image layout tarball.
    Oci,
    /// docker-archive tarball (also an OCI layout); without `dest`: load into an engine.
    Docker,
    /// The rootfs as a tarball.
    Tar,
    /// The rootfs as a directory.
    Local,
    /// An image pushed to (or kept for) a registry.
    Image,
}

/// A validated output spec.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Output {
    pub kind: OutputKind,
    /// `None` for `type=docker` (load into the engine) and `type=image`.
    pub dest: Option<Dest>,
    /// Layer compression for image outputs.
    pub compression: Compression,
    /// Docker media types instead of OCI ones (default for `type=docker`).
    pub docker_media_types: bool,
    /// `name=` (comma-separated list allowed as in buildx: `name=a,name=b` or `"name=a,b"`).
    pub names: Vec<String>,
    pub push: bool,
}

/// Why an output spec was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OutputError {
    #[error("Invalid output `{spec}`: {reason}")]
    Invalid { spec: String, reason: String },
}

fn invalid(spec: &str, reason: impl Into<String>) -> OutputError {
    OutputError::Invalid {
        spec: spec.to_string(),
        reason: reason.into(),
    }
}

fn parse_bool(spec: &str, key: &str, value: &str) -> Result<bool, OutputError> {
    match value {
        "true" | "1" => Ok(true),
        "false" | "0" => Ok(false),
        _ => Err(invalid(
            spec,
            format!("`{key}` must be true or false, not `{value}`"),
        )),
    }
}

/// Splits one CSV record (`"` quoting, `""` for a quote).
fn csv_fields(spec: &str) -> Result<Vec<String>, OutputError> {
    let mut fields = vec![String::new()];
    let mut quoted = false;
    let mut chars = spec.chars().peekable();
    while let Some(c) = chars.next() {
        match (c, quoted) {
            ('"', true) if chars.peek() == Some(&'"') => {
                chars.next();
                if let Some(f) = fields.last_mut() {
                    f.push('"');
                }
            }
            ('"', _) => quoted = !quoted,
            (',', false) => fields.push(String::new()),
            (c, _) => {
                if let Some(f) = fields.last_mut() {
                    f.push(c);
                }
            }
        }
    }
    if quoted {
        return Err(invalid(spec, "unterminated quote"));
    }
    Ok(fields)
}

/// Parses one `-o` value.
pub fn parse_output(spec: &str) -> Result<Output, OutputError> {
    let spec = spec.trim();
    if spec.is_empty() {
        return Err(invalid(spec, "empty"));
    }
    if spec == "-" {
        return parse_output("type=tar,dest=-");
    }
    if !spec.contains('=') {
        return parse_output(&format!("type=local,dest={spec}"));
    }
    let mut kind = None;
    let mut dest = None;
    let mut compression_name: Option<String> = None;
    let mut level: Option<i64> = None;
    let mut media: Option<bool> = None;
    let mut names = Vec::new();
    let mut push = false;
    for field in csv_fields(spec)? {
        let Some((key, value)) = field.split_once('=') else {
            return Err(invalid(spec, format!("`{field}` is not key=value")));
        };
        match key.trim() {
            "type" => {
                kind = Some(match value {
                    "oci" => OutputKind::Oci,
                    "docker" => OutputKind::Docker,
                    "tar" => OutputKind::Tar,
                    "local" => OutputKind::Local,
                    "image" | "registry" => {
                        if value == "registry" {
                            push = true;
                        }
                        OutputKind::Image
                    }
                    "cacheonly" => {
                        return Err(invalid(spec, "type `cacheonly` is not supported yet"))
                    }
                    other => {
                        return Err(invalid(
                            spec,
                            format!("unknown type `{other}` (expected oci, docker, tar, local, image or registry)"),
                        ))
                    }
                })
            }
            "dest" => {
                dest = Some(if value == "-" {
                    Dest::Stdout
                } else if value.is_empty() {
                    return Err(invalid(spec, "`dest` is empty"));
                } else {
                    Dest::Path(PathBuf::from(value))
                })
            }
            "compression" => compression_name = Some(value.to_string()),
            "compression-level" => {
                level = Some(value.parse().map_err(|_| {
                    invalid(spec, format!("`compression-level` must be a number, not `{value}`"))
                })?)
            }
            "force-compression" => {
                if parse_bool(spec, "force-compression", value)? {
                    return Err(invalid(
                        spec,
                        "`force-compression=true` is not supported yet (base image layers keep their compression; new layers use `compression=`)",
                    ));
                }
            }
            "oci-mediatypes" => media = Some(!parse_bool(spec, "oci-mediatypes", value)?),
            "name" => names.extend(value.split(',').filter(|n| !n.is_empty()).map(str::to_string)),
            "push" => push = parse_bool(spec, "push", value)?,
            other => return Err(invalid(spec, format!("unknown key `{other}`"))),
        }
    }
    let kind = kind.ok_or_else(|| invalid(spec, "missing `type=`"))?;
    let compression =
        Compression::from_options(compression_name.as_deref().unwrap_or("gzip"), level)
            .map_err(|e| invalid(spec, e.to_string()))?;
    match (kind, &dest) {
        (OutputKind::Local, None) => return Err(invalid(spec, "type=local needs `dest=DIR`")),
        (OutputKind::Local, Some(Dest::Stdout)) => {
            return Err(invalid(
                spec,
                "type=local cannot write to stdout; use type=tar,dest=-",
            ))
        }
        (OutputKind::Oci | OutputKind::Tar, None) => {
            return Err(invalid(
                spec,
                "this type needs `dest=FILE` (or `dest=-` for stdout)",
            ))
        }
        (OutputKind::Image, Some(_)) => {
            return Err(invalid(spec, "type=image takes `name=`, not `dest=`"))
        }
        (OutputKind::Image, None) if names.is_empty() => {
            return Err(invalid(spec, "type=image needs `name=REFERENCE`"))
        }
        _ => {}
    }
    if push && kind != OutputKind::Image {
        return Err(invalid(spec, "`push` applies to type=image only"));
    }
    Ok(Output {
        kind,
        dest,
        compression,
        docker_media_types: media.unwrap_or(kind == OutputKind::Docker),
        names,
        push,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(spec: &str) -> Output {
        parse_output(spec).unwrap_or_else(|e| panic!("{spec}: {e}"))
    }

    #[test]
    fn forms_buildx_accepts() {
        let o = ok("type=docker,dest=img.tar");
        assert_eq!(
            (o.kind, o.dest.clone()),
            (OutputKind::Docker, Some(Dest::Path("img.tar".into())))
        );
        assert!(o.docker_media_types);
        let o = ok("type=oci,dest=-,compression=zstd,compression-level=9");
        assert_eq!(o.dest, Some(Dest::Stdout));
        assert_eq!(o.compression, Compression::Zstd { level: 9 });
        assert!(!o.docker_media_types);
        assert_eq!(ok("out").kind, OutputKind::Local);
        assert_eq!(ok("-").kind, OutputKind::Tar);
        let o = ok("type=image,\"name=a:1,b:2\",push=true");
        assert_eq!(o.names, ["a:1", "b:2"]);
        assert!(o.push);
        assert!(ok("type=registry,name=r/x:1").push);
        assert_eq!(ok("type=docker").dest, None);
        assert!(!ok("type=docker,dest=x,oci-mediatypes=true").docker_media_types);
        assert_eq!(
            ok("type=tar,dest=x,compression=uncompressed").compression,
            Compression::Uncompressed
        );
    }

    #[test]
    fn refusals_name_the_problem() {
        for (spec, needle) in [
            ("type=nope,dest=x", "unknown type `nope`"),
            ("type=local", "needs `dest=DIR`"),
            ("type=local,dest=-", "cannot write to stdout"),
            ("type=oci", "needs `dest=FILE`"),
            ("type=docker,dest=x,colour=red", "unknown key `colour`"),
            ("type=docker,dest=x,compression=brotli", "brotli"),
            (
                "type=docker,dest=x,compression=gzip,compression-level=12",
                "12",
            ),
            (
                "type=docker,dest=x,compression-level=fast",
                "must be a number",
            ),
            ("type=image", "needs `name=REFERENCE`"),
            ("type=tar,dest=x,push=true", "applies to type=image only"),
            ("dest=x", "missing `type=`"),
            ("type=docker,\"dest=x", "unterminated quote"),
            ("type=cacheonly", "not supported yet"),
        ] {
            let err = parse_output(spec).expect_err(spec).to_string();
            assert!(err.contains(needle), "{spec}: {err}");
        }
    }
}
