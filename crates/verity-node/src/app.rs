//! The application consensus drives: building blocks from the mempool, verifying the blocks of
//! others, and executing finalized blocks on the state machine.

use std::collections::{BTreeSet, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use commonware_consensus::{
    marshal::{ancestry::Ancestry, Update},
    simplex::{scheme::bls12381_threshold::vrf, types::Context},
    Heightable, Reporter,
};
use commonware_cryptography::{
    bls12381::primitives::variant::MinPk, ed25519, sha256::Digest, Digested, Digestible,
};
use commonware_runtime::Clock;
use commonware_utils::Acknowledgement;
use futures::{channel::mpsc, StreamExt};
use tracing::{error, info};
use verity_state::{BlockInput, BlockRecord, Chain, Store, Task};
use verity_types::{sha256, Hash};

/// Domain tag of the block seed.
const SEED_DOMAIN: &[u8] = b"verity/seed/v1";

/// The seed worker assignment draws from: SHA-256(domain ‖ block digest).
pub fn block_seed(block: &Hash) -> Hash {
    sha256(&[SEED_DOMAIN, &block.0].concat())
}

use crate::block::{to_hash, Block};
use crate::mempool::{AdmitError, Mempool, SenderCache};

/// Most transactions a node keeps pending.
const MEMPOOL_CAPACITY: usize = 100_000;

/// Consensus signatures: BLS12-381 threshold shares with a per-round VRF seed.
pub type Scheme = vrf::Scheme<ed25519::PublicKey, MinPk>;

/// How long a leader waits for transactions before proposing an empty block.
const EMPTY_BLOCK_WAIT: Duration = Duration::from_millis(400);
/// How far ahead of our clock a proposer's timestamp may be before we wait for it.
const MAX_CLOCK_SKEW: Duration = Duration::from_millis(500);

/// What a validator shares between consensus, the executor, gossip and the API.
pub struct NodeState {
    pub chain: Chain<Arc<dyn Store>>,
    pub mempool: Mutex<Mempool>,
    pub cache: SenderCache,
    /// Finalized blocks as they are executed, for server-sent events.
    pub events: tokio::sync::broadcast::Sender<Arc<BlockRecord>>,
    /// Tasks whose status changed in a finalized block.
    pub task_events: tokio::sync::broadcast::Sender<Arc<Task>>,
    /// Highest height consensus has finalized (execution may trail it briefly).
    pub finalized_tip: AtomicU64,
    /// Transactions admitted through the API, waiting to be gossiped to peers.
    pub outbound: mpsc::UnboundedSender<Bytes>,
    pub label: String,
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
            finalized_tip: AtomicU64::new(height),
            outbound,
            label,
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
        use tokio::sync::broadcast::error::RecvError;
        futures::stream::unfold(self.events.subscribe(), |mut receiver| async move {
            loop {
                match receiver.recv().await {
                    Ok(item) => return Some((item, receiver)),
                    Err(RecvError::Lagged(_)) => continue,
                    Err(RecvError::Closed) => return None,
                }
            }
        })
    }

    /// Tasks whose status changed, as blocks execute; a subscriber that falls behind skips ahead.
    pub fn task_updates(&self) -> impl futures::Stream<Item = Arc<Task>> {
        use tokio::sync::broadcast::error::RecvError;
        futures::stream::unfold(self.task_events.subscribe(), |mut receiver| async move {
            loop {
                match receiver.recv().await {
                    Ok(item) => return Some((item, receiver)),
                    Err(RecvError::Lagged(_)) => continue,
                    Err(RecvError::Closed) => return None,
                }
            }
        })
    }

    pub fn max_block_txs(&self) -> usize {
        (self.chain.genesis().params.max_block_txs as usize).min(crate::block::MAX_BLOCK_TXS)
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
        (runtime, _context): (E, Self::Context),
        ancestry: impl Ancestry<Self::Block>,
        _input: (),
    ) -> Option<Digested<Self::Block>> {
        let parent = ancestry.peek()?.inner().clone();
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
        let limit = self.node.max_block_txs();
        let txs = loop {
            let txs = self.node.mempool.lock().expect("mempool lock").select(
                &self.node.chain,
                &in_ancestors,
                limit,
            );
            if !txs.is_empty() || runtime.current() >= deadline {
                break txs;
            }
            runtime.sleep(Duration::from_millis(20)).await;
        };
        let timestamp_ms = unix_ms(runtime.current()).max(parent.timestamp_ms + 1);
        let block = Block::new(parent.digest(), parent.height + 1, timestamp_ms, txs);
        let digest = block.digest();
        Some(Digested::precomputed(block, digest))
    }

    async fn verify(
        &mut self,
        (runtime, _context): (E, Self::Context),
        ancestry: impl Ancestry<Self::Block>,
    ) -> bool {
        let mut walk = ancestry.clone();
        let (Some(block), Some(parent)) = (walk.next().await, walk.next().await) else {
            return false;
        };
        let (block, parent) = (block.inner(), parent.inner());
        if block.timestamp_ms <= parent.timestamp_ms {
            return false;
        }
        if block.txs.len() > self.node.max_block_txs() {
            return false;
        }
        // A timestamp a little ahead of our clock is skew; wait it out rather than reject.
        let ahead = UNIX_EPOCH + Duration::from_millis(block.timestamp_ms);
        if ahead > runtime.current() + MAX_CLOCK_SKEW {
            runtime.sleep_until(ahead - MAX_CLOCK_SKEW).await;
        }
        // Every transaction must decode and carry a valid signature; whether it then applies is
        // the state machine's decision, recorded in its receipt.
        block
            .txs
            .iter()
            .all(|tx| self.node.cache.recover(tx).is_ok())
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
pub async fn execute(node: Arc<NodeState>, mut updates: mpsc::UnboundedReceiver<Update<Block>>) {
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
        let txs: Vec<Vec<u8>> = block.txs.iter().map(|tx| tx.to_vec()).collect();
        let hash = to_hash(&digested.digest());
        let input = BlockInput {
            height: block.height,
            hash,
            seed: block_seed(&hash),
            parent: to_hash(&block.parent),
            timestamp_ms: block.timestamp_ms,
            txs: &txs,
        };
        match node
            .chain
            .apply_block(&input, |bytes| node.cache.recover(bytes))
        {
            Ok(Some(verity_state::Applied { record, tasks })) => {
                let senders: BTreeSet<_> = block
                    .txs
                    .iter()
                    .filter_map(|tx| node.cache.recover(tx).ok().map(|(_, sender)| sender))
                    .collect();
                node.mempool
                    .lock()
                    .expect("mempool lock")
                    .prune(&node.chain, &senders);
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
            }
            Ok(None) => {}
            Err(e) => {
                // Not acknowledging stops marshal: better to halt than to diverge.
                error!(node = %node.label, height = block.height, error = %e, "cannot apply finalized block; halting execution");
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
