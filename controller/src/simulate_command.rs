//! `geobatch-controller simulate`: the command-line front end of [`crate::sim`].
//!
//! Loads the scenario(s), the simulator's model and, optionally, the controller's own
//! config (so a user simulates the pool they will deploy), runs every requested policy,
//! and writes `summary.json`, `summary.md` and one SVG plot per scenario.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, bail};

use crate::config::Config;
use crate::sim::lower_bound::lower_bound;
use crate::sim::model::{CapacityPreset, secs};
use crate::sim::plot::{self, PlotRun};
use crate::sim::report::{self, ScenarioBound, Summary, SummaryRow};
use crate::sim::scenario::{self, BUILT_IN};
use crate::sim::{GeobatchSettings, PolicyKind, SimConfig, simulate};

/// Options of `simulate`.
#[derive(Debug, Clone, clap::Args)]
#[command(
    about = "Replay a workload through the controller's policy and the autoscalers it replaces",
    long_about = "Replays a workload through geobatch's own scaling policy (the exact decide() \
                  function the live controller runs) and through the classic CloudWatch alarms, \
                  AWS target tracking and KEDA, in a discrete-event model of S3 events, SQS, ECS \
                  and EC2. Writes OUT/summary.json, OUT/summary.md (latency, makespan, \
                  instance-hours, cost, idle time, interrupted tasks, DLQ, scaling actions), \
                  OUT/<scenario>.svg, and OUT/<scenario>.decisions.jsonl (every \
                  capacity change with the policy's reason). Deterministic for a seed. The model and every \
                  baseline parameter, with sources, are described in docs/scaling.md."
)]
pub struct SimulateArgs {
    /// Built-in scenarios (burst, trickle, diurnal, mixed, sparse, sustained), `all` for
    /// every built-in, or scenario files: CSV `upload_secs,size_mb[,processing_secs]` or
    /// TOML with `[[file]]` tables of the same keys. Several, comma-separated
    /// (`all,uploads.csv`), are run one after the other into the same summary.
    #[arg(long, value_name = "NAME|FILE[,...]")]
    pub scenario: String,
    /// The accounting window in seconds for every scenario, instead of each one's own (a
    /// file's default: its last upload plus an hour); every policy is billed at least
    /// until then.
    #[arg(long, value_name = "SECS")]
    pub horizon_secs: Option<f64>,
    /// geobatch, classic-alarms, target-tracking, keda, or all.
    #[arg(long, default_value = "all", value_name = "POLICY")]
    pub policy: String,
    /// Seed of the workload and of every random choice in the model.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// The controller's config file (as for `run`): geobatch is simulated with that pool's
    /// policy and poll interval, and every policy gets that pool's fleet (tasks per
    /// instance, maximum instances). Without it, the controller's defaults.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// With --config, the pool to simulate (default: the first).
    #[arg(long, value_name = "NAME", requires = "config")]
    pub pool: Option<String>,
    /// The simulator's own settings: TOML with [model], [classic_alarms],
    /// [target_tracking] and [keda] sections; every key is optional (defaults in
    /// docs/scaling.md).
    #[arg(long, value_name = "FILE")]
    pub model: Option<PathBuf>,
    /// How the group buys instances, for every policy: on-demand (the default world),
    /// spot (the stack's default mix: Spot above an On-Demand base of 0) or warm-pool
    /// (On-Demand with a pool of stopped instances). Overrides the same [model] keys.
    #[arg(long, value_enum, value_name = "PRESET")]
    pub capacity: Option<CapacityPreset>,
    /// Output directory (created if missing).
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
}

