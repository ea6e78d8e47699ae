//! Where the outcome of a source object lives, and how to read one back.
//!
//! The worker writes exactly one outcome object per source `(bucket, key)`; the batch
//! commands (backfill, report) find and read it with the same functions, so the two can never
//! disagree about the layout. Under the output prefix `P`:
//!
//! - `P` + `B/K.json`: the outcome of `s3://B/K` (status `ok` or `error`). A bucket name
//!   never contains `/`, so the bucket and key are recovered from the output key: two
//!   distinct sources never share an outcome object.
//! - `P` + `_long-keys/<sha-256>.json`: the outcome of a source whose key would make the
//!   output key longer than S3's 1024 bytes. The hash covers the bucket and the key.
//! - `P` + `_messages/<message id>.json`: the report about an SQS message, or records of it,
//!   that name no source the worker may read (not an event, a bucket not allowed, ...).
//!
//! The reserved folders start with `_`, which no bucket name can, so nothing a message says
//! can make the worker write a report under a real source's name.

use serde::Deserialize;
use sha2::{Digest, Sha256};

/// S3's longest object key, in bytes of UTF-8.
pub const MAX_KEY_BYTES: usize = 1024;
/// Ending of every outcome and report object.
pub const OUTCOME_SUFFIX: &str = ".json";
/// Folder, under the output prefix, of outcomes whose natural key would be too long.
pub const LONG_KEYS_DIR: &str = "_long-keys/";
/// Folder, under the output prefix, of reports about messages that name no usable source.
pub const MESSAGES_DIR: &str = "_messages/";
/// Schema tag of an outcome document.
pub const OUTCOME_SCHEMA: &str = "geobatch.outcome/v1";
/// Schema tag of a message report.
pub const MESSAGE_REPORT_SCHEMA: &str = "geobatch.message-report/v1";
/// Longest output prefix: it leaves room for the longest reserved key (a hashed outcome).
pub const MAX_PREFIX_BYTES: usize = MAX_KEY_BYTES - LONG_KEYS_DIR.len() - 64 - OUTCOME_SUFFIX.len();

/// An `s3://bucket/prefix/` output location.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutputLocation {
    /// Bucket the outcomes are written to.
    pub bucket: String,
    /// Key prefix, empty or ending in `/`.
    pub prefix: String,
}

/// Why an output URL cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OutputUrlError {
    /// Not of the form `s3://BUCKET/PREFIX/`.
    #[error("`{0}` is not an s3://BUCKET/PREFIX/ URL")]
    NotS3(String),
    /// The bucket part is not a valid S3 bucket name.
    #[error("`{0}` does not name a valid bucket")]
    Bucket(String),
    /// The prefix leaves no room for outcome keys within S3's key length limit.
    #[error("the prefix of `{url}` is longer than {MAX_PREFIX_BYTES} bytes")]
    PrefixTooLong {
        /// The URL as given.
        url: String,
    },
}

/// A bucket name that S3 could not have sent: the worker refuses the record instead of
/// deriving an output key from it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not a valid S3 bucket name")]
pub struct InvalidBucketName(pub String);

/// Where a source's outcome is stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OutcomeKey {
    /// Next to the source's own name: `P` + `B/K.json`.
    Named(String),
    /// Under `_long-keys/`, because the named key would exceed [`MAX_KEY_BYTES`].
    Hashed(String),
}

impl OutcomeKey {
    /// The output object key.
    pub fn as_str(&self) -> &str {
        match self {
            OutcomeKey::Named(key) | OutcomeKey::Hashed(key) => key,
        }
    }
}

impl OutputLocation {
    /// Parses `s3://bucket/prefix/`; the prefix may be empty, and a missing trailing `/` is
    /// added so `s3://b/results` and `s3://b/results/` mean the same place.
    pub fn parse(url: &str) -> Result<OutputLocation, OutputUrlError> {
        let rest = url
            .strip_prefix("s3://")
            .ok_or_else(|| OutputUrlError::NotS3(url.to_owned()))?;
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if !is_bucket_name(bucket) {
            return Err(OutputUrlError::Bucket(url.to_owned()));
        }
        let prefix = if prefix.is_empty() || prefix.ends_with('/') {
            prefix.to_owned()
        } else {
            format!("{prefix}/")
        };
        if prefix.len() > MAX_PREFIX_BYTES {
            return Err(OutputUrlError::PrefixTooLong {
                url: url.to_owned(),
            });
        }
        Ok(OutputLocation {
            bucket: bucket.to_owned(),
            prefix,
        })
    }

