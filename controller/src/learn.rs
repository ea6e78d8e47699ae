//! What the policy learns from what it observes: how long one message takes and how often
//! messages arrive.
//!
//! Nothing here needs a figure the operator has to measure. Between two complete polls the
//! queue's total (visible + in flight + delayed) goes up by the messages that arrived and
//! down by the messages the workers finished and deleted; each poll counts the net change
//! as arrivals (if up) or completions (if down). A message in flight occupies a worker
//! slot, so the in-flight count integrated over time is busy slot-time, and by Little's
//! law busy slot-time / completions is the time per message. An arrival and a completion
//! inside one poll interval cancel out, so under steady load both counts are low and the
//! time per message comes out high: the error is on the side of more capacity.
//!
//! The lengths of the spells in which the queue was completely empty (the gaps a pool at
//! zero would have to cold-start after) are kept as a histogram over log-spaced bins, with
//! the arrivals over the same long window: from them the policy reads what share of files
//! would meet a cold pool for a given hold time ([`Learned::cold_share`]).
//!
//! Every sum decays with a half-life, so the figures follow a workload that changes over
//! the day, and memory is a handful of numbers however long the controller runs. With
//! little or no data the estimates fall back to a prior (time per message) or to what the
//! observed window supports (arrival rate); both are clamped to documented bounds, so a
//! glitching queue attribute cannot produce an absurd size.

use std::time::Duration;

use serde::Serialize;

use crate::policy::QueueDepth;

/// How fast old observations fade: a figure from this long ago weighs half as much.
pub const HALF_LIFE: Duration = Duration::from_secs(1800);
/// Seconds per message assumed before any completion has been seen, weighted as one
/// message: a guess that the first completions quickly replace.
pub const PRIOR_SECS_PER_MESSAGE: f64 = 30.0;
/// Bounds of the learned seconds per message.
pub const SECS_PER_MESSAGE_BOUNDS: (f64, f64) = (0.1, 6.0 * 3600.0);
/// The arrival rate is counted over at least this many seconds, so one early arrival does
/// not read as a flood.
pub const MIN_WINDOW_SECS: f64 = 600.0;
/// Upper bound of the learned arrival rate, messages per second.
pub const MAX_ARRIVALS_PER_SEC: f64 = 100.0;
/// A quiet spell of `T` seconds since the last arrival bounds the arrival rate to
/// `QUIET_BOUND / T`: were arrivals Poisson at a higher rate, so long a spell without one
/// would happen less than 5 % of the time (`e^-3`). It lets the rate fall as soon as a burst
/// is over, instead of over the half-life.
pub const QUIET_BOUND: f64 = 3.0;
/// How fast the gap histogram and the arrivals it is compared with fade: long, because a
/// p95 is taken over a day's files, quiet night and busy day together.
pub const LONG_HALF_LIFE: Duration = Duration::from_secs(12 * 3600);
/// Bins of the gap histogram: bin `i` holds gaps from `gap_bin_start(i)` to the next start.
pub const GAP_BINS: usize = 24;
/// Fewest arrivals in the long window before the histogram is trusted.
pub const MIN_ARRIVALS_FOR_GAPS: f64 = 100.0;
/// Fewest completed empty spells (decayed) before their lengths are used to price a hold.
pub const MIN_SPELLS: f64 = 3.0;

/// Where gap bin `i` starts: 15 s × 1.25^i (15 s to about 40 minutes; the last bin is open).
pub fn gap_bin_start(i: usize) -> Duration {
    Duration::from_secs_f64(15.0 * 1.25f64.powi(i32::try_from(i).unwrap_or(i32::MAX)))
}

fn gap_bin(gap: Duration) -> usize {
    (0..GAP_BINS)
        .rev()
        .find(|&i| gap >= gap_bin_start(i))
        .unwrap_or(0)
}

/// A longer interval between complete polls (a controller restart, an outage) is not
/// measured: what happened inside it is unknown.
pub const MAX_STEP: Duration = Duration::from_secs(600);

