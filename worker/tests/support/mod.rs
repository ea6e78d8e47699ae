//! Shared set-up of the worker service tests: a bucket pair and a queue (optionally with a
//! DLQ) in the shared moto emulator, an in-process worker, and helpers to send events and
//! wait for outputs. Every helper that waits has a deadline and fails with what it saw.

#![allow(dead_code)] // each test binary uses a different subset

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_config::SdkConfig;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_sqs::types::QueueAttributeName;
use geobatch_analysis::AnalysisOptions;
use geobatch_common::testing::{Emulator, unique_name};
use geobatch_worker::config::{AllowedBuckets, OutputLocation, Processor, WorkerConfig};
use geobatch_worker::interruption::{SpotWatch, SpotWatchMode};
use serde_json::{Value, json};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// How long any wait in these tests may take before it fails.
pub const DEADLINE: Duration = Duration::from_secs(45);

/// A small, valid GeoJSON FeatureCollection with two features.
pub const SAMPLE: &str = r#"{"type":"FeatureCollection","features":[
 {"type":"Feature","properties":{"name":"a"},"geometry":{"type":"Point","coordinates":[1.0,2.0]}},
 {"type":"Feature","properties":{"name":"b"},"geometry":{"type":"LineString","coordinates":[[0,0],[1,1]]}}]}"#;

/// Buckets and queues for one test.
pub struct Stack {
    pub sdk: SdkConfig,
    pub s3: aws_sdk_s3::Client,
    pub sqs: aws_sdk_sqs::Client,
    pub input_bucket: String,
    pub output_bucket: String,
    pub queue_url: String,
    pub queue_arn: String,
    pub dlq_url: Option<String>,
}

/// Options of [`Stack::new`].
#[derive(Default)]
pub struct StackOptions {
    /// Attach a DLQ with this maxReceiveCount.
    pub max_receive_count: Option<u32>,
    /// Leave the output bucket uncreated, so every result write fails (a transient error).
    pub no_output_bucket: bool,
    /// The queue's own visibility timeout, in seconds.
    pub queue_visibility_secs: Option<u32>,
}

