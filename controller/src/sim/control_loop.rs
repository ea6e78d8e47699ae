//! The geobatch controller in the simulator: the live control loop itself.
//!
//! Nothing of the controller is re-implemented here. The simulated world gets an
//! [`Observer`] ([`SimObserver`]), an [`Actuator`] and a [`Clock`] ([`WorldHandle`]), and the
//! loop `geobatch-controller run`
//! runs — [`PoolLoop::tick`]: observe, [`crate::policy::decide`], [`crate::plan::plan`],
//! act — runs through them, with the same [`ErrorPolicy`] setting the wait until the next
//! poll. So the plan's safety rules (scale in through the service, drain an idle instance,
//! terminate it on a later poll only if it is still idle) are what the simulator exercises,
//! and a plan that terminated a busy instance would show up as interrupted tasks.
//!
//! The world is shared between the three through a mutex that is never contended: the loop
//! runs on this thread, one call at a time. The simulated calls never wait, so a tick is
//! polled to completion at once ([`run_now`]) without an async runtime.

use std::future::Future;
use std::pin::pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use super::GeobatchSettings;
use super::autoscaler::{Capacity, InstanceControl, StopOrder, TaskControl};
use super::model::{Millis, ModelParams};
use super::scenario::Scenario;
use super::world::{DecisionRecord, Driver, RunOutcome, SimError, World};
use crate::actuate::Actuator;
use crate::aws::ApiError;
use crate::config::Pool;
use crate::control::{Clock, ErrorPolicy, PoolLoop, Tick};
use crate::decision_log::DecisionLog;
use crate::metrics::Metrics;
use crate::observe::{Observer, PoolSnapshot};
use crate::plan::Action;

/// The world as the loop's observer, actuator and clock share it.
pub type SharedWorld<'a> = Arc<Mutex<World<'a>>>;

/// How the controller's calls reach the simulated fleet: ECS keeps tasks with scale-in
/// protection (the worker sets it while busy) and otherwise stops an arbitrary one; the
/// Auto Scaling Group follows its desired capacity, which the plan only raises.
pub const CAPACITY: Capacity = Capacity {
    tasks: TaskControl::Service {
        stop_order: StopOrder::Arbitrary,
        protect_busy: true,
    },
    instances: InstanceControl::AsgChoosesVictim,
};

fn lock<'w, 'a>(world: &'w Mutex<World<'a>>) -> MutexGuard<'w, World<'a>> {
    // A panic while holding the lock would already have ended the run.
    world
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Reads the simulated SQS, ECS and Auto Scaling Group live, and CloudWatch once per
/// interval, as [`crate::observe::AwsObserver`] does.
pub struct SimObserver<'a> {
    world: SharedWorld<'a>,
    cloudwatch_interval_ms: Millis,
    /// When CloudWatch was last read and the latest `NumberOfEmptyReceives` it had.
    cloudwatch: Option<(Millis, Option<f64>, Option<f64>)>,
}

impl<'a> SimObserver<'a> {
    /// An observer of `world` that reads CloudWatch at most once per `cloudwatch_interval`.
    pub fn new(world: SharedWorld<'a>, cloudwatch_interval: Duration) -> Self {
        SimObserver {
            world,
            cloudwatch_interval_ms: millis(cloudwatch_interval),
            cloudwatch: None,
        }
    }
}

impl Observer for SimObserver<'_> {
    async fn observe(&mut self, _pool: &Pool) -> PoolSnapshot {
        let world = lock(&self.world);
        let now = world.now_ms();
        let reading = match self.cloudwatch {
            Some(reading @ (read_at, _, _)) if now < read_at + self.cloudwatch_interval_ms => {
                reading
            }
            _ => {
                let latest = world.published_cloudwatch().last();
                let reading = (
                    now,
                    latest.map(|p| f64::from(p.empty_receives)),
                    latest.map(|p| f64::from(p.visible_max)),
                );
                self.cloudwatch = Some(reading);
                reading
            }
        };
        let mut snapshot = world.snapshot();
        snapshot.observation.latest_empty_receives = reading.1;
        snapshot.cloudwatch_visible = reading.2;
        snapshot
    }
}

