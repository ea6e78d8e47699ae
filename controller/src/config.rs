//! The controller's configuration file: its TOML form, its defaults, and the checks that
//! turn it into validated [`Pool`]s.
//!
//! The file is read once at start. Every field has a unit in its name where it has one and
//! a documented default; unknown fields are rejected so a typo cannot silently fall back to
//! a default. A validation error names the field (`pool "geo".max_tasks`) and how to fix it.
//! The annotated example is `controller/examples/controller.toml`; the reference is
//! `docs/controller.md`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::policy::{DEFAULT_TARGET_P95_SECS, PoolPolicy, SizingTarget};

/// The file as written, with defaults filled in. Serializing it gives the effective config
/// that `check-config` prints.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    /// Longest wait between polls of a pool while AWS calls fail; the wait doubles from the
    /// poll interval on each failed poll and resets on the first good one.
    #[serde(default = "default_max_backoff_secs")]
    pub max_backoff_secs: f64,
    /// Time limit for one AWS API call, including the SDK's own retries, so an endpoint
    /// that hangs cannot stall the loop.
    #[serde(default = "default_api_timeout_secs")]
    pub api_timeout_secs: f64,
    /// How often CloudWatch is asked for the queue's SQS metrics. They have 1-minute
    /// periods, so asking more often only costs `GetMetricData` requests.
    #[serde(default = "default_cloudwatch_interval_secs")]
    pub cloudwatch_interval_secs: f64,
    /// One entry per queue and the worker fleet that drains it.
    #[serde(default, rename = "pool")]
    pub pools: Vec<PoolFile>,
}

/// One `[[pool]]` table.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PoolFile {
    /// Names the pool in logs, metrics and `decide` output.
    pub name: String,
    /// The SQS queue the workers consume (the URL, as `aws sqs get-queue-url` prints it).
    pub queue_url: String,
    /// The ECS cluster that runs the worker service.
    pub cluster: String,
    /// The ECS service whose desired count the controller sets.
    pub service: String,
    /// The Auto Scaling Group whose instances host the service's tasks.
    pub auto_scaling_group: String,
    /// How many worker tasks fit on one instance.
    #[serde(default = "default_tasks_per_instance")]
    pub tasks_per_instance: u32,
    /// Files one worker task analyses at once: the worker's `--concurrency`
    /// (`GEOBATCH_CONCURRENCY`, the stack's `WorkerConcurrency`).
    #[serde(default = "default_slots_per_task")]
    pub slots_per_task: u32,
    /// Fewest tasks; 0 lets the pool scale to zero.
    #[serde(default)]
    pub min_tasks: u32,
    /// Most tasks: the pool's cost ceiling.
    #[serde(default = "default_max_tasks")]
    pub max_tasks: u32,
    /// Fewest instances. Keep the ASG's own MinSize at or below it.
    #[serde(default)]
    pub min_instances: u32,
    /// Most instances. Keep the ASG's own MaxSize at or above it.
    #[serde(default = "default_max_instances")]
    pub max_instances: u32,
    /// The operator's main knob: the 95th percentile of upload-to-result time the pool is
    /// sized for. The default sizing; the policy learns time per message and arrival rate.
    /// Default 45 when neither fixed form below is used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_p95_secs: Option<f64>,
    /// From asking for a new instance to its worker tasks polling (instance boot plus task
    /// start): how late new capacity arrives and what a cold start costs.
    #[serde(default = "default_cold_start_secs")]
    pub cold_start_secs: f64,
    /// A fixed form instead of the target: outstanding (visible plus in-flight) messages
    /// one task is sized for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub messages_per_task: Option<u32>,
    /// The latency form of the target, with `secs_per_message`: a task is sized for
    /// `floor(acceptable_latency_secs / secs_per_message)` messages.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acceptable_latency_secs: Option<f64>,
    /// Seconds one task needs for one message, for the latency form.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secs_per_message: Option<f64>,
    /// Scale-in goes no lower than the highest recommendation of this many seconds.
    #[serde(default = "default_scale_in_stabilization_secs")]
    pub scale_in_stabilization_secs: f64,
    /// The queue must be completely empty this long before tasks go to zero (fixed forms,
    /// default 300); with the target, the longest such hold (default 840), the derived
    /// break-even being used when shorter.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idle_window_secs: Option<f64>,
    /// Whether scaling to zero while tasks run also needs CloudWatch's latest period to show
    /// `NumberOfEmptyReceives` > 0. Turn off only where CloudWatch has no SQS metrics (a
    /// local emulator).
    #[serde(default = "default_require_empty_receives")]
    pub require_empty_receives: bool,
    /// Seconds between polls of this pool.
    #[serde(default = "default_poll_interval_secs")]
    pub poll_interval_secs: f64,
    /// Whether the controller sizes the group's warm pool (`PutWarmPool`) from the learned
    /// arrival rate and the cold start (`controller::warm_pool`); the group must already
    /// have one (the stack's `WarmPool=on`). Off: the warm pool keeps the stack's sizes.
    #[serde(default)]
    pub manage_warm_pool: bool,
}

