//! The example worker of one's own (`examples/hull_worker/`): its processor's figures
//! checked against values computed here without `geo` (hand-worked shapes, and every
//! feature of a real file through a hull, centroid and area written independently), and the
//! worker end to end: an upload to the emulator's S3 becomes a FeatureCollection outcome.

mod support;

#[path = "../examples/hull_worker/figures.rs"]
mod figures;
#[path = "../examples/hull_worker/hull.rs"]
mod hull;

use std::io::Write as _;
use std::path::PathBuf;
use std::sync::Arc;

use geobatch_analysis::georust::{Feature, for_each_feature};
use geobatch_analysis::{AnalysisOptions, Stop, geodesic};
use geobatch_worker::processor::ProcessError;
use serde_json::{Value, json};
use support::{RunningWorker, Stack, StackOptions};

/// Four shapes whose hulls and centroids can be worked out by hand.
const SHAPES: &str = r#"{"type": "FeatureCollection", "features": [
  {"type": "Feature", "id": "square", "properties": {},
   "geometry": {"type": "Polygon", "coordinates": [[[0, 0], [1, 0], [1, 1], [0, 1], [0, 0]]]}},
  {"type": "Feature", "id": 2, "properties": null,
   "geometry": {"type": "Polygon", "coordinates": [[[0, 0], [2, 0], [2, 1], [1, 1], [1, 2], [0, 2], [0, 0]]]}},
  {"type": "Feature", "properties": {"name": "a point"},
   "geometry": {"type": "Point", "coordinates": [3, 4]}},
  {"type": "Feature", "properties": {}, "geometry": null}
]}"#;

fn temp_file(body: &str) -> tempfile::NamedTempFile {
    let mut file = tempfile::NamedTempFile::new().expect("temp file");
    file.write_all(body.as_bytes()).expect("write");
    file
}

fn hulls(path: &std::path::Path, max_features: u64) -> Result<Vec<Value>, ProcessError> {
    let collection = hull::hulls(
        path,
        &AnalysisOptions::default(),
        max_features,
        &Stop::new(),
    )?;
    let value = serde_json::to_value(&collection).expect("encodes");
    assert_eq!(value["type"], "FeatureCollection");
    Ok(value["features"].as_array().expect("features").clone())
}

/// Geodesic area of a ring by the analysis engine's own kernel (not `geo`'s
/// geographiclib-rs PolygonArea, which the processor uses).
fn engine_area(ring: &[[f64; 2]]) -> f64 {
    geodesic::ring_perimeter_area(ring).1
}

fn assert_close(what: &str, got: f64, want: f64, relative: f64) {
    assert!(
        (got - want).abs() <= relative * want.abs().max(1.0),
        "{what}: {got} against {want}"
    );
}

#[test]
fn hand_worked_shapes_get_their_hull_and_centroid() {
    let file = temp_file(SHAPES);
    let rows = hulls(file.path(), 100).expect("valid");
    assert_eq!(rows.len(), 4);

    // The unit square is its own hull; its centroid is its middle.
    assert_eq!(rows[0]["id"], "square");
    assert_eq!(rows[0]["properties"]["feature"], 0);
    assert_eq!(rows[0]["properties"]["hull_vertices"], 4);
    assert_eq!(
        rows[0]["geometry"],
        json!({"type": "Point", "coordinates": [0.5, 0.5]})
    );
    let square = engine_area(&[[0.0, 0.0], [1.0, 0.0], [1.0, 1.0], [0.0, 1.0]]);
    assert_close(
        "square hull area",
        rows[0]["properties"]["hull_area_m2"]
            .as_f64()
            .expect("area"),
        square,
        1e-9,
    );
    // About 12 309 km² for a degree square on the equator.
    assert!((1.23e10..1.232e10).contains(&square), "{square}");

    // The L: its hull cuts the inner corner off (5 vertices); its centroid is the
    // area-weighted mean of its two rectangles, (2 × (1, 0.5) + 1 × (0.5, 1.5)) / 3.
    assert_eq!(rows[1]["id"], 2);
    assert_eq!(rows[1]["properties"]["hull_vertices"], 5);
    let centroid = &rows[1]["geometry"]["coordinates"];
    assert_close(
        "L centroid x",
        centroid[0].as_f64().expect("x"),
        2.5 / 3.0,
        1e-12,
    );
    assert_close(
        "L centroid y",
        centroid[1].as_f64().expect("y"),
        2.5 / 3.0,
        1e-12,
    );
    let l_hull = engine_area(&[[0.0, 0.0], [2.0, 0.0], [2.0, 1.0], [1.0, 2.0], [0.0, 2.0]]);
    assert_close(
        "L hull area",
        rows[1]["properties"]["hull_area_m2"]
            .as_f64()
            .expect("area"),
        l_hull,
        1e-9,
    );

    // A point: a one-vertex hull without area, centred on itself; a null geometry: nothing.
    assert_eq!(rows[2]["properties"]["hull_vertices"], 1);
    assert_eq!(rows[2]["properties"]["hull_area_m2"], 0.0);
    assert_eq!(rows[2]["geometry"]["coordinates"], json!([3.0, 4.0]));
    assert_eq!(rows[3]["properties"]["hull_vertices"], 0);
    assert_eq!(rows[3]["geometry"], Value::Null);
}

