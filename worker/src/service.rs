//! `geobatch-worker run`: the receive loop, bounded concurrency and graceful shutdown.
//!
//! The loop receives only when it has a free slot, and asks for at most as many messages as
//! it has free slots (up to SQS's 10), so a busy worker leaves messages in the queue for
//! other workers instead of hoarding them. Each message runs in its own task ([`message`]).
//! On the shutdown signal the loop starts no new receive; a receive already in flight is
//! allowed to return (within `--shutdown-grace`) and whatever it brings is released at once
//! with visibility 0. Held messages may finish within the rest of the grace; the unfinished
//! ones are then released with visibility 0 too, and the service returns.
//!
//! A Spot interruption notice or rebalance recommendation ([`interruption`]) stops the
//! receive loop the same way; the watcher itself releases the held messages that would not
//! finish in time, and the service then waits for the shutdown signal (ECS stops the tasks
//! of an instance being interrupted), finishing what it still holds.
//!
//! [`message`]: crate::message
//! [`interruption`]: crate::interruption

use std::future::Future;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use aws_config::SdkConfig;
use aws_sdk_sqs::types::{Message, QueueAttributeName};
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;
use tokio::time::Instant;

pub use crate::config::RunArgs;
use crate::config::WorkerConfig;
use crate::deadline::within;
use crate::held::{self, HeldMessages, ReleaseReason};
use crate::interruption::Watcher;
use crate::message::{MessageHandler, hand_back};
use crate::objects::S3Store;
use crate::process::ObjectProcessor;
use crate::processor::{self, Processor};
use crate::protection::TaskProtection;
use crate::queue::{MAX_BATCH, Queue, SqsQueue};
use crate::results::ResultStore;
use crate::scratch::ScratchBudget;
use crate::sdk_error::error_chain;
use crate::telemetry::{self, Metrics};
use crate::visibility;

/// Longest wait, after the shutdown grace, for held messages to be handed back.
const RELEASE_DRAIN_LIMIT: Duration = Duration::from_secs(2);
/// Consecutive failed receives after which `/healthz` reports the worker unhealthy.
const UNHEALTHY_AFTER_FAILURES: u32 = 5;

/// Why the service could not run.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// The metrics listener could not be bound.
    #[error("cannot listen on --metrics-addr {addr}: {source}")]
    MetricsListener {
        /// The address asked for.
        addr: std::net::SocketAddr,
        /// Why binding failed.
        source: std::io::Error,
    },
    /// The queue could not be read at start-up (wrong URL, no permission, no network).
    #[error("cannot read the attributes of queue {queue_url}: {message}")]
    Queue {
        /// The configured queue.
        queue_url: String,
        /// What SQS said.
        message: String,
    },
    /// `--scratch-budget` cannot be counted (configuration validation keeps it countable).
    #[error("invalid --scratch-budget: {0}")]
    ScratchBudget(#[from] crate::scratch::BudgetError),
    /// `--work-dir` cannot hold downloads: missing, not a directory, or not writable.
    #[error("cannot stage downloads in --work-dir {}: {source}", path.display())]
    WorkDir {
        /// The configured directory.
        path: std::path::PathBuf,
        /// What the file system said.
        source: std::io::Error,
    },
}

/// Entry point of `geobatch-worker run`: logging, configuration, runtime, signals.
pub fn main(args: RunArgs) -> ExitCode {
    main_with(args, |config| Ok(processor::from_config(&config.processor)))
}

