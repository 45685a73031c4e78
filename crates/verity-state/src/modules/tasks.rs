//! `tasks`: submission with fee escrow and a deadline, assignment drawn from the block seed
//! weighted by stake × reputation among eligible workers, timeouts that reassign and penalise,
//! cancellation, and expiry.

use serde::{Deserialize, Serialize};
use verity_types::{
    sha256, Address, Amount, DataRef, FailureReason, GenerationLimits, Hash, LanguageSpec, Mode,
};

use crate::modules::{
    accounts, data, enclaves, registry, reputation, schedule, sortition, staking,
};
use crate::overlay::Overlay;
use crate::store::Table;
use crate::{BlockCtx, StateError, TaskParams, TxFailure};

/// Domain tag of the per-task assignment draw.
const ASSIGN_DOMAIN: &[u8] = b"verity/assign/v1";
/// Most tasks waiting for a worker that one block retries: a block costs the same whether ten
/// or a hundred thousand tasks wait. A failed retry goes to the back of the queue.
const PENDING_RETRIES_PER_BLOCK: usize = 32;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum TaskStatus {
    /// Waiting for an eligible worker.
    Pending,
    Assigned,
    /// Verified and settled.
    Finalized,
    Cancelled,
    /// The deadline passed without a result; the escrow went back.
    Expired,
    /// The worker's enclave reported it could not run the task; the escrow went back, less the
    /// worker's fee.
    Failed,
    /// An OP result is in: its challenge window is open, or a dispute is being played.
    Challengeable,
}

