//! THE read path. Every reader — poll, long poll, SSE, WebSocket, and later
//! gRPC streams and the admin UI's tail — is a [`Subscription`]: a [`Filter`]
//! plus a cursor.
//!
//! A subscription registers with the hub *first*, then catches up from the
//! store (events after the cursor, up to the visible watermark), then follows
//! the hub, skipping what it already read. If it falls behind the hub's bounded
//! buffer (`Lagged`) it goes back to the store and catches up again, so it never
//! skips an event; only events retention already deleted can be missed, and
//! those are reported as an [`Item::Gap`].

use std::collections::VecDeque;
use std::sync::Arc;

use tokio::sync::broadcast::{self, error::RecvError};

use crate::error::{Error, Result};
use crate::event::{Audience, EventRecord};
use crate::hub::{Batch, ClientGuard, Hub};
use crate::store::Store;
use crate::store::segment::Entry;

/// Decides whether a reader of "all streams" may see a stream's events.
pub type StreamGate = Arc<dyn Fn(&str) -> bool + Send + Sync>;

/// Who is reading: decides which audience-restricted events they may see.
/// Built by `Auth::viewer` from the caller.
#[derive(Clone, Default)]
pub struct Viewer {
    pub user_id: Option<String>,
    pub admin: bool,
    /// Streams this reader may see when it reads without naming streams;
    /// `None`: every stream (admins, or streams already checked by name).
    pub gate: Option<StreamGate>,
    /// Narrows what this reader is shown to one feed (the telemetry seed's
    /// user and admin feeds); never widens what the rest allows.
    pub only: Option<Feed>,
}

/// A feed a reader may narrow itself to ([`Viewer::only`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Feed {
    /// Events addressed to the viewer's own `user_id` (audience `user`).
    OwnUser,
    /// Events for admins (audience `admin`).
    Admin,
}

impl std::fmt::Debug for Viewer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Viewer")
            .field("user_id", &self.user_id)
            .field("admin", &self.admin)
            .field("gated", &self.gate.is_some())
            .field("only", &self.only)
            .finish()
    }
}

impl Viewer {
    pub fn may_see(&self, stream: &str, audience: Audience, user_id: Option<&str>) -> bool {
        if let Some(gate) = &self.gate
            && !gate(stream)
        {
            return false;
        }
        let in_feed = match self.only {
            None => true,
            Some(Feed::OwnUser) => {
                audience == Audience::User
                    && self.user_id.is_some()
                    && self.user_id.as_deref() == user_id
            }
            Some(Feed::Admin) => audience == Audience::Admin,
        };
        if !in_feed {
            return false;
        }
        match audience {
            Audience::Public => true,
            Audience::User => {
                self.admin || (self.user_id.is_some() && self.user_id.as_deref() == user_id)
            }
            Audience::Admin => self.admin,
        }
    }
}

/// Which events a subscription wants.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    /// `None`: every stream.
    pub streams: Option<Vec<String>>,
    /// `None`: every type.
    pub types: Option<Vec<String>>,
    pub viewer: Viewer,
}

impl Filter {
    fn matches(
        &self,
        stream: &str,
        event_type: &str,
        audience: Audience,
        user_id: Option<&str>,
    ) -> bool {
        self.streams
            .as_ref()
            .is_none_or(|s| s.iter().any(|s| s == stream))
            && self
                .types
                .as_ref()
                .is_none_or(|t| t.iter().any(|t| t == event_type))
            && self.viewer.may_see(stream, audience, user_id)
    }

    fn matches_entry(&self, e: &Entry) -> bool {
        self.matches(e.stream, e.event_type, e.audience, e.user_id)
    }

    fn matches_record(&self, r: &EventRecord) -> bool {
        self.matches(&r.stream, &r.event_type, r.audience, r.user_id.as_deref())
    }
}

/// Where a subscription starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    /// After this seq (0: from the oldest retained event).
    After(u64),
    /// Only events committed from now on.
    Now,
}

/// What a reader receives.
#[derive(Debug, Clone)]
pub enum Item {
    Event(Arc<EventRecord>),
    /// Events `from..=to` were deleted by retention before this reader got them.
    Gap {
        from: u64,
        to: u64,
    },
}

impl Item {
    /// The cursor after this item.
    pub fn seq(&self) -> u64 {
        match self {
            Item::Event(e) => e.seq,
            Item::Gap { to, .. } => *to,
        }
    }
}

