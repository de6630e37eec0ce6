//! Local users, login sessions and API tokens against a real server: the
//! one-time setup, login (bearer and cookie, CSRF), logout, the login rate
//! limits, password changes and removals ending sessions, API tokens (stream
//! patterns, expiry, revocation), the admin-only routes, and the JSON errors
//! of bad input. Admins are made in the test as HS256 JWTs
//! (`auth.jwt_secret`); anonymous callers may do nothing.

mod common;

use std::net::IpAddr;

use std::time::Duration;

use common::client::{EVENTS, unix_now};
use common::process::ServerProcess;
use common::{TestServer, assert_error, wait_until};
use reqwest::Method;
use reqwest::header::HeaderMap;
use serde_json::{Value, json};

const SECRET: &str = common::TEST_JWT_SECRET;
const USERS: &str = "/api/v1/admin/users";
const TOKENS: &str = "/api/v1/admin/tokens";
const LOGIN: &str = "/api/v1/auth/login";
const LOGOUT: &str = "/api/v1/auth/logout";
const ME: &str = "/api/v1/auth/me";
const SETUP: &str = "/api/v1/auth/setup";
/// `auth.session_ttl_secs` in these tests.
const TTL: u64 = 600;

/// A server that accepts JWTs signed with [`SECRET`] and nothing anonymous.
async fn start(tweak: impl FnOnce(&mut tidings::config::Config)) -> TestServer {
    TestServer::start_with(|c| {
        lock_down(c);
        tweak(c);
    })
    .await
}

fn lock_down(c: &mut tidings::config::Config) {
    c.auth.jwt_secret = Some(SECRET.into());
    c.auth.allow_anonymous = Some(false);
    c.auth.anonymous_publish = Some(false);
    c.auth.session_ttl_secs = TTL;
}

/// An HS256 JWT for `sub` with `roles`, valid for an hour.
fn jwt(sub: &str, roles: &[&str]) -> String {
    common::hs256_token(sub, roles)
}

/// How a request proves who it is.
#[derive(Clone, Copy)]
enum Cred<'a> {
    Nobody,
    Bearer(&'a str),
    /// The session cookie, with the CSRF header when given.
    Cookie(&'a str, Option<&'a str>),
}

enum Body {
    Empty,
    Json(Value),
    Raw(&'static str),
}

/// An answer: status, headers, JSON body (or null).
struct Answer {
    status: u16,
    headers: HeaderMap,
    body: Value,
}

impl Answer {
    fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }

    fn error(&self, status: u16, code: &str) {
        assert_error(self.status, &self.body, status, code);
    }
}

struct Http {
    http: reqwest::Client,
    base: String,
}

impl Http {
    fn new(server: &TestServer) -> Http {
        Http {
            http: reqwest::Client::new(),
            base: server.base.clone(),
        }
    }

    /// A client whose connections come from `ip` (any 127.x works on loopback).
    fn from_address(server: &TestServer, ip: &str) -> Http {
        let ip: IpAddr = ip.parse().expect("ip");
        Http {
            http: reqwest::Client::builder()
                .local_address(ip)
                .build()
                .expect("client"),
            base: server.base.clone(),
        }
    }

    async fn call(&self, method: Method, path: &str, cred: Cred<'_>, body: Body) -> Answer {
        let mut req = self.http.request(method, format!("{}{path}", self.base));
        match cred {
            Cred::Nobody => {}
            Cred::Bearer(t) => req = req.bearer_auth(t),
            Cred::Cookie(t, csrf) => {
                req = req.header("cookie", format!("other=1; tidings_session={t}"));
                if let Some(csrf) = csrf {
                    req = req.header("x-csrf-token", csrf);
                }
            }
        }
        req = match body {
            Body::Empty => req,
            Body::Json(v) => req.json(&v),
            Body::Raw(s) => req.header("content-type", "application/json").body(s),
        };
        let r = req.send().await.expect("request");
        let status = r.status().as_u16();
        let headers = r.headers().clone();
        let body = r.json().await.unwrap_or(Value::Null);
        Answer {
            status,
            headers,
            body,
        }
    }

