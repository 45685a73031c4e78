//! Language-model tasks through whole blocks: what a registration must bind, what a generation
//! task must escrow, what a receipt may claim, and the refund of tokens not generated.

use verity_state::{TaskParams, TaskStatus, TxFailure};
use verity_types::{
    AccountKey, Action, Address, DataRef, ExternalWeights, GenerationLimits, Hash, LanguageSpec,
    Mode, ModelSpec, SignedTx, TaskReceipt, ONE_TOKEN,
};

mod common;

use common::{committed_model, enroll, Net, Worker, CHAIN};

const IN_PRICE: u128 = 1_000;
const OUT_PRICE: u128 = 3_000;
const TREASURY: Address = Address([0xee; 20]);

fn params() -> TaskParams {
    TaskParams {
        min_worker_stake: 10 * ONE_TOKEN,
        protocol_treasury: Some(TREASURY),
        ..Default::default()
    }
}

fn language() -> LanguageSpec {
    LanguageSpec {
        graph: DataRef::of(b"graph"),
        weights: None,
        tokenizer: DataRef::of(b"tokenizer.json"),
        generation: DataRef::of(b"generation.json"),
        context: 64,
        input_token_price: IN_PRICE,
        output_token_price: OUT_PRICE,
    }
}

fn spec(language: LanguageSpec) -> ModelSpec {
    ModelSpec {
        model_id: language.model_id(),
        name: "tiny-lm".into(),
        version: "1".into(),
        weights_root: Hash([7; 32]),
        architecture: "transformer".into(),
        param_count: 1_000,
        size: language.graph.size,
        license: "MIT".into(),
        tee_required: false,
        allowed_modes: vec![Mode::Tee, Mode::Op],
        tolerance_ppm: 0,
        language: Some(Box::new(language)),
    }
}

fn generate(
    net: &mut Net,
    user: &AccountKey,
    model: &ModelSpec,
    max_fee: u128,
    generation: Option<GenerationLimits>,
) -> SignedTx {
    submit(net, user, model, Mode::Tee, max_fee, generation)
}

fn submit(
    net: &mut Net,
    user: &AccountKey,
    model: &ModelSpec,
    mode: Mode,
    max_fee: u128,
    generation: Option<GenerationLimits>,
) -> SignedTx {
    net.tx(
        user,
        Action::SubmitTask {
            model_id: model.model_id,
            input: DataRef::of(b"{\"prompt\":\"Once\",\"max_tokens\":8}"),
            mode,
            max_fee,
            deadline_blocks: 50,
            input_commitment: None,
            dataset: None,
            generation,
        },
    )
}

fn limits(prompt_tokens: u32, max_tokens: u32) -> Option<GenerationLimits> {
    Some(GenerationLimits {
        prompt_tokens,
        max_tokens,
    })
}

fn reason(failure: Option<TxFailure>) -> String {
    failure.expect("the transaction must fail").to_string()
}

/// A chain with the model registered and one staked dev worker.
fn setup(owner: &AccountKey, user: &AccountKey) -> (Net, ModelSpec, Worker) {
    let mut net = Net::new(&[owner.address(), user.address()], params());
    let model = spec(language());
    let register = committed_model(&mut net, owner, model.clone());
    let worker = Worker::generate();
    let fund = net.tx(
        owner,
        Action::Transfer {
            to: worker.account.address(),
            amount: 200 * ONE_TOKEN,
        },
    );
    net.ok(&[register, fund]);
    let enrolment = enroll(&mut net, &worker, 100 * ONE_TOKEN, b"m");
    net.ok(&enrolment);
    (net, model, worker)
}

fn receipt(net: &Net, worker: &Worker, task_id: Hash, tokens: u32) -> TaskReceipt {
    let task = net.chain.task(&task_id).unwrap().unwrap();
    let mut r = TaskReceipt {
        task_id,
        model_id: task.model_id,
        input_hash: task.input.hash,
        output_hash: Hash([0x33; 32]),
        output_size: 100,
        trace_root: Hash([0x44; 32]),
        trace_len: tokens,
        worker: worker.account.address(),
        enclave_key: [0; 32],
        signature: [0; 64],
    };
    worker.enclave.sign(CHAIN, &mut r);
    r
}

