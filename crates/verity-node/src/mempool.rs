//! Pending transactions: admission checks, per-sender nonce order, and selection for blocks.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use verity_api::ErrorCode;

use bytes::Bytes;
use verity_state::{Chain, Recovered, Store, TxFailure};
use verity_types::{sha256, Address, Amount, Hash, SignedTx};

use crate::block::MAX_BLOCK_BYTES;

/// How far ahead of an account's nonce a pending transaction may be.
pub const MAX_NONCE_GAP: u64 = 1_024;

/// The most transactions one sender may have waiting behind a nonce gap: they cannot execute
/// until the gap is filled, so a pool full of them is a pool jammed for free.
pub const MAX_QUEUED_PER_SENDER: usize = 64;

/// Blocks a transaction behind a nonce gap may wait before [`Mempool::expire_queued`] drops it.
pub const QUEUED_TTL_BLOCKS: u64 = 64;

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
    #[error(
        "the mempool is full ({0} transactions) and this one pays no more per weight than any"
    )]
    Full(usize),
    #[error("a transaction with this sender and nonce is pending with fee {pending}; a replacement must pay more")]
    Underpriced { pending: Amount },
    #[error("this sender already has {0} pending transactions")]
    SenderFull(usize),
    #[error("this sender already has {0} transactions waiting behind a nonce gap; send the missing nonce first")]
    QueuedFull(usize),
}

impl AdmitError {
    /// Stable machine-readable code for API errors.
    pub fn code(&self) -> ErrorCode {
        match self {
            AdmitError::Invalid(failure) => ErrorCode::of_failure(failure),
            AdmitError::NonceTooFarAhead { .. } => ErrorCode::NonceTooFarAhead,
            AdmitError::Duplicate => ErrorCode::DuplicateTransaction,
            AdmitError::Full(_) => ErrorCode::MempoolFull,
            AdmitError::Underpriced { .. } => ErrorCode::ReplacementUnderpriced,
            AdmitError::SenderFull(_) | AdmitError::QueuedFull(_) => ErrorCode::SenderPendingLimit,
        }
    }
}

struct Pending {
    hash: Hash,
    bytes: Bytes,
    fee: Amount,
    /// The fee plus what the action spends: what the sender's balance must cover.
    cost: Amount,
    weight: u64,
    /// Fee per weight unit, scaled by [`PRIORITY_SCALE`]: what eviction orders by.
    priority: u128,
    /// The committed height when it was admitted: a transaction behind a nonce gap expires.
    admitted_at: u64,
}

/// Scale of [`Pending::priority`], so that fees below one base unit per weight still order.
const PRIORITY_SCALE: u128 = 1_000_000;

/// The most transactions one sender may have pending: past it a sender's own backlog, not the
/// pool's capacity, refuses the next one, so one account cannot crowd out the rest.
pub const MAX_PER_SENDER: usize = MAX_NONCE_GAP as usize;

/// Transactions waiting for a block, by sender then nonce, with an index by fee per weight for
/// eviction when full.
pub struct Mempool {
    by_sender: BTreeMap<Address, BTreeMap<u64, Pending>>,
    hashes: HashSet<Hash>,
    /// (priority, sender, nonce): the first entry is the cheapest to evict.
    by_priority: BTreeSet<(u128, Address, u64)>,
    capacity: usize,
}

