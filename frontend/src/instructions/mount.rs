//! `RUN --mount=...` specifications, parsed with BuildKit's rules.
//!
//! The value is one CSV record (Go `encoding/csv`: fields split on `,`, `"` quoting with `""`
//! for a literal quote) of `key=value` fields; `ro`/`rw`/`readonly`/`readwrite`/`required` may
//! stand alone. Values are expanded with the build's variables before they are interpreted (the
//! caller passes the expander; [`parse_mount`] with an identity expander only checks syntax).

/// The kind of a RUN mount.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum MountType {
    Bind,
    Cache,
    Tmpfs,
    Secret,
    Ssh,
}

/// How concurrent builds share a cache mount.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CacheSharing {
    Shared,
    Private,
    Locked,
}

/// One RUN mount. Invariant (enforced by [`parse_mount`]): `mode`/`uid`/`gid` only on cache,
/// secret and ssh mounts; `sharing` only on cache mounts; `size` only on tmpfs; `required` only on
/// secret and ssh; a secret has a source, a target or an id, and no `from`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Mount {
    #[serde(rename = "type")]
    pub kind: MountType,
    /// Stage or image the source is read from (bind, cache).
    pub from: Option<String>,
    pub source: Option<String>,
    /// Where it appears in the step; `None` only for secret and ssh (they have defaults).
    pub target: Option<String>,
    pub readonly: bool,
    /// Cache id, secret id or ssh id.
    pub id: Option<String>,
    pub sharing: Option<CacheSharing>,
    pub required: bool,
    /// tmpfs size limit in bytes.
    pub size: Option<u64>,
    pub mode: Option<u32>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    /// Secret exposed as this environment variable.
    pub env: Option<String>,
}

const ALL_KEYS: [&str; 19] = [
    "type",
    "from",
    "source",
    "target",
    "readonly",
    "id",
    "sharing",
    "required",
    "size",
    "mode",
    "uid",
    "gid",
    "src",
    "dst",
    "destination",
    "ro",
    "rw",
    "readwrite",
    "env",
];

/// Parses one `--mount` value. `expand` is applied to every value before it is interpreted.
pub fn parse_mount(
    spec: &str,
    expand: &mut dyn FnMut(&str) -> Result<String, String>,
) -> Result<Mount, String> {
    let mut m = Mount {
        kind: MountType::Bind,
        from: None,
        source: None,
        target: None,
        readonly: true,
        id: None,
        sharing: None,
        required: false,
        size: None,
        mode: None,
        uid: None,
        gid: None,
        env: None,
    };
    let mut ro_auto = true;
    for field in csv_record(spec)? {
        let (key, value) = match field.split_once('=') {
            Some((k, v)) => (k.to_ascii_lowercase(), Some(v)),
            None => (field.to_ascii_lowercase(), None),
        };
        let Some(raw) = value else {
            match key.as_str() {
                "readonly" | "ro" => (m.readonly, ro_auto) = (true, false),
                "readwrite" | "rw" => (m.readonly, ro_auto) = (false, false),
                "required" if matches!(m.kind, MountType::Secret | MountType::Ssh) => {
                    m.required = true
                }
                "required" => return Err(unexpected_for_type(&key, m.kind)),
                _ => return Err(format!("Invalid field `{field}`: must be a key=value pair")),
            }
            continue;
        };
        let value = expand(raw)?;
        match key.as_str() {
            "type" => {
                m.kind = match value.to_ascii_lowercase().as_str() {
                    "bind" => MountType::Bind,
                    "cache" => MountType::Cache,
                    "tmpfs" => MountType::Tmpfs,
                    "secret" => MountType::Secret,
                    "ssh" => MountType::Ssh,
                    _ => {
                        return Err(format!(
                    "Unsupported mount type `{value}` (expected bind, cache, tmpfs, secret or ssh)"
                ))
                    }
                }
            }
            "from" => m.from = Some(value),
            "source" | "src" => m.source = Some(value),
            "target" | "dst" | "destination" => m.target = Some(value),
            "readonly" | "ro" => (m.readonly, ro_auto) = (go_bool(&key, &value)?, false),
            "readwrite" | "rw" => (m.readonly, ro_auto) = (!go_bool(&key, &value)?, false),
            "required" if matches!(m.kind, MountType::Secret | MountType::Ssh) => {
                m.required = go_bool(&key, &value)?
            }
            "size" if m.kind == MountType::Tmpfs => m.size = Some(ram_in_bytes(&value)?),
            "required" | "size" => return Err(unexpected_for_type(&key, m.kind)),
            "id" => m.id = Some(value),
            "sharing" => {
                if m.kind != MountType::Cache {
                    return Err(format!("Invalid cache sharing set for {:?} mount", m.kind));
                }
                m.sharing = Some(match value.to_ascii_lowercase().as_str() {
                    "shared" => CacheSharing::Shared,
                    "private" => CacheSharing::Private,
                    "locked" => CacheSharing::Locked,
                    _ => return Err(format!("Unsupported sharing value `{value}`")),
                });
            }
            "mode" => {
                m.mode = Some(
                    u32::from_str_radix(&value, 8)
                        .map_err(|_| format!("Invalid value `{value}` for mode (octal)"))?,
                )
            }
            "uid" => m.uid = Some(parse_id(&key, &value)?),
            "gid" => m.gid = Some(parse_id(&key, &value)?),
            "env" if m.kind == MountType::Secret => m.env = Some(value),
            "env" => return Err(unexpected_for_type(&key, m.kind)),
            _ => {
                return Err(match super::flags::closest(&ALL_KEYS, &key) {
                    Some(k) => {
                        format!("Unexpected key `{key}` in `{field}`; did you mean `{k}`?")
                    }
                    None => format!(
                        "Unexpected key `{key}` in `{field}` (expected one of {})",
                        ALL_KEYS.join(", ")
                    ),
                });
            }
        }
    }
    validate(&mut m, ro_auto)?;
    Ok(m)
}

