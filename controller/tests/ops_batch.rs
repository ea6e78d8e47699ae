//! The batch commands against the emulator with the real worker: backfill queues what has
//! no outcome and nothing the second time, redrive brings dead-lettered work back until it
//! completes, and a report's totals are the sums of its per-file rows.

#[path = "../../worker/tests/support/mod.rs"]
mod worker_support;

use geobatch_common::s3_event::{ObjectRef, created_body};
use geobatch_controller::ops::backfill::{self, BackfillArgs};
use geobatch_controller::ops::redrive::{self, RedriveArgs};
use geobatch_controller::ops::report::{self, OutputFormat, ReportArgs};
use geobatch_controller::ops::setup::OpsClients;
use worker_support::{RunningWorker, SAMPLE, Stack, StackOptions, wait_for};

/// A file cut off mid-upload, which the analysis reports as `truncated`.
const BROKEN: &str = r#"{"type":"FeatureCollection","features":[{"type":"Feature""#;

fn backfill_args(stack: &Stack) -> BackfillArgs {
    BackfillArgs {
        source: format!("s3://{}/batch/", stack.input_bucket),
        queue_url: stack.queue_url.clone(),
        output: Some(format!("s3://{}/results/", stack.output_bucket)),
        allowed_buckets: vec![stack.input_bucket.clone()],
        suffix: ".geojson".to_owned(),
        force: false,
        dry_run: false,
        rate: 1000,
        format: Some(OutputFormat::Json),
    }
}

fn redrive_args(stack: &Stack) -> RedriveArgs {
    RedriveArgs {
        queue_url: stack.queue_url.clone(),
        dlq_url: None,
        error_kinds: Vec::new(),
        output: Some(format!("s3://{}/results/", stack.output_bucket)),
        max: None,
        dry_run: false,
        managed: false,
        format: Some(OutputFormat::Json),
    }
}

/// Runs the worker until every key in `keys` has an outcome and the queue is drained.
async fn process(stack: &Stack, keys: &[&str]) {
    let worker = RunningWorker::start(stack, stack.config());
    for key in keys {
        wait_for(&format!("an outcome for {key}"), || async {
            let outputs = stack.output_keys().await;
            outputs
                .iter()
                .any(|o| *o == stack.outcome_key(key))
                .then_some(())
        })
        .await;
    }
    stack.wait_drained().await;
    worker.stop().await;
}

/// A stack whose queue has a dead-letter queue, its clients and the DLQ's URL.
async fn stack_with_dlq() -> (Stack, OpsClients, String) {
    let stack = Stack::new(StackOptions {
        max_receive_count: Some(3),
        ..StackOptions::default()
    })
    .await;
    let clients = OpsClients::new(&stack.sdk);
    let dlq = stack.dlq_url.clone().expect("dlq");
    (stack, clients, dlq)
}

/// Sends a work item for `key` of the input bucket straight to the dead-letter queue, as a
/// message that failed its last receive would be.
async fn dead_letter(stack: &Stack, key: &str) {
    let body = created_body(
        &ObjectRef {
            bucket: stack.input_bucket.clone(),
            key: key.to_owned(),
            size: None,
            etag: None,
            version_id: None,
        },
        "us-east-1",
        "test",
    );
    stack
        .sqs
        .send_message()
        .queue_url(stack.dlq_url.as_deref().expect("stack has a DLQ"))
        .message_body(body)
        .send()
        .await
        .expect("send to the DLQ");
}

#[tokio::test]
async fn backfill_run_twice_queues_nothing_new() {
    let stack = Stack::new(StackOptions::default()).await;
    let clients = OpsClients::new(&stack.sdk);
    let keys = [
        "batch/a.geojson",
        "batch/sub/b c.geojson",
        "batch/d.geojson",
    ];
    for key in keys {
        stack.put(key, SAMPLE).await;
    }
    stack.put("batch/readme.txt", "not geojson").await;
    stack.put("elsewhere/e.geojson", SAMPLE).await;

    let mut out = Vec::new();
    let mut dry = backfill_args(&stack);
    dry.dry_run = true;
    let planned = backfill::run(&clients, &dry, &mut out)
        .await
        .expect("dry run");
    assert_eq!(
        (planned.queued, planned.listed, planned.skipped_suffix),
        (3, 4, 1)
    );
    assert_eq!(
        stack.counts(&stack.queue_url).await,
        (0, 0),
        "a dry run sends nothing"
    );

    let first = backfill::run(&clients, &backfill_args(&stack), &mut out)
        .await
        .expect("first run");
    assert_eq!(first.queued, 3);
    assert_eq!(first.failed, 0);
    assert_eq!(stack.counts(&stack.queue_url).await, (3, 0));

    // The queued items are what the worker accepts: it analyses every one of them.
    process(&stack, &keys).await;
    for key in keys {
        let result = stack.wait_output(&stack.outcome_key(key)).await;
        assert_eq!(result["status"], "ok", "{key}: {result}");
        assert_eq!(result["source"]["key"], key);
    }

    let second = backfill::run(&clients, &backfill_args(&stack), &mut out)
        .await
        .expect("second run");
    assert_eq!(
        (second.queued, second.skipped_current),
        (0, 3),
        "{second:?}"
    );
    assert_eq!(
        stack.counts(&stack.queue_url).await,
        (0, 0),
        "nothing new was queued"
    );

    // A re-upload of other bytes makes its outcome stale; --force queues everything.
    stack.put("batch/a.geojson", &format!("{SAMPLE}\n")).await;
    let third = backfill::run(&clients, &backfill_args(&stack), &mut out)
        .await
        .expect("third run");
    assert_eq!(third.queued, 1, "{third:?}");
    let mut forced = backfill_args(&stack);
    forced.force = true;
    forced.output = None;
    let all = backfill::run(&clients, &forced, &mut out)
        .await
        .expect("forced run");
    assert_eq!(all.queued, 3);
    assert_eq!(stack.counts(&stack.queue_url).await.0, 4);
}

