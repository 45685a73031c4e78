//! The challenger (`verity challenger`): bonds, follows OP results while their windows are
//! open, re-executes each with verity-infer, and on a mismatch (another trace on a bit-exact
//! model, an output beyond the tolerance on a tolerant one) opens a dispute and plays it to the
//! end. It keeps nothing but a cache: what it checked, ran and answered is found again on the
//! chain after a restart, and its runs are recomputed.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use tracing::{info, warn};
use verity_client::api::{dispute_id, ExecutionRecord, Task, TaskStatus};
use verity_client::{Client, PageRequest};
use verity_infer::{output, Engine, OutputDocument};
use verity_types::{AccountKey, Action, Address, Amount, Hash};

use crate::disputes::{fetch, Player, Run};
use crate::language::LanguageModels;

pub struct ChallengerConfig {
    pub api: String,
    pub account: AccountKey,
    /// Bond to hold, in base units.
    pub bond: Amount,
    /// Models to watch; empty watches every model.
    pub models: Vec<Hash>,
    /// Fault injection for testing disputes only: challenge honest results too, with a made-up
    /// trace, and defend it.
    pub frivolous: bool,
    pub poll: Duration,
    pub label: String,
    /// Where language models' files are kept.
    pub home: std::path::PathBuf,
}

/// Open windows read per request while collecting the work list.
const WINDOW_PAGE: u32 = 500;

struct Challenger {
    config: ChallengerConfig,
    client: Client,
    address: Address,
    player: Player,
    /// Results it checked, each as its task and the worker whose result it is: a disproven
    /// task runs again on another worker, whose result is checked too.
    checked: HashSet<(Hash, Address)>,
    /// Tasks it sent an OpenDispute for, not yet seen on chain.
    opened: HashSet<Hash>,
    /// Its runs of results it is checking (a generation's leaves follow the worker's length).
    runs: HashMap<(Hash, Address), Arc<Run>>,
    /// Each model's tolerance, in ppm.
    tolerances: HashMap<Hash, u32>,
}

/// Runs the challenger until `stop` resolves.
pub async fn run_challenger(
    config: ChallengerConfig,
    stop: impl std::future::Future<Output = ()>,
) -> Result<()> {
    tokio::pin!(stop);
    let client = Client::new(&config.api);
    // A frivolous challenger stands by a made-up trace it can defend consistently: its runs
    // corrupt the last node.
    let corrupt = config.frivolous.then_some(usize::MAX);
    let mut challenger = Challenger {
        address: config.account.address(),
        player: Player::new(
            config.account.address(),
            Arc::new(Engine::new(1)?),
            corrupt,
            Arc::new(tokio::sync::Mutex::new(LanguageModels::new(&config.home))),
        ),
        config,
        client,
        checked: HashSet::new(),
        opened: HashSet::new(),
        runs: HashMap::new(),
        tolerances: HashMap::new(),
    };
    tokio::select! {
        _ = &mut stop => return Ok(()),
        bonded = challenger.bond() => bonded?,
    }
    let mut failures: u32 = 0;
    loop {
        let wait = match tokio::select! {
            _ = &mut stop => return Ok(()),
            result = challenger.round() => result,
        } {
            Ok(()) => {
                failures = 0;
                challenger.config.poll
            }
            Err(e) => {
                let wait = Duration::from_millis(500u64.saturating_mul(1 << failures.min(6)))
                    .min(Duration::from_secs(30));
                failures += 1;
                warn!(challenger = %challenger.config.label, error = %format!("{e:#}"), "challenger round failed; retrying");
                wait
            }
        };
        tokio::select! {
            _ = &mut stop => return Ok(()),
            _ = tokio::time::sleep(wait) => {}
        }
    }
}

