//! Commit–reveal registration of models and datasets, attacked by a front-runner who sees the
//! author's registration (spec and salt) in the mempool and tries to register the asset first.

use verity_state::TaskParams;
use verity_types::{
    registration_commitment, sha256, AccountKey, Action, Anchor, Asset, DataRef, EnclaveKey, Hash,
    Mode, ModelSpec, ONE_TOKEN,
};

mod common;

use common::{enroll, Net, Worker, CHAIN};

fn spec() -> ModelSpec {
    ModelSpec {
        model_id: sha256(b"the author's model file"),
        name: "model".into(),
        version: "1".into(),
        weights_root: Hash([2; 32]),
        architecture: "mlp".into(),
        param_count: 10,
        size: 100,
        license: "MIT".into(),
        tee_required: true,
        allowed_modes: vec![Mode::Tee],
        tolerance_ppm: 0,
        language: None,
    }
}

/// Commits `key` to registering `id` as `asset`, in a block of its own.
fn commit(net: &mut Net, key: &AccountKey, asset: Asset, id: &Hash, salt: &Hash) {
    let commitment = registration_commitment(asset, id, &key.address(), salt);
    let tx = net.tx(key, Action::CommitRegistration { commitment });
    net.ok(&[tx]);
}

fn failure(net: &mut Net, key: &AccountKey, action: Action) -> String {
    let tx = net.tx(key, action);
    net.block(&[tx])
        .remove(0)
        .expect("the transaction must fail")
        .to_string()
}

#[test]
fn a_front_runner_cannot_take_a_model_it_saw_being_registered() {
    let author = AccountKey::generate();
    let mallory = AccountKey::generate();
    let mut net = Net::new(
        &[author.address(), mallory.address()],
        TaskParams::default(),
    );
    let salt = sha256(b"the author's secret salt");
    let register = Action::RegisterModel {
        spec: spec(),
        salt,
        anchor: None,
    };

    // No commitment: refused, for the author as for anyone.
    let why = failure(&mut net, &author, register.clone());
    assert!(why.contains("no commitment by"), "{why}");
    // A reveal in the commitment's own block: refused.
    let commit_tx = net.tx(
        &author,
        Action::CommitRegistration {
            commitment: registration_commitment(
                Asset::Model,
                &spec().model_id,
                &author.address(),
                &salt,
            ),
        },
    );
    let reveal_tx = net.tx(&author, register.clone());
    let outcome = net.block(&[commit_tx, reveal_tx]);
    assert_eq!(outcome[0], None);
    assert!(outcome[1]
        .as_ref()
        .unwrap()
        .to_string()
        .contains("reveal it in a later one"));

    // Mallory copies the author's registration from the mempool, salt and all: she has no
    // commitment of her own.
    let why = failure(&mut net, &mallory, register.clone());
    assert!(why.contains("no commitment by"), "{why}");
    // She commits now, in the block that carries the author's reveal: the author is first.
    let mallory_commit = net.tx(
        &mallory,
        Action::CommitRegistration {
            commitment: registration_commitment(
                Asset::Model,
                &spec().model_id,
                &mallory.address(),
                &salt,
            ),
        },
    );
    let reveal = net.tx(&author, register.clone());
    net.ok(&[mallory_commit, reveal]);
    assert_eq!(
        net.chain.model(&spec().model_id).unwrap().unwrap().owner,
        author.address()
    );
    let why = failure(&mut net, &mallory, register.clone());
    assert!(why.contains("is already registered"), "{why}");
    // A commitment is recorded once.
    let again = Action::CommitRegistration {
        commitment: registration_commitment(
            Asset::Model,
            &spec().model_id,
            &mallory.address(),
            &salt,
        ),
    };
    let why = failure(&mut net, &mallory, again);
    assert!(why.contains("is already recorded"), "{why}");
}

#[test]
fn datasets_are_committed_and_revealed_too_and_a_commitment_binds_its_asset() {
    let author = AccountKey::generate();
    let mut net = Net::new(&[author.address()], TaskParams::default());
    let data = DataRef::of(b"a dataset");
    let salt = sha256(b"salt");
    // A commitment to a model does not register a dataset of the same id.
    commit(&mut net, &author, Asset::Model, &data.hash, &salt);
    let register = Action::RegisterDataset {
        name: "d".into(),
        data,
        license: "CC0".into(),
        salt,
        anchor: None,
    };
    let why = failure(&mut net, &author, register.clone());
    assert!(why.contains("no commitment by"), "{why}");
    commit(&mut net, &author, Asset::Dataset, &data.hash, &salt);
    let tx = net.tx(&author, register);
    net.ok(&[tx]);
    assert_eq!(
        net.chain.dataset(&data.hash).unwrap().unwrap().owner,
        author.address()
    );
}

