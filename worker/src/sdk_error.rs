//! What an AWS error means for a source: gone for good, or worth another try.
//!
//! Classified by what S3 really answers. With the stack's IAM (GetObject on the input, plus
//! ListBucket on it, see `deploy/cloudformation/geobatch.yaml`), a missing object is a 404;
//! without ListBucket S3 says 403 for a missing object too, which is why the worker is given
//! it. An archived object (Glacier, Deep Archive) is `InvalidObjectState`; an object whose
//! KMS key the worker cannot use fails with a `KMS.*` code or an access denial naming
//! `kms:`. Throttling, 5xx, network failures and other access denials are retried: they are
//! usually fixed by waiting or by an operator, and a message that keeps failing still ends
//! in the DLQ through the redrive policy instead of being dropped.

/// What a failed GetObject means for the source.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GetErrorKind {
    /// The object, version or bucket does not exist (404): permanent.
    Missing,
    /// The object is archived and must be restored before it can be read: permanent.
    Archived,
    /// The object is encrypted with a KMS key the worker cannot use (disabled, deleted,
    /// or no kms:Decrypt): permanent until an operator fixes the key.
    KmsUnusable,
    /// The object no longer has the ETag the event named (412): a newer upload replaced it,
    /// and its own event brings the newer bytes.
    Changed,
    /// Anything else (throttling, 5xx, network, other access denials): retried.
    Transient,
}

/// Classifies a failed GetObject from its HTTP status, error code and message.
pub fn classify_get(status: Option<u16>, code: Option<&str>, message: &str) -> GetErrorKind {
    match (status, code) {
        (_, Some("NoSuchKey" | "NoSuchBucket" | "NoSuchVersion")) | (Some(404), _) => {
            GetErrorKind::Missing
        }
        (_, Some("InvalidObjectState")) => GetErrorKind::Archived,
        (_, Some(code)) if code.starts_with("KMS.") => GetErrorKind::KmsUnusable,
        (Some(403), Some("AccessDenied")) if message.contains("kms:") => GetErrorKind::KmsUnusable,
        (_, Some("PreconditionFailed")) | (Some(412), _) => GetErrorKind::Changed,
        _ => GetErrorKind::Transient,
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
    fn get_failures_are_classified_by_what_s3_answers() {
        use GetErrorKind::*;
        let table: [(Option<u16>, Option<&str>, &str, GetErrorKind); 12] = [
            (Some(404), Some("NoSuchKey"), "", Missing),
            (Some(404), None, "", Missing),
            (Some(404), Some("NoSuchBucket"), "", Missing),
            (Some(404), Some("NoSuchVersion"), "", Missing),
            (Some(403), Some("InvalidObjectState"), "archived", Archived),
            (Some(400), Some("KMS.DisabledException"), "", KmsUnusable),
            (
                Some(403),
                Some("AccessDenied"),
                "not authorized to perform: kms:Decrypt",
                KmsUnusable,
            ),
            (Some(412), Some("PreconditionFailed"), "", Changed),
            // Without ListBucket a missing object is a 403 too: indistinguishable, retried.
            (Some(403), Some("AccessDenied"), "Access Denied", Transient),
            (Some(503), Some("SlowDown"), "", Transient),
            (Some(500), None, "", Transient),
            (None, None, "dispatch failure", Transient),
        ];
        for (status, code, message, kind) in table {
            assert_eq!(
                classify_get(status, code, message),
                kind,
                "{status:?} {code:?}"
            );
        }
    }
}