#[test]
fn bad_input_and_too_many_features_are_permanent_errors() {
    let file = temp_file(SHAPES);
    let Err(ProcessError::Permanent(detail)) = hulls(file.path(), 3) else {
        panic!("four features pass a cap of three");
    };
    assert_eq!(detail.kind.as_str(), "too_many_features");

    let broken = temp_file(r#"{"type": "FeatureCollection", "features": [{"type": "Feature""#);
    let Err(ProcessError::Permanent(detail)) = hulls(broken.path(), 100) else {
        panic!("a truncated file is refused");
    };
    assert_eq!(detail.kind.as_str(), "truncated");
    assert!(detail.offset.is_some());
}

fn real_file(name: &str) -> PathBuf {
    let dir = std::env::var_os("GEOBATCH_REAL_DATA").map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/data/real"),
        PathBuf::from,
    );
    let path = dir.join(name);
    assert!(
        path.is_file(),
        "{} not found (set GEOBATCH_REAL_DATA)",
        path.display()
    );
    path
}

/// The rings of each polygon of a Polygon or MultiPolygon, as `[lon, lat]` positions.
fn polygons(geometry: &geo::Geometry<f64>) -> Vec<Vec<Vec<[f64; 2]>>> {
    let rings = |polygon: &geo::Polygon<f64>| -> Vec<Vec<[f64; 2]>> {
        std::iter::once(polygon.exterior())
            .chain(polygon.interiors())
            .map(|ring| ring.0.iter().map(|c| [c.x, c.y]).collect())
            .collect()
    };
    match geometry {
        geo::Geometry::Polygon(polygon) => vec![rings(polygon)],
        geo::Geometry::MultiPolygon(parts) => parts.0.iter().map(rings).collect(),
        other => panic!("not a polygon: {other:?}"),
    }
}

fn cross(o: [f64; 2], a: [f64; 2], b: [f64; 2]) -> f64 {
    (a[0] - o[0]) * (b[1] - o[1]) - (a[1] - o[1]) * (b[0] - o[0])
}

/// Andrew's monotone chain, collinear positions dropped, counter-clockwise.
fn monotone_chain_hull(mut points: Vec<[f64; 2]>) -> Vec<[f64; 2]> {
    points.sort_by(|a, b| a[0].total_cmp(&b[0]).then(a[1].total_cmp(&b[1])));
    points.dedup();
    if points.len() < 3 {
        return points;
    }
    let mut hull: Vec<[f64; 2]> = Vec::new();
    for pass in [false, true] {
        let start = hull.len();
        let ordered: Box<dyn Iterator<Item = &[f64; 2]>> = if pass {
            Box::new(points.iter().rev())
        } else {
            Box::new(points.iter())
        };
        for &p in ordered {
            while hull.len() >= start + 2
                && cross(hull[hull.len() - 2], hull[hull.len() - 1], p) <= 0.0
            {
                hull.pop();
            }
            hull.push(p);
        }
        hull.pop();
    }
    hull
}

/// Area-weighted centroid of polygons (holes subtracted), by the shoelace formula; `None`
/// when a polygon's shell has no area, for which the figure is a matter of convention.
fn shoelace_centroid(polygons: &[Vec<Vec<[f64; 2]>>]) -> Option<[f64; 2]> {
    let (mut area, mut mx, mut my) = (0.0, 0.0, 0.0);
    for polygon in polygons {
        for (index, points) in polygon.iter().enumerate() {
            let (mut a, mut x, mut y) = (0.0, 0.0, 0.0);
            // Relative to the first position, for accuracy far from the origin.
            let o = points[0];
            for pair in points.windows(2) {
                let p = [pair[0][0] - o[0], pair[0][1] - o[1]];
                let q = [pair[1][0] - o[0], pair[1][1] - o[1]];
                let c = p[0] * q[1] - q[0] * p[1];
                a += c / 2.0;
                x += (p[0] + q[0]) * c / 6.0;
                y += (p[1] + q[1]) * c / 6.0;
            }
            if index == 0 && a == 0.0 {
                return None;
            }
            // Shells count positive and holes negative, whatever their winding.
            let sign = if (index == 0) == (a > 0.0) { 1.0 } else { -1.0 };
            area += sign * a;
            mx += sign * (x + o[0] * a);
            my += sign * (y + o[1] * a);
        }
    }
    Some([mx / area, my / area])
}

