//! The worker's outcome documents as the batch commands read them, and listing them.
//!
//! Reading is lenient on purpose: a field the worker stops writing becomes an empty cell in a
//! report, never a failed batch. Only `status` and `source` identify an outcome.

use serde::Deserialize;
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
pub struct OutcomeSummary {
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
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Figures {
    /// Features read.
    pub features: Option<u64>,
    /// Coordinates read.
    pub vertices: Option<u64>,
    /// Geodesic area of the polygons, m².
    pub area_m2: Option<f64>,
    /// Geodesic length of the lines, m.
    pub length_m: Option<f64>,
    /// Geometries found invalid.
    pub invalid_geometries: Option<u64>,
    /// `[west, south, east, north]` in degrees.
    pub bbox: Option<[f64; 4]>,
}

#[derive(Deserialize)]
struct RawOutcome {
    status: Option<String>,
    source: Option<RawSource>,
    error: Option<RawError>,
    analysis: Option<Value>,
}

#[derive(Deserialize)]
struct RawSource {
    bucket: Option<String>,
    key: Option<String>,
}

#[derive(Deserialize)]
struct RawError {
    kind: Option<String>,
}

/// Reads an outcome document; anything that is not one gives [`Status::Unreadable`].
pub fn parse_outcome(bytes: &[u8]) -> OutcomeSummary {
    let Ok(raw) = serde_json::from_slice::<RawOutcome>(bytes) else {
        return unreadable();
    };
    let status = match raw.status.as_deref() {
        Some("ok") => Status::Ok,
        Some("error") => Status::Error,
        _ => return unreadable(),
    };
    let (bucket, key) = raw
        .source
        .map(|s| (s.bucket, s.key))
        .unwrap_or((None, None));
    OutcomeSummary {
        bucket,
        key,
        status: Some(status),
        error_kind: raw.error.and_then(|e| e.kind),
        figures: raw.analysis.as_ref().map(figures).unwrap_or_default(),
    }
}

fn unreadable() -> OutcomeSummary {
    OutcomeSummary {
        status: Some(Status::Unreadable),
        ..OutcomeSummary::default()
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
        invalid_geometries: count("invalid_geometries"),
        bbox,
    }
}

/// The keys where the outcome of `s3://bucket/key` may be, under the workers' output
/// location: the result and the error report.
// TODO(ops): replace with the shared source→outcome mapping once reliab-worker lands it
// (see /work/coord/worker.md); this mirrors the worker's results.rs of today.
pub fn outcome_keys(output: &S3Url, bucket: &str, key: &str) -> Vec<String> {
    let _same_layout_for_every_bucket = bucket;
    vec![
        format!("{}{key}.json", output.prefix),
        format!("{}{key}.error.json", output.prefix),
    ]
}

/// The listing prefix under which the outcomes of every object under `key_prefix` lie.
pub fn outcome_listing_prefix(output: &S3Url, bucket: &str, key_prefix: &str) -> String {
    let _same_layout_for_every_bucket = bucket;
    format!("{}{key_prefix}", output.prefix)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_give_their_figures() {
        let doc = br#"{"schema":"geobatch.result/v1","status":"ok",
            "source":{"bucket":"in","key":"a b.geojson","etag":"e"},
            "analysis":{"features":3,"vertices":10,"geodesic_area_m2":2.5,
                        "geodesic_length_m":7.0,"invalid_geometries":1,"bbox":[-1,-2,3,4]}}"#;
        let outcome = parse_outcome(doc);
        assert_eq!(outcome.status, Some(Status::Ok));
        assert_eq!(outcome.key.as_deref(), Some("a b.geojson"));
        assert_eq!(
            outcome.figures,
            Figures {
                features: Some(3),
                vertices: Some(10),
                area_m2: Some(2.5),
                length_m: Some(7.0),
                invalid_geometries: Some(1),
                bbox: Some([-1.0, -2.0, 3.0, 4.0]),
            }
        );
    }

    #[test]
    fn error_reports_give_their_kind_and_no_figures() {
        let doc = br#"{"status":"error","source":{"bucket":"in","key":"k"},
                       "error":{"kind":"invalid_json","message":"m"}}"#;
        let outcome = parse_outcome(doc);
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
            assert_eq!(parse_outcome(doc).status, Some(Status::Unreadable));
        }
        let odd_bbox = br#"{"status":"ok","analysis":{"bbox":[1,2,3]}}"#;
        assert_eq!(parse_outcome(odd_bbox).figures.bbox, None);
    }
}
