//! Verity's deterministic state machine (ARCHITECTURE.md, invariants).
//!
//! Same blocks in, same state root out: no clock but the block's timestamp, no randomness, no
//! floating point, no I/O but the [`Store`] trait, and only ordered maps. Blocks apply their
//! transactions in order; a failing transaction is recorded as failed with its reason and the
//! block still applies.

pub mod models;
pub mod modules;
mod overlay;
pub mod store;

use serde::{Deserialize, Serialize};
use thiserror::Error;
use verity_types::{sha256, Action, Address, Amount, Hash, SignedTx, ValidatorIdentity};

pub use models::{LoadedLanguage, ModelSource};
pub use modules::accounts::Account;
pub use modules::challengers::Challenger;
pub use modules::data::{
    DataParams, DataVerifier, File as DataFile, Job as DataJob, JobStatus as DataJobStatus,
};
pub use modules::disputes::Dispute;
pub use modules::enclaves::Enclave;
pub use modules::records::ExecutionRecord;
pub use modules::registry::{Dataset, Model};
pub use modules::reputation::Reputation;
pub use modules::settlement::{FeeSplit, Split};
pub use modules::staking::Worker;
pub use modules::tasks::{Task, TaskStatus};
pub use modules::validators::{Committee, GenesisValidator, Member, Validator, ValidatorParams};
pub use overlay::Overlay;
pub use store::{Batch, MemStore, RedbStore, Store, StoreError, Table};
pub use verity_tee;

/// Domain tag of the state-root chain.
const STATE_ROOT_DOMAIN: &[u8] = b"verity/state-root/v1";
const META_HEIGHT: &[u8] = b"height";
const META_ROOT: &[u8] = b"state_root";
const META_GENESIS: &[u8] = b"genesis";
const META_GENESIS_ROOT: &[u8] = b"genesis_root";

#[derive(Debug, Error)]
pub enum StateError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("stored state is corrupt: {0}")]
    Corrupt(&'static str),
    #[error("block {got} does not follow the applied height {applied}")]
    HeightGap { applied: u64, got: u64 },
    #[error("execution halted: {0}")]
    Halted(String),
    #[error("genesis: {0}")]
    Genesis(String),
    #[error("this store holds another chain's genesis (stored {stored}, given {given})")]
    GenesisMismatch { stored: Hash, given: Hash },
}

/// Why one transaction failed. Recorded in its receipt; the block still applies.
#[derive(Debug, Clone, PartialEq, Eq, Error, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(tag = "code", rename_all = "snake_case")]
pub enum TxFailure {
    #[error("transaction bytes are malformed: {reason}")]
    Malformed { reason: String },
    #[error("transaction is for chain {got:?}, this chain is {expected:?}")]
    WrongChain { expected: String, got: String },
    #[error("signature does not verify: {reason}")]
    BadSignature { reason: String },
    #[error("nonce {got} is not the account's next nonce {expected}")]
    BadNonce { expected: u64, got: u64 },
    #[error("fee {offered} is below the minimum {minimum}")]
    FeeTooLow {
        #[serde(with = "verity_types::amount")]
        #[schema(schema_with = verity_types::schema::amount)]
        offered: Amount,
        #[serde(with = "verity_types::amount")]
        #[schema(schema_with = verity_types::schema::amount)]
        minimum: Amount,
    },
    #[error("insufficient balance: needs {needed}, has {available}")]
    InsufficientBalance {
        #[serde(with = "verity_types::amount")]
        #[schema(schema_with = verity_types::schema::amount)]
        needed: Amount,
        #[serde(with = "verity_types::amount")]
        #[schema(schema_with = verity_types::schema::amount)]
        available: Amount,
    },
    #[error("amount overflows a balance")]
    Overflow,
    #[error("not found: {what}")]
    NotFound { what: String },
    #[error("not allowed: {reason}")]
    Unauthorized { reason: String },
    #[error("invalid: {reason}")]
    Invalid { reason: String },
    /// `reason` is ours and enters the receipt; `detail` is the verifying library's own text,
    /// for logs and the API only, so a dependency upgrade can never change a state root.
    #[error("attestation rejected: {reason}{}", detail_suffix(detail))]
    Attestation {
        reason: String,
        #[serde(skip, default)]
        detail: String,
    },
    #[error("receipt {index} rejected: {reason}")]
    ReceiptRejected { index: u32, reason: String },
    /// Storage failed while executing: never recorded, it halts the node instead.
    #[error("state error: {reason}")]
    Internal { reason: String },
}

fn detail_suffix(detail: &str) -> String {
    if detail.is_empty() {
        String::new()
    } else {
        format!(" ({detail})")
    }
}

impl TxFailure {
    /// An attestation failure: the stable part from `error`'s kind, the library's text as detail.
    pub fn attestation(error: &verity_tee::AttestationError) -> Self {
        TxFailure::Attestation {
            reason: error.stable_reason(),
            detail: error.to_string(),
        }
    }
}

impl From<StateError> for TxFailure {
    fn from(e: StateError) -> Self {
        TxFailure::Internal {
            reason: e.to_string(),
        }
    }
}

/// Chain parameters fixed at genesis.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Params {
    /// Smallest fee a transaction may offer.
    #[serde(with = "verity_types::amount")]
    pub min_fee: Amount,
    /// Receives transaction fees until staking distributes them.
    pub fee_collector: Address,
    /// Most transactions in one block.
    pub max_block_txs: u32,
    /// Price of one weight unit: a transaction's fee must cover its weight × this.
    #[serde(with = "verity_types::amount", default = "default_fee_per_weight")]
    pub fee_per_weight: Amount,
    /// Most total weight in one block (see `verity_types::weight`).
    #[serde(default = "default_max_block_weight")]
    pub max_block_weight: u64,
    /// May replace the attestation policy. None: the policy is fixed at genesis.
    #[serde(default)]
    pub governance: Option<Address>,
    #[serde(default)]
    pub tasks: TaskParams,
    #[serde(default)]
    pub data: modules::data::DataParams,
    /// Validator bonds and epochs; used only when genesis names validators.
    #[serde(
        default,
        skip_serializing_if = "modules::validators::ValidatorParams::is_default"
    )]
    pub validators: modules::validators::ValidatorParams,
}

impl Params {
    /// The least fee for `action` in a transaction of `tx_bytes` bytes: its weight's price, and
    /// never below `min_fee`. None if it overflows.
    pub fn required_fee(&self, action: &Action, tx_bytes: usize) -> Option<Amount> {
        let weight = verity_types::weight::of(action, tx_bytes);
        self.fee_per_weight
            .checked_mul(weight.into())
            .map(|fee| fee.max(self.min_fee))
    }

