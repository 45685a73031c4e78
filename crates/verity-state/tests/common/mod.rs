//! What the state machine's integration tests share: a chain driven block by block in memory,
//! signed transactions with tracked nonces, and workers with dev enclaves.
#![allow(dead_code)] // each test file uses a part

use verity_state::{
    recover, BlockInput, Chain, Genesis, GenesisAccount, MemStore, ModelSource, Params, TaskParams,
    TxFailure, TxStatus,
};
use verity_tee::{Binding, DevReport, Policy};
use verity_types::{
    registration_commitment, sha256, AccountKey, Action, Address, Amount, Asset, EnclaveKey, Hash,
    ModelSpec, SignedTx, TxBody, ValidatorIdentity, ONE_TOKEN,
};

pub const CHAIN: &str = "verity-test";
pub const T0: u64 = 1_700_000_000_000;

/// A chain in memory, one block per call, every funded account with 1,000 tokens.
pub struct Net {
    pub chain: Chain<MemStore>,
    pub height: u64,
    /// The genesis time, ms: block h is stamped `genesis_ms + h s`.
    genesis_ms: u64,
    nonces: std::collections::HashMap<Address, u64>,
    /// The proposer the next blocks name.
    pub proposer: Option<ValidatorIdentity>,
}

/// The genesis `Net::new` uses: every funded account with 1,000 tokens, dev attestations.
pub fn genesis(funded: &[Address], tasks: TaskParams, genesis_ms: u64) -> Genesis {
    Genesis {
        chain_id: CHAIN.into(),
        genesis_time_ms: genesis_ms,
        params: Params {
            min_fee: 1,
            fee_collector: Address([0xfe; 20]),
            max_block_txs: 1000,
            fee_per_weight: 0,
            max_block_weight: 2_000_000,
            governance: Some(funded[0]),
            tasks,
            data: Default::default(),
            validators: Default::default(),
        },
        accounts: funded
            .iter()
            .map(|a| GenesisAccount {
                address: *a,
                balance: 1_000 * ONE_TOKEN,
            })
            .collect(),
        attestation_policy: Some(Policy::devnet()),
        validators: vec![],
    }
}

impl Net {
    pub fn new(funded: &[Address], tasks: TaskParams) -> Self {
        Self::with_models(funded, tasks, ModelSource::none())
    }

    /// A chain whose validators read model files through `models`.
    pub fn with_models(funded: &[Address], tasks: TaskParams, models: ModelSource) -> Self {
        Self::build(funded, tasks, models, T0)
    }

    /// A chain whose genesis is at `genesis_ms`: for evidence valid only around its own time.
    pub fn starting_at(funded: &[Address], genesis_ms: u64) -> Self {
        Self::build(
            funded,
            TaskParams::default(),
            ModelSource::none(),
            genesis_ms,
        )
    }

    fn build(funded: &[Address], tasks: TaskParams, models: ModelSource, genesis_ms: u64) -> Self {
        Self::from_genesis(genesis(funded, tasks, genesis_ms), models)
    }

    /// A chain from any genesis (its accounts need not be funded by `genesis`).
    pub fn from_genesis(genesis: Genesis, models: ModelSource) -> Self {
        let genesis_ms = genesis.genesis_time_ms;
        Self {
            chain: Chain::open(MemStore::default(), genesis)
                .unwrap()
                .with_models(models),
            height: 0,
            genesis_ms,
            nonces: Default::default(),
            proposer: None,
        }
    }

    pub fn tx(&mut self, key: &AccountKey, action: Action) -> SignedTx {
        let nonce = self.nonces.entry(key.address()).or_default();
        let tx = TxBody {
            chain_id: CHAIN.into(),
            nonce: *nonce,
            fee: 1,
            action,
        }
        .sign(key);
        *nonce += 1;
        tx
    }

