//! The accounts module through whole blocks: transfers, every rejection, determinism, restart.

use verity_state::store::KeyValues;
use verity_state::{
    recover, Batch, BlockInput, Chain, Genesis, GenesisAccount, MemStore, Params, RedbStore, Store,
    StoreError, Table, TxFailure, TxStatus,
};
use verity_types::{weight, AccountKey, Action, Address, FeeSchedule, Hash, SignedTx, TxBody};

const CHAIN: &str = "verity-test";

fn genesis(funded: &[(Address, u128)]) -> Genesis {
    Genesis {
        chain_id: CHAIN.into(),
        genesis_time_ms: 1_700_000_000_000,
        params: Params {
            min_fee: 1,
            fee_collector: Address([0xfe; 20]),
            max_block_txs: 1000,
            fee_per_weight: 0,
            max_block_weight: 2_000_000,
            governance: None,
            tasks: Default::default(),
            data: Default::default(),
            validators: Default::default(),
        },
        accounts: funded
            .iter()
            .map(|(address, balance)| GenesisAccount {
                address: *address,
                balance: *balance,
            })
            .collect(),
        attestation_policy: None,
        validators: vec![],
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
                proposer: None,
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
    // Only the overdraft could be charged: it fails with a receipt and pays its fee. The used
    // nonce, the other chain and the bad signature are dropped without a receipt or any write,
    // so a proposer that includes them gains nothing.
    assert_eq!(record.failed_txs, 1, "the overdraft still pays its fee");
    assert_eq!(record.tx_hashes, vec![ok.hash(), overdraft.hash()]);
    assert_eq!(failure(&chain, &ok), None);
    assert!(matches!(
        failure(&chain, &overdraft),
        Some(TxFailure::InsufficientBalance { .. })
    ));
    for dropped in [&replay_nonce, &wrong_chain, &bad_sig] {
        assert_eq!(chain.receipt(&dropped.hash()).unwrap(), None);
    }
    // ok: 1 + fee 2; overdraft: fee 2.
    let alice_after = chain.account(&alice.address()).unwrap();
    assert_eq!(alice_after.balance, 100 - 3 - 2);
    assert_eq!(alice_after.nonce, 2);
}

fn priced_genesis(
    funded: &[(Address, u128)],
    fee_per_weight: u128,
    max_block_weight: u64,
) -> Genesis {
    let mut g = genesis(funded);
    g.params.fee_per_weight = fee_per_weight;
    g.params.max_block_weight = max_block_weight;
    g
}

fn priced_transfer(key: &AccountKey, nonce: u64, to: Address, fee: u128) -> SignedTx {
    TxBody {
        chain_id: CHAIN.into(),
        nonce,
        fee,
        action: Action::Transfer { to, amount: 1 },
    }
    .sign(key)
}

#[test]
fn a_fee_must_cover_the_weight_and_an_underpaying_one_writes_nothing() {
    let alice = AccountKey::generate();
    let chain = Chain::open(
        MemStore::default(),
        priced_genesis(&[(alice.address(), 1_000_000)], 10, 2_000_000),
    )
    .unwrap();
    let probe = priced_transfer(&alice, 0, Address([1; 20]), 0);
    let prices = FeeSchedule {
        fee_per_weight: 10,
        min_fee: 1,
    };
    let required = probe.body.required_fee(&prices);
    assert_eq!(
        required,
        10 * u128::from(weight::of(&probe.body.action, probe.encode().len()))
    );
    let root = chain.state_root().unwrap();
    let cheap = priced_transfer(&alice, 0, Address([1; 20]), required - 1);
    let record = apply(&chain, 1, std::slice::from_ref(&cheap));
    assert!(record.tx_hashes.is_empty());
    assert_eq!(chain.receipt(&cheap.hash()).unwrap(), None);
    assert_eq!(chain.account(&alice.address()).unwrap().nonce, 0);
    assert_ne!(
        record.state_root, root,
        "the root chain still advances a height"
    );
    let paid = priced_transfer(&alice, 0, Address([1; 20]), required);
    apply(&chain, 2, std::slice::from_ref(&paid));
    assert_eq!(failure(&chain, &paid), None);
    assert_eq!(
        chain.account(&alice.address()).unwrap().balance,
        1_000_000 - 1 - required
    );
}

#[test]
fn a_block_past_its_weight_limit_drops_the_rest() {
    let keys: Vec<AccountKey> = (0..3).map(|_| AccountKey::generate()).collect();
    let funded: Vec<(Address, u128)> = keys.iter().map(|k| (k.address(), 1_000)).collect();
    let one = weight::of(
        &Action::Transfer {
            to: Address([1; 20]),
            amount: 1,
        },
        priced_transfer(&keys[0], 0, Address([1; 20]), 2)
            .encode()
            .len(),
    );
    let limit = 2 * one;
    let mut g = priced_genesis(&funded, 0, limit);
    // Genesis refuses a limit below the heaviest transaction; this test needs a tiny block.
    assert!(g.validate().is_err());
    g.params.max_block_weight = verity_state::MIN_BLOCK_WEIGHT;
    assert!(g.validate().is_ok());
    let per_block = (verity_state::MIN_BLOCK_WEIGHT / one) as usize;
    let senders: Vec<AccountKey> = (0..per_block + 2).map(|_| AccountKey::generate()).collect();
    let funded: Vec<(Address, u128)> = senders.iter().map(|k| (k.address(), 1_000)).collect();
    let mut g = priced_genesis(&funded, 0, verity_state::MIN_BLOCK_WEIGHT);
    g.params.max_block_txs = 100_000;
    let chain = Chain::open(MemStore::default(), g).unwrap();
    let txs: Vec<SignedTx> = senders
        .iter()
        .map(|k| priced_transfer(k, 0, Address([1; 20]), 2))
        .collect();
    let record = apply(&chain, 1, &txs);
    assert_eq!(record.tx_hashes.len(), per_block);
    for late in &txs[per_block..] {
        assert_eq!(chain.receipt(&late.hash()).unwrap(), None);
        assert_eq!(chain.account(&late.sender().unwrap()).unwrap().nonce, 0);
    }
}

#[test]
fn genesis_parameters_are_range_checked() {
    type Breaks = Box<dyn Fn(&mut Genesis)>;
    let cases: Vec<(&str, Breaks)> = vec![
        (
            "unbonding_blocks",
            Box::new(|g| g.params.tasks.unbonding_blocks = 0),
        ),
        (
            "attestation_nonce_blocks",
            Box::new(|g| g.params.tasks.attestation_nonce_blocks = 0),
        ),
        (
            "enclave_ttl_secs",
            Box::new(|g| g.params.tasks.enclave_ttl_secs = 10),
        ),
        (
            "assignment_timeout_blocks",
            Box::new(|g| g.params.tasks.assignment_timeout_blocks = 0),
        ),
        (
            "max_block_weight",
            Box::new(|g| g.params.max_block_weight = 1),
        ),
        ("max_block_txs", Box::new(|g| g.params.max_block_txs = 0)),
        (
            "worker_bps",
            Box::new(|g| g.params.tasks.fee_split.worker_bps = 9_000),
        ),
        (
            "timeout_penalty",
            Box::new(|g| g.params.tasks.timeout_penalty = -1),
        ),
        (
            "min_task_fee",
            Box::new(|g| g.params.tasks.min_task_fee = 0),
        ),
        (
            "data.proof_timeout_blocks",
            Box::new(|g| g.params.data.proof_timeout_blocks = 0),
        ),
        (
            "data.min_proof_fee",
            Box::new(|g| g.params.data.min_proof_fee = 0),
        ),
        (
            "data_bps",
            Box::new(|g| g.params.tasks.fee_split.data_bps = 1_001),
        ),
    ];
    for (name, break_it) in cases {
        let mut g = genesis(&[]);
        break_it(&mut g);
        let error = g.validate().expect_err(name).to_string();
        assert!(error.contains(name), "{name}: {error}");
        assert!(Chain::open(MemStore::default(), g).is_err(), "{name}");
    }
    assert!(genesis(&[]).validate().is_ok());
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
                proposer: None,
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
                proposer: None,
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

/// A store whose reads of one table fail once armed, as a failing disk would.
struct FailingStore {
    inner: MemStore,
    fail: std::sync::atomic::AtomicBool,
}

impl Store for FailingStore {
    fn get(&self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        if table == Table::Staking && self.fail.load(std::sync::atomic::Ordering::Relaxed) {
            return Err(StoreError::Backend("read error on sector 7".into()));
        }
        self.inner.get(table, key)
    }

    fn commit(&self, batch: &Batch) -> Result<(), StoreError> {
        self.inner.commit(batch)
    }

    fn scan(
        &self,
        table: Table,
        prefix: &[u8],
        start: &[u8],
        limit: usize,
    ) -> Result<KeyValues, StoreError> {
        self.inner.scan(table, prefix, start, limit)
    }
}

#[test]
fn a_storage_error_halts_execution_instead_of_failing_the_transaction() {
    let alice = AccountKey::generate();
    let store = FailingStore {
        inner: MemStore::default(),
        fail: false.into(),
    };
    let chain = Chain::open(store, genesis(&[(alice.address(), 1_000)])).unwrap();
    let stake = TxBody {
        chain_id: CHAIN.into(),
        nonce: 0,
        fee: 2,
        action: Action::Stake { amount: 10 },
    }
    .sign(&alice);
    let root = chain.state_root().unwrap();
    chain
        .store()
        .fail
        .store(true, std::sync::atomic::Ordering::Relaxed);
    let raw = vec![stake.encode()];
    let result = chain.apply_block(
        &BlockInput {
            height: 1,
            hash: Hash([1; 32]),
            parent: Hash::ZERO,
            timestamp_ms: 1_000,
            seed: Hash::ZERO,
            proposer: None,
            txs: &raw,
        },
        recover,
    );
    let error = result.err().expect("the block does not apply").to_string();
    assert!(error.contains("read error on sector 7"), "{error}");
    // Nothing was committed: no receipt blaming the transaction, same height and root.
    chain
        .store()
        .fail
        .store(false, std::sync::atomic::Ordering::Relaxed);
    assert_eq!(chain.receipt(&stake.hash()).unwrap(), None);
    assert_eq!(chain.height().unwrap(), 0);
    assert_eq!(chain.state_root().unwrap(), root);
    // Once the disk reads again, the same block applies and the stake succeeds.
    apply(&chain, 1, std::slice::from_ref(&stake));
    assert_eq!(failure(&chain, &stake), None);
}