impl Challenger {
    /// Bonds up to the configured amount, waiting for the chain to have a block first.
    async fn bond(&mut self) -> Result<()> {
        let deadline = std::time::Instant::now() + Duration::from_secs(120);
        loop {
            match self.client.challenger(&self.address).await {
                Ok(view) => {
                    let bonded = view.challenger.map_or(0, |c| c.bond);
                    if bonded >= self.config.bond {
                        return Ok(());
                    }
                    let tx = self
                        .client
                        .submit_action(
                            &self.config.account,
                            Action::RegisterChallenger {
                                amount: self.config.bond - bonded,
                            },
                            0,
                        )
                        .await?;
                    let receipt = self
                        .client
                        .wait_for_tx(&tx.hash(), Duration::from_secs(60))
                        .await?;
                    if let verity_client::api::TxStatus::Failed { error } = receipt.status {
                        anyhow::bail!("bonding failed: {error}");
                    }
                    info!(challenger = %self.config.label, bond = %self.config.bond, "bonded");
                    return Ok(());
                }
                Err(e) if std::time::Instant::now() < deadline => {
                    warn!(error = %e, "waiting for the node");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Moves owed in open disputes come first: their clocks are running.
    async fn round(&mut self) -> Result<()> {
        self.play().await?;
        self.watch().await
    }

    /// Re-executes OP results in their windows, those whose window closes first first, a few
    /// at a time on every core; disputes those that differ from its own run. Every open window
    /// is read, page by page; a task whose files or run fail is passed over this round and
    /// tried again the next, without failing the others.
    async fn watch(&mut self) -> Result<()> {
        let height = self.client.status().await?.height;
        let mut due = Vec::new();
        let mut after = None;
        loop {
            let page = self
                .client
                .challengeable_tasks(&PageRequest {
                    after,
                    limit: Some(WINDOW_PAGE),
                })
                .await?;
            for task in page.tasks {
                // Every window is an OP result's; one already disputed is not challengeable.
                let Some(worker) = task.worker else {
                    continue;
                };
                if task.status != TaskStatus::Challengeable
                    || self.checked.contains(&(task.task_id, worker))
                    || (!self.config.models.is_empty()
                        && !self.config.models.contains(&task.model_id))
                {
                    continue;
                }
                let Some(view) = self.client.task(&task.task_id).await? else {
                    continue;
                };
                let Some(record) = view.record else {
                    continue;
                };
                match record.challenge_until {
                    Some(until) if height <= until => due.push((until, task, record)),
                    _ => {
                        self.checked.insert((task.task_id, record.worker));
                    }
                }
            }
            match page.next {
                Some(next) => after = Some(next),
                None => break,
            }
        }
        // The most urgent first: a dispute goes out as soon as its run is done.
        for chunk in due.chunks(rayon::current_num_threads().max(1) * 4) {
            self.run_missing(chunk).await?;
            for (_, task, record) in chunk {
                if !self.runs.contains_key(&(task.task_id, record.worker)) {
                    continue;
                }
                if let Err(e) = self.dispute_if_wrong(task, record).await {
                    warn!(challenger = %self.config.label, task = %task.task_id, error = %format!("{e:#}"), "could not check this result; trying again next round");
                }
            }
            self.play().await?;
        }
        Ok(())
    }

    /// Runs the tasks of `due` it has not run yet, a few at a time. A task whose model or input
    /// cannot be fetched, or whose run fails, is left out (and warned of) this round. A
    /// generation is run against the worker's document, which it needs to dispute one.
    async fn run_missing(&mut self, due: &[(u64, Task, ExecutionRecord)]) -> Result<()> {
        let mut work = Vec::new();
        for (_, task, record) in due {
            if self.runs.contains_key(&(task.task_id, record.worker)) {
                continue;
            }
            let theirs = match task.generation {
                Some(_) => match fetch(&self.client, &record.output_hash).await {
                    Ok(bytes) => match serde_json::from_slice(&bytes) {
                        Ok(doc) => Some(doc),
                        Err(e) => {
                            warn!(challenger = %self.config.label, task = %task.task_id, error = %e, "the worker's output is not a generation document; disputing it");
                            None
                        }
                    },
                    Err(e) => {
                        warn!(challenger = %self.config.label, task = %task.task_id, error = %format!("{e:#}"), "cannot fetch the worker's output; trying again next round");
                        continue;
                    }
                },
                None => None,
            };
            match self.player.prepare(&self.client, task).await {
                Ok(prepared) => work.push((task.clone(), record.worker, prepared, theirs)),
                Err(e) => {
                    warn!(challenger = %self.config.label, task = %task.task_id, error = %format!("{e:#}"), "cannot fetch this task's files; trying again next round");
                }
            }
        }
        let player = &self.player;
        let runs = futures::future::join_all(work.into_iter().map(
            |(task, worker, prepared, theirs)| async move {
                let run = player.execute(&task, prepared, theirs).await;
                ((task.task_id, worker), run)
            },
        ))
        .await;
        for (key, mine) in runs {
            match mine {
                Ok(mine) => {
                    self.runs.insert(key, Arc::new(mine));
                }
                Err(e) => {
                    warn!(challenger = %self.config.label, task = %key.0, error = %format!("{e:#}"), "cannot re-execute this task; trying again next round");
                }
            }
        }
        Ok(())
    }

    /// Whether its own run disagrees with the worker's result: another trace root on a
    /// bit-exact model; an output beyond the tolerance (or none readable) on a tolerant one.
    async fn differs(&mut self, task: &Task, record: &ExecutionRecord, mine: &Run) -> Result<bool> {
        let tolerance = match self.tolerances.get(&task.model_id) {
            Some(t) => *t,
            None => {
                let model = self
                    .client
                    .model(&task.model_id)
                    .await?
                    .with_context(|| format!("model {}", task.model_id))?;
                self.tolerances
                    .insert(task.model_id, model.spec.tolerance_ppm);
                model.spec.tolerance_ppm
            }
        };
        if tolerance == 0 {
            return Ok(mine.root() != record.trace_root);
        }
        let theirs = match fetch(&self.client, &record.output_hash).await {
            Ok(bytes) => OutputDocument::parse(&bytes).ok(),
            Err(e) => {
                warn!(challenger = %self.config.label, task = %task.task_id, error = %format!("{e:#}"), "the worker's output is not in the store; disputing makes it reveal it");
                None
            }
        };
        let mine = OutputDocument::parse(&mine.output).context("its own output document")?;
        Ok(theirs.is_none_or(|theirs| output::agree(&theirs, &mine, tolerance).is_err()))
    }

    /// Opens a dispute when its own run disagrees with the result.
    async fn dispute_if_wrong(&mut self, task: &Task, record: &ExecutionRecord) -> Result<()> {
        let key = (task.task_id, record.worker);
        let mine = self.runs[&key].clone();
        if !self.differs(task, record, &mine).await? {
            self.checked.insert(key);
            self.runs.remove(&key);
            return Ok(());
        }
        // Checked once the dispute is on chain; until then (or the window's end) it is opened
        // again, so a refused or lost transaction is not the end of it.
        let id = dispute_id(&task.task_id, &record.worker, &self.address);
        if self.opened.contains(&task.task_id) && self.client.dispute(&id).await?.is_some() {
            self.checked.insert(key);
            self.opened.remove(&task.task_id);
            self.runs.remove(&key);
            return Ok(());
        }
        self.opened.insert(task.task_id);
        self.player.stand_by(task.task_id, mine.clone());
        info!(challenger = %self.config.label, task = %task.task_id, "result differs from re-execution; disputing");
        let action = Action::OpenDispute {
            task_id: task.task_id,
            trace_root: mine.root(),
            trace_len: mine.leaves.len() as u32,
        };
        if let Err(e) = self
            .client
            .submit_action(&self.config.account, action, 0)
            .await
        {
            warn!(challenger = %self.config.label, task = %task.task_id, error = %e, "could not open a dispute; trying again");
        }
        Ok(())
    }

    /// Makes the move owed in each of its open disputes.
    async fn play(&mut self) -> Result<()> {
        for (round, action) in self.player.owed(&self.client, &self.opened).await? {
            info!(challenger = %self.config.label, action = action.name(), "playing a dispute");
            self.client
                .submit_action(&self.config.account, action, 0)
                .await?;
            self.player.sent(round);
        }
        Ok(())
    }
}