impl Mempool {
    pub fn new(capacity: usize) -> Self {
        Self {
            by_sender: BTreeMap::new(),
            hashes: HashSet::new(),
            by_priority: BTreeSet::new(),
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
    /// - A future nonce waits for the ones before it, up to [`MAX_NONCE_GAP`] ahead.
    /// - The same sender and nonce as a pending transaction replaces it only if it pays a higher
    ///   fee; otherwise it is a duplicate.
    /// - A sender holds at most [`MAX_PER_SENDER`] pending transactions.
    /// - When the pool is full, the transaction with the lowest fee per weight goes, if the new
    ///   one pays more per weight; otherwise the new one is refused.
    ///
    /// - A sender holds at most [`MAX_QUEUED_PER_SENDER`] transactions behind a nonce gap.
    ///
    /// The balance check covers this transaction's fee and amount together with every other
    /// transaction the sender has pending, against the committed balance: no sender holds more
    /// in the pool than it could pay for. Transactions that become unpayable once others apply
    /// are evicted by [`prune`], and those left behind a gap by [`expire_queued`].
    ///
    /// [`prune`]: Mempool::prune
    /// [`expire_queued`]: Mempool::expire_queued
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
        match chain.admit(&view, &tx, &sender, bytes.len()) {
            Ok(()) => {}
            // A future nonce is fine in the pool: earlier ones may be pending.
            Err(TxFailure::BadNonce { expected, got }) if got > expected => {
                if got - expected > MAX_NONCE_GAP {
                    return Err(AdmitError::NonceTooFarAhead { expected, got });
                }
            }
            Err(e) => return Err(e.into()),
        }
        chain.precheck(&view, &tx.body.action)?;
        let cost = tx
            .body
            .fee
            .checked_add(tx.body.action.spend())
            .ok_or(TxFailure::Overflow)?;
        let nonce = tx.body.nonce;
        let queue = self.by_sender.get(&sender);
        let others = queue
            .into_iter()
            .flat_map(|q| q.range(committed.nonce..))
            .filter(|(n, _)| **n != nonce)
            .try_fold(0, |sum: Amount, (_, p)| sum.checked_add(p.cost))
            .ok_or(TxFailure::Overflow)?;
        let needed = others.checked_add(cost).ok_or(TxFailure::Overflow)?;
        if committed.balance < needed {
            return Err(TxFailure::InsufficientBalance {
                needed,
                available: committed.balance,
            }
            .into());
        }
        let next = self.pending_nonce(&sender, committed.nonce);
        if nonce > next {
            let queued = queue.map_or(0, |q| q.range(next + 1..).count());
            if queued >= MAX_QUEUED_PER_SENDER && !queue.is_some_and(|q| q.contains_key(&nonce)) {
                return Err(AdmitError::QueuedFull(MAX_QUEUED_PER_SENDER));
            }
        }
        let weight = verity_types::weight::of(&tx.body.action, bytes.len());
        let priority = tx.body.fee.saturating_mul(PRIORITY_SCALE) / u128::from(weight.max(1));
        let pending = Pending {
            hash,
            bytes,
            fee: tx.body.fee,
            cost,
            weight,
            priority,
            admitted_at: chain.height().unwrap_or(0),
        };
        let queue_len = self.by_sender.get(&sender).map_or(0, BTreeMap::len);
        if let Some(existing) = self.by_sender.get(&sender).and_then(|q| q.get(&nonce)) {
            if pending.fee <= existing.fee {
                return Err(AdmitError::Underpriced {
                    pending: existing.fee,
                });
            }
            self.remove(&sender, nonce);
        } else {
            if queue_len >= MAX_PER_SENDER {
                return Err(AdmitError::SenderFull(MAX_PER_SENDER));
            }
            if self.hashes.len() >= self.capacity {
                match self.by_priority.first().copied() {
                    Some((lowest, victim, victim_nonce)) if lowest < priority => {
                        self.remove(&victim, victim_nonce);
                    }
                    _ => return Err(AdmitError::Full(self.capacity)),
                }
            }
        }
        self.by_priority.insert((priority, sender, nonce));
        self.hashes.insert(hash);
        self.by_sender
            .entry(sender)
            .or_default()
            .insert(nonce, pending);
        Ok(hash)
    }

    /// The nonce a sender's next transaction should carry: after its committed nonce and every
    /// consecutive one already pending here (Ethereum's "pending" nonce).
    pub fn pending_nonce(&self, sender: &Address, committed: u64) -> u64 {
        let Some(queue) = self.by_sender.get(sender) else {
            return committed;
        };
        let mut next = committed;
        for nonce in queue.range(committed..).map(|(nonce, _)| *nonce) {
            if nonce != next {
                break;
            }
            next += 1;
        }
        next
    }

    fn remove(&mut self, sender: &Address, nonce: u64) {
        let Some(queue) = self.by_sender.get_mut(sender) else {
            return;
        };
        if let Some(pending) = queue.remove(&nonce) {
            self.hashes.remove(&pending.hash);
            self.by_priority.remove(&(pending.priority, *sender, nonce));
        }
        if queue.is_empty() {
            self.by_sender.remove(sender);
        }
    }

    /// Drops every transaction that has waited behind a nonce gap for more than
    /// [`QUEUED_TTL_BLOCKS`] at committed height `height`. Senders that never fill their gap are
    /// never in a block, so [`prune`](Mempool::prune) alone would keep them forever.
    pub fn expire_queued<S: Store>(&mut self, chain: &Chain<S>, height: u64) {
        let mut expired = Vec::new();
        for (sender, queue) in &self.by_sender {
            let Ok(account) = chain.account(sender) else {
                continue;
            };
            let next = self.pending_nonce(sender, account.nonce);
            expired.extend(
                queue
                    .range(next + 1..)
                    .filter(|(_, p)| p.admitted_at.saturating_add(QUEUED_TTL_BLOCKS) < height)
                    .map(|(nonce, _)| (*sender, *nonce)),
            );
        }
        for (sender, nonce) in expired {
            self.remove(&sender, nonce);
        }
    }

    /// Picks transactions that can apply in order, within `limits`: for each sender, consecutive
    /// nonces from its committed nonce whose fees and spending its balance covers, skipping those
    /// already in unfinalized ancestors.
    pub fn select<S: Store>(
        &self,
        chain: &Chain<S>,
        in_ancestors: &HashSet<Hash>,
        limits: BlockLimits,
    ) -> Vec<Bytes> {
        struct Turn<'a> {
            expected: u64,
            balance: Amount,
            range: std::collections::btree_map::Range<'a, u64, Pending>,
        }
        let mut queues: Vec<Turn<'_>> = self
            .by_sender
            .iter()
            .filter_map(|(sender, queue)| {
                let account = chain.account(sender).ok()?;
                Some(Turn {
                    expected: account.nonce,
                    balance: account.balance,
                    range: queue.range(account.nonce..),
                })
            })
            .collect();
        let mut out = Vec::new();
        let (mut bytes, mut weight) = (0usize, 0u64);
        let full = |out: &Vec<Bytes>, bytes: usize, weight: u64| {
            out.len() >= limits.txs || bytes >= MAX_BLOCK_BYTES || weight >= limits.weight
        };
        // Round-robin across senders so one busy account cannot fill every block.
        while !full(&out, bytes, weight) && !queues.is_empty() {
            queues.retain_mut(|turn| {
                if full(&out, bytes, weight) {
                    return true;
                }
                let Some((nonce, pending)) = turn.range.next() else {
                    return false;
                };
                let tx_weight = pending.weight;
                // A transaction that would overflow the block, or that the sender can no longer
                // pay for, ends this sender's turn.
                if *nonce != turn.expected
                    || bytes + pending.bytes.len() > MAX_BLOCK_BYTES
                    || weight + tx_weight > limits.weight
                    || pending.cost > turn.balance
                {
                    return false;
                }
                turn.expected += 1;
                turn.balance -= pending.cost;
                if !in_ancestors.contains(&pending.hash) {
                    bytes += pending.bytes.len();
                    weight += tx_weight;
                    out.push(pending.bytes.clone());
                }
                true
            });
        }
        out
    }