    async fn get(&self, path: &str, cred: Cred<'_>) -> Answer {
        self.call(Method::GET, path, cred, Body::Empty).await
    }

    async fn post(&self, path: &str, cred: Cred<'_>, body: Value) -> Answer {
        self.call(Method::POST, path, cred, Body::Json(body)).await
    }

    async fn delete(&self, path: &str, cred: Cred<'_>) -> Answer {
        self.call(Method::DELETE, path, cred, Body::Empty).await
    }

    async fn login(&self, name: &str, password: &str) -> Answer {
        self.post(
            LOGIN,
            Cred::Nobody,
            json!({"username": name, "password": password}),
        )
        .await
    }

    /// Logs in, requires 200, returns (token, csrf).
    async fn session(&self, name: &str, password: &str) -> (String, String) {
        let a = self.login(name, password).await;
        assert_eq!(a.status, 200, "login {name}: {}", a.body);
        (str_of(&a.body["token"]), str_of(&a.body["csrf_token"]))
    }

    /// Creates a user as `admin`, requires 201.
    async fn add_user(&self, admin: &str, name: &str, password: &str, role: &str) -> Value {
        let a = self
            .post(
                USERS,
                Cred::Bearer(admin),
                json!({"name": name, "password": password, "role": role}),
            )
            .await;
        assert_eq!(a.status, 201, "create {name}: {}", a.body);
        a.body
    }

    /// Creates an API token as `admin`, requires 201, returns the answer.
    async fn add_token(&self, admin: &str, spec: Value) -> Value {
        let a = self.post(TOKENS, Cred::Bearer(admin), spec.clone()).await;
        assert_eq!(a.status, 201, "create token {spec}: {}", a.body);
        a.body
    }

    async fn publish(&self, cred: Cred<'_>, stream: &str) -> Answer {
        self.post(EVENTS, cred, json!({"type": "t", "stream_id": stream}))
            .await
    }
}

async fn patch_user(http: &Http, admin: &str, name: &str, body: Value) -> Answer {
    http.call(
        Method::PATCH,
        &format!("/api/v1/admin/users/{name}"),
        Cred::Bearer(admin),
        Body::Json(body),
    )
    .await
}

fn str_of(v: &Value) -> String {
    v.as_str()
        .unwrap_or_else(|| panic!("not a string: {v}"))
        .to_owned()
}

#[tokio::test]
async fn setup_token_creates_the_first_admin_once() {
    // The real binary, so its start-up log is its own stderr.
    let dir = tempfile::tempdir().expect("temp dir");
    let server = ServerProcess::spawn(
        dir.path(),
        &[],
        &[
            ("TIDINGS_AUTH__JWT_SECRET", SECRET),
            ("TIDINGS_AUTH__ALLOW_ANONYMOUS", "false"),
        ],
    );
    let http = Http {
        http: reqwest::Client::new(),
        base: server.base.clone(),
    };
    let text = server.startup.join("\n");
    let line = text
        .lines()
        .find(|l| l.contains("setup_token="))
        .unwrap_or_else(|| panic!("no setup token logged: {text}"));
    assert!(
        line.contains("WARN") && line.contains(SETUP) && line.contains("tidings user add"),
        "the warning says how to use it: {line}"
    );
    let token = line
        .split("setup_token=")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .expect("token value")
        .to_owned();

    let admin = json!({"token": token, "username": "root", "password": "root-password"});
    let mut wrong = admin.clone();
    wrong["token"] = json!("not-the-token");
    http.post(SETUP, Cred::Nobody, wrong)
        .await
        .error(401, "unauthorized");
    let mut short = admin.clone();
    short["password"] = json!("short");
    http.post(SETUP, Cred::Nobody, short)
        .await
        .error(400, "invalid_password");

    let done = http.post(SETUP, Cred::Nobody, admin.clone()).await;
    assert_eq!(done.status, 201, "{}", done.body);
    assert_eq!(
        (&done.body["user"]["name"], &done.body["user"]["role"]),
        (&json!("root"), &json!("ADMIN"))
    );
    http.post(SETUP, Cred::Nobody, admin.clone())
        .await
        .error(409, "conflict");

    let (session, _) = http.session("root", "root-password").await;
    let users = http.get(USERS, Cred::Bearer(&session)).await;
    assert_eq!(users.status, 200, "{}", users.body);
    assert_eq!(users.body["users"][0]["name"], "root");
    assert!(
        users.body["users"][0].get("hash").is_none(),
        "never the hash: {}",
        users.body
    );
}