/// Every country of ne_50m_countries: the hull's vertex count and geodesic area, and the
/// centroid, against a monotone-chain hull measured by the engine's kernel and a shoelace
/// centroid, both written here. The positions come from the library's parser (serde_json's
/// default float parsing is off by an ulp on some of this file's 17-digit numbers, which is
/// enough to move a nearly collinear hull vertex).
#[test]
fn every_feature_of_a_real_file_matches_an_independent_computation() {
    let path = real_file("ne_50m_countries.geojson");
    let rows = hulls(&path, hull::DEFAULT_MAX_FEATURES).expect("valid");
    let mut features = Vec::new();
    let file = std::fs::File::open(&path).expect("open");
    for_each_feature(file, &AnalysisOptions::default(), &|f: Feature| f, |f| {
        features.push(f);
    })
    .expect("valid");
    assert_eq!(rows.len(), features.len());
    assert_eq!(rows.len(), 241, "REFERENCE.json counts 241 features");
    let mut total_hull_area = 0.0;
    let mut degenerate = Vec::new();
    for (row, feature) in rows.iter().zip(&features) {
        let name = feature.properties.as_ref().map(|p| p["name"].clone());
        let polygons = polygons(feature.geometry.as_ref().expect("a geometry"));
        // The hull of the shells, as `geo` defines it: a valid polygon's holes are inside its
        // shell, and Antarctica here has a ring listed as a hole that is not.
        let shells = polygons.iter().flat_map(|rings| rings[0].iter().copied());
        let hull = monotone_chain_hull(shells.collect());
        let properties = &row["properties"];
        assert_eq!(
            properties["hull_vertices"].as_u64(),
            Some(hull.len() as u64),
            "{name:?}: hull vertices"
        );
        let area = properties["hull_area_m2"].as_f64().expect("area");
        assert_close(
            &format!("{name:?}: hull area"),
            area,
            engine_area(&hull),
            1e-9,
        );
        total_hull_area += area;
        let Some([x, y]) = shoelace_centroid(&polygons) else {
            degenerate.push(name);
            continue;
        };
        let centroid = &row["geometry"]["coordinates"];
        assert!(
            (centroid[0].as_f64().expect("x") - x).abs() < 1e-9
                && (centroid[1].as_f64().expect("y") - y).abs() < 1e-9,
            "{name:?}: centroid {centroid} against [{x}, {y}]"
        );
    }
    // Antarctica's first polygon is a zero-area shell along the bottom edge with the land as
    // its "hole" (one of the file's three invalid geometries): `geo` weighs it as a line, the
    // shoelace by the hole's area. Its hull is checked above; no other feature is skipped.
    assert_eq!(degenerate, [Some(json!("Antarctica"))]);
    // The hulls cover at least the land itself (REFERENCE.json: 1.224e14 m² by pyproj).
    assert!(total_hull_area > 1.224e14, "{total_hull_area}");
}

/// The example worker as a user runs it: an upload to the emulator's S3 is processed by the
/// service with the hull processor, its outcome holds the FeatureCollection as `result`, a
/// file past the feature cap gets a `too_many_features` error outcome, and the queue drains.
#[tokio::test]
async fn an_s3_upload_becomes_a_feature_collection_of_hulls() {
    let stack = Stack::new(StackOptions::default()).await;
    stack.enable_notifications().await;
    let config = stack.config();
    let geobatch_worker::config::Processor::Analysis(options) = &config.processor else {
        panic!("the built-in analysis is configured");
    };
    let processor = Arc::new(hull::Hulls {
        options: options.clone(),
        max_features: 4,
    });
    let worker = RunningWorker::start_with_processor(&stack, config, processor);
    let etag = stack.put("shapes.geojson", SHAPES).await;
    let five = SHAPES.replacen(r#"{"type": "Feature", "properties": {}, "geometry": null}"#,
        r#"{"type": "Feature", "properties": {}, "geometry": null}, {"type": "Feature", "properties": {}, "geometry": null}"#, 1);
    stack.put("five.geojson", &five).await;

    let outcome = stack
        .wait_output(&stack.outcome_key("shapes.geojson"))
        .await;
    assert_eq!(outcome["status"], "ok", "{outcome}");
    assert_eq!(outcome["source"]["etag"], etag.as_str());
    assert!(outcome.get("analysis").is_none(), "{outcome}");
    let result = &outcome["result"];
    assert_eq!(result["type"], "FeatureCollection");
    assert_eq!(result["features"].as_array().map(Vec::len), Some(4));
    assert_eq!(result["features"][0]["properties"]["hull_vertices"], 4);
    assert_eq!(
        result["features"][0]["geometry"]["coordinates"],
        json!([0.5, 0.5])
    );

    let refused = stack.wait_output(&stack.outcome_key("five.geojson")).await;
    assert_eq!(refused["status"], "error", "{refused}");
    assert_eq!(refused["error"]["kind"], "too_many_features");
    stack.wait_drained().await;
    worker.stop().await;
}
