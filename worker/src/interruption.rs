//! Spot interruptions: the worker watches EC2 instance metadata for the two-minute
//! interruption notice and the earlier rebalance recommendation, and gets its files out of
//! the way before the instance goes.
//!
//! On EC2 the watcher polls IMDSv2 (a session token first, then
//! `/latest/meta-data/spot/instance-action` and
//! `/latest/meta-data/events/recommendations/rebalance`). On either notice the receive loop
//! stops taking messages. On an interruption notice every held message that would not
//! finish well inside the time left, judged by how long recent messages took
//! ([`may_finish`]), is released at once with visibility 0, so another worker starts it
//! within seconds instead of after the visibility timeout; the check is repeated on every
//! poll, so a file that overruns its estimate is released while there is still time. A
//! rebalance recommendation comes with no deadline: held messages finish, and capacity
//! rebalancing replaces the instance.
//!
//! Off EC2 instance metadata does not answer; in `auto` mode the watcher then turns itself
//! off and says so once. Instance metadata that misbehaves (no answer, unexpected status,
//! garbage) is logged and counted, never taken for a notice, and never stops the work.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use aws_sdk_sqs::primitives::{DateTime, DateTimeFormat};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use serde::Deserialize;
use tokio::sync::watch;
use tokio::time::Instant;

use crate::held::{HeldMessages, ReleaseReason};

/// The warning EC2 gives before it interrupts a Spot instance.
pub const NOTICE: Duration = Duration::from_secs(120);
/// Timeout of one request to instance metadata, which is local to the instance.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(1);
/// Lifetime asked for the IMDSv2 session token (the maximum, six hours).
const TOKEN_TTL: Duration = Duration::from_secs(6 * 60 * 60);
/// A token is replaced this long before it expires.
const TOKEN_REFRESH_MARGIN: Duration = Duration::from_secs(5 * 60);
/// Largest metadata answer read; the documented ones are under 100 bytes.
const MAX_BODY_BYTES: usize = 4096;
/// Token requests tried at start-up in `auto` mode before deciding this is not EC2.
const PROBE_ATTEMPTS: u32 = 2;

const TOKEN_PATH: &str = "/latest/api/token";
const INSTANCE_ACTION_PATH: &str = "/latest/meta-data/spot/instance-action";
const REBALANCE_PATH: &str = "/latest/meta-data/events/recommendations/rebalance";

/// Whether the worker watches for Spot interruption notices.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SpotWatchMode {
    /// On when instance metadata answers at start-up (on EC2), off elsewhere.
    Auto,
    /// Always on; instance metadata that does not answer is logged and retried.
    On,
    /// Never on.
    Off,
}

/// Settings of the watcher.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpotWatch {
    /// Whether to watch.
    pub mode: SpotWatchMode,
    /// Base URL of instance metadata, `http://169.254.169.254` on EC2.
    pub imds_endpoint: String,
    /// Time between two polls.
    pub poll_interval: Duration,
}

/// What EC2 announced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notice {
    /// The instance will be stopped, terminated or hibernated at `time`.
    Interruption {
        /// `terminate`, `stop` or `hibernate`.
        action: String,
        /// When, as EC2 wrote it.
        time: String,
        /// `time` parsed; `None` if it did not parse (the deadline is then two minutes
        /// from when the notice was seen).
        at: Option<SystemTime>,
    },
    /// The instance is at elevated risk of interruption.
    Rebalance {
        /// When EC2 issued the recommendation, as it wrote it.
        notice_time: String,
    },
}

impl Notice {
    /// The `kind` label of logs and metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            Notice::Interruption { .. } => "spot_interruption",
            Notice::Rebalance { .. } => "rebalance_recommendation",
        }
    }

    /// Whether `self`, seen after `previous`, is news: an interruption outranks a
    /// rebalance recommendation, and the first notice of each kind is the one kept.
    fn supersedes(&self, previous: Option<&Notice>) -> bool {
        match (previous, self) {
            (None, _) => true,
            (Some(Notice::Rebalance { .. }), Notice::Interruption { .. }) => true,
            (Some(_), _) => false,
        }
    }
}

/// Why instance metadata gave no usable answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ImdsError {
    /// No connection or no answer within the timeout.
    #[error("instance metadata did not answer {path}: {reason}")]
    Unreachable {
        /// The path asked for.
        path: &'static str,
        /// What the HTTP client said.
        reason: String,
    },
    /// An HTTP status the protocol does not have for this path.
    #[error("instance metadata answered {path} with HTTP {status}")]
    Status {
        /// The path asked for.
        path: &'static str,
        /// The status received.
        status: u16,
    },
    /// A success whose body is not what the documented format says.
    #[error("instance metadata answered {path} with something unusable: {reason}")]
    Garbage {
        /// The path asked for.
        path: &'static str,
        /// What is wrong with it.
        reason: String,
    },
}

