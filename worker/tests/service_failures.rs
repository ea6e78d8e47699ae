//! How the worker fails: permanent input errors get a machine-readable error report and are
//! not retried; transient errors are retried with backoff and end in the DLQ. Nothing is
//! silently deleted (the classic poller deleted every message, failed or not).

mod support;

use geobatch_worker::exec::ExecOptions;
use std::time::Duration;

use geobatch_worker::config::Processor;
use serde_json::json;
use support::{RunningWorker, SAMPLE, Stack, StackOptions, record, wait_for};

/// Malformed JSON and JSON that is not GeoJSON each get an error report with the analysis's
/// error kind, and their messages are deleted rather than retried (the DLQ stays empty).
#[tokio::test]
async fn malformed_or_non_geojson_content_gets_an_error_report_and_is_not_retried() {
    let stack = Stack::new(StackOptions {
        max_receive_count: Some(2),
        ..StackOptions::default()
    })
    .await;
    let etag = stack.put("broken.geojson", "{ not json }").await;
    stack.put("not-geo.geojson", "{\"hello\": \"world\"}").await;
    let worker = RunningWorker::start(&stack, stack.config());
    stack
        .send_event(&["broken.geojson", "not-geo.geojson"])
        .await;
    let broken = stack
        .wait_output(&stack.outcome_key("broken.geojson"))
        .await;
    assert_eq!(broken["status"], "error");
    assert_eq!(broken["error"]["kind"], "invalid_json");
    assert!(
        broken["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty())
    );
    assert_eq!(broken["source"]["etag"], etag.as_str());
    let not_geo = stack
        .wait_output(&stack.outcome_key("not-geo.geojson"))
        .await;
    assert_eq!(not_geo["error"]["kind"], "not_geojson");
    stack.wait_drained().await;
    worker.stop().await;
    let dlq = stack.dlq_url.clone().expect("dlq");
    assert_eq!(stack.counts(&dlq).await, (0, 0));
}

/// An object over `--max-object-bytes` is refused whether the event announces its size or
/// understates it (the limit is enforced again on the size S3 reports for the download).
#[tokio::test]
async fn objects_over_the_size_limit_are_refused_even_when_the_event_understates_them() {
    let stack = Stack::new(StackOptions::default()).await;
    let big = format!("{SAMPLE}{}", " ".repeat(500));
    stack.put("big.geojson", &big).await;
    stack.put("lying.geojson", &big).await;
    let mut config = stack.config();
    config.max_object_bytes = 300;
    let worker = RunningWorker::start(&stack, config);
    let mut honest = record(
        &stack.input_bucket,
        "big.geojson",
        "ObjectCreated:Put",
        "2.1",
    );
    honest["s3"]["object"]["size"] = json!(big.len());
    // The shared record helper announces 10 bytes: below the limit, unlike the real object.
    let lying = record(
        &stack.input_bucket,
        "lying.geojson",
        "ObjectCreated:Put",
        "2.1",
    );
    stack
        .send(&json!({"Records": [honest, lying]}).to_string())
        .await;
    for key in ["big.geojson", "lying.geojson"] {
        let report = stack.wait_output(&stack.outcome_key(key)).await;
        assert_eq!(report["error"]["kind"], "object_too_large", "{report}");
    }
    stack.wait_drained().await;
    worker.stop().await;
}

/// A body that is not an S3 event at all gets a report under `_messages/` naming the
/// message, and is deleted instead of looping.
#[tokio::test]
async fn a_body_that_is_not_an_s3_event_gets_an_error_report_and_is_deleted() {
    let stack = Stack::new(StackOptions::default()).await;
    let worker = RunningWorker::start(&stack, stack.config());
    let message_id = stack.send("hello, this is not an event").await;
    let report = stack
        .wait_output(&stack.message_report_key(&message_id))
        .await;
    assert_eq!(report["error"]["kind"], "invalid_event");
    assert_eq!(report["message"]["message_id"], message_id.as_str());
    assert_eq!(
        report["message"]["body_excerpt"],
        "hello, this is not an event"
    );
    stack.wait_drained().await;
    worker.stop().await;
}

/// An object deleted between its upload and its processing is reported as missing and its
/// message deleted: it is not retried forever.
#[tokio::test]
async fn an_object_deleted_before_it_is_read_is_reported_not_retried() {
    let stack = Stack::new(StackOptions {
        max_receive_count: Some(2),
        ..StackOptions::default()
    })
    .await;
    let worker = RunningWorker::start(&stack, stack.config());
    stack.send_event(&["never-there.geojson"]).await;
    let report = stack
        .wait_output(&stack.outcome_key("never-there.geojson"))
        .await;
    assert_eq!(report["error"]["kind"], "object_missing");
    stack.wait_drained().await;
    worker.stop().await;
    let dlq = stack.dlq_url.clone().expect("dlq");
    assert_eq!(stack.counts(&dlq).await, (0, 0));
}

/// When the result cannot be written (here the output bucket does not exist), the message is
/// not deleted: it is released with backoff, received again, and after the queue's
/// maxReceiveCount the redrive policy moves it, body intact, to the DLQ.
#[tokio::test]
async fn a_file_that_keeps_failing_transiently_ends_in_the_dlq_and_is_never_deleted() {
    let stack = Stack::new(StackOptions {
        max_receive_count: Some(2),
        no_output_bucket: true,
        ..StackOptions::default()
    })
    .await;
    stack.put("stuck.geojson", SAMPLE).await;
    let worker = RunningWorker::start(&stack, stack.config());
    stack.send_event(&["stuck.geojson"]).await;
    let dlq = stack.dlq_url.clone().expect("dlq");
    wait_for("the message to reach the DLQ", || async {
        (stack.counts(&dlq).await.0 == 1).then_some(())
    })
    .await;
    stack.wait_drained().await;
    worker.stop().await;
    let moved = stack
        .sqs
        .receive_message()
        .queue_url(&dlq)
        .message_system_attribute_names(
            aws_sdk_sqs::types::MessageSystemAttributeName::ApproximateReceiveCount,
        )
        .send()
        .await
        .expect("receive from dlq");
    let message = &moved.messages()[0];
    let body: serde_json::Value =
        serde_json::from_str(message.body().expect("body")).expect("json body");
    assert_eq!(body["Records"][0]["s3"]["object"]["key"], "stuck.geojson");
}

/// A failing `--exec` command (non-zero exit) yields an error report carrying its exit code
/// and standard error; a command past `--exec-timeout` is reported as `exec_timeout`.
#[tokio::test]
async fn exec_failures_and_timeouts_are_reported_with_their_stderr() {
    let stack = Stack::new(StackOptions::default()).await;
    stack.put("fails.geojson", SAMPLE).await;
    stack.put("slow.geojson", SAMPLE).await;
    let mut config = stack.config();
    config.processor = Processor::Exec(ExecOptions::new(
        r#"f() { case "$GEOBATCH_SOURCE_KEY" in slow*) echo waiting >&2; sleep 30;; *) echo "cannot parse $1" >&2; exit 4;; esac; }; f"#.to_owned(),
        Duration::from_secs(1),
    ));
    let worker = RunningWorker::start(&stack, config);
    stack.send_event(&["fails.geojson", "slow.geojson"]).await;
    let failed = stack.wait_output(&stack.outcome_key("fails.geojson")).await;
    assert_eq!(failed["error"]["kind"], "exec_failed");
    assert_eq!(failed["error"]["exit_code"], 4);
    assert!(
        failed["error"]["stderr"]
            .as_str()
            .is_some_and(|stderr| stderr.starts_with("cannot parse /")),
        "{failed}"
    );
    let slow = stack.wait_output(&stack.outcome_key("slow.geojson")).await;
    assert_eq!(slow["error"]["kind"], "exec_timeout");
    assert_eq!(slow["error"]["stderr"], "waiting\n");
    stack.wait_drained().await;
    worker.stop().await;
}

/// Issue 12, class 5: an `--exec` run never turns a failure into a success. Output held
/// open by a process that left the command's group used to become an empty `ok` result (the
/// message deleted); a program that cannot be run was a plain `exec_failed`. Now each is an
/// error outcome of its own kind, written once, and nothing reaches the DLQ.
#[tokio::test]
async fn exec_output_cut_short_or_a_program_not_started_is_an_error_not_a_result() {
    let stack = Stack::new(StackOptions {
        max_receive_count: Some(2),
        ..StackOptions::default()
    })
    .await;
    for key in ["escapes.geojson", "missing.geojson", "chatty.geojson"] {
        stack.put(key, SAMPLE).await;
    }
    let mut config = stack.config();
    config.processor = Processor::Exec(ExecOptions {
        max_output_bytes: 4096,
        ..ExecOptions::new(
            r#"f() { case "$GEOBATCH_SOURCE_KEY" in
                escapes*) setsid sleep 6 & echo partial;;
                missing*) /nonexistent/geobatch-no-such-program "$1";;
                chatty*) yes;;
            esac; }; f"#,
            Duration::from_secs(60),
        )
    });
    let worker = RunningWorker::start(&stack, config);
    stack
        .send_event(&["escapes.geojson", "missing.geojson", "chatty.geojson"])
        .await;
    for (key, kind) in [
        ("escapes.geojson", "exec_output_incomplete"),
        ("missing.geojson", "exec_not_started"),
        ("chatty.geojson", "exec_output_too_large"),
    ] {
        let outcome = stack.wait_output(&stack.outcome_key(key)).await;
        assert_eq!(outcome["status"], "error", "{key}: {outcome}");
        assert_eq!(outcome["error"]["kind"], kind, "{key}: {outcome}");
    }
    stack.wait_drained().await;
    worker.stop().await;
    let dlq = stack.dlq_url.clone().expect("dlq");
    assert_eq!(stack.counts(&dlq).await, (0, 0));
}