    /// Key of the outcome of `s3://bucket/key`: distinct for every distinct source, and
    /// always a valid S3 key.
    pub fn outcome_key(&self, bucket: &str, key: &str) -> Result<OutcomeKey, InvalidBucketName> {
        if !is_bucket_name(bucket) {
            return Err(InvalidBucketName(bucket.to_owned()));
        }
        let named = format!("{}{bucket}/{key}{OUTCOME_SUFFIX}", self.prefix);
        if named.len() <= MAX_KEY_BYTES {
            return Ok(OutcomeKey::Named(named));
        }
        let mut digest = Sha256::new();
        digest.update(bucket.as_bytes());
        digest.update(b"/");
        digest.update(key.as_bytes());
        let hex: String = digest
            .finalize()
            .iter()
            .map(|byte| format!("{byte:02x}"))
            .collect();
        Ok(OutcomeKey::Hashed(format!(
            "{}{LONG_KEYS_DIR}{hex}{OUTCOME_SUFFIX}",
            self.prefix
        )))
    }

    /// Key of the report about the SQS message `message_id`.
    pub fn message_report_key(&self, message_id: &str) -> String {
        format!("{}{MESSAGES_DIR}{message_id}{OUTCOME_SUFFIX}", self.prefix)
    }

    /// Whether `s3://bucket/key` is one of the worker's own outputs: processing it would feed
    /// outcomes back into the queue when the notification has no suffix filter.
    pub fn is_own_output(&self, bucket: &str, key: &str) -> bool {
        bucket == self.bucket && key.starts_with(&self.prefix) && key.ends_with(OUTCOME_SUFFIX)
    }
}

/// Whether `name` follows S3's bucket naming rules: 3 to 63 lowercase letters, digits, dots
/// and hyphens, starting and ending with a letter or digit.
pub fn is_bucket_name(name: &str) -> bool {
    let bytes = name.as_bytes();
    let edge = |byte: &u8| byte.is_ascii_lowercase() || byte.is_ascii_digit();
    (3..=63).contains(&bytes.len())
        && bytes.first().is_some_and(edge)
        && bytes.last().is_some_and(edge)
        && bytes
            .iter()
            .all(|byte| edge(byte) || *byte == b'.' || *byte == b'-')
}

/// Whether an outcome reports success or a permanent error.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OutcomeStatus {
    /// The source was processed; the document holds its result.
    Ok,
    /// The source cannot be processed; the document says why.
    Error,
}

/// The source an outcome describes, as it was read.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct OutcomeSource {
    /// Source bucket.
    pub bucket: String,
    /// Source key.
    pub key: String,
    /// Version read, on a versioned bucket.
    #[serde(default)]
    pub version_id: Option<String>,
    /// ETag of the bytes read, without quotes.
    #[serde(default)]
    pub etag: Option<String>,
    /// Size of the bytes read.
    #[serde(default)]
    pub size_bytes: Option<u64>,
}

/// The error part of an outcome with status `error`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct OutcomeError {
    /// Stable error kind, e.g. `invalid_json`.
    pub kind: String,
    /// Human-readable explanation.
    pub message: String,
}

/// What the batch commands need from an outcome document; the result itself is left out.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct OutcomeSummary {
    /// Schema tag, [`OUTCOME_SCHEMA`].
    pub schema: String,
    /// `ok` or `error`.
    pub status: OutcomeStatus,
    /// The source as it was read.
    pub source: OutcomeSource,
    /// Version of the worker that wrote it.
    pub worker_version: String,
    /// Present when `status` is `error`.
    #[serde(default)]
    pub error: Option<OutcomeError>,
}

impl OutcomeSummary {
    /// Whether this outcome describes the object whose ETag is `etag` (quotes ignored): a
    /// re-uploaded object has a new ETag, so an outcome of the old bytes is not current.
    pub fn describes(&self, etag: &str) -> bool {
        self.source.etag.as_deref() == Some(etag.trim_matches('"'))
    }
}

