//! Verity's deterministic state machine (DESIGN §3).
//!
//! Same blocks in, same state root out: no clock but the block's timestamp, no randomness, no
//! floating point, no I/O but the [`Store`] trait, and only ordered maps. Blocks apply their
//! transactions in order; a failing transaction is recorded as failed with its reason and the
//! block still applies.

pub mod modules;
mod overlay;
pub mod store;

use serde::{Deserialize, Serialize};
use thiserror::Error;
use verity_types::{sha256, Action, Address, Amount, Hash, SignedTx};

pub use modules::accounts::Account;
pub use overlay::Overlay;
pub use store::{Batch, MemStore, RedbStore, Store, StoreError, Table};

/// Domain tag of the state-root chain.
const STATE_ROOT_DOMAIN: &[u8] = b"verity/state-root/v1";
const META_HEIGHT: &[u8] = b"height";
const META_ROOT: &[u8] = b"state_root";
const META_GENESIS: &[u8] = b"genesis";

#[derive(Debug, Error)]
pub enum StateError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("stored state is corrupt: {0}")]
    Corrupt(&'static str),
    #[error("block {got} does not follow the applied height {applied}")]
    HeightGap { applied: u64, got: u64 },
    #[error("genesis: {0}")]
    Genesis(String),
    #[error("this store holds another chain's genesis (stored {stored}, given {given})")]
    GenesisMismatch { stored: Hash, given: Hash },
}

/// Why one transaction failed. Recorded in its receipt; the block still applies.
#[derive(Debug, Clone, PartialEq, Eq, Error, Serialize, Deserialize)]
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
        offered: Amount,
        #[serde(with = "verity_types::amount")]
        minimum: Amount,
    },
    #[error("insufficient balance: needs {needed}, has {available}")]
    InsufficientBalance {
        #[serde(with = "verity_types::amount")]
        needed: Amount,
        #[serde(with = "verity_types::amount")]
        available: Amount,
    },
    #[error("amount overflows a balance")]
    Overflow,
    #[error("state error: {reason}")]
    Internal { reason: String },
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
        if self.params.max_block_txs == 0 {
            return Err(StateError::Genesis("max_block_txs must be positive".into()));
        }
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
        Ok(())
    }
}

/// Outcome of one transaction.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum TxStatus {
    Success,
    Failed { error: TxFailure },
}

/// What a finalized transaction did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Receipt {
    pub tx_hash: Hash,
    pub height: u64,
    pub index: u32,
    /// Absent when the signature did not recover a sender.
    pub sender: Option<Address>,
    pub action: Option<String>,
    #[serde(with = "verity_types::amount")]
    pub fee_paid: Amount,
    #[serde(flatten)]
    pub status: TxStatus,
}

/// A finalized block as the state machine saw it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
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

/// What the consensus layer hands the state machine for one finalized block.
pub struct BlockInput<'a> {
    pub height: u64,
    pub hash: Hash,
    pub parent: Hash,
    pub timestamp_ms: u64,
    pub txs: &'a [Vec<u8>],
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
                store.commit(&batch)?;
            }
        }
        Ok(Self { store, genesis })
    }

    pub fn genesis(&self) -> &Genesis {
        &self.genesis
    }

    pub fn store(&self) -> &S {
        &self.store
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

    /// Applies one finalized block and commits it atomically with its receipts and new root.
    /// Blocks at or below the applied height are skipped (consensus delivers at least once);
    /// returns `None` for those.
    pub fn apply_block(
        &self,
        block: &BlockInput<'_>,
        recovered: impl Fn(&[u8]) -> Recovered,
    ) -> Result<Option<BlockRecord>, StateError> {
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
        let mut tx_hashes = Vec::with_capacity(block.txs.len());
        let mut failed_txs = 0;
        for (index, bytes) in block.txs.iter().enumerate() {
            let tx_hash = sha256(bytes);
            // A transaction is executed once; a repeat inclusion is ignored, not re-recorded.
            if state.get(Table::Receipts, &tx_hash.0)?.is_some() {
                continue;
            }
            let receipt = self.apply_tx(
                &mut state,
                block.height,
                index as u32,
                tx_hash,
                bytes,
                &recovered,
            )?;
            if matches!(receipt.status, TxStatus::Failed { .. }) {
                failed_txs += 1;
            }
            state.put(
                Table::Receipts,
                tx_hash.0.to_vec(),
                serde_json::to_vec(&receipt).expect("receipt serializes"),
            );
            tx_hashes.push(tx_hash);
        }
        let mut batch = state.into_batch();
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
        Ok(Some(record))
    }

    fn apply_tx(
        &self,
        state: &mut Overlay<'_>,
        height: u64,
        index: u32,
        tx_hash: Hash,
        bytes: &[u8],
        recovered: &impl Fn(&[u8]) -> Recovered,
    ) -> Result<Receipt, StateError> {
        let mut receipt = Receipt {
            tx_hash,
            height,
            index,
            sender: None,
            action: None,
            fee_paid: 0,
            status: TxStatus::Success,
        };
        let (tx, sender) = match recovered(bytes) {
            Ok(ok) => ok,
            Err(error) => {
                receipt.status = TxStatus::Failed { error };
                return Ok(receipt);
            }
        };
        receipt.sender = Some(sender);
        receipt.action = Some(tx.body.action.name().to_string());
        // Checks that leave no trace: wrong chain, stale nonce, fee below minimum, fee unpayable.
        if let Err(error) = self.admit(state, &tx, &sender) {
            receipt.status = TxStatus::Failed { error };
            return Ok(receipt);
        }
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
            return Ok(receipt);
        }
        receipt.fee_paid = tx.body.fee;
        state.begin_scope();
        let result = match &tx.body.action {
            Action::Transfer { to, amount } => {
                modules::accounts::transfer(state, &sender, to, *amount)
            }
        };
        match result {
            Ok(()) => state.commit_scope(),
            Err(error) => {
                state.revert_scope();
                receipt.status = TxStatus::Failed { error };
            }
        }
        Ok(receipt)
    }

    /// The checks a transaction must pass before it can be charged, against `state`.
    pub fn admit(
        &self,
        state: &Overlay<'_>,
        tx: &SignedTx,
        sender: &Address,
    ) -> Result<(), TxFailure> {
        if tx.body.chain_id != self.genesis.chain_id {
            return Err(TxFailure::WrongChain {
                expected: self.genesis.chain_id.clone(),
                got: tx.body.chain_id.clone(),
            });
        }
        if tx.body.fee < self.genesis.params.min_fee {
            return Err(TxFailure::FeeTooLow {
                offered: tx.body.fee,
                minimum: self.genesis.params.min_fee,
            });
        }
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

    /// A read view of the committed state, for admission checks outside a block.
    pub fn view(&self) -> Overlay<'_> {
        Overlay::new(&self.store)
    }
}

/// root_h = SHA-256(domain ‖ root_{h-1} ‖ h ‖ SHA-256(sorted module writes of block h)).
///
/// A hash chain over every state change: equal roots mean equal histories of state. Block and
/// meta tables are bookkeeping and stay out of it.
fn chain_root(previous: &Hash, height: u64, batch: &Batch) -> Hash {
    let writes = sha256(&batch.canonical_bytes(|t| matches!(t, Table::Accounts | Table::Receipts)));
    let mut input = Vec::with_capacity(STATE_ROOT_DOMAIN.len() + 72);
    input.extend_from_slice(STATE_ROOT_DOMAIN);
    input.extend_from_slice(&previous.0);
    input.extend_from_slice(&height.to_le_bytes());
    input.extend_from_slice(&writes.0);
    sha256(&input)
}
