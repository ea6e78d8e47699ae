//! Configuration of `geobatch-worker run`: the raw flags, and the validated settings the
//! service runs with.
//!
//! Every flag has a `GEOBATCH_*` environment equivalent because the ECS task definition and
//! the local stack configure the worker with environment variables only. Values are checked
//! once, at start-up, with errors that name the flag, so a bad deployment fails before it
//! touches a single message.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

pub use geobatch_common::outcome::OutputLocation;
use geobatch_common::outcome::is_bucket_name;
use geobatch_common::telemetry::LogFormat;

use geobatch_analysis::AnalysisOptions;

use crate::exec::ExecOptions;
use crate::interruption::{SpotWatch, SpotWatchMode};

/// SQS's upper bound for a message's visibility timeout (12 hours).
const MAX_VISIBILITY: Duration = Duration::from_secs(12 * 60 * 60);
/// ECS's upper bound for task scale-in protection (48 hours).
const MAX_PROTECTION_MINUTES: u32 = 2880;
/// Bounds of the Spot watcher's poll interval: instance metadata throttles very fast
/// pollers, and a slow one eats into the two-minute notice.
const MIN_SPOT_POLL: Duration = Duration::from_millis(100);
const MAX_SPOT_POLL: Duration = Duration::from_secs(30);

/// Default `--scratch-budget`: 12 GiB, so the stack's two tasks per instance fit its 30 GiB
/// root volume with 6 GiB left for the OS, Docker and the images.
pub const DEFAULT_SCRATCH_BUDGET: u64 = 12 * 1024 * 1024 * 1024;

/// Options of `geobatch-worker run`, as typed on the command line or set in the environment.
#[derive(Debug, Clone, clap::Args)]
pub struct RunArgs {
    /// URL of the SQS queue that receives the S3 ObjectCreated notifications.
    #[arg(long, env = "GEOBATCH_QUEUE_URL")]
    pub queue_url: String,

    /// Where outcomes go, as s3://BUCKET/PREFIX/. The outcome (result or error) of s3://B/K
    /// is written to PREFIX + B + "/" + K + ".json" (see docs/worker.md for the layout).
    #[arg(long, env = "GEOBATCH_OUTPUT", value_name = "S3_URL")]
    pub output: String,

