//! Deterministic simulation: 4 validators on commonware's simulated network with lossy, jittery
//! links. The honest validators must finalize the same blocks with the same state roots and
//! execute every valid transfer, whatever the others do:
//! - one crashes early;
//! - one equivocates (two conflicting votes per view) while another proposes blocks carrying
//!   transactions no honest validator accepts;
//! - one's state diverges from the others': it refuses their blocks and halts, they go on.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use commonware_codec::{DecodeExt, Encode};
use commonware_consensus::{
    simplex::types::{Finalize, Notarize, Proposal, Vote},
    types::Round,
};
use commonware_cryptography::{ed25519, sha256::Digest, Signer as _};
use commonware_p2p::{
    simulated::{self, Link, Network},
    Recipients,
};
use commonware_runtime::{deterministic, Clock, Metrics as _, Runner, Spawner as _, Supervisor};
use commonware_utils::{probability, NZUsize};
use verity_node::{
    app::{identity_bytes, seed_is_valid, NodeState, Scheme},
    block::{Block, Seed},
    committee,
    mempool::SenderCache,
    validator::{self, channel, Channels, ValidatorConfig},
};
use verity_state::{Chain, Genesis, GenesisAccount, MemStore, Params, Store};
use verity_types::{AccountKey, Action, Address, Hash, SignedTx, TxBody};

const CHAIN: &str = "verity-sim";
const FEE: u128 = 1_000;

/// Epochs of the simulated chains: short, so that a crashed member is judged within a test.
const EPOCH_BLOCKS: u64 = 20;

/// The account that bonds validator `i`.
fn validator_account(i: usize) -> Address {
    Address([100 + i as u8; 20])
}

/// A chain whose genesis bonds the committee `committee` (in its order) and funds `funded`.
fn genesis(funded: &[Address], committee: &[ed25519::PublicKey]) -> Genesis {
    Genesis {
        chain_id: CHAIN.into(),
        genesis_time_ms: 0,
        params: Params {
            min_fee: 1,
            fee_collector: Address([0xfe; 20]),
            max_block_txs: 1000,
            fee_per_weight: 1,
            max_block_weight: 2_000_000,
            governance: None,
            tasks: Default::default(),
            data: Default::default(),
            validators: verity_state::ValidatorParams {
                epoch_blocks: EPOCH_BLOCKS,
                min_validator_stake: 1,
                ..Default::default()
            },
        },
        accounts: funded
            .iter()
            .map(|a| GenesisAccount {
                address: *a,
                balance: 1_000_000,
            })
            .collect(),
        attestation_policy: None,
        validators: committee
            .iter()
            .enumerate()
            .map(|(i, key)| verity_state::GenesisValidator {
                account: validator_account(i),
                identity: verity_types::ValidatorIdentity(identity_bytes(key)),
                p2p: format!("10.0.0.{i}:30300"),
                stake: 1_000 * (i as u128 + 1),
            })
            .collect(),
    }
}

/// What a simulated validator does.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Role {
    Honest,
    /// Runs honestly, then crashes after 3 s.
    Crashes,
    /// Runs no engine: answers every vote it sees with two conflicting ones.
    Equivocates,
    /// Its mempool admits transactions that pay no fee, so its proposals carry them.
    ProposesUnpaid,
    /// Its genesis state differs from everyone else's.
    Diverged,
}

struct Sim {
    nodes: Vec<Arc<NodeState>>,
    /// Each validator's signing scheme, in committee order.
    schemes: Vec<Scheme>,
    /// Their identities, in the same order.
    public: Vec<ed25519::PublicKey>,
    user: AccountKey,
    /// Funded too, but sends only transactions that pay no fee.
    stranger: AccountKey,
}