impl ImdsError {
    /// The `kind` label of the error metric.
    pub fn kind(&self) -> &'static str {
        match self {
            ImdsError::Unreachable { .. } => "unreachable",
            ImdsError::Status { .. } => "status",
            ImdsError::Garbage { .. } => "garbage",
        }
    }
}

#[derive(Deserialize)]
struct InstanceActionBody {
    action: String,
    time: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RebalanceBody {
    notice_time: String,
}

/// Parses the body of `/latest/meta-data/spot/instance-action`, e.g.
/// `{"action": "terminate", "time": "2017-09-18T08:22:00Z"}`.
pub fn parse_instance_action(body: &str) -> Result<Notice, String> {
    let parsed: InstanceActionBody =
        serde_json::from_str(body).map_err(|err| format!("not an instance action: {err}"))?;
    if parsed.action.trim().is_empty() {
        return Err("the action is empty".to_owned());
    }
    let at = DateTime::from_str(parsed.time.trim(), DateTimeFormat::DateTime)
        .ok()
        .and_then(|at| SystemTime::try_from(at).ok());
    Ok(Notice::Interruption {
        action: parsed.action,
        time: parsed.time,
        at,
    })
}

/// Parses the body of `/latest/meta-data/events/recommendations/rebalance`, e.g.
/// `{"noticeTime": "2020-11-05T08:22:00Z"}`.
pub fn parse_rebalance(body: &str) -> Result<Notice, String> {
    let parsed: RebalanceBody = serde_json::from_str(body)
        .map_err(|err| format!("not a rebalance recommendation: {err}"))?;
    Ok(Notice::Rebalance {
        notice_time: parsed.notice_time,
    })
}

/// Time left before an interruption announced for `at` and first seen `seen_for` ago:
/// until `at`, but never more than the two-minute notice counted from when it was seen (a
/// clock that is off, or a time that does not parse, cannot make the worker linger).
pub fn time_left(at: Option<SystemTime>, now: SystemTime, seen_for: Duration) -> Duration {
    let by_notice = NOTICE.saturating_sub(seen_for);
    match at {
        Some(at) => at
            .duration_since(now)
            .unwrap_or(Duration::ZERO)
            .min(by_notice),
        None => by_notice,
    }
}

/// Whether a message held for `elapsed` may keep running with `time_left` before the
/// interruption: only if it is expected to be done in less than half the time left. The
/// expectation comes from `typical`, how long recent messages took: what is left of it, or,
/// for a message already past it, as long again as it has run. With no estimate yet nothing
/// says it will finish, and it is released. Asked again on every poll, so a message that
/// overruns is released while another worker still has time.
pub fn may_finish(elapsed: Duration, typical: Option<Duration>, time_left: Duration) -> bool {
    let Some(typical) = typical else {
        return false;
    };
    let remaining = typical.checked_sub(elapsed).unwrap_or(elapsed);
    remaining < time_left / 2
}

/// An IMDSv2 client: a session token, renewed before it expires or when refused.
#[derive(Debug)]
pub struct Imds {
    client: reqwest::Client,
    endpoint: String,
    token: Option<(String, Instant)>,
}

impl Imds {
    /// A client for instance metadata at `endpoint` (no trailing `/`).
    pub fn new(endpoint: &str) -> Result<Imds, String> {
        let client = reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .connect_timeout(REQUEST_TIMEOUT)
            .build()
            .map_err(|err| format!("cannot build the HTTP client: {err}"))?;
        Ok(Imds {
            client,
            endpoint: endpoint.trim_end_matches('/').to_owned(),
            token: None,
        })
    }

    /// The current session token, fetched when there is none or it is about to expire.
    async fn token(&mut self) -> Result<String, ImdsError> {
        if let Some((token, at)) = &self.token
            && at.elapsed() + TOKEN_REFRESH_MARGIN < TOKEN_TTL
        {
            return Ok(token.clone());
        }
        let response = self
            .client
            .put(format!("{}{TOKEN_PATH}", self.endpoint))
            .header(
                "X-aws-ec2-metadata-token-ttl-seconds",
                TOKEN_TTL.as_secs().to_string(),
            )
            .send()
            .await
            .map_err(|err| unreachable(TOKEN_PATH, &err))?;
        let status = response.status().as_u16();
        if status != 200 {
            return Err(ImdsError::Status {
                path: TOKEN_PATH,
                status,
            });
        }
        let token = read_body(TOKEN_PATH, response).await?;
        let token = token.trim();
        if token.is_empty() || !token.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(ImdsError::Garbage {
                path: TOKEN_PATH,
                reason: "the token is empty or not printable".to_owned(),
            });
        }
        self.token = Some((token.to_owned(), Instant::now()));
        Ok(token.to_owned())
    }

