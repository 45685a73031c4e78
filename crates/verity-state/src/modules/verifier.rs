//! `verifier`: checks submitted results. TEE path: every receipt is signed by a registered,
//! unexpired enclave of the task's assigned worker, over this task, model and input. Signatures
//! of a batch are verified together; a batch applies whole or not at all.

use serde::{Deserialize, Serialize};
use verity_types::{
    verify_receipts, Address, FailureReceipt, Hash, Mode, TaskReceipt, ZkReceipt,
    MAX_REVEALED_OUTPUT_BYTES,
};

use crate::modules::records::{ExecutionRecord, RecordStatus};
use crate::modules::tasks::TaskStatus;
use crate::modules::{
    accounts, enclaves, records, registry, reputation, schedule, settlement, sortition, tasks,
};
use crate::overlay::Overlay;
use crate::{BlockCtx, TxFailure};

pub fn submit_receipts(
    state: &mut Overlay<'_>,
    ctx: &BlockCtx<'_>,
    receipts: &[TaskReceipt],
) -> Result<Vec<Skipped>, TxFailure> {
    if receipts.is_empty() {
        return Err(TxFailure::Invalid {
            reason: "no receipts".into(),
        });
    }
    verify_receipts(&ctx.genesis.chain_id, receipts).map_err(|(index, e)| {
        TxFailure::ReceiptRejected {
            index: index as u32,
            reason: e.to_string(),
        }
    })?;
    let mut skipped = Vec::new();
    for (index, receipt) in receipts.iter().enumerate() {
        let outcome = apply_one(state, ctx, receipt, None).map_err(|e| match e {
            TxFailure::ReceiptRejected { reason, .. } => TxFailure::ReceiptRejected {
                index: index as u32,
                reason,
            },
            other => other,
        })?;
        if let Some(reason) = outcome {
            skipped.push(Skipped {
                index: index as u32,
                task_id: receipt.task_id,
                reason,
            });
        }
    }
    Ok(skipped)
}

/// SubmitZkReceipt: a `tee_zk` result. Everything a TEE receipt is checked for, the enclave's
/// signature over the receipt and the proof's commitments, and the Groth16 proof against the
/// model's verifying key with public inputs (model id, input commitment, output commitment).
/// Any failure rejects it with nothing recorded.
pub fn submit_zk_receipt(
    state: &mut Overlay<'_>,
    ctx: &BlockCtx<'_>,
    zk: &ZkReceipt,
) -> Result<Vec<Skipped>, TxFailure> {
    zk.verify(&ctx.genesis.chain_id)
        .map_err(|e| reject(e.to_string()))?;
    Ok(apply_one(state, ctx, &zk.receipt, Some(zk))?
        .map(|reason| Skipped {
            index: 0,
            task_id: zk.receipt.task_id,
            reason,
        })
        .into_iter()
        .collect())
}

/// Checks a `tee_zk` result's proof.
fn check_proof(
    state: &Overlay<'_>,
    ctx: &BlockCtx<'_>,
    task: &tasks::Task,
    zk: &ZkReceipt,
) -> Result<(), TxFailure> {
    let model = registry::model(state, &task.model_id)?.ok_or_else(|| TxFailure::NotFound {
        what: format!("model {}", task.model_id),
    })?;
    let keys = model
        .zk
        .ok_or_else(|| reject(format!("model {} has no zk keys", task.model_id)))?;
    let key = ctx
        .models
        .zk_key(&task.model_id, &keys.verifying_key)
        .map_err(|e| reject(format!("the model's verifying key: {e}")))?;
    if task.input_commitment != Some(zk.input_commitment) {
        return Err(reject(format!(
            "the proof's input commitment is not the one task {} was submitted with",
            task.task_id
        )));
    }
    let proof = verity_zk::Proof::from_bytes(&zk.proof).map_err(|e| reject(e.to_string()))?;
    let public = verity_zk::PublicInputs {
        model_id: task.model_id,
        input_commitment: zk.input_commitment,
        output_commitment: zk.output_commitment,
    };
    verity_zk::verify(&key, &public, &proof).map_err(|e| reject(format!("the zk proof: {e}")))
}

/// A receipt of a batch that was passed over: its task moved on while the batch was in flight.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Skipped {
    pub index: u32,
    pub task_id: Hash,
    pub reason: String,
}

fn reject(reason: String) -> TxFailure {
    TxFailure::ReceiptRejected { index: 0, reason }
}

/// What a receipt or a failure report claims about one task.
struct Claim<'a> {
    task_id: Hash,
    model_id: &'a Hash,
    input_hash: &'a Hash,
    worker: &'a Address,
    enclave_key: &'a [u8; 32],
}

