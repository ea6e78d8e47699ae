//! Outcome documents and message reports, and writing them to the output location.
//!
//! Each source `(bucket, key)` has exactly one outcome object, at the key
//! [`OutputLocation::outcome_key`] gives it (see `geobatch_common::outcome` for the layout):
//! a success and an error are the same object with a different `status`, so writing one
//! replaces the other in a single PutObject and nothing is ever deleted. Two sources never
//! share an outcome key, and a record the worker refuses (bucket not allowed, unusable) is
//! reported under its message's id, never under a source's name.
//!
//! Outputs are idempotent: the key depends only on the source, and the content only on the
//! object that was read (no timestamps, message ids or host names; maps are sorted), so
//! processing the same object twice writes the same bytes to the same place. That is what
//! makes at-least-once delivery safe.

use std::time::Duration;

use geobatch_common::outcome::{MESSAGE_REPORT_SCHEMA, OUTCOME_SCHEMA};
use serde::Serialize;
use serde_json::Value;

use geobatch_common::outcome::OutputLocation;

use crate::deadline;
use crate::kind::ErrorKind;
use crate::objects::ObjectStore;

/// Version of the worker written into every output, so a result can be traced to the code
/// that produced it.
pub const WORKER_VERSION: &str = env!("CARGO_PKG_VERSION");

/// How much of an unusable message body a report quotes.
const BODY_EXCERPT_BYTES: usize = 4096;

/// The source object as it was read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ObjectSource {
    /// Source bucket.
    pub bucket: String,
    /// Source key, decoded.
    pub key: String,
    /// Version read, on a versioned bucket.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version_id: Option<String>,
    /// ETag of the bytes that were analysed (from the download, else from the event),
    /// without the surrounding quotes.
    pub etag: Option<String>,
    /// Size in bytes of what was analysed (else the size the event announced).
    pub size_bytes: Option<u64>,
}

/// A machine-readable failure.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ErrorDetail {
    /// Stable category, e.g. `invalid_json`, `object_too_large`; see `docs/worker.md`.
    pub kind: ErrorKind,
    /// Human-readable explanation.
    pub message: String,
    /// Byte offset in the object where the problem was found, where that applies.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub offset: Option<u64>,
    /// Exit status of an `--exec` command, when one ran.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    /// Standard error of an `--exec` command (its tail, when long), when one ran.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stderr: Option<String>,
}

impl ErrorDetail {
    /// A failure with just a kind and a message.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> ErrorDetail {
        ErrorDetail {
            kind,
            message: message.into(),
            offset: None,
            exit_code: None,
            stderr: None,
        }
    }
}

/// What was produced for an object.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// The built-in analysis report, serialised whole.
    Analysis(Value),
    /// The standard output of an `--exec` command: JSON when it parses as JSON, else text.
    ExecOutput(Value),
    /// The result of a processor of your own ([`crate::processor::Processor`]), written as
    /// the document's `result`.
    Result(Value),
}

/// A record of a message that the worker refused to read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Rejection {
    /// Position of the record in the message's `Records`.
    pub index: usize,
    /// Why it was refused.
    pub kind: ErrorKind,
    /// Human-readable explanation.
    pub message: String,
    /// The bucket the record names, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bucket: Option<String>,
    /// The key the record names, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
}

#[derive(Serialize)]
struct OutcomeDocument<'a> {
    schema: &'static str,
    status: &'static str,
    source: &'a ObjectSource,
    worker_version: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    analysis: Option<&'a Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    exec_output: Option<&'a Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    result: Option<&'a Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<&'a ErrorDetail>,
}

#[derive(Serialize)]
struct MessageReport<'a> {
    schema: &'static str,
    status: &'static str,
    message: MessageSource<'a>,
    worker_version: &'static str,
    error: &'a ErrorDetail,
    #[serde(skip_serializing_if = "<[Rejection]>::is_empty")]
    records: &'a [Rejection],
}

/// The SQS message a report is about.
#[derive(Serialize)]
struct MessageSource<'a> {
    message_id: &'a str,
    body_excerpt: &'a str,
}

