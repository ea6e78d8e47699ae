//! The controller as a service (`run`) and as a one-shot question (`decide`).

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use prometheus_client::registry::Registry;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::actuate::{Actuator, AwsActuator, DryRun};
use crate::aws::AwsClients;
use crate::config::Config;
use crate::control::{Heartbeat, PoolLoop};
use crate::decision_log::{DecisionLog, DecisionRecord};
use crate::metrics::Metrics;
use crate::observe::AwsObserver;

/// Why the service stopped other than by the shutdown signal.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// The `/metrics` and `/healthz` listener failed.
    #[error("the metrics and health listener failed: {0}")]
    Http(#[from] std::io::Error),
    /// A pool's loop panicked, which is a bug.
    #[error("a pool loop stopped unexpectedly: {0}")]
    Loop(#[from] tokio::task::JoinError),
}

/// Runs every pool's loop, serving `/metrics` and `/healthz` on `listener`, until `shutdown`
/// resolves; polls under way finish first.
pub async fn run(
    config: Config,
    clients: AwsClients,
    dry_run: bool,
    listener: TcpListener,
    log: DecisionLog,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServiceError> {
    let mut registry = Registry::default();
    let metrics = Metrics::register(&mut registry);
    let slowest_poll = config
        .pools
        .iter()
        .map(|p| p.poll_interval)
        .max()
        .unwrap_or_default();
    // A loop is stuck, not just backing off, if it has not finished a poll in two of its
    // longest waits plus the time its calls may take.
    let stale_after = 2 * config.max_backoff.max(slowest_poll) + 8 * config.api_timeout;
    let heartbeat = Arc::new(Heartbeat::new(config.pools.len(), stale_after));

    let (stop, stopped) = watch::channel(false);
    tokio::spawn(async move {
        shutdown.await;
        tracing::info!("shutdown requested; finishing the polls under way");
        let _receivers_gone = stop.send(true);
    });

    let health_beat = Arc::clone(&heartbeat);
    let mut http_stop = stopped.clone();
    let http = tokio::spawn(geobatch_common::http::serve_with(
        listener,
        Arc::new(registry),
        Arc::new(move || health_beat.healthy()),
        decisions_route(log.clone()),
        async move {
            let _changed = http_stop.wait_for(|stop| *stop).await;
        },
    ));

    let mut loops = JoinSet::new();
    for (index, pool) in config.pools.iter().cloned().enumerate() {
        let observer = AwsObserver::new(clients.clone(), config.cloudwatch_interval);
        let heartbeat = Arc::clone(&heartbeat);
        let stopped = stopped.clone();
        let (log, metrics) = (log.clone(), metrics.clone());
        let max_backoff = config.max_backoff;
        if dry_run {
            let pool_loop = PoolLoop::new(pool, observer, DryRun, log, metrics);
            loops.spawn(pool_loop.run(index, heartbeat, max_backoff, stopped));
        } else {
            let actuator = AwsActuator::new(clients.clone());
            let pool_loop = PoolLoop::new(pool, observer, actuator, log, metrics);
            loops.spawn(pool_loop.run(index, heartbeat, max_backoff, stopped));
        }
    }
    while let Some(done) = loops.join_next().await {
        done?;
    }
    http.await??;
    Ok(())
}

/// `GET /decisions`: each pool's latest decision record as a JSON array, for
/// `geobatch-controller status` (the decision log itself goes to stdout).
fn decisions_route(log: DecisionLog) -> axum::Router {
    axum::Router::new().route(
        "/decisions",
        axum::routing::get(move || {
            let body = serde_json::to_string(&log.latest()).unwrap_or_else(|_| "[]".to_owned());
            async move {
                (
                    [(axum::http::header::CONTENT_TYPE, "application/json")],
                    body,
                )
            }
        }),
    )
}

/// One observation and one decision per pool, as a controller that started now would make
/// them, with the calls it would make. Changes nothing: each pool gets one poll of the
/// loop `run` runs, through the dry-run actuator, so `decide` cannot drift from it.
pub async fn decide_once(config: &Config, clients: &AwsClients) -> Vec<DecisionRecord> {
    let metrics = Metrics::register(&mut Registry::default());
    let mut records = Vec::with_capacity(config.pools.len());
    for pool in &config.pools {
        // A zero interval makes the observer read CloudWatch now.
        let observer = AwsObserver::new(clients.clone(), Duration::ZERO);
        let mut pool_loop = PoolLoop::new(
            pool.clone(),
            observer,
            DryRun,
            DecisionLog::discard(),
            metrics.clone(),
        );
        let tick = pool_loop.tick().await;
        records.push(DecisionRecord::new(
            &pool.name,
            DryRun.dry_run(),
            &tick.snapshot,
            &tick.decision,
            tick.calls,
        ));
    }
    records
}
