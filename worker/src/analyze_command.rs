//! `geobatch-worker analyze`: analyses local GeoJSON files with no AWS at all.
//!
//! Prints one report per input, as a readable summary or as one JSON object per line, with
//! a progress line on stderr for large inputs when stderr is a terminal. Exits non-zero if
//! any input could not be analysed.

use std::fmt::Write as _;
use std::fs::File;
use std::io::{self, IsTerminal, Read, Write};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use serde::Serialize;

use geobatch_analysis::{AnalysisError, AnalysisOptions, ErrorKind, Report, analyze_reader};

/// Inputs smaller than this get no progress line.
const PROGRESS_MIN_BYTES: u64 = 16 << 20;

/// Options of `geobatch-worker analyze`.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Exit status: 0 if every input was analysed, 1 if any failed, 2 on bad usage.\n\
See docs/analysis.md for the meaning of every report field and error kind."
)]
pub struct AnalyzeArgs {
    /// GeoJSON files to analyse (FeatureCollection, Feature or bare geometry); `-` reads
    /// standard input.
    #[arg(required = true, value_name = "FILE")]
    pub files: Vec<String>,
    /// Output format: `text`, a readable summary, or `json`, one object per input per line.
    /// Default: text when standard output is a terminal, json otherwise.
    #[arg(long, value_enum, value_name = "FORMAT")]
    pub format: Option<Format>,
    /// Reject any single feature larger than this many bytes of JSON (bounds memory).
    #[arg(long, value_name = "BYTES", default_value_t = AnalysisOptions::default().max_feature_bytes,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub max_feature_bytes: u64,
    /// Reject JSON nested deeper than this (the top-level object counts as 1).
    #[arg(long, value_name = "DEPTH", default_value_t = AnalysisOptions::default().max_nesting_depth as u64,
          value_parser = clap::value_parser!(u64).range(1..=geobatch_analysis::MAX_NESTING_DEPTH as u64))]
    pub max_depth: u64,
    /// Keep at most this many invalid-geometry samples per report.
    #[arg(long, value_name = "N", default_value_t = AnalysisOptions::default().max_invalid_samples)]
    pub max_invalid_samples: usize,
    /// Track at most this many distinct property names per report.
    #[arg(long, value_name = "N", default_value_t = AnalysisOptions::default().max_property_names)]
    pub max_property_names: usize,
    /// Worker threads per input. Default: the number of available cores.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..=1024))]
    pub threads: Option<u64>,
    /// Give up on an input after this long (error kind time_limit), e.g. 90s or 10m; 0 for
    /// no limit.
    #[arg(long, value_name = "DURATION", default_value = "10m",
          value_parser = crate::config::parse_duration)]
    pub max_analysis_time: Duration,
}

/// How reports are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// A readable summary per input.
    Text,
    /// One JSON object per input, one per line.
    Json,
}

impl AnalyzeArgs {
    fn options(&self) -> AnalysisOptions {
        let threads = self.threads.map_or_else(
            || std::thread::available_parallelism().map_or(1, usize::from),
            |n| usize::try_from(n).unwrap_or(1),
        );
        AnalysisOptions {
            max_feature_bytes: self.max_feature_bytes,
            max_nesting_depth: usize::try_from(self.max_depth).unwrap_or(usize::MAX),
            max_invalid_samples: self.max_invalid_samples,
            max_property_names: self.max_property_names,
            threads,
            time_limit: (!self.max_analysis_time.is_zero()).then_some(self.max_analysis_time),
        }
    }
}

/// A report as printed in JSON: the input's name first, then the report or the error.
#[derive(Serialize)]
struct FileOutcome<'a> {
    file: &'a str,
    #[serde(flatten)]
    outcome: Outcome<'a>,
}

