//! `backfill s3://BUCKET/PREFIX/`: queues a work item for every object that has no current
//! outcome, as if S3 had just sent its event.
//!
//! The plan is pure ([`plan_page`]): an object is queued when it has the suffix the stack's
//! notification filters on and no current outcome (or always, with `--force`). An outcome is
//! current when it describes the object's present bytes (same ETag), found where the
//! worker writes it ([`geobatch_common::outcome`]); the output folder of the batch is listed
//! once so only outcomes that exist are read. Running backfill again after the batch is done queues nothing; running it
//! while the first run's items are still queued queues those again, which costs duplicate
//! work but no harm, since processing is idempotent.

use std::collections::HashSet;
use std::io::Write;
use std::time::{Duration, Instant};

use aws_sdk_sqs::types::QueueAttributeName;
use clap::Args;
use geobatch_common::outcome::{OUTCOME_SUFFIX, OutcomeKey, OutputLocation, parse_outcome};
use geobatch_common::s3_event::{ObjectRef, created_body};
use serde::Serialize;
use tokio::task::JoinSet;

use crate::ops::outcomes::{Listed, Lister, get_bytes};
use crate::ops::progress::Progress;
use crate::ops::queues::{Outgoing, queue_attribute, send_batch};
use crate::ops::report::OutputFormat;
use crate::ops::s3_url::{S3Url, output_location};
use crate::ops::setup::OpsClients;
use crate::ops::{OpsError, Tally, finish};

/// `SendMessageBatch` takes at most ten entries.
const BATCH: usize = 10;
/// Who queued a backfilled item, in the event's `principalId`.
pub const PRINCIPAL: &str = "geobatch-backfill";

/// Queues the files under an S3 prefix that have no current outcome.
///
/// Work items are in the message
/// shape the worker already reads (an S3 ObjectCreated event notification), ten per
/// SendMessageBatch call and at most `--rate` messages a second.
///
/// An outcome is current when it describes the object's present bytes (its ETag), so a
/// re-uploaded file is queued again. `--force` queues every object (re-analysis after an
/// upgrade). Only `.geojson` objects (the stack notification's suffix filter; see
/// `--suffix`) in an allowed bucket are queued. Progress goes to stderr (a bar on a
/// terminal), the summary to stdout.
///
/// Exit codes: 0 done (or nothing to do), 1 some messages could not be sent, 2 bad URL or
/// a bucket that is not allowed, 3 no such bucket or queue, 4 no or refused credentials,
/// 5 other AWS failure.
#[derive(Debug, Clone, Args)]
pub struct BackfillArgs {
    /// The objects to queue: s3://BUCKET/PREFIX/ (every key that starts with PREFIX).
    #[arg(value_name = "S3_URL")]
    pub source: String,
    /// The queue the workers read.
    #[arg(long, env = "GEOBATCH_QUEUE_URL", value_name = "URL")]
    pub queue_url: String,
    /// The workers' output location (their `--output`), where outcomes are looked up.
    /// Needed unless `--force`.
    #[arg(long, env = "GEOBATCH_OUTPUT", value_name = "S3_URL")]
    pub output: Option<String>,
    /// Buckets the workers process, comma-separated, or `*` (their `--allowed-buckets`);
    /// a source bucket outside it is refused, since the workers would refuse its items.
    #[arg(
        long,
        env = "GEOBATCH_ALLOWED_BUCKETS",
        value_name = "BUCKETS",
        value_delimiter = ',',
        required = true
    )]
    pub allowed_buckets: Vec<String>,
    /// Only keys ending with this are queued: the suffix filter of the stack's notification.
    #[arg(long, default_value = ".geojson")]
    pub suffix: String,
    /// Queue every matching object, even those with a current outcome.
    #[arg(long)]
    pub force: bool,
    /// List and decide, print what would be queued, send nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Most messages sent per second.
    #[arg(long, value_name = "N", default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..))]
    pub rate: u32,
    /// What the summary on stdout looks like; default text on a terminal, json otherwise.
    #[arg(long, value_enum)]
    pub format: Option<OutputFormat>,
}

