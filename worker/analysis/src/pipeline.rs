//! Runs the splitter on the calling thread and the feature analysis on worker threads.
//!
//! Batches go to the workers through a bounded queue; results come back tagged with their
//! sequence number and are merged strictly in input order, so the report does not depend on
//! which thread finished first. At most a fixed number of batches (and bytes) are in flight,
//! which bounds memory whatever the input size.

use std::collections::BTreeMap;
use std::io::Read;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender};
use std::sync::{Arc, Mutex};

use super::AnalysisOptions;
use super::error::{AnalysisError, ErrorKind};
use super::feature::{self, Shape};
use super::geodesic;
use super::report::{BatchSummary, InvalidSample, Merger, Report};
use super::splitter::{Batch, Limits, Splitter};
use super::stop::Stop;
use super::validity::{self, Validity};

type Result<T> = std::result::Result<T, AnalysisError>;

/// Bytes of batch data allowed in flight per worker thread (beyond one oversized feature).
const IN_FLIGHT_BYTES_PER_THREAD: usize = 4 << 20;

/// The built-in analysis: every batch to a [`BatchSummary`], merged into one [`Report`].
pub(crate) fn run<R: Read + Send>(
    input: R,
    options: &AnalysisOptions,
    stop: &Stop,
) -> Result<Report> {
    let mut merger = Merger::new(options.max_invalid_samples, options.max_property_names);
    let stopped = Stopped::new(stop, options);
    let bytes = run_batches(
        input,
        options,
        stop,
        &|batch| analyze_batch(batch, options, stopped),
        &mut |summary| merger.merge(summary),
    )?;
    Ok(merger.finish(bytes))
}

/// Splits `input` into batches, runs `work` on each on the analysis threads, and hands the
/// results to `merge` on the calling thread strictly in input order. Returns the bytes read.
/// A raised `stop` (or the options' time limit) ends the run at the next batch.
pub(crate) fn run_batches<R, T>(
    input: R,
    options: &AnalysisOptions,
    stop: &Stop,
    work: &(dyn Fn(&Batch) -> Result<T> + Sync),
    merge: &mut dyn FnMut(T),
) -> Result<u64>
where
    R: Read + Send,
    T: Send + Default,
{
    let threads = options.threads.max(1);
    let window = threads * 4;
    let byte_budget = threads * IN_FLIGHT_BYTES_PER_THREAD;
    let (work_tx, work_rx) = mpsc::sync_channel::<Batch>(window);
    let work_rx = Arc::new(Mutex::new(work_rx));
    let (result_tx, result_rx) = mpsc::channel::<(u64, usize, Result<T>)>();
    let cancelled = AtomicBool::new(false);
    // Nested GeometryCollections recurse (parse, measure, check, drop): size the stacks for
    // the deepest nesting allowed, with room for unoptimised builds.
    let max_nesting_depth = options.max_nesting_depth.min(super::MAX_NESTING_DEPTH);
    let stack_bytes = (8 << 20) + max_nesting_depth * (16 << 10);

    let stopped = Stopped::new(stop, options);

    std::thread::scope(|scope| {
        // The time limit: a thread that raises `stop` unless the run ends first (dropping
        // `_finished` at the end of this closure wakes it).
        let (_finished, finished_rx) = mpsc::channel::<()>();
        if let Some(limit) = options.time_limit {
            let timer = std::thread::Builder::new()
                .name("analysis-time-limit".into())
                .spawn_scoped(scope, move || {
                    if finished_rx.recv_timeout(limit) == Err(RecvTimeoutError::Timeout) {
                        stop.time_up();
                    }
                });
            if let Err(err) = timer {
                return Err(AnalysisError::new(
                    ErrorKind::Io,
                    format!("cannot start the time-limit thread: {err}"),
                    None,
                ));
            }
        }
        for index in 0..threads {
            let work_rx = Arc::clone(&work_rx);
            let result_tx = result_tx.clone();
            let cancelled = &cancelled;
            let spawned = std::thread::Builder::new()
                .name(format!("analysis-{index}"))
                .stack_size(stack_bytes)
                .spawn_scoped(scope, move || {
                    worker(&work_rx, &result_tx, cancelled, stopped, work)
                });
            if let Err(err) = spawned {
                return Err(AnalysisError::new(
                    ErrorKind::Io,
                    format!("cannot start an analysis thread: {err}"),
                    None,
                ));
            }
        }
        drop(result_tx);
        let mut coordinator = Coordinator {
            work_tx: Some(work_tx),
            results: result_rx,
            pending: BTreeMap::new(),
            next_seq: 0,
            in_flight: 0,
            in_flight_bytes: 0,
            window,
            byte_budget,
            merge,
            stopped,
        };
        let limits = Limits {
            max_feature_bytes: options.max_feature_bytes,
            max_nesting_depth,
        };
        let mut splitter = Splitter::new(input, limits);
        let split = splitter.run(&mut |batch| coordinator.dispatch(batch));
        // Earlier features come first: a worker's error on them outranks the splitter's.
        let drained = coordinator.drain();
        cancelled.store(true, Ordering::Relaxed);
        drained?;
        split?;
        Ok(splitter.offset())
    })
}

