//! Workloads: when files are uploaded and how long each takes to analyse.
//!
//! A scenario is generated once per seed and then replayed identically through every
//! policy, so that all of them face exactly the same files.
//!
//! Built-in scenarios: `burst`, `trickle`, `diurnal`, `mixed`, `sparse`, `sustained` (see
//! [`BUILT_IN`]). A scenario
//! file is CSV (`upload_secs,size_mb[,processing_secs]` with a header line, `#` comments) or
//! TOML (`name`, optional `horizon_secs`, and `[[file]]` tables with the same keys). Without
//! `processing_secs` the time is derived from the size with the model's throughput and noise.

use std::path::Path;

use serde::Deserialize;

use super::model::{Millis, ModelParams, secs};
use super::rng::SimRng;

/// One uploaded file.
#[derive(Debug, Clone, PartialEq)]
pub struct FileUpload {
    /// When the upload completed (S3 emits its event after this).
    pub upload_ms: Millis,
    /// Object size; shown in reports and used for processing time when none is given.
    pub size_mb: f64,
    /// Analysis time of one attempt on one task.
    pub processing_ms: Millis,
}

/// A named workload.
#[derive(Debug, Clone, PartialEq)]
pub struct Scenario {
    /// Name used in summaries and file names.
    pub name: String,
    /// One line for the summary and plot title.
    pub description: String,
    /// The accounting window: every policy is billed at least until here, so that a policy
    /// that finishes early but keeps instances running pays for them.
    pub horizon_ms: Millis,
    /// Uploads in time order.
    pub files: Vec<FileUpload>,
}

/// Names and descriptions of the built-in scenarios.
pub const BUILT_IN: [(&str, &str); 6] = [
    (
        "burst",
        "1,000 files (median 300 MB) uploaded at once at minute 1",
    ),
    (
        "trickle",
        "Poisson arrivals, one file (median 100 MB) every ~2 minutes for 24 h",
    ),
    (
        "diurnal",
        "working-day pattern over 24 h: ~60 files/h 09-17, a lunch dip, ~3 files/h at night",
    ),
    (
        "mixed",
        "6 bursts over 8 h, each 40 small, 10 medium and 3 very large (~8 GB) files",
    ),
    (
        "sparse",
        "one file (median 100 MB) every 15-30 minutes (uniform) for 24 h",
    ),
    (
        "sustained",
        "Poisson arrivals at 85 % of the fleet ceiling's full-speed capacity for 4 h (median 200 MB)",
    ),
];

/// The share of the fleet ceiling's capacity the `sustained` scenario keeps busy.
pub const SUSTAINED_LOAD: f64 = 0.85;

/// Why a scenario could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    /// Neither a built-in name nor a readable file.
    #[error(
        "unknown scenario {0:?}: use one of burst, trickle, diurnal, mixed, sparse, sustained, or a .csv/.toml file"
    )]
    Unknown(String),
    /// The file could not be read.
    #[error("cannot read scenario file {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A CSV line or TOML entry is malformed.
    #[error("{path}:{line}: {why}")]
    Invalid {
        /// The file.
        path: String,
        /// 1-based line (CSV) or file entry (TOML).
        line: usize,
        /// What is wrong and what was expected.
        why: String,
    },
    /// The file parsed but holds no uploads.
    #[error("{0}: the scenario has no files")]
    Empty(String),
    /// More uploads than the simulator accepts in one scenario.
    #[error("{path}: more than {MAX_FILES} files; split the scenario")]
    TooLarge {
        /// The file.
        path: String,
    },
}

/// Most uploads in one scenario file: keeps memory and run time bounded (a million files
/// simulate in seconds).
pub const MAX_FILES: usize = 1_000_000;

