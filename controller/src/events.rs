//! The controller's observable events. Each type owns its log fields and the metric it
//! counts, so a log line and its counter can never drift apart.

use std::time::Duration;

use crate::aws::ApiError;
use crate::metrics::Metrics;
use crate::plan::Action;

/// An AWS call failed; the policy holds what it could not see, or a failed call is tried
/// again on the next poll if it is still needed.
#[derive(Debug)]
pub struct ApiCallFailed<'a> {
    /// The pool being observed or changed.
    pub pool: &'a str,
    /// The failure.
    pub error: &'a ApiError,
}

impl ApiCallFailed<'_> {
    /// Logs a warning and counts the error by operation.
    pub fn emit(&self, metrics: &Metrics) {
        metrics.api_error(self.error.call, self.error.kind);
        tracing::warn!(
            pool = self.pool,
            call = self.error.call,
            kind = self.error.kind.as_str(),
            error = %self.error.message,
            "AWS call failed"
        );
    }
}

/// A capacity call was made, or in dry-run would have been.
#[derive(Debug)]
pub struct CapacityCall<'a> {
    /// The pool.
    pub pool: &'a str,
    /// The call.
    pub action: &'a Action,
    /// The decision's reason, in words.
    pub reason: &'a str,
    /// Whether the call was only shown.
    pub dry_run: bool,
}

impl CapacityCall<'_> {
    /// Logs the call (`would …` in dry-run) with its reason and counts it.
    pub fn emit(&self, metrics: &Metrics) {
        metrics.call(self.pool, self.action.call(), self.dry_run);
        let action = self.action;
        if self.dry_run {
            tracing::info!(pool = self.pool, reason = self.reason, "would {action}");
        } else {
            tracing::info!(pool = self.pool, reason = self.reason, "{action}");
        }
    }
}

/// A poll failed, so the next one waits longer.
#[derive(Debug)]
pub struct BackingOff<'a> {
    /// The pool.
    pub pool: &'a str,
    /// The wait before the next poll.
    pub wait: Duration,
}

impl BackingOff<'_> {
    /// Logs the wait.
    pub fn emit(&self) {
        tracing::info!(
            pool = self.pool,
            retry_in_secs = self.wait.as_secs_f64(),
            "poll failed; backing off"
        );
    }
}
