//! The node's `/v1` HTTP API as types: every request and response body, the error codes, the
//! events, and the blob-upload authorisation. The node's handlers, `verity-client` and the CLI
//! all speak these, and the OpenAPI document is generated from them, so the three cannot drift.

mod upload;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use verity_types::{Address, Amount, FeeSchedule, Hash};

pub use upload::{UploadAuth, UploadAuthError, UPLOAD_DOMAIN, UPLOAD_HEADER};
pub use verity_state::modules::disputes::{dispute_id, DisputeStatus, RefereeCheck};
pub use verity_state::modules::game::{Game, Phase, Side, DEPTH};
pub use verity_state::modules::records::RecordStatus;
pub use verity_state::{
    AttestationNonce, BlockRecord, Challenger, Committee, DataFile, DataJob, DataJobStatus,
    DataVerifier, Dataset, Dispute, ExecutionRecord, Member, Model, Receipt, Reputation, Task,
    TaskStatus, TxFailure, TxStatus, Validator, Worker,
};
pub use verity_tee::Policy;

/// Largest page any list endpoint returns.
pub const MAX_PAGE: u32 = 1_000;

/// Every error the API answers with: `{ "error": { "code", "message" } }`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ErrorDetail {
    pub code: ErrorCode,
    /// For people; may change between releases. Programs match on `code`.
    pub message: String,
}

/// The stable, machine-readable error codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// A path or query parameter, or the request body, is not what the endpoint takes.
    BadRequest,
    NotFound,
    /// The node failed; not the client's fault.
    Internal,
    /// The request took longer than the node allows.
    Timeout,
    // Transactions (`POST /v1/txs`).
    MalformedTransaction,
    WrongChainId,
    BadSignature,
    BadNonce,
    FeeTooLow,
    InsufficientBalance,
    Overflow,
    Unauthorized,
    InvalidAction,
    AttestationRejected,
    ReceiptRejected,
    NonceTooFarAhead,
    DuplicateTransaction,
    MempoolFull,
    ReplacementUnderpriced,
    SenderPendingLimit,
    // Blobs.
    BadCid,
    BlobTooLarge,
    BadUpload,
    /// An upload without a Content-Length: quotas and the disk floor are charged up front.
    LengthRequired,
    /// The upload's bytes do not hash to the content hash its authorisation signed.
    HashMismatch,
    /// The upload carries no valid authorisation header.
    UploadUnauthorized,
    /// The uploading account holds less than the node's minimum balance.
    BalanceTooLow,
    /// The uploading account used its quota for the current window.
    QuotaExceeded,
    /// The node is taking as many submissions and uploads as it can; retry after Retry-After.
    Overloaded,
    /// The node's free disk is below its floor.
    InsufficientStorage,
    /// No block is finalized yet.
    NoBlocksYet,
    /// A code this client does not know (a newer node).
    #[serde(other)]
    Unknown,
}

