//! The analysis against independently computed figures for real files
//! (`shared/data/real/REFERENCE.json`: pyproj for geodesics, shapely/GEOS for validity).

use std::path::PathBuf;

use geobatch_analysis::{AnalysisOptions, Report, analyze_file};

/// The real-data folder: `$GEOBATCH_REAL_DATA`, or `shared/data/real` beside the checkout.
/// Missing data fails the test loudly; it never skips.
fn real_data() -> PathBuf {
    let dir = std::env::var_os("GEOBATCH_REAL_DATA").map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data/real"),
        PathBuf::from,
    );
    assert!(
        dir.join("REFERENCE.json").is_file(),
        "real data not found at {} (set GEOBATCH_REAL_DATA)",
        dir.display()
    );
    dir
}

fn reference() -> Vec<serde_json::Value> {
    let text =
        std::fs::read_to_string(real_data().join("REFERENCE.json")).expect("read REFERENCE.json");
    serde_json::from_str(&text).expect("REFERENCE.json parses")
}

fn analyze(name: &str, threads: usize) -> Report {
    let options = AnalysisOptions {
        threads,
        ..AnalysisOptions::default()
    };
    analyze_file(&real_data().join(name), &options).unwrap_or_else(|err| panic!("{name}: {err}"))
}

fn assert_relative(name: &str, field: &str, actual: f64, expected: f64) {
    if expected == 0.0 {
        assert_eq!(actual, 0.0, "{name}: {field}");
    } else {
        let relative = ((actual - expected) / expected).abs();
        assert!(
            relative <= 1e-12,
            "{name}: {field} {actual} vs {expected} ({relative:e} relative)"
        );
    }
}

/// Counts and bbox exactly, geodesic area and length within 1e-12 relative, and invalid
/// counts equal to GEOS's. Our rules are GEOS's defaults (see `analysis::validity`), so no
/// file needs an explained difference: ne_50m_countries has 3 invalid geometries (rings
/// crossing at the antimeridian and Antarctica's edge along the pole), and
/// osm_countries_land_10km 83 (self-touching and crossing rings).
#[test]
fn real_files_match_the_reference_figures() {
    let entries = reference();
    assert_eq!(entries.len(), 4, "REFERENCE.json lists the four real files");
    for entry in entries {
        let name = entry["file"].as_str().expect("file name");
        let report = analyze(name, 2);
        assert_eq!(
            report.bytes,
            entry["bytes"].as_u64().expect("bytes"),
            "{name}: bytes"
        );
        assert_eq!(
            report.features,
            entry["features"].as_u64().expect("features"),
            "{name}: features"
        );
        let types: std::collections::BTreeMap<String, u64> =
            serde_json::from_value(entry["geometry_types"].clone()).expect("geometry types");
        assert_eq!(report.geometry_types, types, "{name}: geometry types");
        assert_eq!(
            report.vertices,
            entry["vertices"].as_u64().expect("vertices"),
            "{name}: vertices"
        );
        let bbox: [f64; 4] = serde_json::from_value(entry["bbox"].clone()).expect("bbox");
        assert_eq!(report.bbox, Some(bbox), "{name}: bbox");
        assert_relative(
            name,
            "area",
            report.geodesic_area_m2,
            entry["geodesic_area_m2"].as_f64().expect("area"),
        );
        assert_relative(
            name,
            "length",
            report.geodesic_length_m,
            entry["geodesic_length_m"].as_f64().expect("length"),
        );
        assert_eq!(
            report.invalid_geometries,
            entry["invalid_geometries_geos"].as_u64().expect("invalid"),
            "{name}: invalid geometries ({:?})",
            report
                .invalid
                .iter()
                .map(|s| (s.feature, &s.reason))
                .collect::<Vec<_>>()
        );
        assert_eq!(
            report.unchecked_geometries, 0,
            "{name}: every validity check concluded"
        );
        assert_eq!(report.null_geometries, 0, "{name}");
    }
}

/// The same input gives byte-identical JSON whatever the thread count, which is what lets
/// the service write idempotent results.
#[test]
fn reports_are_byte_identical_across_thread_counts() {
    for entry in reference() {
        let name = entry["file"].as_str().expect("file name");
        let baseline = serde_json::to_string(&analyze(name, 1)).expect("serialize");
        for threads in [2, 3, 8] {
            let other = serde_json::to_string(&analyze(name, threads)).expect("serialize");
            assert_eq!(baseline, other, "{name} with {threads} threads");
        }
    }
}

/// Beyond the counts: the very features GEOS finds invalid (indices computed with shapely,
/// `tests/data/geos_invalid_features.json`). The reasons may differ where a geometry breaks
/// several rules, since GEOS and we stop at the first problem found and visit edges in a
/// different order (on osm_countries_land_10km, 33 of the 83 geometries both touch and
/// cross themselves, reported by one as "Ring Self-intersection", by the other as
/// "Self-intersection"); the set of invalid features is what must agree.
#[test]
fn invalid_features_are_the_ones_geos_finds() {
    let path =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/geos_invalid_features.json");
    let text = std::fs::read_to_string(path).expect("read GEOS indices");
    let expected: serde_json::Value = serde_json::from_str(&text).expect("parse GEOS indices");
    let files = expected["files"].as_object().expect("files");
    assert_eq!(files.len(), 2);
    for (name, indices) in files {
        let expected: Vec<u64> = serde_json::from_value(indices.clone()).expect("indices");
        let options = AnalysisOptions {
            max_invalid_samples: 1000,
            ..AnalysisOptions::default()
        };
        let report = analyze_file(&real_data().join(name), &options).expect("analyse");
        let found: Vec<u64> = report.invalid.iter().map(|s| s.feature).collect();
        assert_eq!(found, expected, "{name}");
    }
}

/// Perimeter is not in the reference; it must at least be positive and stable for polygon
/// files, and the property statistics must cover every feature that carries a name.
#[test]
fn polygon_files_report_perimeter_and_properties() {
    let report = analyze("ne_50m_countries.geojson", 2);
    assert!(
        report.geodesic_perimeter_m > 1e8,
        "{}",
        report.geodesic_perimeter_m
    );
    let name = &report.properties["name"];
    assert_eq!(name.features, 241);
    assert_eq!(name.types.get("string"), Some(&241));
    let quakes = analyze("usgs_earthquakes.geojson", 2);
    let felt = &quakes.properties["felt"];
    assert_eq!(felt.features, 1707);
    assert!(
        felt.types.contains_key("null") && felt.types.contains_key("number"),
        "{felt:?}"
    );
    assert_eq!(quakes.invalid.len(), 0);
    let osm = analyze("osm_countries_land_10km.geojson", 2);
    assert_eq!(
        osm.invalid.len(),
        AnalysisOptions::default().max_invalid_samples
    );
    assert!(
        osm.invalid.windows(2).all(|w| w[0].feature < w[1].feature),
        "samples in feature order"
    );
}
