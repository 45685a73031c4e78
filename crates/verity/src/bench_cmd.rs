//! `verity bench transfers`: a throwaway devnet, a burst of signed transfers submitted through
//! the HTTP API, and the finalized rate and submit→finalized latency measured from the blocks as
//! they execute.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _, Result};
use clap::{Args, Subcommand};
use futures::StreamExt as _;
use serde::Serialize;
use tokio::sync::broadcast::error::RecvError;
use verity_client::Client;
use verity_node::{mempool::SenderCache, mempool::MAX_NONCE_GAP, run};
use verity_state::{Genesis, GenesisAccount};
use verity_types::{AccountKey, Action, Address, Hash, TxBody, ONE_TOKEN};

use crate::chain_cmd::{default_params, init_logs, now_ms};

#[derive(Subcommand)]
pub enum BenchCommand {
    /// Transfers per second and submit→finalized latency on a fresh local devnet.
    Transfers(TransfersArgs),
    /// TEE tasks per second and submit→finalized latency on a fresh devnet with workers.
    Tasks(crate::bench_tasks::TasksArgs),
    /// Language-model answers and tokens per second, and submit→verified latency, on a fresh
    /// devnet with workers serving the bundled model (or `--model DIR`).
    Chat(crate::bench_chat::ChatArgs),
}

#[derive(Args)]
pub struct TransfersArgs {
    #[arg(long, default_value_t = 4)]
    validators: u32,
    /// Transfers to submit.
    #[arg(long, default_value_t = 20_000)]
    count: u64,
    /// Distinct sending accounts (each sends count/senders transfers in nonce order).
    #[arg(long, default_value_t = 256)]
    senders: u64,
    /// Concurrent HTTP submissions, spread over every validator's API.
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// Offered load in transfers per second; 0 submits as fast as the APIs accept them.
    #[arg(long, default_value_t = 0)]
    rate: u64,
    /// Let the validators share one signature cache, as in `verity devnet`. By default each has
    /// its own and recovers every signature, as separate machines would.
    #[arg(long)]
    shared_cache: bool,
    /// Where the devnet lives; a fresh temporary directory when absent.
    #[arg(long)]
    home: Option<PathBuf>,
    /// Print what was measured as one JSON object.
    #[arg(long)]
    json: bool,
    /// Run proof of stake with epochs of this many blocks (genesis bonds each validator), and
    /// report the gaps between finalized blocks at epoch boundaries.
    #[arg(long, value_parser = clap::value_parser!(u64).range(10..))]
    epoch_blocks: Option<u64>,
    /// The throwaway network's first API port (validator i's is this + i).
    #[arg(long, env = "VERITY_BENCH_API_PORT", default_value_t = 18545)]
    api_port: u16,
    /// Its first p2p port.
    #[arg(long, env = "VERITY_BENCH_P2P_PORT", default_value_t = 31300)]
    p2p_port: u16,
}

const BENCH_CHAIN_ID: &str = "verity-bench";
const FEE: u128 = 1_000;

pub fn run(cmd: BenchCommand) -> Result<()> {
    match cmd {
        BenchCommand::Transfers(args) => transfers(args),
        BenchCommand::Tasks(args) => crate::bench_tasks::tasks(args),
        BenchCommand::Chat(args) => crate::bench_chat::chat(args),
    }
}