    /// Comma-separated buckets whose events are accepted; a record for any other bucket is
    /// refused (kind bucket_not_allowed) in its message's report, never read. `*` accepts
    /// every validly named bucket.
    #[arg(
        long,
        env = "GEOBATCH_ALLOWED_BUCKETS",
        value_delimiter = ',',
        required = true
    )]
    pub allowed_buckets: Vec<String>,

    /// Messages processed at the same time; the worker receives only as many messages as it
    /// has free slots. Defaults to the number of CPUs.
    #[arg(long, env = "GEOBATCH_CONCURRENCY")]
    pub concurrency: Option<usize>,

    /// How long a received message stays hidden from other workers. The worker extends it
    /// every third of this period while it processes the message, so it bounds how long a
    /// crashed worker delays a file, not how long a file may take. Whole seconds, e.g. 120,
    /// 120s or 2m.
    #[arg(long, env = "GEOBATCH_VISIBILITY_TIMEOUT", default_value = "120s", value_parser = parse_duration)]
    pub visibility_timeout: Duration,

    /// Largest object the worker downloads, in bytes; larger objects get an error report
    /// (kind object_too_large). Checked against the event, the response headers, and again
    /// while streaming.
    #[arg(long, env = "GEOBATCH_MAX_OBJECT_BYTES", default_value_t = 10 * 1024 * 1024 * 1024)]
    pub max_object_bytes: u64,

    /// Bytes of --work-dir all downloads of this worker may occupy at once. Each download
    /// reserves its object's size before writing; one that does not fit waits (its message
    /// stays held) until others are deleted, so the disk never fills. Must be at least
    /// --max-object-bytes. The default (12 GiB) lets two tasks share a 30 GiB volume.
    #[arg(long, env = "GEOBATCH_SCRATCH_BUDGET", default_value_t = DEFAULT_SCRATCH_BUDGET)]
    pub scratch_budget: u64,

    /// Largest single GeoJSON feature accepted by the built-in analysis, in bytes. Defaults to
    /// the analysis engine's own limit.
    #[arg(long, env = "GEOBATCH_MAX_FEATURE_BYTES")]
    pub max_feature_bytes: Option<u64>,

    /// Longest the built-in analysis may run on one file; past it the file gets an error
    /// report (kind time_limit) and its message is deleted, as for any bad input. 0 for no
    /// limit.
    #[arg(long, env = "GEOBATCH_MAX_ANALYSIS_TIME", default_value = "10m", value_parser = parse_duration)]
    pub max_analysis_time: Duration,

    /// How long in-flight files may run after SIGTERM/SIGINT before their messages are
    /// released for another worker; a receive in flight may also return within it, and its
    /// messages are released at once. Keep it below the ECS stop timeout (30 s by default)
    /// and above --receive-wait.
    #[arg(long, env = "GEOBATCH_SHUTDOWN_GRACE", default_value = "25s", value_parser = parse_duration)]
    pub shutdown_grace: Duration,

    /// Address of the /metrics (Prometheus) and /healthz listener.
    #[arg(long, env = "GEOBATCH_METRICS_ADDR", default_value = "0.0.0.0:9464")]
    pub metrics_addr: SocketAddr,

    /// Run this shell command on each downloaded file instead of the built-in analysis; the
    /// file's path is appended as its last argument. Its standard output is the result; a
    /// non-zero exit or a timeout produces an error report holding its standard error.
    #[arg(long, env = "GEOBATCH_EXEC", value_name = "CMD")]
    pub exec: Option<String>,

    /// Longest an --exec command may run on one file.
    #[arg(long, env = "GEOBATCH_EXEC_TIMEOUT", default_value = "30m", value_parser = parse_duration)]
    pub exec_timeout: Duration,

    /// Largest standard output an --exec command may write, in bytes (it is held in memory
    /// and written as the outcome); one byte more kills the command's process group and the
    /// file gets an error report (kind exec_output_too_large).
    #[arg(long, env = "GEOBATCH_EXEC_MAX_OUTPUT", default_value_t = crate::exec::DEFAULT_MAX_OUTPUT_BYTES)]
    pub exec_max_output: usize,

    /// Delay before the first retry of a message that failed for a transient reason
    /// (throttling, 5xx, network). Each further receive doubles it, up to --retry-max-delay;
    /// after the queue's maxReceiveCount the redrive policy moves the message to the DLQ.
    #[arg(long, env = "GEOBATCH_RETRY_BASE_DELAY", default_value = "10s", value_parser = parse_duration)]
    pub retry_base_delay: Duration,

    /// Longest delay between retries of a transiently failing message.
    #[arg(long, env = "GEOBATCH_RETRY_MAX_DELAY", default_value = "15m", value_parser = parse_duration)]
    pub retry_max_delay: Duration,

    /// Deadline of each AWS call (S3 and SQS), and of each chunk of a download's body: a call
    /// that does not answer in time fails as a transient error instead of holding a message,
    /// its heartbeat or the shutdown drain. A receive gets --receive-wait on top.
    #[arg(long, env = "GEOBATCH_AWS_CALL_TIMEOUT", default_value = "20s", value_parser = parse_duration)]
    pub aws_call_timeout: Duration,

    /// SQS long-poll wait per receive (0 to 20 seconds).
    #[arg(long, env = "GEOBATCH_RECEIVE_WAIT", default_value = "20s", value_parser = parse_duration)]
    pub receive_wait: Duration,

    /// Directory for downloaded objects; needs room for --scratch-budget bytes. Defaults to the system temporary directory.
    #[arg(long, env = "GEOBATCH_WORK_DIR")]
    pub work_dir: Option<PathBuf>,

    /// ECS agent endpoint (set by ECS itself); when present the worker turns task scale-in
    /// protection on while it holds messages and off when idle.
    #[arg(long, env = "ECS_AGENT_URI")]
    pub ecs_agent_uri: Option<String>,

    /// Minutes each task-protection request lasts; renewed while the worker stays busy, so a
    /// worker that dies cannot pin capacity for longer than this.
    #[arg(long, env = "GEOBATCH_PROTECTION_MINUTES", default_value_t = 60)]
    pub protection_minutes: u32,

    /// Watch EC2 instance metadata for Spot interruption notices and rebalance
    /// recommendations: `auto` is on when instance metadata hands out an IMDSv2 token at
    /// start-up (on EC2) and off elsewhere, saying so once; `on` keeps trying; `off` never
    /// looks.
    #[arg(long, env = "GEOBATCH_SPOT_WATCH", value_enum, default_value = "auto")]
    pub spot_watch: SpotWatchMode,

    /// Base URL of the EC2 instance metadata service (IMDSv2), plain HTTP.
    #[arg(
        long,
        env = "GEOBATCH_IMDS_ENDPOINT",
        default_value = "http://169.254.169.254"
    )]
    pub imds_endpoint: String,

    /// How often instance metadata is asked for a Spot notice while the watcher is on; a
    /// message to release is released within about this long of the notice.
    #[arg(long, env = "GEOBATCH_SPOT_POLL_INTERVAL", default_value = "1s", value_parser = parse_duration)]
    pub spot_poll_interval: Duration,

    /// Log line format on stderr.
    #[arg(long, env = "GEOBATCH_LOG_FORMAT", value_enum, default_value = "json")]
    pub log_format: LogFormat,
}