#[test]
fn a_copied_commitment_cannot_block_the_authors() {
    let author = AccountKey::generate();
    let mallory = AccountKey::generate();
    let mut net = Net::new(
        &[author.address(), mallory.address()],
        TaskParams::default(),
    );
    let salt = sha256(b"the author's secret salt");
    let commitment =
        registration_commitment(Asset::Model, &spec().model_id, &author.address(), &salt);
    // Mallory sees the author's CommitRegistration in the mempool and gets a copy in first.
    let copy = net.tx(&mallory, Action::CommitRegistration { commitment });
    let original = net.tx(&author, Action::CommitRegistration { commitment });
    net.ok(&[copy, original]);
    let register = Action::RegisterModel {
        spec: spec(),
        salt,
        anchor: None,
    };
    // Her copy names the author inside, so it registers nothing for her.
    let why = failure(&mut net, &mallory, register.clone());
    assert!(why.contains("no commitment by"), "{why}");
    let tx = net.tx(&author, register);
    net.ok(&[tx]);
    assert_eq!(
        net.chain.model(&spec().model_id).unwrap().unwrap().owner,
        author.address()
    );
}

#[test]
fn an_unrevealed_commitment_is_pruned_after_its_blocks() {
    const BLOCKS: u64 = 5;
    let author = AccountKey::generate();
    let params = TaskParams {
        registration_commitment_blocks: BLOCKS,
        ..Default::default()
    };
    let mut net = Net::new(&[author.address()], params);
    let (late, in_time) = (DataRef::of(b"late"), DataRef::of(b"in time"));
    let salt = sha256(b"salt");
    commit(&mut net, &author, Asset::Dataset, &late.hash, &salt);
    let committed_at = net.height;
    commit(&mut net, &author, Asset::Dataset, &in_time.hash, &salt);
    let register = |data: DataRef| Action::RegisterDataset {
        name: "d".into(),
        data,
        license: "CC0".into(),
        salt,
        anchor: None,
    };
    // The first is revealable through committed_at + BLOCKS, the second one block longer: in
    // the block after, the first is gone and the second still there.
    while net.height < committed_at + BLOCKS {
        net.ok(&[]);
    }
    let txs = [
        net.tx(&author, register(late)),
        net.tx(&author, register(in_time)),
    ];
    let outcome = net.block(&txs);
    let why = outcome[0].as_ref().expect("too late").to_string();
    assert!(why.contains("unrevealed too long and pruned"), "{why}");
    assert_eq!(outcome[1], None);
    assert!(net.chain.dataset(&late.hash).unwrap().is_none());
    assert!(net.chain.dataset(&in_time.hash).unwrap().is_some());
}

#[test]
fn an_anchor_records_the_enclave_that_hashed_the_file_for_its_owner_only() {
    let author = AccountKey::generate();
    let mallory = AccountKey::generate();
    let mut net = Net::new(
        &[author.address(), mallory.address()],
        TaskParams::default(),
    );
    let anchorer = Worker::generate();
    let fund = net.tx(
        &author,
        Action::Transfer {
            to: anchorer.account.address(),
            amount: 200 * ONE_TOKEN,
        },
    );
    net.ok(&[fund]);
    let enrolment = enroll(&mut net, &anchorer, 100 * ONE_TOKEN, b"anchorer");
    net.ok(&enrolment);

    let id = spec().model_id;
    let salt = sha256(b"salt");
    let register = |anchor| Action::RegisterModel {
        spec: spec(),
        salt,
        anchor,
    };
    commit(&mut net, &author, Asset::Model, &id, &salt);
    commit(&mut net, &mallory, Asset::Model, &id, &salt);
    // An anchor from an enclave no worker registered: refused.
    let stranger = EnclaveKey::generate();
    let forged = Anchor::sign(&stranger, CHAIN, Asset::Model, &id, &author.address());
    let why = failure(&mut net, &author, register(Some(forged)));
    assert!(why.contains("enclave key is not registered"), "{why}");
    // The author's anchor, taken by Mallory: it names another owner.
    let real = Anchor::sign(
        &anchorer.enclave,
        CHAIN,
        Asset::Model,
        &id,
        &author.address(),
    );
    let why = failure(&mut net, &mallory, register(Some(real)));
    assert!(why.contains("it must name this file and owner"), "{why}");
    // An anchor of another file: refused.
    let other = Anchor::sign(
        &anchorer.enclave,
        CHAIN,
        Asset::Model,
        &sha256(b"another file"),
        &author.address(),
    );
    let why = failure(&mut net, &author, register(Some(other)));
    assert!(why.contains("it must name this file and owner"), "{why}");

    let tx = net.tx(&author, register(Some(real)));
    net.ok(&[tx]);
    let model = net.chain.model(&id).unwrap().unwrap();
    let record = model.anchor.expect("anchored");
    assert_eq!(record.worker, anchorer.account.address());
    assert_eq!(record.enclave_key, anchorer.enclave.public());
    assert_eq!(record.tee_kind, verity_tee::TeeKind::Dev);
    assert_eq!(record.measurement, b"anchorer");
    assert_eq!(record.height, model.registered_height);
}
