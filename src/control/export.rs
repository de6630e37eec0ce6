//! The export on the control socket: the route (`GET /control/v1/export`),
//! which streams the store's NDJSON export (`store/backup.rs`) as it reads
//! it, and the blocking client `tidings export` copies it to its file with.
//! The route exists only on the control socket, never on the HTTP API: the
//! export holds password hashes and token digests.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use axum::body::Body;
use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::response::Response;
use bytes::Bytes;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::{AdminError, parse_response, socket_path};
use crate::app::AppState;
use crate::auth::Caller;
use crate::error::Error;
use crate::event::Now;

/// The route's path.
pub const PATH: &str = "/control/v1/export";

/// Chunks in flight between the thread reading the store and the socket, and
/// the size of each: they bound an export's memory whatever the size of the
/// store, and a slow client only slows its own export.
const CHUNKS: usize = 16;
const CHUNK_BYTES: usize = 64 * 1024;

/// Longest the client waits for the next bytes of the answer.
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// Longest response head, and longest error answer, the client reads.
const MAX_HEAD_BYTES: u64 = 64 * 1024;
const MAX_ERROR_BYTES: u64 = 1024 * 1024;

/// # `GET /control/v1/export`
///
/// The whole store as an NDJSON export, admins only, streamed as it is
/// read: a blocking task writes it through a bounded channel of chunks. A
/// failure (or shutdown) cuts the chunked body short, so the client sees an
/// incomplete answer, never a short export that looks whole.
pub async fn export_store(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Response, Error> {
    state.auth.policy().check_admin(&caller)?;
    let (tx, mut rx) = mpsc::channel(CHUNKS);
    let store = state.store.clone();
    let shutdown = state.shutdown.clone();
    tokio::task::spawn_blocking(move || {
        let mut sink = ChunkSink {
            tx,
            shutdown,
            buf: Vec::with_capacity(CHUNK_BYTES),
        };
        match store.export(&mut sink, Now::system()) {
            Ok(counts) => tracing::info!(?counts, "export sent on the control socket"),
            Err(e) => {
                tracing::warn!(error = %e, "export on the control socket stopped");
                // Best effort: a client that stopped reading gets the cut
                // body, which it reports as incomplete.
                let _ = sink.tx.try_send(Err(e));
            }
        }
    });
    let chunks = futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx));
    Response::builder()
        .header(CONTENT_TYPE, "application/x-ndjson")
        .body(Body::from_stream(chunks))
        .map_err(|e| Error::Internal(format!("building the export answer: {e}")))
}

/// A `Write` that hands full chunks to the answer's body; it fails once the
/// client is gone or the server shuts down, which ends the export.
struct ChunkSink {
    tx: mpsc::Sender<io::Result<Bytes>>,
    shutdown: CancellationToken,
    buf: Vec<u8>,
}

impl ChunkSink {
    fn send(&mut self) -> io::Result<()> {
        if self.shutdown.is_cancelled() {
            return Err(io::Error::other("the server is shutting down"));
        }
        let chunk = Ok(Bytes::from(std::mem::replace(
            &mut self.buf,
            Vec::with_capacity(CHUNK_BYTES),
        )));
        let (tx, shutdown) = (&self.tx, &self.shutdown);
        // A client that stops reading must not hold the export (and its
        // store handle) past shutdown: the wait for room also watches it.
        // (This runs on a blocking thread, where `block_on` is allowed.)
        tokio::runtime::Handle::current().block_on(async {
            tokio::select! {
                sent = tx.send(chunk) => sent
                    .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "the client went away")),
                _ = shutdown.cancelled() => Err(io::Error::other("the server is shutting down")),
            }
        })
    }
}

impl Write for ChunkSink {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.buf.extend_from_slice(data);
        if self.buf.len() >= CHUNK_BYTES {
            self.send()?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        self.send()
    }
}

/// True when a server answers on the control socket of `data_dir`.
pub fn server_answers(data_dir: &Path) -> Result<bool, AdminError> {
    let path = socket_path(data_dir);
    match UnixStream::connect(&path) {
        Ok(_) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::PermissionDenied => Err(AdminError(format!(
            "permission denied on {}: run this as the server's user or as root",
            path.display()
        ))),
        // No socket, or a stale one a killed server left.
        Err(_) => Ok(false),
    }
}

