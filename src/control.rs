//! The local control socket, `<data_dir>/control.sock`: how `tidings user …`
//! and `tidings token …` reach a running server, which holds the database
//! lock.
//!
//! The server side ([`ControlServer`]) serves the admin routes
//! (`api::admin::routes()`) and the export (`GET /control/v1/export`, only
//! here, never on the HTTP API) on a Unix socket that only the server's user
//! and root may open (mode 0600); every request on it is [`Caller::local`],
//! an administrator. The client side ([`Admin`]) sends the same operations over
//! the socket when a server answers on it, and otherwise opens the data dir
//! itself and calls the [`Auth`] methods in-process. Both doors answer with
//! the JSON of the admin routes, so the CLI prints one shape.
//!
//! **Architecture Invariant:** the socket is only bound by a process that
//! holds the sled lock of the data dir (the store is opened first), so
//! replacing a stale socket file never steals a live server's socket.

use std::net::{Ipv4Addr, SocketAddr};
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use axum::Router;
use axum::extract::{ConnectInfo, Request};
use axum::middleware::Next;
use axum::response::Response;
use axum::routing::get;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{UnixListener, UnixStream};
use tokio::task::JoinHandle;

use crate::app::AppState;
use crate::auth::accounts::NewToken;
use crate::auth::{Auth, Caller, Roles};
use crate::config::Config;
use crate::error::Error;
use crate::store::Store;

mod export;

pub use export::{download_export, server_answers};

/// File name of the socket inside the data dir.
pub const SOCKET_NAME: &str = "control.sock";

/// Longest a control request may take (password hashing included).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// Largest answer the client reads.
const MAX_RESPONSE_BYTES: usize = 16 * 1024 * 1024;

/// Where the control socket of `data_dir` lives.
pub fn socket_path(data_dir: &Path) -> PathBuf {
    data_dir.join(SOCKET_NAME)
}

/// The admin routes served on the control socket until shutdown. Dropping it
/// removes the socket file.
pub struct ControlServer {
    path: PathBuf,
    task: Option<JoinHandle<std::io::Result<()>>>,
}

impl ControlServer {
    /// Binds `<data_dir>/control.sock` and serves on it until
    /// `state.shutdown` is cancelled. A socket that cannot be bound (a
    /// read-only data dir, a path too long for a socket) is logged and
    /// skipped: the server runs without it.
    pub fn start(data_dir: &Path, state: AppState) -> Option<ControlServer> {
        let path = socket_path(data_dir);
        let listener = match bind_private(&path) {
            Ok(listener) => listener,
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e,
                    "cannot bind the control socket; `tidings user|token` will not reach this server");
                return None;
            }
        };
        let shutdown = state.shutdown.clone();
        let router = router(state);
        let task = tokio::spawn(async move {
            axum::serve(listener, router)
                .with_graceful_shutdown(shutdown.cancelled_owned())
                .await
        });
        tracing::info!(path = %path.display(), "control socket listening");
        Some(ControlServer {
            path,
            task: Some(task),
        })
    }

    /// Waits up to `grace` for requests in flight (shutdown has begun), then
    /// removes the socket file.
    pub async fn stop(mut self, grace: Duration) {
        if let Some(task) = self.task.take() {
            match tokio::time::timeout(grace, task).await {
                Ok(Ok(Ok(()))) => {}
                Ok(Ok(Err(e))) => tracing::warn!(error = %e, "control socket failed"),
                Ok(Err(e)) => tracing::warn!(error = %e, "control socket task failed"),
                Err(_) => tracing::warn!("control requests still running after the grace period"),
            }
        }
    }
}