    /// Drops what a finalized block made stale or unpayable: every pending nonce below the
    /// sender's new one, and from its next nonce on, every transaction whose fee and spending
    /// (with those before it) the sender's balance no longer covers. A later transaction with an
    /// evicted one's nonce is then admitted afresh.
    pub fn prune<S: Store>(&mut self, chain: &Chain<S>, senders: &BTreeSet<Address>) {
        for sender in senders {
            let Ok(account) = chain.account(sender) else {
                continue;
            };
            let Some(queue) = self.by_sender.get(sender) else {
                continue;
            };
            let mut balance = account.balance;
            let evict: Vec<u64> = queue
                .iter()
                .filter(|(nonce, pending)| {
                    if **nonce < account.nonce {
                        return true;
                    }
                    match balance.checked_sub(pending.cost) {
                        Some(rest) => {
                            balance = rest;
                            false
                        }
                        None => true,
                    }
                })
                .map(|(nonce, _)| *nonce)
                .collect();
            for nonce in evict {
                self.remove(sender, nonce);
            }
        }
    }
}

/// What one block may hold.
#[derive(Debug, Clone, Copy)]
pub struct BlockLimits {
    pub txs: usize,
    pub weight: u64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use verity_state::{BlockInput, Genesis, GenesisAccount, MemStore, Params, TxStatus};
    use verity_types::{AccountKey, Action, TxBody};

