//! `status`: one view of a pool, as an operator wants it while a batch runs.
//!
//! The queue, service and group are read with the controller's own observer, so `status`
//! and the controller see the same figures. Completed files per minute come from the
//! queue's `NumberOfMessagesDeleted` in CloudWatch (a worker deletes a message only after
//! its outcome is written); where CloudWatch has no SQS metrics (the local emulator),
//! `--watch` falls back to how fast the queue drains between refreshes. The controller's
//! last decision is read from its `/decisions` endpoint (docs/operations.md says why).

use std::collections::{BTreeMap, VecDeque};
use std::io::Write;
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime};

use aws_sdk_cloudwatch::primitives::DateTime;
use aws_sdk_cloudwatch::types::{Dimension, Metric, MetricDataQuery, MetricStat};
use clap::Args;
use serde::Serialize;

use crate::config::{Config, Pool};
use crate::decision_log::now_rfc3339;
use crate::observe::{AwsObserver, Observer};
use crate::ops::queues::{dead_letter_queue, queue_count};
use crate::ops::report::OutputFormat;
use crate::ops::setup::OpsClients;
use crate::ops::{OpsError, print};
use aws_sdk_sqs::types::QueueAttributeName;

/// The window the completion rate is measured over.
const RATE_WINDOW: Duration = Duration::from_secs(5 * 60);

/// Shows one pool: messages, tasks, instances, progress and the controller's last decision.
///
/// In detail: visible, in-flight, delayed and dead-lettered messages; the service's
/// desired and running tasks; the group's instances by state; the controller's last
/// decision and its reason; completed files per minute and an estimated time to drain.
///
/// Reads only; changes nothing. `--watch` redraws every few seconds until Ctrl-C;
/// `--format json` prints one JSON object (per refresh) for scripts.
///
/// Exit codes: 0 shown, 1 some of it could not be read (listed under `errors`), 2 bad
/// config or arguments, 3 no such pool, 4 no or refused credentials.
#[derive(Debug, Clone, Args)]
pub struct StatusArgs {
    /// The controller's TOML configuration file (the pools' queue, cluster, service, group).
    #[arg(long, short, value_name = "FILE", env = "GEOBATCH_CONTROLLER_CONFIG")]
    pub config: PathBuf,
    /// The pool to show; may be left out when the config has one pool.
    #[arg(long, value_name = "NAME")]
    pub pool: Option<String>,
    /// The controller's `--listen` address, where `/decisions` has its last decision per
    /// pool; `none` to skip it.
    #[arg(
        long,
        value_name = "URL",
        env = "GEOBATCH_CONTROLLER_URL",
        default_value = "http://127.0.0.1:9090"
    )]
    pub controller_url: String,
    /// Redraw every SECS seconds (default 5) until interrupted.
    #[arg(long, value_name = "SECS", num_args = 0..=1, default_missing_value = "5")]
    pub watch: Option<f64>,
    /// `text` for people, `json` for scripts; default text on a terminal, json otherwise.
    #[arg(long, value_enum)]
    pub format: Option<OutputFormat>,
}

/// Messages of the queue by state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Messages {
    /// Waiting to be received.
    pub visible: u64,
    /// Received and being processed.
    pub in_flight: u64,
    /// Sent with a delay, not yet visible.
    pub delayed: u64,
}

/// The service's tasks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Tasks {
    /// The desired count.
    pub desired: u32,
    /// Running.
    pub running: u32,
    /// Starting.
    pub pending: u32,
}

/// The group's instances.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Instances {
    /// The desired capacity.
    pub desired: u32,
    /// Instances by lifecycle state (`InService`, `Pending`, `Terminating`, ...).
    pub by_state: BTreeMap<String, u32>,
    /// Instances whose ECS container instance is draining.
    pub draining: u32,
    /// Instances running or starting a task.
    pub busy: u32,
}