/// A handle on the shared world that is the loop's actuator (the controller's calls, made
/// against the simulated AWS) and its clock (simulated time; the epoch is the start of the
/// run).
pub struct WorldHandle<'a> {
    world: SharedWorld<'a>,
}

impl<'a> WorldHandle<'a> {
    /// A handle on `world`.
    pub fn new(world: &SharedWorld<'a>) -> Self {
        WorldHandle {
            world: Arc::clone(world),
        }
    }
}

impl Actuator for WorldHandle<'_> {
    fn dry_run(&self) -> bool {
        false
    }

    async fn apply(&mut self, action: &Action) -> Result<(), ApiError> {
        lock(&self.world).act(action)
    }
}

impl Clock for WorldHandle<'_> {
    fn now(&self) -> Duration {
        Duration::from_millis(lock(&self.world).now_ms())
    }
}

/// Runs `scenario` through the controller's loop, configured as `settings`.
pub fn run(
    scenario: &Scenario,
    model: &ModelParams,
    settings: &GeobatchSettings,
    seed: u64,
) -> Result<RunOutcome, SimError> {
    let world = new_world(scenario, model, settings, seed);
    drive(&world, sim_loop(&world, settings), settings.max_backoff)
}

/// The controller's loop for the pool of `settings`, observing and acting on `world`.
pub fn sim_loop<'a>(
    world: &SharedWorld<'a>,
    settings: &GeobatchSettings,
) -> PoolLoop<SimObserver<'a>, WorldHandle<'a>, WorldHandle<'a>> {
    PoolLoop::with_clock(
        settings.pool.clone(),
        SimObserver::new(Arc::clone(world), settings.cloudwatch_interval),
        WorldHandle::new(world),
        WorldHandle::new(world),
        DecisionLog::discard(),
        Metrics::default(),
    )
}

/// A world for the controller's loop to run against.
pub fn new_world<'a>(
    scenario: &'a Scenario,
    model: &'a ModelParams,
    settings: &GeobatchSettings,
    seed: u64,
) -> SharedWorld<'a> {
    let driver = Driver {
        name: "geobatch",
        min_instances: settings.pool.policy.min_instances,
    };
    Arc::new(Mutex::new(World::new(
        scenario, model, CAPACITY, driver, seed,
    )))
}

/// Polls `pool_loop` whenever its next poll is due in `world`, as
/// [`PoolLoop::run`] does live, until the run is over.
pub fn drive<O: Observer, A: Actuator, C: Clock>(
    world: &Mutex<World<'_>>,
    mut pool_loop: PoolLoop<O, A, C>,
    max_backoff: Duration,
) -> Result<RunOutcome, SimError> {
    let mut errors = ErrorPolicy::new(pool_loop.pool().poll_interval, max_backoff);
    while lock(world).next_tick()? {
        let tick = run_now(pool_loop.tick()).ok_or(SimError::Stalled)?;
        let wait = errors.next_wait(tick.failure_kinds());
        let mut world = lock(world);
        if !tick.calls.is_empty() {
            let record = decision_record(world.now_ms(), &tick);
            world.record(record);
        }
        world.schedule_tick(millis(wait));
    }
    lock(world).finish()
}

fn decision_record(now_ms: Millis, tick: &Tick) -> DecisionRecord {
    DecisionRecord {
        t_secs: now_ms as f64 / 1000.0,
        desired_tasks: tick.decision.desired_tasks,
        desired_instances: tick.decision.desired_instances,
        reason: tick.decision.reason.to_string(),
        calls: tick.calls.iter().map(ToString::to_string).collect(),
    }
}

