//! The scaling policy: from one observation of a pool and the policy's memory of earlier
//! observations, how many worker tasks and instances the pool should have, and why.
//!
//! Everything here is pure and deterministic. Time is an input (`now`, a [`Duration`] since
//! any epoch the caller picks, as long as it never runs backwards), never read from a clock,
//! so the live loop, `decide`, dry-run and the simulator all run this exact code at their
//! own notion of time.
//!
//! The rules, in order:
//! 1. Any missing observation (queue, service or Auto Scaling Group) holds the current size:
//!    capacity is never reduced on data the controller does not have.
//! 2. Work is visible plus in-flight messages; the backlog needs
//!    `ceil(work / messages_per_task)` tasks, at least one while any work exists, within
//!    the task bounds.
//! 3. Zero tasks only once visible, in-flight and delayed have all been 0 for the idle
//!    window, and either CloudWatch's latest period shows empty receives (the workers are
//!    polling and finding nothing) or no task runs at all. Until then a pool that has a task
//!    keeps one.
//! 4. Scale-out is immediate; scale-in goes no lower than the highest recommendation of the
//!    stabilization window, so a brief lull does not shed capacity a returning burst needs.
//!    The step to zero (rule 3) has the idle window as its stabilization instead.
//! 5. Instances follow tasks: `ceil(tasks / tasks_per_instance)` within the instance bounds.
//!    Which instances go, and only idle ones, is the actuator's business.

use std::collections::VecDeque;
use std::fmt;
use std::time::Duration;

use serde::Serialize;

/// How much work one task is sized for.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum SizingTarget {
    /// A fixed number of outstanding messages per task (KEDA's `queueLength`).
    MessagesPerTask(u32),
    /// AWS's backlog-per-instance form: a task may hold as many messages as it can finish
    /// within the acceptable latency.
    Latency {
        /// How long a message may wait before it is done.
        acceptable_latency: Duration,
        /// How long one task takes for one message.
        processing_time_per_message: Duration,
    },
}

impl SizingTarget {
    /// Messages one task is sized for, never less than 1 so any backlog gets a task.
    pub fn messages_per_task(&self) -> u64 {
        match *self {
            SizingTarget::MessagesPerTask(n) => u64::from(n).max(1),
            SizingTarget::Latency {
                acceptable_latency,
                processing_time_per_message,
            } => {
                let per_message = processing_time_per_message.as_secs_f64();
                if per_message <= 0.0 {
                    return 1;
                }
                // Truncation is the intent: a task that would finish its last message after
                // the deadline is sized for one message fewer.
                ((acceptable_latency.as_secs_f64() / per_message).floor() as u64).max(1)
            }
        }
    }
}

/// The policy's settings for one pool, already validated (see `config`).
#[derive(Debug, Clone, PartialEq)]
pub struct PoolPolicy {
    /// How much work one task is sized for.
    pub target: SizingTarget,
    /// Fewest tasks, kept even when the queue is empty (0 allows scale to zero).
    pub min_tasks: u32,
    /// Most tasks, a cost ceiling; at least 1.
    pub max_tasks: u32,
    /// Fewest instances in the Auto Scaling Group.
    pub min_instances: u32,
    /// Most instances in the Auto Scaling Group; at least 1.
    pub max_instances: u32,
    /// How many worker tasks fit on one instance; at least 1.
    pub tasks_per_instance: u32,
    /// Files one worker task analyses at once: the worker's `--concurrency`
    /// (`GEOBATCH_CONCURRENCY`); at least 1. A task is `slots_per_task` slots, an instance
    /// `tasks_per_instance` tasks: the capacity model the stack deploys and the simulator
    /// runs.
    pub slots_per_task: u32,
    /// How long a recommendation keeps capacity from going below it.
    pub scale_in_stabilization: Duration,
    /// How long the queue must be completely empty before tasks go to zero.
    pub idle_window: Duration,
    /// Whether scale to zero with tasks still running also needs CloudWatch to report empty
    /// receives in its latest period. Emulators without SQS metrics in CloudWatch need it
    /// off; in AWS it guards against an SQS API view that has not caught up.
    pub require_empty_receives: bool,
}

impl PoolPolicy {
    /// Instances needed for a number of tasks, within the instance bounds.
    pub fn instances_for(&self, tasks: u32) -> u32 {
        let per_instance = self.tasks_per_instance.max(1);
        tasks.div_ceil(per_instance).clamp(
            self.min_instances,
            self.max_instances.max(self.min_instances),
        )
    }

    /// Tasks the backlog alone calls for, within the task bounds, before the idle and
    /// stabilization rules.
    pub fn tasks_for_work(&self, work: u64) -> u32 {
        let by_backlog = work.div_ceil(self.target.messages_per_task());
        let by_backlog = u32::try_from(by_backlog).unwrap_or(u32::MAX);
        let by_backlog = if work > 0 { by_backlog.max(1) } else { 0 };
        by_backlog.clamp(self.min_tasks, self.max_tasks.max(self.min_tasks))
    }
}

