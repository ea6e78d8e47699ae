//! Handling one SQS message from receipt to deletion (or release).
//!
//! The rules that make delivery at-least-once and nothing lost live here: every record is
//! handled; the message is deleted only after the outcome of every record is written; a
//! transient failure of any record sends the whole message back with a growing delay (its
//! finished records are redone idempotently); a message abandoned at shutdown, or ahead of
//! a Spot interruption, is released with visibility 0 so another worker takes it at once.

use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_sdk_sqs::types::{Message, MessageSystemAttributeName};

use crate::config::WorkerConfig;
use crate::event::{self, Notification, Record};
use crate::held::{ReleaseReason, ReleaseSignal};
use crate::kind::ErrorKind;
use crate::process::{ObjectProcessor, Processed};
use crate::results::{ErrorDetail, Rejection, ResultStore};
use crate::telemetry::{self, MessageContext, Metrics};
use crate::visibility;

/// What to do with a message once its records are handled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub enum Disposition {
    /// Everything in it is done (results or error reports written, or nothing to do).
    Delete,
    /// Something failed transiently: hand it back to be received again later.
    Retry,
}

/// Everything a message task needs; cheap to clone.
#[derive(Debug, Clone)]
pub struct MessageHandler {
    /// SQS client for heartbeats, deletes and releases.
    pub sqs: aws_sdk_sqs::Client,
    /// Processes each object.
    pub processor: ObjectProcessor,
    /// Writes reports about messages that name no object.
    pub store: ResultStore,
    /// Settings.
    pub config: Arc<WorkerConfig>,
    /// Metrics.
    pub metrics: Metrics,
}

impl MessageHandler {
    /// Handles `message` to the end, or releases it with visibility 0 as soon as `release`
    /// gives a reason.
    pub async fn run(&self, message: Message, mut release: ReleaseSignal) {
        let message_id = message.message_id().unwrap_or("(no id)").to_owned();
        let receive_count = receive_count(&message);
        let context = MessageContext {
            message_id: &message_id,
            receive_count,
        };
        let Some(receipt_handle) = message.receipt_handle().map(str::to_owned) else {
            telemetry::message_call_failed(
                context,
                "ReceiveMessage",
                "message has no receipt handle",
            );
            return;
        };
        telemetry::message_started(&self.metrics, context);
        let (stop_heartbeat, heartbeat_stopped) = tokio::sync::oneshot::channel();
        let heartbeat = tokio::spawn(visibility::heartbeat(
            self.sqs.clone(),
            self.config.queue_url.clone(),
            receipt_handle.clone(),
            self.config.visibility_timeout,
            message_id.clone(),
            heartbeat_stopped,
        ));
        let body = message.body().unwrap_or_default();
        let disposition = tokio::select! {
            disposition = self.handle(context, body) => Ok(disposition),
            reason = released(&mut release) => Err(reason),
        };
        let _stopped = stop_heartbeat.send(());
        if let Err(err) = heartbeat.await {
            tracing::error!(message_id, error = %err, "the visibility heartbeat failed");
        }
        match disposition {
            Ok(Disposition::Delete) => self.delete(context, &receipt_handle).await,
            Ok(Disposition::Retry) => {
                let delay = visibility::retry_delay(
                    receive_count,
                    self.config.retry_base_delay,
                    self.config.retry_max_delay,
                );
                self.release(context, &receipt_handle, "retry", delay).await;
            }
            Err(reason) => {
                self.release(context, &receipt_handle, reason.as_str(), Duration::ZERO)
                    .await;
            }
        }
        telemetry::message_finished(&self.metrics);
    }