impl Drop for ControlServer {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Binds a socket at `path` that nobody else could ever connect to: it is
/// bound in a fresh directory only we may enter, made 0600, then renamed
/// into place (replacing a stale socket of a server that did not exit
/// cleanly).
fn bind_private(path: &Path) -> std::io::Result<UnixListener> {
    let parent = path.parent().unwrap_or(Path::new("."));
    let staging = parent.join(format!(".control.{}.tmp", std::process::id()));
    let _ = std::fs::remove_dir_all(&staging);
    std::fs::DirBuilder::new().mode(0o700).create(&staging)?;
    let bound = (|| {
        let temp = staging.join("s");
        let listener = UnixListener::bind(&temp)?;
        std::fs::set_permissions(&temp, std::fs::Permissions::from_mode(0o600))?;
        std::fs::rename(&temp, path)?;
        Ok(listener)
    })();
    let _ = std::fs::remove_dir_all(&staging);
    bound
}

/// The admin routes and the export, every request as the local administrator.
fn router(state: AppState) -> Router {
    crate::api::admin::routes()
        .route(export::PATH, get(export::export_store))
        .fallback(|uri: axum::http::Uri| async move {
            Error::NotFound(format!("no control route for {}", uri.path()))
        })
        .layer(axum::middleware::from_fn(as_local_admin))
        .with_state(state)
}

/// Marks the request as coming from [`Caller::local`] (the `Caller`
/// extractor reuses it) from 127.0.0.1, for code that keys on the address.
async fn as_local_admin(mut req: Request, next: Next) -> Response {
    let ext = req.extensions_mut();
    ext.insert(Caller::local());
    ext.insert(ConnectInfo(SocketAddr::from((Ipv4Addr::LOCALHOST, 0))));
    next.run(req).await
}

/// Sends one HTTP/1.1 request over the socket at `socket`; (status, JSON
/// body, `null` when empty).
pub async fn request(
    socket: &Path,
    method: &str,
    path: &str,
    body: Option<&Value>,
) -> std::io::Result<(u16, Value)> {
    let exchange = async {
        let mut stream = UnixStream::connect(socket).await?;
        let body = body.map(Value::to_string).unwrap_or_default();
        let head = format!(
            "{method} {path} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        );
        stream.write_all(head.as_bytes()).await?;
        stream.write_all(body.as_bytes()).await?;
        stream.flush().await?;
        let mut answer = Vec::new();
        (&mut stream)
            .take(MAX_RESPONSE_BYTES as u64 + 1)
            .read_to_end(&mut answer)
            .await?;
        if answer.len() > MAX_RESPONSE_BYTES {
            return Err(invalid("the answer is larger than 16 MiB"));
        }
        parse_response(&answer)
    };
    tokio::time::timeout(REQUEST_TIMEOUT, exchange)
        .await
        .unwrap_or_else(|_| {
            Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "the server did not answer on the control socket",
            ))
        })
}

fn invalid(what: &str) -> std::io::Error {
    std::io::Error::new(
        std::io::ErrorKind::InvalidData,
        format!("bad answer on the control socket: {what}"),
    )
}

/// Status line, headers, body (plain or chunked) of a whole answer.
fn parse_response(raw: &[u8]) -> std::io::Result<(u16, Value)> {
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut response = httparse::Response::new(&mut headers);
    let head_len = match response.parse(raw) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Err(invalid("it ends inside the headers")),
        Err(e) => return Err(invalid(&e.to_string())),
    };
    let status = response.code.unwrap_or(0);
    let header = |name: &str| {
        response
            .headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| String::from_utf8_lossy(h.value).trim().to_ascii_lowercase())
    };
    let rest = &raw[head_len..];
    let body = if header("transfer-encoding").is_some_and(|v| v.contains("chunked")) {
        dechunk(rest)?
    } else if let Some(len) = header("content-length") {
        let len: usize = len.parse().map_err(|_| invalid("bad Content-Length"))?;
        rest.get(..len)
            .ok_or_else(|| invalid("the body is shorter than its Content-Length"))?
            .to_vec()
    } else {
        rest.to_vec()
    };
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok((status, Value::Null));
    }
    let value = serde_json::from_slice(&body)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&body).into_owned()));
    Ok((status, value))
}

