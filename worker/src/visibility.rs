//! A held message's visibility: the heartbeat that keeps it hidden while it is processed,
//! and the delay before a failed message is tried again.
//!
//! The classic poller never extended visibility, so a file slower than the queue's timeout
//! reappeared and was processed twice, concurrently. Here the visibility is renewed every
//! third of `--visibility-timeout`, so two heartbeats can be lost before the message leaks.

use std::time::Duration;

use aws_sdk_sqs::types::{ChangeMessageVisibilityBatchRequestEntry, Message};

use crate::telemetry::{self, MessageContext};

/// How often a held message's visibility is renewed.
pub fn heartbeat_interval(visibility_timeout: Duration) -> Duration {
    (visibility_timeout / 3).max(Duration::from_millis(500))
}

/// Delay before a message that failed transiently is received again: `base` doubled for each
/// receive after the first, capped at `max`. Growing with the receive count spreads retries
/// out while the redrive policy counts them towards the DLQ.
pub fn retry_delay(receive_count: u32, base: Duration, max: Duration) -> Duration {
    let doublings = receive_count.saturating_sub(1).min(31);
    base.checked_mul(1 << doublings).unwrap_or(max).min(max)
}

/// SQS wants visibility in whole seconds, at most 12 hours.
pub fn visibility_seconds(delay: Duration) -> i32 {
    i32::try_from(delay.as_secs().min(12 * 60 * 60)).unwrap_or(43_200)
}

/// Sets a held message's visibility.
pub async fn set_visibility(
    sqs: &aws_sdk_sqs::Client,
    queue_url: &str,
    receipt_handle: &str,
    delay: Duration,
) -> Result<(), String> {
    sqs.change_message_visibility()
        .queue_url(queue_url)
        .receipt_handle(receipt_handle)
        .visibility_timeout(visibility_seconds(delay))
        .send()
        .await
        .map(drop)
        .map_err(|err| crate::sdk_error::error_chain(&err))
}

/// SQS's largest `ChangeMessageVisibilityBatch`.
const MAX_BATCH: usize = 10;

/// Makes `messages` visible again at once, in batches of up to ten, and returns one outcome
/// per message, in order. Used for messages received while shutting down: the worker will not
/// process them, and without this they would stay hidden for a whole visibility timeout.
pub async fn release_now(
    sqs: &aws_sdk_sqs::Client,
    queue_url: &str,
    messages: &[Message],
) -> Vec<Result<(), String>> {
    let mut outcomes = Vec::with_capacity(messages.len());
    for batch in messages.chunks(MAX_BATCH) {
        outcomes.extend(release_batch(sqs, queue_url, batch).await);
    }
    outcomes
}

async fn release_batch(
    sqs: &aws_sdk_sqs::Client,
    queue_url: &str,
    batch: &[Message],
) -> Vec<Result<(), String>> {
    let mut outcomes: Vec<Result<(), String>> =
        vec![Err("the message has no receipt handle".to_owned()); batch.len()];
    let mut entries = Vec::with_capacity(batch.len());
    for (index, message) in batch.iter().enumerate() {
        let Some(receipt_handle) = message.receipt_handle() else {
            continue;
        };
        match ChangeMessageVisibilityBatchRequestEntry::builder()
            .id(index.to_string())
            .receipt_handle(receipt_handle)
            .visibility_timeout(0)
            .build()
        {
            Ok(entry) => {
                outcomes[index] = Err("SQS did not report on this entry".to_owned());
                entries.push(entry);
            }
            Err(err) => outcomes[index] = Err(err.to_string()),
        }
    }
    if entries.is_empty() {
        return outcomes;
    }
    let sent: Vec<usize> = entries
        .iter()
        .filter_map(|entry| entry.id().parse().ok())
        .collect();
    let slot = |id: &str| {
        id.parse::<usize>()
            .ok()
            .filter(|index| *index < batch.len())
    };
    match sqs
        .change_message_visibility_batch()
        .queue_url(queue_url)
        .set_entries(Some(entries))
        .send()
        .await
    {
        Ok(output) => {
            for done in output.successful() {
                if let Some(index) = slot(done.id()) {
                    outcomes[index] = Ok(());
                }
            }
            for failed in output.failed() {
                if let Some(index) = slot(failed.id()) {
                    outcomes[index] = Err(format!(
                        "{}: {}",
                        failed.code(),
                        failed.message().unwrap_or("no message")
                    ));
                }
            }
        }
        Err(err) => {
            let error = crate::sdk_error::error_chain(&err);
            for index in sent {
                outcomes[index] = Err(error.clone());
            }
        }
    }
    outcomes
}

/// Renews the message's visibility until `stop` fires (or its sender is dropped).
///
/// A renewal that has started is always completed before this returns, so the caller can
/// stop the heartbeat and then delete or release the message knowing that no late renewal
/// will land after its release and hide the message again.
pub async fn heartbeat(
    sqs: aws_sdk_sqs::Client,
    queue_url: String,
    receipt_handle: String,
    visibility_timeout: Duration,
    message_id: String,
    mut stop: tokio::sync::oneshot::Receiver<()>,
) {
    let interval = heartbeat_interval(visibility_timeout);
    loop {
        tokio::select! {
            _ = &mut stop => return,
            () = tokio::time::sleep(interval) => {}
        }
        if let Err(error) =
            set_visibility(&sqs, &queue_url, &receipt_handle, visibility_timeout).await
        {
            telemetry::message_call_failed(
                MessageContext {
                    message_id: &message_id,
                    receive_count: 0,
                },
                "ChangeMessageVisibility (heartbeat)",
                &error,
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const S: fn(u64) -> Duration = Duration::from_secs;

    #[test]
    fn retries_double_from_the_base_up_to_the_cap() {
        let table = [
            (0, 10),
            (1, 10),
            (2, 20),
            (3, 40),
            (4, 80),
            (7, 640),
            (8, 900),
            (100, 900),
        ];
        for (receive_count, seconds) in table {
            assert_eq!(
                retry_delay(receive_count, S(10), S(900)),
                S(seconds),
                "{receive_count}"
            );
        }
        assert_eq!(retry_delay(5, S(0), S(900)), S(0));
    }

    #[test]
    fn heartbeats_come_three_times_per_timeout() {
        assert_eq!(heartbeat_interval(S(120)), S(40));
        assert_eq!(heartbeat_interval(S(1)), Duration::from_millis(500));
    }

    proptest! {
        #[test]
        fn retry_delays_never_shrink_and_never_pass_the_cap(
            count in 0u32..200, base in 0u64..1000, cap in 0u64..50_000
        ) {
            let (base, cap) = (S(base.min(cap)), S(cap));
            let this = retry_delay(count, base, cap);
            prop_assert!(this <= cap);
            prop_assert!(retry_delay(count + 1, base, cap) >= this);
        }
    }
}
