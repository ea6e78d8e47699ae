//! AWS target tracking on "backlog per instance", as in the EC2 Auto Scaling guide
//! "Scaling policy based on Amazon SQS".
//!
//! - Metric: `ApproximateNumberOfMessagesVisible / GroupInServiceInstances` (metric math),
//!   1-minute periods, read from CloudWatch with its delivery lag.
//! - Target: acceptable backlog per instance = acceptable latency / time an instance needs
//!   per message (`processing_secs_per_message / files the instance analyses at full speed at
//!   once`, i.e. an operator who measured the instance's throughput: its slots, up to its
//!   vCPUs).
//! - Target tracking creates two alarms: the high alarm needs 3 consecutive datapoints above
//!   the target, the low alarm 15 consecutive datapoints below 90 % of it (the alarms AWS
//!   creates for a target tracking policy). While an alarm is in ALARM the policy sets the
//!   capacity to `ceil(in-service capacity * metric / target)`.
//! - The metric ignores messages in flight, so a queue whose last files are being processed
//!   looks empty and the group scales in, terminating instances chosen by the ASG, busy or
//!   not.
//! - With 0 instances the metric divides by zero and has no datapoints, so the group can
//!   never leave zero: the recipe needs `min_instances` >= 1, which is the default here.

use serde::{Deserialize, Serialize};

use crate::sim::autoscaler::{
    Autoscaler, Capacity, CloudWatchPoint, ClusterView, Command, InstanceControl, TaskControl,
};
use crate::sim::model::Millis;

/// Parameters of the target tracking policy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TargetTrackingConfig {
    /// How long a message may wait (the AWS guide's "acceptable latency").
    pub acceptable_latency_secs: f64,
    /// The guide's "average time to process a message"; `None` uses the scenario's mean,
    /// i.e. an operator who measured their workload.
    pub processing_secs_per_message: Option<f64>,
    /// ASG MinSize; at least 1 or the metric has no datapoints to scale out on.
    pub min_instances: u32,
    /// Datapoints above target before scaling out (AWS: 3).
    pub scale_out_datapoints: usize,
    /// Datapoints below `scale_in_ratio * target` before scaling in (AWS: 15).
    pub scale_in_datapoints: usize,
    /// Fraction of the target below which the low alarm counts a datapoint (AWS: 0.9).
    pub scale_in_ratio: f64,
}

impl Default for TargetTrackingConfig {
    fn default() -> Self {
        Self {
            acceptable_latency_secs: 600.0,
            processing_secs_per_message: None,
            min_instances: 1,
            scale_out_datapoints: 3,
            scale_in_datapoints: 15,
            scale_in_ratio: 0.9,
        }
    }
}

/// Simulated target tracking.
#[derive(Debug, Clone)]
pub struct TargetTracking {
    config: TargetTrackingConfig,
    /// Messages per in-service instance the policy aims at.
    target_backlog_per_instance: f64,
}

impl TargetTracking {
    /// A policy with `config`; `mean_processing_secs` is the scenario's mean, used when the
    /// config does not give the processing time; an instance analyses
    /// `parallel_files_per_instance` files at once at full speed.
    pub fn new(
        config: TargetTrackingConfig,
        mean_processing_secs: f64,
        parallel_files_per_instance: u32,
    ) -> Self {
        let per_message = config
            .processing_secs_per_message
            .unwrap_or(mean_processing_secs)
            .max(0.001);
        let per_instance = per_message / f64::from(parallel_files_per_instance.max(1));
        let target = (config.acceptable_latency_secs / per_instance).max(1.0);
        Self {
            config,
            target_backlog_per_instance: target,
        }
    }

    /// The target the policy tracks, for the report.
    pub fn target_backlog_per_instance(&self) -> f64 {
        self.target_backlog_per_instance
    }

    fn metric(p: &CloudWatchPoint) -> Option<f64> {
        (p.in_service_instances > 0)
            .then(|| f64::from(p.visible_max) / f64::from(p.in_service_instances))
    }

    fn last_n_all(points: &[CloudWatchPoint], n: usize, pred: impl Fn(f64) -> bool) -> bool {
        n > 0
            && points.len() >= n
            && points[points.len() - n..]
                .iter()
                .all(|p| Self::metric(p).is_some_and(&pred))
    }
}

