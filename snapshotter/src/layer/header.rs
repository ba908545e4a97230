//! Tar headers, written byte by byte: one ustar header per entry, preceded by a PAX extended
//! header (`typeflag 'x'`) when a value does not fit ustar.
//!
//! Exact choices (all of them fixed, so the bytes depend only on the entry):
//! - ustar magic `"ustar\0"`, version `"00"`; `uname`, `gname` and `prefix` are empty (all NUL).
//! - Numeric fields are zero-padded octal filling the field but its last byte, which is NUL
//!   (`mode` `"0000755\0"`, `size` `"00000000000\0"`), the form Go's `archive/tar` writes;
//!   `devmajor`/`devminor` are written this way for every entry (zero unless a device).
//! - `chksum` is six octal digits, NUL, space (POSIX), computed with the field as spaces.
//! - `mode` holds the permission bits with setuid, setgid and sticky (`st_mode & 0o7777`), never
//!   the file type bits (the typeflag says that).
//! - `mtime` is whole seconds; no `atime`/`ctime` anywhere.
//! - A path longer than 100 bytes goes in a PAX `path` record (never split into `prefix`); the
//!   ustar `name` then holds its first 100 bytes. Likewise `linkpath` past 100 bytes, and `uid`,
//!   `gid`, `size`, `mtime` that do not fit their octal field (the field then holds 0).
//! - PAX records are sorted by key bytes; xattrs are `SCHILY.xattr.<name>` with the raw value.
//!   Values are raw bytes: a non-UTF-8 name is written as it is (Go, GNU tar and the `tar` crate
//!   read it back unchanged). The PAX header itself is named `PaxHeader`, mode 0, uid/gid/mtime 0.
//! - Data is padded with NUL to 512 bytes; the archive ends with two zero blocks and no further
//!   padding to a record size.

/// Tar block size.
pub(crate) const BLOCK: usize = 512;

const NAME_LEN: usize = 100;
/// Largest value of an octal field of `width` bytes (the last byte is NUL).
const fn octal_max(width: u32) -> u64 {
    (1u64 << (3 * (width - 1))) - 1
}

/// Entry types, as the ustar typeflag byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum TypeFlag {
    Regular = b'0',
    Hardlink = b'1',
    Symlink = b'2',
    Char = b'3',
    Block = b'4',
    Directory = b'5',
    Fifo = b'6',
}

/// Everything one header says. `path` is relative, without `./`; directories end with `/`.
#[derive(Debug)]
pub(crate) struct HeaderSpec<'a> {
    pub path: &'a [u8],
    pub typeflag: TypeFlag,
    pub mode: u32,
    pub uid: u64,
    pub gid: u64,
    pub size: u64,
    pub mtime: i64,
    /// Symlink target or hardlink target path; empty otherwise.
    pub link: &'a [u8],
    pub dev_major: u32,
    pub dev_minor: u32,
    /// Extended attributes to record, sorted by name.
    pub xattrs: &'a [(Vec<u8>, Vec<u8>)],
}

/// Appends the PAX header (if one is needed) and the ustar header of `spec` to `out`.
pub(crate) fn encode(spec: &HeaderSpec<'_>, out: &mut Vec<u8>) {
    let mut records: Vec<(Vec<u8>, &[u8])> = Vec::new();
    let mtime_text;
    let uid_text;
    let gid_text;
    let size_text;
    if spec.path.len() > NAME_LEN {
        records.push((b"path".to_vec(), spec.path));
    }
    if spec.link.len() > NAME_LEN {
        records.push((b"linkpath".to_vec(), spec.link));
    }
    let mtime_fits = spec.mtime >= 0 && spec.mtime as u64 <= octal_max(12);
    if !mtime_fits {
        mtime_text = spec.mtime.to_string();
        records.push((b"mtime".to_vec(), mtime_text.as_bytes()));
    }
    if spec.uid > octal_max(8) {
        uid_text = spec.uid.to_string();
        records.push((b"uid".to_vec(), uid_text.as_bytes()));
    }
    if spec.gid > octal_max(8) {
        gid_text = spec.gid.to_string();
        records.push((b"gid".to_vec(), gid_text.as_bytes()));
    }
    if spec.size > octal_max(12) {
        size_text = spec.size.to_string();
        records.push((b"size".to_vec(), size_text.as_bytes()));
    }
    for (name, value) in spec.xattrs {
        let mut key = b"SCHILY.xattr.".to_vec();
        key.extend_from_slice(name);
        records.push((key, value));
    }
    if !records.is_empty() {
        records.sort_by(|a, b| a.0.cmp(&b.0));
        let mut data = Vec::new();
        for (key, value) in &records {
            pax_record(&mut data, key, value);
        }
        let pax = HeaderSpec {
            path: b"PaxHeader",
            typeflag: TypeFlag::Regular,
            mode: 0,
            uid: 0,
            gid: 0,
            size: data.len() as u64,
            mtime: 0,
            link: b"",
            dev_major: 0,
            dev_minor: 0,
            xattrs: &[],
        };
        ustar(&pax, b'x', out);
        out.extend_from_slice(&data);
        pad(out);
    }
    ustar(spec, spec.typeflag as u8, out);
}

