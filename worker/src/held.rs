//! The messages a worker holds right now, each with its own release signal.
//!
//! A message task runs until its outcome is written or until it is told to let go. At the
//! end of the shutdown grace every held message is told; after a Spot interruption notice
//! only those that would not finish in time are (see [`crate::interruption`]), which is why
//! the signal is per message and not one flag for the whole worker. The registry also keeps
//! how long recent messages took, which is what "would not finish in time" is judged by.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;

/// How many recent message durations the estimate is taken from.
const RECENT: usize = 64;

/// Why a held message is handed back to the queue unfinished.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReleaseReason {
    /// The shutdown grace is over.
    Shutdown,
    /// A Spot interruption notice came and the message would not finish before it.
    Interruption,
}

impl ReleaseReason {
    /// The `reason` label of logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            ReleaseReason::Shutdown => "shutdown",
            ReleaseReason::Interruption => "interruption",
        }
    }
}

/// What a message task watches: `Some(reason)` once it must let go.
pub type ReleaseSignal = watch::Receiver<Option<ReleaseReason>>;

/// The registry of held messages. Cheap to share through an [`Arc`].
#[derive(Debug, Default)]
pub struct HeldMessages {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    next_id: u64,
    messages: HashMap<u64, Entry>,
    /// Durations of the last [`RECENT`] messages that ran to their end.
    recent: VecDeque<Duration>,
}

#[derive(Debug)]
struct Entry {
    started: Instant,
    release: watch::Sender<Option<ReleaseReason>>,
}

/// A registered message; hand it back with [`HeldMessages::finish`] when its task ends.
#[derive(Debug)]
#[must_use]
pub struct Ticket(u64);

/// What one pass of [`HeldMessages::release_unless`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ReleasePass {
    /// Messages told to let go in this pass.
    pub released: usize,
    /// Messages left running.
    pub kept: usize,
}

impl HeldMessages {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding this lock cannot leave the map half-updated (every update is
        // a single insert or remove), so a poisoned lock is still sound to use.
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Registers a message that starts now; the signal turns `Some` when it must let go.
    pub fn register(&self) -> (Ticket, ReleaseSignal) {
        let (release, signal) = watch::channel(None);
        let mut inner = self.lock();
        let id = inner.next_id;
        inner.next_id += 1;
        inner.messages.insert(
            id,
            Entry {
                started: Instant::now(),
                release,
            },
        );
        (Ticket(id), signal)
    }

    /// Forgets a message whose task ended; its duration counts towards the estimate only
    /// if it was never told to let go (a released message's time says nothing about how
    /// long a file takes).
    pub fn finish(&self, ticket: Ticket) {
        let mut inner = self.lock();
        let Some(entry) = inner.messages.remove(&ticket.0) else {
            return;
        };
        if entry.release.borrow().is_none() {
            if inner.recent.len() == RECENT {
                inner.recent.pop_front();
            }
            inner.recent.push_back(entry.started.elapsed());
        }
    }

    /// How many messages are held.
    pub fn len(&self) -> usize {
        self.lock().messages.len()
    }

    /// Whether no message is held.
    pub fn is_empty(&self) -> bool {
        self.lock().messages.is_empty()
    }

    /// A cautious guess of how long a message takes: the 90th percentile of the recent
    /// ones, `None` until one has run to its end.
    pub fn typical_duration(&self) -> Option<Duration> {
        percentile_90(self.lock().recent.iter().copied().collect())
    }

    /// Tells every held message to let go.
    pub fn release_all(&self, reason: ReleaseReason) -> usize {
        self.release_unless(reason, |_| false).released
    }

    /// Tells every held message for which `keep(elapsed)` is false to let go, where
    /// `elapsed` is how long it has been held; messages already told are left as they are.
    pub fn release_unless(
        &self,
        reason: ReleaseReason,
        keep: impl Fn(Duration) -> bool,
    ) -> ReleasePass {
        let inner = self.lock();
        let now = Instant::now();
        let mut pass = ReleasePass::default();
        for entry in inner.messages.values() {
            if entry.release.borrow().is_some() {
                continue;
            }
            if keep(now.saturating_duration_since(entry.started)) {
                pass.kept += 1;
            } else {
                entry.release.send_replace(Some(reason));
                pass.released += 1;
            }
        }
        pass
    }
}

/// Shares one registry between the receive loop, the message tasks and the watcher.
pub fn shared() -> Arc<HeldMessages> {
    Arc::new(HeldMessages::default())
}

/// The 90th percentile (nearest rank) of `durations`; `None` when empty.
fn percentile_90(mut durations: Vec<Duration>) -> Option<Duration> {
    if durations.is_empty() {
        return None;
    }
    durations.sort_unstable();
    let rank = (durations.len() * 9).div_ceil(10);
    durations.get(rank.saturating_sub(1)).copied()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const MS: fn(u64) -> Duration = Duration::from_millis;

    #[test]
    fn the_estimate_is_the_ninetieth_percentile() {
        assert_eq!(percentile_90(vec![]), None);
        assert_eq!(percentile_90(vec![MS(5)]), Some(MS(5)));
        let ten: Vec<Duration> = (1..=10).map(|n| MS(n * 100)).collect();
        assert_eq!(percentile_90(ten), Some(MS(900)));
        let twenty: Vec<Duration> = (1..=20).rev().map(|n| MS(n * 10)).collect();
        assert_eq!(percentile_90(twenty), Some(MS(180)));
    }

    #[tokio::test]
    async fn only_messages_that_ran_to_their_end_shape_the_estimate() {
        let held = HeldMessages::default();
        let (done, _signal) = held.register();
        let (released, signal) = held.register();
        assert_eq!(held.len(), 2);
        assert_eq!(
            held.release_unless(ReleaseReason::Interruption, |_| false)
                .released,
            2
        );
        assert_eq!(*signal.borrow(), Some(ReleaseReason::Interruption));
        held.finish(released);
        assert_eq!(held.typical_duration(), None);
        // `done` was told too, so it does not count either.
        held.finish(done);
        assert!(held.is_empty());
        assert_eq!(held.typical_duration(), None);
        let (finished, _signal) = held.register();
        held.finish(finished);
        assert!(held.typical_duration().is_some());
    }

    #[tokio::test]
    async fn a_message_is_told_once_and_keeps_its_first_reason() {
        let held = HeldMessages::default();
        let (_kept, kept_signal) = held.register();
        let pass = held.release_unless(ReleaseReason::Interruption, |_| true);
        assert_eq!(
            pass,
            ReleasePass {
                released: 0,
                kept: 1
            }
        );
        assert_eq!(*kept_signal.borrow(), None);
        assert_eq!(held.release_all(ReleaseReason::Interruption), 1);
        assert_eq!(held.release_all(ReleaseReason::Shutdown), 0);
        assert_eq!(*kept_signal.borrow(), Some(ReleaseReason::Interruption));
    }

    proptest! {
        #[test]
        fn the_estimate_lies_within_what_was_seen(millis in proptest::collection::vec(0u64..100_000, 1..100)) {
            let durations: Vec<Duration> = millis.iter().copied().map(MS).collect();
            let estimate = percentile_90(durations.clone()).expect("non-empty");
            let (min, max) = (
                durations.iter().min().copied().expect("min"),
                durations.iter().max().copied().expect("max"),
            );
            prop_assert!(min <= estimate && estimate <= max);
            let at_most = durations.iter().filter(|d| **d <= estimate).count();
            prop_assert!(at_most * 10 >= durations.len() * 9);
        }
    }
}