impl Default for PoolPolicy {
    /// The defaults documented in `docs/controller.md` and the annotated example config.
    /// They describe the deployment the CloudFormation stack makes with its own parameter
    /// defaults (two tasks of two slots on each c7i.large, at most 10 instances); the test
    /// `capacity_defaults` fails if the two drift apart.
    fn default() -> Self {
        PoolPolicy {
            target: SizingTarget::MessagesPerTask(4),
            min_tasks: 0,
            max_tasks: 20,
            min_instances: 0,
            max_instances: 10,
            tasks_per_instance: 2,
            slots_per_task: 2,
            scale_in_stabilization: Duration::from_secs(120),
            idle_window: Duration::from_secs(300),
            require_empty_receives: true,
        }
    }
}

/// The queue as the SQS API reports it now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct QueueDepth {
    /// `ApproximateNumberOfMessages`: waiting to be received.
    pub visible: u64,
    /// `ApproximateNumberOfMessagesNotVisible`: received and being worked on.
    pub in_flight: u64,
    /// `ApproximateNumberOfMessagesDelayed`: not yet receivable.
    pub delayed: u64,
}

impl QueueDepth {
    /// Messages that need a task now or soon.
    pub fn work(&self) -> u64 {
        self.visible.saturating_add(self.in_flight)
    }

    /// Whether nothing at all is in the queue.
    pub fn is_empty(&self) -> bool {
        self.visible == 0 && self.in_flight == 0 && self.delayed == 0
    }
}

/// The ECS service's task counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct ServiceTasks {
    /// The service's desired count.
    pub desired: u32,
    /// Tasks running.
    pub running: u32,
    /// Tasks placed but not yet running.
    pub pending: u32,
}

/// The Auto Scaling Group's size.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct InstanceGroup {
    /// The group's desired capacity.
    pub desired: u32,
    /// Instances in the `InService` lifecycle state.
    pub in_service: u32,
}

/// Everything the policy looks at for one pool at one moment. `None` means the observation
/// failed or is missing, which the policy treats as "do not reduce anything".
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize)]
pub struct Observation {
    /// From SQS `GetQueueAttributes`.
    pub queue: Option<QueueDepth>,
    /// From ECS `DescribeServices`.
    pub service: Option<ServiceTasks>,
    /// From `DescribeAutoScalingGroups`.
    pub instances: Option<InstanceGroup>,
    /// Sum of `NumberOfEmptyReceives` in CloudWatch's latest complete period; `None` when
    /// CloudWatch has no datapoint or was not reachable.
    pub latest_empty_receives: Option<f64>,
}

/// What the policy remembers between decisions. Start with [`PolicyState::default`].
#[derive(Debug, Clone, PartialEq, Default)]
pub struct PolicyState {
    /// Recommendations still inside the stabilization window, as a decreasing sliding-window
    /// maximum: each entry is larger than every later one, so the front is the window's
    /// highest and memory stays bounded however often the policy runs.
    recommendations: VecDeque<Recommendation>,
    /// Since when visible, in-flight and delayed have all been 0, if they are.
    idle_since: Option<Duration>,
    /// Whether the current size has been recorded once, so that a controller that starts
    /// up (or restarts) does not scale in before a full window has passed.
    seeded: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Recommendation {
    at: Duration,
    tasks: u32,
}

impl PolicyState {
    /// Since when the queue has been completely empty, if it is.
    pub fn idle_since(&self) -> Option<Duration> {
        self.idle_since
    }

    /// The highest recommendation still inside the stabilization window, if any.
    pub fn window_max(&self) -> Option<u32> {
        self.recommendations.front().map(|r| r.tasks)
    }

    fn record(&mut self, now: Duration, tasks: u32, window: Duration) {
        while self
            .recommendations
            .front()
            .is_some_and(|r| now.saturating_sub(r.at) >= window)
        {
            self.recommendations.pop_front();
        }
        while self
            .recommendations
            .back()
            .is_some_and(|r| r.tasks <= tasks)
        {
            self.recommendations.pop_back();
        }
        self.recommendations
            .push_back(Recommendation { at: now, tasks });
    }
}

/// Which way a decision moves capacity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// More tasks or instances than now.
    Out,
    /// Fewer tasks or instances than now.
    In,
    /// The current size is right.
    Steady,
    /// An observation is missing: keep the current size, make no call.
    Hold,
}