/// Runs the command; any failed run (including a conservation violation) is an error.
pub fn run(args: SimulateArgs) -> anyhow::Result<()> {
    let mut config = match &args.model {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading the model file {}", path.display()))?;
            toml::from_str::<SimConfig>(&text)
                .with_context(|| format!("in the model file {}", path.display()))?
        }
        None => SimConfig::default(),
    };
    let geobatch = match &args.config {
        Some(path) => {
            let controller = Config::load(path)
                .with_context(|| format!("loading the controller config {}", path.display()))?;
            let pool = match &args.pool {
                Some(name) => controller
                    .pools
                    .iter()
                    .find(|p| &p.name == name)
                    .with_context(|| format!("no pool named {name:?} in {}", path.display()))?,
                None => controller
                    .pools
                    .first()
                    .with_context(|| format!("{} has no [[pool]]", path.display()))?,
            };
            config.model.tasks_per_instance = pool.policy.tasks_per_instance;
            config.model.slots_per_task = pool.policy.slots_per_task;
            config.model.max_instances = pool.policy.max_instances;
            GeobatchSettings {
                pool: pool.clone(),
                cloudwatch_interval: controller.cloudwatch_interval,
                max_backoff: controller.max_backoff,
            }
        }
        None => GeobatchSettings::defaults_for(&config.model)
            .context("the controller's default configuration")?,
    };
    if let Some(preset) = args.capacity {
        preset.apply(&mut config.model);
    }
    config.model.validate().context("invalid simulator model")?;

    let policies: Vec<PolicyKind> = if args.policy == "all" {
        PolicyKind::ALL.to_vec()
    } else {
        match PolicyKind::parse(&args.policy) {
            Some(kind) => vec![kind],
            None => bail!(
                "unknown --policy {:?}: use geobatch, classic-alarms, target-tracking, keda or all",
                args.policy
            ),
        }
    };
    let scenarios = scenario_names(&args.scenario);
    if scenarios.is_empty() {
        bail!("--scenario names no scenario");
    }
    if let Some(h) = args.horizon_secs
        && !(h.is_finite() && h > 0.0)
    {
        bail!("--horizon-secs must be a number of seconds > 0, not {h}");
    }

    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating the output directory {}", args.out.display()))?;
    let mut rows: Vec<SummaryRow> = Vec::new();
    let mut bounds: Vec<ScenarioBound> = Vec::new();
    for name in &scenarios {
        let mut scenario = scenario::load(name, args.seed, &config.model)?;
        if let Some(h) = args.horizon_secs {
            scenario.horizon_ms = secs(h);
        }
        let bound = lower_bound(&scenario, &config.model, args.seed);
        let mut outcomes = Vec::new();
        for &kind in &policies {
            let started = Instant::now();
            let outcome = simulate(&scenario, kind, &config, &geobatch, args.seed)
                .with_context(|| format!("simulating {} with {}", scenario.name, kind.name()))?;
            eprintln!(
                "simulated {} with {} ({} files, {:.1} simulated hours) in {:.0} ms",
                scenario.name,
                kind.name(),
                scenario.files.len(),
                outcome.end_ms as f64 / 3_600_000.0,
                started.elapsed().as_secs_f64() * 1000.0
            );
            let row = SummaryRow::new(&scenario, kind.name(), &outcome, &config.model, &bound);
            outcomes.push((kind, outcome, row.clone()));
            rows.push(row);
        }
        let runs: Vec<PlotRun<'_>> = outcomes
            .iter()
            .map(|(kind, outcome, row)| PlotRun {
                policy: kind.name(),
                caption: format!(
                    "p95 {:.0} s, {:.1} instance-h, {} interrupted",
                    row.latency_p95_secs, row.instance_hours, row.interrupted_tasks
                ),
                samples: &outcome.samples,
            })
            .collect();
        let title = format!("{}: {}", scenario.name, scenario.description);
        let subtitle = format!(
            "seed {}, {} task(s) of {} slot(s) per {}-vCPU instance, at most {} instances, boot {:.0} s, task start {:.0} s",
            args.seed,
            config.model.tasks_per_instance,
            config.model.slots_per_task,
            config.model.vcpus_per_instance,
            config.model.max_instances,
            config.model.instance_boot_secs,
            config.model.task_start_secs
        );
        let stem = file_stem(&scenario.name);
        let mut log = String::new();
        for (kind, outcome, _) in &outcomes {
            for decision in &outcome.decisions {
                let mut line = serde_json::json!({
                    "scenario": scenario.name,
                    "policy": kind.name(),
                    "t_secs": decision.t_secs,
                    "desired_tasks": decision.desired_tasks,
                    "desired_instances": decision.desired_instances,
                    "reason": decision.reason,
                });
                if !decision.calls.is_empty() {
                    line["calls"] = serde_json::json!(decision.calls);
                }
                log.push_str(&line.to_string());
                log.push('\n');
            }
        }
        write(
            &args.out.join(format!("{stem}.decisions.jsonl")),
            log.as_bytes(),
        )?;
        write(
            &args.out.join(format!("{stem}.svg")),
            plot::to_svg(&title, &subtitle, &runs).as_bytes(),
        )?;
        bounds.push(ScenarioBound {
            scenario: scenario.name.clone(),
            bound,
        });
    }
    let targets = report::check_targets(&rows);
    let summary = Summary {
        seed: args.seed,
        config: &config,
        geobatch_policy: format!("{:?}", geobatch),
        rows: &rows,
        lower_bounds: &bounds,
        targets: &targets,
    };
    let json = serde_json::to_string_pretty(&summary).context("serialising the summary")?;
    write(&args.out.join("summary.json"), json.as_bytes())?;
    let md = report::markdown(args.seed, &rows, &targets);
    write(&args.out.join("summary.md"), md.as_bytes())?;
    print!("{md}");
    Ok(())
}

/// The scenarios of `--scenario`: comma-separated names or files, `all` for every built-in.
fn scenario_names(arg: &str) -> Vec<String> {
    let mut names = Vec::new();
    for part in arg.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        if part == "all" {
            names.extend(BUILT_IN.iter().map(|(name, _)| name.to_string()));
        } else {
            names.push(part.to_string());
        }
    }
    names
}

/// A scenario name made safe for a file name.
fn file_stem(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

fn write(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    std::fs::write(path, bytes).with_context(|| format!("writing {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scenarios_are_comma_separated_and_all_is_every_built_in() {
        assert_eq!(scenario_names("burst"), ["burst"]);
        let all = scenario_names("all, my.csv");
        assert_eq!(all.len(), BUILT_IN.len() + 1);
        assert_eq!(all.last().map(String::as_str), Some("my.csv"));
        assert!(scenario_names(" , ").is_empty());
    }
}
