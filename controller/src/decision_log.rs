//! The decision log: one JSON line per capacity change (or, in dry-run, per change it would
//! make), with the observation it came from and the reason, on stdout by default.
//!
//! It is kept apart from the diagnostic logs on stderr so `geobatch-controller run | jq`
//! answers "why did capacity change at 03:12?" without filtering.
//!
//! The log also remembers each pool's latest decision, including polls that changed
//! nothing, which the controller serves on `/decisions` for `geobatch-controller status`:
//! stdout belongs to whatever collects the log, so another process cannot read it back.

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use aws_sdk_sqs::primitives::{DateTime, DateTimeFormat};
use serde::Serialize;

use crate::observe::PoolSnapshot;
use crate::plan::Action;
use crate::policy::{Decision, Direction, Observation, Reason};

/// One decision with everything that led to it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DecisionRecord {
    /// When, RFC 3339 UTC.
    pub time: String,
    /// The pool's name.
    pub pool: String,
    /// Whether the calls were only shown, not made.
    pub dry_run: bool,
    /// What the policy saw.
    pub observation: Observation,
    /// CloudWatch's latest visible-messages figure, as corroboration of the SQS view.
    pub cloudwatch_visible: Option<f64>,
    /// The service's desired count decided.
    pub desired_tasks: u32,
    /// The group's desired capacity decided.
    pub desired_instances: u32,
    /// Which way capacity moves.
    pub direction: Direction,
    /// Why, in a sentence.
    pub reason: String,
    /// Why, as data.
    pub reason_detail: Reason,
    /// The calls, in order (made, or in dry-run and `decide`, that would be made).
    pub calls: Vec<Action>,
    /// The observation's failed reads, which made the policy hold.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub observation_errors: Vec<String>,
    /// The calls that failed; the others were made, except those in `skipped`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub failed: Vec<String>,
    /// Calls not made because a call they need failed.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub skipped: Vec<Action>,
}

impl DecisionRecord {
    /// Builds the record of one poll.
    pub fn new(
        pool: &str,
        dry_run: bool,
        snapshot: &PoolSnapshot,
        decision: &Decision,
        calls: Vec<Action>,
    ) -> DecisionRecord {
        DecisionRecord {
            time: now_rfc3339(),
            pool: pool.to_owned(),
            dry_run,
            observation: snapshot.observation,
            cloudwatch_visible: snapshot.cloudwatch_visible,
            desired_tasks: decision.desired_tasks,
            desired_instances: decision.desired_instances,
            direction: decision.direction,
            reason: decision.reason.to_string(),
            reason_detail: decision.reason.clone(),
            calls,
            observation_errors: snapshot.errors.iter().map(ToString::to_string).collect(),
            failed: Vec::new(),
            skipped: Vec::new(),
        }
    }
}

/// Where decision records go. Cloning shares the destination.
#[derive(Clone)]
pub struct DecisionLog {
    /// `None` discards records without encoding them.
    out: Option<Arc<Mutex<Box<dyn Write + Send>>>>,
    /// Each pool's latest decision, for `/decisions`; `None` when discarding.
    latest: Option<Arc<Mutex<BTreeMap<String, DecisionRecord>>>>,
}

impl DecisionLog {
    /// Records to stdout.
    pub fn stdout() -> DecisionLog {
        DecisionLog::to_writer(std::io::stdout())
    }

    /// Records to any writer (a file, or a buffer in tests).
    pub fn to_writer(out: impl Write + Send + 'static) -> DecisionLog {
        DecisionLog {
            out: Some(Arc::new(Mutex::new(Box::new(out)))),
            latest: Some(Arc::default()),
        }
    }

    /// Records nowhere: for `decide`, which prints its own records, and the simulator,
    /// which keeps its decisions in simulated time.
    pub fn discard() -> DecisionLog {
        DecisionLog {
            out: None,
            latest: None,
        }
    }

    /// Whether [`DecisionLog::remember`] keeps anything, so a caller can skip building a
    /// record nobody will read.
    pub fn keeps_latest(&self) -> bool {
        self.latest.is_some()
    }

    /// Remembers a poll's decision as its pool's latest without writing a line (a poll
    /// that changes nothing).
    pub fn remember(&self, record: DecisionRecord) {
        if let Some(latest) = &self.latest {
            latest
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .insert(record.pool.clone(), record);
        }
    }

    /// Each pool's latest decision, by pool name.
    pub fn latest(&self) -> Vec<DecisionRecord> {
        self.latest.as_ref().map_or_else(Vec::new, |latest| {
            latest
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .values()
                .cloned()
                .collect()
        })
    }

    /// Writes one record as one line, and remembers it as its pool's latest. A log that
    /// cannot be written must not stop the controller, so a failure is reported on stderr
    /// and otherwise ignored.
    pub fn write(&self, record: &DecisionRecord) {
        self.remember(record.clone());
        let Some(out) = &self.out else {
            return;
        };
        let line = match serde_json::to_string(record) {
            Ok(line) => line,
            Err(err) => {
                tracing::error!(error = %err, "cannot encode a decision record");
                return;
            }
        };
        let mut out = out.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Err(err) = writeln!(out, "{line}").and_then(|()| out.flush()) {
            tracing::error!(error = %err, "cannot write the decision log");
        }
    }
}

impl std::fmt::Debug for DecisionLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DecisionLog")
    }
}

/// The wall-clock time for log records; the policy itself never sees it.
pub fn now_rfc3339() -> String {
    DateTime::from(SystemTime::now())
        .fmt(DateTimeFormat::DateTime)
        .unwrap_or_default()
}