    /// Each refusal answers with its own API code (the API's tests reach all but a full pool,
    /// which needs 100,000 pending transactions; `a_full_pool_evicts_the_lowest_fee_per_weight`
    /// fills a small one).
    #[test]
    fn every_refusal_has_its_api_code() {
        for (refusal, code) in [
            (
                AdmitError::NonceTooFarAhead {
                    expected: 0,
                    got: 2_000,
                },
                ErrorCode::NonceTooFarAhead,
            ),
            (AdmitError::Duplicate, ErrorCode::DuplicateTransaction),
            (AdmitError::Full(3), ErrorCode::MempoolFull),
            (
                AdmitError::Underpriced { pending: 5 },
                ErrorCode::ReplacementUnderpriced,
            ),
            (AdmitError::SenderFull(1_024), ErrorCode::SenderPendingLimit),
            (
                AdmitError::Invalid(TxFailure::Overflow),
                ErrorCode::Overflow,
            ),
        ] {
            assert_eq!(refusal.code(), code, "{refusal}");
        }
    }

    const CHAIN: &str = "verity-mempool-test";

    fn chain(funded: &[(&AccountKey, u128)]) -> Chain<MemStore> {
        let genesis = Genesis {
            chain_id: CHAIN.into(),
            genesis_time_ms: 0,
            params: Params {
                min_fee: 1,
                fee_collector: Address([0xfe; 20]),
                max_block_txs: 1_000,
                fee_per_weight: 1,
                max_block_weight: 2_000_000,
                governance: None,
                tasks: Default::default(),
                data: Default::default(),
                validators: Default::default(),
            },
            accounts: funded
                .iter()
                .map(|(k, balance)| GenesisAccount {
                    address: k.address(),
                    balance: *balance,
                })
                .collect(),
            attestation_policy: None,
            validators: vec![],
        };
        Chain::open(MemStore::default(), genesis).unwrap()
    }

    fn transfer(key: &AccountKey, nonce: u64, amount: u128, fee: u128) -> Bytes {
        TxBody {
            chain_id: CHAIN.into(),
            nonce,
            fee,
            action: Action::Transfer {
                to: Address([9; 20]),
                amount,
            },
        }
        .sign(key)
        .encode()
        .into()
    }

    fn apply(chain: &Chain<MemStore>, txs: &[Bytes]) {
        let height = chain.height().unwrap() + 1;
        let raw: Vec<Vec<u8>> = txs.iter().map(|t| t.to_vec()).collect();
        chain
            .apply_block(
                &BlockInput {
                    height,
                    hash: Hash([height as u8; 32]),
                    parent: Hash::ZERO,
                    timestamp_ms: height * 1_000,
                    seed: Hash::ZERO,
                    proposer: None,
                    txs: &raw,
                },
                verity_state::recover,
            )
            .unwrap()
            .unwrap();
    }

    fn limits() -> BlockLimits {
        BlockLimits {
            txs: 1_000,
            weight: 2_000_000,
        }
    }