    /// Applies a block of `txs`; each one's failure, if it failed.
    pub fn block(&mut self, txs: &[SignedTx]) -> Vec<Option<TxFailure>> {
        self.height += 1;
        let raw: Vec<Vec<u8>> = txs.iter().map(SignedTx::encode).collect();
        self.chain
            .apply_block(
                &BlockInput {
                    height: self.height,
                    hash: Hash([self.height as u8; 32]),
                    parent: Hash::ZERO,
                    timestamp_ms: self.genesis_ms + self.height * 1000,
                    seed: sha256(&self.height.to_le_bytes()),
                    proposer: self.proposer,
                    txs: &raw,
                },
                recover,
            )
            .unwrap()
            .unwrap();
        txs.iter()
            .map(
                |tx| match self.chain.receipt(&tx.hash()).unwrap().unwrap().status {
                    TxStatus::Success => None,
                    TxStatus::Failed { error } => Some(error),
                },
            )
            .collect()
    }

    pub fn ok(&mut self, txs: &[SignedTx]) {
        for (i, failure) in self.block(txs).into_iter().enumerate() {
            assert_eq!(failure, None, "tx {i} failed");
        }
    }

    /// The newest attestation nonce, finalizing block 1 first if there is none yet.
    pub fn nonce(&mut self) -> (u64, [u8; 32]) {
        if self.height == 0 {
            self.ok(&[]);
        }
        let nonce = self.chain.attestation_nonce().unwrap().unwrap();
        (nonce.height, nonce.nonce.0)
    }

    pub fn balance(&self, a: &Address) -> u128 {
        self.chain.account(a).unwrap().balance
    }

    pub fn stake(&self, a: &Address) -> u128 {
        self.chain.worker(a).unwrap().unwrap().stake
    }
}

pub struct Worker {
    pub account: AccountKey,
    pub enclave: EnclaveKey,
}

impl Worker {
    pub fn generate() -> Self {
        Worker {
            account: AccountKey::generate(),
            enclave: EnclaveKey::generate(),
        }
    }
}

/// What a dev enclave of `worker` with key `key` puts in its report under `nonce`.
pub fn report_data(worker: &Address, key: &[u8], nonce: &[u8; 32]) -> [u8; 64] {
    Binding {
        chain_id: CHAIN,
        worker,
        enclave_key: key,
        nonce,
    }
    .report_data()
}

/// Commits `owner` to registering each of `specs` in a block of its own; returns the
/// registrations, to be sent in a later block.
pub fn committed_models(net: &mut Net, owner: &AccountKey, specs: Vec<ModelSpec>) -> Vec<SignedTx> {
    let salted: Vec<(ModelSpec, Hash)> = specs
        .into_iter()
        .map(|spec| {
            let salt = sha256(&[spec.model_id.0.as_slice(), &owner.address().0].concat());
            (spec, salt)
        })
        .collect();
    let commits: Vec<SignedTx> = salted
        .iter()
        .map(|(spec, salt)| {
            let commitment =
                registration_commitment(Asset::Model, &spec.model_id, &owner.address(), salt);
            net.tx(owner, Action::CommitRegistration { commitment })
        })
        .collect();
    net.ok(&commits);
    salted
        .into_iter()
        .map(|(spec, salt)| {
            net.tx(
                owner,
                Action::RegisterModel {
                    spec,
                    salt,
                    anchor: None,
                },
            )
        })
        .collect()
}

/// [`committed_models`] for one model.
pub fn committed_model(net: &mut Net, owner: &AccountKey, spec: ModelSpec) -> SignedTx {
    committed_models(net, owner, vec![spec]).remove(0)
}

/// `w` stakes `stake` and registers a dev enclave of `measurement`: the two transactions.
pub fn enroll(net: &mut Net, w: &Worker, stake: Amount, measurement: &[u8]) -> Vec<SignedTx> {
    let (nonce_height, nonce) = net.nonce();
    let report_data = report_data(&w.account.address(), &w.enclave.public(), &nonce);
    let report = DevReport::sign(
        &AccountKey::generate(),
        measurement,
        &report_data,
        T0 / 1000,
    );
    vec![
        net.tx(&w.account, Action::Stake { amount: stake }),
        net.tx(
            &w.account,
            Action::RegisterEnclave {
                kind: "dev".into(),
                enclave_key: w.enclave.public(),
                nonce_height,
                report: report.to_bytes(),
                collateral: vec![],
                certs: vec![],
            },
        ),
    ]
}
