//! The worker's observable events: each one owns its log line and its metrics, so the logs
//! and `/metrics` can never disagree about what happened.
//!
//! Log lines name the message, bucket, key and outcome; metrics are served in the Prometheus
//! format under the `geobatch_worker_` prefix.

use std::sync::Arc;
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::kind::ErrorKind;
use crate::results::{ErrorDetail, Rejection};

type Labels = Vec<(&'static str, String)>;

/// The worker's metrics.
#[derive(Debug, Clone)]
pub struct Metrics {
    messages_received: Counter,
    messages_deleted: Counter,
    messages_released: Family<Labels, Counter>,
    receive_errors: Counter,
    files_succeeded: Counter,
    files_failed: Family<Labels, Counter>,
    files_skipped: Counter,
    bytes_processed: Counter,
    processing_seconds: Histogram,
    messages_in_flight: Gauge,
    /// Bytes of scratch disk reserved by downloads right now (see [`crate::scratch`]).
    pub scratch_reserved: Gauge,
    /// The Spot interruption watcher's metrics.
    pub interruption: crate::interruption::InterruptionMetrics,
}

impl Metrics {
    /// Creates the metrics and registers them in a new registry.
    pub fn new() -> (Metrics, Arc<Registry>) {
        let metrics = Metrics {
            messages_received: Counter::default(),
            messages_deleted: Counter::default(),
            messages_released: Family::default(),
            receive_errors: Counter::default(),
            files_succeeded: Counter::default(),
            files_failed: Family::default(),
            files_skipped: Counter::default(),
            bytes_processed: Counter::default(),
            processing_seconds: Histogram::new(exponential_buckets(0.01, 2.0, 18)),
            messages_in_flight: Gauge::default(),
            scratch_reserved: Gauge::default(),
            interruption: crate::interruption::InterruptionMetrics::default(),
        };
        let mut registry = Registry::with_prefix("geobatch_worker");
        registry.register(
            "messages_received",
            "SQS messages received",
            metrics.messages_received.clone(),
        );
        registry.register(
            "messages_deleted",
            "SQS messages deleted after all their records were handled",
            metrics.messages_deleted.clone(),
        );
        registry.register(
            "messages_released",
            "SQS messages handed back to the queue, by reason (retry, shutdown, interruption)",
            metrics.messages_released.clone(),
        );
        registry.register(
            "receive_errors",
            "Failed ReceiveMessage calls",
            metrics.receive_errors.clone(),
        );
        registry.register(
            "files_succeeded",
            "Objects whose result was written",
            metrics.files_succeeded.clone(),
        );
        registry.register(
            "files_failed",
            "Objects that failed, by error kind (transient failures as kind=transient)",
            metrics.files_failed.clone(),
        );
        registry.register(
            "files_skipped",
            "Objects left alone because they are the worker's own outputs",
            metrics.files_skipped.clone(),
        );
        registry.register(
            "bytes_processed",
            "Bytes of source objects downloaded and processed successfully",
            metrics.bytes_processed.clone(),
        );
        registry.register(
            "processing_seconds",
            "Time from receiving an object's record to writing its outcome",
            metrics.processing_seconds.clone(),
        );
        registry.register(
            "messages_in_flight",
            "Messages currently held by this worker",
            metrics.messages_in_flight.clone(),
        );
        registry.register(
            "scratch_reserved_bytes",
            "Bytes of --scratch-budget reserved by downloads on disk or in progress",
            metrics.scratch_reserved.clone(),
        );
        metrics.interruption.register(&mut registry);
        (metrics, Arc::new(registry))
    }
}

/// Where a message came from, for every log line about it.
#[derive(Debug, Clone, Copy)]
pub struct MessageContext<'a> {
    /// SQS message id.
    pub message_id: &'a str,
    /// How many times SQS has handed this message out, this time included.
    pub receive_count: u32,
}

/// A batch of messages arrived.
pub fn messages_received(metrics: &Metrics, count: usize) {
    metrics.messages_received.inc_by(count as u64);
    tracing::debug!(count, "messages received");
}

/// A message is now held by this worker.
pub fn message_started(metrics: &Metrics, message: MessageContext<'_>) {
    metrics.messages_in_flight.inc();
    tracing::debug!(
        message_id = message.message_id,
        receive_count = message.receive_count,
        "processing message"
    );
}