/// One view of a pool.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PoolStatus {
    /// When it was read.
    pub time: String,
    /// The pool.
    pub pool: String,
    /// Its queue.
    pub queue_url: String,
    /// The queue's messages.
    pub messages: Option<Messages>,
    /// Messages in the dead-letter queue.
    pub dead_lettered: Option<u64>,
    /// The service's tasks.
    pub tasks: Option<Tasks>,
    /// The group's instances.
    pub instances: Option<Instances>,
    /// Messages completed (deleted by a worker) per minute.
    pub completed_per_minute: Option<f64>,
    /// Where that figure comes from: `cloudwatch`, `queue_drain` (`--watch` only) or none.
    pub rate_source: Option<&'static str>,
    /// Seconds until the queue is empty at that rate.
    pub eta_secs: Option<f64>,
    /// The controller's last decision for the pool, as its decision log wrote it.
    pub controller: Option<serde_json::Value>,
    /// What could not be read.
    pub errors: Vec<String>,
}

impl PoolStatus {
    /// Messages not yet completed: visible, in flight and delayed.
    pub fn outstanding(&self) -> Option<u64> {
        self.messages.map(|m| m.visible + m.in_flight + m.delayed)
    }
}

/// Seconds to drain `outstanding` messages at `per_minute` (pure): zero when nothing is
/// left, unknown when nothing completes.
pub fn eta_secs(outstanding: u64, per_minute: Option<f64>) -> Option<f64> {
    match per_minute {
        _ if outstanding == 0 => Some(0.0),
        Some(rate) if rate > 0.0 => Some(outstanding as f64 / rate * 60.0),
        _ => None,
    }
}

/// How fast the queue drained over the samples (pure): the fall in outstanding messages per
/// minute between the oldest and newest sample, `None` when it did not fall or too little
/// time passed. Arrivals in between make it an underestimate.
pub fn drain_rate(samples: &VecDeque<(Instant, u64)>) -> Option<f64> {
    let (&(first_at, first), &(last_at, last)) = (samples.front()?, samples.back()?);
    let minutes = last_at.duration_since(first_at).as_secs_f64() / 60.0;
    (minutes > 0.0 && first > last).then(|| (first - last) as f64 / minutes)
}

