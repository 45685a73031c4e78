//! `verity bench chat`: a throwaway devnet with in-process workers serving a language model
//! (the bundled tiny-lm, or a model directory), a burst of generation tasks, and what a user
//! sees: verified answers and tokens per second, and the latency from submission to a verified
//! answer. Each answer is checked as `verity chat` checks it (enclave signature, registered
//! enclave, policy, finality, output hash, trace root, prompt and seed) before it counts; an
//! answer's text is shown only once verified, so that latency is also the time to the first
//! verified token.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _, Result};
use clap::Args;
use futures::StreamExt as _;
use serde::Serialize;
use verity_client::Client;
use verity_node::{mempool::SenderCache, mempool::MAX_NONCE_GAP, run};
use verity_state::TaskStatus;
use verity_types::{AccountKey, Action, DataRef, Hash, Mode, PromptDocument, TxBody};

use crate::bench_cmd::{spawn_submitter, Latency, Load, SubmitTimes};
use crate::bench_tasks::BenchNetwork;
use crate::chain_cmd::{
    init_logs, register_bundled_language_model, spawn_workers, wait_for_workers, DataVerifiers,
};
use crate::commands::language::{language_model_spec, LanguageModelClient, Prepared};

#[derive(Args)]
pub struct ChatArgs {
    #[arg(long, default_value_t = 4)]
    validators: u32,
    #[arg(long, default_value_t = 3)]
    workers: u32,
    /// Generation tasks to submit.
    #[arg(long, default_value_t = 100)]
    count: u64,
    /// Most tokens in each answer.
    #[arg(long, default_value_t = 32)]
    max_tokens: u32,
    /// Distinct submitting accounts.
    #[arg(long, default_value_t = 16)]
    users: u64,
    /// A model directory (as `verity model register` reads it) to serve instead of the bundled
    /// tiny-lm, e.g. target/smollm2.
    #[arg(long)]
    model: Option<PathBuf>,
    /// Print what was measured as one JSON object.
    #[arg(long)]
    json: bool,
    /// The throwaway network's first API port (validator i's is this + i).
    #[arg(long, env = "VERITY_BENCH_API_PORT", default_value_t = 18645)]
    api_port: u16,
    /// Its first p2p port.
    #[arg(long, env = "VERITY_BENCH_P2P_PORT", default_value_t = 31400)]
    p2p_port: u16,
}

const CHAIN_ID: &str = "verity-bench-chat";

/// Prompts the tasks cycle through, each made distinct by its task number.
const PROMPTS: [&str; 4] = [
    "Call me Ishmael.",
    "The sea was",
    "It was the whale that",
    "What is 2+2?",
];

/// What `--json` prints.
#[derive(Serialize)]
struct ChatMeasured {
    model: String,
    count: usize,
    verified_per_s: f64,
    tokens_per_s: f64,
    mean_tokens: f64,
    elapsed_s: f64,
    latency: Latency,
}

