//! The control loop: for each pool, observe → decide → plan → act, then wait.
//!
//! One loop per pool, each with its own poll interval and policy state. The same loop runs
//! live and in dry-run; only the [`Actuator`] differs. Errors have one policy
//! ([`ErrorPolicy`]): a failed read holds capacity (the policy sees the missing data); a
//! failed call stops only the calls that need it, the others are still made. Either is
//! logged and counted by kind, and the next poll plans again, so retries what is still
//! needed; after a transient failure (throttled, timeout, unavailable) it waits longer,
//! doubling up to `max_backoff_secs`, and the first poll without one resets the wait.
//! Nothing ends the loop but the shutdown signal, and a poll that has started runs to
//! completion first.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::watch;

use crate::actuate::Actuator;
use crate::aws::{ApiError, ApiErrorKind};
use crate::config::Pool;
use crate::decision_log::{DecisionLog, DecisionRecord};
use crate::drains::DrainMemory;
use crate::events::{ApiCallFailed, BackingOff, CapacityCall};
use crate::metrics::Metrics;
use crate::observe::{Observer, PoolSnapshot};
use crate::plan::{Action, plan};
use crate::policy::{Decision, PolicyState, decide};
use crate::warm_pool;

/// How long to wait before the next poll, given how the last ones went. It decides on the
/// kinds of the failures alone: throttling, timeouts and an unreachable endpoint
/// ([`ApiErrorKind::is_transient`]) double the wait; a call refused as invalid, denied or
/// naming a missing resource fails the same way however long the loop waits, so the loop
/// keeps its pace (the failure is still logged and counted on every poll).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorPolicy {
    poll_interval: Duration,
    max_backoff: Duration,
    consecutive_failures: u32,
}

impl ErrorPolicy {
    /// Waits `poll_interval` after a clean poll; after transient failures, doubles from
    /// there up to `max_backoff` (never below the poll interval).
    pub fn new(poll_interval: Duration, max_backoff: Duration) -> ErrorPolicy {
        ErrorPolicy {
            poll_interval,
            max_backoff: max_backoff.max(poll_interval),
            consecutive_failures: 0,
        }
    }

    /// The wait before the next poll, after a poll that failed in these ways (none: clean).
    pub fn next_wait(&mut self, failures: impl IntoIterator<Item = ApiErrorKind>) -> Duration {
        if !failures.into_iter().any(ApiErrorKind::is_transient) {
            self.consecutive_failures = 0;
            return self.poll_interval;
        }
        self.consecutive_failures = self.consecutive_failures.saturating_add(1);
        let factor = 2u32.saturating_pow(self.consecutive_failures.min(20));
        self.poll_interval
            .saturating_mul(factor)
            .min(self.max_backoff)
    }

    /// Whether the last poll made the loop wait longer than its interval.
    pub fn backing_off(&self) -> bool {
        self.consecutive_failures > 0
    }
}

/// What one poll saw, decided and did.
#[derive(Debug, Clone)]
pub struct Tick {
    /// The observation.
    pub snapshot: PoolSnapshot,
    /// The policy's decision.
    pub decision: Decision,
    /// The calls planned (made, or in dry-run skipped).
    pub calls: Vec<Action>,
    /// The calls that failed, in plan order. Every other call was made, except the ones in
    /// `skipped`; the next poll plans again, so a failed call is retried if still needed.
    pub failed_calls: Vec<ApiError>,
    /// Calls not made because a call they need failed ([`Action::needs`]).
    pub skipped: Vec<Action>,
}

/// Reads whose failure the error policy does not weigh: CloudWatch only corroborates (its
/// failure already keeps the pool from scaling to zero) and is retried on its own
/// interval; the warm pool only informs the log and metrics (a stack from before warm pools
/// may not grant `DescribeWarmPool`).
const INFORMATIVE_READS: [&str; 2] = ["GetMetricData", "DescribeWarmPool"];

