//! The binary as a user runs it: `check-config`, `decide` and `run --dry-run`, against the
//! emulator through the standard AWS environment variables.

mod support;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use geobatch_common::testing::Emulator;
use support::Fleet;

const BINARY: &str = env!("CARGO_BIN_EXE_geobatch-controller");

fn write_config(dir: &Path, fleet: &Fleet) -> std::path::PathBuf {
    let file = fleet.config(|p| p.require_empty_receives = false);
    let path = dir.join("controller.toml");
    std::fs::write(&path, toml::to_string(&file).expect("serialize")).expect("write config");
    path
}

/// A minimal valid pool; tests append the fields they vary.
const MINIMAL_POOL: &str = "[[pool]]\nname = \"geo\"\n\
    queue_url = \"https://sqs.us-east-1.amazonaws.com/1/q\"\n\
    cluster = \"c\"\nservice = \"s\"\nauto_scaling_group = \"g\"\n";

/// Runs `check-config` on the minimal pool plus `extra` lines.
fn check_config(extra: &str) -> std::process::Output {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("c.toml");
    std::fs::write(&path, format!("{MINIMAL_POOL}{extra}")).expect("write");
    Command::new(BINARY)
        .arg("check-config")
        .arg(&path)
        .output()
        .expect("run")
}

#[test]
fn check_config_prints_the_effective_config() {
    let output = check_config("");
    assert!(output.status.success(), "{output:?}");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("valid"), "{stdout}");
    for line in [
        "target_p95_secs = 45.0",
        "cold_start_secs = 105.0",
        "idle_window_secs = 840.0",
        "poll_interval_secs = 5.0",
        "max_tasks = 20",
        "slots_per_task = 2",
        "tasks_per_instance = 2",
    ] {
        assert!(stdout.contains(line), "missing {line}: {stdout}");
    }
}

#[test]
fn check_config_names_the_field_and_the_fix() {
    let output = check_config("max_tasks = 0\n");
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("pool \"geo\".max_tasks"), "{stderr}");
    assert!(
        stderr.contains("fix: set max_tasks to at least 1"),
        "{stderr}"
    );
}

/// `decide` prints one decision per pool with the observation and the calls it would
/// make, and makes none of them.
#[tokio::test]
async fn decide_prints_the_decision_and_changes_nothing() {
    let emulator = Emulator::shared();
    let fleet = Fleet::create(emulator, 0, 0).await;
    fleet.send(3).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let config = write_config(dir.path(), &fleet);
    let before = fleet.state().await;

    let output = Command::new(BINARY)
        .args(["decide", "--config"])
        .arg(&config)
        .envs(emulator.child_env())
        .output()
        .expect("run decide");
    assert!(output.status.success(), "{output:?}");
    let decisions: serde_json::Value =
        serde_json::from_slice(&output.stdout).expect("stdout is JSON");
    let decision = &decisions[0];
    assert_eq!(decision["pool"], fleet.queue_name.as_str());
    assert_eq!(decision["observation"]["queue"]["visible"], 3);
    assert_eq!(decision["desired_tasks"], 3);
    assert_eq!(decision["desired_instances"], 3);
    let calls: Vec<&str> = decision["calls"]
        .as_array()
        .expect("calls")
        .iter()
        .filter_map(|c| c["call"].as_str())
        .collect();
    assert_eq!(calls, ["SetDesiredCapacity", "UpdateService"]);
    assert_eq!(fleet.state().await, before);
}

/// `decide` on a pool whose resources do not exist says which reads failed, holds, and
/// exits non-zero.
#[tokio::test]
async fn decide_reports_failed_observations_and_exits_non_zero() {
    let emulator = Emulator::shared();
    let fleet = Fleet::create(emulator, 0, 0).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let mut file = fleet.config(|p| p.service = "no-such-service".to_owned());
    file.api_timeout_secs = 5.0;
    let config = dir.path().join("controller.toml");
    std::fs::write(&config, toml::to_string(&file).expect("toml")).expect("write");

    let output = Command::new(BINARY)
        .args(["decide", "--config"])
        .arg(&config)
        .envs(emulator.child_env())
        .output()
        .expect("run decide");
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    let decisions: serde_json::Value =
        serde_json::from_slice(&output.stdout).expect("stdout is JSON");
    assert_eq!(decisions[0]["direction"], "hold");
    assert_eq!(decisions[0]["calls"], serde_json::json!([]));
    let errors = decisions[0]["observation_errors"].to_string();
    assert!(
        errors.contains("DescribeServices") && errors.contains("no-such-service"),
        "{errors}"
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("could not observe pool"), "{stderr}");
}

/// `run --dry-run` logs `would …` with the reason and a decision record, makes no
/// mutating call, and exits cleanly on SIGTERM.
#[tokio::test]
async fn run_dry_run_logs_would_and_changes_nothing() {
    let emulator = Emulator::shared();
    let fleet = Fleet::create(emulator, 0, 1).await;
    fleet.send(2).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let config = write_config(dir.path(), &fleet);
    let before = fleet.state().await;

    let mut child = Command::new(BINARY)
        .args(["run", "--dry-run", "--listen", "127.0.0.1:0", "--config"])
        .arg(&config)
        .envs(emulator.child_env())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the controller");
    let stderr = child.stderr.take().expect("stderr");
    let stdout = child.stdout.take().expect("stdout");
    let (lines, seen) = mpsc::channel();
    let stderr_lines = lines.clone();
    let readers = [
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let _ = stderr_lines.send(("stderr", line));
            }
        }),
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = lines.send(("stdout", line));
            }
        }),
    ];

    let mut would = None;
    let mut record = None;
    while would.is_none() || record.is_none() {
        let (stream, line) = seen
            .recv_timeout(Duration::from_secs(20))
            .expect("the controller logged a would-call and a decision record");
        match stream {
            "stderr" if line.contains("would set ECS service") => would = Some(line),
            "stdout" => record = Some(line),
            _ => {}
        }
    }
    // Let it poll a few more times before checking nothing changed.
    std::thread::sleep(Duration::from_secs(1));
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("send SIGTERM");
    assert!(status.success());
    let exit = child.wait().expect("controller exits");
    for reader in readers {
        reader.join().expect("reader thread");
    }

    let would: serde_json::Value =
        serde_json::from_str(&would.expect("would line")).expect("stderr log is JSON");
    let message = would["message"].as_str().expect("message");
    assert!(message.contains("desired count 0 -> 2"), "{message}");
    assert!(
        would["reason"]
            .as_str()
            .is_some_and(|r| r.contains("2 messages")),
        "{would}"
    );
    let record: serde_json::Value =
        serde_json::from_str(&record.expect("record")).expect("decision record is JSON");
    assert_eq!(record["dry_run"], true);
    assert_eq!(record["desired_tasks"], 2);
    assert!(exit.success(), "exit after SIGTERM: {exit:?}");
    assert_eq!(fleet.state().await, before);
}
