//! `realtime.RealtimeService` (`proto/realtime.proto`), the realtime seed's
//! internal API. Each notification is one event published through the write
//! path (`Ingest::ingest`) after the Policy's publish check; WebSocket
//! clients get it because rooms are streams and an authenticated connection
//! joins its own `user:<sub>` room:
//!
//! | RPC | stream | event type | data |
//! |---|---|---|---|
//! | `NotifyBookingResult` | `user:<user_id>` | `booking:confirmed` / `booking:failed` | booking fields |
//! | `NotifyQueuePosition` | `user:<user_id>` | `booking:queue_position` | queue fields |
//! | `NotifyPaymentStatus` | `user:<user_id>` | `payment:<status>` | payment fields |
//! | `BroadcastEvent` | `<room>` | `<event_type>` | `payload` |
//! | `SendToUser` | `user:<user_id>` | `<event_type>` | `payload` |
//!
//! `GetConnectionStats` reads the live counters: WebSocket connections
//! (`Connections`) and readers per stream (`Hub::clients`); with federation,
//! `cluster` adds up the alive nodes' heartbeats.

use serde_json::value::RawValue;
use serde_json::{Map, Value, json};
use tonic::{Request, Response, Status};

use super::pb::realtime::realtime_service_server::{RealtimeService, RealtimeServiceServer};
use super::pb::realtime::{
    BroadcastEventRequest, ClusterStats, GetConnectionStatsRequest, GetConnectionStatsResponse,
    NotifyBookingResultRequest, NotifyPaymentStatusRequest, NotifyQueuePositionRequest,
    NotifyResponse, SendToUserRequest,
};
use super::{caller, status};
use crate::app::{AppState, Transport};
use crate::auth::Caller;
use crate::error::{Error, Result};
use crate::event::{EventInput, valid_stream_name};
use crate::limits::Class;
use crate::metrics::Notification;

/// The service; one per server, sharing the app's handles.
#[derive(Clone)]
pub struct Realtime {
    state: AppState,
}

impl Realtime {
    pub fn server(state: AppState) -> RealtimeServiceServer<Realtime> {
        RealtimeServiceServer::new(Realtime { state })
    }

    /// Publishes one event as `caller` and says how many readers the
    /// stream had when it was stored.
    async fn publish(
        &self,
        kind: Notification,
        caller: &Caller,
        stream: String,
        event_type: String,
        data: Option<Box<RawValue>>,
    ) -> Result<NotifyResponse> {
        let input = EventInput {
            stream_id: Some(stream.clone()),
            event_type: Some(event_type.clone()),
            data,
            ..EventInput::default()
        };
        let inputs = vec![input];
        self.state.auth.check_publish_all(caller, &inputs)?;
        let outcome = self
            .state
            .ingest
            .ingest(inputs)
            .await?
            .pop()
            .ok_or_else(|| Error::Internal("the writer answered no outcome".into()))?;
        let readers = self.state.hub.clients_of(&stream);
        self.state.metrics.notification(kind);
        Ok(NotifyResponse {
            success: true,
            message: format!("{event_type} sent to {stream}"),
            delivered_to: clamp(readers),
            event_id: outcome.seq.to_string(),
            stream_id: outcome.stream,
            timestamp: outcome.timestamp,
        })
    }

    async fn booking_result(
        &self,
        caller: &Caller,
        r: NotifyBookingResultRequest,
    ) -> Result<NotifyResponse> {
        let stream = user_stream(&r.user_id)?;
        required("booking_id", &r.booking_id)?;
        let event_type = if r.success {
            "booking:confirmed"
        } else {
            "booking:failed"
        };
        let mut data = Map::new();
        data.insert("booking_id".into(), json!(r.booking_id));
        put(&mut data, "booking_reference", &r.booking_reference);
        put(&mut data, "message", &r.message);
        put(&mut data, "event_id", &r.event_id);
        if !r.seat_numbers.is_empty() {
            data.insert("seat_numbers".into(), json!(r.seat_numbers));
        }
        put(&mut data, "total_amount", &r.total_amount);
        put(&mut data, "currency", &r.currency);
        put(&mut data, "error_code", &r.error_code);
        data.insert("success".into(), json!(r.success));
        self.publish(
            Notification::BookingResult,
            caller,
            stream,
            event_type.into(),
            Some(raw(data)?),
        )
        .await
    }