async fn start(context: &mut deterministic::Context, roles: [Role; 4]) -> Sim {
    let (keys, sharing, shares) = committee::deal_committee(context, 4).unwrap();
    let public: Vec<ed25519::PublicKey> = keys.iter().map(|k| k.public_key()).collect();
    let (network, oracle) = Network::new_with_peers(
        context.child("network"),
        simulated::Config {
            max_size: validator::max_message_size(),
            max_peers_per_set: NZUsize!(4),
            disconnect_on_block: true,
            tracked_peer_sets: NZUsize!(1),
        },
        public.clone(),
    )
    .await;
    network.start();
    let link = Link {
        latency: Duration::from_millis(40),
        jitter: Duration::from_millis(30),
        success_rate: probability!(0.85),
    };
    for a in &public {
        for b in &public {
            if a != b {
                oracle
                    .add_link(a.clone(), b.clone(), link.clone())
                    .await
                    .unwrap();
            }
        }
    }

    let user = AccountKey::from_bytes(&[7u8; 32]).unwrap();
    let stranger = AccountKey::from_bytes(&[9u8; 32]).unwrap();
    let genesis = genesis(&[user.address(), stranger.address()], &public);
    let genesis_block = Block::genesis(&genesis.hash(), genesis.genesis_time_ms);
    let quota = validator::channel_quota();
    let cache = SenderCache::default();
    let mut nodes = Vec::new();
    let mut schemes = Vec::new();
    let mut crashed = Vec::new();
    for (i, key) in public.iter().enumerate() {
        let role = roles[i];
        let mut own = genesis.clone();
        match role {
            Role::ProposesUnpaid => {
                own.params.min_fee = 0;
                own.params.fee_per_weight = 0;
            }
            Role::Diverged => own.accounts[0].balance += 1,
            _ => {}
        }
        let store: Arc<dyn Store> = Arc::new(MemStore::default());
        let chain = Chain::open(store, own).unwrap();
        let (node, gossip) = NodeState::new(chain, cache.clone(), format!("v{i}"));
        let control = oracle.control(key.clone());
        let mut pairs = Vec::new();
        for c in channel::ALL {
            pairs.push(control.register(c, quota).await.unwrap());
        }
        let mut pairs = pairs.into_iter();
        let mut next = || pairs.next().unwrap();
        let channels = Channels {
            votes: next(),
            certificates: next(),
            resolver: next(),
            backfill: next(),
            blocks: next(),
            txs: next(),
        };
        let scheme = committee::signer(CHAIN, &public, sharing.clone(), shares[i].clone()).unwrap();
        schemes.push(scheme.clone());
        if role == Role::Equivocates {
            context
                .child("equivocator")
                .spawn(move |_| equivocate(scheme, channels.votes));
            nodes.push(node);
            continue;
        }
        let handles = validator::start(
            context.child("validator").with_attribute("index", i),
            ValidatorConfig {
                public_key: key.clone(),
                scheme,
                partition_prefix: format!("v{i}"),
                genesis: genesis_block.clone(),
                node: node.clone(),
                leader_timeout: Duration::from_secs(1),
            },
            oracle.manager(),
            control.clone(),
            channels,
            gossip,
        )
        .await;
        if role == Role::Crashes {
            crashed = handles;
        }
        nodes.push(node);
    }
    if !crashed.is_empty() {
        context.sleep(Duration::from_secs(3)).await;
        for handle in crashed {
            handle.abort();
        }
    }
    Sim {
        nodes,
        schemes,
        public,
        user,
        stranger,
    }
}

/// A Byzantine validator: for every notarize or finalize it receives, it signs one for the
/// same round over another payload, and one over the payload it saw.
async fn equivocate<S, R>(scheme: Scheme, (mut sender, mut receiver): (S, R))
where
    S: commonware_p2p::Sender<PublicKey = ed25519::PublicKey>,
    R: commonware_p2p::Receiver<PublicKey = ed25519::PublicKey>,
{
    let mut forged = 0u64;
    while let Ok((_, message)) = receiver.recv().await {
        let Ok(vote) = Vote::<Scheme, Digest>::decode(message) else {
            continue;
        };
        forged += 1;
        let other = Digest::from(verity_types::sha256(&forged.to_le_bytes()).0);
        let conflicting = |p: &Proposal<Digest>| Proposal::new(p.round, p.parent, other);
        let votes = match vote {
            Vote::Notarize(n) => [
                Notarize::sign(&scheme, conflicting(&n.proposal)).map(Vote::Notarize),
                Notarize::sign(&scheme, n.proposal).map(Vote::Notarize),
            ],
            Vote::Finalize(f) => [
                Finalize::sign(&scheme, conflicting(&f.proposal)).map(Vote::Finalize),
                Finalize::sign(&scheme, f.proposal).map(Vote::Finalize),
            ],
            _ => continue,
        };
        for vote in votes.into_iter().flatten() {
            let _ = sender.send(Recipients::All, vote.encode(), true);
        }
    }
}

