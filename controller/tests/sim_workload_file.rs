//! A workload file a user brings runs exactly as a built-in scenario does: the same uploads
//! written to CSV give the same run, byte for byte, for every policy.

use geobatch_controller::sim::model::ModelParams;
use geobatch_controller::sim::scenario::{built_in, load};
use geobatch_controller::sim::{GeobatchSettings, PolicyKind, SimConfig, simulate};

#[test]
fn a_built_in_written_to_csv_simulates_identically() {
    let config = SimConfig::default();
    let geobatch =
        GeobatchSettings::defaults_for(&config.model).expect("the controller defaults are valid");
    let dir = tempfile::tempdir().expect("tempdir");
    for name in ["sparse", "mixed"] {
        let original = built_in(name, 4, &ModelParams::default()).expect(name);
        let mut csv = String::from(
            "# exported from the built-in scenario\nupload_secs,size_mb,processing_secs\n",
        );
        for f in &original.files {
            csv.push_str(&format!(
                "{:.3},{},{:.3}\n",
                f.upload_ms as f64 / 1000.0,
                f.size_mb,
                f.processing_ms as f64 / 1000.0
            ));
        }
        let path = dir.path().join(format!("{name}.csv"));
        std::fs::write(&path, csv).expect("write");
        let mut loaded = load(path.to_str().expect("utf-8"), 4, &config.model).expect("loads");
        assert_eq!(loaded.files, original.files, "{name}: the same uploads");
        // A file's window defaults to its last upload plus an hour; `--horizon-secs` sets it.
        loaded.horizon_ms = original.horizon_ms;
        for kind in PolicyKind::ALL {
            let a = simulate(&original, kind, &config, &geobatch, 4).expect("built-in runs");
            let b = simulate(&loaded, kind, &config, &geobatch, 4).expect("file runs");
            assert_eq!(a, b, "{name} with {}", kind.name());
        }
    }
}

/// The example workloads `make bench-scaling` runs (controller/examples/workloads/) load, and
/// geobatch completes every file of them without interrupting a task.
#[test]
fn the_example_workload_files_run_to_completion() {
    let config = SimConfig::default();
    let geobatch =
        GeobatchSettings::defaults_for(&config.model).expect("the controller defaults are valid");
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/workloads");
    for (name, uploads) in [("field-survey", 318), ("nightly-export", 454)] {
        let path = format!("{dir}/{name}.csv");
        let scenario = load(&path, 1, &config.model).expect(name);
        assert_eq!(scenario.name, name);
        assert_eq!(
            scenario.files.len(),
            uploads,
            "{name}: as generate.py wrote it"
        );
        let run = simulate(&scenario, PolicyKind::Geobatch, &config, &geobatch, 1).expect(name);
        assert_eq!((run.completed, run.dead_lettered), (uploads, 0), "{name}");
        assert_eq!(run.interrupted_tasks, 0, "{name}");
    }
}
