//! Tree names and key encoding: the only place that knows how keys look.
//!
//! | tree           | key                                  | value                              |
//! |----------------|--------------------------------------|------------------------------------|
//! | `log`          | first seq (u64 BE)                   | segment (see `segment.rs`)         |
//! | `stream_index` | stream ‖ 0x00 ‖ segment first seq    | empty                              |
//! | `keys`         | idempotency key                      | seq (u64 BE) ‖ timestamp (i64 BE) ‖ stream |
//! | `segment_keys` | segment first seq (u64 BE)           | (seq u64 BE ‖ key len u16 BE ‖ key)* of its keyed events |
//! | `streams`      | stream name                          | stream settings (JSON)             |
//! | `meta`         | one of the `META_*` names            | see each name                      |
//! | `users`        | user name (UTF-8)                    | user record (JSON, `store/accounts.rs`) |
//! | `tokens`       | API token id (12 ASCII alphanumerics) | token record (JSON, `store/accounts.rs`) |
//! | `jobs`         | job id (ASCII)                       | job record with its payload (JSON, `store/jobs.rs`) |
//! | `cursors`      | consumer ‖ 0x00 ‖ stream (`*`: all)  | seq (u64 BE), `store/cursors.rs`   |

pub const LOG: &str = "log";
pub const STREAM_INDEX: &str = "stream_index";
pub const KEYS: &str = "keys";
/// Which idempotency keys each segment's events carry, so retention deletes
/// exactly the `keys` entries of the events it removes.
pub const SEGMENT_KEYS: &str = "segment_keys";
pub const STREAMS: &str = "streams";
pub const META: &str = "meta";
pub const USERS: &str = "users";
pub const TOKENS: &str = "tokens";
pub const JOBS: &str = "jobs";
pub const CURSORS: &str = "cursors";

/// u32 BE: the schema version the database was last migrated to.
pub const META_SCHEMA_VERSION: &[u8] = b"schema_version";
/// u64 BE: the highest sequence number ever assigned (never reused).
pub const META_LAST_SEQ: &[u8] = b"last_seq";
/// u64 BE: how many events the log holds.
pub const META_EVENT_COUNT: &[u8] = b"event_count";
/// u64 BE: the lowest sequence number retention has not deleted.
pub const META_FIRST_SEQ: &[u8] = b"first_seq";

/// Prefix of the `meta` entries `floor\0<stream>` → u64 BE: every event of
/// the stream with seq ≤ this was deleted by retention (its `max_events` cap)
/// or with the stream.
pub const META_FLOOR_PREFIX: &[u8] = b"floor\0";

/// UTF-8: this node's federation id, generated once (`store/federation.rs`).
pub const META_NODE_ID: &[u8] = b"node_id";
/// ASCII: this data dir's random id, claimed with the node id in Redis
/// (`<prefix>:owners`) so that one node id never speaks for two logs.
pub const META_STORE_ID: &[u8] = b"store_id";
/// u64 BE: every local seq up to this one has been forwarded to Redis.
pub const META_FORWARDED: &[u8] = b"federation_forwarded";
/// ASCII: the id of the last shared Redis Stream entry this node has read.
pub const META_RECEIVED: &[u8] = b"federation_received";
/// Prefix of the `meta` entries `origin\0<node>` → u64 BE: the highest seq
/// of that node stored here (federated events at or below it are repeats).
/// Written in the group commit that stores the events.
pub const META_ORIGIN_PREFIX: &[u8] = b"origin\0";

pub fn seq_key(seq: u64) -> [u8; 8] {
    seq.to_be_bytes()
}

pub fn decode_u64(bytes: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(bytes.try_into().ok()?))
}

pub fn stream_index_key(stream: &str, seq: u64) -> Vec<u8> {
    let mut k = Vec::with_capacity(stream.len() + 9);
    k.extend_from_slice(stream.as_bytes());
    k.push(0);
    k.extend_from_slice(&seq.to_be_bytes());
    k
}

/// The first seq of a `stream_index` key of `stream`.
pub fn stream_index_seq(stream: &str, key: &[u8]) -> Option<u64> {
    key.strip_prefix(stream.as_bytes())?
        .strip_prefix(&[0])?
        .try_into()
        .ok()
        .map(u64::from_be_bytes)
}