/// A message is no longer held (deleted or released).
pub fn message_finished(metrics: &Metrics) {
    metrics.messages_in_flight.dec();
}

/// The work dir's free space at start-up, against the budget: a warning when a full budget
/// would not fit (downloads could then fail with ENOSPC, be retried and end in the DLQ).
pub fn scratch_space(work_dir: &std::path::Path, available_bytes: u64, budget_bytes: u64) {
    let work_dir = work_dir.display().to_string();
    if available_bytes < budget_bytes {
        tracing::warn!(
            work_dir,
            available_bytes,
            budget_bytes,
            "--work-dir has less free space than --scratch-budget: lower the budget or give the directory more room, or downloads may fail with a full disk"
        );
    } else {
        tracing::info!(
            work_dir,
            available_bytes,
            budget_bytes,
            "scratch space checked"
        );
    }
}

/// A download waits for room in the scratch budget; its message stays held meanwhile.
pub fn waiting_for_scratch(source: &str, size_bytes: u64, reserved_bytes: u64, budget_bytes: u64) {
    tracing::info!(
        source,
        size_bytes,
        reserved_bytes,
        budget_bytes,
        "waiting for scratch space before downloading"
    );
}

/// ReceiveMessage failed; the loop backs off.
pub fn receive_failed(metrics: &Metrics, error: &str, retry_in: Duration) {
    metrics.receive_errors.inc();
    tracing::warn!(
        error,
        retry_in_secs = retry_in.as_secs_f64(),
        "receiving from the queue failed"
    );
}

/// An object's outcome, with status ok, was written.
pub fn file_succeeded(
    metrics: &Metrics,
    message: MessageContext<'_>,
    bucket: &str,
    key: &str,
    outcome_key: &str,
    size_bytes: u64,
    elapsed: Duration,
) {
    metrics.files_succeeded.inc();
    metrics.bytes_processed.inc_by(size_bytes);
    metrics.processing_seconds.observe(elapsed.as_secs_f64());
    tracing::info!(
        message_id = message.message_id,
        bucket,
        key,
        outcome = "succeeded",
        outcome_key,
        size_bytes,
        seconds = elapsed.as_secs_f64(),
        "file processed"
    );
}

/// An object cannot be processed; its outcome, with status error, was written.
pub fn file_reported(
    metrics: &Metrics,
    message: MessageContext<'_>,
    bucket: &str,
    key: &str,
    outcome_key: &str,
    kind: ErrorKind,
    elapsed: Duration,
) {
    let kind = kind.as_str();
    metrics
        .files_failed
        .get_or_create(&vec![("kind", kind.to_owned())])
        .inc();
    metrics.processing_seconds.observe(elapsed.as_secs_f64());
    tracing::warn!(
        message_id = message.message_id,
        bucket,
        key,
        outcome = "error_reported",
        kind,
        outcome_key,
        "file cannot be processed; error outcome written"
    );
}

/// An object failed for a reason that may go away; its message will be retried.
pub fn file_failed_transiently(
    metrics: &Metrics,
    message: MessageContext<'_>,
    bucket: &str,
    key: &str,
    error: &str,
) {
    metrics
        .files_failed
        .get_or_create(&vec![("kind", "transient".to_owned())])
        .inc();
    tracing::warn!(
        message_id = message.message_id,
        receive_count = message.receive_count,
        bucket,
        key,
        outcome = "transient_failure",
        error,
        "file failed; the message will be retried"
    );
}

/// An object was left alone because it is one of the worker's own outputs.
pub fn file_skipped(
    metrics: &Metrics,
    message: MessageContext<'_>,
    bucket: &str,
    key: &str,
    reason: &str,
) {
    metrics.files_skipped.inc();
    tracing::info!(
        message_id = message.message_id,
        bucket,
        key,
        outcome = "skipped",
        reason,
        "file skipped"
    );
}

/// A record that needs no work (removal and other non-ObjectCreated events).
pub fn record_ignored(message: MessageContext<'_>, event_name: &str) {
    tracing::info!(
        message_id = message.message_id,
        event_name,
        outcome = "ignored",
        "record is not an ObjectCreated event; ignored"
    );
}