    /// Whether instance metadata hands out a token: how `auto` mode tells EC2 apart.
    pub async fn probe(&mut self) -> Result<(), ImdsError> {
        self.token().await.map(drop)
    }

    /// The body at `path`, `None` when it does not exist (404: no notice). A token that is
    /// refused (401) is renewed and the request tried once more.
    async fn get(&mut self, path: &'static str) -> Result<Option<String>, ImdsError> {
        for attempt in 0..2 {
            let token = self.token().await?;
            let response = self
                .client
                .get(format!("{}{path}", self.endpoint))
                .header("X-aws-ec2-metadata-token", token)
                .send()
                .await
                .map_err(|err| unreachable(path, &err))?;
            match response.status().as_u16() {
                200 => return read_body(path, response).await.map(Some),
                404 => return Ok(None),
                401 if attempt == 0 => self.token = None,
                status => return Err(ImdsError::Status { path, status }),
            }
        }
        Err(ImdsError::Status { path, status: 401 })
    }

    /// The most serious notice standing now, if any. An interruption notice is looked for
    /// first; a failure there does not hide a rebalance recommendation, but is returned
    /// when there is nothing else to report.
    pub async fn poll(&mut self) -> Result<Option<Notice>, ImdsError> {
        let interruption = match self.get(INSTANCE_ACTION_PATH).await {
            Ok(Some(body)) => {
                parse_instance_action(&body)
                    .map(Some)
                    .map_err(|reason| ImdsError::Garbage {
                        path: INSTANCE_ACTION_PATH,
                        reason,
                    })
            }
            Ok(None) => Ok(None),
            Err(err) => Err(err),
        };
        if let Ok(Some(notice)) = interruption {
            return Ok(Some(notice));
        }
        let rebalance = match self.get(REBALANCE_PATH).await? {
            Some(body) => parse_rebalance(&body).map_err(|reason| ImdsError::Garbage {
                path: REBALANCE_PATH,
                reason,
            })?,
            None => return interruption,
        };
        Ok(Some(rebalance))
    }
}

fn unreachable(path: &'static str, err: &reqwest::Error) -> ImdsError {
    ImdsError::Unreachable {
        path,
        reason: crate::sdk_error::error_chain(err),
    }
}

/// Reads at most [`MAX_BODY_BYTES`] of a UTF-8 body.
async fn read_body(
    path: &'static str,
    mut response: reqwest::Response,
) -> Result<String, ImdsError> {
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|err| unreachable(path, &err))?
    {
        if body.len() + chunk.len() > MAX_BODY_BYTES {
            return Err(ImdsError::Garbage {
                path,
                reason: format!("the answer is longer than {MAX_BODY_BYTES} bytes"),
            });
        }
        body.extend_from_slice(&chunk);
    }
    String::from_utf8(body).map_err(|_| ImdsError::Garbage {
        path,
        reason: "the answer is not UTF-8".to_owned(),
    })
}

/// The watcher's metrics, registered with the worker's others.
#[derive(Debug, Clone, Default)]
pub struct InterruptionMetrics {
    notices: Family<Vec<(&'static str, String)>, Counter>,
    imds_errors: Family<Vec<(&'static str, String)>, Counter>,
    watching: Gauge,
}

impl InterruptionMetrics {
    /// Adds the metrics to the worker's registry.
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "interruption_notices",
            "Spot notices seen in instance metadata, by kind (spot_interruption, rebalance_recommendation)",
            self.notices.clone(),
        );
        registry.register(
            "imds_errors",
            "Instance metadata polls that gave no usable answer, by kind (unreachable, status, garbage)",
            self.imds_errors.clone(),
        );
        registry.register(
            "spot_watch_active",
            "1 while the Spot interruption watcher polls instance metadata, else 0",
            self.watching.clone(),
        );
    }
}

/// The running watcher: what it has seen, for the receive loop.
#[derive(Debug)]
pub struct Watcher {
    notices: watch::Receiver<Option<Notice>>,
    task: tokio::task::JoinHandle<()>,
}

