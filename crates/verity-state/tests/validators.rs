//! Validator bonds, epochs and committees, driven block by block: who is chosen at a snapshot,
//! who is jailed for not proposing, who is paid, and the attacks on each rule.

mod common;

use common::{genesis, Net, CHAIN};
use verity_state::{GenesisValidator, ModelSource, TaskParams, TxFailure, ValidatorParams};
use verity_types::validator::sign_bond;
use verity_types::{AccountKey, Action, Address, Amount, ValidatorIdentity, ONE_TOKEN};

const EPOCH: u64 = 10;
const MIN_STAKE: Amount = 100 * ONE_TOKEN;
const FEE_POOL: Address = Address([0xfe; 20]);

/// A validator: its account key and the seed of its ed25519 identity.
struct Val {
    key: AccountKey,
    seed: [u8; 32],
}

impl Val {
    fn new(i: u8) -> Self {
        Val {
            key: AccountKey::generate(),
            seed: [i; 32],
        }
    }

    fn account(&self) -> Address {
        self.key.address()
    }

    fn p2p(&self) -> String {
        format!("10.0.0.{}:7000", self.seed[0])
    }

    fn identity(&self) -> ValidatorIdentity {
        sign_bond(&self.seed, CHAIN, &self.account(), &self.p2p()).0
    }

    fn bond(&self, amount: Amount) -> Action {
        let (identity, proof) = sign_bond(&self.seed, CHAIN, &self.account(), &self.p2p());
        Action::BondValidator {
            identity,
            p2p: self.p2p(),
            amount,
            proof,
        }
    }
}

fn params() -> ValidatorParams {
    ValidatorParams {
        epoch_blocks: EPOCH,
        max_validators: 4,
        min_validator_stake: MIN_STAKE,
        unbonding_epochs: 4,
        jail_epochs: 1,
        min_proposals_bps: 5_000,
        jail_slash_bps: 1_000,
        rotate_committees: true,
    }
}

/// A chain whose genesis bonds `stakes[i]` for `genesis[i]`; every validator (genesis or not)
/// and `others` hold 1,000 tokens.
fn net(genesis_vals: &[&Val], stakes: &[Amount], others: &[&Val]) -> Net {
    let funded: Vec<Address> = genesis_vals
        .iter()
        .chain(others)
        .map(|v| v.account())
        .collect();
    let mut g = genesis(&funded, TaskParams::default(), common::T0);
    g.params.validators = params();
    g.validators = genesis_vals
        .iter()
        .zip(stakes)
        .map(|(v, stake)| GenesisValidator {
            account: v.account(),
            identity: v.identity(),
            p2p: v.p2p(),
            stake: *stake,
        })
        .collect();
    Net::from_genesis(g, ModelSource::none())
}

fn members(net: &Net, epoch: u64) -> Vec<ValidatorIdentity> {
    net.chain
        .participants(epoch)
        .unwrap()
        .unwrap_or_else(|| panic!("epoch {epoch} has no participants yet"))
        .members
        .iter()
        .map(|m| m.identity)
        .collect()
}

fn sorted(vals: &[&Val]) -> Vec<ValidatorIdentity> {
    let mut ids: Vec<_> = vals.iter().map(|v| v.identity()).collect();
    ids.sort();
    ids
}

/// Empty blocks up to and including `height`, proposed in turn by `proposers`.
fn run_to(net: &mut Net, height: u64, proposers: &[ValidatorIdentity]) {
    while net.height < height {
        net.proposer = Some(proposers[net.height as usize % proposers.len()]);
        net.ok(&[]);
    }
}

fn invalid(failure: &Option<TxFailure>) -> String {
    match failure {
        Some(TxFailure::Invalid { reason }) => reason.clone(),
        other => panic!("expected an invalid transaction, got {other:?}"),
    }
}

