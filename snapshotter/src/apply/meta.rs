//! The metadata of one entry: the ustar header, overridden by its PAX records.

use std::io::Read;

use rustix::fs::Timespec;
use rustix::fs::Timestamps;

use super::ApplyError;

/// PAX prefix of extended attributes (the form GNU tar and Go's archive/tar write).
const XATTR_PREFIX: &str = "SCHILY.xattr.";

/// Extended attributes an archive may not set: they belong to the overlay filesystem of the
/// machine applying the layer, and a layer that carried them could fake whiteouts or redirects.
/// Overlay bookkeeping attributes never come from an archive: a layer could otherwise fake
/// whiteouts or opaque directories (`user.overlay.*` too, in case a view is ever mounted with
/// `userxattr`).
const FORBIDDEN_XATTR_PREFIXES: [&[u8]; 2] = [b"trusted.overlay.", b"user.overlay."];

/// Owner, permissions, time and extended attributes of an entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Meta {
    /// Permission bits including setuid, setgid and sticky (`0o7777`).
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub mtime: Timespec,
    /// `(name, value)` pairs, names without NUL, `trusted.overlay.*` removed.
    pub xattrs: Vec<(Vec<u8>, Vec<u8>)>,
}

impl Meta {
    /// Both timestamps set to the entry's mtime (as containerd does when no atime is given).
    pub(crate) fn timestamps(&self) -> Timestamps {
        Timestamps {
            last_access: self.mtime,
            last_modification: self.mtime,
        }
    }
}

/// Reads the metadata of `entry`; `name` is only for messages.
pub(crate) fn read_meta<R: Read>(
    entry: &mut tar::Entry<'_, R>,
    name: &str,
) -> Result<Meta, ApplyError> {
    let header = entry.header();
    let header_error = |key: &str| ApplyError::Pax {
        entry: name.to_owned(),
        key: key.to_owned(),
    };
    let mode = header.mode().map_err(|_| header_error("mode"))? & 0o7777;
    let mut uid = header.uid().map_err(|_| header_error("uid"))?;
    let mut gid = header.gid().map_err(|_| header_error("gid"))?;
    let mut mtime = Timespec {
        tv_sec: i64::try_from(header.mtime().map_err(|_| header_error("mtime"))?)
            .map_err(|_| header_error("mtime"))?,
        tv_nsec: 0,
    };
    let mut xattrs = Vec::new();
    let extensions = entry.pax_extensions().map_err(|source| ApplyError::Entry {
        entry: name.to_owned(),
        source,
    })?;
    for extension in extensions.into_iter().flatten() {
        let extension = extension.map_err(|source| ApplyError::Entry {
            entry: name.to_owned(),
            source,
        })?;
        let Ok(key) = extension.key() else { continue };
        let value = extension.value_bytes();
        match key {
            "uid" => uid = parse_decimal(value).ok_or_else(|| header_error(key))?,
            "gid" => gid = parse_decimal(value).ok_or_else(|| header_error(key))?,
            "mtime" => mtime = parse_time(value).ok_or_else(|| header_error(key))?,
            _ => {
                if let Some(attr) = key.strip_prefix(XATTR_PREFIX) {
                    let attr = attr.as_bytes();
                    if attr.is_empty() || attr.contains(&0) {
                        return Err(header_error(key));
                    }
                    if !FORBIDDEN_XATTR_PREFIXES.iter().any(|p| attr.starts_with(p)) {
                        xattrs.push((attr.to_vec(), value.to_vec()));
                    }
                }
            }
        }
    }
    let uid = u32::try_from(uid).map_err(|_| header_error("uid"))?;
    let gid = u32::try_from(gid).map_err(|_| header_error("gid"))?;
    Ok(Meta {
        mode,
        uid,
        gid,
        mtime,
        xattrs,
    })
}

fn parse_decimal(value: &[u8]) -> Option<u64> {
    std::str::from_utf8(value).ok()?.trim().parse().ok()
}

/// A PAX time: `[-]seconds[.fraction]`.
fn parse_time(value: &[u8]) -> Option<Timespec> {
    let text = std::str::from_utf8(value).ok()?.trim();
    let (negative, text) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let (seconds, fraction) = text.split_once('.').unwrap_or((text, ""));
    // Digits only: `--5` or `+5` are not PAX times, and a second sign must not reach parse().
    if seconds.is_empty() || !seconds.bytes().all(|byte| byte.is_ascii_digit()) {
        return None;
    }
    let seconds: i64 = seconds.parse().ok()?;
    if !fraction.bytes().all(|byte| byte.is_ascii_digit()) {
        return None;
    }
    let digits: String = fraction
        .chars()
        .chain("000000000".chars())
        .take(9)
        .collect();
    let nanos: i64 = digits.parse().ok()?;
    let (tv_sec, tv_nsec) = match (negative, nanos) {
        (false, _) => (seconds, nanos),
        (true, 0) => (seconds.checked_neg()?, 0),
        (true, _) => (
            seconds.checked_neg()?.checked_sub(1)?,
            1_000_000_000 - nanos,
        ),
    };
    Some(Timespec { tv_sec, tv_nsec })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pax_times_parse_with_fractions_and_signs() {
        let t = |s: &str| parse_time(s.as_bytes()).map(|t| (t.tv_sec, t.tv_nsec));
        assert_eq!(t("1700000000"), Some((1_700_000_000, 0)));
        assert_eq!(t("1700000000.5"), Some((1_700_000_000, 500_000_000)));
        assert_eq!(t("1.0000000019"), Some((1, 1)));
        assert_eq!(t("-1.25"), Some((-2, 750_000_000)));
        assert_eq!(t("x"), None);
        assert_eq!(t("1.2x"), None);
        assert_eq!(t("--5"), None);
        assert_eq!(t("+5"), None);
        assert_eq!(t("--9223372036854775808"), None);
        assert_eq!(
            t("-9223372036854775808"),
            None,
            "i64::MIN seconds cannot be negated"
        );
        assert_eq!(
            t("-9223372036854775807"),
            Some((-9_223_372_036_854_775_807, 0))
        );
        assert_eq!(t("-9223372036854775807.5"), Some((i64::MIN, 500_000_000)));
    }
}