    /// Found in review: tx0 spends the whole balance, tx1 was admitted against the old one. Once
    /// tx1 cannot execute it must leave the pool, so a new transaction with its nonce gets in.
    /// This pool counts what is pending, so tx0 reaches the block from another validator's pool
    /// while this one holds a cheaper transaction with its nonce.
    #[test]
    fn an_unpayable_transaction_is_evicted_and_its_nonce_reused() {
        let alice = AccountKey::generate();
        let bob = AccountKey::generate();
        let chain = chain(&[(&alice, 10_000), (&bob, 100_000)]);
        let cache = SenderCache::default();
        let mut pool = Mempool::new(100);
        let tx0 = transfer(&alice, 0, 10_000 - 500, 500);
        let tx1 = transfer(&alice, 1, 1, 500);
        pool.admit(&chain, &cache, tx0.clone()).unwrap();
        assert!(
            pool.admit(&chain, &cache, tx1.clone()).is_err(),
            "tx0 pending leaves nothing for tx1"
        );
        let mut pool = Mempool::new(100);
        pool.admit(&chain, &cache, transfer(&alice, 0, 1, 500))
            .unwrap();
        pool.admit(&chain, &cache, tx1.clone()).unwrap();
        // A proposer that includes tx1 after tx0 gains nothing: it is dropped without a receipt.
        apply(&chain, &[tx0.clone(), tx1.clone()]);
        assert_eq!(chain.receipt(&sha256(&tx1)).unwrap(), None);
        assert_eq!(chain.account(&alice.address()).unwrap().nonce, 1);
        pool.prune(&chain, &BTreeSet::from([alice.address()]));
        assert!(pool.is_empty(), "tx0 is used and tx1 unpayable");
        // Alice is paid again; a new transaction with tx1's nonce is admitted and finalizes.
        let refill = TxBody {
            chain_id: CHAIN.into(),
            nonce: 0,
            fee: 500,
            action: Action::Transfer {
                to: alice.address(),
                amount: 5_000,
            },
        }
        .sign(&bob)
        .encode();
        apply(&chain, &[refill.into()]);
        let again = transfer(&alice, 1, 7, 600);
        pool.admit(&chain, &cache, again.clone()).unwrap();
        let block = pool.select(&chain, &HashSet::new(), limits());
        assert_eq!(block, vec![again.clone()]);
        apply(&chain, &block);
        let receipt = chain.receipt(&sha256(&again)).unwrap().unwrap();
        assert_eq!(receipt.status, TxStatus::Success);
    }

    /// Clients number their next transaction after the ones still pending, so a command run
    /// while others are in flight does not collide with them.
    #[test]
    fn the_pending_nonce_counts_consecutive_pending_transactions() {
        let alice = AccountKey::generate();
        let chain = chain(&[(&alice, 1_000_000)]);
        let cache = SenderCache::default();
        let mut pool = Mempool::new(100);
        assert_eq!(pool.pending_nonce(&alice.address(), 0), 0);
        for nonce in [0, 1, 2, 4] {
            pool.admit(&chain, &cache, transfer(&alice, nonce, 1, 500))
                .unwrap();
        }
        assert_eq!(pool.pending_nonce(&alice.address(), 0), 3, "4 waits for 3");
        apply(&chain, &pool.select(&chain, &HashSet::new(), limits()));
        pool.prune(&chain, &BTreeSet::from([alice.address()]));
        assert_eq!(pool.pending_nonce(&alice.address(), 3), 3);
    }

    #[test]
    fn a_replacement_must_pay_more() {
        let alice = AccountKey::generate();
        let chain = chain(&[(&alice, 1_000_000)]);
        let cache = SenderCache::default();
        let mut pool = Mempool::new(100);
        pool.admit(&chain, &cache, transfer(&alice, 0, 1, 500))
            .unwrap();
        assert!(matches!(
            pool.admit(&chain, &cache, transfer(&alice, 0, 2, 500)),
            Err(AdmitError::Underpriced { pending: 500 })
        ));
        let better = transfer(&alice, 0, 3, 501);
        pool.admit(&chain, &cache, better.clone()).unwrap();
        assert_eq!(pool.len(), 1);
        assert_eq!(pool.select(&chain, &HashSet::new(), limits()), vec![better]);
    }

    #[test]
    fn one_sender_cannot_hold_more_than_its_share() {
        let alice = AccountKey::generate();
        let bob = AccountKey::generate();
        let chain = chain(&[(&alice, 1_000_000_000), (&bob, 1_000_000)]);
        let cache = SenderCache::default();
        let mut pool = Mempool::new(10_000);
        for nonce in 0..MAX_PER_SENDER as u64 {
            pool.admit(&chain, &cache, transfer(&alice, nonce, 1, 200))
                .unwrap();
        }
        assert!(matches!(
            pool.admit(
                &chain,
                &cache,
                transfer(&alice, MAX_PER_SENDER as u64, 1, 200)
            ),
            Err(AdmitError::SenderFull(_) | AdmitError::NonceTooFarAhead { .. })
        ));
        pool.admit(&chain, &cache, transfer(&bob, 0, 1, 200))
            .unwrap();
    }

