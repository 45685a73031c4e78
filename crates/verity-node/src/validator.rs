//! Wires one validator: simplex consensus, marshal (ordered finalized blocks with backfill),
//! block broadcast, transaction gossip and the executor. Generic over the runtime and the
//! network so the same code runs on real TCP p2p and in the deterministic simulator.

use std::num::NonZeroUsize;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use commonware_broadcast::buffered;
use commonware_codec::{Decode, Encode, RangeCfg};
use commonware_consensus::{
    marshal::{
        self, core::Actor as MarshalActor, resolver::p2p as marshal_resolver, standard::Inline,
        Start,
    },
    simplex::{
        self,
        config::{ForwardPolicy, SkipBudget, SkipPolicy},
        elector::RoundRobin,
    },
    types::{Epoch, FixedEpocher, ViewDelta},
};
use commonware_cryptography::{
    certificate::ConstantProvider, ed25519, Digested, Digestible, Sha256,
};
use commonware_p2p::{Blocker, Provider, Receiver, Recipients, Sender};
use commonware_parallel::Sequential;
use commonware_runtime::{
    buffer::paged::CacheRef, telemetry::metrics::MetricsExt as _, Clock, Handle, Metrics, Spawner,
    Storage, Supervisor,
};
use commonware_storage::archive::immutable;
use commonware_utils::{NZDuration, NZUsize, NZU16, NZU64};
use futures::{channel::mpsc, StreamExt};
use tracing::warn;

use crate::app::{self, App, Finalized, NodeState, Observer, Scheme};
use crate::block::Block;
use verity_types::MAX_TX_BYTES;

/// p2p channel ids.
pub mod channel {
    pub const VOTES: u64 = 0;
    pub const CERTIFICATES: u64 = 1;
    pub const RESOLVER: u64 = 2;
    pub const BACKFILL: u64 = 3;
    pub const BLOCKS: u64 = 4;
    pub const TXS: u64 = 5;
    pub const ALL: [u64; 6] = [VOTES, CERTIFICATES, RESOLVER, BACKFILL, BLOCKS, TXS];
}

/// Messages per second each peer may send on one channel. The p2p layer also sizes each
/// channel's inbound queue as peers × this burst, so it bounds memory as well as abuse: a few
/// views per second need tens of votes, and transactions travel in batches.
pub fn channel_quota() -> commonware_runtime::Quota {
    commonware_runtime::Quota::per_second(commonware_utils::NZU32!(1_024))
}

/// One finite epoch spans the chain: the committee is fixed at genesis for now.
const BLOCKS_PER_EPOCH: u64 = 1 << 40;
const MAILBOX: NonZeroUsize = NZUsize!(1024);
/// Largest transaction batch gossiped in one message.
const GOSSIP_BATCH: usize = 512;
/// A batch stops growing past this many bytes, well under the largest p2p message.
const GOSSIP_BATCH_BYTES: usize = 1024 * 1024;

/// The largest p2p message: a full block with its framing.
pub fn max_message_size() -> u32 {
    (<Block as commonware_consensus::BoundedBlock>::max_encode_size(&()) + 64 * 1024) as u32
}

pub struct ValidatorConfig {
    pub public_key: ed25519::PublicKey,
    pub scheme: Scheme,
    pub partition_prefix: String,
    pub genesis: Block,
    pub node: Arc<NodeState>,
    pub leader_timeout: Duration,
}

/// The six channel pairs a validator needs, already registered on its network.
pub struct Channels<S, R> {
    pub votes: (S, R),
    pub certificates: (S, R),
    pub resolver: (S, R),
    pub backfill: (S, R),
    pub blocks: (S, R),
    pub txs: (S, R),
}

