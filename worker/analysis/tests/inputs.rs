//! The analysis on every kind of input the issue lists: the bad-input corpus (each file with
//! its expected error kind and byte offset), accepted edge cases, and generated hostile
//! inputs (deep nesting, oversized features) that must fail cleanly, never crash.

use std::path::PathBuf;

use geobatch_analysis::{AnalysisOptions, ErrorKind, Report, analyze_file, analyze_reader};

fn data(path: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(path)
}

fn analyze(path: &str) -> Result<Report, geobatch_analysis::AnalysisError> {
    analyze_file(&data(path), &AnalysisOptions::default())
}

#[test]
fn every_bad_input_fails_with_its_kind_and_offset() {
    use ErrorKind::*;
    let cases: &[(&str, ErrorKind, u64)] = &[
        ("empty.geojson", EmptyInput, 0),
        ("whitespace_only.geojson", EmptyInput, 8),
        ("not_json.geojson", InvalidJson, 0),
        ("truncated_in_feature.geojson", Truncated, 102),
        ("truncated_after_features.geojson", Truncated, 41),
        ("truncated_in_string.geojson", Truncated, 53),
        ("trailing_garbage.geojson", InvalidJson, 43),
        ("missing_comma.geojson", InvalidJson, 75),
        ("bad_escape.geojson", InvalidJson, 94),
        ("bad_number.geojson", InvalidJson, 100),
        ("invalid_utf8.geojson", InvalidJson, 96),
        ("bad_foreign_member.geojson", InvalidJson, 42),
        ("topojson.geojson", NotGeojson, 0),
        ("no_type.geojson", NotGeojson, 0),
        ("unknown_type.geojson", NotGeojson, 8),
        ("features_not_array.geojson", NotGeojson, 39),
        ("feature_collection_without_features.geojson", NotGeojson, 0),
        ("top_level_array.geojson", NotGeojson, 0),
        ("feature_not_object.geojson", NotGeojson, 75),
        ("element_not_feature.geojson", NotGeojson, 40),
        ("unknown_geometry_type.geojson", NotGeojson, 69),
        ("geometry_without_coordinates.geojson", NotGeojson, 69),
        ("properties_array.geojson", NotGeojson, 87),
        ("position_one_number.geojson", InvalidCoordinates, 101),
        ("position_empty.geojson", InvalidCoordinates, 112),
        ("position_string.geojson", InvalidCoordinates, 100),
        ("position_null.geojson", InvalidCoordinates, 102),
        ("polygon_flat_coordinates.geojson", InvalidCoordinates, 103),
        ("point_too_deep.geojson", InvalidCoordinates, 100),
        ("coordinates_null.geojson", InvalidCoordinates, 99),
        ("deep_nesting.geojson", TooDeep, 152),
        ("deep_top_level_member.geojson", TooDeep, 102),
    ];
    let corpus = std::fs::read_dir(data("bad")).expect("bad corpus").count();
    assert_eq!(corpus, cases.len(), "every corpus file has an expectation");
    for &(file, kind, offset) in cases {
        let err = analyze(&format!("bad/{file}")).expect_err(file);
        assert_eq!(
            (err.kind, err.offset),
            (kind, Some(offset)),
            "{file}: {err}"
        );
        assert!(!err.message.is_empty(), "{file}");
    }
}