impl ErrorCode {
    /// The code a transaction failure answers with at admission.
    pub fn of_failure(failure: &TxFailure) -> Self {
        match failure {
            TxFailure::Malformed { .. } => Self::MalformedTransaction,
            TxFailure::WrongChain { .. } => Self::WrongChainId,
            TxFailure::BadSignature { .. } => Self::BadSignature,
            TxFailure::BadNonce { .. } => Self::BadNonce,
            TxFailure::FeeTooLow { .. } => Self::FeeTooLow,
            TxFailure::InsufficientBalance { .. } => Self::InsufficientBalance,
            TxFailure::Overflow => Self::Overflow,
            TxFailure::Internal { .. } => Self::Internal,
            TxFailure::NotFound { .. } => Self::NotFound,
            TxFailure::Unauthorized { .. } => Self::Unauthorized,
            TxFailure::Invalid { .. } => Self::InvalidAction,
            TxFailure::Attestation { .. } => Self::AttestationRejected,
            TxFailure::ReceiptRejected { .. } => Self::ReceiptRejected,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::BadRequest => "bad_request",
            Self::NotFound => "not_found",
            Self::Internal => "internal",
            Self::Timeout => "timeout",
            Self::MalformedTransaction => "malformed_transaction",
            Self::WrongChainId => "wrong_chain_id",
            Self::BadSignature => "bad_signature",
            Self::BadNonce => "bad_nonce",
            Self::FeeTooLow => "fee_too_low",
            Self::InsufficientBalance => "insufficient_balance",
            Self::Overflow => "overflow",
            Self::Unauthorized => "unauthorized",
            Self::InvalidAction => "invalid_action",
            Self::AttestationRejected => "attestation_rejected",
            Self::ReceiptRejected => "receipt_rejected",
            Self::NonceTooFarAhead => "nonce_too_far_ahead",
            Self::DuplicateTransaction => "duplicate_transaction",
            Self::MempoolFull => "mempool_full",
            Self::ReplacementUnderpriced => "replacement_underpriced",
            Self::SenderPendingLimit => "sender_pending_limit",
            Self::BadCid => "bad_cid",
            Self::BlobTooLarge => "blob_too_large",
            Self::BadUpload => "bad_upload",
            Self::LengthRequired => "length_required",
            Self::HashMismatch => "hash_mismatch",
            Self::UploadUnauthorized => "upload_unauthorized",
            Self::BalanceTooLow => "balance_too_low",
            Self::QuotaExceeded => "quota_exceeded",
            Self::Overloaded => "overloaded",
            Self::InsufficientStorage => "insufficient_storage",
            Self::NoBlocksYet => "no_blocks_yet",
            Self::Unknown => "unknown",
        }
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `POST /v1/txs`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct SubmitTx {
    /// The encoded signed transaction, hex with or without 0x.
    #[schema(pattern = "^(0x)?([0-9a-fA-F]{2})+$")]
    pub tx: String,
}

/// Where a transaction is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum TxState {
    /// In this node's mempool.
    Pending,
    /// In a finalized block; the receipt says whether it succeeded.
    Finalized,
}

/// `POST /v1/txs` (202) and `GET /v1/txs/{hash}`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct TxView {
    pub hash: Hash,
    pub status: TxState,
    /// Present once finalized.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub receipt: Option<Receipt>,
}

/// `GET /v1/accounts/{address}`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct AccountView {
    pub address: Address,
    #[serde(with = "verity_types::amount")]
    #[schema(schema_with = verity_types::schema::amount)]
    pub balance: Amount,
    /// The next nonce in committed state.
    pub nonce: u64,
    /// The next nonce counting this node's pending transactions from the account: what its
    /// next transaction should carry.
    pub pending_nonce: u64,
}

/// A validator as the status endpoint lists it.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct ValidatorInfo {
    pub public_key: String,
    pub p2p: String,
    pub api: String,
}

/// `GET /v1/status`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct StatusView {
    pub chain_id: String,
    pub node: String,
    /// Height of this node's executed state.
    pub height: u64,
    pub finalized_height: u64,
    pub state_root: Hash,
    /// Transactions in this node's mempool.
    pub mempool: u64,
    pub validators: Vec<ValidatorInfo>,
    /// Validators this node is connected to, by public key.
    pub peers: Vec<String>,
    pub fees: FeeSchedule,
    pub max_block_weight: u64,
    /// Set when this node's state diverged from the finalized chain and it stopped executing.
    pub halted: bool,
    /// Equivocations this node has evidence of.
    pub equivocations: u64,
    /// Proposals this node refused to vote for.
    pub refused_proposals: u64,
}

/// `PUT /v1/blobs` (201).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct StoredBlob {
    /// CIDv1 (raw codec, SHA-256).
    pub cid: String,
    /// The CID `ipfs add --cid-version 1 --raw-leaves` gives the same bytes: `cid` for one
    /// 256 KiB block, a dag-pb UnixFS root above. `GET /v1/blobs/{cid}` takes either.
    #[serde(default)]
    pub ipfs_cid: String,
    pub hash: Hash,
    pub size: u64,
}