/// The learned figures and the last poll they were updated from.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize)]
pub struct Learned {
    #[serde(skip)]
    last: Option<Sample>,
    /// Decayed sum of in-flight messages × seconds (busy slot-seconds).
    busy_slot_secs: f64,
    /// Decayed count of messages seen leaving the queue.
    completions: f64,
    /// Decayed count of messages seen arriving.
    arrivals: f64,
    /// Decayed seconds of observation.
    observed_secs: f64,
    /// Since when the queue has been completely empty, while it is.
    #[serde(skip)]
    empty_since: Option<Duration>,
    /// Decayed counts of completed empty spells by length (long half-life).
    gaps: [f64; GAP_BINS],
    /// Decayed count of arrivals over the same long window.
    long_arrivals: f64,
    /// The last poll that saw the queue's total go up (an arrival), if any.
    #[serde(skip)]
    last_arrival: Option<Duration>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
struct Sample {
    at: Duration,
    total: u64,
    in_flight: u64,
}

/// What the policy sizes with, read off [`Learned`].
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Estimates {
    /// Seconds one slot needs for one message.
    pub secs_per_message: f64,
    /// Messages arriving per second.
    pub arrivals_per_sec: f64,
}

impl Learned {
    /// Takes one complete poll of the queue into account.
    pub fn observe(&mut self, now: Duration, queue: &QueueDepth) {
        let total = queue
            .visible
            .saturating_add(queue.in_flight)
            .saturating_add(queue.delayed);
        let sample = Sample {
            at: now,
            total,
            in_flight: queue.in_flight,
        };
        if let Some(last) = self.last {
            let step = now.saturating_sub(last.at);
            if step <= MAX_STEP {
                let dt = step.as_secs_f64();
                let keep = 0.5f64.powf(dt / HALF_LIFE.as_secs_f64());
                let mean_in_flight = (last.in_flight as f64 + sample.in_flight as f64) / 2.0;
                let change = total as f64 - last.total as f64;
                self.busy_slot_secs = self.busy_slot_secs * keep + mean_in_flight * dt;
                self.completions = self.completions * keep + (-change).max(0.0);
                self.arrivals = self.arrivals * keep + change.max(0.0);
                self.observed_secs = self.observed_secs * keep + dt;
                let keep_long = 0.5f64.powf(dt / LONG_HALF_LIFE.as_secs_f64());
                for count in &mut self.gaps {
                    *count *= keep_long;
                }
                self.long_arrivals = self.long_arrivals * keep_long + change.max(0.0);
                if total > 0
                    && let Some(since) = self.empty_since
                {
                    self.gaps[gap_bin(now.saturating_sub(since))] += 1.0;
                }
                if change > 0.0 {
                    self.last_arrival = Some(now);
                }
            }
        }
        self.empty_since = match (total, self.empty_since) {
            (0, Some(since)) => Some(since),
            (0, None) => Some(now),
            _ => None,
        };
        self.last = Some(sample);
    }

    /// The share of arrivals that would have met a cold pool had idle capacity been kept
    /// for `hold` (empty spells at least that long, counted in whole bins, times
    /// `files_per_cold_start`), over the long window; `None` while there are too few
    /// arrivals to say.
    pub fn cold_share(&self, hold: Duration, files_per_cold_start: f64) -> Option<f64> {
        if self.long_arrivals < MIN_ARRIVALS_FOR_GAPS {
            return None;
        }
        // The bin that holds `hold` counts whole: its shorter gaps are counted as cold too,
        // which errs towards holding longer.
        let longer: f64 = self.gaps[gap_bin(hold)..].iter().sum();
        Some((longer * files_per_cold_start / self.long_arrivals).min(1.0))
    }

    /// The expected idle cost, in instance-seconds per empty spell, of holding capacity for
    /// `hold` when a cold start costs `cold_start_cost`: a spell shorter than the hold costs
    /// its length (each bin at its geometric middle), a longer one the hold plus a cold
    /// start (the bin that holds `hold` counts as longer, as in [`Learned::cold_share`]).
    /// `None` while too few arrivals or no completed spell say what the spells are like.
    pub fn expected_idle_cost(&self, hold: Duration, cold_start_cost: f64) -> Option<f64> {
        let spells: f64 = self.gaps.iter().sum();
        if self.long_arrivals < MIN_ARRIVALS_FOR_GAPS || spells < MIN_SPELLS {
            return None;
        }
        let first_longer = gap_bin(hold);
        let cost: f64 = self
            .gaps
            .iter()
            .enumerate()
            .map(|(bin, &count)| {
                if bin < first_longer {
                    let middle = (gap_bin_start(bin).as_secs_f64()
                        * gap_bin_start(bin + 1).as_secs_f64())
                    .sqrt();
                    count * middle
                } else {
                    count * (hold.as_secs_f64() + cold_start_cost)
                }
            })
            .sum();
        Some(cost / spells)
    }

