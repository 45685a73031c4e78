//! `verity`: the command-line interface to the Verity network.

#[macro_use]
mod output;

mod attest_cmd;
mod bench_chat;
mod bench_cmd;
mod bench_tasks;
mod chain_cmd;
mod commands;
mod data_cmd;
mod dataset_cmd;
mod dispute_cmd;
mod infer_cmd;
mod keystore;
mod shared;
mod shutdown;
mod task_cmd;
mod tokens;
mod zk_cmd;

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
    /// A local network: N validators in this process with real p2p over loopback.
    Devnet(chain_cmd::DevnetArgs),
    /// Run one validator from its node.toml.
    Node(chain_cmd::NodeArgs),
    /// Deal a validator committee and write genesis and per-validator files.
    Genesis(chain_cmd::GenesisArgs),
    /// Account keys (secp256k1, Ethereum-style addresses).
    #[command(subcommand)]
    Keys(commands::keys::KeysCommand),
    /// Validators: bond stake for a consensus identity, unbond it, see the committees.
    #[command(subcommand)]
    Validator(commands::validator::ValidatorCommand),
    /// Send tokens from one of your keys.
    Transfer(chain_cmd::TransferArgs),
    /// An account's balance and nonce.
    Account(chain_cmd::AccountArgs),
    /// The chain's height, finalized height, validators and peers.
    Status(chain_cmd::StatusArgs),
    /// TEE attestation evidence.
    #[command(subcommand)]
    Attest(attest_cmd::AttestCommand),
    /// Content-addressed blobs (task inputs, outputs, model files).
    #[command(subcommand)]
    Blob(task_cmd::BlobCommand),
    /// Register and inspect models.
    #[command(subcommand)]
    Model(task_cmd::ModelCommand),
    /// Register and inspect datasets: who owns a public file, anchored or claimed.
    #[command(subcommand)]
    Dataset(dataset_cmd::DatasetCommand),
    /// Ask a registered language model a question; the answer is checked before it is printed.
    Chat(commands::chat::ChatArgs),
    /// Serve the OpenAI API on a local port, each request a task paid by your key, each answer
    /// checked before it is returned.
    Gateway(commands::gateway::GatewayArgs),
    /// Submit inference tasks and follow them.
    #[command(subcommand)]
    Task(task_cmd::TaskCommand),
    /// Run a worker: stake, attest, run assigned tasks, submit receipts.
    Worker(task_cmd::WorkerArgs),
    /// Run a challenger: bond, re-execute OP results in their windows, dispute wrong ones.
    Challenger(dispute_cmd::ChallengerArgs),
    /// Disputes of OP results.
    #[command(subcommand)]
    Dispute(dispute_cmd::DisputeCommand),
    /// Contributed data: encryption with your key's password, the quality score, contribution
    /// with a verifier's proof.
    #[command(subcommand)]
    Data(data_cmd::DataCommand),
    /// Data Anchor Tokens: what contributed files earn their owners.
    #[command(subcommand)]
    Dat(data_cmd::DatCommand),
    /// Zero-knowledge proofs of quantized models: keys, proofs, independent checks.
    #[command(subcommand)]
    Zk(zk_cmd::ZkCommand),
    /// Measure a local network.
    #[command(subcommand)]
    Bench(bench_cmd::BenchCommand),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Infer(cmd) => infer_cmd::run(cmd),
        Command::Devnet(args) => chain_cmd::devnet(args),
        Command::Node(args) => chain_cmd::node(args),
        Command::Genesis(args) => chain_cmd::genesis(args),
        Command::Keys(cmd) => commands::keys::run(cmd),
        Command::Validator(cmd) => commands::validator::run(cmd),
        Command::Transfer(args) => chain_cmd::transfer(args),
        Command::Account(args) => chain_cmd::account(args),
        Command::Status(args) => chain_cmd::status(args),
        Command::Bench(cmd) => bench_cmd::run(cmd),
        Command::Attest(cmd) => attest_cmd::run(cmd),
        Command::Data(cmd) => data_cmd::run(cmd),
        Command::Dat(cmd) => data_cmd::run_dat(cmd),
        Command::Blob(cmd) => task_cmd::blob(cmd),
        Command::Model(cmd) => task_cmd::model(cmd),
        Command::Dataset(cmd) => dataset_cmd::run(cmd),
        Command::Task(cmd) => task_cmd::task(cmd),
        Command::Chat(args) => commands::chat::run(args),
        Command::Gateway(args) => commands::gateway::run(args),
        Command::Worker(args) => task_cmd::worker(args),
        Command::Challenger(args) => dispute_cmd::challenger(args),
        Command::Dispute(cmd) => dispute_cmd::dispute(cmd),
        Command::Zk(cmd) => zk_cmd::run(cmd),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
