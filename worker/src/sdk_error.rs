//! What an AWS SDK error means for a message: gone for good, or worth another try.
//!
//! Only "the object does not exist" is permanent; throttling, 5xx, network failures and even
//! access denials are retried, because they are usually fixed by waiting or by an operator,
//! and a message that keeps failing still ends in the DLQ through the redrive policy instead
//! of being dropped.

use aws_sdk_s3::error::SdkError;

/// Whether an HTTP status from S3 means the object (or its bucket) is not there.
pub fn is_not_found_status(status: Option<u16>) -> bool {
    status == Some(404)
}

/// The HTTP status of a failed call, when the service answered at all.
pub fn status_of<E, R>(err: &SdkError<E, R>) -> Option<u16>
where
    R: HasStatus,
{
    err.raw_response().map(HasStatus::status_code)
}

/// Responses that carry an HTTP status.
pub trait HasStatus {
    /// The numeric HTTP status.
    fn status_code(&self) -> u16;
}

impl HasStatus for aws_sdk_s3::config::http::HttpResponse {
    fn status_code(&self) -> u16 {
        self.status().as_u16()
    }
}

/// An error with all its causes on one line, because the SDK's top-level message alone
/// ("service error", "dispatch failure") does not say what happened.
pub fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("outer")]
    struct Outer(#[source] Inner);

    #[derive(Debug, thiserror::Error)]
    #[error("inner cause")]
    struct Inner;

    #[test]
    fn the_chain_names_every_cause_once() {
        assert_eq!(error_chain(&Outer(Inner)), "outer: inner cause");
    }

    #[test]
    fn only_404_means_not_found() {
        assert!(is_not_found_status(Some(404)));
        for status in [None, Some(403), Some(500), Some(503), Some(429)] {
            assert!(!is_not_found_status(status), "{status:?}");
        }
    }
}
