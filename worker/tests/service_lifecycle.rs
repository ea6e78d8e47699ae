//! The worker's life around each message: visibility heartbeats, backpressure, ECS task
//! protection, graceful shutdown, and the binary as ECS runs it (environment only, SIGTERM,
//! JSON logs, metrics).

mod support;

use geobatch_worker::exec::ExecOptions;
use std::io::Read;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_sdk_sqs::types::{MessageSystemAttributeName, SendMessageBatchRequestEntry};
use geobatch_common::testing::Emulator;
use geobatch_worker::config::Processor;
use serde_json::{Value, json};
use support::{RunningWorker, SAMPLE, Stack, StackOptions, record, scratch_file, wait_for};

fn exec(command: String) -> Processor {
    Processor::Exec(ExecOptions::new(command, Duration::from_secs(120)))
}

/// A file that takes longer than the visibility timeout is processed once: the heartbeat
/// keeps its message hidden, so no other slot receives it meanwhile. (The classic poller
/// processed such files twice, concurrently.)
#[tokio::test]
async fn a_file_slower_than_the_visibility_timeout_is_processed_once() {
    let stack = Stack::new(StackOptions {
        queue_visibility_secs: Some(1),
        ..StackOptions::default()
    })
    .await;
    stack.put("slow.geojson", SAMPLE).await;
    let (_dir, runs) = scratch_file("runs.log");
    let mut config = stack.config();
    // Renewed every second; the file takes more than twice the timeout.
    config.visibility_timeout = Duration::from_secs(3);
    config.processor = exec(format!("echo run >> '{}'; sleep 7; cat", runs.display()));
    let worker = RunningWorker::start(&stack, config);
    stack.send_event(&["slow.geojson"]).await;
    let result = stack.wait_output(&stack.outcome_key("slow.geojson")).await;
    assert_eq!(result["exec_output"]["type"], "FeatureCollection");
    stack.wait_drained().await;
    worker.stop().await;
    let log = std::fs::read_to_string(&runs).expect("runs log");
    assert_eq!(
        log.lines().count(),
        1,
        "the file was processed more than once"
    );
}

/// With every slot busy the worker does not receive: of five messages, a worker with two
/// slots holds exactly two while it works on them, leaving three for other workers.
#[tokio::test]
async fn the_worker_receives_only_as_many_messages_as_it_has_free_slots() {
    let stack = Stack::new(StackOptions::default()).await;
    for n in 0..5 {
        stack.put(&format!("f{n}.geojson"), SAMPLE).await;
    }
    let (_dir, gate) = scratch_file("gate");
    let mut config = stack.config();
    config.concurrency = 2;
    config.shutdown_grace = Duration::ZERO;
    // Each run waits until the test opens the gate, so the slots stay busy while we look.
    config.processor = exec(format!(
        "while [ ! -e '{}' ]; do sleep 0.1; done; cat",
        gate.display()
    ));
    for n in 0..5 {
        stack.send_event(&[&format!("f{n}.geojson")]).await;
    }
    let worker = RunningWorker::start(&stack, config);
    stack.wait_held(2).await;
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert_eq!(stack.counts(&stack.queue_url).await, (3, 2));
    }
    std::fs::write(&gate, "open").expect("open the gate");
    for n in 0..5 {
        stack
            .wait_output(&stack.outcome_key(&format!("f{n}.geojson")))
            .await;
    }
    stack.wait_drained().await;
    worker.stop().await;
}

/// Requests the fake agent received: path and JSON body.
type Recorded = Arc<Mutex<Vec<(String, Value)>>>;

/// A stand-in for the ECS agent's task-protection endpoint that records what it is sent.
struct FakeAgent {
    uri: String,
    requests: Recorded,
    server: tokio::task::JoinHandle<()>,
}

impl FakeAgent {
    async fn start(status: u16) -> FakeAgent {
        use axum::extract::State;
        use axum::http::{StatusCode, Uri};
        let requests = Arc::new(Mutex::new(Vec::new()));
        let recorded = Arc::clone(&requests);
        let app = axum::Router::new()
            .route(
                "/task-protection/v1/state",
                axum::routing::put(
                    move |State(requests): State<Recorded>, uri: Uri, body: String| async move {
                        let body = serde_json::from_str(&body).unwrap_or(Value::String(body));
                        requests
                            .lock()
                            .expect("lock")
                            .push((uri.path().to_owned(), body));
                        StatusCode::from_u16(status).expect("status")
                    },
                ),
            )
            .with_state(recorded);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind agent");
        let uri = format!("http://{}", listener.local_addr().expect("addr"));
        let server = tokio::spawn(async move {
            axum::serve(listener, app).await.expect("agent serves");
        });
        FakeAgent {
            uri,
            requests,
            server,
        }
    }

