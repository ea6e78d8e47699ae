//! `redrive`: moves dead-lettered messages back to the queue they came from.
//!
//! The tested path receives from the dead-letter queue, sends each message (body and
//! attributes) to the source queue, and deletes it from the dead-letter queue only after
//! SQS accepted the send: at-least-once, so a crash in between leaves a copy in both queues,
//! which is harmless because processing is idempotent. Messages the filter leaves are held
//! invisible for the run and released at its end. `--managed` asks SQS to move everything
//! itself (`StartMessageMoveTask`), which the moto emulator does not implement, so that path
//! is untested here.

use std::collections::{HashMap, HashSet};
use std::io::Write;

use aws_sdk_sqs::types::{
    ChangeMessageVisibilityBatchRequestEntry, DeleteMessageBatchRequestEntry, Message,
    MessageSystemAttributeName, QueueAttributeName,
};
use clap::Args;
use geobatch_common::s3_event::{Notification, Record, parse_body};
use serde::Serialize;

use crate::ops::error::{Subject, classify};
use crate::ops::outcomes::get_bytes;
use crate::ops::progress::Progress;
use crate::ops::queues::{Outgoing, dead_letter_queue, queue_attribute, queue_count, send_batch};
use crate::ops::report::OutputFormat;
use crate::ops::s3_url::output_location;
use crate::ops::setup::OpsClients;
use crate::ops::{OpsError, Tally, finish};
use geobatch_common::outcome::{OutputLocation, parse_outcome};

/// How long a received message stays invisible while a run decides and moves it.
const HOLD_SECS: i32 = 300;
/// Empty receives in a row that end a run: the dead-letter queue is drained.
const EMPTY_RECEIVES_TO_STOP: u32 = 2;
/// The filter value for messages whose objects have no outcome at all (a transient failure).
pub const NO_OUTCOME: &str = "none";

/// Moves dead-lettered messages back to the queue the workers read.
///
/// The workers then try them again; the summary says how many moved.
///
/// The dead-letter queue is found from the queue's RedrivePolicy (or given with
/// `--dlq-url`). With `--error-kind`, only messages whose object's outcome has that error
/// kind move (`none`: objects with no outcome, i.e. transient failures); the outcome is
/// looked up under `--output`. Others stay in the dead-letter queue. Messages are moved
/// receive → send → delete, at least once: one may end up queued twice, never lost.
///
/// Exit codes: 0 done, 1 some messages could not be moved, 2 bad arguments, 3 no such
/// queue or no dead-letter queue, 4 no or refused credentials, 5 other AWS failure.
#[derive(Debug, Clone, Args)]
pub struct RedriveArgs {
    /// The source queue, which the workers read.
    #[arg(long, env = "GEOBATCH_QUEUE_URL", value_name = "URL")]
    pub queue_url: String,
    /// The dead-letter queue; default: the one in the queue's RedrivePolicy.
    #[arg(long, value_name = "URL")]
    pub dlq_url: Option<String>,
    /// Only move messages whose outcome has this error kind (repeatable; `none` for no
    /// outcome). Needs `--output`.
    #[arg(long = "error-kind", value_name = "KIND")]
    pub error_kinds: Vec<String>,
    /// The workers' output location, where `--error-kind` looks outcomes up.
    #[arg(long, env = "GEOBATCH_OUTPUT", value_name = "S3_URL")]
    pub output: Option<String>,
    /// Move at most this many messages.
    #[arg(long, value_name = "N")]
    pub max: Option<u64>,
    /// Count what would move, move nothing (every message is released at the end).
    #[arg(long)]
    pub dry_run: bool,
    /// Let SQS move every message itself with StartMessageMoveTask (no filter, no --max).
    /// Untested on the emulator, which does not implement it.
    #[arg(long, conflicts_with_all = ["error_kinds", "max", "dry_run"])]
    pub managed: bool,
    /// What the summary on stdout looks like; default text on a terminal, json otherwise.
    #[arg(long, value_enum)]
    pub format: Option<OutputFormat>,
}