#[tokio::test]
async fn login_session_works_as_bearer_and_as_cookie_with_csrf() {
    let server = start(|_| {}).await;
    let http = Http::new(&server);
    let admin = jwt("root", &["ADMIN"]);
    let created = http.add_user(&admin, "ops", "ops-password", "admin").await;
    assert_eq!(
        (&created["name"], &created["role"]),
        (&json!("ops"), &json!("ADMIN"))
    );

    let login = http.login("ops", "ops-password").await;
    assert_eq!(login.status, 200, "{}", login.body);
    let b = &login.body;
    let token = str_of(&b["token"]);
    let csrf = str_of(&b["csrf_token"]);
    assert_eq!(b["token_type"], "Bearer");
    assert_eq!(b["expires_in"], TTL);
    let expires_at = b["expires_at"].as_i64().expect("expires_at");
    assert!((expires_at - unix_now() - TTL as i64).abs() <= 5, "{b}");
    assert_eq!(b["user"], json!({"name": "ops", "role": "ADMIN"}));
    assert!(!csrf.is_empty());
    assert_eq!(
        login.header("set-cookie"),
        format!("tidings_session={token}; HttpOnly; SameSite=Strict; Path=/; Max-Age={TTL}")
    );

    let me = http.get(ME, Cred::Bearer(&token)).await;
    assert_eq!(
        me.body,
        json!({"subject": "ops", "roles": ["ADMIN"], "via": "session", "csrf_token": csrf})
    );
    let me = http.get(ME, Cred::Cookie(&token, None)).await;
    assert_eq!(
        me.body,
        json!({"subject": "ops", "roles": ["ADMIN"], "via": "cookie", "csrf_token": csrf})
    );
    let me = http.get(ME, Cred::Nobody).await;
    assert_eq!(
        me.body,
        json!({"subject": null, "roles": [], "via": "anonymous"})
    );

    // Writes with the cookie must echo the CSRF token; bearer writes need not.
    http.publish(Cred::Cookie(&token, None), "orders")
        .await
        .error(403, "forbidden");
    http.publish(Cred::Cookie(&token, Some("wrong")), "orders")
        .await
        .error(403, "forbidden");
    let ok = http
        .publish(Cred::Cookie(&token, Some(&csrf)), "orders")
        .await;
    assert_eq!(ok.status, 201, "{}", ok.body);
    let ok = http.publish(Cred::Bearer(&token), "orders").await;
    assert_eq!(ok.status, 201, "{}", ok.body);

    // Logout ends the session (bearer or cookie) and clears the cookie.
    let out = http.post(LOGOUT, Cred::Bearer(&token), json!({})).await;
    assert_eq!((out.status, &out.body), (200, &json!({"logged_out": true})));
    assert!(
        out.header("set-cookie").starts_with("tidings_session=;")
            && out.header("set-cookie").contains("Max-Age=0"),
        "{}",
        out.header("set-cookie")
    );
    http.get(ME, Cred::Bearer(&token))
        .await
        .error(401, "unauthorized");
    http.get(ME, Cred::Cookie(&token, None))
        .await
        .error(401, "unauthorized");

    let (second, _) = http.session("ops", "ops-password").await;
    let out = http
        .post(LOGOUT, Cred::Cookie(&second, None), json!({}))
        .await;
    assert_eq!(out.status, 200, "{}", out.body);
    http.get(ME, Cred::Bearer(&second))
        .await
        .error(401, "unauthorized");
    // Without a session, logging out is still fine.
    let out = http.post(LOGOUT, Cred::Nobody, json!({})).await;
    assert_eq!((out.status, &out.body), (200, &json!({"logged_out": true})));
    assert!(out.header("set-cookie").contains("Max-Age=0"));
}

