//! The hull worker's processor: the figures of `figures.rs` on every feature of the file as
//! the analysis library streams it (`georust::for_each_feature_until`), written as a GeoJSON
//! FeatureCollection with `geojson`.
//!
//! With `figures.rs`, this is the whole of what a user writes to plug an analysis of their
//! own into the worker; `main.rs` only parses the flags. `worker/tests/hull_worker.rs`
//! includes both files.

use std::path::Path;

use geobatch_analysis::georust::{Feature, for_each_feature_until};
use geobatch_analysis::{AnalysisOptions, Stop};
use geobatch_worker::kind::ErrorKind;
use geobatch_worker::processor::{
    Input, ProcessError, Processing, Processor, analysis_error, run_blocking,
};
use geobatch_worker::results::{ErrorDetail, Outcome};
use geojson::FeatureCollection;

use crate::figures::figures;

/// Default of `--hull-max-features`: the result holds one GeoJSON Feature per input feature
/// (about 200 bytes of JSON, a few times that in memory), so the cap bounds the memory the
/// result takes, as `--max-feature-bytes` bounds what one feature takes.
pub const DEFAULT_MAX_FEATURES: u64 = 100_000;

/// The hulls and centroids of every feature of the GeoJSON file at `path`, in file order.
///
/// Bad input fails exactly as in the built-in analysis (same kinds and offsets); a file of
/// more than `max_features` features is refused with kind `too_many_features` as soon as
/// the count passes it, so the result never grows past the cap.
pub fn hulls(
    path: &Path,
    options: &AnalysisOptions,
    max_features: u64,
    stop: &Stop,
) -> Result<FeatureCollection, ProcessError> {
    let file = std::fs::File::open(path).map_err(|err| {
        ProcessError::Transient(format!(
            "cannot open the download {}: {err}",
            path.display()
        ))
    })?;
    let mut features = Vec::new();
    let mut too_many = false;
    let analysis = |feature: Feature| figures(feature).into_geojson();
    let streamed = for_each_feature_until(file, options, stop, &analysis, |feature| {
        if features.len() as u64 == max_features {
            too_many = true;
            stop.cancel();
        } else if !too_many {
            features.push(feature);
        }
    });
    if too_many {
        return Err(ProcessError::Permanent(ErrorDetail::new(
            ErrorKind::Custom("too_many_features"),
            format!(
                "the file has more than {max_features} features (--hull-max-features): the result would hold one row for each"
            ),
        )));
    }
    streamed.map_err(analysis_error)?;
    Ok(FeatureCollection::new(features))
}

/// The hull worker's [`Processor`]: [`hulls`] on a blocking thread, the FeatureCollection
/// written as the outcome's `result`.
#[derive(Debug, Clone)]
pub struct Hulls {
    /// Limits and threads per file: the worker's (`--max-feature-bytes`,
    /// `--max-analysis-time`, `--concurrency`), so the file is read as the built-in
    /// analysis would read it.
    pub options: AnalysisOptions,
    /// Most features a file may have.
    pub max_features: u64,
}

impl Processor for Hulls {
    fn process(&self, input: Input) -> Processing<'_> {
        let (options, max_features) = (self.options.clone(), self.max_features);
        Box::pin(async move {
            let collection = run_blocking(move |stop| {
                let collection = hulls(&input.file.path, &options, max_features, stop);
                // The download goes once it is read, even if nobody waits any more.
                drop(input);
                collection
            })
            .await??;
            serde_json::to_value(&collection)
                .map(Outcome::Result)
                .map_err(|err| ProcessError::Transient(format!("cannot encode the result: {err}")))
        })
    }
}
