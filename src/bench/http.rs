//! A minimal HTTP/1.1 keep-alive client for the hot loops: one TCP
//! connection, one request in flight, the request written with one syscall
//! and the answer parsed with `httparse`. The bench shares the machine's
//! cores with the server it measures, so its own cost per request must be
//! small; a general client (reqwest: pool, header maps, body streams) costs
//! several times more CPU per request.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Where the server is: the address to connect to and the `Host` header,
/// and the credential to send, if any.
#[derive(Debug, Clone)]
pub struct Endpoint {
    pub addr: SocketAddr,
    /// `host:port` as given in the URL.
    pub authority: String,
    /// Sent as `Authorization: Bearer` on every request of a [`Conn`], and
    /// as `?token=` by WebSocket subscribers.
    pub token: Option<Arc<str>>,
}

impl Endpoint {
    /// Resolves `http://host:port` (a path, if any, is ignored).
    pub async fn resolve(url: &str) -> anyhow::Result<Self> {
        let parsed =
            reqwest::Url::parse(url).with_context(|| format!("--url {url:?} is not a URL"))?;
        if parsed.scheme() != "http" {
            anyhow::bail!(
                "--url {url:?}: only http:// is supported (the bench speaks plain HTTP/1.1)"
            );
        }
        let host = parsed
            .host_str()
            .with_context(|| format!("--url {url:?} has no host"))?;
        let port = parsed.port_or_known_default().unwrap_or(80);
        let authority = format!("{host}:{port}");
        let addr = tokio::net::lookup_host(&authority)
            .await
            .with_context(|| format!("while resolving {authority}"))?
            .next()
            .with_context(|| format!("{authority} resolves to no address"))?;
        Ok(Self {
            addr,
            authority,
            token: None,
        })
    }

    /// The same server, with `token` as the credential (`None`: anonymous).
    pub fn with_token(&self, token: Option<&str>) -> Self {
        Self {
            token: token.map(Arc::from),
            ..self.clone()
        }
    }

    /// Fails with a clear message unless the server answers
    /// `GET /health/ready` with 200.
    pub async fn check_ready(&self) -> anyhow::Result<()> {
        let mut conn = Conn::open(self).await.with_context(|| {
            format!(
                "cannot reach a server at {}; start one with `tidings serve` or pass --spawn",
                self.authority
            )
        })?;
        let answer = conn
            .get("/health/ready")
            .await
            .with_context(|| format!("GET /health/ready on {} failed", self.authority))?;
        if answer.status != 200 {
            anyhow::bail!(
                "the server at {} is not ready: HTTP {} {}",
                self.authority,
                answer.status,
                answer.snippet(300)
            );
        }
        Ok(())
    }

    /// The base URL with another scheme, e.g. `ws://127.0.0.1:8080`.
    pub fn base(&self, scheme: &str) -> String {
        format!("{scheme}://{}", self.authority)
    }
}

/// A server's answer: status and body.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub body: Vec<u8>,
}

impl Answer {
    /// The body as text, cut to `max` bytes, for error messages.
    pub fn snippet(&self, max: usize) -> String {
        let end = self.body.len().min(max);
        String::from_utf8_lossy(&self.body[..end]).into_owned()
    }
}

/// One keep-alive connection.
pub struct Conn {
    stream: TcpStream,
    /// `Host: …\r\n`, and `Authorization: Bearer …\r\n` with a token.
    headers: String,
    /// Bytes read and not yet consumed.
    buf: Vec<u8>,
    /// The request being written, reused.
    req: Vec<u8>,
}

impl Conn {
    /// Connects, with Nagle off (requests are small and answered at once).
    pub async fn open(endpoint: &Endpoint) -> io::Result<Self> {
        let stream = TcpStream::connect(endpoint.addr).await?;
        stream.set_nodelay(true)?;
        let mut headers = format!("Host: {}\r\n", endpoint.authority);
        if let Some(token) = &endpoint.token {
            headers += &format!("Authorization: Bearer {token}\r\n");
        }
        Ok(Self {
            stream,
            headers,
            buf: Vec::with_capacity(4096),
            req: Vec::with_capacity(1024),
        })
    }

    /// `POST path` with a JSON body; waits for the whole answer.
    pub async fn post_json(&mut self, path: &str, body: &[u8]) -> io::Result<Answer> {
        self.req.clear();
        self.req.extend_from_slice(
            format!(
                "POST {path} HTTP/1.1\r\n{}Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
                self.headers,
                body.len()
            )
            .as_bytes(),
        );
        self.req.extend_from_slice(body);
        self.stream.write_all(&self.req).await?;
        self.read_answer().await
    }

    /// `GET path`; waits for the whole answer.
    pub async fn get(&mut self, path: &str) -> io::Result<Answer> {
        self.req.clear();
        self.req
            .extend_from_slice(format!("GET {path} HTTP/1.1\r\n{}\r\n", self.headers).as_bytes());
        self.stream.write_all(&self.req).await?;
        self.read_answer().await
    }

    async fn read_answer(&mut self) -> io::Result<Answer> {
        loop {
            if let Some((head, status, length)) = parse_head(&self.buf)? {
                let total = head + length;
                while self.buf.len() < total {
                    self.fill().await?;
                }
                let body = self.buf[head..total].to_vec();
                self.buf.drain(..total);
                return Ok(Answer { status, body });
            }
            self.fill().await?;
        }
    }

    async fn fill(&mut self) -> io::Result<()> {
        if self.stream.read_buf(&mut self.buf).await? == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the server closed the connection",
            ));
        }
        Ok(())
    }
}

/// Parses a response head: `(head length, status, body length)`, or `None`
/// when more bytes are needed. Answers without `Content-Length` (chunked)
/// are refused: every answer the bench reads has one.
fn parse_head(buf: &[u8]) -> io::Result<Option<(usize, u16, usize)>> {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut response = httparse::Response::new(&mut headers);
    let head = match response.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(e) => return Err(invalid(format!("malformed HTTP answer: {e}"))),
    };
    let status = response.code.unwrap_or(0);
    let length = response
        .headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case("content-length"))
        .map(|h| {
            std::str::from_utf8(h.value)
                .ok()
                .and_then(|v| v.trim().parse::<usize>().ok())
                .ok_or_else(|| invalid("malformed Content-Length".into()))
        })
        .transpose()?;
    match length {
        Some(n) => Ok(Some((head, status, n))),
        None if status == 204 || status == 304 || (100..200).contains(&status) => {
            Ok(Some((head, status, 0)))
        }
        None => Err(invalid(format!(
            "HTTP {status} answer without Content-Length; the bench client needs one"
        ))),
    }
}

fn invalid(message: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_heads() {
        let ok = b"HTTP/1.1 201 Created\r\ncontent-length: 5\r\n\r\nhello";
        assert_eq!(parse_head(ok).unwrap(), Some((ok.len() - 5, 201, 5)));
        assert_eq!(parse_head(b"HTTP/1.1 201 Crea").unwrap(), None);
        assert!(parse_head(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n").is_err());
        assert!(parse_head(b"garbage\r\n\r\n").is_err());
    }
}
