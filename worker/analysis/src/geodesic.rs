//! Geodesic area, perimeter and length on the WGS84 ellipsoid (Karney's algorithms: the
//! per-edge kernel of `edge`, with `geographiclib-rs` for the edges outside its domain).
//!
//! Positions are `[longitude, latitude]` in degrees, as in GeoJSON.
//!
//! ```
//! use geobatch_analysis::geodesic;
//!
//! // A one-degree square at the equator, clockwise: winding does not change the area.
//! let ring = [[0.0, 0.0], [0.0, 1.0], [1.0, 1.0], [1.0, 0.0], [0.0, 0.0]];
//! let (perimeter_m, area_m2) = geodesic::ring_perimeter_area(&ring);
//! assert!((perimeter_m - 443_770.917).abs() < 1e-3);
//! assert!((area_m2 - 12_308_778_361.469).abs() < 1e-2);
//!
//! // One degree of longitude along the equator is a * pi / 180.
//! let length_m = geodesic::line_length(&[[0.0, 0.0], [1.0, 0.0]]);
//! assert!((length_m - 6_378_137.0 * std::f64::consts::PI / 180.0).abs() < 1e-6);
//! ```
//!
//! A polygon's area is |exterior| minus the sum of |holes|, whatever the rings' winding:
//! many real files wind outer rings clockwise, and a winding-dependent area would report
//! the rest of the planet for them. Each ring's area and perimeter come from one pass over
//! its edges (one inverse geodesic problem per edge).

use std::sync::LazyLock;

use geographiclib_rs::Geodesic;

use super::edge::{self, EdgeTerms, Kernel};
use super::geometry::{Geometry, GeometryType, Xy};

/// The WGS84 ellipsoid's constants and series coefficients, computed once per process.
static WGS84: LazyLock<Kernel> = LazyLock::new(|| Kernel::new(Geodesic::wgs84()));

/// Geodesic figures of one geometry, in metres and square metres.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(crate) struct Measures {
    pub(crate) area_m2: f64,
    pub(crate) perimeter_m: f64,
    pub(crate) length_m: f64,
    /// Whether some positions were off the ellipsoid (|latitude| > 90 or not finite), so
    /// the lines or rings holding them were left out of the figures.
    pub(crate) skipped: bool,
}

/// Rings and lines with at least this many edges are measured by `helpers` extra threads as
/// well: one such geometry (a country's coastline, tens of MB) would otherwise keep one core
/// busy while the others wait for it.
const PARALLEL_EDGES: usize = 1 << 16;
/// Edges one thread evaluates per round of a parallel ring.
const CHUNK_EDGES: usize = 1 << 14;

/// Computes the figures of `geometry`, with up to `helpers` extra threads for its largest
/// rings and lines. Sums run in file order, edge by edge, so the figures are the same
/// (bit for bit) whatever the input's split among threads and whatever `helpers`.
pub(crate) fn measure(geometry: &Geometry, helpers: usize) -> Measures {
    let mut measures = Measures::default();
    add(geometry, helpers, &mut measures);
    measures
}

fn add(geometry: &Geometry, helpers: usize, out: &mut Measures) {
    match geometry.kind {
        GeometryType::Point | GeometryType::MultiPoint => {}
        GeometryType::LineString | GeometryType::MultiLineString => {
            for index in 0..geometry.line_ends.len() {
                let line = geometry.line(index);
                if on_ellipsoid(line) {
                    out.length_m += sum_edges(line, false, helpers).distance;
                } else {
                    out.skipped = true;
                }
            }
        }
        GeometryType::Polygon | GeometryType::MultiPolygon => {
            for part in 0..geometry.part_ends.len() {
                for (position, ring_index) in geometry.part(part).enumerate() {
                    let ring = geometry.line(ring_index);
                    if !on_ellipsoid(ring) {
                        out.skipped = true;
                        continue;
                    }
                    let (perimeter, area) = ring_figures(ring, helpers);
                    out.perimeter_m += perimeter;
                    if position == 0 {
                        out.area_m2 += area;
                    } else {
                        out.area_m2 -= area;
                    }
                }
            }
        }
        GeometryType::GeometryCollection => {
            for member in &geometry.members {
                add(member, helpers, out);
            }
        }
    }
}

