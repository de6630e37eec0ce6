//! End-to-end checks of the scenarios against an in-process server on a
//! random port: short runs that must come out clean.

use super::*;

/// Starts the real app on 127.0.0.1:0; dropping the sender stops it.
async fn server() -> (String, tokio::sync::oneshot::Sender<()>, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = crate::config::Config {
        data_dir: dir.path().to_path_buf(),
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
        let args = PublishArgs {
            target: Target::default(),
            connections: 2,
            duration: 1,
            batch,
            payload_bytes: 20,
            stream: "bench".into(),
        };
        let r = publish::run(&args, &url, None).await.expect("publish");
        assert_eq!(r.errors, 0, "{:?}", r.first_error);
        assert!(r.events > 0 && r.events % batch as u64 == 0, "{r:?}");
        assert_eq!(r.ack_latency.samples, r.requests);
    }
    for transport in [Transport::Ws, Transport::Sse] {
        let r = fanout::run(&fanout_args(transport), &url, None)
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
    let err = fanout::run(&args, "http://127.0.0.1:1", None)
        .await
        .expect_err("nothing listens on port 1");
    assert!(
        format!("{err:#}").contains("cannot reach a server"),
        "{err:#}"
    );
}