    #[test]
    fn a_full_pool_evicts_the_lowest_fee_per_weight() {
        let keys: Vec<AccountKey> = (0..4).map(|_| AccountKey::generate()).collect();
        let funded: Vec<(&AccountKey, u128)> = keys.iter().map(|k| (k, 1_000_000)).collect();
        let chain = chain(&funded);
        let cache = SenderCache::default();
        let mut pool = Mempool::new(3);
        let cheapest = transfer(&keys[0], 0, 1, 200);
        pool.admit(&chain, &cache, cheapest.clone()).unwrap();
        pool.admit(&chain, &cache, transfer(&keys[1], 0, 1, 300))
            .unwrap();
        pool.admit(&chain, &cache, transfer(&keys[2], 0, 1, 400))
            .unwrap();
        assert!(matches!(
            pool.admit(&chain, &cache, transfer(&keys[3], 0, 1, 150)),
            Err(AdmitError::Full(3))
        ));
        pool.admit(&chain, &cache, transfer(&keys[3], 0, 1, 250))
            .unwrap();
        assert_eq!(pool.len(), 3);
        assert!(!pool.contains(&sha256(&cheapest)));
    }

    /// Attack: every transaction was checked against the committed balance alone, so one
    /// account could fill the pool with transactions it could never all pay for. Admission
    /// counts what the sender already has pending.
    #[test]
    fn a_sender_cannot_pend_more_than_its_balance_covers() {
        let alice = AccountKey::generate();
        let chain = chain(&[(&alice, 10_000)]);
        let cache = SenderCache::default();
        let mut pool = Mempool::new(100);
        pool.admit(&chain, &cache, transfer(&alice, 0, 5_500, 500))
            .unwrap();
        assert!(matches!(
            pool.admit(&chain, &cache, transfer(&alice, 1, 5_500, 500)),
            Err(AdmitError::Invalid(TxFailure::InsufficientBalance {
                needed: 12_000,
                available: 10_000
            }))
        ));
        // A future nonce counts the same.
        assert!(matches!(
            pool.admit(&chain, &cache, transfer(&alice, 5, 5_500, 500)),
            Err(AdmitError::Invalid(TxFailure::InsufficientBalance { .. }))
        ));
        // A replacement is counted instead of the one it replaces, not beside it.
        pool.admit(&chain, &cache, transfer(&alice, 0, 9_000, 600))
            .unwrap();
        pool.admit(&chain, &cache, transfer(&alice, 1, 1, 300))
            .unwrap();
        assert_eq!(pool.len(), 2);
    }

    /// Attack: transactions behind a nonce gap never execute, so they were never pruned: an
    /// account could park 1,024 of them per address for nothing. At most
    /// [`MAX_QUEUED_PER_SENDER`] wait behind a gap, and they expire after
    /// [`QUEUED_TTL_BLOCKS`]; the sender's executable transactions stay.
    #[test]
    fn transactions_behind_a_gap_are_bounded_and_expire() {
        let alice = AccountKey::generate();
        let chain = chain(&[(&alice, 1_000_000_000)]);
        let cache = SenderCache::default();
        let mut pool = Mempool::new(10_000);
        let ready = transfer(&alice, 0, 1, 200);
        pool.admit(&chain, &cache, ready.clone()).unwrap();
        let gapped = 2..2 + MAX_QUEUED_PER_SENDER as u64;
        for nonce in gapped.clone() {
            pool.admit(&chain, &cache, transfer(&alice, nonce, 1, 200))
                .unwrap();
        }
        assert!(matches!(
            pool.admit(&chain, &cache, transfer(&alice, gapped.end, 1, 200)),
            Err(AdmitError::QueuedFull(MAX_QUEUED_PER_SENDER))
        ));
        // Filling the gap makes them executable: they no longer count as queued.
        let mut filled = Mempool::new(10_000);
        for nonce in 0..gapped.end + 1 {
            filled
                .admit(&chain, &cache, transfer(&alice, nonce, 1, 200))
                .unwrap();
        }
        filled.expire_queued(&chain, QUEUED_TTL_BLOCKS + 1_000);
        assert_eq!(filled.len(), gapped.end as usize + 1);
        // Left behind the gap, they go once their time is up, and only they do.
        pool.expire_queued(&chain, QUEUED_TTL_BLOCKS);
        assert_eq!(pool.len(), 1 + MAX_QUEUED_PER_SENDER);
        pool.expire_queued(&chain, QUEUED_TTL_BLOCKS + 1);
        assert_eq!(pool.len(), 1);
        assert!(pool.contains(&sha256(&ready)));
    }
}
