//! The accounts module through whole blocks: transfers, every rejection, determinism, restart.

use verity_state::{
    recover, BlockInput, Chain, Genesis, GenesisAccount, MemStore, Params, RedbStore, TxFailure,
    TxStatus,
};
use verity_types::{AccountKey, Action, Address, Hash, SignedTx, TxBody};

const CHAIN: &str = "verity-test";

fn genesis(funded: &[(Address, u128)]) -> Genesis {
    Genesis {
        chain_id: CHAIN.into(),
        genesis_time_ms: 1_700_000_000_000,
        params: Params {
            min_fee: 1,
            fee_collector: Address([0xfe; 20]),
            max_block_txs: 1000,
            fee_per_weight: 1,
            max_block_weight: 2_000_000,
            governance: None,
            tasks: Default::default(),
        },
        accounts: funded
            .iter()
            .map(|(address, balance)| GenesisAccount {
                address: *address,
                balance: *balance,
            })
            .collect(),
        attestation_policy: None,
    }
}

fn transfer(key: &AccountKey, nonce: u64, to: Address, amount: u128) -> SignedTx {
    TxBody {
        chain_id: CHAIN.into(),
        nonce,
        fee: 2,
        action: Action::Transfer { to, amount },
    }
    .sign(key)
}

fn apply<S: verity_state::Store>(
    chain: &Chain<S>,
    height: u64,
    txs: &[SignedTx],
) -> verity_state::BlockRecord {
    let raw: Vec<Vec<u8>> = txs.iter().map(SignedTx::encode).collect();
    chain
        .apply_block(
            &BlockInput {
                height,
                hash: Hash([height as u8; 32]),
                parent: Hash([height as u8 - 1; 32]),
                timestamp_ms: 1_700_000_000_000 + height,
                seed: Hash([height as u8; 32]),
                txs: &raw,
            },
            recover,
        )
        .unwrap()
        .expect("block applies")
        .record
}

fn failure<S: verity_state::Store>(chain: &Chain<S>, tx: &SignedTx) -> Option<TxFailure> {
    match chain.receipt(&tx.hash()).unwrap().expect("receipt").status {
        TxStatus::Success => None,
        TxStatus::Failed { error } => Some(error),
    }
}

#[test]
fn transfer_moves_balance_and_fee() {
    let alice = AccountKey::generate();
    let bob = Address([1; 20]);
    let chain = Chain::open(MemStore::default(), genesis(&[(alice.address(), 100)])).unwrap();
    let tx = transfer(&alice, 0, bob, 30);
    let record = apply(&chain, 1, std::slice::from_ref(&tx));
    assert_eq!(record.tx_hashes, vec![tx.hash()]);
    assert_eq!(failure(&chain, &tx), None);
    assert_eq!(chain.account(&alice.address()).unwrap().balance, 68);
    assert_eq!(chain.account(&alice.address()).unwrap().nonce, 1);
    assert_eq!(chain.account(&bob).unwrap().balance, 30);
    assert_eq!(chain.account(&Address([0xfe; 20])).unwrap().balance, 2);
}

#[test]
fn failing_transactions_are_recorded_and_the_block_applies() {
    let alice = AccountKey::generate();
    let bob = AccountKey::generate();
    let chain = Chain::open(
        MemStore::default(),
        genesis(&[(alice.address(), 100), (bob.address(), u128::MAX - 100)]),
    )
    .unwrap();
    let ok = transfer(&alice, 0, bob.address(), 1);
    let replay_nonce = transfer(&alice, 0, Address([3; 20]), 1);
    let overdraft = transfer(&alice, 1, Address([3; 20]), 1_000);
    let mut wrong_chain = transfer(&alice, 2, Address([3; 20]), 1);
    wrong_chain.body.chain_id = "other".into();
    let wrong_chain = wrong_chain.body.sign(&alice);
    let mut bad_sig = transfer(&alice, 2, Address([3; 20]), 1);
    bad_sig.signature[5] ^= 1;
    let record = apply(
        &chain,
        1,
        &[
            ok.clone(),
            replay_nonce.clone(),
            overdraft.clone(),
            wrong_chain.clone(),
            bad_sig.clone(),
        ],
    );
    assert_eq!(record.failed_txs, 4, "the overdraft still pays its fee");
    assert_eq!(failure(&chain, &ok), None);
    assert!(matches!(
        failure(&chain, &replay_nonce),
        Some(TxFailure::BadNonce {
            expected: 1,
            got: 0
        })
    ));
    assert!(matches!(
        failure(&chain, &overdraft),
        Some(TxFailure::InsufficientBalance { .. })
    ));
    assert!(matches!(
        failure(&chain, &wrong_chain),
        Some(TxFailure::WrongChain { .. })
    ));
    assert!(matches!(
        failure(&chain, &bad_sig),
        Some(TxFailure::BadSignature { .. } | TxFailure::BadNonce { .. })
    ));
    // ok: 1 + fee 2; overdraft: fee 2.
    let alice_after = chain.account(&alice.address()).unwrap();
    assert_eq!(alice_after.balance, 100 - 3 - 2);
    assert_eq!(alice_after.nonce, 2);
}