/// Loads a built-in scenario by name or a scenario file by path.
pub fn load(name_or_path: &str, seed: u64, model: &ModelParams) -> Result<Scenario, ScenarioError> {
    if let Some(s) = built_in(name_or_path, seed, model) {
        return Ok(s);
    }
    let path = Path::new(name_or_path);
    let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
    if !(ext.eq_ignore_ascii_case("csv") || ext.eq_ignore_ascii_case("toml")) || !path.exists() {
        return Err(ScenarioError::Unknown(name_or_path.to_string()));
    }
    let text = std::fs::read_to_string(path).map_err(|source| ScenarioError::Read {
        path: name_or_path.to_string(),
        source,
    })?;
    let stem = path
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or("scenario")
        .to_string();
    let mut rng = SimRng::new(seed, STREAM_FILE_NOISE);
    if ext.eq_ignore_ascii_case("csv") {
        parse_csv(&text, name_or_path, &stem, model, &mut rng)
    } else {
        parse_toml(&text, name_or_path, &stem, model, &mut rng)
    }
}

const STREAM_WORKLOAD: u64 = 1;
const STREAM_FILE_NOISE: u64 = 2;

/// Generates a built-in scenario, or `None` for an unknown name.
pub fn built_in(name: &str, seed: u64, model: &ModelParams) -> Option<Scenario> {
    let mut rng = SimRng::new(seed, STREAM_WORKLOAD);
    let mut uploads: Vec<(f64, f64)> = Vec::new();
    let horizon_secs = match name {
        "burst" => {
            for _ in 0..1000 {
                uploads.push((60.0, rng.log_normal(300.0, 0.5)));
            }
            2.0 * 3600.0
        }
        "trickle" => {
            let mut t = rng.exponential(120.0);
            while t < 86_400.0 {
                uploads.push((t, rng.log_normal(100.0, 1.0)));
                t += rng.exponential(120.0);
            }
            86_400.0
        }
        "diurnal" => {
            // Non-homogeneous Poisson process by thinning against the peak rate.
            let peak_per_sec = 60.0 / 3600.0;
            let mut t = rng.exponential(1.0 / peak_per_sec);
            while t < 86_400.0 {
                if rng.unit() < diurnal_files_per_hour(t / 3600.0) / 60.0 {
                    uploads.push((t, rng.log_normal(150.0, 0.8)));
                }
                t += rng.exponential(1.0 / peak_per_sec);
            }
            86_400.0
        }
        "mixed" => {
            for burst in 0..6 {
                let start = 600.0 + burst as f64 * 80.0 * 60.0;
                let mut add = |count: usize, median_mb: f64, sigma: f64, rng: &mut SimRng| {
                    for _ in 0..count {
                        let at = start + 60.0 * rng.unit();
                        uploads.push((at, rng.log_normal(median_mb, sigma)));
                    }
                };
                add(40, 20.0, 0.5, &mut rng);
                add(10, 600.0, 0.3, &mut rng);
                add(3, 8000.0, 0.2, &mut rng);
            }
            8.0 * 3600.0
        }
        "sparse" => {
            let mut t = 15.0 * 60.0 * (1.0 + rng.unit());
            while t < 86_400.0 {
                uploads.push((t, rng.log_normal(100.0, 1.0)));
                t += 15.0 * 60.0 * (1.0 + rng.unit());
            }
            86_400.0
        }
        "sustained" => {
            // The rate that keeps SUSTAINED_LOAD of the ceiling's full-speed slots busy,
            // from the mean processing time of the size distribution below.
            let (median_mb, sigma) = (200.0, 0.5);
            let mean_mb = median_mb * (sigma * sigma / 2.0f64).exp();
            let noise = model.processing_noise_sigma;
            let mean_secs = model.processing_secs(mean_mb) * (noise * noise / 2.0).exp();
            let slots =
                f64::from(model.max_instances) * f64::from(model.full_speed_files_per_instance());
            let mean_gap = mean_secs / (SUSTAINED_LOAD * slots);
            let (start, end) = (600.0, 600.0 + 4.0 * 3600.0);
            let mut t = start + rng.exponential(mean_gap);
            while t < end {
                uploads.push((t, rng.log_normal(median_mb, sigma)));
                t += rng.exponential(mean_gap);
            }
            end + 3600.0
        }
        _ => return None,
    };
    let description = BUILT_IN
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, d)| d.to_string())
        .unwrap_or_default();
    let mut noise = SimRng::new(seed, STREAM_FILE_NOISE);
    let mut files: Vec<FileUpload> = uploads
        .into_iter()
        .map(|(at, size_mb)| FileUpload {
            upload_ms: secs(at),
            size_mb,
            processing_ms: noisy_processing_ms(model, size_mb, &mut noise),
        })
        .collect();
    files.sort_by_key(|f| f.upload_ms);
    Some(Scenario {
        name: name.to_string(),
        description,
        horizon_ms: secs(horizon_secs),
        files,
    })
}