fn transfers(args: TransfersArgs) -> Result<()> {
    init_logs("warn");
    if args.senders == 0 || args.count == 0 || args.concurrency == 0 {
        bail!("--count, --senders and --concurrency must be positive");
    }
    if args.count.div_ceil(args.senders) > MAX_NONCE_GAP {
        bail!(
            "each sender would need more than {MAX_NONCE_GAP} pending transfers; raise --senders"
        );
    }
    let scratch = tempfile::tempdir().context("creating a temporary devnet home")?;
    let home = args.home.clone().unwrap_or_else(|| scratch.path().into());
    if home.join("genesis.json").exists() {
        bail!(
            "{} already holds a network; the benchmark needs a fresh one",
            home.display()
        );
    }

    eprintln!(
        "signing {} transfers from {} senders…",
        args.count, args.senders
    );
    let senders: Vec<AccountKey> = (0..args.senders).map(|_| AccountKey::generate()).collect();
    let sink = AccountKey::generate().address();
    let txs = sign_transfers(&senders, args.count, sink);
    let mut params = default_params();
    if let Some(blocks) = args.epoch_blocks {
        params.validators.epoch_blocks = blocks;
    }
    let chain = Genesis {
        chain_id: BENCH_CHAIN_ID.into(),
        genesis_time_ms: now_ms(),
        params,
        accounts: senders
            .iter()
            .map(|k| GenesisAccount {
                address: k.address(),
                balance: 1_000_000 * ONE_TOKEN,
            })
            .collect(),
        attestation_policy: None,
        validators: vec![],
    };
    let layout = run::write_network(
        &home,
        chain,
        args.validators,
        (args.p2p_port, args.api_port),
        args.epoch_blocks
            .map(|_| crate::chain_cmd::GENESIS_VALIDATOR_STAKE),
    )?;

    commonware_runtime::Runner::start(run::runner(&home.join("consensus")), |context| async move {
        let shared = SenderCache::default();
        let mut started = Vec::new();
        for config in run::NodeConfig::load_all(&layout.nodes)? {
            let cache = match args.shared_cache {
                true => shared.clone(),
                false => SenderCache::default(),
            };
            started.extend(run::start_nodes(&context, vec![config], cache).await?);
        }
        let clients: Vec<Client> = started
            .iter()
            .map(|s| Client::new(&s.api.to_string()))
            .collect();
        wait_for_first_block(&clients[0]).await?;
        let pace = match args.rate {
            0 => "as fast as they accept".to_string(),
            rate => format!("at {rate} tx/s"),
        };
        eprintln!(
            "{} validators up; submitting through {} APIs {pace}, up to {} requests in flight",
            started.len(),
            clients.len(),
            args.concurrency
        );
        let load = Load {
            rate: args.rate,
            concurrency: args.concurrency,
            window: None,
        };
        let (report, blocks, gaps) = measure(&started[0].node, &clients, txs, load).await?;
        let boundaries = args.epoch_blocks.and_then(|b| BoundaryGaps::of(&gaps, b));
        let caches = match args.shared_cache {
            true => "one shared signature cache",
            false => "a signature cache each",
        };
        if args.json {
            let mut json = serde_json::to_value(&report)?;
            json["boundaries"] = serde_json::to_value(&boundaries)?;
            outln!("{json}");
        } else {
            outln!(
                "verity bench transfers: {} validators ({caches}), {} transfers, {} senders, offered load {pace}",
                started.len(),
                args.count,
                args.senders
            );
            outln!(
                "  submitted:   {:>9.0} tx/s over HTTP",
                report.submitted_per_s
            );
            outln!(
                "  finalized:   {:>9.0} tx/s  ({} in {:.2} s, {blocks} blocks)",
                report.finalized_per_s,
                report.count,
                report.elapsed_s,
            );
            outln!(
                "  steady:      {:>9.0} tx/s  (between the 10 % and the 90 % marks of finalizations)",
                report.steady_per_s
            );
            report.latency.print();
            if let Some(b) = &boundaries {
                outln!(
                    "  epochs:      {} boundaries crossed; longest gap between finalized blocks at one {} ms, {:.1}x the median gap of {} ms",
                    b.crossed,
                    b.longest_at_boundary_ms,
                    b.longest_at_boundary_ms as f64 / b.median_gap_ms.max(1) as f64,
                    b.median_gap_ms
                );
            } else if args.epoch_blocks.is_some() {
                outln!("  epochs:      no epoch boundary was crossed while the transfers ran");
            }
        }
        use commonware_runtime::Spawner as _;
        let _ = context.stop(0, Some(Duration::from_secs(10))).await;
        Ok(())
    })
}

/// Sender `i` sends transfers with nonces 0, 1, …; interleaved so every block has many senders.
fn sign_transfers(senders: &[AccountKey], count: u64, to: Address) -> Vec<(Hash, Vec<u8>)> {
    (0..count)
        .map(|n| {
            let key = &senders[(n % senders.len() as u64) as usize];
            let tx = TxBody {
                chain_id: BENCH_CHAIN_ID.into(),
                nonce: n / senders.len() as u64,
                fee: FEE,
                action: Action::Transfer { to, amount: 1 },
            }
            .sign(key);
            (tx.hash(), tx.encode())
        })
        .collect()
}