impl Watcher {
    /// Starts watching as `settings` say; releases messages of `held` on an interruption.
    pub fn start(
        settings: SpotWatch,
        held: Arc<HeldMessages>,
        metrics: InterruptionMetrics,
    ) -> Watcher {
        let (sender, notices) = watch::channel(None);
        let task = tokio::spawn(watch(settings, held, metrics, sender));
        Watcher { notices, task }
    }

    /// Resolves once a notice has been seen; never if the watcher is off.
    pub fn noticed(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        let mut notices = self.notices.clone();
        async move {
            if notices.wait_for(Option::is_some).await.is_err() {
                std::future::pending::<()>().await;
            }
        }
    }

    /// The most serious notice seen so far.
    pub fn notice(&self) -> Option<Notice> {
        self.notices.borrow().clone()
    }

    /// Stops polling.
    pub fn stop(self) {
        self.task.abort();
    }
}

/// The watcher task: decides whether to watch, then polls until aborted.
async fn watch(
    settings: SpotWatch,
    held: Arc<HeldMessages>,
    metrics: InterruptionMetrics,
    sender: watch::Sender<Option<Notice>>,
) {
    let mut imds = match Imds::new(&settings.imds_endpoint) {
        Ok(imds) => imds,
        Err(error) => return watcher_off(&error),
    };
    match settings.mode {
        SpotWatchMode::Off => return watcher_off("--spot-watch is off"),
        SpotWatchMode::Auto if metadata_disabled() => {
            return watcher_off("AWS_EC2_METADATA_DISABLED is set (--spot-watch auto)");
        }
        SpotWatchMode::Auto => {
            let mut probe = imds.probe().await;
            for _retry in 1..PROBE_ATTEMPTS {
                if probe.is_ok() {
                    break;
                }
                tokio::time::sleep(REQUEST_TIMEOUT).await;
                probe = imds.probe().await;
            }
            if let Err(error) = probe {
                return watcher_off(&format!(
                    "not on EC2 as far as the worker can tell ({error}; --spot-watch auto)"
                ));
            }
        }
        SpotWatchMode::On => {}
    }
    metrics.watching.set(1);
    tracing::info!(
        imds_endpoint = %settings.imds_endpoint,
        poll_interval_secs = settings.poll_interval.as_secs_f64(),
        "Spot interruption watcher on"
    );
    let mut ticks = tokio::time::interval(settings.poll_interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut seen: Option<Instant> = None;
    let mut failing = false;
    loop {
        ticks.tick().await;
        match imds.poll().await {
            Ok(found) => {
                if failing {
                    tracing::info!("instance metadata answers again");
                    failing = false;
                }
                let news = found.filter(|notice| notice.supersedes(sender.borrow().as_ref()));
                if let Some(notice) = news {
                    notice_seen(&metrics, &notice, held.len());
                    seen = Some(Instant::now());
                    sender.send_replace(Some(notice));
                }
            }
            Err(error) => {
                metrics
                    .imds_errors
                    .get_or_create(&vec![("kind", error.kind().to_owned())])
                    .inc();
                if !failing {
                    tracing::warn!(
                        error = %error,
                        "polling instance metadata for Spot notices failed; retrying, processing continues"
                    );
                    failing = true;
                }
            }
        }
        let current = sender.borrow().clone();
        if let (Some(Notice::Interruption { at, .. }), Some(seen)) = (current, seen) {
            release_unlikely_to_finish(&held, time_left(at, SystemTime::now(), seen.elapsed()));
        }
    }
}

/// Releases the held messages that [`may_finish`] gives no chance.
fn release_unlikely_to_finish(held: &HeldMessages, time_left: Duration) {
    let typical = held.typical_duration();
    let pass = held.release_unless(ReleaseReason::Interruption, |elapsed| {
        may_finish(elapsed, typical, time_left)
    });
    if pass.released > 0 {
        tracing::warn!(
            released = pass.released,
            kept = pass.kept,
            time_left_secs = time_left.as_secs_f64(),
            typical_secs = typical.map(|t| t.as_secs_f64()),
            "releasing held messages that would not finish before the interruption"
        );
    }
}

fn metadata_disabled() -> bool {
    std::env::var("AWS_EC2_METADATA_DISABLED").is_ok_and(|v| v.trim().eq_ignore_ascii_case("true"))
}

/// The watcher will not run: said once, at start-up.
fn watcher_off(why: &str) {
    tracing::info!(reason = why, "Spot interruption watcher off");
}

/// A new notice: the worker stops receiving.
fn notice_seen(metrics: &InterruptionMetrics, notice: &Notice, held: usize) {
    metrics
        .notices
        .get_or_create(&vec![("kind", notice.kind().to_owned())])
        .inc();
    match notice {
        Notice::Interruption { action, time, .. } => tracing::warn!(
            kind = notice.kind(),
            action,
            time,
            held_messages = held,
            "Spot interruption notice: no new messages; releasing those that would not finish in time"
        ),
        Notice::Rebalance { notice_time } => tracing::warn!(
            kind = notice.kind(),
            notice_time,
            held_messages = held,
            "rebalance recommendation: no new messages; held ones finish"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const S: fn(u64) -> Duration = Duration::from_secs;

    #[test]
    fn documented_notices_parse() {
        let notice =
            parse_instance_action(r#"{"action": "terminate", "time": "2017-09-18T08:22:00Z"}"#)
                .expect("notice");
        let Notice::Interruption { action, at, .. } = &notice else {
            panic!("not an interruption: {notice:?}");
        };
        assert_eq!(action, "terminate");
        assert_eq!(
            at.and_then(|at| at.duration_since(SystemTime::UNIX_EPOCH).ok()),
            Some(S(1_505_722_920))
        );
        assert_eq!(
            parse_rebalance(r#"{"noticeTime": "2020-10-27T08:22:00Z"}"#),
            Ok(Notice::Rebalance {
                notice_time: "2020-10-27T08:22:00Z".to_owned()
            })
        );
    }

    #[test]
    fn an_interruption_with_an_odd_time_still_counts() {
        let notice =
            parse_instance_action(r#"{"action": "stop", "time": "soon"}"#).expect("notice");
        assert!(matches!(notice, Notice::Interruption { at: None, .. }));
    }

    #[test]
    fn garbage_is_not_a_notice() {
        for body in [
            "",
            "<html>oops</html>",
            "{}",
            r#"{"action": ""  , "time": "x"}"#,
            "[1,2]",
        ] {
            assert!(parse_instance_action(body).is_err(), "{body:?}");
        }
        assert!(parse_rebalance(r#"{"time": "2020-10-27T08:22:00Z"}"#).is_err());
    }

    #[test]
    fn an_interruption_outranks_a_rebalance_and_the_first_notice_stays() {
        let rebalance = Notice::Rebalance {
            notice_time: "t".to_owned(),
        };
        let interruption = Notice::Interruption {
            action: "terminate".to_owned(),
            time: "t".to_owned(),
            at: None,
        };
        assert!(rebalance.supersedes(None));
        assert!(interruption.supersedes(Some(&rebalance)));
        assert!(!rebalance.supersedes(Some(&interruption)));
        assert!(!interruption.supersedes(Some(&interruption)));
        assert!(!rebalance.supersedes(Some(&rebalance)));
    }

    #[test]
    fn time_left_is_capped_by_the_two_minute_notice() {
        let now = SystemTime::UNIX_EPOCH + S(1_000_000);
        assert_eq!(time_left(Some(now + S(90)), now, S(10)), S(90));
        assert_eq!(time_left(Some(now + S(3600)), now, S(10)), S(110));
        assert_eq!(time_left(Some(now - S(5)), now, S(1)), S(0));
        assert_eq!(time_left(None, now, S(30)), S(90));
        assert_eq!(time_left(None, now, S(500)), S(0));
    }

    #[test]
    fn only_files_that_finish_well_inside_the_notice_keep_running() {
        let typical = Some(S(40));
        assert!(may_finish(S(10), typical, S(120)), "30 s left of 120");
        assert!(
            !may_finish(S(0), typical, S(60)),
            "40 s is not well inside 60"
        );
        assert!(
            may_finish(S(45), typical, S(120)),
            "a little slower than usual"
        );
        assert!(
            !may_finish(S(70), typical, S(120)),
            "much slower: as long again"
        );
        assert!(!may_finish(S(1), None, S(120)), "no estimate yet");
        assert!(!may_finish(S(40), typical, S(0)), "no time left");
    }

    proptest! {
        #[test]
        fn keeping_is_monotone_in_the_time_left(
            elapsed in 0u64..600, typical in proptest::option::of(0u64..600),
            left in 0u64..200, more in 0u64..200,
        ) {
            let typical = typical.map(S);
            if may_finish(S(elapsed), typical, S(left)) {
                prop_assert!(may_finish(S(elapsed), typical, S(left + more)));
                prop_assert!(left > 0);
            }
        }
    }
}
