//! Turns run outcomes into the summary rows, checks the targets, and writes
//! `summary.json` and `summary.md`.

use std::fmt::Write as _;

use serde::Serialize;

use super::scenario::Scenario;
use super::world::RunOutcome;

/// One row per policy and scenario.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SummaryRow {
    /// Scenario name.
    pub scenario: String,
    /// Policy name.
    pub policy: String,
    /// Files uploaded.
    pub files: usize,
    /// Files whose result was written.
    pub completed: usize,
    /// Messages that ended in the DLQ.
    pub dead_lettered: usize,
    /// Median upload-to-result latency.
    pub latency_p50_secs: f64,
    /// 95th percentile latency.
    pub latency_p95_secs: f64,
    /// Worst latency.
    pub latency_max_secs: f64,
    /// First upload to last result.
    pub makespan_secs: f64,
    /// Billed instance-hours over the accounting window.
    pub instance_hours: f64,
    /// `instance_hours` times the instance price.
    pub cost_usd: f64,
    /// Instance-hours during which the instance processed nothing.
    pub idle_instance_hours: f64,
    /// Workers stopped or killed in the middle of a file.
    pub interrupted_tasks: u32,
    /// Processing hours thrown away by those interruptions.
    pub work_redone_hours: f64,
    /// Changes of desired capacity.
    pub scaling_actions: u32,
    /// Instances launched.
    pub instances_launched: u32,
    /// Length of the accounting window.
    pub window_hours: f64,
    /// 95th percentile of the files' processing time alone: no policy's p95 latency can
    /// be lower, so a latency bound below it cannot be met by any autoscaler.
    pub processing_p95_secs: f64,
}

/// Nearest-rank percentile of sorted values, in seconds.
fn percentile_secs(sorted_ms: &[u64], p: f64) -> f64 {
    if sorted_ms.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * sorted_ms.len() as f64).ceil().max(1.0) as usize;
    sorted_ms[rank.min(sorted_ms.len()) - 1] as f64 / 1000.0
}

const HOUR_MS: f64 = 3_600_000.0;

impl SummaryRow {
    /// The row for one run.
    pub fn new(
        scenario: &Scenario,
        policy: &str,
        outcome: &RunOutcome,
        price_per_hour: f64,
    ) -> Self {
        let mut processing: Vec<u64> = scenario.files.iter().map(|f| f.processing_ms).collect();
        processing.sort_unstable();
        let mut latencies = outcome.latencies_ms.clone();
        latencies.sort_unstable();
        let instance_hours = outcome.billed_instance_ms as f64 / HOUR_MS;
        Self {
            scenario: scenario.name.clone(),
            policy: policy.to_string(),
            files: outcome.total,
            completed: outcome.completed,
            dead_lettered: outcome.dead_lettered,
            latency_p50_secs: percentile_secs(&latencies, 50.0),
            latency_p95_secs: percentile_secs(&latencies, 95.0),
            latency_max_secs: latencies.last().map_or(0.0, |&l| l as f64 / 1000.0),
            makespan_secs: outcome.makespan_ms as f64 / 1000.0,
            instance_hours,
            cost_usd: instance_hours * price_per_hour,
            idle_instance_hours: outcome.idle_instance_ms as f64 / HOUR_MS,
            interrupted_tasks: outcome.interrupted_tasks,
            work_redone_hours: outcome.work_redone_ms as f64 / HOUR_MS,
            scaling_actions: outcome.scaling_actions,
            instances_launched: outcome.instances_launched,
            window_hours: outcome.end_ms as f64 / HOUR_MS,
            processing_p95_secs: percentile_secs(&processing, 95.0),
        }
    }
}

/// One of the targets for one scenario.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TargetCheck {
    /// Scenario name.
    pub scenario: String,
    /// What is compared, in words.
    pub target: String,
    /// geobatch's value.
    pub geobatch: f64,
    /// The bound it must stay within.
    pub bound: f64,
    /// Whether it does.
    pub met: bool,
    /// Why a miss is beyond any policy, when it is (empty otherwise).
    pub note: String,
}

/// Checks the targets for every scenario that has the policies they compare.
pub fn check_targets(rows: &[SummaryRow]) -> Vec<TargetCheck> {
    let mut scenarios: Vec<&str> = rows.iter().map(|r| r.scenario.as_str()).collect();
    scenarios.dedup();
    let mut checks = Vec::new();
    for scenario in scenarios {
        let find = |p: &str| {
            rows.iter()
                .find(|r| r.scenario == scenario && r.policy == p)
        };
        let Some(gb) = find("geobatch") else { continue };
        let floor = gb.processing_p95_secs;
        let mut check = |target: &str, value: f64, bound: f64| {
            let met = value <= bound + 1e-9;
            let note = if !met && target.starts_with("p95") && bound < floor {
                format!("bound is below the p95 of processing time alone ({floor:.0} s)")
            } else {
                String::new()
            };
            checks.push(TargetCheck {
                scenario: scenario.to_string(),
                target: target.to_string(),
                geobatch: value,
                bound,
                met,
                note,
            });
        };
        check(
            "interrupted tasks = 0",
            f64::from(gb.interrupted_tasks),
            0.0,
        );
        if let Some(classic) = find("classic-alarms") {
            check(
                "p95 latency <= classic-alarms p95 / 3 (s)",
                gb.latency_p95_secs,
                classic.latency_p95_secs / 3.0,
            );
            check(
                "instance-hours <= classic-alarms",
                gb.instance_hours,
                classic.instance_hours,
            );
        }
        if let Some(keda) = find("keda") {
            check(
                "p95 latency <= keda (s)",
                gb.latency_p95_secs,
                keda.latency_p95_secs,
            );
            check("cost <= keda (USD)", gb.cost_usd, keda.cost_usd);
        }
    }
    checks
}

