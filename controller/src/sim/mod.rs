//! `geobatch-controller simulate`: replays a workload through the controller's own policy
//! and through the autoscalers it replaces, and compares latency and cost.
//!
//! # Layout
//! - [`model`]: the simulated world's parameters and their defaults.
//! - [`scenario`]: built-in workloads and scenario files.
//! - [`world`]: the discrete-event engine (S3 events, SQS, ECS tasks, EC2 instances,
//!   CloudWatch) and its accounting, with the message-conservation check.
//! - [`control_loop`]: the geobatch controller's own loop ([`crate::control::PoolLoop`]),
//!   run against the world through a simulated observer, actuator and clock.
//! - [`autoscaler`]: what a modelled autoscaler sees and how its decisions reach the fleet.
//! - [`baselines`]: classic alarms, AWS target tracking, KEDA.
//! - [`lower_bound`]: what a clairvoyant policy would pay, and the p95 floor.
//! - [`report`]: summary rows, the issue's targets, `summary.json` and `summary.md`.
//! - [`plot`]: the per-scenario figure, written as SVG and PNG.
//! - [`rng`]: the seeded generator that makes a run reproducible.

pub mod autoscaler;
pub mod baselines;
pub mod control_loop;
pub mod lower_bound;
pub mod model;
pub mod plot;
pub mod report;
pub mod rng;
pub mod scenario;
pub mod world;

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::config::{ConfigError, ConfigFile, Pool};
use autoscaler::Autoscaler;
use baselines::classic_alarms::{ClassicAlarms, ClassicAlarmsConfig};
use baselines::keda::{Keda, KedaConfig};
use baselines::target_tracking::{TargetTracking, TargetTrackingConfig};
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

/// The geobatch controller as it would run: one pool (its policy and poll interval) and
/// the loop's CloudWatch cadence and backoff.
#[derive(Debug, Clone, PartialEq)]
pub struct GeobatchSettings {
    /// The pool the loop controls.
    pub pool: Pool,
    /// How often the observer reads CloudWatch.
    pub cloudwatch_interval: Duration,
    /// Longest wait between polls after failed calls.
    pub max_backoff: Duration,
}

/// The smallest controller config: every setting not named here is the controller's
/// default, so the simulated controller cannot drift from the real one's defaults.
const DEFAULT_CONTROLLER_CONFIG: &str = r#"
[[pool]]
name = "simulated"
queue_url = "https://sqs.us-east-1.amazonaws.com/000000000000/geobatch"
cluster = "geobatch"
service = "worker"
auto_scaling_group = "geobatch-workers"
"#;

impl GeobatchSettings {
    /// The controller's defaults, with the fleet (slots per task, tasks per instance,
    /// maximum instances and so maximum tasks) of `model`, so that geobatch gets the same
    /// fleet as the baselines.
    /// With the model's defaults this is exactly the controller's default pool.
    pub fn defaults_for(model: &ModelParams) -> Result<Self, ConfigError> {
        let config = ConfigFile::parse(
            DEFAULT_CONTROLLER_CONFIG,
            std::path::Path::new("<simulator defaults>"),
        )?
        .validate()?;
        let mut pool = config
            .pools
            .into_iter()
            .next()
            .ok_or_else(|| ConfigError::Invalid {
                field: "pool".into(),
                problem: "has no entries".into(),
                fix: "give the simulator's default config one [[pool]]".into(),
            })?;
        pool.policy.tasks_per_instance = model.tasks_per_instance;
        pool.policy.slots_per_task = model.slots_per_task;
        pool.policy.max_instances = model.max_instances;
        pool.policy.max_tasks = model.max_instances * model.tasks_per_instance;
        Ok(Self {
            pool,
            cloudwatch_interval: config.cloudwatch_interval,
            max_backoff: config.max_backoff,
        })
    }
}

/// Builds the autoscaler for a modelled `kind`; `None` for geobatch, which runs its own
/// loop ([`control_loop`]).
pub fn autoscaler_for(
    kind: PolicyKind,
    config: &SimConfig,
    scenario: &Scenario,
) -> Option<Box<dyn Autoscaler>> {
    match kind {
        PolicyKind::Geobatch => None,
        PolicyKind::ClassicAlarms => {
            Some(Box::new(ClassicAlarms::new(config.classic_alarms.clone())))
        }
        PolicyKind::TargetTracking => Some(Box::new(TargetTracking::new(
            config.target_tracking.clone(),
            mean_processing_secs(scenario),
            config.model.full_speed_files_per_instance(),
        ))),
        PolicyKind::Keda => Some(Box::new(Keda::new(config.keda.clone()))),
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
    match autoscaler_for(kind, config, scenario) {
        Some(mut policy) => world::run(scenario, &config.model, policy.as_mut(), seed),
        None => control_loop::run(scenario, &config.model, geobatch, seed),
    }
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
        let settings = GeobatchSettings::defaults_for(&ModelParams::default()).expect("valid");
        let policy = crate::policy::PoolPolicy::default();
        assert_eq!(settings.pool.policy, policy);
        let model = ModelParams::default();
        assert_eq!(
            (model.tasks_per_instance, model.slots_per_task),
            (policy.tasks_per_instance, policy.slots_per_task),
            "the simulated worker fleet is the deployed one"
        );
        assert_eq!(settings.pool.poll_interval, Duration::from_secs(5));
    }
}