fn transfer(user: &AccountKey, nonce: u64, to: Address, fee: u128) -> SignedTx {
    TxBody {
        chain_id: CHAIN.into(),
        nonce,
        fee,
        action: Action::Transfer { to, amount: 100 },
    }
    .sign(user)
}

/// Sends 20 transfers through `entry` and waits until every node in `honest` has executed them
/// and reached `target`; then checks that they hold identical blocks and roots.
async fn transfers_finalize_identically(
    context: &deterministic::Context,
    sim: &Sim,
    entry: usize,
    honest: &[usize],
    target: u64,
) {
    let recipients: Vec<Address> = (1..=20u8).map(|i| Address([i; 20])).collect();
    for (nonce, to) in recipients.iter().enumerate() {
        let tx = transfer(&sim.user, nonce as u64, *to, FEE);
        sim.nodes[entry].submit(Bytes::from(tx.encode())).unwrap();
    }
    let nodes: Vec<&Arc<NodeState>> = honest.iter().map(|i| &sim.nodes[*i]).collect();
    loop {
        let done = nodes.iter().all(|n| {
            n.chain.height().unwrap() >= target
                && recipients
                    .iter()
                    .all(|r| n.chain.account(r).unwrap().balance == 100)
        });
        if done {
            break;
        }
        context.sleep(Duration::from_millis(200)).await;
    }
    for height in 1..=target {
        let records: Vec<_> = nodes
            .iter()
            .map(|n| n.chain.block(height).unwrap().expect("block executed"))
            .collect();
        assert!(
            records.windows(2).all(|w| w[0] == w[1]),
            "validators disagree at height {height}"
        );
    }
    let user_account = nodes[0].chain.account(&sim.user.address()).unwrap();
    assert_eq!(user_account.nonce, 20);
    assert_eq!(user_account.balance, 1_000_000 - 20 * (100 + FEE));
}

#[test]
fn honest_validators_agree_despite_a_crash_and_lossy_links() {
    let runner = deterministic::Runner::timed(Duration::from_secs(600));
    runner.start(|mut context| async move {
        let roles = [Role::Honest, Role::Honest, Role::Honest, Role::Crashes];
        let sim = start(&mut context, roles).await;
        transfers_finalize_identically(&context, &sim, 0, &[0, 1, 2], 30).await;

        // Every executed block drew from the seed its parent's certificate carries, the same on
        // every validator. A proposer cannot substitute another view's seed, or its own.
        let block = sim.nodes[0].chain.block(10).unwrap().unwrap();
        for node in &sim.nodes[1..3] {
            assert_eq!(node.chain.block(10).unwrap().unwrap(), block);
        }
        let seeds = sim.nodes[0].seeds.lock().unwrap().clone();
        let (view, seed) = seeds.iter().next_back().unwrap();
        let scheme = &sim.schemes[0];
        let round = seed.round;
        assert_eq!(round.view(), *view);
        assert!(seed_is_valid(seed, round, scheme));
        let later = Round::new(round.epoch(), round.view().next());
        assert!(!seed_is_valid(seed, later, scheme), "another view's seed");
        let (_, view_before) = seeds.iter().rev().nth(1).unwrap();
        let stale = Seed::new(round, view_before.signature);
        assert!(
            !seed_is_valid(&stale, round, scheme),
            "an older seed relabelled"
        );
        let (others, sharing, shares) = committee::deal_committee(&mut context, 4).unwrap();
        let others: Vec<ed25519::PublicKey> = others.iter().map(|k| k.public_key()).collect();
        let outsider = committee::signer(CHAIN, &others, sharing, shares[0].clone()).unwrap();
        assert!(
            !seed_is_valid(seed, round, &outsider),
            "another committee's seed"
        );

        // Every block names its view's leader, so the chain counts who proposed: the crashed
        // member proposes nothing in the epochs after its crash and is jailed and unpaid; the
        // others are paid the fees, pro rata to stake, identically on every honest node.
        let judged = 3 * EPOCH_BLOCKS + 1;
        while [0, 1, 2]
            .iter()
            .any(|i| sim.nodes[*i].chain.height().unwrap() < judged)
        {
            context.sleep(Duration::from_millis(200)).await;
        }
        let crashed = verity_types::ValidatorIdentity(identity_bytes(&sim.public[3]));
        for node in &sim.nodes[..3] {
            let validator = |i| {
                node.chain
                    .validator(&validator_account(i))
                    .unwrap()
                    .unwrap()
            };
            assert!(
                validator(3).jailed_through.is_some(),
                "the crashed validator is jailed"
            );
            for i in 0..3 {
                assert_eq!(validator(i).jailed_through, None, "honest validator {i}");
                let paid = node.chain.account(&validator_account(i)).unwrap().balance;
                assert!(paid > 0, "honest validator {i} is paid");
            }
            assert_eq!(
                node.chain.account(&validator_account(3)).unwrap().balance,
                0
            );
            for epoch in 1..3 {
                assert_eq!(node.chain.proposals(epoch, &crashed).unwrap(), 0);
            }
        }
    });
}

