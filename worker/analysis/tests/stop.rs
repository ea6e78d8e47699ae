//! Issue 12, classes 3 and 4: an analysis can be ended from outside (the worker's shutdown
//! cancels it) and ends by itself at its time limit, in both cases with its own error kind
//! at the next batch or feature, not at the end of the input.

use std::io::{self, Read};
use std::time::Duration;

use geobatch_analysis::{AnalysisOptions, ErrorKind, Stop, analyze_reader_until};

/// A long FeatureCollection, generated as it is read: `features` small polygons.
struct Features {
    remaining: u64,
    pending: Vec<u8>,
    /// Bytes handed out so far.
    read: u64,
    /// Called once, after this many bytes have been read.
    at: u64,
    on_reaching: Option<Box<dyn FnOnce() + Send>>,
}

impl Features {
    fn new(features: u64, at: u64, on_reaching: impl FnOnce() + Send + 'static) -> Features {
        Features {
            remaining: features,
            pending: br#"{"type": "FeatureCollection", "features": ["#.to_vec(),
            read: 0,
            at,
            on_reaching: Some(Box::new(on_reaching)),
        }
    }
}

impl Read for Features {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.read >= self.at
            && let Some(hook) = self.on_reaching.take()
        {
            hook();
        }
        while self.pending.len() < buf.len() && self.remaining > 0 {
            self.remaining -= 1;
            let separator = if self.remaining == 0 { "]}" } else { "," };
            self.pending.extend_from_slice(
                format!(
                    r#"{{"type": "Feature", "properties": {{"n": {}}}, "geometry": {{"type": "Polygon", "coordinates": [[[0, 0], [1, 0], [1, 1], [0, 1], [0, 0]]]}}}}{separator}"#,
                    self.remaining
                )
                .as_bytes(),
            );
        }
        let n = buf.len().min(self.pending.len());
        buf[..n].copy_from_slice(&self.pending[..n]);
        self.pending.drain(..n);
        self.read += n as u64;
        Ok(n)
    }
}

/// A million features: far more than is read before the stop takes effect.
const FEATURES: u64 = 1_000_000;

#[test]
fn a_cancelled_analysis_ends_with_cancelled() {
    let stop = Stop::new();
    let canceller = stop.clone();
    let input = Features::new(FEATURES, 1 << 20, move || canceller.cancel());
    let options = AnalysisOptions {
        time_limit: None,
        ..AnalysisOptions::default()
    };

    let err = analyze_reader_until(input, &options, &stop).expect_err("cancelled");

    assert_eq!(err.kind, ErrorKind::Cancelled, "{err}");
}

#[test]
fn an_analysis_past_its_time_limit_ends_with_time_limit() {
    // The input stalls for well over the limit after its first megabyte, as a slow
    // (hostile) file would take that long to analyse.
    let input = Features::new(FEATURES, 1 << 20, || {
        std::thread::sleep(Duration::from_millis(500));
    });
    let options = AnalysisOptions {
        time_limit: Some(Duration::from_millis(50)),
        ..AnalysisOptions::default()
    };

    let err = analyze_reader_until(input, &options, &Stop::new()).expect_err("time limit");

    assert_eq!(err.kind, ErrorKind::TimeLimit, "{err}");
    assert!(err.message.contains("0.05 s"), "{}", err.message);
}

#[test]
fn a_run_that_finishes_in_time_is_not_affected_by_its_limit() {
    let input = Features::new(100, u64::MAX, || {});
    let options = AnalysisOptions {
        time_limit: Some(Duration::from_secs(600)),
        ..AnalysisOptions::default()
    };

    let report = analyze_reader_until(input, &options, &Stop::new()).expect("report");

    assert_eq!(report.features, 100);
}
