//! Analyses one GeoJSON file and prints its report as JSON: the library alone, without the
//! worker's AWS stack, for profiling (`perf record`) and quick timings.
//!
//! ```text
//! cargo run --release -p geobatch-analysis --example analyze -- FILE [THREADS]
//! ```

use std::path::PathBuf;
use std::process::ExitCode;

use geobatch_analysis::{AnalysisOptions, analyze_file};

fn main() -> ExitCode {
    let mut args = std::env::args_os().skip(1);
    let Some(path) = args.next().map(PathBuf::from) else {
        eprintln!("usage: analyze FILE [THREADS]");
        return ExitCode::from(2);
    };
    let threads = match args.next().map(|t| t.to_string_lossy().parse::<usize>()) {
        None => AnalysisOptions::default().threads,
        Some(Ok(threads)) => threads,
        Some(Err(err)) => {
            eprintln!("THREADS: {err}");
            return ExitCode::from(2);
        }
    };
    let options = AnalysisOptions {
        threads,
        ..AnalysisOptions::default()
    };
    match analyze_file(&path, &options) {
        Ok(report) => match serde_json::to_string_pretty(&report) {
            Ok(text) => {
                println!("{text}");
                ExitCode::SUCCESS
            }
            Err(err) => {
                eprintln!("{err}");
                ExitCode::FAILURE
            }
        },
        Err(err) => {
            eprintln!("{}: {err}", path.display());
            ExitCode::FAILURE
        }
    }
}
