//! `verity validator`: bond stake for a consensus identity, unbond it, and see the committees.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result};
use clap::{Args, Subcommand};
use verity_client::api::{EpochView, ValidatorList, ValidatorStatus};
use verity_client::Client;
use verity_types::Action;

use crate::shared::{keys_dir, load_key, runtime, submit_and_report, DEFAULT_NODE};
use crate::tokens;

#[derive(Subcommand)]
pub enum ValidatorCommand {
    /// Bond stake for a validator identity: its first bond names the identity and address,
    /// later ones add stake (and may move the address). The identity's key signs the bond, so
    /// no one else can bond it.
    Bond(BondArgs),
    /// Start unbonding stake: it stops counting at the next snapshot and returns after the
    /// chain's unbonding epochs, slashable until then.
    Unbond(UnbondArgs),
    /// Every validator that bonded, with its status, and the committees of this epoch and
    /// the next.
    List(ListArgs),
    /// The current epoch: its heights, its snapshot, and the committees.
    Epoch(ListArgs),
}

#[derive(Args)]
pub struct BondArgs {
    /// The account that bonds, is paid and is slashed: a key name or file.
    #[arg(long)]
    from: String,
    /// The validator's key file (`validator-N/validator.key`): its ed25519 identity signs the
    /// bond; the secret stays on this machine.
    #[arg(long, value_name = "FILE")]
    identity: PathBuf,
    /// Where other validators reach this one, host:port.
    #[arg(long, value_name = "HOST:PORT")]
    p2p: String,
    /// Amount in tokens, e.g. 10000.
    #[arg(long)]
    amount: String,
    #[command(flatten)]
    send: SendArgs,
}

#[derive(Args)]
pub struct UnbondArgs {
    #[arg(long)]
    from: String,
    /// Amount in tokens.
    #[arg(long)]
    amount: String,
    #[command(flatten)]
    send: SendArgs,
}

#[derive(Args)]
struct SendArgs {
    #[arg(long, env = "VERITY_NODE", default_value = DEFAULT_NODE)]
    node: String,
    #[arg(long, env = "VERITY_KEYS")]
    keys_dir: Option<PathBuf>,
    /// Wait until the transaction is finalized and print its receipt.
    #[arg(long)]
    wait: bool,
}

#[derive(Args)]
pub struct ListArgs {
    #[arg(long, env = "VERITY_NODE", default_value = DEFAULT_NODE)]
    node: String,
    /// The API's JSON instead of a table.
    #[arg(long)]
    json: bool,
}

pub fn run(command: ValidatorCommand) -> Result<()> {
    match command {
        ValidatorCommand::Bond(args) => bond(args),
        ValidatorCommand::Unbond(args) => unbond(args),
        ValidatorCommand::List(args) => list(args),
        ValidatorCommand::Epoch(args) => epoch(args),
    }
}

/// The 32-byte ed25519 seed in a validator key file's `identity` field.
fn identity_secret(path: &Path) -> Result<[u8; 32]> {
    #[derive(serde::Deserialize)]
    struct KeyFile {
        identity: String,
    }
    let text = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let file: KeyFile = serde_json::from_slice(&text).with_context(|| {
        format!(
            "{} is not a validator key file (JSON with an \"identity\" field)",
            path.display()
        )
    })?;
    hex::decode(file.identity.trim())
        .ok()
        .and_then(|bytes| bytes.try_into().ok())
        .with_context(|| format!("the identity in {} is not 32 bytes of hex", path.display()))
}

fn bond(args: BondArgs) -> Result<()> {
    let key = load_key(&args.from, &keys_dir(args.send.keys_dir.clone()))?;
    let secret = identity_secret(&args.identity)?;
    verity_types::validator::check_p2p_address(&args.p2p).context("--p2p")?;
    let amount = tokens::parse(&args.amount, false).context("--amount")?;
    runtime()?.block_on(async {
        let client = Client::new(&args.send.node);
        let chain_id = client.status().await?.chain_id;
        let (identity, proof) =
            verity_types::validator::sign_bond(&secret, &chain_id, &key.address(), &args.p2p);
        outln!("identity  {identity}");
        let action = Action::BondValidator {
            identity,
            p2p: args.p2p.clone(),
            amount,
            proof,
        };
        submit_and_report(&client, &key, action, 0, args.send.wait, "the bond").await
    })
}

fn unbond(args: UnbondArgs) -> Result<()> {
    let key = load_key(&args.from, &keys_dir(args.send.keys_dir.clone()))?;
    let amount = tokens::parse(&args.amount, false).context("--amount")?;
    runtime()?.block_on(async {
        let client = Client::new(&args.send.node);
        let action = Action::UnbondValidator { amount };
        submit_and_report(&client, &key, action, 0, args.send.wait, "the unbonding").await
    })
}

fn status_word(status: ValidatorStatus) -> &'static str {
    match status {
        ValidatorStatus::Active => "active",
        ValidatorStatus::Elected => "elected",
        ValidatorStatus::Standby => "standby",
        ValidatorStatus::Jailed => "jailed",
        ValidatorStatus::Inactive => "inactive",
    }
}

fn list(args: ListArgs) -> Result<()> {
    runtime()?.block_on(async {
        let list: ValidatorList = Client::new(&args.node).validators().await?;
        if args.json {
            outln!("{}", serde_json::to_string_pretty(&list)?);
            return Ok(());
        }
        outln!(
            "epoch {}: {} validators sign it, {} sign the next",
            list.epoch,
            list.committee.members.len(),
            list.next_committee.members.len()
        );
        outln!(
            "{:<10} {:<66} {:<44} {:>14} {:>9}  p2p",
            "status",
            "identity",
            "account",
            "bonded",
            "proposed"
        );
        for v in &list.validators {
            outln!(
                "{:<10} {:<66} {:<44} {:>14} {:>9}  {}",
                status_word(v.status),
                v.validator.identity.to_string(),
                v.validator.account.to_string(),
                tokens::format(v.validator.bonded),
                v.proposals,
                v.validator.p2p
            );
        }
        Ok(())
    })
}

fn epoch(args: ListArgs) -> Result<()> {
    runtime()?.block_on(async {
        let epoch: EpochView = Client::new(&args.node).current_epoch().await?;
        if args.json {
            outln!("{}", serde_json::to_string_pretty(&epoch)?);
            return Ok(());
        }
        outln!(
            "epoch {} (heights {} to {}; executed {}; snapshot at {})",
            epoch.epoch,
            epoch.first_height,
            epoch.last_height,
            epoch.height,
            epoch.snapshot_height
        );
        for (name, committee) in [
            ("signing", Some(&epoch.committee)),
            ("next", Some(&epoch.next_committee)),
            ("chosen", epoch.chosen.as_ref()),
        ] {
            let Some(committee) = committee else {
                outln!("{name:<8} not chosen yet");
                continue;
            };
            outln!(
                "{name:<8} {} members (snapshot of height {})",
                committee.members.len(),
                committee.snapshot_height
            );
            for m in &committee.members {
                outln!("         {}  {}", m.identity, tokens::format(m.stake));
            }
        }
        Ok(())
    })
}