impl Tick {
    /// The kinds of the failures the error policy weighs: every failed call and every
    /// failed read but the [`INFORMATIVE_READS`].
    pub fn failure_kinds(&self) -> impl Iterator<Item = ApiErrorKind> + '_ {
        let reads = self
            .snapshot
            .errors
            .iter()
            .filter(|err| !INFORMATIVE_READS.contains(&err.call));
        self.failed_calls.iter().chain(reads).map(|err| err.kind)
    }

    /// Whether anything the error policy weighs failed.
    pub fn failed(&self) -> bool {
        self.failure_kinds().next().is_some()
    }
}

/// Notes in `drains` what a call that went through did to a drain.
fn remember(drains: &mut DrainMemory, action: &Action, now: Duration) {
    match action {
        Action::DrainContainerInstance { instance_id, .. } => drains.drained(instance_id, now),
        Action::ActivateContainerInstance { instance_id, .. }
        | Action::TerminateInstance { instance_id, .. } => drains.released(instance_id),
        Action::UpdateService { .. }
        | Action::SetDesiredCapacity { .. }
        | Action::PutWarmPool { .. } => {}
    }
}

/// When each pool's loop last finished a poll, for `/healthz`.
#[derive(Debug)]
pub struct Heartbeat {
    started: Instant,
    last_poll_millis: Vec<AtomicU64>,
    stale_after: Duration,
}

impl Heartbeat {
    /// A heartbeat for `pools` loops that counts as stale after `stale_after` without a
    /// finished poll.
    pub fn new(pools: usize, stale_after: Duration) -> Heartbeat {
        Heartbeat {
            started: Instant::now(),
            last_poll_millis: (0..pools).map(|_| AtomicU64::new(0)).collect(),
            stale_after,
        }
    }

    fn beat(&self, pool: usize) {
        if let Some(slot) = self.last_poll_millis.get(pool) {
            slot.store(millis(self.started.elapsed()), Ordering::Relaxed);
        }
    }

