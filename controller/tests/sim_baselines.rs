//! Each baseline shows the behaviour its documentation implies, and geobatch avoids the
//! failure modes, in full simulated runs.

use geobatch_controller::sim::model::ModelParams;
use geobatch_controller::sim::scenario::{FileUpload, Scenario};
use geobatch_controller::sim::world::RunOutcome;
use geobatch_controller::sim::{GeobatchSettings, PolicyKind, SimConfig, simulate};

/// Three files that take 50 minutes each, uploaded with forty 30-second files: once the
/// short ones are done the queue looks drained while the long ones are still in flight.
fn long_and_short() -> Scenario {
    let mut files: Vec<FileUpload> = (0..3)
        .map(|_| FileUpload {
            upload_ms: 0,
            size_mb: 60_000.0,
            processing_ms: 3_000_000,
        })
        .collect();
    files.extend((0..40).map(|_| FileUpload {
        upload_ms: 0,
        size_mb: 500.0,
        processing_ms: 30_000,
    }));
    Scenario {
        name: "long-and-short".into(),
        description: "3 long and 40 short files at once".into(),
        horizon_ms: 3_600_000,
        files,
    }
}

fn run(kind: PolicyKind, scenario: &Scenario, seed: u64) -> RunOutcome {
    let config = SimConfig::default();
    let geobatch =
        GeobatchSettings::defaults_for(&config.model).expect("the controller defaults are valid");
    simulate(scenario, kind, &config, &geobatch, seed).expect("the run balances")
}

fn interrupted_over_seeds(kind: PolicyKind) -> u32 {
    let scenario = long_and_short();
    (1..=8)
        .map(|seed| run(kind, &scenario, seed).interrupted_tasks)
        .sum()
}

#[test]
fn classic_alarms_terminate_busy_instances_on_empty_receives() {
    assert!(interrupted_over_seeds(PolicyKind::ClassicAlarms) > 0);
}

#[test]
fn target_tracking_scales_in_on_visible_backlog_while_files_are_in_flight() {
    assert!(interrupted_over_seeds(PolicyKind::TargetTracking) > 0);
}

#[test]
fn keda_replicaset_scale_down_kills_busy_replicas() {
    assert!(interrupted_over_seeds(PolicyKind::Keda) > 0);
}

#[test]
fn geobatch_never_interrupts_a_busy_worker() {
    assert_eq!(interrupted_over_seeds(PolicyKind::Geobatch), 0);
    let scenario = long_and_short();
    let outcome = run(PolicyKind::Geobatch, &scenario, 1);
    assert_eq!(outcome.work_redone_ms, 0);
    assert_eq!(outcome.completed, scenario.files.len());
}

#[test]
fn classic_alarms_add_one_instance_per_cooldown() {
    let burst = Scenario {
        name: "b".into(),
        description: String::new(),
        horizon_ms: 3_600_000,
        files: (0..500)
            .map(|_| FileUpload {
                upload_ms: 0,
                size_mb: 1.0,
                processing_ms: 60_000,
            })
            .collect(),
    };
    let outcome = run(PolicyKind::ClassicAlarms, &burst, 1);
    // Instance count never rises by more than one within a 300 s cooldown.
    let mut rises: Vec<u64> = Vec::new();
    for pair in outcome.samples.windows(2) {
        if pair[1].instances > pair[0].instances {
            assert_eq!(pair[1].instances, pair[0].instances + 1);
            rises.push(pair[1].t_ms);
        }
    }
    assert!(rises.len() >= 5, "the fleet grows step by step: {rises:?}");
    assert!(
        rises.windows(2).all(|w| w[1] - w[0] >= 300_000),
        "{rises:?}"
    );
    // The first step waits for a full CloudWatch period plus the delivery lag.
    let lag_ms = (ModelParams::default().cloudwatch_lag_secs * 1000.0) as u64;
    assert!(
        rises[0] >= 60_000 + lag_ms,
        "first instance at {} ms",
        rises[0]
    );
}

#[test]
fn target_tracking_keeps_its_minimum_and_waits_three_datapoints() {
    let scenario = long_and_short();
    let outcome = run(PolicyKind::TargetTracking, &scenario, 1);
    let last = outcome.samples.last().expect("samples");
    assert_eq!(
        last.instances, 1,
        "the recipe cannot leave zero, so it keeps one"
    );
    let first_scale_out = outcome
        .samples
        .iter()
        .find(|s| s.instances > 1)
        .expect("scales out")
        .t_ms;
    let lag_ms = (ModelParams::default().cloudwatch_lag_secs * 1000.0) as u64;
    assert!(
        first_scale_out >= 3 * 60_000 + lag_ms,
        "scaled out at {first_scale_out} ms"
    );
}

#[test]
fn keda_scales_to_zero_only_after_its_cooldown() {
    let scenario = Scenario {
        name: "one".into(),
        description: String::new(),
        horizon_ms: 60_000,
        files: vec![FileUpload {
            upload_ms: 0,
            size_mb: 1.0,
            processing_ms: 10_000,
        }],
    };
    let outcome = run(PolicyKind::Keda, &scenario, 1);
    let done = outcome.latencies_ms[0];
    let zero = outcome
        .samples
        .iter()
        .find(|s| s.t_ms > done && s.desired_tasks == 0)
        .expect("scales to zero")
        .t_ms;
    assert!(
        zero >= done + 300_000,
        "done at {done} ms, zero replicas at {zero} ms"
    );
    // The Cluster Autoscaler removes the empty node only after 10 more minutes (`zero` is
    // read off the 30 s sample grid, so it can be up to 30 s late).
    assert!(
        outcome.end_ms + 30_000 >= zero + 600_000,
        "zero replicas at {zero} ms, node gone at {} ms",
        outcome.end_ms
    );
}

#[test]
fn geobatch_scales_out_at_once_and_back_to_zero() {
    let scenario = Scenario {
        name: "ten".into(),
        description: String::new(),
        horizon_ms: 60_000,
        files: (0..10)
            .map(|_| FileUpload {
                upload_ms: 0,
                size_mb: 1.0,
                processing_ms: 120_000,
            })
            .collect(),
    };
    let outcome = run(PolicyKind::Geobatch, &scenario, 1);
    // Ten 2-minute files against a 45 s target: a slot for each, from the first poll.
    let policy = GeobatchSettings::defaults_for(&ModelParams::default())
        .expect("the controller defaults are valid")
        .pool
        .policy;
    let wanted = 10u32.div_ceil(policy.slots_per_task);
    assert!(wanted > 1, "ten files need more than one task");
    let at_full = outcome
        .samples
        .iter()
        .find(|s| s.desired_tasks >= wanted)
        .expect("asks for the tasks the backlog needs")
        .t_ms;
    // One 5 s poll after the S3 event (at most 2 s) and the 30 s sampling grid.
    assert!(at_full <= 30_000, "{wanted} tasks desired at {at_full} ms");
    let last = outcome.samples.last().expect("samples");
    assert_eq!((last.instances, last.desired_tasks), (0, 0));
    assert_eq!(outcome.interrupted_tasks, 0);
}
