//! Authentication and access control through real clients: bearer JWTs
//! (HS256, RS256, ES256, EdDSA; `alg: none`, algorithm confusion, expiry,
//! `iss`/`aud`, size), role claims, per-user and admin isolation on poll, SSE
//! and WebSocket, publish rights and claim patterns, `auth.rules`, anonymous
//! access, the WebSocket origin allow-list, and the start-up refusals of an
//! unsafe configuration. Keys are the test-only pairs in `tests/fixtures/`.

mod common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::process::{Command, Stdio};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use common::client::{Api, EVENTS, Published, STREAMS, WAIT, assert_ids, event_json, unix_now};
use common::process::{ServerProcess, binary};
use common::ws::{Ws, expect as ws_expect, recv as ws_recv, send as ws_send};
use common::{TestServer, assert_error, within};
use eventsource_stream::{Event, EventStreamError, Eventsource};
use futures_util::{Stream, StreamExt};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, WWW_AUTHENTICATE};
use serde_json::{Value, json};
use tidings::config::{Config, JwtAlgorithm, StreamRule};
use tokio_tungstenite::connect_async;
use tokio_tungstenite::tungstenite;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;

/// The HS256 secret of the secured test servers (at least 32 bytes).
const SECRET: &str = common::TEST_JWT_SECRET;

// ---------------------------------------------------------------- tokens

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

fn fixture_bytes(name: &str) -> Vec<u8> {
    std::fs::read(fixture(name)).unwrap_or_else(|e| panic!("fixture {name}: {e}"))
}

/// A signing key of the fixtures and the server configuration that verifies it.
#[derive(Debug, Clone, Copy)]
enum Key {
    Hs256,
    Rs256,
    Es256,
    EdDsa,
}

impl Key {
    fn sign(self, claims: &Value) -> String {
        let (alg, key) = match self {
            Key::Hs256 => (
                Algorithm::HS256,
                EncodingKey::from_secret(SECRET.as_bytes()),
            ),
            Key::Rs256 => (
                Algorithm::RS256,
                EncodingKey::from_rsa_pem(&fixture_bytes("rsa_private.pem")).expect("RSA key"),
            ),
            Key::Es256 => (
                Algorithm::ES256,
                EncodingKey::from_ec_pem(&fixture_bytes("ec_private.pem")).expect("EC key"),
            ),
            Key::EdDsa => (
                Algorithm::EdDSA,
                EncodingKey::from_ed_pem(&fixture_bytes("ed25519_private.pem"))
                    .expect("Ed25519 key"),
            ),
        };
        sign_with(alg, &key, claims)
    }

    /// Makes `c` verify this key's tokens (and only them).
    fn configure(self, c: &mut Config) {
        let public = |c: &mut Config, file: &str, alg: Option<JwtAlgorithm>| {
            c.auth.jwt_public_key = Some(fixture(file));
            c.auth.jwt_algorithm = alg;
        };
        match self {
            Key::Hs256 => c.auth.jwt_secret = Some(SECRET.into()),
            Key::Rs256 => public(c, "rsa_public.pem", None),
            Key::Es256 => public(c, "ec_public.pem", Some(JwtAlgorithm::ES256)),
            Key::EdDsa => public(c, "ed25519_public.pem", Some(JwtAlgorithm::EdDSA)),
        }
    }
}

fn sign_with(alg: Algorithm, key: &EncodingKey, claims: &Value) -> String {
    jsonwebtoken::encode(&Header::new(alg), claims, key).expect("sign")
}

/// Claims of `sub` valid for ten minutes with `extra` merged in; a `null`
/// in `extra` removes that claim.
fn claims(sub: &str, extra: Value) -> Value {
    let now = unix_now();
    merged(json!({ "sub": sub, "iat": now, "exp": now + 600 }), &extra)
}

/// `base` with `extra`'s claims set, or removed where they are `null`.
fn merged(mut base: Value, extra: &Value) -> Value {
    let map = base.as_object_mut().expect("claims are an object");
    for (k, v) in extra.as_object().expect("extra claims are an object") {
        if v.is_null() {
            map.remove(k);
        } else {
            map.insert(k.clone(), v.clone());
        }
    }
    base
}

/// An HS256 token of `sub` with these roles.
fn token(sub: &str, roles: &[&str]) -> String {
    Key::Hs256.sign(&claims(sub, json!({ "roles": roles })))
}

/// `{"alg":"none"}` with these claims and an empty signature.
fn unsigned(claims: &Value) -> String {
    let part = |v: &Value| URL_SAFE_NO_PAD.encode(v.to_string());
    format!(
        "{}.{}.",
        part(&json!({ "alg": "none", "typ": "JWT" })),
        part(claims)
    )
}

/// The token with one character in the middle of its signature changed.
fn tamper(token: &str) -> String {
    let start = token.rfind('.').expect("a JWT") + 1;
    let i = start + (token.len() - start) / 2;
    let mut bytes = token.as_bytes().to_vec();
    bytes[i] = if bytes[i] == b'A' { b'B' } else { b'A' };
    String::from_utf8(bytes).unwrap()
}