/// A filter plus a cursor: catch-up from the store, then live from the hub.
pub struct Subscription {
    store: Store,
    filter: Arc<Filter>,
    rx: broadcast::Receiver<Batch>,
    /// Every seq up to here has been considered (delivered or filtered out).
    position: u64,
    catching_up: bool,
    pending: VecDeque<Item>,
    /// Keeps the reader counted; its hub also counts lag events and
    /// catch-up reads (`Hub::stats`).
    client: ClientGuard,
}

impl Subscription {
    /// Opens a subscription. A cursor ahead of the newest event is refused.
    pub fn open(store: &Store, hub: &Hub, filter: Filter, start: Start) -> Result<Self> {
        let single = filter
            .streams
            .as_ref()
            .filter(|s| s.len() == 1)
            .map(|s| s[0].as_str());
        let rx = hub.receiver(single);
        let head = store.visible_seq();
        let position = match start {
            Start::Now => head,
            Start::After(after) if after > head => {
                return Err(Error::bad_request(
                    "invalid_cursor",
                    format!(
                        "cursor {after} is ahead of the newest event ({head}); resume from a cursor this server gave you"
                    ),
                ));
            }
            Start::After(after) => after,
        };
        let client = hub.track(filter.streams.as_deref().unwrap_or(&[]));
        Ok(Self {
            store: store.clone(),
            filter: Arc::new(filter),
            rx,
            position,
            catching_up: position < head,
            pending: VecDeque::new(),
            client,
        })
    }

    /// Every seq up to this one has been delivered or filtered out.
    pub fn position(&self) -> u64 {
        self.position
    }

    /// Items already available, without waiting for new events (short poll).
    pub async fn ready(&mut self, max: usize) -> Result<Vec<Item>> {
        let mut out = self.take_pending(max);
        while out.len() < max && self.catching_up {
            let more = self.catch_up(max - out.len()).await?;
            out.extend(more);
        }
        Ok(out)
    }

    /// Waits for at least one item and returns up to `max`.
    pub async fn next_batch(&mut self, max: usize) -> Result<Vec<Item>> {
        loop {
            let out = self.ready(max).await?;
            if !out.is_empty() {
                return Ok(out);
            }
            match self.rx.recv().await {
                Ok(batch) => self.accept_live(&batch),
                Err(RecvError::Lagged(missed)) => {
                    tracing::debug!(
                        missed,
                        position = self.position,
                        "subscriber lagged; catching up from the store"
                    );
                    self.client.hub().note_lag();
                    self.catching_up = true;
                }
                Err(RecvError::Closed) => return Err(Error::ShuttingDown),
            }
        }
    }

    fn take_pending(&mut self, max: usize) -> Vec<Item> {
        let n = self.pending.len().min(max);
        self.pending.drain(..n).collect()
    }

    /// Takes a live batch. Only called when not catching up: then nothing
    /// between the position and the batch is missing (a miss shows as `Lagged`).
    fn accept_live(&mut self, batch: &Batch) {
        let now = now_secs();
        for r in batch.iter() {
            if r.seq <= self.position {
                continue;
            }
            self.position = r.seq;
            // Dead by its stream's deletion or cap: skipped like expired events.
            let dead = r.expires_at <= now || self.store.below_floor(&r.stream, r.seq);
            if !dead && self.filter.matches_record(r) {
                self.pending.push_back(Item::Event(r.clone()));
            }
        }
    }

    /// One read from the store after the position; leaves catch-up when it
    /// reaches the visible head.
    async fn catch_up(&mut self, max: usize) -> Result<Vec<Item>> {
        let store = self.store.clone();
        let filter = self.filter.clone();
        let after = self.position;
        let result = tokio::task::spawn_blocking(move || {
            let accept = |e: &Entry| filter.matches_entry(e);
            store.read_after(after, filter.streams.as_deref(), &accept, max, now_secs())
        })
        .await
        .map_err(|e| Error::Internal(format!("catch-up task failed: {e}")))??;
        self.client.hub().note_catch_up(result.events.len());
        let mut out = Vec::with_capacity(result.events.len() + 1);
        if let Some((from, to)) = result.gap {
            out.push(Item::Gap { from, to });
        }
        out.extend(result.events.into_iter().map(Item::Event));
        self.position = self.position.max(result.scanned_to);
        // Past the head this read saw, the hub (registered before) has the rest.
        self.catching_up = self.position < result.head;
        Ok(out)
    }
}

fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}
