//! The geobatch controller's own policy, run through the simulator.
//!
//! This adapter only translates: the simulated world becomes the controller's
//! [`Observation`], and [`crate::policy::decide`] — the same function the live loop,
//! `decide` and `--dry-run` call — makes every decision. Its decisions are carried out the
//! way the controller's actuator does: the ECS desired count and the ASG capacity are set
//! together on scale-out; on scale-in busy workers hold ECS task scale-in protection, and an
//! instance is removed only once it runs no task.

use std::time::Duration;

use crate::policy::{
    InstanceGroup, Observation, PolicyState, PoolPolicy, QueueDepth, ServiceTasks, decide,
};
use crate::sim::autoscaler::{
    Autoscaler, Capacity, ClusterView, Command, InstanceControl, StopOrder, TaskControl,
};
use crate::sim::model::Millis;

/// The controller's policy with its poll interval and CloudWatch cadence.
#[derive(Debug, Clone)]
pub struct Geobatch {
    policy: PoolPolicy,
    poll_interval: Duration,
    cloudwatch_interval: Duration,
    state: PolicyState,
    /// The controller reads CloudWatch once per `cloudwatch_interval` and reuses the value.
    empty_receives: Option<f64>,
    next_cloudwatch_read_ms: Millis,
}

impl Geobatch {
    /// The policy of one pool, polled every `poll_interval`, reading CloudWatch every
    /// `cloudwatch_interval`.
    pub fn new(policy: PoolPolicy, poll_interval: Duration, cloudwatch_interval: Duration) -> Self {
        Self {
            policy,
            poll_interval,
            cloudwatch_interval,
            state: PolicyState::default(),
            empty_receives: None,
            next_cloudwatch_read_ms: 0,
        }
    }

    /// The pool policy in use, for the report.
    pub fn policy(&self) -> &PoolPolicy {
        &self.policy
    }
}

impl Autoscaler for Geobatch {
    fn name(&self) -> &'static str {
        "geobatch"
    }

    fn capacity(&self) -> Capacity {
        Capacity {
            tasks: TaskControl::Service {
                stop_order: StopOrder::Arbitrary,
                protect_busy: true,
            },
            instances: InstanceControl::IdleOnly,
        }
    }

    fn interval_ms(&self) -> Millis {
        self.poll_interval.as_millis() as Millis
    }

    fn min_instances(&self) -> u32 {
        self.policy.min_instances
    }

    fn evaluate(&mut self, view: &ClusterView<'_>) -> Command {
        if view.now_ms >= self.next_cloudwatch_read_ms {
            self.next_cloudwatch_read_ms =
                view.now_ms + self.cloudwatch_interval.as_millis() as Millis;
            self.empty_receives = view.cloudwatch.last().map(|p| f64::from(p.empty_receives));
        }
        let observation = Observation {
            queue: Some(QueueDepth {
                visible: u64::from(view.queue.visible),
                in_flight: u64::from(view.queue.in_flight),
                delayed: u64::from(view.queue.delayed),
            }),
            service: Some(ServiceTasks {
                desired: view.desired_tasks,
                running: view.running_tasks,
                pending: view.pending_tasks,
            }),
            instances: Some(InstanceGroup {
                desired: view.desired_instances,
                in_service: view.in_service_instances,
            }),
            latest_empty_receives: self.empty_receives,
        };
        let now = Duration::from_millis(view.now_ms);
        let (decision, next) = decide(&observation, &self.state, &self.policy, now);
        self.state = next;
        Command {
            desired_tasks: Some(decision.desired_tasks),
            desired_instances: Some(decision.desired_instances),
            reason: decision.reason.to_string(),
        }
    }
}
