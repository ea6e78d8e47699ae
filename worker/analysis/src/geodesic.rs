//! Geodesic area, perimeter and length on the WGS84 ellipsoid (Karney's algorithms, through
//! `geographiclib-rs`).
//!
//! A polygon's area is |exterior| minus the sum of |holes|, whatever the rings' winding:
//! many real files wind outer rings clockwise, and a winding-dependent area would report
//! the rest of the planet for them. Each ring's area and perimeter come from one pass over
//! its edges (one inverse geodesic problem per edge).

use geographiclib_rs::{Geodesic, InverseGeodesic, PolygonArea, Winding};

use super::geometry::{Geometry, GeometryType, Xy};

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

/// Computes the figures of `geometry`. Sums run in file order, so they do not depend on
/// how the input was split among threads.
pub(crate) fn measure(geodesic: &Geodesic, geometry: &Geometry) -> Measures {
    let mut measures = Measures::default();
    add(geodesic, geometry, &mut measures);
    measures
}

fn add(geodesic: &Geodesic, geometry: &Geometry, out: &mut Measures) {
    match geometry.kind {
        GeometryType::Point | GeometryType::MultiPoint => {}
        GeometryType::LineString | GeometryType::MultiLineString => {
            for index in 0..geometry.line_ends.len() {
                let line = geometry.line(index);
                if on_ellipsoid(line) {
                    out.length_m += line_length(geodesic, line);
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
                    let (perimeter, area) = ring_perimeter_area(geodesic, ring);
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
                add(geodesic, member, out);
            }
        }
    }
}

fn on_ellipsoid(points: &[Xy]) -> bool {
    points
        .iter()
        .all(|&[x, y]| x.is_finite() && y.is_finite() && (-90.0..=90.0).contains(&y))
}

/// Perimeter and unsigned area of a ring, closed implicitly (a repeated closing position is
/// not an extra edge).
pub(crate) fn ring_perimeter_area(geodesic: &Geodesic, ring: &[Xy]) -> (f64, f64) {
    let open = match ring {
        [first, .., last] if first == last => &ring[..ring.len() - 1],
        _ => ring,
    };
    if open.len() < 2 {
        return (0.0, 0.0);
    }
    let mut polygon = PolygonArea::new(geodesic, Winding::CounterClockwise);
    for &[lon, lat] in open {
        polygon.add_point(lat, lon);
    }
    // Signed, so a clockwise ring gives minus its area rather than the planet minus it.
    let (perimeter, area, _) = polygon.compute(true);
    (perimeter, area.abs())
}

fn line_length(geodesic: &Geodesic, line: &[Xy]) -> f64 {
    line.windows(2)
        .map(|pair| {
            let distance: f64 = geodesic.inverse(pair[0][1], pair[0][0], pair[1][1], pair[1][0]);
            distance
        })
        .sum()
}

#[cfg(test)]
mod test {
    use super::*;

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
        let geodesic = Geodesic::wgs84();
        for clockwise in [false, true] {
            let (perimeter, area) = ring_perimeter_area(&geodesic, &square(clockwise));
            assert!(
                (perimeter - 443_770.917_248_302).abs() < 1e-6,
                "{perimeter}"
            );
            assert!((area - 12_308_778_361.469_452).abs() < 1e-3, "{area}");
        }
    }

    #[test]
    fn holes_are_subtracted_whatever_their_winding() {
        let geodesic = Geodesic::wgs84();
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
        let measures = measure(&geodesic, &polygon);
        let (_, shell_area) = ring_perimeter_area(&geodesic, &shell);
        let (_, hole_area) = ring_perimeter_area(
            &geodesic,
            &square(false)
                .iter()
                .map(|&[x, y]| [x + 1.0, y + 1.0])
                .collect::<Vec<_>>(),
        );
        assert!((measures.area_m2 - (shell_area - 2.0 * hole_area)).abs() < 1e-3);
        assert!(!measures.skipped);
    }

    #[test]
    fn latitudes_off_the_ellipsoid_are_skipped_not_nan() {
        let geodesic = Geodesic::wgs84();
        let mut line = Geometry::new(GeometryType::LineString);
        line.points = vec![[0.0, 0.0], [3_000_000.0, 6_000_000.0]];
        line.line_ends.push(2);
        let measures = measure(&geodesic, &line);
        assert!(measures.skipped);
        assert_eq!(measures.length_m, 0.0);
    }

    #[test]
    fn line_length_along_the_equator() {
        let geodesic = Geodesic::wgs84();
        let mut line = Geometry::new(GeometryType::LineString);
        line.points = vec![[0.0, 0.0], [1.0, 0.0], [2.0, 0.0]];
        line.line_ends.push(3);
        // One degree of longitude on the WGS84 equator: a * pi / 180.
        let expected = 2.0 * 6_378_137.0 * std::f64::consts::PI / 180.0;
        assert!((measure(&geodesic, &line).length_m - expected).abs() < 1e-6);
    }
}