    fn bodies(&self) -> Vec<Value> {
        self.requests
            .lock()
            .expect("lock")
            .iter()
            .map(|(_, body)| body.clone())
            .collect()
    }
}

impl Drop for FakeAgent {
    fn drop(&mut self) {
        self.server.abort();
    }
}

/// With `ECS_AGENT_URI` set, the worker asks for scale-in protection when it takes a
/// message and gives it up once idle, through the agent's documented endpoint.
#[tokio::test]
async fn task_protection_is_on_while_messages_are_held_and_off_when_idle() {
    let agent = FakeAgent::start(200).await;
    let stack = Stack::new(StackOptions::default()).await;
    stack.put("held.geojson", SAMPLE).await;
    let mut config = stack.config();
    config.ecs_agent_uri = Some(agent.uri.clone());
    config.protection_minutes = 15;
    config.processor = exec("sleep 1; cat".to_owned());
    let worker = RunningWorker::start(&stack, config);
    assert!(agent.bodies().is_empty(), "no protection before any work");
    stack.send_event(&["held.geojson"]).await;
    stack.wait_output(&stack.outcome_key("held.geojson")).await;
    let bodies = wait_for("protection to be turned off", || async {
        let bodies = agent.bodies();
        (bodies.len() >= 2).then_some(bodies)
    })
    .await;
    assert_eq!(
        bodies,
        vec![
            serde_json::json!({"ProtectionEnabled": true, "ExpiresInMinutes": 15}),
            serde_json::json!({"ProtectionEnabled": false}),
        ]
    );
    let paths: Vec<String> = agent
        .requests
        .lock()
        .expect("lock")
        .iter()
        .map(|(path, _)| path.clone())
        .collect();
    assert!(paths.iter().all(|path| path == "/task-protection/v1/state"));
    worker.stop().await;
}

/// An agent that refuses every request does not stop the work: files are still processed.
#[tokio::test]
async fn task_protection_failures_do_not_stop_processing() {
    let agent = FakeAgent::start(500).await;
    let stack = Stack::new(StackOptions::default()).await;
    stack.put("anyway.geojson", SAMPLE).await;
    let mut config = stack.config();
    config.ecs_agent_uri = Some(agent.uri.clone());
    let worker = RunningWorker::start(&stack, config);
    stack.send_event(&["anyway.geojson"]).await;
    stack
        .wait_output(&stack.outcome_key("anyway.geojson"))
        .await;
    stack.wait_drained().await;
    assert!(!agent.bodies().is_empty(), "the worker did try the agent");
    worker.stop().await;
}

/// On shutdown the worker stops receiving but lets a held file finish within the grace
/// period: its result is written and its message deleted. (The classic poller died
/// mid-file on SIGTERM.)
#[tokio::test]
async fn shutdown_lets_held_files_finish_within_the_grace_period() {
    let stack = Stack::new(StackOptions::default()).await;
    stack.put("finishing.geojson", SAMPLE).await;
    let mut config = stack.config();
    config.shutdown_grace = Duration::from_secs(30);
    config.processor = exec("sleep 2; cat".to_owned());
    let worker = RunningWorker::start(&stack, config);
    stack.send_event(&["finishing.geojson"]).await;
    stack.wait_held(1).await;
    worker.stop().await;
    assert!(
        stack
            .output(&stack.outcome_key("finishing.geojson"))
            .await
            .is_some(),
        "the held file was finished before the worker returned"
    );
    assert_eq!(stack.counts(&stack.queue_url).await, (0, 0));
}

/// A file still running when the grace period ends is abandoned and its message released
/// with visibility 0, so another worker can take it at once instead of after the timeout.
#[tokio::test]
async fn shutdown_releases_unfinished_messages_for_immediate_redelivery() {
    let stack = Stack::new(StackOptions::default()).await;
    stack.put("unfinished.geojson", SAMPLE).await;
    let mut config = stack.config();
    config.concurrency = 1;
    config.visibility_timeout = Duration::from_secs(600);
    config.shutdown_grace = Duration::from_millis(500);
    config.processor = exec("sleep 60; cat".to_owned());
    let worker = RunningWorker::start(&stack, config);
    stack.send_event(&["unfinished.geojson"]).await;
    stack.wait_held(1).await;
    worker.stop().await;
    stack
        .assert_released_unprocessed("unfinished.geojson")
        .await;
}

