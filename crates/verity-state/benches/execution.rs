//! Block execution against a small and a large state: no action's cost may grow with the
//! number of staked workers or waiting tasks (issue 12).
//!
//! Each case executes, through `Chain::apply_block`, the block that includes the submissions and
//! the next one, which draws their workers. Signatures are recovered before timing, as a
//! validator's admission cache does. The store is redb on disk, as on a validator. States:
//! - `small`: 10 staked workers, 10 waiting tasks (the baseline);
//! - `workers`: 100,000 staked workers serving the model;
//! - `pending`: 100,000 tasks waiting for a model nobody serves.
//!
//! Run: `cargo bench -p verity-state --bench execution`.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use verity_state::modules::{accounts, enclaves, registry, sortition, staking};
use verity_state::verity_tee::TeeKind;
use verity_state::{
    recover, Account, BlockCtx, BlockInput, Chain, Enclave, Genesis, GenesisAccount, Overlay,
    Params, Recovered, RedbStore, Store, TaskParams,
};
use verity_types::{
    sha256, AccountKey, Action, Address, Asset, DataRef, Hash, Mode, ModelSpec, SignedTx, TxBody,
    ONE_TOKEN,
};

const CHAIN: &str = "verity-bench";
const T0: u64 = 1_700_000_000_000;
const USERS: usize = 1_000;
const HORIZON: u64 = 100_000_000;

struct Bench {
    chain: Chain<RedbStore>,
    _dir: tempfile::TempDir,
    users: Vec<AccountKey>,
    nonces: Vec<u64>,
    model: Hash,
}

fn spec(model: Hash, name: &str) -> ModelSpec {
    ModelSpec {
        model_id: model,
        name: name.into(),
        version: "1".into(),
        weights_root: Hash([0x22; 32]),
        architecture: "mlp".into(),
        param_count: 100,
        size: 1234,
        license: "MIT".into(),
        tee_required: true,
        allowed_modes: vec![Mode::Tee],
        tolerance_ppm: 0,
        language: None,
    }
}

impl Bench {
    fn new(workers: u32, pending: u32) -> Self {
        let users: Vec<AccountKey> = (0..USERS).map(|_| AccountKey::generate()).collect();
        let genesis = Genesis {
            chain_id: CHAIN.into(),
            genesis_time_ms: T0,
            params: Params {
                min_fee: 1,
                fee_collector: Address([0xfe; 20]),
                max_block_txs: 4_000,
                fee_per_weight: 1,
                max_block_weight: 10_000_000,
                governance: None,
                // No timeout or deadline falls inside a run and no worker fills up: this
                // measures submissions and their draws, not the timeouts of tasks nobody works on.
                tasks: TaskParams {
                    assignment_timeout_blocks: HORIZON,
                    max_open_assignments: u32::MAX,
                    max_deadline_blocks: HORIZON,
                    ..Default::default()
                },
                data: Default::default(),
                validators: Default::default(),
            },
            accounts: users
                .iter()
                .map(|u| GenesisAccount {
                    address: u.address(),
                    balance: 1_000_000 * ONE_TOKEN,
                })
                .collect(),
            attestation_policy: None,
            validators: vec![],
        };
        let dir = tempfile::tempdir().unwrap();
        let store = RedbStore::open(&dir.path().join("state.redb")).unwrap();
        let chain = Chain::open(store, genesis).unwrap();
        let model = Hash([0x11; 32]);
        let orphan = Hash([0x33; 32]);
        // Workers are written straight into the state: attesting 100,000 of them through
        // transactions would take minutes and measure nothing this benchmark is about.
        let genesis = chain.genesis().clone();
        let ctx = BlockCtx {
            height: 1,
            timestamp_ms: T0,
            seed: Hash::ZERO,
            proposer: None,
            genesis: &genesis,
            models: chain.model_source(),
        };
        let mut state = Overlay::new(chain.store());
        let owner = Address([0xaa; 20]);
        for (id, name) in [(model, "m"), (orphan, "o")] {
            let commitment =
                verity_types::registration_commitment(Asset::Model, &id, &owner, &Hash::ZERO);
            let before = BlockCtx {
                height: 0,
                timestamp_ms: T0,
                seed: Hash::ZERO,
                proposer: None,
                genesis: &genesis,
                models: chain.model_source(),
            };
            registry::commit(&mut state, &before, &owner, &commitment).unwrap();
            registry::register_model(&mut state, &ctx, &owner, &spec(id, name), &Hash::ZERO, None)
                .unwrap();
        }
        for i in 0..workers {
            let mut worker = [0x77u8; 20];
            worker[..4].copy_from_slice(&i.to_be_bytes());
            let worker = Address(worker);
            let stake = 1_000 * ONE_TOKEN;
            accounts::put(
                &mut state,
                &worker,
                &Account {
                    balance: stake,
                    nonce: 0,
                },
            );
            staking::stake(&mut state, &worker, stake).unwrap();
            staking::serve_models(&mut state, &worker, vec![model]).unwrap();
            let mut key = [0u8; 32];
            key[..20].copy_from_slice(&worker.0);
            enclaves::insert(
                &mut state,
                &Enclave {
                    worker,
                    key,
                    kind: TeeKind::Dev,
                    measurement: vec![1],
                    tcb_status: "UpToDate".into(),
                    registered_height: 0,
                    attested_at_ms: T0,
                    expires_at_ms: u64::MAX,
                },
            );
            sortition::refresh(&mut state, &ctx, &worker).unwrap();
        }
        chain.store().commit(&state.into_batch()).unwrap();
        let mut bench = Self {
            chain,
            _dir: dir,
            nonces: vec![0; users.len()],
            users,
            model,
        };
        // Tasks for a model nobody serves wait in the pending queue.
        let mut left = pending;
        while left > 0 {
            let n = left.min(4_000) as usize;
            let txs: Vec<SignedTx> = (0..n)
                .map(|i| bench.submit(i % USERS, orphan, left as u64 + i as u64))
                .collect();
            bench.apply(&txs);
            left -= n as u32;
        }
        bench.apply(&[]);
        bench
    }