const fn default_max_backoff_secs() -> f64 {
    60.0
}
const fn default_api_timeout_secs() -> f64 {
    10.0
}
const fn default_cloudwatch_interval_secs() -> f64 {
    60.0
}
// The pool defaults are the policy's own (`PoolPolicy::default`), so the file, the policy
// and the simulator cannot disagree about them.
fn default_tasks_per_instance() -> u32 {
    PoolPolicy::default().tasks_per_instance
}
fn default_slots_per_task() -> u32 {
    PoolPolicy::default().slots_per_task
}
fn default_max_tasks() -> u32 {
    PoolPolicy::default().max_tasks
}
fn default_max_instances() -> u32 {
    PoolPolicy::default().max_instances
}
fn default_target_p95_secs() -> f64 {
    match PoolPolicy::default().target {
        SizingTarget::P95 { target } => target.as_secs_f64(),
        SizingTarget::MessagesPerTask(_) | SizingTarget::Latency { .. } => {
            DEFAULT_TARGET_P95_SECS as f64
        }
    }
}
fn default_cold_start_secs() -> f64 {
    PoolPolicy::default().cold_start.as_secs_f64()
}
fn default_scale_in_stabilization_secs() -> f64 {
    PoolPolicy::default().scale_in_stabilization.as_secs_f64()
}
/// The idle window: with the target the longest hold, with a fixed form the hold itself.
fn default_idle_window_secs(target: &SizingTarget) -> f64 {
    match target {
        SizingTarget::P95 { .. } => PoolPolicy::default().idle_window.as_secs_f64(),
        SizingTarget::MessagesPerTask(_) | SizingTarget::Latency { .. } => FIXED_IDLE_WINDOW_SECS,
    }
}
/// The idle window of the fixed sizing forms.
const FIXED_IDLE_WINDOW_SECS: f64 = 300.0;
fn default_require_empty_receives() -> bool {
    PoolPolicy::default().require_empty_receives
}
const fn default_poll_interval_secs() -> f64 {
    5.0
}

/// The validated configuration the controller runs with.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// Longest wait between polls while AWS calls fail.
    pub max_backoff: Duration,
    /// Time limit for one AWS API call.
    pub api_timeout: Duration,
    /// How often CloudWatch is read.
    pub cloudwatch_interval: Duration,
    /// The pools, in file order.
    pub pools: Vec<Pool>,
}

/// One validated pool: where its resources are and how the policy sizes it.
#[derive(Debug, Clone, PartialEq)]
pub struct Pool {
    /// Names the pool in logs and metrics.
    pub name: String,
    /// The SQS queue URL.
    pub queue_url: String,
    /// The queue's name, the `QueueName` dimension of its CloudWatch metrics.
    pub queue_name: String,
    /// The ECS cluster.
    pub cluster: String,
    /// The ECS service.
    pub service: String,
    /// The Auto Scaling Group.
    pub auto_scaling_group: String,
    /// Time between polls.
    pub poll_interval: Duration,
    /// What the policy needs.
    pub policy: PoolPolicy,
    /// Whether the controller sizes the group's warm pool ([`crate::warm_pool`]).
    pub manage_warm_pool: bool,
}

