//! Tasks through whole blocks: registration, staking, dev enclaves, assignment, receipts,
//! settlement, reputation, timeouts and every receipt rejection.

use verity_state::{recover, BlockInput, Chain, MemStore, TaskParams, TaskStatus, TxFailure};
use verity_tee::{DevReport, Policy};
use verity_types::{
    AccountKey, Action, Address, DataRef, EnclaveKey, FailureReason, FailureReceipt, Hash, Mode,
    ModelSpec, SignedTx, TaskReceipt, ONE_TOKEN,
};

mod common;

use common::{committed_model, committed_models, enroll, report_data, Net, Worker, CHAIN, T0};

/// Blocks after which a timeout penalty is given back, in these tests.
const FORGIVEN_AFTER: u64 = 100;
const FEE: u128 = 1_000_000;
/// How long an attestation nonce stays usable here.
const NONCE_BLOCKS: u64 = 5;

fn params() -> TaskParams {
    TaskParams {
        min_worker_stake: 10 * ONE_TOKEN,
        assignment_timeout_blocks: 3,
        timeout_forgiven_after_blocks: FORGIVEN_AFTER,
        protocol_treasury: Some(Address([0xee; 20])),
        attestation_nonce_blocks: NONCE_BLOCKS,
        ..Default::default()
    }
}

fn register_worker(net: &mut Net, measurement: &[u8]) -> (Worker, Vec<SignedTx>) {
    let w = Worker::generate();
    let txs = enroll(net, &w, 100 * ONE_TOKEN, measurement);
    (w, txs)
}

/// Workers with the given measurements, funded by `owner` in one block together with the
/// model's registration. Returns the workers' stake and enclave transactions, not yet applied.
fn funded_workers_and_model<const N: usize>(
    net: &mut Net,
    owner: &AccountKey,
    measurements: [&[u8]; N],
) -> ([Worker; N], Vec<SignedTx>) {
    let mut txs = Vec::new();
    let workers = measurements.map(|measurement| {
        let (worker, registration) = register_worker(net, measurement);
        txs.extend(registration);
        worker
    });
    let register = committed_model(net, owner, model_spec());
    // Workers must be funded before they can stake.
    let mut funding: Vec<SignedTx> = workers
        .iter()
        .map(|w| {
            net.tx(
                owner,
                Action::Transfer {
                    to: w.account.address(),
                    amount: 200 * ONE_TOKEN,
                },
            )
        })
        .collect();
    // The registration took its nonce first.
    funding.insert(0, register);
    net.ok(&funding);
    (workers, txs)
}