/// Value of a `keys` entry: where the original event went.
pub fn encode_key_value(seq: u64, timestamp: i64, stream: &str) -> Vec<u8> {
    let mut v = Vec::with_capacity(16 + stream.len());
    v.extend_from_slice(&seq.to_be_bytes());
    v.extend_from_slice(&timestamp.to_be_bytes());
    v.extend_from_slice(stream.as_bytes());
    v
}

pub fn decode_key_value(v: &[u8]) -> Option<(u64, i64, String)> {
    if v.len() < 16 {
        return None;
    }
    let seq = u64::from_be_bytes(v[..8].try_into().ok()?);
    let ts = i64::from_be_bytes(v[8..16].try_into().ok()?);
    Some((seq, ts, String::from_utf8(v[16..].to_vec()).ok()?))
}

/// Key of a consumer's position on one stream (`*`: its "all streams" position).
pub fn cursor_key(consumer: &str, stream: &str) -> Vec<u8> {
    let mut k = cursor_prefix(consumer);
    k.extend_from_slice(stream.as_bytes());
    k
}

/// The prefix of every `cursors` key of one consumer.
pub fn cursor_prefix(consumer: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(consumer.len() + 1 + 32);
    k.extend_from_slice(consumer.as_bytes());
    k.push(0);
    k
}

/// (consumer, stream) of a `cursors` key.
pub fn cursor_key_parts(key: &[u8]) -> Option<(&str, &str)> {
    let split = key.iter().position(|&b| b == 0)?;
    let consumer = std::str::from_utf8(&key[..split]).ok()?;
    let stream = std::str::from_utf8(&key[split + 1..]).ok()?;
    Some((consumer, stream))
}

/// Value of a `segment_keys` entry.
pub fn encode_segment_keys<'a>(keyed: impl IntoIterator<Item = (u64, &'a str)>) -> Vec<u8> {
    let mut v = Vec::new();
    for (seq, key) in keyed {
        v.extend_from_slice(&seq.to_be_bytes());
        v.extend_from_slice(&(key.len() as u16).to_be_bytes());
        v.extend_from_slice(key.as_bytes());
    }
    v
}

/// The (seq, key) pairs of a `segment_keys` value; stops at malformed bytes.
pub fn decode_segment_keys(mut v: &[u8]) -> Vec<(u64, &[u8])> {
    let mut out = Vec::new();
    while v.len() >= 10 {
        let seq = u64::from_be_bytes(v[..8].try_into().expect("8 bytes"));
        let len = u16::from_be_bytes(v[8..10].try_into().expect("2 bytes")) as usize;
        let Some(key) = v.get(10..10 + len) else {
            break;
        };
        out.push((seq, key));
        v = &v[10 + len..];
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_index_keys_sort_by_stream_then_seq_and_round_trip() {
        let a = stream_index_key("a", 300);
        let b = stream_index_key("a", 1000);
        let c = stream_index_key("a.b", 1);
        assert!(a < b && b < c);
        assert_eq!(stream_index_seq("a", &b), Some(1000));
        assert_eq!(stream_index_seq("a", &c), None);
        assert_eq!(
            decode_key_value(&encode_key_value(5, -3, "s")),
            Some((5, -3, "s".into()))
        );
        let sk = encode_segment_keys([(7, "a"), (9, "bc")]);
        assert_eq!(
            decode_segment_keys(&sk),
            vec![(7, &b"a"[..]), (9, &b"bc"[..])]
        );
    }

    #[test]
    fn cursor_keys_group_by_consumer_and_round_trip() {
        let a = cursor_key("a", "z");
        let ab = cursor_key("a.b", "a");
        assert!(a < ab, "every key of `a` sorts before those of `a.b`");
        assert!(a.starts_with(&cursor_prefix("a")));
        assert!(!ab.starts_with(&cursor_prefix("a")));
        assert_eq!(
            cursor_key_parts(&cursor_key("c-1", "*")),
            Some(("c-1", "*"))
        );
        assert_eq!(cursor_key_parts(b"no-separator"), None);
    }
}
