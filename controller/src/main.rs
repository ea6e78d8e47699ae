//! `geobatch-controller`: placeholder until the command line lands.

use std::process::ExitCode;

fn main() -> ExitCode {
    eprintln!("geobatch-controller: the command line is not built yet");
    ExitCode::FAILURE
}