impl Autoscaler for TargetTracking {
    fn name(&self) -> &'static str {
        "target-tracking"
    }

    fn capacity(&self) -> Capacity {
        Capacity {
            tasks: TaskControl::Daemon,
            instances: InstanceControl::AsgChoosesVictim,
        }
    }

    fn interval_ms(&self) -> Millis {
        60_000
    }

    fn min_instances(&self) -> u32 {
        self.config.min_instances
    }

    fn evaluate(&mut self, view: &ClusterView<'_>) -> Command {
        let min = self.config.min_instances.min(view.max_instances);
        let current = view.desired_instances;
        let target = self.target_backlog_per_instance;
        let points = view.cloudwatch;
        let proportional = |p: &CloudWatchPoint| {
            let wanted = (f64::from(p.visible_max) / target).ceil() as u32;
            wanted.clamp(min, view.max_instances)
        };
        let metric = points.last().and_then(Self::metric).unwrap_or(0.0);
        let (desired, reason) = if current < min {
            (min, format!("below MinSize {min}"))
        } else if Self::last_n_all(points, self.config.scale_out_datapoints, |m| m > target) {
            (
                points.last().map_or(current, proportional).max(current),
                format!(
                    "high alarm: backlog per instance {metric:.1} > target {target:.1} for {} datapoints",
                    self.config.scale_out_datapoints
                ),
            )
        } else if Self::last_n_all(points, self.config.scale_in_datapoints, |m| {
            m < self.config.scale_in_ratio * target
        }) {
            (
                points.last().map_or(current, proportional).min(current),
                format!(
                    "low alarm: backlog per instance {metric:.1} < {:.1} for {} datapoints",
                    self.config.scale_in_ratio * target,
                    self.config.scale_in_datapoints
                ),
            )
        } else {
            (current, String::new())
        };
        if desired == current {
            Command::default()
        } else {
            Command {
                desired_tasks: None,
                desired_instances: Some(desired),
                reason,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::autoscaler::QueueView;

    fn point(visible: u32, in_service: u32) -> CloudWatchPoint {
        CloudWatchPoint {
            visible_max: visible,
            in_service_instances: in_service,
            ..CloudWatchPoint::default()
        }
    }

    fn view(desired: u32, points: &[CloudWatchPoint]) -> ClusterView<'_> {
        ClusterView {
            now_ms: 0,
            queue: QueueView::default(),
            cloudwatch: points,
            desired_tasks: desired * 2,
            running_tasks: desired * 2,
            pending_tasks: 0,
            desired_instances: desired,
            instances: desired,
            in_service_instances: desired,
            max_instances: 20,
            tasks_per_instance: 2,
        }
    }

    fn policy() -> TargetTracking {
        // 600 s acceptable latency, 60 s per message, 2 tasks per instance: target 20.
        TargetTracking::new(TargetTrackingConfig::default(), 60.0, 2)
    }

    #[test]
    fn target_follows_the_aws_formula() {
        assert!((policy().target_backlog_per_instance() - 20.0).abs() < 1e-9);
    }

    #[test]
    fn scales_out_only_after_three_high_datapoints() {
        let mut p = policy();
        let two = [point(0, 1), point(100, 1), point(100, 1)];
        assert_eq!(p.evaluate(&view(1, &two)).desired_instances, None);
        let three = [point(100, 1), point(100, 1), point(100, 1)];
        assert_eq!(p.evaluate(&view(1, &three)).desired_instances, Some(5));
    }

    #[test]
    fn scales_in_after_fifteen_low_datapoints_even_with_files_in_flight() {
        let mut p = policy();
        let mut points = vec![
            CloudWatchPoint {
                not_visible_max: 10,
                ..point(0, 5)
            };
            14
        ];
        assert_eq!(p.evaluate(&view(5, &points)).desired_instances, None);
        points.push(point(0, 5));
        assert_eq!(p.evaluate(&view(5, &points)).desired_instances, Some(1));
    }

    #[test]
    fn never_below_its_minimum() {
        let mut p = policy();
        assert_eq!(p.evaluate(&view(0, &[])).desired_instances, Some(1));
    }
}
