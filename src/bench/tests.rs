//! End-to-end checks of the scenarios against an in-process server on a
//! random port: short runs that must come out clean.

use super::*;

const SECRET: &str = "bench-test-secret-0123456789abcdef";

/// Starts the real app on 127.0.0.1:0 with `auth`; dropping the sender stops it.
async fn server_with(
    auth: crate::config::AuthConfig,
) -> (String, tokio::sync::oneshot::Sender<()>, tempfile::TempDir) {
    server_configured(crate::config::Config {
        auth,
        ..Default::default()
    })
    .await
}

/// Starts the real app on 127.0.0.1:0 with `config` and a temporary data
/// directory; dropping the sender stops it.
async fn server_configured(
    config: crate::config::Config,
) -> (String, tokio::sync::oneshot::Sender<()>, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = crate::config::Config {
        data_dir: dir.path().to_path_buf(),
        ..config
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
        publish_url: None,
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
        let r = fanout::run(&fanout_args(transport), &url, &Default::default(), &[])
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
    let err = fanout::run(&args, "http://127.0.0.1:1", &Default::default(), &[])
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
            let r = fanout::run(&fanout_args(transport), &url, &creds, &[])
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

/// `tidings bench …` as the command line gives it.
fn parse(line: &str) -> Result<Scenario, String> {
    #[derive(Debug, clap::Parser)]
    struct Cli {
        #[command(subcommand)]
        scenario: Scenario,
    }
    use clap::Parser;
    Cli::try_parse_from(std::iter::once("bench").chain(line.split_whitespace()))
        .map(|c| c.scenario)
        .map_err(|e| e.to_string())
}

#[test]
fn federation_and_publish_url_flags() {
    match parse(
        "federation --spawn --redis-url redis://127.0.0.1:6390 --subscribers 100 --transport sse --rate 100",
    ) {
        Ok(Scenario::Federation(a)) => {
            assert!(a.fanout.target.spawn);
            assert_eq!(a.redis_url.as_deref(), Some("redis://127.0.0.1:6390"));
            assert_eq!((a.fanout.subscribers, a.fanout.rate), (100, 100));
            assert_eq!(a.fanout.transport, Transport::Sse);
            assert_eq!(Job::Federation(a).name(), "federation 100 sse @100/s");
        }
        other => panic!("{other:?}"),
    }
    match parse("federation --url http://127.0.0.1:8081 --publish-url http://127.0.0.1:8080") {
        Ok(Scenario::Federation(a)) => {
            assert_eq!(a.fanout.target.url, "http://127.0.0.1:8081");
            assert_eq!(
                a.fanout.publish_url.as_deref(),
                Some("http://127.0.0.1:8080")
            );
            assert_eq!(a.redis_url, None);
        }
        other => panic!("{other:?}"),
    }
    match parse("fanout --publish-url http://127.0.0.1:8080") {
        Ok(Scenario::Fanout(a)) => {
            assert_eq!(a.publish_url.as_deref(), Some("http://127.0.0.1:8080"));
            assert_eq!(Job::Fanout(a).name(), "fanout 1000 ws @1000/s");
        }
        other => panic!("{other:?}"),
    }
    for (line, why) in [
        ("federation --spawn", "--redis-url"),
        ("federation --redis-url redis://127.0.0.1:6390", "--spawn"),
        (
            "federation --spawn --redis-url redis://r --publish-url http://a:1",
            "cannot be used",
        ),
        (
            "fanout --spawn --publish-url http://127.0.0.1:8080",
            "cannot be used",
        ),
    ] {
        let err = parse(line).expect_err(line);
        assert!(err.contains(why), "{line}: {err}");
    }
}

/// A throwaway `redis-server` on a loopback port, killed when dropped.
struct Redis {
    child: std::process::Child,
    url: String,
}

impl Redis {
    /// `None`, after a loud message, when `redis-server` is not installed
    /// (a failure instead with `TIDINGS_REQUIRE_ALL=1`).
    async fn start() -> Option<Redis> {
        let installed = std::process::Command::new("redis-server")
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success());
        if !installed {
            assert!(
                std::env::var("TIDINGS_REQUIRE_ALL").as_deref() != Ok("1"),
                "TIDINGS_REQUIRE_ALL=1 but redis-server is not installed"
            );
            eprintln!(
                "\n*** SKIPPING the bench's federation test: redis-server is not installed ***\n"
            );
            return None;
        }
        // A port found free may be taken before redis-server binds it: try a few.
        for _ in 0..5 {
            let port = std::net::TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .expect("a free port")
                .port();
            let child = std::process::Command::new("redis-server")
                .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
                .args(["--save", "", "--appendonly", "no"])
                .stdout(std::process::Stdio::null())
                .spawn()
                .expect("start redis-server");
            let redis = Redis {
                child,
                url: format!("redis://127.0.0.1:{port}"),
            };
            if redis.answers().await {
                return Some(redis);
            }
        }
        panic!("redis-server did not start on any of 5 ports");
    }

    /// Waits (with a deadline) for PING to be answered.
    async fn answers(&self) -> bool {
        let client = redis::Client::open(self.url.as_str()).expect("a Redis URL");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while std::time::Instant::now() < deadline {
            if let Ok(mut conn) = client.get_multiplexed_async_connection().await
                && redis::cmd("PING")
                    .query_async::<String>(&mut conn)
                    .await
                    .is_ok()
            {
                return true;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        false
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn federation_runs_clean_across_two_nodes() {
    let Some(redis) = Redis::start().await else {
        return;
    };
    let node = |id: &str| crate::config::Config {
        federation: crate::config::FederationConfig {
            redis_url: Some(redis.url.clone()),
            node_id: Some(id.into()),
            key_prefix: "bench-test".into(),
            heartbeat_secs: 1,
            ..Default::default()
        },
        ..Default::default()
    };
    let (a, _stop_a, _dir_a) = server_configured(node("bench-a")).await;
    let (b, _stop_b, _dir_b) = server_configured(node("bench-b")).await;
    for transport in [Transport::Ws, Transport::Sse] {
        let args = FederationArgs {
            fanout: fanout_args(transport),
            redis_url: None,
        };
        let r = federation::run(&args, &b, &a, &Default::default(), &[], None)
            .await
            .expect("federation");
        assert!(r.published > 0, "{r:?}");
        assert_eq!((r.received, r.lost), (r.expected, 0), "{r:?}");
        assert_eq!(r.duplicates + r.out_of_order + r.gaps + r.unparsed, 0);
        let f = r.federation.expect("federation figures");
        assert_eq!(
            (f.publish_node.as_str(), f.subscribe_node.as_str()),
            ("bench-a", "bench-b")
        );
        assert_eq!(
            (f.forwarded, f.received, f.skipped),
            (r.published, r.published, 0)
        );
    }
    let same = FederationArgs {
        fanout: fanout_args(Transport::Ws),
        redis_url: None,
    };
    let err = federation::run(&same, &a, &a, &Default::default(), &[], None)
        .await
        .expect_err("one node is not two");
    assert!(format!("{err:#}").contains("--publish-url"), "{err:#}");
}
