//! Pending transactions: admission checks, per-sender nonce order, and selection for blocks.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use verity_state::{Chain, Recovered, Store, TxFailure};
use verity_types::{sha256, Address, Hash, SignedTx};

use crate::block::MAX_BLOCK_BYTES;

/// How far ahead of an account's nonce a pending transaction may be.
pub const MAX_NONCE_GAP: u64 = 1_024;

/// Signature recovery is a pure function of the bytes, so its result can be shared between
/// admission, block verification and execution, and between validators in one process.
#[derive(Clone, Default)]
pub struct SenderCache {
    inner: Arc<Mutex<HashMap<Hash, Recovered>>>,
}

const SENDER_CACHE_LIMIT: usize = 200_000;

impl SenderCache {
    pub fn recover(&self, bytes: &[u8]) -> Recovered {
        let hash = sha256(bytes);
        if let Some(hit) = self.inner.lock().expect("cache lock").get(&hash) {
            return hit.clone();
        }
        let result = verity_state::recover(bytes);
        let mut map = self.inner.lock().expect("cache lock");
        if map.len() >= SENDER_CACHE_LIMIT {
            map.clear();
        }
        map.insert(hash, result.clone());
        result
    }
}

/// Why a transaction was not admitted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AdmitError {
    #[error(transparent)]
    Invalid(#[from] TxFailure),
    #[error("nonce {got} is too far ahead of the account's nonce {expected}")]
    NonceTooFarAhead { expected: u64, got: u64 },
    #[error("a transaction with this sender and nonce is already pending")]
    Duplicate,
    #[error("the mempool is full ({0} transactions)")]
    Full(usize),
}

impl AdmitError {
    /// Stable machine-readable code for API errors.
    pub fn code(&self) -> &'static str {
        match self {
            AdmitError::Invalid(TxFailure::Malformed { .. }) => "malformed_transaction",
            AdmitError::Invalid(TxFailure::WrongChain { .. }) => "wrong_chain_id",
            AdmitError::Invalid(TxFailure::BadSignature { .. }) => "bad_signature",
            AdmitError::Invalid(TxFailure::BadNonce { .. }) => "bad_nonce",
            AdmitError::Invalid(TxFailure::FeeTooLow { .. }) => "fee_too_low",
            AdmitError::Invalid(TxFailure::InsufficientBalance { .. }) => "insufficient_balance",
            AdmitError::Invalid(TxFailure::Overflow) => "overflow",
            AdmitError::Invalid(TxFailure::Internal { .. }) => "internal",
            AdmitError::Invalid(TxFailure::NotFound { .. }) => "not_found",
            AdmitError::Invalid(TxFailure::Unauthorized { .. }) => "unauthorized",
            AdmitError::Invalid(TxFailure::Invalid { .. }) => "invalid_action",
            AdmitError::Invalid(TxFailure::Attestation { .. }) => "attestation_rejected",
            AdmitError::Invalid(TxFailure::ReceiptRejected { .. }) => "receipt_rejected",
            AdmitError::NonceTooFarAhead { .. } => "nonce_too_far_ahead",
            AdmitError::Duplicate => "duplicate_transaction",
            AdmitError::Full(_) => "mempool_full",
        }
    }
}

struct Pending {
    hash: Hash,
    bytes: Bytes,
}

/// Transactions waiting for a block, by sender then nonce.
pub struct Mempool {
    by_sender: BTreeMap<Address, BTreeMap<u64, Pending>>,
    hashes: HashSet<Hash>,
    capacity: usize,
}

impl Mempool {
    pub fn new(capacity: usize) -> Self {
        Self {
            by_sender: BTreeMap::new(),
            hashes: HashSet::new(),
            capacity,
        }
    }

    pub fn len(&self) -> usize {
        self.hashes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.hashes.is_empty()
    }

    pub fn contains(&self, hash: &Hash) -> bool {
        self.hashes.contains(hash)
    }

