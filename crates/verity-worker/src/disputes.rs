//! Playing OP disputes (`docs/protocol.md` §12), for every party: a worker defending its result,
//! a challenger attacking another's, and a referee re-running a tolerant model's task. Everything
//! a party needs is recomputed from the chain and the blob store (the model, the task's input, its
//! own run of them), so a restart loses no move: the next pass finds the open disputes again and
//! makes whatever move is owed.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use anyhow::{bail, Context, Result};
use verity_client::api::{Dispute, Phase, Side, Task, DEPTH};
use verity_client::Client;
use verity_data::cid_of;
use verity_infer::merkle::{self, Span};
use verity_infer::{Engine, Model};
use verity_lm::dispute::PassTarget;
use verity_lm::task::{output_bytes, token_leaves};
use verity_lm::ServedModel;
use verity_types::{generation_leaf, sha256, Action, Address, GenerationDocument, Hash};

use crate::language::LanguageModels;

/// One round of one dispute: a party answers each once, so a move still on its way to a block is
/// not sent twice, unless the round is still open [`RESEND_AFTER_BLOCKS`] later (the move was
/// dropped: a full mempool, a restarted node). A dissection round is its span and stage (0 the
/// dissection, 1 its one-step, 2 and 3 the same below a generation's opened token); a referee
/// round its deadline, which moves when a new referee is drawn.
pub type Round = (Hash, u64, u64, u8);

/// Blocks after which a move whose round is still open is sent again: well inside the chess
/// clock (150 blocks on a devnet, 40 by default), well past a block's inclusion.
pub const RESEND_AFTER_BLOCKS: u64 = 8;

pub fn round_of(dispute: &Dispute) -> Round {
    match (&dispute.game, &dispute.referee) {
        (Some(game), _) => {
            let stage =
                u8::from(game.phase == Phase::OneStep) + 2 * u8::from(dispute.generation.is_some());
            (dispute.dispute_id, game.start, game.len, stage)
        }
        (None, Some(check)) => (dispute.dispute_id, check.deadline, 0, 0),
        (None, None) => (dispute.dispute_id, 0, 0, 0),
    }
}

/// The run a party stands by for one task: its trace's leaves (a generation's token leaves),
/// its output document, and what rebuilding a step's witness needs.
pub struct Run {
    pub leaves: Vec<Hash>,
    /// The output document, byte for byte as a result file holds it.
    pub output: Vec<u8>,
    pub source: RunSource,
}

pub enum RunSource {
    Plain {
        model: Arc<Model>,
        input: Vec<u8>,
    },
    Language {
        model: Arc<ServedModel>,
        prompt: Vec<u8>,
        /// Its own generation; its leaves may be followed by the disputed worker's (see
        /// [`language_run`]).
        doc: GenerationDocument,
        /// Forward-pass leaves already computed, by token.
        passes: Mutex<HashMap<usize, Arc<Vec<Hash>>>>,
    },
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
        leaves,
        output,
        source: RunSource::Plain { model, input },
    })
}

/// The leaf a challenger commits to just past the end of its own generation, when the worker's
/// goes on after the end-of-sequence token it also chose: the game then lands there, and the
/// worker's document, opened, shows it generated past the end.
fn past_the_end(index: usize) -> Hash {
    generation_leaf(index as u32, &Hash::ZERO, u32::MAX)
}

/// Generates a task as [`crate::language::generate`] does. Against the disputed worker's
/// document `theirs`, the leaves are made as long as the worker's (a dispute is over its
/// length): cut, or followed by the worker's own leaves after the end, so the first leaf that
/// differs is the first token the two generations differ at.
pub fn language_run(
    engine: &Engine,
    model: Arc<ServedModel>,
    task: &Task,
    prompt: Vec<u8>,
    corrupt: Option<usize>,
    theirs: Option<&GenerationDocument>,
) -> Result<Run> {
    let limits = task
        .generation
        .as_ref()
        .context("a generation task names its limits")?;
    let doc = crate::language::generate(engine, &model, &task.task_id, limits, &prompt, corrupt)
        .map_err(|reason| anyhow::anyhow!("the prompt cannot be generated from: {reason:?}"))?;
    let output = output_bytes(&doc);
    let mut leaves = token_leaves(&doc);
    if let Some(theirs) = theirs {
        let other = token_leaves(theirs);
        if leaves.len() >= other.len() {
            leaves.truncate(other.len());
        } else {
            let end = leaves.len();
            let ended = doc
                .tokens
                .last()
                .is_some_and(|t| model.renderer().config().eos_token_ids.contains(&t.id));
            if other[..end] == leaves[..] && ended {
                leaves.push(past_the_end(end));
                leaves.extend_from_slice(&other[end + 1..]);
            } else {
                leaves.extend_from_slice(&other[end..]);
            }
        }
    }
    Ok(Run {
        leaves,
        output,
        source: RunSource::Language {
            model,
            prompt,
            doc,
            passes: Mutex::new(HashMap::new()),
        },
    })
}