    async fn queue_position(
        &self,
        caller: &Caller,
        r: NotifyQueuePositionRequest,
    ) -> Result<NotifyResponse> {
        let stream = user_stream(&r.user_id)?;
        if r.position < 0 || r.total_in_queue < 0 || r.estimated_wait_seconds < 0 {
            return Err(Error::bad_request(
                "invalid_field",
                "position, total_in_queue and estimated_wait_seconds must not be negative",
            ));
        }
        let mut data = Map::new();
        put(&mut data, "event_id", &r.event_id);
        data.insert("position".into(), json!(r.position));
        if r.total_in_queue > 0 {
            data.insert("total_in_queue".into(), json!(r.total_in_queue));
        }
        if r.estimated_wait_seconds > 0 {
            data.insert(
                "estimated_wait_seconds".into(),
                json!(r.estimated_wait_seconds),
            );
        }
        put(&mut data, "message", &r.message);
        self.publish(
            Notification::QueuePosition,
            caller,
            stream,
            "booking:queue_position".into(),
            Some(raw(data)?),
        )
        .await
    }

    async fn payment_status(
        &self,
        caller: &Caller,
        r: NotifyPaymentStatusRequest,
    ) -> Result<NotifyResponse> {
        let stream = user_stream(&r.user_id)?;
        required("payment_id", &r.payment_id)?;
        let status = r.status.trim().to_ascii_lowercase();
        if !matches!(status.as_str(), "processing" | "success" | "failed") {
            return Err(Error::bad_request(
                "invalid_field",
                format!(
                    "status {:?} must be one of processing, success, failed",
                    r.status
                ),
            ));
        }
        let mut data = Map::new();
        data.insert("payment_id".into(), json!(r.payment_id));
        data.insert("status".into(), json!(status));
        put(&mut data, "amount", &r.amount);
        put(&mut data, "currency", &r.currency);
        put(&mut data, "booking_id", &r.booking_id);
        put(&mut data, "message", &r.message);
        self.publish(
            Notification::PaymentStatus,
            caller,
            stream,
            format!("payment:{status}"),
            Some(raw(data)?),
        )
        .await
    }

    async fn broadcast(&self, caller: &Caller, r: BroadcastEventRequest) -> Result<NotifyResponse> {
        if !valid_stream_name(&r.room) {
            return Err(Error::bad_request(
                "invalid_room",
                format!(
                    "room {:?} must be 1-128 characters of A-Z a-z 0-9 . _ : -",
                    r.room
                ),
            ));
        }
        required("event_type", &r.event_type)?;
        self.publish(
            Notification::Broadcast,
            caller,
            r.room,
            r.event_type,
            payload(&r.payload)?,
        )
        .await
    }

    async fn send_to_user(&self, caller: &Caller, r: SendToUserRequest) -> Result<NotifyResponse> {
        let stream = user_stream(&r.user_id)?;
        required("event_type", &r.event_type)?;
        self.publish(
            Notification::SendToUser,
            caller,
            stream,
            r.event_type,
            payload(&r.payload)?,
        )
        .await
    }

    /// Totals for anyone who may read streams at all (as
    /// `GET /api/v1/events/streams`); rooms only those the caller may read.
    fn stats(&self, caller: &Caller) -> Result<GetConnectionStatsResponse> {
        self.state.auth.viewer(caller, None)?;
        let websockets = self.state.connections.get(Transport::WebSocket);
        let mut clients = self.state.hub.clients();
        let policy = self.state.auth.policy();
        clients.retain(|room, _| policy.may_subscribe(caller, room));
        Ok(GetConnectionStatsResponse {
            total_connections: clamp(websockets),
            authenticated_connections: clamp(self.state.connections.authenticated()),
            rooms: clients.into_iter().map(|(r, n)| (r, clamp(n))).collect(),
            sse_connections: clamp(self.state.connections.get(Transport::Sse)),
            long_poll_connections: clamp(self.state.connections.get(Transport::LongPoll)),
            timestamp: crate::event::Now::system().secs(),
            cluster: self.state.federation.as_ref().map(|f| {
                let nodes = f.nodes();
                let sum = f.cluster_connections();
                ClusterStats {
                    nodes_alive: clamp(nodes.len()),
                    total_connections: clamp(sum.websocket as usize),
                    sse_connections: clamp(sum.sse as usize),
                    long_poll_connections: clamp(sum.long_poll as usize),
                    nodes: nodes.into_iter().map(|n| n.node_id).collect(),
                }
            }),
        })
    }
}

