//! Asynchronous ingest jobs: `?async=true` on publish and batch answers 202
//! with a job id, the job reaches `done` with its event ids, bad input is
//! still a synchronous 400, job status is private to its owner (and admins),
//! status changes are events on `_jobs`, a full queue is a 503, finished jobs
//! expire, and a SIGKILL with jobs queued loses none and duplicates nothing.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::client::{Api, BATCH, EVENTS};
use common::process::ServerProcess;
use common::{TestServer, assert_error, hs256_token, wait_until};
use serde_json::{Value, json};
use tokio::time::Instant;

const JOBS: &str = "/api/v1/jobs";
/// Deadline for one job to finish on a test server.
const JOB_WAIT: Duration = Duration::from_secs(15);

/// POSTs `body` to `path?async=true`; requires 202 `{job_id, status: queued}`
/// with a matching `Location`, returns the job id.
async fn submit(api: &Api, path: &str, body: &Value) -> String {
    let r = api
        .http
        .post(api.url(&format!("{path}?async=true")))
        .json(body)
        .send()
        .await
        .expect("request");
    let status = r.status().as_u16();
    let location = r
        .headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let body: Value = r.json().await.unwrap_or(Value::Null);
    assert_eq!(status, 202, "async publish to {path}: {body}");
    assert_eq!(body["status"], "queued", "{body}");
    let id = body["job_id"].as_str().expect("job_id").to_owned();
    assert_eq!(id.len(), 22, "job ids are 22 base64url characters: {id}");
    assert!(
        id.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    );
    assert_eq!(location.as_deref(), Some(format!("{JOBS}/{id}").as_str()));
    id
}

