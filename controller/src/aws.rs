//! The AWS clients the controller uses and the one error type their failures become.
//!
//! Clients come from the standard SDK configuration (`AWS_ENDPOINT_URL`, region, instance
//! role), with an operation timeout on top so a hung endpoint costs one poll, not the loop.

use std::time::Duration;

use aws_config::SdkConfig;
use aws_config::timeout::TimeoutConfig;
use aws_sdk_sqs::config::http::HttpResponse;
use aws_sdk_sqs::error::{ProvideErrorMetadata, SdkError};

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
/// which permission, resource or endpoint is at fault, and sorted into a [`ApiErrorKind`]
/// so the error policy decides on what happened rather than on which call it was.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{call} failed ({kind}): {message}")]
pub struct ApiError {
    /// The API operation, e.g. `DescribeServices`.
    pub call: &'static str,
    /// What kind of failure it was.
    pub kind: ApiErrorKind,
    /// What went wrong, with the SDK's full error chain.
    pub message: String,
}

/// What kind of failure an AWS call had: the error policy backs off on the transient kinds
/// and alerts can tell an operator's problem (denied, invalid, not found) from AWS's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ApiErrorKind {
    /// AWS asked the caller to slow down (`Throttling`, HTTP 429, ...).
    Throttled,
    /// The call or the SDK's wait for it ran out of time.
    Timeout,
    /// The endpoint could not be reached or answered with a server error (5xx).
    Unavailable,
    /// The credentials or the role's policy do not allow the call.
    Denied,
    /// The request was refused as it stands (a value above the group's MaxSize, a bad
    /// parameter): the same call fails again until the plan or the resource changes.
    Invalid,
    /// The named queue, cluster, service or group does not exist.
    NotFound,
    /// An answer arrived but does not say what the controller needs, or the SDK could not
    /// read it.
    Unexpected,
}

impl ApiErrorKind {
    /// Whether waiting longer before the next try helps: AWS throttles, times out or is
    /// down. The other kinds need the plan, the resource or the permissions to change, so
    /// backing off would only slow the calls that still work.
    pub fn is_transient(self) -> bool {
        matches!(
            self,
            ApiErrorKind::Throttled | ApiErrorKind::Timeout | ApiErrorKind::Unavailable
        )
    }

    /// The label in logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            ApiErrorKind::Throttled => "throttled",
            ApiErrorKind::Timeout => "timeout",
            ApiErrorKind::Unavailable => "unavailable",
            ApiErrorKind::Denied => "denied",
            ApiErrorKind::Invalid => "invalid",
            ApiErrorKind::NotFound => "not_found",
            ApiErrorKind::Unexpected => "unexpected",
        }
    }

    /// The kind of a service's answer, from its error code and HTTP status. The code wins:
    /// the services answer throttling and denial with 400 as often as with 429 or 403.
    pub fn of_response(code: Option<&str>, status: Option<u16>) -> ApiErrorKind {
        const THROTTLED: &[&str] = &[
            "Throttling",
            "ThrottlingException",
            "ThrottledException",
            "RequestThrottled",
            "RequestThrottledException",
            "RequestLimitExceeded",
            "TooManyRequestsException",
            "SlowDown",
            "ResourceContention",
            "ScalingActivityInProgress",
        ];
        const DENIED: &[&str] = &[
            "AccessDenied",
            "AccessDeniedException",
            "UnauthorizedOperation",
            "UnrecognizedClientException",
            "InvalidClientTokenId",
            "ExpiredToken",
            "ExpiredTokenException",
            "SignatureDoesNotMatch",
            "MissingAuthenticationToken",
            "AuthFailure",
        ];
        const NOT_FOUND: &[&str] = &[
            "ClusterNotFoundException",
            "ServiceNotFoundException",
            "ServiceNotActiveException",
            "AWS.SimpleQueueService.NonExistentQueue",
            "QueueDoesNotExist",
            "ResourceNotFoundException",
        ];
        match code {
            Some(code) if THROTTLED.contains(&code) => return ApiErrorKind::Throttled,
            Some(code) if DENIED.contains(&code) => return ApiErrorKind::Denied,
            Some(code) if NOT_FOUND.contains(&code) => return ApiErrorKind::NotFound,
            _ => {}
        }
        match status {
            Some(429) => ApiErrorKind::Throttled,
            Some(401 | 403) => ApiErrorKind::Denied,
            Some(404) => ApiErrorKind::NotFound,
            Some(400..=499) => ApiErrorKind::Invalid,
            Some(500..=599) => ApiErrorKind::Unavailable,
            _ => ApiErrorKind::Unexpected,
        }
    }

    /// The kind of an SDK failure.
    pub fn of_sdk<E: ProvideErrorMetadata>(err: &SdkError<E, HttpResponse>) -> ApiErrorKind {
        match err {
            SdkError::TimeoutError(_) => ApiErrorKind::Timeout,
            SdkError::DispatchFailure(failure) if failure.is_timeout() => ApiErrorKind::Timeout,
            SdkError::DispatchFailure(_) => ApiErrorKind::Unavailable,
            SdkError::ConstructionFailure(_) => ApiErrorKind::Invalid,
            SdkError::ServiceError(service) => ApiErrorKind::of_response(
                service.err().code(),
                Some(service.raw().status().as_u16()),
            ),
            _ => ApiErrorKind::of_response(None, err.raw_response().map(|r| r.status().as_u16())),
        }
    }
}