/// Renders the outcome document of `source` (pretty JSON, trailing newline): status `ok`
/// with the result, or status `error` with the error.
pub fn render_outcome(source: &ObjectSource, outcome: &Result<Outcome, ErrorDetail>) -> Vec<u8> {
    let mut document = OutcomeDocument {
        schema: OUTCOME_SCHEMA,
        status: "ok",
        source,
        worker_version: WORKER_VERSION,
        analysis: None,
        exec_output: None,
        result: None,
        error: None,
    };
    match outcome {
        Ok(Outcome::Analysis(report)) => document.analysis = Some(report),
        Ok(Outcome::ExecOutput(output)) => document.exec_output = Some(output),
        Ok(Outcome::Result(result)) => document.result = Some(result),
        Err(error) => {
            document.status = "error";
            document.error = Some(error);
        }
    }
    render(&document)
}

/// Renders the report about a message that names no usable source (`records` empty), or
/// whose listed records were refused.
pub fn render_message_report(
    message_id: &str,
    body: &str,
    error: &ErrorDetail,
    records: &[Rejection],
) -> Vec<u8> {
    render(&MessageReport {
        schema: MESSAGE_REPORT_SCHEMA,
        status: "error",
        message: MessageSource {
            message_id,
            body_excerpt: excerpt(body, BODY_EXCERPT_BYTES),
        },
        worker_version: WORKER_VERSION,
        error,
        records,
    })
}

fn render(document: &impl Serialize) -> Vec<u8> {
    // Serialising these plain structs cannot fail: no maps with non-string keys, no I/O.
    let mut bytes = serde_json::to_vec_pretty(document).unwrap_or_default();
    bytes.push(b'\n');
    bytes
}