/// Why a configuration file was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {cause}")]
    Read {
        /// The file.
        path: PathBuf,
        /// What the OS said. Part of the message rather than an error source, so that a
        /// printed error chain says it once.
        cause: std::io::Error,
    },
    /// The file is not valid TOML or has a field of the wrong type or an unknown field.
    #[error("config file {path} is not valid: {cause}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The parser's message, which names the line and field; part of the message rather
        /// than an error source, so that a printed error chain says it once.
        cause: Box<toml::de::Error>,
    },
    /// A field has a value the controller cannot run with.
    #[error("config field `{field}` {problem}; fix: {fix}")]
    Invalid {
        /// The field, e.g. `pool "geo".max_tasks`.
        field: String,
        /// What is wrong with it.
        problem: String,
        /// What to change.
        fix: String,
    },
}

impl ConfigFile {
    /// Parses TOML text; `path` only names the source in errors.
    pub fn parse(text: &str, path: &Path) -> Result<ConfigFile, ConfigError> {
        toml::from_str(text).map_err(|cause| ConfigError::Parse {
            path: path.to_owned(),
            cause: Box::new(cause),
        })
    }

    /// Reads and parses a file.
    pub fn read(path: &Path) -> Result<ConfigFile, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|cause| ConfigError::Read {
            path: path.to_owned(),
            cause,
        })?;
        ConfigFile::parse(&text, path)
    }

    /// The file with every default written out, as `check-config` prints it.
    pub fn effective(&self) -> ConfigFile {
        let mut effective = self.clone();
        for pool in &mut effective.pools {
            let fixed = pool.messages_per_task.is_some()
                || pool.acceptable_latency_secs.is_some()
                || pool.secs_per_message.is_some();
            if !fixed {
                pool.target_p95_secs
                    .get_or_insert(default_target_p95_secs());
            }
            let idle = if fixed {
                FIXED_IDLE_WINDOW_SECS
            } else {
                PoolPolicy::default().idle_window.as_secs_f64()
            };
            pool.idle_window_secs.get_or_insert(idle);
        }
        effective
    }

    /// Checks every field and builds the configuration the controller runs with.
    pub fn validate(&self) -> Result<Config, ConfigError> {
        if self.pools.is_empty() {
            return Err(invalid(
                "pool",
                "has no entries",
                "add one [[pool]] table per queue and worker fleet (see \
                 controller/examples/controller.toml)",
            ));
        }
        let max_backoff = seconds("max_backoff_secs", self.max_backoff_secs, 0.001)?;
        let api_timeout = seconds("api_timeout_secs", self.api_timeout_secs, 0.001)?;
        let cloudwatch_interval = seconds(
            "cloudwatch_interval_secs",
            self.cloudwatch_interval_secs,
            0.001,
        )?;
        let mut pools = Vec::with_capacity(self.pools.len());
        for (index, pool) in self.pools.iter().enumerate() {
            let validated = pool.validate(index)?;
            if pools.iter().any(|p: &Pool| p.name == validated.name) {
                return Err(invalid(
                    &format!("pool[{index}].name"),
                    &format!("repeats the pool name {:?}", validated.name),
                    "give every [[pool]] a different name",
                ));
            }
            pools.push(validated);
        }
        Ok(Config {
            max_backoff,
            api_timeout,
            cloudwatch_interval,
            pools,
        })
    }
}

impl Config {
    /// Reads, parses and validates a file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        ConfigFile::read(path)?.validate()
    }
}

