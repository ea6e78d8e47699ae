//! The worker's outcome documents as the batch commands read them, and listing objects.
//!
//! Where an outcome lives and what its status, source and error say come from
//! [`geobatch_common::outcome`], the worker's own definitions; this module adds the per-file
//! figures of a successful analysis, read leniently on purpose: a field the analysis stops
//! writing becomes an empty cell in a report, never a failed batch.

use geobatch_common::outcome::{OutcomeStatus, parse_outcome};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::ops::OpsError;
use crate::ops::error::{Subject, classify};
use crate::ops::s3_url::S3Url;

/// What became of one source object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Status {
    /// Analysed; the document has the analysis.
    Ok,
    /// Refused or failed permanently; the document has the error kind.
    Error,
    /// The outcome object exists but could not be read or is not an outcome document.
    Unreadable,
}

impl Status {
    /// The name in reports: `ok`, `error`, `unreadable`.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Error => "error",
            Status::Unreadable => "unreadable",
        }
    }
}

/// One outcome document, reduced to what the batch commands use.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Outcome {
    /// Source bucket, when the document names one (reports about unusable messages do not).
    pub bucket: Option<String>,
    /// Source key.
    pub key: Option<String>,
    /// `ok`, `error`, or unreadable.
    pub status: Option<Status>,
    /// The error kind of an error report.
    pub error_kind: Option<String>,
    /// The figures of a successful analysis.
    pub figures: Figures,
}

/// The per-file figures of a successful analysis.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize)]
pub struct Figures {
    /// Features read.
    pub features: Option<u64>,
    /// Coordinates read.
    pub vertices: Option<u64>,
    /// Geodesic area of the polygons, m².
    pub area_m2: Option<f64>,
    /// Geodesic length of the lines, m.
    pub length_m: Option<f64>,
    /// Geodesic perimeter of the polygons, m.
    pub perimeter_m: Option<f64>,
    /// Geometries found invalid.
    pub invalid_geometries: Option<u64>,
    /// `[west, south, east, north]` in degrees.
    pub bbox: Option<[f64; 4]>,
}

#[derive(Deserialize)]
struct WithAnalysis {
    analysis: Option<Value>,
}

/// Reads an outcome document with the worker's parser; anything that is not one gives
/// [`Status::Unreadable`].
pub fn read_outcome(bytes: &[u8]) -> Outcome {
    let Ok(outcome) = parse_outcome(bytes) else {
        return Outcome {
            status: Some(Status::Unreadable),
            ..Outcome::default()
        };
    };
    let analysis = serde_json::from_slice::<WithAnalysis>(bytes)
        .ok()
        .and_then(|doc| doc.analysis);
    Outcome {
        bucket: Some(outcome.source.bucket),
        key: Some(outcome.source.key),
        status: Some(match outcome.status {
            OutcomeStatus::Ok => Status::Ok,
            OutcomeStatus::Error => Status::Error,
        }),
        error_kind: outcome.error.map(|e| e.kind),
        figures: analysis.as_ref().map(figures).unwrap_or_default(),
    }
}

fn figures(analysis: &Value) -> Figures {
    let count = |name: &str| analysis.get(name).and_then(Value::as_u64);
    let number = |name: &str| analysis.get(name).and_then(Value::as_f64);
    let bbox = analysis
        .get("bbox")
        .and_then(Value::as_array)
        .and_then(|b| {
            let v: Vec<f64> = b.iter().filter_map(Value::as_f64).collect();
            match v[..] {
                [w, s, e, n]
                    if w.is_finite() && s.is_finite() && e.is_finite() && n.is_finite() =>
                {
                    Some([w, s, e, n])
                }
                _ => None,
            }
        });
    Figures {
        features: count("features"),
        vertices: count("vertices"),
        area_m2: number("geodesic_area_m2"),
        length_m: number("geodesic_length_m"),
        perimeter_m: number("geodesic_perimeter_m"),
        invalid_geometries: count("invalid_geometries"),
        bbox,
    }
}

/// One object of a listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    /// Its key.
    pub key: String,
    /// Its size in bytes.
    pub size: Option<u64>,
    /// Its ETag, without quotes.
    pub etag: Option<String>,
    /// When it was last written, seconds since the epoch.
    pub modified_secs: Option<i64>,
}

/// Pages through `ListObjectsV2` under a location, 1000 keys a page, so a caller holds one
/// page at a time.
pub struct Lister<'a> {
    s3: &'a aws_sdk_s3::Client,
    location: &'a S3Url,
    token: Option<String>,
    done: bool,
}

