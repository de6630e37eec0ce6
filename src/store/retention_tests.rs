//! Unit tests of the compactor with a controlled clock (`now` is an argument).

use super::*;
use crate::config::StorageConfig;
use crate::event::NewEvent;
use crate::store::StreamSettings;

const NOW: u64 = 1_000_000;

fn event(stream: &str, expires_at: u64, key: Option<&str>) -> NewEvent {
    let mut ev = crate::store::test_event(stream, "t", key);
    ev.expires_at = expires_at;
    ev
}

struct Fixture {
    _dir: tempfile::TempDir,
    store: Store,
    writer: Writer,
}

impl Fixture {
    fn new() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), &StorageConfig::default()).unwrap();
        let writer = store.writer();
        Fixture {
            _dir: dir,
            store,
            writer,
        }
    }

    /// One group commit (one segment); returns the new seqs.
    fn group(&mut self, events: Vec<NewEvent>) -> Vec<u64> {
        let c = self.writer.write_group(&[events]).unwrap();
        self.writer.publish_visible();
        c.outcomes[0].iter().map(|o| o.seq).collect()
    }

    fn pass(&mut self, now: u64) -> PassReport {
        self.pass_with(now, 0.5)
    }

    fn pass_with(&mut self, now: u64, fraction: f64) -> PassReport {
        let options = Options {
            rewrite_dead_fraction: fraction,
        };
        let writer = &mut self.writer;
        run_pass(&self.store, options, now, &mut |step| apply(writer, step)).unwrap()
    }

    fn read(
        &self,
        after: u64,
        streams: Option<&[String]>,
        now: u64,
    ) -> (Vec<u64>, Option<(u64, u64)>) {
        let r = self
            .store
            .read_after(after, streams, &|_| true, 10_000, now)
            .unwrap();
        (r.events.iter().map(|e| e.seq).collect(), r.gap)
    }

    fn segments(&self) -> Vec<u64> {
        self.store
            .0
            .log
            .iter()
            .keys()
            .map(|k| keys::decode_u64(&k.unwrap()).unwrap())
            .collect()
    }

    fn index(&self) -> Vec<(String, u64)> {
        self.store
            .0
            .stream_index
            .iter()
            .keys()
            .map(|k| {
                let k = k.unwrap();
                let split = k.iter().position(|b| *b == 0).unwrap();
                let stream = String::from_utf8(k[..split].to_vec()).unwrap();
                (stream, keys::decode_u64(&k[split + 1..]).unwrap())
            })
            .collect()
    }

    fn key(&self, key: &str) -> Option<u64> {
        let v = self.store.0.keys.get(key.as_bytes()).unwrap()?;
        Some(keys::decode_key_value(&v).unwrap().0)
    }
}

fn names(s: &[&str]) -> Vec<String> {
    s.iter().map(|s| s.to_string()).collect()
}

#[test]
fn a_dead_segment_goes_with_its_index_and_keys_and_its_key_is_free_again() {
    let mut f = Fixture::new();
    f.group(vec![
        event("a", NOW - 1, Some("k1")),
        event("b", NOW, Some("k2")),
    ]);
    f.group(vec![event("a", NOW + 10, Some("k3"))]);
    assert_eq!(f.segments(), vec![1, 3]);
    let r = f.pass(NOW);
    assert_eq!(
        (
            r.segments_deleted,
            r.segments_rewritten,
            r.events_removed,
            r.keys_removed
        ),
        (1, 0, 2, 2)
    );
    assert!(r.bytes_reclaimed > 0);
    assert_eq!(f.segments(), vec![3]);
    assert_eq!(f.index(), vec![("a".into(), 3)]);
    assert_eq!(
        (f.key("k1"), f.key("k2"), f.key("k3")),
        (None, None, Some(3))
    );
    assert!(
        f.store
            .0
            .segment_keys
            .get(keys::seq_key(1))
            .unwrap()
            .is_none()
    );
    let stats = f.store.stats();
    assert_eq!((stats.events, stats.first_seq), (1, 3));
    // A reader behind retention is told, then gets what is left.
    assert_eq!(f.read(0, None, NOW), (vec![3], Some((1, 2))));
    // The key of a deleted event makes a new event.
    let seqs = f.group(vec![event("a", NOW + 10, Some("k1"))]);
    assert_eq!(seqs, vec![4]);
    assert_eq!(f.key("k1"), Some(4));
    // Nothing left to do: a second pass changes nothing.
    let again = f.pass(NOW);
    assert!(!again.reclaimed_anything(), "{again:?}");
    assert_eq!(f.store.stats().events, 2);
}