/// Why an object under the output prefix is not a readable outcome.
#[derive(Debug, thiserror::Error)]
pub enum OutcomeParseError {
    /// Not JSON of the outcome's shape.
    #[error("not an outcome document: {0}")]
    Shape(#[from] serde_json::Error),
    /// Some other document (a message report, an older schema).
    #[error("schema `{0}` is not {OUTCOME_SCHEMA}")]
    Schema(String),
}

/// Reads an outcome document's summary.
pub fn parse_outcome(bytes: &[u8]) -> Result<OutcomeSummary, OutcomeParseError> {
    let summary: OutcomeSummary = serde_json::from_slice(bytes)?;
    if summary.schema != OUTCOME_SCHEMA {
        return Err(OutcomeParseError::Schema(summary.schema));
    }
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn output() -> OutputLocation {
        OutputLocation::parse("s3://out/results").expect("valid")
    }

    #[test]
    fn output_urls_are_normalised_to_a_prefix_ending_in_a_slash() {
        let table = [
            ("s3://b12/results/", "b12", "results/"),
            ("s3://b12/results", "b12", "results/"),
            ("s3://b12/", "b12", ""),
            ("s3://b12", "b12", ""),
            ("s3://b12/a/b/c", "b12", "a/b/c/"),
        ];
        for (url, bucket, prefix) in table {
            let parsed = OutputLocation::parse(url).expect(url);
            assert_eq!(
                (parsed.bucket.as_str(), parsed.prefix.as_str()),
                (bucket, prefix)
            );
        }
        for url in ["https://b12/x", "s3:///x", "s3://B_ad/x"] {
            assert!(OutputLocation::parse(url).is_err(), "{url}");
        }
        let long = format!("s3://b12/{}", "p".repeat(MAX_PREFIX_BYTES));
        assert!(matches!(
            OutputLocation::parse(&long),
            Err(OutputUrlError::PrefixTooLong { .. })
        ));
    }

    #[test]
    fn bucket_names_follow_s3_rules() {
        for good in ["abc", "my-bucket.2", &"a".repeat(63)] {
            assert!(is_bucket_name(good), "{good}");
        }
        for bad in [
            "ab",
            "Abc",
            "a/b",
            "_messages",
            "-abc",
            "abc-",
            "a b",
            &"a".repeat(64),
        ] {
            assert!(!is_bucket_name(bad), "{bad}");
        }
    }

    #[test]
    fn outcomes_sit_under_the_bucket_and_key() {
        assert_eq!(
            output().outcome_key("in", "dir/a b.geojson"),
            Err(InvalidBucketName("in".into())),
            "two letters is not a bucket name"
        );
        assert_eq!(
            output().outcome_key("in1", "dir/a b.geojson"),
            Ok(OutcomeKey::Named("results/in1/dir/a b.geojson.json".into()))
        );
        assert_eq!(
            output().message_report_key("m-1"),
            "results/_messages/m-1.json"
        );
    }

    #[test]
    fn a_slash_in_a_forged_bucket_name_cannot_reach_another_sources_outcome() {
        // "in1/x" + "y" would otherwise collide with "in1" + "x/y".
        assert!(output().outcome_key("in1/x", "y").is_err());
        assert!(output().outcome_key("_messages", "m-1").is_err());
    }

    #[test]
    fn keys_too_long_for_s3_get_a_hashed_outcome_key_of_their_own() {
        let long_a = "a".repeat(MAX_KEY_BYTES);
        let long_b = format!("{}b", "a".repeat(MAX_KEY_BYTES - 1));
        let a = output().outcome_key("in1", &long_a).expect("valid bucket");
        let b = output().outcome_key("in1", &long_b).expect("valid bucket");
        let other_bucket = output().outcome_key("in2", &long_a).expect("valid bucket");
        for key in [&a, &b, &other_bucket] {
            assert!(matches!(key, OutcomeKey::Hashed(_)), "{key:?}");
            assert!(key.as_str().len() <= MAX_KEY_BYTES);
            assert!(key.as_str().starts_with("results/_long-keys/"));
        }
        assert_ne!(a, b);
        assert_ne!(a, other_bucket);
        assert_eq!(
            a,
            output().outcome_key("in1", &long_a).expect("valid bucket")
        );
        let longest_prefix = OutputLocation {
            bucket: "out".into(),
            prefix: "p".repeat(MAX_PREFIX_BYTES),
        };
        let key = longest_prefix
            .outcome_key("in1", &long_a)
            .expect("valid bucket");
        assert_eq!(key.as_str().len(), MAX_KEY_BYTES);
    }

    #[test]
    fn own_outputs_are_recognised_only_in_the_output_bucket_and_prefix() {
        assert!(output().is_own_output("out", "results/in1/x.geojson.json"));
        assert!(output().is_own_output("out", "results/_messages/m.json"));
        assert!(!output().is_own_output("in1", "results/x.geojson.json"));
        assert!(!output().is_own_output("out", "results/x.geojson"));
        assert!(!output().is_own_output("out", "other/x.json"));
    }

    #[test]
    fn an_outcome_summary_is_read_back_and_other_schemas_are_refused() {
        let text = r#"{"schema":"geobatch.outcome/v1","status":"error",
            "source":{"bucket":"in1","key":"k","etag":"abc","size_bytes":3},
            "worker_version":"0.1.0","error":{"kind":"invalid_json","message":"m","offset":1}}"#;
        let summary = parse_outcome(text.as_bytes()).expect("parses");
        assert_eq!(summary.status, OutcomeStatus::Error);
        assert_eq!(
            summary.error.map(|error| error.kind).as_deref(),
            Some("invalid_json")
        );
        let parsed = parse_outcome(text.as_bytes()).expect("parses");
        assert!(parsed.describes("\"abc\"") && !parsed.describes("abd"));
        let other = text.replace("geobatch.outcome/v1", "geobatch.result/v1");
        assert!(matches!(
            parse_outcome(other.as_bytes()),
            Err(OutcomeParseError::Schema(_))
        ));
        assert!(parse_outcome(b"[]").is_err());
    }
}
