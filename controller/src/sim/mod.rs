//! `geobatch-controller simulate`: replays a workload through the controller's own policy
//! and through the autoscalers it replaces, and compares latency and cost.
//!
//! # Layout
//! - [`model`]: the simulated world's parameters and their defaults.
//! - [`scenario`]: built-in workloads and scenario files.
//! - [`world`]: the discrete-event engine (S3 events, SQS, ECS tasks, EC2 instances,
//!   CloudWatch) and its accounting, with the message-conservation check.
//! - [`autoscaler`]: what a policy sees and how its decisions reach the fleet.
//! - [`geobatch`]: the adapter around [`crate::policy::decide`].
//! - [`baselines`]: classic alarms, AWS target tracking, KEDA.
//! - [`report`]: summary rows, the targets, `summary.json` and `summary.md`.
//! - [`plot`]: the per-scenario figure, written as SVG and PNG.
//! - [`rng`]: the seeded generator that makes a run reproducible.

pub mod autoscaler;
pub mod baselines;
pub mod geobatch;
pub mod model;
pub mod plot;
pub mod report;
pub mod rng;
pub mod scenario;
pub mod world;

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::policy::PoolPolicy;
use autoscaler::Autoscaler;
use baselines::classic_alarms::{ClassicAlarms, ClassicAlarmsConfig};
use baselines::keda::{Keda, KedaConfig};
use baselines::target_tracking::{TargetTracking, TargetTrackingConfig};
use geobatch::Geobatch;
use model::ModelParams;
use scenario::Scenario;
use world::{RunOutcome, SimError};

/// The policies the simulator knows, in report order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PolicyKind {
    /// The controller's policy (`crate::policy::decide`) with task protection.
    Geobatch,
    /// Two CloudWatch alarms and simple scaling.
    ClassicAlarms,
    /// AWS target tracking on backlog per instance.
    TargetTracking,
    /// KEDA aws-sqs-queue + HPA + Cluster Autoscaler.
    Keda,
}

impl PolicyKind {
    /// Every policy, in report order.
    pub const ALL: [PolicyKind; 4] = [
        PolicyKind::Geobatch,
        PolicyKind::ClassicAlarms,
        PolicyKind::TargetTracking,
        PolicyKind::Keda,
    ];

    /// The name on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            PolicyKind::Geobatch => "geobatch",
            PolicyKind::ClassicAlarms => "classic-alarms",
            PolicyKind::TargetTracking => "target-tracking",
            PolicyKind::Keda => "keda",
        }
    }

    /// Parses a command-line name.
    pub fn parse(name: &str) -> Option<PolicyKind> {
        PolicyKind::ALL.into_iter().find(|k| k.name() == name)
    }
}

/// The simulator's own settings: the world and the baselines (`--model FILE`, TOML with
/// the sections `[model]`, `[classic_alarms]`, `[target_tracking]`, `[keda]`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SimConfig {
    /// The world.
    pub model: ModelParams,
    /// The classic alarms.
    pub classic_alarms: ClassicAlarmsConfig,
    /// AWS target tracking.
    pub target_tracking: TargetTrackingConfig,
    /// KEDA, HPA and Cluster Autoscaler.
    pub keda: KedaConfig,
}

/// The geobatch policy as the controller would run it: one pool's policy and cadence.
#[derive(Debug, Clone, PartialEq)]
pub struct GeobatchSettings {
    /// The pool policy `decide` is called with.
    pub policy: PoolPolicy,
    /// The controller's poll interval (default 5 s).
    pub poll_interval: Duration,
    /// How often the controller reads CloudWatch (default 60 s).
    pub cloudwatch_interval: Duration,
}

impl GeobatchSettings {
    /// The controller's defaults, with the fleet (tasks per instance, maximum instances and
    /// so maximum tasks) of `model`, so that geobatch gets the same fleet as the baselines.
    /// With the model's defaults this is exactly `PoolPolicy::default()`.
    pub fn defaults_for(model: &ModelParams) -> Self {
        let policy = PoolPolicy {
            tasks_per_instance: model.tasks_per_instance,
            max_instances: model.max_instances,
            max_tasks: model.max_instances * model.tasks_per_instance,
            ..PoolPolicy::default()
        };
        Self {
            policy,
            poll_interval: Duration::from_secs(5),
            cloudwatch_interval: Duration::from_secs(60),
        }
    }
}

/// Builds the autoscaler for `kind`.
pub fn autoscaler_for(
    kind: PolicyKind,
    config: &SimConfig,
    geobatch: &GeobatchSettings,
    scenario: &Scenario,
) -> Box<dyn Autoscaler> {
    match kind {
        PolicyKind::Geobatch => Box::new(Geobatch::new(
            geobatch.policy.clone(),
            geobatch.poll_interval,
            geobatch.cloudwatch_interval,
        )),
        PolicyKind::ClassicAlarms => Box::new(ClassicAlarms::new(config.classic_alarms.clone())),
        PolicyKind::TargetTracking => Box::new(TargetTracking::new(
            config.target_tracking.clone(),
            mean_processing_secs(scenario),
            config.model.tasks_per_instance,
        )),
        PolicyKind::Keda => Box::new(Keda::new(config.keda.clone())),
    }
}

/// Mean processing time of the scenario's files, what an operator would have measured.
pub fn mean_processing_secs(scenario: &Scenario) -> f64 {
    if scenario.files.is_empty() {
        return 0.0;
    }
    scenario
        .files
        .iter()
        .map(|f| f.processing_ms as f64)
        .sum::<f64>()
        / scenario.files.len() as f64
        / 1000.0
}

/// Runs one scenario through one policy.
pub fn simulate(
    scenario: &Scenario,
    kind: PolicyKind,
    config: &SimConfig,
    geobatch: &GeobatchSettings,
    seed: u64,
) -> Result<RunOutcome, SimError> {
    let mut policy = autoscaler_for(kind, config, geobatch, scenario);
    world::run(scenario, &config.model, policy.as_mut(), seed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_annotated_example_model_file_is_the_defaults() {
        let text = include_str!("../../examples/sim-model.toml");
        let parsed: SimConfig = toml::from_str(text).expect("the example parses");
        assert_eq!(parsed, SimConfig::default());
    }

    #[test]
    fn policy_names_round_trip() {
        for kind in PolicyKind::ALL {
            assert_eq!(PolicyKind::parse(kind.name()), Some(kind));
        }
        assert_eq!(PolicyKind::parse("hpa"), None);
    }

    #[test]
    fn geobatch_defaults_are_the_controllers_with_the_default_model() {
        let settings = GeobatchSettings::defaults_for(&ModelParams::default());
        assert_eq!(settings.policy, PoolPolicy::default());
        assert_eq!(settings.poll_interval, Duration::from_secs(5));
    }
}
