//! The shared stream's entries: what the forwarder writes and the receiver
//! reads back.
//!
//! ```text
//! XADD <prefix>:events MAXLEN ~ <max_len> * node <id> seq <local seq> expires_at <unix s> event <event JSON>
//! ```
//! `event` is the event's JSON exactly as the origin stored it (its `id`
//! is the origin's); the receiver validates it like a producer's input and
//! keeps its `timestamp` and `time`, so every node stores the same body.

use serde::Deserialize;
use serde_json::value::RawValue;

use crate::event::{EventInput, EventRecord, EventRules, NewEvent, Origin, Stamp};

/// Appends one `XADD` for `record` to `pipe`.
pub(super) fn xadd(
    pipe: &mut redis::Pipeline,
    key: &str,
    max_len: u64,
    node: &str,
    record: &EventRecord,
) {
    pipe.cmd("XADD")
        .arg(key)
        .arg("MAXLEN")
        .arg("~")
        .arg(max_len)
        .arg("*")
        .arg("node")
        .arg(node)
        .arg("seq")
        .arg(record.seq)
        .arg("expires_at")
        .arg(record.expires_at)
        .arg("event")
        .arg(&record.json[..])
        .ignore();
}

/// A shared-stream entry, decoded.
pub(super) struct Entry {
    pub node: String,
    pub seq: u64,
    pub expires_at: u64,
    pub event: Vec<u8>,
}

/// The event members the receiver reads; `id` (the origin's) is ignored.
#[derive(Deserialize)]
struct PeerEvent<'a> {
    stream_id: String,
    #[serde(rename = "type")]
    event_type: String,
    source: Option<String>,
    subject: Option<String>,
    message: Option<String>,
    #[serde(borrow)]
    data: Option<&'a RawValue>,
    user_id: Option<String>,
    audience: String,
    timestamp: i64,
    time: String,
}

impl Entry {
    /// Reads an entry's fields; `None` when one is missing or malformed.
    pub fn decode(fields: &[(Vec<u8>, redis::Value)]) -> Option<Entry> {
        let bytes = |name: &str| match &fields.iter().find(|(n, _)| n == name.as_bytes())?.1 {
            redis::Value::BulkString(b) => Some(b.as_slice()),
            _ => None,
        };
        let number = |name: &str| std::str::from_utf8(bytes(name)?).ok()?.parse::<u64>().ok();
        let node = std::str::from_utf8(bytes("node")?).ok()?;
        if !super::valid_node_id(node) {
            return None;
        }
        Some(Entry {
            node: node.to_owned(),
            seq: number("seq").filter(|s| *s > 0)?,
            expires_at: number("expires_at")?,
            event: bytes("event")?.to_vec(),
        })
    }

    /// The event as this node stores it, validated as a producer's would be.
    pub fn to_new_event(&self, rules: EventRules) -> Result<NewEvent, String> {
        let peer: PeerEvent =
            serde_json::from_slice(&self.event).map_err(|e| format!("event JSON: {e}"))?;
        let input = EventInput {
            stream_id: Some(peer.stream_id),
            event_type: Some(peer.event_type),
            source: peer.source,
            subject: peer.subject,
            message: peer.message,
            data: peer.data.map(|d| d.to_owned()),
            user_id: peer.user_id,
            audience: Some(peer.audience),
            key: None,
            ttl: None,
        };
        let stamp = Stamp {
            timestamp: peer.timestamp,
            time: peer.time,
            expires_at: Some(self.expires_at),
        };
        let origin = Origin {
            node: self.node.as_str().into(),
            seq: self.seq,
        };
        input
            .normalize_peer(rules, stamp, origin)
            .map_err(|errors| {
                errors
                    .iter()
                    .map(|e| format!("{}: {}", e.field, e.message))
                    .collect::<Vec<_>>()
                    .join("; ")
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{Now, id_prefix};

    const RULES: EventRules = EventRules {
        max_event_bytes: 4096,
        default_ttl_secs: 60,
    };

    fn stored(input: serde_json::Value) -> (NewEvent, Vec<u8>) {
        let e: EventInput = serde_json::from_value(input).unwrap();
        let e = e.normalize(RULES, Now::system()).unwrap();
        let mut json = id_prefix(7).into_bytes();
        json.extend_from_slice(&e.body);
        (e, json)
    }

    #[test]
    fn a_peer_event_is_stored_with_the_origins_body() {
        let (origin, json) = stored(serde_json::json!({
            "type": "order.created", "stream_id": "user:42", "source": "shop",
            "message": "é \"quoted\"", "data": {"big": 12345678901234567890u64, "f": 1.5}
        }));
        let entry = Entry {
            node: "a".into(),
            seq: 7,
            expires_at: origin.expires_at,
            event: json,
        };
        let mine = entry.to_new_event(RULES).unwrap();
        assert_eq!(mine.body, origin.body);
        assert_eq!(mine.data_span, origin.data_span);
        assert_eq!(
            (mine.stream.as_str(), mine.user_id.as_deref(), mine.audience),
            ("user:42", Some("42"), crate::event::Audience::User)
        );
        assert_eq!(
            (mine.timestamp, mine.expires_at),
            (origin.timestamp, origin.expires_at)
        );
        assert_eq!(
            mine.origin,
            Some(Origin {
                node: "a".into(),
                seq: 7
            })
        );
    }

    #[test]
    fn bad_entries_are_refused() {
        let (_, json) = stored(serde_json::json!({"type": "t"}));
        let text = String::from_utf8(json).unwrap();
        let entry = |event: String| Entry {
            node: "a".into(),
            seq: 1,
            expires_at: u64::MAX,
            event: event.into_bytes(),
        };
        for bad in [
            "not json".to_owned(),
            text.replace("\"type\":\"t\"", "\"type\":\"\""),
            text.replace("\"stream_id\":\"default\"", "\"stream_id\":\"a b\""),
            text.replace("\"audience\":\"public\"", "\"audience\":\"everyone\""),
            text.replacen(".", "\\\",\"x\":\"", 1),
        ] {
            assert!(entry(bad.clone()).to_new_event(RULES).is_err(), "{bad}");
        }
        let fields = |pairs: &[(&str, &str)]| -> Vec<(Vec<u8>, redis::Value)> {
            pairs
                .iter()
                .map(|(k, v)| {
                    (
                        k.as_bytes().to_vec(),
                        redis::Value::BulkString(v.as_bytes().to_vec()),
                    )
                })
                .collect()
        };
        let good = [
            ("node", "a"),
            ("seq", "3"),
            ("expires_at", "9"),
            ("event", "{}"),
        ];
        assert!(Entry::decode(&fields(&good)).is_some());
        for (i, bad) in [("node", "a b"), ("seq", "0"), ("expires_at", "x")]
            .iter()
            .enumerate()
        {
            let f: Vec<_> = good
                .iter()
                .map(|(k, v)| if *k == bad.0 { (*k, bad.1) } else { (*k, *v) })
                .collect();
            assert!(Entry::decode(&fields(&f)).is_none(), "case {i}");
        }
        let missing = fields(&good[..3]);
        assert!(Entry::decode(&missing).is_none());
    }
}