impl std::fmt::Display for ApiErrorKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl ApiError {
    /// Wraps an SDK error with its kind and full source chain (the SDK's `Display` alone
    /// says little more than "service error").
    pub fn from_sdk<E>(call: &'static str, err: SdkError<E, HttpResponse>) -> ApiError
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
    {
        ApiError {
            call,
            kind: ApiErrorKind::of_sdk(&err),
            message: aws_sdk_sqs::error::DisplayErrorContext(err).to_string(),
        }
    }

    /// A response that arrived but does not say what the controller needs.
    pub fn unexpected(call: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            call,
            kind: ApiErrorKind::Unexpected,
            message: message.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_sqs::error::ConnectorError;
    use aws_sdk_sqs::operation::get_queue_attributes::GetQueueAttributesError;

    type Sdk = SdkError<GetQueueAttributesError, HttpResponse>;

    #[test]
    fn the_error_code_decides_before_the_status() {
        let cases = [
            ("ThrottlingException", 400, ApiErrorKind::Throttled),
            ("Throttling", 400, ApiErrorKind::Throttled),
            ("RequestThrottled", 403, ApiErrorKind::Throttled),
            ("AccessDeniedException", 400, ApiErrorKind::Denied),
            ("ExpiredToken", 400, ApiErrorKind::Denied),
            ("ClusterNotFoundException", 400, ApiErrorKind::NotFound),
            (
                "AWS.SimpleQueueService.NonExistentQueue",
                400,
                ApiErrorKind::NotFound,
            ),
            ("ValidationError", 400, ApiErrorKind::Invalid),
            ("InvalidParameterException", 400, ApiErrorKind::Invalid),
            ("ServerException", 500, ApiErrorKind::Unavailable),
        ];
        for (code, status, kind) in cases {
            assert_eq!(
                ApiErrorKind::of_response(Some(code), Some(status)),
                kind,
                "{code} {status}"
            );
        }
    }

    #[test]
    fn without_a_known_code_the_status_decides() {
        let cases = [
            (Some(429), ApiErrorKind::Throttled),
            (Some(403), ApiErrorKind::Denied),
            (Some(404), ApiErrorKind::NotFound),
            (Some(409), ApiErrorKind::Invalid),
            (Some(503), ApiErrorKind::Unavailable),
            (Some(302), ApiErrorKind::Unexpected),
            (None, ApiErrorKind::Unexpected),
        ];
        for (status, kind) in cases {
            assert_eq!(ApiErrorKind::of_response(None, status), kind, "{status:?}");
        }
    }

    #[test]
    fn sdk_timeouts_and_connection_failures_are_transient() {
        let timeout: Sdk = SdkError::timeout_error("operation timeout");
        assert_eq!(ApiErrorKind::of_sdk(&timeout), ApiErrorKind::Timeout);
        let connect: Sdk = SdkError::dispatch_failure(ConnectorError::io("refused".into()));
        assert_eq!(ApiErrorKind::of_sdk(&connect), ApiErrorKind::Unavailable);
        let slow: Sdk = SdkError::dispatch_failure(ConnectorError::timeout("slow".into()));
        assert_eq!(ApiErrorKind::of_sdk(&slow), ApiErrorKind::Timeout);
        assert!(ApiErrorKind::of_sdk(&slow).is_transient());
    }
}
