//! The offline lower bound: what a clairvoyant policy that knows every upload in advance
//! would pay, and the p95 it would get, in the same world as every other policy (the same
//! fleet ceiling, the same worker, the same S3 event delays).
//!
//! Knowing the future, the clairvoyant never makes a file wait for capacity it could have
//! had: every instance is launched exactly its cold start (`instance_boot_secs +
//! task_start_secs`, `R`) before it is needed, so each file starts the moment its message
//! arrives, or, when the fleet ceiling is reached, the moment a slot frees (first come,
//! first served). It keeps at most `c` files on an instance, the files an instance analyses
//! at full speed (its slots, up to its vCPUs), so every file runs at its nominal speed. While
//! `d` files are being analysed it needs `ceil(d / c)` instances; it pays for that busy
//! time and for every boot it cannot avoid: across a gap between two spells of need an
//! instance is kept if the gap is shorter than `R`, and otherwise let go and launched again
//! (whichever costs less: the offline ski-rental choice).
//!
//! Instances are interchangeable, so the cost splits into levels: the `k`-th instance is
//! needed exactly while `ceil(d / c) >= k`, and each level's cheapest cover is the rule
//! above; no fleet that runs this schedule pays less. A policy can pay less only by making
//! files wait or run slower than the clairvoyant does (more files than vCPUs on an
//! instance), and then its latencies are longer. The
//! billing minimum (60 s) never binds: every launch is billed its cold start (105 s by
//! default) plus work.
//!
//! Separately, [`LowerBound::p95_floor_secs`] is the p95 of each file's own minimum, S3
//! event delay plus nominal processing time: no file can be done sooner under any policy,
//! so no policy's p95 is below it.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use serde::Serialize;

use super::model::{Millis, ModelParams, secs};
use super::scenario::Scenario;
use super::world::arrival_times;

/// The clairvoyant's bill and latency for one scenario.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LowerBound {
    /// Instance-hours it is billed: busy time plus cold starts plus the short gaps it bridges.
    pub instance_hours: f64,
    /// `instance_hours` at the instance price.
    pub cost_usd: f64,
    /// Instance launches it cannot avoid.
    pub boots: u32,
    /// The most instances it runs at once (at most the fleet ceiling).
    pub peak_instances: u32,
    /// The clairvoyant's own 95th percentile latency.
    pub p95_secs: f64,
    /// 95th percentile of S3 event delay plus processing time: no policy's p95 is lower.
    pub p95_floor_secs: f64,
}

