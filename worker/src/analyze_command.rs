//! `geobatch-worker analyze`: placeholder front end over [`crate::analysis`].

use std::path::PathBuf;
use std::process::ExitCode;

use crate::analysis::{AnalysisOptions, analyze_file};

/// Options of `geobatch-worker analyze`.
#[derive(Debug, clap::Args)]
pub struct AnalyzeArgs {
    /// GeoJSON files to analyse.
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
}

/// Entry point of `geobatch-worker analyze`.
pub fn main(args: AnalyzeArgs) -> ExitCode {
    let mut status = ExitCode::SUCCESS;
    for file in &args.files {
        match analyze_file(file, &AnalysisOptions::default()) {
            Ok(report) => println!(
                "{}",
                serde_json::to_string(&report).unwrap_or_else(|err| err.to_string())
            ),
            Err(err) => {
                eprintln!("{}: {err}", file.display());
                status = ExitCode::FAILURE;
            }
        }
    }
    status
}
