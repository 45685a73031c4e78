//! `disputes`: OP results under challenge (`docs/protocol.md` §12). A registered challenger
//! opens a dispute inside the result's window. On a bit-exact model the worker and the
//! challenger play the `game` (dissection with clocks) and the last step is re-executed here
//! from the model file; on a tolerant model a third worker drawn from the seed re-runs the task
//! and the two output documents are compared within the model's tolerance. The loser is
//! slashed. Every challenger has its own dispute, all at once, so sybils cannot stretch the
//! time to a verdict past one dispute's clocks.

use serde::{Deserialize, Serialize};
use verity_infer::{merkle, output, Commitments, OutputDocument, StepWitness};
use verity_lm::dispute::{PassOutcome, PassTarget, PassWitness};
use verity_lm::{SamplingParams, ServedModel};
use verity_types::{
    generation_leaf, sampling_seed, sha256, Address, Amount, GenerationDocument, Hash,
};

use crate::models::{Loaded, LoadedLanguage};
use crate::modules::game::{Game, GameError, Phase, Side};
use crate::modules::records::{self, RecordStatus};
use crate::modules::tasks::{self, TaskStatus};
use crate::modules::{
    accounts, challengers, registry, reputation, schedule, sortition, staking, verifier,
};
use crate::overlay::Overlay;
use crate::store::Table;
use crate::{BlockCtx, StateError, TxFailure};

/// Domain tag of dispute ids.
pub const DISPUTE_DOMAIN: &[u8] = b"verity/dispute/v1";
/// Domain tag of a referee's draw.
pub const REFEREE_DOMAIN: &[u8] = b"verity/referee/v1";
/// Domain tag of a sampled token's leaf in a generation's sampling one-step.
pub const SAMPLED_TOKEN_DOMAIN: &[u8] = b"verity/sampled-token/v1";
/// Referees drawn for one dispute at most; when that many have not answered, it ends undecided.
pub const MAX_REFEREES: usize = 3;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DisputeStatus {
    Open,
    WorkerWon,
    ChallengerWon,
    /// Another dispute disproved the result first: this one ended without slashing anyone.
    Moot,
    /// A tolerant model's dispute that no referee answered: it ended without slashing anyone.
    Undecided,
}

/// A tolerant model's dispute: a third worker, drawn from the seed, re-runs the task, and the
/// validators compare its output document with the worker's within the model's tolerance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RefereeCheck {
    pub referee: Address,
    /// The last height at which the worker and the referee may reveal their outputs.
    pub deadline: u64,
    /// SHA-256 of each output document once revealed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub worker_output: Option<Hash>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub referee_output: Option<Hash>,
    /// Earlier referees that did not answer in time; no draw picks them again.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub timed_out: Vec<Address>,
}

/// One side's leaf at the disputed token of a generation: the forward pass's trace root and the
/// token chosen from its logits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TokenOpening {
    pub forward_root: Hash,
    pub token: u32,
}

/// A language model's dispute after its token game (`docs/protocol.md` §16): the first token
/// whose leaves differ, both sides' openings of it, and what re-executing that token's forward
/// pass needs: the prompt and the tokens before it (the worker's, which the challenger's agree
/// with), the previous pass's root (whose outputs are the pass's key/value cache) and the
/// sampling. The game then goes on over the pass's ops when the forward roots differ, or is
/// one sampling step when only the tokens do.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct GenerationDispute {
    pub token_index: u32,
    pub prompt_tokens: u32,
    pub sequence: Vec<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_root: Option<Hash>,
    pub worker: TokenOpening,
    pub challenger: TokenOpening,
    #[schema(value_type = Object)]
    pub sampling: SamplingParams,
}

impl GenerationDispute {
    /// Whether the sides agree on the forward pass, so only the sampled token is in dispute.
    pub fn sampling_only(&self) -> bool {
        self.worker.forward_root == self.challenger.forward_root
    }
}

