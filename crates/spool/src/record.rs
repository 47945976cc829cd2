//! The on-disk record format of spool segments.
//!
//! ```text
//! magic "RWS1" | kind u8 | id_len u8 | meta_len u32 | body_len u32 | crc32 u32 | id | meta | body
//! ```
//! Integers are little-endian; the CRC covers kind, lengths, id, meta and body. A record that is
//! short or whose CRC does not match ends the readable part of a segment (a torn write at the tail).

pub const MAGIC: &[u8; 4] = b"RWS1";
pub const HEADER_LEN: usize = 4 + 1 + 1 + 4 + 4 + 4;
/// A message body may not be bigger than this in the spool, whatever the configured SMTP limit.
pub const MAX_BODY: usize = 1 << 30;
pub const MAX_META: usize = 16 << 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A whole message: envelope and body.
    Put = 1,
    /// A new envelope state for a message already spooled.
    Update = 2,
    /// The message is finished; nothing of it needs recovering.
    Done = 3,
}

impl Kind {
    fn from_u8(b: u8) -> Option<Kind> {
        match b {
            1 => Some(Kind::Put),
            2 => Some(Kind::Update),
            3 => Some(Kind::Done),
            _ => None,
        }
    }
}

pub fn encode(kind: Kind, id: &str, meta: &[u8], body: &[u8]) -> Vec<u8> {
    let mut out = encode_head(kind, id, meta, body, body.len());
    out.extend_from_slice(body);
    out
}

/// A record without its body (written after it), its checksum over the body too; `spare`
/// bytes of room for the caller to add.
pub fn encode_head(kind: Kind, id: &str, meta: &[u8], body: &[u8], spare: usize) -> Vec<u8> {
    let id = id.as_bytes();
    let id_len = id.len().min(255);
    let mut out = Vec::with_capacity(HEADER_LEN + id_len + meta.len() + spare);
    out.extend_from_slice(MAGIC);
    out.push(kind as u8);
    out.push(id_len as u8);
    out.extend_from_slice(&(meta.len() as u32).to_le_bytes());
    out.extend_from_slice(&(body.len() as u32).to_le_bytes());
    let mut crc = crc32fast::Hasher::new();
    crc.update(&out[4..14]);
    crc.update(&id[..id_len]);
    crc.update(meta);
    crc.update(body);
    out.extend_from_slice(&crc.finalize().to_le_bytes());
    out.extend_from_slice(&id[..id_len]);
    out.extend_from_slice(meta);
    out
}

/// One decoded record; `body_offset` is where the body starts within the buffer decoded.
pub struct Decoded<'a> {
    pub kind: Kind,
    pub id: &'a str,
    pub meta: &'a [u8],
    pub body_offset: usize,
    pub body_len: usize,
    pub total_len: usize,
}

/// Decodes the record at the start of `buf`; `None` when it is short, torn or corrupt.
pub fn decode(buf: &[u8]) -> Option<Decoded<'_>> {
    if buf.len() < HEADER_LEN || &buf[..4] != MAGIC {
        return None;
    }
    let kind = Kind::from_u8(buf[4])?;
    let id_len = buf[5] as usize;
    let meta_len = u32::from_le_bytes(buf[6..10].try_into().ok()?) as usize;
    let body_len = u32::from_le_bytes(buf[10..14].try_into().ok()?) as usize;
    let crc = u32::from_le_bytes(buf[14..18].try_into().ok()?);
    if meta_len > MAX_META || body_len > MAX_BODY {
        return None;
    }
    let total_len = HEADER_LEN + id_len + meta_len + body_len;
    if buf.len() < total_len {
        return None;
    }
    let mut h = crc32fast::Hasher::new();
    h.update(&buf[4..14]);
    h.update(&buf[HEADER_LEN..total_len]);
    if h.finalize() != crc {
        return None;
    }
    let id = std::str::from_utf8(&buf[HEADER_LEN..HEADER_LEN + id_len]).ok()?;
    let meta_start = HEADER_LEN + id_len;
    Some(Decoded {
        kind,
        id,
        meta: &buf[meta_start..meta_start + meta_len],
        body_offset: meta_start + meta_len,
        body_len,
        total_len,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_torn_tail() {
        let rec = encode(Kind::Put, "M1", b"{}", b"hello\r\n");
        let d = decode(&rec).expect("whole record decodes");
        assert_eq!(d.kind, Kind::Put);
        assert_eq!(d.id, "M1");
        assert_eq!(d.meta, b"{}");
        assert_eq!(
            &rec[d.body_offset..d.body_offset + d.body_len],
            b"hello\r\n"
        );
        assert!(
            decode(&rec[..rec.len() - 1]).is_none(),
            "a torn record is not read"
        );
        let mut flipped = rec.clone();
        let last = flipped.len() - 1;
        flipped[last] ^= 1;
        assert!(decode(&flipped).is_none(), "a corrupt record is not read");
    }
}
