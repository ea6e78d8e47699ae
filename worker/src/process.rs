//! Processing one object: check it, download it, analyse it (or run `--exec`), write the
//! outcome.
//!
//! Every failure is sorted here into one of three kinds, because that decides the message's
//! fate: a permanent input error gets an error outcome and the message is deleted; a record
//! the worker may not read (bucket not allowed) is refused and reported under the message,
//! never under the source's name; a transient error leaves the message to be retried (and,
//! if it keeps failing, to the DLQ).

use std::sync::Arc;
use std::time::Instant;

use crate::config::{Processor, WorkerConfig};
use crate::event::ObjectRef;
use crate::exec::{self, ExecFailure};
use crate::fetch::{self, Download, FetchError, FetchLimits};
use crate::kind::ErrorKind;
use crate::objects::ObjectStore;
use crate::results::{ErrorDetail, ObjectSource, Outcome, ResultStore};
use crate::sdk_error::GetErrorKind;
use geobatch_analysis::{self as analysis, AnalysisOptions};
use geobatch_common::outcome::{OutcomeKey, is_bucket_name};

/// How processing an object ended, when it did not need a retry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Processed {
    /// The outcome, with status ok, was written.
    Succeeded {
        /// Key of the outcome.
        outcome_key: String,
        /// Bytes downloaded and analysed.
        size_bytes: u64,
    },
    /// The object cannot be processed; the outcome, with status error, was written.
    Reported {
        /// Key of the outcome.
        outcome_key: String,
        /// The error kind, for logs and metrics.
        kind: ErrorKind,
    },
    /// The record names a source the worker may not read; nothing was written for it (the
    /// caller reports it under the message).
    Refused {
        /// Why.
        kind: ErrorKind,
        /// Human-readable explanation.
        message: String,
    },
    /// The object changed since the event (its ETag is not the event's): the newer upload's
    /// own event brings the newer bytes, so nothing is written for this one.
    Superseded {
        /// What S3 said.
        message: String,
    },
    /// The object is one of the worker's own outputs and is left alone.
    Skipped {
        /// Why.
        reason: &'static str,
    },
}

/// A failure that another attempt may not repeat.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct TransientError {
    /// What went wrong, with the bucket and key.
    pub message: String,
}

fn transient(message: impl Into<String>) -> TransientError {
    TransientError {
        message: message.into(),
    }
}

/// Turns objects into outcomes; shared by all message tasks.
#[derive(Debug, Clone)]
pub struct ObjectProcessor<S> {
    objects: S,
    store: ResultStore<S>,
    config: Arc<WorkerConfig>,
}

impl<S: ObjectStore> ObjectProcessor<S> {
    /// A processor reading sources through `objects` and writing through `store`.
    pub fn new(objects: S, store: ResultStore<S>, config: Arc<WorkerConfig>) -> ObjectProcessor<S> {
        ObjectProcessor {
            objects,
            store,
            config,
        }
    }

    /// Processes `object` and writes its outcome.
    pub async fn process(&self, object: &ObjectRef) -> Result<Processed, TransientError> {
        let output = self.store.output();
        if output.is_own_output(&object.bucket, &object.key) {
            return Ok(Processed::Skipped {
                reason: "the object is one of the worker's own outputs",
            });
        }
        if !self.config.allowed_buckets.allows(&object.bucket) {
            let reason = if is_bucket_name(&object.bucket) {
                "it is not in --allowed-buckets"
            } else {
                "it is not a valid bucket name"
            };
            return Ok(Processed::Refused {
                kind: ErrorKind::BucketNotAllowed,
                message: format!("events for bucket {} are refused: {reason}", object.bucket),
            });
        }
        let outcome_key = match output.outcome_key(&object.bucket, &object.key) {
            Ok(key) => key,
            Err(invalid) => {
                return Ok(Processed::Refused {
                    kind: ErrorKind::BucketNotAllowed,
                    message: invalid.to_string(),
                });
            }
        };
        let mut source = ObjectSource {
            bucket: object.bucket.clone(),
            key: object.key.clone(),
            version_id: object.version_id.clone(),
            etag: object.etag.as_deref().map(fetch::unquote),
            size_bytes: object.size,
        };
        let outcome = match &outcome_key {
            OutcomeKey::Hashed(_) => Err(ErrorDetail::new(
                ErrorKind::KeyTooLong,
                format!(
                    "the key has {} bytes: its outcome key would pass S3's 1024-byte limit",
                    object.key.len()
                ),
            )),
            OutcomeKey::Named(_) => match self.produce(object, &mut source).await {
                Err(Interrupted::Superseded(message)) => {
                    return Ok(Processed::Superseded { message });
                }
                Err(Interrupted::Transient(error)) => return Err(error),
                Ok(outcome) => outcome,
            },
        };
        self.store
            .write_outcome(outcome_key.as_str(), &source, &outcome)
            .await
            .map_err(|err| transient(err.to_string()))?;
        let outcome_key = outcome_key.as_str().to_owned();
        Ok(match outcome {
            Ok(_) => Processed::Succeeded {
                outcome_key,
                size_bytes: source.size_bytes.unwrap_or(0),
            },
            Err(detail) => Processed::Reported {
                outcome_key,
                kind: detail.kind,
            },
        })
    }