/// A shutdown that comes while the worker is in a long poll does not strand the messages that
/// poll is then given: the worker lets the receive return instead of dropping it, processes
/// none of its messages, and releases them with visibility 0, so they are visible again at
/// once rather than after their visibility timeout (ten minutes here).
#[tokio::test]
async fn messages_received_by_a_poll_interrupted_by_shutdown_are_visible_again_at_once() {
    let stack = Stack::new(StackOptions::default()).await;
    let late = ["late-1.geojson", "late-2.geojson", "late-3.geojson"];
    for key in late.iter().chain(&["warm-up.geojson"]) {
        stack.put(key, SAMPLE).await;
    }
    let mut config = stack.config();
    config.visibility_timeout = Duration::from_secs(600);
    config.receive_wait = Duration::from_secs(20);
    config.shutdown_grace = Duration::from_secs(30);
    let mut worker = RunningWorker::start(&stack, config);
    // Once a first file is done and the queue is empty, the worker is in a 20 s long poll.
    stack.send_event(&["warm-up.geojson"]).await;
    stack
        .wait_output(&stack.outcome_key("warm-up.geojson"))
        .await;
    stack.wait_drained().await;

    worker.request_shutdown();
    let entries = late.iter().enumerate().map(|(index, key)| {
        let body =
            json!({"Records": [record(&stack.input_bucket, key, "ObjectCreated:Put", "2.1")]});
        SendMessageBatchRequestEntry::builder()
            .id(index.to_string())
            .message_body(body.to_string())
            .build()
            .expect("batch entry")
    });
    let sent = stack
        .sqs
        .send_message_batch()
        .queue_url(&stack.queue_url)
        .set_entries(Some(entries.collect()))
        .send()
        .await
        .expect("send the late messages");
    assert!(sent.failed().is_empty(), "{:?}", sent.failed());
    worker.stop().await;

    assert_eq!(
        stack.counts(&stack.queue_url).await,
        (3, 0),
        "no late message is left hidden"
    );
    let again = stack
        .sqs
        .receive_message()
        .queue_url(&stack.queue_url)
        .max_number_of_messages(10)
        .message_system_attribute_names(MessageSystemAttributeName::ApproximateReceiveCount)
        .message_attribute_names("All")
        .send()
        .await
        .expect("receive");
    let counts: Vec<(u32, Option<&str>)> = again
        .messages()
        .iter()
        .map(|message| {
            (
                geobatch_worker::queue::receive_count(message),
                geobatch_worker::queue::string_attribute(
                    message,
                    geobatch_worker::message::RELEASE_HOPS_ATTRIBUTE,
                ),
            )
        })
        .collect();
    assert_eq!(
        counts.len(),
        3,
        "every late message can be received at once"
    );
    // The poll did receive late messages, and handed them back as fresh copies (receive
    // count 1, one hop) so the release does not count towards the DLQ.
    assert!(
        counts.contains(&(1, Some("1"))),
        "the interrupted poll did receive late messages before handing them back: {counts:?}"
    );
    assert!(counts.iter().all(|(count, _)| *count == 1), "{counts:?}");
    assert_eq!(
        stack.output_keys().await,
        vec![stack.outcome_key("warm-up.geojson")],
        "messages received during shutdown are not processed"
    );
}

/// A work dir that cannot take downloads stops the worker at start-up, naming the flag and
/// the path, before it receives anything: no message is taken only to fail its download.
#[tokio::test]
async fn a_missing_work_dir_stops_the_binary_at_start_up_with_a_clear_error() {
    let stack = Stack::new(StackOptions::default()).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let missing = dir.path().join("no-such-dir");
    let output = Command::new(env!("CARGO_BIN_EXE_geobatch-worker"))
        .arg("run")
        .envs(Emulator::shared().child_env())
        .env("GEOBATCH_QUEUE_URL", &stack.queue_url)
        .env(
            "GEOBATCH_OUTPUT",
            format!("s3://{}/results/", stack.output_bucket),
        )
        .env("GEOBATCH_ALLOWED_BUCKETS", &stack.input_bucket)
        .env("GEOBATCH_METRICS_ADDR", "127.0.0.1:0")
        .env("GEOBATCH_WORK_DIR", &missing)
        .env_remove("ECS_AGENT_URI")
        .output()
        .expect("run the worker binary");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "stderr:\n{stderr}");
    assert!(
        stderr.contains(&format!(
            "cannot stage downloads in --work-dir {}",
            missing.display()
        )),
        "stderr:\n{stderr}"
    );
    assert!(
        stderr.contains("No such file or directory"),
        "stderr:\n{stderr}"
    );
}