    /// Whether every loop finished a poll recently (a slow start counts from process start).
    pub fn healthy(&self) -> bool {
        let now = millis(self.started.elapsed());
        let limit = millis(self.stale_after);
        self.last_poll_millis
            .iter()
            .all(|slot| now.saturating_sub(slot.load(Ordering::Relaxed)) <= limit)
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Where the loop's notion of time comes from: the policy's `now`, a [`Duration`] since an
/// epoch of the clock's choosing that never runs backwards. The live loop reads a monotonic
/// clock; the simulator passes its simulated time, so both run the same [`PoolLoop::tick`].
pub trait Clock {
    /// Time since the clock's epoch.
    fn now(&self) -> Duration;
}

/// Wall time since the clock was made, immune to system clock changes.
#[derive(Debug, Clone, Copy)]
pub struct MonotonicClock {
    started: Instant,
}

impl MonotonicClock {
    /// A clock whose epoch is now.
    pub fn start() -> MonotonicClock {
        MonotonicClock {
            started: Instant::now(),
        }
    }
}

impl Clock for MonotonicClock {
    fn now(&self) -> Duration {
        self.started.elapsed()
    }
}

/// One pool's loop and everything it carries between polls.
#[derive(Debug)]
pub struct PoolLoop<O, A, C = MonotonicClock> {
    pool: Pool,
    observer: O,
    actuator: A,
    /// The policy's time: the live loop's epoch is when the loop was made.
    clock: C,
    state: PolicyState,
    /// The container instances this loop drained, so that only those are taken back.
    drains: DrainMemory,
    log: DecisionLog,
    metrics: Metrics,
    /// The plan dry-run showed last, so an unchanged plan is not shown again.
    last_dry_run_calls: Vec<Action>,
}

impl<O: Observer, A: Actuator> PoolLoop<O, A> {
    /// A loop for one pool on the monotonic clock, its epoch now.
    pub fn new(pool: Pool, observer: O, actuator: A, log: DecisionLog, metrics: Metrics) -> Self {
        PoolLoop::with_clock(
            pool,
            observer,
            actuator,
            MonotonicClock::start(),
            log,
            metrics,
        )
    }
}

impl<O: Observer, A: Actuator, C: Clock> PoolLoop<O, A, C> {
    /// A loop for one pool whose policy reads time from `clock`.
    pub fn with_clock(
        pool: Pool,
        observer: O,
        actuator: A,
        clock: C,
        log: DecisionLog,
        metrics: Metrics,
    ) -> Self {
        PoolLoop {
            pool,
            observer,
            actuator,
            clock,
            state: PolicyState::default(),
            drains: DrainMemory::default(),
            log,
            metrics,
            last_dry_run_calls: Vec::new(),
        }
    }

    /// The pool this loop controls.
    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    /// One poll: observe, decide, plan, act, record.
    pub async fn tick(&mut self) -> Tick {
        let snapshot = self.observer.observe(&self.pool).await;
        let now = self.clock.now();
        let (decision, state) = decide(&snapshot.observation, &self.state, &self.pool.policy, now);
        self.state = state;
        self.drains.observe(snapshot.hosts.as_deref(), now);
        let drains = &self.drains;
        let mut calls = plan(&self.pool, &snapshot, &decision, |id| {
            drains.origin(id, now)
        });
        let arrivals = self.state.estimates().arrivals_per_sec;
        calls.extend(warm_pool::planned(&self.pool, &snapshot, arrivals));
        let pool = self.pool.name.as_str();
        for error in &snapshot.errors {
            ApiCallFailed { pool, error }.emit(&self.metrics);
        }
        self.metrics.observed(pool, &snapshot, &decision);

        let dry_run = self.actuator.dry_run();
        // In dry-run nothing changes, so the same plan comes back every poll: it is shown
        // when it changes, not every time.
        let show = !(dry_run && calls == self.last_dry_run_calls);
        let reason = decision.reason.to_string();
        let mut failed: Vec<&Action> = Vec::new();
        let mut failed_calls = Vec::new();
        let mut skipped = Vec::new();
        for action in &calls {
            if failed.iter().any(|earlier| action.needs(earlier)) {
                skipped.push(action.clone());
                continue;
            }
            let result = self.actuator.apply(action).await;
            if result.is_ok() && !dry_run {
                remember(&mut self.drains, action, now);
            }
            match result {
                Ok(()) if show => CapacityCall {
                    pool,
                    action,
                    reason: &reason,
                    dry_run,
                }
                .emit(&self.metrics),
                Ok(()) => {}
                Err(error) => {
                    ApiCallFailed {
                        pool,
                        error: &error,
                    }
                    .emit(&self.metrics);
                    failed.push(action);
                    failed_calls.push(error);
                }
            }
        }
        let log_line = !calls.is_empty() && show;
        if log_line || self.log.keeps_latest() {
            let mut record =
                DecisionRecord::new(pool, dry_run, &snapshot, &decision, calls.clone());
            record.failed = failed_calls.iter().map(ToString::to_string).collect();
            record.skipped.clone_from(&skipped);
            if log_line {
                self.log.write(&record);
            } else {
                // Not a change worth a line, but `status` shows it as the latest decision.
                self.log.remember(record);
            }
        }
        if dry_run {
            self.last_dry_run_calls.clone_from(&calls);
        }
        Tick {
            snapshot,
            decision,
            calls,
            failed_calls,
            skipped,
        }
    }

    /// Polls until `shutdown` turns true, reporting each finished poll to `heartbeat` as
    /// loop number `index`.
    pub async fn run(
        mut self,
        index: usize,
        heartbeat: Arc<Heartbeat>,
        max_backoff: Duration,
        mut shutdown: watch::Receiver<bool>,
    ) {
        let mut errors = ErrorPolicy::new(self.pool.poll_interval, max_backoff);
        tracing::info!(
            pool = self.pool.name.as_str(),
            dry_run = self.actuator.dry_run(),
            poll_interval_secs = self.pool.poll_interval.as_secs_f64(),
            "controlling pool"
        );
        while !*shutdown.borrow() {
            let tick = self.tick().await;
            heartbeat.beat(index);
            let wait = errors.next_wait(tick.failure_kinds());
            if errors.backing_off() {
                BackingOff {
                    pool: &self.pool.name,
                    wait,
                }
                .emit();
            }
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                _ = shutdown.changed() => {}
            }
        }
        tracing::info!(pool = self.pool.name.as_str(), "stopped");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::tests::{host, pool, snapshot};
    use crate::policy::{PoolPolicy, QueueDepth};

    /// Sees the same pool on every poll.
    struct Fixed(PoolSnapshot);

    impl Observer for Fixed {
        async fn observe(&mut self, _pool: &Pool) -> PoolSnapshot {
            self.0.clone()
        }
    }

    /// Makes every call except those of one operation, which AWS refuses; records all tries.
    #[derive(Default)]
    struct Refusing {
        refused: &'static str,
        tried: Vec<&'static str>,
    }

    impl Actuator for Refusing {
        fn dry_run(&self) -> bool {
            false
        }

        async fn apply(&mut self, action: &Action) -> Result<(), ApiError> {
            self.tried.push(action.call());
            if action.call() == self.refused {
                Err(ApiError {
                    call: action.call(),
                    kind: ApiErrorKind::Invalid,
                    message: "refused by the test".into(),
                })
            } else {
                Ok(())
            }
        }
    }

    /// A pool that scales in as soon as the queue is empty, so one poll shows the plan.
    fn eager_pool() -> Pool {
        Pool {
            policy: PoolPolicy {
                scale_in_stabilization: Duration::ZERO,
                idle_window: Duration::ZERO,
                require_empty_receives: false,
                ..PoolPolicy::default()
            },
            ..pool()
        }
    }

    fn with_backlog(mut snapshot: PoolSnapshot, visible: u64) -> PoolSnapshot {
        snapshot.observation.queue = Some(QueueDepth {
            visible,
            ..QueueDepth::default()
        });
        snapshot
    }

    fn pool_loop(snapshot: PoolSnapshot, refused: &'static str) -> PoolLoop<Fixed, Refusing> {
        PoolLoop::new(
            eager_pool(),
            Fixed(snapshot),
            Refusing {
                refused,
                tried: Vec::new(),
            },
            DecisionLog::to_writer(std::io::sink()),
            Metrics::default(),
        )
    }

    /// Issue 12, class 9: a group that refuses a larger desired capacity (its MaxSize was
    /// lowered) no longer keeps the service from scaling out; the refusal is reported, the
    /// poll counts as failed, and the next poll tries it again.
    #[tokio::test]
    async fn a_refused_capacity_call_does_not_stop_the_service_update() {
        let mut pool_loop = pool_loop(
            with_backlog(snapshot(0, 0, vec![]), 3),
            "SetDesiredCapacity",
        );

        let tick = pool_loop.tick().await;

        assert_eq!(
            pool_loop.actuator.tried,
            ["SetDesiredCapacity", "UpdateService"]
        );
        let failed: Vec<&str> = tick.failed_calls.iter().map(|e| e.call).collect();
        assert_eq!(failed, ["SetDesiredCapacity"]);
        assert!(tick.skipped.is_empty(), "{:?}", tick.skipped);
        assert!(tick.failed());

        pool_loop.tick().await;
        assert_eq!(
            pool_loop.actuator.tried,
            [
                "SetDesiredCapacity",
                "UpdateService",
                "SetDesiredCapacity",
                "UpdateService"
            ]
        );
    }

    /// Issue 12, class 9: when the scale-in service update fails, the drain that needs it
    /// waits, but the termination of an instance already drained and idle goes ahead.
    #[tokio::test]
    async fn a_failed_service_update_holds_only_the_drain_that_needs_it() {
        let hosts = vec![host("i-1", "ACTIVE", 0), host("i-2", "DRAINING", 0)];
        let mut pool_loop = pool_loop(snapshot(2, 2, hosts), "UpdateService");
        // This loop drained i-2 on an earlier poll.
        pool_loop.drains.drained("i-2", Duration::ZERO);

        let tick = pool_loop.tick().await;

        assert_eq!(
            pool_loop.actuator.tried,
            ["UpdateService", "TerminateInstanceInAutoScalingGroup"]
        );
        let failed: Vec<&str> = tick.failed_calls.iter().map(|e| e.call).collect();
        assert_eq!(failed, ["UpdateService"]);
        assert!(
            matches!(
                tick.skipped.as_slice(),
                [Action::DrainContainerInstance { instance_id, .. }] if instance_id == "i-1"
            ),
            "{:?}",
            tick.skipped
        );
    }

    #[test]
    fn clean_polls_wait_the_poll_interval() {
        let mut policy = ErrorPolicy::new(Duration::from_secs(5), Duration::from_secs(60));
        assert_eq!(policy.next_wait([]), Duration::from_secs(5));
        assert_eq!(policy.next_wait([]), Duration::from_secs(5));
    }

    #[test]
    fn failures_double_the_wait_up_to_the_cap_and_success_resets() {
        let mut policy = ErrorPolicy::new(Duration::from_secs(5), Duration::from_secs(60));
        let waits: Vec<u64> = (0..6)
            .map(|_| policy.next_wait([ApiErrorKind::Throttled]).as_secs())
            .collect();
        assert_eq!(waits, [10, 20, 40, 60, 60, 60]);
        assert!(policy.backing_off());
        assert_eq!(policy.next_wait([]), Duration::from_secs(5));
        assert!(!policy.backing_off());
        assert_eq!(
            policy.next_wait([ApiErrorKind::Unavailable]),
            Duration::from_secs(10)
        );
    }

    /// Issue 12 (the controller's `ApiError` kind): a refusal that waiting cannot fix (the
    /// group's MaxSize, a denied permission, a missing resource) keeps the loop at its pace,
    /// so the calls that still work are not slowed down; one transient failure among them
    /// is enough to back off.
    #[test]
    fn only_transient_kinds_back_off() {
        let mut policy = ErrorPolicy::new(Duration::from_secs(5), Duration::from_secs(60));
        for kind in [
            ApiErrorKind::Invalid,
            ApiErrorKind::Denied,
            ApiErrorKind::NotFound,
            ApiErrorKind::Unexpected,
        ] {
            assert_eq!(policy.next_wait([kind]), Duration::from_secs(5), "{kind}");
        }
        for kind in [
            ApiErrorKind::Throttled,
            ApiErrorKind::Timeout,
            ApiErrorKind::Unavailable,
        ] {
            let mut policy = policy.clone();
            let wait = policy.next_wait([ApiErrorKind::Invalid, kind]);
            assert_eq!(wait, Duration::from_secs(10), "{kind}");
        }
    }

    #[test]
    fn a_cap_below_the_poll_interval_never_polls_faster() {
        let mut policy = ErrorPolicy::new(Duration::from_secs(5), Duration::from_secs(1));
        assert_eq!(
            policy.next_wait([ApiErrorKind::Timeout]),
            Duration::from_secs(5)
        );
    }

    #[test]
    fn many_failures_do_not_overflow() {
        let mut policy = ErrorPolicy::new(Duration::from_millis(1), Duration::from_secs(3600));
        for _ in 0..1000 {
            assert!(policy.next_wait([ApiErrorKind::Throttled]) <= Duration::from_secs(3600));
        }
    }
}