/// `GET /v1/models`, in id order.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ModelList {
    pub models: Vec<Model>,
    /// The cursor of the next page; absent on the last.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next: Option<Hash>,
}

/// `GET /v1/datasets`, in id order.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct DatasetList {
    pub datasets: Vec<Dataset>,
    /// The cursor of the next page; absent on the last.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next: Option<Hash>,
}

/// `GET /v1/tasks`, newest first.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct TaskList {
    pub tasks: Vec<Task>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next: Option<Hash>,
}

/// `GET /v1/workers/{address}/assignments`: tasks assigned and not yet answered, in id order.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Assignments {
    /// The height this answer reflects.
    pub height: u64,
    pub tasks: Vec<Task>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next: Option<Hash>,
}

/// How a result or an enclave is attested, as people read it.
pub const DEV_TEE_LABEL: &str = "dev TEE, not hardware-backed";

/// `GET /v1/tasks/{id}`: a task, its verified record once there is one, and the CIDs.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct TaskView {
    pub task: Task,
    pub input_cid: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_cid: Option<String>,
    /// The TEE kind of the result, or "dev TEE, not hardware-backed".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attestation: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub record: Option<ExecutionRecord>,
    /// Disputes of an OP result, open or over.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub disputes: Vec<Dispute>,
}

/// `GET /v1/challengers/{address}` and the entries of `GET /v1/challengers`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ChallengerView {
    pub address: Address,
    /// Absent for an address that never bonded.
    pub challenger: Option<Challenger>,
}

/// `GET /v1/challengers`, in address order.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ChallengerList {
    pub challengers: Vec<ChallengerView>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next: Option<Address>,
}

/// Where a bonded validator stands in the current epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ValidatorStatus {
    /// In the committee that signs this epoch.
    Active,
    /// Chosen for a later epoch's committee, not in this one.
    Elected,
    /// Bonded enough to be chosen at the next snapshot.
    Standby,
    /// Left out of snapshots for proposing too few blocks (`jailed_through`).
    Jailed,
    /// Bonded below the minimum: leaving, or never enough.
    Inactive,
}

/// One entry of `GET /v1/validators`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ValidatorView {
    #[serde(flatten)]
    pub validator: Validator,
    pub status: ValidatorStatus,
    /// Blocks it proposed in the current epoch.
    pub proposals: u64,
}

/// `GET /v1/validators`: every validator that bonded, in account order, and the committees.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ValidatorList {
    pub epoch: u64,
    pub validators: Vec<ValidatorView>,
    /// Signs the current epoch.
    pub committee: Committee,
    /// Signs the next epoch (fixed two epochs ahead).
    pub next_committee: Committee,
}

/// `GET /v1/epochs/current`: the epoch of the node's executed height.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct EpochView {
    pub epoch: u64,
    /// The node's executed height.
    pub height: u64,
    pub epoch_blocks: u64,
    pub first_height: u64,
    pub last_height: u64,
    /// The block at whose end this epoch's snapshot chooses the participants of `epoch + 2`.
    pub snapshot_height: u64,
    /// Signs this epoch.
    pub committee: Committee,
    /// Signs the next epoch.
    pub next_committee: Committee,
    /// The participants this epoch's snapshot chose (they sign from `epoch + 3`), once taken.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chosen: Option<Committee>,
}

/// `GET /v1/disputes`, in id order.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct DisputeList {
    pub disputes: Vec<Dispute>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next: Option<Hash>,
}

/// `GET /v1/workers/{address}`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct WorkerView {
    pub address: Address,
    /// Absent for an address that never staked.
    pub stake: Option<Worker>,
    pub reputation: Reputation,
    pub enclave: Option<verity_state::Enclave>,
    /// The enclave's TEE kind, or "dev TEE, not hardware-backed".
    pub attestation: Option<String>,
}