/// The binary as ECS starts it: configured by environment variables only, it processes a
/// file, logs JSON lines naming the message, bucket, key and outcome, serves Prometheus
/// metrics, and on SIGTERM exits 0.
#[tokio::test]
async fn the_binary_configured_by_environment_processes_files_and_exits_0_on_sigterm() {
    let stack = Stack::new(StackOptions::default()).await;
    stack.put("bin.geojson", SAMPLE).await;
    let metrics_addr = {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").expect("probe port");
        probe.local_addr().expect("addr")
    };
    let mut child = Command::new(env!("CARGO_BIN_EXE_geobatch-worker"))
        .arg("run")
        .envs(Emulator::shared().child_env())
        .env("GEOBATCH_QUEUE_URL", &stack.queue_url)
        .env(
            "GEOBATCH_OUTPUT",
            format!("s3://{}/results/", stack.output_bucket),
        )
        .env("GEOBATCH_ALLOWED_BUCKETS", &stack.input_bucket)
        .env("GEOBATCH_METRICS_ADDR", metrics_addr.to_string())
        .env("GEOBATCH_RECEIVE_WAIT", "1s")
        .env_remove("ECS_AGENT_URI")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the worker binary");
    let mut stderr_pipe = child.stderr.take().expect("stderr");
    let stderr_reader = std::thread::spawn(move || {
        let mut text = String::new();
        let _read = stderr_pipe.read_to_string(&mut text);
        text
    });
    stack.send_event(&["bin.geojson"]).await;
    stack.wait_output(&stack.outcome_key("bin.geojson")).await;
    stack.wait_drained().await;

    let metrics = wait_for("the metrics endpoint", || async {
        let body = reqwest::get(format!("http://{metrics_addr}/metrics"))
            .await
            .ok()?
            .text()
            .await
            .ok()?;
        body.contains("geobatch_worker_files_succeeded_total 1")
            .then_some(body)
    })
    .await;
    for name in [
        "geobatch_worker_messages_received_total 1",
        "geobatch_worker_messages_deleted_total 1",
        "geobatch_worker_bytes_processed_total",
        "geobatch_worker_processing_seconds_count 1",
        "geobatch_worker_messages_in_flight 0",
        "geobatch_worker_scratch_reserved_bytes 0",
    ] {
        assert!(metrics.contains(name), "{name} missing from:\n{metrics}");
    }

    let killed = Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status()
        .expect("send SIGTERM");
    assert!(killed.success());
    let status = tokio::time::timeout(
        support::DEADLINE,
        tokio::task::spawn_blocking(move || child.wait()),
    )
    .await
    .expect("the worker exits after SIGTERM")
    .expect("join")
    .expect("wait for the worker");
    let stderr = stderr_reader.join().expect("stderr reader");
    assert_eq!(status.code(), Some(0), "stderr:\n{stderr}");
    let lines: Vec<Value> = stderr
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|_| panic!("not JSON: {line}")))
        .collect();
    let processed = lines
        .iter()
        .find(|line| line["message"] == "file processed")
        .unwrap_or_else(|| panic!("no `file processed` line in:\n{stderr}"));
    assert_eq!(processed["key"], "bin.geojson");
    assert_eq!(processed["bucket"], stack.input_bucket.as_str());
    assert_eq!(processed["outcome"], "succeeded");
    assert!(
        processed["message_id"]
            .as_str()
            .is_some_and(|id| !id.is_empty())
    );
    assert!(
        lines.iter().any(|line| line["signal"] == "SIGTERM"),
        "the shutdown is logged"
    );
    // The work dir's free space is read at start-up and set against the default budget
    // (a warning where the disk has less free than that).
    let space = lines
        .iter()
        .find(|line| line["budget_bytes"] == 12u64 << 30)
        .unwrap_or_else(|| panic!("no scratch-space line in:\n{stderr}"));
    assert!(
        space["available_bytes"].as_u64().is_some_and(|n| n > 0),
        "{space}"
    );
}

/// `run --help` documents every setting with its environment variable.
#[test]
fn run_help_names_every_environment_variable() {
    let output = Command::new(env!("CARGO_BIN_EXE_geobatch-worker"))
        .args(["run", "--help"])
        .output()
        .expect("run --help");
    let help = String::from_utf8_lossy(&output.stdout);
    for variable in [
        "GEOBATCH_QUEUE_URL",
        "GEOBATCH_OUTPUT",
        "GEOBATCH_ALLOWED_BUCKETS",
        "GEOBATCH_CONCURRENCY",
        "GEOBATCH_VISIBILITY_TIMEOUT",
        "GEOBATCH_MAX_OBJECT_BYTES",
        "GEOBATCH_SCRATCH_BUDGET",
        "GEOBATCH_SHUTDOWN_GRACE",
        "GEOBATCH_METRICS_ADDR",
        "GEOBATCH_EXEC",
        "GEOBATCH_LOG_FORMAT",
        "ECS_AGENT_URI",
    ] {
        assert!(help.contains(variable), "{variable} missing from:\n{help}");
    }
}
