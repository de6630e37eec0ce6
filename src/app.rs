//! Builds the [`AppState`], binds the listener, runs until shutdown, drains.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::auth::Auth;
use crate::config::{Config, Limits};
use crate::hub::Hub;
use crate::ingest::{Ingest, IngestConfig};
use crate::store::Store;

/// Everything a handler needs: cheap-clone handles, no globals.
#[derive(Clone)]
pub struct AppState {
    pub store: Store,
    pub auth: Auth,
    pub hub: Hub,
    pub ingest: Ingest,
    pub limits: Arc<Limits>,
    pub connections: Connections,
    /// Cancelled when the server starts shutting down; every long-lived loop selects on it.
    pub shutdown: CancellationToken,
    pub started: Instant,
}

/// Open long-lived connections per transport, for health and `/streams`.
#[derive(Clone, Default)]
pub struct Connections(Arc<[AtomicUsize; 3]>);

/// The transports counted by [`Connections`].
#[derive(Debug, Clone, Copy)]
pub enum Transport {
    Sse = 0,
    WebSocket = 1,
    LongPoll = 2,
}

impl Connections {
    /// Counts one connection until the guard drops.
    pub fn open(&self, t: Transport) -> ConnectionGuard {
        self.0[t as usize].fetch_add(1, Ordering::Relaxed);
        ConnectionGuard(self.clone(), t)
    }

    pub fn get(&self, t: Transport) -> usize {
        self.0[t as usize].load(Ordering::Relaxed)
    }
}

pub struct ConnectionGuard(Connections, Transport);

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        (self.0).0[self.1 as usize].fetch_sub(1, Ordering::Relaxed);
    }
}

/// Opens the store and runs the server on `listener` until `shutdown`
/// completes, then drains: long-lived streams end, queued writes commit, the
/// store is flushed.
pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let store =
        Store::open(&config.data_dir, &config.storage).context("while opening the store")?;
    let hub = Hub::new(config.limits.hub_buffer);
    let ingest_cfg = IngestConfig::new(&config.storage, &config.limits, &config.streams);
    let (ingest, writer) = Ingest::start(store.clone(), hub.clone(), ingest_cfg)
        .context("while starting the writer")?;
    let loopback = listener.local_addr()?.ip().is_loopback();
    let auth =
        Auth::new(&config.auth, store.clone(), loopback).map_err(|e| anyhow::anyhow!("{e}"))?;
    let token = CancellationToken::new();
    let state = AppState {
        auth,
        store: store.clone(),
        hub,
        ingest: ingest.clone(),
        limits: Arc::new(config.limits.clone()),
        connections: Connections::default(),
        shutdown: token.clone(),
        started: Instant::now(),
    };
    let control = crate::control::ControlServer::start(&config.data_dir, state.clone());
    let router = crate::api::router(state, &config.cors.allow_origins);
    let addr = listener.local_addr()?;
    tracing::info!(%addr, version = env!("CARGO_PKG_VERSION"), durability = ?config.storage.durability, "tidings listening");
    let signal = token.clone();
    tokio::spawn(async move {
        shutdown.await;
        tracing::info!("shutting down: closing streams, draining requests");
        signal.cancel();
    });
    let listener = crate::net::LimitedListener::new(listener, config.limits.max_connections);
    let served =
        axum::serve(listener, router).with_graceful_shutdown(token.clone().cancelled_owned());
    let grace = Duration::from_secs(config.shutdown_grace_secs);
    let server = tokio::spawn(async move { served.await });
    token.cancelled().await;
    match tokio::time::timeout(grace, server).await {
        Ok(result) => result.context("server task")?.context("server")?,
        Err(_) => tracing::warn!(
            grace_secs = grace.as_secs(),
            "connections still open after the grace period; closing them"
        ),
    }
    if let Some(control) = control {
        control.stop(grace).await;
    }
    ingest.close().await;
    writer.join().await;
    store.flush().await.context("while flushing the store")?;
    tracing::info!("stopped cleanly");
    Ok(())
}
