//! The application consensus drives: building blocks from the mempool, verifying the blocks of
//! others, and executing finalized blocks on the state machine.

use std::collections::{BTreeMap, BTreeSet, HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use commonware_codec::Encode;
use commonware_consensus::{
    marshal::{ancestry::Ancestry, Update},
    simplex::{
        scheme::bls12381_threshold::vrf,
        types::{Activity, Attributable, Context},
    },
    types::{Round, View},
    Heightable, Reporter, Viewable,
};
use commonware_cryptography::{
    bls12381::primitives::variant::MinPk, ed25519, sha256::Digest, Digested, Digestible,
};
use commonware_runtime::{telemetry::metrics::Counter, Clock};
use commonware_utils::Acknowledgement;
use futures::{channel::mpsc, StreamExt};
use tracing::{debug, error, info, warn};
use verity_state::{BlockInput, BlockRecord, Chain, Store, Task};
use verity_types::{sha256, Hash};

use crate::block::{to_hash, Block, Committed, Seed};
use crate::mempool::{AdmitError, BlockLimits, Mempool, SenderCache};
use crate::proposal;

/// Most transactions a node keeps pending.
const MEMPOOL_CAPACITY: usize = 100_000;
/// Every this many blocks the mempool drops transactions left too long behind a nonce gap.
const EXPIRE_QUEUED_EVERY: u64 = 16;

/// Consensus signatures: BLS12-381 threshold shares with a per-round VRF seed.
pub type Scheme = vrf::Scheme<ed25519::PublicKey, MinPk>;

/// Most blocks between a block and the state root it commits to: a proposer that has executed
/// less waits, and a block committing to an older root is refused.
pub use crate::proposal::MAX_ROOT_LAG;
/// How long a proposer waits for its parent's seed, or a verifier for its own execution to reach
/// a block's committed height, before giving up on the view.
const WAIT_FOR_STATE: Duration = Duration::from_secs(3);
/// Views whose seeds are kept for proposing.
const SEEDS_KEPT: usize = 1_024;
/// Equivocation evidence kept in memory, newest last.
const EVIDENCE_KEPT: usize = 1_024;

/// How long a leader waits for transactions before proposing an empty block.
const EMPTY_BLOCK_WAIT: Duration = Duration::from_millis(400);

/// A broadcast as a stream; a subscriber that falls behind skips ahead.
fn updates<T: Clone + Send + 'static>(
    receiver: tokio::sync::broadcast::Receiver<T>,
) -> impl futures::Stream<Item = T> {
    use tokio::sync::broadcast::error::RecvError;
    futures::stream::unfold(receiver, |mut receiver| async move {
        loop {
            match receiver.recv().await {
                Ok(item) => return Some((item, receiver)),
                Err(RecvError::Lagged(_)) => continue,
                Err(RecvError::Closed) => return None,
            }
        }
    })
}

/// What a validator shares between consensus, the executor, gossip and the API.
pub struct NodeState {
    pub chain: Chain<Arc<dyn Store>>,
    pub mempool: Mutex<Mempool>,
    pub cache: SenderCache,
    /// Finalized blocks as they are executed, for server-sent events.
    pub events: tokio::sync::broadcast::Sender<Arc<BlockRecord>>,
    /// Tasks whose status changed in a finalized block.
    pub task_events: tokio::sync::broadcast::Sender<Arc<Task>>,
    /// Disputes that opened, moved or ended in a finalized block.
    pub dispute_events: tokio::sync::broadcast::Sender<Arc<verity_state::Dispute>>,
    /// Highest height consensus has finalized (execution may trail it briefly).
    pub finalized_tip: AtomicU64,
    /// Transactions admitted through the API, waiting to be gossiped to peers.
    pub outbound: mpsc::UnboundedSender<Bytes>,
    pub label: String,
    /// Seeds of recent views, from the certificates consensus reports.
    pub seeds: Mutex<BTreeMap<View, Seed>>,
    /// Set when execution stopped: on a storage error, or when this node's state diverged.
    pub halted: AtomicBool,
    /// Proposals this node refused to vote for.
    pub refused_proposals: AtomicU64,
    /// Equivocation evidence from consensus: logged and kept, not slashable (docs/protocol.md §8).
    pub evidence: Mutex<VecDeque<Equivocation>>,
    /// What execution did, for `/metrics`.
    pub metrics: crate::metrics::ExecutionMetrics,
}

