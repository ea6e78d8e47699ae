//! The report of one input, and how per-batch summaries merge into it in feature order.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::geodesic::Measures;
use super::geometry::GeometryType;
use super::json::JsonType;

/// What an analysis found in one input.
///
/// Serialization is deterministic: maps are ordered by key, there are no timestamps, and
/// every sum is taken in feature order with compensated summation, so the same bytes give
/// the same JSON whatever the thread count. `docs/analysis.md` defines each field.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// Bytes read from the input.
    pub bytes: u64,
    /// Number of features (1 for a lone Feature or bare geometry).
    pub features: u64,
    /// Top-level geometry type of each non-null feature, to its count.
    pub geometry_types: BTreeMap<String, u64>,
    /// Features whose geometry is null or absent.
    pub null_geometries: u64,
    /// Positions in all geometries, closing positions of rings included.
    pub vertices: u64,
    /// `[min_lon, min_lat, max_lon, max_lat]` over every position; null with no positions.
    pub bbox: Option<[f64; 4]>,
    /// Sum over polygons of |exterior| − Σ|holes| on WGS84, in m².
    pub geodesic_area_m2: f64,
    /// Sum of the geodesic lengths of all polygon rings, holes included, in m.
    pub geodesic_perimeter_m: f64,
    /// Sum of the geodesic lengths of LineStrings and MultiLineStrings, in m.
    pub geodesic_length_m: f64,
    /// Geometries left (partly) out of the geodesic sums because some position has
    /// |latitude| > 90 — usually a file in projected coordinates, not longitude/latitude.
    pub geodesic_skipped_geometries: u64,
    /// Geometries that break the OGC simple-feature rules.
    pub invalid_geometries: u64,
    /// Geometries whose validity check exceeded its work budget and was not concluded.
    pub unchecked_geometries: u64,
    /// The first invalid geometries, in feature order (at most `max_invalid_samples`).
    pub invalid: Vec<InvalidSample>,
    /// Per property name: how many features carry it and the JSON types of its values.
    pub properties: BTreeMap<String, PropertyStats>,
    /// Property occurrences not tracked because `max_property_names` distinct names had
    /// already been seen (names are tracked in order of first appearance).
    pub untracked_properties: u64,
}

/// One invalid geometry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InvalidSample {
    /// Index of the feature in the input, from 0.
    pub feature: u64,
    /// The feature's `id`, when it has a string or number one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<serde_json::Value>,
    /// Which rule is broken, in GEOS's words.
    pub reason: String,
    /// A position at or near the problem.
    pub location: Option<[f64; 2]>,
}

/// Statistics of one property name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PropertyStats {
    /// Features carrying the property.
    pub features: u64,
    /// JSON type name (`string`, `number`, `boolean`, `null`, `object`, `array`) to count.
    pub types: BTreeMap<String, u64>,
}

/// Per-type counts of one property within a batch.
#[derive(Debug, Clone, Default)]
pub(crate) struct PropertyCounts {
    pub(crate) features: u64,
    pub(crate) types: [u64; 6],
    /// Feature index that last counted, so a repeated key counts its feature once.
    pub(crate) last_feature: Option<u64>,
}

fn type_slot(value_type: JsonType) -> usize {
    value_type as usize
}

const JSON_TYPES: [JsonType; 6] = [
    JsonType::Null,
    JsonType::Boolean,
    JsonType::Number,
    JsonType::String,
    JsonType::Array,
    JsonType::Object,
];

/// What a worker thread found in one batch.
#[derive(Debug, Default)]
pub(crate) struct BatchSummary {
    pub(crate) features: u64,
    pub(crate) null_geometries: u64,
    pub(crate) vertices: u64,
    pub(crate) geometry_types: [u64; 7],
    pub(crate) bbox: Option<[f64; 4]>,
    /// Figures of each non-null feature, in order.
    pub(crate) measures: Vec<Measures>,
    pub(crate) invalid_geometries: u64,
    pub(crate) unchecked_geometries: u64,
    pub(crate) samples: Vec<InvalidSample>,
    /// Property names in order of first appearance in the batch, with their counts: at
    /// most `max_property_names` of them (the report cannot track more).
    pub(crate) properties: Vec<(String, PropertyCounts)>,
    property_index: BTreeMap<String, usize>,
    /// Property occurrences not kept, because the feature or the batch already had
    /// `max_property_names` distinct names.
    pub(crate) untracked_properties: u64,
}