    fn submit(&mut self, user: usize, model: Hash, salt: u64) -> SignedTx {
        let nonce = self.nonces[user];
        self.nonces[user] += 1;
        TxBody {
            chain_id: CHAIN.into(),
            nonce,
            fee: 10_000,
            action: Action::SubmitTask {
                model_id: model,
                input: DataRef::of(&salt.to_le_bytes()),
                mode: Mode::Tee,
                max_fee: 1_000,
                deadline_blocks: HORIZON,
                input_commitment: None,
                dataset: None,
                generation: None,
            },
        }
        .sign(&self.users[user])
    }

    /// Applies `txs` and the block after; returns the time spent executing.
    fn apply(&self, txs: &[SignedTx]) -> Duration {
        let raw: Vec<Vec<u8>> = txs.iter().map(SignedTx::encode).collect();
        let cache: HashMap<Hash, Recovered> = raw.iter().map(|b| (sha256(b), recover(b))).collect();
        let recovered = |bytes: &[u8]| cache[&sha256(bytes)].clone();
        let start = Instant::now();
        for block in [raw.as_slice(), &[]] {
            let height = self.chain.height().unwrap() + 1;
            self.chain
                .apply_block(
                    &BlockInput {
                        height,
                        hash: Hash([height as u8; 32]),
                        parent: Hash::ZERO,
                        timestamp_ms: T0 + height * 1_000,
                        seed: sha256(&height.to_le_bytes()),
                        proposer: None,
                        txs: block,
                    },
                    recovered,
                )
                .unwrap()
                .unwrap();
        }
        start.elapsed()
    }
}

fn execution(c: &mut Criterion) {
    let mut group = c.benchmark_group("execute");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(8));
    for (name, workers, pending) in [
        ("small", 10, 10),
        ("workers_100k", 100_000, 10),
        ("pending_100k", 10, 100_000),
    ] {
        eprintln!("building the {name} state ({workers} workers, {pending} pending tasks)…");
        let mut bench = Bench::new(workers, pending);
        for batch in [1usize, 1_000] {
            group.bench_function(format!("{name}/{batch}_submit_task"), |b| {
                b.iter_custom(|iters| {
                    let mut total = Duration::ZERO;
                    for _ in 0..iters {
                        let model = bench.model;
                        let txs: Vec<SignedTx> = (0..batch)
                            .map(|i| bench.submit(i, model, bench.nonces[i]))
                            .collect();
                        total += bench.apply(&txs);
                    }
                    total
                })
            });
        }
    }
    group.finish();
}

criterion_group!(benches, execution);
criterion_main!(benches);
