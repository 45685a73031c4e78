//! Playing OP disputes, for a worker defending its results and a challenger attacking others'
//! (`docs/protocol.md` §12). Everything a side needs is recomputed from the chain and the blob
//! store (the model, the task's input, its own run of them), so a restart loses no move: the
//! next pass finds the open disputes again and makes whatever move is owed.

use std::collections::HashMap;
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use verity_client::api::{Dispute, Phase, Side, DEPTH};
use verity_client::Client;
use verity_data::cid_of;
use verity_infer::merkle::{self, Span};
use verity_infer::{Engine, Model};
use verity_types::{sha256, Action, Hash};

/// One round of one dispute: a side answers each at most once, so a move still on its way to a
/// block is not sent again.
pub type Round = (Hash, u64, u64, bool);

pub fn round_of(dispute: &Dispute) -> Round {
    (
        dispute.dispute_id,
        dispute.game.start,
        dispute.game.len,
        dispute.game.phase == Phase::OneStep,
    )
}

/// The trace a side stands by for one task, and what rebuilding a step's witness needs.
pub struct Run {
    pub model: Arc<Model>,
    pub input: Vec<u8>,
    pub leaves: Vec<Hash>,
}

impl Run {
    pub fn root(&self) -> Hash {
        merkle::root(&self.leaves)
    }
}

/// Runs `model` on the task input `input` and keeps the trace's leaves: honestly, or (fault
/// injection for tests) with node `corrupt`'s output changed.
pub fn run(
    engine: &Engine,
    model: Arc<Model>,
    input: Vec<u8>,
    corrupt: Option<usize>,
) -> Result<Run> {
    let inputs = model
        .task_inputs(&input)
        .context("decoding the task input")?;
    let out = match corrupt {
        Some(step) => engine.run_corrupted(
            &model,
            inputs,
            step.min(model.step_count().saturating_sub(1)),
        )?,
        None => engine.run(&model, inputs, true)?,
    };
    let leaves = out
        .trace
        .context("the engine returned no trace")?
        .leaves()
        .to_vec();
    Ok(Run {
        model,
        input,
        leaves,
    })
}

/// The move `side` owes in `dispute` with the trace `run`, if it owes one now.
pub fn next_move(
    engine: &Engine,
    dispute: &Dispute,
    side: Side,
    run: &Run,
) -> Result<Option<Action>> {
    let game = &dispute.game;
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

/// Models and inputs fetched from the blob store and checked against their hashes, kept while
/// their disputes last.
#[derive(Default)]
pub struct Blobs {
    models: HashMap<Hash, Arc<Model>>,
}

impl Blobs {
    pub async fn model(&mut self, client: &Client, id: &Hash) -> Result<Arc<Model>> {
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
