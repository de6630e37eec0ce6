//! `tidings.v1.Tidings` (`proto/tidings/v1/tidings.proto`), the native API:
//! `Publish` and `PublishBatch` onto the write path (or a job when `async`),
//! `Subscribe` as one `Subscription` per call, `GetJob` through
//! `Jobs::get_for`. Access is decided by the same Policy as HTTP.

use std::pin::Pin;

use futures_util::Stream;
use serde_json::value::RawValue;
use tonic::{Request, Response, Status};

use super::pb::tidings::v1::subscribe_event::Item as WireItem;
use super::pb::tidings::v1::tidings_server::{Tidings, TidingsServer};
use super::pb::tidings::v1::{
    Event, Gap, GetJobRequest, Job, PublishBatchRequest, PublishBatchResponse, PublishRequest,
    PublishResponse, SubscribeEvent, SubscribeRequest,
};
use super::{caller, status};
use crate::app::{AppState, ConnectionGuard, Transport};
use crate::auth::Caller;
use crate::error::{Error, FieldError, Result};
use crate::event::EventInput;
use crate::limits::Class;
use crate::metrics::Delivery;
use crate::store::Outcome;
use crate::subscribe::{Filter, Item, Start, Subscription};

/// Items taken from the subscription per wake-up.
const SUBSCRIBE_BATCH: usize = 256;
/// Most streams or types one `Subscribe` may name.
const MAX_NAMES: usize = 64;

/// The service; one per server, sharing the app's handles.
#[derive(Clone)]
pub struct Native {
    state: AppState,
}

type EventStream = Pin<Box<dyn Stream<Item = Result<SubscribeEvent, Status>> + Send>>;

impl Native {
    pub fn server(state: AppState) -> TidingsServer<Native> {
        TidingsServer::new(Native { state })
    }

    async fn publish_one(&self, caller: Caller, r: PublishRequest) -> Result<PublishResponse> {
        let run_async = r.r#async;
        let input = input(r, None)?;
        let inputs = vec![input];
        self.state.auth.check_publish_all(&caller, &inputs)?;
        if run_async {
            // Refused here, before the write path: counted as it would count it.
            self.state.ingest.precheck(inputs[0].clone())?;
            let job_id = self.state.jobs.submit(caller.subject, inputs).await?;
            return Ok(PublishResponse {
                job_id,
                ..PublishResponse::default()
            });
        }
        let outcome = self
            .state
            .ingest
            .ingest(inputs)
            .await?
            .pop()
            .ok_or_else(|| Error::Internal("the writer answered no outcome".into()))?;
        Ok(published(outcome))
    }

    async fn publish_batch(
        &self,
        caller: Caller,
        r: PublishBatchRequest,
    ) -> Result<PublishBatchResponse> {
        let inputs = r
            .events
            .into_iter()
            .enumerate()
            .map(|(i, e)| input(e, Some(i)))
            .collect::<Result<Vec<_>>>()?;
        self.state.auth.check_publish_all(&caller, &inputs)?;
        if r.r#async {
            let job_id = self.state.jobs.submit(caller.subject, inputs).await?;
            return Ok(PublishBatchResponse {
                events: Vec::new(),
                job_id,
            });
        }
        let outcomes = self.state.ingest.ingest(inputs).await?;
        Ok(PublishBatchResponse {
            events: outcomes.into_iter().map(published).collect(),
            job_id: String::new(),
        })
    }

    /// Opens the subscription now, so a bad request or a refused stream is
    /// the call's status rather than an error inside the stream.
    fn open(&self, caller: &Caller, r: SubscribeRequest) -> Result<Subscription> {
        if r.streams.len() > MAX_NAMES || r.types.len() > MAX_NAMES {
            return Err(Error::bad_request(
                "too_many_names",
                format!(
                    "a subscription may name at most {MAX_NAMES} streams and {MAX_NAMES} types"
                ),
            ));
        }
        for s in &r.streams {
            crate::event::parse_stream_name("streams", s).map_err(|e| Error::invalid(vec![e]))?;
        }
        let streams = (!r.streams.is_empty()).then_some(r.streams);
        let types = (!r.types.is_empty()).then_some(r.types);
        let viewer = self.state.auth.viewer(caller, streams.as_deref())?;
        let start = match r.after.as_str() {
            "" => Start::Now,
            after => Start::After(crate::api::parse_cursor("after", after)?),
        };
        let filter = Filter {
            streams,
            types,
            viewer,
        };
        Subscription::open(&self.state.store, &self.state.hub, filter, start)
    }

    /// The subscription's items as messages, until the client goes away or
    /// the server shuts down.
    fn follow(&self, mut sub: Subscription, guard: ConnectionGuard) -> EventStream {
        let shutdown = self.state.shutdown.clone();
        let metrics = self.state.metrics.clone();
        Box::pin(async_stream::stream! {
            let _guard = guard;
            loop {
                let items = tokio::select! {
                    _ = shutdown.cancelled() => break,
                    items = sub.next_batch(SUBSCRIBE_BATCH) => items,
                };
                match items {
                    Ok(items) => {
                        metrics.delivered(Delivery::Grpc, &items);
                        for item in items {
                            yield Ok(message(item));
                        }
                    }
                    Err(Error::ShuttingDown) => break,
                    Err(e) => {
                        yield Err(status(e));
                        break;
                    }
                }
            }
        })
    }
}

