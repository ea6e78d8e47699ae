//! The analysis at the georust edge (cargo feature `geo`): each feature of a stream handed to
//! a user's analysis as a [`geo::Geometry`] with its properties (`geojson`'s [`JsonObject`]),
//! and geometry outputs written as GeoJSON with `geojson`.
//!
//! The reading is the engine's own: the same splitter, byte parser, limits and bounded
//! queues, the same thread pool, so any `geo` algorithm runs on a file of any size in memory
//! bounded by [`AnalysisOptions`]. Results come back to the caller in input order.
//!
//! ```
//! use geo::{Area, Centroid};
//! use geobatch_analysis::AnalysisOptions;
//! use geobatch_analysis::georust::{Feature, for_each_feature};
//!
//! let geojson = br#"{"type": "FeatureCollection", "features": [
//!   {"type": "Feature", "properties": {"name": "a"},
//!    "geometry": {"type": "Polygon", "coordinates": [[[0, 0], [2, 0], [2, 2], [0, 2], [0, 0]]]}},
//!   {"type": "Feature", "properties": {"name": "b"}, "geometry": null}
//! ]}"#;
//! let mut rows = Vec::new();
//! let count = for_each_feature(
//!     &geojson[..],
//!     &AnalysisOptions::default(),
//!     &|feature: Feature| {
//!         let name = feature.properties.as_ref().and_then(|p| p["name"].as_str().map(str::to_owned));
//!         let centroid = feature.geometry.as_ref().and_then(|g| g.centroid());
//!         let area = feature.geometry.as_ref().map_or(0.0, |g| g.unsigned_area());
//!         (feature.index, name, centroid.map(|c| c.x_y()), area)
//!     },
//!     |row| rows.push(row),
//! )?;
//! assert_eq!(count, 2);
//! assert_eq!(rows[0], (0, Some("a".to_owned()), Some((1.0, 1.0)), 4.0));
//! assert_eq!(rows[1], (1, Some("b".to_owned()), None, 0.0));
//! # Ok::<(), geobatch_analysis::AnalysisError>(())
//! ```

use std::io::Read;

use geojson::feature::Id;
use geojson::{JsonObject, JsonValue};
use serde::Deserialize;

use super::AnalysisOptions;
use super::error::{AnalysisError, ErrorKind};
use super::feature::{self, Shape};
use super::geometry::{Geometry, GeometryType, Xy};
use super::pipeline;
use super::report::Report;
use super::splitter::Batch;
use super::stop::Stop;

/// One feature of the input, as a user's analysis sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct Feature {
    /// Index of the feature in the input, from 0.
    pub index: u64,
    /// The feature's `id`, when it is a string or a number.
    pub id: Option<Id>,
    /// `None` for a null (or absent) geometry. Positions keep longitude and latitude (x, y);
    /// further ordinates are dropped, as in the built-in analysis.
    pub geometry: Option<geo::Geometry<f64>>,
    /// The feature's `properties`; `None` when null or absent (and for a bare geometry).
    pub properties: Option<JsonObject>,
}

/// A user's analysis of one feature. It runs on the analysis threads, many features at once,
/// so it takes `&self`; its outputs reach the caller in input order.
///
/// Any `Fn(Feature) -> T + Sync` closure is one.
pub trait FeatureAnalysis: Sync {
    /// What the analysis makes of one feature.
    type Output: Send;

    /// Analyses one feature.
    fn analyze(&self, feature: Feature) -> Self::Output;
}

impl<F, T> FeatureAnalysis for F
where
    F: Fn(Feature) -> T + Sync,
    T: Send,
{
    type Output = T;

    fn analyze(&self, feature: Feature) -> T {
        self(feature)
    }
}

/// Streams `input`, runs `analysis` on every feature in parallel (`options.threads`), and
/// hands each output to `each` on the calling thread, in input order. Returns the number of
/// features.
///
/// The input is checked exactly as by [`crate::analyze_reader`] (same errors, kinds and
/// offsets, same limits); at most a bounded number of batches, and so of outputs, are in
/// flight at once.
pub fn for_each_feature<R, A>(
    input: R,
    options: &AnalysisOptions,
    analysis: &A,
    each: impl FnMut(A::Output),
) -> Result<u64, AnalysisError>
where
    R: Read + Send,
    A: FeatureAnalysis,
{
    for_each_feature_until(input, options, &Stop::new(), analysis, each)
}