/// Which buckets' events the worker accepts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AllowedBuckets {
    /// `*`: any validly named bucket (for accounts where the queue policy already restricts
    /// the sources).
    Any,
    /// Only these buckets.
    Only(Vec<String>),
}

impl AllowedBuckets {
    /// Whether events for `bucket` may be processed.
    pub fn allows(&self, bucket: &str) -> bool {
        match self {
            AllowedBuckets::Any => is_bucket_name(bucket),
            AllowedBuckets::Only(names) => names.iter().any(|name| name == bucket),
        }
    }
}

/// What the worker runs on each downloaded file.
#[derive(Debug, Clone)]
pub enum Processor {
    /// The built-in streaming GeoJSON analysis.
    Analysis(AnalysisOptions),
    /// An external shell command, the classic `process_file` use.
    Exec(ExecOptions),
}

/// Validated settings of the worker service.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// Queue the notifications arrive on.
    pub queue_url: String,
    /// Where results and error reports are written.
    pub output: OutputLocation,
    /// Buckets whose events are processed.
    pub allowed_buckets: AllowedBuckets,
    /// Messages processed at once; also the most a single receive asks for (capped at 10).
    pub concurrency: usize,
    /// Visibility a received message gets, renewed every third of it while processing.
    pub visibility_timeout: Duration,
    /// Objects larger than this are refused.
    pub max_object_bytes: u64,
    /// Bytes of `work_dir` the downloads may occupy together (at least `max_object_bytes`).
    pub scratch_budget: u64,
    /// What runs on each downloaded file.
    pub processor: Processor,
    /// Time in-flight work gets after the shutdown signal.
    pub shutdown_grace: Duration,
    /// Listener for `/metrics` and `/healthz`; `None` in tests that do not need it.
    pub metrics_addr: Option<SocketAddr>,
    /// First retry delay after a transient failure.
    pub retry_base_delay: Duration,
    /// Cap on the retry delay.
    pub retry_max_delay: Duration,
    /// Long-poll wait of each receive.
    pub receive_wait: Duration,
    /// Deadline of each AWS call.
    pub call_timeout: Duration,
    /// Where downloads are staged.
    pub work_dir: PathBuf,
    /// ECS agent endpoint for task protection, when running on ECS.
    pub ecs_agent_uri: Option<String>,
    /// Lifetime of each task-protection request, in minutes.
    pub protection_minutes: u32,
    /// The Spot interruption watcher.
    pub spot: SpotWatch,
}

/// A flag whose value cannot work, named so the operator knows what to fix.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid --{flag}: {reason}")]
pub struct ConfigError {
    /// The flag (without dashes) at fault.
    pub flag: &'static str,
    /// Why its value is refused.
    pub reason: String,
}

fn invalid(flag: &'static str, reason: impl Into<String>) -> ConfigError {
    ConfigError {
        flag,
        reason: reason.into(),
    }
}

