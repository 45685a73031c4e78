//! The challenger (`verity challenger`): bonds, follows OP results while their windows are
//! open, re-executes each with verity-infer, and on a mismatch opens a dispute and plays it to
//! the end. It keeps nothing but a cache: what it checked, ran and answered is found again on
//! the chain after a restart, and its runs are recomputed.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use tracing::{info, warn};
use verity_client::api::{dispute_id, Side, TaskStatus};
use verity_client::{Client, PageRequest};
use verity_infer::Engine;
use verity_types::{AccountKey, Action, Address, Amount, Hash, Mode};

use crate::disputes::{fetch, next_move, run, Blobs, Run};

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
}

struct Challenger {
    config: ChallengerConfig,
    client: Client,
    address: Address,
    engine: Arc<Engine>,
    blobs: Blobs,
    checked: HashSet<Hash>,
    /// Tasks it sent an OpenDispute for, not yet seen on chain.
    opened: HashSet<Hash>,
    runs: HashMap<Hash, Run>,
    answered: HashSet<crate::disputes::Round>,
}

/// Runs the challenger until `stop` resolves.
pub async fn run_challenger(
    config: ChallengerConfig,
    stop: impl std::future::Future<Output = ()>,
) -> Result<()> {
    tokio::pin!(stop);
    let client = Client::new(&config.api);
    let mut challenger = Challenger {
        address: config.account.address(),
        engine: Arc::new(Engine::new(1)?),
        config,
        client,
        blobs: Blobs::default(),
        checked: HashSet::new(),
        opened: HashSet::new(),
        runs: HashMap::new(),
        answered: HashSet::new(),
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

    /// Re-executes OP results in their windows, those whose window closes first first, all at
    /// once on every core; disputes those whose trace differs from its own.
    async fn watch(&mut self) -> Result<()> {
        let height = self.client.status().await?.height;
        let recent = self
            .client
            .tasks(&PageRequest {
                after: None,
                limit: Some(200),
            })
            .await?
            .tasks;
        let mut due = Vec::new();
        for task in recent {
            if task.mode != Mode::Op
                || task.status != TaskStatus::Challengeable
                || self.checked.contains(&task.task_id)
                || (!self.config.models.is_empty() && !self.config.models.contains(&task.model_id))
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
                Some(until) if height <= until => due.push((until, task, record.trace_root)),
                _ => {
                    self.checked.insert(task.task_id);
                }
            }
        }
        due.sort_by_key(|(until, ..)| *until);
        // The most urgent first, a few at a time: a dispute goes out as soon as its run is done.
        for chunk in due.chunks(rayon::current_num_threads().max(1) * 4) {
            self.run_missing(chunk).await?;
            for (_, task, root) in chunk {
                self.dispute_if_wrong(task, *root).await?;
            }
            self.play().await?;
        }
        Ok(())
    }

    /// Runs the tasks of `due` it has not run yet, on every core.
    async fn run_missing(&mut self, due: &[(u64, verity_client::api::Task, Hash)]) -> Result<()> {
        let mut work = Vec::new();
        for (_, task, _) in due {
            if self.runs.contains_key(&task.task_id) {
                continue;
            }
            let model = self.blobs.model(&self.client, &task.model_id).await?;
            let input = fetch(&self.client, &task.input.hash).await?;
            // A frivolous challenger stands by a made-up trace it can defend consistently.
            let corrupt = self
                .config
                .frivolous
                .then(|| model.step_count().saturating_sub(1));
            work.push((task.task_id, model, input, corrupt));
        }
        let engine = self.engine.clone();
        let runs = tokio::task::spawn_blocking(move || {
            use rayon::prelude::*;
            work.into_par_iter()
                .map(|(id, model, input, corrupt)| (id, run(&engine, model, input, corrupt)))
                .collect::<Vec<_>>()
        })
        .await?;
        for (task_id, mine) in runs {
            self.runs.insert(task_id, mine?);
        }
        Ok(())
    }

    /// Opens a dispute when its own run's root is not the result's.
    async fn dispute_if_wrong(
        &mut self,
        task: &verity_client::api::Task,
        root: Hash,
    ) -> Result<()> {
        let mine = &self.runs[&task.task_id];
        if mine.root() == root {
            self.checked.insert(task.task_id);
            self.runs.remove(&task.task_id);
            return Ok(());
        }
        // Checked once the dispute is on chain; until then (or the window's end) it is opened
        // again, so a refused or lost transaction is not the end of it.
        let id = dispute_id(&task.task_id, &self.address);
        if self.opened.contains(&task.task_id) && self.client.dispute(&id).await?.is_some() {
            self.checked.insert(task.task_id);
            return Ok(());
        }
        self.opened.insert(task.task_id);
        info!(challenger = %self.config.label, task = %task.task_id, "result differs from re-execution; disputing");
        let action = Action::OpenDispute {
            task_id: task.task_id,
            trace_root: mine.root(),
            trace_len: mine.leaves.len() as u32,
        };
        match self
            .client
            .submit_action(&self.config.account, action, 0)
            .await
        {
            Ok(_) => {}
            Err(e) => {
                warn!(challenger = %self.config.label, task = %task.task_id, error = %e, "could not open a dispute; trying again")
            }
        }
        Ok(())
    }

    /// Makes the move owed in each of its open disputes.
    async fn play(&mut self) -> Result<()> {
        let open: Vec<_> = self
            .client
            .open_disputes_of(&self.address)
            .await?
            .into_iter()
            .filter(|d| d.challenger == self.address)
            .collect();
        self.answered
            .retain(|(id, ..)| open.iter().any(|d| d.dispute_id == *id));
        let checked = &self.checked;
        self.runs
            .retain(|task, _| !checked.contains(task) || open.iter().any(|d| d.task_id == *task));
        for dispute in open {
            let round = crate::disputes::round_of(&dispute);
            if self.answered.contains(&round) {
                continue;
            }
            if !self.runs.contains_key(&dispute.task_id) {
                // After a restart: run again what it stood by.
                let task = self
                    .client
                    .task(&dispute.task_id)
                    .await?
                    .context("a disputed task")?
                    .task;
                let model = self.blobs.model(&self.client, &task.model_id).await?;
                let input = fetch(&self.client, &task.input.hash).await?;
                let engine = self.engine.clone();
                let corrupt = self
                    .config
                    .frivolous
                    .then(|| model.step_count().saturating_sub(1));
                let mine = tokio::task::spawn_blocking(move || run(&engine, model, input, corrupt))
                    .await??;
                self.runs.insert(dispute.task_id, mine);
            }
            let run = &self.runs[&dispute.task_id];
            let Some(action) = next_move(&self.engine, &dispute, Side::Challenger, run)? else {
                continue;
            };
            info!(challenger = %self.config.label, dispute = %dispute.dispute_id, action = action.name(), "playing a dispute");
            self.client
                .submit_action(&self.config.account, action, 0)
                .await?;
            self.answered.insert(round);
        }
        Ok(())
    }
}