#[tokio::test]
async fn secure_cookie_when_configured() {
    let server = start(|c| c.auth.cookie_secure = true).await;
    let http = Http::new(&server);
    http.add_user(&jwt("root", &["ADMIN"]), "ann", "ann-password", "USER")
        .await;
    let login = http.login("ann", "ann-password").await;
    assert!(
        login.header("set-cookie").ends_with("; Secure"),
        "{}",
        login.header("set-cookie")
    );
}

#[tokio::test]
async fn wrong_password_and_unknown_user_get_the_same_401() {
    let server = start(|_| {}).await;
    let http = Http::new(&server);
    http.add_user(&jwt("root", &["ADMIN"]), "alice", "alice-password", "USER")
        .await;
    let wrong = http.login("alice", "not-her-password").await;
    let unknown = http.login("mallory", "alice-password").await;
    let invalid = http.login("not a name", "alice-password").await;
    for a in [&wrong, &unknown, &invalid] {
        a.error(401, "unauthorized");
        assert_eq!(a.body, wrong.body, "one answer for every failure");
        assert!(a.header("www-authenticate").starts_with("Bearer"));
        assert!(a.header("set-cookie").is_empty());
    }
    let ok = http.login("alice", "alice-password").await;
    assert_eq!(ok.status, 200, "{}", ok.body);
}

#[tokio::test]
async fn login_attempts_are_limited_per_address_and_per_name() {
    let server = start(|c| c.auth.login_attempts_per_minute = 3).await;
    let admin = jwt("root", &["ADMIN"]);
    let a = Http::from_address(&server, "127.0.0.1");
    let b = Http::from_address(&server, "127.0.0.2");
    a.add_user(&admin, "alice", "alice-password", "USER").await;
    a.add_user(&admin, "bob", "bob-password", "USER").await;
    for _ in 0..3 {
        a.login("alice", "guess-guess")
            .await
            .error(401, "unauthorized");
    }
    let limited = a.login("alice", "alice-password").await;
    limited.error(429, "rate_limited");
    let retry: u64 = limited.header("retry-after").parse().expect("Retry-After");
    assert!((1..=60).contains(&retry), "retry after {retry}");
    // The name is limited from any address; the address for any name.
    b.login("alice", "alice-password")
        .await
        .error(429, "rate_limited");
    a.login("bob", "bob-password")
        .await
        .error(429, "rate_limited");
    // Another address, another name: neither limit applies.
    let ok = b.login("bob", "bob-password").await;
    assert_eq!(ok.status, 200, "{}", ok.body);
}

#[tokio::test]
async fn password_change_and_removal_end_sessions() {
    let server = start(|c| c.auth.login_attempts_per_minute = 1000).await;
    let http = Http::new(&server);
    let admin = jwt("root", &["ADMIN"]);
    let created = http
        .add_user(&admin, "alice", "first-password", "USER")
        .await;
    let (old, _) = http.session("alice", "first-password").await;
    assert_eq!(http.get(ME, Cred::Bearer(&old)).await.status, 200);

    let changed = http
        .call(
            Method::PATCH,
            "/api/v1/admin/users/alice",
            Cred::Bearer(&admin),
            Body::Json(json!({"password": "second-password"})),
        )
        .await;
    assert_eq!(changed.status, 200, "{}", changed.body);
    assert_eq!(changed.body["name"], "alice");
    assert_eq!(changed.body["created"], created["created"]);
    assert!(changed.body["updated"].as_i64() >= created["updated"].as_i64());
    http.get(ME, Cred::Bearer(&old))
        .await
        .error(401, "unauthorized");
    http.login("alice", "first-password")
        .await
        .error(401, "unauthorized");
    // Sessions issued in the second of the change count as "before" it
    // (sessions.rs keeps whole seconds), so a fresh one works from the next.
    let client = &http;
    wait_until(
        "a new session works",
        Duration::from_secs(5),
        || async move {
            let http = client;
            let (fresh, _) = http.session("alice", "second-password").await;
            http.get(ME, Cred::Bearer(&fresh)).await.status == 200
        },
    )
    .await;

    http.add_user(&admin, "bob", "bob-password", "PUBLISHER")
        .await;
    let (bob, _) = http.session("bob", "bob-password").await;
    assert_eq!(http.publish(Cred::Bearer(&bob), "news").await.status, 201);
    let removed = http
        .delete("/api/v1/admin/users/bob", Cred::Bearer(&admin))
        .await;
    assert_eq!(
        (removed.status, &removed.body),
        (200, &json!({"deleted": "bob"}))
    );
    http.publish(Cred::Bearer(&bob), "news")
        .await
        .error(401, "unauthorized");
    http.login("bob", "bob-password")
        .await
        .error(401, "unauthorized");
    http.delete("/api/v1/admin/users/bob", Cred::Bearer(&admin))
        .await
        .error(404, "not_found");
    let users = http.get(USERS, Cred::Bearer(&admin)).await;
    let names: Vec<&Value> = users.body["users"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| &u["name"])
        .collect();
    assert_eq!(names, [&json!("alice")]);
}