/// The lower bound of `scenario` in the world `model`, with the S3 event delays of `seed`
/// (the same ones every policy's run sees).
pub fn lower_bound(scenario: &Scenario, model: &ModelParams, seed: u64) -> LowerBound {
    let arrivals = arrival_times(scenario, model, seed);
    let per_instance = u64::from(model.full_speed_files_per_instance());
    let slots = u64::from(model.max_instances) * per_instance;
    // First come, first served on the ceiling's full-speed slots, each free from the start
    // (the clairvoyant boots ahead of need).
    let mut order: Vec<usize> = (0..scenario.files.len()).collect();
    order.sort_by_key(|&i| (arrivals[i], i));
    let mut free_at: BinaryHeap<Reverse<Millis>> = (0..slots.min(order.len() as u64))
        .map(|_| Reverse(0))
        .collect();
    let mut latencies: Vec<Millis> = Vec::with_capacity(arrivals.len());
    let mut floors: Vec<Millis> = Vec::with_capacity(arrivals.len());
    // (time, +1 for a file starting, -1 for one finishing); a finish sorts before a start
    // at the same instant, so back-to-back files need no extra instance.
    let mut changes: Vec<(Millis, i64)> = Vec::with_capacity(2 * arrivals.len());
    for i in order {
        let (file, arrival) = (&scenario.files[i], arrivals[i]);
        let Some(Reverse(free)) = free_at.pop() else {
            break;
        };
        let start = arrival.max(free);
        let done = start + file.processing_ms;
        free_at.push(Reverse(done));
        latencies.push(done - file.upload_ms);
        floors.push(arrival + file.processing_ms - file.upload_ms);
        if file.processing_ms > 0 {
            changes.push((start, 1));
            changes.push((done, -1));
        }
    }
    changes.sort_unstable();
    latencies.sort_unstable();
    floors.sort_unstable();

    let cold_start = secs(model.instance_boot_secs + model.task_start_secs);
    let mut levels: Vec<Level> = Vec::new();
    let mut billed_ms: Millis = 0;
    let mut boots = 0;
    let mut files: u64 = 0;
    let mut index = 0;
    while index < changes.len() {
        let at = changes[index].0;
        while index < changes.len() && changes[index].0 == at {
            files = files.saturating_add_signed(changes[index].1);
            index += 1;
        }
        let needed = files.div_ceil(per_instance) as usize;
        if levels.len() < needed {
            levels.resize(needed, Level::default());
        }
        for level in &mut levels[..needed] {
            if level.since.is_none() {
                let bridge = match level.idle_since {
                    // Keep it through the gap, or let it go and start another: the cheaper.
                    Some(idle) if at - idle < cold_start => at - idle,
                    _ => {
                        boots += 1;
                        cold_start
                    }
                };
                billed_ms += bridge;
                level.since = Some(at);
            }
        }
        for level in &mut levels[needed..] {
            if let Some(since) = level.since.take() {
                billed_ms += at - since;
                level.idle_since = Some(at);
            }
        }
    }
    let instance_hours = billed_ms as f64 / 3_600_000.0;
    LowerBound {
        instance_hours,
        cost_usd: instance_hours * model.cheapest_price_per_hour(),
        boots,
        peak_instances: u32::try_from(levels.len()).unwrap_or(u32::MAX),
        p95_secs: percentile(&latencies, 0.95) as f64 / 1000.0,
        p95_floor_secs: percentile(&floors, 0.95) as f64 / 1000.0,
    }
}

/// One instance of the clairvoyant's fleet: busy since, or idle since its last spell.
#[derive(Debug, Clone, Copy, Default)]
struct Level {
    since: Option<Millis>,
    idle_since: Option<Millis>,
}

