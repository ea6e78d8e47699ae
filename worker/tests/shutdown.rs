//! Issue 12, class 4: the worker binary's stop is bounded whatever it is doing. A built-in
//! analysis runs on a blocking thread, which cannot be abandoned; it is cancelled when its
//! message is released at the end of the grace, so the process exits within
//! `--shutdown-grace` plus `SHUTDOWN_MARGIN` (and exits at once on a second signal), as
//! ECS expects before its SIGKILL.

mod support;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use geobatch_common::shutdown::EXIT_SECOND_SIGNAL;
use geobatch_common::testing::Emulator;
use geobatch_worker::service::SHUTDOWN_MARGIN;
use support::{Stack, StackOptions};

/// A FeatureCollection of `features` zigzag polygons of 8 000 vertices with short integer
/// coordinates: many vertices per byte, so its analysis takes long (seconds per 100
/// features in a debug build) for an upload the emulator takes quickly.
fn long_input(features: usize) -> String {
    const SIDE: u32 = 4000;
    let mut ring = String::new();
    for x in 0..SIDE {
        ring.push_str(&format!("[{x},{}],", x % 2));
    }
    ring.push_str(&format!("[{SIDE},5],"));
    for x in (1..=SIDE).rev() {
        ring.push_str(&format!("[{x},10],"));
    }
    ring.push_str("[0,0]");
    let feature = format!(
        r#"{{"type":"Feature","properties":{{}},"geometry":{{"type":"Polygon","coordinates":[[{ring}]]}}}}"#
    );
    format!(
        r#"{{"type":"FeatureCollection","features":[{}]}}"#,
        vec![feature; features].join(",")
    )
}

/// The worker binary on `stack`'s queue, and its stderr lines as they come.
fn start_worker(stack: &Stack, grace: &str) -> (Child, mpsc::Receiver<String>) {
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
        // Shorter than the 500 ms grace below: a long poll the grace cuts short would be left
        // waiting on the server side and could be handed the message's fresh copy (see
        // docs/worker.md, "Graceful shutdown").
        .env("GEOBATCH_RECEIVE_WAIT", "0s")
        .env("GEOBATCH_SHUTDOWN_GRACE", grace)
        .env("GEOBATCH_LOG", "info,geobatch_worker=debug")
        .env_remove("ECS_AGENT_URI")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the worker binary");
    let stderr = child.stderr.take().expect("stderr");
    let (lines_tx, lines) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if lines_tx.send(line).is_err() {
                return;
            }
        }
    });
    (child, lines)
}

/// Waits for a stderr line containing `needle`, returning every line read so far.
fn wait_for_line(lines: &mpsc::Receiver<String>, needle: &str) -> Vec<String> {
    let deadline = Instant::now() + support::DEADLINE;
    let mut seen = Vec::new();
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        match lines.recv_timeout(left) {
            Ok(line) => {
                let found = line.contains(needle);
                seen.push(line);
                if found {
                    return seen;
                }
            }
            Err(_) => break,
        }
    }
    panic!("no `{needle}` line in:\n{}", seen.join("\n"));
}

fn signal(child: &Child, name: &str) {
    let sent = Command::new("kill")
        .arg(format!("-{name}"))
        .arg(child.id().to_string())
        .status()
        .expect("send a signal");
    assert!(sent.success());
}

/// Waits (bounded) for the worker to exit; returns its status and how long it took.
async fn exit_of(mut child: Child) -> (ExitStatus, Duration) {
    let started = Instant::now();
    let status = tokio::time::timeout(
        support::DEADLINE,
        tokio::task::spawn_blocking(move || child.wait()),
    )
    .await
    .expect("the worker exits")
    .expect("join")
    .expect("wait for the worker");
    (status, started.elapsed())
}

#[tokio::test]
async fn sigterm_during_a_long_analysis_exits_within_the_grace_and_releases_the_message() {
    let stack = Stack::new(StackOptions::default()).await;
    stack.put("long.geojson", &long_input(800)).await;
    let grace = Duration::from_millis(500);
    let (child, lines) = start_worker(&stack, "500ms");
    stack.send_event(&["long.geojson"]).await;
    wait_for_line(&lines, "analysis started");

    signal(&child, "TERM");
    let (status, took) = exit_of(child).await;

    // Exit 0, not the deadline's EXIT_OVERRAN: the analysis was cancelled and the message
    // handed back, not cut off by the stop deadline.
    let log: Vec<String> = lines.try_iter().collect();
    assert_eq!(status.code(), Some(0), "log:\n{}", log.join("\n"));
    assert!(
        took < grace + SHUTDOWN_MARGIN,
        "the worker took {took:?} to stop (grace {grace:?}, margin {SHUTDOWN_MARGIN:?})"
    );
    assert!(
        log.iter().any(|l| l.contains("\"reason\":\"shutdown\"")),
        "the message is released for shutdown:\n{}",
        log.join("\n")
    );
    stack.assert_released_unprocessed("long.geojson").await;
}

#[tokio::test]
async fn a_second_signal_exits_at_once() {
    let stack = Stack::new(StackOptions::default()).await;
    stack.put("long.geojson", &long_input(400)).await;
    let (child, lines) = start_worker(&stack, "25s");
    stack.send_event(&["long.geojson"]).await;
    wait_for_line(&lines, "analysis started");

    signal(&child, "TERM");
    wait_for_line(&lines, "stopping gracefully");
    signal(&child, "INT");
    let (status, _took) = exit_of(child).await;

    assert_eq!(status.code(), Some(EXIT_SECOND_SIGNAL));
}
