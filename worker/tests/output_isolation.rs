//! Issue 12, class 1: outputs are isolated per source. Two distinct `(bucket, key)` sources
//! never write, replace or delete the same output object, and a record the worker refuses
//! never writes under a real source's name. Each test failed on the layout with
//! `K.json`/`K.error.json` and passes with one outcome object per source.

mod support;

use serde_json::json;
use support::{RunningWorker, SAMPLE, Stack, StackOptions, record};

/// A forged event naming a bucket outside `--allowed-buckets` and the key of a real upload
/// leaves the real outcome byte for byte as it was; the refusal is reported under the
/// message's id, naming the record.
#[tokio::test]
async fn a_refused_event_never_touches_a_real_sources_outcome() {
    let stack = Stack::new(StackOptions::default()).await;
    stack.put("real.geojson", SAMPLE).await;
    let worker = RunningWorker::start(&stack, stack.config());
    stack.send_event(&["real.geojson"]).await;
    let key = stack.outcome_key("real.geojson");
    stack.wait_output(&key).await;
    stack.wait_drained().await;
    let before = stack.output(&key).await.expect("outcome");

    let forged = json!({"Records": [
        record("someone-elses-bucket", "real.geojson", "ObjectCreated:Put", "2.1"),
        record(&format!("{}/x", stack.input_bucket), "y", "ObjectCreated:Put", "2.1"),
    ]});
    let message_id = stack.send(&forged.to_string()).await;
    let report = stack
        .wait_output(&stack.message_report_key(&message_id))
        .await;
    stack.wait_drained().await;
    worker.stop().await;

    assert_eq!(report["error"]["kind"], "bucket_not_allowed");
    assert_eq!(report["records"][0]["kind"], "bucket_not_allowed");
    assert_eq!(report["records"][0]["bucket"], "someone-elses-bucket");
    assert_eq!(report["records"][0]["key"], "real.geojson");
    assert_eq!(report["records"][1]["index"], 1);
    assert_eq!(
        stack.output(&key).await,
        Some(before),
        "the real outcome is untouched"
    );
    let mut expected = vec![key, stack.message_report_key(&message_id)];
    expected.sort();
    assert_eq!(stack.output_keys().await, expected);
}

/// Source keys `a` and `a.error` (which the old layout mapped onto each other's error
/// report) and the same key in two buckets each keep an outcome of their own.
#[tokio::test]
async fn sources_whose_names_overlap_keep_an_outcome_each() {
    let stack = Stack::new(StackOptions::default()).await;
    let second_bucket = geobatch_common::testing::unique_name("in2");
    stack
        .s3
        .create_bucket()
        .bucket(&second_bucket)
        .send()
        .await
        .expect("create the second input bucket");
    stack
        .s3
        .put_object()
        .bucket(&second_bucket)
        .key("a")
        .body("{ not json".as_bytes().to_vec().into())
        .send()
        .await
        .expect("put into the second bucket");
    stack.put("a", SAMPLE).await;
    stack.put("a.error", SAMPLE).await;
    let mut config = stack.config();
    config.allowed_buckets = geobatch_worker::config::AllowedBuckets::Only(vec![
        stack.input_bucket.clone(),
        second_bucket.clone(),
    ]);
    let worker = RunningWorker::start(&stack, config);
    stack.send_event(&["a.error", "a"]).await;
    stack
        .send(
            &json!({"Records": [record(&second_bucket, "a", "ObjectCreated:Put", "2.1")]})
                .to_string(),
        )
        .await;
    stack.wait_drained().await;
    worker.stop().await;

    let first = stack.wait_output(&stack.outcome_key("a")).await;
    let dotted = stack.wait_output(&stack.outcome_key("a.error")).await;
    let other = stack
        .wait_output(&format!("results/{second_bucket}/a.json"))
        .await;
    assert_eq!(
        (&first["status"], &first["source"]["key"]),
        (&json!("ok"), &json!("a"))
    );
    assert_eq!(
        (&dotted["status"], &dotted["source"]["key"]),
        (&json!("ok"), &json!("a.error"))
    );
    assert_eq!(other["status"], "error");
    assert_eq!(other["source"]["bucket"], second_bucket.as_str());
    assert_eq!(other["error"]["kind"], "invalid_json");
    assert_eq!(stack.output_keys().await.len(), 3);
}

/// A key so long that its outcome key would pass S3's 1024 bytes gets a permanent error
/// outcome of its own under `_long-keys/`, without being downloaded, and its message is
/// deleted instead of retried into the DLQ.
#[tokio::test]
async fn a_source_key_too_long_for_an_outcome_key_is_reported_not_retried() {
    let stack = Stack::new(StackOptions {
        max_receive_count: Some(2),
        ..StackOptions::default()
    })
    .await;
    let long_key = "k".repeat(1015);
    let worker = RunningWorker::start(&stack, stack.config());
    stack.send_event(&[&long_key]).await;
    stack.wait_drained().await;
    worker.stop().await;
    let keys = stack.output_keys().await;
    assert_eq!(keys.len(), 1, "{keys:?}");
    assert!(keys[0].starts_with("results/_long-keys/"), "{keys:?}");
    let outcome = stack.wait_output(&keys[0]).await;
    assert_eq!(outcome["error"]["kind"], "key_too_long");
    assert_eq!(outcome["source"]["key"], long_key.as_str());
    let dlq = stack.dlq_url.clone().expect("dlq");
    assert_eq!(stack.counts(&dlq).await, (0, 0));
}