/// Why the policy chose its numbers; `Display` gives the sentence for the decision log.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "code", rename_all = "snake_case")]
pub enum Reason {
    /// One or more observations failed; nothing changes.
    MissingData {
        /// Which observations are missing (`queue`, `service`, `instances`).
        missing: Vec<&'static str>,
    },
    /// The backlog sets the size (scale-out, or steady at the backlog's size).
    Backlog {
        /// Visible plus in-flight messages.
        work: u64,
        /// Messages one task is sized for.
        messages_per_task: u64,
        /// Tasks the backlog needs within bounds.
        recommended_tasks: u32,
    },
    /// The backlog calls for fewer tasks, but a higher recommendation is still inside the
    /// stabilization window.
    Stabilizing {
        /// Tasks the backlog alone needs.
        recommended_tasks: u32,
        /// Highest recommendation in the window, which is kept.
        window_max_tasks: u32,
        /// The window's length in seconds.
        window_secs: f64,
    },
    /// The backlog calls for fewer tasks and nothing in the window objects.
    ScaleIn {
        /// Visible plus in-flight messages.
        work: u64,
        /// Tasks now the window allows.
        recommended_tasks: u32,
    },
    /// The queue is empty but not for the whole idle window yet, so one task stays.
    IdleWindow {
        /// How long the queue has been empty.
        idle_secs: f64,
        /// The idle window's length.
        idle_window_secs: f64,
    },
    /// The queue has been empty for the idle window but tasks still run and CloudWatch has
    /// not (yet) reported empty receives for its latest period.
    AwaitingEmptyReceives {
        /// How long the queue has been empty.
        idle_secs: f64,
        /// The latest period's `NumberOfEmptyReceives`, if CloudWatch had one.
        latest_empty_receives: Option<f64>,
    },
    /// Queue empty for the idle window and the workers confirm it: scale to zero (or to the
    /// minimum).
    Drained {
        /// How long the queue has been empty.
        idle_secs: f64,
    },
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::MissingData { missing } => write!(
                f,
                "holding the current size: no observation of {}",
                missing.join(", ")
            ),
            Reason::Backlog {
                work,
                messages_per_task,
                recommended_tasks,
            } => write!(
                f,
                "{work} messages visible or in flight at {messages_per_task} per task need \
                 {recommended_tasks} tasks (within bounds)"
            ),
            Reason::Stabilizing {
                recommended_tasks,
                window_max_tasks,
                window_secs,
            } => write!(
                f,
                "backlog needs {recommended_tasks} tasks; keeping {window_max_tasks}, the \
                 highest recommendation of the last {window_secs} s scale-in stabilization \
                 window"
            ),
            Reason::ScaleIn {
                work,
                recommended_tasks,
            } => write!(
                f,
                "{work} messages visible or in flight need only {recommended_tasks} tasks and \
                 the stabilization window has passed"
            ),
            Reason::IdleWindow {
                idle_secs,
                idle_window_secs,
            } => write!(
                f,
                "queue empty for {idle_secs} s of the {idle_window_secs} s idle window; \
                 keeping one task"
            ),
            Reason::AwaitingEmptyReceives {
                idle_secs,
                latest_empty_receives,
            } => match latest_empty_receives {
                Some(n) => write!(
                    f,
                    "queue empty for {idle_secs} s but CloudWatch's latest period shows {n} \
                     empty receives while tasks run; keeping one task"
                ),
                None => write!(
                    f,
                    "queue empty for {idle_secs} s but CloudWatch has no NumberOfEmptyReceives \
                     datapoint yet while tasks run; keeping one task"
                ),
            },
            Reason::Drained { idle_secs } => write!(
                f,
                "queue visible, in flight and delayed all 0 for {idle_secs} s and no worker \
                 finds work: scaling in to the minimum"
            ),
        }
    }
}

/// The policy's answer for one pool at one moment.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[must_use = "a decision does nothing until it is acted on"]
pub struct Decision {
    /// The ECS service's desired count.
    pub desired_tasks: u32,
    /// The Auto Scaling Group's desired capacity.
    pub desired_instances: u32,
    /// Which way that moves capacity compared with the observation.
    pub direction: Direction,
    /// Why.
    pub reason: Reason,
}