    /// Checks a transaction against committed state and, if it could apply, keeps it.
    ///
    /// The balance check covers this transaction's fee and amount against the committed
    /// balance; pending transactions of the same sender are not netted out, so a block may still
    /// record one of them as failed. That is the state machine's job, not admission's.
    pub fn admit<S: Store>(
        &mut self,
        chain: &Chain<S>,
        cache: &SenderCache,
        bytes: Bytes,
    ) -> Result<Hash, AdmitError> {
        let (tx, sender): (SignedTx, Address) = cache.recover(&bytes)?;
        let hash = sha256(&bytes);
        if self.hashes.contains(&hash) {
            return Err(AdmitError::Duplicate);
        }
        let view = chain.view();
        let committed = chain.account(&sender).map_err(TxFailure::from)?;
        match chain.admit(&view, &tx, &sender) {
            Ok(()) => {}
            // A future nonce is fine in the pool: earlier ones may be pending.
            Err(TxFailure::BadNonce { expected, got }) if got > expected => {
                if got - expected > MAX_NONCE_GAP {
                    return Err(AdmitError::NonceTooFarAhead { expected, got });
                }
            }
            Err(e) => return Err(e.into()),
        }
        let cost = tx
            .body
            .fee
            .checked_add(tx.body.action.spend())
            .ok_or(TxFailure::Overflow)?;
        if committed.balance < cost {
            return Err(TxFailure::InsufficientBalance {
                needed: cost,
                available: committed.balance,
            }
            .into());
        }
        let queue = self.by_sender.entry(sender).or_default();
        if queue.contains_key(&tx.body.nonce) {
            return Err(AdmitError::Duplicate);
        }
        if self.hashes.len() >= self.capacity {
            return Err(AdmitError::Full(self.capacity));
        }
        queue.insert(tx.body.nonce, Pending { hash, bytes });
        self.hashes.insert(hash);
        Ok(hash)
    }

    /// Picks up to `limit` transactions that can apply in order: for each sender, consecutive
    /// nonces from its committed nonce, skipping those already in unfinalized ancestors.
    pub fn select<S: Store>(
        &self,
        chain: &Chain<S>,
        in_ancestors: &HashSet<Hash>,
        limit: usize,
    ) -> Vec<Bytes> {
        let mut queues: Vec<(u64, std::collections::btree_map::Range<'_, u64, Pending>)> = self
            .by_sender
            .iter()
            .filter_map(|(sender, queue)| {
                let nonce = chain.account(sender).ok()?.nonce;
                Some((nonce, queue.range(nonce..)))
            })
            .collect();
        let mut out = Vec::new();
        let mut bytes = 0;
        let full = |out: &Vec<Bytes>, bytes: usize| out.len() >= limit || bytes >= MAX_BLOCK_BYTES;
        // Round-robin across senders so one busy account cannot fill every block.
        while !full(&out, bytes) && !queues.is_empty() {
            queues.retain_mut(|(expected, range)| {
                if full(&out, bytes) {
                    return true;
                }
                match range.next() {
                    // A transaction that would overflow the block ends this sender's turn.
                    Some((_, pending)) if bytes + pending.bytes.len() > MAX_BLOCK_BYTES => false,
                    Some((nonce, pending)) if nonce == expected => {
                        *expected += 1;
                        if !in_ancestors.contains(&pending.hash) {
                            bytes += pending.bytes.len();
                            out.push(pending.bytes.clone());
                        }
                        true
                    }
                    _ => false,
                }
            });
        }
        out
    }

    /// Drops what a finalized block made stale: every pending nonce below the sender's new one.
    pub fn prune<S: Store>(&mut self, chain: &Chain<S>, senders: &BTreeSet<Address>) {
        for sender in senders {
            let Ok(account) = chain.account(sender) else {
                continue;
            };
            if let Some(queue) = self.by_sender.get_mut(sender) {
                let keep = queue.split_off(&account.nonce);
                for (_, pending) in std::mem::replace(queue, keep) {
                    self.hashes.remove(&pending.hash);
                }
                if queue.is_empty() {
                    self.by_sender.remove(sender);
                }
            }
        }
    }
}