fn validate(m: &mut Mount, ro_auto: bool) -> Result<(), String> {
    let file_info_allowed = matches!(
        m.kind,
        MountType::Secret | MountType::Ssh | MountType::Cache
    );
    if !file_info_allowed {
        for (name, set) in [
            ("mode", m.mode.is_some()),
            ("uid", m.uid.is_some()),
            ("gid", m.gid.is_some()),
        ] {
            if set {
                return Err(format!("`{name}` not allowed for {:?} mounts", m.kind));
            }
        }
    }
    if ro_auto {
        m.readonly = !matches!(m.kind, MountType::Cache | MountType::Tmpfs);
    }
    if m.sharing.is_some() && m.kind != MountType::Cache {
        return Err(format!("Invalid cache sharing set for {:?} mount", m.kind));
    }
    match m.kind {
        MountType::Secret => {
            if m.from.is_some() {
                return Err("A secret mount cannot have `from`".into());
            }
            if m.source.is_none() && m.target.is_none() && m.id.is_none() {
                return Err(
                    "Invalid secret mount: one of `source`, `target` or `id` is required".into(),
                );
            }
            if m.source.is_some() && m.id.is_some() {
                return Err("A secret mount cannot have both `source` and `id`".into());
            }
        }
        MountType::Bind | MountType::Cache | MountType::Tmpfs if m.target.is_none() => {
            return Err(format!("Mount type {:?} requires a `target`", m.kind));
        }
        _ => {}
    }
    Ok(())
}

fn unexpected_for_type(key: &str, kind: MountType) -> String {
    format!("Unexpected key `{key}` for mount type {kind:?}")
}

