//! The autoscalers geobatch is compared against, each faithful to its documented defaults.
//!
//! - [`classic_alarms`]: the two CloudWatch alarms of the classic recipe.
//! - [`target_tracking`]: AWS target tracking on backlog per instance.
//! - [`keda`]: KEDA's aws-sqs-queue scaler with the Kubernetes HPA and Cluster Autoscaler.

pub mod classic_alarms;
pub mod keda;
pub mod target_tracking;
