//! What an autoscaler sees of the simulated world and what it may change.
//!
//! Each policy (the geobatch controller's and the three baselines) implements
//! [`Autoscaler`]. The world calls [`Autoscaler::evaluate`] every
//! [`Autoscaler::interval_ms`] with a [`ClusterView`] that holds only what that kind of
//! autoscaler can observe in AWS: live SQS attributes, CloudWatch datapoints once they have
//! been published, and the ECS service and Auto Scaling Group counts.

use super::model::Millis;

/// Queue attributes as `GetQueueAttributes` returns them, live.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QueueView {
    /// ApproximateNumberOfMessages (visible).
    pub visible: u32,
    /// ApproximateNumberOfMessagesNotVisible (received, not yet deleted).
    pub in_flight: u32,
    /// ApproximateNumberOfMessagesDelayed (the pipeline sets no delay, so always 0 here).
    pub delayed: u32,
}

/// One CloudWatch 1-minute datapoint of the queue's metrics and the group's size.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CloudWatchPoint {
    /// End of the period this datapoint covers.
    pub period_end_ms: Millis,
    /// Maximum of ApproximateNumberOfMessagesVisible in the period.
    pub visible_max: u32,
    /// Maximum of ApproximateNumberOfMessagesNotVisible in the period.
    pub not_visible_max: u32,
    /// Sum of NumberOfEmptyReceives in the period.
    pub empty_receives: u32,
    /// GroupInServiceInstances at the end of the period.
    pub in_service_instances: u32,
}

/// What an autoscaler observes at one evaluation.
#[derive(Debug, Clone)]
pub struct ClusterView<'a> {
    /// Simulated time of this evaluation.
    pub now_ms: Millis,
    /// Live SQS attributes.
    pub queue: QueueView,
    /// CloudWatch datapoints already published (period end + delivery lag <= now), oldest
    /// first. Policies that read CloudWatch see the world this late.
    pub cloudwatch: &'a [CloudWatchPoint],
    /// ECS service desired count (or replica count).
    pub desired_tasks: u32,
    /// Tasks whose worker is running (idle, busy or finishing after a stop).
    pub running_tasks: u32,
    /// Tasks waiting for an instance or starting.
    pub pending_tasks: u32,
    /// Auto Scaling Group desired capacity.
    pub desired_instances: u32,
    /// Instances launched and not terminated (booting or in service).
    pub instances: u32,
    /// Instances registered and able to run tasks.
    pub in_service_instances: u32,
    /// Fleet ceiling (ASG MaxSize), the same for every policy.
    pub max_instances: u32,
    /// Tasks that fit on one instance.
    pub tasks_per_instance: u32,
}

/// How the ECS service (or Deployment) turns a desired count into running tasks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TaskControl {
    /// One set of `tasks_per_instance` tasks on every instance, started when it comes into
    /// service and killed with it (the classic recipe's one-worker-per-instance layout).
    Daemon,
    /// A service with a desired count; on scale-in it stops tasks in `stop_order`, never a
    /// task that holds scale-in protection when `protect_busy` is set.
    Service {
        /// Which tasks go first on scale-in.
        stop_order: StopOrder,
        /// Busy workers hold ECS task scale-in protection.
        protect_busy: bool,
    },
}

/// Victim selection on a service scale-in, after tasks not yet running.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopOrder {
    /// ECS: any unprotected task (AZ balance aside, the choice is arbitrary; seeded here).
    Arbitrary,
    /// Kubernetes ReplicaSet: the most recently started pods first, busy or not.
    NewestFirst,
}

/// How instances are added and removed.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum InstanceControl {
    /// The ASG follows its desired capacity; on scale-in its termination policy picks the
    /// instance, whatever runs on it (no instance scale-in protection). The geobatch
    /// controller's group behaves the same way: its plan never lowers the desired capacity,
    /// and removes capacity only by terminating the instance it chose, with decrement.
    AsgChoosesVictim,
    /// Kubernetes Cluster Autoscaler: adds nodes for pods that cannot be placed, removes a
    /// node that has been empty for `unneeded_ms`, not within `delay_after_add_ms` of a
    /// scale-up; scans every `scan_interval_ms`.
    ClusterAutoscaler {
        /// `--scan-interval` (default 10 s).
        scan_interval_ms: Millis,
        /// `--scale-down-unneeded-time` (default 10 min).
        unneeded_ms: Millis,
        /// `--scale-down-delay-after-add` (default 10 min).
        delay_after_add_ms: Millis,
    },
}

/// How a policy's decisions reach the fleet.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Capacity {
    /// Task side.
    pub tasks: TaskControl,
    /// Instance side.
    pub instances: InstanceControl,
}

/// A policy's decision; `None` leaves that size as it is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Command {
    /// New ECS desired count (ignored for [`TaskControl::Daemon`]).
    pub desired_tasks: Option<u32>,
    /// New ASG desired capacity (ignored for [`InstanceControl::ClusterAutoscaler`]).
    pub desired_instances: Option<u32>,
    /// Why, in words; recorded in the decision log when the command changes a size.
    pub reason: String,
}

/// A scaling policy under simulation.
pub trait Autoscaler {
    /// The name used in summaries (`geobatch`, `classic-alarms`, ...).
    fn name(&self) -> &'static str;
    /// How decisions are carried out.
    fn capacity(&self) -> Capacity;
    /// Time between evaluations.
    fn interval_ms(&self) -> Millis;
    /// The smallest fleet the policy keeps when there is no work; a run ends once the work
    /// is done, the scenario's horizon has passed and the fleet is down to this.
    fn min_instances(&self) -> u32 {
        0
    }
    /// One evaluation.
    fn evaluate(&mut self, view: &ClusterView<'_>) -> Command;
}