/// Uploads per hour of a working day at `hour` (0–24): quiet night, ramp from 07:00,
/// busy 09–17 with a lunch dip, evening tail.
fn diurnal_files_per_hour(hour: f64) -> f64 {
    match hour {
        h if h < 7.0 => 3.0,
        h if h < 9.0 => 3.0 + (h - 7.0) / 2.0 * 57.0,
        h if (12.0..13.0).contains(&h) => 30.0,
        h if h < 17.0 => 60.0,
        h if h < 19.0 => 60.0 - (h - 17.0) / 2.0 * 55.0,
        _ => 5.0,
    }
}

fn noisy_processing_ms(model: &ModelParams, size_mb: f64, rng: &mut SimRng) -> Millis {
    let base = model.processing_secs(size_mb);
    let noise = if model.processing_noise_sigma > 0.0 {
        rng.log_normal(1.0, model.processing_noise_sigma)
    } else {
        1.0
    };
    secs(base * noise).max(1)
}

fn finish(
    name: &str,
    path: &str,
    horizon_secs: Option<f64>,
    mut files: Vec<FileUpload>,
) -> Result<Scenario, ScenarioError> {
    if files.is_empty() {
        return Err(ScenarioError::Empty(path.to_string()));
    }
    files.sort_by_key(|f| f.upload_ms);
    let last = files.last().map(|f| f.upload_ms).unwrap_or(0);
    let horizon_ms = horizon_secs.map(secs).unwrap_or(last + secs(3600.0));
    Ok(Scenario {
        name: name.to_string(),
        description: format!("{} files from {path}", files.len()),
        horizon_ms,
        files,
    })
}

fn file_upload(
    upload_secs: f64,
    size_mb: f64,
    processing_secs: Option<f64>,
    model: &ModelParams,
    rng: &mut SimRng,
) -> Result<FileUpload, String> {
    if !(upload_secs.is_finite() && upload_secs >= 0.0) {
        return Err(format!("upload_secs must be >= 0, got {upload_secs}"));
    }
    if !(size_mb.is_finite() && size_mb >= 0.0) {
        return Err(format!("size_mb must be >= 0, got {size_mb}"));
    }
    let processing_ms = match processing_secs {
        Some(p) if p.is_finite() && p > 0.0 => secs(p).max(1),
        Some(p) => return Err(format!("processing_secs must be > 0, got {p}")),
        None => noisy_processing_ms(model, size_mb, rng),
    };
    Ok(FileUpload {
        upload_ms: secs(upload_secs),
        size_mb,
        processing_ms,
    })
}