/// What a backfill did (or, in dry-run, would do).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct BackfillSummary {
    /// Where it looked.
    pub source: String,
    /// Whether nothing was sent.
    pub dry_run: bool,
    /// Objects listed.
    pub listed: u64,
    /// Objects without the suffix.
    pub skipped_suffix: u64,
    /// Objects with a current outcome.
    pub skipped_current: u64,
    /// Work items queued (in dry-run: that would be).
    pub queued: u64,
    /// Work items SQS refused.
    pub failed: u64,
    /// Some of the keys queued, for the dry-run listing.
    pub sample: Vec<String>,
}

/// How many queued keys the summary lists.
const SAMPLE: usize = 10;

/// The objects of one listing page to queue (pure): those with `suffix` whose key is not
/// in `current`, the keys that have a current outcome.
pub fn plan_page<'a>(
    page: &'a [Listed],
    suffix: &str,
    current: &HashSet<String>,
    summary: &mut BackfillSummary,
) -> Vec<&'a Listed> {
    let mut queue = Vec::new();
    for object in page {
        summary.listed += 1;
        if !object.key.ends_with(suffix) {
            summary.skipped_suffix += 1;
        } else if current.contains(&object.key) {
            summary.skipped_current += 1;
        } else {
            queue.push(object);
        }
    }
    queue
}

/// Runs a backfill; the summary goes to `stdout`.
pub async fn run(
    clients: &OpsClients,
    args: &BackfillArgs,
    stdout: &mut dyn Write,
) -> Result<BackfillSummary, OpsError> {
    let source = S3Url::parse("S3_URL", &args.source)?;
    if !allowed(&args.allowed_buckets, &source.bucket) {
        return Err(OpsError::Usage(format!(
            "bucket {} is not in --allowed-buckets ({}); the workers would refuse its items. \
             Add it to the workers' GEOBATCH_ALLOWED_BUCKETS and here, or pick an allowed bucket",
            source.bucket,
            args.allowed_buckets.join(",")
        )));
    }
    let output = match (&args.output, args.force) {
        (Some(url), _) => Some(output_location("--output", url)?),
        (None, true) => None,
        (None, false) => {
            return Err(OpsError::Usage(
                "--output (GEOBATCH_OUTPUT) is needed to find which objects already have an \
                 outcome; give the workers' output location, or --force to queue everything"
                    .to_owned(),
            ));
        }
    };
    // Fails with exit code 3 before any listing when the queue does not exist.
    queue_attribute(clients, &args.queue_url, QueueAttributeName::QueueArn).await?;
    let existing = match &output {
        Some(output) if !args.force => existing_outcomes(clients, output, &source).await?,
        _ => HashSet::new(),
    };

    let mut summary = BackfillSummary {
        source: source.to_string(),
        dry_run: args.dry_run,
        ..BackfillSummary::default()
    };
    let mut progress = Progress::stderr(if args.dry_run {
        "would queue"
    } else {
        "queued"
    });
    let mut pacer = Pacer::new(args.rate);
    let mut lister = Lister::new(&clients.s3, &source);
    while let Some(page) = lister.next_page().await? {
        let current = match &output {
            Some(output) if !args.force => {
                current_outcomes(
                    clients,
                    output,
                    &source.bucket,
                    &page,
                    &args.suffix,
                    &existing,
                )
                .await
            }
            _ => HashSet::new(),
        };
        let queue = plan_page(&page, &args.suffix, &current, &mut summary);
        for batch in queue.chunks(BATCH) {
            for object in batch {
                if summary.sample.len() < SAMPLE {
                    summary.sample.push(object.key.clone());
                }
            }
            if args.dry_run {
                summary.queued += batch.len() as u64;
            } else {
                pacer.wait(batch.len()).await;
                let failed = send_items(clients, &args.queue_url, &source.bucket, batch).await?;
                summary.queued += (batch.len() - failed) as u64;
                summary.failed += failed as u64;
            }
            progress.update(summary.queued, None, &detail(&summary));
        }
    }
    progress.finish(summary.queued, None, &detail(&summary));
    let tally = Tally {
        failed: summary.failed,
        done: summary.queued,
        what: "work items",
    };
    finish(stdout, args.format, summary, render_text, tally)
}