/// Polls the job until it has `want` status (failing on any other final
/// status); returns its JSON.
async fn wait_job(api: &Api, id: &str, want: &str) -> Value {
    let end = Instant::now() + JOB_WAIT;
    loop {
        let (status, job) = api.get_json(&format!("{JOBS}/{id}")).await;
        assert_eq!(status, 200, "job {id}: {job}");
        if job["status"] == want {
            return job;
        }
        let s = job["status"].as_str().unwrap_or("");
        assert!(
            matches!(s, "queued" | "processing"),
            "job {id} ended {s}, not {want}: {job}"
        );
        assert!(
            Instant::now() < end,
            "job {id} did not reach {want} in {JOB_WAIT:?}: {job}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn ids_of(job: &Value) -> Vec<String> {
    job["event_ids"]
        .as_array()
        .unwrap_or_else(|| panic!("event_ids: {job}"))
        .iter()
        .map(|v| v.as_str().expect("ids are strings").to_owned())
        .collect()
}

/// A server with JWT callers: `root` (admin), `alice` and `bob`
/// (publishers and readers).
async fn jwt_server(
    tweak: impl FnOnce(&mut tidings::config::Config),
) -> (TestServer, Api, Api, Api) {
    let server = TestServer::start_with(|c| {
        c.auth.jwt_secret = Some(common::TEST_JWT_SECRET.into());
        tweak(c);
    })
    .await;
    let admin = Api::with_token(&server, &hs256_token("root", &["ADMIN"]));
    let alice = Api::with_token(&server, &hs256_token("alice", &["USER", "PUBLISHER"]));
    let bob = Api::with_token(&server, &hs256_token("bob", &["USER", "PUBLISHER"]));
    (server, admin, alice, bob)
}

#[tokio::test]
async fn async_publish_and_batch_reach_done_with_their_event_ids() {
    let server = TestServer::start().await;
    let api = Api::new(&server);
    let single = submit(
        &api,
        EVENTS,
        &json!({"stream_id":"orders","type":"order.created","data":{"n":1}}),
    )
    .await;
    let batch = submit(
        &api,
        BATCH,
        &json!({"events":[
            {"stream_id":"orders","type":"order.paid","data":{"n":2}},
            {"stream_id":"orders","type":"order.paid","data":{"n":3},"key":"own-key"},
            {"stream_id":"audit","type":"audit.entry","data":{"n":4}},
        ]}),
    )
    .await;
    let job = wait_job(&api, &single, "done").await;
    assert_eq!(job["job_id"], single);
    assert_eq!(job["error"], Value::Null);
    assert!(job["created"].as_i64().is_some() && job["updated"].as_i64().is_some());
    let single_ids = ids_of(&job);
    let batch_ids = ids_of(&wait_job(&api, &batch, "done").await);
    assert_eq!((single_ids.len(), batch_ids.len()), (1, 3));

    // The ids name the events that were sent, in order.
    let events = api.poll_all("streams=orders,audit").await;
    let by_id: HashMap<&str, &Value> = events
        .iter()
        .map(|e| (e["id"].as_str().unwrap(), e))
        .collect();
    for (id, n) in single_ids.iter().chain(&batch_ids).zip(1..) {
        assert_eq!(by_id[id.as_str()]["data"]["n"], n, "event {id}");
    }
    assert_eq!(events.len(), 4, "each event stored once: {events:?}");

    // The event that brought its own key keeps it: publishing it again is a duplicate.
    let (status, ack) = api
        .post_json(
            EVENTS,
            &json!({"stream_id":"orders","type":"order.paid","key":"own-key"}),
        )
        .await;
    assert_eq!(
        (status, ack["id"].as_str()),
        (200, Some(batch_ids[1].as_str()))
    );

    // async=false and 0 are the synchronous path; other values are refused.
    for (query, want) in [("false", 201), ("0", 201), ("1", 202)] {
        let (status, body) = api
            .post_json(
                &format!("{EVENTS}?async={query}"),
                &json!({"stream_id":"orders","type":"t"}),
            )
            .await;
        assert_eq!(status, want, "async={query}: {body}");
    }
    let (status, body) = api
        .post_json(
            &format!("{BATCH}?async=yes"),
            &json!({"events":[{"type":"t"}]}),
        )
        .await;
    assert_error(status, &body, 400, "invalid_query");
    server.stop().await;
}

#[tokio::test]
async fn invalid_input_is_refused_at_once_and_nothing_is_queued() {
    let (server, admin, alice, _) = jwt_server(|_| {}).await;
    let (status, body) = alice
        .post_json(
            &format!("{BATCH}?async=true"),
            &json!({"events":[{"type":"ok"},{"stream_id":"bad name"}]}),
        )
        .await;
    assert_error(status, &body, 400, "invalid_event");
    let details = body["error"]["details"].as_array().unwrap();
    assert!(details.iter().all(|d| d["index"] == 1), "{body}");
    let (status, body) = alice
        .post_json(&format!("{EVENTS}?async=true"), &json!({"audience":"all"}))
        .await;
    assert_error(status, &body, 400, "invalid_event");
    assert!(
        body["error"]["details"]
            .as_array()
            .unwrap()
            .iter()
            .all(|d| d.get("index").is_none()),
        "a single event's errors carry no index, as without async: {body}"
    );
    let (status, body) = alice
        .post_json(&format!("{BATCH}?async=true"), &json!({"events":[]}))
        .await;
    assert_error(status, &body, 400, "empty_batch");
    // The same access check as the synchronous path.
    let reader = Api::with_token(&server, &hs256_token("carol", &["USER"]));
    let (status, body) = reader
        .post_json(&format!("{EVENTS}?async=true"), &json!({"type":"t"}))
        .await;
    assert_error(status, &body, 403, "forbidden");

    // Nothing was queued: the first job on `_jobs` is the next valid one.
    let id = submit(&alice, EVENTS, &json!({"type":"ok"})).await;
    wait_job(&alice, &id, "done").await;
    let jobs_events = admin.poll_all("streams=_jobs").await;
    let subjects: Vec<&str> = jobs_events
        .iter()
        .map(|e| e["subject"].as_str().unwrap())
        .collect();
    assert_eq!(subjects, [id.as_str(); 3], "{jobs_events:?}");
    server.stop().await;
}

#[tokio::test]
async fn a_job_is_visible_to_its_owner_and_admins_only() {
    let (server, admin, alice, bob) = jwt_server(|_| {}).await;
    let id = submit(&alice, EVENTS, &json!({"stream_id":"notes","type":"note"})).await;
    let job = wait_job(&alice, &id, "done").await;
    let (status, by_admin) = admin.get_json(&format!("{JOBS}/{id}")).await;
    assert_eq!((status, &by_admin["event_ids"]), (200, &job["event_ids"]));

    let anonymous = Api::new(&server);
    for (who, api) in [("bob", &bob), ("anonymous", &anonymous)] {
        let (status, body) = api.get_json(&format!("{JOBS}/{id}")).await;
        assert_error(status, &body, 404, "not_found");
        assert!(
            body["error"]["message"]
                .as_str()
                .unwrap()
                .contains("not found"),
            "{who}: {body}"
        );
    }
    // Unknown and malformed ids answer the same.
    for unknown in ["AAAAAAAAAAAAAAAAAAAAAA", "no%20such", &"x".repeat(200)] {
        let (status, body) = alice.get_json(&format!("{JOBS}/{unknown}")).await;
        assert_error(status, &body, 404, "not_found");
    }
    server.stop().await;
}

#[tokio::test]
async fn the_job_list_shows_admins_every_job_and_others_their_own() {
    let (server, admin, alice, bob) = jwt_server(|c| c.auth.anonymous_publish = Some(true)).await;
    let anonymous = Api::new(&server);
    let mut by_alice = Vec::new();
    for n in 0..3 {
        let id = submit(
            &alice,
            EVENTS,
            &json!({"stream_id":"notes","type":"note","data":{"n":n}}),
        )
        .await;
        wait_job(&alice, &id, "done").await;
        by_alice.push(id);
    }
    let by_bob = submit(&bob, EVENTS, &json!({"stream_id":"notes","type":"note"})).await;
    wait_job(&bob, &by_bob, "done").await;
    let by_nobody = submit(
        &anonymous,
        EVENTS,
        &json!({"stream_id":"notes","type":"note"}),
    )
    .await;
    wait_job(&anonymous, &by_nobody, "done").await;

    let ids = |body: &Value| -> Vec<String> {
        body["jobs"]
            .as_array()
            .unwrap_or_else(|| panic!("{body}"))
            .iter()
            .map(|j| j["job_id"].as_str().expect("job_id").to_owned())
            .collect()
    };
    let (status, all) = admin.get_json(JOBS).await;
    assert_eq!(status, 200, "{all}");
    let mut want: Vec<String> = by_alice
        .iter()
        .chain([&by_bob, &by_nobody])
        .cloned()
        .collect();
    let mut got = ids(&all);
    // Newest first: created is in seconds, so check the order by it.
    let created: Vec<i64> = all["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["created"].as_i64().unwrap())
        .collect();
    assert!(
        created.windows(2).all(|w| w[0] >= w[1]),
        "newest first: {all}"
    );
    got.sort();
    want.sort();
    assert_eq!(got, want, "an admin lists every job: {all}");
    let job = &all["jobs"][0];
    for field in [
        "status",
        "created",
        "updated",
        "expires_at",
        "event_ids",
        "error",
    ] {
        assert!(job.get(field).is_some(), "{field} in {job}");
    }
    assert!(
        job.get("owner").is_none() && job.get("payload").is_none(),
        "{job}"
    );

    // Alice sees her three, not Bob's nor the anonymous one (readable by id only).
    let (status, mine) = alice.get_json(JOBS).await;
    let mut got = ids(&mine);
    got.sort();
    let mut want = by_alice.clone();
    want.sort();
    assert_eq!((status, got), (200, want), "{mine}");
    let (_, two) = alice.get_json(&format!("{JOBS}?limit=2")).await;
    assert_eq!(ids(&two).len(), 2, "{two}");

    let (status, body) = anonymous.get_json(JOBS).await;
    assert_error(status, &body, 401, "unauthorized");
    for bad in ["limit=0", "limit=501", "limit=x", "colour=red"] {
        let (status, body) = alice.get_json(&format!("{JOBS}?{bad}")).await;
        assert_error(status, &body, 400, "invalid_query");
    }
    server.stop().await;
}

#[tokio::test]
async fn status_changes_are_events_on_the_jobs_stream() {
    let (server, admin, alice, bob) = jwt_server(|_| {}).await;
    let id = submit(
        &alice,
        BATCH,
        &json!({"events":[{"stream_id":"s","type":"a"},{"stream_id":"s","type":"b"}]}),
    )
    .await;
    let job = wait_job(&alice, &id, "done").await;
    // An admin subscribed to `_jobs` (long poll from the start) sees every step.
    let mut seen: Vec<Value> = Vec::new();
    let mut cursor = "0".to_string();
    let end = Instant::now() + JOB_WAIT;
    while seen.last().is_none_or(|e| e["type"] != "job.done") {
        assert!(Instant::now() < end, "no job.done on _jobs: {seen:?}");
        let (events, next) = admin
            .poll(&format!("streams=_jobs&after={cursor}&wait=5"))
            .await;
        cursor = next;
        seen.extend(events.into_iter().filter(|e| e["subject"] == id));
    }
    let types: Vec<&str> = seen.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(types, ["job.queued", "job.processing", "job.done"]);
    for e in &seen {
        assert_eq!(e["stream_id"], "_jobs");
        assert_eq!(
            (&e["user_id"], &e["audience"]),
            (&json!("alice"), &json!("user"))
        );
        assert_eq!(e["data"]["job_id"], id);
        assert!(e["data"].get("payload").is_none(), "no payload: {e}");
    }
    assert_eq!(seen[2]["data"]["event_ids"], job["event_ids"]);
    assert_eq!(seen[2]["data"]["status"], "done");
    // The owner may follow `_jobs` too and sees exactly their job's events;
    // bob sees none of them; nobody but the server may publish there.
    let mine: Vec<Value> = alice.poll_all("streams=_jobs").await;
    let ids: Vec<&Value> = mine.iter().map(|e| &e["id"]).collect();
    let want: Vec<&Value> = seen.iter().map(|e| &e["id"]).collect();
    assert_eq!(ids, want, "alice's view of _jobs: {mine:?}");
    assert!(bob.poll_all("streams=_jobs").await.is_empty());
    let (status, body) = alice
        .post_json(EVENTS, &json!({"stream_id": "_jobs", "type": "job.done"}))
        .await;
    assert_error(status, &body, 403, "forbidden");
    server.stop().await;
}

#[tokio::test]
async fn a_full_queue_is_a_503_and_accepted_jobs_still_finish() {
    let server = TestServer::start_with(|c| {
        c.jobs.workers = 1;
        c.jobs.queue = 1;
    })
    .await;
    let api = Api::new(&server);
    let events: Vec<Value> = (0..50)
        .map(|i| json!({"stream_id":"burst","type":"t","data":{"i":i}}))
        .collect();
    let body = json!({ "events": events });
    let mut tasks = Vec::new();
    for _ in 0..40 {
        let (api, body) = (api.clone(), body.clone());
        tasks.push(tokio::spawn(async move {
            let r = api
                .http
                .post(api.url(&format!("{BATCH}?async=true")))
                .json(&body)
                .send()
                .await
                .unwrap();
            let status = r.status().as_u16();
            let retry = r.headers().get("retry-after").is_some();
            (status, retry, r.json::<Value>().await.unwrap())
        }));
    }
    let mut accepted = Vec::new();
    let mut busy = 0;
    for t in tasks {
        let (status, retry, body) = t.await.unwrap();
        match status {
            202 => accepted.push(body["job_id"].as_str().unwrap().to_owned()),
            _ => {
                assert_error(status, &body, 503, "server_busy");
                assert!(retry, "503 carries Retry-After");
                busy += 1;
            }
        }
    }
    assert!(
        busy > 0,
        "40 concurrent jobs with a queue of 1 and one worker: some are refused"
    );
    assert!(!accepted.is_empty());
    for id in &accepted {
        assert_eq!(ids_of(&wait_job(&api, id, "done").await).len(), 50);
    }
    let stored = api.poll_all("streams=burst").await;
    assert_eq!(
        stored.len(),
        50 * accepted.len(),
        "refused jobs stored nothing"
    );
    server.stop().await;
}

#[tokio::test]
async fn finished_jobs_expire_and_the_sweep_deletes_them() {
    use tidings::config::{JobsConfig, Limits, StorageConfig, StreamsConfig};
    use tidings::ingest::{Ingest, IngestConfig};

    let dir = tempfile::tempdir().unwrap();
    let storage = StorageConfig::default();
    let store = tidings::store::Store::open(dir.path(), &storage).unwrap();
    let hub = tidings::hub::Hub::new(1024);
    let cfg = IngestConfig::new(&storage, &Limits::default(), &StreamsConfig::default());
    let (ingest, writer) = Ingest::start(store.clone(), hub, cfg).unwrap();
    let shutdown = tokio_util::sync::CancellationToken::new();
    let jobs_cfg = JobsConfig {
        workers: 2,
        queue: 10,
        ttl_secs: Some(1),
    };
    let jobs = tidings::jobs::Jobs::start(
        store.clone(),
        ingest.clone(),
        &jobs_cfg,
        3600,
        shutdown.clone(),
    )
    .unwrap();
    let input: tidings::event::EventInput =
        serde_json::from_value(json!({"stream_id":"short","type":"t"})).unwrap();
    let id = jobs.submit(None, vec![input]).await.unwrap();
    let job = store.job(&id).unwrap().expect("stored before the answer");
    assert_eq!(job.expires_at, job.created as u64 + 1);
    assert_eq!(
        job.payload[0].key.as_deref(),
        Some(format!("job:{id}:0").as_str())
    );

    // Readable until it expires, then not; then the sweep removes the record.
    wait_until("job done", JOB_WAIT, || {
        let r = jobs.get(&id).unwrap();
        async move { r.is_none_or(|j| j.status == tidings::store::JobStatus::Done) }
    })
    .await;
    wait_until("job no longer readable", Duration::from_secs(10), || {
        let gone = jobs.get(&id).unwrap().is_none();
        async move { gone }
    })
    .await;
    wait_until(
        "expired job deleted by the sweep",
        Duration::from_secs(10),
        || {
            let gone = store.job(&id).unwrap().is_none();
            async move { gone }
        },
    )
    .await;

    shutdown.cancel();
    jobs.stop(Duration::from_secs(5)).await;
    ingest.close().await;
    writer.join().await;
}

#[tokio::test]
async fn a_graceful_restart_keeps_queued_jobs_and_finishes_them() {
    let dir = tempfile::tempdir().unwrap();
    let one_worker = |c: &mut tidings::config::Config| c.jobs.workers = 1;
    let server = TestServer::start_in(dir.path().to_path_buf(), one_worker).await;
    let api = Api::new(&server);
    let mut ids = Vec::new();
    for n in 0..30 {
        let events: Vec<Value> = (0..20)
            .map(|i| json!({"stream_id":"restart","type":"t","data":{"n":n,"i":i}}))
            .collect();
        ids.push(submit(&api, BATCH, &json!({ "events": events })).await);
    }
    server.stop().await;
    let server = TestServer::start_in(dir.path().to_path_buf(), one_worker).await;
    let api = Api::new(&server);
    for id in &ids {
        assert_eq!(ids_of(&wait_job(&api, id, "done").await).len(), 20);
    }
    assert_eq!(api.poll_all("streams=restart").await.len(), 30 * 20);
    server.stop().await;
}

/// Every event of `stream` in the process's store: marker → ids.
async fn markers_of(base: &str, stream: &str) -> BTreeMap<String, Vec<String>> {
    let client = reqwest::Client::new();
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut cursor = "0".to_string();
    loop {
        let url = format!("{base}{EVENTS}?streams={stream}&after={cursor}&limit=1000");
        let body: Value = client.get(url).send().await.unwrap().json().await.unwrap();
        let events = body["events"].as_array().unwrap();
        if events.is_empty() {
            return out;
        }
        for e in events {
            let marker = e["data"]["m"].as_str().unwrap().to_owned();
            out.entry(marker)
                .or_default()
                .push(e["id"].as_str().unwrap().to_owned());
        }
        cursor = body["cursor"].as_str().unwrap().to_owned();
    }
}

/// Acknowledged jobs: job id → the markers of its events, in order.
type Acked = Arc<Mutex<Vec<(String, Vec<String>)>>>;

/// Submits async jobs (batches of 5, some single events, some events with
/// their own key) until the server stops answering.
async fn submit_until_killed(base: String, task: usize, acked: Acked) {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    for n in 0.. {
        let size = if n % 3 == 2 { 1 } else { 5 };
        let markers: Vec<String> = (0..size).map(|i| format!("t{task}-n{n}-{i}")).collect();
        let events: Vec<Value> = markers
            .iter()
            .enumerate()
            .map(|(i, m)| {
                let mut e = json!({"stream_id":"jobcrash","type":"crash.job","data":{"m":m}});
                if i == 1 {
                    e["key"] = json!(format!("k-{m}"));
                }
                e
            })
            .collect();
        let request = if size == 1 {
            client
                .post(format!("{base}{EVENTS}?async=true"))
                .json(&events[0])
        } else {
            client
                .post(format!("{base}{BATCH}?async=true"))
                .json(&json!({ "events": events }))
        };
        let Ok(response) = request.send().await else {
            return;
        };
        if response.status().as_u16() != 202 {
            return;
        }
        let Ok(body) = response.json::<Value>().await else {
            return;
        };
        let id = body["job_id"].as_str().unwrap().to_owned();
        acked.lock().unwrap().push((id, markers));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigkill_with_queued_jobs_loses_none_and_duplicates_nothing() {
    let dir = tempfile::tempdir().unwrap();
    // Anonymous producers as in the zero-config case, plus an admin JWT to
    // read `_jobs` (ownerless jobs are announced to admins).
    let env = [
        ("TIDINGS_JOBS__WORKERS", "1"),
        ("TIDINGS_AUTH__JWT_SECRET", common::TEST_JWT_SECRET),
        ("TIDINGS_AUTH__ALLOW_ANONYMOUS", "true"),
        ("TIDINGS_AUTH__ANONYMOUS_PUBLISH", "true"),
    ];
    let server = ServerProcess::spawn(dir.path(), &[], &env);
    let acked: Acked = Arc::default();
    let loaders: Vec<_> = (0..6)
        .map(|t| tokio::spawn(submit_until_killed(server.base.clone(), t, acked.clone())))
        .collect();
    let client = reqwest::Client::new();
    // Kill once many jobs are acknowledged and the newest is still waiting.
    let end = Instant::now() + Duration::from_secs(60);
    loop {
        assert!(Instant::now() < end, "never saw a backlog of queued jobs");
        let newest = {
            let a = acked.lock().unwrap();
            (a.len() >= 150).then(|| a.last().unwrap().0.clone())
        };
        if let Some(id) = newest {
            let job: Value = client
                .get(server.url(&format!("{JOBS}/{id}")))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            if job["status"] == "queued" {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    server.kill();
    for l in loaders {
        common::within("submitters notice the crash", Duration::from_secs(30), l)
            .await
            .unwrap();
    }
    let acked = acked.lock().unwrap().clone();

    let server = ServerProcess::spawn(dir.path(), &[], &env);
    let api = Api {
        http: reqwest::Client::new(),
        base: server.base.clone(),
    };
    let mut finished = Vec::new();
    let end = Instant::now() + Duration::from_secs(120);
    for (id, markers) in &acked {
        loop {
            let (status, job) = api.get_json(&format!("{JOBS}/{id}")).await;
            assert_eq!(status, 200, "acknowledged job {id} lost: {job}");
            if job["status"] == "done" {
                finished.push((ids_of(&job), markers));
                break;
            }
            assert!(
                matches!(job["status"].as_str(), Some("queued" | "processing")),
                "job {id}: {job}"
            );
            assert!(
                Instant::now() < end,
                "job {id} not done after restart: {job}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    let stored = markers_of(&server.base, "jobcrash").await;
    let doubled: Vec<_> = stored
        .iter()
        .filter(|(_, ids)| ids.len() > 1)
        .take(5)
        .collect();
    assert!(doubled.is_empty(), "events stored twice: {doubled:?}");
    for (ids, markers) in finished {
        let want: Vec<&String> = markers.iter().map(|m| &stored[m.as_str()][0]).collect();
        assert_eq!(
            ids.iter().collect::<Vec<_>>(),
            want,
            "job's event ids name its events"
        );
    }
    let total: usize = acked.iter().map(|(_, m)| m.len()).sum();
    assert!(stored.len() >= total, "every acknowledged event exists");
    // Every job's statuses were announced on `_jobs`, each exactly once,
    // even those a crash interrupted between two steps.
    let admin = Api::at_with_token(&server.base, &hs256_token("root", &["ADMIN"]));
    let mut announced: HashMap<String, Vec<String>> = HashMap::new();
    for e in admin.poll_all("streams=_jobs").await {
        announced
            .entry(e["subject"].as_str().unwrap().to_owned())
            .or_default()
            .push(e["type"].as_str().unwrap().to_owned());
    }
    for (id, _) in &acked {
        assert_eq!(
            announced.get(id).map(Vec::as_slice),
            Some(
                &[
                    "job.queued".to_owned(),
                    "job.processing".to_owned(),
                    "job.done".to_owned()
                ][..]
            ),
            "announcements of job {id}"
        );
    }
    server.kill();
}

#[tokio::test]
async fn jobs_report_status_even_when_streams_are_not_auto_created() {
    let (server, admin, alice, _) = jwt_server(|c| c.streams.auto_create = false).await;
    let created = admin
        .http
        .put(admin.url("/api/v1/streams/orders"))
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status().as_u16(), 201);
    let id = submit(&alice, EVENTS, &json!({"stream_id": "orders", "type": "t"})).await;
    wait_job(&alice, &id, "done").await;
    let statuses: Vec<Value> = admin
        .poll_all("streams=_jobs")
        .await
        .into_iter()
        .filter(|e| e["subject"] == id)
        .map(|e| e["type"].clone())
        .collect();
    assert_eq!(
        statuses,
        [
            json!("job.queued"),
            json!("job.processing"),
            json!("job.done")
        ]
    );
    server.stop().await;
}
