//! `geobatch-controller`: parses the command line and hands over to the library.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use geobatch_common::telemetry::{self, LogFormat};
use geobatch_controller::aws::AwsClients;
use geobatch_controller::config::{Config, ConfigFile};
use geobatch_controller::decision_log::DecisionLog;
use geobatch_controller::ops::{
    self, ExitStatus, OpsError, backfill::BackfillArgs, redrive::RedriveArgs, report::ReportArgs,
    status::StatusArgs,
};
use geobatch_controller::service;
use geobatch_controller::simulate_command::{self, SimulateArgs};

/// Sizes a geobatch worker fleet (an ECS service on an Auto Scaling Group) from its SQS
/// queue: scales out at once on a backlog, scales in after a stabilization window, scales
/// to zero only when the queue has been empty for the idle window, and never removes an
/// instance that runs a task.
///
/// AWS access comes from the standard chain: AWS_REGION, AWS_PROFILE or the instance role,
/// and AWS_ENDPOINT_URL for a local emulator. The configuration file format is described in
/// docs/controller.md, with an annotated example in controller/examples/controller.toml.
#[derive(Debug, Parser)]
#[command(name = "geobatch-controller", version, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the control loop for every pool in the config until SIGTERM or Ctrl-C.
    ///
    /// Each poll reads the queue (SQS), the service and its container instances (ECS) and
    /// the Auto Scaling Group, plus CloudWatch once per `cloudwatch_interval_secs`, then sets
    /// the service's desired count and the group's desired capacity. Every change is written
    /// to stdout as one JSON line with its inputs and reason; diagnostics go to stderr.
    Run {
        /// The TOML configuration file.
        #[arg(long, short, value_name = "FILE", env = "GEOBATCH_CONTROLLER_CONFIG")]
        config: PathBuf,
        /// Observe and decide exactly as live, log `would …` for each call with its reason,
        /// and make no mutating AWS call at all.
        #[arg(long)]
        dry_run: bool,
        /// Address for `/metrics` (Prometheus) and `/healthz`.
        #[arg(
            long,
            value_name = "ADDR",
            default_value = "127.0.0.1:9090",
            env = "GEOBATCH_CONTROLLER_LISTEN"
        )]
        listen: SocketAddr,
        /// Diagnostic log format on stderr: `json` for log pipelines, `text` for terminals.
        #[arg(long, value_enum, default_value = "json", env = "GEOBATCH_LOG_FORMAT")]
        log_format: LogFormat,
    },
    /// Observe each pool once and print, as JSON, what the controller would decide if it
    /// started now: the observation, desired tasks and instances, the reason and the calls
    /// it would make. Changes nothing.
    ///
    /// A controller that has just started has no history, so a scale-in shows as held by
    /// the stabilization window and an empty queue as inside the idle window. Exits 1 if
    /// any pool could not be fully observed (the record lists `observation_errors`).
    Decide {
        /// The TOML configuration file.
        #[arg(long, short, value_name = "FILE", env = "GEOBATCH_CONTROLLER_CONFIG")]
        config: PathBuf,
        /// Diagnostic log format on stderr.
        #[arg(long, value_enum, default_value = "text", env = "GEOBATCH_LOG_FORMAT")]
        log_format: LogFormat,
    },
    /// Validate a configuration file and print the effective configuration, every default
    /// filled in, as TOML. Exits non-zero with the field and the fix if it is invalid.
    CheckConfig {
        /// The TOML configuration file.
        #[arg(value_name = "FILE")]
        file: PathBuf,
    },
    Simulate(SimulateArgs),
    Backfill(BackfillArgs),
    Status(StatusArgs),
    Redrive(RedriveArgs),
    Report(ReportArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let batch = match cli.command {
        Command::Backfill(args) => Batch::Backfill(args),
        Command::Status(args) => Batch::Status(args),
        Command::Redrive(args) => Batch::Redrive(args),
        Command::Report(args) => Batch::Report(args),
        command => return service_command(command),
    };
    match run_batch_command(&batch) {
        Ok(()) => ExitStatus::Ok.into(),
        Err(err) => {
            eprintln!("geobatch-controller: {err}");
            err.exit_status().into()
        }
    }
}