    /// Range checks: each error names the parameter and the bound it breaks.
    pub fn validate(&self) -> Result<(), String> {
        fn at_least(name: &str, value: u64, min: u64) -> Result<(), String> {
            if value < min {
                return Err(format!("{name} must be at least {min}, got {value}"));
            }
            Ok(())
        }
        let t = &self.tasks;
        at_least("max_block_txs", self.max_block_txs.into(), 1)?;
        at_least("max_block_weight", self.max_block_weight, MIN_BLOCK_WEIGHT)?;
        at_least("unbonding_blocks", t.unbonding_blocks, 1)?;
        at_least("assignment_timeout_blocks", t.assignment_timeout_blocks, 1)?;
        at_least("max_open_assignments", t.max_open_assignments.into(), 1)?;
        at_least("max_open_generations", t.max_open_generations.into(), 1)?;

        at_least("attestation_nonce_blocks", t.attestation_nonce_blocks, 1)?;
        at_least(
            "timeout_forgiven_after_blocks",
            t.timeout_forgiven_after_blocks,
            1,
        )?;
        at_least("enclave_ttl_secs", t.enclave_ttl_secs, MIN_ENCLAVE_TTL_SECS)?;
        at_least(
            "max_deadline_blocks",
            t.max_deadline_blocks,
            t.assignment_timeout_blocks,
        )?;
        at_least("max_input_bytes", t.max_input_bytes, 1)?;
        at_least(
            "registration_commitment_blocks",
            t.registration_commitment_blocks,
            1,
        )?;
        if t.min_task_fee == 0 {
            return Err("min_task_fee must be at least 1".into());
        }
        if t.failure_fee_bps > 10_000 {
            return Err(format!(
                "failure_fee_bps must be at most 10000, got {}",
                t.failure_fee_bps
            ));
        }
        at_least("challenge_window_blocks", t.challenge_window_blocks, 1)?;
        at_least("dispute_clock_blocks", t.dispute_clock_blocks, 1)?;
        // Stake unstaked right after a false result must still be there when the longest
        // dispute of it ends, or unstaking escapes the slash.
        let exposure =
            t.challenge_window_blocks
                .saturating_add(modules::disputes::longest_dispute_blocks(
                    t.dispute_clock_blocks,
                ));
        if t.unbonding_blocks <= exposure {
            return Err(format!(
                "unbonding_blocks must exceed challenge_window_blocks plus the longest dispute \
                 ({exposure} blocks with these clocks), got {}",
                t.unbonding_blocks
            ));
        }
        at_least("max_open_disputes", t.max_open_disputes.into(), 1)?;
        if t.dispute_bond == 0 || t.dispute_bond > t.min_challenger_bond {
            return Err(format!(
                "dispute_bond must be 1 to min_challenger_bond ({}), got {}",
                t.min_challenger_bond, t.dispute_bond
            ));
        }
        if t.slash_bps > 10_000 {
            return Err(format!(
                "slash_bps must be at most 10000, got {}",
                t.slash_bps
            ));
        }
        if t.fraud_penalty < 0 {
            return Err(format!(
                "fraud_penalty must not be negative, got {}",
                t.fraud_penalty
            ));
        }
        if t.timeout_penalty < 0 {
            return Err(format!(
                "timeout_penalty must not be negative, got {}",
                t.timeout_penalty
            ));
        }
        at_least(
            "data.proof_timeout_blocks",
            self.data.proof_timeout_blocks,
            1,
        )?;
        if self.data.min_proof_fee == 0 {
            return Err("data.min_proof_fee must be at least 1".into());
        }
        t.fee_split.validate()?;
        self.validators.validate()
    }

    /// Receives the protocol's share of task fees.
    pub fn protocol_account(&self) -> Address {
        self.tasks.protocol_treasury.unwrap_or(self.fee_collector)
    }
}

fn default_max_open_generations() -> u32 {
    4
}

fn default_fee_per_weight() -> Amount {
    1
}

fn default_max_block_weight() -> u64 {
    2_000_000
}

/// A block must hold the heaviest valid transaction.
pub const MIN_BLOCK_WEIGHT: u64 = verity_types::weight::MAX_TX_WEIGHT;
/// Shorter attestations would expire between a worker's re-attestations.
pub const MIN_ENCLAVE_TTL_SECS: u64 = 300;

/// Parameters of staking, tasks, enclaves and settlement.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct TaskParams {
    /// Least stake that makes a worker eligible.
    #[serde(with = "verity_types::amount")]
    pub min_worker_stake: Amount,
    /// Blocks between Unstake and the stake's return: longer than a challenge window and the
    /// longest dispute together, so unbonding stake is still there to slash.
    pub unbonding_blocks: u64,
    /// Blocks an assigned worker has to deliver before the task moves on.
    pub assignment_timeout_blocks: u64,
    /// Most tasks assigned to one worker at a time: a full worker is not drawn, so offered
    /// load beyond what the workers take waits Pending instead of timing them out and banning
    /// them. Set it to what a worker delivers within `assignment_timeout_blocks`.
    pub max_open_assignments: u32,
    /// Most language-model generations assigned to one worker at a time (the protocol's 4
    /// concurrent generations per worker): each holds a model's activations and cache, so a
    /// worker with this many is not drawn for another until one finishes.
    #[serde(default = "default_max_open_generations")]
    pub max_open_generations: u32,
    /// Reputation lost on a timeout.
    pub timeout_penalty: i64,
    /// Blocks after which a timeout's penalty is given back (a ban from timeouts lifts with it).
    pub timeout_forgiven_after_blocks: u64,
    /// Share of the escrow, in basis points, a worker gets for a task its enclave reported it
    /// could not run; the submitter gets the rest back.
    pub failure_fee_bps: u32,
    /// Longest deadline a task may ask for.
    pub max_deadline_blocks: u64,
    /// Smallest task fee (escrow).
    #[serde(with = "verity_types::amount")]
    pub min_task_fee: Amount,
    /// Largest task input.
    pub max_input_bytes: u64,
    pub fee_split: FeeSplit,
    /// Receives the protocol share; the fee collector when absent.
    pub protocol_treasury: Option<Address>,
    /// How long an attestation stays valid.
    pub enclave_ttl_secs: u64,
    /// How many blocks an attestation nonce stays usable: older nonces are stale.
    pub attestation_nonce_blocks: u64,
    /// OP results: blocks after the receipt in which a dispute may be opened.
    pub challenge_window_blocks: u64,
    /// Least bond that registers a challenger.
    #[serde(with = "verity_types::amount")]
    pub min_challenger_bond: Amount,
    /// Bond an open dispute locks.
    #[serde(with = "verity_types::amount")]
    pub dispute_bond: Amount,
    /// Most disputes one challenger has open at once.
    pub max_open_disputes: u32,
    /// Blocks each side of a dispute has for all its moves.
    pub dispute_clock_blocks: u64,
    /// Share of the loser's stake or bond, in basis points, a dispute takes: half to the
    /// winner, half burned.
    pub slash_bps: u32,
    /// Reputation a worker loses for a disproven result.
    pub fraud_penalty: i64,
    /// Blocks a registration commitment stays revealable; then it is pruned.
    pub registration_commitment_blocks: u64,
}