fn model_spec() -> ModelSpec {
    ModelSpec {
        model_id: Hash([0x11; 32]),
        name: "digits".into(),
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

fn receipt(net: &Net, w: &Worker, task_id: Hash) -> TaskReceipt {
    let task = net.chain.task(&task_id).unwrap().unwrap();
    let mut r = TaskReceipt {
        task_id,
        model_id: task.model_id,
        input_hash: task.input.hash,
        output_hash: Hash([0x33; 32]),
        output_size: 10,
        trace_root: Hash([0x44; 32]),
        trace_len: 5,
        worker: w.account.address(),
        enclave_key: [0; 32],
        signature: [0; 64],
    };
    w.enclave.sign(CHAIN, &mut r);
    r
}

fn submit(net: &mut Net, user: &AccountKey, n: u8) -> SignedTx {
    net.tx(
        user,
        Action::SubmitTask {
            model_id: model_spec().model_id,
            input: DataRef::of(&[n]),
            mode: Mode::Tee,
            max_fee: FEE,
            deadline_blocks: 50,
            input_commitment: None,
            dataset: None,
            generation: None,
        },
    )
}

#[test]
fn tasks_are_assigned_verified_settled_and_scored() {
    let owner = AccountKey::generate();
    let user = AccountKey::generate();
    let mut net = Net::new(&[owner.address(), user.address()], params());
    let ([w1, w2], txs) = funded_workers_and_model(&mut net, &owner, [b"m1", b"m2"]);
    net.ok(&txs);
    let enclave = net.chain.enclave(&w1.account.address()).unwrap().unwrap();
    assert!(enclave.is_dev());

    let submits: Vec<_> = (0..20).map(|n| submit(&mut net, &user, n)).collect();
    let user_before = net.balance(&user.address());
    net.ok(&submits);
    assert_eq!(
        net.balance(&user.address()),
        user_before - 20 * (FEE + 1),
        "escrow and fees taken"
    );
    for tx in &submits {
        let task = net.chain.task(&tx.hash()).unwrap().unwrap();
        assert_eq!(task.status, TaskStatus::Pending, "drawn in the next block");
    }
    net.ok(&[]);
    let mut per_worker = [Vec::new(), Vec::new()];
    for tx in &submits {
        let task = net.chain.task(&tx.hash()).unwrap().unwrap();
        assert_eq!(task.status, TaskStatus::Assigned);
        let worker = task.worker.unwrap();
        let which = usize::from(worker == w2.account.address());
        per_worker[which].push(tx.hash());
    }
    assert!(
        !per_worker[0].is_empty() && !per_worker[1].is_empty(),
        "the draw spreads tasks over both workers"
    );
    assert_eq!(
        net.chain
            .assignments(&w1.account.address(), None, 100)
            .unwrap()
            .len(),
        per_worker[0].len()
    );

    let owner_before = net.balance(&owner.address());
    let w1_before = net.balance(&w1.account.address());
    let batch1: Vec<_> = per_worker[0]
        .iter()
        .map(|id| receipt(&net, &w1, *id))
        .collect();
    let batch2: Vec<_> = per_worker[1]
        .iter()
        .map(|id| receipt(&net, &w2, *id))
        .collect();
    let t1 = net.tx(&w1.account, Action::SubmitReceipts { receipts: batch1 });
    let t2 = net.tx(&w2.account, Action::SubmitReceipts { receipts: batch2 });
    net.ok(&[t1, t2]);
    for tx in &submits {
        let task = net.chain.task(&tx.hash()).unwrap().unwrap();
        assert_eq!(task.status, TaskStatus::Finalized);
        let record = net.chain.record(&tx.hash()).unwrap().unwrap();
        assert!(record.dev_tee);
        assert_eq!(record.output_hash, Hash([0x33; 32]));
    }
    let n1 = per_worker[0].len() as u128;
    assert_eq!(
        net.balance(&owner.address()),
        owner_before + 20 * FEE * 2 / 10
    );
    assert_eq!(
        net.balance(&w1.account.address()),
        w1_before + n1 * FEE * 7 / 10 - 1
    );
    assert_eq!(net.balance(&Address([0xee; 20])), 20 * FEE / 10);
    let rep = net.chain.reputation(&w1.account.address()).unwrap();
    assert_eq!(rep.score, 10 * n1 as i64);
    assert!(net
        .chain
        .assignments(&w1.account.address(), None, 100)
        .unwrap()
        .is_empty());
    let first = net.chain.recent_tasks(None, 5).unwrap();
    assert_eq!(first.len(), 5);
    // Pages follow on from their last task, newest first, without repeats.
    let second = net.chain.recent_tasks(first.last(), 5).unwrap();
    assert_eq!(second.len(), 5);
    assert!(second.iter().all(|t| !first.contains(t)));
    assert!(
        first.last().unwrap().submitted_height >= second.first().map_or(0, |t| t.submitted_height)
    );
}

#[test]
fn bad_receipts_are_rejected_and_leave_nothing() {
    let owner = AccountKey::generate();
    let user = AccountKey::generate();
    let mut net = Net::new(&[owner.address(), user.address()], params());
    let ([w1], mut txs) = funded_workers_and_model(&mut net, &owner, [b"m1"]);
    txs.push(submit(&mut net, &user, 1));
    txs.push(submit(&mut net, &user, 2));
    let (a, b) = (txs[2].hash(), txs[3].hash());
    net.ok(&txs);
    let stranger = Worker {
        account: AccountKey::generate(),
        enclave: EnclaveKey::generate(),
    };

    // Signed by an enclave key nobody registered.
    let mut unregistered = receipt(&net, &w1, a);
    stranger.enclave.sign(CHAIN, &mut unregistered);
    // For a task assigned to somebody else.
    let mut other_worker = receipt(&net, &w1, a);
    other_worker.worker = stranger.account.address();
    w1.enclave.sign(CHAIN, &mut other_worker);
    // An output hash changed after signing.
    let mut tampered = receipt(&net, &w1, a);
    tampered.output_hash.0[0] ^= 1;
    // A task that does not exist.
    let mut missing = receipt(&net, &w1, a);
    missing.task_id = Hash([9; 32]);
    w1.enclave.sign(CHAIN, &mut missing);
    // A good receipt followed by a bad one: the batch applies whole or not at all.
    let good_then_bad = vec![receipt(&net, &w1, b), tampered.clone()];

    let w1_before = net.balance(&w1.account.address());
    let cases = vec![
        vec![unregistered],
        vec![other_worker],
        vec![tampered],
        vec![missing],
        good_then_bad,
    ];
    let txs: Vec<_> = cases
        .into_iter()
        .map(|receipts| net.tx(&w1.account, Action::SubmitReceipts { receipts }))
        .collect();
    for (i, failure) in net.block(&txs).into_iter().enumerate() {
        assert!(
            matches!(failure, Some(TxFailure::ReceiptRejected { .. })),
            "case {i}: {failure:?}"
        );
    }
    for id in [a, b] {
        assert_eq!(
            net.chain.task(&id).unwrap().unwrap().status,
            TaskStatus::Assigned
        );
        assert!(net.chain.record(&id).unwrap().is_none());
    }
    assert_eq!(
        net.balance(&w1.account.address()),
        w1_before - 5,
        "only the fees were charged"
    );
    assert_eq!(
        net.chain.reputation(&w1.account.address()).unwrap().score,
        0
    );
}

#[test]
fn timeouts_reassign_penalise_and_deadlines_refund() {
    let owner = AccountKey::generate();
    let user = AccountKey::generate();
    let mut net = Net::new(&[owner.address(), user.address()], params());
    let ([w1, w2], txs) = funded_workers_and_model(&mut net, &owner, [b"m1", b"m2"]);
    net.ok(&txs);
    // Four tasks: with a penalty of 20, nobody reaches the ban at -100 in the first round.
    let submits: Vec<_> = (0..4).map(|n| submit(&mut net, &user, n)).collect();
    net.ok(&submits);
    net.ok(&[]);
    // Nobody answers: after the timeout every task moves to the other worker.
    let first: Vec<Address> = submits
        .iter()
        .map(|tx| net.chain.task(&tx.hash()).unwrap().unwrap().worker.unwrap())
        .collect();
    for _ in 0..3 {
        net.ok(&[]);
    }
    for (tx, before) in submits.iter().zip(&first) {
        let task = net.chain.task(&tx.hash()).unwrap().unwrap();
        assert_eq!(task.status, TaskStatus::Assigned);
        assert_eq!(task.timed_out, vec![*before]);
        assert_ne!(
            task.worker.unwrap(),
            *before,
            "reassigned to the other worker"
        );
    }
    let timeouts: u64 = [&w1, &w2]
        .iter()
        .map(|w| net.chain.reputation(&w.account.address()).unwrap().timeouts)
        .sum();
    assert_eq!(timeouts, 4);
    // The new worker delivers one; the user cancels one; the rest expire at the deadline.
    let id = submits[0].hash();
    let task = net.chain.task(&id).unwrap().unwrap();
    let w = if task.worker.unwrap() == w1.account.address() {
        &w1
    } else {
        &w2
    };
    let deliver = net.tx(
        &w.account,
        Action::SubmitReceipts {
            receipts: vec![receipt(&net, w, id)],
        },
    );
    let cancel = net.tx(
        &user,
        Action::CancelTask {
            task_id: submits[1].hash(),
        },
    );
    let before = net.balance(&user.address());
    let failures = net.block(&[deliver, cancel]);
    assert_eq!(failures[0], None);
    // An assigned task cannot be withdrawn once its worker may have computed it.
    assert!(
        matches!(&failures[1], Some(TxFailure::Invalid { reason }) if reason.contains("assigned")),
        "{failures:?}"
    );
    assert_eq!(net.balance(&user.address()), before - 1, "only the fee");
    assert_eq!(
        net.chain.task(&id).unwrap().unwrap().status,
        TaskStatus::Finalized
    );
    while net.height < 60 {
        net.ok(&[]);
    }
    assert_eq!(net.balance(&user.address()), before + 3 * FEE - 1);
    for tx in &submits[1..] {
        assert_eq!(
            net.chain.task(&tx.hash()).unwrap().unwrap().status,
            TaskStatus::Expired
        );
    }
    // The unanswered tasks kept timing out until both workers fell to the ban at -100.
    for w in [&w1, &w2] {
        let rep = net.chain.reputation(&w.account.address()).unwrap();
        assert!(rep.banned && rep.score <= -100, "{rep:?}");
    }
    // Penalties are forgiven after FORGIVEN_AFTER blocks: the bans lift and tasks flow again.
    while net.height < 60 + FORGIVEN_AFTER {
        net.ok(&[]);
    }
    for w in [&w1, &w2] {
        let rep = net.chain.reputation(&w.account.address()).unwrap();
        assert!(!rep.banned && rep.score > -100, "{rep:?}");
    }
    let again = submit(&mut net, &user, 9);
    net.ok(std::slice::from_ref(&again));
    net.ok(&[]);
    assert_eq!(
        net.chain.task(&again.hash()).unwrap().unwrap().status,
        TaskStatus::Assigned
    );
}

#[test]
fn several_timeouts_in_one_block_are_each_forgiven() {
    let owner = AccountKey::generate();
    let user = AccountKey::generate();
    let mut net = Net::new(&[owner.address(), user.address()], params());
    let ([w], txs) = funded_workers_and_model(&mut net, &owner, [b"m1"]);
    net.ok(&txs);
    // Three tasks on the only worker time out together, again and again, until the deadline.
    let submits: Vec<_> = (0..3).map(|n| submit(&mut net, &user, n)).collect();
    net.ok(&submits);
    let first_timeout = net.height + 1 + params().assignment_timeout_blocks;
    while net.height < first_timeout {
        net.ok(&[]);
    }
    let rep = net.chain.reputation(&w.account.address()).unwrap();
    assert_eq!(rep.timeouts, 3, "all three in one block");
    assert_eq!(rep.score, -3 * params().timeout_penalty);
    while net.height < first_timeout + 60 + FORGIVEN_AFTER {
        net.ok(&[]);
    }
    let rep = net.chain.reputation(&w.account.address()).unwrap();
    assert!(rep.timeouts > 5, "{rep:?}");
    assert_eq!(rep.score, 0, "every penalty was given back: {rep:?}");
    assert!(!rep.banned);
}

/// A new account with one token from `funder`, for transaction fees.
fn funded_account(net: &mut Net, funder: &AccountKey) -> AccountKey {
    let account = AccountKey::generate();
    let fund = net.tx(
        funder,
        Action::Transfer {
            to: account.address(),
            amount: ONE_TOKEN,
        },
    );
    net.ok(&[fund]);
    account
}

#[test]
fn enclave_registration_checks_binding_and_policy_is_governed() {
    let gov = AccountKey::generate();
    let mut net = Net::new(&[gov.address()], params());
    let worker = funded_account(&mut net, &gov);
    let enclave = EnclaveKey::generate();
    let other = EnclaveKey::generate();
    let vendor = AccountKey::generate();
    let (nonce_height, nonce) = net.nonce();
    let bound_to_other = DevReport::sign(
        &vendor,
        b"m",
        &report_data(&worker.address(), &other.public(), &nonce),
        0,
    );
    let register = |report: &DevReport| Action::RegisterEnclave {
        kind: "dev".into(),
        enclave_key: enclave.public(),
        nonce_height,
        report: report.to_bytes(),
        collateral: vec![],
        certs: vec![],
    };
    let bad = net.tx(&worker, register(&bound_to_other));
    let failures = net.block(&[bad]);
    assert!(
        matches!(&failures[0], Some(TxFailure::Attestation { reason, .. }) if reason.contains("report_data")),
        "{failures:?}"
    );

    // Only governance may change the policy; once dev is off, dev reports are refused.
    let strict = serde_json::to_vec(&Policy::permissive()).unwrap();
    let by_worker = net.tx(
        &worker,
        Action::SetAttestationPolicy {
            policy: strict.clone(),
        },
    );
    let by_gov = net.tx(&gov, Action::SetAttestationPolicy { policy: strict });
    let failures = net.block(&[by_worker, by_gov]);
    assert!(matches!(failures[0], Some(TxFailure::Unauthorized { .. })));
    assert_eq!(failures[1], None);
    let good = DevReport::sign(
        &vendor,
        b"m",
        &report_data(&worker.address(), &enclave.public(), &nonce),
        0,
    );
    let refused = net.tx(&worker, register(&good));
    let failures = net.block(&[refused]);
    assert!(
        matches!(&failures[0], Some(TxFailure::Attestation { reason, .. }) if reason.contains("dev")),
        "{failures:?}"
    );
    assert!(net.chain.enclave(&worker.address()).unwrap().is_none());
}

#[test]
fn evidence_must_bind_a_recent_chain_nonce_whose_block_bounds_its_age() {
    let gov = AccountKey::generate();
    let mut net = Net::new(&[gov.address()], params());
    let worker = funded_account(&mut net, &gov);
    let enclave = EnclaveKey::generate();
    let vendor = AccountKey::generate();
    let now_secs = |net: &Net| (T0 + (net.height + 1) * 1000) / 1000;
    // Evidence for the nonce of `bound_to`, claiming the nonce of `claimed`.
    let register = |net: &mut Net, bound_to: u64, claimed: u64| {
        let nonce = verity_tee::attestation_nonce(CHAIN, bound_to, &[bound_to as u8; 32]);
        let report = DevReport::sign(
            &vendor,
            b"m",
            &report_data(&worker.address(), &enclave.public(), &nonce),
            now_secs(net),
        );
        let tx = net.tx(
            &worker,
            Action::RegisterEnclave {
                kind: "dev".into(),
                enclave_key: enclave.public(),
                nonce_height: claimed,
                report: report.to_bytes(),
                collateral: vec![],
                certs: vec![],
            },
        );
        net.block(&[tx]).remove(0)
    };
    let reason = |failure: Option<TxFailure>| match failure {
        Some(TxFailure::Attestation { reason, .. }) => reason,
        other => panic!("expected an attestation failure, got {other:?}"),
    };
    for _ in 0..3 {
        net.ok(&[]);
    }
    let tip = net.height;
    // The nonce of one block passed off as another's.
    assert!(reason(register(&mut net, tip, tip - 1)).contains("report_data"));
    // A height that has no nonce yet: the block being built, or one not yet made.
    let next = net.height + 1;
    assert!(reason(register(&mut net, next, next)).contains("not a finalized block"));
    assert!(reason(register(&mut net, 0, 0)).contains("not a finalized block"));
    // Too old a nonce.
    for _ in 0..NONCE_BLOCKS {
        net.ok(&[]);
    }
    assert!(reason(register(&mut net, tip, tip)).contains("stale"));
    assert!(net.chain.enclave(&worker.address()).unwrap().is_none());

    // A recent nonce registers.
    let recent = net.height;
    assert_eq!(register(&mut net, recent, recent), None);
    assert!(net.chain.enclave(&worker.address()).unwrap().is_some());

    // With a max age, a nonce within the block window but older than the age is refused, even
    // though the report's own timestamp is fresh: the nonce's block is what proves the age.
    let mut strict = Policy::devnet();
    strict.max_age_secs = Some(2);
    let set = net.tx(
        &gov,
        Action::SetAttestationPolicy {
            policy: serde_json::to_vec(&strict).unwrap(),
        },
    );
    net.ok(&[set]);
    let old = net.height - 2;
    let failure = reason(register(&mut net, old, old));
    assert!(failure.contains("s old"), "{failure}");
    let fresh = net.height;
    assert_eq!(register(&mut net, fresh, fresh), None);
}

/// A proposer controls its block's transaction order and timestamp, not the seed: the same
/// submissions in another order, at another time, land on the same workers.
#[test]
fn order_and_timestamp_do_not_steer_assignment() {
    let owner = AccountKey::generate();
    let user = AccountKey::generate();
    let mut net = Net::new(&[owner.address(), user.address()], params());
    let (_, txs) = funded_workers_and_model(&mut net, &owner, [b"m1", b"m2", b"m3"]);
    net.ok(&txs);
    // One submission per user: a proposer may reorder senders, not one sender's nonces.
    let users: Vec<AccountKey> = (0..30).map(|_| AccountKey::generate()).collect();
    let funding: Vec<SignedTx> = users
        .iter()
        .map(|u| {
            net.tx(
                &user,
                Action::Transfer {
                    to: u.address(),
                    amount: ONE_TOKEN,
                },
            )
        })
        .collect();
    net.ok(&funding);
    let submits: Vec<_> = users
        .iter()
        .enumerate()
        .map(|(n, u)| submit(&mut net, u, n as u8))
        .collect();
    let fork = Chain::open(
        net.chain.store().fork().unwrap(),
        net.chain.genesis().clone(),
    )
    .unwrap();
    let height = net.height + 1;
    let seed = Hash([0x5e; 32]);
    let run = |chain: &Chain<MemStore>, txs: Vec<SignedTx>, timestamp_ms: u64| {
        for (h, txs, ts) in [
            (height, txs, timestamp_ms),
            (height + 1, vec![], timestamp_ms + 1_000),
        ] {
            let raw: Vec<Vec<u8>> = txs.iter().map(SignedTx::encode).collect();
            chain
                .apply_block(
                    &BlockInput {
                        height: h,
                        hash: Hash([h as u8; 32]),
                        parent: Hash::ZERO,
                        timestamp_ms: ts,
                        seed,
                        proposer: None,
                        txs: &raw,
                    },
                    recover,
                )
                .unwrap()
                .unwrap();
        }
    };
    let mut reversed = submits.clone();
    reversed.reverse();
    run(&net.chain, submits.clone(), T0 + height * 1000);
    run(&fork, reversed, T0 + height * 1000 + 700);
    let workers = |chain: &Chain<MemStore>| -> Vec<Address> {
        submits
            .iter()
            .map(|tx| chain.task(&tx.hash()).unwrap().unwrap().worker.unwrap())
            .collect()
    };
    let (a, b) = (workers(&net.chain), workers(&fork));
    assert_eq!(a, b);
    assert!(
        a.iter().collect::<std::collections::BTreeSet<_>>().len() > 1,
        "the draw spreads the tasks"
    );
}

/// Tasks that found no worker wait without cost; once one can serve them they are taken, even
/// behind a long queue of tasks for a model nobody serves.
#[test]
fn waiting_tasks_are_taken_once_a_worker_can_serve_them() {
    let owner = AccountKey::generate();
    let user = AccountKey::generate();
    let mut net = Net::new(&[owner.address(), user.address()], params());
    let nobody = ModelSpec {
        model_id: Hash([0x99; 32]),
        name: "unserved".into(),
        ..model_spec()
    };
    let register = committed_models(&mut net, &owner, vec![model_spec(), nobody.clone()]);
    net.ok(&register);
    // 40 tasks for a model nobody will serve, then one for the model workers will serve.
    let dead: Vec<SignedTx> = (0..40u8)
        .map(|n| {
            net.tx(
                &user,
                Action::SubmitTask {
                    model_id: nobody.model_id,
                    input: DataRef::of(&[n]),
                    mode: Mode::Tee,
                    max_fee: FEE,
                    deadline_blocks: 500,
                    input_commitment: None,
                    dataset: None,
                    generation: None,
                },
            )
        })
        .collect();
    net.ok(&dead);
    let live = submit(&mut net, &user, 200);
    net.ok(std::slice::from_ref(&live));
    for _ in 0..5 {
        net.ok(&[]);
    }
    assert_eq!(
        net.chain.task(&live.hash()).unwrap().unwrap().status,
        TaskStatus::Pending
    );
    // Workers arrive, serving only the first model.
    let mut txs = Vec::new();
    let mut workers = Vec::new();
    for measurement in [b"m1", b"m2"] {
        let (w, registration) = register_worker(&mut net, measurement);
        txs.extend(registration);
        workers.push(w);
    }
    let funding: Vec<SignedTx> = workers
        .iter()
        .map(|w| {
            net.tx(
                &owner,
                Action::Transfer {
                    to: w.account.address(),
                    amount: 200 * ONE_TOKEN,
                },
            )
        })
        .collect();
    net.ok(&funding);
    for w in &workers {
        txs.push(net.tx(
            &w.account,
            Action::ServeModels {
                models: vec![model_spec().model_id],
            },
        ));
    }
    net.ok(&txs);
    let mut blocks = 0;
    while net.chain.task(&live.hash()).unwrap().unwrap().status == TaskStatus::Pending {
        net.ok(&[]);
        blocks += 1;
        assert!(blocks <= 3, "the queue of unservable tasks held it back");
    }
    for tx in &dead {
        assert_eq!(
            net.chain.task(&tx.hash()).unwrap().unwrap().status,
            TaskStatus::Pending
        );
    }
}

/// What a verifying library says (here serde's parse error, or a policy that does not parse)
/// goes to logs, never into the receipt, which enters the state root: upgrading a dependency
/// must not fork the chain.
#[test]
fn receipts_keep_our_reasons_and_leave_dependency_text_out() {
    let gov = AccountKey::generate();
    let mut net = Net::new(&[gov.address()], params());
    let worker = funded_account(&mut net, &gov);
    let (nonce_height, _) = net.nonce();
    let garbage = net.tx(
        &worker,
        Action::RegisterEnclave {
            kind: "dev".into(),
            enclave_key: [7; 32],
            nonce_height,
            report: b"{not json".to_vec(),
            collateral: vec![],
            certs: vec![],
        },
    );
    let bad_policy = net.tx(
        &gov,
        Action::SetAttestationPolicy {
            policy: b"kinds = [".to_vec(),
        },
    );
    net.block(&[garbage.clone(), bad_policy.clone()]);
    let stored = |tx: &SignedTx| {
        let receipt = net.chain.receipt(&tx.hash()).unwrap().unwrap();
        serde_json::to_string(&receipt).unwrap()
    };
    let (garbage, bad_policy) = (stored(&garbage), stored(&bad_policy));
    assert!(
        garbage.contains(r#""reason":"malformed dev report""#),
        "{garbage}"
    );
    assert!(
        bad_policy.contains(r#""reason":"the attestation policy does not parse""#),
        "{bad_policy}"
    );
    for receipt in [&garbage, &bad_policy] {
        assert!(!receipt.contains("line 1"), "{receipt}");
        assert!(!receipt.contains("detail"), "{receipt}");
    }
}

/// A batch in flight when one of its tasks closed still applies: that receipt is skipped with
/// its reason and paid nothing, the others settle.
#[test]
fn a_receipt_for_a_task_that_closed_meanwhile_is_skipped_and_the_batch_applies() {
    let owner = AccountKey::generate();
    let user = AccountKey::generate();
    let mut net = Net::new(&[owner.address(), user.address()], params());
    let ([w], txs) = funded_workers_and_model(&mut net, &owner, [b"m1"]);
    net.ok(&txs);
    let (x, y) = (submit(&mut net, &user, 1), submit(&mut net, &user, 2));
    net.ok(&[x.clone(), y.clone()]);
    net.ok(&[]);
    let first = net.tx(
        &w.account,
        Action::SubmitReceipts {
            receipts: vec![receipt(&net, &w, x.hash())],
        },
    );
    net.ok(&[first]);
    let paid_once = net.balance(&w.account.address());
    let batch = net.tx(
        &w.account,
        Action::SubmitReceipts {
            receipts: vec![receipt(&net, &w, x.hash()), receipt(&net, &w, y.hash())],
        },
    );
    net.ok(std::slice::from_ref(&batch));
    let stored = net.chain.receipt(&batch.hash()).unwrap().unwrap();
    assert_eq!(stored.skipped.len(), 1, "{stored:?}");
    assert_eq!(stored.skipped[0].index, 0);
    assert_eq!(stored.skipped[0].task_id, x.hash());
    assert!(stored.skipped[0].reason.contains("Finalized"));
    assert_eq!(
        net.chain.task(&y.hash()).unwrap().unwrap().status,
        TaskStatus::Finalized
    );
    // Paid for y only (70 % of the fee), less the batch's transaction fee.
    assert_eq!(
        net.balance(&w.account.address()),
        paid_once + FEE * 7 / 10 - 1
    );
}

/// A pending task can be withdrawn, with its whole escrow back.
#[test]
fn a_pending_task_is_cancelled_for_free() {
    let owner = AccountKey::generate();
    let user = AccountKey::generate();
    let mut net = Net::new(&[owner.address(), user.address()], params());
    let register = committed_model(&mut net, &owner, model_spec());
    net.ok(&[register]);
    let task = submit(&mut net, &user, 1);
    net.ok(std::slice::from_ref(&task));
    net.ok(&[]);
    assert_eq!(
        net.chain.task(&task.hash()).unwrap().unwrap().status,
        TaskStatus::Pending,
        "no worker yet"
    );
    let before = net.balance(&user.address());
    let cancel = net.tx(
        &user,
        Action::CancelTask {
            task_id: task.hash(),
        },
    );
    net.ok(&[cancel]);
    assert_eq!(net.balance(&user.address()), before + FEE - 1);
    assert_eq!(
        net.chain.task(&task.hash()).unwrap().unwrap().status,
        TaskStatus::Cancelled
    );
}

/// Governance retires a measurement: enclaves registered with it stop at once. Their receipts
/// are refused and their workers are no longer drawn.
#[test]
fn a_retired_measurement_stops_its_enclaves_at_once() {
    let owner = AccountKey::generate();
    let user = AccountKey::generate();
    let mut net = Net::new(&[owner.address(), user.address()], params());
    let ([old], txs) = funded_workers_and_model(&mut net, &owner, [b"retired"]);
    net.ok(&txs);
    let task = submit(&mut net, &user, 1);
    net.ok(std::slice::from_ref(&task));
    net.ok(&[]);
    assert_eq!(
        net.chain.task(&task.hash()).unwrap().unwrap().worker,
        Some(old.account.address())
    );
    // A second worker, whose measurement stays accepted.
    let (current, registration) = register_worker(&mut net, b"current");
    let fund = net.tx(
        &owner,
        Action::Transfer {
            to: current.account.address(),
            amount: 200 * ONE_TOKEN,
        },
    );
    let mut policy = Policy::devnet();
    policy
        .kinds
        .get_mut(&verity_tee::TeeKind::Dev)
        .unwrap()
        .measurements = Some(vec![verity_tee::HexBytes(b"current".to_vec())]);
    let retire = net.tx(
        &owner,
        Action::SetAttestationPolicy {
            policy: serde_json::to_vec(&policy).unwrap(),
        },
    );
    // One block, so that the task has not timed out yet: funding, registration, retirement.
    let mut block = vec![fund];
    block.extend(registration);
    block.push(retire);
    net.ok(&block);
    let late = net.tx(
        &old.account,
        Action::SubmitReceipts {
            receipts: vec![receipt(&net, &old, task.hash())],
        },
    );
    let failures = net.block(&[late]);
    assert!(
        matches!(&failures[0], Some(TxFailure::ReceiptRejected { reason, .. }) if reason.contains("no longer accepted")),
        "{failures:?}"
    );
    let later: Vec<SignedTx> = (10..30).map(|n| submit(&mut net, &user, n)).collect();
    net.ok(&later);
    net.ok(&[]);
    for tx in &later {
        assert_eq!(
            net.chain.task(&tx.hash()).unwrap().unwrap().worker,
            Some(current.account.address()),
            "only the current measurement's worker is drawn"
        );
    }
}

fn failure(net: &Net, w: &Worker, task_id: Hash, reason: FailureReason) -> FailureReceipt {
    let task = net.chain.task(&task_id).unwrap().unwrap();
    let mut f = FailureReceipt {
        task_id,
        model_id: task.model_id,
        input_hash: task.input.hash,
        worker: w.account.address(),
        reason,
        enclave_key: [0; 32],
        signature: [0; 64],
    };
    w.enclave.sign_failure(CHAIN, &mut f);
    f
}

/// A task whose input was never uploaded: the worker's enclave says so, the task fails, the
/// submitter is refunded less the worker's fee, and nobody's reputation moves. A report for a
/// task assigned to somebody else, or with a forged signature, is refused.
#[test]
fn a_task_that_cannot_run_fails_without_punishing_its_worker() {
    let owner = AccountKey::generate();
    let user = AccountKey::generate();
    let mut net = Net::new(&[owner.address(), user.address()], params());
    let ([w], txs) = funded_workers_and_model(&mut net, &owner, [b"m1"]);
    net.ok(&txs);
    let task = submit(&mut net, &user, 1);
    net.ok(std::slice::from_ref(&task));
    net.ok(&[]);
    let stranger = Worker {
        account: AccountKey::generate(),
        enclave: EnclaveKey::generate(),
    };
    let mut forged = failure(&net, &w, task.hash(), FailureReason::InputUnavailable);
    forged.reason = FailureReason::ModelInvalid;
    let not_theirs = failure(
        &net,
        &stranger,
        task.hash(),
        FailureReason::InputUnavailable,
    );
    let bad = [
        net.tx(
            &w.account,
            Action::ReportFailures {
                failures: vec![forged],
            },
        ),
        net.tx(
            &w.account,
            Action::ReportFailures {
                failures: vec![not_theirs],
            },
        ),
    ];
    for failure in net.block(&bad) {
        assert!(
            matches!(failure, Some(TxFailure::ReceiptRejected { .. })),
            "{failure:?}"
        );
    }
    let (user_before, worker_before) = (
        net.balance(&user.address()),
        net.balance(&w.account.address()),
    );
    let report = net.tx(
        &w.account,
        Action::ReportFailures {
            failures: vec![failure(
                &net,
                &w,
                task.hash(),
                FailureReason::InputUnavailable,
            )],
        },
    );
    net.ok(&[report]);
    let closed = net.chain.task(&task.hash()).unwrap().unwrap();
    assert_eq!(closed.status, TaskStatus::Failed);
    assert_eq!(closed.failure, Some(FailureReason::InputUnavailable));
    let worker_fee = FEE * 500 / 10_000;
    assert_eq!(net.balance(&user.address()), user_before + FEE - worker_fee);
    assert_eq!(
        net.balance(&w.account.address()),
        worker_before + worker_fee - 1,
        "the fee for its trouble, less the report's transaction fee"
    );
    let rep = net.chain.reputation(&w.account.address()).unwrap();
    assert_eq!((rep.score, rep.timeouts, rep.banned), (0, 0, false));
    assert!(net.chain.record(&task.hash()).unwrap().is_none());
}

/// A griefing flood: more tasks than the workers may hold. A full worker is not drawn, so the
/// surplus waits Pending instead of timing the worker out (and banning it, which would stop the
/// network); each delivered result frees a slot that a waiting task takes.
#[test]
fn a_full_worker_is_not_drawn_and_the_surplus_waits_for_its_slots() {
    const CAP: u32 = 3;
    let owner = AccountKey::generate();
    let user = AccountKey::generate();
    let mut net = Net::new(
        &[owner.address(), user.address()],
        TaskParams {
            max_open_assignments: CAP,
            ..params()
        },
    );
    let ([w], txs) = funded_workers_and_model(&mut net, &owner, [b"m1"]);
    net.ok(&txs);
    let submits: Vec<_> = (0..8).map(|n| submit(&mut net, &user, n)).collect();
    net.ok(&submits);
    net.ok(&[]);
    let status = |net: &Net, tx: &SignedTx| net.chain.task(&tx.hash()).unwrap().unwrap().status;
    let assigned = |net: &Net| {
        net.chain
            .assignments(&w.account.address(), None, 100)
            .unwrap()
    };
    assert_eq!(assigned(&net).len(), CAP as usize, "no more than the cap");
    let waiting = submits
        .iter()
        .filter(|tx| status(&net, tx) == TaskStatus::Pending)
        .count();
    assert_eq!(waiting, 8 - CAP as usize);

    let mut finalized = 0;
    for _ in 0..10 {
        let open = assigned(&net);
        assert!(open.len() <= CAP as usize, "{} open", open.len());
        if open.is_empty() {
            break;
        }
        let receipts = open.iter().map(|t| receipt(&net, &w, t.task_id)).collect();
        let batch = net.tx(&w.account, Action::SubmitReceipts { receipts });
        net.ok(&[batch]);
        finalized += open.len();
        // The freed slots go to waiting tasks at the next block's retries.
        net.ok(&[]);
    }
    assert_eq!(finalized, 8);
    assert!(submits
        .iter()
        .all(|tx| status(&net, tx) == TaskStatus::Finalized));
    let rep = net.chain.reputation(&w.account.address()).unwrap();
    assert_eq!(rep.timeouts, 0, "never handed more than it could hold");
    assert!(!rep.banned);
}
