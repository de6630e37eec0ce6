//! Accepting and serving TCP connections: a bound on open connections
//! (`limits.max_connections`; past it a connection is answered at once with
//! `503` and a JSON error, then closed, instead of waiting unseen), and the
//! serving loop: HTTP/1.1 and h2c on one port, a deadline for the request
//! head (`limits.header_read_timeout_secs`), the peer address in every
//! request's extensions, and graceful shutdown.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use axum::http::Request;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

/// Serves `router` on `listener` until `shutdown` is cancelled, then stops
/// accepting, lets every HTTP connection finish its request in flight, and
/// returns once they are closed (upgraded WebSockets end on `shutdown`
/// themselves; the caller bounds the wait).
///
/// A client has `header_read_timeout` to send the first byte of a request
/// and then its whole head, on a new or an idle keep-alive connection;
/// after that the connection is closed. Each request carries
/// `ConnectInfo<SocketAddr>` (rate limits and connection caps key on it).
pub async fn serve(
    mut listener: LimitedListener,
    router: Router,
    header_read_timeout: Duration,
    shutdown: CancellationToken,
) -> io::Result<()> {
    let mut builder = Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(header_read_timeout)
        .keep_alive(true);
    // CONNECT protocol: WebSockets over HTTP/2 (RFC 8441), as axum::serve does.
    builder
        .http2()
        .timer(TokioTimer::new())
        .enable_connect_protocol();
    let builder = Arc::new(builder);
    let graceful = GracefulShutdown::new();
    loop {
        let (io, peer) = tokio::select! {
            accepted = axum::serve::Listener::accept(&mut listener) => accepted,
            _ = shutdown.cancelled() => break,
        };
        let service = router
            .clone()
            .map_request(move |mut req: Request<Incoming>| {
                req.extensions_mut().insert(ConnectInfo(peer));
                req
            });
        let service = TowerToHyperService::new(service);
        let watcher = graceful.watcher();
        let (builder, shutdown) = (builder.clone(), shutdown.clone());
        tokio::spawn(async move {
            // Before the first byte hyper does not know the protocol yet and
            // has no deadline of its own.
            let first = tokio::select! {
                first = tokio::time::timeout(header_read_timeout, io.first_byte()) => first,
                _ = shutdown.cancelled() => return,
            };
            if !matches!(first, Ok(Ok(true))) {
                tracing::debug!(%peer, "connection closed: no request within limits.header_read_timeout_secs");
                return;
            }
            let conn = builder.serve_connection_with_upgrades(TokioIo::new(io), service);
            if let Err(e) = watcher.watch(conn).await {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
        });
    }
    drop(listener);
    graceful.shutdown().await;
    Ok(())
}

/// A listener that hands out at most `max` connections at a time.
pub struct LimitedListener {
    inner: TcpListener,
    permits: Arc<Semaphore>,
    max: usize,
}

impl LimitedListener {
    pub fn new(inner: TcpListener, max: usize) -> Self {
        Self {
            inner,
            permits: Arc::new(Semaphore::new(max)),
            max,
        }
    }

    /// A handle that reads how many connections are open now
    /// (`http_active_connections`), from the permits handed out.
    pub fn open_connections(&self) -> OpenConnections {
        OpenConnections {
            permits: self.permits.clone(),
            max: self.max,
        }
    }
}

/// Reads a [`LimitedListener`]'s open connections; cheap to clone.
#[derive(Clone)]
pub struct OpenConnections {
    permits: Arc<Semaphore>,
    max: usize,
}

impl OpenConnections {
    /// Connections accepted and not yet closed.
    pub fn get(&self) -> usize {
        self.max.saturating_sub(self.permits.available_permits())
    }
}

/// An accepted connection; its slot is freed when it is dropped.
pub struct Counted {
    stream: TcpStream,
    _permit: OwnedSemaphorePermit,
}

impl Counted {
    /// Waits until the client has sent something; `false` if it closed first.
    async fn first_byte(&self) -> io::Result<bool> {
        let mut byte = [0u8; 1];
        Ok(self.stream.peek(&mut byte).await? > 0)
    }
}

impl axum::serve::Listener for LimitedListener {
    type Io = Counted;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Counted, SocketAddr) {
        loop {
            let (stream, addr) = match self.inner.accept().await {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors and the like: wait a little, go on.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            };
            // TCP_NODELAY stays off: under fan-out load Nagle merges the small
            // frames of one connection into fewer packets (3x the deliveries
            // per core here), and an idle connection still sends at once.
            match self.permits.clone().try_acquire_owned() {
                Ok(permit) => {
                    return (
                        Counted {
                            stream,
                            _permit: permit,
                        },
                        addr,
                    );
                }
                Err(_) => {
                    tracing::warn!(%addr, max = self.max, "connection refused: limits.max_connections reached");
                    tokio::spawn(refuse(stream, self.max));
                }
            }
        }
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner.local_addr()
    }
}

/// Answers a connection over the limit with a 503 and closes it: reads the
/// request head first (an HTTP client does not expect an answer before it has
/// asked), then writes the error, within two seconds at most.
async fn refuse(mut stream: TcpStream, max: usize) {
    let body = format!(
        "{{\"error\":{{\"code\":\"too_many_connections\",\"message\":\"the server has {max} open connections, \
         its limit; retry later\"}}}}"
    );
    let response = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\
         retry-after: 1\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    let answer = async {
        let mut head = Vec::with_capacity(1024);
        let mut buf = [0u8; 1024];
        while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 16 * 1024 {
            let n = stream.read(&mut buf).await?;
            if n == 0 {
                break;
            }
            head.extend_from_slice(&buf[..n]);
        }
        stream.write_all(response.as_bytes()).await?;
        stream.shutdown().await
    };
    let _ = tokio::time::timeout(std::time::Duration::from_secs(2), answer).await;
}

impl AsyncRead for Counted {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for Counted {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}
