//! Processing one object: check it, download it, hand it to the [`Processor`] (the built-in
//! analysis, `--exec`, or a program of your own), write the outcome.
//!
//! Every failure is sorted here into one of three kinds, because that decides the message's
//! fate: a permanent input error gets an error outcome and the message is deleted; a record
//! the worker may not read (bucket not allowed) is refused and reported under the message,
//! never under the source's name; a transient error leaves the message to be retried (and,
//! if it keeps failing, to the DLQ).

use std::fmt;
use std::sync::Arc;

use crate::config::WorkerConfig;
use crate::event::ObjectRef;
use crate::fetch::{self, FetchError, FetchLimits};
use crate::kind::ErrorKind;
use crate::objects::ObjectStore;
use crate::processor::{self, Input, ProcessError, Processor};
use crate::results::{ErrorDetail, ObjectSource, Outcome, ResultStore};
use crate::scratch::ScratchBudget;
use crate::sdk_error::GetErrorKind;
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
#[derive(Clone)]
pub struct ObjectProcessor<S> {
    objects: S,
    store: ResultStore<S>,
    config: Arc<WorkerConfig>,
    processor: Arc<dyn Processor>,
    /// Shared by every clone, so all the task's slots draw on one budget.
    scratch: ScratchBudget,
}

impl<S: fmt::Debug> fmt::Debug for ObjectProcessor<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ObjectProcessor")
            .field("objects", &self.objects)
            .field("store", &self.store)
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl<S: ObjectStore> ObjectProcessor<S> {
    /// A processor reading sources through `objects` into `scratch` and writing through
    /// `store`, running what `config.processor` names (the built-in analysis or `--exec`).
    pub fn new(
        objects: S,
        store: ResultStore<S>,
        config: Arc<WorkerConfig>,
        scratch: ScratchBudget,
    ) -> ObjectProcessor<S> {
        let processor = processor::from_config(&config.processor);
        ObjectProcessor::with_processor(objects, store, config, scratch, processor)
    }

    /// [`ObjectProcessor::new`] running `processor` on every object instead.
    pub fn with_processor(
        objects: S,
        store: ResultStore<S>,
        config: Arc<WorkerConfig>,
        scratch: ScratchBudget,
        processor: Arc<dyn Processor>,
    ) -> ObjectProcessor<S> {
        ObjectProcessor {
            objects,
            store,
            config,
            processor,
            scratch,
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
        let download = match fetch::download(
            &self.objects,
            object,
            limits,
            &config.work_dir,
            &self.scratch,
        )
        .await
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
        let input = Input {
            file: download,
            source: source.clone(),
        };
        match self.processor.process(input).await {
            Ok(outcome) => Ok(Ok(outcome)),
            Err(ProcessError::Permanent(detail)) => Ok(Err(detail)),
            Err(ProcessError::Transient(message)) => {
                Err(transient(format!("s3://{}/{}: {message}", object.bucket, object.key)).into())
            }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::ObjectRef;
    use crate::fakes::{self, Call, Fakes};
    use crate::processor::Processing;
    use prometheus_client::metrics::gauge::Gauge;

    /// A processor of one's own that answers what it is told, after checking it was handed
    /// the downloaded bytes and the source as read.
    struct Answer(Result<serde_json::Value, ProcessError>);

    impl Processor for Answer {
        fn process(&self, input: Input) -> Processing<'_> {
            Box::pin(async move {
                let bytes = std::fs::read(&input.file.path).map_err(|err| {
                    ProcessError::Transient(format!("the download is unreadable: {err}"))
                })?;
                assert_eq!(bytes, b"{\"type\": \"Point\"}");
                assert_eq!(input.source.etag.as_deref(), Some("etag-1"));
                assert_eq!(input.source.size_bytes, Some(bytes.len() as u64));
                self.0.clone().map(Outcome::Result)
            })
        }
    }

    async fn process_with(
        answer: Result<serde_json::Value, ProcessError>,
    ) -> (Result<Processed, TransientError>, Vec<Call>) {
        let fakes = Fakes::default();
        fakes
            .world()
            .objects
            .insert("k".to_owned(), Ok(b"{\"type\": \"Point\"}".to_vec()));
        let config = Arc::new(fakes::config(&[]));
        let store = ResultStore::new(fakes.clone(), config.output.clone(), config.call_timeout);
        let scratch =
            ScratchBudget::new(config.scratch_budget, Gauge::default()).expect("valid budget");
        let processor = ObjectProcessor::with_processor(
            fakes.clone(),
            store,
            config,
            scratch,
            Arc::new(Answer(answer)),
        );
        let object = ObjectRef {
            bucket: "in1".into(),
            key: "k".into(),
            size: None,
            etag: None,
            version_id: None,
        };
        (processor.process(&object).await, fakes.log())
    }

    #[tokio::test]
    async fn a_processor_of_ones_own_has_its_result_written_as_the_outcome() {
        let (processed, log) = process_with(Ok(serde_json::json!({"hulls": 1}))).await;
        assert_eq!(
            processed.map_err(|err| err.message),
            Ok(Processed::Succeeded {
                outcome_key: "results/in1/k.json".into(),
                size_bytes: 17
            })
        );
        let Some(Call::Put(key, document)) = log.last() else {
            panic!("no outcome written: {log:?}");
        };
        assert_eq!(key, "results/in1/k.json");
        assert_eq!(document["status"], "ok");
        assert_eq!(document["result"], serde_json::json!({"hulls": 1}));
        assert!(document.get("analysis").is_none(), "{document}");
    }

    #[tokio::test]
    async fn its_permanent_errors_are_reported_and_its_transient_ones_name_the_source() {
        let detail = ErrorDetail::new(ErrorKind::ExecFailed, "no hull");
        let (processed, log) = process_with(Err(ProcessError::Permanent(detail))).await;
        assert_eq!(
            processed.map_err(|err| err.message),
            Ok(Processed::Reported {
                outcome_key: "results/in1/k.json".into(),
                kind: ErrorKind::ExecFailed
            })
        );
        let Some(Call::Put(_, document)) = log.last() else {
            panic!("no outcome written: {log:?}");
        };
        assert_eq!(document["error"]["message"], "no hull");

        let (processed, log) = process_with(Err(ProcessError::Transient("busy".into()))).await;
        assert_eq!(
            processed.map_err(|err| err.message),
            Err("s3://in1/k: busy".to_owned())
        );
        assert!(
            !log.iter().any(|call| matches!(call, Call::Put(..))),
            "a transient failure writes nothing: {log:?}"
        );
    }
}