impl<'a> Lister<'a> {
    /// A listing of every key under `location`.
    pub fn new(s3: &'a aws_sdk_s3::Client, location: &'a S3Url) -> Lister<'a> {
        Lister {
            s3,
            location,
            token: None,
            done: false,
        }
    }

    /// The next page, or `None` after the last.
    pub async fn next_page(&mut self) -> Result<Option<Vec<Listed>>, OpsError> {
        if self.done {
            return Ok(None);
        }
        const CALL: &str = "ListObjectsV2";
        let page = self
            .s3
            .list_objects_v2()
            .bucket(&self.location.bucket)
            .prefix(&self.location.prefix)
            .set_continuation_token(self.token.take())
            .send()
            .await
            .map_err(|err| classify(CALL, Subject::Bucket(&self.location.bucket), err))?;
        self.token = page.next_continuation_token().map(str::to_owned);
        self.done = self.token.is_none() || page.is_truncated() != Some(true);
        Ok(Some(
            page.contents()
                .iter()
                .filter_map(|o| {
                    Some(Listed {
                        key: o.key()?.to_owned(),
                        size: o.size().and_then(|s| u64::try_from(s).ok()),
                        etag: o.e_tag().map(|e| e.trim_matches('"').to_owned()),
                        modified_secs: o.last_modified().map(|t| t.secs()),
                    })
                })
                .collect(),
        ))
    }
}

/// Reads one object whole (outcome documents are small).
pub async fn get_bytes(
    s3: &aws_sdk_s3::Client,
    bucket: &str,
    key: &str,
) -> Result<Vec<u8>, OpsError> {
    const CALL: &str = "GetObject";
    let object = s3
        .get_object()
        .bucket(bucket)
        .key(key)
        .send()
        .await
        .map_err(|err| classify(CALL, Subject::Bucket(bucket), err))?;
    let body = object.body.collect().await.map_err(|err| OpsError::Aws {
        call: CALL,
        message: format!("reading s3://{bucket}/{key}: {err}"),
    })?;
    Ok(body.into_bytes().to_vec())
}

/// A test's outcome document: `doc` plus what every outcome carries (schema, worker version,
/// a source and an error message where they are missing).
#[cfg(test)]
pub(crate) fn complete_document(doc: &str) -> Vec<u8> {
    let mut value: Value = serde_json::from_str(doc).unwrap_or_default();
    value["schema"] = geobatch_common::outcome::OUTCOME_SCHEMA.into();
    value["worker_version"] = "0.1.0".into();
    if value.get("source").is_none() {
        value["source"] = serde_json::json!({"bucket": "in1", "key": "k"});
    }
    if let Some(error) = value.get_mut("error")
        && error.get("message").is_none()
    {
        error["message"] = "m".into();
    }
    value.to_string().into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEAD: &str = r#""schema":"geobatch.outcome/v1","worker_version":"0.1.0""#;

    #[test]
    fn results_give_their_figures() {
        let doc = format!(
            r#"{{{HEAD},"status":"ok","source":{{"bucket":"in1","key":"a b.geojson","etag":"e"}},
            "analysis":{{"features":3,"vertices":10,"geodesic_area_m2":2.5,
                        "geodesic_length_m":7.0,"geodesic_perimeter_m":9.0,"invalid_geometries":1,"bbox":[-1,-2,3,4]}}}}"#
        );
        let outcome = read_outcome(doc.as_bytes());
        assert_eq!(outcome.status, Some(Status::Ok));
        assert_eq!(outcome.key.as_deref(), Some("a b.geojson"));
        assert_eq!(
            outcome.figures,
            Figures {
                features: Some(3),
                vertices: Some(10),
                area_m2: Some(2.5),
                length_m: Some(7.0),
                perimeter_m: Some(9.0),
                invalid_geometries: Some(1),
                bbox: Some([-1.0, -2.0, 3.0, 4.0]),
            }
        );
    }

    #[test]
    fn error_reports_give_their_kind_and_no_figures() {
        let doc = format!(
            r#"{{{HEAD},"status":"error","source":{{"bucket":"in1","key":"k"}},
                       "error":{{"kind":"invalid_json","message":"m"}}}}"#
        );
        let outcome = read_outcome(doc.as_bytes());
        assert_eq!(outcome.status, Some(Status::Error));
        assert_eq!(outcome.error_kind.as_deref(), Some("invalid_json"));
        assert_eq!(outcome.figures, Figures::default());
    }

    #[test]
    fn anything_else_is_unreadable() {
        for doc in [
            &b"not json"[..],
            br#"{"status":"maybe"}"#,
            b"[]",
            br#"{"analysis":{}}"#,
        ] {
            assert_eq!(read_outcome(doc).status, Some(Status::Unreadable));
        }
        let odd_bbox = format!(
            r#"{{{HEAD},"status":"ok","source":{{"bucket":"in1","key":"k"}},"analysis":{{"bbox":[1,2,3]}}}}"#
        );
        assert_eq!(read_outcome(odd_bbox.as_bytes()).figures.bbox, None);
    }
}