impl PoolFile {
    fn validate(&self, index: usize) -> Result<Pool, ConfigError> {
        let label = if self.name.trim().is_empty() {
            return Err(invalid(
                &format!("pool[{index}].name"),
                "is empty",
                "name the pool, e.g. name = \"geojson\"",
            ));
        } else {
            format!("pool {:?}", self.name)
        };
        let field = |name: &str| format!("{label}.{name}");

        let queue_name = queue_name(&self.queue_url).ok_or_else(|| {
            invalid(
                &field("queue_url"),
                &format!("is {:?}, not an SQS queue URL", self.queue_url),
                "use the URL that `aws sqs get-queue-url --queue-name NAME` prints, e.g. \
                 https://sqs.us-east-1.amazonaws.com/123456789012/NAME",
            )
        })?;
        for (name, value) in [
            ("cluster", &self.cluster),
            ("service", &self.service),
            ("auto_scaling_group", &self.auto_scaling_group),
        ] {
            if value.trim().is_empty() {
                return Err(invalid(
                    &field(name),
                    "is empty",
                    "set it to the resource's name",
                ));
            }
        }
        if self.tasks_per_instance == 0 {
            return Err(invalid(
                &field("tasks_per_instance"),
                "is 0",
                "set how many worker tasks fit on one instance (at least 1)",
            ));
        }
        if self.slots_per_task == 0 {
            return Err(invalid(
                &field("slots_per_task"),
                "is 0",
                "set the worker's --concurrency (GEOBATCH_CONCURRENCY, the stack's \
                 WorkerConcurrency): files one task analyses at once, at least 1",
            ));
        }
        if self.max_tasks == 0 {
            return Err(invalid(
                &field("max_tasks"),
                "is 0, so no message could ever be processed",
                "set max_tasks to at least 1",
            ));
        }
        if self.min_tasks > self.max_tasks {
            return Err(invalid(
                &field("min_tasks"),
                &format!(
                    "({}) is above max_tasks ({})",
                    self.min_tasks, self.max_tasks
                ),
                "lower min_tasks or raise max_tasks",
            ));
        }
        if self.max_instances == 0 {
            return Err(invalid(
                &field("max_instances"),
                "is 0, so no task could ever be placed",
                "set max_instances to at least 1",
            ));
        }
        if self.min_instances > self.max_instances {
            return Err(invalid(
                &field("min_instances"),
                &format!(
                    "({}) is above max_instances ({})",
                    self.min_instances, self.max_instances
                ),
                "lower min_instances or raise max_instances",
            ));
        }
        let capacity = u64::from(self.max_instances) * u64::from(self.tasks_per_instance);
        if u64::from(self.max_tasks) > capacity {
            return Err(invalid(
                &field("max_tasks"),
                &format!(
                    "({}) is more than max_instances × tasks_per_instance ({} × {} = {capacity}) \
                     can hold",
                    self.max_tasks, self.max_instances, self.tasks_per_instance
                ),
                &format!(
                    "raise max_instances to {} or lower max_tasks to {capacity}",
                    self.max_tasks.div_ceil(self.tasks_per_instance)
                ),
            ));
        }
        let target = self.target(&field)?;
        let poll_interval = seconds(&field("poll_interval_secs"), self.poll_interval_secs, 0.05)?;
        let scale_in_stabilization = seconds(
            &field("scale_in_stabilization_secs"),
            self.scale_in_stabilization_secs,
            0.0,
        )?;
        let idle_window = seconds(
            &field("idle_window_secs"),
            self.idle_window_secs
                .unwrap_or_else(|| default_idle_window_secs(&target)),
            0.0,
        )?;
        let cold_start = seconds(&field("cold_start_secs"), self.cold_start_secs, 0.0)?;
        Ok(Pool {
            name: self.name.clone(),
            queue_url: self.queue_url.clone(),
            queue_name,
            cluster: self.cluster.clone(),
            service: self.service.clone(),
            auto_scaling_group: self.auto_scaling_group.clone(),
            poll_interval,
            manage_warm_pool: self.manage_warm_pool,
            policy: PoolPolicy {
                target,
                min_tasks: self.min_tasks,
                max_tasks: self.max_tasks,
                min_instances: self.min_instances,
                max_instances: self.max_instances,
                tasks_per_instance: self.tasks_per_instance,
                slots_per_task: self.slots_per_task,
                scale_in_stabilization,
                idle_window,
                cold_start,
                require_empty_receives: self.require_empty_receives,
            },
        })
    }