impl Default for TaskParams {
    fn default() -> Self {
        Self {
            min_worker_stake: 1_000 * verity_types::ONE_TOKEN,
            unbonding_blocks: 200,
            assignment_timeout_blocks: 20,
            max_open_assignments: 256,
            max_open_generations: default_max_open_generations(),
            timeout_penalty: 20,
            timeout_forgiven_after_blocks: 10_000,
            failure_fee_bps: 500,
            max_deadline_blocks: 100_000,
            min_task_fee: 1,
            max_input_bytes: 16 * 1024 * 1024,
            fee_split: FeeSplit::default(),
            protocol_treasury: None,
            enclave_ttl_secs: 24 * 3600,
            attestation_nonce_blocks: 256,
            challenge_window_blocks: 20,
            min_challenger_bond: 100 * verity_types::ONE_TOKEN,
            dispute_bond: verity_types::ONE_TOKEN,
            max_open_disputes: 64,
            dispute_clock_blocks: 40,
            registration_commitment_blocks: 10_000,
            slash_bps: 500,
            fraud_penalty: 50,
        }
    }
}

/// What a block's transactions see of the block.
pub struct BlockCtx<'g> {
    pub height: u64,
    pub timestamp_ms: u64,
    /// The block's seed: worker assignment draws from it.
    pub seed: Hash,
    /// The validator that proposed the block, as consensus checked it; none outside consensus.
    pub proposer: Option<ValidatorIdentity>,
    pub genesis: &'g Genesis,
    /// Model files, for the re-executions that end disputes.
    pub models: &'g ModelSource,
}

/// A genesis balance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GenesisAccount {
    pub address: Address,
    #[serde(with = "verity_types::amount")]
    pub balance: Amount,
}

/// The state at height 0.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Genesis {
    pub chain_id: String,
    /// Unix milliseconds; the timestamp of block 0.
    pub genesis_time_ms: u64,
    pub params: Params,
    pub accounts: Vec<GenesisAccount>,
    /// The attestation policy RegisterEnclave checks against; none means no enclave can register
    /// until governance sets one.
    #[serde(default)]
    pub attestation_policy: Option<verity_tee::Policy>,
    /// The first committee, its stake bonded from genesis. None: the committee is fixed outside
    /// the state (no bonds, no epochs).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub validators: Vec<modules::validators::GenesisValidator>,
}

impl Genesis {
    /// SHA-256 of the canonical JSON: names one chain's genesis.
    pub fn hash(&self) -> Hash {
        sha256(&serde_json::to_vec(self).expect("genesis serializes"))
    }

    pub fn validate(&self) -> Result<(), StateError> {
        if self.chain_id.is_empty() || self.chain_id.len() > verity_types::MAX_CHAIN_ID_LEN {
            return Err(StateError::Genesis(format!(
                "chain id must be 1 to {} bytes",
                verity_types::MAX_CHAIN_ID_LEN
            )));
        }
        self.params.validate().map_err(StateError::Genesis)?;
        let mut seen = std::collections::BTreeSet::new();
        let mut total: Amount = 0;
        for a in &self.accounts {
            if !seen.insert(a.address) {
                return Err(StateError::Genesis(format!(
                    "account {} is listed twice",
                    a.address
                )));
            }
            total = total.checked_add(a.balance).ok_or_else(|| {
                StateError::Genesis("genesis balances overflow the total supply".into())
            })?;
        }
        for v in &self.validators {
            total = total.checked_add(v.stake).ok_or_else(|| {
                StateError::Genesis("genesis balances and bonds overflow the total supply".into())
            })?;
        }
        modules::validators::validate_genesis(self).map_err(StateError::Genesis)
    }
}

/// Outcome of one transaction.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum TxStatus {
    Success,
    Failed { error: TxFailure },
}

/// What a finalized transaction did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Receipt {
    pub tx_hash: Hash,
    pub height: u64,
    pub index: u32,
    /// Absent when the signature did not recover a sender.
    pub sender: Option<Address>,
    pub action: Option<String>,
    #[serde(with = "verity_types::amount")]
    #[schema(schema_with = verity_types::schema::amount)]
    pub fee_paid: Amount,
    #[serde(flatten)]
    pub status: TxStatus,
    /// Receipts of a SubmitReceipts batch that were passed over, with why.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub skipped: Vec<modules::verifier::Skipped>,
}

/// A finalized block as the state machine saw it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct BlockRecord {
    pub height: u64,
    pub hash: Hash,
    pub parent: Hash,
    pub timestamp_ms: u64,
    pub tx_hashes: Vec<Hash>,
    pub failed_txs: u32,
    /// Root after applying this block.
    pub state_root: Hash,
}

/// A block's attestation nonce, for RegisterEnclave evidence to bind.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AttestationNonce {
    pub height: u64,
    pub nonce: Hash,
    /// The block's time, Unix milliseconds: evidence binding this nonce is no older.
    pub timestamp_ms: u64,
    /// The last height at which a RegisterEnclave citing this nonce is accepted.
    pub usable_until_height: u64,
}

/// What the consensus layer hands the state machine for one finalized block.
pub struct BlockInput<'a> {
    pub height: u64,
    pub hash: Hash,
    pub parent: Hash,
    pub timestamp_ms: u64,
    /// The block's seed, from consensus.
    pub seed: Hash,
    /// Its proposer, as consensus checked it.
    pub proposer: Option<ValidatorIdentity>,
    pub txs: &'a [Vec<u8>],
}

