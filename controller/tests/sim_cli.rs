//! `geobatch-controller simulate` as a user runs it: files written, deterministic output,
//! clear errors.

use std::process::Command;

fn simulate(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_geobatch-controller"))
        .arg("simulate")
        .args(args)
        .output()
        .expect("runs the binary")
}

#[test]
fn writes_summaries_and_plots_and_repeats_byte_for_byte() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out_a = dir.path().join("a");
    let out_b = dir.path().join("b");
    for out in [&out_a, &out_b] {
        let result = simulate(&[
            "--scenario",
            "burst",
            "--seed",
            "7",
            "--out",
            out.to_str().expect("utf-8"),
        ]);
        assert!(
            result.status.success(),
            "{}",
            String::from_utf8_lossy(&result.stderr)
        );
        assert!(String::from_utf8_lossy(&result.stdout).contains("| burst | keda |"));
    }
    let json = std::fs::read_to_string(out_a.join("summary.json")).expect("summary.json");
    let summary: serde_json::Value = serde_json::from_str(&json).expect("valid JSON");
    let rows = summary["rows"].as_array().expect("rows");
    let policies: Vec<&str> = rows.iter().filter_map(|r| r["policy"].as_str()).collect();
    assert_eq!(
        policies,
        ["geobatch", "classic-alarms", "target-tracking", "keda"]
    );
    assert!(rows.iter().all(|r| r["completed"].as_u64() == Some(1000)));
    assert_eq!(summary["targets"].as_array().map(Vec::len), Some(6));
    assert!(
        rows.iter()
            .all(|r| r["cost_vs_lower_bound"].as_f64() > Some(0.0))
    );
    let bound = &summary["lower_bounds"][0]["bound"];
    assert!(bound["cost_usd"].as_f64() > Some(0.0), "{bound}");
    assert!(
        bound["p95_secs"].as_f64() >= bound["p95_floor_secs"].as_f64(),
        "{bound}"
    );
    for file in [
        "summary.json",
        "summary.md",
        "burst.svg",
        "burst.decisions.jsonl",
    ] {
        let a = std::fs::read(out_a.join(file)).expect(file);
        let b = std::fs::read(out_b.join(file)).expect(file);
        assert_eq!(a, b, "{file} differs between two runs with the same seed");
    }
    let log = std::fs::read_to_string(out_a.join("burst.decisions.jsonl")).expect("decision log");
    let decisions: Vec<serde_json::Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON object per line"))
        .collect();
    assert!(
        decisions
            .iter()
            .all(|d| d["reason"].as_str().is_some_and(|r| !r.is_empty()))
    );
    let first_geobatch = decisions
        .iter()
        .find(|d| d["policy"] == "geobatch")
        .expect("geobatch decided something");
    assert!(
        first_geobatch["reason"]
            .as_str()
            .is_some_and(|r| r.contains("messages visible or in flight")),
        "{first_geobatch}"
    );
    let svg = std::fs::read_to_string(out_a.join("burst.svg")).expect("svg");
    assert!(
        svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"),
        "an SVG document"
    );
    assert!(!out_a.join("burst.png").exists(), "no PNG any more");
}

#[test]
fn a_scenario_file_and_a_single_policy() {
    let dir = tempfile::tempdir().expect("tempdir");
    let csv = dir.path().join("nightly.csv");
    std::fs::write(&csv, "upload_secs,size_mb\n0,100\n30,2000\n600,50\n").expect("write");
    let out = dir.path().join("out");
    let result = simulate(&[
        "--scenario",
        csv.to_str().expect("utf-8"),
        "--policy",
        "geobatch",
        "--out",
        out.to_str().expect("utf-8"),
    ]);
    assert!(
        result.status.success(),
        "{}",
        String::from_utf8_lossy(&result.stderr)
    );
    let md = std::fs::read_to_string(out.join("summary.md")).expect("summary.md");
    assert!(md.contains("| nightly | geobatch | 3 | 3 | 0 |"), "{md}");
    assert!(out.join("nightly.svg").exists());
}

#[test]
fn bad_input_is_named() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().to_str().expect("utf-8");
    let result = simulate(&["--scenario", "weekly", "--out", out]);
    assert!(!result.status.success());
    assert!(String::from_utf8_lossy(&result.stderr).contains("unknown scenario \"weekly\""));
    let result = simulate(&["--scenario", "burst", "--policy", "hpa", "--out", out]);
    assert!(!result.status.success());
    assert!(String::from_utf8_lossy(&result.stderr).contains("unknown --policy \"hpa\""));
    let model = dir.path().join("model.toml");
    std::fs::write(&model, "[model]\ntasks_per_instanse = 2\n").expect("write");
    let result = simulate(&[
        "--scenario",
        "burst",
        "--model",
        model.to_str().expect("utf-8"),
        "--out",
        out,
    ]);
    assert!(!result.status.success());
    assert!(String::from_utf8_lossy(&result.stderr).contains("tasks_per_instanse"));
}