/// Nearest-rank percentile of sorted values.
fn percentile(sorted: &[Millis], p: f64) -> Millis {
    if sorted.is_empty() {
        return 0;
    }
    let rank = (p * sorted.len() as f64).ceil().max(1.0) as usize;
    sorted[rank.min(sorted.len()) - 1]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::scenario::FileUpload;
    use proptest::prelude::*;

    fn model() -> ModelParams {
        ModelParams {
            s3_event_delay_secs: 0.0,
            ..ModelParams::default()
        }
    }

    fn files(spec: &[(u64, u64)]) -> Scenario {
        Scenario {
            name: "lb".into(),
            description: String::new(),
            horizon_ms: 0,
            files: spec
                .iter()
                .map(|&(at_secs, secs)| FileUpload {
                    upload_ms: at_secs * 1000,
                    size_mb: 1.0,
                    processing_ms: secs * 1000,
                })
                .collect(),
        }
    }

    fn hours(s: u64) -> f64 {
        s as f64 / 3600.0
    }

    #[test]
    fn one_file_costs_one_cold_start_and_its_processing() {
        let lb = lower_bound(&files(&[(0, 60)]), &model(), 1);
        assert_eq!(lb.boots, 1);
        assert_eq!(lb.peak_instances, 1);
        assert!((lb.instance_hours - hours(105 + 60)).abs() < 1e-9, "{lb:?}");
        assert_eq!((lb.p95_secs, lb.p95_floor_secs), (60.0, 60.0));
        assert!((lb.cost_usd - lb.instance_hours * 0.08925).abs() < 1e-12);
    }

    #[test]
    fn a_short_gap_is_bridged_and_a_long_one_costs_a_new_boot() {
        // 60 s apart: kept idle (60 s < 105 s cold start).
        let short = lower_bound(&files(&[(0, 10), (70, 10)]), &model(), 1);
        assert_eq!(short.boots, 1);
        assert!((short.instance_hours - hours(105 + 10 + 60 + 10)).abs() < 1e-9);
        // An hour apart: two cold starts.
        let long = lower_bound(&files(&[(0, 10), (3600, 10)]), &model(), 1);
        assert_eq!(long.boots, 2);
        assert!((long.instance_hours - hours(2 * (105 + 10))).abs() < 1e-9);
    }

    #[test]
    fn files_beyond_an_instances_full_speed_need_another_instance() {
        // Defaults: 2 files at full speed per instance; 3 at once need 2 instances.
        let lb = lower_bound(&files(&[(0, 100), (0, 100), (0, 100)]), &model(), 1);
        assert_eq!(lb.peak_instances, 2);
        assert_eq!(lb.boots, 2);
        assert!((lb.instance_hours - hours(2 * (105 + 100))).abs() < 1e-9);
    }

    #[test]
    fn at_the_fleet_ceiling_files_wait_for_a_slot() {
        // One instance of 2 full-speed files: the third 100 s file waits for a slot.
        let one = ModelParams {
            max_instances: 1,
            ..model()
        };
        let lb = lower_bound(&files(&[(0, 100), (0, 100), (0, 100)]), &one, 1);
        assert_eq!((lb.boots, lb.peak_instances), (1, 1));
        assert!(
            (lb.instance_hours - hours(105 + 200)).abs() < 1e-9,
            "{lb:?}"
        );
        assert_eq!(lb.p95_secs, 200.0);
        assert_eq!(lb.p95_floor_secs, 100.0, "the floor knows no ceiling");
    }

    #[test]
    fn back_to_back_files_share_an_instance() {
        let lb = lower_bound(&files(&[(0, 50), (50, 50)]), &model(), 1);
        assert_eq!((lb.boots, lb.peak_instances), (1, 1));
        assert!((lb.instance_hours - hours(105 + 100)).abs() < 1e-9);
    }

    #[test]
    fn the_floor_includes_the_s3_event_delay() {
        let with_delay = ModelParams {
            s3_event_delay_secs: 5.0,
            ..ModelParams::default()
        };
        let scenario = files(&(0..100).map(|k| (k * 1000, 10)).collect::<Vec<_>>());
        let lb = lower_bound(&scenario, &with_delay, 1);
        assert!(
            lb.p95_floor_secs > 10.0 && lb.p95_floor_secs <= 20.0,
            "{lb:?}"
        );
        assert_eq!(lb, lower_bound(&scenario, &with_delay, 1), "deterministic");
    }

    proptest! {
        #[test]
        fn the_bound_lies_between_the_work_and_a_cold_start_per_file(
            spec in prop::collection::vec((0u64..20_000, 1u64..600), 1..60),
        ) {
            let mut spec = spec;
            spec.sort_unstable();
            let scenario = files(&spec);
            let m = model();
            let lb = lower_bound(&scenario, &m, 3);
            let work: u64 = spec.iter().map(|&(_, s)| s).sum();
            let per_instance = f64::from(m.full_speed_files_per_instance());
            // Never less than the work spread over the fastest instances plus one boot,
            prop_assert!(lb.instance_hours + 1e-9 >= hours(work) / per_instance + hours(105));
            // never more than a fresh instance for every file,
            prop_assert!(lb.instance_hours <= hours(work + 105 * spec.len() as u64) + 1e-9);
            prop_assert!(lb.boots >= 1 && lb.boots as usize <= spec.len());
            // the floor is at least the p95 of processing time,
            let mut processing: Vec<u64> = spec.iter().map(|&(_, s)| s * 1000).collect();
            processing.sort_unstable();
            prop_assert!(lb.p95_floor_secs * 1000.0 >= percentile(&processing, 0.95) as f64);
            // and the clairvoyant never beats the floor or exceeds the ceiling.
            prop_assert!(lb.p95_secs >= lb.p95_floor_secs);
            prop_assert!(lb.peak_instances <= m.max_instances);
        }
    }
}