#[derive(Serialize)]
#[serde(untagged)]
enum Outcome<'a> {
    Report(&'a Report),
    Error { error: &'a AnalysisError },
}

/// Entry point of `geobatch-worker analyze`.
pub fn main(args: AnalyzeArgs) -> ExitCode {
    let options = args.options();
    let stdout = io::stdout();
    let format = args.format.unwrap_or(if stdout.is_terminal() {
        Format::Text
    } else {
        Format::Json
    });
    let progress = io::stderr().is_terminal();
    let mut out = stdout.lock();
    let mut failed = false;
    for file in &args.files {
        let result = analyze_one(file, &options, progress);
        failed |= result.is_err();
        let printed = match format {
            Format::Json => print_json(&mut out, file, &result),
            Format::Text => out.write_all(render_text(file, &result).as_bytes()),
        };
        if let Err(err) = printed.and_then(|()| out.flush()) {
            if err.kind() != io::ErrorKind::BrokenPipe {
                eprintln!("geobatch-worker analyze: cannot write the report: {err}");
            }
            return ExitCode::FAILURE;
        }
    }
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

fn analyze_one(
    file: &str,
    options: &AnalysisOptions,
    progress: bool,
) -> Result<Report, AnalysisError> {
    if file == "-" {
        let reader = Progress::new(io::stdin(), "-", None, progress);
        return analyze_reader(reader, options);
    }
    let opened = File::open(file).map_err(|err| AnalysisError {
        kind: ErrorKind::Io,
        message: format!("cannot open {file}: {err}"),
        offset: None,
    })?;
    let size = opened.metadata().ok().map(|m| m.len());
    let show = progress && size.is_some_and(|s| s >= PROGRESS_MIN_BYTES);
    analyze_reader(Progress::new(opened, file, size, show), options)
}

fn print_json(
    out: &mut impl Write,
    file: &str,
    result: &Result<Report, AnalysisError>,
) -> io::Result<()> {
    let outcome = match result {
        Ok(report) => Outcome::Report(report),
        Err(error) => Outcome::Error { error },
    };
    serde_json::to_writer(&mut *out, &FileOutcome { file, outcome })?;
    out.write_all(b"\n")
}

/// The readable summary of one input.
pub fn render_text(file: &str, result: &Result<Report, AnalysisError>) -> String {
    let report = match result {
        Ok(report) => report,
        Err(err) => {
            let at = err
                .offset
                .map(|o| format!(" at byte {o}"))
                .unwrap_or_default();
            return format!("{file}: error ({}{at}): {}\n", err.kind, err.message);
        }
    };
    let mut text = format!("{file}\n");
    let types: Vec<String> = report
        .geometry_types
        .iter()
        .map(|(name, count)| format!("{name} {count}"))
        .collect();
    let _ = writeln!(
        text,
        "  features      {} ({}; {} null geometries)",
        report.features,
        if types.is_empty() {
            "no geometries".to_owned()
        } else {
            types.join(", ")
        },
        report.null_geometries
    );
    let _ = writeln!(text, "  vertices      {}", report.vertices);
    match report.bbox {
        Some([a, b, c, d]) => {
            let _ = writeln!(text, "  bbox          [{a}, {b}, {c}, {d}]");
        }
        None => text.push_str("  bbox          none\n"),
    }
    let _ = writeln!(
        text,
        "  area          {:.3} km² (geodesic, WGS84)",
        report.geodesic_area_m2 / 1e6
    );
    let _ = writeln!(
        text,
        "  perimeter     {:.3} km",
        report.geodesic_perimeter_m / 1e3
    );
    let _ = writeln!(
        text,
        "  length        {:.3} km",
        report.geodesic_length_m / 1e3
    );
    if report.geodesic_skipped_geometries > 0 {
        let _ = writeln!(
            text,
            "  not measured  {} geometries with |latitude| > 90 (projected coordinates?)",
            report.geodesic_skipped_geometries
        );
    }
    let _ = writeln!(text, "  invalid       {}", report.invalid_geometries);
    for sample in &report.invalid {
        let id = sample
            .id
            .as_ref()
            .map(|id| format!(" (id {id})"))
            .unwrap_or_default();
        let at = sample
            .location
            .map(|[x, y]| format!(" at [{x}, {y}]"))
            .unwrap_or_default();
        let _ = writeln!(
            text,
            "    feature {}{id}: {}{at}",
            sample.feature, sample.reason
        );
    }
    if report.unchecked_geometries > 0 {
        let _ = writeln!(
            text,
            "  unchecked     {} geometries too costly to check for validity",
            report.unchecked_geometries
        );
    }
    let _ = writeln!(text, "  properties    {}", report.properties.len());
    for (name, stats) in &report.properties {
        let types: Vec<String> = stats
            .types
            .iter()
            .map(|(t, n)| format!("{t} {n}"))
            .collect();
        let _ = writeln!(
            text,
            "    {name}: {} features ({})",
            stats.features,
            types.join(", ")
        );
    }
    if report.untracked_properties > 0 {
        let _ = writeln!(
            text,
            "    ... and {} occurrences of further names",
            report.untracked_properties
        );
    }
    text
}

/// Counts bytes read and redraws a progress line on stderr at most every 200 ms.
struct Progress<R> {
    inner: R,
    name: String,
    total: Option<u64>,
    read: u64,
    enabled: bool,
    last_draw: Option<Instant>,
}

impl<R> Progress<R> {
    fn new(inner: R, name: &str, total: Option<u64>, enabled: bool) -> Self {
        Progress {
            inner,
            name: name.to_owned(),
            total,
            read: 0,
            enabled,
            last_draw: None,
        }
    }

    fn draw(&mut self, done: bool) {
        let megabytes = self.read as f64 / 1e6;
        let line = match self.total {
            Some(total) if total > 0 => format!(
                "{}: {megabytes:.1} / {:.1} MB ({:.0}%)",
                self.name,
                total as f64 / 1e6,
                100.0 * self.read as f64 / total as f64
            ),
            _ => format!("{}: {megabytes:.1} MB", self.name),
        };
        let mut err = io::stderr().lock();
        let _ = if done {
            write!(err, "\r\x1b[2K")
        } else {
            write!(err, "\r\x1b[2K{line}")
        };
        let _ = err.flush();
    }
}

impl<R: Read> Read for Progress<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.read += n as u64;
        if self.enabled {
            let now = Instant::now();
            if n == 0 {
                self.draw(true);
                self.enabled = false;
            } else if self
                .last_draw
                .is_none_or(|last| now.duration_since(last) >= Duration::from_millis(200))
            {
                self.last_draw = Some(now);
                self.draw(false);
            }
        }
        Ok(n)
    }
}