#[tokio::test]
async fn backfill_refuses_buckets_the_workers_do_not_allow() {
    let stack = Stack::new(StackOptions::default()).await;
    let clients = OpsClients::new(&stack.sdk);
    let mut args = backfill_args(&stack);
    args.allowed_buckets = vec!["someone-else".to_owned()];
    let err = backfill::run(&clients, &args, &mut Vec::new())
        .await
        .expect_err("refused");
    assert_eq!(
        err.exit_status(),
        geobatch_controller::ops::ExitStatus::Usage
    );
    assert!(err.to_string().contains("--allowed-buckets"), "{err}");
}

#[tokio::test]
async fn redrive_of_n_dead_lettered_messages_ends_with_n_completed_outcomes() {
    let (stack, clients, dlq) = stack_with_dlq().await;
    let keys: Vec<String> = (0..7).map(|i| format!("batch/f{i}.geojson")).collect();
    for key in &keys {
        stack.put(key, SAMPLE).await;
        dead_letter(&stack, key).await;
    }

    let mut dry = redrive_args(&stack);
    dry.dry_run = true;
    let planned = redrive::run(&clients, &dry, &mut Vec::new())
        .await
        .expect("dry run");
    assert_eq!(
        (planned.dead_lettered, planned.moved),
        (7, 7),
        "{planned:?}"
    );
    assert_eq!(planned.by_kind.get(redrive::NO_OUTCOME), Some(&7));
    assert_eq!(
        stack.counts(&dlq).await,
        (7, 0),
        "a dry run releases every message"
    );

    let moved = redrive::run(&clients, &redrive_args(&stack), &mut Vec::new())
        .await
        .expect("redrive");
    assert_eq!(
        (moved.moved, moved.failed, moved.kept),
        (7, 0, 0),
        "{moved:?}"
    );
    assert_eq!(stack.counts(&dlq).await, (0, 0));
    assert_eq!(stack.counts(&stack.queue_url).await, (7, 0));

    let key_refs: Vec<&str> = keys.iter().map(String::as_str).collect();
    process(&stack, &key_refs).await;
    for key in &keys {
        assert_eq!(
            stack.wait_output(&stack.outcome_key(key)).await["status"],
            "ok"
        );
    }
}

#[tokio::test]
async fn redrive_moves_only_the_error_kinds_asked_for() {
    let (stack, clients, dlq) = stack_with_dlq().await;
    stack.put("batch/good.geojson", SAMPLE).await;
    stack.put("batch/broken.geojson", BROKEN).await;
    stack.put("batch/never.geojson", SAMPLE).await;
    // Outcomes for two of them: one ok, one truncated; none for the third.
    let mut first = backfill_args(&stack);
    first.source = format!("s3://{}/batch/b", stack.input_bucket);
    backfill::run(&clients, &first, &mut Vec::new())
        .await
        .expect("backfill broken");
    first.source = format!("s3://{}/batch/g", stack.input_bucket);
    backfill::run(&clients, &first, &mut Vec::new())
        .await
        .expect("backfill good");
    process(&stack, &["batch/good.geojson", "batch/broken.geojson"]).await;
    for key in [
        "batch/good.geojson",
        "batch/broken.geojson",
        "batch/never.geojson",
    ] {
        dead_letter(&stack, key).await;
    }

    let mut only = redrive_args(&stack);
    only.error_kinds = vec!["truncated".to_owned()];
    let moved = redrive::run(&clients, &only, &mut Vec::new())
        .await
        .expect("filtered redrive");
    assert_eq!((moved.moved, moved.kept), (1, 2), "{moved:?}");
    assert_eq!(moved.by_kind.get("truncated"), Some(&1));
    assert_eq!(
        stack.counts(&dlq).await,
        (2, 0),
        "the others are back, visible, in the DLQ"
    );
    assert_eq!(stack.counts(&stack.queue_url).await, (1, 0));

    only.error_kinds = vec![redrive::NO_OUTCOME.to_owned()];
    let moved = redrive::run(&clients, &only, &mut Vec::new())
        .await
        .expect("no-outcome redrive");
    assert_eq!((moved.moved, moved.kept), (1, 1), "{moved:?}");

    only.output = None;
    let err = redrive::run(&clients, &only, &mut Vec::new())
        .await
        .expect_err("filter needs --output");
    assert_eq!(
        err.exit_status(),
        geobatch_controller::ops::ExitStatus::Usage
    );
}

