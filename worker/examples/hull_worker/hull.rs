//! The hull worker's processor: per feature, the convex hull (its geodesic area and vertex
//! count) and the centroid, computed with `geo` on every feature of the file as the
//! analysis library streams it (`georust::for_each_feature_until`), and written as a GeoJSON
//! FeatureCollection with `geojson`.
//!
//! This file is the whole of what a user writes to plug an analysis of their own into the
//! worker; `main.rs` only parses the flags. `worker/tests/hull_worker.rs` includes it too.

use std::path::Path;

use geo::{Centroid, ConvexHull, GeodesicArea};
use geobatch_analysis::georust::{Feature, for_each_feature_until};
use geobatch_analysis::{AnalysisOptions, Stop};
use geobatch_worker::kind::ErrorKind;
use geobatch_worker::processor::{
    Input, ProcessError, Processing, Processor, analysis_error, run_blocking,
};
use geobatch_worker::results::{ErrorDetail, Outcome};
use geojson::feature::Id;
use geojson::{FeatureCollection, JsonObject};

/// Default of `--hull-max-features`: the result holds one GeoJSON Feature per input feature
/// (about 200 bytes of JSON, a few times that in memory), so the cap bounds the memory the
/// result takes, as `--max-feature-bytes` bounds what one feature takes.
pub const DEFAULT_MAX_FEATURES: u64 = 100_000;

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

/// The hulls and centroids of every feature of the GeoJSON file at `path`, in file order.
///
/// Bad input fails exactly as in the built-in analysis (same kinds and offsets); a file of
/// more than `max_features` features is refused with kind `too_many_features` as soon as
/// the count passes it, so the result never grows past the cap.
pub fn hulls(
    path: &Path,
    options: &AnalysisOptions,
    max_features: u64,
    stop: &Stop,
) -> Result<FeatureCollection, ProcessError> {
    let file = std::fs::File::open(path).map_err(|err| {
        ProcessError::Transient(format!(
            "cannot open the download {}: {err}",
            path.display()
        ))
    })?;
    let mut features = Vec::new();
    let mut too_many = false;
    let analysis = |feature: Feature| figures(feature).into_geojson();
    let streamed = for_each_feature_until(file, options, stop, &analysis, |feature| {
        if features.len() as u64 == max_features {
            too_many = true;
            stop.cancel();
        } else if !too_many {
            features.push(feature);
        }
    });
    if too_many {
        return Err(ProcessError::Permanent(ErrorDetail::new(
            ErrorKind::Custom("too_many_features"),
            format!(
                "the file has more than {max_features} features (--hull-max-features): the result would hold one row for each"
            ),
        )));
    }
    streamed.map_err(analysis_error)?;
    Ok(FeatureCollection::new(features))
}

/// The hull worker's [`Processor`]: [`hulls`] on a blocking thread, the FeatureCollection
/// written as the outcome's `result`.
#[derive(Debug, Clone)]
pub struct Hulls {
    /// Limits and threads per file: the worker's (`--max-feature-bytes`,
    /// `--max-analysis-time`, `--concurrency`), so the file is read as the built-in
    /// analysis would read it.
    pub options: AnalysisOptions,
    /// Most features a file may have.
    pub max_features: u64,
}

impl Processor for Hulls {
    fn process(&self, input: Input) -> Processing<'_> {
        let (options, max_features) = (self.options.clone(), self.max_features);
        Box::pin(async move {
            let collection = run_blocking(move |stop| {
                let collection = hulls(&input.file.path, &options, max_features, stop);
                // The download goes once it is read, even if nobody waits any more.
                drop(input);
                collection
            })
            .await??;
            serde_json::to_value(&collection)
                .map(Outcome::Result)
                .map_err(|err| ProcessError::Transient(format!("cannot encode the result: {err}")))
        })
    }
}