impl BatchSummary {
    pub(crate) fn add_geometry_type(&mut self, kind: GeometryType) {
        self.geometry_types[kind as usize] += 1;
    }

    pub(crate) fn extend_bbox(&mut self, points: &[[f64; 2]]) {
        for &[x, y] in points {
            let b = self.bbox.get_or_insert([x, y, x, y]);
            b[0] = b[0].min(x);
            b[1] = b[1].min(y);
            b[2] = b[2].max(x);
            b[3] = b[3].max(y);
        }
    }

    /// Counts one property of feature `feature`; a name first seen once `max_names` are
    /// tracked is only counted as untracked, so the batch's structures stay within the cap
    /// whatever the input.
    pub(crate) fn add_property(
        &mut self,
        feature: u64,
        name: &str,
        value_type: JsonType,
        max_names: usize,
    ) {
        let index = match self.property_index.get(name) {
            Some(&index) => index,
            None if self.properties.len() >= max_names => {
                self.untracked_properties += 1;
                return;
            }
            None => {
                self.properties
                    .push((name.to_owned(), PropertyCounts::default()));
                self.property_index
                    .insert(name.to_owned(), self.properties.len() - 1);
                self.properties.len() - 1
            }
        };
        let counts = &mut self.properties[index].1;
        if counts.last_feature != Some(feature) {
            counts.features += 1;
            counts.last_feature = Some(feature);
        }
        counts.types[type_slot(value_type)] += 1;
    }
}

/// Neumaier's compensated sum: accurate, and deterministic for a given order of terms.
#[derive(Debug, Clone, Copy, Default)]
struct CompensatedSum {
    sum: f64,
    compensation: f64,
}

impl CompensatedSum {
    fn add(&mut self, value: f64) {
        let total = self.sum + value;
        if self.sum.abs() >= value.abs() {
            self.compensation += (self.sum - total) + value;
        } else {
            self.compensation += (value - total) + self.sum;
        }
        self.sum = total;
    }

    fn value(self) -> f64 {
        self.sum + self.compensation
    }
}

/// Folds batch summaries, taken strictly in input order, into a [`Report`].
pub(crate) struct Merger {
    report: Report,
    geometry_types: [u64; 7],
    area: CompensatedSum,
    perimeter: CompensatedSum,
    length: CompensatedSum,
    max_samples: usize,
    max_property_names: usize,
}

impl Merger {
    pub(crate) fn new(max_samples: usize, max_property_names: usize) -> Self {
        Merger {
            report: Report {
                bytes: 0,
                features: 0,
                geometry_types: BTreeMap::new(),
                null_geometries: 0,
                vertices: 0,
                bbox: None,
                geodesic_area_m2: 0.0,
                geodesic_perimeter_m: 0.0,
                geodesic_length_m: 0.0,
                geodesic_skipped_geometries: 0,
                invalid_geometries: 0,
                unchecked_geometries: 0,
                invalid: Vec::new(),
                properties: BTreeMap::new(),
                untracked_properties: 0,
            },
            geometry_types: [0; 7],
            area: CompensatedSum::default(),
            perimeter: CompensatedSum::default(),
            length: CompensatedSum::default(),
            max_samples,
            max_property_names,
        }
    }

