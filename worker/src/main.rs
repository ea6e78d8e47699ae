//! `geobatch-worker`: the command line. Parsing only; the work lives in the library.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Analyses GeoJSON: from S3 upload events on an SQS queue (`run`), or local files
/// (`analyze`).
#[derive(Debug, Parser)]
#[command(name = "geobatch-worker", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve the queue: download each uploaded object, analyse it, write the result.
    Run(Box<geobatch_worker::config::RunArgs>),
    /// Analyse local GeoJSON files (or `-` for stdin) without any AWS.
    Analyze(geobatch_worker::analyze_command::AnalyzeArgs),
}

fn main() -> ExitCode {
    match Cli::parse().command {
        Command::Run(args) => geobatch_worker::service::main(*args),
        Command::Analyze(args) => geobatch_worker::analyze_command::main(args),
    }
}
