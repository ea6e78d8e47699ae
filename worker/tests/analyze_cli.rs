//! `geobatch-worker analyze` as a user runs it: real files, stdin, bad files, both formats.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

fn binary() -> Command {
    Command::new(env!("CARGO_BIN_EXE_geobatch-worker"))
}

fn real(name: &str) -> PathBuf {
    let dir = std::env::var_os("GEOBATCH_REAL_DATA").map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/data/real"),
        PathBuf::from,
    );
    let path = dir.join(name);
    assert!(path.is_file(), "real data file missing: {}", path.display());
    path
}

fn bad(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("analysis/tests/data/bad")
        .join(name)
}

fn run(args: &[&std::ffi::OsStr]) -> Output {
    binary()
        .arg("analyze")
        .args(args)
        .output()
        .expect("run geobatch-worker")
}

fn json_lines(output: &Output) -> Vec<serde_json::Value> {
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|err| panic!("{err}: {line}")))
        .collect()
}

#[test]
fn json_prints_one_object_per_file_in_order() {
    let cities = real("ne_cities.geojson");
    let countries = real("ne_50m_countries.geojson");
    let output = run(&[
        "--format".as_ref(),
        "json".as_ref(),
        cities.as_os_str(),
        countries.as_os_str(),
    ]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let lines = json_lines(&output);
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[0]["file"], cities.to_string_lossy().as_ref());
    assert_eq!(lines[0]["features"], 243);
    assert_eq!(lines[0]["geometry_types"]["Point"], 243);
    assert_eq!(lines[1]["invalid_geometries"], 3);
    for field in [
        "features",
        "geometry_types",
        "null_geometries",
        "vertices",
        "bbox",
        "geodesic_area_m2",
        "geodesic_perimeter_m",
        "geodesic_length_m",
        "invalid_geometries",
        "invalid",
        "properties",
    ] {
        assert!(lines[1].get(field).is_some(), "field {field} missing");
    }
    assert!(
        output.stderr.is_empty(),
        "no progress when stderr is not a terminal"
    );
}

#[test]
fn json_is_the_default_when_stdout_is_not_a_terminal() {
    let output = run(&[real("ne_cities.geojson").as_os_str()]);
    assert!(output.status.success());
    assert_eq!(json_lines(&output)[0]["vertices"], 243);
}

#[test]
fn dash_reads_standard_input() {
    let mut child = binary()
        .args(["analyze", "--format", "json", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn");
    let text = std::fs::read(real("usgs_earthquakes.geojson")).expect("read");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(&text)
        .expect("write stdin");
    let output = child.wait_with_output().expect("wait");
    assert!(output.status.success());
    let line = &json_lines(&output)[0];
    assert_eq!(line["file"], "-");
    assert_eq!(line["features"], 1707);
}

#[test]
fn a_failed_file_prints_an_error_object_and_exits_non_zero() {
    let good = real("ne_cities.geojson");
    let broken = bad("topojson.geojson");
    let output = run(&[
        "--format".as_ref(),
        "json".as_ref(),
        broken.as_os_str(),
        good.as_os_str(),
    ]);
    assert_eq!(output.status.code(), Some(1));
    let lines = json_lines(&output);
    assert_eq!(lines.len(), 2, "the other file is still analysed");
    assert_eq!(lines[0]["error"]["kind"], "not_geojson");
    assert_eq!(lines[0]["error"]["offset"], 0);
    assert!(
        lines[0]["error"]["message"]
            .as_str()
            .expect("message")
            .contains("TopoJSON")
    );
    assert_eq!(lines[1]["features"], 243);

    let missing = run(&[
        "--format".as_ref(),
        "json".as_ref(),
        "/nonexistent.geojson".as_ref(),
    ]);
    assert_eq!(missing.status.code(), Some(1));
    assert_eq!(json_lines(&missing)[0]["error"]["kind"], "io");
}

#[test]
fn text_is_a_readable_summary_and_errors_are_one_line() {
    let countries = real("ne_50m_countries.geojson");
    let truncated = bad("truncated_in_feature.geojson");
    let output = run(&[
        "--format".as_ref(),
        "text".as_ref(),
        countries.as_os_str(),
        truncated.as_os_str(),
    ]);
    assert_eq!(output.status.code(), Some(1));
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(
        text.contains("features      241 (MultiPolygon 119, Polygon 122; 0 null geometries)"),
        "{text}"
    );
    assert!(text.contains("vertices      99539"), "{text}");
    assert!(text.contains("invalid       3"), "{text}");
    let error_line = text.lines().last().expect("a line");
    assert!(
        error_line.contains("error (truncated at byte 102)"),
        "{error_line}"
    );
}

#[test]
fn limits_are_flags() {
    let countries = real("ne_50m_countries.geojson");
    let output = run(&[
        "--max-feature-bytes".as_ref(),
        "1000".as_ref(),
        countries.as_os_str(),
    ]);
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(json_lines(&output)[0]["error"]["kind"], "feature_too_large");
    let output = run(&["--max-depth".as_ref(), "4".as_ref(), countries.as_os_str()]);
    assert_eq!(json_lines(&output)[0]["error"]["kind"], "too_deep");
    let output = run(&["--threads".as_ref(), "0".as_ref(), countries.as_os_str()]);
    assert_eq!(output.status.code(), Some(2), "bad usage is exit status 2");
    let help = binary().args(["analyze", "--help"]).output().expect("help");
    let help = String::from_utf8_lossy(&help.stdout);
    for flag in [
        "--format",
        "--max-feature-bytes",
        "--max-depth",
        "--threads",
        "--max-invalid-samples",
    ] {
        assert!(help.contains(flag), "--help mentions {flag}");
    }
}