#[test]
fn genesis_validators_are_bonded_and_are_the_first_committees() {
    let (a, b) = (Val::new(1), Val::new(2));
    let net = net(&[&a, &b], &[MIN_STAKE, 2 * MIN_STAKE], &[]);
    for epoch in [0, 1] {
        assert_eq!(members(&net, epoch), sorted(&[&a, &b]));
    }
    assert!(net.chain.participants(2).unwrap().is_none());
    let signing = net.chain.signing_committee(2).unwrap().unwrap();
    assert_eq!(
        signing.epoch, 1,
        "epoch 2 is signed by epoch 1's participants"
    );
    let bonded = net.chain.validator(&b.account()).unwrap().unwrap();
    assert_eq!(
        (bonded.bonded, bonded.identity),
        (2 * MIN_STAKE, b.identity())
    );
    // Genesis bonds are new stake, not taken from balances.
    assert_eq!(net.balance(&a.account()), 1_000 * ONE_TOKEN);
}

#[test]
fn a_snapshot_chooses_the_top_bonded_and_ignores_later_changes() {
    let genesis_vals: Vec<Val> = (1..=3).map(Val::new).collect();
    let newcomers: Vec<Val> = (11..=13).map(Val::new).collect();
    let g: Vec<&Val> = genesis_vals.iter().collect();
    let n: Vec<&Val> = newcomers.iter().collect();
    let mut net = net(&g, &[MIN_STAKE, MIN_STAKE, MIN_STAKE], &n);
    let proposers = sorted(&g);
    // Two newcomers bond before the snapshot (height 5), one more than anyone, one below
    // the minimum.
    let txs = vec![
        net.tx(&newcomers[0].key, newcomers[0].bond(3 * MIN_STAKE)),
        net.tx(&newcomers[1].key, newcomers[1].bond(2 * MIN_STAKE)),
        net.tx(&newcomers[2].key, newcomers[2].bond(MIN_STAKE - 1)),
    ];
    net.proposer = Some(proposers[0]);
    net.ok(&txs);
    run_to(&mut net, 5, &proposers);
    // After the snapshot (taken from the state after block 5, as block 6 begins): the third newcomer tops up, the first unbonds everything.
    let late = vec![
        net.tx(&newcomers[2].key, newcomers[2].bond(5 * MIN_STAKE)),
        net.tx(
            &newcomers[0].key,
            Action::UnbondValidator {
                amount: 3 * MIN_STAKE,
            },
        ),
    ];
    net.ok(&late);
    // Top 4 by stake at height 5: the two newcomers, then two of the three genesis validators
    // (equal stake: the smaller identities).
    let mut expected = vec![newcomers[0].identity(), newcomers[1].identity()];
    expected.extend(sorted(&g).into_iter().take(2));
    expected.sort();
    assert_eq!(members(&net, 2), expected);
    let snapshot = net.chain.participants(2).unwrap().unwrap();
    assert_eq!(snapshot.snapshot_height, 5);
    // The next snapshot (after height 15) sees the changes.
    run_to(&mut net, 16, &proposers);
    let mut expected = vec![newcomers[2].identity(), newcomers[1].identity()];
    expected.extend(sorted(&g).into_iter().take(2));
    expected.sort();
    assert_eq!(members(&net, 3), expected);
}