    fn target(&self, field: &dyn Fn(&str) -> String) -> Result<SizingTarget, ConfigError> {
        let fixed = self.messages_per_task.is_some()
            || self.acceptable_latency_secs.is_some()
            || self.secs_per_message.is_some();
        if let Some(target) = self.target_p95_secs {
            if fixed {
                return Err(invalid(
                    &field("target_p95_secs"),
                    "is set together with a fixed sizing form (messages_per_task, or \
                     acceptable_latency_secs and secs_per_message)",
                    "keep target_p95_secs (the default sizing, recommended) or the fixed form, \
                     not both",
                ));
            }
            return Ok(SizingTarget::P95 {
                target: seconds(&field("target_p95_secs"), target, 1.0)?,
            });
        }
        match (
            self.messages_per_task,
            self.acceptable_latency_secs,
            self.secs_per_message,
        ) {
            (Some(_), Some(_), _) | (Some(_), _, Some(_)) => Err(invalid(
                &field("messages_per_task"),
                "is set together with the latency form (acceptable_latency_secs, \
                 secs_per_message)",
                "keep either messages_per_task or the two latency fields, not both",
            )),
            (Some(0), None, None) => Err(invalid(
                &field("messages_per_task"),
                "is 0",
                "set at least 1 message per task",
            )),
            (Some(n), None, None) => Ok(SizingTarget::MessagesPerTask(n)),
            (None, None, None) => Ok(PoolPolicy::default().target),
            (None, Some(_), None) => Err(invalid(
                &field("secs_per_message"),
                "is missing while acceptable_latency_secs is set",
                "add secs_per_message, the seconds one task needs for one message",
            )),
            (None, None, Some(_)) => Err(invalid(
                &field("acceptable_latency_secs"),
                "is missing while secs_per_message is set",
                "add acceptable_latency_secs, how long a message may wait to be done",
            )),
            (None, Some(latency), Some(per_message)) => Ok(SizingTarget::Latency {
                acceptable_latency: seconds(&field("acceptable_latency_secs"), latency, 0.001)?,
                processing_time_per_message: seconds(
                    &field("secs_per_message"),
                    per_message,
                    0.001,
                )?,
            }),
        }
    }
}

/// The queue name from a queue URL (`https://host/ACCOUNT/NAME`).
fn queue_name(url: &str) -> Option<String> {
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))?;
    let mut parts = rest.trim_end_matches('/').split('/');
    let _host = parts.next().filter(|h| !h.is_empty())?;
    let _account = parts.next().filter(|a| !a.is_empty())?;
    let name = parts.next().filter(|n| !n.is_empty())?;
    if parts.next().is_some() {
        return None;
    }
    Some(name.to_owned())
}

fn seconds(field: &str, value: f64, min: f64) -> Result<Duration, ConfigError> {
    if !value.is_finite() || value < min {
        return Err(invalid(
            field,
            &format!("is {value}"),
            &format!("use a number of seconds of at least {min}"),
        ));
    }
    Duration::try_from_secs_f64(value).map_err(|_| {
        invalid(
            field,
            &format!("is {value}, too large"),
            "use a realistic number of seconds",
        )
    })
}