/// The machine-readable summary.
#[derive(Debug, Clone, Serialize)]
pub struct Summary<'a, C: Serialize> {
    /// The seed of every run.
    pub seed: u64,
    /// The parameters of the world and the baselines.
    pub config: &'a C,
    /// The geobatch pool policy, as `Debug` text (the controller's type is not
    /// serializable).
    pub geobatch_policy: String,
    /// One row per policy and scenario.
    pub rows: &'a [SummaryRow],
    /// The targets.
    pub targets: &'a [TargetCheck],
}

/// `summary.md`: the table, then the targets.
pub fn markdown(seed: u64, rows: &[SummaryRow], targets: &[TargetCheck]) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "# Simulation summary (seed {seed})\n");
    out.push_str(
        "| scenario | policy | files | done | DLQ | p50 s | p95 s | max s | makespan s | instance-h | cost USD | idle instance-h | interrupted | redone h | scaling actions |\n",
    );
    out.push_str("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n");
    for r in rows {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {:.0} | {:.0} | {:.0} | {:.0} | {:.2} | {:.2} | {:.2} | {} | {:.2} | {} |",
            r.scenario,
            r.policy,
            r.files,
            r.completed,
            r.dead_lettered,
            r.latency_p50_secs,
            r.latency_p95_secs,
            r.latency_max_secs,
            r.makespan_secs,
            r.instance_hours,
            r.cost_usd,
            r.idle_instance_hours,
            r.interrupted_tasks,
            r.work_redone_hours,
            r.scaling_actions
        );
    }
    let mut floors: Vec<(&str, f64)> = rows
        .iter()
        .map(|r| (r.scenario.as_str(), r.processing_p95_secs))
        .collect();
    floors.dedup_by(|a, b| a.0 == b.0);
    out.push_str("\np95 of processing time alone (the floor under any policy's p95 latency): ");
    let floors: Vec<String> = floors
        .iter()
        .map(|(s, f)| format!("{s} {f:.0} s"))
        .collect();
    out.push_str(&floors.join(", "));
    out.push('\n');
    if !targets.is_empty() {
        out.push_str("\n## Targets (issue 5)\n\n| scenario | target | geobatch | bound | met | note |\n|---|---|---:|---:|---|---|\n");
        for t in targets {
            let _ = writeln!(
                out,
                "| {} | {} | {:.2} | {:.2} | {} | {} |",
                t.scenario,
                t.target,
                t.geobatch,
                t.bound,
                if t.met { "yes" } else { "**no**" },
                t.note
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(policy: &str, p95: f64, hours: f64, interrupted: u32) -> SummaryRow {
        SummaryRow {
            scenario: "s".into(),
            policy: policy.into(),
            files: 1,
            completed: 1,
            dead_lettered: 0,
            latency_p50_secs: 0.0,
            latency_p95_secs: p95,
            latency_max_secs: p95,
            makespan_secs: 0.0,
            instance_hours: hours,
            cost_usd: hours * 0.17,
            idle_instance_hours: 0.0,
            interrupted_tasks: interrupted,
            work_redone_hours: 0.0,
            scaling_actions: 0,
            instances_launched: 0,
            window_hours: 0.0,
            processing_p95_secs: 25.0,
        }
    }

    #[test]
    fn nearest_rank_percentiles() {
        let v: Vec<u64> = (1..=100).map(|s| s * 1000).collect();
        assert_eq!(percentile_secs(&v, 50.0), 50.0);
        assert_eq!(percentile_secs(&v, 95.0), 95.0);
        assert_eq!(percentile_secs(&[7000], 95.0), 7.0);
        assert_eq!(percentile_secs(&[], 95.0), 0.0);
    }

    #[test]
    fn targets_pass_and_fail_on_the_numbers() {
        let rows = vec![
            row("geobatch", 30.0, 2.0, 0),
            row("classic-alarms", 90.0, 3.0, 4),
            row("keda", 20.0, 2.5, 1),
        ];
        let checks = check_targets(&rows);
        let met: Vec<(String, bool)> = checks.iter().map(|c| (c.target.clone(), c.met)).collect();
        assert_eq!(checks.len(), 5);
        assert!(
            met.iter()
                .filter(|(t, _)| t.starts_with("p95 latency <= classic"))
                .all(|(_, m)| *m)
        );
        assert!(
            !met.iter()
                .find(|(t, _)| t.starts_with("p95 latency <= keda"))
                .map(|(_, m)| *m)
                .unwrap_or(true)
        );
        let md = markdown(1, &rows, &checks);
        assert!(md.contains("| s | geobatch | 1 |"), "{md}");
        assert!(md.contains("**no**"), "{md}");
        // geobatch's 30 s misses keda's 20 s, a bound below the 25 s processing floor.
        let keda = checks
            .iter()
            .find(|c| c.target.starts_with("p95 latency <= keda"));
        assert!(keda.is_some_and(|c| c.note.contains("25 s")), "{checks:?}");
    }
}
