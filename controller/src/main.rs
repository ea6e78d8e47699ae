//! `geobatch-controller`: the command line.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use geobatch_controller::simulate_command::{self, SimulateArgs};

/// Sizes the worker ECS service and its Auto Scaling Group from the SQS backlog.
#[derive(Debug, Parser)]
#[command(name = "geobatch-controller", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    Simulate(SimulateArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Simulate(args) => simulate_command::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("geobatch-controller: {err:#}");
            ExitCode::FAILURE
        }
    }
}
