//! `verity bench tasks`: a throwaway devnet with in-process workers, a burst of TEE tasks on the
//! bundled digits model, and the finalized rate and submit→finalized latency measured from the
//! task status changes as blocks execute.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _, Result};
use clap::Args;
use futures::StreamExt as _;
use verity_client::Client;
use verity_node::{mempool::SenderCache, mempool::MAX_NONCE_GAP, run};
use verity_state::{GenesisAccount, TaskStatus};
use verity_types::{AccountKey, Action, DataRef, Hash, Mode, TxBody, ONE_TOKEN};

use crate::bench_cmd::{spawn_submitter, steady_rate, Latency, Load, Measured, SubmitTimes};
use crate::chain_cmd::{
    create_worker_accounts, devnet_genesis, init_logs, register_bundled_model, spawn_workers,
    wait_for_workers, DataVerifiers,
};

#[derive(Args)]
pub struct TasksArgs {
    #[arg(long, default_value_t = 4)]
    validators: u32,
    #[arg(long, default_value_t = 3)]
    workers: u32,
    /// Tasks to submit.
    #[arg(long, default_value_t = 5_000)]
    count: u64,
    /// Distinct submitting accounts.
    #[arg(long, default_value_t = 64)]
    users: u64,
    /// Concurrent HTTP submissions, spread over every validator's API.
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// Offered load in tasks per second; 0 submits as fast as the APIs accept them.
    #[arg(long, default_value_t = 0)]
    rate: u64,
    /// A closed loop: at most this many tasks submitted and not yet finalized, which measures
    /// what the network sustains without overloading it.
    #[arg(long)]
    in_flight: Option<usize>,
    /// Print what was measured as one JSON object.
    #[arg(long)]
    json: bool,
    /// The throwaway network's first API port (validator i's is this + i).
    #[arg(long, env = "VERITY_BENCH_API_PORT", default_value_t = 18545)]
    api_port: u16,
    /// Its first p2p port.
    #[arg(long, env = "VERITY_BENCH_P2P_PORT", default_value_t = 31300)]
    p2p_port: u16,
}

const CHAIN_ID: &str = "verity-bench-tasks";

