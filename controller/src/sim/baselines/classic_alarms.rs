//! The classic recipe: two CloudWatch alarms driving simple scaling policies on the ASG.
//!
//! - Scale-out alarm: `ApproximateNumberOfMessagesVisible > 0` over one 1-minute period adds
//!   one instance.
//! - Scale-in alarm: `NumberOfEmptyReceives > 0` over one 1-minute period removes one
//!   instance, chosen by the ASG's termination policy, busy or not.
//! - Simple scaling waits for the group's cooldown (`DefaultCooldown`, 300 s by default, EC2
//!   Auto Scaling user guide, "Scaling cooldowns") after any activity before the next one.
//!   An alarm that stays in ALARM keeps invoking its policy each period, so the next step
//!   comes as soon as the cooldown ends.
//! - One worker per instance in the recipe; here `tasks_per_instance` workers per instance,
//!   started and killed with it.
//!
//! Both alarms read CloudWatch, so they act on data that is one period plus the delivery
//! lag old.

use serde::{Deserialize, Serialize};

use crate::sim::autoscaler::{
    Autoscaler, Capacity, ClusterView, Command, InstanceControl, TaskControl,
};
use crate::sim::model::{Millis, secs};

/// Parameters of the classic alarms.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClassicAlarmsConfig {
    /// The ASG's default cooldown for simple scaling (AWS default 300 s).
    pub cooldown_secs: f64,
    /// Instances added or removed per alarm action (the recipe: 1).
    pub step_instances: u32,
}

impl Default for ClassicAlarmsConfig {
    fn default() -> Self {
        Self {
            cooldown_secs: 300.0,
            step_instances: 1,
        }
    }
}

/// Simulated classic alarms.
#[derive(Debug, Clone)]
pub struct ClassicAlarms {
    config: ClassicAlarmsConfig,
    /// When the last scaling activity started; simple scaling waits a cooldown after it.
    last_activity_ms: Option<Millis>,
}

impl ClassicAlarms {
    /// Alarms with `config`.
    pub fn new(config: ClassicAlarmsConfig) -> Self {
        Self {
            config,
            last_activity_ms: None,
        }
    }
}

impl Autoscaler for ClassicAlarms {
    fn name(&self) -> &'static str {
        "classic-alarms"
    }

    fn capacity(&self) -> Capacity {
        Capacity {
            tasks: TaskControl::Daemon,
            instances: InstanceControl::AsgChoosesVictim,
        }
    }

    /// CloudWatch evaluates the alarms once per 1-minute period.
    fn interval_ms(&self) -> Millis {
        60_000
    }

    fn evaluate(&mut self, view: &ClusterView<'_>) -> Command {
        let Some(latest) = view.cloudwatch.last() else {
            return Command::default();
        };
        let cooling = self
            .last_activity_ms
            .is_some_and(|t| view.now_ms < t + secs(self.config.cooldown_secs));
        if cooling {
            return Command::default();
        }
        let current = view.desired_instances;
        let step = self.config.step_instances.max(1);
        let (target, reason) = if latest.visible_max > 0 && current < view.max_instances {
            (
                (current + step).min(view.max_instances),
                format!(
                    "scale-out alarm: ApproximateNumberOfMessagesVisible {} > 0",
                    latest.visible_max
                ),
            )
        } else if latest.empty_receives > 0 && current > 0 {
            (
                current.saturating_sub(step),
                format!(
                    "scale-in alarm: NumberOfEmptyReceives {} > 0",
                    latest.empty_receives
                ),
            )
        } else {
            return Command::default();
        };
        self.last_activity_ms = Some(view.now_ms);
        Command {
            desired_tasks: None,
            desired_instances: Some(target),
            reason,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::autoscaler::{CloudWatchPoint, QueueView};

    fn view(now_s: u64, desired: u32, points: &[CloudWatchPoint]) -> ClusterView<'_> {
        ClusterView {
            now_ms: now_s * 1000,
            queue: QueueView::default(),
            cloudwatch: points,
            desired_tasks: desired,
            running_tasks: desired,
            pending_tasks: 0,
            desired_instances: desired,
            instances: desired,
            in_service_instances: desired,
            max_instances: 10,
            tasks_per_instance: 1,
        }
    }

    #[test]
    fn adds_one_instance_per_cooldown_whatever_the_backlog() {
        let mut alarms = ClassicAlarms::new(ClassicAlarmsConfig::default());
        let backlog = [CloudWatchPoint {
            visible_max: 1000,
            ..CloudWatchPoint::default()
        }];
        assert_eq!(
            alarms.evaluate(&view(60, 0, &backlog)).desired_instances,
            Some(1)
        );
        // Inside the 300 s cooldown nothing happens, however deep the queue.
        assert_eq!(
            alarms.evaluate(&view(120, 1, &backlog)).desired_instances,
            None
        );
        assert_eq!(
            alarms.evaluate(&view(359, 1, &backlog)).desired_instances,
            None
        );
        assert_eq!(
            alarms.evaluate(&view(360, 1, &backlog)).desired_instances,
            Some(2)
        );
    }

    #[test]
    fn empty_receives_remove_an_instance_even_with_work_in_flight() {
        let mut alarms = ClassicAlarms::new(ClassicAlarmsConfig::default());
        let drained = [CloudWatchPoint {
            not_visible_max: 3,
            empty_receives: 2,
            ..CloudWatchPoint::default()
        }];
        assert_eq!(
            alarms.evaluate(&view(600, 3, &drained)).desired_instances,
            Some(2)
        );
    }

    #[test]
    fn no_datapoint_no_action() {
        let mut alarms = ClassicAlarms::new(ClassicAlarmsConfig::default());
        assert_eq!(alarms.evaluate(&view(60, 0, &[])), Command::default());
    }
}