/// Polls a future once; `None` if it would wait, which a simulated call never does.
fn run_now<F: Future>(future: F) -> Option<F::Output> {
    let mut future = pin!(future);
    match future
        .as_mut()
        .poll(&mut Context::from_waker(Waker::noop()))
    {
        Poll::Ready(output) => Some(output),
        Poll::Pending => None,
    }
}

fn millis(d: Duration) -> Millis {
    Millis::try_from(d.as_millis()).unwrap_or(Millis::MAX)
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;

    use super::*;
    use crate::sim::scenario::FileUpload;

    /// Two bursts an hour apart: scale-out, scale-in through the stabilization window, the
    /// drain and the later termination of idle instances, and scale to zero, twice.
    fn two_bursts() -> Scenario {
        let burst = |at_secs: u64, n: usize| {
            (0..n).map(move |k| FileUpload {
                upload_ms: at_secs * 1000 + k as u64 * 500,
                size_mb: 100.0,
                processing_ms: 40_000 + k as u64 * 3_000,
            })
        };
        Scenario {
            name: "two-bursts".into(),
            description: String::new(),
            horizon_ms: 7_200_000,
            files: burst(0, 30).chain(burst(3600, 12)).collect(),
        }
    }

    fn settings(model: &ModelParams) -> GeobatchSettings {
        GeobatchSettings::defaults_for(model).expect("the controller defaults are valid")
    }

    type Log<T> = Arc<Mutex<Vec<T>>>;

    /// Passes another observer's snapshots through, keeping a copy.
    struct TapObserver<O> {
        inner: O,
        seen: Log<PoolSnapshot>,
    }

    impl<O: Observer + Send> Observer for TapObserver<O> {
        async fn observe(&mut self, pool: &Pool) -> PoolSnapshot {
            let snapshot = self.inner.observe(pool).await;
            self.seen.lock().expect("test lock").push(snapshot.clone());
            snapshot
        }
    }

    /// Passes another actuator's calls through, keeping each poll's calls apart.
    struct TapActuator<A> {
        inner: A,
        calls: Log<Action>,
    }

    impl<A: Actuator + Send> Actuator for TapActuator<A> {
        fn dry_run(&self) -> bool {
            self.inner.dry_run()
        }

        async fn apply(&mut self, action: &Action) -> Result<(), ApiError> {
            self.calls.lock().expect("test lock").push(action.clone());
            self.inner.apply(action).await
        }
    }

    /// Passes another clock's readings through, keeping a copy.
    struct TapClock<C> {
        inner: C,
        readings: Log<Duration>,
    }

    impl<C: Clock> Clock for TapClock<C> {
        fn now(&self) -> Duration {
            let now = self.inner.now();
            self.readings.lock().expect("test lock").push(now);
            now
        }
    }

    /// Replays recorded snapshots, as the AWS observer would have seen them.
    struct Replay(VecDeque<PoolSnapshot>);

    impl Observer for Replay {
        async fn observe(&mut self, _pool: &Pool) -> PoolSnapshot {
            self.0.pop_front().expect("one snapshot per poll")
        }
    }

    /// Reads recorded times, one per poll.
    struct Scripted(Mutex<VecDeque<Duration>>);

    impl Clock for Scripted {
        fn now(&self) -> Duration {
            self.0
                .lock()
                .expect("test lock")
                .pop_front()
                .expect("one time per poll")
        }
    }

    /// Accepts every call, like AWS when nothing goes wrong.
    struct Accept;

    impl Actuator for Accept {
        fn dry_run(&self) -> bool {
            false
        }

        async fn apply(&mut self, _action: &Action) -> Result<(), ApiError> {
            Ok(())
        }
    }

    #[test]
    fn the_simulator_and_the_live_loop_make_the_same_calls_for_the_same_observations() {
        let scenario = two_bursts();
        let model = ModelParams::default();
        let settings = settings(&model);
        let (seen, sim_calls, times) = (Log::default(), Log::default(), Log::default());
        let world = new_world(&scenario, &model, &settings, 7);
        // The simulator's own loop, with every observation, call and time recorded.
        {
            let pool_loop = PoolLoop::with_clock(
                settings.pool.clone(),
                TapObserver {
                    inner: SimObserver::new(Arc::clone(&world), settings.cloudwatch_interval),
                    seen: Arc::clone(&seen),
                },
                TapActuator {
                    inner: WorldHandle::new(&world),
                    calls: Arc::clone(&sim_calls),
                },
                TapClock {
                    inner: WorldHandle::new(&world),
                    readings: Arc::clone(&times),
                },
                DecisionLog::discard(),
                Metrics::default(),
            );
            let outcome = drive(&world, pool_loop, settings.max_backoff).expect("the run balances");
            assert_eq!(outcome.completed, scenario.files.len());
            assert_eq!(outcome.interrupted_tasks, 0);
        }
        let seen = std::mem::take(&mut *seen.lock().expect("test lock"));
        let times = std::mem::take(&mut *times.lock().expect("test lock"));
        let sim_calls = std::mem::take(&mut *sim_calls.lock().expect("test lock"));
        assert_eq!(seen.len(), times.len());

        // The live loop as `run` builds it, on a tokio runtime, fed the same observations
        // at the same times.
        let live_calls = Log::default();
        let mut live = PoolLoop::with_clock(
            settings.pool.clone(),
            Replay(seen.iter().cloned().collect()),
            TapActuator {
                inner: Accept,
                calls: Arc::clone(&live_calls),
            },
            Scripted(Mutex::new(times.iter().copied().collect())),
            DecisionLog::discard(),
            Metrics::default(),
        );
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("a runtime");
        for _ in 0..seen.len() {
            runtime.block_on(live.tick());
        }
        let live_calls = std::mem::take(&mut *live_calls.lock().expect("test lock"));
        assert_eq!(sim_calls, live_calls);

        // And the run exercised every kind of call, so the comparison covers the plan's
        // scale-out, scale-in, drain and termination rules.
        for call in [
            "SetDesiredCapacity",
            "UpdateService",
            "UpdateContainerInstancesState",
            "TerminateInstanceInAutoScalingGroup",
        ] {
            assert!(
                sim_calls.iter().any(|a| a.call() == call),
                "no {call} in {sim_calls:?}"
            );
        }
    }

    #[test]
    fn an_instance_is_terminated_only_on_a_poll_after_it_was_drained() {
        let scenario = two_bursts();
        let model = ModelParams::default();
        let outcome = run(&scenario, &model, &settings(&model), 3).expect("the run balances");
        let mut drained_at: Vec<(f64, String)> = Vec::new();
        for decision in &outcome.decisions {
            for call in &decision.calls {
                if let Some(id) = call
                    .strip_prefix("set container instance on ")
                    .and_then(|rest| rest.strip_suffix(" to DRAINING (idle)"))
                {
                    drained_at.push((decision.t_secs, id.to_owned()));
                }
                if let Some(id) = call
                    .strip_prefix("terminate drained idle instance ")
                    .and_then(|rest| rest.split(' ').next())
                {
                    let drained = drained_at
                        .iter()
                        .rev()
                        .find(|(_, d)| d == id)
                        .unwrap_or_else(|| panic!("{id} terminated without a drain"));
                    assert!(
                        drained.0 < decision.t_secs,
                        "{id} drained and terminated at once"
                    );
                }
            }
        }
        assert!(!drained_at.is_empty(), "the run drained nothing");
        assert_eq!(outcome.interrupted_tasks, 0);
    }

    /// Issue 11: an instance the ECS agent drained for a Spot notice is the group's to
    /// replace and EC2's to take. The controller never sets it back to ACTIVE (tasks placed
    /// there would be killed with it) and never terminates it with decrement (the group
    /// would then scale in a healthy instance to meet the lower count).
    #[test]
    fn the_controller_leaves_instances_drained_for_a_spot_notice_alone() {
        let scenario = two_bursts();
        let model = ModelParams {
            on_demand_percentage_above_base: 0,
            spot_interruptions_per_hour: 3.0,
            ..ModelParams::default()
        };
        let settings = settings(&model);
        let world = new_world(&scenario, &model, &settings, 5);
        let outcome =
            drive(&world, sim_loop(&world, &settings), settings.max_backoff).expect("balances");
        let interrupted = lock(&world).instances_drained_by_a_notice();
        assert!(interrupted.len() >= 3, "{interrupted:?}");
        let touched: Vec<&String> = outcome
            .decisions
            .iter()
            .flat_map(|d| &d.calls)
            .filter(|call| {
                interrupted.iter().any(|id| {
                    call.contains(&format!("{id} back to ACTIVE"))
                        || call.contains(&format!("instance {id} in"))
                })
            })
            .collect();
        assert!(touched.is_empty(), "{touched:?}");
        assert_eq!(
            outcome.interrupted_tasks, 0,
            "the policy stopped no busy worker"
        );
        assert_eq!(outcome.completed, scenario.files.len());
    }

    /// Issue 11: a managed warm pool follows the learned arrival rate through
    /// `PutWarmPool`, the world applies the sizes, and scale-outs start warm instances.
    #[test]
    fn a_managed_warm_pool_is_resized_and_serves_warm_starts() {
        let scenario = two_bursts();
        let model = ModelParams {
            warm_pool: true,
            ..ModelParams::default()
        };
        let mut settings = settings(&model);
        settings.pool.manage_warm_pool = true;
        let outcome = run(&scenario, &model, &settings, 3).expect("balances");
        let resizes: Vec<&String> = outcome
            .decisions
            .iter()
            .flat_map(|d| &d.calls)
            .filter(|c| c.starts_with("set warm pool of"))
            .collect();
        assert!(!resizes.is_empty(), "no PutWarmPool");
        assert!(outcome.market.warm_starts > 0);
        assert_eq!(outcome.completed, scenario.files.len());
        assert_eq!(outcome.interrupted_tasks, 0);
    }

    #[test]
    fn the_world_does_what_a_call_says_even_when_it_hurts() {
        // One long file; terminate its instance while it runs, as a bad plan would.
        let scenario = Scenario {
            name: "one".into(),
            description: String::new(),
            horizon_ms: 60_000,
            files: vec![FileUpload {
                upload_ms: 0,
                size_mb: 1.0,
                processing_ms: 600_000,
            }],
        };
        let model = ModelParams::default();
        let settings = settings(&model);
        let world = new_world(&scenario, &model, &settings, 1);
        let mut pool_loop = sim_loop(&world, &settings);
        let busy = loop {
            assert!(lock(&world).next_tick().expect("runs"), "ended before work");
            let tick = run_now(pool_loop.tick()).expect("never waits");
            let busy = tick
                .snapshot
                .hosts
                .iter()
                .flatten()
                .find(|h| !h.idle())
                .cloned();
            lock(&world).schedule_tick(5_000);
            if let (Some(busy), Some(queue)) = (busy, tick.snapshot.observation.queue)
                && queue.in_flight == 1
            {
                break busy;
            }
        };
        let terminate = Action::TerminateInstance {
            auto_scaling_group: settings.pool.auto_scaling_group.clone(),
            instance_id: busy.instance_id.clone(),
        };
        assert_eq!(lock(&world).act(&terminate), Ok(()));
        let again = lock(&world).act(&terminate).expect_err("already gone");
        assert!(again.message.contains("not in the group"), "{again}");
        let too_many = Action::SetDesiredCapacity {
            auto_scaling_group: settings.pool.auto_scaling_group.clone(),
            from: 0,
            desired_capacity: model.max_instances + 1,
        };
        assert!(lock(&world).act(&too_many).is_err());
        let outcome = drive(&world, pool_loop, settings.max_backoff).expect("still balances");
        assert_eq!(outcome.interrupted_tasks, 1);
        assert_eq!(outcome.completed, 1, "the message came back and was done");
    }
}
