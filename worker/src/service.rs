//! `geobatch-worker run`: placeholder until the worker service lands.

use std::process::ExitCode;

/// Options of `geobatch-worker run`.
#[derive(Debug, clap::Args)]
pub struct RunArgs {}

/// Entry point of `geobatch-worker run`.
pub fn main(_args: RunArgs) -> ExitCode {
    eprintln!("geobatch-worker run: not built yet");
    ExitCode::FAILURE
}