    pub(crate) fn merge(&mut self, batch: BatchSummary) {
        let report = &mut self.report;
        report.features += batch.features;
        report.null_geometries += batch.null_geometries;
        report.vertices += batch.vertices;
        for (total, count) in self.geometry_types.iter_mut().zip(batch.geometry_types) {
            *total += count;
        }
        if let Some(b) = batch.bbox {
            let total = report.bbox.get_or_insert(b);
            *total = [
                total[0].min(b[0]),
                total[1].min(b[1]),
                total[2].max(b[2]),
                total[3].max(b[3]),
            ];
        }
        for measures in &batch.measures {
            self.area.add(measures.area_m2);
            self.perimeter.add(measures.perimeter_m);
            self.length.add(measures.length_m);
            report.geodesic_skipped_geometries += u64::from(measures.skipped);
        }
        report.invalid_geometries += batch.invalid_geometries;
        report.unchecked_geometries += batch.unchecked_geometries;
        let room = self.max_samples.saturating_sub(report.invalid.len());
        report.invalid.extend(batch.samples.into_iter().take(room));
        report.untracked_properties += batch.untracked_properties;
        for (name, counts) in batch.properties {
            let tracked = report.properties.len() < self.max_property_names;
            match report.properties.get_mut(&name) {
                Some(stats) => add_counts(stats, &counts),
                None if tracked => {
                    let mut stats = PropertyStats {
                        features: 0,
                        types: BTreeMap::new(),
                    };
                    add_counts(&mut stats, &counts);
                    report.properties.insert(name, stats);
                }
                None => report.untracked_properties += counts.features,
            }
        }
    }

    pub(crate) fn finish(mut self, bytes: u64) -> Report {
        self.report.bytes = bytes;
        self.report.geometry_types = GeometryType::ALL
            .iter()
            .zip(self.geometry_types)
            .filter(|(_, count)| *count > 0)
            .map(|(kind, count)| (kind.name().to_owned(), count))
            .collect();
        self.report.geodesic_area_m2 = self.area.value();
        self.report.geodesic_perimeter_m = self.perimeter.value();
        self.report.geodesic_length_m = self.length.value();
        self.report
    }
}

fn add_counts(stats: &mut PropertyStats, counts: &PropertyCounts) {
    stats.features += counts.features;
    for (value_type, count) in JSON_TYPES.iter().zip(counts.types) {
        if count > 0 {
            *stats
                .types
                .entry(value_type.as_str().to_owned())
                .or_insert(0) += count;
        }
    }
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn compensated_sum_keeps_small_terms() {
        let mut sum = CompensatedSum::default();
        for value in [1e16, 1.0, -1e16, 1.0] {
            sum.add(value);
        }
        assert_eq!(sum.value(), 2.0);
    }

    #[test]
    fn property_names_beyond_the_cap_are_counted_not_kept() {
        let mut batch = BatchSummary::default();
        batch.add_property(0, "a", JsonType::String, 10);
        batch.add_property(0, "a", JsonType::Number, 10);
        batch.add_property(1, "b", JsonType::Null, 10);
        batch.add_property(2, "b", JsonType::Null, 10);
        let mut merger = Merger::new(10, 1);
        merger.merge(batch);
        let report = merger.finish(0);
        assert_eq!(report.properties.len(), 1);
        let a = &report.properties["a"];
        assert_eq!(a.features, 1, "a repeated key counts its feature once");
        assert_eq!(a.types.get("string"), Some(&1));
        assert_eq!(a.types.get("number"), Some(&1));
        assert_eq!(report.untracked_properties, 2);
    }

    /// Issue 12, class 2: a batch keeps at most the cap of distinct names whatever the
    /// input; the rest are counted, and the count reaches the report.
    #[test]
    fn a_batch_never_holds_more_names_than_the_cap() {
        let mut batch = BatchSummary::default();
        for n in 0..10_000 {
            batch.add_property(0, &format!("p{n}"), JsonType::Number, 3);
        }
        batch.add_property(1, "p1", JsonType::Number, 3);
        assert_eq!(batch.properties.len(), 3);
        assert_eq!(batch.property_index.len(), 3);
        assert_eq!(batch.untracked_properties, 9_997);
        let mut merger = Merger::new(10, 3);
        merger.merge(batch);
        let report = merger.finish(0);
        assert_eq!(
            report.properties["p1"].features, 2,
            "tracked names still count"
        );
        assert_eq!(report.untracked_properties, 9_997);
    }
}