/// What a redrive did (or, in dry-run, would do).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RedriveSummary {
    /// The dead-letter queue.
    pub dlq_url: String,
    /// Whether nothing was moved.
    pub dry_run: bool,
    /// Messages in the dead-letter queue when the run started (approximate, as SQS counts).
    pub dead_lettered: u64,
    /// Messages looked at.
    pub received: u64,
    /// Messages moved (in dry-run: that would move).
    pub moved: u64,
    /// Messages the filter left in the dead-letter queue.
    pub kept: u64,
    /// Messages that could not be moved (they stay in the dead-letter queue).
    pub failed: u64,
    /// Moved (or would-move) messages by the outcome's error kind.
    pub by_kind: HashMap<String, u64>,
    /// The StartMessageMoveTask handle, in `--managed` mode.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub move_task: Option<String>,
}

/// Whether a message with these outcome kinds moves under `filter` (pure): everything when
/// there is no filter, else when any of its objects' kinds is asked for.
pub fn selected(filter: &[String], kinds: &[String]) -> bool {
    filter.is_empty() || kinds.iter().any(|kind| filter.contains(kind))
}

/// Runs a redrive; the summary goes to `stdout`.
pub async fn run(
    clients: &OpsClients,
    args: &RedriveArgs,
    stdout: &mut dyn Write,
) -> Result<RedriveSummary, OpsError> {
    let output = match (&args.output, args.error_kinds.is_empty()) {
        (Some(url), _) => Some(output_location("--output", url)?),
        (None, true) => None,
        (None, false) => {
            return Err(OpsError::Usage(
                "--error-kind needs --output (GEOBATCH_OUTPUT): the workers' output location, \
                 where each message's outcome says its error kind"
                    .to_owned(),
            ));
        }
    };
    let source_arn =
        queue_attribute(clients, &args.queue_url, QueueAttributeName::QueueArn).await?;
    let dlq_url = match &args.dlq_url {
        Some(url) => url.clone(),
        None => dead_letter_queue(clients, &args.queue_url).await?,
    };
    let dead_lettered = queue_count(
        clients,
        &dlq_url,
        QueueAttributeName::ApproximateNumberOfMessages,
    )
    .await?;
    let mut summary = RedriveSummary {
        dlq_url: dlq_url.clone(),
        dry_run: args.dry_run,
        dead_lettered,
        ..RedriveSummary::default()
    };
    if args.managed {
        summary.move_task = Some(start_move_task(clients, &dlq_url, &source_arn).await?);
        summary.moved = dead_lettered;
    } else {
        move_messages(clients, args, output.as_ref(), &dlq_url, &mut summary).await?;
    }
    let tally = Tally {
        failed: summary.failed,
        done: summary.moved,
        what: "messages",
    };
    finish(stdout, args.format, summary, render_text, tally)
}

