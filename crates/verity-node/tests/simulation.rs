//! Deterministic simulation: 4 validators on commonware's simulated network with lossy, jittery
//! links; one crashes early. The three honest validators must finalize the same blocks with the
//! same state roots, and execute every transfer.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use commonware_cryptography::{ed25519, Digestible, Signer as _};
use commonware_p2p::simulated::{self, Link, Network};
use commonware_runtime::{deterministic, Clock, Runner, Supervisor};
use commonware_utils::{probability, NZUsize};
use verity_node::{
    app::NodeState,
    block::Block,
    committee,
    mempool::SenderCache,
    validator::{self, channel, Channels, ValidatorConfig},
};
use verity_state::{Chain, Genesis, GenesisAccount, MemStore, Params, Store};
use verity_types::{AccountKey, Action, Address, TxBody};

const CHAIN: &str = "verity-sim";

fn genesis(funded: Address) -> Genesis {
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
        },
        accounts: vec![GenesisAccount {
            address: funded,
            balance: 1_000_000,
        }],
        attestation_policy: None,
    }
}

#[test]
fn honest_validators_agree_despite_a_crash_and_lossy_links() {
    let runner = deterministic::Runner::timed(Duration::from_secs(600));
    runner.start(|mut context| async move {
        let (keys, sharing, shares) = committee::deal_committee(&mut context, 4).unwrap();
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
        let genesis = genesis(user.address());
        let genesis_block = Block::genesis(&genesis.hash(), genesis.genesis_time_ms);
        let quota = validator::channel_quota();
        let cache = SenderCache::default();
        let mut nodes = Vec::new();
        let mut crashed = Vec::new();
        for (i, key) in public.iter().enumerate() {
            let store: Arc<dyn Store> = Arc::new(MemStore::default());
            let chain = Chain::open(store, genesis.clone()).unwrap();
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
            let scheme =
                committee::signer(CHAIN, &public, sharing.clone(), shares[i].clone()).unwrap();
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
            if i == 3 {
                crashed = handles;
            }
            nodes.push(node);
        }
        assert_eq!(
            genesis_block.digest(),
            Block::genesis(&genesis.hash(), 0).digest()
        );

        // Crash validator 3 once the chain is moving.
        context.sleep(Duration::from_secs(3)).await;
        for handle in crashed {
            handle.abort();
        }

        // Transfers enter through validator 0 and are gossiped to the others.
        let recipients: Vec<Address> = (1..=20u8).map(|i| Address([i; 20])).collect();
        for (nonce, to) in recipients.iter().enumerate() {
            let tx = TxBody {
                chain_id: CHAIN.into(),
                nonce: nonce as u64,
                fee: 1_000,
                action: Action::Transfer {
                    to: *to,
                    amount: 100,
                },
            }
            .sign(&user);
            nodes[0].submit(Bytes::from(tx.encode())).unwrap();
        }

        let honest = &nodes[..3];
        let target = 30;
        loop {
            let done = honest.iter().all(|n| {
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
            let records: Vec<_> = honest
                .iter()
                .map(|n| n.chain.block(height).unwrap().expect("block executed"))
                .collect();
            assert!(
                records.windows(2).all(|w| w[0] == w[1]),
                "validators disagree at height {height}"
            );
        }
        let user_account = honest[0].chain.account(&user.address()).unwrap();
        assert_eq!(user_account.nonce, 20);
        assert_eq!(user_account.balance, 1_000_000 - 20 * (100 + 1_000));
    });
}
