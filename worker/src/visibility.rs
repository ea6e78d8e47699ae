//! A held message's visibility: the heartbeat that keeps it hidden while it is processed,
//! and the delay before a failed message is tried again.
//!
//! The classic poller never extended visibility, so a file slower than the queue's timeout
//! reappeared and was processed twice, concurrently. Here the visibility is renewed every
//! third of `--visibility-timeout`, so two heartbeats can be lost before the message leaks.

use std::time::Duration;

use crate::deadline::within;
use crate::queue::Queue;
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

/// Renews the message's visibility until `stop` fires (or its sender is dropped).
///
/// A renewal that has started is completed (or fails at its deadline, `call_timeout` capped
/// at the renewal interval) before this returns, so the caller can stop the heartbeat and
/// then delete or release the message knowing that no late renewal will land after its
/// release and hide the message again, and a hung renewal cannot hold the message's fate.
pub async fn heartbeat(
    queue: impl Queue,
    receipt_handle: String,
    visibility_timeout: Duration,
    call_timeout: Duration,
    message_id: String,
    mut stop: tokio::sync::oneshot::Receiver<()>,
) {
    let interval = heartbeat_interval(visibility_timeout);
    let renewal_deadline = call_timeout.min(interval);
    loop {
        tokio::select! {
            _ = &mut stop => return,
            () = tokio::time::sleep(interval) => {}
        }
        let renewed = within(
            renewal_deadline,
            "ChangeMessageVisibility",
            queue.set_visibility(&receipt_handle, visibility_timeout),
        )
        .await;
        if let Err(error) = renewed {
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
