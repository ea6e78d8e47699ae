//! The hull worker's analysis of one feature, with `geo`: the convex hull (distinct
//! vertices, geodesic area) and the centroid, and the GeoJSON row that carries them.
//!
//! Pure and worker-free, so the analysis crate's `georust` benchmark measures exactly this
//! next to the built-in report (`make bench-geo`).

use geo::{Centroid, ConvexHull, GeodesicArea};
use geobatch_analysis::georust::Feature;
use geojson::JsonObject;
use geojson::feature::Id;

/// The figures of one feature.
#[derive(Debug, Clone, PartialEq)]
pub struct HullFigures {
    /// Index of the feature in the file, from 0.
    pub index: u64,
    /// The feature's `id`, when it has one.
    pub id: Option<Id>,
    /// Distinct vertices of the convex hull (a ring's closing position not counted): 0 for
    /// a null or empty geometry, 1 for a point, 2 for collinear positions.
    pub hull_vertices: usize,
    /// Geodesic (WGS84) area of the convex hull, m²: the smaller of the two regions its ring
    /// bounds. The hull is taken in the longitude/latitude plane, as `geo` does; 0 when it
    /// has no area.
    pub hull_area_m2: f64,
    /// `geo`'s centroid, in longitude/latitude degrees (planar, weighted by area, then
    /// length, then count, by the geometry's highest dimension); `None` for a null or empty
    /// geometry.
    pub centroid: Option<[f64; 2]>,
}

/// The figures of `feature`; runs on the analysis threads, many features at once.
pub fn figures(feature: Feature) -> HullFigures {
    let (hull_vertices, hull_area_m2, centroid) = match &feature.geometry {
        None => (0, 0.0, None),
        Some(geometry) => {
            let hull = geometry.convex_hull();
            let ring = &hull.exterior().0;
            let closed = ring.len() > 1 && ring.first() == ring.last();
            let vertices = ring.len() - usize::from(closed);
            // Signed area is within half the ellipsoid either way round, so its magnitude is
            // the smaller of the two regions the ring bounds: a hull around a pole or across
            // the antimeridian (planar in longitude and latitude) is not "the rest of the
            // planet". The built-in analysis measures rings the same way.
            let area = if vertices >= 3 {
                hull.geodesic_area_signed().abs()
            } else {
                0.0
            };
            (vertices, area, geometry.centroid().map(|c| [c.x(), c.y()]))
        }
    };
    HullFigures {
        index: feature.index,
        id: feature.id,
        hull_vertices,
        hull_area_m2,
        centroid,
    }
}

impl HullFigures {
    /// The figures as a GeoJSON Feature: the centroid as its Point (null when there is
    /// none), the feature's `id`, and `feature`, `hull_vertices`, `hull_area_m2` as
    /// properties.
    pub fn into_geojson(self) -> geojson::Feature {
        let mut properties = JsonObject::new();
        properties.insert("feature".into(), self.index.into());
        properties.insert("hull_vertices".into(), self.hull_vertices.into());
        properties.insert("hull_area_m2".into(), self.hull_area_m2.into());
        geojson::Feature {
            geometry: self.centroid.map(geojson::Geometry::new_point),
            id: self.id,
            properties: Some(properties),
            ..geojson::Feature::default()
        }
    }
}