#[tokio::test]
async fn api_tokens_publish_until_revoked() {
    let server = start(|_| {}).await;
    let http = Http::new(&server);
    let admin = jwt("root", &["ADMIN"]);
    let created = http
        .add_token(&admin, json!({"name": "billing", "role": "PUBLISHER"}))
        .await;
    let id = str_of(&created["id"]);
    let token = str_of(&created["token"]);
    assert!(
        id.len() == 12 && id.bytes().all(|b| b.is_ascii_alphanumeric()),
        "{id}"
    );
    assert!(token.starts_with(&format!("tdg_{id}_")), "{token}");
    assert_eq!(
        (
            &created["name"],
            &created["role"],
            &created["streams"],
            &created["expires_at"]
        ),
        (
            &json!("billing"),
            &json!("PUBLISHER"),
            &Value::Null,
            &Value::Null
        )
    );

    let ok = http.publish(Cred::Bearer(&token), "invoices").await;
    assert_eq!(ok.status, 201, "{}", ok.body);
    let me = http.get(ME, Cred::Bearer(&token)).await;
    assert_eq!(
        me.body,
        json!({"subject": "token:billing", "roles": ["PUBLISHER"], "via": "api_token"})
    );

    let list = http.get(TOKENS, Cred::Bearer(&admin)).await;
    assert_eq!(list.status, 200, "{}", list.body);
    let listed = &list.body["tokens"][0];
    assert_eq!(listed["id"], json!(id));
    assert_eq!(listed["name"], "billing");
    assert!(
        !list.body.to_string().contains(&token[token.len() - 20..])
            && listed.get("token").is_none()
            && listed.get("sha256").is_none(),
        "no secret in the list: {}",
        list.body
    );

    // A right id with a wrong secret, and malformed tokens, are refused.
    let forged = format!("tdg_{id}_{}", "A".repeat(43));
    for bad in [forged.as_str(), "tdg_", "tdg_short_x", "tdg_ééééééééééé_x"] {
        http.publish(Cred::Bearer(bad), "invoices")
            .await
            .error(401, "unauthorized");
    }

    let revoked = http
        .delete(&format!("{TOKENS}/{id}"), Cred::Bearer(&admin))
        .await;
    assert_eq!(
        (revoked.status, &revoked.body),
        (200, &json!({"revoked": id}))
    );
    let after = http.publish(Cred::Bearer(&token), "invoices").await;
    after.error(401, "unauthorized");
    assert!(
        after.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("revoked"),
        "{}",
        after.body
    );
    http.delete(&format!("{TOKENS}/{id}"), Cred::Bearer(&admin))
        .await
        .error(404, "not_found");
    let list = http.get(TOKENS, Cred::Bearer(&admin)).await;
    assert_eq!(list.body, json!({"tokens": []}));
}

