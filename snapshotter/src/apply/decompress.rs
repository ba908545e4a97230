//! Compression detection by magic bytes.

use std::io::{self, Cursor, Read};

use super::ApplyError;

use rbuild_oci::media_types::{GZIP_MAGIC as GZIP, ZSTD_MAGIC as ZSTD};
const BZIP2: &[u8] = b"BZh";
const XZ: &[u8] = &[0xfd, b'7', b'z', b'X', b'Z', 0x00];

/// Longest magic we look at.
const PEEK: usize = 6;

/// The compression a layer stream was found to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Compression {
    None,
    Gzip,
    Zstd,
}

/// Reads the first bytes of `reader`, decides its compression and returns a reader of the
/// uncompressed tar stream (the peeked bytes are put back in front).
pub(crate) fn decompress<'a>(
    mut reader: impl Read + 'a,
) -> Result<(Compression, Box<dyn Read + 'a>), ApplyError> {
    let mut magic = [0u8; PEEK];
    let mut filled = 0;
    while filled < PEEK {
        match reader.read(&mut magic[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
            Err(error) => return Err(ApplyError::Read(error)),
        }
    }
    let head = &magic[..filled];
    let stream = Cursor::new(magic).take(filled as u64).chain(reader);
    if head.starts_with(GZIP) {
        Ok((
            Compression::Gzip,
            Box::new(flate2::read::MultiGzDecoder::new(stream)),
        ))
    } else if head.starts_with(ZSTD) {
        let decoder = zstd::stream::read::Decoder::new(stream).map_err(ApplyError::Read)?;
        Ok((Compression::Zstd, Box::new(decoder)))
    } else if head.starts_with(BZIP2) {
        Err(ApplyError::Compression("bzip2"))
    } else if head.starts_with(XZ) {
        Err(ApplyError::Compression("xz"))
    } else {
        Ok((Compression::None, Box::new(stream)))
    }
}