/// The leaf a generation's sampling one-step compares: the token chosen.
pub fn sampled_token_leaf(token: u32) -> Hash {
    sha256(&[SAMPLED_TOKEN_DOMAIN, &token.to_le_bytes()].concat())
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Dispute {
    pub dispute_id: Hash,
    pub task_id: Hash,
    pub worker: Address,
    pub challenger: Address,
    pub worker_root: Hash,
    pub challenger_root: Hash,
    pub trace_len: u32,
    pub opened_height: u64,
    /// A bit-exact model's dissection game.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub game: Option<Game>,
    /// A tolerant model's third run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub referee: Option<RefereeCheck>,
    /// A language model's disputed token, once opened.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generation: Option<GenerationDispute>,
    pub status: DisputeStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolved_height: Option<u64>,
    /// How it ended, in words.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verdict: Option<String>,
    /// What the loser lost.
    #[serde(with = "verity_types::amount", default)]
    #[schema(schema_with = verity_types::schema::amount)]
    pub slashed: Amount,
}

const DISPUTE: &[u8] = b"d";
const BY_TASK: &[u8] = b"t";
const BY_WORKER: &[u8] = b"w";
const BY_CHALLENGER: &[u8] = b"x";
const BY_REFEREE: &[u8] = b"r";
/// Revealed output documents, by dispute and side, until the dispute ends.
const OUTPUT: &[u8] = b"o";
/// Every dispute of a task, open or over.
const OF_TASK: &[u8] = b"a";

/// The most blocks a dispute can stay open with `clock` blocks a side: a game spends at most
/// both clocks and ends the block after; a tolerant model's dispute waits out up to
/// [`MAX_REFEREES`] referees' deadlines, each ending the block after.
pub fn longest_dispute_blocks(clock: u64) -> u64 {
    let game = clock.saturating_add(1).saturating_mul(2);
    let referees = clock.saturating_add(1).saturating_mul(MAX_REFEREES as u64);
    game.max(referees)
}

/// A dispute's id names the task, the worker whose result it disputes and the challenger: a
/// task whose result was disproven runs again on another worker, and the same challenger may
/// dispute that result too.
pub fn dispute_id(task: &Hash, worker: &Address, challenger: &Address) -> Hash {
    sha256(&[DISPUTE_DOMAIN, &task.0, &worker.0, &challenger.0].concat())
}

fn key(id: &Hash) -> Vec<u8> {
    [DISPUTE, &id.0].concat()
}

pub fn get(state: &Overlay<'_>, id: &Hash) -> Result<Option<Dispute>, StateError> {
    state.get_json(Table::Disputes, &key(id), "dispute")
}

fn put(state: &mut Overlay<'_>, dispute: &Dispute) {
    state.put_json(Table::Disputes, key(&dispute.dispute_id), dispute);
}

/// Up to `limit` disputes in id order, after `after` when given.
pub fn list(
    state: &Overlay<'_>,
    after: Option<&Hash>,
    limit: usize,
) -> Result<Vec<Dispute>, StateError> {
    let start = match after {
        Some(id) => [key(id), vec![0]].concat(),
        None => DISPUTE.to_vec(),
    };
    state
        .scan_from(Table::Disputes, DISPUTE, &start, limit)?
        .into_iter()
        .map(|(_, v)| serde_json::from_slice(&v).map_err(|_| StateError::Corrupt("dispute")))
        .collect()
}

/// The open disputes of a task.
pub fn open_for_task(state: &Overlay<'_>, task: &Hash) -> Result<Vec<Hash>, StateError> {
    let prefix = [BY_TASK, &task.0].concat();
    state
        .scan_prefix(Table::Disputes, &prefix, usize::MAX)?
        .into_iter()
        .map(|(k, _)| {
            k[prefix.len()..]
                .try_into()
                .map(Hash)
                .map_err(|_| StateError::Corrupt("dispute index"))
        })
        .collect()
}

/// Up to `limit` disputes of a task, open or over, in id order.
pub fn of_task(state: &Overlay<'_>, task: &Hash, limit: usize) -> Result<Vec<Dispute>, StateError> {
    let prefix = [OF_TASK, &task.0].concat();
    let mut out = Vec::new();
    for (k, _) in state.scan_prefix(Table::Disputes, &prefix, limit)? {
        let id = Hash(
            k[prefix.len()..]
                .try_into()
                .map_err(|_| StateError::Corrupt("dispute index"))?,
        );
        out.extend(get(state, &id)?);
    }
    Ok(out)
}

/// The disputes a block's writes changed, decoded from those writes.
pub fn changed(batch: &crate::Batch) -> Vec<Dispute> {
    batch
        .writes
        .iter()
        .filter(|((table, key), _)| *table == Table::Disputes && key.first() == Some(&DISPUTE[0]))
        .filter_map(|(_, value)| value.as_ref())
        .filter_map(|raw| serde_json::from_slice(raw).ok())
        .collect()
}

/// Up to `limit` open disputes in which `party` is the worker, the challenger or the referee:
/// what it owes moves in.
pub fn open_of(
    state: &Overlay<'_>,
    party: &Address,
    limit: usize,
) -> Result<Vec<Dispute>, StateError> {
    let mut out = Vec::new();
    for side in [BY_WORKER, BY_CHALLENGER, BY_REFEREE] {
        let prefix = [side, &party.0].concat();
        for (k, _) in state.scan_prefix(Table::Disputes, &prefix, limit)? {
            let id = Hash(
                k[prefix.len()..]
                    .try_into()
                    .map_err(|_| StateError::Corrupt("dispute index"))?,
            );
            out.extend(get(state, &id)?);
        }
    }
    out.truncate(limit);
    Ok(out)
}

/// Whether a dispute against `worker` is open: its stake cannot leave meanwhile.
pub fn has_open_against(state: &Overlay<'_>, worker: &Address) -> Result<bool, StateError> {
    let prefix = [BY_WORKER, &worker.0].concat();
    Ok(!state.scan_prefix(Table::Disputes, &prefix, 1)?.is_empty())
}

fn referee_key(referee: &Address, id: &Hash) -> Vec<u8> {
    [BY_REFEREE, &referee.0, &id.0].concat()
}

fn index(state: &mut Overlay<'_>, d: &Dispute, open: bool) {
    let mut keys = vec![
        [BY_TASK, &d.task_id.0, &d.dispute_id.0].concat(),
        [BY_WORKER, &d.worker.0, &d.dispute_id.0].concat(),
        [BY_CHALLENGER, &d.challenger.0, &d.dispute_id.0].concat(),
    ];
    if let Some(check) = &d.referee {
        keys.push(referee_key(&check.referee, &d.dispute_id));
    }
    for k in keys {
        if open {
            state.put(Table::Disputes, k, Vec::new());
        } else {
            state.delete(Table::Disputes, k);
        }
    }
}

fn invalid(reason: impl Into<String>) -> TxFailure {
    TxFailure::Invalid {
        reason: reason.into(),
    }
}

fn game_error(e: GameError) -> TxFailure {
    invalid(e.to_string())
}

/// The model's own node count, from its file.
fn model_steps(ctx: &BlockCtx<'_>, model: &Hash) -> Result<Option<u64>, StateError> {
    Ok(match ctx.models.get(model)? {
        Loaded::Model(m) => Some(m.step_count() as u64),
        Loaded::Invalid(_) => None,
    })
}

/// OpenDispute: a registered challenger disputes an OP result inside its window.
pub fn open(
    state: &mut Overlay<'_>,
    ctx: &BlockCtx<'_>,
    sender: &Address,
    task_id: &Hash,
    trace_root: Hash,
    trace_len: u32,
) -> Result<(), TxFailure> {
    let params = &ctx.genesis.params.tasks;
    let mut challenger = challengers::get(state, sender)?.ok_or_else(|| TxFailure::NotFound {
        what: format!("challenger {sender}; bond with RegisterChallenger first"),
    })?;
    if challenger.open_disputes >= params.max_open_disputes {
        return Err(invalid(format!(
            "{sender} has {} disputes open, the most a challenger may",
            challenger.open_disputes
        )));
    }
    if challenger.free() < params.dispute_bond {
        return Err(invalid(format!(
            "a dispute locks {} of the bond; {} is free",
            params.dispute_bond,
            challenger.free()
        )));
    }
    let record = records::get(state, task_id)?.ok_or_else(|| TxFailure::NotFound {
        what: format!("result of task {task_id}"),
    })?;
    if challenger.bond < params.min_challenger_bond {
        return Err(invalid(format!(
            "{sender} bonds {}, below the {} a challenger needs to dispute",
            challenger.bond, params.min_challenger_bond
        )));
    }
    let until = match (record.status, record.challenge_until) {
        (RecordStatus::Submitted, Some(until)) => until,
        _ => {
            return Err(invalid(format!(
                "task {task_id}'s result is {:?}, not an OP result in its window",
                record.status
            )))
        }
    };
    if ctx.height > until {
        return Err(invalid(format!(
            "task {task_id}'s window closed at height {until}"
        )));
    }
    if *sender == record.worker {
        return Err(TxFailure::Unauthorized {
            reason: "a worker cannot dispute its own result".into(),
        });
    }
    if trace_root == record.trace_root {
        return Err(invalid(
            "this is the worker's own trace root; there is nothing to dispute",
        ));
    }
    let id = dispute_id(task_id, &record.worker, sender);
    if get(state, &id)?.is_some() {
        return Err(invalid(format!("{sender} already disputed task {task_id}")));
    }
    let registered = registry::model(state, &record.model_id)?;
    let tolerance = registered.as_ref().map_or(0, |m| m.spec.tolerance_ppm);
    let language = registered.is_some_and(|m| m.spec.language.is_some());
    if language && trace_len != record.trace_len {
        return Err(invalid(format!(
            "a language model's dispute is over the worker's {} tokens: send the root of your own first {} passes",
            record.trace_len, record.trace_len
        )));
    }
    let mut dispute = Dispute {
        dispute_id: id,
        task_id: *task_id,
        worker: record.worker,
        challenger: *sender,
        worker_root: record.trace_root,
        challenger_root: trace_root,
        trace_len,
        opened_height: ctx.height,
        game: None,
        referee: None,
        generation: None,
        status: DisputeStatus::Open,
        resolved_height: None,
        verdict: None,
        slashed: 0,
    };
    if tolerance > 0 {
        // The referee is drawn with the next block's seed, which nobody knew when this
        // transaction was chosen; that someone could referee now is checked here.
        if draw_referee(state, ctx, &dispute, &[])?.is_none() {
            return Err(invalid(format!(
                "no third worker serves task {task_id}'s model to referee a dispute now"
            )));
        }
        schedule::push(
            state,
            schedule::Kind::RefereeDraw,
            ctx.height.saturating_add(1),
            &id,
        )?;
    } else {
        let game = Game::open(
            u64::from(record.trace_len.max(1)),
            record.trace_root,
            trace_root,
            ctx.height,
            params.dispute_clock_blocks,
        )
        .map_err(game_error)?;
        // A generation's token game ends with the challenger opening the disputed token.
        dispute.game = Some(if language {
            game.with_one_step_by(Side::Challenger)
        } else {
            game
        });
    }
    challenger.locked = challenger
        .locked
        .checked_add(params.dispute_bond)
        .ok_or(TxFailure::Overflow)?;
    challenger.open_disputes = challenger.open_disputes.saturating_add(1);
    challenger.disputes_opened = challenger.disputes_opened.saturating_add(1);
    challengers::put(state, sender, &challenger);
    index(state, &dispute, true);
    state.put(
        Table::Disputes,
        [OF_TASK, &task_id.0, &id.0].concat(),
        Vec::new(),
    );
    // Lengths that differ are settled at once by the model's own node count.
    if dispute.game.is_some() && trace_len != record.trace_len {
        let steps = model_steps(ctx, &record.model_id)?;
        let (winner, why) = if steps != Some(u64::from(record.trace_len)) {
            (
                Side::Challenger,
                "the worker's trace length is not the model's node count",
            )
        } else {
            (
                Side::Worker,
                "the challenger's trace length is not the model's node count",
            )
        };
        resolve(state, ctx, &mut dispute, winner, why)?;
        return Ok(());
    }
    put(state, &dispute);
    watch(state, &dispute)?;
    Ok(())
}

/// Draws a referee for `dispute` from the block seed among the workers serving the task's
/// model, weighted as for tasks, never the worker, the challenger, a worker whose result for
/// this task was disproven, or an earlier referee; None when nobody else is eligible.
fn draw_referee(
    state: &mut Overlay<'_>,
    ctx: &BlockCtx<'_>,
    dispute: &Dispute,
    timed_out: &[Address],
) -> Result<Option<Address>, StateError> {
    let task = tasks::get(state, &dispute.task_id)?.ok_or(StateError::Corrupt("disputed task"))?;
    let mut excluded = vec![dispute.worker, dispute.challenger];
    excluded.extend_from_slice(&task.disproven);
    excluded.extend_from_slice(timed_out);
    tasks::draw_eligible(state, ctx, &task.model_id, &excluded, |attempt| {
        sha256(
            &[
                REFEREE_DOMAIN,
                &ctx.seed.0,
                &dispute.dispute_id.0,
                &(timed_out.len() as u32).to_le_bytes(),
                &attempt.to_le_bytes(),
            ]
            .concat(),
        )
    })
}

/// Schedules a look at the dispute when the next clock would run out.
fn watch(state: &mut Overlay<'_>, dispute: &Dispute) -> Result<(), StateError> {
    let deadline = match (&dispute.game, &dispute.referee) {
        (Some(game), _) => game.deadline(),
        (None, Some(check)) => Some(check.deadline.saturating_add(1)),
        (None, None) => None,
    };
    if let Some(deadline) = deadline {
        schedule::push(
            state,
            schedule::Kind::DisputeClock,
            deadline,
            &dispute.dispute_id,
        )?;
    }
    Ok(())
}

fn open_dispute(state: &Overlay<'_>, id: &Hash) -> Result<Dispute, TxFailure> {
    let dispute = get(state, id)?.ok_or_else(|| TxFailure::NotFound {
        what: format!("dispute {id}"),
    })?;
    if dispute.status != DisputeStatus::Open {
        return Err(invalid(format!("dispute {id} is over")));
    }
    Ok(dispute)
}

/// The dissection game of a bit-exact model's dispute.
fn game_of(dispute: &mut Dispute) -> Result<&mut Game, TxFailure> {
    let id = dispute.dispute_id;
    dispute.game.as_mut().ok_or_else(|| {
        invalid(format!(
            "dispute {id} is a tolerant model's: it is settled by a referee's run, not dissection"
        ))
    })
}

/// RevealChildren: a side's dissection move.
pub fn reveal(
    state: &mut Overlay<'_>,
    ctx: &BlockCtx<'_>,
    sender: &Address,
    id: &Hash,
    hashes: &[Hash],
) -> Result<(), TxFailure> {
    let mut dispute = open_dispute(state, id)?;
    let side = if *sender == dispute.worker {
        Side::Worker
    } else if *sender == dispute.challenger {
        Side::Challenger
    } else {
        return Err(TxFailure::Unauthorized {
            reason: format!("only the worker and the challenger of dispute {id} move in it"),
        });
    };
    game_of(&mut dispute)?
        .reveal(side, hashes.to_vec(), ctx.height)
        .map_err(game_error)?;
    put(state, &dispute);
    watch(state, &dispute)?;
    Ok(())
}

/// OneStep: the disputed step's inputs, proven, and the task's input file; anyone may send it.
/// The validators re-execute that one node from the model file and the game ends.
pub fn one_step(
    state: &mut Overlay<'_>,
    ctx: &BlockCtx<'_>,
    id: &Hash,
    witness: &[u8],
    input: &[u8],
) -> Result<(), TxFailure> {
    let mut dispute = open_dispute(state, id)?;
    let task = tasks::get(state, &dispute.task_id)?.ok_or(StateError::Corrupt("disputed task"))?;
    if dispute.generation.is_some() {
        return generation_step(state, ctx, &mut dispute, &task, witness, input);
    }
    let step = game_of(&mut dispute)?.start;
    let witness = StepWitness::decode(witness).map_err(|e| invalid(format!("witness: {e}")))?;
    if witness.step as u64 != step {
        return Err(invalid(format!(
            "the dispute is about step {step}, the witness about step {}",
            witness.step
        )));
    }
    if sha256(input) != task.input.hash {
        return Err(invalid("the input file does not hash to the task's input"));
    }
    let model = match ctx.models.get(&task.model_id)? {
        Loaded::Model(model) => model,
        Loaded::Invalid(why) => {
            return Err(invalid(format!(
                "model {} cannot be re-executed: {why}",
                task.model_id
            )))
        }
    };
    let inputs = model
        .task_inputs(input)
        .map_err(|e| invalid(format!("task input: {e}")))?;
    // Every leaf before the disputed step is agreed (each round took the leftmost difference),
    // so earlier outputs may be proven against either side's root: each side can then prove
    // from its own tree.
    let commitments = |trace_root| Commitments {
        trace_root,
        trace_len: u64::from(dispute.trace_len),
        weights_root: model.weights_root(),
        input_hashes: inputs.iter().map(|t| t.hash()).collect(),
    };
    let engine = ctx.models.engine();
    let outcome = model
        .verify_step(engine, &commitments(dispute.worker_root), &witness)
        .or_else(|_| model.verify_step(engine, &commitments(dispute.challenger_root), &witness))
        .map_err(|e| invalid(e.to_string()))?;
    let winner = game_of(&mut dispute)?
        .one_step(outcome.leaf, ctx.height)
        .map_err(game_error)?;
    let why = match winner {
        Side::Worker => format!("step {step} re-executed to the worker's leaf"),
        Side::Challenger => format!("step {step} re-executed to a leaf other than the worker's"),
    };
    resolve(state, ctx, &mut dispute, winner, &why)?;
    Ok(())
}

/// A language model's files, loaded by the validators.
fn language_model(
    ctx: &BlockCtx<'_>,
    state: &Overlay<'_>,
    model_id: &Hash,
) -> Result<std::sync::Arc<ServedModel>, TxFailure> {
    let spec = registry::model(state, model_id)?
        .and_then(|m| m.spec.language)
        .ok_or_else(|| invalid(format!("model {model_id} is not a language model")))?;
    match ctx.models.language(model_id, &spec)? {
        LoadedLanguage::Model(model) => Ok(model),
        LoadedLanguage::Invalid(why) => Err(invalid(format!(
            "model {model_id} cannot be re-executed: {why}"
        ))),
    }
}

/// RevealToken: the challenger ends a generation's token game by opening the disputed token,
/// with the worker's output document and the task's prompt. Whatever in the worker's signed
/// document contradicts its trace root, the prompt, the seed or the end of sequence loses it the
/// dispute at once; otherwise the game goes down to the token's forward pass, or to its
/// sampling when the two passes agree.
#[allow(clippy::too_many_arguments)]
pub fn reveal_token(
    state: &mut Overlay<'_>,
    ctx: &BlockCtx<'_>,
    sender: &Address,
    id: &Hash,
    output: &[u8],
    prompt: &[u8],
    forward_root: Hash,
    token: u32,
) -> Result<(), TxFailure> {
    let mut dispute = open_dispute(state, id)?;
    if *sender != dispute.challenger {
        return Err(TxFailure::Unauthorized {
            reason: format!("only the challenger of dispute {id} opens its token"),
        });
    }
    if dispute.generation.is_some() {
        return Err(invalid(format!("dispute {id}'s token is already open")));
    }
    let task = tasks::get(state, &dispute.task_id)?.ok_or(StateError::Corrupt("disputed task"))?;
    let record =
        records::get(state, &dispute.task_id)?.ok_or(StateError::Corrupt("disputed record"))?;
    let game = game_of(&mut dispute)?;
    if game.phase != Phase::OneStep || game.one_step_by != Side::Challenger {
        return Err(invalid(format!(
            "dispute {id} is not at the end of a generation's token game"
        )));
    }
    let index = game.start as u32;
    let worker_leaf = game.hashes[0];
    if generation_leaf(index, &forward_root, token) != game.hashes[1] {
        return Err(invalid(format!(
            "this forward root and token are not the challenger's leaf {index}"
        )));
    }
    if sha256(prompt) != task.input.hash {
        return Err(invalid(
            "the prompt document does not hash to the task's input",
        ));
    }
    if sha256(output) != record.output_hash {
        return Err(invalid(
            "this output document is not the one the worker's result committed to",
        ));
    }
    let served = language_model(ctx, state, &task.model_id)?;
    let challenger = TokenOpening {
        forward_root,
        token,
    };
    let opened =
        match open_worker_token(&served, &task, &record, output, prompt, index, worker_leaf) {
            Ok(worker) => GenerationDispute {
                challenger,
                ..worker
            },
            Err(why) => {
                resolve(state, ctx, &mut dispute, Side::Challenger, &why)?;
                return Ok(());
            }
        };
    let (len, hashes) = if opened.sampling_only() {
        (
            1,
            [
                sampled_token_leaf(opened.worker.token),
                sampled_token_leaf(opened.challenger.token),
            ],
        )
    } else {
        (
            served.language_model().model().step_count() as u64,
            [opened.worker.forward_root, opened.challenger.forward_root],
        )
    };
    game_of(&mut dispute)?
        .descend(len, hashes, ctx.height)
        .map_err(game_error)?;
    dispute.generation = Some(opened);
    put(state, &dispute);
    watch(state, &dispute)?;
    Ok(())
}

/// The worker's side of the disputed token from its output document, or why the document
/// disproves its own result. The challenger's side is filled in by the caller.
fn open_worker_token(
    served: &ServedModel,
    task: &tasks::Task,
    record: &records::ExecutionRecord,
    output: &[u8],
    prompt: &[u8],
    index: u32,
    worker_leaf: Hash,
) -> Result<GenerationDispute, String> {
    let doc: GenerationDocument = serde_json::from_slice(output)
        .map_err(|e| format!("the worker's output document is unreadable: {e}"))?;
    let leaves = verity_lm::task::token_leaves(&doc);
    if leaves.len() != record.trace_len as usize || merkle::root(&leaves) != record.trace_root {
        return Err("the worker's output document does not match its trace root".into());
    }
    let prompt_doc = verity_lm::task::parse_prompt(prompt)
        .map_err(|e| format!("the worker answered a prompt document that is not one: {e}"))?;
    let prompt_ids = served
        .renderer()
        .prompt_ids(&prompt_doc)
        .map_err(|e| format!("the worker answered a prompt that does not render: {e}"))?;
    if doc.prompt_ids != prompt_ids {
        return Err("the worker's prompt tokens are not the prompt's".into());
    }
    let seed = sampling_seed(&prompt_doc, &task.task_id);
    if doc.seed != seed {
        return Err(format!(
            "the worker sampled with seed {}, the task's is {seed}",
            doc.seed
        ));
    }
    let eos = &served.renderer().config().eos_token_ids;
    if let Some(at) = doc.tokens[..doc.tokens.len().saturating_sub(1)]
        .iter()
        .position(|t| eos.contains(&t.id))
    {
        return Err(format!(
            "the worker generated past the end-of-sequence token at {at}"
        ));
    }
    let i = index as usize;
    let worker = doc
        .tokens
        .get(i)
        .ok_or_else(|| format!("the worker's output document has no token {i}"))?;
    if leaves[i] != worker_leaf {
        return Err(format!(
            "the worker's output document disagrees with its own dissection at token {i}"
        ));
    }
    let mut sequence = prompt_ids;
    sequence.extend(doc.tokens[..i].iter().map(|t| t.id));
    let opening = TokenOpening {
        forward_root: worker.trace_root,
        token: worker.id,
    };
    Ok(GenerationDispute {
        token_index: index,
        prompt_tokens: doc.prompt_ids.len() as u32,
        sequence,
        previous_root: i.checked_sub(1).map(|p| doc.tokens[p].trace_root),
        worker: opening,
        challenger: opening,
        sampling: verity_lm::task::sampling(&prompt_doc, seed),
    })
}

/// A generation's one-step: one op of the disputed token's forward pass re-executed, or the
/// token sampled again from its recomputed logits.
fn generation_step(
    state: &mut Overlay<'_>,
    ctx: &BlockCtx<'_>,
    dispute: &mut Dispute,
    task: &tasks::Task,
    witness: &[u8],
    input: &[u8],
) -> Result<(), TxFailure> {
    let generation = dispute
        .generation
        .clone()
        .ok_or(StateError::Corrupt("generation dispute"))?;
    if !input.is_empty() {
        return Err(invalid(
            "a generation's one-step carries no input file: the prompt was opened with the token",
        ));
    }
    let witness = PassWitness::decode(witness).map_err(|e| invalid(format!("witness: {e}")))?;
    let served = language_model(ctx, state, &task.model_id)?;
    let game = game_of(dispute)?;
    if game.phase != Phase::OneStep {
        return Err(invalid(format!(
            "dispute {} has not reached its one-step",
            dispute.dispute_id
        )));
    }
    let target = if generation.sampling_only() {
        PassTarget::Sampling
    } else {
        PassTarget::Step(game.start as usize)
    };
    let outcome = served
        .language_model()
        .check_pass(
            ctx.models.engine(),
            generation.prompt_tokens as usize,
            &generation.sequence,
            generation.previous_root.as_ref(),
            [
                &generation.worker.forward_root,
                &generation.challenger.forward_root,
            ],
            &witness,
            target,
            &generation.sampling,
        )
        .map_err(|e| invalid(e.to_string()))?;
    let i = generation.token_index;
    let (leaf, what) = match outcome {
        PassOutcome::Step(outcome) => (
            outcome.leaf,
            format!(
                "step {} of token {i}'s forward pass re-executed",
                game_of(dispute)?.start
            ),
        ),
        PassOutcome::Token(choice) => (
            sampled_token_leaf(choice.token),
            format!("token {i} sampled again as {}", choice.token),
        ),
    };
    let winner = game_of(dispute)?
        .one_step(leaf, ctx.height)
        .map_err(game_error)?;
    let why = match winner {
        Side::Worker => format!("{what}: the worker's"),
        Side::Challenger => format!("{what}: not the worker's"),
    };
    resolve(state, ctx, dispute, winner, &why)?;
    Ok(())
}

const WORKER_SIDE: u8 = 0;
const REFEREE_SIDE: u8 = 1;

fn output_key(id: &Hash, side: u8) -> Vec<u8> {
    [OUTPUT, &id.0, &[side]].concat()
}

/// RevealOutput: in a tolerant model's dispute, the worker reveals the output document its
/// result committed to, and the referee the one its own run produced. Once both are in, the
/// validators compare them within the model's tolerance and the dispute ends.
pub fn reveal_output(
    state: &mut Overlay<'_>,
    ctx: &BlockCtx<'_>,
    sender: &Address,
    id: &Hash,
    output: &[u8],
) -> Result<(), TxFailure> {
    let mut dispute = open_dispute(state, id)?;
    let mut check = match (&dispute.game, dispute.referee.clone()) {
        (None, Some(check)) => check,
        (None, None) => {
            return Err(invalid(format!(
                "dispute {id}'s referee is drawn in the block after its opening; reveal then"
            )))
        }
        (Some(_), _) => {
            return Err(invalid(format!(
                "dispute {id} is a dissection game: outputs are revealed only in a tolerant \
                 model's"
            )))
        }
    };
    if ctx.height > check.deadline {
        return Err(invalid(format!(
            "dispute {id}'s outputs were due by height {}",
            check.deadline
        )));
    }
    let task = tasks::get(state, &dispute.task_id)?.ok_or(StateError::Corrupt("disputed task"))?;
    let hash = sha256(output);
    if *sender == dispute.worker {
        if check.worker_output.is_some() {
            return Err(invalid("the worker has already revealed its output"));
        }
        let record =
            records::get(state, &dispute.task_id)?.ok_or(StateError::Corrupt("disputed record"))?;
        if hash != record.output_hash {
            return Err(invalid(
                "this output does not hash to the one the worker's result committed to",
            ));
        }
        // The worker signed this document: if it is not one, its result cannot stand.
        if let Err(e) = OutputDocument::parse(output) {
            let why = format!("the worker's committed output is unreadable: {e}");
            resolve(state, ctx, &mut dispute, Side::Challenger, &why)?;
            return Ok(());
        }
        check.worker_output = Some(hash);
        state.put(
            Table::Disputes,
            output_key(id, WORKER_SIDE),
            output.to_vec(),
        );
    } else if *sender == check.referee {
        if check.referee_output.is_some() {
            return Err(invalid("the referee has already revealed its output"));
        }
        let doc = OutputDocument::parse(output).map_err(|e| invalid(e.to_string()))?;
        if doc.model_id != task.model_id {
            return Err(invalid(format!(
                "the referee's output is of model {}, the task's is {}",
                doc.model_id, task.model_id
            )));
        }
        check.referee_output = Some(hash);
        state.put(
            Table::Disputes,
            output_key(id, REFEREE_SIDE),
            output.to_vec(),
        );
    } else {
        return Err(TxFailure::Unauthorized {
            reason: format!("only the worker and the referee of dispute {id} reveal outputs"),
        });
    }
    dispute.referee = Some(check.clone());
    if check.worker_output.is_none() || check.referee_output.is_none() {
        put(state, &dispute);
        return Ok(());
    }
    let read = |side| -> Result<OutputDocument, StateError> {
        let bytes = state
            .get(Table::Disputes, &output_key(id, side))?
            .ok_or(StateError::Corrupt("revealed output"))?;
        OutputDocument::parse(&bytes).map_err(|_| StateError::Corrupt("revealed output"))
    };
    let (worker, referee) = (read(WORKER_SIDE)?, read(REFEREE_SIDE)?);
    let tolerance = registry::model(state, &task.model_id)?.map_or(0, |m| m.spec.tolerance_ppm);
    reputation::record_success(state, &check.referee)?;
    sortition::refresh(state, ctx, &check.referee)?;
    let (winner, why) = match output::agree(&worker, &referee, tolerance) {
        Ok(()) => (
            Side::Worker,
            format!("the referee's output agrees with the worker's within {tolerance} ppm"),
        ),
        Err(diff) => (
            Side::Challenger,
            format!("the referee's output differs from the worker's: {diff}"),
        ),
    };
    resolve(state, ctx, &mut dispute, winner, &why)?;
    Ok(())
}

/// A tolerant model's dispute past its deadline: a worker that has not revealed loses; a
/// referee that has not answered is penalised as for a timed-out task and another is drawn, up
/// to [`MAX_REFEREES`]; after that, or with nobody left to draw, the dispute ends undecided.
fn referee_clock(
    state: &mut Overlay<'_>,
    ctx: &BlockCtx<'_>,
    dispute: &mut Dispute,
) -> Result<(), StateError> {
    let Some(mut check) = dispute.referee.clone() else {
        return Ok(());
    };
    if ctx.height <= check.deadline {
        return watch(state, dispute);
    }
    let params = &ctx.genesis.params.tasks;
    if check.referee_output.is_none() {
        reputation::record_timeout(
            state,
            &check.referee,
            &dispute.dispute_id,
            params.timeout_penalty,
            ctx.height,
            params.timeout_forgiven_after_blocks,
        )?;
        sortition::refresh(state, ctx, &check.referee)?;
    }
    if check.worker_output.is_none() {
        return resolve(
            state,
            ctx,
            dispute,
            Side::Challenger,
            "the worker did not reveal its output in time",
        );
    }
    state.delete(
        Table::Disputes,
        referee_key(&check.referee, &dispute.dispute_id),
    );
    check.timed_out.push(check.referee);
    let next = if check.timed_out.len() < MAX_REFEREES {
        draw_referee(state, ctx, dispute, &check.timed_out)?
    } else {
        None
    };
    let Some(next) = next else {
        let why = format!(
            "{} referees did not answer and nobody else can referee",
            check.timed_out.len()
        );
        dispute.referee = Some(check);
        return end_undecided(state, ctx, dispute, &why);
    };
    check.referee = next;
    check.deadline = ctx.height.saturating_add(params.dispute_clock_blocks);
    dispute.referee = Some(check);
    state.put(
        Table::Disputes,
        referee_key(&next, &dispute.dispute_id),
        Vec::new(),
    );
    put(state, dispute);
    watch(state, dispute)
}

/// Ends a dispute without a verdict: the bond is returned and the result stands.
fn end_undecided(
    state: &mut Overlay<'_>,
    ctx: &BlockCtx<'_>,
    dispute: &mut Dispute,
    why: &str,
) -> Result<(), StateError> {
    release_bond(state, ctx, &dispute.challenger)?;
    dispute.status = DisputeStatus::Undecided;
    dispute.resolved_height = Some(ctx.height);
    dispute.verdict = Some(why.to_string());
    close(state, dispute);
    finalize_if_settled(state, ctx, &dispute.task_id)
}

/// The challenger of an ending dispute, its bond unlocked and the dispute no longer counted
/// as open; the caller stores it.
fn unlocked(
    state: &Overlay<'_>,
    ctx: &BlockCtx<'_>,
    challenger: &Address,
) -> Result<challengers::Challenger, StateError> {
    let mut record = challengers::get(state, challenger)?
        .ok_or(StateError::Corrupt("dispute without challenger"))?;
    record.locked = record
        .locked
        .saturating_sub(ctx.genesis.params.tasks.dispute_bond);
    record.open_disputes = record.open_disputes.saturating_sub(1);
    Ok(record)
}

/// Unlocks one dispute's bond and counts the dispute as no longer open.
fn release_bond(
    state: &mut Overlay<'_>,
    ctx: &BlockCtx<'_>,
    challenger: &Address,
) -> Result<(), StateError> {
    let record = unlocked(state, ctx, challenger)?;
    challengers::put(state, challenger, &record);
    Ok(())
}

/// Drops an ended dispute from the open indexes and its revealed outputs, and stores it.
fn close(state: &mut Overlay<'_>, dispute: &Dispute) {
    index(state, dispute, false);
    for side in [WORKER_SIDE, REFEREE_SIDE] {
        state.delete(Table::Disputes, output_key(&dispute.dispute_id, side));
    }
    put(state, dispute);
}

/// What a lost dispute takes from a challenger (`challenger` with this dispute's lock already
/// released): `bps` of its bond counting the bond on its way out, so that unbonding after
/// opening a dispute does not shrink the stake of losing it (unbonding outlasts any dispute,
/// `Params::validate`); but never more than its other open disputes leave locked, so the bond
/// always covers the locks that remain. Returns what is slashed and the winner's half.
fn challenger_slash(challenger: &challengers::Challenger, bps: u32) -> (Amount, Amount) {
    let at_stake = challenger.bond.saturating_add(challenger.unbonding);
    let slashed = bps_of(at_stake, bps).min(challenger.free().saturating_add(challenger.unbonding));
    (slashed, slashed / 2)
}

/// `bps` basis points of `amount`, rounded down, without overflow.
pub(crate) fn bps_of(amount: Amount, bps: u32) -> Amount {
    let bps = Amount::from(bps.min(10_000));
    amount / 10_000 * bps + amount % 10_000 * bps / 10_000
}

/// Ends a dispute: the loser is slashed, half to the winner; a losing worker's result is
/// rejected and its task drawn again, and the task's other disputes end without slashing.
fn resolve(
    state: &mut Overlay<'_>,
    ctx: &BlockCtx<'_>,
    dispute: &mut Dispute,
    winner: Side,
    why: &str,
) -> Result<(), StateError> {
    let params = &ctx.genesis.params.tasks;
    let mut challenger = unlocked(state, ctx, &dispute.challenger)?;
    dispute.resolved_height = Some(ctx.height);
    dispute.verdict = Some(why.to_string());
    match winner {
        Side::Worker => {
            let (slashed, reward) = challenger_slash(&challenger, params.slash_bps);
            // The free bond goes first, then what is unbonding.
            let from_bond = slashed.min(challenger.free());
            challenger.bond -= from_bond;
            challenger.unbonding -= slashed - from_bond;
            challenger.disputes_lost = challenger.disputes_lost.saturating_add(1);
            challenger.reputation = challenger
                .reputation
                .saturating_sub(challengers::DISPUTE_REPUTATION);
            challengers::put(state, &dispute.challenger, &challenger);
            credit_or_burn(state, &dispute.worker, reward)?;
            dispute.status = DisputeStatus::WorkerWon;
            dispute.slashed = slashed;
            close(state, dispute);
            finalize_if_settled(state, ctx, &dispute.task_id)?;
        }
        Side::Challenger => {
            let slashed = staking::slash(state, &dispute.worker, params.slash_bps)?;
            let reward = slashed / 2;
            challenger.disputes_won = challenger.disputes_won.saturating_add(1);
            challenger.reputation = challenger
                .reputation
                .saturating_add(challengers::DISPUTE_REPUTATION);
            challenger.rewards = challenger.rewards.saturating_add(reward);
            challengers::put(state, &dispute.challenger, &challenger);
            credit_or_burn(state, &dispute.challenger, reward)?;
            reputation::record_fraud(state, &dispute.worker, params.fraud_penalty)?;
            sortition::refresh(state, ctx, &dispute.worker)?;
            dispute.status = DisputeStatus::ChallengerWon;
            dispute.slashed = slashed;
            close(state, dispute);
            reject_result(state, ctx, dispute)?;
        }
    }
    Ok(())
}

/// A reward that would overflow its receiver's balance is burned with the rest.
fn credit_or_burn(state: &mut Overlay<'_>, to: &Address, amount: Amount) -> Result<(), StateError> {
    match accounts::credit(state, to, amount) {
        Ok(()) | Err(TxFailure::Overflow) => Ok(()),
        Err(TxFailure::Internal { reason }) => Err(StateError::Halted(reason)),
        Err(_) => Ok(()),
    }
}

/// The worker's result is disproven: the record is rejected, the task drawn again, and every
/// other open dispute of the task ends, its bond returned.
fn reject_result(
    state: &mut Overlay<'_>,
    ctx: &BlockCtx<'_>,
    dispute: &Dispute,
) -> Result<(), StateError> {
    for other in open_for_task(state, &dispute.task_id)? {
        let Some(mut moot) = get(state, &other)? else {
            continue;
        };
        release_bond(state, ctx, &moot.challenger)?;
        moot.status = DisputeStatus::Moot;
        moot.resolved_height = Some(ctx.height);
        moot.verdict = Some(format!(
            "dispute {} disproved the result first",
            dispute.dispute_id
        ));
        close(state, &moot);
    }
    let mut record =
        records::get(state, &dispute.task_id)?.ok_or(StateError::Corrupt("disputed record"))?;
    record.status = RecordStatus::Rejected;
    records::put(state, &record);
    let mut task =
        tasks::get(state, &dispute.task_id)?.ok_or(StateError::Corrupt("disputed task"))?;
    tasks::reopen(state, ctx, &mut task, dispute.worker)
}

/// Settles an OP result once its window has passed and no dispute is open.
fn finalize_if_settled(
    state: &mut Overlay<'_>,
    ctx: &BlockCtx<'_>,
    task_id: &Hash,
) -> Result<(), StateError> {
    let Some(record) = records::get(state, task_id)? else {
        return Ok(());
    };
    let past_window = record
        .challenge_until
        .is_some_and(|until| ctx.height > until);
    if record.status != RecordStatus::Submitted
        || !past_window
        || !open_for_task(state, task_id)?.is_empty()
    {
        return Ok(());
    }
    let task = tasks::get(state, task_id)?.ok_or(StateError::Corrupt("recorded task"))?;
    if task.status != TaskStatus::Challengeable {
        return Ok(());
    }
    verifier::settle(state, ctx, task, record).map_err(|e| match e {
        TxFailure::Internal { reason } => StateError::Halted(reason),
        other => StateError::Halted(format!("settling an OP result: {other}")),
    })
}

/// Draws the first referee of a tolerant dispute opened in the previous block; with nobody
/// left to draw (the last eligible worker left meanwhile) the dispute ends undecided.
fn draw_first_referee(
    state: &mut Overlay<'_>,
    ctx: &BlockCtx<'_>,
    dispute: &mut Dispute,
) -> Result<(), StateError> {
    let Some(referee) = draw_referee(state, ctx, dispute, &[])? else {
        return end_undecided(state, ctx, dispute, "nobody could be drawn to referee");
    };
    dispute.referee = Some(RefereeCheck {
        referee,
        deadline: ctx
            .height
            .saturating_add(ctx.genesis.params.tasks.dispute_clock_blocks),
        worker_output: None,
        referee_output: None,
        timed_out: Vec::new(),
    });
    state.put(
        Table::Disputes,
        referee_key(&referee, &dispute.dispute_id),
        Vec::new(),
    );
    put(state, dispute);
    watch(state, dispute)
}

/// Start-of-block work: referees drawn, clocks that ran out end their games, and windows that
/// closed settle their results.
pub fn begin_block(state: &mut Overlay<'_>, ctx: &BlockCtx<'_>) -> Result<(), StateError> {
    for id in schedule::take::<Hash>(state, schedule::Kind::RefereeDraw, ctx.height)? {
        let Some(mut dispute) = get(state, &id)? else {
            continue;
        };
        if dispute.status == DisputeStatus::Open && dispute.referee.is_none() {
            draw_first_referee(state, ctx, &mut dispute)?;
        }
    }
    for id in schedule::take::<Hash>(state, schedule::Kind::DisputeClock, ctx.height)? {
        let Some(mut dispute) = get(state, &id)? else {
            continue;
        };
        if dispute.status != DisputeStatus::Open {
            continue;
        }
        if dispute.referee.is_some() {
            referee_clock(state, ctx, &mut dispute)?;
            continue;
        }
        let expired = dispute.game.as_mut().and_then(|g| g.expire(ctx.height));
        match expired {
            Some(winner) => {
                let why = match winner {
                    Side::Worker => "the challenger's clock ran out",
                    Side::Challenger => "the worker's clock ran out",
                };
                resolve(state, ctx, &mut dispute, winner, why)?;
            }
            None => watch(state, &dispute)?,
        }
    }
    for id in schedule::take::<Hash>(state, schedule::Kind::Window, ctx.height)? {
        finalize_if_settled(state, ctx, &id)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    use proptest::prelude::*;

    fn bonded(bond: Amount, locked: Amount) -> challengers::Challenger {
        challengers::Challenger {
            bond,
            locked,
            ..Default::default()
        }
    }

    #[test]
    fn slashing_splits_exactly() {
        assert_eq!(bps_of(10_000, 500), 500);
        assert_eq!(bps_of(0, 500), 0);
        assert_eq!(bps_of(u128::MAX, 10_000), u128::MAX);
        assert_eq!(challenger_slash(&bonded(10_000, 0), 500), (500, 250));
        // A slash never takes what other open disputes hold.
        assert_eq!(challenger_slash(&bonded(10_000, 9_900), 500), (100, 50));
        let (slashed, reward) = challenger_slash(&bonded(u128::MAX, 0), 10_000);
        assert_eq!((slashed, reward), (u128::MAX, u128::MAX / 2));
    }

    proptest! {
        /// Whatever the bond, the locks and the rate, a lost dispute leaves the bond covering
        /// the locks of the disputes still open.
        #[test]
        fn a_slash_never_takes_the_bond_below_its_locks(
            bond in any::<u128>(),
            locked_fraction in 0u128..=1_000,
            bps in 0u32..=20_000,
        ) {
            let locked = bond / 1_000 * locked_fraction;
            let record = bonded(bond, locked);
            let (slashed, reward) = challenger_slash(&record, bps);
            prop_assert!(bond - slashed >= locked);
            prop_assert!(reward <= slashed);
        }

        /// Unbonding after opening a dispute does not make losing it cheaper: the slash is
        /// what it would have been with the whole bond still bonded, taken from what is left
        /// free and what is unbonding, never from the other disputes' locks.
        #[test]
        fn unbonding_does_not_shrink_a_slash(
            bond in 0u128..=u128::MAX / 4,
            unbonded_fraction in 0u128..=1_000,
            locked_fraction in 0u128..=1_000,
            bps in 0u32..=10_000,
        ) {
            let locked = bond / 1_000 * locked_fraction;
            let unbonded = (bond - locked) / 1_000 * unbonded_fraction;
            let whole = challenger_slash(&bonded(bond, locked), bps);
            let record = challengers::Challenger {
                bond: bond - unbonded,
                locked,
                unbonding: unbonded,
                ..Default::default()
            };
            let (slashed, _) = challenger_slash(&record, bps);
            prop_assert_eq!(slashed, whole.0);
            prop_assert!(slashed <= record.free() + record.unbonding);
        }
    }
}
