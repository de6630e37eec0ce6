//! Stream settings: one JSON value per stream in the `streams` tree, mirrored
//! in memory (`Inner::streams`) so the write and read paths look them up
//! without touching sled. A stream's settings are created with the stream
//! (the first event published to it) or by `PUT /api/v1/streams/{id}`.

use serde::{Deserialize, Serialize};

use super::Store;
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
}

fn is_zero(v: &u64) -> bool {
    *v == 0
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
        Ok(())
    }
}