    /// Handles every record of the message body.
    async fn handle(&self, context: MessageContext<'_>, body: &str) -> Disposition {
        let records = match event::parse_body(body) {
            Ok(Notification::TestEvent { bucket }) => {
                telemetry::test_event(context, bucket.as_deref());
                return Disposition::Delete;
            }
            Ok(Notification::Records(records)) => records,
            Err(not_an_event) => {
                let detail = ErrorDetail::new(ErrorKind::InvalidEvent, not_an_event.to_string());
                return self.report_message(context, body, &detail, &[]).await;
            }
        };
        let mut disposition = Disposition::Delete;
        let mut rejected = Vec::new();
        for (index, record) in records.into_iter().enumerate() {
            match record {
                Record::Created(object) => {
                    let started = Instant::now();
                    match self.processor.process(&object).await {
                        Ok(Processed::Succeeded {
                            outcome_key,
                            size_bytes,
                        }) => telemetry::file_succeeded(
                            &self.metrics,
                            context,
                            &object.bucket,
                            &object.key,
                            &outcome_key,
                            size_bytes,
                            started.elapsed(),
                        ),
                        Ok(Processed::Reported { outcome_key, kind }) => telemetry::file_reported(
                            &self.metrics,
                            context,
                            &object.bucket,
                            &object.key,
                            &outcome_key,
                            kind,
                            started.elapsed(),
                        ),
                        Ok(Processed::Skipped { reason }) => telemetry::file_skipped(
                            &self.metrics,
                            context,
                            &object.bucket,
                            &object.key,
                            reason,
                        ),
                        Ok(Processed::Refused { kind, message }) => rejected.push(Rejection {
                            index,
                            kind,
                            message,
                            bucket: Some(object.bucket),
                            key: Some(object.key),
                        }),
                        Err(error) => {
                            telemetry::file_failed_transiently(
                                &self.metrics,
                                context,
                                &object.bucket,
                                &object.key,
                                &error.message,
                            );
                            disposition = Disposition::Retry;
                        }
                    }
                }
                Record::Ignored { event_name } => telemetry::record_ignored(context, &event_name),
                Record::Invalid { reason } => rejected.push(Rejection {
                    index,
                    kind: ErrorKind::InvalidEvent,
                    message: reason,
                    bucket: None,
                    key: None,
                }),
            }
        }
        if let Some(first) = rejected.first() {
            let detail = ErrorDetail::new(
                first.kind,
                format!("{} record(s) of the message refused", rejected.len()),
            );
            if self.report_message(context, body, &detail, &rejected).await == Disposition::Retry {
                disposition = Disposition::Retry;
            }
        }
        disposition
    }

    /// Writes the report about a message naming no usable source, or about its refused
    /// records: under the message's id, never under a source's name.
    async fn report_message(
        &self,
        context: MessageContext<'_>,
        body: &str,
        detail: &ErrorDetail,
        records: &[Rejection],
    ) -> Disposition {
        match self
            .store
            .write_message_report(context.message_id, body, detail, records)
            .await
        {
            Ok(report_key) => {
                telemetry::message_reported(&self.metrics, context, &report_key, detail, records);
                Disposition::Delete
            }
            Err(error) => {
                telemetry::message_call_failed(
                    context,
                    "PutObject (message report)",
                    &error.to_string(),
                );
                Disposition::Retry
            }
        }
    }

    async fn delete(&self, context: MessageContext<'_>, receipt_handle: &str) {
        let deleted = self
            .sqs
            .delete_message()
            .queue_url(&self.config.queue_url)
            .receipt_handle(receipt_handle)
            .send()
            .await;
        match deleted {
            Ok(_) => telemetry::message_deleted(&self.metrics, context),
            Err(err) => telemetry::message_call_failed(
                context,
                "DeleteMessage",
                &crate::sdk_error::error_chain(&err),
            ),
        }
    }

    async fn release(
        &self,
        context: MessageContext<'_>,
        receipt_handle: &str,
        reason: &'static str,
        delay: Duration,
    ) {
        match visibility::set_visibility(&self.sqs, &self.config.queue_url, receipt_handle, delay)
            .await
        {
            Ok(()) => telemetry::message_released(&self.metrics, context, reason, delay),
            Err(error) => {
                telemetry::message_call_failed(context, "ChangeMessageVisibility", &error)
            }
        }
    }
}

/// How many times SQS has handed `message` out, this time included (1 when SQS did not say).
pub fn receive_count(message: &Message) -> u32 {
    message
        .attributes()
        .and_then(|attrs| attrs.get(&MessageSystemAttributeName::ApproximateReceiveCount))
        .and_then(|count| count.parse().ok())
        .unwrap_or(1)
}

/// Resolves with the reason once the message must let go; never, if no one can say so.
async fn released(release: &mut ReleaseSignal) -> ReleaseReason {
    match release
        .wait_for(Option::is_some)
        .await
        .map(|reason| *reason)
    {
        Ok(Some(reason)) => reason,
        _ => std::future::pending().await,
    }
}
