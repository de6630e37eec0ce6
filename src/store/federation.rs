//! What federation keeps in the store: this node's id, how far the
//! forwarder and the receiver have come, and the highest seq stored from
//! each other node (the writer's repeat check, `writer.rs`). All in `meta`
//! (names in `keys.rs`).

use std::collections::HashMap;

use super::{Store, keys};
use crate::error::{Error, Result};

impl Store {
    /// This node's federation id: `configured` when given (and kept, so
    /// that removing it later keeps the same id), else the one generated at
    /// first start: the host name and eight random hex digits. Call it
    /// before the writer starts: a changed id marks the old one's events.
    ///
    /// Refuses an id this store holds events of as another node's (it has
    /// an origin mark): a node's own entries never get one, so this is a
    /// data dir restored from that node's backup (`backup.rs`), or two
    /// nodes' ids swapped. Under that id its new events would reuse seqs
    /// the other node already sent, and its peers would drop them as
    /// repeats.
    pub fn node_id(&self, configured: Option<&str>) -> Result<String> {
        let meta = &self.0.meta;
        let stored = meta
            .get(keys::META_NODE_ID)?
            .map(|v| String::from_utf8_lossy(&v).into_owned());
        if let Some(id) = configured.or(stored.as_deref())
            && self.origins()?.contains_key(id)
        {
            let what = if configured.is_some() {
                "give this node a new federation.node_id (or leave it unset to generate one)"
            } else {
                "it is also the node id stored in the data dir: give this node a new federation.node_id"
            };
            return Err(Error::Conflict(format!(
                "this data dir holds events of node {id:?} as another node's (restored from its \
                 backup, produced under an earlier node_id of this node, or received from it); \
                 {what}"
            )));
        }
        let id = match (configured, stored) {
            (Some(c), Some(s)) if c == s => return Ok(s),
            (Some(c), Some(old)) => {
                // This node's entries under its old id, still in Redis, come
                // back as another node's: they are the events up to here.
                self.mark_origin(&old, self.visible_seq())?;
                tracing::warn!(old = %old, new = %c, "federation: the node id changed; events produced here so far count as the old id's");
                c.to_owned()
            }
            (Some(c), None) => c.to_owned(),
            (None, Some(s)) => return Ok(s),
            (None, None) => generated_node_id(),
        };
        meta.insert(keys::META_NODE_ID, id.as_bytes())?;
        self.0.db.flush()?;
        Ok(id)
    }

    /// Sets a node's origin mark before the writer starts (it reads the
    /// marks when it is taken: [`Store::writer`]).
    fn mark_origin(&self, node: &str, seq: u64) -> Result<()> {
        if self
            .0
            .writer_taken
            .load(std::sync::atomic::Ordering::SeqCst)
        {
            return Err(Error::Internal(
                "origin marks can only be set before the writer starts".into(),
            ));
        }
        let mut marks = self.0.origins_at_open.lock().expect("origins lock");
        let seq = seq.max(marks.get(node).copied().unwrap_or(0));
        if seq == 0 {
            return Ok(());
        }
        self.0.meta.insert(origin_key(node), &seq.to_be_bytes())?;
        marks.insert(node.into(), seq);
        Ok(())
    }

    /// This data dir's random id (32 hex digits), made once: federation
    /// claims the node id for it, so that one node id never speaks for two
    /// logs. Not in backups: a restored store is another data dir.
    pub fn store_id(&self) -> Result<String> {
        let meta = &self.0.meta;
        if let Some(v) = meta.get(keys::META_STORE_ID)? {
            return Ok(String::from_utf8_lossy(&v).into_owned());
        }
        let id = format!("{:032x}", rand::random::<u128>());
        // Another caller may have made one meanwhile: the first one stays.
        let _ = meta.compare_and_swap(keys::META_STORE_ID, None::<&[u8]>, Some(id.as_bytes()))?;
        self.0.db.flush()?;
        let v = meta
            .get(keys::META_STORE_ID)?
            .ok_or_else(|| Error::Store("meta.store_id vanished".into()))?;
        Ok(String::from_utf8_lossy(&v).into_owned())
    }