/// Decodes a `Transfer-Encoding: chunked` body (trailers ignored).
fn dechunk(mut rest: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let line_end = find_crlf(rest).ok_or_else(|| invalid("unterminated chunk size"))?;
        let line = std::str::from_utf8(&rest[..line_end]).map_err(|_| invalid("chunk size"))?;
        let size_hex = line.split(';').next().unwrap_or("").trim();
        let size =
            usize::from_str_radix(size_hex, 16).map_err(|_| invalid("chunk size is not hex"))?;
        rest = &rest[line_end + 2..];
        if size == 0 {
            return Ok(body);
        }
        let chunk = rest
            .get(..size)
            .ok_or_else(|| invalid("a chunk is cut short"))?;
        body.extend_from_slice(chunk);
        rest = rest
            .get(size..)
            .and_then(|r| r.strip_prefix(b"\r\n"))
            .ok_or_else(|| invalid("a chunk lacks its CRLF"))?;
    }
}

fn find_crlf(buf: &[u8]) -> Option<usize> {
    buf.windows(2).position(|w| w == b"\r\n")
}

/// A failed account operation: what to tell the operator.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct AdminError(pub String);

impl From<Error> for AdminError {
    fn from(e: Error) -> Self {
        AdminError(e.to_string())
    }
}

/// The two doors of `tidings user|token …`; every method answers with the
/// JSON of the matching admin route.
pub enum Admin {
    /// A running server, through its control socket.
    Socket(PathBuf),
    /// The data dir opened by this process (no server is running).
    Direct(Auth),
}

impl Admin {
    /// The control socket when a server answers on it, else the data dir
    /// opened directly.
    pub async fn connect(config: &Config) -> Result<Admin, AdminError> {
        let path = socket_path(&config.data_dir);
        match UnixStream::connect(&path).await {
            Ok(_) => return Ok(Admin::Socket(path)),
            Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
                return Err(AdminError(format!(
                    "permission denied on {}: run this as the server's user or as root",
                    path.display()
                )));
            }
            // No socket, or a stale one a killed server left: open the data dir.
            Err(_) => {}
        }
        let store = Store::open(&config.data_dir, &config.storage)
            .map_err(|e| AdminError(format!("{e}, and no server answers on {}", path.display())))?;
        let auth = Auth::new(&config.auth, store, true).map_err(|e| AdminError(e.to_string()))?;
        Ok(Admin::Direct(auth))
    }

    /// Makes what a direct operation wrote durable.
    pub async fn close(self) -> Result<(), AdminError> {
        if let Admin::Direct(auth) = self {
            auth.store().flush().await?;
        }
        Ok(())
    }

    /// True when the operations go to a running server.
    pub fn is_remote(&self) -> bool {
        matches!(self, Admin::Socket(_))
    }

    pub async fn list_users(&self) -> Result<Value, AdminError> {
        match self {
            Admin::Socket(s) => call(s, "GET", USERS, None).await,
            Admin::Direct(auth) => Ok(json!({ "users": auth.list_users()? })),
        }
    }

    pub async fn create_user(
        &self,
        name: &str,
        password: String,
        role: Roles,
    ) -> Result<Value, AdminError> {
        match self {
            Admin::Socket(s) => {
                let body = json!({ "name": name, "password": password, "role": role_name(role) });
                call(s, "POST", USERS, Some(&body)).await
            }
            Admin::Direct(auth) => to_json(auth.create_user(name, password, role).await?),
        }
    }

    pub async fn set_password(&self, name: &str, password: String) -> Result<Value, AdminError> {
        match self {
            Admin::Socket(s) => {
                let path = format!("{USERS}/{}", encode_segment(name));
                call(s, "PATCH", &path, Some(&json!({ "password": password }))).await
            }
            Admin::Direct(auth) => to_json(auth.set_password(name, password).await?),
        }
    }

    pub async fn remove_user(&self, name: &str) -> Result<Value, AdminError> {
        match self {
            Admin::Socket(s) => {
                let path = format!("{USERS}/{}", encode_segment(name));
                call(s, "DELETE", &path, None).await
            }
            Admin::Direct(auth) => {
                auth.remove_user(name)?;
                Ok(json!({ "deleted": name }))
            }
        }
    }

    pub async fn list_tokens(&self) -> Result<Value, AdminError> {
        match self {
            Admin::Socket(s) => call(s, "GET", TOKENS, None).await,
            Admin::Direct(auth) => Ok(json!({ "tokens": auth.list_tokens()? })),
        }
    }

    pub async fn create_token(&self, new: NewToken) -> Result<Value, AdminError> {
        match self {
            Admin::Socket(s) => {
                let body = json!({
                    "name": new.name,
                    "role": role_name(new.role),
                    "streams": new.streams,
                    "expires_in_secs": new.expires_in_secs,
                });
                call(s, "POST", TOKENS, Some(&body)).await
            }
            Admin::Direct(auth) => to_json(auth.create_token(new)?),
        }
    }

    pub async fn revoke_token(&self, id: &str) -> Result<Value, AdminError> {
        match self {
            Admin::Socket(s) => {
                let path = format!("{TOKENS}/{}", encode_segment(id));
                call(s, "DELETE", &path, None).await
            }
            Admin::Direct(auth) => {
                auth.revoke_token(id)?;
                Ok(json!({ "revoked": id }))
            }
        }
    }
}

