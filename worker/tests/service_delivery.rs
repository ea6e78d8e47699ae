//! What the worker does with the events S3 sends: every record, decoded keys, the test
//! event, SNS envelopes, other event types, and idempotent outputs. Each test runs the real
//! service against the moto emulator.

mod support;

use geobatch_worker::config::Processor;
use geobatch_worker::exec::ExecOptions;
use serde_json::{Value, json};
use support::{RunningWorker, SAMPLE, Stack, StackOptions, record};

/// With a real S3 → SQS notification (moto sends the s3:TestEvent first, then URL-encoded
/// ObjectCreated events), every upload gets its result under its decoded key, holding the
/// source, ETag, size, version and analysis, and the queue drains: the test event is
/// deleted, not mis-parsed. Classic defects: raw keys give NoSuchKey; TestEvent breaks jq.
#[tokio::test]
async fn real_s3_notifications_produce_a_result_per_upload_under_the_decoded_key() {
    let stack = Stack::new(StackOptions::default()).await;
    stack.enable_notifications().await;
    assert_eq!(
        stack.counts(&stack.queue_url).await,
        (1, 0),
        "configuring the notification queues moto's s3:TestEvent"
    );
    let worker = RunningWorker::start(&stack, stack.config());
    let keys = [
        "plain.geojson",
        "dir/a b+c.geojson",
        "dir/ünïcødé (1).geojson",
    ];
    let mut etags = Vec::new();
    for key in keys {
        etags.push(stack.put(key, SAMPLE).await);
    }
    for (key, etag) in keys.iter().zip(&etags) {
        let result = stack.wait_output(&stack.outcome_key(key)).await;
        assert_eq!(result["status"], "ok");
        assert_eq!(result["source"]["bucket"], stack.input_bucket.as_str());
        assert_eq!(result["source"]["key"], *key);
        assert_eq!(result["source"]["etag"], etag.as_str());
        assert_eq!(result["source"]["size_bytes"], SAMPLE.len());
        assert_eq!(result["worker_version"], env!("CARGO_PKG_VERSION"));
        assert_eq!(result["analysis"]["features"], 2, "{result}");
    }
    stack.wait_drained().await;
    worker.stop().await;
}

/// A message with several records gets a result for each one, not only for `Records[0]`.
#[tokio::test]
async fn every_record_of_a_multi_record_message_is_processed() {
    let stack = Stack::new(StackOptions::default()).await;
    for key in ["one.geojson", "two.geojson", "three.geojson"] {
        stack.put(key, SAMPLE).await;
    }
    let worker = RunningWorker::start(&stack, stack.config());
    stack
        .send_event(&["one.geojson", "two.geojson", "three.geojson"])
        .await;
    for key in ["one.geojson", "two.geojson", "three.geojson"] {
        let result = stack.wait_output(&stack.outcome_key(key)).await;
        assert_eq!(result["source"]["key"], key);
    }
    stack.wait_drained().await;
    worker.stop().await;
}

/// Notifications that reach the queue through SNS (without raw delivery) and records with a
/// later 2.x event version are processed like plain ones.
#[tokio::test]
async fn sns_wrapped_and_version_2x_events_are_accepted() {
    let stack = Stack::new(StackOptions::default()).await;
    stack.put("via sns.geojson", SAMPLE).await;
    stack.put("v2.3.geojson", SAMPLE).await;
    let worker = RunningWorker::start(&stack, stack.config());
    let inner = json!({"Records": [record(&stack.input_bucket, "via+sns.geojson", "ObjectCreated:Put", "2.1")]});
    let envelope = json!({
        "Type": "Notification",
        "MessageId": "5f3c8a9e-0000-4000-8000-000000000000",
        "TopicArn": "arn:aws:sns:us-east-1:123456789012:uploads",
        "Subject": "Amazon S3 Notification",
        "Message": inner.to_string(),
        "Timestamp": "2026-12-02T12:00:00.000Z",
    });
    stack.send(&envelope.to_string()).await;
    let newer = json!({"Records": [record(&stack.input_bucket, "v2.3.geojson", "ObjectCreated:Copy", "2.3")]});
    stack.send(&newer.to_string()).await;
    stack
        .wait_output(&stack.outcome_key("via sns.geojson"))
        .await;
    stack.wait_output(&stack.outcome_key("v2.3.geojson")).await;
    stack.wait_drained().await;
    worker.stop().await;
}