#[test]
fn accepted_edge_cases() {
    let report =
        |file: &str| analyze(&format!("good/{file}")).unwrap_or_else(|err| panic!("{file}: {err}"));

    let empty = report("empty_collection.geojson");
    assert_eq!((empty.features, empty.vertices, empty.bbox), (0, 0, None));

    let after = report("members_after_features.geojson");
    assert_eq!(after.features, 1);
    assert_eq!(after.bbox, Some([1.0, 2.0, 1.0, 2.0]));
    assert_eq!(after.properties["n"].types.get("number"), Some(&1));

    let bbox_first = report("bbox_array_before_features.geojson");
    assert_eq!(bbox_first.features, 2);
    assert_eq!(bbox_first.bbox, Some([-10.0, -10.0, 10.0, 10.0]));

    let single = report("single_feature.geojson");
    assert_eq!(single.features, 1);
    assert_eq!(single.geometry_types.get("Polygon"), Some(&1));
    assert!((single.geodesic_area_m2 - 12_308_778_361.469_452).abs() < 1e-3);

    let type_last = report("single_feature_type_last.geojson");
    assert_eq!(type_last.geometry_types.get("LineString"), Some(&1));
    let equator_degree = 6_378_137.0 * std::f64::consts::PI / 180.0;
    assert!((type_last.geodesic_length_m - equator_degree).abs() < 1e-6);

    let bare = report("bare_geometry.geojson");
    assert_eq!((bare.features, bare.vertices), (1, 3));
    assert_eq!(bare.geometry_types.get("MultiPoint"), Some(&1));

    let collection = report("geometry_collection.geojson");
    assert_eq!(
        collection.geometry_types.get("GeometryCollection"),
        Some(&1)
    );
    assert_eq!(collection.vertices, 8);
    assert!(collection.geodesic_area_m2 > 1.2e10 && collection.geodesic_length_m > 1.1e5);

    let nulls = report("null_geometries.geojson");
    assert_eq!((nulls.features, nulls.null_geometries), (3, 2));
    assert_eq!(nulls.properties["a"].features, 3);
    assert_eq!(nulls.properties["a"].types.len(), 3);

    let higher = report("positions_3d_4d.geojson");
    assert_eq!(higher.vertices, 2);
    assert_eq!(higher.bbox, Some([0.0, 0.0, 1.0, 0.0]));

    assert_eq!(report("bom.geojson").bbox, Some([3.0, 4.0, 3.0, 4.0]));

    let unicode = report("escapes_and_unicode.geojson");
    let names: Vec<&str> = unicode.properties.keys().map(String::as_str).collect();
    assert_eq!(names, ["name", "q", "\u{540d}\u{524d}"]);

    assert_eq!(report("crlf_and_spaces.geojson").features, 1);
}

fn options_with(max_feature_bytes: u64, max_nesting_depth: usize) -> AnalysisOptions {
    AnalysisOptions {
        max_feature_bytes,
        max_nesting_depth,
        ..AnalysisOptions::default()
    }
}