#[test]
fn a_mostly_dead_segment_is_rewritten_and_its_live_events_read_with_their_ids() {
    let mut f = Fixture::new();
    let seqs = f.group(vec![
        event("a", NOW - 5, Some("d1")),
        event("b", NOW - 5, Some("d2")),
        event("a", NOW + 100, Some("live")),
        event("a", NOW - 5, None),
    ]);
    assert_eq!(seqs, vec![1, 2, 3, 4]);
    let before = f
        .store
        .read_after(0, None, &|_| true, 10, NOW - 10)
        .unwrap();
    let live_json = before.events[2].json.clone();
    let r = f.pass(NOW);
    assert_eq!(
        (r.segments_rewritten, r.events_removed, r.keys_removed),
        (1, 3, 2)
    );
    assert_eq!(f.segments(), vec![1], "same key");
    assert_eq!(f.index(), vec![("a".into(), 1)], "b is no longer in it");
    assert_eq!(
        (f.key("d1"), f.key("d2"), f.key("live")),
        (None, None, Some(3))
    );
    let after = f.store.read_after(0, None, &|_| true, 10, NOW).unwrap();
    assert_eq!(after.events.len(), 1);
    assert_eq!(
        (after.events[0].seq, &after.events[0].json),
        (3, &live_json)
    );
    assert!(after.gap.is_some_and(|g| g == (1, 2)), "{:?}", after.gap);
    assert_eq!(f.store.stats().events, 1);
    assert_eq!(f.store.stats().first_seq, 3);
    // The key still names its event after the rewrite: a retry is a duplicate.
    let c = f
        .writer
        .write_group(&[vec![event("a", NOW + 100, Some("live"))]])
        .unwrap();
    assert!(c.outcomes[0][0].duplicate && c.outcomes[0][0].seq == 3);
}

#[test]
fn a_segment_below_the_threshold_stays_and_readers_skip_its_expired_events() {
    let mut f = Fixture::new();
    f.group(vec![
        event("a", NOW - 1, None),
        event("a", NOW + 9, None),
        event("a", NOW + 9, None),
    ]);
    let r = f.pass_with(NOW, 0.5);
    assert!(!r.reclaimed_anything(), "{r:?}");
    assert_eq!(f.read(0, None, NOW).0, vec![2, 3]);
    let r = f.pass_with(NOW, 0.3);
    assert_eq!(r.segments_rewritten, 1);
    assert_eq!(f.read(0, None, NOW).0, vec![2, 3]);
}

