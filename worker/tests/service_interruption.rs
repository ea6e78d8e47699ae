//! Spot interruptions: the worker against a local stand-in for EC2 instance metadata (the
//! emulator has none) and the moto emulator for SQS and S3.
//!
//! The stand-in speaks the IMDSv2 protocol the watcher uses: a session token from
//! `PUT /latest/api/token`, required on every `GET`; `404` while there is no notice; the
//! documented JSON once the test announces one. It can also misbehave: never answer, answer
//! `404` to everything, or answer garbage.

mod support;

use geobatch_worker::exec::ExecOptions;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use aws_sdk_sqs::primitives::{DateTime, DateTimeFormat};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use geobatch_worker::config::{Processor, WorkerConfig};
use geobatch_worker::interruption::{Imds, ImdsError, Notice, SpotWatchMode};
use support::{RunningWorker, SAMPLE, Stack, StackOptions, scratch_file, wait_for};

/// How the stand-in behaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Behaviour {
    /// As instance metadata on EC2.
    Normal,
    /// Accepts connections and never answers.
    Silent,
    /// `404` to everything, the token included (not EC2, or IMDSv2 disabled).
    NotFound,
    /// `200` with a body that is not the documented JSON for every notice path.
    Garbage,
}

#[derive(Debug)]
struct ImdsState {
    behaviour: Behaviour,
    /// Body of `spot/instance-action`, once announced.
    instance_action: Option<String>,
    /// Body of `events/recommendations/rebalance`, once announced.
    rebalance: Option<String>,
    /// Tokens handed out; only the latest is accepted.
    tokens_issued: u32,
    /// GETs refused for a missing or stale token.
    refused: u32,
    /// Token requests received, answered or not.
    token_requests: u32,
}

type Shared = Arc<Mutex<ImdsState>>;

/// A stand-in for the instance metadata service of one instance.
struct FakeImds {
    endpoint: String,
    state: Shared,
    server: tokio::task::JoinHandle<()>,
}

