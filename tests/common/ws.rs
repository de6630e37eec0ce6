//! WebSocket client helpers shared by the suites: send a JSON message, read
//! the next JSON message (protocol pings and pongs skipped), expect a type.
//! Every wait has a deadline.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use super::within;

/// A client connection.
pub type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// How long one send or receive may take.
pub const WS_WAIT: Duration = Duration::from_secs(10);

/// Sends `msg` as a text message.
pub async fn send(ws: &mut Ws, msg: &Value) {
    within(
        "WebSocket send",
        WS_WAIT,
        ws.send(Message::text(msg.to_string())),
    )
    .await
    .expect("send");
}

/// The next server message as JSON; protocol pings and pongs are skipped.
pub async fn recv(ws: &mut Ws) -> Value {
    loop {
        let msg = within("next WebSocket message", WS_WAIT, ws.next())
            .await
            .expect("connection ended")
            .expect("read");
        match msg {
            Message::Text(t) => {
                return serde_json::from_str(t.as_str())
                    .unwrap_or_else(|e| panic!("not JSON ({e}): {t}"));
            }
            Message::Ping(_) | Message::Pong(_) => continue,
            other => panic!("expected a text message, got {other:?}"),
        }
    }
}

/// The next message, which must have type `ty`.
pub async fn expect(ws: &mut Ws, ty: &str) -> Value {
    let msg = recv(ws).await;
    assert_eq!(msg["type"], ty, "message: {msg}");
    msg
}