async fn move_messages(
    clients: &OpsClients,
    args: &RedriveArgs,
    output: Option<&OutputLocation>,
    dlq_url: &str,
    summary: &mut RedriveSummary,
) -> Result<(), OpsError> {
    let mut progress = Progress::stderr(if args.dry_run { "would move" } else { "moved" });
    let mut held: Vec<String> = Vec::new();
    let mut seen: HashSet<String> = HashSet::new();
    let mut empty = 0;
    let limit = args.max.unwrap_or(u64::MAX);
    while empty < EMPTY_RECEIVES_TO_STOP && summary.moved < limit {
        let messages = receive(clients, dlq_url, limit - summary.moved).await?;
        if messages.is_empty() {
            empty += 1;
            continue;
        }
        empty = 0;
        let mut to_move = Vec::new();
        for message in messages {
            let (Some(id), Some(receipt)) = (message.message_id(), message.receipt_handle()) else {
                continue;
            };
            if !seen.insert(id.to_owned()) {
                // Received again after its hold ran out: already decided to keep it.
                held.push(receipt.to_owned());
                continue;
            }
            summary.received += 1;
            let kinds = match output {
                Some(output) => outcome_kinds(clients, output, message.body().unwrap_or("")).await,
                None => Vec::new(),
            };
            if selected(&args.error_kinds, &kinds) {
                for kind in &kinds {
                    *summary.by_kind.entry(kind.clone()).or_default() += 1;
                }
                to_move.push(message);
            } else {
                summary.kept += 1;
                held.push(receipt.to_owned());
            }
        }
        if args.dry_run {
            summary.moved += to_move.len() as u64;
            held.extend(
                to_move
                    .iter()
                    .filter_map(|m| m.receipt_handle().map(str::to_owned)),
            );
        } else if !to_move.is_empty() {
            let (moved, failed) =
                send_then_delete(clients, &args.queue_url, dlq_url, &to_move).await?;
            summary.moved += moved;
            summary.failed += failed;
        }
        progress.update(
            summary.moved,
            Some(summary.dead_lettered),
            &format!("{} kept", summary.kept),
        );
    }
    progress.finish(
        summary.moved,
        Some(summary.dead_lettered),
        &format!("{} kept", summary.kept),
    );
    release(clients, dlq_url, &held).await;
    Ok(())
}

/// The outcome kinds of a message's objects: an error report's kind, `ok` for a result,
/// [`NO_OUTCOME`] when there is none. A body that names no object gives no kinds.
async fn outcome_kinds(clients: &OpsClients, output: &OutputLocation, body: &str) -> Vec<String> {
    let Ok(Notification::Records(records)) = parse_body(body) else {
        return Vec::new();
    };
    let mut kinds = Vec::new();
    for record in records {
        let Record::Created(object) = record else {
            continue;
        };
        let outcome = match output.outcome_key(&object.bucket, &object.key) {
            Ok(key) => get_bytes(&clients.s3, &output.bucket, key.as_str())
                .await
                .ok()
                .and_then(|bytes| parse_outcome(&bytes).ok()),
            Err(_) => None,
        };
        let kind = match outcome {
            Some(outcome) => outcome.error.map_or_else(|| "ok".to_owned(), |e| e.kind),
            None => NO_OUTCOME.to_owned(),
        };
        kinds.push(kind);
    }
    kinds
}

async fn receive(clients: &OpsClients, dlq_url: &str, room: u64) -> Result<Vec<Message>, OpsError> {
    const CALL: &str = "ReceiveMessage";
    let output = clients
        .aws
        .sqs
        .receive_message()
        .queue_url(dlq_url)
        .max_number_of_messages(i32::try_from(room.min(10)).unwrap_or(10))
        .visibility_timeout(HOLD_SECS)
        .wait_time_seconds(1)
        .message_attribute_names("All")
        .message_system_attribute_names(MessageSystemAttributeName::ApproximateReceiveCount)
        .send()
        .await
        .map_err(|err| classify(CALL, Subject::Queue(dlq_url), err))?;
    Ok(output.messages.unwrap_or_default())
}