    /// Every local seq up to this one has been forwarded.
    pub fn forwarded(&self) -> Result<u64> {
        Ok(self
            .0
            .meta
            .get(keys::META_FORWARDED)?
            .and_then(|v| keys::decode_u64(&v))
            .unwrap_or(0))
    }

    /// Records the forwarder's position. Not flushed on its own: losing it
    /// in a crash only forwards some events again, which every receiver
    /// recognises as repeats.
    pub fn set_forwarded(&self, seq: u64) -> Result<()> {
        self.0
            .meta
            .insert(keys::META_FORWARDED, &seq.to_be_bytes())?;
        Ok(())
    }

    /// The last shared-stream entry id read, `None` before the first.
    pub fn received(&self) -> Result<Option<String>> {
        Ok(self
            .0
            .meta
            .get(keys::META_RECEIVED)?
            .map(|v| String::from_utf8_lossy(&v).into_owned()))
    }

    /// Records the receiver's position (not flushed: see [`Store::set_forwarded`]).
    pub fn set_received(&self, entry_id: &str) -> Result<()> {
        self.0
            .meta
            .insert(keys::META_RECEIVED, entry_id.as_bytes())?;
        Ok(())
    }

    /// The highest seq stored from each other node.
    pub(super) fn origins(&self) -> Result<HashMap<Box<str>, u64>> {
        let mut out = HashMap::new();
        for item in self.0.meta.scan_prefix(keys::META_ORIGIN_PREFIX) {
            let (k, v) = item?;
            let node = std::str::from_utf8(&k[keys::META_ORIGIN_PREFIX.len()..])
                .map_err(|_| Error::Store("malformed origin entry".into()))?;
            let seq = keys::decode_u64(&v)
                .ok_or_else(|| Error::Store("malformed origin entry".into()))?;
            out.insert(node.into(), seq);
        }
        Ok(out)
    }
}

/// `meta` key of a node's highest stored seq.
pub(super) fn origin_key(node: &str) -> Vec<u8> {
    [keys::META_ORIGIN_PREFIX, node.as_bytes()].concat()
}