#[test]
fn hostile_nesting_is_rejected_without_recursion() {
    // A million open brackets inside a property: the limit stops it at depth 65.
    let mut text = br#"{"type":"FeatureCollection","features":[{"type":"Feature","geometry":null,"properties":{"a":"#.to_vec();
    let open_at = text.len() as u64;
    text.extend(std::iter::repeat_n(b'[', 1_000_000));
    let err = analyze_reader(&text[..], &AnalysisOptions::default()).expect_err("too deep");
    assert_eq!(err.kind, ErrorKind::TooDeep);
    assert_eq!(err.offset, Some(open_at + 60));
    // With the limit at its maximum, collections nested to that depth parse, and are measured,
    // checked and dropped on the analysis threads without overflowing their stacks.
    let depth = (geobatch_analysis::MAX_NESTING_DEPTH - 3) / 2;
    let mut nested = String::new();
    for _ in 0..depth {
        nested.push_str(r#"{"type":"GeometryCollection","geometries":["#);
    }
    nested.push_str(r#"{"type":"Point","coordinates":[1,2]}"#);
    for _ in 0..depth {
        nested.push_str("]}");
    }
    let report = analyze_reader(
        nested.as_bytes(),
        &options_with(1 << 26, geobatch_analysis::MAX_NESTING_DEPTH * 4),
    )
    .expect("deep collection");
    assert_eq!(report.vertices, 1);
}

#[test]
fn oversized_features_are_rejected_with_their_offset() {
    let feature = r#"{"type":"Feature","geometry":{"type":"LineString","coordinates":[[0,0],[1,1],[2,2],[3,3]]}}"#;
    let text = format!(r#"{{"type":"FeatureCollection","features":[{feature},{feature}]}}"#);
    let limit = feature.len() as u64;
    let ok = analyze_reader(text.as_bytes(), &options_with(limit, 64)).expect("at the limit");
    assert_eq!(ok.features, 2);
    let err =
        analyze_reader(text.as_bytes(), &options_with(limit - 1, 64)).expect_err("over the limit");
    assert_eq!(err.kind, ErrorKind::FeatureTooLarge);
    assert_eq!(err.offset, Some(40));
    // A lone Feature is bounded the same way.
    let err =
        analyze_reader(feature.as_bytes(), &options_with(limit - 1, 64)).expect_err("lone feature");
    assert_eq!(err.kind, ErrorKind::FeatureTooLarge);
}

#[test]
fn the_first_error_in_input_order_wins() {
    // Feature 1 is broken and so is the end of the file: the earlier problem is reported,
    // whatever thread finished first.
    let good = r#"{"type":"Feature","geometry":{"type":"Point","coordinates":[0,0]}}"#;
    let mut text = String::from(r#"{"type":"FeatureCollection","features":["#);
    text.push_str(good);
    text.push_str(r#",{"type":"Feature","geometry":{"type":"Point","coordinates":[0]}}"#);
    for _ in 0..20_000 {
        text.push(',');
        text.push_str(good);
    }
    let expected = text.find("[0]}").expect("marker") as u64 + 2;
    text.push_str(",]");
    for threads in [1, 2, 4] {
        let options = AnalysisOptions {
            threads,
            ..AnalysisOptions::default()
        };
        let err = analyze_reader(text.as_bytes(), &options).expect_err("bad input");
        assert_eq!(
            (err.kind, err.offset),
            (ErrorKind::InvalidCoordinates, Some(expected)),
            "{threads} threads"
        );
    }
}

/// A reader that fails mid-stream: reported as `io`, the one kind the service retries.
#[test]
fn read_failures_are_io_errors() {
    struct Failing(usize);
    impl std::io::Read for Failing {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            if self.0 == 0 {
                return Err(std::io::Error::other("connection reset"));
            }
            self.0 -= 1;
            let chunk = br#"{"type":"FeatureCollection","features":["#;
            let n = chunk.len().min(buf.len());
            buf[..n].copy_from_slice(&chunk[..n]);
            Ok(n)
        }
    }
    let err = analyze_reader(Failing(1), &AnalysisOptions::default()).expect_err("io");
    assert_eq!(err.kind, ErrorKind::Io);
    assert!(err.message.contains("connection reset"), "{}", err.message);
}

/// Hands out at most `chunk` bytes per read, so every buffer boundary falls somewhere new.
struct Trickle<'a> {
    bytes: &'a [u8],
    chunk: usize,
}

impl std::io::Read for Trickle<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.chunk.min(buf.len()).min(self.bytes.len());
        buf[..n].copy_from_slice(&self.bytes[..n]);
        self.bytes = &self.bytes[n..];
        Ok(n)
    }
}

/// The splitter's state survives refills at any byte: reading one byte (or 7, or 4093)
/// at a time gives the same report or the same error as reading the file whole.
#[test]
fn read_boundaries_do_not_change_the_outcome() {
    let mut files: Vec<PathBuf> = Vec::new();
    for dir in ["good", "bad"] {
        let mut entries: Vec<PathBuf> = std::fs::read_dir(data(dir))
            .expect("corpus")
            .map(|e| e.expect("entry").path())
            .collect();
        entries.sort();
        files.extend(entries);
    }
    for file in files {
        let bytes = std::fs::read(&file).expect("read");
        let whole = analyze_reader(&bytes[..], &AnalysisOptions::default());
        for chunk in [1, 7, 4093] {
            let trickled = analyze_reader(
                Trickle {
                    bytes: &bytes,
                    chunk,
                },
                &AnalysisOptions::default(),
            );
            assert_eq!(
                whole,
                trickled,
                "{} read {chunk} bytes at a time",
                file.display()
            );
        }
    }
}
