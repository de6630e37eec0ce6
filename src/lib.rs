//! Tidings: a self-contained event server.
//!
//! Module map, in reading order:
//! - [`config`]: typed configuration, layered defaults < file < env < flags.
//! - [`error`]: the one error type.
//! - [`event`]: the domain — events, validation, the shared record.
//! - [`store`]: the sled database behind a narrow handle (segmented log, migrations).
//! - [`hub`]: in-process fan-out of committed events.
//! - [`ingest`]: THE write path (validate → idempotency → seq → store → hub).
//! - [`generators`]: per-stream sample generators publishing through ingest (`--demo`).
//! - [`subscribe`]: THE read path (`Subscription`: catch-up, then live).
//! - [`jobs`]: asynchronous ingest jobs (persisted queue, workers, `_jobs` status events).
//! - [`auth`]: who is calling (`Caller`) and the one access check (`Policy`).
//! - [`limits`]: per-caller rate limits (token buckets by caller key).
//! - [`metrics`]: the Prometheus metrics, recorded where measured, read at scrape time where kept.
//! - [`api`]: HTTP routes, adapters onto the two paths.
//! - [`web`]: the admin UI, `web/` embedded in the binary, and the caching rules of embedded files.
//! - [`grpc`]: gRPC services (tonic), adapters like `api`; health, reflection, `Error` → `Status`.
//! - [`federation`]: several nodes over Redis: forwarder (a `Subscription`), receiver (through ingest), heartbeats.
//! - [`net`]: accepting and serving connections (connection limit, header timeout).
//! - [`app`]: state, listener, shutdown.
//! - [`systemd`]: sd_notify states (READY, RELOADING, STOPPING) and the watchdog.
//! - [`reload`]: SIGHUP — read the configuration again, apply the live keys, name the rest.
//! - [`control`]: the local control socket (`tidings user|token …`), server and client.
//! - [`bench`]: the load generator behind `tidings bench`.
//! - [`cli`]: the `tidings` subcommands besides `serve` (`config`, `user`, `token`, `migrate`, `compact`, `export`, `import`) and the log writer.
#![forbid(unsafe_code)]

pub mod api;
pub mod app;
pub mod auth;
pub mod bench;
pub mod cli;
pub mod config;
pub mod control;
pub mod error;
pub mod event;
pub mod federation;
pub mod generators;
pub mod grpc;
pub mod hub;
pub mod ingest;
pub mod jobs;
pub mod limits;
pub mod metrics;
pub mod net;
pub mod reload;
pub mod store;
pub mod subscribe;
pub mod systemd;
pub mod web;
