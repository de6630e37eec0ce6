//! `event.EventService`, the event ingestion seed's contract
//! (`proto/event.proto`, unchanged), as an adapter onto the jobs queue.
//!
//! Mapping of `IngestEvent(EventRequest{event_id, payload, timestamp})`:
//! - one job (`Jobs::submit`, owned by the caller) holding one event on the
//!   stream [`STREAM`] (`"events"`) of type [`EVENT_TYPE`]
//!   (`"event.ingested"`), `source` `"grpc"`;
//! - `event_id` is required and is the event's idempotency `key`: sending
//!   it again makes a new job whose event is the one stored the first time;
//! - `payload` becomes `data`: the JSON value when it parses as JSON, else
//!   the text as a JSON string;
//! - `timestamp` is not stored: the server stamps every event with its own
//!   commit time, as on every other path.
//!
//! `GetStatus(StatusRequest{job_id})`: `"processing"` while the job is
//! queued or running, `"done"`, `"failed"`, and `"not found"` for an
//! unknown or expired id or a job the caller may not read (as
//! `GET /api/v1/jobs/{id}` answers 404).

use serde_json::value::RawValue;
use tonic::{Request, Response, Status};

use super::pb::event::event_service_server::EventService;
use super::pb::event::{EventRequest, EventResponse, StatusRequest, StatusResponse};
use super::{caller, status};
use crate::app::AppState;
use crate::error::{Error, FieldError};
use crate::event::EventInput;
use crate::limits::Class;
use crate::store::JobStatus;

/// The stream `IngestEvent` publishes to.
pub const STREAM: &str = "events";
/// The type of the events `IngestEvent` publishes.
pub const EVENT_TYPE: &str = "event.ingested";

/// The `event.EventService` implementation.
pub struct EventApi {
    state: AppState,
}

impl EventApi {
    pub fn new(state: AppState) -> Self {
        Self { state }
    }
}

#[tonic::async_trait]
impl EventService for EventApi {
    /// # `event.EventService/IngestEvent`
    async fn ingest_event(
        &self,
        request: Request<EventRequest>,
    ) -> Result<Response<EventResponse>, Status> {
        let caller = caller(&self.state, &request, Class::Publish)?;
        let input = event_input(request.into_inner()).map_err(status)?;
        let inputs = vec![input];
        self.state
            .auth
            .check_publish_all(&caller, &inputs)
            .map_err(status)?;
        let job_id = self
            .state
            .jobs
            .submit(caller.subject.clone(), inputs)
            .await
            .map_err(status)?;
        Ok(Response::new(EventResponse {
            accepted: true,
            message: "Event queued for processing".into(),
            job_id,
        }))
    }

    /// # `event.EventService/GetStatus`
    async fn get_status(
        &self,
        request: Request<StatusRequest>,
    ) -> Result<Response<StatusResponse>, Status> {
        let caller = caller(&self.state, &request, Class::Request)?;
        let job = self
            .state
            .jobs
            .get_for(&request.get_ref().job_id, &caller)
            .map_err(status)?;
        let status = match job.map(|j| j.status) {
            Some(JobStatus::Queued | JobStatus::Processing) => "processing",
            Some(JobStatus::Done) => "done",
            Some(JobStatus::Failed) => "failed",
            None => "not found",
        };
        Ok(Response::new(StatusResponse {
            status: status.into(),
        }))
    }
}

/// The event an `EventRequest` stands for (see the module doc).
fn event_input(request: EventRequest) -> Result<EventInput, Error> {
    if request.event_id.trim().is_empty() {
        return Err(Error::invalid(vec![FieldError::new(
            "event_id",
            "missing_field",
            "event_id is required: it identifies the event and makes retries idempotent",
        )]));
    }
    let data = match serde_json::from_str::<Box<RawValue>>(&request.payload) {
        Ok(json) => json,
        Err(_) => {
            let text = serde_json::to_string(&request.payload)
                .map_err(|e| Error::Internal(format!("encoding a payload as a string: {e}")))?;
            RawValue::from_string(text)
                .map_err(|e| Error::Internal(format!("encoding a payload as a string: {e}")))?
        }
    };
    Ok(EventInput {
        stream_id: Some(STREAM.into()),
        event_type: Some(EVENT_TYPE.into()),
        source: Some("grpc".into()),
        data: Some(data),
        key: Some(request.event_id),
        ..EventInput::default()
    })
}