/// Decides one pool's size from one observation. Returns the decision and the state to pass
/// to the next call. Pure: the same inputs always give the same outputs.
pub fn decide(
    observation: &Observation,
    state: &PolicyState,
    policy: &PoolPolicy,
    now: Duration,
) -> (Decision, PolicyState) {
    let mut next = state.clone();

    let (Some(queue), Some(service), Some(instances)) = (
        observation.queue,
        observation.service,
        observation.instances,
    ) else {
        return hold(observation, next, policy, now);
    };

    let current_tasks = service.desired;
    if !next.seeded {
        next.record(now, current_tasks, policy.scale_in_stabilization);
        next.seeded = true;
    }

    next.idle_since = if queue.is_empty() {
        Some(next.idle_since.unwrap_or(now))
    } else {
        None
    };

    let work = queue.work();
    let by_backlog = policy.tasks_for_work(work);
    let (recommended, idle_reason) = if by_backlog == 0 {
        gate_zero(observation, &next, policy, now, current_tasks)
    } else {
        (by_backlog, None)
    };

    next.record(now, recommended, policy.scale_in_stabilization);
    let window_max = next.window_max().unwrap_or(recommended);

    // The idle window is the stabilization of the last step to zero: a queue that has been
    // completely empty that long, with the workers confirming, holds nothing back.
    let drained = matches!(idle_reason, Some(Reason::Drained { .. }));
    let (tasks, reason) = if recommended >= current_tasks || drained {
        let reason = idle_reason.unwrap_or(Reason::Backlog {
            work,
            messages_per_task: policy.target.messages_per_task(),
            recommended_tasks: recommended,
        });
        (recommended, reason)
    } else if window_max < current_tasks {
        // Scale in, but only as far as the window allows.
        let tasks = window_max.max(recommended);
        let reason = if tasks > recommended {
            Reason::Stabilizing {
                recommended_tasks: recommended,
                window_max_tasks: tasks,
                window_secs: policy.scale_in_stabilization.as_secs_f64(),
            }
        } else {
            idle_reason.unwrap_or(Reason::ScaleIn {
                work,
                recommended_tasks: recommended,
            })
        };
        (tasks, reason)
    } else {
        (
            current_tasks,
            Reason::Stabilizing {
                recommended_tasks: recommended,
                window_max_tasks: window_max,
                window_secs: policy.scale_in_stabilization.as_secs_f64(),
            },
        )
    };

    // A configuration change can put the current size outside the bounds; the bounds win.
    let tasks = tasks.clamp(policy.min_tasks, policy.max_tasks.max(policy.min_tasks));
    let desired_instances = policy.instances_for(tasks);
    let direction = direction(tasks, desired_instances, current_tasks, instances.desired);
    (
        Decision {
            desired_tasks: tasks,
            desired_instances,
            direction,
            reason,
        },
        next,
    )
}

/// With no backlog, whether tasks may go to zero (the minimum) yet; if not, a pool that has
/// a task keeps one.
fn gate_zero(
    observation: &Observation,
    state: &PolicyState,
    policy: &PoolPolicy,
    now: Duration,
    current_tasks: u32,
) -> (u32, Option<Reason>) {
    let keep_one = current_tasks.min(1).max(policy.min_tasks);
    let idle_for = state
        .idle_since
        .map(|since| now.saturating_sub(since))
        .unwrap_or_default();
    if state.idle_since.is_none() || idle_for < policy.idle_window {
        return (
            keep_one,
            Some(Reason::IdleWindow {
                idle_secs: idle_for.as_secs_f64(),
                idle_window_secs: policy.idle_window.as_secs_f64(),
            }),
        );
    }
    let no_task_runs = observation
        .service
        .is_some_and(|s| s.running == 0 && s.pending == 0);
    let workers_find_nothing = observation.latest_empty_receives.is_some_and(|n| n > 0.0);
    if policy.require_empty_receives && !no_task_runs && !workers_find_nothing {
        return (
            keep_one,
            Some(Reason::AwaitingEmptyReceives {
                idle_secs: idle_for.as_secs_f64(),
                latest_empty_receives: observation.latest_empty_receives,
            }),
        );
    }
    (
        policy.min_tasks,
        Some(Reason::Drained {
            idle_secs: idle_for.as_secs_f64(),
        }),
    )
}

/// A decision that keeps what is there because an observation is missing. The current size
/// also enters the stabilization window and the idle streak ends, so nothing is shed right
/// after data comes back either.
fn hold(
    observation: &Observation,
    mut next: PolicyState,
    policy: &PoolPolicy,
    now: Duration,
) -> (Decision, PolicyState) {
    let mut missing = Vec::new();
    if observation.queue.is_none() {
        missing.push("queue");
    }
    if observation.service.is_none() {
        missing.push("service");
    }
    if observation.instances.is_none() {
        missing.push("instances");
    }
    next.idle_since = None;
    if let Some(service) = observation.service {
        next.record(now, service.desired, policy.scale_in_stabilization);
        next.seeded = true;
    }
    let desired_tasks = observation
        .service
        .map(|s| s.desired)
        .or_else(|| next.window_max())
        .unwrap_or(0);
    let desired_instances = observation
        .instances
        .map(|i| i.desired)
        .unwrap_or_else(|| policy.instances_for(desired_tasks));
    (
        Decision {
            desired_tasks,
            desired_instances,
            direction: Direction::Hold,
            reason: Reason::MissingData { missing },
        },
        next,
    )
}