impl Stack {
    pub async fn new(options: StackOptions) -> Stack {
        let emulator = Emulator::shared();
        let sdk = emulator.sdk_config().await;
        let s3 = aws_sdk_s3::Client::from_conf(
            aws_sdk_s3::config::Builder::from(&sdk)
                .force_path_style(true)
                .build(),
        );
        let sqs = aws_sdk_sqs::Client::new(&sdk);
        let input_bucket = unique_name("in");
        let output_bucket = unique_name("out");
        s3.create_bucket()
            .bucket(&input_bucket)
            .send()
            .await
            .expect("create input bucket");
        if !options.no_output_bucket {
            s3.create_bucket()
                .bucket(&output_bucket)
                .send()
                .await
                .expect("create output bucket");
        }
        let mut create = sqs.create_queue().queue_name(unique_name("q"));
        if let Some(secs) = options.queue_visibility_secs {
            create = create.attributes(QueueAttributeName::VisibilityTimeout, secs.to_string());
        }
        let dlq_url = match options.max_receive_count {
            Some(count) => {
                let dlq_url = sqs
                    .create_queue()
                    .queue_name(unique_name("dlq"))
                    .send()
                    .await
                    .expect("create dlq")
                    .queue_url
                    .expect("dlq url");
                let dlq_arn = queue_arn(&sqs, &dlq_url).await;
                create = create.attributes(
                    QueueAttributeName::RedrivePolicy,
                    json!({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": count.to_string()})
                        .to_string(),
                );
                Some(dlq_url)
            }
            None => None,
        };
        let queue_url = create
            .send()
            .await
            .expect("create queue")
            .queue_url
            .expect("queue url");
        let queue_arn = queue_arn(&sqs, &queue_url).await;
        Stack {
            sdk,
            s3,
            sqs,
            input_bucket,
            output_bucket,
            queue_url,
            queue_arn,
            dlq_url,
        }
    }

    /// Worker settings for this stack, with timings short enough for tests.
    pub fn config(&self) -> WorkerConfig {
        WorkerConfig {
            queue_url: self.queue_url.clone(),
            output: OutputLocation {
                bucket: self.output_bucket.clone(),
                prefix: "results/".to_owned(),
            },
            allowed_buckets: AllowedBuckets::Only(vec![self.input_bucket.clone()]),
            concurrency: 4,
            visibility_timeout: Duration::from_secs(10),
            max_object_bytes: 1024 * 1024,
            scratch_budget: 4 * 1024 * 1024,
            processor: Processor::Analysis(AnalysisOptions::default()),
            shutdown_grace: Duration::from_secs(10),
            metrics_addr: None,
            retry_base_delay: Duration::ZERO,
            retry_max_delay: Duration::from_secs(1),
            receive_wait: Duration::from_secs(1),
            call_timeout: Duration::from_secs(10),
            work_dir: std::env::temp_dir(),
            ecs_agent_uri: None,
            protection_minutes: 60,
            spot: SpotWatch {
                mode: SpotWatchMode::Off,
                imds_endpoint: "http://127.0.0.1:9".to_owned(),
                poll_interval: Duration::from_millis(200),
            },
        }
    }

    /// Makes S3 notify the queue of every ObjectCreated event in the input bucket, the way a
    /// deployment does (moto then sends the s3:TestEvent first).
    pub async fn enable_notifications(&self) {
        use aws_sdk_s3::types::{Event, NotificationConfiguration, QueueConfiguration};
        let queue = QueueConfiguration::builder()
            .queue_arn(&self.queue_arn)
            .events(Event::from("s3:ObjectCreated:*"))
            .build()
            .expect("queue configuration");
        self.s3
            .put_bucket_notification_configuration()
            .bucket(&self.input_bucket)
            .notification_configuration(
                NotificationConfiguration::builder()
                    .queue_configurations(queue)
                    .build(),
            )
            .send()
            .await
            .expect("configure notifications");
    }

    /// Uploads `body` to the input bucket and returns its ETag (without quotes).
    pub async fn put(&self, key: &str, body: &str) -> String {
        let put = self
            .s3
            .put_object()
            .bucket(&self.input_bucket)
            .key(key)
            .body(ByteStream::from(body.as_bytes().to_vec()))
            .send()
            .await
            .expect("put object");
        put.e_tag().expect("etag").trim_matches('"').to_owned()
    }

    /// Sends a raw message body; returns the message id.
    pub async fn send(&self, body: &str) -> String {
        self.sqs
            .send_message()
            .queue_url(&self.queue_url)
            .message_body(body)
            .send()
            .await
            .expect("send message")
            .message_id
            .expect("message id")
    }

    /// Sends a hand-written S3 event for `raw_keys` (already URL-encoded) in the input bucket.
    pub async fn send_event(&self, raw_keys: &[&str]) -> String {
        let records: Vec<Value> = raw_keys
            .iter()
            .map(|key| record(&self.input_bucket, key, "ObjectCreated:Put", "2.1"))
            .collect();
        self.send(&json!({ "Records": records }).to_string()).await
    }

    /// Key of the outcome of `source_key` in the input bucket, spelt out rather than
    /// computed with the worker's own function, so a change of layout fails the tests.
    pub fn outcome_key(&self, source_key: &str) -> String {
        format!("results/{}/{source_key}.json", self.input_bucket)
    }

    /// Key of the report about the message `message_id`.
    pub fn message_report_key(&self, message_id: &str) -> String {
        format!("results/_messages/{message_id}.json")
    }

    /// The bytes of an output object, if it exists.
    pub async fn output(&self, key: &str) -> Option<Vec<u8>> {
        let got = self
            .s3
            .get_object()
            .bucket(&self.output_bucket)
            .key(key)
            .send()
            .await
            .ok()?;
        Some(got.body.collect().await.expect("read body").to_vec())
    }

    /// Waits for an output object and returns it parsed.
    pub async fn wait_output(&self, key: &str) -> Value {
        let bytes = wait_for(&format!("output {key}"), || async {
            self.output(key).await
        })
        .await;
        serde_json::from_slice(&bytes).expect("output is JSON")
    }

    /// Keys under the output bucket.
    pub async fn output_keys(&self) -> Vec<String> {
        let listed = self
            .s3
            .list_objects_v2()
            .bucket(&self.output_bucket)
            .send()
            .await
            .expect("list outputs");
        let mut keys: Vec<String> = listed
            .contents()
            .iter()
            .filter_map(|object| object.key().map(str::to_owned))
            .collect();
        keys.sort();
        keys
    }

    /// (visible, not visible) messages of a queue.
    pub async fn counts(&self, queue_url: &str) -> (u64, u64) {
        let attributes = self
            .sqs
            .get_queue_attributes()
            .queue_url(queue_url)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
            .send()
            .await
            .expect("queue attributes");
        let attrs = attributes.attributes().expect("attributes");
        let get = |name: QueueAttributeName| {
            attrs
                .get(&name)
                .and_then(|value| value.parse().ok())
                .expect("numeric attribute")
        };
        (
            get(QueueAttributeName::ApproximateNumberOfMessages),
            get(QueueAttributeName::ApproximateNumberOfMessagesNotVisible),
        )
    }

    /// Waits until the work queue holds nothing, visible or in flight.
    pub async fn wait_drained(&self) {
        wait_for("the queue to drain", || async {
            (self.counts(&self.queue_url).await == (0, 0)).then_some(())
        })
        .await;
    }

    /// Asserts that the work queue's one message is visible again at once (released with
    /// visibility 0, so a receive gets it now) and that `source_key` has no outcome.
    pub async fn assert_released_unprocessed(&self, source_key: &str) {
        assert_eq!(self.counts(&self.queue_url).await, (1, 0), "released");
        let again = self
            .sqs
            .receive_message()
            .queue_url(&self.queue_url)
            .send()
            .await
            .expect("receive");
        assert_eq!(again.messages().len(), 1, "visible again at once");
        assert!(
            self.output(&self.outcome_key(source_key)).await.is_none(),
            "{source_key} has no outcome"
        );
    }

    /// Waits until `n` messages are held (not visible) on the work queue.
    pub async fn wait_held(&self, n: u64) {
        wait_for(&format!("{n} held messages"), || async {
            (self.counts(&self.queue_url).await.1 == n).then_some(())
        })
        .await;
    }
}

/// One hand-written S3 event record.
pub fn record(bucket: &str, raw_key: &str, event_name: &str, version: &str) -> Value {
    json!({
        "eventVersion": version,
        "eventSource": "aws:s3",
        "awsRegion": "us-east-1",
        "eventTime": "2026-12-02T12:00:00.000Z",
        "eventName": event_name,
        "s3": {
            "s3SchemaVersion": "1.0",
            "bucket": {"name": bucket, "arn": format!("arn:aws:s3:::{bucket}")},
            "object": {"key": raw_key, "size": 10, "sequencer": "0A1B2C"}
        }
    })
}

async fn queue_arn(sqs: &aws_sdk_sqs::Client, url: &str) -> String {
    sqs.get_queue_attributes()
        .queue_url(url)
        .attribute_names(QueueAttributeName::QueueArn)
        .send()
        .await
        .expect("queue attributes")
        .attributes()
        .and_then(|attrs| attrs.get(&QueueAttributeName::QueueArn).cloned())
        .expect("queue arn")
}

/// Polls `probe` until it yields a value; fails the test after [`DEADLINE`].
pub async fn wait_for<T, F, Fut>(what: &str, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + DEADLINE;
    loop {
        if let Some(value) = probe().await {
            return value;
        }
        assert!(Instant::now() < deadline, "gave up waiting for {what}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A worker running in this process.
pub struct RunningWorker {
    stop: Option<oneshot::Sender<()>>,
    handle: JoinHandle<Result<(), geobatch_worker::service::ServiceError>>,
}

impl RunningWorker {
    /// Starts the service with `config` against the stack's emulator.
    pub fn start(stack: &Stack, config: WorkerConfig) -> RunningWorker {
        let processor = geobatch_worker::processor::from_config(&config.processor);
        RunningWorker::start_with_processor(stack, config, processor)
    }

    /// Starts the service running `processor` (a worker of one's own) instead of what
    /// `config.processor` names.
    pub fn start_with_processor(
        stack: &Stack,
        config: WorkerConfig,
        processor: Arc<dyn geobatch_worker::processor::Processor>,
    ) -> RunningWorker {
        if std::env::var_os("GEOBATCH_TEST_LOG").is_some() {
            geobatch_common::telemetry::init(geobatch_common::telemetry::LogFormat::Text);
        }
        let (stop, stopped) = oneshot::channel::<()>();
        let sdk = stack.sdk.clone();
        let handle = tokio::spawn(async move {
            geobatch_worker::service::run_with_processor(config, &sdk, processor, async {
                let _either = stopped.await;
            })
            .await
        });
        RunningWorker {
            stop: Some(stop),
            handle,
        }
    }

    /// Sends the shutdown signal without waiting for the service to return.
    pub fn request_shutdown(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _sent = stop.send(());
        }
    }

    /// Sends the shutdown signal (unless already sent) and waits for the service to return.
    pub async fn stop(mut self) {
        self.request_shutdown();
        tokio::time::timeout(DEADLINE, &mut self.handle)
            .await
            .expect("the worker stops")
            .expect("the worker task does not panic")
            .expect("the worker returns Ok");
    }
}

/// A file in a fresh temporary directory, for `--exec` commands that leave traces.
pub fn scratch_file(name: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join(name);
    (dir, path)
}