/// The longest prefix of `text` of at most `limit` bytes that ends on a character boundary.
pub fn excerpt(text: &str, limit: usize) -> &str {
    if text.len() <= limit {
        return text;
    }
    let mut end = limit;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// A failed write to the output location; always worth retrying.
#[derive(Debug, thiserror::Error)]
#[error("writing s3://{bucket}/{key} failed: {message}")]
pub struct WriteError {
    /// Output bucket.
    pub bucket: String,
    /// Output key.
    pub key: String,
    /// What S3 said.
    pub message: String,
}

/// Writes documents to the output location, each PutObject within a deadline.
#[derive(Debug, Clone)]
pub struct ResultStore<S> {
    store: S,
    output: OutputLocation,
    call_timeout: Duration,
}

impl<S: ObjectStore> ResultStore<S> {
    /// A store writing under `output` through `store`.
    pub fn new(store: S, output: OutputLocation, call_timeout: Duration) -> ResultStore<S> {
        ResultStore {
            store,
            output,
            call_timeout,
        }
    }

    /// The output location.
    pub fn output(&self) -> &OutputLocation {
        &self.output
    }

    /// Writes the outcome of `source` to `key` (from [`OutputLocation::outcome_key`]),
    /// replacing whatever outcome an earlier read of the source left there.
    pub async fn write_outcome(
        &self,
        key: &str,
        source: &ObjectSource,
        outcome: &Result<Outcome, ErrorDetail>,
    ) -> Result<(), WriteError> {
        self.put(key, render_outcome(source, outcome)).await
    }

    /// Writes the report about a message, or about the records of it that were refused.
    pub async fn write_message_report(
        &self,
        message_id: &str,
        body: &str,
        error: &ErrorDetail,
        records: &[Rejection],
    ) -> Result<String, WriteError> {
        let key = self.output.message_report_key(message_id);
        self.put(
            &key,
            render_message_report(message_id, body, error, records),
        )
        .await?;
        Ok(key)
    }

    async fn put(&self, key: &str, body: Vec<u8>) -> Result<(), WriteError> {
        deadline::within(
            self.call_timeout,
            "PutObject",
            self.store.put(&self.output.bucket, key, body),
        )
        .await
        .map_err(|message| WriteError {
            bucket: self.output.bucket.clone(),
            key: key.to_owned(),
            message,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use geobatch_analysis::ErrorKind as AnalysisKind;
    use geobatch_common::outcome::{OutcomeStatus, parse_outcome};

    fn source() -> ObjectSource {
        ObjectSource {
            bucket: "in1".into(),
            key: "dir/a b.geojson".into(),
            version_id: None,
            etag: Some("abc".into()),
            size_bytes: Some(12),
        }
    }

    #[test]
    fn success_documents_are_deterministic_and_sorted() {
        let outcome = Ok(Outcome::Analysis(
            serde_json::json!({"zeta": 1, "alpha": {"b": 2, "a": 1}}),
        ));
        let first = render_outcome(&source(), &outcome);
        assert_eq!(first, render_outcome(&source(), &outcome));
        let text = String::from_utf8(first).expect("utf-8");
        assert!(text.find("\"alpha\"") < text.find("\"zeta\""), "{text}");
        let parsed: Value = serde_json::from_str(&text).expect("json");
        assert_eq!(parsed["schema"], OUTCOME_SCHEMA);
        assert_eq!(parsed["status"], "ok");
        assert_eq!(parsed["source"]["key"], "dir/a b.geojson");
        assert_eq!(parsed["source"]["etag"], "abc");
        assert_eq!(parsed["source"]["size_bytes"], 12);
        assert!(parsed["source"].get("version_id").is_none());
        assert_eq!(parsed["worker_version"], WORKER_VERSION);
        assert_eq!(parsed["analysis"]["alpha"]["a"], 1);
        assert!(parsed.get("exec_output").is_none() && parsed.get("error").is_none());
    }

    #[test]
    fn error_outcomes_carry_kind_and_message() {
        let mut error = ErrorDetail::new(
            ErrorKind::Analysis(AnalysisKind::InvalidJson),
            "expected value",
        );
        error.offset = Some(7);
        let parsed: Value =
            serde_json::from_slice(&render_outcome(&source(), &Err(error))).expect("json");
        assert_eq!(parsed["status"], "error");
        assert_eq!(parsed["error"]["kind"], "invalid_json");
        assert_eq!(parsed["error"]["message"], "expected value");
        assert_eq!(parsed["error"]["offset"], 7);
        assert!(parsed["error"].get("stderr").is_none());
        assert!(parsed.get("analysis").is_none());
        assert_eq!(parsed["source"]["bucket"], "in1");
    }

    #[test]
    fn the_shared_parser_reads_both_outcome_statuses_back() {
        let ok = render_outcome(&source(), &Ok(Outcome::ExecOutput(Value::from("x"))));
        let summary = parse_outcome(&ok).expect("parses");
        assert_eq!(summary.status, OutcomeStatus::Ok);
        assert!(summary.describes("abc"));
        let error = render_outcome(
            &source(),
            &Err(ErrorDetail::new(ErrorKind::ObjectMissing, "gone")),
        );
        let summary = parse_outcome(&error).expect("parses");
        assert_eq!(summary.status, OutcomeStatus::Error);
        assert_eq!(
            summary.error.map(|e| e.kind).as_deref(),
            Some("object_missing")
        );
        assert_eq!(summary.source.key, "dir/a b.geojson");
    }

    #[test]
    fn message_reports_quote_a_bounded_excerpt_of_the_body_and_list_refused_records() {
        let body = "é".repeat(5000);
        let error = ErrorDetail::new(ErrorKind::InvalidEvent, "not an event");
        let parsed: Value =
            serde_json::from_slice(&render_message_report("m-1", &body, &error, &[]))
                .expect("json");
        let quoted = parsed["message"]["body_excerpt"].as_str().expect("string");
        assert!(quoted.len() <= BODY_EXCERPT_BYTES && !quoted.is_empty());
        assert_eq!(parsed["message"]["message_id"], "m-1");
        assert_eq!(parsed["schema"], MESSAGE_REPORT_SCHEMA);
        assert!(parsed.get("source").is_none() && parsed.get("records").is_none());
        let refused = Rejection {
            index: 1,
            kind: ErrorKind::BucketNotAllowed,
            message: "no".into(),
            bucket: Some("other".into()),
            key: Some("k".into()),
        };
        let parsed: Value = serde_json::from_slice(&render_message_report(
            "m-1",
            "{}",
            &error,
            std::slice::from_ref(&refused),
        ))
        .expect("json");
        assert_eq!(parsed["records"][0]["kind"], "bucket_not_allowed");
        assert_eq!(parsed["records"][0]["index"], 1);
        assert_eq!(parsed["records"][0]["bucket"], "other");
    }
}