#[test]
fn nobody_bonds_another_validators_identity() {
    let (a, thief, owner2) = (Val::new(1), Val::new(9), Val::new(7));
    let mut net = net(&[&a], &[MIN_STAKE], &[&thief, &owner2]);
    // The thief replays a's proof from its own account.
    let (identity, proof) = sign_bond(&a.seed, CHAIN, &a.account(), &a.p2p());
    let replay = net.tx(
        &thief.key,
        Action::BondValidator {
            identity,
            p2p: a.p2p(),
            amount: MIN_STAKE,
            proof,
        },
    );
    // ...or keeps a's proof and moves the address.
    let moved = net.tx(
        &a.key,
        Action::BondValidator {
            identity,
            p2p: "6.6.6.6:7000".into(),
            amount: MIN_STAKE,
            proof,
        },
    );
    let failures = net.block(&[replay, moved]);
    for failure in &failures {
        assert!(invalid(failure).contains("bond proof"), "{failure:?}");
    }
    // An identity's owner signing for a second account does not move a bonded identity.
    let (identity, proof) = sign_bond(&a.seed, CHAIN, &owner2.account(), &owner2.p2p());
    let second = net.tx(
        &owner2.key,
        Action::BondValidator {
            identity,
            p2p: owner2.p2p(),
            amount: MIN_STAKE,
            proof,
        },
    );
    let failure = net.block(&[second]).remove(0);
    assert!(invalid(&failure).contains("bonded by another account"));
    // One account bonds one identity.
    let other = net.tx(
        &a.key,
        Val {
            key: AccountKey::generate(),
            seed: [5; 32],
        }
        .bond(1),
    );
    let failure = net.block(&[other]).remove(0);
    assert!(
        invalid(&failure).contains("bond proof"),
        "the proof names another account"
    );
    assert_eq!(net.balance(&thief.account()), 1_000 * ONE_TOKEN - 1);
    assert_eq!(
        net.chain.validator(&a.account()).unwrap().unwrap().bonded,
        MIN_STAKE
    );
}

#[test]
fn a_member_that_never_proposes_is_jailed_slashed_unpaid_and_left_out() {
    let vals: Vec<Val> = (1..=4).map(Val::new).collect();
    let all: Vec<&Val> = vals.iter().collect();
    let stakes = [MIN_STAKE, MIN_STAKE, 2 * MIN_STAKE, 4 * MIN_STAKE];
    let mut net = net(&all, &stakes, &[]);
    let idle = &vals[3];
    let active: Vec<ValidatorIdentity> = vals[..3].iter().map(Val::identity).collect();
    // Fees of the epoch: 700 tokens land in the fee pool.
    let fee = net.tx(
        &vals[0].key,
        Action::Transfer {
            to: FEE_POOL,
            amount: 700 * ONE_TOKEN,
        },
    );
    net.proposer = Some(active[0]);
    net.ok(&[fee]);
    run_to(&mut net, EPOCH, &active);
    let pool = net.balance(&FEE_POOL);
    let before: Vec<u128> = vals.iter().map(|v| net.balance(&v.account())).collect();
    // The first block of epoch 1 closes epoch 0.
    run_to(&mut net, EPOCH + 1, &active);
    let jailed = net.chain.validator(&idle.account()).unwrap().unwrap();
    assert_eq!(jailed.jailed_through, Some(1));
    assert_eq!(
        jailed.bonded,
        4 * MIN_STAKE - 4 * MIN_STAKE / 10,
        "10 % burned"
    );
    assert_eq!(
        net.balance(&idle.account()),
        before[3],
        "a jailed member is not paid"
    );
    // The others share the pool pro rata to stake: 1 : 1 : 2 of 4 parts.
    let paid: Vec<u128> = (0..3)
        .map(|i| net.balance(&vals[i].account()) - before[i])
        .collect();
    assert_eq!(paid, vec![pool / 4, pool / 4, pool / 2]);
    assert!(
        net.balance(&FEE_POOL) < 4,
        "only rounding stays in the pool"
    );
    // The snapshot in epoch 1 (after height 15) leaves the jailed validator out, although it
    // has the largest stake; the one in epoch 2 takes it back.
    // It proposes again from epoch 1 on (its seat in the committees chosen before, up to epoch
    // 2, stays) and is not jailed again.
    let everyone = sorted(&all);
    run_to(&mut net, 16, &everyone);
    assert_eq!(members(&net, 3), sorted(&all[..3]));
    run_to(&mut net, 26, &everyone);
    assert_eq!(
        net.chain
            .validator(&idle.account())
            .unwrap()
            .unwrap()
            .jailed_through,
        Some(1)
    );
    assert_eq!(members(&net, 4), sorted(&all));
    assert_eq!(net.chain.proposals(0, &active[1]).unwrap(), 3);
    assert_eq!(net.chain.proposals(0, &idle.identity()).unwrap(), 0);
}

