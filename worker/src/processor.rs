//! What the worker runs on each downloaded object: the [`Processor`] trait, with the built-in
//! analysis ([`BuiltIn`]) and `--exec` ([`Exec`]) as its two implementations.
//!
//! Everything around a processor (the receive loop, visibility heartbeats, the download
//! within `--max-object-bytes`, outcome keys, idempotent writes, retries, shutdown) is the
//! same whichever runs, so a program of your own gets the service's guarantees by
//! implementing this one method and building a worker binary with it
//! ([`crate::service::main_with`]; `worker/examples/hull_worker/` is a complete one).
//!
//! The object arrives as a local file ([`Input::file`]), as the built-in analysis and
//! `--exec` always had it: the download streams to disk, so memory stays bounded whatever
//! the object's size, and a processor may read it as often, or as much in parallel, as it
//! likes. The processor owns the file: it is deleted when the [`Input`] is dropped, so a
//! processor that moves the work to a blocking thread moves the input with it, and the file
//! lives exactly as long as it is read.
//!
//! ```
//! use geobatch_worker::processor::{Input, ProcessError, Processing, Processor, run_blocking};
//! use geobatch_worker::results::Outcome;
//!
//! /// Counts the bytes of every object.
//! struct ByteCount;
//!
//! impl Processor for ByteCount {
//!     fn process(&self, input: Input) -> Processing<'_> {
//!         Box::pin(async move {
//!             // CPU or blocking I/O: off the async threads, cancelled at shutdown.
//!             let bytes = run_blocking(move |_stop| std::fs::read(&input.file.path))
//!                 .await?
//!                 .map_err(|err| ProcessError::Transient(format!("cannot read the download: {err}")))?;
//!             Ok(Outcome::Result(serde_json::json!({ "bytes": bytes.len() })))
//!         })
//!     }
//! }
//! ```

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Instant;

use geobatch_analysis::{self as analysis, AnalysisOptions, Stop};

use crate::config;
use crate::event::ObjectRef;
use crate::exec::{self, ExecFailure, ExecOptions};
use crate::fetch::Download;
use crate::kind::ErrorKind;
use crate::results::{ErrorDetail, ObjectSource, Outcome};

/// One downloaded object, handed to a [`Processor`].
#[derive(Debug)]
pub struct Input {
    /// The object's bytes in a local temporary file (`file.path`), with the size, ETag and
    /// version actually received. Deleted when dropped.
    pub file: Download,
    /// The source as it was read: bucket, key, version, ETag, size. This is what the
    /// outcome document records.
    pub source: ObjectSource,
}

/// Why a processor produced no result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProcessError {
    /// The object cannot be processed, and trying again would fail the same way: the error
    /// is written as the source's outcome and the message is deleted. Its [`ErrorKind`] is
    /// the outcome's `error.kind`.
    Permanent(ErrorDetail),
    /// Another try may succeed (a resource missing for a while, the work cut short): nothing
    /// is written and the message comes back after the retry backoff (and, if it keeps
    /// failing, reaches the DLQ). The worker prefixes the source, `s3://BUCKET/KEY: `.
    Transient(String),
}

impl fmt::Display for ProcessError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProcessError::Permanent(detail) => write!(f, "{}: {}", detail.kind, detail.message),
            ProcessError::Transient(message) => f.write_str(message),
        }
    }
}

impl std::error::Error for ProcessError {}

/// The future a [`Processor`] returns: boxed, so that processors can be chosen at run time
/// and shared as `Arc<dyn Processor>` by all message tasks.
pub type Processing<'a> = Pin<Box<dyn Future<Output = Result<Outcome, ProcessError>> + Send + 'a>>;

/// Turns one downloaded object into its outcome.
///
/// One instance serves every message at once (up to `--concurrency` calls in flight), hence
/// `&self` and `Sync`. The future may be dropped before it completes (the shutdown grace is
/// over and the message is handed back): whatever it started must then stop or be harmless,
/// which [`run_blocking`] arranges for work on a blocking thread.
pub trait Processor: Send + Sync {
    /// Processes `input` to the result written under the source's outcome key, or the error.
    fn process(&self, input: Input) -> Processing<'_>;
}