impl FakeImds {
    async fn start(behaviour: Behaviour) -> FakeImds {
        let state = Arc::new(Mutex::new(ImdsState {
            behaviour,
            instance_action: None,
            rebalance: None,
            tokens_issued: 0,
            refused: 0,
            token_requests: 0,
        }));
        let app = axum::Router::new()
            .route("/latest/api/token", axum::routing::put(token))
            .route(
                "/latest/meta-data/spot/instance-action",
                axum::routing::get(instance_action),
            )
            .route(
                "/latest/meta-data/events/recommendations/rebalance",
                axum::routing::get(rebalance),
            )
            .with_state(Arc::clone(&state));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind imds");
        let endpoint = format!("http://{}", listener.local_addr().expect("addr"));
        let server = tokio::spawn(async move {
            axum::serve(listener, app).await.expect("imds serves");
        });
        FakeImds {
            endpoint,
            state,
            server,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, ImdsState> {
        self.state.lock().expect("imds state")
    }

    /// Announces a `terminate` two minutes from now.
    fn announce_interruption(&self) {
        let at = DateTime::from(SystemTime::now() + Duration::from_secs(120))
            .fmt(DateTimeFormat::DateTime)
            .expect("format time");
        self.lock().instance_action = Some(format!(r#"{{"action": "terminate", "time": "{at}"}}"#));
    }

    fn announce_rebalance(&self) {
        self.lock().rebalance = Some(r#"{"noticeTime": "2026-12-04T02:00:00Z"}"#.to_owned());
    }
}

impl Drop for FakeImds {
    fn drop(&mut self) {
        self.server.abort();
    }
}

fn token_of(headers: &HeaderMap) -> Option<u32> {
    headers
        .get("X-aws-ec2-metadata-token")?
        .to_str()
        .ok()?
        .strip_prefix("token-")?
        .parse()
        .ok()
}

async fn token(State(state): State<Shared>, headers: HeaderMap) -> (StatusCode, String) {
    let behaviour = {
        let mut state = state.lock().expect("imds state");
        state.token_requests += 1;
        state.behaviour
    };
    match behaviour {
        Behaviour::Silent => std::future::pending().await,
        Behaviour::NotFound => (StatusCode::NOT_FOUND, String::new()),
        Behaviour::Normal | Behaviour::Garbage => {
            let ttl = headers
                .get("X-aws-ec2-metadata-token-ttl-seconds")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<u32>().ok());
            if !ttl.is_some_and(|ttl| (1..=21_600).contains(&ttl)) {
                return (StatusCode::BAD_REQUEST, String::new());
            }
            let mut state = state.lock().expect("imds state");
            state.tokens_issued += 1;
            (StatusCode::OK, format!("token-{}", state.tokens_issued))
        }
    }
}

async fn notice(
    state: &Shared,
    headers: &HeaderMap,
    body: impl Fn(&ImdsState) -> Option<String>,
) -> (StatusCode, String) {
    let behaviour = state.lock().expect("imds state").behaviour;
    if behaviour == Behaviour::Silent {
        return std::future::pending().await;
    }
    let mut state = state.lock().expect("imds state");
    if token_of(headers) != Some(state.tokens_issued) || state.tokens_issued == 0 {
        state.refused += 1;
        return (StatusCode::UNAUTHORIZED, String::new());
    }
    match (behaviour, body(&state)) {
        (Behaviour::Garbage, _) => (StatusCode::OK, "<html>captive portal</html>".to_owned()),
        (_, Some(body)) => (StatusCode::OK, body),
        (_, None) => (StatusCode::NOT_FOUND, String::new()),
    }
}

async fn instance_action(State(state): State<Shared>, headers: HeaderMap) -> (StatusCode, String) {
    notice(&state, &headers, |s| s.instance_action.clone()).await
}

async fn rebalance(State(state): State<Shared>, headers: HeaderMap) -> (StatusCode, String) {
    notice(&state, &headers, |s| s.rebalance.clone()).await
}

#[tokio::test]
async fn the_client_takes_a_token_first_and_reads_both_notices() {
    let imds = FakeImds::start(Behaviour::Normal).await;
    let mut client = Imds::new(&imds.endpoint).expect("client");
    assert_eq!(client.poll().await, Ok(None));
    assert_eq!(imds.lock().tokens_issued, 1, "one token, reused");
    assert_eq!(client.poll().await, Ok(None));
    assert_eq!(imds.lock().tokens_issued, 1);
    assert_eq!(imds.lock().refused, 0);

    imds.announce_rebalance();
    assert!(matches!(
        client.poll().await,
        Ok(Some(Notice::Rebalance { .. }))
    ));
    imds.announce_interruption();
    match client.poll().await {
        Ok(Some(Notice::Interruption { action, at, .. })) => {
            assert_eq!(action, "terminate");
            assert!(at.is_some(), "the time parses");
        }
        other => panic!("expected an interruption, got {other:?}"),
    }
}

#[tokio::test]
async fn a_refused_token_is_renewed() {
    let imds = FakeImds::start(Behaviour::Normal).await;
    let mut client = Imds::new(&imds.endpoint).expect("client");
    assert_eq!(client.poll().await, Ok(None));
    // The service hands out a new token (as after a restart of the metadata service): the
    // old one is refused once, and the client asks for a new one.
    imds.lock().tokens_issued += 1;
    assert_eq!(client.poll().await, Ok(None));
    let state = imds.lock();
    assert_eq!(state.refused, 1);
    assert_eq!(state.tokens_issued, 3);
}

#[tokio::test]
async fn misbehaving_instance_metadata_is_an_error_never_a_notice() {
    let silent = FakeImds::start(Behaviour::Silent).await;
    let mut client = Imds::new(&silent.endpoint).expect("client");
    assert!(matches!(
        client.poll().await,
        Err(ImdsError::Unreachable { .. })
    ));

    let not_found = FakeImds::start(Behaviour::NotFound).await;
    let mut client = Imds::new(&not_found.endpoint).expect("client");
    assert_eq!(client.probe().await.map_err(|e| e.kind()), Err("status"));
    assert!(matches!(
        client.poll().await,
        Err(ImdsError::Status { status: 404, .. })
    ));

    let garbage = FakeImds::start(Behaviour::Garbage).await;
    let mut client = Imds::new(&garbage.endpoint).expect("client");
    assert!(matches!(
        client.poll().await,
        Err(ImdsError::Garbage { .. })
    ));

    // Nothing listens here at all.
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.local_addr().expect("addr")
    };
    let mut client = Imds::new(&format!("http://{closed}")).expect("client");
    assert!(matches!(
        client.poll().await,
        Err(ImdsError::Unreachable { .. })
    ));
}

/// Worker settings watching `imds`, with a `/metrics` listener on a free port.
fn watching(stack: &Stack, imds: &FakeImds, mode: SpotWatchMode) -> (WorkerConfig, String) {
    let mut config = stack.config();
    config.spot.mode = mode;
    config.spot.imds_endpoint = imds.endpoint.clone();
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("free port");
    config.metrics_addr = Some(addr);
    (config, format!("http://{addr}/metrics"))
}

fn exec(command: String) -> Processor {
    Processor::Exec(ExecOptions::new(command, Duration::from_secs(300)))
}

/// The value of one sample line of the worker's `/metrics`, 0 when absent.
async fn metric(url: &str, sample: &str) -> f64 {
    let body = reqwest::get(url)
        .await
        .expect("metrics answer")
        .text()
        .await
        .expect("metrics body");
    body.lines()
        .find_map(|line| line.strip_prefix(sample)?.trim().parse().ok())
        .unwrap_or(0.0)
}

/// The issue's scenario: a file is mid-way on an instance that gets the two-minute notice
/// and would not finish in time. The worker releases it at once, another worker (on
/// another instance) completes it, exactly once, and the interrupted worker takes nothing
/// new.
#[tokio::test]
async fn an_interruption_releases_a_slow_file_at_once_and_it_completes_elsewhere_once() {
    let imds = FakeImds::start(Behaviour::Normal).await;
    let stack = Stack::new(StackOptions::default()).await;
    stack.put("slow.geojson", SAMPLE).await;
    stack.put("later.geojson", SAMPLE).await;
    let (_dir, runs) = scratch_file("runs.log");
    let (mut config, metrics) = watching(&stack, &imds, SpotWatchMode::On);
    // Long enough that only a release lets anyone else have the message within the test.
    config.visibility_timeout = Duration::from_secs(60);
    config.processor = exec(format!(
        "echo \"interrupted $GEOBATCH_SOURCE_KEY\" >> '{}'; sleep 120; cat",
        runs.display()
    ));
    let interrupted = RunningWorker::start(&stack, config);
    stack.send_event(&["slow.geojson"]).await;
    stack.wait_held(1).await;
    wait_for("the slow file to start", || async {
        std::fs::read_to_string(&runs)
            .ok()
            .filter(|log| !log.is_empty())
    })
    .await;

    imds.announce_interruption();
    // Released, not left to the visibility timeout: visible again well within it.
    wait_for("the message to be released", || async {
        (stack.counts(&stack.queue_url).await == (1, 0)).then_some(())
    })
    .await;
    // Every hand-back so far is the notice's doing: the held file's, and, when the long poll
    // in flight at the notice is given that file's fresh copy, that copy's too.
    assert!(
        metric(
            &metrics,
            "geobatch_worker_messages_released_total{reason=\"interruption\"}"
        )
        .await
            >= 1.0
    );
    assert_eq!(
        metric(
            &metrics,
            "geobatch_worker_messages_released_total{reason=\"shutdown\"}"
        )
        .await,
        0.0
    );
    assert_eq!(
        metric(
            &metrics,
            "geobatch_worker_interruption_notices_total{kind=\"spot_interruption\"}"
        )
        .await,
        1.0
    );

    let mut elsewhere = stack.config();
    elsewhere.processor = exec(format!(
        "echo \"elsewhere $GEOBATCH_SOURCE_KEY\" >> '{}'; cat",
        runs.display()
    ));
    let other = RunningWorker::start(&stack, elsewhere);
    stack.send_event(&["later.geojson"]).await;
    for key in ["slow.geojson", "later.geojson"] {
        let result = stack.wait_output(&stack.outcome_key(key)).await;
        assert_eq!(result["exec_output"]["type"], "FeatureCollection");
    }
    stack.wait_drained().await;
    other.stop().await;
    interrupted.stop().await;

    let log = std::fs::read_to_string(&runs).expect("runs log");
    let mut lines: Vec<&str> = log.lines().collect();
    lines.sort_unstable();
    assert_eq!(lines.len(), 3, "{log}");
    assert!(lines[0].starts_with("elsewhere ") && lines[0].ends_with("later.geojson"));
    assert!(lines[1].starts_with("elsewhere ") && lines[1].ends_with("slow.geojson"));
    assert!(lines[2].starts_with("interrupted ") && lines[2].ends_with("slow.geojson"));
}

/// A file that, judged by the ones before it, ends well inside the notice keeps running on
/// the interrupted instance and is completed there.
#[tokio::test]
async fn a_file_that_will_finish_well_inside_the_notice_keeps_running() {
    let imds = FakeImds::start(Behaviour::Normal).await;
    let stack = Stack::new(StackOptions::default()).await;
    stack.put("first.geojson", SAMPLE).await;
    stack.put("second.geojson", SAMPLE).await;
    let (_dir, runs) = scratch_file("runs.log");
    let (mut config, metrics) = watching(&stack, &imds, SpotWatchMode::On);
    config.processor = exec(format!(
        "echo \"$GEOBATCH_SOURCE_KEY\" >> '{}'; sleep 3; cat",
        runs.display()
    ));
    let worker = RunningWorker::start(&stack, config);
    stack.send_event(&["first.geojson"]).await;
    stack.wait_output(&stack.outcome_key("first.geojson")).await;
    stack.wait_drained().await;

    stack.send_event(&["second.geojson"]).await;
    stack.wait_held(1).await;
    imds.announce_interruption();
    stack
        .wait_output(&stack.outcome_key("second.geojson"))
        .await;
    stack.wait_drained().await;
    assert_eq!(
        metric(
            &metrics,
            "geobatch_worker_messages_released_total{reason=\"interruption\"}"
        )
        .await,
        0.0
    );
    worker.stop().await;
    let log = std::fs::read_to_string(&runs).expect("runs log");
    assert_eq!(log.lines().count(), 2, "each file ran once: {log}");
}

/// A rebalance recommendation has no deadline: the worker takes no new message, and the
/// one it holds finishes there.
#[tokio::test]
async fn a_rebalance_recommendation_stops_receiving_and_held_files_finish() {
    let imds = FakeImds::start(Behaviour::Normal).await;
    let stack = Stack::new(StackOptions::default()).await;
    stack.put("held.geojson", SAMPLE).await;
    stack.put("new.geojson", SAMPLE).await;
    let (mut config, metrics) = watching(&stack, &imds, SpotWatchMode::On);
    config.processor = exec("sleep 3; cat".to_owned());
    let worker = RunningWorker::start(&stack, config);
    stack.send_event(&["held.geojson"]).await;
    stack.wait_held(1).await;
    imds.announce_rebalance();
    wait_for("the recommendation to be seen", || async {
        let seen = metric(
            &metrics,
            "geobatch_worker_interruption_notices_total{kind=\"rebalance_recommendation\"}",
        )
        .await;
        (seen == 1.0).then_some(())
    })
    .await;
    stack.wait_output(&stack.outcome_key("held.geojson")).await;
    stack.send_event(&["new.geojson"]).await;
    for _ in 0..4 {
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert_eq!(
            stack.counts(&stack.queue_url).await,
            (1, 0),
            "nothing new taken"
        );
    }
    worker.stop().await;
}

/// Instance metadata that never answers, answers 404 or answers garbage stops nothing:
/// files are processed, the failures are counted, and in `auto` mode a metadata service
/// that hands out no token turns the watcher off.
#[tokio::test]
async fn misbehaving_instance_metadata_never_stops_the_work() {
    let cases = [
        (Behaviour::Silent, SpotWatchMode::On, "unreachable", 1.0),
        (Behaviour::NotFound, SpotWatchMode::On, "status", 1.0),
        (Behaviour::Garbage, SpotWatchMode::On, "garbage", 1.0),
        (Behaviour::Silent, SpotWatchMode::Auto, "unreachable", 0.0),
        (Behaviour::NotFound, SpotWatchMode::Auto, "status", 0.0),
    ];
    for (behaviour, mode, kind, active) in cases {
        let imds = FakeImds::start(behaviour).await;
        let stack = Stack::new(StackOptions::default()).await;
        stack.put("fine.geojson", SAMPLE).await;
        let (config, metrics) = watching(&stack, &imds, mode);
        let worker = RunningWorker::start(&stack, config);
        stack.send_event(&["fine.geojson"]).await;
        stack.wait_output(&stack.outcome_key("fine.geojson")).await;
        stack.wait_drained().await;
        let case = format!("{behaviour:?} in {mode:?} mode");
        let errors = format!("geobatch_worker_imds_errors_total{{kind=\"{kind}\"}}");
        if active == 1.0 {
            wait_for(&format!("a counted {kind} error ({case})"), || async {
                (metric(&metrics, &errors).await >= 1.0).then_some(())
            })
            .await;
        } else {
            // The probe's two token requests, then silence: the watcher is off and stays
            // off (an `on` watcher asks again on every poll, every 200 ms here).
            wait_for(&format!("the probe ({case})"), || async {
                (imds.lock().token_requests >= 2).then_some(())
            })
            .await;
            tokio::time::sleep(Duration::from_secs(3)).await;
            assert_eq!(imds.lock().token_requests, 2, "{case}");
            assert_eq!(metric(&metrics, &errors).await, 0.0, "{case}");
        }
        assert_eq!(
            metric(&metrics, "geobatch_worker_spot_watch_active").await,
            active,
            "{case}"
        );
        worker.stop().await;
    }
}
