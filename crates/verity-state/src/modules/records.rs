//! `records`: the ExecutionRecord of each verified task, written by the verifier.

use serde::{Deserialize, Serialize};
use verity_tee::TeeKind;
use verity_types::{Address, Hash, Mode, ReceiptError, TaskReceipt, ZkReceipt};

use crate::modules::settlement::Split;
use crate::overlay::Overlay;
use crate::store::Table;
use crate::StateError;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RecordStatus {
    /// An OP result inside its challenge window or under dispute: not settled yet.
    Submitted,
    /// Verified and settled. TEE results are verified, recorded and settled in one step.
    Finalized,
    /// Disproven in a dispute: never settled; the task was drawn again.
    Rejected,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ExecutionRecord {
    pub task_id: Hash,
    pub model_id: Hash,
    pub mode: Mode,
    pub status: RecordStatus,
    pub worker: Address,
    pub input_hash: Hash,
    pub output_hash: Hash,
    pub output_size: u64,
    pub trace_root: Hash,
    pub trace_len: u32,
    #[serde(with = "verity_types::serde_hex::array")]
    #[schema(schema_with = verity_types::schema::hex_bytes)]
    pub enclave_key: [u8; 32],
    /// The enclave's signature over the receipt (a `tee_zk` result's: over the receipt and
    /// the proof's commitments), so that anyone can check the result against the enclave key
    /// without trusting the node that serves the record ([`ExecutionRecord::verify_signature`]).
    #[serde(with = "verity_types::serde_hex::array")]
    #[schema(schema_with = verity_types::schema::hex_bytes)]
    pub signature: [u8; 64],
    pub tee_kind: TeeKind,
    /// True when the enclave was a dev enclave: "dev TEE, not hardware-backed".
    pub dev_tee: bool,
    pub submitted_height: u64,
    pub assigned_height: u64,
    pub verified_height: u64,
    /// 0 until the result is finalized.
    pub finalized_height: u64,
    /// All zero until the result is finalized.
    pub settlement: Split,
    /// OP results: the last height at which a dispute may be opened.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub challenge_until: Option<u64>,
    /// `tee_zk` results: the proof the validators verified, and what it states.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zk: Option<ZkProof>,
}

impl ExecutionRecord {
    /// The receipt the worker's enclave signed, rebuilt from the record.
    pub fn receipt(&self) -> TaskReceipt {
        TaskReceipt {
            task_id: self.task_id,
            model_id: self.model_id,
            input_hash: self.input_hash,
            output_hash: self.output_hash,
            output_size: self.output_size,
            trace_root: self.trace_root,
            trace_len: self.trace_len,
            worker: self.worker,
            enclave_key: self.enclave_key,
            signature: self.signature,
        }
    }

    /// Checks the enclave's signature over what this record says, for `chain_id`.
    pub fn verify_signature(&self, chain_id: &str) -> Result<(), ReceiptError> {
        match &self.zk {
            None => self.receipt().verify(chain_id),
            Some(zk) => ZkReceipt {
                receipt: self.receipt(),
                input_commitment: zk.input_commitment,
                output_commitment: zk.output_commitment,
                proof: zk.proof.clone(),
            }
            .verify(chain_id),
        }
    }
}

/// A verified Groth16 proof of a result, with its public commitments (`docs/protocol.md` §13).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ZkProof {
    #[serde(with = "verity_types::serde_hex::bytes")]
    #[schema(schema_with = verity_types::schema::hex_bytes)]
    pub proof: Vec<u8>,
    pub input_commitment: Hash,
    pub output_commitment: Hash,
}

pub fn get(state: &Overlay<'_>, task_id: &Hash) -> Result<Option<ExecutionRecord>, StateError> {
    state.get_json(Table::Records, &task_id.0, "execution record")
}

pub fn put(state: &mut Overlay<'_>, record: &ExecutionRecord) {
    state.put_json(Table::Records, record.task_id.0.to_vec(), record);
}