/// What applying a block produced: its record and the tasks whose state changed.
pub struct Applied {
    pub record: BlockRecord,
    pub tasks: Vec<Task>,
    /// Disputes that opened, moved or ended.
    pub disputes: Vec<Dispute>,
    /// Transactions that failed, with the detail their receipts leave out, for logs.
    pub failures: Vec<(Hash, TxFailure)>,
    /// Transactions dropped without a receipt: they could not be charged (see `admit`).
    pub dropped: Vec<(Hash, TxFailure)>,
}

/// A transaction decoded with its sender recovered, or why not. Recovery is the costly part of
/// applying a transfer, so callers may supply it from a cache (it is a pure function of bytes).
pub type Recovered = Result<(SignedTx, Address), TxFailure>;

/// Decodes a transaction and recovers its sender.
pub fn recover(bytes: &[u8]) -> Recovered {
    let tx = SignedTx::decode(bytes).map_err(|e| TxFailure::Malformed {
        reason: e.to_string(),
    })?;
    let sender = tx.sender().map_err(|e| TxFailure::BadSignature {
        reason: e.to_string(),
    })?;
    Ok((tx, sender))
}

/// The state machine over one store.
pub struct Chain<S: Store> {
    store: S,
    genesis: Genesis,
    models: ModelSource,
}

impl<S: Store> Chain<S> {
    /// Opens the store, writing genesis on first use and checking it on every later one.
    pub fn open(store: S, genesis: Genesis) -> Result<Self, StateError> {
        genesis.validate()?;
        let hash = genesis.hash();
        match store.get(Table::Meta, META_GENESIS)? {
            Some(stored) => {
                let stored = Hash(
                    stored
                        .try_into()
                        .map_err(|_| StateError::Corrupt("genesis hash is not 32 bytes"))?,
                );
                if stored != hash {
                    return Err(StateError::GenesisMismatch {
                        stored,
                        given: hash,
                    });
                }
            }
            None => {
                let mut state = Overlay::new(&store);
                if let Some(policy) = &genesis.attestation_policy {
                    modules::enclaves::put_policy(&mut state, policy);
                }
                if modules::validators::enabled(&genesis) {
                    modules::validators::init_genesis(&mut state, &genesis)?;
                }
                for a in &genesis.accounts {
                    modules::accounts::put(
                        &mut state,
                        &a.address,
                        &Account {
                            balance: a.balance,
                            nonce: 0,
                        },
                    );
                }
                let mut batch = state.into_batch();
                let root = chain_root(&Hash::ZERO, 0, &batch);
                batch.put(Table::Meta, META_GENESIS.to_vec(), hash.0.to_vec());
                batch.put(
                    Table::Meta,
                    META_HEIGHT.to_vec(),
                    0u64.to_le_bytes().to_vec(),
                );
                batch.put(Table::Meta, META_ROOT.to_vec(), root.0.to_vec());
                batch.put(Table::Meta, META_GENESIS_ROOT.to_vec(), root.0.to_vec());
                store.commit(&batch)?;
            }
        }
        Ok(Self {
            store,
            genesis,
            models: ModelSource::none(),
        })
    }

    pub fn genesis(&self) -> &Genesis {
        &self.genesis
    }

    pub fn store(&self) -> &S {
        &self.store
    }

    /// Reads model files from `models` when disputes need them (none by default).
    pub fn with_models(mut self, models: ModelSource) -> Self {
        self.models = models;
        self
    }

    pub fn model_source(&self) -> &ModelSource {
        &self.models
    }

    /// The last applied height (0 = genesis only).
    pub fn height(&self) -> Result<u64, StateError> {
        let raw = self
            .store
            .get(Table::Meta, META_HEIGHT)?
            .ok_or(StateError::Corrupt("missing height"))?;
        let bytes: [u8; 8] = raw
            .try_into()
            .map_err(|_| StateError::Corrupt("height is not 8 bytes"))?;
        Ok(u64::from_le_bytes(bytes))
    }

    pub fn state_root(&self) -> Result<Hash, StateError> {
        let raw = self
            .store
            .get(Table::Meta, META_ROOT)?
            .ok_or(StateError::Corrupt("missing state root"))?;
        Ok(Hash(raw.try_into().map_err(|_| {
            StateError::Corrupt("state root is not 32 bytes")
        })?))
    }

    /// The state root after `height` (0: genesis), or None if not executed that far.
    pub fn root_at(&self, height: u64) -> Result<Option<Hash>, StateError> {
        if height == 0 {
            let raw = self
                .store
                .get(Table::Meta, META_GENESIS_ROOT)?
                .ok_or(StateError::Corrupt("missing genesis root"))?;
            return Ok(Some(Hash(raw.try_into().map_err(|_| {
                StateError::Corrupt("genesis root is not 32 bytes")
            })?)));
        }
        Ok(self.block(height)?.map(|b| b.state_root))
    }

    pub fn account(&self, address: &Address) -> Result<Account, StateError> {
        modules::accounts::get(&Overlay::new(&self.store), address)
    }

    pub fn receipt(&self, tx_hash: &Hash) -> Result<Option<Receipt>, StateError> {
        self.store
            .get(Table::Receipts, &tx_hash.0)?
            .map(|raw| serde_json::from_slice(&raw).map_err(|_| StateError::Corrupt("receipt")))
            .transpose()
    }

    pub fn block(&self, height: u64) -> Result<Option<BlockRecord>, StateError> {
        self.store
            .get(Table::Blocks, &height.to_be_bytes())?
            .map(|raw| serde_json::from_slice(&raw).map_err(|_| StateError::Corrupt("block")))
            .transpose()
    }

    pub fn model(&self, id: &Hash) -> Result<Option<Model>, StateError> {
        modules::registry::model(&self.view(), id)
    }

    pub fn dataset(&self, id: &Hash) -> Result<Option<Dataset>, StateError> {
        modules::registry::dataset(&self.view(), id)
    }

    /// Up to `limit` datasets in id order, after `after` when given.
    pub fn datasets(&self, after: Option<&Hash>, limit: usize) -> Result<Vec<Dataset>, StateError> {
        self.registry_page(
            modules::registry::DATASET_PREFIX,
            modules::registry::dataset_key,
            after,
            limit,
            "dataset",
        )
    }

    /// Up to `limit` models in id order, after `after` when given.
    pub fn models(&self, after: Option<&Hash>, limit: usize) -> Result<Vec<Model>, StateError> {
        self.registry_page(
            modules::registry::MODEL_PREFIX,
            modules::registry::model_key,
            after,
            limit,
            "model",
        )
    }