/// `GET /v1/workers`, in address order.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct WorkerList {
    pub workers: Vec<WorkerView>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next: Option<Address>,
}

/// `GET /v1/data/files`, in id order.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct DataFileList {
    pub files: Vec<DataFile>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next: Option<u64>,
}

/// `GET /v1/data/files/{id}/jobs`, in id order.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct DataJobList {
    pub jobs: Vec<DataJob>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next: Option<u64>,
}

/// `GET /v1/data/verifiers/{address}`: its registration and the jobs it owes a proof.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct DataVerifierView {
    pub address: Address,
    /// Absent for an address that does not serve data verification.
    pub verifier: Option<DataVerifier>,
    /// The height the jobs were read at.
    pub height: u64,
    pub open_jobs: Vec<DataJob>,
}

/// One DAT class held: the file it anchors and the balance in base units (18 decimals).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct DatHolding {
    pub file_id: u64,
    #[serde(with = "verity_types::amount")]
    #[schema(schema_with = verity_types::schema::amount)]
    pub balance: Amount,
    /// What these DAT earned from tasks on the file and are not yet claimed, in base units of
    /// the chain's token.
    #[serde(with = "verity_types::amount", default)]
    #[schema(schema_with = verity_types::schema::amount)]
    pub claimable: Amount,
}

/// `GET /v1/dat/{address}`, in file order.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct DatHoldings {
    pub address: Address,
    pub holdings: Vec<DatHolding>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next: Option<u64>,
}

/// A data verifier's `POST /proof` body: LazAI's ProofRequest. The verifier learns the job
/// itself from the chain and checks that this request names it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ProofRequest {
    pub job_id: u64,
    pub file_id: u64,
    /// Where the encrypted file is (informational: the verifier reads the blob the chain names).
    #[serde(default)]
    pub file_url: String,
    /// The contributor's password, RSA-wrapped to the verifier's key, hex.
    pub encryption_key: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encryption_seed: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proof_url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nonce: Option<u64>,
    /// The job's requester's signature over [`ProofRequest::digest`], hex (65 bytes): without
    /// it anyone who saw the job could plant another key first and have the file rejected.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature: Option<String>,
}

/// Domain tag of proof request signatures.
pub const PROOF_REQUEST_DOMAIN: &[u8] = b"verity/proof-request/v1";

impl ProofRequest {
    /// What the requester signs: the domain, the chain, the job, the file and the wrapped key
    /// (with the seed, when given).
    pub fn digest(&self, chain_id: &str) -> [u8; 32] {
        use sha2::{Digest as _, Sha256};
        let mut h = Sha256::new();
        h.update(PROOF_REQUEST_DOMAIN);
        h.update((chain_id.len() as u32).to_be_bytes());
        h.update(chain_id.as_bytes());
        h.update(self.job_id.to_be_bytes());
        h.update(self.file_id.to_be_bytes());
        for field in [Some(&self.encryption_key), self.encryption_seed.as_ref()] {
            let text = field.map_or("", |f| f.trim());
            h.update((text.len() as u32).to_be_bytes());
            h.update(text.as_bytes());
        }
        h.finalize().into()
    }

    /// Signs the request as `key`'s account for `chain_id`.
    pub fn sign(&mut self, key: &verity_types::AccountKey, chain_id: &str) {
        self.signature = Some(hex::encode(key.sign_digest(&self.digest(chain_id))));
    }

    /// The account that signed the request for `chain_id`; `None` when it is unsigned or the
    /// signature is malformed or does not verify.
    pub fn signer(&self, chain_id: &str) -> Option<Address> {
        let mut signature = [0u8; 65];
        hex::decode_to_slice(
            self.signature.as_deref()?.trim().trim_start_matches("0x"),
            &mut signature,
        )
        .ok()?;
        verity_types::recover_signer(&self.digest(chain_id), &signature).ok()
    }
}

