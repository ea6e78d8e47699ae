//! The controller's Prometheus metrics, served on `/metrics` by `common::http`.
//!
//! Sizes are gauges per pool so a dashboard shows desired against actual; decisions, calls
//! and API errors are counters so alerts can fire on a rate.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::aws::ApiErrorKind;
use crate::observe::PoolSnapshot;
use crate::policy::{Decision, Direction};

type Labels = Vec<(&'static str, String)>;

/// Every metric the controller exports.
#[derive(Debug, Clone, Default)]
pub struct Metrics {
    observations: Family<Labels, Counter>,
    api_errors: Family<Labels, Counter>,
    decisions: Family<Labels, Counter>,
    calls: Family<Labels, Counter>,
    desired_tasks: Family<Labels, Gauge>,
    desired_instances: Family<Labels, Gauge>,
    service_desired_tasks: Family<Labels, Gauge>,
    running_tasks: Family<Labels, Gauge>,
    group_desired_instances: Family<Labels, Gauge>,
    in_service_instances: Family<Labels, Gauge>,
    pending_instances: Family<Labels, Gauge>,
    interrupted_instances: Family<Labels, Gauge>,
    warm_instances: Family<Labels, Gauge>,
    queue_visible: Family<Labels, Gauge>,
    queue_in_flight: Family<Labels, Gauge>,
    queue_delayed: Family<Labels, Gauge>,
}

impl Metrics {
    /// Creates the metrics and registers them under the `geobatch_controller` prefix.
    pub fn register(registry: &mut Registry) -> Metrics {
        let metrics = Metrics::default();
        let r = registry.sub_registry_with_prefix("geobatch_controller");
        r.register(
            "observations",
            "Polls of a pool, by result (ok: every call answered; partial: some failed)",
            metrics.observations.clone(),
        );
        r.register(
            "api_errors",
            "Failed AWS API calls, by operation and kind (throttled, timeout, unavailable, denied, invalid, not_found, unexpected)",
            metrics.api_errors.clone(),
        );
        r.register(
            "decisions",
            "Policy decisions, by direction (out, in, steady, hold)",
            metrics.decisions.clone(),
        );
        r.register(
            "calls",
            "Mutating calls made (in dry-run: shown, once per change of plan), by operation and mode",
            metrics.calls.clone(),
        );
        r.register(
            "desired_tasks",
            "Tasks the policy wants",
            metrics.desired_tasks.clone(),
        );
        r.register(
            "desired_instances",
            "Instances the policy wants",
            metrics.desired_instances.clone(),
        );
        r.register(
            "service_desired_tasks",
            "The ECS service's desired count as observed",
            metrics.service_desired_tasks.clone(),
        );
        r.register(
            "running_tasks",
            "The ECS service's running tasks as observed",
            metrics.running_tasks.clone(),
        );
        r.register(
            "group_desired_instances",
            "The Auto Scaling Group's desired capacity as observed",
            metrics.group_desired_instances.clone(),
        );
        r.register(
            "in_service_instances",
            "The Auto Scaling Group's InService instances as observed",
            metrics.in_service_instances.clone(),
        );
        r.register(
            "pending_instances",
            "The Auto Scaling Group's instances on their way in (Pending*), as observed",
            metrics.pending_instances.clone(),
        );
        r.register(
            "interrupted_instances",
            "The Auto Scaling Group's instances being taken away (Terminating*: Spot interruption, rebalance, scale-in); never counted as capacity",
            metrics.interrupted_instances.clone(),
        );
        r.register(
            "warm_instances",
            "Instances waiting in the group's warm pool (DescribeWarmPool), as observed",
            metrics.warm_instances.clone(),
        );
        r.register(
            "queue_visible_messages",
            "ApproximateNumberOfMessages of the pool's queue",
            metrics.queue_visible.clone(),
        );
        r.register(
            "queue_in_flight_messages",
            "ApproximateNumberOfMessagesNotVisible of the pool's queue",
            metrics.queue_in_flight.clone(),
        );
        r.register(
            "queue_delayed_messages",
            "ApproximateNumberOfMessagesDelayed of the pool's queue",
            metrics.queue_delayed.clone(),
        );
        metrics
    }

    /// Records one poll: what was seen and what was decided (failed calls are counted by
    /// [`crate::events::ApiCallFailed`]).
    pub fn observed(&self, pool: &str, snapshot: &PoolSnapshot, decision: &Decision) {
        let by_pool = vec![("pool", pool.to_owned())];
        let result = if snapshot.errors.is_empty() {
            "ok"
        } else {
            "partial"
        };
        self.observations
            .get_or_create(&vec![
                ("pool", pool.to_owned()),
                ("result", result.to_owned()),
            ])
            .inc();
        let obs = &snapshot.observation;
        if let Some(queue) = obs.queue {
            set(&self.queue_visible, &by_pool, queue.visible);
            set(&self.queue_in_flight, &by_pool, queue.in_flight);
            set(&self.queue_delayed, &by_pool, queue.delayed);
        }
        if let Some(service) = obs.service {
            set(
                &self.service_desired_tasks,
                &by_pool,
                service.desired.into(),
            );
            set(&self.running_tasks, &by_pool, service.running.into());
        }
        if let Some(group) = obs.instances {
            set(
                &self.group_desired_instances,
                &by_pool,
                group.desired.into(),
            );
            set(
                &self.in_service_instances,
                &by_pool,
                group.in_service.into(),
            );
            set(&self.pending_instances, &by_pool, group.pending.into());
            set(
                &self.interrupted_instances,
                &by_pool,
                group.interrupted.into(),
            );
            set(&self.warm_instances, &by_pool, group.warm.into());
        }
        if decision.direction != Direction::Hold {
            set(&self.desired_tasks, &by_pool, decision.desired_tasks.into());
            set(
                &self.desired_instances,
                &by_pool,
                decision.desired_instances.into(),
            );
        }
        let direction = match decision.direction {
            Direction::Out => "out",
            Direction::In => "in",
            Direction::Steady => "steady",
            Direction::Hold => "hold",
        };
        self.decisions
            .get_or_create(&vec![
                ("pool", pool.to_owned()),
                ("direction", direction.to_owned()),
            ])
            .inc();
    }

    /// Counts a failed AWS call by operation and kind.
    pub fn api_error(&self, call: &'static str, kind: ApiErrorKind) {
        self.api_errors
            .get_or_create(&vec![
                ("call", call.to_owned()),
                ("kind", kind.as_str().to_owned()),
            ])
            .inc();
    }

    /// Counts a mutating call made or skipped.
    pub fn call(&self, pool: &str, call: &'static str, dry_run: bool) {
        let mode = if dry_run { "dry_run" } else { "live" };
        self.calls
            .get_or_create(&vec![
                ("pool", pool.to_owned()),
                ("call", call.to_owned()),
                ("mode", mode.to_owned()),
            ])
            .inc();
    }
}

fn set(family: &Family<Labels, Gauge>, labels: &Labels, value: u64) {
    family
        .get_or_create(labels)
        .set(i64::try_from(value).unwrap_or(i64::MAX));
}
