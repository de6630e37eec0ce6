//! Stream settings: one JSON value per stream in the `streams` tree, mirrored
//! in memory (`Inner::streams`) so the write and read paths look them up
//! without touching sled. A stream's settings are created with the stream
//! (the first event published to it) or by `PUT /api/v1/streams/{id}`.

use serde::{Deserialize, Serialize};

use super::{Store, keys};
use crate::error::Result;

/// Everything Tidings keeps about one stream. Unknown or missing fields take
/// their defaults, so older values (`{"created":…}`) still read.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct StreamSettings {
    /// Unix seconds.
    pub created: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Time to live of the stream's events that set no `ttl`, in seconds;
    /// `None`: `storage.default_ttl_secs`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_age_secs: Option<u64>,
    /// Most events the stream keeps; older ones are deleted by retention.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_events: Option<u64>,
    /// Roles that may subscribe; `None`: the usual rules.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subscribe: Option<Vec<String>>,
    /// Roles that may publish; `None`: the usual rules.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub publish: Option<Vec<String>>,
    /// Events of this stream with seq ≤ this were deleted with the stream
    /// (`DELETE /api/v1/streams/{id}`); readers skip them, retention removes them.
    #[serde(skip_serializing_if = "is_zero")]
    pub deleted_through: u64,
    /// Set by `DELETE /api/v1/streams/{id}`: the stream is gone until a
    /// `PUT` or a new event brings it back.
    #[serde(skip_serializing_if = "is_false")]
    pub deleted: bool,
    /// The stream's sample generator (`POST /api/v1/events/stream/{id}/start`),
    /// kept so that a running generator starts again with the server.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub generator: Option<GeneratorSettings>,
}

/// A stream's generator as last set through the API.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct GeneratorSettings {
    /// Milliseconds between two generated events.
    pub interval_ms: u64,
    /// Started and not stopped.
    pub running: bool,
    /// Running but publishing nothing until resumed.
    #[serde(default)]
    pub paused: bool,
}

fn is_zero(v: &u64) -> bool {
    *v == 0
}

fn is_false(v: &bool) -> bool {
    !*v
}

impl StreamSettings {
    pub fn new(created: i64) -> Self {
        Self {
            created,
            ..Self::default()
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("settings serialise")
    }

    pub fn decode(bytes: &[u8]) -> StreamSettings {
        serde_json::from_slice(bytes).unwrap_or_default()
    }
}

impl Store {
    /// The settings of a known stream.
    pub fn stream_settings(&self, name: &str) -> Option<StreamSettings> {
        self.0
            .streams
            .read()
            .expect("streams lock")
            .get(name)
            .cloned()
    }

    /// Every known stream with its settings, by name.
    pub fn stream_list(&self) -> Vec<(String, StreamSettings)> {
        self.0
            .streams
            .read()
            .expect("streams lock")
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    /// The stream's `max_age_secs`, without copying its settings (the write
    /// path asks for every event that sets no `ttl`).
    pub fn stream_max_age(&self, name: &str) -> Option<u64> {
        self.with_stream_settings(name, |s| s.max_age_secs)
            .flatten()
    }

    /// Runs `f` on a stream's settings under the read lock, without copying
    /// them (for the access check, which runs for every delivered event).
    pub fn with_stream_settings<R>(
        &self,
        name: &str,
        f: impl FnOnce(&StreamSettings) -> R,
    ) -> Option<R> {
        self.0
            .streams
            .read()
            .expect("streams lock")
            .get(name)
            .map(f)
    }

    /// Changes a stream's settings (created with `created = now` when the
    /// stream is unknown) and stores them durably; read, change and write
    /// happen under one lock, so concurrent updates do not lose each other's
    /// fields. Returns the new settings and whether the stream was new.
    pub fn update_stream_settings(
        &self,
        name: &str,
        now: i64,
        change: impl FnOnce(&mut StreamSettings),
    ) -> Result<(StreamSettings, bool)> {
        let inner = &self.0;
        let mut known = inner.streams.write().expect("streams lock");
        let created = !known.contains_key(name);
        let mut settings = known
            .get(name)
            .cloned()
            .unwrap_or_else(|| StreamSettings::new(now));
        change(&mut settings);
        inner
            .streams_tree
            .insert(name.as_bytes(), settings.encode())?;
        inner.streams_tree.flush()?;
        known.insert(name.to_owned(), settings.clone());
        // Readers skip what the deletion covers from now on (`retention.rs`).
        inner.floors.raise(name, settings.deleted_through);
        Ok((settings, created))
    }

    /// True when a deleted stream has had no event since its deletion (it
    /// is not shown). Reads the stream index: call for deleted streams only.
    pub fn stream_is_gone(&self, name: &str, settings: &StreamSettings) -> bool {
        if !settings.deleted {
            return false;
        }
        let from = keys::stream_index_key(name, settings.deleted_through.saturating_add(1));
        let upper = keys::stream_index_key(name, u64::MAX);
        !matches!(self.0.stream_index.range(from..=upper).next(), Some(Ok(_)))
    }

    /// Creates or replaces a stream's settings, durably.
    pub fn put_stream_settings(&self, name: &str, settings: &StreamSettings) -> Result<()> {
        let inner = &self.0;
        // The lock orders this write with the writer's creation of new streams.
        let mut known = inner.streams.write().expect("streams lock");
        inner
            .streams_tree
            .insert(name.as_bytes(), settings.encode())?;
        inner.streams_tree.flush()?;
        known.insert(name.to_owned(), settings.clone());
        // Readers skip what the deletion covers from now on (`retention.rs`).
        inner.floors.raise(name, settings.deleted_through);
        Ok(())
    }
}
