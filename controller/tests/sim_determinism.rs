//! A run is a pure function of scenario, parameters, policy and seed.

use geobatch_controller::sim::scenario::{self, BUILT_IN};
use geobatch_controller::sim::{GeobatchSettings, PolicyKind, SimConfig, simulate};

#[test]
fn same_seed_gives_identical_runs_for_every_policy_and_built_in_scenario() {
    let config = SimConfig::default();
    let geobatch =
        GeobatchSettings::defaults_for(&config.model).expect("the controller defaults are valid");
    for (name, _) in BUILT_IN {
        let scenario = scenario::load(name, 3, &config.model).expect("built-in");
        for kind in PolicyKind::ALL {
            let a = simulate(&scenario, kind, &config, &geobatch, 3).expect("run");
            let b = simulate(&scenario, kind, &config, &geobatch, 3).expect("run");
            assert_eq!(a, b, "{name} / {}", kind.name());
        }
    }
}

#[test]
fn a_different_seed_gives_a_different_run() {
    let config = SimConfig::default();
    let geobatch =
        GeobatchSettings::defaults_for(&config.model).expect("the controller defaults are valid");
    let one = scenario::load("trickle", 1, &config.model).expect("built-in");
    let two = scenario::load("trickle", 2, &config.model).expect("built-in");
    assert_ne!(one, two);
    let a = simulate(&one, PolicyKind::Geobatch, &config, &geobatch, 1).expect("run");
    let b = simulate(&two, PolicyKind::Geobatch, &config, &geobatch, 2).expect("run");
    assert_ne!(a.latencies_ms, b.latencies_ms);
}
