//! geobatch's controller: sizes the worker ECS service and its Auto Scaling Group from the
//! SQS backlog, scales to zero safely and never removes a busy worker.
//!
//! # Layout
//! - [`config`]: the TOML file, its defaults and validation into pools.
//! - [`policy`]: the pure decision function shared by the loop, `decide`, dry-run and the
//!   simulator.
//! - [`sim`]: the simulator behind `simulate`; [`simulate_command`] is its front end.
pub mod config;
pub mod policy;
pub mod sim;
pub mod simulate_command;