/// A validator signed two conflicting messages for one view.
#[derive(Clone, Debug)]
pub struct Equivocation {
    /// `conflicting_notarize`, `conflicting_finalize` or `nullify_finalize`.
    pub kind: &'static str,
    pub view: u64,
    /// The signer's index in the committee.
    pub signer: u32,
    /// The evidence as consensus encodes it: both signed messages.
    pub encoded: Bytes,
}

impl NodeState {
    /// A node's shared state over an opened chain, and the queue its gossip task drains.
    pub fn new(
        chain: Chain<Arc<dyn Store>>,
        cache: SenderCache,
        label: String,
    ) -> (Arc<Self>, mpsc::UnboundedReceiver<Bytes>) {
        let (outbound, gossip) = mpsc::unbounded();
        let height = chain.height().unwrap_or(0);
        let node = Arc::new(Self {
            chain,
            mempool: Mutex::new(Mempool::new(MEMPOOL_CAPACITY)),
            cache,
            events: tokio::sync::broadcast::channel(1024).0,
            task_events: tokio::sync::broadcast::channel(16 * 1024).0,
            dispute_events: tokio::sync::broadcast::channel(1024).0,
            finalized_tip: AtomicU64::new(height),
            outbound,
            label,
            seeds: Mutex::new(BTreeMap::new()),
            halted: Default::default(),
            refused_proposals: AtomicU64::new(0),
            evidence: Mutex::new(VecDeque::new()),
            metrics: Default::default(),
        });
        (node, gossip)
    }

    /// Admits a transaction from a client and forwards it to peers.
    pub fn submit(&self, tx: Bytes) -> Result<verity_types::Hash, AdmitError> {
        let hash = self.mempool.lock().expect("mempool lock").admit(
            &self.chain,
            &self.cache,
            tx.clone(),
        )?;
        let _ = self.outbound.unbounded_send(tx);
        Ok(hash)
    }

    /// Finalized blocks as they execute; a subscriber that falls behind skips ahead.
    pub fn finalized_blocks(&self) -> impl futures::Stream<Item = Arc<BlockRecord>> {
        updates(self.events.subscribe())
    }

    /// Tasks whose status changed, as blocks execute; a subscriber that falls behind skips ahead.
    pub fn task_updates(&self) -> impl futures::Stream<Item = Arc<Task>> {
        updates(self.task_events.subscribe())
    }

    /// Disputes that opened, moved or ended, as blocks execute.
    pub fn dispute_updates(&self) -> impl futures::Stream<Item = Arc<verity_state::Dispute>> {
        updates(self.dispute_events.subscribe())
    }

    pub fn block_limits(&self) -> BlockLimits {
        let params = &self.chain.genesis().params;
        BlockLimits {
            txs: (params.max_block_txs as usize).min(crate::block::MAX_BLOCK_TXS),
            weight: params.max_block_weight,
        }
    }

    fn record_seed(&self, seed: Seed) {
        let mut seeds = self.seeds.lock().expect("seeds lock");
        seeds.insert(seed.view(), seed);
        while seeds.len() > SEEDS_KEPT {
            seeds.pop_first();
        }
    }

    fn seed(&self, view: View) -> Option<Seed> {
        self.seeds.lock().expect("seeds lock").get(&view).cloned()
    }

    /// The state root this node computed at `height`, if it has executed that far.
    pub fn root_at(&self, height: u64) -> Result<Option<Hash>, verity_state::StateError> {
        self.chain.root_at(height)
    }