fn direction(tasks: u32, instances: u32, current_tasks: u32, current_instances: u32) -> Direction {
    use std::cmp::Ordering::{Equal, Greater, Less};
    match (tasks.cmp(&current_tasks), instances.cmp(&current_instances)) {
        (Greater, _) | (Equal, Greater) => Direction::Out,
        (Less, _) | (Equal, Less) => Direction::In,
        (Equal, Equal) => Direction::Steady,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const fn secs(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    fn policy() -> PoolPolicy {
        PoolPolicy {
            target: SizingTarget::MessagesPerTask(2),
            min_tasks: 0,
            max_tasks: 20,
            min_instances: 0,
            max_instances: 10,
            tasks_per_instance: 2,
            slots_per_task: 2,
            scale_in_stabilization: secs(60),
            idle_window: secs(30),
            require_empty_receives: true,
        }
    }

    fn observe(
        visible: u64,
        in_flight: u64,
        tasks: u32,
        instances: u32,
        empty: Option<f64>,
    ) -> Observation {
        Observation {
            queue: Some(QueueDepth {
                visible,
                in_flight,
                delayed: 0,
            }),
            service: Some(ServiceTasks {
                desired: tasks,
                running: tasks,
                pending: 0,
            }),
            instances: Some(InstanceGroup {
                desired: instances,
                in_service: instances,
            }),
            latest_empty_receives: empty,
        }
    }

    /// Runs the policy against a fleet that does whatever it is told, returning every
    /// decision.
    fn run(
        policy: &PoolPolicy,
        steps: &[(u64, u64, u64)],
        mut tasks: u32,
        empty: Option<f64>,
    ) -> Vec<Decision> {
        let mut state = PolicyState::default();
        let mut instances = policy.instances_for(tasks);
        let mut out = Vec::new();
        for &(t, visible, in_flight) in steps {
            let obs = observe(visible, in_flight, tasks, instances, empty);
            let (decision, next) = decide(&obs, &state, policy, secs(t));
            state = next;
            tasks = decision.desired_tasks;
            instances = decision.desired_instances;
            out.push(decision);
        }
        out
    }

    #[test]
    fn backlog_sizes_tasks_and_instances_at_once() {
        let decisions = run(&policy(), &[(0, 7, 0)], 0, None);
        assert_eq!(decisions[0].desired_tasks, 4);
        assert_eq!(decisions[0].desired_instances, 2);
        assert_eq!(decisions[0].direction, Direction::Out);
        assert!(matches!(
            decisions[0].reason,
            Reason::Backlog { work: 7, .. }
        ));
    }

    #[test]
    fn one_in_flight_message_keeps_a_task() {
        let decisions = run(&policy(), &[(0, 0, 1), (1000, 0, 1)], 3, Some(5.0));
        assert_eq!(decisions[1].desired_tasks, 1);
    }

    #[test]
    fn backlog_above_the_ceiling_stops_at_max_tasks() {
        let decisions = run(&policy(), &[(0, 1000, 0)], 0, None);
        assert_eq!(decisions[0].desired_tasks, 20);
        assert_eq!(decisions[0].desired_instances, 10);
    }

    #[test]
    fn scale_in_waits_for_the_stabilization_window() {
        // 20 messages at t=0 (10 tasks), then 4 (2 tasks) from t=10 on.
        let steps = [(0, 20, 0), (10, 4, 0), (59, 4, 0), (60, 4, 0)];
        let d = run(&policy(), &steps, 0, None);
        assert_eq!(d[0].desired_tasks, 10);
        assert_eq!(d[1].desired_tasks, 10);
        assert!(matches!(d[1].reason, Reason::Stabilizing { .. }));
        assert_eq!(d[2].desired_tasks, 10);
        assert_eq!(d[3].desired_tasks, 2);
        assert_eq!(d[3].direction, Direction::In);
        assert_eq!(d[3].desired_instances, 1);
    }

    #[test]
    fn a_restarted_controller_does_not_scale_in_before_a_window() {
        let d = run(&policy(), &[(100, 2, 0), (159, 2, 0), (160, 2, 0)], 8, None);
        assert_eq!(d[0].desired_tasks, 8);
        assert_eq!(d[1].desired_tasks, 8);
        assert_eq!(d[2].desired_tasks, 1);
    }

    #[test]
    fn drained_queue_goes_to_zero_only_after_idle_window_and_empty_receives() {
        let mut p = policy();
        p.scale_in_stabilization = secs(0);
        let steps = [(0, 0, 2), (10, 0, 0), (39, 0, 0), (40, 0, 0)];
        let d = run(&p, &steps, 1, Some(3.0));
        assert_eq!(d[1].desired_tasks, 1);
        assert!(matches!(d[1].reason, Reason::IdleWindow { .. }));
        assert_eq!(d[2].desired_tasks, 1);
        assert_eq!(d[3].desired_tasks, 0);
        assert_eq!(d[3].desired_instances, 0);
        assert!(matches!(d[3].reason, Reason::Drained { .. }));
    }

    #[test]
    fn the_idle_window_not_the_stabilization_window_governs_the_step_to_zero() {
        let mut p = policy();
        p.scale_in_stabilization = secs(600);
        let steps = [(0, 20, 0), (10, 0, 0), (39, 0, 0), (40, 0, 0)];
        let d = run(&p, &steps, 0, Some(1.0));
        assert_eq!(d[1].desired_tasks, 10, "stabilizing inside the idle window");
        assert_eq!(d[2].desired_tasks, 10);
        assert_eq!(d[3].desired_tasks, 0);
        assert!(matches!(d[3].reason, Reason::Drained { .. }));
    }

    /// The worked example of `docs/controller.md`, poll by poll.
    #[test]
    fn the_documented_worked_example() {
        let p = PoolPolicy {
            target: SizingTarget::MessagesPerTask(2),
            max_tasks: 10,
            max_instances: 5,
            tasks_per_instance: 2,
            scale_in_stabilization: secs(60),
            idle_window: secs(120),
            ..PoolPolicy::default()
        };
        let queue_at = |t: u64| match t {
            0..30 => (13, 0),
            30..120 => (3, 6),
            120..200 => (0, 3),
            _ => (0, 0),
        };
        let expected = [
            (0, 7, 4),
            (30, 7, 4),
            (90, 5, 3),
            (120, 5, 3),
            (180, 2, 1),
            (200, 2, 1),
            (255, 1, 1),
            (320, 1, 1),
            (380, 0, 0),
        ];
        let mut state = PolicyState::default();
        let (mut tasks, mut instances) = (0, 0);
        let mut seen = Vec::new();
        for t in (0..=380).step_by(5) {
            let (visible, in_flight) = queue_at(t);
            let empty = (t >= 380).then_some(3.0);
            let obs = observe(visible, in_flight, tasks, instances, empty);
            let (d, next) = decide(&obs, &state, &p, secs(t));
            state = next;
            (tasks, instances) = (d.desired_tasks, d.desired_instances);
            if expected.iter().any(|&(at, _, _)| at == t) {
                seen.push((t, tasks, instances));
            }
        }
        assert_eq!(seen, expected);
    }

    #[test]
    fn without_empty_receives_a_running_task_is_kept() {
        let mut p = policy();
        p.scale_in_stabilization = secs(0);
        let d = run(&p, &[(0, 0, 0), (100, 0, 0)], 1, Some(0.0));
        assert_eq!(d[1].desired_tasks, 1);
        assert!(matches!(d[1].reason, Reason::AwaitingEmptyReceives { .. }));
        let d = run(&p, &[(0, 0, 0), (100, 0, 0)], 1, None);
        assert_eq!(d[1].desired_tasks, 1);
    }

    #[test]
    fn without_the_empty_receives_requirement_idle_window_suffices() {
        let mut p = policy();
        p.scale_in_stabilization = secs(0);
        p.require_empty_receives = false;
        let d = run(&p, &[(0, 0, 0), (100, 0, 0)], 1, None);
        assert_eq!(d[1].desired_tasks, 0);
    }

    #[test]
    fn no_running_task_needs_no_empty_receives() {
        let mut p = policy();
        p.scale_in_stabilization = secs(0);
        let mut obs = observe(0, 0, 1, 1, None);
        let mut state = PolicyState::default();
        if let Some(service) = obs.service.as_mut() {
            service.running = 0;
        }
        let (_, next) = decide(&obs, &state, &p, secs(0));
        state = next;
        let (d, _) = decide(&obs, &state, &p, secs(31));
        assert_eq!(d.desired_tasks, 0);
    }

    #[test]
    fn delayed_messages_keep_the_pool_from_idling() {
        let mut p = policy();
        p.scale_in_stabilization = secs(0);
        let mut obs = observe(0, 0, 1, 1, Some(9.0));
        if let Some(queue) = obs.queue.as_mut() {
            queue.delayed = 3;
        }
        let mut state = PolicyState::default();
        for t in [0, 100, 200] {
            let (d, next) = decide(&obs, &state, &p, secs(t));
            state = next;
            assert_eq!(d.desired_tasks, 1);
        }
        assert_eq!(state.idle_since(), None);
    }

    #[test]
    fn an_idle_pool_at_zero_stays_at_zero() {
        let d = run(&policy(), &[(0, 0, 0), (5, 0, 0)], 0, None);
        assert!(d.iter().all(|d| d.desired_tasks == 0));
        assert!(d.iter().all(|d| d.direction == Direction::Steady));
    }

    #[test]
    fn missing_observation_holds_and_breaks_the_idle_streak() {
        let mut p = policy();
        p.scale_in_stabilization = secs(0);
        let mut state = PolicyState::default();
        let (_, next) = decide(&observe(0, 0, 3, 2, Some(1.0)), &state, &p, secs(0));
        state = next;
        let missing_queue = Observation {
            queue: None,
            ..observe(0, 0, 3, 2, Some(1.0))
        };
        let (d, next) = decide(&missing_queue, &state, &p, secs(100));
        state = next;
        assert_eq!((d.desired_tasks, d.desired_instances), (3, 2));
        assert_eq!(d.direction, Direction::Hold);
        assert_eq!(
            d.reason.to_string(),
            "holding the current size: no observation of queue"
        );
        let (d, _) = decide(&observe(0, 0, 3, 2, Some(1.0)), &state, &p, secs(101));
        assert_eq!(d.desired_tasks, 1, "idle streak restarts after the gap");
    }

    #[test]
    fn latency_target_sizes_like_aws_backlog_per_instance() {
        let target = SizingTarget::Latency {
            acceptable_latency: secs(300),
            processing_time_per_message: secs(40),
        };
        assert_eq!(target.messages_per_task(), 7);
        let tiny = SizingTarget::Latency {
            acceptable_latency: secs(10),
            processing_time_per_message: secs(40),
        };
        assert_eq!(tiny.messages_per_task(), 1);
        assert_eq!(SizingTarget::MessagesPerTask(0).messages_per_task(), 1);
    }

    #[test]
    fn bounds_outside_current_size_win() {
        let mut p = policy();
        p.max_tasks = 4;
        p.scale_in_stabilization = secs(600);
        let d = run(&p, &[(0, 40, 0)], 9, None);
        assert_eq!(d[0].desired_tasks, 4);
        p.min_tasks = 2;
        p.min_instances = 3;
        let d = run(&p, &[(0, 0, 0)], 0, None);
        assert_eq!((d[0].desired_tasks, d[0].desired_instances), (2, 3));
    }

    #[test]
    fn window_memory_stays_bounded() {
        let p = policy();
        let mut state = PolicyState::default();
        for t in 0..10_000u64 {
            let obs = observe(t % 50, 0, 5, 3, None);
            let (_, next) = decide(&obs, &state, &p, secs(t));
            state = next;
        }
        assert!(state.recommendations.len() <= 61);
    }

    fn arb_policy() -> impl Strategy<Value = PoolPolicy> {
        (
            1u32..10,
            0u32..4,
            1u32..40,
            0u32..3,
            1u32..20,
            1u32..4,
            0u64..120,
            0u64..120,
            any::<bool>(),
        )
            .prop_map(
                |(per_task, min_t, max_t, min_i, max_i, tpi, stab, idle, empty)| PoolPolicy {
                    target: SizingTarget::MessagesPerTask(per_task),
                    min_tasks: min_t.min(max_t),
                    max_tasks: max_t,
                    min_instances: min_i.min(max_i),
                    max_instances: max_i,
                    tasks_per_instance: tpi,
                    slots_per_task: 2,
                    scale_in_stabilization: secs(stab),
                    idle_window: secs(idle),
                    require_empty_receives: empty,
                },
            )
    }

    /// One step of an arbitrary history: seconds since the previous step, the queue, and
    /// whether each observation is present.
    type Step = (u64, u64, u64, u64, Option<f64>, [bool; 3]);

    fn arb_steps() -> impl Strategy<Value = Vec<Step>> {
        prop::collection::vec(
            (
                0u64..40,
                0u64..200,
                0u64..50,
                0u64..3,
                prop::option::of(0.0f64..5.0),
                prop::array::uniform3(prop::bool::weighted(0.9)),
            ),
            1..60,
        )
    }

    /// Replays a history against a fleet that follows every decision, calling `check` with
    /// each observation, the state before it, the time and the decision.
    fn replay(
        policy: &PoolPolicy,
        steps: &[Step],
        mut check: impl FnMut(&Observation, &PolicyState, Duration, &Decision),
    ) {
        let mut state = PolicyState::default();
        let mut now = secs(0);
        let mut tasks = 0;
        let mut instances = 0;
        for &(dt, visible, in_flight, delayed, empty, present) in steps {
            now += secs(dt);
            let obs = Observation {
                queue: present[0].then_some(QueueDepth {
                    visible,
                    in_flight,
                    delayed,
                }),
                service: present[1].then_some(ServiceTasks {
                    desired: tasks,
                    running: tasks,
                    pending: 0,
                }),
                instances: present[2].then_some(InstanceGroup {
                    desired: instances,
                    in_service: instances,
                }),
                latest_empty_receives: empty,
            };
            let (decision, next) = decide(&obs, &state, policy, now);
            check(&obs, &state, now, &decision);
            state = next;
            tasks = decision.desired_tasks;
            instances = decision.desired_instances;
        }
    }

    fn complete(obs: &Observation) -> bool {
        obs.queue.is_some() && obs.service.is_some() && obs.instances.is_some()
    }

    proptest! {
        #[test]
        fn never_fewer_tasks_than_the_work_needs(p in arb_policy(), steps in arb_steps()) {
            replay(&p, &steps, |obs, _, _, d| {
                if let (Some(q), Some(s), Some(_)) = (obs.queue, obs.service, obs.instances) {
                    let needed = q.work().div_ceil(p.target.messages_per_task());
                    let needed = u32::try_from(needed).unwrap_or(u32::MAX).min(p.max_tasks);
                    assert!(d.desired_tasks >= needed, "{d:?} for {q:?}");
                    if q.work() > 0 {
                        assert!(d.desired_tasks >= 1);
                    }
                    if !q.is_empty() && s.desired > 0 {
                        assert!(d.desired_tasks >= 1, "not idle, yet dropped to zero: {d:?}");
                    }
                }
            });
        }

        #[test]
        fn more_backlog_never_means_fewer_tasks(
            p in arb_policy(),
            steps in arb_steps(),
            extra in 0u64..500,
        ) {
            replay(&p, &steps, |obs, state, now, d| {
                if let Some(q) = obs.queue {
                    let mut bigger = *obs;
                    bigger.queue = Some(QueueDepth { visible: q.visible + extra, ..q });
                    let (more, _) = decide(&bigger, state, &p, now);
                    assert!(more.desired_tasks >= d.desired_tasks, "{more:?} < {d:?}");
                    assert!(more.desired_instances >= d.desired_instances);
                }
            });
        }

        #[test]
        fn no_scale_in_below_a_recommendation_inside_the_window(
            p in arb_policy(),
            steps in arb_steps(),
        ) {
            // What the backlog alone asked for at each complete observation.
            let mut earlier: Vec<(Duration, u32)> = Vec::new();
            replay(&p, &steps, |obs, _, now, d| {
                // The step to zero is the idle window's business, tested separately.
                let drained = matches!(d.reason, Reason::Drained { .. });
                if let Some(s) = obs.service
                    && complete(obs)
                    && d.desired_tasks < s.desired
                    && !drained
                {
                    for &(at, tasks) in &earlier {
                        if now.saturating_sub(at) < p.scale_in_stabilization {
                            assert!(
                                d.desired_tasks >= tasks.min(s.desired),
                                "scaled in to {} at {now:?} below {tasks} decided at {at:?}",
                                d.desired_tasks
                            );
                        }
                    }
                }
                if let (Some(q), true) = (obs.queue, complete(obs)) {
                    earlier.push((now, p.tasks_for_work(q.work())));
                }
            });
        }

        #[test]
        fn zero_only_after_a_full_idle_window(p in arb_policy(), steps in arb_steps()) {
            let mut empty_since: Option<Duration> = None;
            replay(&p, &steps, |obs, _, now, d| {
                empty_since = match obs.queue {
                    Some(q) if complete(obs) && q.is_empty() => Some(empty_since.unwrap_or(now)),
                    _ => None,
                };
                if let Some(s) = obs.service
                    && s.desired > 0
                    && d.desired_tasks == 0
                {
                    let since = empty_since.expect("went to zero with work or missing data");
                    assert!(
                        now.saturating_sub(since) >= p.idle_window,
                        "zero at {now:?}, queue empty only since {since:?}"
                    );
                }
            });
        }

        #[test]
        fn bounds_always_hold(p in arb_policy(), steps in arb_steps()) {
            replay(&p, &steps, |obs, _, _, d| {
                if complete(obs) {
                    assert!((p.min_tasks..=p.max_tasks).contains(&d.desired_tasks), "{d:?}");
                    assert!(
                        (p.min_instances..=p.max_instances).contains(&d.desired_instances),
                        "{d:?}"
                    );
                }
            });
        }

        #[test]
        fn missing_data_holds_the_current_size(p in arb_policy(), steps in arb_steps()) {
            replay(&p, &steps, |obs, _, _, d| {
                if !complete(obs) {
                    assert_eq!(d.direction, Direction::Hold);
                    if let Some(s) = obs.service {
                        assert_eq!(d.desired_tasks, s.desired);
                    }
                    if let Some(i) = obs.instances {
                        assert_eq!(d.desired_instances, i.desired);
                    }
                }
            });
        }

        #[test]
        fn same_inputs_same_decision(p in arb_policy(), steps in arb_steps()) {
            replay(&p, &steps, |obs, state, now, d| {
                let (again, _) = decide(obs, state, &p, now);
                assert_eq!(&again, d);
            });
        }
    }
}
