//! The segment codec: one group commit's events as one sled value.
//!
//! ```text
//! segment := version:u8 (1 or 2) count:u32 entry*
//! entry   := len:u32 crc32(body):u32 body
//! body    := seq:u64 expires_at:u64 timestamp:i64 audience:u8
//!            stream_len:u8 type_len:u16 user_len:u16 data_start:u32 data_len:u32
//!            [origin_len:u8 origin_seq:u64]   (version 2)
//!            stream type user [origin]        (version 2)
//!            json
//! ```
//! All integers are big-endian. `json` is the complete event JSON; readers
//! slice it out of the segment without copying. Version 2 (schema 5) adds
//! the origin of federated events (node id, its seq there; `origin_len` 0
//! for an event produced here); version 1 segments are read as they are.
//! The builder always writes version 2.

use std::sync::Arc;

use bytes::Bytes;

use crate::event::{Audience, EventRecord, Origin};

const VERSION: u8 = 2;
const HEADER: usize = 5;
const ENTRY_FIXED_V1: usize = 8 + 8 + 8 + 1 + 1 + 2 + 2 + 4 + 4;
const ENTRY_FIXED: usize = ENTRY_FIXED_V1 + 1 + 8;

/// Builds a segment one event at a time.
pub struct SegmentBuilder {
    buf: Vec<u8>,
    count: u32,
    /// (start of json, json len) of each entry, to cut records out afterwards.
    spans: Vec<(usize, usize)>,
}

/// One event's fields as the builder takes them.
pub struct EntryFields<'a> {
    pub seq: u64,
    pub expires_at: u64,
    pub timestamp: i64,
    pub audience: Audience,
    pub stream: &'a str,
    pub event_type: &'a str,
    pub user_id: Option<&'a str>,
    pub data_span: (u32, u32),
    /// Node id (at most 255 bytes) and seq there, for federated events.
    pub origin: Option<(&'a str, u64)>,
    pub json: &'a [&'a [u8]],
}