impl WorkerConfig {
    /// Checks the raw flags and turns them into settings, refusing values that could only fail
    /// later (an output that is not an S3 URL, a visibility SQS would reject, and so on).
    pub fn from_args(args: RunArgs) -> Result<WorkerConfig, ConfigError> {
        if args.queue_url.trim().is_empty() {
            return Err(invalid("queue-url", "must not be empty"));
        }
        let output = parse_output(&args.output)?;
        let allowed_buckets = parse_allowed_buckets(&args.allowed_buckets)?;
        let concurrency = match args.concurrency {
            Some(0) => return Err(invalid("concurrency", "must be at least 1")),
            Some(n) => n,
            None => std::thread::available_parallelism().map_or(1, usize::from),
        };
        let visibility_timeout = args.visibility_timeout;
        if visibility_timeout < Duration::from_secs(1) || visibility_timeout > MAX_VISIBILITY {
            return Err(invalid(
                "visibility-timeout",
                "must be between 1 second and 12 hours",
            ));
        }
        if visibility_timeout.subsec_nanos() != 0 {
            return Err(invalid(
                "visibility-timeout",
                "must be whole seconds (SQS has no finer unit)",
            ));
        }
        if args.max_object_bytes == 0 {
            return Err(invalid("max-object-bytes", "must be at least 1"));
        }
        if args.scratch_budget == 0 {
            return Err(invalid("scratch-budget", "must be at least 1"));
        }
        if args.scratch_budget > crate::scratch::max_budget_bytes() {
            return Err(invalid(
                "scratch-budget",
                format!(
                    "must be at most {} bytes",
                    crate::scratch::max_budget_bytes()
                ),
            ));
        }
        if args.max_object_bytes > args.scratch_budget {
            return Err(invalid(
                "max-object-bytes",
                format!(
                    "{} is more than --scratch-budget {}: an object that large could never be downloaded",
                    args.max_object_bytes, args.scratch_budget
                ),
            ));
        }
        if args.aws_call_timeout.is_zero() {
            return Err(invalid("aws-call-timeout", "must be more than zero"));
        }
        if args.receive_wait > Duration::from_secs(20) {
            return Err(invalid("receive-wait", "SQS allows at most 20 seconds"));
        }
        if args.retry_max_delay > MAX_VISIBILITY {
            return Err(invalid("retry-max-delay", "SQS allows at most 12 hours"));
        }
        if args.retry_base_delay > args.retry_max_delay {
            return Err(invalid(
                "retry-base-delay",
                "must not exceed --retry-max-delay",
            ));
        }
        if args.protection_minutes == 0 || args.protection_minutes > MAX_PROTECTION_MINUTES {
            return Err(invalid(
                "protection-minutes",
                "ECS accepts 1 to 2880 minutes",
            ));
        }
        let processor = match args.exec {
            Some(command) if command.trim().is_empty() => {
                return Err(invalid("exec", "must not be empty"));
            }
            Some(command) => {
                if args.exec_timeout.is_zero() {
                    return Err(invalid("exec-timeout", "must be more than zero"));
                }
                if args.exec_max_output == 0 {
                    return Err(invalid("exec-max-output", "must be at least 1"));
                }
                Processor::Exec(ExecOptions {
                    command,
                    timeout: args.exec_timeout,
                    max_output_bytes: args.exec_max_output,
                })
            }
            None => {
                let defaults = AnalysisOptions::default();
                let cpus = std::thread::available_parallelism().map_or(1, usize::from);
                Processor::Analysis(AnalysisOptions {
                    max_feature_bytes: args.max_feature_bytes.unwrap_or(defaults.max_feature_bytes),
                    threads: geobatch_analysis::threads_per_file(cpus, concurrency),
                    time_limit: (!args.max_analysis_time.is_zero())
                        .then_some(args.max_analysis_time),
                    ..defaults
                })
            }
        };
        if args.spot_poll_interval < MIN_SPOT_POLL || args.spot_poll_interval > MAX_SPOT_POLL {
            return Err(invalid(
                "spot-poll-interval",
                "must be between 100ms and 30s (the notice gives two minutes)",
            ));
        }
        let imds_endpoint = args.imds_endpoint.trim().trim_end_matches('/').to_owned();
        if !imds_endpoint.starts_with("http://") || imds_endpoint.len() == "http://".len() {
            return Err(invalid(
                "imds-endpoint",
                format!("`{}` is not an http://HOST[:PORT] URL", args.imds_endpoint),
            ));
        }
        let ecs_agent_uri = args
            .ecs_agent_uri
            .map(|uri| uri.trim_end_matches('/').to_owned())
            .filter(|uri| !uri.is_empty());
        Ok(WorkerConfig {
            queue_url: args.queue_url,
            output,
            allowed_buckets,
            concurrency,
            visibility_timeout,
            max_object_bytes: args.max_object_bytes,
            scratch_budget: args.scratch_budget,
            processor,
            shutdown_grace: args.shutdown_grace,
            metrics_addr: Some(args.metrics_addr),
            retry_base_delay: args.retry_base_delay,
            retry_max_delay: args.retry_max_delay,
            receive_wait: args.receive_wait,
            call_timeout: args.aws_call_timeout,
            work_dir: args.work_dir.unwrap_or_else(std::env::temp_dir),
            ecs_agent_uri,
            protection_minutes: args.protection_minutes,
            spot: SpotWatch {
                mode: args.spot_watch,
                imds_endpoint,
                poll_interval: args.spot_poll_interval,
            },
        })
    }
}

