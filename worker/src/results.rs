//! Result and error-report documents, and writing them to the output location.
//!
//! Outputs are idempotent: the key depends only on the source key, and the content only on
//! the object that was read (no timestamps, message ids or host names; maps are sorted), so
//! processing the same object twice writes the same bytes to the same place. That is what
//! makes at-least-once delivery safe.
//!
//! An object has at most one current outcome. Writing a result removes an earlier error
//! report for the same key, and writing an error report removes an earlier result: the
//! output always describes the object as it was last read, never a stale mix.

use aws_sdk_s3::primitives::ByteStream;
use serde::Serialize;
use serde_json::Value;

use crate::config::OutputLocation;

/// Version of the worker written into every output, so a result can be traced to the code
/// that produced it.
pub const WORKER_VERSION: &str = env!("CARGO_PKG_VERSION");

/// Folder, under the output prefix, for reports about messages that name no object.
pub const INVALID_MESSAGES_DIR: &str = "_invalid-messages/";

/// Schema tag of a success document.
const RESULT_SCHEMA: &str = "geobatch.result/v1";
/// Schema tag of an error report.
const ERROR_SCHEMA: &str = "geobatch.error/v1";
/// How much of an unusable message body an error report quotes.
const BODY_EXCERPT_BYTES: usize = 4096;

/// The source object as it was read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ObjectSource {
    /// Source bucket.
    pub bucket: String,
    /// Source key, decoded.
    pub key: String,
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
    pub kind: String,
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
    pub fn new(kind: impl Into<String>, message: impl Into<String>) -> ErrorDetail {
        ErrorDetail {
            kind: kind.into(),
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
}

#[derive(Serialize)]
struct SuccessDocument<'a> {
    schema: &'static str,
    status: &'static str,
    source: &'a ObjectSource,
    worker_version: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    analysis: Option<&'a Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    exec_output: Option<&'a Value>,
}

#[derive(Serialize)]
struct ErrorDocument<'a> {
    schema: &'static str,
    status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    source: Option<&'a ObjectSource>,
    #[serde(skip_serializing_if = "Option::is_none")]
    message: Option<MessageSource<'a>>,
    worker_version: &'static str,
    error: &'a ErrorDetail,
}

/// The SQS message an object-less error report is about.
#[derive(Serialize)]
struct MessageSource<'a> {
    message_id: &'a str,
    body_excerpt: &'a str,
}

/// Key of the result for `source_key`.
pub fn result_key(output: &OutputLocation, source_key: &str) -> String {
    format!("{}{source_key}.json", output.prefix)
}

/// Key of the error report for `source_key`.
pub fn error_key(output: &OutputLocation, source_key: &str) -> String {
    format!("{}{source_key}.error.json", output.prefix)
}

/// Key of the report about a message that names no object.
pub fn invalid_message_key(output: &OutputLocation, message_id: &str) -> String {
    format!(
        "{}{INVALID_MESSAGES_DIR}{message_id}.error.json",
        output.prefix
    )
}

/// Whether an object is one of the worker's own outputs: processing it would feed results
/// back into the queue when the notification has no suffix filter.
pub fn is_own_output(output: &OutputLocation, bucket: &str, key: &str) -> bool {
    bucket == output.bucket && key.starts_with(&output.prefix) && key.ends_with(".json")
}

/// Renders the success document (pretty JSON, trailing newline).
pub fn render_success(source: &ObjectSource, outcome: &Outcome) -> Vec<u8> {
    let (analysis, exec_output) = match outcome {
        Outcome::Analysis(report) => (Some(report), None),
        Outcome::ExecOutput(output) => (None, Some(output)),
    };
    render(&SuccessDocument {
        schema: RESULT_SCHEMA,
        status: "ok",
        source,
        worker_version: WORKER_VERSION,
        analysis,
        exec_output,
    })
}

/// Renders the error report for an object.
pub fn render_object_error(source: &ObjectSource, error: &ErrorDetail) -> Vec<u8> {
    render(&ErrorDocument {
        schema: ERROR_SCHEMA,
        status: "error",
        source: Some(source),
        message: None,
        worker_version: WORKER_VERSION,
        error,
    })
}