    /// Up to `limit` registry records under `prefix` in id order, after the one `key_of(after)`.
    fn registry_page<T: serde::de::DeserializeOwned>(
        &self,
        prefix: &[u8],
        key_of: fn(&Hash) -> Vec<u8>,
        after: Option<&Hash>,
        limit: usize,
        what: &'static str,
    ) -> Result<Vec<T>, StateError> {
        let start = match after {
            Some(id) => successor(&key_of(id)),
            None => prefix.to_vec(),
        };
        self.store
            .scan(Table::Registry, prefix, &start, limit)?
            .into_iter()
            .map(|(_, raw)| serde_json::from_slice(&raw).map_err(|_| StateError::Corrupt(what)))
            .collect()
    }

    pub fn task(&self, id: &Hash) -> Result<Option<Task>, StateError> {
        modules::tasks::get(&self.view(), id)
    }

    pub fn data_file(&self, id: u64) -> Result<Option<DataFile>, StateError> {
        modules::data::file(&self.view(), id)
    }

    /// Up to `limit` contributed files by id after `after`, one owner's when given.
    pub fn data_files(
        &self,
        owner: Option<&Address>,
        after: u64,
        limit: usize,
    ) -> Result<Vec<DataFile>, StateError> {
        modules::data::files(&self.view(), owner, after, limit)
    }

    pub fn data_job(&self, id: u64) -> Result<Option<DataJob>, StateError> {
        modules::data::job(&self.view(), id)
    }

    /// File `file`'s proof jobs in id order after `after`.
    pub fn data_jobs_of(
        &self,
        file: u64,
        after: u64,
        limit: usize,
    ) -> Result<Vec<DataJob>, StateError> {
        modules::data::jobs_of(&self.view(), file, after, limit)
    }

    /// Jobs waiting for `verifier`'s proof, oldest first.
    pub fn open_data_jobs(
        &self,
        verifier: &Address,
        limit: usize,
    ) -> Result<Vec<DataJob>, StateError> {
        modules::data::open_jobs(&self.view(), verifier, limit)
    }

    pub fn data_verifier(&self, worker: &Address) -> Result<Option<DataVerifier>, StateError> {
        modules::data::verifier(&self.view(), worker)
    }

    pub fn dat_balance(&self, file_id: u64, holder: &Address) -> Result<Amount, StateError> {
        modules::data::balance(&self.view(), file_id, holder)
    }

    /// What `holder`'s DAT of file `file_id` earned from tasks and was not claimed yet.
    pub fn dat_claimable(&self, file_id: u64, holder: &Address) -> Result<Amount, StateError> {
        modules::data::claimable(&self.view(), file_id, holder)
    }

    /// `holder`'s DAT by file, from file `after` on.
    pub fn dat_holdings(
        &self,
        holder: &Address,
        after: u64,
        limit: usize,
    ) -> Result<Vec<(u64, Amount)>, StateError> {
        modules::data::holdings(&self.view(), holder, after, limit)
    }

    /// OP results still in their challenge window (or disputed in it), the window that closes
    /// first first, `limit` of them after `after` (a task and its record's `challenge_until`):
    /// a challenger's whole work list, read from the windows' schedule rather than every task.
    pub fn challengeable_tasks(
        &self,
        after: Option<(&Hash, u64)>,
        limit: usize,
    ) -> Result<Vec<Task>, StateError> {
        use modules::schedule::{self, Kind};
        let (first, prefix) = schedule::from_height(Kind::Window, self.height()?.saturating_add(1));
        // A cursor whose window has since closed starts at the first open one.
        let start = match after {
            Some((id, until)) => {
                successor(&schedule::entry(Kind::Window, until.saturating_add(1), id).0).max(first)
            }
            None => first,
        };
        let mut out = Vec::new();
        for (_, value) in self.store.scan(Table::Schedule, &prefix, &start, limit)? {
            let id: Hash = serde_json::from_slice(&value)
                .map_err(|_| StateError::Corrupt("window schedule"))?;
            if let Some(task) = self.task(&id)? {
                out.push(task);
            }
        }
        Ok(out)
    }

    /// The most recent tasks, newest first, up to `limit`; after the task `after` when given (a
    /// page's last task is the next page's cursor).
    pub fn recent_tasks(
        &self,
        after: Option<&Task>,
        limit: usize,
    ) -> Result<Vec<Task>, StateError> {
        let prefix = modules::tasks::BY_HEIGHT_PREFIX;
        let start = match after {
            Some(task) => successor(&modules::tasks::by_height_key(
                task.submitted_height,
                &task.task_id,
            )),
            None => prefix.to_vec(),
        };
        let mut out = Vec::new();
        for (key, _) in self.store.scan(Table::Tasks, prefix, &start, limit)? {
            let id = Hash(
                key[key.len().saturating_sub(32)..]
                    .try_into()
                    .map_err(|_| StateError::Corrupt("task index"))?,
            );
            if let Some(task) = self.task(&id)? {
                out.push(task);
            }
        }
        Ok(out)
    }

    /// Tasks currently assigned to `worker` in id order, up to `limit`, after `after` when given.
    pub fn assignments(
        &self,
        worker: &Address,
        after: Option<&Hash>,
        limit: usize,
    ) -> Result<Vec<Task>, StateError> {
        let mut prefix = modules::tasks::ASSIGNED_PREFIX.to_vec();
        prefix.extend_from_slice(&worker.0);
        let start = match after {
            Some(id) => successor(&modules::tasks::assigned_key(worker, id)),
            None => prefix.clone(),
        };
        let mut out = Vec::new();
        for (key, _) in self.store.scan(Table::Tasks, &prefix, &start, limit)? {
            let id = Hash(
                key[prefix.len()..]
                    .try_into()
                    .map_err(|_| StateError::Corrupt("assignment index"))?,
            );
            if let Some(task) = self.task(&id)? {
                out.push(task);
            }
        }
        Ok(out)
    }

    pub fn record(&self, task_id: &Hash) -> Result<Option<ExecutionRecord>, StateError> {
        modules::records::get(&self.view(), task_id)
    }

    /// Up to `limit` workers in address order, after `after` when given.
    pub fn workers(
        &self,
        after: Option<&Address>,
        limit: usize,
    ) -> Result<Vec<Address>, StateError> {
        modules::staking::workers(&self.view(), after, limit)
    }

    pub fn challenger(&self, address: &Address) -> Result<Option<Challenger>, StateError> {
        modules::challengers::get(&self.view(), address)
    }