/// Records that are not ObjectCreated (here a removal) need no work: the message is deleted
/// and nothing is written.
#[tokio::test]
async fn non_object_created_records_are_ignored_and_their_message_deleted() {
    let stack = Stack::new(StackOptions::default()).await;
    let worker = RunningWorker::start(&stack, stack.config());
    let body = json!({"Records": [
        record(&stack.input_bucket, "gone.geojson", "ObjectRemoved:Delete", "2.1"),
        record(&stack.input_bucket, "old.geojson", "ObjectRestore:Post", "2.1"),
    ]});
    stack.send(&body.to_string()).await;
    stack.wait_drained().await;
    worker.stop().await;
    assert_eq!(stack.output_keys().await, Vec::<String>::new());
}

/// The same object processed twice (a redelivered message) writes the same bytes to the
/// same key: at-least-once delivery is harmless.
#[tokio::test]
async fn reprocessing_the_same_object_writes_byte_identical_output() {
    let stack = Stack::new(StackOptions::default()).await;
    stack.put("same.geojson", SAMPLE).await;
    let worker = RunningWorker::start(&stack, stack.config());
    let key = stack.outcome_key("same.geojson");
    stack.send_event(&["same.geojson"]).await;
    stack.wait_output(&key).await;
    stack.wait_drained().await;
    let first = stack.output(&key).await.expect("first result");
    stack
        .s3
        .delete_object()
        .bucket(&stack.output_bucket)
        .key(&key)
        .send()
        .await
        .expect("delete result");
    stack.send_event(&["same.geojson"]).await;
    stack.wait_output(&key).await;
    let second = stack.output(&key).await.expect("second result");
    assert_eq!(
        String::from_utf8_lossy(&first),
        String::from_utf8_lossy(&second)
    );
    worker.stop().await;
    assert_eq!(stack.output_keys().await, vec![key]);
}

/// When a key that had an error outcome is uploaded again with good content, the result
/// replaces it in the same object, so the output describes the object as it is now.
#[tokio::test]
async fn a_success_after_an_error_report_replaces_the_report() {
    let stack = Stack::new(StackOptions::default()).await;
    let worker = RunningWorker::start(&stack, stack.config());
    stack.put("fixed.geojson", "{ not json").await;
    stack.send_event(&["fixed.geojson"]).await;
    let report = stack.wait_output(&stack.outcome_key("fixed.geojson")).await;
    assert_eq!(report["error"]["kind"], "invalid_json");
    stack.wait_drained().await;
    stack.put("fixed.geojson", SAMPLE).await;
    stack.send_event(&["fixed.geojson"]).await;
    stack.wait_drained().await;
    worker.stop().await;
    let fixed = stack.wait_output(&stack.outcome_key("fixed.geojson")).await;
    assert_eq!(fixed["status"], "ok", "{fixed}");
    assert_eq!(
        stack.output_keys().await,
        vec![stack.outcome_key("fixed.geojson")]
    );
}

/// With `--exec`, the command's standard output is the result (embedded as JSON when it is
/// JSON), and it receives the downloaded file as its last argument.
#[tokio::test]
async fn exec_stdout_becomes_the_result() {
    let stack = Stack::new(StackOptions::default()).await;
    stack.put("run me.geojson", "{\"lines\": 1}").await;
    let mut config = stack.config();
    config.processor = Processor::Exec(ExecOptions::new(
        "wc -c <".to_owned(),
        std::time::Duration::from_secs(30),
    ));
    let worker = RunningWorker::start(&stack, config);
    stack.send_event(&["run+me.geojson"]).await;
    let result = stack
        .wait_output(&stack.outcome_key("run me.geojson"))
        .await;
    assert_eq!(result["exec_output"], Value::from(12), "{result}");
    assert!(result.get("analysis").is_none());
    stack.wait_drained().await;
    worker.stop().await;
}
