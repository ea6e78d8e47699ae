//! The permanent error kinds: the stable names written in outcomes, logs and metrics.
//!
//! One enum, one [`ErrorKind::as_str`], so a kind cannot be spelt two ways in two places;
//! `docs/worker.md` lists them all.

use serde::{Serialize, Serializer};

/// Why a source (or a message) gets an error outcome instead of a result.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The analysis refused the content; every analysis kind but `io` keeps its own name.
    Analysis(geobatch_analysis::ErrorKind),
    /// A processor of your own ([`crate::processor::Processor`]) refused the content, under
    /// the snake_case name it gives (say `too_many_features`); keep it stable, as the
    /// built-in names are.
    Custom(&'static str),
    /// The event, S3's response or the bytes received exceed `--max-object-bytes`.
    ObjectTooLarge,
    /// The object, the version the event names, or its bucket does not exist.
    ObjectMissing,
    /// The object is archived (S3 Glacier, Deep Archive): restore it, and the restore's
    /// `ObjectRestore:Completed` event processes it.
    ObjectArchived,
    /// The object is encrypted with a KMS key the worker cannot use.
    KmsKeyUnusable,
    /// The record names a bucket outside `--allowed-buckets` (or no valid bucket at all).
    BucketNotAllowed,
    /// The message is not an S3 event, or a record of it is unusable.
    InvalidEvent,
    /// The source key is so long that its outcome key would exceed S3's 1024 bytes.
    KeyTooLong,
    /// The `--exec` command exited non-zero or was killed by a signal.
    ExecFailed,
    /// The `--exec` command ran past `--exec-timeout`.
    ExecTimeout,
    /// The `--exec` command wrote more than `--exec-max-output`.
    ExecOutputTooLarge,
    /// The `--exec` command could not be started: no `sh`, or the shell found the program
    /// missing or not executable (exit status 127 or 126).
    ExecNotStarted,
    /// The `--exec` command exited but its standard output was not read to its end (held
    /// open by a process that left its group, or a read error).
    ExecOutputIncomplete,
}

impl ErrorKind {
    /// The stable snake_case name.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Analysis(kind) => kind.as_str(),
            ErrorKind::Custom(name) => name,
            ErrorKind::ObjectTooLarge => "object_too_large",
            ErrorKind::ObjectMissing => "object_missing",
            ErrorKind::ObjectArchived => "object_archived",
            ErrorKind::KmsKeyUnusable => "kms_key_unusable",
            ErrorKind::BucketNotAllowed => "bucket_not_allowed",
            ErrorKind::InvalidEvent => "invalid_event",
            ErrorKind::KeyTooLong => "key_too_long",
            ErrorKind::ExecFailed => "exec_failed",
            ErrorKind::ExecTimeout => "exec_timeout",
            ErrorKind::ExecOutputTooLarge => "exec_output_too_large",
            ErrorKind::ExecNotStarted => "exec_not_started",
            ErrorKind::ExecOutputIncomplete => "exec_output_incomplete",
        }
    }
}

impl std::fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for ErrorKind {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_serialise_as_their_names_and_analysis_kinds_keep_theirs() {
        let table = [
            (
                ErrorKind::Analysis(geobatch_analysis::ErrorKind::InvalidJson),
                "invalid_json",
            ),
            (
                ErrorKind::Analysis(geobatch_analysis::ErrorKind::NotGeojson),
                "not_geojson",
            ),
            (ErrorKind::BucketNotAllowed, "bucket_not_allowed"),
            (ErrorKind::KeyTooLong, "key_too_long"),
            (ErrorKind::Custom("too_many_features"), "too_many_features"),
        ];
        for (kind, name) in table {
            assert_eq!(kind.as_str(), name);
            assert_eq!(
                serde_json::to_value(kind).expect("serialises"),
                serde_json::Value::from(name)
            );
        }
    }
}