impl SegmentBuilder {
    pub fn new(capacity: usize) -> Self {
        let mut buf = Vec::with_capacity(capacity + HEADER);
        buf.push(VERSION);
        buf.extend_from_slice(&0u32.to_be_bytes());
        Self {
            buf,
            count: 0,
            spans: Vec::new(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Appends an entry; `json` is given in parts so the id prefix and the
    /// ingest-encoded body need not be joined first.
    pub fn push(&mut self, e: &EntryFields) {
        let user = e.user_id.unwrap_or("");
        let (origin, origin_seq) = e.origin.unwrap_or(("", 0));
        // Node ids are checked at every door (`federation::valid_node_id`: at most 64).
        debug_assert!(origin.len() <= u8::MAX as usize, "origin node id too long");
        let json_len: usize = e.json.iter().map(|p| p.len()).sum();
        let body_len = ENTRY_FIXED
            + e.stream.len()
            + e.event_type.len()
            + user.len()
            + origin.len()
            + json_len;
        let start = self.buf.len();
        self.buf.extend_from_slice(&(body_len as u32).to_be_bytes());
        self.buf.extend_from_slice(&[0; 4]);
        let body_start = self.buf.len();
        self.buf.extend_from_slice(&e.seq.to_be_bytes());
        self.buf.extend_from_slice(&e.expires_at.to_be_bytes());
        self.buf.extend_from_slice(&e.timestamp.to_be_bytes());
        self.buf.push(e.audience.to_byte());
        self.buf.push(e.stream.len() as u8);
        self.buf
            .extend_from_slice(&(e.event_type.len() as u16).to_be_bytes());
        self.buf
            .extend_from_slice(&(user.len() as u16).to_be_bytes());
        self.buf.extend_from_slice(&e.data_span.0.to_be_bytes());
        self.buf.extend_from_slice(&e.data_span.1.to_be_bytes());
        self.buf.push(origin.len() as u8);
        self.buf.extend_from_slice(&origin_seq.to_be_bytes());
        self.buf.extend_from_slice(e.stream.as_bytes());
        self.buf.extend_from_slice(e.event_type.as_bytes());
        self.buf.extend_from_slice(user.as_bytes());
        self.buf.extend_from_slice(origin.as_bytes());
        let json_start = self.buf.len();
        for part in e.json {
            self.buf.extend_from_slice(part);
        }
        let crc = crc32fast::hash(&self.buf[body_start..]);
        self.buf[start + 4..start + 8].copy_from_slice(&crc.to_be_bytes());
        self.spans.push((json_start, json_len));
        self.count += 1;
    }

    /// The finished segment bytes.
    pub fn finish(mut self) -> Bytes {
        self.buf[1..5].copy_from_slice(&self.count.to_be_bytes());
        Bytes::from(self.buf)
    }
}

/// One decoded entry, borrowing from the segment.
pub struct Entry<'a> {
    pub seq: u64,
    pub expires_at: u64,
    pub timestamp: i64,
    pub audience: Audience,
    pub stream: &'a str,
    pub event_type: &'a str,
    pub user_id: Option<&'a str>,
    /// Node id and seq there, for federated events.
    pub origin: Option<(&'a str, u64)>,
    data_span: (u32, u32),
    json_range: (usize, usize),
}

impl Entry<'_> {
    /// The shared record, its JSON a slice of `segment` (no copy).
    pub fn to_record(&self, segment: &Bytes) -> Arc<EventRecord> {
        EventRecord::new(
            self.seq,
            self.stream,
            self.event_type,
            self.user_id,
            self.audience,
            self.timestamp,
            self.expires_at,
            segment.slice(self.json_range.0..self.json_range.1),
            self.data_span,
            self.origin.map(|(node, seq)| Origin {
                node: node.into(),
                seq,
            }),
        )
    }
}

/// A segment that failed its checksum or framing.
#[derive(Debug, thiserror::Error)]
#[error("corrupt segment: {0}")]
pub struct Corrupt(pub &'static str);

/// Walks a segment's entries in seq order.
pub fn entries(segment: &[u8]) -> impl Iterator<Item = Result<Entry<'_>, Corrupt>> {
    let mut pos = HEADER;
    let version = segment.first().copied().unwrap_or(0);
    let mut failed = !known(version) || segment.len() < HEADER;
    let mut first = failed;
    std::iter::from_fn(move || {
        if first {
            first = false;
            return Some(Err(Corrupt("unknown segment version")));
        }
        if failed || pos >= segment.len() {
            return None;
        }
        let r = decode_entry(segment, version, pos);
        match &r {
            Ok((_, next)) => pos = *next,
            Err(_) => failed = true,
        }
        Some(r.map(|(e, _)| e))
    })
}

/// A copy of `segment` holding only the entries `keep` takes, in order, their
/// framing and checksums copied as they are (the codec is unchanged), and how
/// many entries it holds. Used by retention to rewrite a mostly dead segment.
pub fn retain(segment: &[u8], keep: impl Fn(&Entry) -> bool) -> Result<(Bytes, u32), Corrupt> {
    let version = segment.first().copied().unwrap_or(0);
    if !known(version) || segment.len() < HEADER {
        return Err(Corrupt("unknown segment version"));
    }
    let mut out = Vec::with_capacity(segment.len());
    out.extend_from_slice(&segment[..HEADER]);
    let mut count = 0u32;
    let mut pos = HEADER;
    while pos < segment.len() {
        let (entry, next) = decode_entry(segment, version, pos)?;
        if keep(&entry) {
            out.extend_from_slice(&segment[pos..next]);
            count += 1;
        }
        pos = next;
    }
    out[1..5].copy_from_slice(&count.to_be_bytes());
    Ok((Bytes::from(out), count))
}

/// Versions this build reads.
fn known(version: u8) -> bool {
    version == 1 || version == VERSION
}

fn decode_entry(seg: &[u8], version: u8, pos: usize) -> Result<(Entry<'_>, usize), Corrupt> {
    let u32_at = |p: usize| -> Result<u32, Corrupt> {
        seg.get(p..p + 4)
            .map(|b| u32::from_be_bytes(b.try_into().unwrap()))
            .ok_or(Corrupt("truncated"))
    };
    let len = u32_at(pos)? as usize;
    let crc = u32_at(pos + 4)?;
    let start = pos + 8;
    let body = seg
        .get(start..start + len)
        .ok_or(Corrupt("truncated entry"))?;
    if crc32fast::hash(body) != crc {
        return Err(Corrupt("checksum mismatch"));
    }
    let fixed = if version == 1 {
        ENTRY_FIXED_V1
    } else {
        ENTRY_FIXED
    };
    if body.len() < fixed {
        return Err(Corrupt("short entry"));
    }
    let u64_of = |r: std::ops::Range<usize>| u64::from_be_bytes(body[r].try_into().unwrap());
    let u16_of =
        |r: std::ops::Range<usize>| u16::from_be_bytes(body[r].try_into().unwrap()) as usize;
    let u32_of = |r: std::ops::Range<usize>| u32::from_be_bytes(body[r].try_into().unwrap());
    let seq = u64_of(0..8);
    let expires_at = u64_of(8..16);
    let timestamp = u64_of(16..24) as i64;
    let audience = Audience::from_byte(body[24]).ok_or(Corrupt("bad audience"))?;
    let stream_len = body[25] as usize;
    let type_len = u16_of(26..28);
    let user_len = u16_of(28..30);
    let data_span = (u32_of(30..34), u32_of(34..38));
    let (origin_len, origin_seq) = if version == 1 {
        (0, 0)
    } else {
        (body[38] as usize, u64_of(39..47))
    };
    let mut p = fixed;
    let mut text = |n: usize| -> Result<&str, Corrupt> {
        let s = body.get(p..p + n).ok_or(Corrupt("truncated field"))?;
        p += n;
        std::str::from_utf8(s).map_err(|_| Corrupt("field is not UTF-8"))
    };
    let stream = text(stream_len)?;
    let event_type = text(type_len)?;
    let user = text(user_len)?;
    let origin = text(origin_len)?;
    let json_range = (start + p, start + len);
    let entry = Entry {
        seq,
        expires_at,
        timestamp,
        audience,
        stream,
        event_type,
        user_id: (!user.is_empty()).then_some(user),
        origin: (!origin.is_empty()).then_some((origin, origin_seq)),
        data_span,
        json_range,
    };
    Ok((entry, start + len))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_corruption() {
        let mut b = SegmentBuilder::new(64);
        for seq in [10u64, 11] {
            b.push(&EntryFields {
                seq,
                expires_at: 99,
                timestamp: 5,
                audience: Audience::User,
                stream: "s",
                event_type: "t",
                user_id: Some("u"),
                data_span: (1, 2),
                origin: (seq == 11).then_some(("node-b", 7)),
                json: &[b"{\"a\"", b":1}"],
            });
        }
        let seg = b.finish();
        let got: Vec<_> = entries(&seg).map(|e| e.unwrap()).collect();
        assert_eq!(got.len(), 2);
        let r = got[1].to_record(&seg);
        assert_eq!(
            (r.seq, &*r.stream, r.user_id.as_deref()),
            (11, "s", Some("u"))
        );
        assert_eq!(&r.json[..], b"{\"a\":1}");
        assert_eq!(
            r.origin,
            Some(Origin {
                node: "node-b".into(),
                seq: 7
            })
        );
        assert!(got[0].origin.is_none());
        let mut bad = seg.to_vec();
        let last = bad.len() - 2;
        bad[last] ^= 0xff;
        let results: Vec<_> = entries(&bad).collect();
        assert!(results[0].is_ok() && results[1].is_err());
        assert!(entries(b"\x07").next().unwrap().is_err());
        let (kept, n) = retain(&seg, |e| e.seq == 11).unwrap();
        let left: Vec<_> = entries(&kept).map(|e| e.unwrap().seq).collect();
        assert_eq!((left, n), (vec![11], 1));
        assert_eq!(
            &entries(&kept)
                .next()
                .unwrap()
                .unwrap()
                .to_record(&kept)
                .json[..],
            b"{\"a\":1}"
        );
    }

    /// Segments written before schema 5 (version 1, no origin) still read.
    #[test]
    fn version_1_segments_read() {
        let mut body = Vec::new();
        body.extend_from_slice(&9u64.to_be_bytes());
        body.extend_from_slice(&99u64.to_be_bytes());
        body.extend_from_slice(&5i64.to_be_bytes());
        body.push(Audience::Public.to_byte());
        body.push(1);
        body.extend_from_slice(&1u16.to_be_bytes());
        body.extend_from_slice(&0u16.to_be_bytes());
        body.extend_from_slice(&1u32.to_be_bytes());
        body.extend_from_slice(&1u32.to_be_bytes());
        body.extend_from_slice(b"st{1}");
        let mut seg = vec![1u8];
        seg.extend_from_slice(&1u32.to_be_bytes());
        seg.extend_from_slice(&(body.len() as u32).to_be_bytes());
        seg.extend_from_slice(&crc32fast::hash(&body).to_be_bytes());
        seg.extend_from_slice(&body);
        let seg = Bytes::from(seg);
        let e = entries(&seg).next().unwrap().unwrap();
        assert_eq!(
            (e.seq, e.stream, e.event_type, e.origin),
            (9, "s", "t", None)
        );
        assert_eq!(&e.to_record(&seg).json[..], b"{1}");
        let (kept, n) = retain(&seg, |_| true).unwrap();
        assert_eq!((kept[0], n), (1, 1));
    }
}