/// Percent-encodes everything but RFC 3986 unreserved characters.
fn escape(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

// ---------------------------------------------------------------- HTTP

/// A server verifying HS256 tokens signed with [`SECRET`]; anonymous
/// callers may do nothing.
async fn secured() -> TestServer {
    secured_with(|_| {}).await
}

async fn secured_with(tweak: impl FnOnce(&mut Config)) -> TestServer {
    TestServer::start_with(|c| {
        Key::Hs256.configure(c);
        tweak(c);
    })
    .await
}

/// A client sending `Authorization: Bearer <token>` on every request.
fn api_as(server: &TestServer, token: &str) -> Api {
    Api::with_token(server, token)
}

/// An answer whose body is read unless it is an event stream.
#[derive(Debug)]
struct Answer {
    status: u16,
    www_authenticate: Option<String>,
    body: Value,
}

impl Answer {
    async fn of(req: reqwest::RequestBuilder) -> Answer {
        let r = within("request", WAIT, req.send()).await.expect("request");
        let status = r.status().as_u16();
        let www_authenticate = r
            .headers()
            .get(WWW_AUTHENTICATE)
            .map(|v| v.to_str().unwrap().to_owned());
        let streaming = r
            .headers()
            .get(CONTENT_TYPE)
            .is_some_and(|v| v.as_bytes().starts_with(b"text/event-stream"));
        let body = if streaming {
            Value::Null
        } else {
            within("response body", WAIT, r.json())
                .await
                .unwrap_or(Value::Null)
        };
        Answer {
            status,
            www_authenticate,
            body,
        }
    }

    /// 401 with our error body and a `WWW-Authenticate: Bearer …` challenge.
    fn unauthorized(&self, what: &str) {
        assert_eq!(self.status, 401, "{what}: {self:?}");
        assert_error(self.status, &self.body, 401, "unauthorized");
        assert!(
            self.www_authenticate
                .as_deref()
                .is_some_and(|h| h.starts_with("Bearer")),
            "{what}: WWW-Authenticate: {self:?}"
        );
    }

    /// 403 with our error body (the caller is known, a challenge would not help).
    fn forbidden(&self, what: &str) {
        assert_eq!(self.status, 403, "{what}: {self:?}");
        assert_error(self.status, &self.body, 403, "forbidden");
    }

    /// The `events` of a 200 poll answer.
    fn events(&self, what: &str) -> Vec<Value> {
        assert_eq!(self.status, 200, "{what}: {self:?}");
        self.body["events"]
            .as_array()
            .unwrap_or_else(|| panic!("{what}: no events: {self:?}"))
            .clone()
    }
}

async fn get(api: &Api, path: &str) -> Answer {
    Answer::of(api.http.get(api.url(path))).await
}

async fn post(api: &Api, path: &str, body: &Value) -> Answer {
    Answer::of(api.http.post(api.url(path)).json(body)).await
}

/// `path` with `token=` added to its query.
fn with_token(path: &str, token: &str) -> String {
    let sep = if path.contains('?') { '&' } else { '?' };
    format!("{path}{sep}token={}", escape(token))
}

// ---------------------------------------------------------------- SSE

type Frames = Pin<Box<dyn Stream<Item = Result<Event, EventStreamError<reqwest::Error>>> + Send>>;

/// An SSE reader (frames parsed by `eventsource-stream`).
struct Sse(Frames);

impl Sse {
    async fn open(api: &Api, path: &str) -> Sse {
        let resp = within("SSE request", WAIT, api.http.get(api.url(path)).send())
            .await
            .expect("request");
        assert_eq!(resp.status(), 200, "GET {path}");
        Sse(Box::pin(resp.bytes_stream().eventsource()))
    }

    async fn take(&mut self, n: usize) -> Vec<Value> {
        let mut out = Vec::with_capacity(n);
        while out.len() < n {
            let ev = within("next SSE event", WAIT, self.0.next())
                .await
                .expect("SSE stream ended early")
                .expect("SSE frame parses");
            assert_eq!(ev.event, "message", "{ev:?}");
            out.push(serde_json::from_str(&ev.data).expect("SSE data is JSON"));
        }
        out
    }
}

// ---------------------------------------------------------------- WebSocket

/// Connects to `/ws` (with `?token=`) and returns the socket and greeting.
async fn ws_connect(server: &TestServer, token: Option<&str>) -> (Ws, Value) {
    let path = token.map_or("/ws".to_owned(), |t| with_token("/ws", t));
    let (mut ws, resp) = within("handshake", WAIT, connect_async(server.ws_url(&path)))
        .await
        .expect("handshake");
    assert_eq!(resp.status(), 101);
    let hello = ws_expect(&mut ws, "system:connected").await;
    (ws, hello)
}

/// The handshake's HTTP status when the server refuses it.
async fn ws_refused(server: &TestServer, path: &str, origin: Option<&str>) -> u16 {
    let mut req = server.ws_url(path).into_client_request().unwrap();
    if let Some(origin) = origin {
        req.headers_mut()
            .insert("origin", HeaderValue::from_str(origin).unwrap());
    }
    match within("handshake", WAIT, connect_async(req)).await {
        Err(tungstenite::Error::Http(resp)) => resp.status().as_u16(),
        Err(e) => panic!("{path}: handshake failed without an HTTP answer: {e}"),
        Ok(_) => panic!("{path}: the WebSocket was accepted"),
    }
}

/// A WebSocket handshake sent as a plain request, to read a refusal's body.
async fn ws_handshake(api: &Api, path: &str, origin: Option<&str>) -> Answer {
    let mut req = api
        .http
        .get(api.url(path))
        .header("connection", "Upgrade")
        .header("upgrade", "websocket")
        .header("sec-websocket-version", "13")
        .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==");
    if let Some(origin) = origin {
        req = req.header("origin", origin);
    }
    Answer::of(req).await
}

async fn ws_join(ws: &mut Ws, room: &str) {
    ws_send(
        ws,
        &json!({ "type": "room:join", "payload": { "room": room } }),
    )
    .await;
    let joined = ws_expect(ws, "room:joined").await;
    assert_eq!(joined["payload"]["room"], room, "{joined}");
}

/// A join that must be refused with `system:error` code `code`.
async fn ws_join_refused(ws: &mut Ws, room: &str, code: &str) {
    ws_send(
        ws,
        &json!({ "type": "room:join", "payload": { "room": room } }),
    )
    .await;
    let err = ws_expect(ws, "system:error").await;
    assert_eq!(err["payload"]["code"], code, "join {room}: {err}");
    assert!(
        err["payload"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "join {room}: {err}"
    );
}

/// Event frames by room (stream), read until every marker has arrived.
async fn ws_until_markers(ws: &mut Ws, markers: &[&Published]) -> BTreeMap<String, Vec<Value>> {
    let mut rooms: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    let mut missing: Vec<&str> = markers.iter().map(|m| m.id.as_str()).collect();
    while !missing.is_empty() {
        let frame = ws_recv(ws).await;
        let (Some(id), Some(stream)) = (frame["id"].as_str(), frame["stream_id"].as_str()) else {
            panic!("expected only event frames, got {frame}");
        };
        missing.retain(|m| *m != id);
        rooms.entry(stream.to_owned()).or_default().push(frame);
    }
    rooms
}

// ---------------------------------------------------------------- JWT table

/// Publishes (header) and polls (`?token=`) with each credential and
/// remembers what was accepted, to compare with what was stored.
struct JwtTable {
    server: TestServer,
    anonymous: Api,
    accepted: Vec<String>,
}

impl JwtTable {
    async fn new(key: Key, tweak: impl FnOnce(&mut Config)) -> JwtTable {
        let server = TestServer::start_with(|c| {
            key.configure(c);
            tweak(c);
        })
        .await;
        let anonymous = Api::new(&server);
        JwtTable {
            server,
            anonymous,
            accepted: Vec::new(),
        }
    }

    /// `Authorization: <authorization>` on a publish; a bearer token also as
    /// `?token=` on a poll. `ok`: 201/200, else 401 with the challenge.
    async fn check(&mut self, case: &str, authorization: &str, ok: bool) {
        let event = event_json("jwt", "jwt.case", json!({ "case": case }));
        let req = self
            .anonymous
            .http
            .post(self.anonymous.url(EVENTS))
            .header(AUTHORIZATION, authorization)
            .json(&event);
        let published = Answer::of(req).await;
        if ok {
            assert_eq!(published.status, 201, "{case}: {published:?}");
            self.accepted
                .push(Published::new(&event, &published.body).id);
        } else {
            published.unauthorized(case);
        }
        if let Some(token) = authorization.strip_prefix("Bearer ") {
            let poll = get(
                &self.anonymous,
                &with_token("/api/v1/events?streams=jwt", token),
            )
            .await;
            if ok {
                assert_eq!(
                    ids(&poll.events(case)),
                    self.accepted,
                    "{case}: poll shows the accepted events"
                );
            } else {
                poll.unauthorized(&format!("{case} (?token=)"));
            }
        }
    }

    /// After the table: an admin sees exactly the accepted events, each once.
    async fn finish(self, admin_token: &str) {
        let admin = api_as(&self.server, admin_token);
        assert_eq!(
            ids(&admin.poll_all("").await),
            self.accepted,
            "stored events are exactly the accepted ones"
        );
    }
}

/// The `id` of each event or frame.
fn ids(events: &[Value]) -> Vec<String> {
    events
        .iter()
        .map(|e| e["id"].as_str().unwrap_or("<no id>").to_owned())
        .collect()
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

/// A PUBLISHER's claims with `extra`.
fn publisher_claims(extra: Value) -> Value {
    merged(
        claims("producer", json!({ "roles": ["PUBLISHER"] })),
        &extra,
    )
}

#[tokio::test]
async fn hs256_tokens_are_verified_and_every_failure_is_a_401() {
    let mut t = JwtTable::new(Key::Hs256, |_| {}).await;
    let now = unix_now();
    let valid = Key::Hs256.sign(&publisher_claims(json!({})));
    let other_secret = sign_with(
        Algorithm::HS256,
        &EncodingKey::from_secret(b"another-secret-of-at-least-32-bytes!!"),
        &publisher_claims(json!({})),
    );
    let hs512 = sign_with(
        Algorithm::HS512,
        &EncodingKey::from_secret(SECRET.as_bytes()),
        &publisher_claims(json!({})),
    );
    let huge = Key::Hs256.sign(&publisher_claims(json!({ "pad": "x".repeat(9 * 1024) })));
    assert!(huge.len() > 8 * 1024);
    let sign = |extra: Value| Key::Hs256.sign(&publisher_claims(extra));
    #[rustfmt::skip]
    let cases: Vec<(&str, String, bool)> = vec![
        ("valid HS256", bearer(&valid), true),
        ("scheme in lower case", format!("bearer {valid}"), true),
        ("alg none", bearer(&unsigned(&publisher_claims(json!({})))), false),
        ("expired beyond the leeway", bearer(&sign(json!({ "exp": now - 120 }))), false),
        ("expired within the leeway", bearer(&sign(json!({ "exp": now - 5 }))), true),
        ("no exp", bearer(&sign(json!({ "exp": null }))), false),
        ("no sub", bearer(&sign(json!({ "sub": null }))), false),
        ("nbf in the future", bearer(&sign(json!({ "nbf": now + 600 }))), false),
        ("signature changed", bearer(&tamper(&valid)), false),
        ("another secret", bearer(&other_secret), false),
        ("HS512 with the same secret", bearer(&hs512), false),
        ("garbage", bearer("not-a-jwt"), false),
        ("three garbage parts", bearer("aaa.bbb.ccc"), false),
        ("oversized, validly signed", bearer(&huge), false),
        ("Basic credentials", "Basic dXNlcjpwYXNzd29yZA==".into(), false),
        ("Bearer without a token", "Bearer".into(), false),
        ("valid again after the failures", bearer(&valid), true),
    ];
    for (case, authorization, ok) in cases {
        t.check(case, &authorization, ok).await;
    }
    t.finish(&token("root", &["ADMIN"])).await;
}

#[tokio::test]
async fn rs256_tokens_are_verified_and_algorithm_confusion_is_refused() {
    let mut t = JwtTable::new(Key::Rs256, |_| {}).await;
    let c = publisher_claims(json!({}));
    // The classic attack: HMAC keyed with the server's public key bytes.
    let confused = sign_with(
        Algorithm::HS256,
        &EncodingKey::from_secret(&fixture_bytes("rsa_public.pem")),
        &c,
    );
    let ps256 = sign_with(
        Algorithm::PS256,
        &EncodingKey::from_rsa_pem(&fixture_bytes("rsa_private.pem")).unwrap(),
        &c,
    );
    #[rustfmt::skip]
    let cases: Vec<(&str, String, bool)> = vec![
        ("valid RS256", bearer(&Key::Rs256.sign(&c)), true),
        ("HS256 keyed with the public PEM", bearer(&confused), false),
        ("HS256 with the test secret", bearer(&Key::Hs256.sign(&c)), false),
        ("PS256 with the right key", bearer(&ps256), false),
        ("ES256", bearer(&Key::Es256.sign(&c)), false),
        ("alg none", bearer(&unsigned(&c)), false),
        ("signature changed", bearer(&tamper(&Key::Rs256.sign(&c))), false),
        ("valid again", bearer(&Key::Rs256.sign(&c)), true),
    ];
    for (case, authorization, ok) in cases {
        t.check(case, &authorization, ok).await;
    }
    t.finish(&Key::Rs256.sign(&claims("root", json!({ "roles": ["ADMIN"] }))))
        .await;
}

#[tokio::test]
async fn es256_and_eddsa_tokens_are_verified_with_their_keys() {
    for (key, public, wrong) in [
        (Key::Es256, "ec_public.pem", Key::EdDsa),
        (Key::EdDsa, "ed25519_public.pem", Key::Es256),
    ] {
        let mut t = JwtTable::new(key, |_| {}).await;
        let c = publisher_claims(json!({}));
        let confused = sign_with(
            Algorithm::HS256,
            &EncodingKey::from_secret(&fixture_bytes(public)),
            &c,
        );
        #[rustfmt::skip]
        let cases: Vec<(String, String, bool)> = vec![
            (format!("valid {key:?}"), bearer(&key.sign(&c)), true),
            (format!("{wrong:?} on {key:?}"), bearer(&wrong.sign(&c)), false),
            (format!("RS256 on {key:?}"), bearer(&Key::Rs256.sign(&c)), false),
            (format!("HS256 keyed with {public}"), bearer(&confused), false),
            (format!("alg none on {key:?}"), bearer(&unsigned(&c)), false),
            (format!("tampered {key:?}"), bearer(&tamper(&key.sign(&c))), false),
            (format!("{key:?} again"), bearer(&key.sign(&c)), true),
        ];
        for (case, authorization, ok) in cases {
            t.check(&case, &authorization, ok).await;
        }
        t.finish(&key.sign(&claims("root", json!({ "roles": ["ADMIN"] }))))
            .await;
    }
}

#[tokio::test]
async fn issuer_and_audience_are_required_when_configured() {
    let mut t = JwtTable::new(Key::Hs256, |c| {
        c.auth.jwt_issuer = Some("https://id.example".into());
        c.auth.jwt_audience = Some("tidings".into());
    })
    .await;
    let sign = |extra: Value| {
        let right = publisher_claims(json!({ "iss": "https://id.example", "aud": "tidings" }));
        bearer(&Key::Hs256.sign(&merged(right, &extra)))
    };
    #[rustfmt::skip]
    let cases: Vec<(&str, String, bool)> = vec![
        ("right iss and aud", sign(json!({})), true),
        ("aud as a list", sign(json!({ "aud": ["other", "tidings"] })), true),
        ("wrong aud", sign(json!({ "aud": "other" })), false),
        ("no aud", sign(json!({ "aud": null })), false),
        ("wrong iss", sign(json!({ "iss": "https://evil.example" })), false),
        ("no iss", sign(json!({ "iss": null })), false),
        ("right ones again", sign(json!({})), true),
    ];
    for (case, authorization, ok) in cases {
        t.check(case, &authorization, ok).await;
    }
    let admin = claims(
        "root",
        json!({ "roles": ["ADMIN"], "iss": "https://id.example", "aud": "tidings" }),
    );
    t.finish(&Key::Hs256.sign(&admin)).await;
}

// ---------------------------------------------------------------- roles

/// What a token's roles let it do.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Role {
    Admin,
    Publisher,
    User,
}

/// Checks what a token with `extra` claims may do: read the `admin` stream
/// (admins only, and they see its event), publish (admins and publishers),
/// read a plain stream (everyone).
async fn check_role(
    server: &TestServer,
    admin_event: &Published,
    case: &str,
    extra: Value,
    want: Role,
) {
    let api = api_as(server, &Key::Hs256.sign(&claims("someone", extra)));
    let admin_read = get(&api, "/api/v1/events?streams=admin").await;
    if want == Role::Admin {
        assert_ids(&admin_read.events(case), std::slice::from_ref(admin_event));
    } else {
        admin_read.forbidden(case);
    }
    let event = event_json("roles", "role.check", json!({ "case": case }));
    let published = post(&api, EVENTS, &event).await;
    if want == Role::User {
        published.forbidden(case);
    } else {
        assert_eq!(published.status, 201, "{case}: {published:?}");
    }
    let plain = get(&api, "/api/v1/events?streams=roles").await;
    assert_eq!(plain.status, 200, "{case}: {plain:?}");
}

#[tokio::test]
async fn roles_are_read_from_roles_role_and_spring_authorities() {
    let server = secured().await;
    let admin_event = api_as(&server, &token("producer", &["PUBLISHER"]))
        .publish_event(event_json("admin", "ops.notice", json!({ "n": 1 })))
        .await;
    #[rustfmt::skip]
    let table = [
        ("roles list", json!({ "roles": ["ADMIN"] }), Role::Admin),
        ("role string, lower case", json!({ "role": "admin" }), Role::Admin),
        ("Spring authorities", json!({ "authorities": ["ROLE_ADMIN"] }), Role::Admin),
        ("Spring authority objects", json!({ "authorities": [{ "authority": "ROLE_ADMIN" }] }), Role::Admin),
        ("comma-separated string", json!({ "roles": "USER,ADMIN" }), Role::Admin),
        ("publisher", json!({ "roles": ["PUBLISHER"] }), Role::Publisher),
        ("role_publisher", json!({ "role": "role_publisher" }), Role::Publisher),
        ("user", json!({ "roles": ["USER"] }), Role::User),
        ("unknown role: default USER", json!({ "roles": ["CUSTOMER"] }), Role::User),
        ("no role claim: default USER", json!({}), Role::User),
        ("groups is not read by default", json!({ "groups": ["ADMIN"] }), Role::User),
    ];
    for (case, extra, want) in table {
        check_role(&server, &admin_event, case, extra, want).await;
    }
}

#[tokio::test]
async fn a_custom_roles_claim_and_default_roles_apply() {
    let server = secured_with(|c| {
        c.auth.roles_claim = "groups".into();
        c.auth.default_roles = vec!["PUBLISHER".into()];
    })
    .await;
    let admin_event = api_as(&server, &token("producer", &["PUBLISHER"]))
        .publish_event(event_json("admin", "ops.notice", json!({ "n": 1 })))
        .await;
    #[rustfmt::skip]
    let table = [
        ("groups list", json!({ "groups": ["admin"] }), Role::Admin),
        ("groups string", json!({ "groups": "ROLE_ADMIN" }), Role::Admin),
        ("groups user", json!({ "groups": ["USER"] }), Role::User),
        ("no role: default PUBLISHER", json!({}), Role::Publisher),
        ("unknown group: default PUBLISHER", json!({ "groups": ["staff"] }), Role::Publisher),
    ];
    for (case, extra, want) in table {
        check_role(&server, &admin_event, case, extra, want).await;
    }
}

// ---------------------------------------------------------------- isolation

/// Whom an event is for.
#[derive(Debug, Clone, Copy, PartialEq)]
enum For {
    Alice,
    Bob,
    Admins,
    Everyone,
}

struct Sent {
    to: For,
    event: Published,
}

/// One event of each kind, published by a PUBLISHER.
async fn publish_round(publisher: &Api, round: u32) -> Vec<Sent> {
    #[rustfmt::skip]
    let kinds = [
        (For::Alice, "user:alice", json!({})),
        (For::Alice, "orders", json!({ "user_id": "alice" })),
        (For::Alice, "news", json!({ "user_id": "alice", "audience": "user" })),
        (For::Bob, "user:bob", json!({})),
        (For::Bob, "orders", json!({ "user_id": "bob" })),
        // Public by audience, but on a stream only its owner (or admins) may read.
        (For::Bob, "user:bob", json!({ "audience": "public" })),
        (For::Admins, "admin", json!({})),
        (For::Admins, "orders", json!({ "audience": "admin" })),
        (For::Admins, "admin", json!({ "audience": "public" })),
        (For::Everyone, "orders", json!({})),
        (For::Everyone, "news", json!({})),
    ];
    let mut out = Vec::new();
    for (n, (to, stream, extra)) in kinds.into_iter().enumerate() {
        let ty = format!("round{round}.{to:?}").to_lowercase();
        let body = merged(
            event_json(stream, &ty, json!({ "round": round, "n": n })),
            &extra,
        );
        out.push(Sent {
            to,
            event: publisher.publish_event(body).await,
        });
    }
    out
}

/// What `who` may receive of `sent`, on `streams` (or all).
fn visible(sent: &[Sent], who: For, streams: Option<&[&str]>) -> Vec<Published> {
    sent.iter()
        .filter(|s| who == For::Admins || s.to == who || s.to == For::Everyone)
        .filter(|s| streams.is_none_or(|l| l.contains(&s.event.stream.as_str())))
        .map(|s| s.event.clone())
        .collect()
}

/// The tokens and clients of the isolation tests.
struct Cast {
    alice: String,
    bob: String,
    admin: String,
    publisher: Api,
    anonymous: Api,
}

impl Cast {
    fn new(server: &TestServer) -> Cast {
        Cast {
            alice: token("alice", &["USER"]),
            bob: token("bob", &["USER"]),
            admin: token("root", &["ADMIN"]),
            publisher: api_as(server, &token("producer", &["PUBLISHER"])),
            anonymous: Api::new(server),
        }
    }

    async fn marker(&self, stream: &str) -> Published {
        let body = event_json(stream, "marker", json!({ "stream": stream }));
        self.publisher.publish_event(body).await
    }
}

#[tokio::test]
async fn poll_shows_each_user_only_their_own_and_public_events() {
    let server = secured().await;
    let cast = Cast::new(&server);
    let sent = publish_round(&cast.publisher, 1).await;
    let alice = api_as(&server, &cast.alice);
    #[rustfmt::skip]
    let table: [(&str, Option<&[&str]>); 6] = [
        ("", None),
        ("streams=orders", Some(&["orders"])),
        ("streams=orders,user:alice", Some(&["orders", "user:alice"])),
        ("streams=user:alice", Some(&["user:alice"])),
        ("stream_id=news", Some(&["news"])),
        ("streams=news,orders&types=round1.everyone", None),
    ];
    for (query, streams) in table {
        let want = if query.contains("types=") {
            visible(&sent, For::Everyone, None)
                .into_iter()
                .filter(|p| p.ty == "round1.everyone")
                .collect()
        } else {
            visible(&sent, For::Alice, streams)
        };
        assert_ids(&alice.poll_all(query).await, &want);
    }
    for event in alice.poll_all("").await {
        assert!(
            event["user_id"].is_null() || event["user_id"] == "alice",
            "alice got {event}"
        );
        assert_ne!(event["audience"], "admin", "alice got {event}");
    }
    // `?token=` authenticates a poll just as the header does.
    let by_query = get(&cast.anonymous, &with_token(EVENTS, &cast.alice)).await;
    assert_ids(
        &by_query.events("poll with ?token="),
        &visible(&sent, For::Alice, None),
    );
    for query in [
        "streams=user:bob",
        "streams=admin",
        "streams=orders,admin",
        "streams=_internal",
        "stream_id=user:bob",
    ] {
        get(&alice, &format!("{EVENTS}?{query}"))
            .await
            .forbidden(query);
    }
    let bob = api_as(&server, &cast.bob);
    assert_ids(&bob.poll_all("").await, &visible(&sent, For::Bob, None));
    let admin = api_as(&server, &cast.admin);
    assert_ids(
        &admin.poll_all("").await,
        &visible(&sent, For::Admins, None),
    );
    assert_ids(
        &admin.poll_all("streams=user:alice").await,
        &visible(&sent, For::Alice, Some(&["user:alice"])),
    );
    for path in [
        EVENTS,
        "/api/v1/events?streams=news",
        "/api/v1/events?streams=news&wait=1",
    ] {
        get(&cast.anonymous, path).await.unauthorized(path);
    }
}

#[tokio::test]
async fn sse_delivers_each_user_only_their_own_and_public_events() {
    let server = secured_with(|c| c.auth.allow_anonymous = Some(false)).await;
    let cast = Cast::new(&server);
    let first = publish_round(&cast.publisher, 1).await;
    let open = |path: &str, token: &str| {
        let path = with_token(path, token);
        let anonymous = cast.anonymous.clone();
        async move { Sse::open(&anonymous, &path).await }
    };
    // Replay (after=0) of the first round, then the second round live.
    let mut alice_all = open("/api/v1/sse?after=0", &cast.alice).await;
    let mut alice_orders = open("/api/v1/events/stream/orders?after=0", &cast.alice).await;
    let mut bob_all = open("/api/v1/sse?after=0", &cast.bob).await;
    let mut admin_all = open("/api/v1/sse?after=0", &cast.admin).await;
    let alice_api = api_as(&server, &cast.alice);
    let mut alice_header = Sse::open(&alice_api, "/api/v1/sse?streams=user:alice&after=0").await;
    let mut sent = first;
    sent.extend(publish_round(&cast.publisher, 2).await);
    let on_orders = cast.marker("orders").await;
    let on_news = cast.marker("news").await;
    let on_alice = cast.marker("user:alice").await;
    let markers = [on_orders.clone(), on_news.clone(), on_alice.clone()];
    let then = |mut v: Vec<Published>, m: &[Published]| {
        v.extend_from_slice(m);
        v
    };
    let want = then(visible(&sent, For::Alice, None), &markers);
    assert_ids(&alice_all.take(want.len()).await, &want);
    let want = then(
        visible(&sent, For::Alice, Some(&["orders"])),
        std::slice::from_ref(&on_orders),
    );
    assert_ids(&alice_orders.take(want.len()).await, &want);
    let want = then(
        visible(&sent, For::Alice, Some(&["user:alice"])),
        std::slice::from_ref(&on_alice),
    );
    assert_ids(&alice_header.take(want.len()).await, &want);
    let want = then(visible(&sent, For::Bob, None), &markers[..2]);
    assert_ids(&bob_all.take(want.len()).await, &want);
    let want = then(visible(&sent, For::Admins, None), &markers);
    assert_ids(&admin_all.take(want.len()).await, &want);

    for path in [
        "/api/v1/sse?streams=user:bob",
        "/api/v1/sse?streams=admin",
        "/api/v1/sse?streams=news,admin",
        "/api/v1/events/stream/user:bob",
        "/api/v1/events/stream/admin",
        "/api/v1/events/stream/_internal",
    ] {
        get(&cast.anonymous, &with_token(path, &cast.alice))
            .await
            .forbidden(path);
    }
    for path in [
        "/api/v1/sse",
        "/api/v1/sse?streams=news",
        "/api/v1/events/stream/news",
    ] {
        get(&cast.anonymous, path).await.unauthorized(path);
        let bad = with_token(path, &tamper(&cast.alice));
        get(&cast.anonymous, &bad).await.unauthorized(&bad);
    }
}

#[tokio::test]
async fn websocket_delivers_each_user_only_their_own_and_public_events() {
    let server = secured_with(|c| c.auth.allow_anonymous = Some(false)).await;
    let cast = Cast::new(&server);
    let (mut alice, hello) = ws_connect(&server, Some(&cast.alice)).await;
    assert_eq!(hello["payload"]["user_id"], "alice", "{hello}");
    assert_eq!(hello["payload"]["authenticated"], true, "{hello}");
    let own = ws_expect(&mut alice, "room:joined").await;
    assert_eq!(own["payload"]["room"], "user:alice", "{own}");
    ws_join(&mut alice, "orders").await;
    for room in ["user:bob", "admin", "_internal"] {
        ws_join_refused(&mut alice, room, "forbidden").await;
    }
    let (mut bob, _) = ws_connect(&server, Some(&cast.bob)).await;
    ws_expect(&mut bob, "room:joined").await;
    ws_join(&mut bob, "orders").await;
    let (mut admin, _) = ws_connect(&server, Some(&cast.admin)).await;
    ws_expect(&mut admin, "room:joined").await;
    for room in ["admin", "orders", "user:alice"] {
        ws_join(&mut admin, room).await;
    }

    let sent = publish_round(&cast.publisher, 1).await;
    let on_admin = cast.marker("admin").await;
    let on_orders = cast.marker("orders").await;
    let on_alice = cast.marker("user:alice").await;
    let on_bob = cast.marker("user:bob").await;
    let room = |who: For, stream: &str, marker: &Published| {
        let mut want = visible(&sent, who, Some(&[stream]));
        want.push(marker.clone());
        want
    };
    let got = ws_until_markers(&mut alice, &[&on_orders, &on_alice]).await;
    assert_eq!(
        got.keys().collect::<Vec<_>>(),
        ["orders", "user:alice"],
        "alice's rooms"
    );
    assert_ids(&got["orders"], &room(For::Alice, "orders", &on_orders));
    assert_ids(
        &got["user:alice"],
        &room(For::Alice, "user:alice", &on_alice),
    );
    let got = ws_until_markers(&mut bob, &[&on_orders, &on_bob]).await;
    assert_eq!(
        got.keys().collect::<Vec<_>>(),
        ["orders", "user:bob"],
        "bob's rooms"
    );
    assert_ids(&got["orders"], &room(For::Bob, "orders", &on_orders));
    assert_ids(&got["user:bob"], &room(For::Bob, "user:bob", &on_bob));
    let got = ws_until_markers(&mut admin, &[&on_admin, &on_orders, &on_alice]).await;
    assert_eq!(
        got.keys().collect::<Vec<_>>(),
        ["admin", "orders", "user:alice"],
        "admin's rooms"
    );
    assert_ids(&got["admin"], &room(For::Admins, "admin", &on_admin));
    assert_ids(&got["orders"], &room(For::Admins, "orders", &on_orders));
    assert_ids(
        &got["user:alice"],
        &room(For::Alice, "user:alice", &on_alice),
    );

    // No credentials, or wrong ones: refused before the upgrade.
    assert_eq!(ws_refused(&server, "/ws", None).await, 401);
    let bad = with_token("/ws", &tamper(&cast.alice));
    assert_eq!(ws_refused(&server, &bad, None).await, 401);
    ws_handshake(&cast.anonymous, "/ws", None)
        .await
        .unauthorized("anonymous WebSocket");
    ws_handshake(&cast.anonymous, &bad, None)
        .await
        .unauthorized("WebSocket with a tampered token");
}

// ---------------------------------------------------------------- publish rights

#[tokio::test]
async fn publish_rights_follow_roles_and_claim_patterns() {
    let server = secured().await;
    let sign = |roles: &[&str], extra: Value| {
        let c = merged(claims("someone", json!({ "roles": roles })), &extra);
        api_as(&server, &Key::Hs256.sign(&c))
    };
    let user = sign(&["USER"], json!({}));
    let user_orders = sign(&["USER"], json!({ "publish": ["orders.*"] }));
    let user_comma = sign(&["USER"], json!({ "publish": "orders.*, invoices" }));
    let publisher = sign(&["PUBLISHER"], json!({}));
    let publisher_orders = sign(&["PUBLISHER"], json!({ "publish": ["orders.*"] }));
    let anonymous = Api::new(&server);
    let mut accepted: Vec<Published> = Vec::new();
    // (who, case, stream, accepted?)
    #[rustfmt::skip]
    let table: Vec<(&Api, &str, &str, Option<bool>)> = vec![
        (&user, "USER", "news", Some(false)),
        (&user, "USER to own stream", "user:someone", Some(false)),
        (&user_orders, "USER publish:[orders.*]", "orders.eu", Some(true)),
        (&user_orders, "USER publish:[orders.*]", "other", Some(false)),
        (&user_orders, "USER publish:[orders.*]", "orders", Some(false)),
        (&user_comma, "USER publish:\"orders.*, invoices\"", "invoices", Some(true)),
        (&user_comma, "USER publish:\"orders.*, invoices\"", "orders.us", Some(true)),
        (&user_comma, "USER publish:\"orders.*, invoices\"", "news", Some(false)),
        (&publisher, "PUBLISHER", "news", Some(true)),
        (&publisher, "PUBLISHER to a user", "user:bob", Some(true)),
        (&publisher, "PUBLISHER to admins", "admin", Some(true)),
        (&publisher_orders, "PUBLISHER publish:[orders.*]", "orders.eu", Some(true)),
        (&publisher_orders, "PUBLISHER publish:[orders.*]", "other", Some(false)),
        (&publisher_orders, "PUBLISHER publish:[orders.*]", "user:bob", Some(false)),
        (&publisher_orders, "PUBLISHER publish:[orders.*]", "admin", Some(false)),
        (&anonymous, "anonymous", "news", None),
    ];
    for (api, case, stream, want) in table {
        let case = format!("{case} -> {stream}");
        let event = event_json(stream, "rights", json!({ "case": case }));
        let answer = post(api, EVENTS, &event).await;
        match want {
            Some(true) => {
                assert_eq!(answer.status, 201, "{case}: {answer:?}");
                accepted.push(Published::new(&event, &answer.body));
            }
            Some(false) => answer.forbidden(&case),
            None => answer.unauthorized(&case),
        }
        // A batch holding one forbidden event stores none of it.
        if want != Some(true) {
            let batch = json!({ "events": [event_json("orders.eu", "batch", json!({})), event] });
            let answer = post(api, "/api/v1/events/batch", &batch).await;
            match want {
                None => answer.unauthorized(&format!("batch: {case}")),
                _ => answer.forbidden(&format!("batch: {case}")),
            }
        }
    }
    // The dry run and the broadcast are checked the same way.
    let validate = "/api/v1/events/validate";
    post(&user, validate, &event_json("news", "x", json!({})))
        .await
        .forbidden("validate");
    post(&anonymous, validate, &event_json("news", "x", json!({})))
        .await
        .unauthorized("anonymous validate");
    let broadcast = "/api/v1/events/broadcast";
    post(&user, broadcast, &event_json("news", "x", json!({})))
        .await
        .forbidden("broadcast");
    // `?token=` is for GET only: a write does not take it from the query.
    let query_token = with_token(EVENTS, &token("producer", &["PUBLISHER"]));
    post(
        &anonymous,
        &query_token,
        &event_json("news", "x", json!({})),
    )
    .await
    .unauthorized("publish with ?token=");
    // Nothing refused was stored; nothing accepted was lost.
    let admin = api_as(&server, &token("root", &["ADMIN"]));
    assert_ids(&admin.poll_all("").await, &accepted);
}

#[tokio::test]
async fn a_subscribe_claim_narrows_reads() {
    let server = secured().await;
    let publisher = api_as(&server, &token("producer", &["PUBLISHER"]));
    let news = publisher
        .publish_event(event_json("news", "n", json!({})))
        .await;
    publisher
        .publish_event(event_json("orders", "o", json!({})))
        .await;
    let reader = Key::Hs256.sign(&claims(
        "reader",
        json!({ "roles": ["USER"], "subscribe": ["news"] }),
    ));
    let reader = api_as(&server, &reader);
    assert_ids(
        &reader.poll_all("streams=news").await,
        std::slice::from_ref(&news),
    );
    assert_ids(&reader.poll_all("").await, std::slice::from_ref(&news));
    get(&reader, "/api/v1/events?streams=orders")
        .await
        .forbidden("streams=orders");
    get(&reader, "/api/v1/events/stream/orders")
        .await
        .forbidden("SSE orders");
    let (status, streams) = reader.get_json(STREAMS).await;
    assert_eq!(status, 200, "{streams}");
    let names: Vec<&String> = streams["data"].as_object().expect("data").keys().collect();
    assert_eq!(names, ["news"], "{streams}");
    let wildcard = Key::Hs256.sign(&claims(
        "reader",
        json!({ "roles": ["USER"], "subscribe": "ord*" }),
    ));
    let wildcard = api_as(&server, &wildcard);
    get(&wildcard, "/api/v1/events?streams=orders")
        .await
        .events("subscribe:ord*");
    get(&wildcard, "/api/v1/events?streams=news")
        .await
        .forbidden("subscribe:ord* on news");
}

// ---------------------------------------------------------------- rules

#[tokio::test]
async fn rules_restrict_streams_and_hide_them_from_listings() {
    let server = secured_with(|c| {
        c.auth.rules = vec![
            StreamRule {
                streams: "secret.*".into(),
                subscribe: Some(vec!["ADMIN".into()]),
                publish: None,
            },
            StreamRule {
                streams: "audit.*".into(),
                subscribe: None,
                publish: Some(vec!["ADMIN".into()]),
            },
        ];
    })
    .await;
    let publisher = api_as(&server, &token("producer", &["PUBLISHER"]));
    let admin = api_as(&server, &token("root", &["ADMIN"]));
    let user = api_as(&server, &token("alice", &["USER"]));
    let secret = publisher
        .publish_event(event_json("secret.plans", "s", json!({})))
        .await;
    let news = publisher
        .publish_event(event_json("news", "n", json!({})))
        .await;
    post(&publisher, EVENTS, &event_json("audit.log", "a", json!({})))
        .await
        .forbidden("PUBLISHER to audit.log");
    let audit = admin
        .publish_event(event_json("audit.log", "a", json!({})))
        .await;

    for (who, api) in [("USER", &user), ("PUBLISHER", &publisher)] {
        get(api, "/api/v1/events?streams=secret.plans")
            .await
            .forbidden(who);
        get(api, "/api/v1/events/stream/secret.plans")
            .await
            .forbidden(who);
        assert_ids(&api.poll_all("").await, &[news.clone(), audit.clone()]);
        let (_, listed) = api.get_json(STREAMS).await;
        let names: Vec<&String> = listed["data"].as_object().expect("data").keys().collect();
        assert_eq!(names, ["audit.log", "news"], "{who}: {listed}");
    }
    assert_ids(
        &admin.poll_all("").await,
        &[secret.clone(), news.clone(), audit.clone()],
    );
    assert_ids(
        &admin.poll_all("streams=secret.plans").await,
        std::slice::from_ref(&secret),
    );
    let (_, listed) = admin.get_json(STREAMS).await;
    let names: Vec<&String> = listed["data"].as_object().expect("data").keys().collect();
    assert_eq!(
        names,
        ["audit.log", "news", "secret.plans"],
        "admin: {listed}"
    );
    // (A user's open WebSocket lists its own room, so this comes last.)
    let (mut ws, _) = ws_connect(&server, Some(&token("alice", &["USER"]))).await;
    ws_expect(&mut ws, "room:joined").await;
    ws_join_refused(&mut ws, "secret.plans", "forbidden").await;
}

// ---------------------------------------------------------------- anonymous

#[tokio::test]
async fn loopback_without_configuration_is_open_to_anonymous_callers() {
    let server = TestServer::start().await;
    let anonymous = Api::new(&server);
    let event = anonymous
        .publish_event(event_json("dev", "dev.hello", json!({})))
        .await;
    assert_ids(
        &anonymous.poll("streams=dev").await.0,
        std::slice::from_ref(&event),
    );
    let (_, hello) = ws_connect(&server, None).await;
    assert_eq!(hello["payload"]["authenticated"], false, "{hello}");
    // Credentials that are present but wrong are refused even here.
    let req = anonymous
        .http
        .get(anonymous.url(EVENTS))
        .header(AUTHORIZATION, "Bearer nonsense");
    Answer::of(req)
        .await
        .unauthorized("a wrong token in dev mode");
    // Virtual streams stay closed to anonymous readers.
    get(&anonymous, "/api/v1/events?streams=admin")
        .await
        .unauthorized("anonymous admin read");
}

#[tokio::test]
async fn a_configured_key_closes_anonymous_access_unless_switched_on() {
    let server = secured().await;
    let anonymous = Api::new(&server);
    post(&anonymous, EVENTS, &event_json("news", "x", json!({})))
        .await
        .unauthorized("anonymous publish");
    get(&anonymous, EVENTS).await.unauthorized("anonymous poll");
    get(&anonymous, "/api/v1/events/streams")
        .await
        .unauthorized("anonymous stream list");
    let admin = api_as(&server, &token("root", &["ADMIN"]));
    assert_ids(&admin.poll_all("").await, &[]);

    let server = secured_with(|c| c.auth.allow_anonymous = Some(true)).await;
    let anonymous = Api::new(&server);
    let publisher = api_as(&server, &token("producer", &["PUBLISHER"]));
    let public = publisher
        .publish_event(event_json("news", "n", json!({})))
        .await;
    publisher
        .publish_event(event_json("user:alice", "private", json!({})))
        .await;
    assert_ids(&anonymous.poll_all("").await, std::slice::from_ref(&public));
    get(&anonymous, "/api/v1/events?streams=user:alice")
        .await
        .unauthorized("anonymous user stream");
    post(&anonymous, EVENTS, &event_json("news", "x", json!({})))
        .await
        .unauthorized("anonymous publish with allow_anonymous only");

    let server = secured_with(|c| c.auth.anonymous_publish = Some(true)).await;
    let anonymous = Api::new(&server);
    let sent = anonymous
        .publish_event(event_json("news", "x", json!({})))
        .await;
    get(&anonymous, EVENTS)
        .await
        .unauthorized("anonymous poll with anonymous_publish only");
    let admin = api_as(&server, &token("root", &["ADMIN"]));
    assert_ids(&admin.poll_all("").await, std::slice::from_ref(&sent));
}

// ---------------------------------------------------------------- origins

#[tokio::test]
async fn websocket_origins_outside_the_allow_list_are_refused_before_the_upgrade() {
    let server = TestServer::start_with(|c| {
        c.auth.ws_allow_origins = vec!["https://good.example".into()];
    })
    .await;
    let api = Api::new(&server);
    assert_eq!(
        ws_refused(&server, "/ws", Some("https://evil.example")).await,
        403
    );
    ws_handshake(&api, "/ws", Some("https://evil.example"))
        .await
        .forbidden("evil origin");
    let mut req = server.ws_url("/ws").into_client_request().unwrap();
    req.headers_mut()
        .insert("origin", HeaderValue::from_static("https://good.example"));
    let (mut ws, resp) = within("handshake", WAIT, connect_async(req))
        .await
        .expect("good origin");
    assert_eq!(resp.status(), 101);
    ws_expect(&mut ws, "system:connected").await;
    // Clients that send no Origin are not browsers and pass.
    ws_connect(&server, None).await;
}

// ---------------------------------------------------------------- start-up

/// `tidings serve` with these arguments and environment (no other
/// `TIDINGS_…` variables), stderr piped.
fn serve_command(data_dir: &Path, listen: &str, env: &[(&str, &str)]) -> Command {
    let mut cmd = Command::new(binary());
    cmd.args(["serve", "--listen", listen, "--data-dir"])
        .arg(data_dir);
    for (k, _) in std::env::vars() {
        if k.starts_with("TIDINGS_") {
            cmd.env_remove(k);
        }
    }
    cmd.env("TIDINGS_LOG__LEVEL", "info")
        .envs(env.iter().copied());
    cmd.stdout(Stdio::null()).stderr(Stdio::piped());
    cmd
}

#[test]
fn unsafe_configurations_are_refused_at_start_up() {
    let dir = tempfile::tempdir().unwrap();
    // (listen, TIDINGS_AUTH__JWT_SECRET, what the message must name)
    #[rustfmt::skip]
    let table = [
        ("0.0.0.0:0", None, "auth"),
        ("127.0.0.1:0", Some("short"), "32 bytes"),
        ("0.0.0.0:0", Some("short"), "32 bytes"),
    ];
    for (listen, secret, needle) in table {
        let env: Vec<(&str, &str)> = secret
            .map(|s| ("TIDINGS_AUTH__JWT_SECRET", s))
            .into_iter()
            .collect();
        let out = serve_command(&dir.path().join("data"), listen, &env)
            .output()
            .expect("run tidings");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{listen} {env:?}: {stderr}");
        assert!(
            stderr.contains(needle),
            "{listen} {env:?} should mention {needle:?}: {stderr}"
        );
    }
}

#[tokio::test]
async fn a_public_listener_starts_when_anonymous_access_is_decided() {
    let dir = tempfile::tempdir().unwrap();
    let env = [("TIDINGS_AUTH__ALLOW_ANONYMOUS", "false")];
    let mut child = serve_command(dir.path(), "0.0.0.0:0", &env)
        .spawn()
        .expect("spawn tidings");
    let stderr = child.stderr.take().expect("stderr");
    let (tx, log) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut seen = Vec::new();
    let port: u16 = loop {
        let Ok(line) = log.recv_timeout(Duration::from_secs(20)) else {
            let _ = child.kill();
            panic!("tidings did not report its address:\n{}", seen.join("\n"));
        };
        if let Some(addr) = line
            .split("addr=")
            .nth(1)
            .and_then(|r| r.split_whitespace().next())
        {
            break addr.rsplit(':').next().unwrap().parse().expect("port");
        }
        seen.push(line);
    };
    let addr: std::net::SocketAddr = ([127, 0, 0, 1], port).into();
    let server = ServerProcess {
        child,
        addr,
        base: format!("http://{addr}"),
        log,
        startup: seen,
    };
    let http = reqwest::Client::new();
    let ready = Answer::of(http.get(server.url("/health/ready"))).await;
    assert_eq!(ready.status, 200, "{ready:?}");
    Answer::of(http.get(server.url(EVENTS)))
        .await
        .unauthorized("anonymous poll on the public listener");
    let status = tokio::task::spawn_blocking(move || server.terminate(Duration::from_secs(15)))
        .await
        .unwrap();
    assert!(status.success(), "exit status {status:?}");
}