/// Appends NUL bytes up to the next block boundary.
pub(crate) fn pad(out: &mut Vec<u8>) {
    let rem = out.len() % BLOCK;
    if rem != 0 {
        out.resize(out.len() + BLOCK - rem, 0);
    }
}

/// Number of NUL bytes that follow `size` bytes of data.
pub(crate) fn padding(size: u64) -> usize {
    let rem = (size % BLOCK as u64) as usize;
    if rem == 0 {
        0
    } else {
        BLOCK - rem
    }
}

/// One PAX record: `"<len> <key>=<value>\n"`, where `<len>` counts the whole record.
fn pax_record(out: &mut Vec<u8>, key: &[u8], value: &[u8]) {
    let rest = key.len() + value.len() + 3; // ' ', '=', '\n'
    let mut len = rest + decimal_digits(rest);
    if decimal_digits(len) != decimal_digits(rest) {
        len = rest + decimal_digits(len);
    }
    out.extend_from_slice(len.to_string().as_bytes());
    out.push(b' ');
    out.extend_from_slice(key);
    out.push(b'=');
    out.extend_from_slice(value);
    out.push(b'\n');
}

fn decimal_digits(n: usize) -> usize {
    n.to_string().len()
}

/// Appends one 512-byte ustar header. Values that do not fit were already put in PAX records;
/// here they become 0 (numbers) or their first 100 bytes (names).
fn ustar(spec: &HeaderSpec<'_>, typeflag: u8, out: &mut Vec<u8>) {
    let mut h = [0u8; BLOCK];
    copy_truncated(&mut h[0..100], spec.path);
    octal(&mut h[100..108], u64::from(spec.mode & 0o7777));
    octal(&mut h[108..116], fit(spec.uid, 8));
    octal(&mut h[116..124], fit(spec.gid, 8));
    octal(&mut h[124..136], fit(spec.size, 12));
    let mtime = u64::try_from(spec.mtime).unwrap_or(0);
    octal(&mut h[136..148], fit(mtime, 12));
    h[156] = typeflag;
    copy_truncated(&mut h[157..257], spec.link);
    h[257..263].copy_from_slice(b"ustar\0");
    h[263..265].copy_from_slice(b"00");
    octal(&mut h[329..337], fit(u64::from(spec.dev_major), 8));
    octal(&mut h[337..345], fit(u64::from(spec.dev_minor), 8));
    h[148..156].fill(b' ');
    let sum: u32 = h.iter().map(|&b| u32::from(b)).sum();
    octal(&mut h[148..155], u64::from(sum));
    h[155] = b' ';
    out.extend_from_slice(&h);
}

fn fit(value: u64, width: u32) -> u64 {
    if value > octal_max(width) {
        0
    } else {
        value
    }
}

fn copy_truncated(field: &mut [u8], value: &[u8]) {
    let n = value.len().min(field.len());
    field[..n].copy_from_slice(&value[..n]);
}

/// Zero-padded octal in all but the last byte of `field`, which is NUL.
fn octal(field: &mut [u8], mut value: u64) {
    let digits = field.len() - 1;
    for i in (0..digits).rev() {
        field[i] = b'0' + (value & 7) as u8;
        value >>= 3;
    }
    field[digits] = 0;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pax_record_lengths_count_themselves() {
        for n in [
            0usize, 1, 5, 6, 7, 8, 90, 94, 95, 96, 97, 98, 99, 100, 990, 995, 996, 1000,
        ] {
            let mut out = Vec::new();
            pax_record(&mut out, b"path", &vec![b'a'; n]);
            let text = String::from_utf8(out.clone()).expect("ascii");
            let (len, _) = text.split_once(' ').expect("space");
            assert_eq!(
                len.parse::<usize>().expect("number"),
                out.len(),
                "value length {n}"
            );
        }
    }

    #[test]
    fn ustar_fields_are_fixed_width_octal() {
        let spec = HeaderSpec {
            path: b"a/b",
            typeflag: TypeFlag::Regular,
            mode: 0o104755,
            uid: 1000,
            gid: 2000,
            size: 5,
            mtime: 1_700_000_000,
            link: b"",
            dev_major: 0,
            dev_minor: 0,
            xattrs: &[],
        };
        let mut out = Vec::new();
        encode(&spec, &mut out);
        assert_eq!(out.len(), BLOCK);
        assert_eq!(&out[100..108], b"0004755\0");
        assert_eq!(&out[108..116], b"0001750\0");
        assert_eq!(&out[124..136], b"00000000005\0");
        assert_eq!(&out[257..265], b"ustar\x0000");
        assert_eq!(out[155], b' ');
    }
}
