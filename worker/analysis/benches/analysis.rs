//! Criterion benchmarks of the analysis crate: the whole pipeline on in-memory inputs, and
//! the geodesic kernel on its own. Sized to run in about a minute and to build without the
//! worker's dependencies: `cargo bench -p geobatch-analysis [FILTER]`. With
//! `--features geo`, also what handing every feature to a `geo` analysis costs next to the
//! built-in report (`georust` group).
//!
//! Inputs are generated here (deterministic star-shaped polygons like
//! `deploy/bench/gen_polygons.py`, small enough to sit in memory) and, when present, the real
//! `ne_50m_countries.geojson` from the shared data (`$GEOBATCH_REAL_DATA` or
//! `shared/data/real` beside the checkout).

use std::fmt::Write as _;
use std::hint::black_box;
use std::path::PathBuf;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use geobatch_analysis::{AnalysisOptions, analyze_reader, geodesic};

/// A small deterministic generator (SplitMix64), so the input does not depend on a crate.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> f64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        ((z ^ (z >> 31)) >> 11) as f64 / (1u64 << 53) as f64
    }

    fn uniform(&mut self, low: f64, high: f64) -> f64 {
        low + (high - low) * self.next()
    }
}

/// One star-shaped polygon ring of `n` positions (plus the closing one) around a random centre.
fn star(rng: &mut Rng, n: usize) -> Vec<[f64; 2]> {
    let lon = rng.uniform(-179.0, 179.0);
    let lat = rng.uniform(-80.0, 80.0);
    let radius = rng.uniform(0.005, 0.1);
    let mut ring: Vec<[f64; 2]> = (0..n)
        .map(|i| {
            let angle = std::f64::consts::TAU * i as f64 / n as f64;
            let r = radius * rng.uniform(0.6, 1.0);
            [lon + r * angle.cos(), lat + r * angle.sin()]
        })
        .collect();
    ring.push(ring[0]);
    ring
}

/// A FeatureCollection of about `bytes` bytes of 50-vertex polygons with a few properties.
fn synthetic(bytes: usize) -> Vec<u8> {
    let mut rng = Rng(20_261_202);
    let mut text = String::from("{\"type\":\"FeatureCollection\",\"features\":[\n");
    let mut index = 0;
    while text.len() < bytes {
        if index > 0 {
            text.push(',');
        }
        let _ = write!(
            text,
            "{{\"type\":\"Feature\",\"properties\":{{\"id\":{index},\"name\":\"parcel {index}\",\
             \"value\":{:.2},\"surveyed\":true}},\"geometry\":{{\"type\":\"Polygon\",\
             \"coordinates\":[[",
            rng.uniform(0.0, 1e6)
        );
        for (i, [x, y]) in star(&mut rng, 50).iter().enumerate() {
            let sep = if i > 0 { "," } else { "" };
            let _ = write!(text, "{sep}[{x:.7},{y:.7}]");
        }
        text.push_str("]]}}\n");
        index += 1;
    }
    text.push_str("]}\n");
    text.into_bytes()
}

fn real_file(name: &str) -> Option<Vec<u8>> {
    let dir = std::env::var_os("GEOBATCH_REAL_DATA").map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data/real"),
        PathBuf::from,
    );
    std::fs::read(dir.join(name)).ok()
}

fn pipeline(c: &mut Criterion) {
    let mut inputs = vec![("synthetic_8mb", synthetic(8 << 20))];
    match real_file("ne_50m_countries.geojson") {
        Some(bytes) => inputs.push(("ne_50m_countries", bytes)),
        None => eprintln!("ne_50m_countries.geojson not found: benchmarking synthetic input only"),
    }
    let mut group = c.benchmark_group("analyze");
    group.sample_size(10);
    group.warm_up_time(Duration::from_millis(500));
    group.measurement_time(Duration::from_secs(4));
    for (name, bytes) in &inputs {
        group.throughput(Throughput::Bytes(bytes.len() as u64));
        for threads in [1, 2] {
            let options = AnalysisOptions {
                threads,
                ..AnalysisOptions::default()
            };
            group.bench_with_input(
                BenchmarkId::new(*name, format!("{threads}t")),
                bytes,
                |b, bytes| {
                    b.iter(|| analyze_reader(black_box(bytes.as_slice()), &options));
                },
            );
        }
    }
    group.finish();
}

fn kernel(c: &mut Criterion) {
    let mut rng = Rng(7);
    let rings: Vec<Vec<[f64; 2]>> = (0..200).map(|_| star(&mut rng, 50)).collect();
    let edges: usize = rings.iter().map(|ring| ring.len() - 1).sum();
    let mut group = c.benchmark_group("geodesic");
    group.sample_size(20);
    group.warm_up_time(Duration::from_millis(500));
    group.measurement_time(Duration::from_secs(3));
    group.throughput(Throughput::Elements(edges as u64));
    group.bench_function("ring_perimeter_area/200x50", |b| {
        b.iter(|| {
            rings
                .iter()
                .map(|ring| geodesic::ring_perimeter_area(black_box(ring)).1)
                .sum::<f64>()
        });
    });
    // The same rings through `geographiclib-rs`'s general PolygonArea, which the engine used
    // before its own kernel: the A/B comparison in one run.
    let wgs84 = geographiclib_rs::Geodesic::wgs84();
    group.bench_function("geographiclib_polygon_area/200x50", |b| {
        b.iter(|| {
            rings
                .iter()
                .map(|ring| {
                    let mut polygon = geographiclib_rs::PolygonArea::new(
                        &wgs84,
                        geographiclib_rs::Winding::CounterClockwise,
                    );
                    for &[lon, lat] in &black_box(ring)[..ring.len() - 1] {
                        polygon.add_point(lat, lon);
                    }
                    polygon.compute(true).1.abs()
                })
                .sum::<f64>()
        });
    });
    group.finish();
}

/// The georust edge on the synthetic input: features handed over and dropped (the cost of
/// building `geo` geometries and `geojson` properties), and a `geo` analysis (convex hull
/// and centroid per feature), next to the built-in report, all on one thread.
#[cfg(feature = "geo")]
fn georust(c: &mut Criterion) {
    use geo::{Centroid, ConvexHull};
    use geobatch_analysis::georust::{Feature, for_each_feature};

    let bytes = synthetic(8 << 20);
    let options = AnalysisOptions {
        threads: 1,
        ..AnalysisOptions::default()
    };
    let mut group = c.benchmark_group("georust");
    group.sample_size(10);
    group.warm_up_time(Duration::from_millis(500));
    group.measurement_time(Duration::from_secs(4));
    group.throughput(Throughput::Bytes(bytes.len() as u64));
    group.bench_function("built_in_report/1t", |b| {
        b.iter(|| analyze_reader(black_box(bytes.as_slice()), &options));
    });
    group.bench_function("features_only/1t", |b| {
        b.iter(|| {
            for_each_feature(
                black_box(bytes.as_slice()),
                &options,
                &|f: Feature| f.index,
                drop,
            )
        });
    });
    group.bench_function("hull_and_centroid/1t", |b| {
        let analysis = |f: Feature| {
            f.geometry
                .map(|g| (g.convex_hull().exterior().0.len(), g.centroid()))
        };
        b.iter(|| for_each_feature(black_box(bytes.as_slice()), &options, &analysis, drop));
    });
    group.finish();
}

#[cfg(feature = "geo")]
criterion_group!(benches, pipeline, kernel, georust);
#[cfg(not(feature = "geo"))]
criterion_group!(benches, pipeline, kernel);
criterion_main!(benches);