    /// What a block proposed now commits to: the newest executed root.
    fn committed(&self) -> Option<Committed> {
        let height = self.chain.height().ok()?;
        Some(Committed {
            height,
            root: self.root_at(height).ok()??,
        })
    }

    fn keep_evidence(&self, evidence: Equivocation) {
        let mut kept = self.evidence.lock().expect("evidence lock");
        kept.push_back(evidence);
        while kept.len() > EVIDENCE_KEPT {
            kept.pop_front();
        }
    }
}

fn unix_ms(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Builds and verifies blocks.
#[derive(Clone)]
pub struct App {
    pub node: Arc<NodeState>,
    /// Checks the threshold-VRF seeds that blocks carry.
    pub scheme: Scheme,
}

impl App {
    /// Polls `probe` until it answers, for at most [`WAIT_FOR_STATE`].
    async fn wait_for<E: Clock, T>(runtime: &E, probe: impl Fn() -> Option<T>) -> Option<T> {
        let deadline = runtime.current() + WAIT_FOR_STATE;
        loop {
            if let Some(found) = probe() {
                return Some(found);
            }
            if runtime.current() >= deadline {
                return None;
            }
            runtime.sleep(Duration::from_millis(10)).await;
        }
    }

    /// The seed of `view`, waiting for consensus to report its certificate.
    async fn wait_for_seed<E: Clock>(&self, runtime: &E, view: View) -> Option<Seed> {
        Self::wait_for(runtime, || self.node.seed(view)).await
    }

    /// Waits until this node has executed `height`.
    async fn wait_for_height<E: Clock>(&self, runtime: &E, height: u64) -> bool {
        let executed = || {
            self.node
                .chain
                .height()
                .is_ok_and(|h| h >= height)
                .then_some(())
        };
        Self::wait_for(runtime, executed).await.is_some()
    }

    /// The block carries the seed of its parent's view (none only on genesis's child).
    fn check_seed(&self, context: &Context<Digest, ed25519::PublicKey>, block: &Block) -> bool {
        let (parent_view, _) = context.parent;
        match &block.parent_seed {
            None => parent_view == View::zero() && block.height == 1,
            Some(seed) => seed_is_valid(
                seed,
                Round::new(context.round.epoch(), parent_view),
                &self.scheme,
            ),
        }
    }

    /// The block's transactions: each decodes, is signed, is for this chain, and pays for its
    /// weight, which together stay within the block's limits.
    fn check_txs(&self, block: &Block) -> bool {
        let limits = self.node.block_limits();
        if block.txs.len() > limits.txs {
            return false;
        }
        let mut weight = 0u64;
        for tx in &block.txs {
            let Ok((signed, _)) = self.node.cache.recover(tx) else {
                return false;
            };
            if self.node.chain.check_static(&signed, tx.len()).is_err() {
                return false;
            }
            weight = weight.saturating_add(verity_types::weight::of(&signed.body.action, tx.len()));
        }
        weight <= limits.weight
    }

    /// The committed root must be recent, never older than the parent's, and equal to ours.
    async fn check_committed<E: Clock>(&self, runtime: &E, block: &Block, parent: &Block) -> bool {
        if let Err(refusal) = proposal::check_commitment(block, parent) {
            warn!(node = %self.node.label, height = block.height, %refusal, "refusing a proposal");
            return false;
        }
        let committed = block.committed;
        if !self.wait_for_height(runtime, committed.height).await {
            debug!(node = %self.node.label, height = committed.height, "not executed far enough to check a proposal's state root");
            return false;
        }
        let ours = match self.node.root_at(committed.height) {
            Ok(ours) => ours,
            Err(e) => {
                error!(node = %self.node.label, error = %e, "cannot read our own state root");
                return false;
            }
        };
        match proposal::check_root(&committed, ours) {
            Ok(()) => true,
            Err(refusal) => {
                warn!(node = %self.node.label, height = block.height, %refusal, "a proposal commits to a state root we did not compute; refusing it");
                false
            }
        }
    }
}

impl<E> commonware_consensus::Application<E> for App
where
    E: Clock + Send + Sync + 'static,
{
    type SigningScheme = Scheme;
    type Context = Context<Digest, ed25519::PublicKey>;
    type Block = Block;
    type Input = ();

    async fn propose(
        &mut self,
        (runtime, context): (E, Self::Context),
        ancestry: impl Ancestry<Self::Block>,
        _input: (),
    ) -> Option<Digested<Self::Block>> {
        let parent = ancestry.peek()?.inner().clone();
        let (parent_view, _) = context.parent;
        let parent_seed = if parent.height == 0 {
            None
        } else {
            Some(self.wait_for_seed(&runtime, parent_view).await?)
        };
        let height = parent.height + 1;
        let mut committed = self.node.committed()?;
        if height - committed.height > MAX_ROOT_LAG {
            if !self.wait_for_height(&runtime, height - MAX_ROOT_LAG).await {
                return None;
            }
            committed = self.node.committed()?;
        }
        // Never behind the parent's commitment (it is executed, being finalized before it).
        if committed.height < parent.committed.height {
            committed = parent.committed;
        }
        // Transactions in notarized ancestors that are not executed yet must not be repeated.
        let executed = self.node.chain.height().ok()?;
        let mut in_ancestors = HashSet::new();
        let mut walk = ancestry.clone();
        while let Some(block) = walk.next().await {
            let block = block.inner();
            if block.height <= executed {
                break;
            }
            in_ancestors.extend(block.txs.iter().map(|tx| sha256(tx)));
        }
        let deadline = runtime.current() + EMPTY_BLOCK_WAIT;
        let limits = self.node.block_limits();
        let txs = loop {
            let txs = self.node.mempool.lock().expect("mempool lock").select(
                &self.node.chain,
                &in_ancestors,
                limits,
            );
            if !txs.is_empty() || runtime.current() >= deadline {
                break txs;
            }
            runtime.sleep(Duration::from_millis(20)).await;
        };
        let timestamp_ms = unix_ms(runtime.current()).max(parent.timestamp_ms + 1);
        let block = Block::new(
            parent.digest(),
            height,
            timestamp_ms,
            parent_seed,
            identity_bytes(&context.leader),
            committed,
            txs,
        );
        let digest = block.digest();
        Some(Digested::precomputed(block, digest))
    }

    async fn verify(
        &mut self,
        (runtime, context): (E, Self::Context),
        ancestry: impl Ancestry<Self::Block>,
    ) -> bool {
        let mut walk = ancestry.clone();
        let (Some(block), Some(parent)) = (walk.next().await, walk.next().await) else {
            return false;
        };
        let (block, parent) = (block.inner(), parent.inner());
        let wait_ms = match proposal::check_timestamp(block, parent, unix_ms(runtime.current())) {
            Ok(wait_ms) => wait_ms,
            Err(refusal) => {
                self.node.refused_proposals.fetch_add(1, Ordering::Relaxed);
                warn!(node = %self.node.label, height = block.height, %refusal, "refusing a proposal");
                return false;
            }
        };
        if block.proposer != identity_bytes(&context.leader) {
            self.node.refused_proposals.fetch_add(1, Ordering::Relaxed);
            warn!(node = %self.node.label, height = block.height, "refusing a proposal that names another proposer than its view's leader");
            return false;
        }
        if !self.check_seed(&context, block) || !self.check_txs(block) {
            self.node.refused_proposals.fetch_add(1, Ordering::Relaxed);
            warn!(node = %self.node.label, height = block.height, "refusing a proposal with a wrong seed or transactions that cannot be charged");
            return false;
        }
        // A timestamp a little ahead of our clock is skew; wait it out rather than reject.
        if wait_ms > 0 {
            runtime.sleep(Duration::from_millis(wait_ms)).await;
        }
        let committed = self.check_committed(&runtime, block, parent).await;
        if !committed {
            self.node.refused_proposals.fetch_add(1, Ordering::Relaxed);
        }
        committed
    }
}

/// The raw ed25519 public key a block names as its proposer.
pub fn identity_bytes(key: &ed25519::PublicKey) -> [u8; 32] {
    key.as_ref()
        .try_into()
        .expect("an ed25519 public key is 32 bytes")
}

/// Whether `seed` is the committee's threshold-VRF signature for `round`: another view's seed,
/// or one signed by anyone else, is refused.
pub fn seed_is_valid(seed: &Seed, round: Round, scheme: &Scheme) -> bool {
    seed.round == round && seed.verify(scheme)
}

/// Wraps the reporter consensus drives: records every view's seed from its certificates, and
/// logs, counts and keeps equivocation evidence before passing everything on.
#[derive(Clone)]
pub struct Observer<R> {
    pub inner: R,
    pub node: Arc<NodeState>,
    pub equivocations: Counter,
}

type ConsensusActivity = Activity<Scheme, Digest>;

impl<R: Reporter<Activity = ConsensusActivity>> Reporter for Observer<R> {
    type Activity = ConsensusActivity;

    fn report(&mut self, activity: Self::Activity) -> commonware_actor::Feedback {
        let seed_of = |round: Round, certificate: &vrf::Certificate<MinPk>| {
            certificate
                .get()
                .map(|signature| Seed::new(round, signature.seed_signature))
        };
        let evidence = match &activity {
            Activity::Notarization(n) | Activity::Certification(n) => {
                if let Some(seed) = seed_of(n.proposal.round, &n.certificate) {
                    self.node.record_seed(seed);
                }
                None
            }
            Activity::Finalization(f) => {
                if let Some(seed) = seed_of(f.proposal.round, &f.certificate) {
                    self.node.record_seed(seed);
                }
                None
            }
            Activity::ConflictingNotarize(e) => {
                Some(("conflicting_notarize", e.view(), e.signer(), e.encode()))
            }
            Activity::ConflictingFinalize(e) => {
                Some(("conflicting_finalize", e.view(), e.signer(), e.encode()))
            }
            Activity::NullifyFinalize(e) => {
                Some(("nullify_finalize", e.view(), e.signer(), e.encode()))
            }
            _ => None,
        };
        if let Some((kind, view, signer, encoded)) = evidence {
            warn!(node = %self.node.label, kind, view = view.get(), signer = signer.get(), "validator equivocated; evidence kept");
            self.equivocations.inc();
            self.node.keep_evidence(Equivocation {
                kind,
                view: view.get(),
                signer: signer.get(),
                encoded,
            });
        }
        self.inner.report(activity)
    }
}

/// Receives finalized blocks from marshal and hands them to the executor task in order.
#[derive(Clone)]
pub struct Finalized {
    sender: mpsc::UnboundedSender<Update<Block>>,
    node: Arc<NodeState>,
}

impl Finalized {
    pub fn new(node: Arc<NodeState>) -> (Self, mpsc::UnboundedReceiver<Update<Block>>) {
        let (sender, receiver) = mpsc::unbounded();
        (Self { sender, node }, receiver)
    }
}

impl Reporter for Finalized {
    type Activity = Update<Block>;

    fn report(&mut self, activity: Self::Activity) -> commonware_actor::Feedback {
        if let Update::Tip(_, height, _) = &activity {
            self.node
                .finalized_tip
                .fetch_max(height.get(), Ordering::Relaxed);
        }
        match self.sender.unbounded_send(activity) {
            Ok(()) => commonware_actor::Feedback::Ok,
            Err(_) => commonware_actor::Feedback::Closed,
        }
    }
}

/// Applies finalized blocks to the state machine; acknowledges each only once it is committed,
/// so a crash redelivers it (and the state machine skips what it already holds).
pub async fn execute(
    node: Arc<NodeState>,
    scheme: Scheme,
    mut updates: mpsc::UnboundedReceiver<Update<Block>>,
) {
    while let Some(update) = updates.next().await {
        let Update::Block(digested, ack) = update else {
            continue;
        };
        let block = digested.inner();
        node.finalized_tip
            .fetch_max(block.height().get(), Ordering::Relaxed);
        if block.height == 0 {
            ack.acknowledge();
            continue;
        }
        // A block reached through backfill was never verified here: its seed, which the draws
        // below depend on, is checked from the block as stored. Its round was checked by the
        // quorum that finalized it.
        if let Some(seed) = &block.parent_seed {
            if !seed.verify(&scheme) {
                error!(node = %node.label, height = block.height, "a finalized block carries a seed the committee did not sign; halting execution");
                node.halted.store(true, Ordering::Relaxed);
                return;
            }
        }
        // Finalized by a quorum that checked it against its own execution: a different root
        // here means this node's execution diverged. Going on would fork it silently.
        let committed = block.committed;
        match node.root_at(committed.height) {
            Ok(Some(ours)) if ours == committed.root => {}
            Err(e) => {
                error!(node = %node.label, height = block.height, error = %e, "cannot read our own state root; halting execution");
                node.halted.store(true, Ordering::Relaxed);
                return;
            }
            Ok(ours) => {
                error!(node = %node.label, height = committed.height, finalized = %committed.root, ours = ?ours, "this node's state diverged from the finalized chain's; halting execution. Its state must be rebuilt from a healthy validator's");
                node.halted.store(true, Ordering::Relaxed);
                return;
            }
        }
        let txs: Vec<Vec<u8>> = block.txs.iter().map(|tx| tx.to_vec()).collect();
        let hash = to_hash(&digested.digest());
        let input = BlockInput {
            height: block.height,
            hash,
            seed: block.draw_seed(),
            proposer: Some(verity_types::ValidatorIdentity(block.proposer)),
            parent: to_hash(&block.parent),
            timestamp_ms: block.timestamp_ms,
            txs: &txs,
        };
        match node
            .chain
            .apply_block(&input, |bytes| node.cache.recover(bytes))
        {
            Ok(Some(applied)) => {
                node.metrics.record(&applied);
                let verity_state::Applied {
                    record,
                    tasks,
                    disputes,
                    failures,
                    dropped,
                } = applied;
                for (tx, failure) in &failures {
                    debug!(node = %node.label, tx = %tx, error = %failure, "transaction failed");
                }
                for (tx, why) in &dropped {
                    debug!(node = %node.label, tx = %tx, error = %why, "transaction dropped without a receipt");
                }
                let senders: BTreeSet<_> = block
                    .txs
                    .iter()
                    .filter_map(|tx| node.cache.recover(tx).ok().map(|(_, sender)| sender))
                    .collect();
                {
                    let mut pool = node.mempool.lock().expect("mempool lock");
                    pool.prune(&node.chain, &senders);
                    if record.height % EXPIRE_QUEUED_EVERY == 0 {
                        pool.expire_queued(&node.chain, record.height);
                    }
                }
                if record.height % 100 == 0 || !record.tx_hashes.is_empty() {
                    info!(
                        node = %node.label,
                        height = record.height,
                        txs = record.tx_hashes.len(),
                        root = %record.state_root,
                        "finalized"
                    );
                }
                let _ = node.events.send(Arc::new(record));
                for task in tasks {
                    let _ = node.task_events.send(Arc::new(task));
                }
                for dispute in disputes {
                    let _ = node.dispute_events.send(Arc::new(dispute));
                }
            }
            Ok(None) => {}
            Err(e) => {
                // Not acknowledging stops marshal: better to halt than to diverge.
                error!(node = %node.label, height = block.height, error = %e, "cannot apply finalized block; halting execution");
                node.halted.store(true, Ordering::Relaxed);
                return;
            }
        }
        ack.acknowledge();
    }
}

/// Keeps the mempool import of gossip separate from consensus: admits what peers forward.
pub fn admit_gossip(node: &NodeState, txs: Vec<Bytes>) {
    let mut pool = node.mempool.lock().expect("mempool lock");
    for tx in txs {
        let _ = pool.admit(&node.chain, &node.cache, tx);
    }
}