/// The task and signing enclave behind a claim, once everything checks: the task is assigned to
/// the claiming worker, the model and input match, and the enclave is that worker's, unexpired
/// and still accepted by the policy. `Ok(Err(reason))`: the task closed or moved to another
/// worker while the claim travelled, so it is skipped. `Err`: the claim is wrong in itself.
fn check_claim(
    state: &Overlay<'_>,
    ctx: &BlockCtx<'_>,
    claim: &Claim<'_>,
) -> Result<Result<(tasks::Task, enclaves::Enclave), String>, TxFailure> {
    let id = claim.task_id;
    // Authentic first, whatever became of the task: signed by an enclave registered to the
    // claiming worker.
    let enclave = enclaves::by_key(state, claim.enclave_key)?
        .ok_or_else(|| reject("the signing enclave key is not registered".into()))?;
    if enclave.worker != *claim.worker {
        return Err(reject(
            "the signing enclave key belongs to another worker".into(),
        ));
    }
    let task = tasks::get(state, &id)?.ok_or_else(|| reject(format!("no task {id}")))?;
    if task.status.is_final() || task.status == TaskStatus::Challengeable {
        return Ok(Err(format!("task {id} is already {:?}", task.status)));
    }
    if task.disproven.contains(claim.worker) {
        return Ok(Err(format!(
            "{}'s result for task {id} was disproven; the task moved on",
            claim.worker
        )));
    }
    if task.timed_out.contains(claim.worker) && task.worker != Some(*claim.worker) {
        return Ok(Err(format!(
            "task {id} timed out for {} and moved on",
            claim.worker
        )));
    }
    if task.status != TaskStatus::Assigned {
        return Err(reject(format!(
            "task {id} is {:?}, not assigned",
            task.status
        )));
    }
    let assigned = task
        .worker
        .ok_or_else(|| reject(format!("task {id} has no worker")))?;
    if assigned != *claim.worker {
        return Err(reject(format!(
            "task {id} is assigned to {assigned}, not {}",
            claim.worker
        )));
    }
    if *claim.model_id != task.model_id || *claim.input_hash != task.input.hash {
        return Err(reject(format!(
            "receipt's model or input does not match task {id}"
        )));
    }
    if !enclave.is_live(ctx.timestamp_ms) {
        return Err(reject(
            "the signing enclave's attestation has expired".into(),
        ));
    }
    if !enclaves::is_usable(state, &enclave, ctx.timestamp_ms)? {
        return Err(reject(
            "the signing enclave's kind or measurement is no longer accepted by the policy".into(),
        ));
    }
    Ok(Ok((task, enclave)))
}

/// Settles one receipt; `Ok(Some(reason))` when it is skipped because its task closed or moved
/// to another worker while the batch travelled. A receipt that is wrong in itself rejects the
/// whole batch.
fn apply_one(
    state: &mut Overlay<'_>,
    ctx: &BlockCtx<'_>,
    receipt: &TaskReceipt,
    zk: Option<&ZkReceipt>,
) -> Result<Option<String>, TxFailure> {
    let claim = Claim {
        task_id: receipt.task_id,
        model_id: &receipt.model_id,
        input_hash: &receipt.input_hash,
        worker: &receipt.worker,
        enclave_key: &receipt.enclave_key,
    };
    let (mut task, enclave) = match check_claim(state, ctx, &claim)? {
        Ok(found) => found,
        Err(skip) => return Ok(Some(skip)),
    };
    match (task.mode, zk) {
        (Mode::TeeZk, Some(zk)) => check_proof(state, ctx, &task, zk)?,
        (Mode::TeeZk, None) => {
            return Err(reject(format!(
                "task {} is tee_zk: its result comes with a proof (SubmitZkReceipt)",
                task.task_id
            )))
        }
        (_, Some(_)) => {
            return Err(reject(format!(
                "task {} is {}, not tee_zk",
                task.task_id, task.mode
            )))
        }
        (_, None) => {}
    }
    // A generation's trace has one leaf per generated token: no fewer than one, no more than
    // the escrow paid for.
    if let Some(limits) = &task.generation {
        if receipt.trace_len == 0 || receipt.trace_len > limits.max_tokens {
            return Err(reject(format!(
                "task {} generates 1 to {} tokens, not {}",
                task.task_id, limits.max_tokens, receipt.trace_len
            )));
        }
    }
    let record = ExecutionRecord {
        task_id: receipt.task_id,
        model_id: task.model_id,
        mode: task.mode,
        status: RecordStatus::Submitted,
        worker: receipt.worker,
        input_hash: receipt.input_hash,
        output_hash: receipt.output_hash,
        output_size: receipt.output_size,
        trace_root: receipt.trace_root,
        trace_len: receipt.trace_len,
        enclave_key: receipt.enclave_key,
        signature: receipt.signature,
        tee_kind: enclave.kind,
        dev_tee: enclave.is_dev(),
        submitted_height: task.submitted_height,
        assigned_height: task.assigned_height.unwrap_or(task.submitted_height),
        verified_height: ctx.height,
        finalized_height: 0,
        settlement: Default::default(),
        challenge_until: None,
        zk: zk.map(|zk| records::ZkProof {
            proof: zk.proof.clone(),
            input_commitment: zk.input_commitment,
            output_commitment: zk.output_commitment,
        }),
    };
    if task.mode == Mode::Op && receipt.output_size > MAX_REVEALED_OUTPUT_BYTES as u64 {
        let tolerant =
            registry::model(state, &task.model_id)?.is_some_and(|m| m.spec.tolerance_ppm > 0);
        if tolerant {
            return Err(reject(format!(
                "a tolerant model's op output is at most {MAX_REVEALED_OUTPUT_BYTES} bytes (a dispute reveals it), not {}",
                receipt.output_size
            )));
        }
    }
    if task.mode == Mode::Op {
        // Recorded, not settled: anyone bonded may dispute it until the window closes.
        let until = ctx
            .height
            .saturating_add(ctx.genesis.params.tasks.challenge_window_blocks);
        records::put(
            state,
            &ExecutionRecord {
                challenge_until: Some(until),
                ..record
            },
        );
        tasks::unassign(state, &task)?;
        task.status = TaskStatus::Challengeable;
        tasks::put(state, &task);
        schedule::push(
            state,
            schedule::Kind::Window,
            until.saturating_add(1),
            &task.task_id,
        )?;
        return Ok(None);
    }
    settle(state, ctx, task, record)?;
    Ok(None)
}