impl TaskStatus {
    pub fn is_final(self) -> bool {
        matches!(
            self,
            TaskStatus::Finalized
                | TaskStatus::Cancelled
                | TaskStatus::Expired
                | TaskStatus::Failed
        )
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Task {
    /// The hash of the SubmitTask transaction.
    pub task_id: Hash,
    pub submitter: Address,
    pub model_id: Hash,
    pub input: DataRef,
    pub mode: Mode,
    /// `tee_zk` tasks: the commitment to the quantized input that the proof must state.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_commitment: Option<Hash>,
    /// The contributed file it runs on: its DAT holders share the fee.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dataset: Option<u64>,
    #[serde(with = "verity_types::amount")]
    #[schema(schema_with = verity_types::schema::amount)]
    pub max_fee: Amount,
    pub status: TaskStatus,
    pub worker: Option<Address>,
    pub submitted_height: u64,
    pub deadline_height: u64,
    pub assigned_height: Option<u64>,
    /// The assigned worker must deliver before this height or lose the task.
    pub timeout_height: Option<u64>,
    /// Workers that let this task time out, in order.
    pub timed_out: Vec<Address>,
    pub closed_height: Option<u64>,
    /// Why the worker could not run it, when it Failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure: Option<FailureReason>,
    /// Workers whose result for this task a dispute disproved: never drawn for it again.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub disproven: Vec<Address>,
    /// A language model's task: the prompt's tokens and the most it may generate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generation: Option<GenerationLimits>,
}

pub const TASK_PREFIX: &[u8] = b"t";
/// Index entries: by submission height (every task) and by worker (current assignments).
pub const BY_HEIGHT_PREFIX: &[u8] = b"h";
pub const ASSIGNED_PREFIX: &[u8] = b"a";
const PENDING_PREFIX: &[u8] = b"p";
/// A worker's count of current assignments, so that a draw reads one entry to see it is full.
const OPEN_PREFIX: &[u8] = b"o";
/// The same for its current language-model generations.
const OPEN_GENERATIONS_PREFIX: &[u8] = b"g";

fn count_key(prefix: &[u8], worker: &Address) -> Vec<u8> {
    [prefix, &worker.0].concat()
}

fn count(state: &Overlay<'_>, prefix: &[u8], worker: &Address) -> Result<u32, StateError> {
    match state.get(Table::Tasks, &count_key(prefix, worker))? {
        None => Ok(0),
        Some(bytes) => {
            Ok(u32::from_be_bytes(bytes.as_slice().try_into().map_err(
                |_| StateError::Corrupt("open assignment count"),
            )?))
        }
    }
}

fn set_count(state: &mut Overlay<'_>, prefix: &[u8], worker: &Address, count: u32) {
    let key = count_key(prefix, worker);
    match count {
        0 => state.delete(Table::Tasks, key),
        n => state.put(Table::Tasks, key, n.to_be_bytes().to_vec()),
    }
}

/// How many tasks are assigned to `worker` now.
pub fn open_assignments(state: &Overlay<'_>, worker: &Address) -> Result<u32, StateError> {
    count(state, OPEN_PREFIX, worker)
}

/// How many of them are language-model generations.
pub fn open_generations(state: &Overlay<'_>, worker: &Address) -> Result<u32, StateError> {
    count(state, OPEN_GENERATIONS_PREFIX, worker)
}

/// Counts one assignment more (`+1`) or less (`-1`) for `worker`, and one generation when
/// the task is one.
fn add_assignment(
    state: &mut Overlay<'_>,
    worker: &Address,
    task: &Task,
    delta: i8,
) -> Result<(), StateError> {
    let mut prefixes = vec![OPEN_PREFIX];
    if task.generation.is_some() {
        prefixes.push(OPEN_GENERATIONS_PREFIX);
    }
    for prefix in prefixes {
        let now = count(state, prefix, worker)?;
        let next = match delta {
            1 => now.saturating_add(1),
            _ => now.saturating_sub(1),
        };
        set_count(state, prefix, worker, next);
    }
    Ok(())
}

fn task_key(id: &Hash) -> Vec<u8> {
    [TASK_PREFIX, &id.0].concat()
}

/// Inverted height: a forward scan lists the newest tasks first.
pub fn by_height_key(height: u64, id: &Hash) -> Vec<u8> {
    [BY_HEIGHT_PREFIX, &(u64::MAX - height).to_be_bytes(), &id.0].concat()
}

pub fn assigned_key(worker: &Address, id: &Hash) -> Vec<u8> {
    [ASSIGNED_PREFIX, &worker.0, &id.0].concat()
}

pub fn get(state: &Overlay<'_>, id: &Hash) -> Result<Option<Task>, StateError> {
    state.get_json(Table::Tasks, &task_key(id), "task")
}

pub fn put(state: &mut Overlay<'_>, task: &Task) {
    state.put_json(Table::Tasks, task_key(&task.task_id), task);
}

/// The tasks whose record a block's writes changed, decoded from those writes.
pub fn changed(batch: &crate::Batch) -> Vec<Task> {
    batch
        .writes
        .iter()
        .filter(|((table, key), _)| *table == Table::Tasks && key.first() == Some(&TASK_PREFIX[0]))
        .filter_map(|(_, value)| value.as_ref())
        .filter_map(|raw| serde_json::from_slice(raw).ok())
        .collect()
}

/// What a SubmitTask asks for.
pub struct Request<'a> {
    pub model_id: &'a Hash,
    pub input: &'a DataRef,
    pub mode: Mode,
    pub max_fee: Amount,
    pub deadline_blocks: u64,
    pub input_commitment: Option<Hash>,
    /// The contributed file the task runs on.
    pub dataset: Option<u64>,
    /// A language model's task: what its escrow covers.
    pub generation: Option<GenerationLimits>,
}

/// The checks a SubmitTask must pass, without writing anything: the model exists and allows
/// the mode, which this chain can verify; the deadline, escrow and input size are in range. The
/// mempool runs them too, so a client hears about a bad task at once, as a 4xx.
pub fn check(
    state: &Overlay<'_>,
    params: &TaskParams,
    request: &Request<'_>,
) -> Result<(), TxFailure> {
    let Request {
        model_id,
        input,
        mode,
        max_fee,
        deadline_blocks,
        ..
    } = *request;
    let model = registry::model(state, model_id)?.ok_or_else(|| TxFailure::NotFound {
        what: format!("model {model_id}"),
    })?;
    if !model.spec.allowed_modes.contains(&mode) {
        return Err(TxFailure::Invalid {
            reason: format!("model {model_id} does not allow mode {mode}"),
        });
    }
    match mode {
        Mode::Tee => {}
        // A dispute's one-step carries the input file: a larger one could never be disputed.
        Mode::Op if input.size > verity_types::MAX_ONE_STEP_INPUT_BYTES as u64 => {
            return Err(TxFailure::Invalid {
                reason: format!(
                    "an op task's input is at most {} bytes (a dispute carries it), not {}",
                    verity_types::MAX_ONE_STEP_INPUT_BYTES,
                    input.size
                ),
            })
        }
        // Bit-exact models' disputes end in one re-executed step; tolerant models' in a third
        // worker's run, compared within the tolerance.
        Mode::Op => {}
        Mode::TeeZk if model.zk.is_none() => {
            return Err(TxFailure::Invalid {
                reason: format!(
                    "model {model_id} has no zk keys yet; its owner sets them with SetZkKeys"
                ),
            })
        }
        // The proof must be about this input: the submitter, who has the file, commits to it.
        Mode::TeeZk if request.input_commitment.is_none() => return Err(TxFailure::Invalid {
            reason:
                "a tee_zk task names the commitment to its input (verity task submit computes it)"
                    .into(),
        }),
        Mode::TeeZk => {}
    }
    match (&model.spec.language, &request.generation) {
        (None, None) => {}
        (None, Some(_)) => {
            return Err(TxFailure::Invalid {
                reason: format!(
                    "model {model_id} is not a language model: its tasks name no generation limits"
                ),
            })
        }
        (Some(_), None) => {
            return Err(TxFailure::Invalid {
                reason: format!(
                    "model {model_id} is a language model: its tasks name their prompt tokens and max tokens"
                ),
            })
        }
        (Some(language), Some(limits)) => check_generation(model_id, language, limits, max_fee)?,
    }
    if mode != Mode::TeeZk && request.input_commitment.is_some() {
        return Err(TxFailure::Invalid {
            reason: format!("an input commitment is for tee_zk tasks, not {mode}"),
        });
    }
    if deadline_blocks == 0 || deadline_blocks > params.max_deadline_blocks {
        return Err(TxFailure::Invalid {
            reason: format!(
                "deadline must be 1 to {} blocks, not {deadline_blocks}",
                params.max_deadline_blocks
            ),
        });
    }
    if max_fee < params.min_task_fee {
        return Err(TxFailure::FeeTooLow {
            offered: max_fee,
            minimum: params.min_task_fee,
        });
    }
    if input.size > params.max_input_bytes {
        return Err(TxFailure::Invalid {
            reason: format!(
                "input is {} bytes, over the limit of {}",
                input.size, params.max_input_bytes
            ),
        });
    }
    if let Some(file) = request.dataset {
        if data::file(state, file)?.is_none() {
            return Err(TxFailure::NotFound {
                what: format!("data file {file}"),
            });
        }
    }
    Ok(())
}

/// A generation task's limits: at least one token in and out, together within the model's
/// context, and an escrow that pays for all of them at the model's prices.
fn check_generation(
    model_id: &Hash,
    language: &LanguageSpec,
    limits: &GenerationLimits,
    max_fee: Amount,
) -> Result<(), TxFailure> {
    let invalid = |reason: String| Err(TxFailure::Invalid { reason });
    if limits.prompt_tokens == 0 {
        return invalid("a generation task's prompt has at least one token".into());
    }
    if limits.max_tokens == 0 {
        return invalid("a generation task generates at least one token (max_tokens >= 1)".into());
    }
    let total = u64::from(limits.prompt_tokens) + u64::from(limits.max_tokens);
    if total > u64::from(language.context) {
        return invalid(format!(
            "{} prompt tokens and up to {} more do not fit model {model_id}'s context of {} tokens",
            limits.prompt_tokens, limits.max_tokens, language.context
        ));
    }
    let escrow = language.escrow(limits).ok_or_else(|| TxFailure::Invalid {
        reason: "the generation's price overflows".into(),
    })?;
    if max_fee < escrow {
        return Err(TxFailure::FeeTooLow {
            offered: max_fee,
            minimum: escrow,
        });
    }
    Ok(())
}

pub fn submit(
    state: &mut Overlay<'_>,
    ctx: &BlockCtx<'_>,
    task_id: Hash,
    submitter: &Address,
    request: &Request<'_>,
) -> Result<Task, TxFailure> {
    check(state, &ctx.genesis.params.tasks, request)?;
    if let Some(file) = request.dataset {
        let record = data::file(state, file)?.ok_or(StateError::Corrupt("checked file"))?;
        if !data::may_use(state, &record, submitter)? {
            return Err(TxFailure::Unauthorized {
                reason: format!(
                    "{submitter} may not use file {file}; its owner {} grants that with AddPermission",
                    record.owner
                ),
            });
        }
    }
    let max_fee = request.max_fee;
    accounts::debit(state, submitter, max_fee)?;
    let task = Task {
        task_id,
        submitter: *submitter,
        model_id: *request.model_id,
        input: *request.input,
        mode: request.mode,
        input_commitment: request.input_commitment,
        dataset: request.dataset,
        max_fee,
        status: TaskStatus::Pending,
        worker: None,
        submitted_height: ctx.height,
        deadline_height: ctx.height.saturating_add(request.deadline_blocks),
        assigned_height: None,
        timeout_height: None,
        timed_out: Vec::new(),
        closed_height: None,
        failure: None,
        disproven: Vec::new(),
        generation: request.generation,
    };
    state.put(
        Table::Tasks,
        by_height_key(ctx.height, &task_id),
        Vec::new(),
    );
    schedule::push(
        state,
        schedule::Kind::Deadline,
        task.deadline_height,
        &task_id,
    )?;
    // Drawn in the next block, from a seed that did not exist when this block's transactions
    // were chosen: no proposer can pick which submissions to include by where they would land.
    schedule::push(
        state,
        schedule::Kind::Assign,
        ctx.height.saturating_add(1),
        &task_id,
    )?;
    put(state, &task);
    Ok(task)
}

/// A worker's draw weight, when it may take tasks: enough stake, not banned, and a live enclave
/// (every mode verified here needs one). Which models it serves decides its pools, not this.
pub(crate) fn draw_weight(
    state: &Overlay<'_>,
    ctx: &BlockCtx<'_>,
    worker: &Address,
    stake: &staking::Worker,
) -> Result<Option<u128>, StateError> {
    if stake.stake < ctx.genesis.params.tasks.min_worker_stake {
        return Ok(None);
    }
    let rep = reputation::get(state, worker)?;
    if rep.banned {
        return Ok(None);
    }
    match enclaves::current(state, worker)? {
        Some(enclave) if enclaves::is_usable(state, &enclave, ctx.timestamp_ms)? => {}
        _ => return Ok(None),
    }
    // Weight in whole micro-tokens so that stake × factor cannot overflow.
    let units = (stake.stake / 1_000_000_000_000).max(1);
    Ok(Some(units.saturating_mul(rep.factor_percent())))
}

/// Draws for one task before it stays Pending: a drawn worker can turn out ineligible (its
/// enclave expired since its weight was set); it is then refreshed out of the pool.
pub(crate) const MAX_DRAWS: u32 = 8;

/// Workers that let a task time out and are still passed over when drawing it again, the most
/// recent first; this bounds the cost of a draw for a task that timed out many times.
const PASSED_OVER: usize = 16;

/// Draws an eligible worker for `model`, never one in `excluded`, refreshing drawn workers
/// that turn out ineligible; at most [`MAX_DRAWS`] draws. `entropy` gives each draw's input.
pub(crate) fn draw_eligible(
    state: &mut Overlay<'_>,
    ctx: &BlockCtx<'_>,
    model: &Hash,
    excluded: &[Address],
    entropy: impl Fn(u32) -> Hash,
) -> Result<Option<Address>, StateError> {
    for attempt in 0..MAX_DRAWS {
        let Some(worker) = sortition::draw(state, model, &entropy(attempt), excluded)? else {
            return Ok(None);
        };
        let stake = staking::get(state, &worker)?.unwrap_or_default();
        if stake.serves(model) && draw_weight(state, ctx, &worker, &stake)?.is_some() {
            return Ok(Some(worker));
        }
        sortition::refresh(state, ctx, &worker)?;
    }
    Ok(None)
}

/// Full workers a task's draw passes over before the task waits Pending: bounds the draws a
/// task costs when every worker is full.
const FULL_SKIPS: usize = 4;

/// [`draw_eligible`] among workers with room for one more assignment
/// (`max_open_assignments`), and for a generation one more generation
/// (`max_open_generations`).
fn draw_with_room(
    state: &mut Overlay<'_>,
    ctx: &BlockCtx<'_>,
    task: &Task,
    excluded: &[Address],
    entropy: impl Fn(u32) -> Hash,
) -> Result<Option<Address>, StateError> {
    let params = &ctx.genesis.params.tasks;
    let mut passed = excluded.to_vec();
    for _ in 0..=FULL_SKIPS {
        let Some(worker) = draw_eligible(state, ctx, &task.model_id, &passed, &entropy)? else {
            return Ok(None);
        };
        let room = open_assignments(state, &worker)? < params.max_open_assignments
            && (task.generation.is_none()
                || open_generations(state, &worker)? < params.max_open_generations);
        if room {
            return Ok(Some(worker));
        }
        passed.push(worker);
    }
    Ok(None)
}

/// Draws a worker for `task` from the block seed, weighted by stake × reputation among workers
/// serving its model with room for another assignment, never one whose result for it was
/// disproven and, while anyone else can take it, none that let it time out recently; leaves it
/// Pending when nobody is eligible.
fn assign(state: &mut Overlay<'_>, ctx: &BlockCtx<'_>, task: &mut Task) -> Result<(), StateError> {
    let (task_id, timeouts) = (task.task_id, task.timed_out.len() as u32);
    let entropy = |round: u8| {
        move |attempt: u32| {
            let mut input = ASSIGN_DOMAIN.to_vec();
            input.extend_from_slice(&ctx.seed.0);
            input.extend_from_slice(&task_id.0);
            input.extend_from_slice(&timeouts.to_le_bytes());
            input.push(round);
            input.extend_from_slice(&attempt.to_le_bytes());
            sha256(&input)
        }
    };
    let mut passed_over = task.disproven.clone();
    for worker in task.timed_out.iter().rev() {
        if passed_over.len() >= task.disproven.len() + PASSED_OVER {
            break;
        }
        if !passed_over.contains(worker) {
            passed_over.push(*worker);
        }
    }
    let mut chosen = draw_with_room(state, ctx, task, &passed_over, entropy(0))?;
    if chosen.is_none() && passed_over.len() > task.disproven.len() {
        chosen = draw_with_room(state, ctx, task, &task.disproven, entropy(1))?;
    }
    let Some(chosen) = chosen else {
        task.status = TaskStatus::Pending;
        task.worker = None;
        task.assigned_height = None;
        task.timeout_height = None;
        state.put(
            Table::Tasks,
            pending_key(ctx.height, &task.model_id, &task.task_id),
            Vec::new(),
        );
        return Ok(());
    };
    let timeout = ctx
        .height
        .saturating_add(ctx.genesis.params.tasks.assignment_timeout_blocks);
    task.status = TaskStatus::Assigned;
    task.worker = Some(chosen);
    task.assigned_height = Some(ctx.height);
    task.timeout_height = Some(timeout);
    state.put(
        Table::Tasks,
        assigned_key(&chosen, &task.task_id),
        Vec::new(),
    );
    add_assignment(state, &chosen, task, 1)?;
    schedule::push(state, schedule::Kind::Timeout, timeout, &task.task_id)?;
    Ok(())
}

/// A task waiting for an eligible worker, ordered by when it last found none.
fn pending_key(height: u64, model: &Hash, task_id: &Hash) -> Vec<u8> {
    let mut key = PENDING_PREFIX.to_vec();
    key.extend_from_slice(&height.to_be_bytes());
    key.extend_from_slice(&model.0);
    key.extend_from_slice(&task_id.0);
    key
}

/// The model and task of a pending entry.
fn parse_pending_key(key: &[u8]) -> Result<(Hash, Hash), StateError> {
    let rest = key
        .get(PENDING_PREFIX.len() + 8..)
        .filter(|rest| rest.len() == 64)
        .ok_or(StateError::Corrupt("pending index"))?;
    let hash = |bytes: &[u8]| Hash(bytes.try_into().expect("32 bytes"));
    Ok((hash(&rest[..32]), hash(&rest[32..])))
}

/// Ends a task's assignment (result delivered, timed out, cancelled or expired).
pub fn unassign(state: &mut Overlay<'_>, task: &Task) -> Result<(), StateError> {
    if let Some(worker) = task.worker {
        let key = assigned_key(&worker, &task.task_id);
        // Only a live assignment counts: a task unassigned twice gives back one slot.
        if state.get(Table::Tasks, &key)?.is_some() {
            state.delete(Table::Tasks, key);
            add_assignment(state, &worker, task, -1)?;
        }
    }
    Ok(())
}

fn close(
    state: &mut Overlay<'_>,
    task: &mut Task,
    status: TaskStatus,
    height: u64,
) -> Result<(), StateError> {
    unassign(state, task)?;
    task.status = status;
    task.closed_height = Some(height);
    Ok(())
}

/// Returns the escrow to the submitter (cancel and expiry).
fn refund(state: &mut Overlay<'_>, task: &Task) -> Result<(), TxFailure> {
    accounts::credit(state, &task.submitter, task.max_fee)
}

pub fn cancel(
    state: &mut Overlay<'_>,
    ctx: &BlockCtx<'_>,
    sender: &Address,
    task_id: &Hash,
) -> Result<(), TxFailure> {
    let mut task = get(state, task_id)?.ok_or_else(|| TxFailure::NotFound {
        what: format!("task {task_id}"),
    })?;
    if task.submitter != *sender {
        return Err(TxFailure::Unauthorized {
            reason: format!("only the submitter {} may cancel {task_id}", task.submitter),
        });
    }
    match task.status {
        TaskStatus::Pending => {}
        // Its worker may be computing, or done: a submitter who could withdraw now would
        // cancel once it has seen the output and pay nothing. The deadline refunds a task that
        // never gets a result.
        TaskStatus::Assigned => {
            return Err(TxFailure::Invalid {
                reason: format!(
                    "task {task_id} is assigned; only a pending task can be cancelled, and an assigned one is refunded at its deadline (height {}) if no result comes",
                    task.deadline_height
                ),
            })
        }
        status => {
            return Err(TxFailure::Invalid {
                reason: format!("task {task_id} is already {status:?}"),
            })
        }
    }
    refund(state, &task)?;
    close(state, &mut task, TaskStatus::Cancelled, ctx.height)?;
    put(state, &task);
    Ok(())
}

/// A task whose OP result was disproven: drawn again from the same escrow, without that
/// worker, in the next block; or expired and refunded if its deadline has passed meanwhile.
pub fn reopen(
    state: &mut Overlay<'_>,
    ctx: &BlockCtx<'_>,
    task: &mut Task,
    disproven: Address,
) -> Result<(), StateError> {
    unassign(state, task)?;
    task.disproven.push(disproven);
    if ctx.height >= task.deadline_height {
        if refund(state, task).is_err() {
            return Err(StateError::Corrupt("escrow refund overflows a balance"));
        }
        close(state, task, TaskStatus::Expired, ctx.height)?;
    } else {
        task.status = TaskStatus::Pending;
        task.worker = None;
        task.assigned_height = None;
        task.timeout_height = None;
        schedule::push(
            state,
            schedule::Kind::Assign,
            ctx.height.saturating_add(1),
            &task.task_id,
        )?;
    }
    put(state, task);
    Ok(())
}

/// Start-of-block work for tasks: timeouts reassign and penalise, deadlines expire and refund,
/// and tasks still waiting for a worker try again.
pub fn begin_block(state: &mut Overlay<'_>, ctx: &BlockCtx<'_>) -> Result<(), StateError> {
    let penalty = ctx.genesis.params.tasks.timeout_penalty;
    for worker in reputation::forgive_due(state, ctx.height)? {
        sortition::refresh(state, ctx, &worker)?;
    }
    for id in schedule::take::<Hash>(state, schedule::Kind::Deadline, ctx.height)? {
        let Some(mut task) = get(state, &id)? else {
            continue;
        };
        // An OP result in its window settles there, or is disproven and expires then.
        if task.status.is_final() || task.status == TaskStatus::Challengeable {
            continue;
        }
        if refund(state, &task).is_err() {
            return Err(StateError::Corrupt("escrow refund overflows a balance"));
        }
        close(state, &mut task, TaskStatus::Expired, ctx.height)?;
        put(state, &task);
    }
    for id in schedule::take::<Hash>(state, schedule::Kind::Timeout, ctx.height)? {
        let Some(mut task) = get(state, &id)? else {
            continue;
        };
        // Only the assignment this entry was scheduled for; a later one has its own entry.
        if task.status != TaskStatus::Assigned || task.timeout_height != Some(ctx.height) {
            continue;
        }
        let worker = task
            .worker
            .ok_or(StateError::Corrupt("assigned task without worker"))?;
        reputation::record_timeout(
            state,
            &worker,
            &task.task_id,
            penalty,
            ctx.height,
            ctx.genesis.params.tasks.timeout_forgiven_after_blocks,
        )?;
        sortition::refresh(state, ctx, &worker)?;
        unassign(state, &task)?;
        task.timed_out.push(worker);
        assign(state, ctx, &mut task)?;
        put(state, &task);
    }
    // Tasks that found no eligible worker before, oldest first, a bounded number per block;
    // those that fail their first draw below wait for the next block.
    let waiting = state.scan_prefix(Table::Tasks, PENDING_PREFIX, PENDING_RETRIES_PER_BLOCK)?;
    let mut served = std::collections::BTreeMap::new();
    for (key, _) in waiting {
        let (model, id) = parse_pending_key(&key)?;
        state.delete(Table::Tasks, key);
        // Nobody can take it yet: back of the queue, without reading the task.
        let live = match served.get(&model) {
            Some(live) => *live,
            None => {
                let live = sortition::has_weight(state, &model)?;
                served.insert(model, live);
                live
            }
        };
        if !live {
            state.put(
                Table::Tasks,
                pending_key(ctx.height, &model, &id),
                Vec::new(),
            );
            continue;
        }
        let task = get(state, &id)?;
        let Some(mut task) = task.filter(|t| t.status == TaskStatus::Pending) else {
            continue;
        };
        // Assigned, or queued again behind the others under this height.
        assign(state, ctx, &mut task)?;
        put(state, &task);
    }
    for id in schedule::take::<Hash>(state, schedule::Kind::Assign, ctx.height)? {
        let Some(mut task) = get(state, &id)? else {
            continue;
        };
        if task.status != TaskStatus::Pending {
            continue;
        }
        assign(state, ctx, &mut task)?;
        put(state, &task);
    }
    Ok(())
}