#[test]
fn a_language_model_binds_its_files_and_refuses_what_it_cannot_verify() {
    let owner = AccountKey::generate();
    let mut net = Net::new(&[owner.address()], params());
    let mut cases: Vec<(ModelSpec, &str)> = Vec::new();
    // Another tokenizer under the id of the first: the id is the files' hash.
    let mut forged = spec(language());
    forged.language.as_mut().unwrap().tokenizer = DataRef::of(b"another tokenizer");
    cases.push((forged, "the hash of its files"));
    let mut zk = spec(language());
    zk.allowed_modes.push(Mode::TeeZk);
    cases.push((zk, "tee_zk is for small integer models"));
    let mut onnx = spec(language());
    onnx.architecture = "onnx".into();
    cases.push((onnx, "architecture"));
    let mut tolerant = spec(language());
    tolerant.tolerance_ppm = 10;
    cases.push((tolerant, "bit-exact"));
    let escape = LanguageSpec {
        weights: Some(ExternalWeights {
            name: "../../keys/validator".into(),
            chunks: vec![DataRef::of(b"weights")],
        }),
        ..language()
    };
    cases.push((spec(escape), "plain file name"));
    let hollow = LanguageSpec {
        weights: Some(ExternalWeights {
            name: "model.onnx.data".into(),
            chunks: Vec::new(),
        }),
        ..language()
    };
    cases.push((spec(hollow), "at least one part"));
    let tiny = LanguageSpec {
        context: 1,
        ..language()
    };
    cases.push((spec(tiny), "holds no prompt and answer"));
    for (spec, expected) in cases {
        // Each from its own account: a commitment names the id, which most cases share.
        let registrant = AccountKey::generate();
        let fund = net.tx(
            &owner,
            Action::Transfer {
                to: registrant.address(),
                amount: ONE_TOKEN,
            },
        );
        net.ok(&[fund]);
        let tx = committed_model(&mut net, &registrant, spec);
        let why = reason(net.block(&[tx]).remove(0));
        assert!(why.contains(expected), "{why:?} should say {expected:?}");
    }
    let tx = committed_model(&mut net, &owner, spec(language()));
    net.ok(&[tx]);
    let model = net.chain.model(&language().model_id()).unwrap().unwrap();
    assert_eq!(model.spec.language, Some(Box::new(language())));
}

#[test]
fn a_generation_escrows_every_token_it_may_use_and_fits_the_context() {
    let (owner, user) = (AccountKey::generate(), AccountKey::generate());
    let (mut net, model, _) = setup(&owner, &user);
    // 10 prompt tokens and 20 to generate: 10 * 1,000 + 20 * 3,000.
    let escrow = 70_000;
    let cases = [
        (escrow - 1, limits(10, 20), "fee"),
        (escrow, None, "name their prompt tokens and max tokens"),
        (escrow, limits(0, 20), "at least one token"),
        (escrow, limits(10, 0), "max_tokens >= 1"),
        (u128::MAX / 2, limits(40, 25), "do not fit"),
        (u128::MAX / 2, limits(u32::MAX, u32::MAX), "do not fit"),
    ];
    for (fee, generation, expected) in cases {
        let tx = generate(&mut net, &user, &model, fee, generation);
        let why = reason(net.block(&[tx]).remove(0));
        assert!(why.contains(expected), "{why:?} should say {expected:?}");
    }
    // An op generation escrows the same (its disputes are in tests/generation_disputes.rs).
    let op = submit(&mut net, &user, &model, Mode::Op, escrow, limits(10, 20));
    let ok = generate(&mut net, &user, &model, escrow, limits(10, 20));
    net.ok(&[op, ok]);
    // Limits on a model that is not a language model are refused too.
    let mut plain = spec(language());
    plain.language = None;
    plain.architecture = "onnx".into();
    plain.model_id = Hash([9; 32]);
    let tx = committed_model(&mut net, &owner, plain.clone());
    net.ok(&[tx]);
    let tx = generate(&mut net, &user, &plain, escrow, limits(10, 20));
    assert!(reason(net.block(&[tx]).remove(0)).contains("not a language model"));
}