/// Pays a verified result and closes its task: the fee split, +10 reputation, the record
/// finalized. TEE results settle on receipt, OP results when their window closes undisputed.
pub(crate) fn settle(
    state: &mut Overlay<'_>,
    ctx: &BlockCtx<'_>,
    mut task: tasks::Task,
    mut record: ExecutionRecord,
) -> Result<(), TxFailure> {
    let model = registry::model(state, &task.model_id)?.ok_or_else(|| TxFailure::NotFound {
        what: format!("model {}", task.model_id),
    })?;
    let protocol = ctx.genesis.params.protocol_account();
    // A generation pays for its prompt and the tokens it produced; the rest of the escrow,
    // reserved for tokens it did not generate, goes back.
    let fee = match (&task.generation, &model.spec.language) {
        (Some(limits), Some(language)) => language
            .fee(limits.prompt_tokens, record.trace_len)
            .map_or(task.max_fee, |fee| fee.min(task.max_fee)),
        _ => task.max_fee,
    };
    let refund = task.max_fee - fee;
    if refund > 0 {
        accounts::credit(state, &task.submitter, refund)?;
    }
    let split = settlement::Split {
        refund,
        ..ctx
            .genesis
            .params
            .tasks
            .fee_split
            .split(fee, task.dataset.is_some())
    };
    settlement::pay(state, &split, &record.worker, &model.owner, &protocol)?;
    if let Some(file) = task.dataset {
        crate::modules::data::share_fee(state, file, split.data)?;
    }
    reputation::record_success(state, &record.worker)?;
    sortition::refresh(state, ctx, &record.worker)?;
    record.status = RecordStatus::Finalized;
    record.finalized_height = ctx.height;
    record.settlement = split;
    records::put(state, &record);
    tasks::unassign(state, &task)?;
    task.status = TaskStatus::Finalized;
    task.closed_height = Some(ctx.height);
    tasks::put(state, &task);
    Ok(())
}

/// ReportFailures: tasks the worker's enclave could not run (input or model unavailable or
/// wrong, input that does not fit). Each closes as Failed: the worker gets `failure_fee_bps` of
/// the escrow for its trouble, the submitter the rest, and no reputation changes. Like receipts,
/// a report for a task that moved on is skipped and one that is wrong in itself rejects the
/// whole transaction.
pub fn report_failures(
    state: &mut Overlay<'_>,
    ctx: &BlockCtx<'_>,
    failures: &[FailureReceipt],
) -> Result<Vec<Skipped>, TxFailure> {
    if failures.is_empty() {
        return Err(TxFailure::Invalid {
            reason: "no failures".into(),
        });
    }
    let mut skipped = Vec::new();
    for (index, failure) in failures.iter().enumerate() {
        let index = index as u32;
        let rejected = |reason: String| TxFailure::ReceiptRejected { index, reason };
        failure
            .verify(&ctx.genesis.chain_id)
            .map_err(|e| rejected(e.to_string()))?;
        let claim = Claim {
            task_id: failure.task_id,
            model_id: &failure.model_id,
            input_hash: &failure.input_hash,
            worker: &failure.worker,
            enclave_key: &failure.enclave_key,
        };
        let mut task = match check_claim(state, ctx, &claim).map_err(|e| match e {
            TxFailure::ReceiptRejected { reason, .. } => rejected(reason),
            other => other,
        })? {
            Ok((task, _)) => task,
            Err(reason) => {
                skipped.push(Skipped {
                    index,
                    task_id: failure.task_id,
                    reason,
                });
                continue;
            }
        };
        let bps = u128::from(ctx.genesis.params.tasks.failure_fee_bps);
        let worker_fee = task.max_fee / 10_000 * bps + task.max_fee % 10_000 * bps / 10_000;
        accounts::credit(state, &failure.worker, worker_fee)?;
        accounts::credit(state, &task.submitter, task.max_fee - worker_fee)?;
        tasks::unassign(state, &task)?;
        task.status = TaskStatus::Failed;
        task.failure = Some(failure.reason);
        task.closed_height = Some(ctx.height);
        tasks::put(state, &task);
    }
    Ok(skipped)
}