const USERS: &str = "/api/v1/admin/users";
const TOKENS: &str = "/api/v1/admin/tokens";

/// One request on the socket; an error answer becomes its message.
async fn call(
    socket: &Path,
    method: &str,
    path: &str,
    body: Option<&Value>,
) -> Result<Value, AdminError> {
    let (status, value) = request(socket, method, path, body)
        .await
        .map_err(|e| AdminError(format!("control socket {}: {e}", socket.display())))?;
    if (200..300).contains(&status) {
        return Ok(value);
    }
    let message = value["error"]["message"]
        .as_str()
        .map(str::to_owned)
        .unwrap_or_else(|| format!("the server answered {status}: {value}"));
    Err(AdminError(message))
}

fn to_json(value: impl serde::Serialize) -> Result<Value, AdminError> {
    serde_json::to_value(value).map_err(|e| AdminError(format!("cannot encode the answer: {e}")))
}

/// The lower-case name of a single role, as the admin routes take it.
fn role_name(role: Roles) -> String {
    role.names()
        .first()
        .map(|n| n.to_ascii_lowercase())
        .unwrap_or_default()
}

/// Percent-encodes everything but unreserved characters, for a path segment.
fn encode_segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_plain_and_chunked_answers() {
        let check = |raw: &str, status: u16, body: Value| {
            assert_eq!(
                parse_response(raw.as_bytes()).unwrap(),
                (status, body),
                "{raw:?}"
            );
        };
        check(
            "HTTP/1.1 201 Created\r\ncontent-length: 8\r\n\r\n{\"a\":1}\n",
            201,
            json!({"a": 1}),
        );
        check(
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3;x=y\r\n{\"b\r\n5\r\n\":[]}\r\n0\r\n\r\n",
            200,
            json!({"b": []}),
        );
        check("HTTP/1.1 204 No Content\r\n\r\n", 204, Value::Null);
        check(
            "HTTP/1.1 502 Bad Gateway\r\n\r\noops",
            502,
            Value::String("oops".into()),
        );
        assert!(parse_response(b"HTTP/1.1 200 OK\r\ncontent-length: 9\r\n\r\n{}").is_err());
        assert!(
            parse_response(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n").is_err()
        );
        assert!(parse_response(b"HTTP/1.1 200").is_err());
    }

    #[test]
    fn path_segments_are_percent_encoded() {
        assert_eq!(encode_segment("alice.b-c_d~"), "alice.b-c_d~");
        assert_eq!(encode_segment("a b/c?é"), "a%20b%2Fc%3F%C3%A9");
    }

    #[tokio::test]
    async fn the_socket_is_private_and_replaces_a_stale_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = socket_path(dir.path());
        std::fs::write(&path, b"stale").unwrap();
        let listener = bind_private(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let entries: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(entries, vec![SOCKET_NAME], "the staging directory is gone");
        let (client, accepted) = tokio::join!(UnixStream::connect(&path), listener.accept());
        client.expect("connects through the renamed path");
        accepted.expect("accepted");
    }
}
