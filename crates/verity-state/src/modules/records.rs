//! `records`: the ExecutionRecord of each verified task, written by the verifier.

use serde::{Deserialize, Serialize};
use verity_tee::TeeKind;
use verity_types::{Address, Hash, Mode};

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
