//! The AWS clients the controller uses and the one error type their failures become.
//!
//! Clients come from the standard SDK configuration (`AWS_ENDPOINT_URL`, region, instance
//! role), with an operation timeout on top so a hung endpoint costs one poll, not the loop.

use std::time::Duration;

use aws_config::SdkConfig;
use aws_config::timeout::TimeoutConfig;

/// The four clients the controller needs, built once and shared by every pool.
#[derive(Debug, Clone)]
pub struct AwsClients {
    /// Queue depth.
    pub sqs: aws_sdk_sqs::Client,
    /// The service's counts, its container instances, and the service and drain updates.
    pub ecs: aws_sdk_ecs::Client,
    /// The group's size and instances, and the capacity and termination calls.
    pub autoscaling: aws_sdk_autoscaling::Client,
    /// `NumberOfEmptyReceives` and `ApproximateNumberOfMessagesVisible` of the queue.
    pub cloudwatch: aws_sdk_cloudwatch::Client,
}

impl AwsClients {
    /// Builds the clients; `api_timeout` bounds each call including the SDK's retries.
    pub fn new(sdk: &SdkConfig, api_timeout: Duration) -> AwsClients {
        let timeouts = TimeoutConfig::builder()
            .operation_timeout(api_timeout)
            .build();
        let sdk = sdk.to_builder().timeout_config(timeouts).build();
        AwsClients {
            sqs: aws_sdk_sqs::Client::new(&sdk),
            ecs: aws_sdk_ecs::Client::new(&sdk),
            autoscaling: aws_sdk_autoscaling::Client::new(&sdk),
            cloudwatch: aws_sdk_cloudwatch::Client::new(&sdk),
        }
    }
}

/// A failed AWS call, named by its API operation so logs and the `api_errors` metric say
/// which permission, resource or endpoint is at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{call} failed: {message}")]
pub struct ApiError {
    /// The API operation, e.g. `DescribeServices`.
    pub call: &'static str,
    /// What went wrong, with the SDK's full error chain.
    pub message: String,
}

impl ApiError {
    /// Wraps an SDK error with its full source chain (the SDK's `Display` alone says little
    /// more than "service error").
    pub fn from_sdk(call: &'static str, err: impl std::error::Error) -> ApiError {
        ApiError {
            call,
            message: aws_sdk_sqs::error::DisplayErrorContext(err).to_string(),
        }
    }

    /// A response that arrived but does not say what the controller needs.
    pub fn unexpected(call: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            call,
            message: message.into(),
        }
    }
}