    /// Forgets the last poll, so the next complete one starts a new interval: used when an
    /// observation is missing and the change across the gap is unknown.
    pub fn interrupt(&mut self) {
        self.last = None;
        self.empty_since = None;
        self.last_arrival = None;
    }

    /// The current estimates, within their bounds. The arrival rate is the decayed count
    /// over the decayed observation time, no higher than the quiet since the last arrival
    /// allows ([`QUIET_BOUND`]).
    pub fn estimates(&self) -> Estimates {
        let (low, high) = SECS_PER_MESSAGE_BOUNDS;
        let secs_per_message =
            (self.busy_slot_secs + PRIOR_SECS_PER_MESSAGE) / (self.completions + 1.0);
        let mut arrivals_per_sec = self.mean_arrivals_per_sec();
        if let Some(quiet) = self.quiet_for() {
            let quiet = quiet.as_secs_f64();
            if quiet > 0.0 {
                arrivals_per_sec = arrivals_per_sec.min(QUIET_BOUND / quiet);
            }
        }
        Estimates {
            secs_per_message: if secs_per_message.is_finite() {
                secs_per_message.clamp(low, high)
            } else {
                PRIOR_SECS_PER_MESSAGE
            },
            arrivals_per_sec,
        }
    }

    /// How long since the last poll that saw an arrival, up to the latest poll; `None`
    /// before any arrival was seen (since the start or the last gap in the data).
    pub fn quiet_for(&self) -> Option<Duration> {
        let (last, arrival) = (self.last?, self.last_arrival?);
        Some(last.at.saturating_sub(arrival))
    }

    /// Whether the polls so far span at least [`MIN_WINDOW_SECS`] (decayed): enough to
    /// say the arrival rate is low, not merely unseen.
    pub fn has_rate_history(&self) -> bool {
        self.observed_secs >= MIN_WINDOW_SECS
    }

