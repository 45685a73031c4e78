//! Playing OP disputes (`docs/protocol.md` §12), for every party: a worker defending its result,
//! a challenger attacking another's, and a referee re-running a tolerant model's task. Everything
//! a party needs is recomputed from the chain and the blob store (the model, the task's input, its
//! own run of them), so a restart loses no move: the next pass finds the open disputes again and
//! makes whatever move is owed.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use verity_client::api::{Dispute, Phase, Side, DEPTH};
use verity_client::Client;
use verity_data::cid_of;
use verity_infer::merkle::{self, Span};
use verity_infer::{Engine, Model};
use verity_types::{sha256, Action, Address, Hash};

/// One round of one dispute: a party answers each once, so a move still on its way to a block is
/// not sent twice, unless the round is still open [`RESEND_AFTER_BLOCKS`] later (the move was
/// dropped: a full mempool, a restarted node). A dissection round is its span and phase; a
/// referee round its deadline, which moves when a new referee is drawn.
pub type Round = (Hash, u64, u64, bool);

/// Blocks after which a move whose round is still open is sent again: well inside the chess
/// clock (150 blocks on a devnet, 40 by default), well past a block's inclusion.
pub const RESEND_AFTER_BLOCKS: u64 = 8;

pub fn round_of(dispute: &Dispute) -> Round {
    match (&dispute.game, &dispute.referee) {
        (Some(game), _) => (
            dispute.dispute_id,
            game.start,
            game.len,
            game.phase == Phase::OneStep,
        ),
        (None, Some(check)) => (dispute.dispute_id, check.deadline, 0, false),
        (None, None) => (dispute.dispute_id, 0, 0, false),
    }
}

/// The run a party stands by for one task: its trace, its output document, and what rebuilding
/// a step's witness needs.
pub struct Run {
    pub model: Arc<Model>,
    pub input: Vec<u8>,
    pub leaves: Vec<Hash>,
    /// The output document, byte for byte as a result file holds it.
    pub output: Vec<u8>,
}

impl Run {
    pub fn root(&self) -> Hash {
        merkle::root(&self.leaves)
    }
}

/// Runs `model` on the task input `input` as [`crate::service::run_task`] does and keeps the
/// trace's leaves and the output document.
pub fn run(
    engine: &Engine,
    model: Arc<Model>,
    input: Vec<u8>,
    corrupt: Option<usize>,
) -> Result<Run> {
    let out = crate::service::run_task(engine, &model, &input, corrupt)?;
    let output = serde_json::to_vec(&verity_infer::output::document(&model, &out))?;
    let leaves = out
        .trace
        .context("the engine returned no trace")?
        .leaves()
        .to_vec();
    Ok(Run {
        model,
        input,
        leaves,
        output,
    })
}

/// The dissection move `side` owes in a bit-exact model's `dispute` with the trace `run`, if it
/// owes one now.
fn dissection_move(
    engine: &Engine,
    dispute: &Dispute,
    side: Side,
    run: &Run,
) -> Result<Option<Action>> {
    let Some(game) = &dispute.game else {
        return Ok(None);
    };
    let index = match side {
        Side::Worker => 0,
        Side::Challenger => 1,
    };
    match game.phase {
        Phase::Dissect if game.revealed[index].is_none() => {
            let hashes = game
                .span()
                .descendants(DEPTH)
                .iter()
                .map(|p: &Span| {
                    let (start, end) = (p.start as usize, (p.start + p.len) as usize);
                    merkle::root(&run.leaves[start..end])
                })
                .collect();
            Ok(Some(Action::RevealChildren {
                dispute_id: dispute.dispute_id,
                hashes,
            }))
        }
        // The worker owes the one-step; a challenger sends it too, so that a silent worker's
        // clock is not all that ends the game.
        Phase::OneStep => {
            let inputs = run.model.task_inputs(&run.input)?;
            let (witness, _) = run
                .model
                .step_witness(engine, inputs, game.start as usize)?;
            Ok(Some(Action::OneStep {
                dispute_id: dispute.dispute_id,
                witness: witness.encode(),
                input: run.input.clone(),
            }))
        }
        _ => Ok(None),
    }
}

/// The move `party` owes in `dispute` with its run `run`, if it owes one now.
pub fn next_move(
    engine: &Engine,
    dispute: &Dispute,
    party: &Address,
    run: &Run,
) -> Result<Option<Action>> {
    let reveal = || Action::RevealOutput {
        dispute_id: dispute.dispute_id,
        output: run.output.clone(),
    };
    Ok(match &dispute.referee {
        // A tolerant model's dispute: the worker and the referee each reveal an output once.
        Some(check) if *party == dispute.worker => check.worker_output.is_none().then(reveal),
        Some(check) if *party == check.referee => check.referee_output.is_none().then(reveal),
        Some(_) => None,
        None if *party == dispute.worker => dissection_move(engine, dispute, Side::Worker, run)?,
        None if *party == dispute.challenger => {
            dissection_move(engine, dispute, Side::Challenger, run)?
        }
        None => None,
    })
}

/// A party in disputes: its runs of the tasks it is in a dispute over, and the rounds it has
/// answered. Both are caches; after a restart they are rebuilt from the chain.
pub struct Player {
    address: Address,
    engine: Arc<Engine>,
    /// Fault injection (`--dishonest`, `--frivolous`): the node whose output its runs corrupt.
    corrupt: Option<usize>,
    blobs: Blobs,
    runs: HashMap<Hash, Arc<Run>>,
    answered: Answered,
}