fn parse_csv(
    text: &str,
    path: &str,
    name: &str,
    model: &ModelParams,
    rng: &mut SimRng,
) -> Result<Scenario, ScenarioError> {
    let invalid = |line: usize, why: String| ScenarioError::Invalid {
        path: path.to_string(),
        line,
        why,
    };
    let mut files = Vec::new();
    let mut header_seen = false;
    for (index, raw) in text.lines().enumerate() {
        let line_no = index + 1;
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let cells: Vec<&str> = line.split(',').map(str::trim).collect();
        if !header_seen {
            header_seen = true;
            let expected = ["upload_secs", "size_mb", "processing_secs"];
            if cells.len() < 2
                || cells.len() > 3
                || cells.iter().zip(expected).any(|(c, e)| *c != e)
            {
                return Err(invalid(
                    line_no,
                    "the header must be `upload_secs,size_mb` or `upload_secs,size_mb,processing_secs`".into(),
                ));
            }
            continue;
        }
        let number = |i: usize, what: &str| -> Result<Option<f64>, ScenarioError> {
            match cells.get(i) {
                None | Some(&"") => Ok(None),
                Some(c) => c
                    .parse::<f64>()
                    .map(Some)
                    .map_err(|_| invalid(line_no, format!("{what} is not a number: {c:?}"))),
            }
        };
        let upload = number(0, "upload_secs")?
            .ok_or_else(|| invalid(line_no, "upload_secs is missing".into()))?;
        let size =
            number(1, "size_mb")?.ok_or_else(|| invalid(line_no, "size_mb is missing".into()))?;
        let processing = number(2, "processing_secs")?;
        if files.len() == MAX_FILES {
            return Err(ScenarioError::TooLarge {
                path: path.to_string(),
            });
        }
        files.push(
            file_upload(upload, size, processing, model, rng)
                .map_err(|why| invalid(line_no, why))?,
        );
    }
    finish(name, path, None, files)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ScenarioFile {
    name: Option<String>,
    horizon_secs: Option<f64>,
    #[serde(default)]
    file: Vec<FileEntry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileEntry {
    upload_secs: f64,
    size_mb: f64,
    processing_secs: Option<f64>,
}

fn parse_toml(
    text: &str,
    path: &str,
    stem: &str,
    model: &ModelParams,
    rng: &mut SimRng,
) -> Result<Scenario, ScenarioError> {
    let parsed: ScenarioFile = toml::from_str(text).map_err(|e| ScenarioError::Invalid {
        path: path.to_string(),
        line: 0,
        why: e.to_string(),
    })?;
    if parsed.file.len() > MAX_FILES {
        return Err(ScenarioError::TooLarge {
            path: path.to_string(),
        });
    }
    let mut files = Vec::with_capacity(parsed.file.len());
    for (i, entry) in parsed.file.iter().enumerate() {
        files.push(
            file_upload(
                entry.upload_secs,
                entry.size_mb,
                entry.processing_secs,
                model,
                rng,
            )
            .map_err(|why| ScenarioError::Invalid {
                path: path.to_string(),
                line: i + 1,
                why: format!("[[file]] number {}: {why}", i + 1),
            })?,
        );
    }
    if let Some(h) = parsed.horizon_secs
        && !(h.is_finite() && h > 0.0)
    {
        return Err(ScenarioError::Invalid {
            path: path.to_string(),
            line: 0,
            why: format!("horizon_secs must be > 0, got {h}"),
        });
    }
    let name = parsed.name.unwrap_or_else(|| stem.to_string());
    finish(&name, path, parsed.horizon_secs, files)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn built_ins_have_the_documented_shape() {
        let m = ModelParams::default();
        let burst = built_in("burst", 1, &m).expect("burst");
        assert_eq!(burst.files.len(), 1000);
        assert!(burst.files.iter().all(|f| f.upload_ms == 60_000));
        let trickle = built_in("trickle", 1, &m).expect("trickle");
        // 720 expected arrivals; a Poisson count stays well inside this band.
        assert!(
            (600..840).contains(&trickle.files.len()),
            "{}",
            trickle.files.len()
        );
        let diurnal = built_in("diurnal", 1, &m).expect("diurnal");
        let day = diurnal
            .files
            .iter()
            .filter(|f| (9..17).contains(&(f.upload_ms / 3_600_000)))
            .count();
        let night = diurnal
            .files
            .iter()
            .filter(|f| f.upload_ms / 3_600_000 < 7)
            .count();
        assert!(day > 5 * night, "day {day} night {night}");
        let mixed = built_in("mixed", 1, &m).expect("mixed");
        assert_eq!(mixed.files.len(), 6 * 53);
        let longest = mixed
            .files
            .iter()
            .map(|f| f.processing_ms)
            .max()
            .unwrap_or(0);
        let shortest = mixed
            .files
            .iter()
            .map(|f| f.processing_ms)
            .min()
            .unwrap_or(0);
        assert!(longest > 50 * shortest, "sizes should differ widely");
        assert!(built_in("nope", 1, &m).is_none());
    }

    #[test]
    fn sparse_and_sustained_have_the_documented_shape() {
        let m = ModelParams::default();
        let sparse = built_in("sparse", 1, &m).expect("sparse");
        let gaps: Vec<u64> = sparse
            .files
            .windows(2)
            .map(|w| w[1].upload_ms - w[0].upload_ms)
            .collect();
        assert!(
            gaps.iter().all(|g| (900_000..=1_800_000).contains(g)),
            "{gaps:?}"
        );
        assert!(
            (48..=96).contains(&sparse.files.len()),
            "{}",
            sparse.files.len()
        );

        let sustained = built_in("sustained", 1, &m).expect("sustained");
        // Offered work over the 4 h, in full-speed slot-seconds, against the ceiling's.
        let work: f64 = sustained
            .files
            .iter()
            .map(|f| f.processing_ms as f64 / 1000.0)
            .sum();
        let capacity =
            f64::from(m.max_instances * m.full_speed_files_per_instance()) * 4.0 * 3600.0;
        let load = work / capacity;
        assert!((0.75..0.95).contains(&load), "load {load}");
        // A bigger fleet gets a proportionally heavier load.
        let bigger = ModelParams {
            max_instances: 20,
            ..m.clone()
        };
        let heavier = built_in("sustained", 1, &bigger).expect("sustained");
        let ratio = heavier.files.len() as f64 / sustained.files.len() as f64;
        assert!((1.8..2.2).contains(&ratio), "{ratio}");
    }

    #[test]
    fn same_seed_same_workload() {
        let m = ModelParams::default();
        assert_eq!(built_in("trickle", 9, &m), built_in("trickle", 9, &m));
        assert_ne!(built_in("trickle", 9, &m), built_in("trickle", 10, &m));
    }

    #[test]
    fn csv_and_toml_files_parse_and_errors_name_the_line() {
        let dir = tempfile::tempdir().expect("tempdir");
        let m = ModelParams::default();
        let csv = dir.path().join("night.csv");
        std::fs::write(
            &csv,
            "# nightly export\nupload_secs,size_mb,processing_secs\n10,100,\n5,50,42\n",
        )
        .expect("write");
        let s = load(csv.to_str().expect("utf-8"), 1, &m).expect("csv loads");
        assert_eq!(s.name, "night");
        assert_eq!(s.files.len(), 2);
        assert_eq!(s.files[0].upload_ms, 5000);
        assert_eq!(s.files[0].processing_ms, 42_000);
        std::fs::write(&csv, "upload_secs,size_mb\n10,abc\n").expect("write");
        let err = load(csv.to_str().expect("utf-8"), 1, &m).expect_err("bad number");
        assert!(
            err.to_string().contains(":2: size_mb is not a number"),
            "{err}"
        );

        let toml_path = dir.path().join("w.toml");
        std::fs::write(
            &toml_path,
            "name = \"weekly\"\nhorizon_secs = 7200\n[[file]]\nupload_secs = 1\nsize_mb = 10\n",
        )
        .expect("write");
        let s = load(toml_path.to_str().expect("utf-8"), 1, &m).expect("toml loads");
        assert_eq!(
            (s.name.as_str(), s.horizon_ms, s.files.len()),
            ("weekly", 7_200_000, 1)
        );
        assert!(matches!(
            load("no-such", 1, &m),
            Err(ScenarioError::Unknown(_))
        ));
    }
}
