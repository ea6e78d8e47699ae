//! Handling one SQS message from receipt to deletion (or release).
//!
//! The rules that make delivery at-least-once and nothing lost live here: every record is
//! handled; the message is deleted only after the outcome of every record is written; a
//! transient failure of any record sends the whole message back with a growing delay (its
//! finished records are redone idempotently); a message abandoned at shutdown, or ahead of
//! a Spot interruption, is released with visibility 0 so another worker takes it at once.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_sdk_sqs::types::Message;

use crate::config::WorkerConfig;
use crate::deadline::within;
use crate::event::{self, Notification, Record};
use crate::held::{ReleaseReason, ReleaseSignal};
use crate::kind::ErrorKind;
use crate::objects::ObjectStore;
use crate::process::{ObjectProcessor, Processed};
use crate::queue::{Queue, receive_count, string_attribute};
use crate::results::{ErrorDetail, Rejection, ResultStore};
use crate::telemetry::{self, MessageContext, Metrics};
use crate::visibility;

/// Message attribute counting how many times a message was handed back unfinished (shutdown,
/// Spot interruption) as a fresh copy.
pub const RELEASE_HOPS_ATTRIBUTE: &str = "geobatch-release-hops";
/// Message attribute naming the first message of a chain of fresh copies; reports about the
/// message are written under it, so every copy writes the same report.
pub const ORIGIN_ATTRIBUTE: &str = "geobatch-origin-message-id";
/// Most fresh copies one message may get. Past it, a release is a plain visibility-0 release
/// that SQS counts as a receive, so a message released forever still reaches the DLQ.
pub const MAX_RELEASE_HOPS: u32 = 8;

/// What to do with a message once its records are handled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub enum Disposition {
    /// Everything in it is done (outcomes written, or nothing to do).
    Delete,
    /// Something failed transiently: hand it back to be received again later.
    Retry,
}

/// Everything a message task needs; cheap to clone.
#[derive(Debug, Clone)]
pub struct MessageHandler<Q, S> {
    /// The queue: heartbeats, deletes and releases.
    pub queue: Q,
    /// Processes each object.
    pub processor: ObjectProcessor<S>,
    /// Writes reports about messages that name no object.
    pub store: ResultStore<S>,
    /// Settings.
    pub config: Arc<WorkerConfig>,
    /// Metrics.
    pub metrics: Metrics,
}