    /// The arrival rate over the decayed window alone, without the quiet bound: what the
    /// queue has averaged lately, bursts included, within its bounds. The cold share weighs
    /// each cold start with it (a burst that meets a cold pool is all delayed).
    pub fn mean_arrivals_per_sec(&self) -> f64 {
        let rate = self.arrivals / self.observed_secs.max(MIN_WINDOW_SECS);
        if rate.is_finite() {
            rate.clamp(0.0, MAX_ARRIVALS_PER_SEC)
        } else {
            0.0
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn queue(visible: u64, in_flight: u64) -> QueueDepth {
        QueueDepth {
            visible,
            in_flight,
            delayed: 0,
        }
    }

    #[test]
    fn no_data_gives_the_prior_and_no_arrivals() {
        let e = Learned::default().estimates();
        assert_eq!(e.secs_per_message, PRIOR_SECS_PER_MESSAGE);
        assert_eq!(e.arrivals_per_sec, 0.0);
    }

    #[test]
    fn one_slot_busy_ten_seconds_per_message_is_learned() {
        // One message every 10 s through one slot, polled every 5 s: in flight throughout,
        // the queue's total drops by one every other poll.
        let mut learned = Learned::default();
        let mut backlog = 200u64;
        for poll in 0..400u64 {
            if poll % 2 == 0 && poll > 0 {
                backlog -= 1;
            }
            learned.observe(Duration::from_secs(poll * 5), &queue(backlog, 1));
        }
        let e = learned.estimates();
        assert!((e.secs_per_message - 10.0).abs() < 0.5, "{e:?}");
    }

    #[test]
    fn arrivals_are_counted_per_second_of_observation() {
        // One message arrives every 60 s and is done before the next poll.
        let mut learned = Learned::default();
        for poll in 0..2000u64 {
            let waiting = u64::from(poll % 12 == 0);
            learned.observe(Duration::from_secs(poll * 5), &queue(waiting, 0));
        }
        let rate = learned.estimates().arrivals_per_sec;
        assert!((rate - 1.0 / 60.0).abs() < 0.002, "{rate}");
    }

    #[test]
    fn a_long_gap_is_not_measured() {
        let mut learned = Learned::default();
        learned.observe(Duration::from_secs(0), &queue(0, 0));
        learned.observe(Duration::from_secs(3600), &queue(500, 0));
        assert_eq!(learned.estimates().arrivals_per_sec, 0.0);
        learned.interrupt();
        learned.observe(Duration::from_secs(3605), &queue(0, 0));
        assert_eq!(learned.estimates().arrivals_per_sec, 0.0);
    }

    #[test]
    fn empty_spells_feed_the_cold_share() {
        // A file every 100 s that takes under 5 s: empty spells of about 95 s.
        let mut learned = Learned::default();
        for poll in 0..4000u64 {
            let waiting = u64::from(poll % 20 == 0);
            learned.observe(Duration::from_secs(poll * 5), &queue(waiting, 0));
        }
        let short = learned.cold_share(Duration::from_secs(30), 1.0);
        let long = learned.cold_share(Duration::from_secs(300), 1.0);
        assert!(short.is_some_and(|s| s > 0.9), "{short:?}");
        assert_eq!(long, Some(0.0));
        assert_eq!(Learned::default().cold_share(Duration::ZERO, 1.0), None);
    }

    #[test]
    fn a_quiet_spell_after_a_burst_bounds_the_arrival_rate() {
        // 1,000 files at once, worked off over 20 minutes, then 10 minutes of nothing.
        let mut learned = Learned::default();
        learned.observe(Duration::ZERO, &queue(0, 0));
        learned.observe(Duration::from_secs(5), &queue(960, 40));
        let burst_rate = learned.estimates().arrivals_per_sec;
        assert!(burst_rate > 1.0, "{burst_rate}");
        let mut left = 1000u64;
        for poll in 2..=360u64 {
            left = left.saturating_sub(4);
            learned.observe(Duration::from_secs(poll * 5), &queue(0, left.min(40)));
        }
        // The last arrival was 1,795 s ago: at most 3 / 1,795 per second, while the
        // average over the decayed window still remembers the burst.
        let e = learned.estimates();
        assert!(e.arrivals_per_sec <= QUIET_BOUND / 1795.0 + 1e-12, "{e:?}");
        assert!(
            learned.mean_arrivals_per_sec() > 0.1,
            "{}",
            learned.mean_arrivals_per_sec()
        );
        assert!(learned.has_rate_history());
        // Missing data forgets the last arrival: the rate falls back to the average, the
        // side of more capacity.
        learned.interrupt();
        assert_eq!(
            learned.estimates().arrivals_per_sec,
            learned.mean_arrivals_per_sec()
        );
        assert!(!Learned::default().has_rate_history());
    }

    #[test]
    fn the_expected_idle_cost_prices_short_spells_at_their_length_and_long_ones_at_a_cold_start() {
        // A file every 100 s, done within a poll: quiet spells of about 95 s.
        let mut learned = Learned::default();
        assert_eq!(learned.expected_idle_cost(Duration::ZERO, 300.0), None);
        for poll in 0..4000u64 {
            let waiting = u64::from(poll % 20 == 0);
            learned.observe(Duration::from_secs(poll * 5), &queue(waiting, 0));
        }
        // Held 300 s, every spell is held through: it costs its length (its bin's middle).
        let held = learned
            .expected_idle_cost(Duration::from_secs(300), 300.0)
            .unwrap();
        assert!((80.0..110.0).contains(&held), "{held}");
        // Held 30 s, every spell ends in a cold start: 30 + 300.
        let cut = learned
            .expected_idle_cost(Duration::from_secs(30), 300.0)
            .unwrap();
        assert!((cut - 330.0).abs() < 1e-9, "{cut}");
    }

    proptest! {
        #[test]
        fn estimates_stay_within_bounds(
            steps in prop::collection::vec((0u64..900, 0u64..1_000_000, 0u64..10_000, any::<bool>()), 1..200)
        ) {
            let mut learned = Learned::default();
            let mut now = Duration::ZERO;
            for (dt, visible, in_flight, gap) in steps {
                now += Duration::from_secs(dt);
                if gap {
                    learned.interrupt();
                }
                learned.observe(now, &queue(visible, in_flight));
                let e = learned.estimates();
                let (low, high) = SECS_PER_MESSAGE_BOUNDS;
                prop_assert!((low..=high).contains(&e.secs_per_message), "{e:?}");
                prop_assert!((0.0..=MAX_ARRIVALS_PER_SEC).contains(&e.arrivals_per_sec), "{e:?}");
                // The quiet bound only ever lowers the average.
                let mean = learned.mean_arrivals_per_sec();
                prop_assert!((0.0..=MAX_ARRIVALS_PER_SEC).contains(&mean), "{mean}");
                prop_assert!(e.arrivals_per_sec <= mean, "{e:?} above {mean}");
                if let Some(share) = learned.cold_share(Duration::from_secs(dt), 3.0) {
                    prop_assert!((0.0..=1.0).contains(&share), "{share}");
                }
            }
        }
    }
}
