//! Pieces that the geobatch worker and controller both need, kept in one place so the two
//! services configure AWS, log, expose metrics and shut down the same way.
//!
//! # Layout
//! - [`aws`]: loads the SDK configuration from the standard AWS chain (`AWS_ENDPOINT_URL`,
//!   region, credentials), which is how both production and the local emulator are reached.
//! - [`telemetry`]: `tracing` set-up; JSON lines for services, readable text for people.
//! - [`http`]: the small HTTP listener that serves `/metrics` (Prometheus) and `/healthz`.
//! - [`outcome`]: where the outcome of each source object is stored, and reading one back;
//!   shared by the worker and the batch commands.
//! - [`s3_event`]: S3 event notifications in SQS bodies: parsed (the worker) and built
//!   (the controller's `backfill`), one format in one place.
//! - [`shutdown`]: a future that resolves on SIGTERM or SIGINT.
//! - `testing` (feature `testing`): starts the moto emulator for integration tests.

pub mod aws;
pub mod http;
pub mod outcome;
pub mod s3_event;
pub mod shutdown;
pub mod telemetry;
#[cfg(feature = "testing")]
pub mod testing;