/// The leaves of forward pass `i` of its own generation.
fn pass_leaves(engine: &Engine, run: &Run, i: usize) -> Result<Arc<Vec<Hash>>> {
    let RunSource::Language {
        model, doc, passes, ..
    } = &run.source
    else {
        bail!("not a generation");
    };
    if let Some(leaves) = passes.lock().expect("pass cache lock").get(&i) {
        return Ok(leaves.clone());
    }
    if i >= doc.tokens.len() {
        bail!("its generation has no token {i}");
    }
    let lm = model.language_model();
    let tokens: Vec<u32> = doc.tokens[..i].iter().map(|t| t.id).collect();
    let replayed = lm.replay(engine, &doc.prompt_ids, &tokens)?;
    let trace = engine
        .run(lm.model(), replayed.inputs, true)?
        .trace
        .context("the engine returned no trace")?;
    let leaves = Arc::new(trace.leaves().to_vec());
    passes
        .lock()
        .expect("pass cache lock")
        .insert(i, leaves.clone());
    Ok(leaves)
}

/// The dissection move `side` owes in a bit-exact model's `dispute` with the trace `run`, if it
/// owes one now. `theirs` is the disputed worker's output document (what a challenger opens a
/// generation's token with).
fn dissection_move(
    engine: &Engine,
    dispute: &Dispute,
    side: Side,
    run: &Run,
    theirs: Option<&[u8]>,
) -> Result<Option<Action>> {
    let Some(game) = &dispute.game else {
        return Ok(None);
    };
    let index = match side {
        Side::Worker => 0,
        Side::Challenger => 1,
    };
    let reveal = |leaves: &[Hash]| Action::RevealChildren {
        dispute_id: dispute.dispute_id,
        hashes: game
            .span()
            .descendants(DEPTH)
            .iter()
            .map(|p: &Span| {
                let (start, end) = (p.start as usize, (p.start + p.len) as usize);
                merkle::root(&leaves[start..end])
            })
            .collect(),
    };
    if game.phase == Phase::Dissect && game.revealed[index].is_some() {
        return Ok(None);
    }
    Ok(match (&run.source, &dispute.generation, game.phase) {
        (_, None, Phase::Dissect) => Some(reveal(&run.leaves)),
        // The worker owes the one-step; a challenger sends it too, so that a silent worker's
        // clock is not all that ends the game.
        (RunSource::Plain { model, input }, None, Phase::OneStep) => {
            let inputs = model.task_inputs(input)?;
            let (witness, _) = model.step_witness(engine, inputs, game.start as usize)?;
            Some(Action::OneStep {
                dispute_id: dispute.dispute_id,
                witness: witness.encode(),
                input: input.clone(),
            })
        }
        // A generation's token game ends with the challenger opening the token.
        (RunSource::Language { prompt, doc, .. }, None, Phase::OneStep) => {
            if side != Side::Challenger {
                return Ok(None);
            }
            let output = theirs.context("the worker's output document")?.to_vec();
            let i = game.start as usize;
            // Past the end of its own generation: the leaf it committed to there.
            let (forward_root, token) = doc
                .tokens
                .get(i)
                .map_or((Hash::ZERO, u32::MAX), |t| (t.trace_root, t.id));
            Some(Action::RevealToken {
                dispute_id: dispute.dispute_id,
                output,
                prompt: prompt.clone(),
                forward_root,
                token,
            })
        }
        (RunSource::Language { .. }, Some(g), Phase::Dissect) => {
            Some(reveal(&pass_leaves(engine, run, g.token_index as usize)?))
        }
        // The one-step below the token: built from the sequence both sides agree on.
        (RunSource::Language { model, .. }, Some(g), Phase::OneStep) => {
            let target = if g.sampling_only() {
                PassTarget::Sampling
            } else {
                PassTarget::Step(game.start as usize)
            };
            let lm = model.language_model();
            let (prompt, tokens) = g.sequence.split_at(g.prompt_tokens as usize);
            let replayed = lm.replay(engine, prompt, tokens)?;
            let witness = lm.pass_witness(engine, &replayed, target)?;
            Some(Action::OneStep {
                dispute_id: dispute.dispute_id,
                witness: witness.encode(),
                input: Vec::new(),
            })
        }
        _ => None,
    })
}

