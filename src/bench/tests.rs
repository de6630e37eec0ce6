//! End-to-end checks of the scenarios against an in-process server on a
//! random port: short runs that must come out clean.

use super::*;

const SECRET: &str = "bench-test-secret-0123456789abcdef";

/// Starts the real app on 127.0.0.1:0 with `auth`; dropping the sender stops it.
async fn server_with(
    auth: crate::config::AuthConfig,
) -> (String, tokio::sync::oneshot::Sender<()>, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = crate::config::Config {
        data_dir: dir.path().to_path_buf(),
        auth,
        ..Default::default()
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("address"));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(crate::app::run(config, listener, async move {
        let _ = stopped.await;
    }));
    (url, stop, dir)
}

/// The zero-configuration server: anonymous publishing and reading on loopback.
async fn server() -> (String, tokio::sync::oneshot::Sender<()>, tempfile::TempDir) {
    server_with(Default::default()).await
}

fn publish_args(batch: usize) -> PublishArgs {
    PublishArgs {
        target: Target::default(),
        connections: 2,
        duration: 1,
        batch,
        payload_bytes: 20,
        stream: "bench".into(),
    }
}

fn fanout_args(transport: Transport) -> FanoutArgs {
    FanoutArgs {
        target: Target::default(),
        subscribers: 5,
        transport,
        rate: 50,
        duration: 1,
        stream: format!("fan-{}", transport.name()),
        publishers: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scenarios_run_clean_against_a_real_server() {
    let (url, _stop, _dir) = server().await;
    for batch in [1, 10] {
        let r = publish::run(&publish_args(batch), &url, None, None)
            .await
            .expect("publish");
        assert_eq!(r.errors, 0, "{:?}", r.first_error);
        assert!(r.events > 0 && r.events % batch as u64 == 0, "{r:?}");
        assert_eq!(r.ack_latency.samples, r.requests);
    }
    for transport in [Transport::Ws, Transport::Sse] {
        let r = fanout::run(&fanout_args(transport), &url, &Default::default(), None)
            .await
            .expect("fanout");
        assert!(r.published > 0, "{r:?}");
        assert_eq!(r.expected, r.published * 5);
        assert_eq!((r.received, r.lost), (r.expected, 0), "{r:?}");
        assert_eq!(r.duplicates + r.out_of_order + r.gaps + r.unparsed, 0);
        assert_eq!(r.latency.samples, r.received);
    }
}

#[tokio::test]
async fn an_absent_server_is_a_clear_error() {
    let args = fanout_args(Transport::Ws);
    let err = fanout::run(&args, "http://127.0.0.1:1", &Default::default(), None)
        .await
        .expect_err("nothing listens on port 1");
    assert!(
        format!("{err:#}").contains("cannot reach a server"),
        "{err:#}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authenticated_scenarios_run_clean() {
    let (url, _stop, _dir) = server_with(crate::config::AuthConfig {
        jwt_secret: Some(SECRET.into()),
        login_attempts_per_minute: 1000,
        ..Default::default()
    })
    .await;
    // Anonymous publishing is off once a JWT key is configured.
    let r = publish::run(&publish_args(1), &url, None, None)
        .await
        .expect("publish");
    assert!(r.events == 0 && r.errors > 0, "{r:?}");
    let jwt = auth::AuthArgs {
        jwt_secret: Some(SECRET.into()),
        ..Default::default()
    };
    let with_api_token = auth::AuthArgs {
        api_token: true,
        ..jwt.clone()
    };
    let endpoint = http::Endpoint::resolve(&url).await.expect("endpoint");
    for args in [&jwt, &with_api_token] {
        let creds = args.credentials(&endpoint).await.expect("credentials");
        let token = creds.publish.as_deref().expect("a publish token");
        assert_eq!(token.starts_with("tdg_"), args.api_token, "{token}");
        let r = publish::run(&publish_args(10), &url, Some(token), None)
            .await
            .expect("publish");
        assert_eq!(r.errors, 0, "{:?}", r.first_error);
        assert!(r.events > 0, "{r:?}");
        for transport in [Transport::Ws, Transport::Sse] {
            let r = fanout::run(&fanout_args(transport), &url, &creds, None)
                .await
                .expect("fanout");
            assert!(r.published > 0, "{r:?}");
            assert_eq!(
                (r.received, r.lost, r.publish_errors),
                (r.expected, 0, 0),
                "{r:?}"
            );
        }
    }
    let login = LoginArgs {
        target: Target::default(),
        concurrency: 2,
        count: 4,
    };
    let admin = jwt.admin_token().expect("jwt");
    let r = login::run(&login, &url, admin.as_deref(), None)
        .await
        .expect("login");
    assert_eq!((r.logins, r.errors), (4, 0), "{:?}", r.first_error);
    assert_eq!(r.latency.samples, 4);
    let err = login::run(&login, &url, None, None)
        .await
        .expect_err("no admin credential");
    assert!(format!("{err:#}").contains("--jwt-secret"), "{err:#}");
}

#[tokio::test]
async fn the_publish_limit_shows_as_429s() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut config = crate::config::Config {
        data_dir: dir.path().to_path_buf(),
        ..Default::default()
    };
    config.limits.publish_per_second = 5;
    config.limits.publish_burst = 5;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("address"));
    let (_stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(crate::app::run(config, listener, async move {
        let _ = stopped.await;
    }));
    let r = publish::run(&publish_args(1), &url, None, None)
        .await
        .expect("publish");
    assert!(r.rate_limited > 0 && r.rate_limited == r.errors, "{r:?}");
    assert!((5..=15).contains(&r.events), "{r:?}");
}