/// The host name (cut to what a node id allows) and eight random hex digits.
fn generated_node_id() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    let host: String = host
        .trim()
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
        .take(48)
        .collect();
    let suffix: u32 = rand::random();
    if host.is_empty() {
        format!("node-{suffix:08x}")
    } else {
        format!("{host}-{suffix:08x}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::StorageConfig;
    use crate::event::{NewEvent, Origin};

    fn peer_event(node: &str, seq: u64, key: Option<&str>) -> NewEvent {
        let mut e = crate::store::test_event("shared", "t", key);
        e.origin = Some(Origin {
            node: node.into(),
            seq,
        });
        e
    }

    /// (stored seq or 0 for a repeat) of each event written as one request.
    fn write(store: &Store, events: Vec<NewEvent>) -> Vec<u64> {
        let mut writer = store.writer();
        let c = writer.write_group(&[events]).unwrap();
        writer.publish_visible();
        c.outcomes[0].iter().map(|o| o.seq).collect()
    }

    #[test]
    fn repeats_from_a_node_are_recognised_across_restarts() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = crate::store::reopen(dir.path(), &StorageConfig::default());
            let got = write(
                &store,
                vec![
                    peer_event("b", 1, None),
                    peer_event("b", 2, None),
                    peer_event("b", 2, None),
                    peer_event("b", 1, None),
                    peer_event("c", 1, None),
                ],
            );
            assert_eq!(got, vec![1, 2, 0, 0, 3]);
            store.flush_blocking().unwrap();
        }
        let store = crate::store::reopen(dir.path(), &StorageConfig::default());
        // A repeat by key still moves the node's mark.
        let got = write(
            &store,
            vec![
                peer_event("b", 2, None),
                peer_event("b", 3, Some("k")),
                peer_event("c", 2, Some("k")),
                peer_event("c", 1, None),
            ],
        );
        assert_eq!(got, vec![0, 4, 4, 0]);
        assert_eq!(
            store.origins().unwrap(),
            HashMap::from([("b".into(), 3), ("c".into(), 2)])
        );
        let read = store.read_after(0, None, &|_| true, 100, 0).unwrap();
        let origins: Vec<_> = read
            .events
            .iter()
            .map(|e| e.origin.as_ref().map(|o| (&*o.node, o.seq)))
            .collect();
        assert_eq!(
            origins,
            vec![
                Some(("b", 1)),
                Some(("b", 2)),
                Some(("c", 1)),
                Some(("b", 3))
            ]
        );
    }

    #[test]
    fn an_id_the_store_holds_events_of_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let store = crate::store::reopen(dir.path(), &StorageConfig::default());
        // As after a restore of edge-1's backup: its events are another node's.
        assert_eq!(write(&store, vec![peer_event("edge-1", 3, None)]), [1]);
        let refused = |configured: Option<&str>, want: &str| {
            let err = store.node_id(configured).unwrap_err();
            assert!(matches!(err, Error::Conflict(_)), "{err:?}");
            let err = err.to_string();
            assert!(
                err.starts_with(
                    r#"this data dir holds events of node "edge-1" as another node's (restored from its backup"#
                ) && err.ends_with(want),
                "{err}"
            );
        };
        refused(
            Some("edge-1"),
            "give this node a new federation.node_id (or leave it unset to generate one)",
        );
        assert_eq!(store.0.meta.get(keys::META_NODE_ID).unwrap(), None);
        let generated = store.node_id(None).unwrap();
        assert_ne!(generated, "edge-1");
        assert_eq!(store.node_id(None).unwrap(), generated);
        refused(
            Some("edge-1"),
            "give this node a new federation.node_id (or leave it unset to generate one)",
        );
        // A stored id with a mark (ids swapped) is refused too, until
        // another one is configured.
        store.0.meta.insert(keys::META_NODE_ID, "edge-1").unwrap();
        refused(
            None,
            "stored in the data dir: give this node a new federation.node_id",
        );
        // Changing the id marks the old one's events: before the writer starts.
        assert!(store.node_id(Some("edge-2")).is_err());
        store.flush_blocking().unwrap();
        drop(store);
        let store = crate::store::reopen(dir.path(), &StorageConfig::default());
        assert_eq!(store.node_id(Some("edge-2")).unwrap(), "edge-2");
        assert_eq!(store.node_id(None).unwrap(), "edge-2");
        // The old id's mark kept its higher value (3 > the one event here).
        assert_eq!(store.origins().unwrap().get("edge-1"), Some(&3));
    }

    #[test]
    fn a_changed_id_marks_the_events_produced_so_far_as_the_old_ids() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = crate::store::reopen(dir.path(), &StorageConfig::default());
            assert_eq!(store.node_id(Some("a")).unwrap(), "a");
            let mut local = peer_event("x", 1, None);
            local.origin = None;
            let mut writer = store.writer();
            writer.write_group(&[vec![local.clone(), local]]).unwrap();
            writer.publish_visible();
            store.flush_blocking().unwrap();
        }
        let store = crate::store::reopen(dir.path(), &StorageConfig::default());
        assert_eq!(store.node_id(Some("a2")).unwrap(), "a2");
        // Its own entries under "a", read back from Redis, are repeats.
        assert_eq!(
            write(
                &store,
                vec![peer_event("a", 2, None), peer_event("a", 3, None)]
            ),
            [0, 3]
        );
        assert!(store.node_id(Some("a")).is_err());
    }

    #[test]
    fn node_id_is_generated_once_and_positions_persist() {
        let dir = tempfile::tempdir().unwrap();
        let id = {
            let store = crate::store::reopen(dir.path(), &StorageConfig::default());
            let id = store.node_id(None).unwrap();
            assert!(crate::federation::valid_node_id(&id), "{id}");
            assert_eq!(store.node_id(None).unwrap(), id);
            store.set_forwarded(42).unwrap();
            store.set_received("1700000000000-3").unwrap();
            store.0.db.flush().unwrap();
            id
        };
        let store = crate::store::reopen(dir.path(), &StorageConfig::default());
        assert_eq!(store.node_id(None).unwrap(), id);
        assert_eq!(store.forwarded().unwrap(), 42);
        assert_eq!(
            store.received().unwrap().as_deref(),
            Some("1700000000000-3")
        );
        assert_eq!(store.node_id(Some("edge-1")).unwrap(), "edge-1");
        assert_eq!(store.node_id(None).unwrap(), "edge-1");
    }
}