/// Starts every actor of one validator; returns their handles (abort them to crash it).
pub async fn start<E, P, B, S, R>(
    context: E,
    config: ValidatorConfig,
    provider: P,
    blocker: B,
    channels: Channels<S, R>,
    gossip: mpsc::UnboundedReceiver<Bytes>,
) -> Vec<Handle<()>>
where
    E: Spawner
        + Clock
        + Metrics
        + Storage
        + Supervisor
        + rand_core::CryptoRng
        + Send
        + Sync
        + 'static,
    P: Provider<PublicKey = ed25519::PublicKey> + Clone,
    B: Blocker<PublicKey = ed25519::PublicKey> + Clone,
    S: Sender<PublicKey = ed25519::PublicKey>,
    R: Receiver<PublicKey = ed25519::PublicKey>,
{
    let prefix = config.partition_prefix.clone();
    let page_cache = CacheRef::new(NZU16!(4096), NZUsize!(1024));
    let marshal_config = marshal::Config {
        provider: ConstantProvider::new(config.scheme.clone()),
        epocher: FixedEpocher::new(NZU64!(BLOCKS_PER_EPOCH)),
        start: Start::Genesis(Digested::precomputed(
            config.genesis.clone(),
            config.genesis.digest(),
        )),
        mailbox_size: MAILBOX,
        view_retention: ViewDelta::new(10),
        max_repair: NZUsize!(16),
        max_pending_acks: NZUsize!(1),
        block_codec_config: (),
        partition_prefix: prefix.clone(),
        prunable_items_per_section: NZU64!(4096),
        replay_buffer: NZUsize!(1 << 20),
        key_write_buffer: NZUsize!(1 << 20),
        value_write_buffer: NZUsize!(1 << 20),
        page_cache: page_cache.clone(),
        strategy: Sequential,
    };

    let resolver = marshal_resolver::init(
        context.child("marshal_resolver"),
        marshal_resolver::Config {
            public_key: config.public_key.clone(),
            peer_provider: provider.clone(),
            blocker: blocker.clone(),
            mailbox_size: MAILBOX,
            fetch_timeout: NZDuration!(Duration::from_secs(2)),
            fetch_retry_delay: Duration::from_millis(100),
            priority_requests: false,
            priority_responses: false,
        },
        channels.backfill,
    );

    let (broadcast_engine, buffer) = buffered::Engine::new(
        context.child("broadcast"),
        buffered::Config {
            public_key: config.public_key.clone(),
            mailbox_size: MAILBOX,
            deque_size: 16,
            priority: false,
            codec_config: (),
            peer_provider: provider.clone(),
            strategy: Sequential,
        },
    );
    let mut handles = vec![broadcast_engine.start(channels.blocks)];

    let finalizations_by_height = immutable::Archive::init(
        context.child("finalizations_by_height"),
        archive_config(
            &prefix,
            "finalizations",
            &page_cache,
            // Threshold certificates are fixed-size: nothing to bound.
            (),
        ),
    )
    .await
    .expect("open the finalizations archive");
    let finalized_blocks = immutable::Archive::init(
        context.child("finalized_blocks"),
        archive_config(&prefix, "blocks", &page_cache, ()),
    )
    .await
    .expect("open the finalized blocks archive");

    let (marshal_actor, marshal_mailbox, _floor) = MarshalActor::init(
        context.child("marshal"),
        finalizations_by_height,
        finalized_blocks,
        marshal_config,
    )
    .await;
    let (finalized, updates) = Finalized::new(config.node.clone());
    handles.push(marshal_actor.start(finalized, buffer, resolver));
    let executor_node = config.node.clone();
    let executor_scheme = config.scheme.clone();
    handles.push(
        context
            .child("executor")
            .spawn(move |_| app::execute(executor_node, executor_scheme, updates)),
    );

    let wrapper = Inline::new(
        context.child("application"),
        App {
            node: config.node.clone(),
            scheme: config.scheme.clone(),
        },
        marshal_mailbox,
        FixedEpocher::new(NZU64!(BLOCKS_PER_EPOCH)),
    );
    let engine = simplex::Engine::new(
        context.child("consensus"),
        simplex::config::Config {
            scheme: config.scheme.clone(),
            elector: RoundRobin::<Sha256>::default(),
            blocker,
            automaton: wrapper.clone(),
            relay: wrapper.clone(),
            reporter: Observer {
                inner: wrapper,
                node: config.node.clone(),
                equivocations: context.counter(
                    "equivocations",
                    "conflicting votes from one validator for one view, as consensus reported them",
                ),
            },
            strategy: Sequential,
            partition: format!("{prefix}-consensus"),
            mailbox_size: MAILBOX,
            epoch: Epoch::zero(),
            floor: simplex::config::Floor::Genesis(config.genesis.digest()),
            replay_buffer: NZUsize!(1 << 20),
            write_buffer: NZUsize!(1 << 20),
            page_cache,
            leader_timeout: config.leader_timeout,
            certification_timeout: config.leader_timeout * 2,
            timeout_retry: config.leader_timeout,
            view_retention: ViewDelta::new(256),
            skip: SkipPolicy::Enabled {
                timeout: config.leader_timeout * 3,
                budget: SkipBudget::Participants,
            },
            fetch_timeout: NZDuration!(Duration::from_secs(1)),
            fetch_retry_delay: Duration::from_millis(100),
            forward: ForwardPolicy::Disabled,
            // Keep votes after their certificate so that an equivocation arriving late is still
            // caught and kept as evidence.
            track_historical_votes: true,
        },
    );
    handles.push(engine.start(channels.votes, channels.certificates, channels.resolver));

    let (tx_sender, tx_receiver) = channels.txs;
    let node = config.node.clone();
    handles.push(
        context
            .child("gossip_out")
            .spawn(move |_| gossip_out(tx_sender, gossip)),
    );
    handles.push(
        context
            .child("gossip_in")
            .spawn(move |_| gossip_in(node, tx_receiver)),
    );
    handles
}

