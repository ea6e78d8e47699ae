//! `geobatch-controller`: placeholder until the controller lands.

use std::process::ExitCode;

fn main() -> ExitCode {
    eprintln!("geobatch-controller: not built yet");
    ExitCode::FAILURE
}