#[test]
fn a_transaction_included_twice_runs_once() {
    let alice = AccountKey::generate();
    let chain = Chain::open(MemStore::default(), genesis(&[(alice.address(), 100)])).unwrap();
    let tx = transfer(&alice, 0, Address([1; 20]), 10);
    apply(&chain, 1, &[tx.clone(), tx.clone()]);
    let record = apply(&chain, 2, std::slice::from_ref(&tx));
    assert!(record.tx_hashes.is_empty());
    assert_eq!(chain.receipt(&tx.hash()).unwrap().unwrap().height, 1);
    assert_eq!(chain.account(&Address([1; 20])).unwrap().balance, 10);
}

#[test]
fn same_blocks_give_same_roots_and_redelivery_is_skipped() {
    let keys: Vec<AccountKey> = (0..4).map(|_| AccountKey::generate()).collect();
    let funded: Vec<(Address, u128)> = keys.iter().map(|k| (k.address(), 1_000)).collect();
    let dir = std::env::temp_dir().join(format!("verity-state-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("state.redb");
    let _ = std::fs::remove_file(&path);
    let a = Chain::open(MemStore::default(), genesis(&funded)).unwrap();
    let b = Chain::open(RedbStore::open(&path).unwrap(), genesis(&funded)).unwrap();
    assert_eq!(a.state_root().unwrap(), b.state_root().unwrap());
    for height in 1..=5u64 {
        let txs: Vec<SignedTx> = keys
            .iter()
            .enumerate()
            .map(|(i, k)| transfer(k, height - 1, keys[(i + 1) % 4].address(), height as u128))
            .collect();
        let ra = apply(&a, height, &txs);
        let rb = apply(&b, height, &txs);
        assert_eq!(ra.state_root, rb.state_root);
    }
    // At-least-once delivery: an old block again changes nothing.
    assert!(a
        .apply_block(
            &BlockInput {
                height: 3,
                hash: Hash::ZERO,
                parent: Hash::ZERO,
                timestamp_ms: 0,
                seed: Hash::ZERO,
                txs: &[]
            },
            recover,
        )
        .unwrap()
        .is_none());
    // A gap is an error, not a silent skip.
    assert!(a
        .apply_block(
            &BlockInput {
                height: 9,
                hash: Hash::ZERO,
                parent: Hash::ZERO,
                timestamp_ms: 0,
                seed: Hash::ZERO,
                txs: &[]
            },
            recover,
        )
        .is_err());
    // Reopening the redb store finds the same state.
    let root = b.state_root().unwrap();
    drop(b);
    let reopened = Chain::open(RedbStore::open(&path).unwrap(), genesis(&funded)).unwrap();
    assert_eq!(reopened.height().unwrap(), 5);
    assert_eq!(reopened.state_root().unwrap(), root);
    drop(reopened);
    // Another genesis on the same store is refused.
    assert!(Chain::open(RedbStore::open(&path).unwrap(), genesis(&[])).is_err());
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn genesis_supply_must_fit_u128() {
    let g = genesis(&[(Address([1; 20]), u128::MAX), (Address([2; 20]), 1)]);
    assert!(Chain::open(MemStore::default(), g).is_err());
}