    /// Produces the outcome, or the permanent error to report; updates `source` with what
    /// was actually downloaded.
    async fn produce(
        &self,
        object: &ObjectRef,
        source: &mut ObjectSource,
    ) -> Result<Result<Outcome, ErrorDetail>, Interrupted> {
        let config = &self.config;
        if let Some(size) = object.size.filter(|&size| size > config.max_object_bytes) {
            return Ok(Err(too_large(size, config.max_object_bytes)));
        }
        let limits = FetchLimits {
            max_object_bytes: config.max_object_bytes,
            call_timeout: config.call_timeout,
        };
        let download = match fetch::download(&self.objects, object, limits, &config.work_dir).await
        {
            Ok(download) => download,
            Err(FetchError::Refused { kind, message, .. }) => {
                let kind = match kind {
                    GetErrorKind::Missing => ErrorKind::ObjectMissing,
                    GetErrorKind::Archived => ErrorKind::ObjectArchived,
                    GetErrorKind::KmsUnusable => ErrorKind::KmsKeyUnusable,
                    GetErrorKind::Changed => return Err(Interrupted::Superseded(message)),
                    GetErrorKind::Transient => return Err(transient(message).into()),
                };
                return Ok(Err(ErrorDetail::new(kind, message)));
            }
            Err(err @ FetchError::TooLarge { .. }) => {
                return Ok(Err(ErrorDetail::new(
                    ErrorKind::ObjectTooLarge,
                    err.to_string(),
                )));
            }
            Err(err @ FetchError::Transient { .. }) => {
                return Err(transient(err.to_string()).into());
            }
        };
        source.size_bytes = Some(download.size_bytes);
        if download.etag.is_some() {
            source.etag.clone_from(&download.etag);
        }
        if download.version_id.is_some() {
            source.version_id.clone_from(&download.version_id);
        }
        match &config.processor {
            Processor::Analysis(options) => Ok(analyse(download, options.clone(), object).await?),
            Processor::Exec(options) => match exec::run(options, &download.path, object).await {
                Ok(output) => Ok(Ok(Outcome::ExecOutput(output))),
                Err(ExecFailure::Permanent(detail)) => Ok(Err(detail)),
                Err(ExecFailure::Transient(message)) => Err(transient(format!(
                    "s3://{}/{}: {message}",
                    object.bucket, object.key
                ))
                .into()),
            },
        }
    }
}

/// Why producing an outcome stopped without one.
enum Interrupted {
    /// Another try may succeed.
    Transient(TransientError),
    /// The object changed since the event; its newer upload has an event of its own.
    Superseded(String),
}

impl From<TransientError> for Interrupted {
    fn from(error: TransientError) -> Interrupted {
        Interrupted::Transient(error)
    }
}

fn too_large(size: u64, limit: u64) -> ErrorDetail {
    ErrorDetail::new(
        ErrorKind::ObjectTooLarge,
        format!("the object has {size} bytes, more than --max-object-bytes {limit}"),
    )
}

/// Runs the built-in analysis on a blocking thread: it is CPU-bound and must not stall the
/// tasks that keep other messages' visibility extended. A blocking thread cannot be
/// abandoned, so the analysis is cancelled when this future is dropped (its message was
/// released at the end of the shutdown grace): the thread then ends within a feature.
async fn analyse(
    download: Download,
    options: AnalysisOptions,
    object: &ObjectRef,
) -> Result<Result<Outcome, ErrorDetail>, TransientError> {
    let started = Instant::now();
    tracing::debug!(bucket = %object.bucket, key = %object.key, "analysis started");
    let stop = analysis::Stop::new();
    let _cancel_if_dropped = stop.cancel_on_drop();
    let analysed = tokio::task::spawn_blocking(move || {
        let result = analysis::analyze_file_until(&download.path, &options, &stop);
        drop(download);
        result
    })
    .await
    .map_err(|err| {
        transient(format!(
            "analysis of s3://{}/{} did not finish: {err}",
            object.bucket, object.key
        ))
    })?;
    tracing::debug!(
        bucket = %object.bucket,
        key = %object.key,
        seconds = started.elapsed().as_secs_f64(),
        "analysis finished"
    );
    match analysed {
        Ok(report) => serde_json::to_value(&report)
            .map(|report| Ok(Outcome::Analysis(report)))
            .map_err(|err| transient(format!("the analysis report cannot be encoded: {err}"))),
        Err(err) => match err.kind {
            analysis::ErrorKind::Io | analysis::ErrorKind::Cancelled => Err(transient(format!(
                "the analysis of s3://{}/{} did not finish: {}",
                object.bucket, object.key, err.message
            ))),
            kind => Ok(Err(ErrorDetail {
                offset: err.offset,
                ..ErrorDetail::new(ErrorKind::Analysis(kind), err.message)
            })),
        },
    }
}