#[test]
fn unbonding_does_not_escape_a_jailing_and_returns_after_the_unbonding_epochs() {
    let vals: Vec<Val> = (1..=3).map(Val::new).collect();
    let all: Vec<&Val> = vals.iter().collect();
    let mut net = net(&all, &[MIN_STAKE; 3], &[]);
    let active: Vec<ValidatorIdentity> = vals[..2].iter().map(Val::identity).collect();
    let idle = &vals[2];
    run_to(&mut net, 3, &active);
    // Seeing it will be jailed, the idle validator unbonds everything before the epoch ends.
    let escape = net.tx(&idle.key, Action::UnbondValidator { amount: MIN_STAKE });
    net.proposer = Some(active[0]);
    net.ok(&[escape]);
    let balance = net.balance(&idle.account());
    run_to(&mut net, EPOCH + 1, &active);
    let v = net.chain.validator(&idle.account()).unwrap().unwrap();
    assert_eq!((v.bonded, v.unbonding), (0, MIN_STAKE - MIN_STAKE / 10));
    assert_eq!(v.jailed_through, Some(1));
    // It keeps its seat in the committees chosen before it left (genesis signs epochs 0 to
    // 2) and is judged, and burned, for each; unbonded at height 4 (epoch 0), what is left
    // returns at the first block of epoch 4, after epoch 3's judgment, not before.
    let mut left = MIN_STAKE;
    for _ in 0..3 {
        left -= left / 10;
    }
    run_to(&mut net, 4 * EPOCH, &active);
    assert_eq!(net.balance(&idle.account()), balance);
    assert_eq!(
        net.chain
            .validator(&idle.account())
            .unwrap()
            .unwrap()
            .unbonding,
        left
    );
    run_to(&mut net, 4 * EPOCH + 1, &active);
    assert_eq!(net.balance(&idle.account()), balance + left);
    let v = net.chain.validator(&idle.account()).unwrap().unwrap();
    assert_eq!((v.bonded, v.unbonding), (0, 0));
    // Unbonding more than is bonded is refused.
    let again = net.tx(&idle.key, Action::UnbondValidator { amount: 1 });
    assert!(invalid(&net.block(&[again])[0]).contains("can unbond 1 to 0"));
}

#[test]
fn a_snapshot_with_no_one_eligible_keeps_the_last_committee() {
    let vals: Vec<Val> = (1..=2).map(Val::new).collect();
    let all: Vec<&Val> = vals.iter().collect();
    let mut net = net(&all, &[MIN_STAKE; 2], &[]);
    let leave: Vec<_> = vals
        .iter()
        .map(|v| net.tx(&v.key, Action::UnbondValidator { amount: MIN_STAKE }))
        .collect();
    let proposers = sorted(&all);
    net.proposer = Some(proposers[0]);
    net.ok(&leave);
    run_to(&mut net, 6, &proposers);
    assert_eq!(members(&net, 2), proposers);
}

#[test]
fn blocks_without_a_named_proposer_jail_no_one() {
    let vals: Vec<Val> = (1..=2).map(Val::new).collect();
    let all: Vec<&Val> = vals.iter().collect();
    let mut net = net(&all, &[MIN_STAKE; 2], &[]);
    for _ in 0..=EPOCH {
        net.ok(&[]);
    }
    for v in &vals {
        assert_eq!(
            net.chain
                .validator(&v.account())
                .unwrap()
                .unwrap()
                .jailed_through,
            None
        );
    }
}