fn invalid(field: &str, problem: &str, fix: &str) -> ConfigError {
    ConfigError::Invalid {
        field: field.to_owned(),
        problem: problem.to_owned(),
        fix: fix.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
[[pool]]
name = "geo"
queue_url = "https://sqs.us-east-1.amazonaws.com/123456789012/uploads"
cluster = "geobatch"
service = "worker"
auto_scaling_group = "workers"
"#;

    fn load(text: &str) -> Result<Config, ConfigError> {
        ConfigFile::parse(text, Path::new("test.toml"))?.validate()
    }

    fn error_of(text: &str) -> String {
        match load(text) {
            Ok(config) => panic!("accepted: {config:?}"),
            Err(err) => err.to_string(),
        }
    }

    #[test]
    fn minimal_pool_gets_the_documented_defaults() {
        let config = load(MINIMAL).expect("valid");
        assert_eq!(config.max_backoff, Duration::from_secs(60));
        assert_eq!(config.cloudwatch_interval, Duration::from_secs(60));
        let pool = &config.pools[0];
        assert_eq!(pool.queue_name, "uploads");
        assert_eq!(pool.poll_interval, Duration::from_secs(5));
        assert_eq!(pool.policy, PoolPolicy::default());
    }

    #[test]
    fn effective_config_writes_out_defaults_and_parses_back() {
        let file = ConfigFile::parse(MINIMAL, Path::new("t")).expect("valid");
        let printed = toml::to_string(&file.effective()).expect("serializes");
        for line in [
            "target_p95_secs = 45.0",
            "cold_start_secs = 105.0",
            "idle_window_secs = 840.0",
            "slots_per_task = 2",
            "tasks_per_instance = 2",
        ] {
            assert!(printed.contains(line), "missing {line}: {printed}");
        }
        let again = ConfigFile::parse(&printed, Path::new("t")).expect("parses back");
        assert_eq!(
            again.validate().expect("valid"),
            file.validate().expect("valid")
        );
    }

    #[test]
    fn latency_form_and_sub_second_windows() {
        let text = format!(
            "{MINIMAL}acceptable_latency_secs = 300\nsecs_per_message = 40\n\
             poll_interval_secs = 0.2\nidle_window_secs = 0.5\nscale_in_stabilization_secs = 1\n"
        );
        let pool = load(&text).expect("valid").pools.remove(0);
        assert_eq!(pool.policy.target.messages_per_task(), Some(7));
        assert_eq!(pool.poll_interval, Duration::from_millis(200));
        assert_eq!(pool.policy.idle_window, Duration::from_millis(500));
    }

    #[test]
    fn unknown_field_is_refused_with_its_name() {
        let err = error_of(&format!("{MINIMAL}max_task = 3\n"));
        assert!(err.contains("max_task"), "{err}");
    }

    #[test]
    fn errors_name_the_field_and_the_fix() {
        let cases = [
            ("max_tasks = 0", "pool \"geo\".max_tasks", "at least 1"),
            (
                "min_tasks = 5\nmax_tasks = 2",
                "pool \"geo\".min_tasks",
                "lower min_tasks",
            ),
            (
                "max_tasks = 30\nmax_instances = 10\ntasks_per_instance = 2",
                "pool \"geo\".max_tasks",
                "raise max_instances to 15",
            ),
            ("tasks_per_instance = 0", "tasks_per_instance", "at least 1"),
            ("slots_per_task = 0", "slots_per_task", "--concurrency"),
            ("messages_per_task = 0", "messages_per_task", "at least 1"),
            (
                "target_p95_secs = 60\nmessages_per_task = 4",
                "target_p95_secs",
                "not both",
            ),
            ("target_p95_secs = 0.5", "target_p95_secs", "at least 1"),
            ("cold_start_secs = -5", "cold_start_secs", "at least 0"),
            (
                "messages_per_task = 3\nsecs_per_message = 4",
                "messages_per_task",
                "not both",
            ),
            (
                "acceptable_latency_secs = 60",
                "secs_per_message",
                "add secs_per_message",
            ),
            (
                "poll_interval_secs = 0",
                "poll_interval_secs",
                "at least 0.05",
            ),
            ("idle_window_secs = -1", "idle_window_secs", "at least 0"),
            (
                "min_instances = 4\nmax_instances = 2",
                "min_instances",
                "raise max_instances",
            ),
        ];
        for (extra, field, fix) in cases {
            let err = error_of(&format!("{MINIMAL}{extra}\n"));
            assert!(err.contains(field), "{extra}: {err}");
            assert!(err.contains(fix), "{extra}: {err}");
        }
    }

    #[test]
    fn bad_queue_url_and_duplicate_names_are_refused() {
        let err = error_of(&MINIMAL.replace(
            "https://sqs.us-east-1.amazonaws.com/123456789012/uploads",
            "uploads",
        ));
        assert!(
            err.contains("queue_url") && err.contains("get-queue-url"),
            "{err}"
        );
        let err = error_of(&format!("{MINIMAL}{MINIMAL}"));
        assert!(
            err.contains("pool[1].name") && err.contains("different name"),
            "{err}"
        );
        let err = error_of("max_backoff_secs = 5\n");
        assert!(err.contains("[[pool]]"), "{err}");
    }

    #[test]
    fn the_annotated_example_is_valid_and_shows_the_defaults() {
        let example = include_str!("../examples/controller.toml");
        let file = ConfigFile::parse(example, Path::new("controller.toml")).expect("parses");
        let config = file.validate().expect("valid");
        let defaults = load(MINIMAL).expect("valid");
        assert_eq!(config.pools[0].policy, defaults.pools[0].policy);
        assert_eq!(
            config.pools[0].poll_interval,
            defaults.pools[0].poll_interval
        );
        assert_eq!(
            (
                config.max_backoff,
                config.api_timeout,
                config.cloudwatch_interval
            ),
            (
                defaults.max_backoff,
                defaults.api_timeout,
                defaults.cloudwatch_interval
            )
        );
    }

    #[test]
    fn queue_names_come_from_urls() {
        assert_eq!(
            queue_name("http://127.0.0.1:5000/123456789012/q-1").as_deref(),
            Some("q-1")
        );
        assert_eq!(queue_name("https://sqs.x/1/q/").as_deref(), Some("q"));
        assert_eq!(queue_name("https://sqs.x/q"), None);
        assert_eq!(queue_name("ftp://sqs.x/1/q"), None);
    }
}
