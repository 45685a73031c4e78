//! `verity`: the command-line interface to the Verity network.

mod infer_cmd;
mod tensor_file;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "verity",
    version,
    about = "Verity: verifiable AI compute. Run `verity <command> --help` for details."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Deterministic ONNX inference with an execution trace.
    #[command(subcommand)]
    Infer(infer_cmd::InferCommand),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Infer(cmd) => infer_cmd::run(cmd),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