/// [`main`] for a worker binary of your own: the same flags, service and guarantees, with
/// the processor `choose` makes from the validated settings (say, the built-in analysis
/// options in `config.processor`, for their limits and threads). An `Err` from it stops the
/// worker at start-up with exit code 2 and that message, as a bad flag does: a worker whose
/// processor ignores `--exec` should refuse it rather than silently do something else.
///
/// ```no_run
/// use std::sync::Arc;
/// use clap::Parser;
/// use geobatch_worker::config::{Processor as Configured, RunArgs};
/// use geobatch_worker::processor::BuiltIn;
///
/// #[derive(Parser)]
/// struct Cli {
///     #[command(flatten)]
///     run: RunArgs,
/// }
///
/// fn main() -> std::process::ExitCode {
///     geobatch_worker::service::main_with(Cli::parse().run, |config| match &config.processor {
///         // Replace BuiltIn with your own `impl Processor`.
///         Configured::Analysis(options) => Ok(Arc::new(BuiltIn::new(options.clone()))),
///         Configured::Exec(_) => Err("this worker runs its own analysis, not --exec".into()),
///     })
/// }
/// ```
pub fn main_with(
    args: RunArgs,
    choose: impl FnOnce(&WorkerConfig) -> Result<Arc<dyn Processor>, String>,
) -> ExitCode {
    geobatch_common::telemetry::init(args.log_format);
    let config = match WorkerConfig::from_args(args) {
        Ok(config) => config,
        Err(err) => {
            eprintln!("geobatch-worker run: {err}");
            return ExitCode::from(2);
        }
    };
    let processor = match choose(&config) {
        Ok(processor) => processor,
        Err(err) => {
            eprintln!("geobatch-worker run: {err}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("geobatch-worker run: cannot start the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    let limit = config.shutdown_grace + SHUTDOWN_MARGIN;
    let result = runtime.block_on(async {
        let sdk_config = geobatch_common::aws::load_sdk_config().await;
        let shutdown = geobatch_common::shutdown::graceful(limit);
        run_with_processor(config, &sdk_config, processor, shutdown).await
    });
    // Dropping the runtime would wait for every blocking thread; an analysis cancelled at
    // the end of the grace ends within a feature, so a short bound is enough.
    runtime.shutdown_timeout(SHUTDOWN_MARGIN);
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            let err = anyhow::Error::new(err).context("geobatch-worker run failed");
            tracing::error!(error = format!("{err:#}"), "worker stopped");
            eprintln!("{err:#}");
            ExitCode::FAILURE
        }
    }
}

/// What the worker may take beyond `--shutdown-grace` to release the messages it still
/// holds and close its listener; past grace + margin it exits whatever it is doing
/// (`geobatch_common::shutdown`). The default grace (25 s) plus this stays below the ECS
/// stop timeout (30 s).
pub const SHUTDOWN_MARGIN: Duration = Duration::from_secs(3);

/// Runs the worker with AWS configured from the standard environment until `shutdown`
/// resolves and held messages are finished or released.
pub async fn run(
    config: WorkerConfig,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ServiceError> {
    let sdk_config = geobatch_common::aws::load_sdk_config().await;
    run_with_sdk_config(config, &sdk_config, shutdown).await
}

/// [`run`] with an explicit SDK configuration (tests point it at the emulator).
pub async fn run_with_sdk_config(
    config: WorkerConfig,
    sdk_config: &SdkConfig,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ServiceError> {
    let processor = processor::from_config(&config.processor);
    run_with_processor(config, sdk_config, processor, shutdown).await
}

/// [`run_with_sdk_config`] running `processor` on every object instead of what
/// `config.processor` names.
pub async fn run_with_processor(
    config: WorkerConfig,
    sdk_config: &SdkConfig,
    processor: Arc<dyn Processor>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ServiceError> {
    let config = Arc::new(config);
    // Before any child exists: as PID 1 the worker reaps what `--exec` commands leave behind.
    crate::reaper::start();
    let sqs = aws_sdk_sqs::Client::new(sdk_config);
    let s3 = aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(sdk_config)
            .force_path_style(geobatch_common::aws::s3_needs_path_style(sdk_config))
            .build(),
    );
    let available = crate::scratch::check_work_dir(&config.work_dir).map_err(|source| {
        ServiceError::WorkDir {
            path: config.work_dir.clone(),
            source,
        }
    })?;
    telemetry::scratch_space(&config.work_dir, available, config.scratch_budget);
    check_queue(&sqs, &config).await?;

    let (metrics, registry) = Metrics::new();
    let consecutive_failures = Arc::new(AtomicU32::new(0));
    let (stop_http, http_stopped) = watch::channel(false);
    let http = match config.metrics_addr {
        Some(addr) => {
            let listener = geobatch_common::http::bind(addr)
                .await
                .map_err(|source| ServiceError::MetricsListener { addr, source })?;
            let failures = Arc::clone(&consecutive_failures);
            let health: geobatch_common::http::HealthCheck =
                Arc::new(move || failures.load(Ordering::Relaxed) < UNHEALTHY_AFTER_FAILURES);
            let mut stopped = http_stopped;
            tracing::info!(addr = %addr, "serving /metrics and /healthz");
            Some(tokio::spawn(geobatch_common::http::serve(
                listener,
                registry,
                health,
                async move {
                    let _closed = stopped.wait_for(|stop| *stop).await;
                },
            )))
        }
        None => None,
    };

    let (held_tx, held_rx) = watch::channel(0usize);
    let protection = match &config.ecs_agent_uri {
        Some(uri) => match TaskProtection::new(uri, config.protection_minutes) {
            Ok(protection) => Some(tokio::spawn(protection.follow(held_rx))),
            Err(error) => {
                tracing::warn!(error, "ECS task protection disabled");
                None
            }
        },
        None => None,
    };

    let scratch = ScratchBudget::new(config.scratch_budget, metrics.scratch_reserved.clone())?;
    let objects = S3Store::new(s3);
    let store = ResultStore::new(objects.clone(), config.output.clone(), config.call_timeout);
    let queue = SqsQueue::new(sqs.clone(), config.queue_url.clone());
    let handler = MessageHandler {
        queue: queue.clone(),
        processor: ObjectProcessor::with_processor(
            objects,
            store.clone(),
            Arc::clone(&config),
            scratch,
            processor,
        ),
        store,
        config: Arc::clone(&config),
        metrics: metrics.clone(),
    };
    tracing::info!(
        queue_url = %config.queue_url,
        output_bucket = %config.output.bucket,
        output_prefix = %config.output.prefix,
        concurrency = config.concurrency,
        scratch_budget_bytes = config.scratch_budget,
        visibility_timeout_secs = config.visibility_timeout.as_secs(),
        "worker started"
    );
    if config.shutdown_grace < config.receive_wait {
        tracing::warn!(
            shutdown_grace_secs = config.shutdown_grace.as_secs_f64(),
            receive_wait_secs = config.receive_wait.as_secs_f64(),
            "--shutdown-grace is shorter than --receive-wait: a receive in flight at shutdown may be cut short, and messages it was given then stay hidden until their visibility timeout"
        );
    }

    let registry = held::shared();
    let watcher = Watcher::start(
        config.spot.clone(),
        Arc::clone(&registry),
        metrics.interruption.clone(),
    );
    let held_tx = Arc::new(held_tx);
    let mut tasks = JoinSet::new();
    let receiver = Receiver {
        queue: &queue,
        config: &config,
        handler: &handler,
        metrics: &metrics,
        consecutive_failures: &consecutive_failures,
        held: &held_tx,
        registry: &registry,
    };
    tokio::pin!(shutdown);
    let mut interrupted = false;
    let noticed = watcher.noticed();
    let stop_receiving = async {
        tokio::select! {
            () = &mut shutdown => ReleaseReason::Shutdown,
            () = noticed => {
                interrupted = true;
                ReleaseReason::Interruption
            }
        }
    };
    let mut grace_over = receiver.run(&mut tasks, stop_receiving).await;
    if interrupted {
        tracing::info!(
            held_messages = tasks.len(),
            "stopped receiving after a Spot notice; waiting for the shutdown signal"
        );
        wait_for_shutdown(&mut tasks, &mut shutdown).await;
        grace_over = Instant::now() + config.shutdown_grace;
    }

    tracing::info!(
        held_messages = tasks.len(),
        grace_secs = config.shutdown_grace.as_secs_f64(),
        "stopped receiving; waiting for held messages"
    );
    let finished = tokio::time::timeout_at(grace_over, drain(&mut tasks)).await;
    if finished.is_err() {
        tracing::warn!(
            held_messages = tasks.len(),
            "shutdown grace over; releasing unfinished messages"
        );
        registry.release_all(ReleaseReason::Shutdown);
        // Every call of a release has a deadline, but their sum need not fit in what is left
        // of the ECS stop timeout: past this, the rest reappear after their visibility timeout.
        if tokio::time::timeout(RELEASE_DRAIN_LIMIT, drain(&mut tasks))
            .await
            .is_err()
        {
            tracing::warn!(
                held_messages = tasks.len(),
                limit_secs = RELEASE_DRAIN_LIMIT.as_secs_f64(),
                "releases did not finish in time; those messages reappear after their visibility timeout"
            );
            tasks.shutdown().await;
        }
    }
    watcher.stop();
    drop(held_tx);
    if let Some(protection) = protection {
        let _joined = protection.await;
    }
    let _sent = stop_http.send(true);
    if let Some(http) = http {
        let _joined = http.await;
    }
    tracing::info!("worker stopped");
    Ok(())
}

/// Reads the queue's attributes once, so a wrong URL fails at start-up, and warns when the
/// queue has no dead-letter queue (a message that keeps failing would then retry forever).
async fn check_queue(sqs: &aws_sdk_sqs::Client, config: &WorkerConfig) -> Result<(), ServiceError> {
    let attributes = sqs
        .get_queue_attributes()
        .queue_url(&config.queue_url)
        .attribute_names(QueueAttributeName::RedrivePolicy)
        .send()
        .await
        .map_err(|err| ServiceError::Queue {
            queue_url: config.queue_url.clone(),
            message: error_chain(&err),
        })?;
    let has_dlq = attributes
        .attributes()
        .is_some_and(|attrs| attrs.contains_key(&QueueAttributeName::RedrivePolicy));
    if !has_dlq {
        tracing::warn!(
            queue_url = %config.queue_url,
            "the queue has no redrive policy: a message that keeps failing transiently is retried forever"
        );
    }
    Ok(())
}

/// The receive loop and what it hands to each message task.
struct Receiver<'a> {
    queue: &'a SqsQueue,
    config: &'a Arc<WorkerConfig>,
    handler: &'a MessageHandler<SqsQueue, S3Store>,
    metrics: &'a Metrics,
    /// Failed receives in a row; drives the loop's backoff and `/healthz`.
    consecutive_failures: &'a AtomicU32,
    /// Number of held messages, followed by task protection.
    held: &'a Arc<watch::Sender<usize>>,
    /// Each held message with its release signal.
    registry: &'a Arc<HeldMessages>,
}

impl Receiver<'_> {
    /// Receives and dispatches messages until `stop` resolves, to why receiving stops (the
    /// reason messages of a receive cut short by it are handed back with); spawned message
    /// tasks are left in `tasks` for the caller to drain by the returned end of the grace.
    async fn run(
        &self,
        tasks: &mut JoinSet<()>,
        stop: impl Future<Output = ReleaseReason>,
    ) -> Instant {
        let Receiver {
            queue,
            config,
            handler,
            metrics,
            consecutive_failures,
            held,
            registry,
        } = *self;
        let slots = Arc::new(Semaphore::new(config.concurrency));
        let batch_limit = config.concurrency.min(MAX_BATCH);
        tokio::pin!(stop);
        loop {
            let first = tokio::select! {
                _ = &mut stop => break,
                permit = Arc::clone(&slots).acquire_owned() => match permit {
                    Ok(permit) => permit,
                    Err(_closed) => break,
                },
            };
            let mut permits = vec![first];
            while permits.len() < batch_limit {
                match Arc::clone(&slots).try_acquire_owned() {
                    Ok(permit) => permits.push(permit),
                    Err(_) => break,
                }
            }
            while let Some(joined) = tasks.try_join_next() {
                if let Err(err) = joined {
                    tracing::error!(error = %err, "a message task failed");
                }
            }
            let receiving = receive(queue, config, permits.len());
            tokio::pin!(receiving);
            let received = tokio::select! {
                reason = &mut stop => {
                    let deadline = Instant::now() + config.shutdown_grace;
                    self.finish_receive_at_shutdown(receiving, deadline, reason).await;
                    return deadline;
                }
                received = &mut receiving => received,
            };
            let messages = match received {
                Ok(messages) => {
                    consecutive_failures.store(0, Ordering::Relaxed);
                    messages
                }
                Err(error) => {
                    let failures = consecutive_failures.fetch_add(1, Ordering::Relaxed) + 1;
                    let delay = visibility::retry_delay(
                        failures,
                        Duration::from_secs(1),
                        Duration::from_secs(30),
                    );
                    telemetry::receive_failed(metrics, &error, delay);
                    tokio::select! {
                        _ = &mut stop => break,
                        () = tokio::time::sleep(delay) => continue,
                    }
                }
            };
            if !messages.is_empty() {
                telemetry::messages_received(metrics, messages.len());
            }
            for message in messages {
                let Some(permit) = permits.pop() else {
                    // SQS never returns more than asked for; if it did, the extra message simply
                    // waits in this batch's task for the slot of the message before it.
                    tracing::warn!("SQS returned more messages than requested");
                    break;
                };
                let handler = handler.clone();
                let registry = Arc::clone(registry);
                let (ticket, release) = registry.register();
                let held = Arc::clone(held);
                held.send_modify(|count| *count += 1);
                tasks.spawn(async move {
                    handler.run(message, release).await;
                    registry.finish(ticket);
                    held.send_modify(|count| *count -= 1);
                    drop(permit);
                });
            }
        }
        Instant::now() + config.shutdown_grace
    }

    /// Lets the receive that was in flight when shutdown came return (by `deadline` at the
    /// latest) and releases at once whatever it was given. Dropping it instead would leave
    /// those messages hidden, held by no one, for a whole visibility timeout.
    async fn finish_receive_at_shutdown(
        &self,
        receiving: impl Future<Output = Result<Vec<Message>, String>>,
        deadline: Instant,
        reason: ReleaseReason,
    ) {
        telemetry::shutdown_during_receive(self.config.shutdown_grace);
        let messages = match tokio::time::timeout_at(deadline, receiving).await {
            Ok(Ok(messages)) => messages,
            Ok(Err(error)) => return telemetry::receive_at_shutdown_failed(&error),
            Err(_elapsed) => {
                return telemetry::receive_at_shutdown_abandoned(self.config.shutdown_grace);
            }
        };
        if messages.is_empty() {
            return;
        }
        telemetry::messages_received(self.metrics, messages.len());
        telemetry::releasing_received_at_shutdown(messages.len());
        let mut releases = JoinSet::new();
        for message in messages {
            let (queue, metrics) = (self.queue.clone(), self.metrics.clone());
            let call_timeout = self.config.call_timeout;
            releases.spawn(async move {
                hand_back(&queue, &metrics, &message, reason.as_str(), call_timeout).await;
            });
        }
        drain(&mut releases).await;
    }
}

/// One receive, within `--receive-wait` plus the call deadline.
async fn receive(
    queue: &SqsQueue,
    config: &WorkerConfig,
    max_messages: usize,
) -> Result<Vec<Message>, String> {
    within(
        config.receive_wait + config.call_timeout,
        "ReceiveMessage",
        queue.receive(max_messages, config.receive_wait, config.visibility_timeout),
    )
    .await
}

/// Lets held messages finish (or be released by the watcher) until `shutdown` resolves.
async fn wait_for_shutdown(
    tasks: &mut JoinSet<()>,
    shutdown: &mut std::pin::Pin<&mut impl Future<Output = ()>>,
) {
    loop {
        tokio::select! {
            () = shutdown.as_mut() => return,
            Some(joined) = tasks.join_next() => {
                if let Err(err) = joined {
                    tracing::error!(error = %err, "a message task failed");
                }
            }
        }
    }
}

async fn drain(tasks: &mut JoinSet<()>) {
    while let Some(joined) = tasks.join_next().await {
        if let Err(err) = joined {
            tracing::error!(error = %err, "a message task failed");
        }
    }
}