async fn wait_for_first_block(client: &Client) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(status) = client.status().await {
            if status.height >= 1 {
                return Ok(());
            }
        }
        if Instant::now() > deadline {
            bail!("the devnet finalized no block within 60 s");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Submit→finalized latency percentiles in milliseconds, as every bench prints them.
#[derive(Serialize)]
pub(crate) struct Latency {
    p50_ms: u128,
    p99_ms: u128,
    max_ms: u128,
}

impl Latency {
    /// The summary of `latencies`; `None` when there are none.
    pub(crate) fn of(mut latencies: Vec<Duration>) -> Option<Self> {
        latencies.sort();
        let max = *latencies.last()?;
        let at = |q: f64| latencies[((latencies.len() - 1) as f64 * q).round() as usize];
        Some(Self {
            p50_ms: at(0.50).as_millis(),
            p99_ms: at(0.99).as_millis(),
            max_ms: max.as_millis(),
        })
    }

    pub(crate) fn print(&self) {
        self.print_as("submit → finalized");
    }

    /// The percentiles, saying what was measured from and to.
    pub(crate) fn print_as(&self, what: &str) {
        outln!(
            "  latency:     p50 {:>6} ms   p99 {:>6} ms   max {:>6} ms  ({what})",
            self.p50_ms,
            self.p99_ms,
            self.max_ms
        );
    }
}

/// What a bench measured, as `--json` prints it: one object for scripts and tests.
#[derive(Serialize)]
pub(crate) struct Measured {
    /// Transactions submitted, and finalized (every one of them).
    pub count: usize,
    pub submitted_per_s: f64,
    pub finalized_per_s: f64,
    /// Seconds from the first submission to the last finalization.
    pub elapsed_s: f64,
    /// The finalized rate between the 10th and the 90th percentile of finalizations: the rate
    /// once the pipeline has filled and before the last transactions drain, which a run's
    /// start-up and tail do not skew (see [`steady_rate`]).
    pub steady_per_s: f64,
    pub latency: Latency,
}

/// Finalizations per second between the 10 % and the 90 % marks of `finalized_at` (each
/// finalization's time since the start, in order); over the whole run when the marks meet.
pub(crate) fn steady_rate(finalized_at: &[Duration]) -> f64 {
    let Some(last) = finalized_at.last() else {
        return 0.0;
    };
    let mark = |q: f64| ((finalized_at.len() - 1) as f64 * q).round() as usize;
    let (from, to) = (mark(0.10), mark(0.90));
    let span = (finalized_at[to] - finalized_at[from]).as_secs_f64();
    if to > from && span > 0.0 {
        (to - from) as f64 / span
    } else {
        finalized_at.len() as f64 / last.as_secs_f64()
    }
}

/// When each transaction was handed to the API.
pub(crate) type SubmitTimes = Arc<std::sync::Mutex<HashMap<Hash, Instant>>>;

/// How a bench offers its load.
#[derive(Clone)]
pub(crate) struct Load {
    /// At most this many per second from the start; 0: as fast as the rest allows.
    pub rate: u64,
    /// HTTP submissions in flight at once.
    pub concurrency: usize,
    /// A closed loop: a submission waits for one of these permits, which the measurement gives
    /// back as each transaction finalizes, so no more than the window is ever pending.
    pub window: Option<Arc<tokio::sync::Semaphore>>,
}

/// Submits `txs` round-robin over `clients` as `load` allows, recording each submission time.
/// Resolves to the time all were submitted, or to how many failed and the first error.
pub(crate) fn spawn_submitter(
    clients: Vec<Client>,
    txs: Vec<(Hash, Vec<u8>)>,
    start: Instant,
    load: Load,
    submitted: SubmitTimes,
) -> tokio::task::JoinHandle<Result<Duration>> {
    tokio::spawn(async move {
        let Load {
            rate,
            concurrency,
            window,
        } = load;
        let results = futures::stream::iter(txs.into_iter().enumerate())
            .map(|(i, (hash, bytes))| {
                let client = clients[i % clients.len()].clone();
                let submitted = submitted.clone();
                let window = window.clone();
                async move {
                    if let Some(window) = window {
                        window.acquire().await.expect("never closed").forget();
                    }
                    if rate > 0 {
                        let due = start + Duration::from_secs_f64(i as f64 / rate as f64);
                        tokio::time::sleep_until(due.into()).await;
                    }

                    submitted
                        .lock()
                        .expect("submit times")
                        .insert(hash, Instant::now());
                    client.submit_raw(&bytes).await
                }
            })
            .buffer_unordered(concurrency.max(1))
            .collect::<Vec<_>>()
            .await;
        let errors = results.iter().filter(|r| r.is_err()).count();
        match results.into_iter().find_map(|r| r.err()) {
            Some(first) => Err(anyhow::anyhow!(
                "{errors} submissions failed; first: {first}"
            )),
            None => Ok(start.elapsed()),
        }
    })
}

/// How long finalized blocks took to follow one another across epoch boundaries.
#[derive(Serialize)]
struct BoundaryGaps {
    crossed: usize,
    longest_at_boundary_ms: u128,
    median_gap_ms: u128,
}

impl BoundaryGaps {
    /// From each observed block's height and the time since the block before it; a boundary
    /// is the first block of an epoch. None when no boundary was observed.
    fn of(gaps: &[(u64, Duration)], epoch_blocks: u64) -> Option<Self> {
        let at_boundary: Vec<Duration> = gaps
            .iter()
            .filter(|(height, _)| *height > 1 && (height - 1) % epoch_blocks == 0)
            .map(|(_, gap)| *gap)
            .collect();
        let mut all: Vec<Duration> = gaps.iter().map(|(_, gap)| *gap).collect();
        all.sort();
        Some(Self {
            crossed: at_boundary.len(),
            longest_at_boundary_ms: at_boundary.iter().max()?.as_millis(),
            median_gap_ms: all[all.len() / 2].as_millis(),
        })
    }
}

/// Submits `txs` and follows `observer`'s finalized blocks until all are in: the report, the
/// blocks that carried them, and each block's height with the time since the block before.
async fn measure(
    observer: &Arc<verity_node::app::NodeState>,
    clients: &[Client],
    txs: Vec<(Hash, Vec<u8>)>,
    load: Load,
) -> Result<(Measured, usize, Vec<(u64, Duration)>)> {
    let total = txs.len();
    let mut blocks = observer.events.subscribe();
    let start = Instant::now();
    let submitted = SubmitTimes::default();
    let submitter = spawn_submitter(clients.to_vec(), txs, start, load, submitted.clone());

    let mut latencies = Vec::with_capacity(total);
    let mut finalized_at = Vec::with_capacity(total);
    let mut block_count = 0;
    let mut last_progress = Instant::now();
    let mut finished_at = start;
    let mut gaps = Vec::new();
    let mut previous: Option<Instant> = None;
    while latencies.len() < total {
        let record = match tokio::time::timeout(Duration::from_secs(30), blocks.recv()).await {
            Err(_) => {
                // Transfers that were never accepted never finalize: say why, not just "stuck".
                if submitter.is_finished() {
                    submitter.await.context("submitter task")??;
                }
                bail!("no finalized block for 30 s")
            }
            Ok(Err(RecvError::Lagged(n))) => bail!("the measurement fell {n} blocks behind"),
            Ok(Err(RecvError::Closed)) => bail!("the node stopped"),
            Ok(Ok(record)) => record,
        };
        let now = Instant::now();
        if let Some(previous) = previous {
            gaps.push((record.height, now - previous));
        }
        previous = Some(now);
        let times = submitted.lock().expect("submit times");
        let before = latencies.len();
        for hash in &record.tx_hashes {
            if let Some(at) = times.get(hash) {
                latencies.push(now - *at);
                finalized_at.push(now - start);
            }
        }
        drop(times);
        if latencies.len() > before {
            block_count += 1;
            finished_at = now;
        }
        if record.failed_txs > 0 {
            bail!(
                "block {} recorded {} failed transfers",
                record.height,
                record.failed_txs
            );
        }
        if last_progress.elapsed() >= Duration::from_secs(1) {
            eprintln!(
                "  {:>7}/{total} finalized, height {}",
                latencies.len(),
                record.height
            );
            last_progress = Instant::now();
        }
    }
    let submit_elapsed = submitter.await.context("submitter task")??;
    let elapsed = finished_at - start;
    Ok((
        Measured {
            count: total,
            submitted_per_s: total as f64 / submit_elapsed.as_secs_f64(),
            finalized_per_s: total as f64 / elapsed.as_secs_f64(),
            elapsed_s: elapsed.as_secs_f64(),
            steady_per_s: steady_rate(&finalized_at),
            latency: Latency::of(latencies).expect("at least one transfer"),
        },
        block_count,
        gaps,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(times: &[f64]) -> Vec<Duration> {
        times.iter().map(|&t| Duration::from_secs_f64(t)).collect()
    }

    #[test]
    fn the_steady_rate_leaves_out_a_slow_start_and_a_slow_tail() {
        // 100 finalizations at 10/s after a 5 s start-up, the last one 30 s later.
        let mut times: Vec<f64> = (0..99).map(|i| 5.0 + i as f64 / 10.0).collect();
        times.push(44.8);
        let rate = steady_rate(&secs(&times));
        assert!((rate - 10.0).abs() < 1e-9, "{rate}");
    }

    #[test]
    fn the_steady_rate_of_a_short_run_falls_back_to_the_whole_run() {
        assert_eq!(steady_rate(&secs(&[])), 0.0);
        // Marks at the first and the last: 3 finalizations after the first, over 2 s.
        assert_eq!(steady_rate(&secs(&[1.0, 1.0, 1.0, 3.0])), 1.5);
        // All at once: the whole run's rate.
        assert_eq!(steady_rate(&secs(&[2.0, 2.0])), 1.0);
    }
}
