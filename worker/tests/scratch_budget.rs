//! The scratch-disk budget against the emulator: files that do not fit beside each other
//! are downloaded one after the other, not side by side, and both still get their outcome.

mod support;

use std::time::Duration;

use geobatch_worker::config::Processor;
use geobatch_worker::exec::ExecOptions;
use support::{RunningWorker, Stack, StackOptions, scratch_file};

/// With two slots and a 5000-byte budget, two 3000-byte files never hold scratch space at
/// the same time: the `--exec` command (which runs while the download is on disk) logs its
/// start and end, and the runs never overlap. Before the budget both downloads ran at once.
#[tokio::test]
async fn files_larger_than_half_the_budget_are_processed_one_at_a_time() {
    let stack = Stack::new(StackOptions::default()).await;
    let body = format!("{{\"padding\": \"{}\"}}", "x".repeat(2985));
    assert_eq!(body.len(), 3000);
    for key in ["big-1.geojson", "big-2.geojson"] {
        stack.put(key, &body).await;
    }
    let (_dir, log) = scratch_file("runs.log");
    let log_path = log.display().to_string();
    let mut config = stack.config();
    config.concurrency = 2;
    config.max_object_bytes = 5000;
    config.scratch_budget = 5000;
    config.processor = Processor::Exec(ExecOptions::new(
        format!(
            r#"f() {{ echo "start $GEOBATCH_SOURCE_KEY $(date +%s.%N)" >> '{log_path}'; sleep 1; echo "end $GEOBATCH_SOURCE_KEY $(date +%s.%N)" >> '{log_path}'; wc -c < "$1"; }}; f"#
        ),
        Duration::from_secs(30),
    ));
    let worker = RunningWorker::start(&stack, config);
    // Two messages, so the two slots each take one file.
    stack.send_event(&["big-1.geojson"]).await;
    stack.send_event(&["big-2.geojson"]).await;
    for key in ["big-1.geojson", "big-2.geojson"] {
        let outcome = stack.wait_output(&stack.outcome_key(key)).await;
        assert_eq!(outcome["status"], "ok", "{outcome}");
        assert_eq!(outcome["exec_output"], 3000, "{outcome}");
        assert_eq!(outcome["source"]["size_bytes"], 3000, "{outcome}");
    }
    stack.wait_drained().await;
    worker.stop().await;
    let runs = std::fs::read_to_string(&log).expect("the command's log");
    let events: Vec<&str> = runs
        .lines()
        .map(|line| line.split(' ').next().unwrap_or_default())
        .collect();
    assert_eq!(
        events,
        ["start", "end", "start", "end"],
        "the files overlapped on disk:\n{runs}"
    );
}