fn detail(summary: &BackfillSummary) -> String {
    format!(
        "of {} listed; {} already done, {} not {}",
        summary.listed, summary.skipped_current, summary.skipped_suffix, "matching"
    )
}

fn render_text(summary: &BackfillSummary) -> String {
    let verb = if summary.dry_run {
        "would queue"
    } else {
        "queued"
    };
    let mut text = format!(
        "{}: listed {}, {verb} {}, skipped {} with a current outcome and {} without the suffix{}\n",
        summary.source,
        summary.listed,
        summary.queued,
        summary.skipped_current,
        summary.skipped_suffix,
        if summary.failed > 0 {
            format!(", {} FAILED to send", summary.failed)
        } else {
            String::new()
        },
    );
    for key in &summary.sample {
        text.push_str(&format!("  {key}\n"));
    }
    if summary.queued > summary.sample.len() as u64 {
        text.push_str(&format!(
            "  … and {} more\n",
            summary.queued - summary.sample.len() as u64
        ));
    }
    text
}

/// Whether the workers' `--allowed-buckets` list admits `bucket`.
pub fn allowed(list: &[String], bucket: &str) -> bool {
    list.iter()
        .map(|b| b.trim())
        .any(|b| b == "*" || b == bucket)
}

/// The outcome keys that exist in the folder where the outcomes of objects under `source`
/// are written (empty when that folder cannot be named: keys long enough to be hashed are
/// then read one by one).
async fn existing_outcomes(
    clients: &OpsClients,
    output: &OutputLocation,
    source: &S3Url,
) -> Result<HashSet<String>, OpsError> {
    // The outcome key of the prefix itself, less its suffix, is the folder of the outcomes
    // of every key that starts with the prefix.
    let Ok(OutcomeKey::Named(named)) = output.outcome_key(&source.bucket, &source.prefix) else {
        return Ok(HashSet::new());
    };
    let folder = S3Url {
        bucket: output.bucket.clone(),
        prefix: named
            .strip_suffix(OUTCOME_SUFFIX)
            .unwrap_or(&named)
            .to_owned(),
    };
    let mut existing = HashSet::new();
    let mut progress = Progress::stderr("outcomes listed");
    let mut lister = Lister::new(&clients.s3, &folder);
    while let Some(page) = lister.next_page().await? {
        existing.extend(page.into_iter().map(|listed| listed.key));
        progress.update(existing.len() as u64, None, "");
    }
    progress.finish(existing.len() as u64, None, "");
    Ok(existing)
}

/// Outcome documents read at once while checking which are current.
const OUTCOME_READS: usize = 16;

/// The keys of the page's matching objects whose outcome describes their present bytes. An
/// outcome that is missing, unreadable or of other bytes is not current.
async fn current_outcomes(
    clients: &OpsClients,
    output: &OutputLocation,
    bucket: &str,
    page: &[Listed],
    suffix: &str,
    existing: &HashSet<String>,
) -> HashSet<String> {
    let candidates: Vec<(&Listed, String)> = page
        .iter()
        .filter(|object| object.key.ends_with(suffix))
        .filter_map(|object| match output.outcome_key(bucket, &object.key) {
            Ok(OutcomeKey::Named(key)) if existing.contains(&key) => Some((object, key)),
            Ok(OutcomeKey::Hashed(key)) => Some((object, key)),
            _ => None,
        })
        .collect();
    let mut current = HashSet::new();
    for chunk in candidates.chunks(OUTCOME_READS) {
        let mut reads = JoinSet::new();
        for (object, outcome_key) in chunk {
            let (s3, out_bucket, outcome_key) = (
                clients.s3.clone(),
                output.bucket.clone(),
                outcome_key.clone(),
            );
            let (key, etag) = (object.key.clone(), object.etag.clone());
            reads.spawn(async move {
                let bytes = get_bytes(&s3, &out_bucket, &outcome_key).await.ok()?;
                let outcome = parse_outcome(&bytes).ok()?;
                etag.is_some_and(|etag| outcome.describes(&etag))
                    .then_some(key)
            });
        }
        while let Some(done) = reads.join_next().await {
            if let Ok(Some(key)) = done {
                current.insert(key);
            }
        }
    }
    current
}

