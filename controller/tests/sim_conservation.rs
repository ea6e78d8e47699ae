//! Every message ends completed or in the dead-letter queue, whatever the policy, the
//! workload and the parameters; the simulator refuses to report a run that does not balance.

use geobatch_controller::sim::model::ModelParams;
use geobatch_controller::sim::scenario::{FileUpload, Scenario};
use geobatch_controller::sim::{GeobatchSettings, PolicyKind, SimConfig, simulate};
use proptest::prelude::*;

fn check(scenario: &Scenario, model: ModelParams, seed: u64) {
    let config = SimConfig {
        model,
        ..SimConfig::default()
    };
    let geobatch =
        GeobatchSettings::defaults_for(&config.model).expect("the controller defaults are valid");
    for kind in PolicyKind::ALL {
        let outcome = simulate(scenario, kind, &config, &geobatch, seed)
            .unwrap_or_else(|e| panic!("{}: {e}", kind.name()));
        assert_eq!(
            outcome.completed + outcome.dead_lettered,
            scenario.files.len(),
            "{}",
            kind.name()
        );
        assert_eq!(
            outcome.latencies_ms.len(),
            outcome.completed,
            "{}",
            kind.name()
        );
        assert!(
            outcome.latencies_ms.iter().all(|l| *l > 0),
            "{}",
            kind.name()
        );
    }
}

#[test]
fn messages_interrupted_too_often_end_in_the_dlq_and_are_counted() {
    // KEDA keeps killing the newest replicas that hold the long files; with
    // maxReceiveCount = 1 the first redelivery goes to the DLQ.
    let mut files: Vec<FileUpload> = (0..3)
        .map(|_| FileUpload {
            upload_ms: 0,
            size_mb: 1.0,
            processing_ms: 3_000_000,
        })
        .collect();
    files.extend((0..40).map(|_| FileUpload {
        upload_ms: 0,
        size_mb: 1.0,
        processing_ms: 30_000,
    }));
    let scenario = Scenario {
        name: "dlq".into(),
        description: String::new(),
        horizon_ms: 3_600_000,
        files,
    };
    let model = ModelParams {
        max_receive_count: 1,
        ..ModelParams::default()
    };
    let config = SimConfig {
        model: model.clone(),
        ..SimConfig::default()
    };
    let geobatch =
        GeobatchSettings::defaults_for(&config.model).expect("the controller defaults are valid");
    let dead: usize = (1..=8)
        .map(|seed| {
            simulate(&scenario, PolicyKind::Keda, &config, &geobatch, seed)
                .expect("balances")
                .dead_lettered
        })
        .sum();
    assert!(dead > 0, "interrupted messages reach the DLQ");
    check(&scenario, model, 1);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    #[test]
    fn every_message_is_accounted_for(
        uploads in prop::collection::vec((0u64..7_200, 1u64..2_400), 1..40),
        visibility in 30.0f64..600.0,
        max_receive_count in 1u32..5,
        boot in 0.0f64..300.0,
        tasks_per_instance in 1u32..4,
        slots_per_task in 1u32..4,
        vcpus_per_instance in 1u32..4,
        max_instances in 1u32..6,
        seed in 0u64..1_000,
    ) {
        let scenario = Scenario {
            name: "prop".into(),
            description: String::new(),
            horizon_ms: 7_200_000,
            files: {
                let mut files: Vec<FileUpload> = uploads
                    .iter()
                    .map(|&(at, processing)| FileUpload {
                        upload_ms: at * 1000,
                        size_mb: 1.0,
                        processing_ms: processing * 1000,
                    })
                    .collect();
                files.sort_by_key(|f| f.upload_ms);
                files
            },
        };
        let model = ModelParams {
            visibility_timeout_secs: visibility,
            max_receive_count,
            instance_boot_secs: boot,
            tasks_per_instance,
            slots_per_task,
            vcpus_per_instance,
            max_instances,
            ..ModelParams::default()
        };
        check(&scenario, model, seed);
    }
}