pub fn tasks(args: TasksArgs) -> Result<()> {
    init_logs("warn");
    if args.users == 0 || args.count == 0 || args.workers == 0 || args.in_flight == Some(0) {
        bail!("--count, --users, --workers and --in-flight must be positive");
    }
    if args.count.div_ceil(args.users) > MAX_NONCE_GAP {
        bail!("each user would need more than {MAX_NONCE_GAP} pending tasks; raise --users");
    }
    // `_scratch` keeps the devnet's home until the bench ends.
    let BenchNetwork {
        scratch: _scratch,
        home,
        dev,
        users,
        layout,
    } = BenchNetwork::write(
        CHAIN_ID,
        args.validators,
        args.workers,
        args.users,
        args.p2p_port,
        args.api_port,
    )?;

    // Distinct real inputs: the 360 digit images of the test set, cycled.
    let samples: serde_json::Value =
        serde_json::from_str(include_str!("../../../models/samples/digits_test.json"))?;
    let inputs: Vec<Vec<u8>> = samples["pixels"]
        .as_array()
        .context("digits_test.json has no pixels")?
        .iter()
        .map(|p| serde_json::to_vec(&serde_json::json!([p])).expect("json"))
        .collect();

    commonware_runtime::Runner::start(run::runner(&home.join("consensus")), |context| async move {
        let started = run::start_nodes(
            &context,
            run::NodeConfig::load_all(&layout.nodes)?,
            SenderCache::default(),
        )
        .await?;
        let apis: Vec<_> = started.iter().map(|s| s.api).collect();
        let clients: Vec<Client> = apis.iter().map(|a| Client::new(&a.to_string())).collect();
        let model = register_bundled_model(&clients[0], &dev).await?;
        let stats = spawn_workers(&home, &apis, args.workers, 0, DataVerifiers::NONE)?;
        wait_for_workers(&clients[0], args.workers as usize).await?;
        clients[0].put_blobs(inputs.clone(), &dev).await?;
        eprintln!(
            "{} validators, {} workers ready; signing {} tasks",
            apis.len(),
            args.workers,
            args.count
        );
        let txs: Vec<(Hash, Vec<u8>)> = (0..args.count)
            .map(|n| {
                let user = &users[(n % args.users) as usize];
                let input = &inputs[(n as usize) % inputs.len()];
                let tx = TxBody {
                    chain_id: CHAIN_ID.into(),
                    nonce: n / args.users,
                    fee: 1_000,
                    action: Action::SubmitTask {
                        model_id: model,
                        input: DataRef::of(input),
                        mode: Mode::Tee,
                        max_fee: 1_000_000,
                        deadline_blocks: 10_000,
                        input_commitment: None,
                        dataset: None,
                        generation: None,
                    },
                }
                .sign(user);
                (tx.hash(), tx.encode())
            })
            .collect();
        let total = txs.len();
        let mut updates = Box::pin(started[0].node.task_updates());
        let submitted = SubmitTimes::default();
        let start = Instant::now();
        let window = args
            .in_flight
            .map(|n| std::sync::Arc::new(tokio::sync::Semaphore::new(n)));
        let load = Load {
            rate: args.rate,
            concurrency: args.concurrency,
            window: window.clone(),
        };
        let submitter = spawn_submitter(clients.clone(), txs, start, load, submitted.clone());
        let mut latencies = Vec::with_capacity(total);
        let mut finalized_at = Vec::with_capacity(total);
        let mut last = Instant::now();
        let mut finished_at = start;
        while latencies.len() < total {
            let Ok(Some(task)) =
                tokio::time::timeout(Duration::from_secs(60), updates.next()).await
            else {
                bail!(
                    "no task finalized for 60 s ({} of {total} done)",
                    latencies.len()
                );
            };
            if task.status != TaskStatus::Finalized {
                continue;
            }
            if let Some(at) = submitted.lock().expect("times").get(&task.task_id) {
                finished_at = Instant::now();
                latencies.push(finished_at - *at);
                finalized_at.push(finished_at - start);
                if let Some(window) = &window {
                    window.add_permits(1);
                }
            }
            if last.elapsed() >= Duration::from_secs(1) {
                eprintln!("  {:>7}/{total} tasks finalized", latencies.len());
                last = Instant::now();
            }
        }
        let submit_elapsed = submitter.await.context("submitter")??;
        let elapsed = finished_at - start;
        let batches: u64 = stats
            .iter()
            .map(|s| s.batches.load(std::sync::atomic::Ordering::Relaxed))
            .sum();
        let report = Measured {
            count: total,
            submitted_per_s: total as f64 / submit_elapsed.as_secs_f64(),
            finalized_per_s: total as f64 / elapsed.as_secs_f64(),
            elapsed_s: elapsed.as_secs_f64(),
            steady_per_s: steady_rate(&finalized_at),
            latency: Latency::of(latencies).expect("one"),
        };
        if args.json {
            outln!("{}", serde_json::to_string(&report)?);
        } else {
            let rate = match args.rate {
                0 => "unpaced".to_string(),
                r => format!("{r} tasks/s"),
            };
            let offered = match args.in_flight {
                Some(n) => format!("{rate}, at most {n} in flight"),
                None => rate,
            };
            outln!(
                "verity bench tasks: {} validators, {} workers (dev TEE), {total} tasks on digits-mlp, {} users, offered load {offered}",
                apis.len(), args.workers, args.users,
            );
            outln!(
                "  submitted:   {:>9.0} tasks/s over HTTP",
                report.submitted_per_s
            );
            outln!(
                "  finalized:   {:>9.0} tasks/s  ({total} in {:.2} s, {batches} receipt batches)",
                report.finalized_per_s,
                report.elapsed_s
            );
            outln!(
                "  steady:      {:>9.0} tasks/s  (between the 10 % and the 90 % marks of finalizations)",
                report.steady_per_s
            );
            report.latency.print();
        }

        use commonware_runtime::Spawner as _;
        let _ = context.stop(0, Some(Duration::from_secs(10))).await;
        Ok(())
    })
}

/// A throwaway devnet's files, written: its home (removed when this is dropped), the dev
/// account, `users` funded submitters, `workers` worker accounts and the validators' layout.
pub(crate) struct BenchNetwork {
    pub scratch: tempfile::TempDir,
    pub home: PathBuf,
    pub dev: AccountKey,
    pub users: Vec<AccountKey>,
    pub layout: run::NetworkLayout,
}

impl BenchNetwork {
    pub(crate) fn write(
        chain_id: &str,
        validators: u32,
        workers: u32,
        users: u64,
        p2p_port: u16,
        api_port: u16,
    ) -> Result<Self> {
        let scratch = tempfile::tempdir().context("creating a temporary devnet home")?;
        let home: PathBuf = scratch.path().into();
        let dev = AccountKey::generate();
        let users: Vec<AccountKey> = (0..users).map(|_| AccountKey::generate()).collect();
        let workers = create_worker_accounts(&home, workers)?;
        let mut genesis = devnet_genesis(chain_id, &dev.address(), &workers);
        genesis
            .accounts
            .extend(users.iter().map(|u| GenesisAccount {
                address: u.address(),
                balance: 1_000_000 * ONE_TOKEN,
            }));
        let layout = run::write_network(&home, genesis, validators, (p2p_port, api_port), None)?;
        Ok(Self {
            scratch,
            home,
            dev,
            users,
            layout,
        })
    }
}
