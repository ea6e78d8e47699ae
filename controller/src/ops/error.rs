//! What can stop a batch command, and the exit code each failure gives scripts.
//!
//! SDK errors are sorted by their error code into the few cases an operator acts on
//! differently: a resource that does not exist, credentials that are missing or refused,
//! and anything else AWS said (or an endpoint that did not answer).

use std::process::ExitCode;

use aws_sdk_sqs::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};

/// The exit codes of the batch commands, documented in docs/operations.md.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitStatus {
    /// 0: everything asked was done.
    Ok = 0,
    /// 1: the command ran, but some items failed (the output says which), or a local file
    /// could not be written.
    Partial = 1,
    /// 2: a wrong argument: a malformed URL, a bucket that is not allowed, a bad flag.
    Usage = 2,
    /// 3: a bucket, queue or pool that does not exist.
    NotFound = 3,
    /// 4: no credentials or region, or AWS refused them.
    Credentials = 4,
    /// 5: AWS answered with another error, or did not answer at all.
    Aws = 5,
}

impl From<ExitStatus> for ExitCode {
    fn from(status: ExitStatus) -> ExitCode {
        ExitCode::from(status as u8)
    }
}

/// Why a batch command stopped or did not do everything.
#[derive(Debug, thiserror::Error)]
pub enum OpsError {
    /// A command-line value that cannot work.
    #[error("{0}")]
    Usage(String),
    /// A bucket, queue or pool that does not exist.
    #[error("{what} {name} does not exist ({call}); {hint}")]
    NotFound {
        /// `bucket`, `queue`, `pool`.
        what: &'static str,
        /// Its name or URL.
        name: String,
        /// The call that said so.
        call: &'static str,
        /// What to check.
        hint: &'static str,
    },
    /// No credentials or region, or credentials AWS refused.
    #[error("{0}")]
    Credentials(String),
    /// Any other AWS failure, with the call and the SDK's whole error chain.
    #[error("{call} failed: {message}")]
    Aws {
        /// The API operation.
        call: &'static str,
        /// What went wrong.
        message: String,
    },
    /// The command ran through but some items failed.
    #[error("{failed} of {total} {what} failed (see above)")]
    Partial {
        /// How many failed.
        failed: u64,
        /// How many were tried.
        total: u64,
        /// What the items are.
        what: &'static str,
    },
    /// A local output file could not be written.
    #[error("cannot write {path}: {cause}")]
    Write {
        /// The file.
        path: String,
        /// What the OS said.
        cause: std::io::Error,
    },
}

impl OpsError {
    /// The exit code this failure gives.
    pub fn exit_status(&self) -> ExitStatus {
        match self {
            OpsError::Usage(_) => ExitStatus::Usage,
            OpsError::NotFound { .. } => ExitStatus::NotFound,
            OpsError::Credentials(_) => ExitStatus::Credentials,
            OpsError::Aws { .. } => ExitStatus::Aws,
            OpsError::Partial { .. } | OpsError::Write { .. } => ExitStatus::Partial,
        }
    }

    /// A bucket that is missing, named for the error.
    pub fn no_bucket(call: &'static str, bucket: &str) -> OpsError {
        OpsError::NotFound {
            what: "bucket",
            name: bucket.to_owned(),
            call,
            hint: "check the s3:// URL and the region (AWS_REGION)",
        }
    }

    /// A queue that is missing, named for the error.
    pub fn no_queue(call: &'static str, queue_url: &str) -> OpsError {
        OpsError::NotFound {
            what: "queue",
            name: queue_url.to_owned(),
            call,
            hint: "check the queue URL (`aws sqs get-queue-url --queue-name NAME`) and the region",
        }
    }
}

/// The resource an SDK call was about, so a "does not exist" answer names it.
#[derive(Debug, Clone, Copy)]
pub enum Subject<'a> {
    /// An S3 bucket.
    Bucket(&'a str),
    /// An SQS queue URL.
    Queue(&'a str),
    /// Something else: a missing resource is reported as a plain AWS error.
    Other,
}

/// Error codes that mean the credentials are missing, wrong or not allowed.
const CREDENTIAL_CODES: &[&str] = &[
    "AccessDenied",
    "AccessDeniedException",
    "InvalidAccessKeyId",
    "InvalidClientTokenId",
    "SignatureDoesNotMatch",
    "ExpiredToken",
    "ExpiredTokenException",
    "UnrecognizedClientException",
    "AuthFailure",
];

/// Error codes that mean the bucket or queue is not there.
const MISSING_CODES: &[&str] = &[
    "NoSuchBucket",
    "AWS.SimpleQueueService.NonExistentQueue",
    "QueueDoesNotExist",
];

/// Sorts an SDK error into an [`OpsError`].
pub fn classify<E, R>(call: &'static str, subject: Subject<'_>, err: SdkError<E, R>) -> OpsError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    let code = err.code().map(str::to_owned);
    let message = DisplayErrorContext(&err).to_string();
    classify_code(call, subject, code.as_deref(), message)
}

/// The classification itself, from the error code and the printed chain.
pub fn classify_code(
    call: &'static str,
    subject: Subject<'_>,
    code: Option<&str>,
    message: String,
) -> OpsError {
    match (code, subject) {
        (Some(code), Subject::Bucket(bucket)) if MISSING_CODES.contains(&code) => {
            OpsError::no_bucket(call, bucket)
        }
        (Some(code), Subject::Queue(url)) if MISSING_CODES.contains(&code) => {
            OpsError::no_queue(call, url)
        }
        (Some(code), _) if CREDENTIAL_CODES.contains(&code) => OpsError::Credentials(format!(
            "{call} was refused ({code}): the credentials are not valid for this account or \
             lack the permission; check AWS_PROFILE or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY \
             and the IAM policy ({message})"
        )),
        _ => OpsError::Aws { call, message },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_resources_are_named_and_exit_3() {
        let err = classify_code(
            "ListObjectsV2",
            Subject::Bucket("uploads"),
            Some("NoSuchBucket"),
            "x".into(),
        );
        assert_eq!(err.exit_status(), ExitStatus::NotFound);
        assert!(
            err.to_string().contains("bucket uploads does not exist"),
            "{err}"
        );
        let err = classify_code(
            "GetQueueAttributes",
            Subject::Queue("http://q/1/work"),
            Some("AWS.SimpleQueueService.NonExistentQueue"),
            "x".into(),
        );
        assert_eq!(err.exit_status(), ExitStatus::NotFound);
        assert!(err.to_string().contains("queue http://q/1/work"), "{err}");
    }

    #[test]
    fn refused_credentials_exit_4_and_other_errors_5() {
        let err = classify_code(
            "SendMessageBatch",
            Subject::Other,
            Some("InvalidClientTokenId"),
            "x".into(),
        );
        assert_eq!(err.exit_status(), ExitStatus::Credentials);
        assert!(err.to_string().contains("AWS_PROFILE"), "{err}");
        let err = classify_code(
            "ListObjectsV2",
            Subject::Other,
            Some("NoSuchBucket"),
            "x".into(),
        );
        assert_eq!(err.exit_status(), ExitStatus::Aws);
        let err = classify_code(
            "ListObjectsV2",
            Subject::Bucket("b"),
            None,
            "dispatch failure".into(),
        );
        assert_eq!(err.exit_status(), ExitStatus::Aws);
        assert!(err.to_string().contains("dispatch failure"));
    }
}