/// The batch commands, which have exit codes of their own (docs/operations.md).
enum Batch {
    Backfill(BackfillArgs),
    Status(StatusArgs),
    Redrive(RedriveArgs),
    Report(ReportArgs),
}

fn service_command(command: Command) -> ExitCode {
    match run(command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("geobatch-controller: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::CheckConfig { file } => check_config(&file),
        Command::Simulate(args) => simulate_command::run(args),
        Command::Backfill(_) | Command::Status(_) | Command::Redrive(_) | Command::Report(_) => {
            Err(anyhow::anyhow!("batch commands have their own runner"))
        }
        Command::Decide { config, log_format } => {
            telemetry::init(log_format);
            let config = Config::load(&config)?;
            runtime()?.block_on(async {
                let clients = clients(&config).await;
                let records = service::decide_once(&config, &clients).await;
                let json = serde_json::to_string_pretty(&records)
                    .context("cannot encode the decisions")?;
                println!("{json}");
                let failed: Vec<&str> = records
                    .iter()
                    .filter(|r| !r.observation_errors.is_empty())
                    .map(|r| r.pool.as_str())
                    .collect();
                if failed.is_empty() {
                    Ok(())
                } else {
                    anyhow::bail!(
                        "could not observe pool(s) {}; see observation_errors above",
                        failed.join(", ")
                    )
                }
            })
        }
        Command::Run {
            config,
            dry_run,
            listen,
            log_format,
        } => {
            telemetry::init(log_format);
            let config = Config::load(&config)?;
            runtime()?.block_on(async {
                let listener = geobatch_common::http::bind(listen)
                    .await
                    .with_context(|| format!("cannot listen on {listen} (--listen)"))?;
                tracing::info!(listen = %listen, dry_run, pools = config.pools.len(), "starting");
                let clients = clients(&config).await;
                // A poll under way gets one API timeout to finish; past that the stop cuts
                // it short, which is safe: every call stands alone and the next start
                // observes and plans again. (systemd's `docker stop --time 20` kills later.)
                let shutdown = geobatch_common::shutdown::graceful(
                    config.api_timeout + Duration::from_secs(5),
                );
                service::run(
                    config,
                    clients,
                    dry_run,
                    listener,
                    DecisionLog::stdout(),
                    shutdown,
                )
                .await?;
                Ok(())
            })
        }
    }
}

/// Runs `backfill`, `status`, `redrive` or `report`; diagnostics go to stderr as text.
fn run_batch_command(batch: &Batch) -> Result<(), OpsError> {
    telemetry::init(LogFormat::Text);
    let runtime = runtime().map_err(|err| OpsError::Usage(format!("{err:#}")))?;
    runtime.block_on(async {
        let clients = ops::setup::load().await?;
        let mut stdout = std::io::stdout();
        match batch {
            Batch::Backfill(args) => ops::backfill::run(&clients, args, &mut stdout)
                .await
                .map(drop),
            Batch::Status(args) => ops::status::run(&clients, args, &mut stdout)
                .await
                .map(drop),
            Batch::Redrive(args) => ops::redrive::run(&clients, args, &mut stdout)
                .await
                .map(drop),
            Batch::Report(args) => ops::report::run(&clients, args, &mut stdout)
                .await
                .map(drop),
        }
    })
}

fn check_config(path: &Path) -> anyhow::Result<()> {
    let file = ConfigFile::read(path)?;
    file.validate()?;
    let text = toml::to_string(&file.effective()).context("cannot print the configuration")?;
    println!(
        "# {}: valid. Effective configuration:\n{text}",
        path.display()
    );
    Ok(())
}

async fn clients(config: &Config) -> AwsClients {
    let sdk = geobatch_common::aws::load_sdk_config().await;
    AwsClients::new(&sdk, config.api_timeout)
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    // Two worker threads are plenty for a handful of pools on a tiny instance, and keep the
    // resident set small.
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}