    /// Up to `limit` challengers in address order, after `after` when given.
    pub fn challengers(
        &self,
        after: Option<&Address>,
        limit: usize,
    ) -> Result<Vec<(Address, Challenger)>, StateError> {
        modules::challengers::list(&self.view(), after, limit)
    }

    pub fn dispute(&self, id: &Hash) -> Result<Option<Dispute>, StateError> {
        modules::disputes::get(&self.view(), id)
    }

    /// Up to `limit` disputes in id order, after `after` when given.
    pub fn disputes(&self, after: Option<&Hash>, limit: usize) -> Result<Vec<Dispute>, StateError> {
        modules::disputes::list(&self.view(), after, limit)
    }

    /// Up to `limit` open disputes in which `party` is the worker or the challenger.
    pub fn open_disputes_of(
        &self,
        party: &Address,
        limit: usize,
    ) -> Result<Vec<Dispute>, StateError> {
        modules::disputes::open_of(&self.view(), party, limit)
    }

    /// Every bonded validator (and every one that has unbonded), in account order.
    pub fn validators(&self) -> Result<Vec<Validator>, StateError> {
        modules::validators::all(&self.view())
    }

    /// The validator `account` bonds, if any.
    pub fn validator(&self, account: &Address) -> Result<Option<Validator>, StateError> {
        modules::validators::get(&self.view(), account)
    }

    /// The participants of `epoch` once its snapshot is taken (see `modules::validators`).
    pub fn participants(&self, epoch: u64) -> Result<Option<Committee>, StateError> {
        modules::validators::participants(&self.view(), epoch)
    }

    /// The committee that signs `epoch`.
    pub fn signing_committee(&self, epoch: u64) -> Result<Option<Committee>, StateError> {
        modules::validators::signing(&self.view(), &self.genesis.params.validators, epoch)
    }

    /// Blocks `identity` proposed in `epoch`.
    pub fn proposals(&self, epoch: u64, identity: &ValidatorIdentity) -> Result<u64, StateError> {
        modules::validators::proposals(&self.view(), epoch, identity)
    }

    /// Up to `limit` disputes of a task, open or over.
    pub fn task_disputes(&self, task: &Hash, limit: usize) -> Result<Vec<Dispute>, StateError> {
        modules::disputes::of_task(&self.view(), task, limit)
    }

    /// The disputes of a task that are still being played.
    pub fn open_disputes(&self, task: &Hash) -> Result<Vec<Hash>, StateError> {
        modules::disputes::open_for_task(&self.view(), task)
    }

    pub fn worker(&self, worker: &Address) -> Result<Option<Worker>, StateError> {
        modules::staking::get(&self.view(), worker)
    }

    pub fn reputation(&self, worker: &Address) -> Result<Reputation, StateError> {
        modules::reputation::get(&self.view(), worker)
    }

    pub fn enclave(&self, worker: &Address) -> Result<Option<Enclave>, StateError> {
        modules::enclaves::current(&self.view(), worker)
    }

    pub fn attestation_policy(&self) -> Result<Option<verity_tee::Policy>, StateError> {
        modules::enclaves::policy(&self.view())
    }

    /// The newest attestation nonce: evidence made now should bind it. None before block 1.
    pub fn attestation_nonce(&self) -> Result<Option<AttestationNonce>, StateError> {
        let height = self.height()?;
        let nonce = modules::enclaves::nonce_at(&self.view(), &self.genesis.chain_id, height)?;
        Ok(nonce.map(|(nonce, timestamp_ms)| AttestationNonce {
            height,
            nonce: Hash(nonce),
            timestamp_ms,
            usable_until_height: height
                .saturating_add(self.genesis.params.tasks.attestation_nonce_blocks),
        }))
    }

    /// Applies one finalized block and commits it atomically with its receipts and new root.
    /// Blocks at or below the applied height are skipped (consensus delivers at least once);
    /// returns `None` for those.
    pub fn apply_block(
        &self,
        block: &BlockInput<'_>,
        recovered: impl Fn(&[u8]) -> Recovered,
    ) -> Result<Option<Applied>, StateError> {
        let applied = self.height()?;
        if block.height <= applied {
            return Ok(None);
        }
        if block.height != applied + 1 {
            return Err(StateError::HeightGap {
                applied,
                got: block.height,
            });
        }
        let mut state = Overlay::new(&self.store);
        let ctx = BlockCtx {
            height: block.height,
            timestamp_ms: block.timestamp_ms,
            seed: block.seed,
            proposer: block.proposer,
            genesis: &self.genesis,
            models: &self.models,
        };
        modules::validators::begin_block(&mut state, &ctx)?;
        modules::staking::release_due(&mut state, block.height)?;
        modules::challengers::release_due(&mut state, block.height)?;
        modules::disputes::begin_block(&mut state, &ctx)?;
        modules::tasks::begin_block(&mut state, &ctx)?;
        modules::data::begin_block(&mut state, &ctx)?;
        modules::registry::begin_block(&mut state, &ctx)?;
        let mut tx_hashes = Vec::with_capacity(block.txs.len());
        let mut failed_txs = 0;
        let mut failures = Vec::new();
        let mut dropped = Vec::new();
        let mut weight: u64 = 0;
        for bytes in block.txs.iter() {
            let tx_hash = sha256(bytes);
            // A transaction is executed once; a repeat inclusion is ignored, not re-recorded.
            if state.get(Table::Receipts, &tx_hash.0)?.is_some() {
                continue;
            }
            let index = tx_hashes.len() as u32;
            let receipt = match self.apply_tx(
                &mut state,
                &ctx,
                index,
                tx_hash,
                bytes,
                &recovered,
                &mut weight,
            )? {
                Ok(receipt) => receipt,
                Err(why) => {
                    dropped.push((tx_hash, why));
                    continue;
                }
            };
            if let TxStatus::Failed { error } = &receipt.status {
                failed_txs += 1;
                failures.push((tx_hash, error.clone()));
            }
            state.put(
                Table::Receipts,
                tx_hash.0.to_vec(),
                serde_json::to_vec(&receipt).expect("receipt serializes"),
            );
            tx_hashes.push(tx_hash);
        }
        let mut batch = state.into_batch();
        let tasks = modules::tasks::changed(&batch);
        let disputes = modules::disputes::changed(&batch);
        let root = chain_root(&self.state_root()?, block.height, &batch);
        let record = BlockRecord {
            height: block.height,
            hash: block.hash,
            parent: block.parent,
            timestamp_ms: block.timestamp_ms,
            tx_hashes,
            failed_txs,
            state_root: root,
        };
        batch.put(
            Table::Blocks,
            block.height.to_be_bytes().to_vec(),
            serde_json::to_vec(&record).expect("block record serializes"),
        );
        batch.put(
            Table::Meta,
            META_HEIGHT.to_vec(),
            block.height.to_le_bytes().to_vec(),
        );
        batch.put(Table::Meta, META_ROOT.to_vec(), root.0.to_vec());
        self.store.commit(&batch)?;
        Ok(Some(Applied {
            record,
            tasks,
            disputes,
            failures,
            dropped,
        }))
    }