#[tokio::test]
async fn token_stream_patterns_limit_publishing() {
    let server = start(|_| {}).await;
    let http = Http::new(&server);
    let admin = jwt("root", &["ADMIN"]);
    let created = http
        .add_token(
            &admin,
            json!({"name": "shop", "role": "PUBLISHER", "streams": ["orders.*"]}),
        )
        .await;
    assert_eq!(created["streams"], json!(["orders.*"]));
    let token = str_of(&created["token"]);
    let ok = http.publish(Cred::Bearer(&token), "orders.eu").await;
    assert_eq!(ok.status, 201, "{}", ok.body);
    for other in ["other", "orders"] {
        http.publish(Cred::Bearer(&token), other)
            .await
            .error(403, "forbidden");
    }
}

#[tokio::test]
async fn expired_tokens_are_refused() {
    let server = start(|_| {}).await;
    let http = Http::new(&server);
    let admin = jwt("root", &["ADMIN"]);
    let created = http
        .add_token(
            &admin,
            json!({"name": "brief", "role": "PUBLISHER", "expires_in_secs": 1}),
        )
        .await;
    assert_eq!(
        created["expires_at"].as_i64(),
        created["created"].as_i64().map(|c| c + 1)
    );
    let token = str_of(&created["token"]);
    let (client, bearer) = (&http, token.as_str());
    wait_until("the token expires", Duration::from_secs(5), || async move {
        client.publish(Cred::Bearer(bearer), "news").await.status == 401
    })
    .await;
    let refused = http.publish(Cred::Bearer(&token), "news").await;
    refused.error(401, "unauthorized");
    assert!(
        refused.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("expired"),
        "{}",
        refused.body
    );
}

#[tokio::test]
async fn admin_routes_need_an_admin() {
    let server = start(|_| {}).await;
    let http = Http::new(&server);
    let admin = jwt("root", &["ADMIN"]);
    http.add_user(&admin, "alice", "alice-password", "USER")
        .await;
    let (alice, _) = http.session("alice", "alice-password").await;
    let publisher = jwt("svc", &["PUBLISHER"]);
    let routes = [
        (Method::GET, USERS, Body::Empty),
        (Method::POST, USERS, Body::Raw("{not json")),
        (Method::PATCH, "/api/v1/admin/users/alice", Body::Raw("{}")),
        (Method::DELETE, "/api/v1/admin/users/alice", Body::Empty),
        (Method::GET, TOKENS, Body::Empty),
        (Method::POST, TOKENS, Body::Raw("{}")),
        (
            Method::DELETE,
            "/api/v1/admin/tokens/abcdefghijkl",
            Body::Empty,
        ),
    ];
    for (method, path, body) in routes {
        let raw = match &body {
            Body::Raw(s) => Some(*s),
            _ => None,
        };
        let body = || raw.map_or(Body::Empty, Body::Raw);
        for (cred, status, code) in [
            (Cred::Nobody, 401, "unauthorized"),
            (Cred::Bearer(&alice), 403, "forbidden"),
            (Cred::Bearer(&publisher), 403, "forbidden"),
        ] {
            let a = http.call(method.clone(), path, cred, body()).await;
            assert_eq!(a.status, status, "{method} {path}: {}", a.body);
            a.error(status, code);
        }
    }
    assert_eq!(
        http.get(USERS, Cred::Bearer(&admin)).await.body["users"][0]["name"],
        "alice",
        "nothing was removed"
    );
}

