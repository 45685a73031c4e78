//! OP-mode commands: the challenger, and disputes to look at.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context as _, Result};
use clap::{Args, Subcommand};
use verity_client::api::{Dispute, DisputeStatus, Phase};
use verity_client::{Client, PageRequest};
use verity_types::Hash;

use crate::chain_cmd::init_logs;
use crate::shared::{keys_dir, load_key, runtime, DEFAULT_NODE};
use crate::tokens;

#[derive(Subcommand)]
pub enum DisputeCommand {
    /// Disputes of OP results, in id order.
    List {
        #[arg(long, default_value_t = 50)]
        limit: u32,
        /// Disputes after this id: the last one of the previous page.
        #[arg(long)]
        after: Option<Hash>,
        #[arg(long, env = "VERITY_NODE", default_value = DEFAULT_NODE)]
        node: String,
        #[arg(long)]
        json: bool,
    },
    /// One dispute: both traces, where the game stands, and its verdict.
    Show {
        id: Hash,
        #[arg(long, env = "VERITY_NODE", default_value = DEFAULT_NODE)]
        node: String,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Args)]
pub struct ChallengerArgs {
    /// The challenger's account key (name or path); it bonds and pays for its moves.
    #[arg(long, env = "VERITY_CHALLENGER_KEY")]
    key: String,
    /// Watch only these models (repeatable); every model when absent.
    #[arg(long = "model")]
    models: Vec<Hash>,
    /// Bond to hold, in tokens (the chain's minimum by default).
    #[arg(long, default_value = "100")]
    bond: String,
    /// FOR TESTING DISPUTES ONLY: challenge honest results too, with a made-up trace. Such a
    /// challenger loses every dispute and 5 % of its bond each time.
    #[arg(long)]
    frivolous: bool,
    /// Instead of running: start unbonding this many tokens of the bond (not what open
    /// disputes lock); they return after the chain's unbonding delay.
    #[arg(long, value_name = "TOKENS", conflicts_with = "frivolous")]
    unbond: Option<String>,
    #[arg(long, env = "VERITY_NODE", default_value = DEFAULT_NODE)]
    node: String,
    #[arg(long, env = "VERITY_KEYS")]
    keys_dir: Option<PathBuf>,
    /// Where language models' files are kept (fetched once, each part checked).
    #[arg(
        long,
        env = "VERITY_CHALLENGER_HOME",
        default_value = ".verity/challenger"
    )]
    home: PathBuf,
}

fn status_name(status: DisputeStatus) -> &'static str {
    match status {
        DisputeStatus::Open => "open",
        DisputeStatus::WorkerWon => "worker won",
        DisputeStatus::ChallengerWon => "challenger won",
        DisputeStatus::Moot => "moot",
        DisputeStatus::Undecided => "undecided",
    }
}

fn stage(d: &Dispute) -> String {
    match (&d.game, &d.referee) {
        (Some(game), _) => match game.phase {
            Phase::Dissect => format!(
                "dissecting steps {}..{} ({} moves)",
                game.start,
                game.start + game.len,
                game.moves
            ),
            Phase::OneStep => format!("one-step of step {} owed", game.start),
            Phase::Resolved { .. } => format!("over after {} moves", game.moves),
        },
        (None, Some(check)) => {
            let shown = |revealed: bool| if revealed { "revealed" } else { "owed" };
            format!(
                "referee {} re-runs the task; outputs due by height {} (worker's {}, referee's {})",
                check.referee,
                check.deadline,
                shown(check.worker_output.is_some()),
                shown(check.referee_output.is_some())
            )
        }
        (None, None) => "settled at opening".to_string(),
    }
}

pub fn dispute(cmd: DisputeCommand) -> Result<()> {
    runtime()?.block_on(async {
        match cmd {
            DisputeCommand::List {
                limit,
                after,
                node,
                json,
            } => {
                let list = Client::new(&node)
                    .disputes(&PageRequest {
                        after,
                        limit: Some(limit),
                    })
                    .await?;
                if json {
                    outln!("{}", serde_json::to_string_pretty(&list)?);
                    return Ok(());
                }
                for d in &list.disputes {
                    outln!(
                        "{}  task {}  {:<14}  {}",
                        d.dispute_id,
                        d.task_id,
                        status_name(d.status),
                        stage(d)
                    );
                }
                if let Some(next) = list.next {
                    outln!("more: --after {next}");
                }
            }
            DisputeCommand::Show { id, node, json } => {
                let d = Client::new(&node)
                    .dispute(&id)
                    .await?
                    .with_context(|| format!("no dispute {id} on {node}"))?;
                if json {
                    outln!("{}", serde_json::to_string_pretty(&d)?);
                    return Ok(());
                }
                outln!("dispute      {}", d.dispute_id);
                outln!("task         {}", d.task_id);
                outln!("worker       {}  trace {}", d.worker, d.worker_root);
                outln!("challenger   {}  trace {}", d.challenger, d.challenger_root);
                outln!("steps        {}", d.trace_len);
                outln!("opened       height {}", d.opened_height);
                outln!("status       {}", status_name(d.status));
                outln!("game         {}", stage(&d));
                if let Some(game) = &d.game {
                    outln!(
                        "clocks       worker {} blocks, challenger {} blocks left",
                        game.clocks[0],
                        game.clocks[1]
                    );
                }
                if let Some(check) = d.referee.as_ref().filter(|c| !c.timed_out.is_empty()) {
                    let silent: Vec<String> =
                        check.timed_out.iter().map(|a| a.to_string()).collect();
                    outln!("silent       referees {}", silent.join(", "));
                }
                if let Some(verdict) = &d.verdict {
                    outln!(
                        "verdict      {verdict} (height {}; the loser lost {})",
                        d.resolved_height.unwrap_or_default(),
                        tokens::format(d.slashed)
                    );
                }
            }
        }
        Ok(())
    })
}

pub fn challenger(args: ChallengerArgs) -> Result<()> {
    init_logs("info");
    let account = load_key(&args.key, &keys_dir(args.keys_dir))?;
    if let Some(amount) = &args.unbond {
        let amount = tokens::parse(amount, false).context("--unbond")?;
        return runtime()?.block_on(async {
            let client = Client::new(&args.node);
            let tx = crate::shared::submit_next(
                &client,
                &account,
                verity_types::Action::UnbondChallenger { amount },
                0,
            )
            .await?;
            let receipt = client
                .wait_for_tx(&tx.hash(), Duration::from_secs(60))
                .await?;
            outln!("{}", crate::shared::receipt_line(&receipt));
            if let verity_client::api::TxStatus::Failed { error } = receipt.status {
                anyhow::bail!("unbonding failed: {error}");
            }
            Ok(())
        });
    }
    let config = verity_worker::ChallengerConfig {
        api: args.node,
        account,
        bond: tokens::parse(&args.bond, false).context("--bond")?,
        models: args.models,
        frivolous: args.frivolous,
        poll: Duration::from_millis(200),
        label: "challenger".into(),
        home: args.home,
    };
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(async {
            verity_worker::run_challenger(config, async {
                match crate::shutdown::requested().await {
                    Ok(signal) => eprintln!("{signal}: stopping the challenger…"),
                    Err(e) => {
                        eprintln!("warning: {e:#}; the challenger stops only when killed");
                        futures::future::pending().await
                    }
                }
            })
            .await
        })
}
