//! Logging set-up shared by the binaries.
//!
//! Services log one JSON object per line so CloudWatch Logs and `jq` can query them; people
//! running a command by hand get readable text. The filter comes from `GEOBATCH_LOG`, then
//! `RUST_LOG`, then defaults to `info`.

use clap::ValueEnum;
use tracing_subscriber::EnvFilter;

/// How log lines are written to stderr.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// One JSON object per line, for log pipelines.
    Json,
    /// Human-readable lines, for terminals.
    Text,
}

/// Installs the global subscriber. Calling it twice is harmless (the second call is ignored),
/// which keeps tests that start a service in-process simple.
pub fn init(format: LogFormat) {
    let filter = std::env::var("GEOBATCH_LOG")
        .ok()
        .or_else(|| std::env::var("RUST_LOG").ok())
        .and_then(|spec| EnvFilter::try_new(spec).ok())
        .unwrap_or_else(|| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _already_set = match format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .try_init(),
        LogFormat::Text => builder.try_init(),
    };
}