/// The move `party` owes in `dispute` with its run `run`, if it owes one now; `theirs` is the
/// disputed worker's output document when the party has it.
pub fn next_move(
    engine: &Engine,
    dispute: &Dispute,
    party: &Address,
    run: &Run,
    theirs: Option<&[u8]>,
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
        None if *party == dispute.worker => {
            dissection_move(engine, dispute, Side::Worker, run, theirs)?
        }
        None if *party == dispute.challenger => {
            dissection_move(engine, dispute, Side::Challenger, run, theirs)?
        }
        None => None,
    })
}

/// A party in disputes: its runs of the tasks it is in a dispute over, and the rounds it has
/// answered. Both are caches; after a restart they are rebuilt from the chain.
pub struct Player {
    address: Address,
    engine: Arc<Engine>,
    /// Fault injection (`--dishonest`, `--frivolous`): the node whose output its runs corrupt
    /// (a generation's token).
    corrupt: Option<usize>,
    blobs: Blobs,
    languages: Arc<tokio::sync::Mutex<LanguageModels>>,
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

/// What running a task needs, fetched and checked.
pub enum Prepared {
    Plain(Arc<Model>, Vec<u8>),
    Language(Arc<ServedModel>, Vec<u8>),
}

impl Player {
    pub fn new(
        address: Address,
        engine: Arc<Engine>,
        corrupt: Option<usize>,
        languages: Arc<tokio::sync::Mutex<LanguageModels>>,
    ) -> Self {
        Player {
            address,
            engine,
            corrupt,
            blobs: Blobs::default(),
            languages,
            runs: HashMap::new(),
            answered: Answered::default(),
        }
    }

    /// A task's model and input file, fetched and checked.
    pub async fn prepare(&mut self, client: &Client, task: &Task) -> Result<Prepared> {
        let input = fetch(client, &task.input.hash).await?;
        if task.generation.is_some() {
            let model = self
                .languages
                .lock()
                .await
                .get(client, &task.model_id)
                .await?
                .map_err(|reason| {
                    anyhow::anyhow!("language model {}: {reason:?}", task.model_id)
                })?;
            return Ok(Prepared::Language(model, input));
        }
        Ok(Prepared::Plain(
            self.blobs.model(client, &task.model_id).await?,
            input,
        ))
    }

    /// Runs a prepared task as this party does ([`run`], [`language_run`]), on a blocking
    /// thread; `theirs` is the disputed worker's output document for a generation.
    pub async fn execute(
        &self,
        task: &Task,
        prepared: Prepared,
        theirs: Option<GenerationDocument>,
    ) -> Result<Run> {
        let (engine, corrupt) = (self.engine.clone(), self.corrupt);
        let task = task.clone();
        tokio::task::spawn_blocking(move || match prepared {
            Prepared::Plain(model, input) => run(&engine, model, input, corrupt),
            Prepared::Language(model, prompt) => {
                language_run(&engine, model, &task, prompt, corrupt, theirs.as_ref())
            }
        })
        .await?
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
            let run = self.runs.get(&dispute.task_id).cloned();
            // A generation's challenger opens the token with the worker's document, and makes
            // its leaves as long as the worker's with it: only then is the worker's output read.
            let opening = dispute.challenger == self.address
                && dispute.game.as_ref().is_some_and(|g| {
                    g.phase == Phase::OneStep && g.one_step_by == Side::Challenger
                });
            let mut theirs = None;
            let run = match run {
                Some(run) if !opening => run,
                cached => {
                    let view = client
                        .task(&dispute.task_id)
                        .await?
                        .context("a disputed task")?;
                    let task = view.task;
                    if let (Some(_), Some(record), true) = (
                        &task.generation,
                        &view.record,
                        dispute.challenger == self.address,
                    ) {
                        theirs = Some(fetch(client, &record.output_hash).await?);
                    }
                    match cached {
                        Some(run) => run,
                        None => {
                            let prepared = self.prepare(client, &task).await?;
                            let doc = match &theirs {
                                Some(bytes) => Some(
                                    serde_json::from_slice(bytes)
                                        .context("the worker's output document")?,
                                ),
                                None => None,
                            };
                            let run = Arc::new(self.execute(&task, prepared, doc).await?);
                            self.runs.insert(dispute.task_id, run.clone());
                            run
                        }
                    }
                }
            };
            let engine = self.engine.clone();
            let address = self.address;
            let action = tokio::task::spawn_blocking(move || {
                next_move(&engine, &dispute, &address, &run, theirs.as_deref())
            })
            .await??;
            if let Some(action) = action {
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
        let round: Round = (dispute, 0, 64, 0);
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