    /// Executes one transaction. `Ok(Err(_))`: it cannot be charged (undecodable, unsigned,
    /// another chain, a used or future nonce, a fee below its weight's price or beyond the
    /// sender's balance, or past the block's weight limit), so it is dropped without a receipt
    /// and writes nothing: a proposer gains no free state write by including it.
    #[allow(clippy::too_many_arguments)]
    fn apply_tx(
        &self,
        state: &mut Overlay<'_>,
        ctx: &BlockCtx<'_>,
        index: u32,
        tx_hash: Hash,
        bytes: &[u8],
        recovered: &impl Fn(&[u8]) -> Recovered,
        block_weight: &mut u64,
    ) -> Result<Result<Receipt, TxFailure>, StateError> {
        let (tx, sender) = match recovered(bytes) {
            Ok(ok) => ok,
            Err(error) => return Ok(Err(error)),
        };
        if let Err(error) = self.admit(state, &tx, &sender, bytes.len()) {
            return Ok(Err(error));
        }
        let weight = verity_types::weight::of(&tx.body.action, bytes.len());
        match block_weight.checked_add(weight) {
            Some(total) if total <= self.genesis.params.max_block_weight => *block_weight = total,
            _ => {
                return Ok(Err(TxFailure::Invalid {
                    reason: "the block's weight limit is reached".into(),
                }))
            }
        }
        let mut receipt = Receipt {
            tx_hash,
            height: ctx.height,
            index,
            sender: Some(sender),
            action: Some(tx.body.action.name().to_string()),
            fee_paid: 0,
            status: TxStatus::Success,
            skipped: Vec::new(),
        };
        // From here the fee is charged and the nonce consumed, whatever the action does.
        let mut account = modules::accounts::get(state, &sender)?;
        account.nonce += 1;
        account.balance -= tx.body.fee;
        modules::accounts::put(state, &sender, &account);
        if let Err(error) =
            modules::accounts::credit(state, &self.genesis.params.fee_collector, tx.body.fee)
        {
            // Only reachable if the collector's balance would overflow u128: refuse the fee.
            modules::accounts::credit(state, &sender, tx.body.fee).ok();
            receipt.status = TxStatus::Failed { error };
            return Ok(Ok(receipt));
        }
        receipt.fee_paid = tx.body.fee;
        state.begin_scope();
        let result = self
            .apply_action(state, ctx, tx_hash, &sender, &tx.body.action)
            .and_then(|skipped| {
                // Stake, served models and enclave decide the sender's draw weight.
                if tx.body.action.changes_worker() {
                    modules::sortition::refresh(state, ctx, &sender)?;
                }
                Ok(skipped)
            });
        match result {
            Ok(skipped) => {
                state.commit_scope();
                receipt.skipped = skipped;
            }
            // A storage failure is the node's, not the transaction's: halt rather than record it.
            Err(TxFailure::Internal { reason }) => return Err(StateError::Halted(reason)),
            Err(error) => {
                state.revert_scope();
                receipt.status = TxStatus::Failed { error };
            }
        }
        Ok(Ok(receipt))
    }