#[test]
fn without_rotation_the_genesis_committee_signs_and_is_judged_and_the_elected_are_not() {
    let (a, b, newcomer) = (Val::new(1), Val::new(2), Val::new(3));
    let mut g = genesis(
        &[a.account(), b.account(), newcomer.account()],
        TaskParams::default(),
        common::T0,
    );
    g.params.validators = ValidatorParams {
        rotate_committees: false,
        ..params()
    };
    g.validators = [&a, &b]
        .iter()
        .map(|v| GenesisValidator {
            account: v.account(),
            identity: v.identity(),
            p2p: v.p2p(),
            stake: MIN_STAKE,
        })
        .collect();
    let mut net = Net::from_genesis(g, ModelSource::none());
    let bond = net.tx(&newcomer.key, newcomer.bond(5 * MIN_STAKE));
    net.ok(&[bond]);
    let genesis_ids = sorted(&[&a, &b]);
    run_to(&mut net, 5 * EPOCH + 1, &genesis_ids);
    // Elected from the first snapshot on, the newcomer never signs: it is neither judged for
    // not proposing nor paid; the genesis committee signs every epoch.
    assert!(members(&net, 3).contains(&newcomer.identity()));
    for epoch in 0..5 {
        let signing = net.chain.signing_committee(epoch).unwrap().unwrap();
        assert_eq!(signing.epoch, 0);
    }
    let v = net.chain.validator(&newcomer.account()).unwrap().unwrap();
    assert_eq!((v.jailed_through, v.bonded), (None, 5 * MIN_STAKE));
}

#[test]
fn a_chain_without_genesis_validators_takes_no_bonds() {
    let v = Val::new(1);
    let mut net = Net::new(&[v.account()], TaskParams::default());
    let bond = net.tx(&v.key, v.bond(MIN_STAKE));
    assert!(invalid(&net.block(&[bond])[0]).contains("fixed at genesis"));
}

#[test]
fn bad_validator_genesis_is_refused_with_the_reason() {
    let (a, b) = (Val::new(1), Val::new(2));
    let mut g = genesis(&[a.account()], TaskParams::default(), common::T0);
    g.params.validators = params();
    let entry = |v: &Val, stake| GenesisValidator {
        account: v.account(),
        identity: v.identity(),
        p2p: v.p2p(),
        stake,
    };
    for (validators, reason) in [
        (
            vec![entry(&a, MIN_STAKE - 1)],
            "below validators.min_validator_stake",
        ),
        (
            vec![entry(&a, MIN_STAKE), entry(&a, MIN_STAKE)],
            "listed twice",
        ),
        (
            vec![GenesisValidator {
                p2p: "nowhere".into(),
                ..entry(&b, MIN_STAKE)
            }],
            "host:port",
        ),
        (
            (1..=5).map(|i| entry(&Val::new(i), MIN_STAKE)).collect(),
            "max_validators is 4",
        ),
    ] {
        let mut g = g.clone();
        g.validators = validators;
        let error = g.validate().unwrap_err().to_string();
        assert!(error.contains(reason), "{error}");
    }
    g.params.validators.unbonding_epochs = 3;
    g.validators = vec![entry(&a, MIN_STAKE)];
    assert!(g
        .validate()
        .unwrap_err()
        .to_string()
        .contains("unbonding_epochs must be at least 4"));
}

/// One step of a random validator history.
#[derive(Debug, Clone)]
enum Step {
    /// Validator `who` bonds `amount` whole tokens.
    Bond { who: usize, amount: u16 },
    /// Validator `who` unbonds `amount` whole tokens (refused beyond its bond).
    Unbond { who: usize, amount: u16 },
    /// Someone pays `amount` whole tokens into the fee pool.
    Fees { amount: u16 },
    /// An empty block.
    Empty,
}

fn step() -> impl proptest::strategy::Strategy<Value = Step> {
    use proptest::prelude::*;
    prop_oneof![
        (0usize..6, 1u16..400).prop_map(|(who, amount)| Step::Bond { who, amount }),
        (0usize..6, 1u16..400).prop_map(|(who, amount)| Step::Unbond { who, amount }),
        (1u16..300).prop_map(|amount| Step::Fees { amount }),
        Just(Step::Empty),
    ]
}