fn on_ellipsoid(points: &[Xy]) -> bool {
    points
        .iter()
        .all(|&[x, y]| x.is_finite() && y.is_finite() && (-90.0..=90.0).contains(&y))
}

/// Perimeter (m) and unsigned area (m²) of a ring of `[longitude, latitude]` positions,
/// closed implicitly (a repeated closing position is not an extra edge). Latitudes must be
/// within ±90°.
pub fn ring_perimeter_area(ring: &[[f64; 2]]) -> (f64, f64) {
    ring_figures(ring, 0)
}

/// Geodesic length (m) of a line of `[longitude, latitude]` positions.
pub fn line_length(line: &[[f64; 2]]) -> f64 {
    sum_edges(line, false, 0).distance
}

fn ring_figures(ring: &[Xy], helpers: usize) -> (f64, f64) {
    let open = match ring {
        [first, .., last] if first == last => &ring[..ring.len() - 1],
        _ => ring,
    };
    if open.len() < 2 {
        return (0.0, 0.0);
    }
    let sums = sum_edges(open, true, helpers);
    // Counter-clockwise positive and reduced to (-planet/2, planet/2], as `geographiclib`'s
    // PolygonArea does, so a clockwise ring gives minus its area rather than the planet
    // minus it.
    let planet = WGS84.planet_area();
    let mut area = sums.area % planet;
    if sums.crossings % 2 != 0 {
        area += if area < 0.0 {
            planet / 2.0
        } else {
            -planet / 2.0
        };
    }
    area = -area;
    if area > planet / 2.0 {
        area -= planet;
    } else if area <= -planet / 2.0 {
        area += planet;
    }
    (sums.distance, area.abs())
}

/// Sums over the edges of a line, or of a ring (`closed`: with the edge from the last
/// position back to the first).
#[derive(Debug, Default, PartialEq)]
struct EdgeSums {
    distance: f64,
    area: f64,
    /// Prime-meridian crossings, for a ring's pole test.
    crossings: i64,
}

fn sum_edges(points: &[Xy], closed: bool, helpers: usize) -> EdgeSums {
    let edges = if closed {
        points.len()
    } else {
        points.len().saturating_sub(1)
    };
    let mut sums = EdgeSums::default();
    let end = |index: usize| points[(index + 1) % points.len()];
    if helpers == 0 || edges < PARALLEL_EDGES {
        for_each_edge(points, 0..edges, |start, end, terms| {
            sums.distance += terms.distance;
            sums.area += terms.area;
            sums.crossings += edge::transit(start.lon(), end.lon());
        });
        return sums;
    }
    // Rounds of `helpers + 1` consecutive chunks: each thread evaluates one chunk's edges
    // into its buffer, then the buffers are summed here in edge order.
    let evaluate = |range: std::ops::Range<usize>, out: &mut Vec<EdgeTerms>| {
        out.clear();
        for_each_edge(points, range, |_, _, terms| out.push(terms));
    };
    let mut buffers: Vec<Vec<EdgeTerms>> = (0..=helpers)
        .map(|_| Vec::with_capacity(CHUNK_EDGES))
        .collect();
    let mut start = 0;
    while start < edges {
        let ranges: Vec<_> = (0..=helpers)
            .map(|k| {
                let from = (start + k * CHUNK_EDGES).min(edges);
                from..(from + CHUNK_EDGES).min(edges)
            })
            .collect();
        buffers.iter_mut().for_each(Vec::clear);
        std::thread::scope(|scope| {
            let (own, others) = buffers.split_at_mut(1);
            for (buffer, range) in others.iter_mut().zip(&ranges[1..]) {
                let range = range.clone();
                // A thread that cannot be had leaves its buffer empty (filled below).
                let _ = std::thread::Builder::new()
                    .name("analysis-edges".into())
                    .spawn_scoped(scope, move || evaluate(range, buffer));
            }
            evaluate(ranges[0].clone(), &mut own[0]);
        });
        for (buffer, range) in buffers.iter_mut().zip(&ranges) {
            if buffer.len() != range.len() {
                evaluate(range.clone(), buffer);
            }
        }
        for (buffer, range) in buffers.iter().zip(&ranges) {
            for (terms, index) in buffer.iter().zip(range.clone()) {
                sums.distance += terms.distance;
                sums.area += terms.area;
                sums.crossings += edge::transit(points[index][0], end(index)[0]);
            }
        }
        start = ranges[helpers].end;
    }
    sums
}