#[tokio::test]
async fn report_totals_equal_the_per_file_outcomes() {
    let stack = Stack::new(StackOptions::default()).await;
    let clients = OpsClients::new(&stack.sdk);
    let keys = [
        "batch/one.geojson",
        "batch/two, with comma.geojson",
        "batch/three.geojson",
        "batch/broken.geojson",
    ];
    for key in keys {
        stack
            .put(
                key,
                if key.contains("broken") {
                    BROKEN
                } else {
                    SAMPLE
                },
            )
            .await;
    }
    backfill::run(&clients, &backfill_args(&stack), &mut Vec::new())
        .await
        .expect("backfill");
    process(&stack, &keys).await;

    let dir = tempfile::tempdir().expect("tempdir");
    let args = ReportArgs {
        output: format!("s3://{}/results/", stack.output_bucket),
        out: dir.path().to_owned(),
        format: Some(OutputFormat::Text),
        rows: 2,
        concurrency: 3,
    };
    let mut stdout = Vec::new();
    let summary = report::run(&clients, &args, &mut stdout)
        .await
        .expect("report");
    let totals = &summary.totals;
    assert_eq!(
        (totals.files, totals.ok, totals.error),
        (4, 3, 1),
        "{totals:?}"
    );
    assert_eq!(totals.error_kinds.get("truncated"), Some(&1), "{totals:?}");

    // The CSV's rows, summed, are the totals; each row is one outcome the worker wrote.
    let mut csv = csv_rows(&std::fs::read_to_string(&summary.files[0]).expect("csv"));
    csv.sort();
    assert_eq!(csv.len(), 4);
    let column = |name: &str| {
        let header = geobatch_controller::ops::report::write::CSV_HEADER;
        header.split(',').position(|c| c == name).expect("column")
    };
    let sum = |name: &str| -> u64 {
        csv.iter()
            .map(|r| r[column(name)].parse::<u64>().unwrap_or(0))
            .sum()
    };
    assert_eq!(sum("features"), totals.features);
    assert_eq!(sum("vertices"), totals.vertices);
    assert_eq!(totals.features, 6, "three files of two features");
    for row in &csv {
        let outcome = stack.wait_output(&row[column("outcome_key")]).await;
        assert_eq!(
            row[column("status")],
            outcome["status"].as_str().expect("status")
        );
        assert_eq!(
            row[column("key")],
            outcome["source"]["key"].as_str().expect("key")
        );
        if let Some(features) = outcome["analysis"]["features"].as_u64() {
            assert_eq!(row[column("features")], features.to_string());
        }
    }
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&summary.files[1]).expect("json"))
            .expect("valid JSON");
    assert_eq!(json["files"].as_array().map(Vec::len), Some(4));
    assert_eq!(json["totals"]["features"], totals.features);
    let svg = std::fs::read_to_string(&summary.files[2]).expect("svg");
    assert_eq!(
        svg.matches("<rect").count(),
        1 + 3,
        "background and one box per analysed file"
    );
    let text = String::from_utf8(stdout).expect("utf-8");
    assert!(
        text.contains("TOTAL 4 files") && text.contains("and 2 more files"),
        "{text}"
    );
}

/// Splits CSV text into rows of fields (quotes as RFC 4180 writes them), header dropped.
fn csv_rows(text: &str) -> Vec<Vec<String>> {
    text.lines()
        .skip(1)
        .map(|line| {
            let mut fields = vec![String::new()];
            let mut quoted = false;
            let mut chars = line.chars().peekable();
            while let Some(c) = chars.next() {
                match c {
                    '"' if quoted && chars.peek() == Some(&'"') => {
                        chars.next();
                        fields.last_mut().expect("field").push('"');
                    }
                    '"' => quoted = !quoted,
                    ',' if !quoted => fields.push(String::new()),
                    c => fields.last_mut().expect("field").push(c),
                }
            }
            fields
        })
        .collect()
}
