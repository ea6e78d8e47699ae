//! Why an input could not be analysed: one typed error with a machine-readable kind.

use serde::{Deserialize, Serialize};

/// Why an input could not be analysed.
///
/// The service writes this object as the result of a failed file, and the CLI prints it, so
/// it carries everything a user needs to find the problem: a stable `kind`, a message that
/// names what was expected, and the byte offset in the input where that applies.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
#[error("{kind}: {message}")]
pub struct AnalysisError {
    /// Machine-readable category; the service retries only [`ErrorKind::Io`] (and hands a
    /// [`ErrorKind::Cancelled`] file back to the queue).
    pub kind: ErrorKind,
    /// Human-readable explanation.
    pub message: String,
    /// Byte offset in the input where the problem was found, where that applies.
    pub offset: Option<u64>,
}

impl AnalysisError {
    pub(crate) fn new(kind: ErrorKind, message: impl Into<String>, offset: Option<u64>) -> Self {
        AnalysisError {
            kind,
            message: message.into(),
            offset,
        }
    }

    pub(crate) fn at(kind: ErrorKind, offset: u64, message: impl Into<String>) -> Self {
        AnalysisError::new(kind, message, Some(offset))
    }
}

/// Categories of analysis failure.
///
/// Every kind but [`ErrorKind::Io`] and [`ErrorKind::Cancelled`] is a property of the input
/// itself: analysing the same bytes again gives the same error, so callers treat those as
/// permanent.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// Reading the input failed (transient as far as the analysis knows).
    Io,
    /// The input holds no JSON value at all (zero bytes, or only whitespace and a BOM).
    EmptyInput,
    /// The input is not valid JSON (bad syntax, bad UTF-8, trailing data).
    InvalidJson,
    /// The input ends in the middle of a JSON value.
    Truncated,
    /// The input is JSON but not GeoJSON (no or unknown `type`, TopoJSON, wrong member types).
    NotGeojson,
    /// A geometry's `coordinates` are malformed: a position with fewer than two numbers, a
    /// non-number in a position, or nesting that does not match the geometry type.
    InvalidCoordinates,
    /// JSON nesting deeper than `max_nesting_depth`.
    TooDeep,
    /// A single feature (or top-level member) larger than `max_feature_bytes`.
    FeatureTooLarge,
    /// The analysis ran past its `time_limit`. Permanent like the kinds above: the same
    /// bytes take as long again.
    TimeLimit,
    /// The caller stopped the analysis ([`crate::Stop::cancel`]); says nothing about the
    /// input, so callers hand the file back rather than report it.
    Cancelled,
}

impl ErrorKind {
    /// The stable name used in JSON reports and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Io => "io",
            ErrorKind::EmptyInput => "empty_input",
            ErrorKind::InvalidJson => "invalid_json",
            ErrorKind::Truncated => "truncated",
            ErrorKind::NotGeojson => "not_geojson",
            ErrorKind::InvalidCoordinates => "invalid_coordinates",
            ErrorKind::TooDeep => "too_deep",
            ErrorKind::FeatureTooLarge => "feature_too_large",
            ErrorKind::TimeLimit => "time_limit",
            ErrorKind::Cancelled => "cancelled",
        }
    }
}

impl std::fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn display_matches_serde_name() {
        for kind in [
            ErrorKind::Io,
            ErrorKind::EmptyInput,
            ErrorKind::InvalidJson,
            ErrorKind::Truncated,
            ErrorKind::NotGeojson,
            ErrorKind::InvalidCoordinates,
            ErrorKind::TooDeep,
            ErrorKind::FeatureTooLarge,
            ErrorKind::TimeLimit,
            ErrorKind::Cancelled,
        ] {
            let json = serde_json::to_string(&kind).expect("serialize");
            assert_eq!(json, format!("\"{kind}\""));
        }
    }
}