/// Calls `each` with the ends and terms of the edges `range` of `points` (edge `i` runs
/// from position `i` to the next, the last back to the first), in order. Edges are
/// computed two at a time ([`Kernel::edge_pair`]) and each vertex's trigonometry once.
fn for_each_edge(
    points: &[Xy],
    range: std::ops::Range<usize>,
    mut each: impl FnMut(&edge::Vertex, &edge::Vertex, EdgeTerms),
) {
    let kernel = &*WGS84;
    let vertex = |index: usize| {
        let [lon, lat] = points[index % points.len()];
        kernel.vertex(lat, lon)
    };
    if range.is_empty() {
        return;
    }
    let mut start = vertex(range.start);
    let mut index = range.start;
    while index + 2 <= range.end {
        let middle = vertex(index + 1);
        let end = vertex(index + 2);
        let [first, second] = kernel.edge_pair([&start, &middle], [&middle, &end]);
        each(&start, &middle, first);
        each(&middle, &end, second);
        start = end;
        index += 2;
    }
    if index < range.end {
        let end = vertex(index + 1);
        each(&start, &end, kernel.edge_between(&start, &end));
    }
}

#[cfg(test)]
mod test {
    use geographiclib_rs::{PolygonArea, Winding};
    use proptest::prelude::*;

    use super::*;

    /// `geographiclib`'s own polygon area of `ring`, as the engine computed it before the
    /// kernel: the reference the kernel must reproduce.
    fn library_ring(ring: &[Xy]) -> (f64, f64) {
        let open = &ring[..ring.len() - 1];
        let geodesic = Geodesic::wgs84();
        let mut polygon = PolygonArea::new(&geodesic, Winding::CounterClockwise);
        for &[lon, lat] in open {
            polygon.add_point(lat, lon);
        }
        let (perimeter, area, _) = polygon.compute(true);
        (perimeter, area.abs())
    }

    proptest! {
        /// Star-shaped rings of any size, anywhere: around a pole, across the antimeridian,
        /// from a building to a continent.
        #[test]
        fn rings_match_the_library(
            lon in -180f64..180.0,
            lat in -90f64..90.0,
            radius in prop::sample::select(vec![1e-5, 1e-3, 0.05, 1.0, 10.0, 40.0]),
            wobble in prop::collection::vec(0.6f64..1.0, 3..60),
            clockwise in any::<bool>(),
        ) {
            let n = wobble.len();
            let mut ring: Vec<Xy> = wobble
                .iter()
                .enumerate()
                .map(|(i, r)| {
                    let angle = std::f64::consts::TAU * i as f64 / n as f64;
                    let x = lon + radius * r * angle.cos();
                    let y = (lat + radius * r * angle.sin()).clamp(-90.0, 90.0);
                    [if x > 180.0 { x - 360.0 } else if x < -180.0 { x + 360.0 } else { x }, y]
                })
                .collect();
            if clockwise {
                ring.reverse();
            }
            ring.push(ring[0]);
            let (perimeter, area) = ring_perimeter_area(&ring);
            let (expected_perimeter, expected_area) = library_ring(&ring);
            prop_assert!(
                (perimeter - expected_perimeter).abs() <= 1e-13 * expected_perimeter + 1e-8 * n as f64,
                "perimeter {perimeter} vs {expected_perimeter}"
            );
            prop_assert!(
                (area - expected_area).abs() <= 1e-12 * expected_area + 1e-4 * n as f64,
                "area {area} vs {expected_area}"
            );
        }
    }

