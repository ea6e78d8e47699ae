//! Streaming GeoJSON analysis: the library behind `geobatch-worker analyze` and the service.
//!
//! Pure apart from the reader it is given and the optional time limit (the only clock): no
//! environment, no output. No AWS and no async runtime either: the crate builds in seconds
//! and runs anywhere a `Read` does.
//!
//! # Example
//!
//! ```
//! use geobatch_analysis::{AnalysisOptions, analyze_reader};
//!
//! let geojson = br#"{"type": "FeatureCollection", "features": [
//!   {"type": "Feature", "properties": {"name": "square"},
//!    "geometry": {"type": "Polygon",
//!                 "coordinates": [[[0, 0], [1, 0], [1, 1], [0, 1], [0, 0]]]}},
//!   {"type": "Feature", "properties": {"name": "bow tie"},
//!    "geometry": {"type": "Polygon",
//!                 "coordinates": [[[0, 0], [1, 1], [1, 0], [0, 1], [0, 0]]]}}
//! ]}"#;
//! let report = analyze_reader(&geojson[..], &AnalysisOptions::default())?;
//! assert_eq!(report.features, 2);
//! assert_eq!(report.vertices, 10);
//! assert_eq!(report.geometry_types["Polygon"], 2);
//! assert_eq!(report.properties["name"].types["string"], 2);
//! // The bow tie crosses itself: GEOS's words, and where.
//! assert_eq!(report.invalid_geometries, 1);
//! assert_eq!(report.invalid[0].feature, 1);
//! assert_eq!(report.invalid[0].reason, "Self-intersection");
//! assert_eq!(report.invalid[0].location, Some([0.5, 0.5]));
//! # Ok::<(), geobatch_analysis::AnalysisError>(())
//! ```
//!
//! Errors say what is wrong and where (a byte offset in the input):
//!
//! ```
//! use geobatch_analysis::{AnalysisOptions, ErrorKind, analyze_reader};
//!
//! let err = analyze_reader(&br#"{"type": "FeatureCollection", "features": [{"#[..],
//!                          &AnalysisOptions::default()).unwrap_err();
//! assert_eq!(err.kind, ErrorKind::Truncated);
//! ```
//!
//! # Layout
//! - [`error`]: [`AnalysisError`] and its [`ErrorKind`]s.
//! - `splitter`: reads the input's outer structure and cuts `features` into batches.
//! - `json`: the byte-level cursor that validates and walks one feature.
//! - `feature`: a feature's bytes to its geometry, id and property types.
//! - `geometry`: the flat in-memory form of a geometry.
//! - `edge`: the per-edge inverse geodesic kernel (distance and area term).
//! - [`geodesic`]: WGS84 area, perimeter and length (Karney), also usable on their own.
//! - `validity`: OGC simple-feature validity in near-linear time.
//! - [`report`]: the [`Report`] and the ordered merge of per-batch summaries.
//! - [`georust`] (cargo feature `geo`): each feature to a user's analysis as a
//!   `geo::Geometry` with its `geojson` properties, and report outputs as GeoJSON.
//! - `pipeline`: the splitter thread, worker threads and bounded queues.
//! - [`stop`]: cancelling a run from outside, and its time limit.

mod edge;
pub mod error;
mod feature;
pub mod geodesic;
mod geometry;
#[cfg(feature = "geo")]
pub mod georust;
mod json;
mod pipeline;
pub mod report;
mod splitter;
pub mod stop;
mod validity;

use std::io::Read;
use std::path::Path;
use std::time::Duration;

pub use error::{AnalysisError, ErrorKind};
pub use report::{InvalidSample, PropertyStats, Report};
pub use stop::{CancelOnDrop, Stop};

/// The highest `max_nesting_depth` honoured.
pub const MAX_NESTING_DEPTH: usize = 1024;