/// Every token on the chain: balances, bonds and stake on its way back.
fn supply(net: &Net, accounts: &[Address]) -> u128 {
    let bonds: u128 = net
        .chain
        .validators()
        .unwrap()
        .iter()
        .map(|v| v.bonded + v.unbonding)
        .sum();
    accounts.iter().map(|a| net.balance(a)).sum::<u128>() + net.balance(&FEE_POOL) + bonds
}

proptest::proptest! {
    #![proptest_config(proptest::test_runner::Config::with_cases(24))]

    /// Whatever validators bond, unbond and earn over five epochs in which every member proposes:
    /// no token is made or lost (fees move from payers through the pool to the committee,
    /// unbonded stake comes back whole), and every snapshot is the top `max_validators` by
    /// bond at or above the minimum, as the state stood when it was taken.
    #[test]
    fn tokens_are_conserved_and_snapshots_take_the_top_bonds(
        steps in proptest::collection::vec(step(), 1..50),
    ) {
        let genesis_vals: Vec<Val> = (1..=2).map(Val::new).collect();
        let others: Vec<Val> = (11..=16).map(Val::new).collect();
        let g: Vec<&Val> = genesis_vals.iter().collect();
        let o: Vec<&Val> = others.iter().collect();
        let mut net = net(&g, &[MIN_STAKE, 2 * MIN_STAKE], &o);
        let payer = &genesis_vals[0];
        let mut accounts: Vec<Address> = genesis_vals.iter().map(Val::account).collect();
        accounts.extend(others.iter().map(Val::account));
        let total = supply(&net, &accounts);
        // Each block is proposed in turn by the committee that signs its epoch, so no one is
        // jailed and nothing is burned.
        let propose = |net: &mut Net| {
            let epoch = net.height / EPOCH;
            let committee = net.chain.signing_committee(epoch).unwrap().unwrap().members;
            net.proposer = Some(committee[net.height as usize % committee.len()].identity);
        };
        for step in steps.iter().cycle().take(5 * EPOCH as usize) {
            let tx = match step {
                Step::Bond { who, amount } => {
                    let v = &others[*who];
                    Some(net.tx(&v.key, v.bond(u128::from(*amount) * ONE_TOKEN)))
                }
                Step::Unbond { who, amount } => Some(net.tx(
                    &others[*who].key,
                    Action::UnbondValidator { amount: u128::from(*amount) * ONE_TOKEN },
                )),
                Step::Fees { amount } => Some(net.tx(
                    &payer.key,
                    Action::Transfer { to: FEE_POOL, amount: u128::from(*amount) * ONE_TOKEN },
                )),
                Step::Empty => None,
            };
            // The block after a snapshot height carries nothing, so the state the snapshot saw
            // is the state after it.
            let snapshot_next = net.height % EPOCH == EPOCH / 2;
            propose(&mut net);
            if snapshot_next {
                net.block(&[]);
                propose(&mut net);
                let epoch = (net.height - 1) / EPOCH;
                let mut eligible: Vec<_> = net
                    .chain
                    .validators()
                    .unwrap()
                    .into_iter()
                    .filter(|v| v.bonded >= MIN_STAKE)
                    .collect();
                eligible.sort_by(|a, b| b.bonded.cmp(&a.bonded).then(a.identity.cmp(&b.identity)));
                let mut expected: Vec<_> = eligible.iter().take(4).map(|v| v.identity).collect();
                expected.sort();
                let chosen = members(&net, epoch + 2);
                if !expected.is_empty() {
                    proptest::prop_assert_eq!(chosen, expected);
                }
            }
            net.block(&tx.into_iter().collect::<Vec<_>>());
            proptest::prop_assert_eq!(supply(&net, &accounts), total);
        }
    }
}
