//! geobatch's controller: sizes the worker ECS service and its Auto Scaling Group from the
//! SQS backlog, scales to zero safely and never removes a busy worker.
//!
//! # Layout
//! - [`config`]: the TOML file, its defaults and validation into pools.
//! - [`learn`]: what the policy learns from its observations (time per message, arrivals).
//! - [`policy`]: the pure decision function shared by the loop, `decide`, dry-run and the
//!   simulator.
//! - [`observe`]: reads the queue, service, container instances, group and CloudWatch
//!   behind the [`observe::Observer`] trait.
//! - [`plan`]: turns a decision into the calls that carry it out safely (pure).
//! - [`actuate`]: makes those calls, or in dry-run does not, behind [`actuate::Actuator`].
//! - [`control`]: the per-pool loop and its one error policy.
//! - [`service`]: the `run` command: all pools, `/metrics`, `/healthz`, shutdown.
//! - [`decision_log`]: one JSON line per capacity change, with inputs and reason.
//! - [`events`]: the observable events, each owning its log line and counter.
//! - [`metrics`]: the Prometheus metrics.
//! - [`aws`]: the SDK clients and the API error type.
//! - [`ops`]: the batch commands `backfill`, `status`, `redrive` and `report`.
//! - [`sim`]: the simulator behind `simulate`; [`simulate_command`] is its front end.

pub mod actuate;
pub mod aws;
pub mod config;
pub mod control;
pub mod decision_log;
pub mod drains;
pub mod events;
pub mod learn;
pub mod metrics;
pub mod observe;
pub mod ops;
pub mod plan;
pub mod policy;
pub mod service;
pub mod sim;
pub mod simulate_command;
pub mod warm_pool;
