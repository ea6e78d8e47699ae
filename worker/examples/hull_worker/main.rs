//! `hull_worker`: a geobatch worker whose analysis is your own. Here: per feature, the
//! convex hull (geodesic area, vertex count) and the centroid, computed with `geo`
//! (`figures.rs`, `hull.rs`); the outcome's `result` is a GeoJSON FeatureCollection of the centroids with
//! the hull figures as properties.
//!
//! It takes every flag of `geobatch-worker run` (same environment variables, same service,
//! same guarantees), plus `--hull-max-features`:
//!
//! ```sh
//! cargo build --release -p geobatch-worker --example hull_worker
//! target/release/examples/hull_worker --queue-url "$QUEUE_URL" \
//!   --output s3://RESULTS_BUCKET/hulls/ --allowed-buckets UPLOADS_BUCKET
//! ```

mod figures;
mod hull;

use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;
use geobatch_worker::config::{Processor as Configured, RunArgs};
use geobatch_worker::service;

/// A geobatch worker computing each feature's convex hull and centroid with `geo`.
#[derive(Debug, Parser)]
#[command(name = "hull_worker", version, about, long_about = None)]
struct Cli {
    #[command(flatten)]
    run: RunArgs,

    /// Most features a file may have; a larger file gets an error outcome of kind
    /// too_many_features (the result holds one row per feature, so this bounds its memory).
    #[arg(long, env = "GEOBATCH_HULL_MAX_FEATURES", default_value_t = hull::DEFAULT_MAX_FEATURES)]
    hull_max_features: u64,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let max_features = cli.hull_max_features;
    service::main_with(cli.run, |config| match &config.processor {
        Configured::Analysis(options) => Ok(Arc::new(hull::Hulls {
            options: options.clone(),
            max_features,
        })),
        Configured::Exec { .. } => {
            Err("hull_worker runs its own analysis: --exec is not for it".to_owned())
        }
    })
}
