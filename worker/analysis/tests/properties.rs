//! Property tests of the analysis: invariants that must hold for any polygon or input.

use geobatch_analysis::{AnalysisOptions, Report, analyze_reader};
use proptest::prelude::*;

fn analyze(text: &str, threads: usize) -> Report {
    let options = AnalysisOptions {
        threads,
        ..AnalysisOptions::default()
    };
    analyze_reader(text.as_bytes(), &options).unwrap_or_else(|err| panic!("{err}: {text}"))
}

fn ring_json(ring: &[[f64; 2]]) -> String {
    let positions: Vec<String> = ring.iter().map(|[x, y]| format!("[{x},{y}]")).collect();
    format!("[{}]", positions.join(","))
}

fn polygon_feature(rings: &[Vec<[f64; 2]>]) -> String {
    let rings: Vec<String> = rings.iter().map(|r| ring_json(r)).collect();
    format!(
        r#"{{"type":"Feature","properties":{{}},"geometry":{{"type":"Polygon","coordinates":[{}]}}}}"#,
        rings.join(",")
    )
}

/// A closed star-shaped (hence simple) ring around `center`.
fn star(center: [f64; 2], radius: f64, spokes: &[(f64, f64)]) -> Vec<[f64; 2]> {
    let mut ring: Vec<[f64; 2]> = spokes
        .iter()
        .map(|&(angle, scale)| {
            let r = radius * scale;
            [center[0] + r * angle.cos(), center[1] + r * angle.sin()]
        })
        .collect();
    ring.push(ring[0]);
    ring
}

fn spokes() -> impl Strategy<Value = Vec<(f64, f64)>> {
    (3usize..60).prop_flat_map(|n| {
        prop::collection::vec(0.5f64..1.0, n).prop_map(move |scales| {
            scales
                .into_iter()
                .enumerate()
                .map(|(i, scale)| (std::f64::consts::TAU * i as f64 / n as f64, scale))
                .collect()
        })
    })
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9 * a.abs().max(b.abs()) + 1e-6
}

/// Rotating a closed ring's start: drop the closing position, rotate, close again.
fn rotate(ring: &[[f64; 2]], by: usize) -> Vec<[f64; 2]> {
    let open = &ring[..ring.len() - 1];
    let by = by % open.len();
    let mut rotated: Vec<[f64; 2]> = open[by..].iter().chain(&open[..by]).copied().collect();
    rotated.push(rotated[0]);
    rotated
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn area_ignores_winding_start_vertex_and_hole_order(
        lon in -170.0f64..170.0,
        lat in -75.0f64..75.0,
        radius in 0.01f64..5.0,
        shell in spokes(),
        holes in prop::collection::vec(spokes(), 0..3),
        start in 0usize..64,
    ) {
        let shell_ring = star([lon, lat], radius, &shell);
        // Holes sit in disjoint sectors well inside the shell's inner radius (0.5).
        let hole_rings: Vec<Vec<[f64; 2]>> = holes
            .iter()
            .enumerate()
            .map(|(i, spokes)| {
                let angle = std::f64::consts::TAU * i as f64 / 3.0;
                let center = [lon + 0.3 * radius * angle.cos(), lat + 0.3 * radius * angle.sin()];
                star(center, 0.1 * radius, spokes)
            })
            .collect();
        let mut rings = vec![shell_ring.clone()];
        rings.extend(hole_rings.iter().cloned());
        let base = analyze(&polygon_feature(&rings), 1);
        prop_assert_eq!(base.invalid_geometries, 0, "generated polygon is valid: {:?}", base.invalid);
        prop_assert!(base.geodesic_area_m2 > 0.0);

        let reversed: Vec<Vec<[f64; 2]>> = rings.iter().map(|r| r.iter().rev().copied().collect()).collect();
        let rotated: Vec<Vec<[f64; 2]>> = rings.iter().map(|r| rotate(r, start)).collect();
        let mut reordered = vec![shell_ring];
        reordered.extend(hole_rings.into_iter().rev());
        for variant in [reversed, rotated, reordered] {
            let other = analyze(&polygon_feature(&variant), 1);
            prop_assert!(close(base.geodesic_area_m2, other.geodesic_area_m2),
                "{} vs {}", base.geodesic_area_m2, other.geodesic_area_m2);
            prop_assert!(close(base.geodesic_perimeter_m, other.geodesic_perimeter_m));
            prop_assert_eq!(other.invalid_geometries, 0);
        }
    }

    #[test]
    fn bbox_is_the_tight_box_of_every_vertex(
        points in prop::collection::vec((-180.0f64..180.0, -90.0f64..90.0), 1..200),
        as_line in any::<bool>(),
    ) {
        let positions: Vec<[f64; 2]> = points.iter().map(|&(x, y)| [x, y]).collect();
        let kind = if as_line && positions.len() >= 2 { "LineString" } else { "MultiPoint" };
        let text = format!(r#"{{"type":"{kind}","coordinates":{}}}"#, ring_json(&positions));
        let report = analyze(&text, 2);
        let bbox = report.bbox.expect("a bbox");
        for &[x, y] in &positions {
            prop_assert!(bbox[0] <= x && x <= bbox[2] && bbox[1] <= y && y <= bbox[3]);
        }
        let min_x = positions.iter().map(|p| p[0]).fold(f64::INFINITY, f64::min);
        let max_y = positions.iter().map(|p| p[1]).fold(f64::NEG_INFINITY, f64::max);
        prop_assert_eq!((bbox[0], bbox[3]), (min_x, max_y));
        prop_assert_eq!(report.vertices, positions.len() as u64);
    }

    #[test]
    fn reports_do_not_depend_on_thread_count(
        features in prop::collection::vec((-170.0f64..170.0, -80.0f64..80.0, 0.001f64..2.0, spokes()), 1..40),
        threads in 2usize..6,
    ) {
        let texts: Vec<String> = features
            .iter()
            .map(|(lon, lat, radius, spokes)| polygon_feature(&[star([*lon, *lat], *radius, spokes)]))
            .collect();
        let text = format!(r#"{{"type":"FeatureCollection","features":[{}]}}"#, texts.join(","));
        let one = serde_json::to_string(&analyze(&text, 1)).expect("serialize");
        let many = serde_json::to_string(&analyze(&text, threads)).expect("serialize");
        prop_assert_eq!(one, many);
    }

    /// Corrupting a valid document anywhere gives a report or an error, never a panic or hang.
    #[test]
    fn corrupted_input_never_panics(
        edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
        cut in any::<prop::sample::Index>(),
        truncate in any::<bool>(),
    ) {
        let mut bytes = br#"{"type":"FeatureCollection","bbox":[0,0,1,1],"features":[{"type":"Feature","id":"a","properties":{"n":[1,{"b":null}],"s":"x\u00e9"},"geometry":{"type":"MultiPolygon","coordinates":[[[[0,0],[1,0],[1,1],[0,1],[0,0]],[[0.2,0.2],[0.4,0.2],[0.4,0.4],[0.2,0.2]]]]}},{"type":"Feature","geometry":{"type":"GeometryCollection","geometries":[{"type":"LineString","coordinates":[[0,0,1],[1,1,2]]}]},"properties":null}]}"#.to_vec();
        for (index, byte) in edits {
            let at = index.index(bytes.len());
            bytes[at] = byte;
        }
        if truncate {
            bytes.truncate(cut.index(bytes.len()));
        }
        let _ = analyze_reader(&bytes[..], &AnalysisOptions::default());
    }
}
