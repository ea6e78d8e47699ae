//! geobatch's worker: turns uploaded GeoJSON into analysis results.
//!
//! # Layout
//! - [`analysis`]: the pure, streaming GeoJSON analysis (no I/O beyond the reader it is given).
//! - [`analyze_command`]: `geobatch-worker analyze`, the local command-line front end.
//! - [`service`]: `geobatch-worker run`, the SQS/S3 service (filled in by the worker work).

pub mod analysis;
pub mod analyze_command;
pub mod service;