impl<Q: Queue, S: ObjectStore> MessageHandler<Q, S> {
    /// Handles `message` to the end, or hands it back at once as soon as `release` gives a
    /// reason.
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
            self.queue.clone(),
            receipt_handle.clone(),
            self.config.visibility_timeout,
            self.config.call_timeout,
            message_id.clone(),
            heartbeat_stopped,
        ));
        let body = message.body().unwrap_or_default();
        let report_id = string_attribute(&message, ORIGIN_ATTRIBUTE).unwrap_or(&message_id);
        let disposition = tokio::select! {
            disposition = self.handle(context, report_id, body) => Ok(disposition),
            reason = released(&mut release) => Err(reason),
        };
        let _stopped = stop_heartbeat.send(());
        // A renewal in progress has its own deadline, so this wait is bounded too.
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
                hand_back(
                    &self.queue,
                    &self.metrics,
                    &message,
                    reason.as_str(),
                    self.config.call_timeout,
                )
                .await;
            }
        }
        telemetry::message_finished(&self.metrics);
    }

    /// Handles every record of the message body.
    async fn handle(
        &self,
        context: MessageContext<'_>,
        report_id: &str,
        body: &str,
    ) -> Disposition {
        let records = match event::parse_body(body) {
            Ok(Notification::TestEvent { bucket }) => {
                telemetry::test_event(context, bucket.as_deref());
                return Disposition::Delete;
            }
            Ok(Notification::Records(records)) => records,
            Err(not_an_event) => {
                let detail = ErrorDetail::new(ErrorKind::InvalidEvent, not_an_event.to_string());
                return self
                    .report_message(context, report_id, body, &detail, &[])
                    .await;
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
                        Ok(Processed::Superseded { message }) => telemetry::file_superseded(
                            context,
                            &object.bucket,
                            &object.key,
                            &message,
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
            let reported = self
                .report_message(context, report_id, body, &detail, &rejected)
                .await;
            if reported == Disposition::Retry {
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
        report_id: &str,
        body: &str,
        detail: &ErrorDetail,
        records: &[Rejection],
    ) -> Disposition {
        match self
            .store
            .write_message_report(report_id, body, detail, records)
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
        let deleted = within(
            self.config.call_timeout,
            "DeleteMessage",
            self.queue.delete(receipt_handle),
        )
        .await;
        match deleted {
            Ok(()) => telemetry::message_deleted(&self.metrics, context),
            Err(error) => telemetry::message_call_failed(context, "DeleteMessage", &error),
        }
    }

    async fn release(
        &self,
        context: MessageContext<'_>,
        receipt_handle: &str,
        reason: &'static str,
        delay: Duration,
    ) {
        let released = within(
            self.config.call_timeout,
            "ChangeMessageVisibility",
            self.queue.set_visibility(receipt_handle, delay),
        )
        .await;
        match released {
            Ok(()) => telemetry::message_released(&self.metrics, context, reason, delay),
            Err(error) => {
                telemetry::message_call_failed(context, "ChangeMessageVisibility", &error)
            }
        }
    }
}

/// Hands an unfinished message back to the queue at once (shutdown, Spot interruption).
///
/// SQS counts every receive towards the DLQ's `maxReceiveCount`, so a message caught in
/// several scale-ins would reach the DLQ without ever failing. Instead the worker sends a
/// fresh copy (receive count 1) carrying a hop counter and the original's id, then deletes
/// the original. After [`MAX_RELEASE_HOPS`] copies, or if the copy cannot be sent, it falls
/// back to a visibility-0 release, which counts: the chain stays bounded. A copy sent but the
/// original not deleted means one duplicate delivery, which outcomes make harmless.
pub async fn hand_back(
    queue: &impl Queue,
    metrics: &Metrics,
    message: &Message,
    reason: &'static str,
    call_timeout: Duration,
) {
    let message_id = message.message_id().unwrap_or("(no id)");
    let context = MessageContext {
        message_id,
        receive_count: receive_count(message),
    };
    let Some(receipt_handle) = message.receipt_handle() else {
        return telemetry::message_call_failed(
            context,
            "ReceiveMessage",
            "message has no receipt handle",
        );
    };
    let hops: u32 = string_attribute(message, RELEASE_HOPS_ATTRIBUTE)
        .and_then(|hops| hops.parse().ok())
        .unwrap_or(0);
    if hops < MAX_RELEASE_HOPS {
        let origin = string_attribute(message, ORIGIN_ATTRIBUTE).unwrap_or(message_id);
        let attributes = HashMap::from([
            (RELEASE_HOPS_ATTRIBUTE.to_owned(), (hops + 1).to_string()),
            (ORIGIN_ATTRIBUTE.to_owned(), origin.to_owned()),
        ]);
        let body = message.body().unwrap_or_default();
        let sent = within(call_timeout, "SendMessage", queue.send(body, &attributes)).await;
        match sent {
            Ok(()) => {
                let deleted =
                    within(call_timeout, "DeleteMessage", queue.delete(receipt_handle)).await;
                if let Err(error) = deleted {
                    telemetry::message_call_failed(context, "DeleteMessage (handed back)", &error);
                }
                return telemetry::message_handed_back(metrics, context, reason, hops + 1);
            }
            Err(error) => {
                telemetry::message_call_failed(context, "SendMessage (fresh copy)", &error)
            }
        }
    }
    let released = within(
        call_timeout,
        "ChangeMessageVisibility",
        queue.set_visibility(receipt_handle, Duration::ZERO),
    )
    .await;
    match released {
        Ok(()) => telemetry::message_released(metrics, context, reason, Duration::ZERO),
        Err(error) => telemetry::message_call_failed(context, "ChangeMessageVisibility", &error),
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fakes::{self, Behaviour, Call, Fakes, World};
    use crate::held::HeldMessages;
    use crate::scratch::ScratchBudget;
    use crate::sdk_error::GetErrorKind;
    use aws_sdk_sqs::types::{MessageAttributeValue, MessageSystemAttributeName};
    use prometheus_client::metrics::gauge::Gauge;

    const SAMPLE: &str = r#"{"type":"FeatureCollection","features":[
        {"type":"Feature","properties":{},"geometry":{"type":"Point","coordinates":[1,2]}}]}"#;
    const OUTCOME: &str = "results/in1/k.json";
    /// Far beyond any deadline the tests set: reaching it means something hung.
    const OUTER_LIMIT: Duration = Duration::from_secs(60);
    /// Deadline of every call in the delivery-rule table.
    const FAST: &[&str] = &["--aws-call-timeout", "100ms"];

    fn handler(fakes: &Fakes, config: WorkerConfig) -> MessageHandler<Fakes, Fakes> {
        let config = Arc::new(config);
        let store = ResultStore::new(fakes.clone(), config.output.clone(), config.call_timeout);
        MessageHandler {
            queue: fakes.clone(),
            processor: ObjectProcessor::new(
                fakes.clone(),
                store.clone(),
                Arc::clone(&config),
                ScratchBudget::new(config.scratch_budget, Gauge::default()).expect("valid budget"),
            ),
            store,
            config,
            metrics: Metrics::new().0,
        }
    }

    fn message(bucket: &str, receive_count: u32, hops: Option<u32>) -> Message {
        let body = format!(
            r#"{{"Records":[{{"eventVersion":"2.1","eventName":"ObjectCreated:Put",
                "s3":{{"bucket":{{"name":"{bucket}"}},"object":{{"key":"k"}}}}}}]}}"#
        );
        let mut builder = Message::builder()
            .message_id("m-1")
            .receipt_handle("r-1")
            .body(body)
            .attributes(
                MessageSystemAttributeName::ApproximateReceiveCount,
                receive_count.to_string(),
            );
        if let Some(hops) = hops {
            let value = MessageAttributeValue::builder()
                .data_type("String")
                .string_value(hops.to_string())
                .build()
                .expect("attribute");
            builder = builder.message_attributes(RELEASE_HOPS_ATTRIBUTE, value);
        }
        builder.build()
    }

    /// Runs one message through the handler with `flags`; `release_after` tells it to let go
    /// then. Every call the fakes hang is bounded by a deadline, so this always returns; the
    /// outer limit only turns a regression into a failure instead of a hung test.
    async fn deliver(
        world: World,
        message: Message,
        flags: &[&str],
        release_after: Option<Duration>,
    ) -> Vec<Call> {
        let fakes = Fakes::default();
        *fakes.world() = world;
        let handler = handler(&fakes, fakes::config(flags));
        let held = HeldMessages::default();
        let (_ticket, signal) = held.register();
        let run = handler.run(message, signal);
        let release = async {
            match release_after {
                Some(after) => {
                    tokio::time::sleep(after).await;
                    held.release_all(ReleaseReason::Shutdown);
                }
                None => std::future::pending::<()>().await,
            }
            std::future::pending::<()>().await;
        };
        let finished = tokio::time::timeout(OUTER_LIMIT, async {
            tokio::select! {
                () = run => {}
                () = release => {}
            }
        })
        .await;
        assert!(finished.is_ok(), "the message task hung: {:?}", fakes.log());
        fakes
            .log()
            .into_iter()
            .filter(|call| *call != Call::Visibility(30))
            .collect()
    }

    fn world(object: Option<Result<&str, GetErrorKind>>) -> World {
        let mut world = World::default();
        if let Some(object) = object {
            world
                .objects
                .insert("k".to_owned(), object.map(|body| body.as_bytes().to_vec()));
        }
        world
    }

    fn put_kind(call: &Call) -> Option<(&str, String)> {
        match call {
            Call::Put(key, document) => Some((
                key.as_str(),
                document["error"]["kind"]
                    .as_str()
                    .unwrap_or(document["status"].as_str().unwrap_or("?"))
                    .to_owned(),
            )),
            _ => None,
        }
    }

    /// The delivery rules, one row each: what the fakes do, and the calls the message sees
    /// after its read (heartbeats left out). A delete only ever follows a written outcome.
    #[tokio::test]
    async fn delivery_rules() {
        let get = || Call::Get("k".into());
        // (rule, what the fakes do, receive count, calls after the outcome write, outcome).
        type Row = (
            &'static str,
            World,
            u32,
            Vec<Call>,
            Option<(&'static str, &'static str)>,
        );
        let table: Vec<Row> = vec![
            (
                "a good object: outcome, then delete",
                world(Some(Ok(SAMPLE))),
                1,
                vec![get(), Call::Delete],
                Some((OUTCOME, "ok")),
            ),
            (
                "bad content: error outcome, then delete",
                world(Some(Ok("{ nope"))),
                1,
                vec![get(), Call::Delete],
                Some((OUTCOME, "invalid_json")),
            ),
            (
                "a missing object is permanent",
                world(None),
                1,
                vec![get(), Call::Delete],
                Some((OUTCOME, "object_missing")),
            ),
            (
                "an archived object is permanent",
                world(Some(Err(GetErrorKind::Archived))),
                1,
                vec![get(), Call::Delete],
                Some((OUTCOME, "object_archived")),
            ),
            (
                "a KMS key the worker cannot use is permanent",
                world(Some(Err(GetErrorKind::KmsUnusable))),
                1,
                vec![get(), Call::Delete],
                Some((OUTCOME, "kms_key_unusable")),
            ),
            (
                "an object replaced since its event writes nothing",
                world(Some(Err(GetErrorKind::Changed))),
                1,
                vec![get(), Call::Delete],
                None,
            ),
            (
                "a transient read retries after base x 2^(count-1)",
                world(Some(Err(GetErrorKind::Transient))),
                3,
                vec![get(), Call::Visibility(40)],
                None,
            ),
            (
                "a failed write is never followed by a delete",
                World {
                    put: Behaviour::Fail,
                    ..world(Some(Ok(SAMPLE)))
                },
                1,
                vec![get(), Call::Visibility(10)],
                Some((OUTCOME, "ok")),
            ),
            (
                "a hung write fails at its deadline and retries",
                World {
                    put: Behaviour::Hang,
                    ..world(Some(Ok(SAMPLE)))
                },
                2,
                vec![get(), Call::Visibility(20)],
                Some((OUTCOME, "ok")),
            ),
            (
                "a hung delete does not hold the message",
                World {
                    delete: Behaviour::Hang,
                    ..world(Some(Ok(SAMPLE)))
                },
                1,
                vec![get(), Call::Delete],
                Some((OUTCOME, "ok")),
            ),
        ];
        for (name, world, receive_count, expected, put) in table {
            let log = deliver(world, message("in1", receive_count, None), FAST, None).await;
            let puts: Vec<_> = log.iter().filter_map(put_kind).collect();
            let rest: Vec<_> = log
                .iter()
                .filter(|call| put_kind(call).is_none())
                .cloned()
                .collect();
            assert_eq!(rest, expected, "{name}");
            assert_eq!(
                puts.first().map(|(key, kind)| (*key, kind.as_str())),
                put,
                "{name}"
            );
            if let Some(position) = log.iter().position(|call| *call == Call::Delete) {
                assert!(
                    log[..position].iter().any(|call| put_kind(call).is_some()) || put.is_none(),
                    "{name}: delete before the outcome"
                );
            }
        }
    }

    /// A refused bucket is never read, and its report goes under the message id.
    #[tokio::test]
    async fn a_refused_bucket_is_reported_under_the_message_and_never_read() {
        let log = deliver(
            world(Some(Ok(SAMPLE))),
            message("other1", 1, None),
            FAST,
            None,
        )
        .await;
        let puts: Vec<_> = log.iter().filter_map(put_kind).collect();
        assert_eq!(
            puts,
            vec![(
                "results/_messages/m-1.json",
                "bucket_not_allowed".to_owned()
            )]
        );
        assert!(!log.contains(&Call::Get("k".into())));
        assert_eq!(log.last(), Some(&Call::Delete));
    }

    /// Release at shutdown: a fresh copy with a hop counter, then the original's delete; past
    /// the hop limit, or when the copy cannot be sent, a visibility-0 release that counts.
    #[tokio::test]
    async fn releases_hand_back_fresh_copies_up_to_the_hop_limit() {
        let hung = || World {
            get: Behaviour::Hang,
            ..World::default()
        };
        let copy = |n: u32| {
            Call::Send(HashMap::from([
                (RELEASE_HOPS_ATTRIBUTE.to_owned(), n.to_string()),
                (ORIGIN_ATTRIBUTE.to_owned(), "m-1".to_owned()),
            ]))
        };
        // Shutdown comes 100 ms into a read that hangs (its deadline is 30 s).
        let after = Some(Duration::from_millis(100));
        let table: Vec<(&str, World, Option<u32>, Vec<Call>)> = vec![
            ("first release", hung(), None, vec![copy(1), Call::Delete]),
            (
                "a later release",
                hung(),
                Some(3),
                vec![copy(4), Call::Delete],
            ),
            (
                "at the limit",
                hung(),
                Some(MAX_RELEASE_HOPS),
                vec![Call::Visibility(0)],
            ),
            (
                "copy not sent",
                World {
                    send: Behaviour::Fail,
                    ..hung()
                },
                None,
                vec![copy(1), Call::Visibility(0)],
            ),
        ];
        for (name, world, hops, expected) in table {
            let flags = ["--aws-call-timeout", "30s"];
            let log = deliver(world, message("in1", 1, hops), &flags, after).await;
            assert_eq!(log[1..], expected[..], "{name}: {log:?}");
        }
    }

    /// While a file is processed its visibility is renewed every third of the timeout, and a
    /// renewal that hangs is given up at its deadline instead of holding the message's release.
    #[tokio::test]
    async fn heartbeats_renew_while_held_and_a_hung_one_does_not_hold_the_release() {
        // Visibility 1 s: a renewal every 500 ms, each given up after 500 ms; the read hangs
        // (deadline 30 s). Shutdown comes once two renewals were attempted: the second one
        // shows that the first, hung or not, did not stop the heartbeat.
        for visibility in [Behaviour::Answer, Behaviour::Hang] {
            let fakes = Fakes::default();
            fakes.world().get = Behaviour::Hang;
            fakes.world().visibility = visibility;
            let flags = ["--visibility-timeout", "1s", "--aws-call-timeout", "30s"];
            let handler = handler(&fakes, fakes::config(&flags));
            let held = HeldMessages::default();
            let (_ticket, signal) = held.register();
            let run = handler.run(message("in1", 1, None), signal);
            let renewals = || {
                fakes
                    .log()
                    .iter()
                    .filter(|call| **call == Call::Visibility(1))
                    .count()
            };
            let release = async {
                while renewals() < 2 {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                held.release_all(ReleaseReason::Shutdown);
                std::future::pending::<()>().await;
            };
            let finished = tokio::time::timeout(OUTER_LIMIT, async {
                tokio::select! {
                    () = run => {}
                    () = release => {}
                }
            })
            .await;
            let log = fakes.log();
            assert!(finished.is_ok(), "{visibility:?}: hung: {log:?}");
            assert!(renewals() >= 2, "{visibility:?}: {log:?}");
            assert_eq!(
                log.last(),
                Some(&Call::Delete),
                "{visibility:?}: handed back"
            );
        }
    }
}