/// S3's connectivity test message, deleted.
pub fn test_event(message: MessageContext<'_>, bucket: Option<&str>) {
    tracing::info!(
        message_id = message.message_id,
        bucket,
        outcome = "test_event",
        "s3:TestEvent received; deleting it"
    );
}

/// A message that names no usable source, or records of it that were refused; its report
/// was written under the message's id.
pub fn message_reported(
    metrics: &Metrics,
    message: MessageContext<'_>,
    report_key: &str,
    detail: &ErrorDetail,
    records: &[Rejection],
) {
    if records.is_empty() {
        count_failure(metrics, detail.kind);
    }
    for record in records {
        count_failure(metrics, record.kind);
        tracing::warn!(
            message_id = message.message_id,
            record = record.index,
            bucket = record.bucket.as_deref(),
            key = record.key.as_deref(),
            outcome = "refused",
            kind = record.kind.as_str(),
            reason = record.message,
            report_key,
            "record refused; reported under the message"
        );
    }
    tracing::warn!(
        message_id = message.message_id,
        outcome = "error_reported",
        kind = detail.kind.as_str(),
        report_key,
        reason = detail.message,
        "message report written"
    );
}

fn count_failure(metrics: &Metrics, kind: ErrorKind) {
    metrics
        .files_failed
        .get_or_create(&vec![("kind", kind.as_str().to_owned())])
        .inc();
}

/// The message was deleted: everything in it is done.
pub fn message_deleted(metrics: &Metrics, message: MessageContext<'_>) {
    metrics.messages_deleted.inc();
    tracing::debug!(message_id = message.message_id, "message deleted");
}

/// The message went back to the queue to be received again after `delay`.
pub fn message_released(
    metrics: &Metrics,
    message: MessageContext<'_>,
    reason: &'static str,
    delay: Duration,
) {
    metrics
        .messages_released
        .get_or_create(&vec![("reason", reason.to_owned())])
        .inc();
    tracing::info!(
        message_id = message.message_id,
        receive_count = message.receive_count,
        reason,
        visible_in_secs = delay.as_secs(),
        "message released to the queue"
    );
}

/// An unfinished message was handed back as a fresh copy (see `message::hand_back`).
pub fn message_handed_back(
    metrics: &Metrics,
    message: MessageContext<'_>,
    reason: &'static str,
    hops: u32,
) {
    metrics
        .messages_released
        .get_or_create(&vec![("reason", reason.to_owned())])
        .inc();
    tracing::info!(
        message_id = message.message_id,
        receive_count = message.receive_count,
        reason,
        hops,
        "message handed back to the queue as a fresh copy"
    );
}

/// The object changed since its event: a newer upload, with an event of its own, replaced
/// it; nothing is written for this one.
pub fn file_superseded(message: MessageContext<'_>, bucket: &str, key: &str, reason: &str) {
    tracing::info!(
        message_id = message.message_id,
        bucket,
        key,
        outcome = "superseded",
        reason,
        "the object changed since its event; its newer version's event brings the outcome"
    );
}

/// Shutdown came while a receive was in flight: the worker lets it return instead of
/// dropping it, because SQS may already have handed it messages.
pub fn shutdown_during_receive(grace: Duration) {
    tracing::info!(
        grace_secs = grace.as_secs_f64(),
        "shutdown requested during a receive; waiting for it so that its messages can be released"
    );
}

/// The receive in flight at shutdown returned messages the worker will not process.
pub fn releasing_received_at_shutdown(count: usize) {
    tracing::info!(
        count,
        "releasing messages received during shutdown with visibility 0"
    );
}

/// The receive in flight at shutdown failed: it holds no messages.
pub fn receive_at_shutdown_failed(error: &str) {
    tracing::warn!(error, "the receive in flight at shutdown failed");
}

/// The receive in flight at shutdown outlived the grace period and was dropped.
pub fn receive_at_shutdown_abandoned(grace: Duration) {
    tracing::warn!(
        grace_secs = grace.as_secs_f64(),
        "the receive in flight did not return within --shutdown-grace; messages it was given reappear after their visibility timeout"
    );
}

/// An SQS call about a held message failed; SQS's own timeout will bring it back.
pub fn message_call_failed(message: MessageContext<'_>, call: &'static str, error: &str) {
    tracing::warn!(
        message_id = message.message_id,
        call,
        error,
        "SQS call for a held message failed; the message reappears after its visibility timeout"
    );
}
