//! GeoJSON analysis: the contract the service and the CLI rely on.
//!
//! PLACEHOLDER implementation (whole-document parse, counts only) that the analysis work
//! replaces with the streaming engine; the public signatures below are the contract.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;

use serde::{Deserialize, Serialize};

/// Limits and knobs of one analysis run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnalysisOptions {
    /// Largest single feature accepted, in bytes of its JSON text.
    pub max_feature_bytes: u64,
    /// Deepest JSON nesting accepted.
    pub max_nesting_depth: usize,
    /// How many invalid-geometry samples a report keeps.
    pub max_invalid_samples: usize,
    /// Worker threads one analysis may use.
    pub threads: usize,
}

impl Default for AnalysisOptions {
    fn default() -> Self {
        AnalysisOptions {
            max_feature_bytes: 64 * 1024 * 1024,
            max_nesting_depth: 64,
            max_invalid_samples: 20,
            threads: 2,
        }
    }
}

/// What an analysis found in one input.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// Number of features.
    pub features: u64,
    /// Geometry type name to count.
    pub geometry_types: BTreeMap<String, u64>,
}

/// Why an input could not be analysed.
#[derive(Debug, Clone, PartialEq, thiserror::Error, Serialize, Deserialize)]
#[error("{kind}: {message}")]
pub struct AnalysisError {
    /// Machine-readable category.
    pub kind: ErrorKind,
    /// Human-readable explanation.
    pub message: String,
    /// Byte offset in the input where the problem was found, where that applies.
    pub offset: Option<u64>,
}

/// Categories of analysis failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// Reading the input failed.
    Io,
    /// The input is not valid JSON.
    InvalidJson,
    /// The input is JSON but not GeoJSON.
    NotGeojson,
}

impl std::fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let name = match self {
            ErrorKind::Io => "io",
            ErrorKind::InvalidJson => "invalid_json",
            ErrorKind::NotGeojson => "not_geojson",
        };
        f.write_str(name)
    }
}

/// Analyses GeoJSON read from `input`.
pub fn analyze_reader<R: Read + Send>(
    input: R,
    _options: &AnalysisOptions,
) -> Result<Report, AnalysisError> {
    let value: serde_json::Value = serde_json::from_reader(input).map_err(|err| AnalysisError {
        kind: if err.is_io() {
            ErrorKind::Io
        } else {
            ErrorKind::InvalidJson
        },
        message: err.to_string(),
        offset: None,
    })?;
    let not_geojson = |message: &str| AnalysisError {
        kind: ErrorKind::NotGeojson,
        message: message.to_owned(),
        offset: None,
    };
    let features = match value.get("type").and_then(|t| t.as_str()) {
        Some("FeatureCollection") => value
            .get("features")
            .and_then(|f| f.as_array())
            .cloned()
            .ok_or_else(|| not_geojson("FeatureCollection without a features array"))?,
        Some("Feature") => vec![value],
        _ => return Err(not_geojson("no GeoJSON type member")),
    };
    let mut geometry_types = BTreeMap::new();
    for feature in &features {
        if let Some(kind) = feature.pointer("/geometry/type").and_then(|t| t.as_str()) {
            *geometry_types.entry(kind.to_owned()).or_insert(0) += 1;
        }
    }
    Ok(Report {
        features: features.len() as u64,
        geometry_types,
    })
}

/// Analyses the GeoJSON file at `path`.
pub fn analyze_file(path: &Path, options: &AnalysisOptions) -> Result<Report, AnalysisError> {
    let file = std::fs::File::open(path).map_err(|err| AnalysisError {
        kind: ErrorKind::Io,
        message: format!("cannot open {}: {err}", path.display()),
        offset: None,
    })?;
    analyze_reader(std::io::BufReader::new(file), options)
}