/// The rounds a party has answered, each with the height its move went out at.
#[derive(Default)]
struct Answered {
    sent: HashMap<Round, u64>,
    /// The chain's height when the open disputes were last read.
    height: u64,
}

impl Answered {
    /// Forgets the rounds of disputes no longer open, and those whose move went out
    /// [`RESEND_AFTER_BLOCKS`] ago or more: they are owed again.
    fn refresh(&mut self, height: u64, open: &HashSet<Hash>) {
        self.height = height;
        self.sent.retain(|(id, ..), at| {
            open.contains(id) && height < at.saturating_add(RESEND_AFTER_BLOCKS)
        });
    }

    fn contains(&self, round: &Round) -> bool {
        self.sent.contains_key(round)
    }

    fn insert(&mut self, round: Round) {
        self.sent.insert(round, self.height);
    }
}

impl Player {
    pub fn new(address: Address, engine: Arc<Engine>, corrupt: Option<usize>) -> Self {
        Player {
            address,
            engine,
            corrupt,
            blobs: Blobs::default(),
            runs: HashMap::new(),
            answered: Answered::default(),
        }
    }

    /// A task's model and input file, fetched and checked.
    pub async fn inputs(
        &mut self,
        client: &Client,
        model_id: &Hash,
        input: &Hash,
    ) -> Result<(Arc<Model>, Vec<u8>)> {
        Ok((
            self.blobs.model(client, model_id).await?,
            fetch(client, input).await?,
        ))
    }

    /// What [`run`] needs to run a task as this party does.
    pub fn runner(&self) -> (Arc<Engine>, Option<usize>) {
        (self.engine.clone(), self.corrupt)
    }

    /// Keeps `run` as what this party stands by for `task` (a challenger that just disputed it).
    pub fn stand_by(&mut self, task: Hash, run: Arc<Run>) {
        self.runs.insert(task, run);
    }

    /// The moves this party owes now in its open disputes, each with its round: send them, then
    /// mark each [`Player::sent`]. A move sent [`RESEND_AFTER_BLOCKS`] ago whose round is still
    /// open is owed again. Runs of tasks no longer disputed are dropped, except `keep`'s
    /// (disputes sent but not yet on chain).
    pub async fn owed(
        &mut self,
        client: &Client,
        keep: &HashSet<Hash>,
    ) -> Result<Vec<(Round, Action)>> {
        let height = client.status().await?.height;
        let open = client.open_disputes_of(&self.address).await?;
        self.answered
            .refresh(height, &open.iter().map(|d| d.dispute_id).collect());
        self.runs
            .retain(|task, _| keep.contains(task) || open.iter().any(|d| d.task_id == *task));
        let mut moves = Vec::new();
        for dispute in open {
            let round = round_of(&dispute);
            if self.answered.contains(&round) {
                continue;
            }
            let run = match self.runs.get(&dispute.task_id) {
                Some(run) => run.clone(),
                None => {
                    let task = client
                        .task(&dispute.task_id)
                        .await?
                        .context("a disputed task")?
                        .task;
                    let (model, input) = self
                        .inputs(client, &task.model_id, &task.input.hash)
                        .await?;
                    let (engine, corrupt) = self.runner();
                    let run = Arc::new(
                        tokio::task::spawn_blocking(move || run(&engine, model, input, corrupt))
                            .await??,
                    );
                    self.runs.insert(dispute.task_id, run.clone());
                    run
                }
            };
            if let Some(action) = next_move(&self.engine, &dispute, &self.address, &run)? {
                moves.push((round, action));
            }
        }
        Ok(moves)
    }

    /// The move of `round` went out: it is not sent again while it may still be on its way.
    pub fn sent(&mut self, round: Round) {
        self.answered.insert(round);
    }
}

/// Models fetched from the blob store and checked against their hashes.
#[derive(Default)]
struct Blobs {
    models: HashMap<Hash, Arc<Model>>,
}

impl Blobs {
    async fn model(&mut self, client: &Client, id: &Hash) -> Result<Arc<Model>> {
        if let Some(model) = self.models.get(id) {
            return Ok(model.clone());
        }
        let bytes = fetch(client, id).await?;
        let model = Arc::new(Model::from_bytes(&bytes).with_context(|| format!("model {id}"))?);
        self.models.insert(*id, model.clone());
        Ok(model)
    }
}

/// The blob with this hash, checked.
pub async fn fetch(client: &Client, hash: &Hash) -> Result<Vec<u8>> {
    let Some(bytes) = client.get_blob(&cid_of(hash)).await? else {
        bail!("blob {} is not in the node's store", cid_of(hash));
    };
    if sha256(&bytes) != *hash {
        bail!("blob {} does not hash to its name", cid_of(hash));
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_move_whose_round_stays_open_is_owed_again_and_a_closed_dispute_is_forgotten() {
        let dispute = Hash([7; 32]);
        let round: Round = (dispute, 0, 64, false);
        let open = HashSet::from([dispute]);
        let mut answered = Answered::default();
        answered.refresh(100, &open);
        answered.insert(round);
        answered.refresh(100 + RESEND_AFTER_BLOCKS - 1, &open);
        assert!(answered.contains(&round), "sent too recently to send again");
        // Still the same round: the move never made it into a block.
        answered.refresh(100 + RESEND_AFTER_BLOCKS, &open);
        assert!(
            !answered.contains(&round),
            "a dropped move must be sent again"
        );
        answered.insert(round);
        answered.refresh(100 + RESEND_AFTER_BLOCKS + 1, &HashSet::new());
        assert!(
            !answered.contains(&round),
            "a closed dispute's rounds are dropped"
        );
    }
}