fn archive_config<C>(
    prefix: &str,
    name: &str,
    page_cache: &CacheRef,
    codec_config: C,
) -> immutable::Config<C> {
    let p = |part: &str| format!("{prefix}-{name}-{part}");
    immutable::Config {
        metadata_partition: p("metadata"),
        freezer_table_partition: p("freezer-table"),
        freezer_table_initial_size: 1024,
        freezer_table_resize_frequency: 4,
        freezer_table_resize_chunk_size: 1024,
        freezer_key_partition: p("freezer-key"),
        freezer_key_page_cache: page_cache.clone(),
        freezer_value_partition: p("freezer-value"),
        freezer_value_target_size: 64 * 1024 * 1024,
        freezer_value_compression: None,
        ordinal_partition: p("ordinal"),
        items_per_section: NZU64!(4096),
        codec_config,
        replay_buffer: NZUsize!(1 << 20),
        freezer_key_write_buffer: NZUsize!(1 << 20),
        freezer_value_write_buffer: NZUsize!(1 << 20),
        ordinal_write_buffer: NZUsize!(1 << 20),
    }
}

/// Gossip message: a batch of raw transactions.
fn gossip_cfg() -> (RangeCfg<usize>, RangeCfg<usize>) {
    (
        RangeCfg::from(1..=GOSSIP_BATCH),
        RangeCfg::from(1..=MAX_TX_BYTES),
    )
}

/// Forwards transactions admitted through our API to every peer, in batches.
async fn gossip_out<S: Sender<PublicKey = ed25519::PublicKey>>(
    mut sender: S,
    mut outbound: mpsc::UnboundedReceiver<Bytes>,
) {
    while let Some(first) = outbound.next().await {
        let mut batch = vec![first];
        let mut bytes = batch[0].len();
        while batch.len() < GOSSIP_BATCH && bytes < GOSSIP_BATCH_BYTES {
            match outbound.try_recv() {
                Ok(tx) => {
                    bytes += tx.len();
                    batch.push(tx);
                }
                _ => break,
            }
        }
        sender.send(Recipients::All, batch.encode(), false);
    }
}

/// Admits transactions peers forward. A peer sending undecodable batches is ignored.
async fn gossip_in<R: Receiver<PublicKey = ed25519::PublicKey>>(
    node: Arc<NodeState>,
    mut receiver: R,
) {
    while let Ok((peer, message)) = receiver.recv().await {
        match Vec::<Bytes>::decode_cfg(message, &gossip_cfg()) {
            Ok(txs) => app::admit_gossip(&node, txs),
            Err(e) => warn!(?peer, error = %e, "undecodable transaction gossip"),
        }
    }
}