#[test]
fn stream_caps_keep_the_newest_events_and_readers_get_a_gap() {
    let mut f = Fixture::new();
    for _ in 0..4 {
        f.group(vec![
            event("capped", NOW + 99, None),
            event("other", NOW + 99, None),
        ]);
    }
    // capped: 1 3 5 7; other: 2 4 6 8.
    let mut s = StreamSettings::new(0);
    s.max_events = Some(2);
    f.store.put_stream_settings("capped", &s).unwrap();
    let r = f.pass(NOW);
    assert_eq!((r.streams_capped, r.events_removed), (1, 2));
    let capped = names(&["capped"]);
    assert_eq!(f.read(0, Some(&capped), NOW), (vec![5, 7], Some((1, 3))));
    assert_eq!(f.read(3, Some(&capped), NOW), (vec![5, 7], None));
    assert_eq!(f.read(0, None, NOW).0, vec![2, 4, 5, 6, 7, 8]);
    // Several streams: the gap covers only what all of them lost (here: seq
    // 1, below `first_seq`, not capped's 3).
    let both = names(&["capped", "other"]);
    assert_eq!(
        f.read(0, Some(&both), NOW),
        (vec![2, 4, 5, 6, 7, 8], Some((1, 1)))
    );
    assert_eq!(f.store.stats().events, 6);
    // The floor survives a restart.
    assert!(f.store.below_floor("capped", 3) && !f.store.below_floor("capped", 5));
    assert!(!f.store.below_floor("other", 1));
    // More events push older ones out at the next pass.
    f.group(vec![event("capped", NOW + 99, None)]);
    let r = f.pass(NOW);
    assert_eq!(r.events_removed, 1);
    assert_eq!(f.read(0, Some(&capped), NOW).0, vec![7, 9]);
}

#[test]
fn a_deleted_stream_is_skipped_at_once_and_removed_by_the_pass() {
    let mut f = Fixture::new();
    f.group(vec![
        event("gone", NOW + 99, Some("g")),
        event("kept", NOW + 99, None),
    ]);
    let mut s = StreamSettings::new(0);
    s.deleted_through = 1;
    f.store.put_stream_settings("gone", &s).unwrap();
    assert_eq!(f.read(0, None, NOW).0, vec![2], "skipped before any pass");
    assert_eq!(
        f.read(0, Some(&names(&["gone"])), NOW),
        (vec![], Some((1, 1)))
    );
    f.group(vec![event("gone", NOW + 99, None)]);
    assert_eq!(
        f.read(0, Some(&names(&["gone"])), NOW).0,
        vec![3],
        "new events show"
    );
    let r = f.pass(NOW);
    assert_eq!(
        (r.events_removed, r.segments_rewritten, r.keys_removed),
        (1, 1, 1)
    );
    assert_eq!(f.index(), vec![("gone".into(), 3), ("kept".into(), 1)]);
}

#[test]
fn nothing_unexpired_is_ever_removed() {
    let mut f = Fixture::new();
    let mut live = Vec::new();
    let mut x = 7u64;
    for g in 0..40 {
        let mut events = Vec::new();
        for i in 0..(1 + g % 7) {
            // A deterministic spread of expiries around NOW.
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let exp = NOW - 20 + (x >> 33) % 40;
            let key = format!("k{g}-{i}");
            events.push(event(["a", "b", "c"][(x % 3) as usize], exp, Some(&key)));
        }
        let exps: Vec<u64> = events.iter().map(|e| e.expires_at).collect();
        for (seq, exp) in f.group(events).into_iter().zip(exps) {
            if exp > NOW {
                live.push(seq);
            }
        }
    }
    for now in [NOW - 10, NOW - 10, NOW] {
        f.pass_with(now, 0.2);
        let still: Vec<u64> = f.read(0, None, now).0;
        let want: Vec<u64> = live.clone();
        assert!(
            want.iter().all(|s| still.contains(s)),
            "lost an unexpired event"
        );
    }
    assert_eq!(f.read(0, None, NOW).0, live);
    assert_eq!(f.store.stats().events as usize, {
        // Every stored entry, dead or alive.
        f.store
            .0
            .log
            .iter()
            .values()
            .map(|v| segment::entries(&v.unwrap()).count())
            .sum::<usize>()
    });
}

#[test]
fn the_key_sweep_removes_keys_older_than_the_first_seq() {
    let mut f = Fixture::new();
    f.group(vec![event("a", NOW - 1, Some("old"))]);
    // A `keys` entry without `segment_keys` (as written before it existed).
    f.store.0.segment_keys.clear().unwrap();
    f.group(vec![event("a", NOW + 1, None)]);
    let r = f.pass(NOW);
    assert_eq!((r.events_removed, r.keys_removed), (1, 1));
    assert_eq!(f.key("old"), None);
}