/// The caller's stop flag with what its time-limit error says.
#[derive(Clone, Copy)]
struct Stopped<'a> {
    stop: &'a Stop,
    time_limit_secs: f64,
}

impl<'a> Stopped<'a> {
    fn new(stop: &'a Stop, options: &AnalysisOptions) -> Stopped<'a> {
        Stopped {
            stop,
            time_limit_secs: options.time_limit.map_or(0.0, |limit| limit.as_secs_f64()),
        }
    }

    fn check(&self) -> Result<()> {
        self.stop.check(self.time_limit_secs)
    }
}

fn worker<T: Default>(
    queue: &Mutex<Receiver<Batch>>,
    results: &mpsc::Sender<(u64, usize, Result<T>)>,
    cancelled: &AtomicBool,
    stopped: Stopped<'_>,
    work: &(dyn Fn(&Batch) -> Result<T> + Sync),
) {
    loop {
        let next = match queue.lock() {
            Ok(receiver) => receiver.recv(),
            Err(_) => return,
        };
        let Ok(batch) = next else { return };
        let outcome = if cancelled.load(Ordering::Relaxed) {
            Ok(T::default())
        } else {
            stopped.check().and_then(|()| work(&batch))
        };
        if results
            .send((batch.seq, batch.data.len(), outcome))
            .is_err()
        {
            return;
        }
    }
}

struct Coordinator<'m, T> {
    work_tx: Option<SyncSender<Batch>>,
    results: Receiver<(u64, usize, Result<T>)>,
    /// Results that arrived ahead of an earlier batch.
    pending: BTreeMap<u64, Result<T>>,
    next_seq: u64,
    in_flight: usize,
    in_flight_bytes: usize,
    window: usize,
    byte_budget: usize,
    merge: &'m mut dyn FnMut(T),
    stopped: Stopped<'m>,
}

impl<T> Coordinator<'_, T> {
    fn dispatch(&mut self, batch: Batch) -> Result<()> {
        self.stopped.check()?;
        while self.in_flight > 0
            && (self.in_flight >= self.window
                || self.in_flight_bytes + batch.data.len() > self.byte_budget)
        {
            self.receive_one()?;
        }
        self.in_flight += 1;
        self.in_flight_bytes += batch.data.len();
        let sender = self.work_tx.as_ref().ok_or_else(stopped)?;
        sender.send(batch).map_err(|_| stopped())
    }

    /// Waits for one result and merges whatever is now in order.
    fn receive_one(&mut self) -> Result<()> {
        let (seq, bytes, outcome) = self.results.recv().map_err(|_| stopped())?;
        self.in_flight -= 1;
        self.in_flight_bytes -= bytes;
        self.pending.insert(seq, outcome);
        while let Some(outcome) = self.pending.remove(&self.next_seq) {
            self.next_seq += 1;
            (self.merge)(outcome?);
        }
        Ok(())
    }

    /// Closes the queue and merges every outstanding result.
    fn drain(&mut self) -> Result<()> {
        self.work_tx = None;
        while self.in_flight > 0 {
            self.receive_one()?;
        }
        Ok(())
    }
}

fn stopped() -> AnalysisError {
    AnalysisError::new(
        ErrorKind::Io,
        "the analysis threads stopped unexpectedly",
        None,
    )
}

/// Parses and analyses every feature of a batch.
fn analyze_batch(
    batch: &Batch,
    options: &AnalysisOptions,
    stopped: Stopped<'_>,
) -> Result<BatchSummary> {
    let mut summary = BatchSummary::default();
    let shape = batch.shape.unwrap_or(Shape::Feature);
    for (position, (range, offset)) in batch.items.iter().enumerate() {
        stopped.check()?;
        let index = batch.first_feature + position as u64;
        let parsed = feature::parse(
            &batch.data[range.clone()],
            *offset,
            shape,
            options.max_property_names,
        )?;
        summary.features += 1;
        summary.untracked_properties += parsed.untracked_properties;
        for (name, value_type) in &parsed.properties {
            summary.add_property(index, name, *value_type, options.max_property_names);
        }
        let Some(geometry) = parsed.geometry else {
            summary.null_geometries += 1;
            continue;
        };
        summary.add_geometry_type(geometry.kind);
        summary.vertices += geometry.vertex_count();
        add_bbox(&mut summary, &geometry);
        summary
            .measures
            .push(geodesic::measure(&geometry, options.threads.max(1) - 1));
        let validity = validity::check(&geometry, stopped.stop);
        // A check cut short by a stop request is no verdict on the geometry.
        stopped.check()?;
        match validity {
            Validity::Valid => {}
            Validity::Unchecked => summary.unchecked_geometries += 1,
            Validity::Invalid(found) => {
                summary.invalid_geometries += 1;
                if summary.samples.len() < options.max_invalid_samples {
                    summary.samples.push(InvalidSample {
                        feature: index,
                        id: parsed.id.clone(),
                        reason: found.reason.to_owned(),
                        location: found.location,
                    });
                }
            }
        }
    }
    Ok(summary)
}

fn add_bbox(summary: &mut BatchSummary, geometry: &super::geometry::Geometry) {
    summary.extend_bbox(&geometry.points);
    for member in &geometry.members {
        add_bbox(summary, member);
    }
}