pub fn chat(args: ChatArgs) -> Result<()> {
    init_logs("warn");
    if args.users == 0 || args.count == 0 || args.workers == 0 || args.max_tokens == 0 {
        bail!("--count, --users, --workers and --max-tokens must be positive");
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

    commonware_runtime::Runner::start(run::runner(&home.join("consensus")), |context| async move {
        let started = run::start_nodes(
            &context,
            run::NodeConfig::load_all(&layout.nodes)?,
            SenderCache::default(),
        )
        .await?;
        let apis: Vec<_> = started.iter().map(|s| s.api).collect();
        let clients: Vec<Client> = apis.iter().map(|a| Client::new(&a.to_string())).collect();
        let model = match &args.model {
            None => register_bundled_language_model(&clients[0], &dev, &home).await?,
            Some(dir) => {
                let name = dir
                    .file_name()
                    .and_then(|n| n.to_str())
                    .unwrap_or("model")
                    .to_string();
                eprintln!(
                    "registering {} (its files are uploaded as blobs)",
                    dir.display()
                );
                let (spec, files) = language_model_spec(
                    dir,
                    name,
                    "1".into(),
                    "unknown".into(),
                    crate::tokens::parse("0.00001", false)?,
                    crate::tokens::parse("0.00002", false)?,
                    vec![Mode::Tee],
                )?;
                crate::task_cmd::register_language_model(&clients[0], &dev, spec, files).await?
            }
        };
        let stats = spawn_workers(&home, &apis, args.workers, 0, DataVerifiers::NONE)?;
        wait_for_workers(&clients[0], args.workers as usize).await?;
        let lm = Arc::new(LanguageModelClient::open(clients[0].clone(), &model.to_string()).await?);
        let document = |n: u64| PromptDocument {
            messages: None,
            prompt: Some(format!("{} ({n})", PROMPTS[n as usize % PROMPTS.len()])),
            max_tokens: args.max_tokens,
            temperature: 0.8,
            top_k: Some(40),
            top_p: None,
            seed: Some(n),
            stop: Vec::new(),
        };
        let fees = clients[0].status().await?.fees;
        let task_tx = |p: &Prepared, nonce: u64, key: &AccountKey| {
            let body = TxBody {
                chain_id: CHAIN_ID.into(),
                nonce,
                fee: 0,
                action: Action::SubmitTask {
                    model_id: model,
                    input: DataRef::of(&p.bytes),
                    mode: Mode::Tee,
                    max_fee: p.escrow,
                    deadline_blocks: 10_000,
                    input_commitment: None,
                    dataset: None,
                    generation: Some(p.limits),
                },
            };
            let fee = body.required_fee(&fees);
            TxBody { fee, ..body }.sign(key)
        };
        // Each worker's first generation loads the model's files: a warm-up, not measured.
        let warmups: Vec<Prepared> = (0..2 * u64::from(args.workers))
            .map(|n| lm.prepare(document(u64::MAX - n), Mode::Tee))
            .collect::<Result<_, _>>()?;
        clients[0]
            .put_blobs(warmups.iter().map(|p| p.bytes.clone()).collect(), &dev)
            .await?;
        let first = clients[0].account(&dev.address()).await?.pending_nonce;
        let mut warming = Vec::new();
        for (i, p) in warmups.iter().enumerate() {
            let tx = task_tx(p, first + i as u64, &dev);
            clients[0].submit_raw(&tx.encode()).await?;
            warming.push(tx.hash());
        }
        eprintln!(
            "warming up: {} generations load the model on the workers",
            warming.len()
        );
        let deadline = Instant::now() + Duration::from_secs(900);
        for id in &warming {
            loop {
                let status = clients[0].task(id).await?.map(|v| v.task.status);
                match status {
                    Some(TaskStatus::Finalized) => break,
                    Some(
                        s @ (TaskStatus::Failed | TaskStatus::Expired | TaskStatus::Cancelled),
                    ) => {
                        bail!("warm-up task {id} ended {s:?}")
                    }
                    _ if Instant::now() > deadline => bail!("the warm-up took over 900 s"),
                    _ => tokio::time::sleep(Duration::from_millis(200)).await,
                }
            }
        }
        let prepared: Vec<Prepared> = (0..args.count)
            .map(|n| lm.prepare(document(n), Mode::Tee))
            .collect::<Result<_, _>>()?;
        clients[0]
            .put_blobs(prepared.iter().map(|p| p.bytes.clone()).collect(), &dev)
            .await?;
        let mut by_task: HashMap<Hash, Prepared> = HashMap::new();
        let mut txs = Vec::new();
        for (n, p) in prepared.into_iter().enumerate() {
            let n = n as u64;
            let tx = task_tx(&p, n / args.users, &users[(n % args.users) as usize]);
            by_task.insert(tx.hash(), p);
            txs.push((tx.hash(), tx.encode()));
        }
        let total = txs.len();
        eprintln!(
            "{} validators, {} workers ready; {total} generation tasks of at most {} tokens on {}",
            apis.len(),
            args.workers,
            args.max_tokens,
            lm.name()
        );
        let by_task = Arc::new(by_task);
        let mut updates = Box::pin(started[0].node.task_updates());
        let submitted = SubmitTimes::default();
        let start = Instant::now();
        let load = Load {
            rate: 0,
            concurrency: 16,
            window: None,
        };
        let submitter = spawn_submitter(clients.clone(), txs, start, load, submitted.clone());
        // Each finalized task is verified as a client would, concurrently with the rest.
        let mut checks = futures::stream::FuturesUnordered::new();
        let mut latencies = Vec::with_capacity(total);
        let mut tokens = 0usize;
        let mut finished_at = start;
        let mut last = Instant::now();
        while latencies.len() < total {
            tokio::select! {
                update = tokio::time::timeout(Duration::from_secs(120), updates.next()), if latencies.len() + checks.len() < total => {
                    let Ok(Some(task)) = update else {
                        bail!("no task finalized for 120 s ({} of {total} verified)", latencies.len());
                    };
                    if !by_task.contains_key(&task.task_id) {
                        continue;
                    }
                    match task.status {
                        TaskStatus::Finalized => {
                            let (lm, by_task) = (lm.clone(), by_task.clone());
                            checks.push(async move {
                                let answer = lm.verify(&task.task_id, &by_task[&task.task_id]).await;
                                (task.task_id, answer, Instant::now())
                            });
                        }
                        TaskStatus::Failed | TaskStatus::Expired | TaskStatus::Cancelled => {
                            bail!("task {} ended {:?} ({:?})", task.task_id, task.status, task.failure);
                        }
                        _ => {}
                    }
                }
                Some((task, answer, at)) = checks.next() => {
                    let answer = answer.with_context(|| format!("verifying task {task}"))?;
                    tokens += answer.output.tokens.len();
                    let sent = submitted.lock().expect("times")[&task];
                    latencies.push(at - sent);
                    finished_at = finished_at.max(at);
                    if last.elapsed() >= Duration::from_secs(1) {
                        eprintln!("  {:>6}/{total} answers verified", latencies.len());
                        last = Instant::now();
                    }
                }
            }
        }
        submitter.await.context("submitter")??;
        let elapsed = (finished_at - start).as_secs_f64();
        let batches: u64 = stats
            .iter()
            .map(|s| s.batches.load(std::sync::atomic::Ordering::Relaxed))
            .sum();
        let report = ChatMeasured {
            model: lm.name().to_string(),
            count: total,
            verified_per_s: total as f64 / elapsed,
            tokens_per_s: tokens as f64 / elapsed,
            mean_tokens: tokens as f64 / total as f64,
            elapsed_s: elapsed,
            latency: Latency::of(latencies).expect("one"),
        };
        if args.json {
            outln!("{}", serde_json::to_string(&report)?);
        } else {
            outln!(
                "verity bench chat: {} validators, {} workers (dev TEE), {total} generation tasks on {}, at most {} tokens each",
                apis.len(),
                args.workers,
                report.model,
                args.max_tokens
            );
            outln!(
                "  verified:    {:>9.1} answers/s  ({total} in {:.2} s, {batches} receipt batches)",
                report.verified_per_s,
                report.elapsed_s
            );
            outln!(
                "  tokens:      {:>9.1} tokens/s   ({:.1} per answer)",
                report.tokens_per_s,
                report.mean_tokens
            );
            report
                .latency
                .print_as("submit → verified answer = first verified token");
        }

        use commonware_runtime::Spawner as _;
        let _ = context.stop(0, Some(Duration::from_secs(10))).await;
        Ok(())
    })
}