    fn square(clockwise: bool) -> Vec<Xy> {
        let mut ring = vec![[0.0, 0.0], [1.0, 0.0], [1.0, 1.0], [0.0, 1.0], [0.0, 0.0]];
        if clockwise {
            ring.reverse();
        }
        ring
    }

    #[test]
    fn one_degree_square_matches_geographiclib() {
        // GeographicLib's own figures for this square (Planimeter, WGS84).
        for clockwise in [false, true] {
            let (perimeter, area) = ring_perimeter_area(&square(clockwise));
            assert!(
                (perimeter - 443_770.917_248_302).abs() < 1e-6,
                "{perimeter}"
            );
            assert!((area - 12_308_778_361.469_452).abs() < 1e-3, "{area}");
        }
    }

    #[test]
    fn holes_are_subtracted_whatever_their_winding() {
        let mut polygon = Geometry::new(GeometryType::Polygon);
        let shell: Vec<Xy> = square(true)
            .iter()
            .map(|&[x, y]| [x * 4.0, y * 4.0])
            .collect();
        polygon.points.extend(&shell);
        polygon.line_ends.push(polygon.points.len());
        for clockwise in [false, true] {
            polygon
                .points
                .extend(square(clockwise).iter().map(|&[x, y]| [x + 1.0, y + 1.0]));
            polygon.line_ends.push(polygon.points.len());
        }
        polygon.part_ends.push(polygon.line_ends.len());
        let measures = measure(&polygon, 0);
        let (_, shell_area) = ring_perimeter_area(&shell);
        let (_, hole_area) = ring_perimeter_area(
            &square(false)
                .iter()
                .map(|&[x, y]| [x + 1.0, y + 1.0])
                .collect::<Vec<_>>(),
        );
        assert!((measures.area_m2 - (shell_area - 2.0 * hole_area)).abs() < 1e-3);
        assert!(!measures.skipped);
    }

    #[test]
    fn huge_rings_and_lines_give_the_same_bits_on_any_number_of_threads() {
        // A ring of 100 001 edges around a point, crossing the antimeridian, plus its line.
        let n = 100_001;
        let ring: Vec<Xy> = (0..n)
            .map(|i| {
                let angle = std::f64::consts::TAU * i as f64 / n as f64;
                let x = 179.5 + 2.0 * angle.cos();
                [if x > 180.0 { x - 360.0 } else { x }, 60.0 + angle.sin()]
            })
            .collect();
        let serial = sum_edges(&ring, true, 0);
        assert!(serial.distance > 0.0 && serial.area != 0.0);
        for helpers in [1, 2, 5] {
            assert_eq!(sum_edges(&ring, true, helpers), serial, "{helpers} helpers");
            assert_eq!(
                sum_edges(&ring, false, helpers),
                sum_edges(&ring, false, 0),
                "{helpers} helpers, open line"
            );
        }
        let (perimeter, area) = ring_figures(&ring, 3);
        let (expected_perimeter, expected_area) = library_ring(&[&ring[..], &ring[..1]].concat());
        assert!((perimeter - expected_perimeter).abs() <= 1e-12 * expected_perimeter);
        assert!((area - expected_area).abs() <= 1e-10 * expected_area);
    }

    #[test]
    fn latitudes_off_the_ellipsoid_are_skipped_not_nan() {
        let mut line = Geometry::new(GeometryType::LineString);
        line.points = vec![[0.0, 0.0], [3_000_000.0, 6_000_000.0]];
        line.line_ends.push(2);
        let measures = measure(&line, 0);
        assert!(measures.skipped);
        assert_eq!(measures.length_m, 0.0);
    }

    #[test]
    fn line_length_along_the_equator() {
        let mut line = Geometry::new(GeometryType::LineString);
        line.points = vec![[0.0, 0.0], [1.0, 0.0], [2.0, 0.0]];
        line.line_ends.push(3);
        // One degree of longitude on the WGS84 equator: a * pi / 180.
        let expected = 2.0 * 6_378_137.0 * std::f64::consts::PI / 180.0;
        assert!((measure(&line, 0).length_m - expected).abs() < 1e-6);
    }
}
