//! The batch operations around a pool: `backfill`, `status`, `redrive` and `report`.
//!
//! They live in the controller's binary because it already carries the configuration, the
//! SQS, ECS and Auto Scaling clients and the decision log these commands read; S3 comes from
//! the same SDK the worker builds. Each command is a pure core (what to queue, what a pool's
//! state means, how outcomes sum up) behind a thin AWS shell, and every failure ends in one
//! [`OpsError`] whose [`ExitStatus`] scripts can rely on (docs/operations.md).
//!
//! # Layout
//! - [`error`]: the error type, its exit codes and the SDK error classification.
//! - [`setup`]: SDK configuration, the credentials check and the clients.
//! - [`s3_url`]: `s3://BUCKET/PREFIX` arguments.
//! - [`outcomes`]: where a source's outcome lives and what an outcome document says.
//! - [`queues`]: the SQS reads the commands share (attributes, the dead-letter queue).
//! - [`progress`]: a progress line on a terminal, plain lines elsewhere.
//! - [`backfill`], [`status`], [`redrive`], [`report`]: the commands.

pub mod backfill;
pub mod error;
pub mod outcomes;
pub mod progress;
pub mod queues;
pub mod redrive;
pub mod report;
pub mod s3_url;
pub mod setup;
pub mod status;

pub use error::{ExitStatus, OpsError};

/// Writes a command's output to stdout (or a test's buffer).
pub fn print(stdout: &mut dyn std::io::Write, text: &str) -> Result<(), OpsError> {
    stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
        .map_err(|cause| OpsError::Write {
            path: "stdout".to_owned(),
            cause,
        })
}

/// How a command that moves items went, for [`finish`].
pub struct Tally {
    /// Items that failed.
    pub failed: u64,
    /// Items done.
    pub done: u64,
    /// What the items are, for the error.
    pub what: &'static str,
}

/// Prints a command's summary (one JSON line, or the text `text` renders) and turns failed
/// items into [`OpsError::Partial`] (exit code 1).
pub fn finish<T: serde::Serialize>(
    stdout: &mut dyn std::io::Write,
    format: Option<report::OutputFormat>,
    summary: T,
    text: impl FnOnce(&T) -> String,
    tally: Tally,
) -> Result<T, OpsError> {
    let printed = match report::OutputFormat::or_detect(format) {
        report::OutputFormat::Json => {
            format!("{}\n", serde_json::to_string(&summary).unwrap_or_default())
        }
        report::OutputFormat::Text => text(&summary),
    };
    print(stdout, &printed)?;
    if tally.failed > 0 {
        return Err(OpsError::Partial {
            failed: tally.failed,
            total: tally.failed + tally.done,
            what: tally.what,
        });
    }
    Ok(summary)
}