/// A data verifier's `POST /anchor` body: hash the blob `cid` names, inside the enclave, and
/// sign that `owner` registers it as `asset`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct AnchorRequest {
    #[schema(value_type = String)]
    pub asset: verity_types::Asset,
    pub cid: String,
    pub owner: Address,
}

/// `POST /anchor`'s answer: the file's SHA-256 (the model id, or the dataset's data hash) and
/// the anchor to put in the registration.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct AnchorAnswer {
    pub id: Hash,
    pub anchor: verity_types::Anchor,
}

/// `POST /proof`'s answer: `{"success": true}`, or false with the reason.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ProofAnswer {
    pub success: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// `GET /v1/attestation-policy`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct PolicyView {
    /// Absent when the chain accepts no enclave at all.
    pub policy: Option<Policy>,
}

/// What `GET /v1/events` streams: one server-sent event per item, its `event:` field naming the
/// variant and its `data:` the JSON payload.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(tag = "event", content = "data", rename_all = "snake_case")]
pub enum Event {
    /// A block was finalized and executed.
    Block(BlockRecord),
    /// A task changed state.
    Task(Box<Task>),
    /// A dispute opened, moved or ended.
    Dispute(Box<Dispute>),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_codes_serialize_as_their_names() {
        for code in [
            ErrorCode::BadRequest,
            ErrorCode::NonceTooFarAhead,
            ErrorCode::InsufficientStorage,
            ErrorCode::UploadUnauthorized,
        ] {
            assert_eq!(
                serde_json::to_value(code).unwrap(),
                serde_json::Value::String(code.as_str().into())
            );
        }
        let unknown: ErrorCode = serde_json::from_str("\"from_the_future\"").unwrap();
        assert_eq!(unknown, ErrorCode::Unknown);
    }

    /// Every failure a transaction can meet at admission has its own code. The failures only a
    /// block finds (unauthorized, attestation, receipt) are mapped too, for the checks admission
    /// may make of them later; their receipts carry the failure itself.
    #[test]
    fn every_transaction_failure_has_its_code() {
        let text = || String::from("x");
        let cases = [
            (
                TxFailure::Malformed { reason: text() },
                "malformed_transaction",
            ),
            (
                TxFailure::WrongChain {
                    expected: text(),
                    got: text(),
                },
                "wrong_chain_id",
            ),
            (TxFailure::BadSignature { reason: text() }, "bad_signature"),
            (
                TxFailure::BadNonce {
                    expected: 1,
                    got: 0,
                },
                "bad_nonce",
            ),
            (
                TxFailure::FeeTooLow {
                    offered: 0,
                    minimum: 1,
                },
                "fee_too_low",
            ),
            (
                TxFailure::InsufficientBalance {
                    needed: 2,
                    available: 1,
                },
                "insufficient_balance",
            ),
            (TxFailure::Overflow, "overflow"),
            (TxFailure::Internal { reason: text() }, "internal"),
            (TxFailure::NotFound { what: text() }, "not_found"),
            (TxFailure::Unauthorized { reason: text() }, "unauthorized"),
            (TxFailure::Invalid { reason: text() }, "invalid_action"),
            (
                TxFailure::Attestation {
                    reason: text(),
                    detail: text(),
                },
                "attestation_rejected",
            ),
            (
                TxFailure::ReceiptRejected {
                    index: 0,
                    reason: text(),
                },
                "receipt_rejected",
            ),
        ];
        for (failure, code) in &cases {
            assert_eq!(
                ErrorCode::of_failure(failure).as_str(),
                *code,
                "{failure:?}"
            );
            assert_eq!(
                serde_json::to_value(ErrorCode::of_failure(failure)).unwrap(),
                *code
            );
        }
    }
}