#[test]
fn a_generation_pays_for_the_tokens_it_made_and_the_rest_goes_back() {
    let (owner, user) = (AccountKey::generate(), AccountKey::generate());
    let (mut net, model, worker) = setup(&owner, &user);
    let escrow_over = 5_000;
    let tx = generate(
        &mut net,
        &user,
        &model,
        70_000 + escrow_over,
        limits(10, 20),
    );
    let task_id = tx.hash();
    net.ok(&[tx]);
    net.ok(&[]);
    let task = net.chain.task(&task_id).unwrap().unwrap();
    assert_eq!(task.status, TaskStatus::Assigned);
    assert_eq!(task.generation, limits(10, 20));

    // More tokens than the escrow paid for, or none: the receipt is refused.
    for tokens in [21, 0] {
        let r = receipt(&net, &worker, task_id, tokens);
        let tx = net.tx(
            &worker.account,
            Action::SubmitReceipts { receipts: vec![r] },
        );
        let why = reason(net.block(&[tx]).remove(0));
        assert!(why.contains("generates 1 to 20 tokens"), "{why}");
    }

    let user_before = net.balance(&user.address());
    let owner_before = net.balance(&owner.address());
    let r = receipt(&net, &worker, task_id, 7);
    let tx = net.tx(
        &worker.account,
        Action::SubmitReceipts { receipts: vec![r] },
    );
    net.ok(&[tx]);
    let fee = 10 * IN_PRICE + 7 * OUT_PRICE;
    let record = net.chain.record(&task_id).unwrap().unwrap();
    // Anyone can check the record against the enclave's key, without trusting who served it.
    record.verify_signature(CHAIN).unwrap();
    let mut forged = record.clone();
    forged.output_hash = Hash([0x55; 32]);
    assert!(forged.verify_signature(CHAIN).is_err());
    assert!(record.verify_signature("another-chain").is_err());
    assert_eq!(record.settlement.refund, 70_000 + escrow_over - fee);
    assert_eq!(
        record.settlement.worker
            + record.settlement.owner
            + record.settlement.data
            + record.settlement.protocol,
        fee
    );
    assert_eq!(
        net.balance(&user.address()),
        user_before + 70_000 + escrow_over - fee
    );
    assert_eq!(net.balance(&owner.address()), owner_before + fee * 2 / 10);
    assert_eq!(
        net.chain.task(&task_id).unwrap().unwrap().status,
        TaskStatus::Finalized
    );
}

#[test]
fn a_worker_runs_at_most_four_generations_at_once_and_the_rest_wait() {
    let (owner, user) = (AccountKey::generate(), AccountKey::generate());
    let (mut net, model, worker) = setup(&owner, &user);
    let txs: Vec<SignedTx> = (0..6)
        .map(|n| {
            net.tx(
                &user,
                Action::SubmitTask {
                    model_id: model.model_id,
                    input: DataRef::of(&[n]),
                    mode: Mode::Tee,
                    max_fee: 70_000,
                    deadline_blocks: 50,
                    input_commitment: None,
                    dataset: None,
                    generation: limits(10, 20),
                },
            )
        })
        .collect();
    let ids: Vec<Hash> = txs.iter().map(|tx| tx.hash()).collect();
    net.ok(&txs);
    net.ok(&[]);
    let status = |net: &Net, id: &Hash| net.chain.task(id).unwrap().unwrap().status;
    let assigned: Vec<Hash> = ids
        .iter()
        .filter(|id| status(&net, id) == TaskStatus::Assigned)
        .copied()
        .collect();
    assert_eq!(assigned.len(), 4, "four generations at once");
    assert_eq!(
        ids.iter()
            .filter(|id| status(&net, id) == TaskStatus::Pending)
            .count(),
        2
    );
    // One answer frees a slot: a waiting generation takes it.
    let r = receipt(&net, &worker, assigned[0], 3);
    let tx = net.tx(
        &worker.account,
        Action::SubmitReceipts { receipts: vec![r] },
    );
    net.ok(&[tx]);
    for _ in 0..3 {
        net.ok(&[]);
    }
    assert_eq!(
        ids.iter()
            .filter(|id| status(&net, id) == TaskStatus::Assigned)
            .count(),
        4
    );
    assert_eq!(
        ids.iter()
            .filter(|id| status(&net, id) == TaskStatus::Pending)
            .count(),
        1
    );
}