/// [`for_each_feature`] that ends early, with [`ErrorKind::Cancelled`], once `stop` is
/// cancelled from another thread (a worker handing the file back at shutdown): the stop is
/// checked between batches, so it ends within one batch (about 1 MiB of input) of the
/// user's analysis.
pub fn for_each_feature_until<R, A>(
    input: R,
    options: &AnalysisOptions,
    stop: &Stop,
    analysis: &A,
    mut each: impl FnMut(A::Output),
) -> Result<u64, AnalysisError>
where
    R: Read + Send,
    A: FeatureAnalysis,
{
    let mut count = 0;
    pipeline::run_batches(
        input,
        options,
        stop,
        &|batch| analyze_batch(batch, analysis),
        &mut |outputs: Vec<A::Output>| {
            count += outputs.len() as u64;
            outputs.into_iter().for_each(&mut each);
        },
    )?;
    Ok(count)
}

fn analyze_batch<A: FeatureAnalysis>(
    batch: &Batch,
    analysis: &A,
) -> Result<Vec<A::Output>, AnalysisError> {
    let shape = batch.shape.unwrap_or(Shape::Feature);
    let mut outputs = Vec::with_capacity(batch.items.len());
    for (position, (range, offset)) in batch.items.iter().enumerate() {
        let bytes = &batch.data[range.clone()];
        // The properties come from `members` below, as geojson values: none kept here.
        let parsed = feature::parse(bytes, *offset, shape, 0)?;
        let (id, properties) = match shape {
            Shape::Feature => members(bytes, *offset)?,
            Shape::Geometry => (None, None),
        };
        outputs.push(analysis.analyze(Feature {
            index: batch.first_feature + position as u64,
            id,
            geometry: parsed.geometry.as_ref().map(to_geo),
            properties,
        }));
    }
    Ok(outputs)
}

/// The members the engine's parser does not keep, read with serde_json from the feature's
/// bytes (already validated by then); the geometry is skipped, not built.
fn members(bytes: &[u8], offset: u64) -> Result<(Option<Id>, Option<JsonObject>), AnalysisError> {
    #[derive(Deserialize)]
    struct Members {
        #[serde(default)]
        id: Option<JsonValue>,
        #[serde(default)]
        properties: Option<JsonObject>,
    }
    let members: Members = serde_json::from_slice(bytes).map_err(|err| {
        AnalysisError::at(
            ErrorKind::NotGeojson,
            offset,
            format!("a feature's members: {err}"),
        )
    })?;
    let id = match members.id {
        Some(JsonValue::String(text)) => Some(Id::String(text)),
        Some(JsonValue::Number(number)) => Some(Id::Number(number)),
        _ => None,
    };
    Ok((id, members.properties))
}

/// The engine's flat geometry as a `geo` one.
fn to_geo(geometry: &Geometry) -> geo::Geometry<f64> {
    let line = |index: usize| geo::LineString::from(geometry.line(index).to_vec());
    let polygon = |part: usize| {
        let mut rings = geometry.part(part).map(line);
        let exterior = rings
            .next()
            .unwrap_or_else(|| geo::LineString::new(Vec::new()));
        geo::Polygon::new(exterior, rings.collect())
    };
    let point = |&[x, y]: &Xy| geo::Point::new(x, y);
    match geometry.kind {
        GeometryType::Point => match geometry.points.first() {
            Some(position) => geo::Geometry::Point(point(position)),
            None => geo::Geometry::MultiPoint(geo::MultiPoint::new(Vec::new())),
        },
        GeometryType::MultiPoint => geo::Geometry::MultiPoint(geo::MultiPoint::new(
            geometry.points.iter().map(point).collect(),
        )),
        GeometryType::LineString => geo::Geometry::LineString(if geometry.line_ends.is_empty() {
            geo::LineString::new(Vec::new())
        } else {
            line(0)
        }),
        GeometryType::MultiLineString => geo::Geometry::MultiLineString(geo::MultiLineString::new(
            (0..geometry.line_ends.len()).map(line).collect(),
        )),
        GeometryType::Polygon => geo::Geometry::Polygon(if geometry.part_ends.is_empty() {
            geo::Polygon::new(geo::LineString::new(Vec::new()), Vec::new())
        } else {
            polygon(0)
        }),
        GeometryType::MultiPolygon => geo::Geometry::MultiPolygon(geo::MultiPolygon::new(
            (0..geometry.part_ends.len()).map(polygon).collect(),
        )),
        GeometryType::GeometryCollection => geo::Geometry::GeometryCollection(
            geo::GeometryCollection::new_from(geometry.members.iter().map(to_geo).collect()),
        ),
    }
}