#[test]
fn the_controller_config_sets_geobatch_and_the_fleet_of_every_policy() {
    let dir = tempfile::tempdir().expect("tempdir");
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/controller.toml");
    let text = std::fs::read_to_string(example).expect("example config");
    let wide = text
        .replace("max_tasks = 20", "max_tasks = 60")
        .replace("max_instances = 10", "max_instances = 20")
        .replace("tasks_per_instance = 2", "tasks_per_instance = 3");
    assert_ne!(
        wide, text,
        "the example config has the keys this test changes"
    );
    let config = dir.path().join("controller.toml");
    std::fs::write(&config, wide).expect("write");
    let out = dir.path().join("out");
    let result = simulate(&[
        "--scenario",
        "burst",
        "--config",
        config.to_str().expect("utf-8"),
        "--out",
        out.to_str().expect("utf-8"),
    ]);
    assert!(
        result.status.success(),
        "{}",
        String::from_utf8_lossy(&result.stderr)
    );
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).expect("json"))
            .expect("valid JSON");
    assert_eq!(summary["config"]["model"]["max_instances"], 20);
    assert_eq!(summary["config"]["model"]["tasks_per_instance"], 3);
    assert!(
        summary["geobatch_policy"]
            .as_str()
            .is_some_and(|p| p.contains("max_tasks: 60"))
    );
    // 40 tasks instead of 10: the burst drains much faster than with the defaults.
    let p95 = summary["rows"][0]["latency_p95_secs"]
        .as_f64()
        .expect("p95");
    assert!(p95 < 1000.0, "geobatch p95 {p95} s");

    let result = simulate(&[
        "--scenario",
        "burst",
        "--config",
        config.to_str().expect("utf-8"),
        "--pool",
        "nope",
        "--out",
        out.to_str().expect("utf-8"),
    ]);
    assert!(!result.status.success());
    assert!(String::from_utf8_lossy(&result.stderr).contains("no pool named \"nope\""));
}

/// Runs `simulate` with a model file of `model` text in a fresh directory, the output in
/// its `out/`.
fn simulate_with_model(model: &str, args: &[&str]) -> (tempfile::TempDir, std::process::Output) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("model.toml");
    std::fs::write(&path, model).expect("write the model file");
    let out = dir.path().join("out");
    let mut all = vec![
        "--model",
        path.to_str().expect("utf-8"),
        "--out",
        out.to_str().expect("utf-8"),
    ];
    all.extend_from_slice(args);
    let result = simulate(&all);
    (dir, result)
}

/// `--capacity spot` puts every policy on Spot (the stack's default mix): the bill is all
/// Spot, split in the summary, and interruptions at a high rate lose no file.
#[test]
fn spot_capacity_splits_the_bill_and_loses_nothing_under_interruptions() {
    let (dir, result) = simulate_with_model(
        "[model]\nspot_interruptions_per_hour = 0.5\n",
        &["--scenario", "sustained", "--capacity", "spot"],
    );
    let out = dir.path().join("out");
    assert!(
        result.status.success(),
        "{}",
        String::from_utf8_lossy(&result.stderr)
    );
    let json = std::fs::read_to_string(out.join("summary.json")).expect("summary.json");
    let summary: serde_json::Value = serde_json::from_str(&json).expect("valid JSON");
    let rows = summary["rows"].as_array().expect("rows");
    assert_eq!(rows.len(), 4);
    let number = |r: &serde_json::Value, key: &str| r[key].as_f64().expect(key);
    for row in rows {
        assert_eq!(number(row, "cost_on_demand_usd"), 0.0, "{row}");
        assert!(number(row, "cost_spot_usd") > 0.0, "{row}");
        let parts = number(row, "cost_on_demand_usd")
            + number(row, "cost_spot_usd")
            + number(row, "cost_warm_pool_usd");
        assert!((number(row, "cost_usd") - parts).abs() < 1e-9, "{row}");
        assert!(number(row, "spot_interruptions") > 0.0, "{row}");
        assert_eq!(number(row, "files_lost"), 0.0, "{row}");
        assert_eq!(
            number(row, "completed") + number(row, "dead_lettered"),
            number(row, "files")
        );
    }
    let md = std::fs::read_to_string(out.join("summary.md")).expect("summary.md");
    assert!(
        md.contains("## Purchase options and Spot interruptions"),
        "{md}"
    );
}

#[test]
fn a_warm_pool_on_a_group_that_launches_spot_is_refused_by_name() {
    let (_dir, result) = simulate_with_model(
        "[model]\nwarm_pool = true\non_demand_percentage_above_base = 0\n",
        &["--scenario", "burst"],
    );
    assert!(!result.status.success());
    let stderr = String::from_utf8_lossy(&result.stderr);
    assert!(stderr.contains("model.warm_pool"), "{stderr}");
}