/// Renders the error report for a message that names no usable object.
pub fn render_message_error(message_id: &str, body: &str, error: &ErrorDetail) -> Vec<u8> {
    render(&ErrorDocument {
        schema: ERROR_SCHEMA,
        status: "error",
        source: None,
        message: Some(MessageSource {
            message_id,
            body_excerpt: excerpt(body, BODY_EXCERPT_BYTES),
        }),
        worker_version: WORKER_VERSION,
        error,
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

/// Writes documents to the output location.
#[derive(Debug, Clone)]
pub struct ResultStore {
    s3: aws_sdk_s3::Client,
    output: OutputLocation,
}

impl ResultStore {
    /// A store writing under `output` through `s3`.
    pub fn new(s3: aws_sdk_s3::Client, output: OutputLocation) -> ResultStore {
        ResultStore { s3, output }
    }

    /// The output location.
    pub fn output(&self) -> &OutputLocation {
        &self.output
    }

    /// Writes the result for `source` and removes any older error report for it.
    pub async fn write_success(
        &self,
        source: &ObjectSource,
        outcome: &Outcome,
    ) -> Result<String, WriteError> {
        let key = result_key(&self.output, &source.key);
        self.put(&key, render_success(source, outcome)).await?;
        self.delete(&error_key(&self.output, &source.key)).await?;
        Ok(key)
    }

    /// Writes the error report for `source` and removes any older result for it.
    pub async fn write_object_error(
        &self,
        source: &ObjectSource,
        error: &ErrorDetail,
    ) -> Result<String, WriteError> {
        let key = error_key(&self.output, &source.key);
        self.put(&key, render_object_error(source, error)).await?;
        self.delete(&result_key(&self.output, &source.key)).await?;
        Ok(key)
    }

    /// Writes the report about an unusable message.
    pub async fn write_message_error(
        &self,
        message_id: &str,
        body: &str,
        error: &ErrorDetail,
    ) -> Result<String, WriteError> {
        let key = invalid_message_key(&self.output, message_id);
        self.put(&key, render_message_error(message_id, body, error))
            .await?;
        Ok(key)
    }

    async fn put(&self, key: &str, body: Vec<u8>) -> Result<(), WriteError> {
        self.s3
            .put_object()
            .bucket(&self.output.bucket)
            .key(key)
            .content_type("application/json")
            .body(ByteStream::from(body))
            .send()
            .await
            .map(drop)
            .map_err(|err| self.write_error(key, &err))
    }

    async fn delete(&self, key: &str) -> Result<(), WriteError> {
        self.s3
            .delete_object()
            .bucket(&self.output.bucket)
            .key(key)
            .send()
            .await
            .map(drop)
            .map_err(|err| self.write_error(key, &err))
    }

    fn write_error(&self, key: &str, err: &dyn std::error::Error) -> WriteError {
        WriteError {
            bucket: self.output.bucket.clone(),
            key: key.to_owned(),
            message: crate::sdk_error::error_chain(err),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn output() -> OutputLocation {
        OutputLocation {
            bucket: "out".into(),
            prefix: "results/".into(),
        }
    }

    fn source() -> ObjectSource {
        ObjectSource {
            bucket: "in".into(),
            key: "dir/a b.geojson".into(),
            etag: Some("abc".into()),
            size_bytes: Some(12),
        }
    }

    #[test]
    fn keys_sit_next_to_the_source_key_under_the_prefix() {
        assert_eq!(
            result_key(&output(), "dir/a b.geojson"),
            "results/dir/a b.geojson.json"
        );
        assert_eq!(
            error_key(&output(), "dir/a b.geojson"),
            "results/dir/a b.geojson.error.json"
        );
        assert_eq!(
            invalid_message_key(&output(), "m-1"),
            "results/_invalid-messages/m-1.error.json"
        );
    }

    #[test]
    fn own_outputs_are_recognised_only_in_the_output_bucket_and_prefix() {
        assert!(is_own_output(&output(), "out", "results/x.geojson.json"));
        assert!(is_own_output(
            &output(),
            "out",
            "results/x.geojson.error.json"
        ));
        assert!(!is_own_output(&output(), "in", "results/x.geojson.json"));
        assert!(!is_own_output(&output(), "out", "results/x.geojson"));
        assert!(!is_own_output(&output(), "out", "other/x.json"));
    }

    #[test]
    fn success_documents_are_deterministic_and_sorted() {
        let outcome = Outcome::Analysis(serde_json::json!({"zeta": 1, "alpha": {"b": 2, "a": 1}}));
        let first = render_success(&source(), &outcome);
        assert_eq!(first, render_success(&source(), &outcome));
        let text = String::from_utf8(first).expect("utf-8");
        assert!(text.find("\"alpha\"") < text.find("\"zeta\""), "{text}");
        let parsed: Value = serde_json::from_str(&text).expect("json");
        assert_eq!(parsed["status"], "ok");
        assert_eq!(parsed["source"]["key"], "dir/a b.geojson");
        assert_eq!(parsed["source"]["etag"], "abc");
        assert_eq!(parsed["source"]["size_bytes"], 12);
        assert_eq!(parsed["worker_version"], WORKER_VERSION);
        assert_eq!(parsed["analysis"]["alpha"]["a"], 1);
        assert!(parsed.get("exec_output").is_none());
    }

    #[test]
    fn error_reports_carry_kind_and_message() {
        let mut error = ErrorDetail::new("invalid_json", "expected value");
        error.offset = Some(7);
        let parsed: Value =
            serde_json::from_slice(&render_object_error(&source(), &error)).expect("json");
        assert_eq!(parsed["status"], "error");
        assert_eq!(parsed["error"]["kind"], "invalid_json");
        assert_eq!(parsed["error"]["message"], "expected value");
        assert_eq!(parsed["error"]["offset"], 7);
        assert!(parsed["error"].get("stderr").is_none());
        assert_eq!(parsed["source"]["bucket"], "in");
    }

    #[test]
    fn message_reports_quote_a_bounded_excerpt_of_the_body() {
        let body = "é".repeat(5000);
        let error = ErrorDetail::new("invalid_event", "not an event");
        let parsed: Value =
            serde_json::from_slice(&render_message_error("m-1", &body, &error)).expect("json");
        let quoted = parsed["message"]["body_excerpt"].as_str().expect("string");
        assert!(quoted.len() <= BODY_EXCERPT_BYTES && !quoted.is_empty());
        assert_eq!(parsed["message"]["message_id"], "m-1");
        assert!(parsed.get("source").is_none());
    }
}
