//! Ending an analysis before it is done: from outside (the worker shuts down and hands the
//! file back) or at its time limit.
//!
//! A [`Stop`] is a shared flag that the analysis checks between batches, between features,
//! and inside the validity check's work loop, so a stop request ends the run within one
//! feature's parsing and measuring, whatever the input. The analysis then returns
//! [`ErrorKind::Cancelled`] or [`ErrorKind::TimeLimit`].

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};

use super::error::{AnalysisError, ErrorKind};

const RUNNING: u8 = 0;
const CANCELLED: u8 = 1;
const TIME_UP: u8 = 2;

/// Asks a running analysis to end. Clones share the flag; the first reason given wins.
#[derive(Debug, Clone, Default)]
pub struct Stop {
    state: Arc<AtomicU8>,
}

impl Stop {
    /// A flag nobody has raised yet.
    pub fn new() -> Stop {
        Stop::default()
    }

    /// Ends the analysis with [`ErrorKind::Cancelled`]: the caller no longer wants it.
    pub fn cancel(&self) {
        self.raise(CANCELLED);
    }

    /// A guard that cancels when dropped, so an analysis run for a future that is itself
    /// dropped (the message was released at shutdown) does not go on alone.
    pub fn cancel_on_drop(&self) -> CancelOnDrop {
        CancelOnDrop(self.clone())
    }

    /// Ends the analysis with [`ErrorKind::TimeLimit`].
    pub(crate) fn time_up(&self) {
        self.raise(TIME_UP);
    }

    fn raise(&self, reason: u8) {
        let _first_wins =
            self.state
                .compare_exchange(RUNNING, reason, Ordering::Relaxed, Ordering::Relaxed);
    }

    /// Whether a stop was asked for; cheap enough for inner loops. Work of one's own that is
    /// given a `Stop` (a worker processor's, say) checks it to end early.
    pub fn requested(&self) -> bool {
        self.state.load(Ordering::Relaxed) != RUNNING
    }

    /// The error the analysis ends with once a stop was asked for.
    pub(crate) fn check(&self, time_limit_secs: f64) -> Result<(), AnalysisError> {
        match self.state.load(Ordering::Relaxed) {
            RUNNING => Ok(()),
            TIME_UP => Err(AnalysisError::new(
                ErrorKind::TimeLimit,
                format!("the analysis took longer than its time limit of {time_limit_secs} s"),
                None,
            )),
            _ => Err(AnalysisError::new(
                ErrorKind::Cancelled,
                "the analysis was cancelled",
                None,
            )),
        }
    }
}

/// Cancels its [`Stop`] when dropped; see [`Stop::cancel_on_drop`].
#[derive(Debug)]
pub struct CancelOnDrop(Stop);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.cancel();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_reason_wins() {
        let stop = Stop::new();
        assert!(stop.check(1.0).is_ok());
        stop.time_up();
        stop.cancel();
        assert_eq!(
            stop.check(1.0).map_err(|e| e.kind),
            Err(ErrorKind::TimeLimit)
        );
    }

    #[test]
    fn dropping_the_guard_cancels_every_clone() {
        let stop = Stop::new();
        let seen_by_the_analysis = stop.clone();
        drop(stop.cancel_on_drop());
        assert!(seen_by_the_analysis.requested());
        assert_eq!(
            seen_by_the_analysis.check(1.0).map_err(|e| e.kind),
            Err(ErrorKind::Cancelled)
        );
    }
}