/// The processor `config` names: the built-in analysis, or `--exec`.
pub fn from_config(config: &config::Processor) -> Arc<dyn Processor> {
    match config {
        config::Processor::Analysis(options) => Arc::new(BuiltIn::new(options.clone())),
        config::Processor::Exec(options) => Arc::new(Exec(options.clone())),
    }
}

/// Runs CPU-bound or blocking `work` on a blocking thread, so it cannot stall the tasks that
/// keep other messages' visibility extended.
///
/// A blocking thread cannot be abandoned, so `work` gets a [`Stop`] that is cancelled when
/// the returned future is dropped (the message was handed back at the end of the shutdown
/// grace): work that checks it, as the built-in analysis does between features, ends soon
/// after. A panic in `work` is a transient error.
pub async fn run_blocking<T, W>(work: W) -> Result<T, ProcessError>
where
    T: Send + 'static,
    W: FnOnce(&Stop) -> T + Send + 'static,
{
    let stop = Stop::new();
    let _cancel_if_dropped = stop.cancel_on_drop();
    tokio::task::spawn_blocking(move || work(&stop))
        .await
        .map_err(|err| ProcessError::Transient(format!("the processing did not finish: {err}")))
}

/// The built-in streaming analysis: the report of `docs/analysis.md`, written as the
/// outcome's `analysis`.
#[derive(Debug, Clone)]
pub struct BuiltIn {
    options: AnalysisOptions,
}

impl BuiltIn {
    /// The analysis with these limits and threads.
    pub fn new(options: AnalysisOptions) -> BuiltIn {
        BuiltIn { options }
    }
}

impl Processor for BuiltIn {
    fn process(&self, input: Input) -> Processing<'_> {
        Box::pin(analyse(input, self.options.clone()))
    }
}

async fn analyse(input: Input, options: AnalysisOptions) -> Result<Outcome, ProcessError> {
    let started = Instant::now();
    let (bucket, key) = (input.source.bucket.clone(), input.source.key.clone());
    tracing::debug!(%bucket, %key, "analysis started");
    let analysed = run_blocking(move |stop| {
        let result = analysis::analyze_file_until(&input.file.path, &options, stop);
        // The file goes once it is read, on this thread, even if no one waits any more.
        drop(input);
        result
    })
    .await?;
    tracing::debug!(
        %bucket,
        %key,
        seconds = started.elapsed().as_secs_f64(),
        "analysis finished"
    );
    match analysed {
        Ok(report) => serde_json::to_value(&report)
            .map(Outcome::Analysis)
            .map_err(|err| {
                ProcessError::Transient(format!("the analysis report cannot be encoded: {err}"))
            }),
        Err(err) => Err(analysis_error(err)),
    }
}

/// What an error of the analysis library means for the message, for the built-in analysis
/// and for processors that stream with the library (`georust::for_each_feature_until`):
/// `io` (reading the download failed) and `cancelled` (the worker gave the message up) are
/// transient; every other kind is a property of the bytes, reported under its own name
/// with the offset where it was found.
pub fn analysis_error(err: analysis::AnalysisError) -> ProcessError {
    match err.kind {
        analysis::ErrorKind::Io | analysis::ErrorKind::Cancelled => {
            ProcessError::Transient(format!("the analysis did not finish: {}", err.message))
        }
        kind => ProcessError::Permanent(ErrorDetail {
            offset: err.offset,
            ..ErrorDetail::new(ErrorKind::Analysis(kind), err.message)
        }),
    }
}

/// `--exec`: a shell command run on the downloaded file ([`crate::exec`]), its standard
/// output written as the outcome's `exec_output`.
#[derive(Debug, Clone)]
pub struct Exec(pub ExecOptions);

