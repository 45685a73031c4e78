//! `verifier`: checks submitted results. TEE path: every receipt is signed by a registered,
//! unexpired enclave of the task's assigned worker, over this task, model and input. Signatures
//! of a batch are verified together; a batch applies whole or not at all.

use serde::{Deserialize, Serialize};
use verity_types::{verify_receipts, Address, Hash, TaskReceipt};

use crate::modules::records::{ExecutionRecord, RecordStatus};
use crate::modules::tasks::TaskStatus;
use crate::modules::{enclaves, records, registry, reputation, settlement, sortition, tasks};
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
    let protocol = ctx.genesis.params.protocol_account();
    let mut skipped = Vec::new();
    for (index, receipt) in receipts.iter().enumerate() {
        let outcome = apply_one(state, ctx, receipt, &protocol).map_err(|e| match e {
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

/// A receipt of a batch that was passed over: its task moved on while the batch was in flight.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Skipped {
    pub index: u32,
    pub task_id: Hash,
    pub reason: String,
}

fn reject(reason: String) -> TxFailure {
    TxFailure::ReceiptRejected { index: 0, reason }
}

/// Settles one receipt; `Ok(Some(reason))` when it is skipped because its task closed or moved
/// to another worker while the batch travelled. A receipt that is wrong in itself rejects the
/// whole batch.
fn apply_one(
    state: &mut Overlay<'_>,
    ctx: &BlockCtx<'_>,
    receipt: &TaskReceipt,
    protocol: &Address,
) -> Result<Option<String>, TxFailure> {
    let id = receipt.task_id;
    let mut task = tasks::get(state, &id)?.ok_or_else(|| reject(format!("no task {id}")))?;
    if task.status.is_final() {
        return Ok(Some(format!("task {id} is already {:?}", task.status)));
    }
    if task.timed_out.contains(&receipt.worker) && task.worker != Some(receipt.worker) {
        return Ok(Some(format!(
            "task {id} timed out for {} and moved on",
            receipt.worker
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
    if assigned != receipt.worker {
        return Err(reject(format!(
            "task {id} is assigned to {assigned}, not {}",
            receipt.worker
        )));
    }
    if receipt.model_id != task.model_id || receipt.input_hash != task.input.hash {
        return Err(reject(format!(
            "receipt's model or input does not match task {id}"
        )));
    }
    let enclave = enclaves::by_key(state, &receipt.enclave_key)?
        .ok_or_else(|| reject("the signing enclave key is not registered".into()))?;
    if enclave.worker != receipt.worker {
        return Err(reject(
            "the signing enclave key belongs to another worker".into(),
        ));
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
    let model = registry::model(state, &task.model_id)?
        .ok_or_else(|| reject(format!("model {} is gone", task.model_id)))?;
    let split = ctx.genesis.params.tasks.fee_split.split(task.max_fee);
    settlement::pay(state, &split, &assigned, &model.owner, protocol)?;
    reputation::record_success(state, &assigned)?;
    sortition::refresh(state, ctx, &assigned)?;
    records::put(
        state,
        &ExecutionRecord {
            task_id: id,
            model_id: task.model_id,
            mode: task.mode,
            status: RecordStatus::Finalized,
            worker: assigned,
            input_hash: receipt.input_hash,
            output_hash: receipt.output_hash,
            output_size: receipt.output_size,
            trace_root: receipt.trace_root,
            trace_len: receipt.trace_len,
            enclave_key: receipt.enclave_key,
            tee_kind: enclave.kind,
            dev_tee: enclave.is_dev(),
            submitted_height: task.submitted_height,
            assigned_height: task.assigned_height.unwrap_or(task.submitted_height),
            verified_height: ctx.height,
            finalized_height: ctx.height,
            settlement: split,
        },
    );
    tasks::unassign(state, &task);
    task.status = TaskStatus::Finalized;
    task.closed_height = Some(ctx.height);
    tasks::put(state, &task);
    Ok(None)
}
