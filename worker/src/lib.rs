//! geobatch's worker: turns uploaded GeoJSON into analysis results.
//!
//! The analysis itself is the `geobatch-analysis` crate (`worker/analysis/`), which has no
//! AWS or async dependencies.
//!
//! # Layout
//! - [`analyze_command`]: `geobatch-worker analyze`, the local command-line front end.
//! - [`service`]: `geobatch-worker run`: the receive loop, concurrency and shutdown.
//! - [`config`]: the flags of `run`, validated into [`config::WorkerConfig`].
//! - [`event`]: parses S3 event notifications (plain, SNS-wrapped, `s3:TestEvent`); it is
//!   `geobatch_common::s3_event`, shared with the controller's `backfill` that builds them.
//! - [`message`]: one SQS message from receipt to deletion or release.
//! - [`process`]: one object: checks, download, processor, outcome.
//! - [`processor`]: the [`processor::Processor`] trait: the built-in analysis, `--exec`, or your own.
//! - [`fetch`]: streams an object to a temporary file within the size limit.
//! - [`scratch`]: the task's scratch-disk budget, which every download reserves from first.
//! - [`queue`], [`objects`]: the SQS and S3 calls, behind the traits the delivery rules use.
//! - [`deadline`]: the deadline every AWS call is made with.
//! - [`exec`]: runs the `--exec` command on a downloaded file.
//! - [`reaper`]: waits for `--exec` children, and reaps orphans when the worker is PID 1.
//! - [`results`]: the outcome documents and message reports, and writing them.
//! - [`kind`]: the permanent error kinds and their stable names.
//! - [`visibility`]: the visibility heartbeat and the retry backoff.
//! - [`protection`]: ECS task scale-in protection while messages are held.
//! - [`held`]: the messages held right now, each with its own release signal.
//! - [`interruption`]: Spot interruption notices from instance metadata, and what to release.
//! - [`telemetry`]: the worker's observable events: log lines and Prometheus metrics.
//! - [`sdk_error`]: what an AWS SDK error means for a message.

pub mod analyze_command;
pub mod config;
pub mod deadline;
pub use geobatch_common::s3_event as event;
pub mod exec;
#[cfg(test)]
mod fakes;
pub mod fetch;
pub mod held;
pub mod interruption;
pub mod kind;
pub mod message;
pub mod objects;
pub mod process;
pub mod processor;
pub mod protection;
pub mod queue;
pub mod reaper;
pub mod results;
pub mod scratch;
pub mod sdk_error;
pub mod service;
pub mod telemetry;
pub mod visibility;

pub use service::{run, run_with_sdk_config};