/// Sends one batch of work items; returns how many SQS refused (each is logged).
async fn send_items(
    clients: &OpsClients,
    queue_url: &str,
    bucket: &str,
    batch: &[&Listed],
) -> Result<usize, OpsError> {
    let items = batch
        .iter()
        .map(|object| Outgoing {
            body: created_body(
                &ObjectRef {
                    bucket: bucket.to_owned(),
                    key: object.key.clone(),
                    size: object.size,
                    etag: object.etag.clone(),
                    version_id: None,
                },
                &clients.region,
                PRINCIPAL,
            ),
            attributes: None,
        })
        .collect();
    let sent = send_batch(clients, queue_url, items).await?;
    for refused in &sent.refused {
        let key = batch.get(refused.index).map_or("?", |o| o.key.as_str());
        tracing::error!(
            key,
            code = refused.code,
            message = refused.message,
            "SQS refused a work item"
        );
    }
    Ok(sent.refused.len())
}

/// Keeps sends at or under a rate: waits before a send that would go over it.
pub struct Pacer {
    rate: f64,
    started: Instant,
    sent: u64,
}

impl Pacer {
    /// At most `rate` messages a second.
    pub fn new(rate: u32) -> Pacer {
        Pacer {
            rate: f64::from(rate.max(1)),
            started: Instant::now(),
            sent: 0,
        }
    }

    /// How long to wait, `elapsed` after the start, before the next send: until the time
    /// the messages sent so far are due at the rate (pure).
    pub fn delay(&self, elapsed: Duration) -> Duration {
        Duration::from_secs_f64(self.sent as f64 / self.rate).saturating_sub(elapsed)
    }

    async fn wait(&mut self, n: usize) {
        let delay = self.delay(self.started.elapsed());
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        self.sent += n as u64;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listed(key: &str) -> Listed {
        Listed {
            key: key.into(),
            size: Some(1),
            etag: Some("e".into()),
            modified_secs: Some(100),
        }
    }

    #[test]
    fn only_matching_objects_without_a_current_outcome_are_queued() {
        let page = [
            listed("batch/new.geojson"),
            listed("batch/done.geojson"),
            listed("batch/notes.txt"),
        ];
        let current: HashSet<String> = ["batch/done.geojson".to_owned()].into();
        let mut summary = BackfillSummary::default();
        let queued: Vec<&str> = plan_page(&page, ".geojson", &current, &mut summary)
            .into_iter()
            .map(|o| o.key.as_str())
            .collect();
        assert_eq!(queued, ["batch/new.geojson"]);
        assert_eq!(
            (
                summary.listed,
                summary.skipped_suffix,
                summary.skipped_current
            ),
            (3, 1, 1)
        );
        let mut forced = BackfillSummary::default();
        assert_eq!(
            plan_page(&page, ".geojson", &HashSet::new(), &mut forced).len(),
            2
        );
    }

    #[test]
    fn allowed_buckets_follow_the_workers_rule() {
        let list = vec!["uploads".to_owned(), " other ".to_owned()];
        assert!(allowed(&list, "uploads") && allowed(&list, "other"));
        assert!(!allowed(&list, "elsewhere"));
        assert!(allowed(&["*".to_owned()], "anything"));
    }

    #[test]
    fn the_pacer_waits_only_when_sends_run_ahead_of_the_rate() {
        let mut pacer = Pacer::new(10);
        assert_eq!(pacer.delay(Duration::ZERO), Duration::ZERO);
        pacer.sent = 10;
        assert_eq!(pacer.delay(Duration::ZERO), Duration::from_secs(1));
        assert_eq!(
            pacer.delay(Duration::from_millis(400)),
            Duration::from_millis(600)
        );
        assert_eq!(pacer.delay(Duration::from_secs(5)), Duration::ZERO);
    }
}