#[tokio::test]
async fn bad_account_input_gets_json_errors() {
    let server = start(|_| {}).await;
    let http = Http::new(&server);
    let admin = jwt("root", &["ADMIN"]);
    http.add_user(&admin, "alice", "alice-password", "USER")
        .await;
    let user = |name: &str, password: &str, role: &str| {
        Body::Json(json!({"name": name, "password": password, "role": role}))
    };
    let cases = [
        (USERS, user("bob", "short", "USER"), 400, "invalid_password"),
        (
            USERS,
            user("bob", &"x".repeat(1025), "USER"),
            400,
            "invalid_password",
        ),
        (
            USERS,
            user("has space", "long-enough", "USER"),
            400,
            "invalid_name",
        ),
        (USERS, user("", "long-enough", "USER"), 400, "invalid_name"),
        (
            USERS,
            user(&"n".repeat(65), "long-enough", "USER"),
            400,
            "invalid_name",
        ),
        (
            USERS,
            user("bob", "long-enough", "ROOT"),
            400,
            "invalid_role",
        ),
        (USERS, user("alice", "long-enough", "USER"), 409, "conflict"),
        (USERS, Body::Raw("{\"name\": "), 400, "invalid_json"),
        (USERS, Body::Raw("[1, 2]"), 400, "invalid_json"),
        (
            USERS,
            Body::Json(
                json!({"name": "bob", "password": "long-enough", "role": "USER", "admin": true}),
            ),
            400,
            "invalid_json",
        ),
        (
            TOKENS,
            Body::Json(json!({"name": "t", "role": "PUBLISHER", "streams": ["a b"]})),
            400,
            "invalid_streams",
        ),
        (
            TOKENS,
            Body::Json(json!({"name": "t", "role": "PUBLISHER", "expires_in_secs": 0})),
            400,
            "invalid_expiry",
        ),
        (
            TOKENS,
            Body::Json(json!({"name": "t/x", "role": "PUBLISHER"})),
            400,
            "invalid_name",
        ),
        (
            TOKENS,
            Body::Json(json!({"name": "t", "role": "nobody"})),
            400,
            "invalid_role",
        ),
    ];
    for (path, body, status, code) in cases {
        let a = http
            .call(Method::POST, path, Cred::Bearer(&admin), body)
            .await;
        a.error(status, code);
    }
    patch_user(&http, &admin, "nobody", json!({"password": "long-enough"}))
        .await
        .error(404, "not_found");
    patch_user(&http, &admin, "alice", json!({"password": "short"}))
        .await
        .error(400, "invalid_password");
    http.call(
        Method::PATCH,
        "/api/v1/admin/users/alice",
        Cred::Bearer(&admin),
        Body::Raw("nope"),
    )
    .await
    .error(400, "invalid_json");
    patch_user(&http, &admin, "%FF", json!({"password": "long-enough"}))
        .await
        .error(400, "invalid_path");
    http.delete(&format!("{TOKENS}/nope"), Cred::Bearer(&admin))
        .await
        .error(404, "not_found");

    // Login and setup bodies are checked too.
    http.call(
        Method::POST,
        LOGIN,
        Cred::Nobody,
        Body::Raw("{\"username\":"),
    )
    .await
    .error(400, "invalid_json");
    http.post(LOGIN, Cred::Nobody, json!({"username": "alice"}))
        .await
        .error(400, "invalid_json");
    // Users exist, so setup is over whatever token is sent.
    http.post(
        SETUP,
        Cred::Nobody,
        json!({"token": "x", "username": "eve", "password": "long-enough"}),
    )
    .await
    .error(409, "conflict");
    // Still exactly one user.
    let users = http.get(USERS, Cred::Bearer(&admin)).await;
    assert_eq!(users.body["users"].as_array().map(Vec::len), Some(1));
}

#[tokio::test]
async fn users_and_tokens_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let admin = jwt("root", &["ADMIN"]);
    let token = {
        let server = TestServer::start_in(dir.path().to_path_buf(), lock_down).await;
        let http = Http::new(&server);
        http.add_user(&admin, "alice", "alice-password", "PUBLISHER")
            .await;
        let created = http
            .add_token(&admin, json!({"name": "svc", "role": "PUBLISHER"}))
            .await;
        server.stop().await;
        str_of(&created["token"])
    };
    let server = TestServer::start_in(dir.path().to_path_buf(), lock_down).await;
    let http = Http::new(&server);
    let (session, _) = http.session("alice", "alice-password").await;
    assert_eq!(http.publish(Cred::Bearer(&session), "s").await.status, 201);
    assert_eq!(http.publish(Cred::Bearer(&token), "s").await.status, 201);
    http.post(
        SETUP,
        Cred::Nobody,
        json!({"token": "x", "username": "eve", "password": "long-enough"}),
    )
    .await
    .error(409, "conflict");
    server.stop().await;
}