#[tonic::async_trait]
impl RealtimeService for Realtime {
    /// # `realtime.RealtimeService/NotifyBookingResult`
    async fn notify_booking_result(
        &self,
        request: Request<NotifyBookingResultRequest>,
    ) -> Result<Response<NotifyResponse>, Status> {
        let caller = caller(&self.state, &request, Class::Publish)?;
        let answer = self.booking_result(&caller, request.into_inner()).await;
        self.respond(answer)
    }

    /// # `realtime.RealtimeService/NotifyQueuePosition`
    async fn notify_queue_position(
        &self,
        request: Request<NotifyQueuePositionRequest>,
    ) -> Result<Response<NotifyResponse>, Status> {
        let caller = caller(&self.state, &request, Class::Publish)?;
        let answer = self.queue_position(&caller, request.into_inner()).await;
        self.respond(answer)
    }

    /// # `realtime.RealtimeService/NotifyPaymentStatus`
    async fn notify_payment_status(
        &self,
        request: Request<NotifyPaymentStatusRequest>,
    ) -> Result<Response<NotifyResponse>, Status> {
        let caller = caller(&self.state, &request, Class::Publish)?;
        let answer = self.payment_status(&caller, request.into_inner()).await;
        self.respond(answer)
    }

    /// # `realtime.RealtimeService/BroadcastEvent`
    async fn broadcast_event(
        &self,
        request: Request<BroadcastEventRequest>,
    ) -> Result<Response<NotifyResponse>, Status> {
        let caller = caller(&self.state, &request, Class::Publish)?;
        let answer = self.broadcast(&caller, request.into_inner()).await;
        self.respond(answer)
    }

    /// # `realtime.RealtimeService/SendToUser`
    async fn send_to_user(
        &self,
        request: Request<SendToUserRequest>,
    ) -> Result<Response<NotifyResponse>, Status> {
        let caller = caller(&self.state, &request, Class::Publish)?;
        let answer = Realtime::send_to_user(self, &caller, request.into_inner()).await;
        self.respond(answer)
    }

    /// # `realtime.RealtimeService/GetConnectionStats`
    async fn get_connection_stats(
        &self,
        request: Request<GetConnectionStatsRequest>,
    ) -> Result<Response<GetConnectionStatsResponse>, Status> {
        let caller = caller(&self.state, &request, Class::Request)?;
        self.respond(self.stats(&caller))
    }
}

/// `user:<user_id>`, the stream a user's WebSocket connections read.
fn user_stream(user_id: &str) -> Result<String> {
    required("user_id", user_id)?;
    let stream = format!("user:{user_id}");
    if valid_stream_name(&stream) {
        Ok(stream)
    } else {
        Err(Error::bad_request(
            "invalid_field",
            format!("user_id {user_id:?} must be 1-123 characters of A-Z a-z 0-9 . _ : -"),
        ))
    }
}

fn required(field: &str, value: &str) -> Result<()> {
    if value.trim().is_empty() {
        Err(Error::bad_request(
            "missing_field",
            format!("`{field}` is required"),
        ))
    } else {
        Ok(())
    }
}

/// Inserts a string member unless it is empty.
fn put(data: &mut Map<String, Value>, key: &str, value: &str) {
    if !value.is_empty() {
        data.insert(key.into(), json!(value));
    }
}

fn raw(data: Map<String, Value>) -> Result<Box<RawValue>> {
    serde_json::value::to_raw_value(&data).map_err(|e| Error::Internal(e.to_string()))
}

/// A `payload` string as the event's data: its JSON when it is JSON, else
/// the text as a JSON string; nothing when empty.
fn payload(text: &str) -> Result<Option<Box<RawValue>>> {
    if text.trim().is_empty() {
        return Ok(None);
    }
    match RawValue::from_string(text.to_owned()) {
        Ok(v) => Ok(Some(v)),
        Err(_) => serde_json::value::to_raw_value(text)
            .map(Some)
            .map_err(|e| Error::Internal(e.to_string())),
    }
}

impl Realtime {
    /// The answer as a response; a failure is counted in
    /// `realtime_errors_total` under its error code.
    fn respond<T>(&self, answer: Result<T>) -> Result<Response<T>, Status> {
        answer.map(Response::new).map_err(|e| {
            self.state.metrics.realtime_error(e.status_and_code().1);
            status(e)
        })
    }
}

fn clamp(n: usize) -> i32 {
    i32::try_from(n).unwrap_or(i32::MAX)
}