/// Parses the `--output` URL (see [`OutputLocation::parse`]).
pub fn parse_output(url: &str) -> Result<OutputLocation, ConfigError> {
    OutputLocation::parse(url).map_err(|err| invalid("output", err.to_string()))
}

fn parse_allowed_buckets(raw: &[String]) -> Result<AllowedBuckets, ConfigError> {
    let names: Vec<String> = raw
        .iter()
        .map(|name| name.trim().to_owned())
        .filter(|name| !name.is_empty())
        .collect();
    if names.is_empty() {
        return Err(invalid(
            "allowed-buckets",
            "name at least one bucket (or `*` for any)",
        ));
    }
    if names.iter().any(|name| name == "*") {
        return Ok(AllowedBuckets::Any);
    }
    if let Some(name) = names.iter().find(|name| !is_bucket_name(name)) {
        return Err(invalid(
            "allowed-buckets",
            format!("`{name}` is not a valid S3 bucket name"),
        ));
    }
    Ok(AllowedBuckets::Only(names))
}

/// Parses a duration such as `20`, `20s`, `500ms`, `2m` or `1h` (a bare number is seconds).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (digits, unit) = text.split_at(split);
    let value: u64 = digits
        .parse()
        .map_err(|_| format!("`{text}` is not a duration like 30s, 500ms, 2m or 1h"))?;
    let millis_per_unit = match unit.trim() {
        "" | "s" => 1000,
        "ms" => 1,
        "m" | "min" => 60_000,
        "h" => 3_600_000,
        other => {
            return Err(format!(
                "unknown unit `{other}` in `{text}` (use ms, s, m or h)"
            ));
        }
    };
    value
        .checked_mul(millis_per_unit)
        .map(Duration::from_millis)
        .ok_or_else(|| format!("`{text}` is too long"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        run: RunArgs,
    }

    fn args(extra: &[&str]) -> RunArgs {
        let mut argv = vec![
            "geobatch-worker",
            "--queue-url",
            "http://sqs/q",
            "--output",
            "s3://out/results/",
            "--allowed-buckets",
            "in1",
        ];
        argv.extend_from_slice(extra);
        Cli::parse_from(argv).run
    }

    #[test]
    fn durations_accept_the_documented_units() {
        assert_eq!(parse_duration("20"), Ok(Duration::from_secs(20)));
        assert_eq!(parse_duration("20s"), Ok(Duration::from_secs(20)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert!(parse_duration("").is_err());
        assert!(parse_duration("5 days").is_err());
        assert!(parse_duration("-3s").is_err());
    }

    #[test]
    fn output_urls_are_parsed_by_the_shared_layout_and_errors_name_the_flag() {
        let parsed = parse_output("s3://out/results").expect("valid");
        assert_eq!(
            (parsed.bucket.as_str(), parsed.prefix.as_str()),
            ("out", "results/")
        );
        assert_eq!(
            parse_output("https://b/x").map_err(|e| e.flag),
            Err("output")
        );
        assert_eq!(parse_output("s3:///x").map_err(|e| e.flag), Err("output"));
    }

    #[test]
    fn analysis_threads_share_the_cores_among_concurrent_files() {
        let cpus = std::thread::available_parallelism().map_or(1, usize::from);
        for concurrency in [1, 2, 64] {
            let flag = concurrency.to_string();
            let config = WorkerConfig::from_args(args(&["--concurrency", &flag])).expect("valid");
            let Processor::Analysis(options) = config.processor else {
                panic!("the built-in analysis by default");
            };
            assert_eq!(
                options.threads,
                (cpus / concurrency).max(1),
                "{concurrency}"
            );
        }
    }

    #[test]
    fn defaults_are_valid_and_use_the_built_in_analysis() {
        let config = WorkerConfig::from_args(args(&[])).expect("defaults are valid");
        assert!(config.concurrency >= 1);
        assert_eq!(config.visibility_timeout, Duration::from_secs(120));
        assert_eq!(config.shutdown_grace, Duration::from_secs(25));
        assert!(
            config.shutdown_grace < Duration::from_secs(30),
            "below the ECS stop timeout"
        );
        assert_eq!(config.receive_wait, Duration::from_secs(20));
        assert!(matches!(config.processor, Processor::Analysis(_)));
        assert_eq!(config.scratch_budget, 12 << 30);
        assert!(config.max_object_bytes <= config.scratch_budget);
        assert_eq!(
            config.allowed_buckets,
            AllowedBuckets::Only(vec!["in1".into()])
        );
    }

    #[test]
    fn bad_values_are_refused_naming_the_flag() {
        let table: [(&[&str], &str); 8] = [
            (&["--concurrency", "0"], "concurrency"),
            (&["--visibility-timeout", "0"], "visibility-timeout"),
            (&["--visibility-timeout", "1500ms"], "visibility-timeout"),
            (&["--visibility-timeout", "13h"], "visibility-timeout"),
            (&["--receive-wait", "21s"], "receive-wait"),
            (&["--max-object-bytes", "0"], "max-object-bytes"),
            (&["--exec", " "], "exec"),
            (&["--protection-minutes", "3000"], "protection-minutes"),
        ];
        for (extra, flag) in table {
            let error = WorkerConfig::from_args(args(extra)).expect_err(flag);
            assert_eq!(error.flag, flag, "{extra:?}");
        }
    }

    #[test]
    fn the_scratch_budget_must_hold_the_largest_object() {
        for (extra, flag) in [
            (&["--scratch-budget", "0"][..], "scratch-budget"),
            (
                &["--scratch-budget", "9999999999999999"][..],
                "scratch-budget",
            ),
            (
                &["--max-object-bytes", "2000", "--scratch-budget", "1999"][..],
                "max-object-bytes",
            ),
        ] {
            let error = WorkerConfig::from_args(args(extra)).expect_err(flag);
            assert_eq!(error.flag, flag, "{extra:?}");
        }
        let error = WorkerConfig::from_args(args(&["--scratch-budget", "1024"]))
            .expect_err("the default 10 GiB objects do not fit 1 KiB");
        assert!(
            error.to_string().contains("--max-object-bytes")
                && error.to_string().contains("--scratch-budget"),
            "{error}"
        );
        let small = ["--max-object-bytes", "2000", "--scratch-budget", "2000"];
        let config = WorkerConfig::from_args(args(&small)).expect("equal is enough");
        assert_eq!(
            (config.max_object_bytes, config.scratch_budget),
            (2000, 2000)
        );
    }

    #[test]
    fn the_spot_watcher_is_automatic_by_default_and_its_flags_are_checked() {
        let config = WorkerConfig::from_args(args(&[])).expect("defaults are valid");
        assert_eq!(
            config.spot,
            SpotWatch {
                mode: SpotWatchMode::Auto,
                imds_endpoint: "http://169.254.169.254".to_owned(),
                poll_interval: Duration::from_secs(1),
            }
        );
        let table: [(&[&str], &str); 4] = [
            (&["--spot-poll-interval", "50ms"], "spot-poll-interval"),
            (&["--spot-poll-interval", "1m"], "spot-poll-interval"),
            (
                &["--imds-endpoint", "https://169.254.169.254"],
                "imds-endpoint",
            ),
            (&["--imds-endpoint", "http://"], "imds-endpoint"),
        ];
        for (extra, flag) in table {
            let error = WorkerConfig::from_args(args(extra)).expect_err(flag);
            assert_eq!(error.flag, flag, "{extra:?}");
        }
        let local = [
            "--spot-watch",
            "on",
            "--imds-endpoint",
            "http://127.0.0.1:8111/",
        ];
        let config = WorkerConfig::from_args(args(&local)).expect("valid");
        assert_eq!(config.spot.mode, SpotWatchMode::On);
        assert_eq!(config.spot.imds_endpoint, "http://127.0.0.1:8111");
    }

    #[test]
    fn a_star_allows_any_bucket_and_a_list_only_its_members() {
        let any = parse_allowed_buckets(&["abc".into(), "*".into()]).expect("valid");
        assert!(any.allows("whatever"));
        assert!(!any.allows("what/ever"), "a forged name is never allowed");
        let only = parse_allowed_buckets(&[" abc ".into(), "abd".into()]).expect("valid");
        assert!(only.allows("abc") && only.allows("abd") && !only.allows("abe"));
        assert!(parse_allowed_buckets(&[" ".into()]).is_err());
        assert!(parse_allowed_buckets(&["in/x".into()]).is_err());
    }
}
