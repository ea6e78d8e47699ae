//! `geobatch-controller simulate`: the command-line front end of [`crate::sim`].
//!
//! Loads the scenario(s), the simulator's model and, optionally, the controller's own
//! config (so a user simulates the pool they will deploy), runs every requested policy,
//! and writes `summary.json`, `summary.md` and one plot per scenario (SVG and PNG).

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, bail};

use crate::config::Config;
use crate::sim::plot::{self, PlotRun};
use crate::sim::report::{self, Summary, SummaryRow};
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
                  OUT/<scenario>.svg and .png, and OUT/<scenario>.decisions.jsonl (every \
                  capacity change with the policy's reason). Deterministic for a seed. The model and every \
                  baseline parameter, with sources, are described in docs/scaling.md."
)]
pub struct SimulateArgs {
    /// A built-in scenario (burst, trickle, diurnal, mixed), `all` for the four, or a
    /// scenario file: CSV `upload_secs,size_mb[,processing_secs]` or TOML with `[[file]]`
    /// tables of the same keys.
    #[arg(long, value_name = "NAME|FILE")]
    pub scenario: String,
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
    let scenarios: Vec<String> = if args.scenario == "all" {
        BUILT_IN.iter().map(|(name, _)| name.to_string()).collect()
    } else {
        vec![args.scenario.clone()]
    };

    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating the output directory {}", args.out.display()))?;
    let mut rows: Vec<SummaryRow> = Vec::new();
    for name in &scenarios {
        let scenario = scenario::load(name, args.seed, &config.model)?;
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
            let row = SummaryRow::new(
                &scenario,
                kind.name(),
                &outcome,
                config.model.instance_price_per_hour,
            );
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
            "seed {}, {} task(s) per instance, at most {} instances, boot {:.0} s, task start {:.0} s",
            args.seed,
            config.model.tasks_per_instance,
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
        let png = plot::to_png(&title, &subtitle, &runs).context("encoding the PNG plot")?;
        write(&args.out.join(format!("{stem}.png")), &png)?;
    }
    let targets = report::check_targets(&rows);
    let summary = Summary {
        seed: args.seed,
        config: &config,
        geobatch_policy: format!("{:?}", geobatch),
        rows: &rows,
        targets: &targets,
    };
    let json = serde_json::to_string_pretty(&summary).context("serialising the summary")?;
    write(&args.out.join("summary.json"), json.as_bytes())?;
    let md = report::markdown(args.seed, &rows, &targets);
    write(&args.out.join("summary.md"), md.as_bytes())?;
    print!("{md}");
    Ok(())
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