/// Picks the pool to show.
pub fn select_pool<'a>(config: &'a Config, name: Option<&str>) -> Result<&'a Pool, OpsError> {
    let names = || {
        config
            .pools
            .iter()
            .map(|p| p.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    match name {
        Some(name) => {
            config
                .pools
                .iter()
                .find(|p| p.name == name)
                .ok_or_else(|| OpsError::NotFound {
                    what: "pool",
                    name: format!("{name:?} (the config has: {})", names()),
                    call: "config",
                    hint: "pass one of the config's pool names with --pool",
                })
        }
        None if config.pools.len() == 1 => Ok(&config.pools[0]),
        None => Err(OpsError::Usage(format!(
            "the config has several pools ({}); pick one with --pool",
            names()
        ))),
    }
}

/// Reads the pool once.
pub async fn read(clients: &OpsClients, pool: &Pool, controller_url: &str) -> PoolStatus {
    let mut observer = AwsObserver::new(clients.aws.clone(), Duration::ZERO);
    let (snapshot, dead_lettered, deleted, controller) = tokio::join!(
        observer.observe(pool),
        dead_lettered(clients, &pool.queue_url),
        completed_per_minute(clients, &pool.queue_name),
        last_decision(controller_url, &pool.name),
    );
    let mut errors: Vec<String> = snapshot
        .errors
        .iter()
        .filter(|e| e.call != "GetMetricData")
        .map(ToString::to_string)
        .collect();
    let dead_lettered = dead_lettered.map_err(|e| errors.push(e.to_string())).ok();
    let completed = deleted
        .map_err(|e| errors.push(e.to_string()))
        .ok()
        .flatten();
    let controller = controller.map_err(|e| errors.push(e)).ok().flatten();
    let obs = snapshot.observation;
    let instances = match (obs.instances, &snapshot.hosts) {
        (Some(group), Some(hosts)) => {
            let mut by_state = BTreeMap::new();
            for host in hosts {
                *by_state.entry(host.lifecycle_state.clone()).or_insert(0) += 1;
            }
            Some(Instances {
                desired: group.desired,
                by_state,
                draining: hosts.iter().filter(|h| h.draining()).count() as u32,
                busy: hosts
                    .iter()
                    .filter(|h| h.container.is_some() && !h.idle())
                    .count() as u32,
            })
        }
        _ => None,
    };
    let messages = obs.queue.map(|q| Messages {
        visible: q.visible,
        in_flight: q.in_flight,
        delayed: q.delayed,
    });
    let mut status = PoolStatus {
        time: now_rfc3339(),
        pool: pool.name.clone(),
        queue_url: pool.queue_url.clone(),
        messages,
        dead_lettered,
        tasks: obs.service.map(|s| Tasks {
            desired: s.desired,
            running: s.running,
            pending: s.pending,
        }),
        instances,
        completed_per_minute: completed,
        rate_source: completed.map(|_| "cloudwatch"),
        eta_secs: None,
        controller,
        errors,
    };
    if let Some(outstanding) = status.outstanding() {
        status.eta_secs = eta_secs(outstanding, status.completed_per_minute);
    }
    status
}

async fn dead_lettered(clients: &OpsClients, queue_url: &str) -> Result<u64, OpsError> {
    let dlq = dead_letter_queue(clients, queue_url).await?;
    queue_count(
        clients,
        &dlq,
        QueueAttributeName::ApproximateNumberOfMessages,
    )
    .await
}

/// The queue's `NumberOfMessagesDeleted` per minute over the last [`RATE_WINDOW`];
/// `None` when CloudWatch has no datapoint (no SQS metrics, or an idle queue).
async fn completed_per_minute(
    clients: &OpsClients,
    queue_name: &str,
) -> Result<Option<f64>, OpsError> {
    const CALL: &str = "GetMetricData";
    let now = SystemTime::now();
    let start = now
        .checked_sub(RATE_WINDOW)
        .unwrap_or(SystemTime::UNIX_EPOCH);
    let metric = Metric::builder()
        .namespace("AWS/SQS")
        .metric_name("NumberOfMessagesDeleted")
        .dimensions(
            Dimension::builder()
                .name("QueueName")
                .value(queue_name)
                .build(),
        )
        .build();
    let output = clients
        .aws
        .cloudwatch
        .get_metric_data()
        .start_time(DateTime::from(start))
        .end_time(DateTime::from(now + Duration::from_secs(60)))
        .metric_data_queries(
            MetricDataQuery::builder()
                .id("deleted")
                .metric_stat(
                    MetricStat::builder()
                        .metric(metric)
                        .period(60)
                        .stat("Sum")
                        .build(),
                )
                .build(),
        )
        .send()
        .await
        .map_err(|err| OpsError::Aws {
            call: CALL,
            message: aws_sdk_cloudwatch::error::DisplayErrorContext(err).to_string(),
        })?;
    let values: Vec<f64> = output
        .metric_data_results()
        .iter()
        .flat_map(|r| r.values().iter().copied())
        .collect();
    if values.is_empty() {
        return Ok(None);
    }
    Ok(Some(
        values.iter().sum::<f64>() / (RATE_WINDOW.as_secs_f64() / 60.0),
    ))
}

/// The pool's record from the controller's `/decisions`; `Ok(None)` when it has none yet.
async fn last_decision(
    controller_url: &str,
    pool: &str,
) -> Result<Option<serde_json::Value>, String> {
    if controller_url == "none" {
        return Ok(None);
    }
    let url = format!("{}/decisions", controller_url.trim_end_matches('/'));
    let failed = |err: &dyn std::fmt::Display| {
        format!(
            "controller at {url}: {err} (start it with --listen, point --controller-url or GEOBATCH_CONTROLLER_URL at it, or pass --controller-url none)"
        )
    };
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .map_err(|err| failed(&err))?;
    let response = client.get(&url).send().await.map_err(|err| failed(&err))?;
    let records: Vec<serde_json::Value> = response
        .error_for_status()
        .map_err(|err| failed(&err))?
        .json()
        .await
        .map_err(|err| failed(&err))?;
    Ok(records
        .into_iter()
        .find(|r| r.get("pool").and_then(|p| p.as_str()) == Some(pool)))
}

/// The text view of a status.
pub fn render_text(status: &PoolStatus) -> String {
    let or_dash = |v: Option<String>| v.unwrap_or_else(|| "?".to_owned());
    let mut out = format!("pool {}   {}\n", status.pool, status.time);
    out.push_str(&format!(
        "  messages    {}   dead-lettered {}\n",
        or_dash(status.messages.map(|m| format!(
            "visible {}   in flight {}   delayed {}",
            m.visible, m.in_flight, m.delayed
        ))),
        or_dash(status.dead_lettered.map(|d| d.to_string())),
    ));
    out.push_str(&format!(
        "  tasks       {}\n",
        or_dash(status.tasks.map(|t| format!(
            "desired {}   running {}   pending {}",
            t.desired, t.running, t.pending
        )))
    ));
    out.push_str(&format!(
        "  instances   {}\n",
        or_dash(status.instances.as_ref().map(|i| {
            let states: Vec<String> = i.by_state.iter().map(|(s, n)| format!("{s} {n}")).collect();
            let states = if states.is_empty() {
                "none".to_owned()
            } else {
                states.join("   ")
            };
            format!(
                "desired {}   {states}   (busy {}, draining {})",
                i.desired, i.busy, i.draining
            )
        }))
    ));
    let rate = match (status.completed_per_minute, status.rate_source) {
        (Some(rate), Some(source)) => format!("{rate:.1} files/min ({source})"),
        _ => "no completions measured yet".to_owned(),
    };
    let eta = match (status.eta_secs, status.outstanding()) {
        (Some(0.0), _) => "queue drained".to_owned(),
        (Some(secs), Some(n)) => format!("about {} to drain {n} messages", human_secs(secs)),
        (None, Some(n)) => format!("{n} messages outstanding, time to drain unknown"),
        _ => String::new(),
    };
    out.push_str(&format!("  progress    {rate}   {eta}\n"));
    match &status.controller {
        Some(record) => {
            let get = |name: &str| {
                record
                    .get(name)
                    .map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_owned))
                    .unwrap_or_default()
            };
            out.push_str(&format!(
                "  controller  {} {} → {} tasks, {} instances: {}\n",
                get("time"),
                get("direction"),
                get("desired_tasks"),
                get("desired_instances"),
                get("reason")
            ));
        }
        None => out.push_str("  controller  no decision known\n"),
    }
    for error in &status.errors {
        out.push_str(&format!("  ! {error}\n"));
    }
    out
}