/// Sends the messages to the source queue, then deletes from the dead-letter queue those
/// SQS accepted. Returns (moved, failed).
async fn send_then_delete(
    clients: &OpsClients,
    queue_url: &str,
    dlq_url: &str,
    messages: &[Message],
) -> Result<(u64, u64), OpsError> {
    let outgoing = messages
        .iter()
        .map(|message| Outgoing {
            body: message.body().unwrap_or_default().to_owned(),
            attributes: message.message_attributes().cloned(),
        })
        .collect();
    let sent = send_batch(clients, queue_url, outgoing).await?;
    for refused in &sent.refused {
        tracing::error!(
            code = refused.code,
            message = refused.message,
            "SQS refused a redriven message; it stays in the dead-letter queue"
        );
    }
    let deletes = sent
        .accepted
        .iter()
        .filter_map(|&index| {
            DeleteMessageBatchRequestEntry::builder()
                .id(index.to_string())
                .receipt_handle(messages.get(index)?.receipt_handle()?)
                .build()
                .ok()
        })
        .collect::<Vec<_>>();
    let sent_count = deletes.len() as u64;
    if !deletes.is_empty() {
        let deleted = clients
            .aws
            .sqs
            .delete_message_batch()
            .queue_url(dlq_url)
            .set_entries(Some(deletes))
            .send()
            .await
            .map_err(|err| classify("DeleteMessageBatch", Subject::Queue(dlq_url), err))?;
        for failure in deleted.failed() {
            // The copy was sent: the message is in both queues until its next redrive,
            // harmless with idempotent processing.
            tracing::warn!(
                code = failure.code(),
                message = failure.message(),
                "a moved message could not be deleted from the dead-letter queue"
            );
        }
    }
    Ok((sent_count, sent.refused.len() as u64))
}

/// Makes held messages visible again at once; a failure only delays them by the hold.
async fn release(clients: &OpsClients, dlq_url: &str, receipts: &[String]) {
    for chunk in receipts.chunks(10) {
        let entries = chunk
            .iter()
            .enumerate()
            .filter_map(|(index, receipt)| {
                ChangeMessageVisibilityBatchRequestEntry::builder()
                    .id(index.to_string())
                    .receipt_handle(receipt)
                    .visibility_timeout(0)
                    .build()
                    .ok()
            })
            .collect::<Vec<_>>();
        let result = clients
            .aws
            .sqs
            .change_message_visibility_batch()
            .queue_url(dlq_url)
            .set_entries(Some(entries))
            .send()
            .await;
        if let Err(err) = result {
            tracing::warn!(error = %aws_sdk_sqs::error::DisplayErrorContext(&err), "kept messages stay invisible until their hold ends");
        }
    }
}

async fn start_move_task(
    clients: &OpsClients,
    dlq_url: &str,
    source_arn: &str,
) -> Result<String, OpsError> {
    let dlq_arn = queue_attribute(clients, dlq_url, QueueAttributeName::QueueArn).await?;
    const CALL: &str = "StartMessageMoveTask";
    let output = clients
        .aws
        .sqs
        .start_message_move_task()
        .source_arn(&dlq_arn)
        .destination_arn(source_arn)
        .send()
        .await
        .map_err(|err| classify(CALL, Subject::Queue(dlq_url), err))?;
    Ok(output.task_handle.unwrap_or_default())
}

fn render_text(summary: &RedriveSummary) -> String {
    let verb = if summary.dry_run {
        "would move"
    } else {
        "moved"
    };
    let mut text = format!(
        "{}: {} dead-lettered; {verb} {}, kept {}{}\n",
        summary.dlq_url,
        summary.dead_lettered,
        summary.moved,
        summary.kept,
        if summary.failed > 0 {
            format!(", {} FAILED", summary.failed)
        } else {
            String::new()
        },
    );
    let mut kinds: Vec<_> = summary.by_kind.iter().collect();
    kinds.sort();
    for (kind, count) in kinds {
        text.push_str(&format!("  {kind}: {count}\n"));
    }
    if let Some(task) = &summary.move_task {
        text.push_str(&format!(
            "  SQS move task {task} started; `aws sqs list-message-move-tasks` shows its progress\n"
        ));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_filter_selects_by_any_objects_kind() {
        let kinds = |k: &[&str]| k.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        assert!(selected(&[], &kinds(&[])));
        assert!(selected(&[], &kinds(&["invalid_json"])));
        assert!(selected(&kinds(&["none"]), &kinds(&["ok", "none"])));
        assert!(!selected(&kinds(&["invalid_json"]), &kinds(&["none"])));
        assert!(!selected(&kinds(&["invalid_json"]), &kinds(&[])));
    }
}