/// The report's invalid geometries as GeoJSON: one Point feature per sample with a location,
/// with the feature index, id and GEOS's reason as properties (the map layer of a report).
pub fn invalid_locations(report: &Report) -> geojson::FeatureCollection {
    report
        .invalid
        .iter()
        .filter_map(|sample| {
            let [x, y] = sample.location?;
            let mut properties = JsonObject::new();
            properties.insert("feature".into(), sample.feature.into());
            if let Some(id) = &sample.id {
                properties.insert("id".into(), id.clone());
            }
            properties.insert("reason".into(), sample.reason.clone().into());
            Some(geojson::Feature {
                geometry: Some(geojson::Geometry::new_point([x, y])),
                properties: Some(properties),
                ..geojson::Feature::default()
            })
        })
        .collect()
}

#[cfg(test)]
mod test {
    use geo::{ConvexHull, Validation};

    use super::*;
    use crate::analyze_reader;

    const COLLECTION: &[u8] = br#"{"type": "FeatureCollection", "features": [
      {"type": "Feature", "id": "bow", "properties": {"n": 1, "tags": ["x"]},
       "geometry": {"type": "Polygon", "coordinates": [[[0, 0], [1, 1], [1, 0], [0, 1], [0, 0]]]}},
      {"type": "Feature", "id": 7, "properties": null,
       "geometry": {"type": "MultiPolygon", "coordinates": [
         [[[0, 0], [4, 0], [4, 4], [0, 4], [0, 0]], [[1, 1], [2, 1], [2, 2], [1, 1]]],
         [[[10, 10], [11, 10], [10, 11], [10, 10]]]]}},
      {"type": "Feature", "properties": {},
       "geometry": {"type": "GeometryCollection", "geometries": [
         {"type": "Point", "coordinates": [5, 6, 7]},
         {"type": "MultiLineString", "coordinates": [[[0, 0], [1, 1]], [[2, 2], [3, 3], [4, 2]]]}]}}
    ]}"#;

    fn features(input: &[u8], threads: usize) -> Vec<Feature> {
        let options = AnalysisOptions {
            threads,
            ..AnalysisOptions::default()
        };
        let mut out = Vec::new();
        let count =
            for_each_feature(input, &options, &|f: Feature| f, |f| out.push(f)).expect("valid");
        assert_eq!(count, out.len() as u64);
        out
    }

    #[test]
    fn features_arrive_as_geo_geometries_with_their_members() {
        let all = features(COLLECTION, 2);
        assert_eq!(all.len(), 3);
        assert_eq!(all[0].id, Some(Id::String("bow".into())));
        assert_eq!(all[1].id, Some(Id::Number(7.into())));
        assert_eq!(all[2].id, None);
        let properties = all[0].properties.as_ref().expect("properties");
        assert_eq!(properties["n"], serde_json::json!(1));
        assert_eq!(properties["tags"], serde_json::json!(["x"]));
        assert_eq!(all[1].properties, None);
        assert_eq!(all[2].properties, Some(JsonObject::new()));

        let Some(geo::Geometry::MultiPolygon(parts)) = &all[1].geometry else {
            panic!("a MultiPolygon: {:?}", all[1].geometry);
        };
        assert_eq!(parts.0.len(), 2);
        assert_eq!(parts.0[0].interiors().len(), 1);
        assert_eq!(parts.0[0].exterior().0.len(), 5);
        let hull = parts.convex_hull();
        assert_eq!(hull.exterior().0.len(), 6, "{hull:?}");

        let Some(geo::Geometry::GeometryCollection(members)) = &all[2].geometry else {
            panic!("a GeometryCollection");
        };
        assert_eq!(
            members.0[0],
            geo::Geometry::Point(geo::Point::new(5.0, 6.0))
        );
        let geo::Geometry::MultiLineString(lines) = &members.0[1] else {
            panic!("a MultiLineString");
        };
        assert_eq!(lines.0[1].0.len(), 3);
    }

    #[test]
    fn geo_agrees_with_the_engine_on_validity() {
        let all = features(COLLECTION, 1);
        let report = analyze_reader(COLLECTION, &AnalysisOptions::default()).expect("valid");
        let geo_invalid: Vec<u64> = all
            .iter()
            .filter(|f| f.geometry.as_ref().is_some_and(|g| !g.is_valid()))
            .map(|f| f.index)
            .collect();
        let engine_invalid: Vec<u64> = report.invalid.iter().map(|s| s.feature).collect();
        assert_eq!(geo_invalid, engine_invalid);
    }

    #[test]
    fn outputs_come_in_input_order_whatever_the_threads() {
        let mut text = String::from(r#"{"type":"FeatureCollection","features":["#);
        for i in 0..20_000 {
            if i > 0 {
                text.push(',');
            }
            text.push_str(&format!(
                r#"{{"type":"Feature","properties":{{"i":{i}}},"geometry":{{"type":"Point","coordinates":[{i},0]}}}}"#
            ));
        }
        text.push_str("]}");
        for threads in [1, 3] {
            let all = features(text.as_bytes(), threads);
            assert_eq!(all.len(), 20_000);
            for (i, feature) in all.iter().enumerate() {
                assert_eq!(feature.index, i as u64);
                assert_eq!(
                    feature.geometry,
                    Some(geo::Geometry::Point(geo::Point::new(i as f64, 0.0)))
                );
                assert_eq!(
                    feature.properties.as_ref().map(|p| p["i"].clone()),
                    Some(i.into())
                );
            }
        }
    }

    #[test]
    fn a_cancelled_stop_ends_the_run_before_the_end_of_the_input() {
        let stop = Stop::new();
        let mut text = String::from(r#"{"type":"FeatureCollection","features":["#);
        for i in 0..200_000 {
            if i > 0 {
                text.push(',');
            }
            text.push_str(r#"{"type":"Feature","properties":{},"geometry":{"type":"Point","coordinates":[1,2]}}"#);
        }
        text.push_str("]}");
        let options = AnalysisOptions {
            threads: 1,
            ..AnalysisOptions::default()
        };
        let mut seen = 0u64;
        // The analysis itself asks for the stop at the first feature, as a shutdown would.
        let ended = for_each_feature_until(
            text.as_bytes(),
            &options,
            &stop,
            &|f: Feature| {
                stop.cancel();
                f.index
            },
            |_| seen += 1,
        )
        .expect_err("cancelled");
        assert_eq!(ended.kind, ErrorKind::Cancelled);
        assert!(stop.requested());
        assert!(
            seen < 200_000,
            "the run went on to the end: {seen} features"
        );
    }

    #[test]
    fn bad_input_fails_as_in_the_built_in_analysis() {
        let bad = br#"{"type":"FeatureCollection","features":[{"type":"Feature","properties":{},"geometry":{"type":"Point","coordinates":[1,]}}]}"#;
        let ours = for_each_feature(
            &bad[..],
            &AnalysisOptions::default(),
            &|f: Feature| f.index,
            |_| {},
        )
        .expect_err("invalid");
        let builtin = analyze_reader(&bad[..], &AnalysisOptions::default()).expect_err("invalid");
        assert_eq!((ours.kind, ours.offset), (builtin.kind, builtin.offset));
    }

    #[test]
    fn invalid_locations_are_geojson_points() {
        let report = analyze_reader(COLLECTION, &AnalysisOptions::default()).expect("valid");
        let layer = invalid_locations(&report);
        assert_eq!(layer.features.len(), 1);
        let text = layer.to_string();
        let value: serde_json::Value = serde_json::from_str(&text).expect("GeoJSON text");
        assert_eq!(value["type"], "FeatureCollection");
        let feature = &value["features"][0];
        assert_eq!(feature["geometry"]["type"], "Point");
        assert_eq!(
            feature["geometry"]["coordinates"],
            serde_json::json!([0.5, 0.5])
        );
        assert_eq!(feature["properties"]["id"], "bow");
        assert_eq!(feature["properties"]["reason"], "Self-intersection");
        assert_eq!(feature["properties"]["feature"], 0);
    }
}