    fn apply_action(
        &self,
        state: &mut Overlay<'_>,
        ctx: &BlockCtx<'_>,
        tx_hash: Hash,
        sender: &Address,
        action: &Action,
    ) -> Result<Vec<modules::verifier::Skipped>, TxFailure> {
        use modules::{data, enclaves, registry, staking, tasks, verifier};
        let applied = match action {
            Action::Transfer { to, amount } => {
                modules::accounts::transfer(state, sender, to, *amount)
            }
            Action::Stake { amount } => staking::stake(state, sender, *amount),
            Action::Unstake { amount } => staking::unstake(state, ctx, sender, *amount),
            Action::ServeModels { models } => staking::serve_models(state, sender, models.clone()),
            Action::BondValidator {
                identity,
                p2p,
                amount,
                proof,
            } => modules::validators::bond(state, ctx, sender, identity, p2p, *amount, proof),
            Action::UnbondValidator { amount } => {
                modules::validators::unbond(state, ctx, sender, *amount)
            }
            Action::RegisterModel { spec, salt, anchor } => {
                registry::register_model(state, ctx, sender, spec, salt, anchor.as_ref())
            }
            Action::RegisterDataset {
                name,
                data,
                license,
                salt,
                anchor,
            } => registry::register_dataset(
                state,
                ctx,
                sender,
                name,
                data,
                license,
                salt,
                anchor.as_ref(),
            ),
            Action::CommitRegistration { commitment } => {
                registry::commit(state, ctx, sender, commitment)
            }
            Action::TransferOwnership { asset, id, to } => {
                registry::transfer_ownership(state, sender, *asset, id, to)
            }
            Action::RegisterEnclave {
                kind,
                enclave_key,
                nonce_height,
                report,
                collateral,
                certs,
            } => {
                let evidence = verity_tee::Evidence {
                    report: report.clone(),
                    collateral: (!collateral.is_empty()).then(|| collateral.clone()),
                    certs: certs.clone(),
                };
                let claim = enclaves::Claim {
                    kind,
                    key: enclave_key,
                    nonce_height: *nonce_height,
                    evidence: &evidence,
                };
                enclaves::register(state, ctx, sender, &claim).map(|_| ())
            }
            Action::SetAttestationPolicy { policy } => {
                enclaves::set_policy(state, ctx, sender, policy)
            }
            Action::SubmitTask {
                model_id,
                input,
                mode,
                max_fee,
                deadline_blocks,
                input_commitment,
                dataset,
                generation,
            } => {
                let request = tasks::Request {
                    model_id,
                    input,
                    mode: *mode,
                    max_fee: *max_fee,
                    deadline_blocks: *deadline_blocks,
                    input_commitment: *input_commitment,
                    dataset: *dataset,
                    generation: *generation,
                };
                tasks::submit(state, ctx, tx_hash, sender, &request).map(|_| ())
            }
            Action::SubmitReceipts { receipts } => {
                return verifier::submit_receipts(state, ctx, receipts)
            }
            Action::CancelTask { task_id } => tasks::cancel(state, ctx, sender, task_id),
            Action::ReportFailures { failures } => {
                return verifier::report_failures(state, ctx, failures)
            }
            Action::RegisterChallenger { amount } => {
                modules::challengers::register(state, ctx, sender, *amount)
            }
            Action::UnbondChallenger { amount } => {
                modules::challengers::unbond(state, ctx, sender, *amount)
            }
            Action::OpenDispute {
                task_id,
                trace_root,
                trace_len,
            } => modules::disputes::open(state, ctx, sender, task_id, *trace_root, *trace_len),
            Action::RevealChildren { dispute_id, hashes } => {
                modules::disputes::reveal(state, ctx, sender, dispute_id, hashes)
            }
            Action::OneStep {
                dispute_id,
                witness,
                input,
            } => modules::disputes::one_step(state, ctx, dispute_id, witness, input),
            Action::RevealOutput { dispute_id, output } => {
                modules::disputes::reveal_output(state, ctx, sender, dispute_id, output)
            }
            Action::RevealToken {
                dispute_id,
                output,
                prompt,
                forward_root,
                token,
            } => modules::disputes::reveal_token(
                state,
                ctx,
                sender,
                dispute_id,
                output,
                prompt,
                *forward_root,
                *token,
            ),
            Action::SetZkKeys {
                model_id,
                verifying_key,
                proving_key,
            } => registry::set_zk_keys(
                state,
                sender,
                ctx.height,
                model_id,
                verifying_key,
                proving_key,
            ),
            Action::SubmitZkReceipt(zk) => return verifier::submit_zk_receipt(state, ctx, zk),
            Action::ServeData {
                rsa_public_key,
                endpoint,
                signature,
            } => data::serve(state, ctx, sender, rsa_public_key, endpoint, signature),
            Action::AddFile {
                data: file,
                url,
                plaintext_hash,
                evaluation,
            } => data::add_file(
                state,
                ctx,
                sender,
                file,
                url,
                plaintext_hash,
                evaluation.as_ref(),
            )
            .map(|_| ()),
            Action::AddPermission { file_id, grantee } => {
                data::add_permission(state, sender, *file_id, grantee)
            }
            Action::RequestProof { file_id, fee } => {
                data::request_proof(state, ctx, sender, *file_id, *fee).map(|_| ())
            }
            Action::AddProof(proof) => data::add_proof(state, ctx, sender, proof),
            Action::RequestReward { file_id, job_id } => {
                data::request_reward(state, ctx, sender, *file_id, *job_id).map(|_| ())
            }
            Action::TransferDat {
                file_id,
                to,
                amount,
            } => data::transfer_dat(state, sender, *file_id, to, *amount),
            Action::ClaimDataRewards { file_id } => {
                data::claim(state, sender, *file_id).map(|_| ())
            }
        };
        applied.map(|()| Vec::new())
    }

    /// The checks a transaction must pass before it can be charged, against `state`.
    pub fn admit(
        &self,
        state: &Overlay<'_>,
        tx: &SignedTx,
        sender: &Address,
        tx_bytes: usize,
    ) -> Result<(), TxFailure> {
        self.check_static(tx, tx_bytes)?;
        let account = modules::accounts::get(state, sender)?;
        if tx.body.nonce != account.nonce {
            return Err(TxFailure::BadNonce {
                expected: account.nonce,
                got: tx.body.nonce,
            });
        }
        if account.balance < tx.body.fee {
            return Err(TxFailure::InsufficientBalance {
                needed: tx.body.fee,
                available: account.balance,
            });
        }
        Ok(())
    }

    /// Checks an action against committed state before it is admitted to the mempool, so that
    /// a client learns at once what a block would refuse. Only checks that cannot pass later
    /// are made here: a SubmitTask's model, mode, deadline, escrow and input size.
    pub fn precheck(&self, state: &Overlay<'_>, action: &Action) -> Result<(), TxFailure> {
        match action {
            Action::SubmitTask {
                model_id,
                input,
                mode,
                max_fee,
                deadline_blocks,
                input_commitment,
                dataset,
                generation,
            } => modules::tasks::check(
                state,
                &self.genesis.params.tasks,
                &modules::tasks::Request {
                    model_id,
                    input,
                    mode: *mode,
                    max_fee: *max_fee,
                    deadline_blocks: *deadline_blocks,
                    input_commitment: *input_commitment,
                    dataset: *dataset,
                    generation: *generation,
                },
            ),
            _ => Ok(()),
        }
    }

    /// The checks that need no state: the chain id and a fee that covers the weight's price.
    /// Block verification applies them to every transaction a proposer includes.
    pub fn check_static(&self, tx: &SignedTx, tx_bytes: usize) -> Result<(), TxFailure> {
        if tx.body.chain_id != self.genesis.chain_id {
            return Err(TxFailure::WrongChain {
                expected: self.genesis.chain_id.clone(),
                got: tx.body.chain_id.clone(),
            });
        }
        let minimum = self
            .genesis
            .params
            .required_fee(&tx.body.action, tx_bytes)
            .ok_or(TxFailure::Overflow)?;
        if tx.body.fee < minimum {
            return Err(TxFailure::FeeTooLow {
                offered: tx.body.fee,
                minimum,
            });
        }
        Ok(())
    }

    /// A read view of the committed state, for admission checks outside a block.
    pub fn view(&self) -> Overlay<'_> {
        Overlay::new(&self.store)
    }
}

/// The smallest key above `key` and every key it prefixes.
fn successor(key: &[u8]) -> Vec<u8> {
    let mut next = key.to_vec();
    next.push(0);
    next
}

/// root_h = SHA-256(domain ‖ root_{h-1} ‖ h ‖ SHA-256(sorted module writes of block h)).
///
/// A hash chain over every state change: equal roots mean equal histories of state. Block and
/// meta tables are bookkeeping and stay out of it.
fn chain_root(previous: &Hash, height: u64, batch: &Batch) -> Hash {
    let writes = sha256(&batch.canonical_bytes(Table::is_state));
    let mut input = Vec::with_capacity(STATE_ROOT_DOMAIN.len() + 72);
    input.extend_from_slice(STATE_ROOT_DOMAIN);
    input.extend_from_slice(&previous.0);
    input.extend_from_slice(&height.to_le_bytes());
    input.extend_from_slice(&writes.0);
    sha256(&input)
}
