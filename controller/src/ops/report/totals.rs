//! One file's row of a batch report and the totals they add up to (pure).
//!
//! The totals are the only thing a report keeps for the whole batch: counters, one map of
//! error kinds (as many entries as there are kinds) and the union of the bounding boxes.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::ops::outcomes::{Figures, Outcome, Status};

/// One file of the batch.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FileRow {
    /// Source bucket (empty when the outcome does not name one).
    pub bucket: String,
    /// Source key (else the outcome's own key).
    pub key: String,
    /// `ok`, `error` or `unreadable`.
    pub status: &'static str,
    /// The error kind of an error report.
    pub error_kind: Option<String>,
    /// The analysis figures (all absent for an error report).
    #[serde(flatten)]
    pub figures: Figures,
    /// Where the outcome document is.
    pub outcome_key: String,
}

impl FileRow {
    /// The row of the outcome stored at `outcome_key`.
    pub fn new(outcome_key: &str, outcome: Outcome) -> FileRow {
        let status = outcome.status.unwrap_or(Status::Unreadable);
        FileRow {
            bucket: outcome.bucket.unwrap_or_default(),
            key: outcome.key.unwrap_or_else(|| outcome_key.to_owned()),
            status: status.as_str(),
            error_kind: match status {
                Status::Unreadable => Some("unreadable_outcome".to_owned()),
                _ => outcome.error_kind,
            },
            figures: outcome.figures,
            outcome_key: outcome_key.to_owned(),
        }
    }
}

/// The whole batch, summed over its rows.
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct Totals {
    /// Files reported.
    pub files: u64,
    /// Files analysed.
    pub ok: u64,
    /// Files with an error report.
    pub error: u64,
    /// Outcome objects that could not be read.
    pub unreadable: u64,
    /// Error reports by kind (unreadable outcomes as `unreadable_outcome`).
    pub error_kinds: BTreeMap<String, u64>,
    /// Features over all analysed files.
    pub features: u64,
    /// Coordinates over all analysed files.
    pub vertices: u64,
    /// Geodesic area over all analysed files, m².
    pub area_m2: f64,
    /// Geodesic length over all analysed files, m.
    pub length_m: f64,
    /// Geodesic perimeter over all analysed files, m.
    pub perimeter_m: f64,
    /// Invalid geometries over all analysed files.
    pub invalid_geometries: u64,
    /// The union of the files' bounding boxes.
    pub bbox: Option<[f64; 4]>,
    /// Files without a bounding box (error reports, empty files).
    pub without_bbox: u64,
}

impl Totals {
    /// Adds one row.
    pub fn add(&mut self, row: &FileRow) {
        self.files += 1;
        match row.status {
            "ok" => self.ok += 1,
            "error" => self.error += 1,
            _ => self.unreadable += 1,
        }
        if let Some(kind) = &row.error_kind {
            *self.error_kinds.entry(kind.clone()).or_default() += 1;
        }
        self.features += row.figures.features.unwrap_or(0);
        self.vertices += row.figures.vertices.unwrap_or(0);
        self.area_m2 += row.figures.area_m2.unwrap_or(0.0);
        self.length_m += row.figures.length_m.unwrap_or(0.0);
        self.perimeter_m += row.figures.perimeter_m.unwrap_or(0.0);
        self.invalid_geometries += row.figures.invalid_geometries.unwrap_or(0);
        match (row.figures.bbox, self.bbox) {
            (None, _) => self.without_bbox += 1,
            (Some(b), None) => self.bbox = Some(b),
            (Some(b), Some(t)) => {
                self.bbox = Some([
                    t[0].min(b[0]),
                    t[1].min(b[1]),
                    t[2].max(b[2]),
                    t[3].max(b[3]),
                ]);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::outcomes::{complete_document, read_outcome};
    use proptest::prelude::*;

    fn ok_row(features: u64, area: f64, bbox: [f64; 4]) -> FileRow {
        let doc = serde_json::json!({"status":"ok","source":{"bucket":"b","key":"k"},
            "analysis":{"features":features,"vertices":features * 2,"geodesic_area_m2":area,
                        "geodesic_length_m":1.0,"invalid_geometries":0,"bbox":bbox}});
        FileRow::new(
            "out/k.json",
            read_outcome(&complete_document(&doc.to_string())),
        )
    }

    #[test]
    fn totals_count_statuses_kinds_and_unite_boxes() {
        let mut totals = Totals::default();
        totals.add(&ok_row(2, 10.0, [0.0, 0.0, 1.0, 1.0]));
        totals.add(&ok_row(3, 5.0, [-5.0, 2.0, 0.5, 8.0]));
        let error = read_outcome(&complete_document(
            r#"{"status":"error","source":{"bucket":"b","key":"x"},"error":{"kind":"invalid_json"}}"#,
        ));
        totals.add(&FileRow::new("out/x.error.json", error));
        totals.add(&FileRow::new("out/y.json", read_outcome(b"garbage")));
        assert_eq!(
            (totals.files, totals.ok, totals.error, totals.unreadable),
            (4, 2, 1, 1)
        );
        assert_eq!(totals.features, 5);
        assert_eq!(totals.vertices, 10);
        assert!((totals.area_m2 - 15.0).abs() < 1e-9);
        assert_eq!(totals.bbox, Some([-5.0, 0.0, 1.0, 8.0]));
        assert_eq!(totals.without_bbox, 2);
        assert_eq!(totals.error_kinds.get("invalid_json"), Some(&1));
        assert_eq!(totals.error_kinds.get("unreadable_outcome"), Some(&1));
    }

    proptest! {
        #[test]
        fn totals_do_not_depend_on_row_order(features in proptest::collection::vec(0u64..1000, 0..20)) {
            let rows: Vec<FileRow> = features.iter().map(|&f| ok_row(f, f as f64, [0.0, 0.0, 1.0, 1.0])).collect();
            let mut forward = Totals::default();
            rows.iter().for_each(|r| forward.add(r));
            let mut backward = Totals::default();
            rows.iter().rev().for_each(|r| backward.add(r));
            prop_assert_eq!(forward.features, features.iter().sum::<u64>());
            prop_assert_eq!(forward.files, backward.files);
            prop_assert_eq!(forward.features, backward.features);
            prop_assert_eq!(forward.bbox, backward.bbox);
        }
    }
}