/// The default `time_limit`: ten times what the largest object the worker accepts by
/// default (10 GiB) takes to analyse on one core, so only a hostile file reaches it.
pub const DEFAULT_TIME_LIMIT: Duration = Duration::from_secs(600);

/// Limits and knobs of one analysis run.
///
/// The limits are what keeps hostile input from costing unbounded memory or stack; the
/// defaults accept any real-world file we know of.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnalysisOptions {
    /// Largest single feature accepted, in bytes of its JSON text. Memory use is a small
    /// multiple of this (the feature's bytes plus its parsed coordinates).
    pub max_feature_bytes: u64,
    /// Deepest JSON nesting accepted, counting the top-level object as 1. A MultiPolygon
    /// inside a FeatureCollection needs 7. Values above [`MAX_NESTING_DEPTH`] are taken as
    /// that, which is what the analysis threads' stacks are sized for.
    pub max_nesting_depth: usize,
    /// How many invalid-geometry samples a report keeps.
    pub max_invalid_samples: usize,
    /// How many distinct property names a report tracks; further names are only counted.
    pub max_property_names: usize,
    /// Worker threads one analysis may use (0 is taken as 1).
    pub threads: usize,
    /// Longest one analysis may run; past it, it ends with [`ErrorKind::TimeLimit`]. `None`
    /// for no limit.
    pub time_limit: Option<Duration>,
}

impl Default for AnalysisOptions {
    fn default() -> Self {
        AnalysisOptions {
            max_feature_bytes: 64 * 1024 * 1024,
            max_nesting_depth: 64,
            max_invalid_samples: 20,
            max_property_names: 1000,
            threads: 2,
            time_limit: Some(DEFAULT_TIME_LIMIT),
        }
    }
}

/// Analysis threads for each of `concurrent_files` analyses running at once on `cpus` cores:
/// the cores shared out, at least one each.
///
/// Each analysis also has its reading thread (the caller's), which splits the input and is
/// mostly waiting on the workers; so `cpus / concurrent_files` workers per file keep every
/// core busy without the oversubscription of a fixed count (2 per file made N concurrent
/// files run 3N threads).
///
/// ```
/// use geobatch_analysis::threads_per_file;
///
/// assert_eq!(threads_per_file(8, 1), 8);
/// assert_eq!(threads_per_file(8, 3), 2);
/// assert_eq!(threads_per_file(2, 4), 1);
/// assert_eq!(threads_per_file(0, 0), 1);
/// ```
pub fn threads_per_file(cpus: usize, concurrent_files: usize) -> usize {
    (cpus / concurrent_files.max(1)).max(1)
}

/// Analyses GeoJSON read from `input`, streaming: memory stays bounded by the options, not
/// by the input's size.
pub fn analyze_reader<R: Read + Send>(
    input: R,
    options: &AnalysisOptions,
) -> Result<Report, AnalysisError> {
    pipeline::run(input, options, &Stop::new())
}

/// [`analyze_reader`] that ends early, with [`ErrorKind::Cancelled`], once `stop` is
/// cancelled from another thread.
pub fn analyze_reader_until<R: Read + Send>(
    input: R,
    options: &AnalysisOptions,
    stop: &Stop,
) -> Result<Report, AnalysisError> {
    pipeline::run(input, options, stop)
}

/// Analyses the GeoJSON file at `path`.
pub fn analyze_file(path: &Path, options: &AnalysisOptions) -> Result<Report, AnalysisError> {
    analyze_file_until(path, options, &Stop::new())
}

/// [`analyze_file`] that ends early once `stop` is cancelled.
pub fn analyze_file_until(
    path: &Path,
    options: &AnalysisOptions,
    stop: &Stop,
) -> Result<Report, AnalysisError> {
    let file = std::fs::File::open(path).map_err(|err| AnalysisError {
        kind: ErrorKind::Io,
        message: format!("cannot open {}: {err}", path.display()),
        offset: None,
    })?;
    analyze_reader_until(file, options, stop)
}