/// Go's `strconv.ParseBool`.
fn go_bool(key: &str, value: &str) -> Result<bool, String> {
    match value {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Ok(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Ok(false),
        _ => Err(format!("Invalid value for `{key}`: `{value}`")),
    }
}

fn parse_id(key: &str, value: &str) -> Result<u32, String> {
    value
        .parse::<u32>()
        .map_err(|_| format!("Invalid value `{value}` for {key}"))
}

/// docker/go-units `RAMInBytes`: `64m`, `1.5g`, `512KiB`, `100` (binary multipliers).
pub(crate) fn ram_in_bytes(value: &str) -> Result<u64, String> {
    let err = || format!("Invalid size `{value}`");
    let number_end = value
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(value.len());
    let (number, unit) = value.split_at(number_end);
    if number.is_empty() || number.starts_with('.') || number.ends_with('.') {
        return Err(err());
    }
    let number: f64 = number.parse().map_err(|_| err())?;
    let unit = unit.strip_prefix(' ').unwrap_or(unit).to_ascii_lowercase();
    let unit = unit.strip_suffix('b').unwrap_or(&unit);
    let unit = unit.strip_suffix('i').unwrap_or(unit);
    let shift = match unit {
        "" => 0,
        "k" => 10,
        "m" => 20,
        "g" => 30,
        "t" => 40,
        "p" => 50,
        _ => return Err(err()),
    };
    let bytes = number * (1u64 << shift) as f64;
    if !bytes.is_finite() || bytes >= u64::MAX as f64 {
        return Err(err());
    }
    Ok(bytes as u64)
}

/// Splits one CSV record like Go's `encoding/csv` reader (no lazy quotes).
fn csv_record(line: &str) -> Result<Vec<String>, String> {
    let mut fields = Vec::new();
    let mut chars = line.chars().peekable();
    loop {
        let mut field = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            loop {
                match chars.next() {
                    Some('"') if chars.peek() == Some(&'"') => {
                        chars.next();
                        field.push('"');
                    }
                    Some('"') => break,
                    Some(c) => field.push(c),
                    None => return Err(format!("Invalid mount `{line}`: unterminated quote")),
                }
            }
            match chars.next() {
                None => {
                    fields.push(field);
                    return Ok(fields);
                }
                Some(',') => fields.push(field),
                Some(_) => return Err(format!("Invalid mount `{line}`: extraneous `\"` in field")),
            }
        } else {
            loop {
                match chars.next() {
                    None => {
                        fields.push(field);
                        return Ok(fields);
                    }
                    Some(',') => break,
                    Some('"') => return Err(format!("Invalid mount `{line}`: bare `\"` in field")),
                    Some(c) => field.push(c),
                }
            }
            fields.push(field);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<Mount, String> {
        parse_mount(s, &mut |v| Ok(v.to_string()))
    }

    #[test]
    fn defaults_and_kinds() {
        let m = parse("target=/x").expect("bind");
        assert_eq!(m.kind, MountType::Bind);
        assert!(m.readonly);
        let m =
            parse("type=cache,target=/root/.cache,sharing=locked,mode=0755,uid=1").expect("cache");
        assert!(!m.readonly);
        assert_eq!(m.sharing, Some(CacheSharing::Locked));
        assert_eq!(m.mode, Some(0o755));
        let m = parse("type=tmpfs,target=/t,size=64m").expect("tmpfs");
        assert_eq!(m.size, Some(64 << 20));
        let m = parse("type=secret,id=tok,required").expect("secret");
        assert!(m.required && m.readonly);
        let m = parse("type=bind,source=a,target=/b,rw").expect("rw bind");
        assert!(!m.readonly);
        let m = parse("\"type=bind\",target=/q").expect("quoted field");
        assert_eq!(m.target.as_deref(), Some("/q"));
    }

    #[test]
    fn errors() {
        assert!(parse("type=nfs,target=/x").is_err());
        assert!(parse("type=bind").is_err());
        assert!(parse("type=bind,target=/x,mode=0700").is_err());
        assert!(parse("type=bind,target=/x,sharing=shared").is_err());
        assert!(parse("type=secret,from=a,id=b").is_err());
        assert!(parse("type=secret").is_err());
        assert!(parse("target=/x,bogus=1").is_err());
        assert!(parse("target=/x,ro=maybe").is_err());
        assert!(parse("target=/x,nonsense").is_err());
        assert!(parse("target=/x,a\"b").is_err());
        assert!(parse("type=tmpfs,target=/t,size=lots").is_err());
    }
}