/// Asks the server on `socket` for its export and copies the body to `sink`
/// as it arrives (blocking; nothing is held in memory). An answer that ends
/// before its last chunk is an error, as is any status but 200 (with the
/// server's message).
pub fn download_export(socket: &Path, sink: &mut dyn Write) -> Result<(), AdminError> {
    let on_socket = |e: io::Error| AdminError(format!("control socket {}: {e}", socket.display()));
    let stream = UnixStream::connect(socket).map_err(on_socket)?;
    stream
        .set_read_timeout(Some(IDLE_TIMEOUT))
        .map_err(on_socket)?;
    let request = format!("GET {PATH} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    (&stream).write_all(request.as_bytes()).map_err(on_socket)?;
    let mut reader = BufReader::with_capacity(CHUNK_BYTES, stream);
    let head = read_head(&mut reader).map_err(on_socket)?;
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut response = httparse::Response::new(&mut headers);
    let parsed = response.parse(&head);
    if !matches!(parsed, Ok(httparse::Status::Complete(_))) {
        return Err(AdminError(
            "bad answer on the control socket: malformed response head".into(),
        ));
    }
    if response.code != Some(200) {
        let mut raw = head.clone();
        let _ = (&mut reader).take(MAX_ERROR_BYTES).read_to_end(&mut raw);
        let (status, value) = parse_response(&raw).map_err(on_socket)?;
        let message = value["error"]["message"]
            .as_str()
            .map(str::to_owned)
            .unwrap_or_else(|| format!("the server answered {status}: {value}"));
        return Err(AdminError(message));
    }
    let header = |name: &str| {
        response
            .headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| String::from_utf8_lossy(h.value).trim().to_ascii_lowercase())
    };
    let mut copy = Copy {
        reader,
        sink,
        socket,
    };
    if header("transfer-encoding").is_some_and(|v| v.contains("chunked")) {
        copy.chunked()
    } else if let Some(len) = header("content-length") {
        let len = len
            .parse()
            .map_err(|_| AdminError("bad answer on the control socket: Content-Length".into()))?;
        copy.exactly(len)
    } else {
        Err(AdminError(
            "bad answer on the control socket: the export has neither chunks nor a length".into(),
        ))
    }
}

/// The status line and headers, up to and including the blank line.
fn read_head(reader: &mut impl BufRead) -> io::Result<Vec<u8>> {
    let mut head = Vec::new();
    loop {
        let n = reader
            .by_ref()
            .take(MAX_HEAD_BYTES)
            .read_until(b'\n', &mut head)?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the server closed the connection before answering",
            ));
        }
        if head.ends_with(b"\r\n\r\n") || head == b"\r\n" {
            return Ok(head);
        }
        if head.len() as u64 > MAX_HEAD_BYTES {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "the response head is too long",
            ));
        }
    }
}

/// Copies a response body from the socket to the sink, telling the two
/// sides' errors apart.
struct Copy<'a> {
    reader: BufReader<UnixStream>,
    sink: &'a mut dyn Write,
    socket: &'a Path,
}

fn socket_err(socket: &Path, e: impl std::fmt::Display) -> AdminError {
    AdminError(format!("control socket {}: {e}", socket.display()))
}

fn cut_short() -> AdminError {
    AdminError(
        "the export ended early: the server stopped or failed while sending it (see its log)"
            .into(),
    )
}

impl Copy<'_> {
    /// A `Transfer-Encoding: chunked` body, up to its last (empty) chunk.
    fn chunked(&mut self) -> Result<(), AdminError> {
        loop {
            let line = self.line()?;
            let size = line.split(';').next().unwrap_or("").trim();
            let size = u64::from_str_radix(size, 16)
                .map_err(|_| socket_err(self.socket, "bad answer: a chunk size is not hex"))?;
            if size == 0 {
                // Trailer fields, then the blank line that ends the answer.
                while !self.line()?.is_empty() {}
                return Ok(());
            }
            self.exactly(size)?;
            if !self.line()?.is_empty() {
                return Err(socket_err(
                    self.socket,
                    "bad answer: a chunk lacks its CRLF",
                ));
            }
        }
    }

    /// One CRLF-terminated line (without it), short.
    fn line(&mut self) -> Result<String, AdminError> {
        let mut line = Vec::new();
        let n = (&mut self.reader)
            .take(1024)
            .read_until(b'\n', &mut line)
            .map_err(|e| socket_err(self.socket, e))?;
        if n == 0 || !line.ends_with(b"\r\n") {
            return Err(cut_short());
        }
        line.truncate(line.len() - 2);
        String::from_utf8(line).map_err(|_| socket_err(self.socket, "bad answer: a chunk line"))
    }

    /// Exactly `len` bytes of body to the sink.
    fn exactly(&mut self, mut len: u64) -> Result<(), AdminError> {
        while len > 0 {
            let socket = self.socket;
            let available = self.reader.fill_buf().map_err(|e| socket_err(socket, e))?;
            if available.is_empty() {
                return Err(cut_short());
            }
            let n = available
                .len()
                .min(usize::try_from(len).unwrap_or(usize::MAX));
            self.sink
                .write_all(&available[..n])
                .map_err(|e| AdminError(format!("cannot write the export: {e}")))?;
            self.reader.consume(n);
            len -= n as u64;
        }
        Ok(())
    }
}