/// Issue 12, class 6: an archived object (S3 answers 403 InvalidObjectState) is reported as
/// `object_archived` and its message deleted, instead of being retried into the DLQ as an
/// access denial.
#[tokio::test]
async fn an_archived_object_is_reported_as_archived_not_retried() {
    let stack = Stack::new(StackOptions {
        max_receive_count: Some(2),
        ..StackOptions::default()
    })
    .await;
    stack
        .s3
        .put_object()
        .bucket(&stack.input_bucket)
        .key("cold.geojson")
        .storage_class(aws_sdk_s3::types::StorageClass::Glacier)
        .body(SAMPLE.as_bytes().to_vec().into())
        .send()
        .await
        .expect("put an archived object");
    let worker = RunningWorker::start(&stack, stack.config());
    stack.send_event(&["cold.geojson"]).await;
    let report = stack.wait_output(&stack.outcome_key("cold.geojson")).await;
    assert_eq!(report["error"]["kind"], "object_archived", "{report}");
    stack.wait_drained().await;
    worker.stop().await;
    let dlq = stack.dlq_url.clone().expect("dlq");
    assert_eq!(stack.counts(&dlq).await, (0, 0));
}

/// Issue 12, class 7: an event whose ETag is not the object's any more (the key was
/// re-uploaded since) writes nothing: the newer upload's own event brings its outcome, so an
/// older version's outcome cannot land after it.
#[tokio::test]
async fn an_event_for_bytes_since_replaced_writes_no_outcome() {
    let stack = Stack::new(StackOptions::default()).await;
    stack.put("moving.geojson", SAMPLE).await;
    let worker = RunningWorker::start(&stack, stack.config());
    let mut stale = record(
        &stack.input_bucket,
        "moving.geojson",
        "ObjectCreated:Put",
        "2.1",
    );
    stale["s3"]["object"]["eTag"] = json!("0123456789abcdef0123456789abcdef");
    stack.send(&json!({"Records": [stale]}).to_string()).await;
    stack.wait_drained().await;
    worker.stop().await;
    assert_eq!(stack.output_keys().await, Vec::<String>::new());
}