#[test]
fn an_equivocator_and_a_proposer_of_unpaid_transactions_change_nothing() {
    let runner = deterministic::Runner::timed(Duration::from_secs(900));
    runner.start(|mut context| async move {
        let roles = [
            Role::Honest,
            Role::Honest,
            Role::ProposesUnpaid,
            Role::Equivocates,
        ];
        let sim = start(&mut context, roles).await;
        // Only the Byzantine proposer admits these; its blocks that carry them are refused.
        let unpaid: Vec<SignedTx> = (0..5u64)
            .map(|nonce| transfer(&sim.stranger, nonce, Address([0xbb; 20]), 0))
            .collect();
        for tx in &unpaid {
            sim.nodes[2].submit(Bytes::from(tx.encode())).unwrap();
            assert!(sim.nodes[0].submit(Bytes::from(tx.encode())).is_err());
        }
        transfers_finalize_identically(&context, &sim, 0, &[0, 1], 30).await;
        for tx in &unpaid {
            for node in &sim.nodes[..2] {
                assert_eq!(node.chain.receipt(&Hash(tx.hash().0)).unwrap(), None);
            }
        }
        assert_eq!(
            sim.nodes[0]
                .chain
                .account(&Address([0xbb; 20]))
                .unwrap()
                .balance,
            0
        );
        assert_eq!(
            sim.nodes[0]
                .chain
                .account(&sim.stranger.address())
                .unwrap()
                .nonce,
            0
        );
        // Its proposals were made, and refused.
        for node in &sim.nodes[..2] {
            assert!(node.refused_proposals.load(Ordering::Relaxed) > 0);
        }
        // The Byzantine proposer executes the same finalized blocks: same roots.
        let height = sim.nodes[0]
            .chain
            .height()
            .unwrap()
            .min(sim.nodes[2].chain.height().unwrap());
        assert_eq!(
            sim.nodes[0].chain.block(height).unwrap(),
            sim.nodes[2].chain.block(height).unwrap()
        );
        // Each honest validator kept evidence naming the equivocator, and counted it.
        for node in &sim.nodes[..2] {
            let evidence = node.evidence.lock().unwrap();
            assert!(
                !evidence.is_empty(),
                "{}: no equivocation evidence",
                node.label
            );
            assert!(evidence.iter().all(|e| e.signer == 3));
        }
        let metrics = context.encode();
        let counted: Vec<&str> = metrics
            .lines()
            .filter(|l| l.contains("equivocations_total") && !l.starts_with('#'))
            .collect();
        assert!(
            counted.iter().any(|l| !l.ends_with(" 0")),
            "equivocations are counted in /metrics: {counted:?}"
        );
    });
}

#[test]
fn a_validator_whose_state_diverged_halts_and_the_others_go_on() {
    let runner = deterministic::Runner::timed(Duration::from_secs(600));
    runner.start(|mut context| async move {
        let roles = [Role::Honest, Role::Honest, Role::Honest, Role::Diverged];
        let sim = start(&mut context, roles).await;
        transfers_finalize_identically(&context, &sim, 0, &[0, 1, 2], 20).await;
        let diverged = &sim.nodes[3];
        assert!(
            diverged.halted.load(std::sync::atomic::Ordering::Relaxed),
            "the diverged validator stops executing"
        );
        assert_eq!(diverged.chain.height().unwrap(), 0, "it applied nothing");
    });
}