fn human_secs(secs: f64) -> String {
    let secs = secs.round() as u64;
    match secs {
        0..60 => format!("{secs} s"),
        60..3600 => format!("{} min {} s", secs / 60, secs % 60),
        _ => format!("{} h {} min", secs / 3600, secs % 3600 / 60),
    }
}

/// Shows the pool once, or keeps redrawing it with `--watch`.
pub async fn run(
    clients: &OpsClients,
    args: &StatusArgs,
    stdout: &mut dyn Write,
) -> Result<PoolStatus, OpsError> {
    let config = Config::load(&args.config).map_err(|err| OpsError::Usage(err.to_string()))?;
    let pool = select_pool(&config, args.pool.as_deref())?;
    let format = OutputFormat::or_detect(args.format);
    let interval = match args.watch {
        None => None,
        Some(secs) if secs.is_finite() && secs >= 0.5 => Some(Duration::from_secs_f64(secs)),
        Some(secs) => {
            return Err(OpsError::Usage(format!(
                "--watch {secs}: refresh at most every 0.5 s"
            )));
        }
    };
    let mut samples: VecDeque<(Instant, u64)> = VecDeque::new();
    loop {
        let mut status = read(clients, pool, &args.controller_url).await;
        if let Some(outstanding) = status.outstanding() {
            let now = Instant::now();
            samples.push_back((now, outstanding));
            while samples
                .front()
                .is_some_and(|(at, _)| now.duration_since(*at) > RATE_WINDOW)
            {
                samples.pop_front();
            }
            if status.completed_per_minute.is_none()
                && let Some(rate) = drain_rate(&samples)
            {
                status.completed_per_minute = Some(rate);
                status.rate_source = Some("queue_drain");
                status.eta_secs = eta_secs(outstanding, Some(rate));
            }
        }
        let text = match format {
            OutputFormat::Json => {
                format!("{}\n", serde_json::to_string(&status).unwrap_or_default())
            }
            OutputFormat::Text if interval.is_some() => {
                format!("\x1b[H\x1b[2J{}", render_text(&status))
            }
            OutputFormat::Text => render_text(&status),
        };
        print(stdout, &text)?;
        match interval {
            Some(wait) => tokio::time::sleep(wait).await,
            None if status.errors.is_empty() => return Ok(status),
            None => {
                return Err(OpsError::Partial {
                    failed: status.errors.len() as u64,
                    total: 6,
                    what: "reads of the pool",
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_eta_is_zero_when_drained_and_unknown_without_completions() {
        assert_eq!(eta_secs(0, None), Some(0.0));
        assert_eq!(eta_secs(30, Some(60.0)), Some(30.0));
        assert_eq!(eta_secs(30, Some(0.0)), None);
        assert_eq!(eta_secs(30, None), None);
    }

    #[test]
    fn the_drain_rate_is_the_fall_per_minute_between_samples() {
        let start = Instant::now();
        let samples: VecDeque<_> = [
            (start, 100),
            (start + Duration::from_secs(30), 80),
            (start + Duration::from_secs(60), 40),
        ]
        .into();
        assert_eq!(drain_rate(&samples), Some(60.0));
        let rising: VecDeque<_> = [(start, 10), (start + Duration::from_secs(60), 20)].into();
        assert_eq!(drain_rate(&rising), None);
        assert_eq!(drain_rate(&[(start, 5)].into()), None);
    }

    #[test]
    fn text_shows_every_part_and_the_errors() {
        let status = PoolStatus {
            time: "t".into(),
            pool: "geo".into(),
            queue_url: "q".into(),
            messages: Some(Messages {
                visible: 5,
                in_flight: 2,
                delayed: 1,
            }),
            dead_lettered: Some(3),
            tasks: Some(Tasks {
                desired: 2,
                running: 1,
                pending: 1,
            }),
            instances: Some(Instances {
                desired: 1,
                by_state: [("InService".to_owned(), 1)].into(),
                draining: 0,
                busy: 1,
            }),
            completed_per_minute: Some(4.0),
            rate_source: Some("cloudwatch"),
            eta_secs: Some(120.0),
            controller: Some(
                serde_json::json!({"time":"t0","direction":"out","desired_tasks":2,"desired_instances":1,"reason":"backlog"}),
            ),
            errors: vec!["DescribeServices failed: x".into()],
        };
        let text = render_text(&status);
        for part in [
            "visible 5",
            "in flight 2",
            "delayed 1",
            "dead-lettered 3",
            "desired 2",
            "running 1",
            "InService 1",
            "4.0 files/min (cloudwatch)",
            "2 min 0 s to drain 8",
            "out → 2 tasks, 1 instances: backlog",
            "! DescribeServices failed",
        ] {
            assert!(text.contains(part), "{part:?} missing in\n{text}");
        }
    }
}
