//! What the `geo` path costs next to the built-in report, on the same real files: the
//! built-in analysis (report encoded as JSON, as the worker writes it) against the example
//! hull worker's analysis (`worker/examples/hull_worker/figures.rs`: every feature handed over
//! as a `geo` geometry by `for_each_feature`, its convex hull, the hull's geodesic area and
//! the centroid, one GeoJSON row each, the FeatureCollection encoded as JSON), and the bare
//! hand-over (features built and dropped), on 1 and 2 threads.
//!
//! `make bench-geo` runs it and prints the table for `docs/benchmarks.md`
//! (`cargo bench -p geobatch-analysis --features geo --bench georust [FILTER]` alone). The
//! files come from `$GEOBATCH_REAL_DATA` or `shared/data/real` beside the checkout; a
//! missing file fails the run rather than shrinking it.

use std::hint::black_box;
use std::path::PathBuf;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use geobatch_analysis::georust::{Feature, for_each_feature};
use geobatch_analysis::{AnalysisOptions, analyze_reader};

#[path = "../../examples/hull_worker/figures.rs"]
#[allow(dead_code)] // the bench uses the figures, not every accessor
mod figures;

/// The real files compared: polygons with many vertices (the hull's work grows with them)
/// and many small features.
const FILES: [&str; 2] = [
    "ne_50m_countries.geojson",
    "osm_countries_land_10km.geojson",
];

fn real_file(name: &str) -> Vec<u8> {
    let dir = std::env::var_os("GEOBATCH_REAL_DATA").map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data/real"),
        PathBuf::from,
    );
    let path = dir.join(name);
    std::fs::read(&path).unwrap_or_else(|err| {
        panic!(
            "{}: {err} (set GEOBATCH_REAL_DATA to the real-data folder)",
            path.display()
        )
    })
}

fn built_in(bytes: &[u8], options: &AnalysisOptions) -> usize {
    let report = analyze_reader(bytes, options).expect("the file is valid");
    serde_json::to_vec(&report).expect("encodes").len()
}

fn hull_worker(bytes: &[u8], options: &AnalysisOptions) -> usize {
    let mut rows = Vec::new();
    let analysis = |feature: Feature| figures::figures(feature).into_geojson();
    for_each_feature(bytes, options, &analysis, |row| rows.push(row)).expect("the file is valid");
    let collection = geojson::FeatureCollection::new(rows);
    serde_json::to_vec(&collection).expect("encodes").len()
}

fn features_only(bytes: &[u8], options: &AnalysisOptions) -> usize {
    let mut count = 0;
    for_each_feature(bytes, options, &|f: Feature| f.index, |_| count += 1)
        .expect("the file is valid");
    count
}

/// One way through a file; returns a size, so the work cannot be optimised away.
type Run = fn(&[u8], &AnalysisOptions) -> usize;

fn geo_path(c: &mut Criterion) {
    let mut group = c.benchmark_group("geo_path");
    group.sample_size(10);
    group.warm_up_time(Duration::from_millis(500));
    group.measurement_time(Duration::from_secs(3));
    for name in FILES {
        let bytes = real_file(name);
        let file = name.trim_end_matches(".geojson");
        group.throughput(Throughput::Bytes(bytes.len() as u64));
        for threads in [1, 2] {
            let options = AnalysisOptions {
                threads,
                ..AnalysisOptions::default()
            };
            let runs: [(&str, Run); 3] = [
                ("built_in_report", built_in),
                ("hull_worker", hull_worker),
                ("features_only", features_only),
            ];
            for (path, run) in runs {
                group.bench_with_input(
                    BenchmarkId::new(format!("{file}/{path}"), format!("{threads}t")),
                    &bytes,
                    |b, bytes| b.iter(|| run(black_box(bytes.as_slice()), &options)),
                );
            }
        }
    }
    group.finish();
}

criterion_group!(benches, geo_path);
criterion_main!(benches);