#[tonic::async_trait]
impl Tidings for Native {
    /// # `tidings.v1.Tidings/Publish`
    async fn publish(
        &self,
        request: Request<PublishRequest>,
    ) -> Result<Response<PublishResponse>, Status> {
        let caller = caller(&self.state, &request, Class::Publish)?;
        respond(self.publish_one(caller, request.into_inner()).await)
    }

    /// # `tidings.v1.Tidings/PublishBatch`
    async fn publish_batch(
        &self,
        request: Request<PublishBatchRequest>,
    ) -> Result<Response<PublishBatchResponse>, Status> {
        let caller = caller(&self.state, &request, Class::Publish)?;
        respond(Native::publish_batch(self, caller, request.into_inner()).await)
    }

    type SubscribeStream = EventStream;

    /// # `tidings.v1.Tidings/Subscribe`
    async fn subscribe(
        &self,
        request: Request<SubscribeRequest>,
    ) -> Result<Response<EventStream>, Status> {
        let caller = caller(&self.state, &request, Class::Request)?;
        // Capped and counted like SSE and WebSocket streams.
        let guard = self
            .state
            .connections
            .open(Transport::Grpc, caller.ip)
            .map_err(status)?;
        let sub = self.open(&caller, request.into_inner()).map_err(status)?;
        Ok(Response::new(self.follow(sub, guard)))
    }

    /// # `tidings.v1.Tidings/GetJob`
    async fn get_job(&self, request: Request<GetJobRequest>) -> Result<Response<Job>, Status> {
        let caller = caller(&self.state, &request, Class::Request)?;
        let id = request.into_inner().job_id;
        let job = match self.state.jobs.get_for(&id, &caller) {
            Ok(Some(job)) => job,
            Ok(None) => return Err(Status::not_found(format!("no job {id:?}"))),
            Err(e) => return Err(status(e)),
        };
        Ok(Response::new(Job {
            job_id: job.job_id,
            status: job.status.as_str().to_owned(),
            created: job.created,
            updated: job.updated,
            event_ids: job.event_ids,
            error: job.error.unwrap_or_default(),
        }))
    }
}

/// A wire event as the write path's input; `index` is its place in a batch.
fn input(r: PublishRequest, index: Option<usize>) -> Result<EventInput> {
    let at = |e: FieldError| FieldError { index, ..e };
    if index.is_some() && r.r#async {
        return Err(Error::invalid(vec![at(FieldError::new(
            "async",
            "invalid_field",
            "set `async` on the batch, not on its events",
        ))]));
    }
    let data = match r.data_json.as_str() {
        "" => None,
        _ => Some(RawValue::from_string(r.data_json).map_err(|e| {
            Error::invalid(vec![at(FieldError::new(
                "data_json",
                "invalid_json",
                format!("data_json is not JSON: {e}"),
            ))])
        })?),
    };
    let given = |s: String| (!s.is_empty()).then_some(s);
    Ok(EventInput {
        stream_id: given(r.stream_id),
        event_type: given(r.r#type),
        source: given(r.source),
        subject: given(r.subject),
        message: given(r.message),
        data,
        user_id: given(r.user_id),
        audience: given(r.audience),
        key: given(r.key),
        ttl: (r.ttl > 0).then_some(r.ttl),
    })
}

fn respond<T>(answer: Result<T>) -> Result<Response<T>, Status> {
    answer.map(Response::new).map_err(status)
}

fn published(o: Outcome) -> PublishResponse {
    PublishResponse {
        id: o.seq.to_string(),
        stream_id: o.stream,
        timestamp: o.timestamp,
        duplicate: o.duplicate,
        job_id: String::new(),
    }
}

/// An item as a message; the event's stored JSON goes out as it is.
fn message(item: Item) -> SubscribeEvent {
    let item = match item {
        Item::Event(e) => WireItem::Event(Event {
            id: e.seq.to_string(),
            stream_id: e.stream.to_string(),
            r#type: e.event_type.to_string(),
            json: e.json.clone(),
        }),
        Item::Gap { from, to } => WireItem::Gap(Gap {
            from: from.to_string(),
            to: to.to_string(),
        }),
    };
    SubscribeEvent { item: Some(item) }
}