impl Processor for Exec {
    fn process(&self, input: Input) -> Processing<'_> {
        Box::pin(async move {
            let object = ObjectRef {
                bucket: input.source.bucket.clone(),
                key: input.source.key.clone(),
                size: input.source.size_bytes,
                etag: input.source.etag.clone(),
                version_id: input.source.version_id.clone(),
            };
            match exec::run(&self.0, &input.file.path, &object).await {
                Ok(output) => Ok(Outcome::ExecOutput(output)),
                Err(ExecFailure::Permanent(detail)) => Err(ProcessError::Permanent(detail)),
                Err(ExecFailure::Transient(message)) => Err(ProcessError::Transient(message)),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    async fn input(body: &str) -> Input {
        let file = tempfile::NamedTempFile::new().expect("temp file");
        std::fs::write(file.path(), body).expect("write");
        let scratch =
            crate::scratch::ScratchBudget::new(1 << 20, Default::default()).expect("valid budget");
        Input {
            file: Download {
                path: crate::fetch::ScratchPath::new(
                    file.into_temp_path(),
                    scratch
                        .reserve(body.len() as u64, "s3://in/a b.geojson")
                        .await,
                ),
                size_bytes: body.len() as u64,
                etag: None,
                version_id: None,
            },
            source: ObjectSource {
                bucket: "in".into(),
                key: "a b.geojson".into(),
                version_id: None,
                etag: None,
                size_bytes: Some(body.len() as u64),
            },
        }
    }

    #[tokio::test]
    async fn the_built_in_analysis_reports_and_sorts_its_errors_into_permanent_and_transient() {
        let built_in = BuiltIn::new(AnalysisOptions::default());
        let report = built_in
            .process(input(r#"{"type": "Point", "coordinates": [1, 2]}"#).await)
            .await;
        let Ok(Outcome::Analysis(report)) = report else {
            panic!("not an analysis: {report:?}");
        };
        assert_eq!(report["features"], 1);

        let broken = built_in
            .process(input(r#"{"type": "Point", "coord"#).await)
            .await;
        let Err(ProcessError::Permanent(detail)) = broken else {
            panic!("not permanent: {broken:?}");
        };
        assert_eq!(detail.kind.as_str(), "truncated");
        assert!(detail.offset.is_some(), "{detail:?}");

        let gone = input("{}").await;
        std::fs::remove_file(&gone.file.path).expect("remove the download");
        let unreadable = built_in.process(gone).await;
        assert!(
            matches!(&unreadable, Err(ProcessError::Transient(message)) if message.starts_with("the analysis did not finish")),
            "{unreadable:?}"
        );
    }

    #[tokio::test]
    async fn exec_is_today_s_command_with_its_output_and_failures() {
        let cat = from_config(&config::Processor::Exec(ExecOptions::new(
            "cat",
            Duration::from_secs(10),
        )));
        let output = cat.process(input("[1, 2]").await).await;
        assert_eq!(output, Ok(Outcome::ExecOutput(serde_json::json!([1, 2]))));
        let key = Exec(ExecOptions::new(
            "printf %s \"$GEOBATCH_SOURCE_KEY\"; exit 4; true",
            Duration::from_secs(10),
        ))
        .process(input("").await)
        .await;
        let Err(ProcessError::Permanent(detail)) = key else {
            panic!("not permanent: {key:?}");
        };
        assert_eq!(
            (detail.kind, detail.exit_code),
            (ErrorKind::ExecFailed, Some(4))
        );
    }

    #[tokio::test]
    async fn blocking_work_is_stopped_when_it_is_abandoned_and_a_panic_is_transient() {
        let (started_tx, started) = std::sync::mpsc::channel();
        let (stopped_tx, stopped) = std::sync::mpsc::channel();
        let work = run_blocking(move |stop| {
            let _sent = started_tx.send(());
            while !stop.requested() {
                std::thread::sleep(Duration::from_millis(5));
            }
            let _sent = stopped_tx.send(());
        });
        let abandoned = tokio::time::timeout(Duration::from_millis(100), work).await;
        assert!(abandoned.is_err(), "the work never ends by itself");
        started
            .recv_timeout(Duration::from_secs(10))
            .expect("it ran");
        stopped
            .recv_timeout(Duration::from_secs(10))
            .expect("dropping the future stopped it");

        let panicked = run_blocking(|_stop| -> u8 { panic!("boom") }).await;
        assert!(
            matches!(&panicked, Err(ProcessError::Transient(message)) if message.contains("did not finish")),
            "{panicked:?}"
        );
    }
}
