//! Contributed data through whole blocks: files, proof jobs drawn among data verifiers, proofs,
//! DAT rewards and transfers, and every attack on them: a verifier that was not drawn, a proof
//! signed by another enclave or moved to another file, a score of a plaintext the owner never
//! registered, a reward claimed twice or with another file's proof, and an unanswered job.

use verity_state::{DataJobStatus, TaskParams, TxFailure};
use verity_types::{
    sha256, AccountKey, Action, Address, DataProof, DataRef, DataRejection, DataVerdict, SignedTx,
    ONE_TOKEN,
};

mod common;

use common::{enroll, Net, Worker, CHAIN};

const RSA_KEY: &[u8] = b"an RSA public key, DER";
const FEE: u128 = 3 * ONE_TOKEN;

fn params() -> TaskParams {
    TaskParams {
        min_worker_stake: 10 * ONE_TOKEN,
        ..Default::default()
    }
}

/// Two attested workers serving data verification, funded by `owner`.
fn verifiers(net: &mut Net, owner: &AccountKey) -> [Worker; 2] {
    let workers = [Worker::generate(), Worker::generate()];
    let funding: Vec<SignedTx> = workers
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
    net.ok(&funding);
    let enrolment: Vec<SignedTx> = workers
        .iter()
        .flat_map(|w| enroll(net, w, 100 * ONE_TOKEN, b"verifier"))
        .collect();
    net.ok(&enrolment);
    let serve: Vec<SignedTx> = workers
        .iter()
        .map(|w| serve_data(net, w, &w.enclave))
        .collect();
    net.ok(&serve);
    workers
}

fn serve_data(net: &mut Net, w: &Worker, signer: &verity_types::EnclaveKey) -> SignedTx {
    let signature = signer.sign_data_key(CHAIN, &w.account.address(), RSA_KEY);
    net.tx(
        &w.account,
        Action::ServeData {
            rsa_public_key: RSA_KEY.to_vec(),
            endpoint: "http://127.0.0.1:7400".into(),
            signature,
        },
    )
}

fn add_file(net: &mut Net, owner: &AccountKey, plaintext: &[u8]) -> u64 {
    let before = net.chain.data_files(None, 0, 1_000).unwrap().len() as u64;
    let tx = net.tx(
        owner,
        Action::AddFile {
            data: DataRef {
                encrypted: true,
                ..DataRef::of(&[plaintext, b" encrypted"].concat())
            },
            url: String::new(),
            plaintext_hash: sha256(plaintext),
            evaluation: None,
        },
    );
    net.ok(&[tx]);
    before + 1
}

/// Requests a proof of `file` and finalizes the block that draws its verifier.
fn request(net: &mut Net, who: &AccountKey, file: u64) -> (u64, Address) {
    let tx = net.tx(
        who,
        Action::RequestProof {
            file_id: file,
            fee: FEE,
        },
    );
    net.ok(&[tx]);
    let job_id = (1..)
        .map(|id| net.chain.data_job(id).unwrap())
        .take_while(Option::is_some)
        .count() as u64;
    assert_eq!(
        net.chain.data_job(job_id).unwrap().unwrap().status,
        DataJobStatus::Requested,
        "the verifier is drawn in the next block, not this one"
    );
    net.ok(&[]);
    let job = net.chain.data_job(job_id).unwrap().unwrap();
    assert_eq!(job.status, DataJobStatus::Assigned);
    (job_id, job.verifier.unwrap())
}

fn proof(w: &Worker, job: u64, file: u64, plaintext: &[u8], verdict: DataVerdict) -> DataProof {
    let mut proof = DataProof {
        job_id: job,
        file_id: file,
        plaintext_hash: sha256(plaintext),
        verdict,
        worker: w.account.address(),
        enclave_key: [0; 32],
        signature: [0; 64],
    };
    w.enclave.sign_data_proof(CHAIN, &mut proof);
    proof
}

fn drawn<'a>(workers: &'a [Worker; 2], verifier: &Address) -> (&'a Worker, &'a Worker) {
    if workers[0].account.address() == *verifier {
        (&workers[0], &workers[1])
    } else {
        (&workers[1], &workers[0])
    }
}

fn reason(failure: Option<TxFailure>) -> String {
    failure.expect("the transaction must fail").to_string()
}

#[test]
fn only_the_drawn_verifier_proves_and_a_proof_mints_once_for_its_own_file() {
    let owner = AccountKey::generate();
    let stranger = AccountKey::generate();
    let mut net = Net::new(&[owner.address(), stranger.address()], params());
    let workers = verifiers(&mut net, &owner);
    let clean = add_file(&mut net, &owner, b"a,b\n1,2\n");
    let other = add_file(&mut net, &owner, b"a,b\n3,4\n");

    // A stranger cannot spend a verifier on someone else's file.
    let tx = net.tx(
        &stranger,
        Action::RequestProof {
            file_id: clean,
            fee: FEE,
        },
    );
    assert!(reason(net.block(&[tx]).remove(0)).contains("may not use file 1"));

    let balance_before = net.balance(&owner.address());
    let (job, verifier) = request(&mut net, &owner, clean);
    assert_eq!(
        net.balance(&owner.address()),
        balance_before - FEE - 1,
        "the fee is escrowed (and 1 paid as the transaction fee)"
    );
    let (chosen, passed_over) = drawn(&workers, &verifier);
    let score = DataVerdict::Scored { score: 9_000 };

    // The worker that was not drawn, with a perfectly signed proof: refused.
    let tx = net.tx(
        &passed_over.account,
        Action::AddProof(proof(passed_over, job, clean, b"a,b\n1,2\n", score)),
    );
    assert!(reason(net.block(&[tx]).remove(0)).contains("is not assigned to"));
    // The drawn verifier's proof signed by another enclave: refused.
    let mut forged = proof(passed_over, job, clean, b"a,b\n1,2\n", score);
    forged.worker = chosen.account.address();
    let tx = net.tx(&chosen.account, Action::AddProof(forged));
    assert!(reason(net.block(&[tx]).remove(0)).contains("not registered to the verifier"));
    // Its own proof moved to another file: refused.
    let tx = net.tx(
        &chosen.account,
        Action::AddProof(proof(chosen, job, other, b"a,b\n3,4\n", score)),
    );
    assert!(reason(net.block(&[tx]).remove(0)).contains("is for file 1, not 2"));
    // A score of a plaintext the owner never registered: refused.
    let tx = net.tx(
        &chosen.account,
        Action::AddProof(proof(chosen, job, clean, b"other bytes", score)),
    );
    assert!(reason(net.block(&[tx]).remove(0)).contains("the proof scores plaintext"));
    // A signature over other fields than the ones sent: refused.
    let mut tampered = proof(chosen, job, clean, b"a,b\n1,2\n", score);
    tampered.verdict = DataVerdict::Scored { score: 10_000 };
    let tx = net.tx(&chosen.account, Action::AddProof(tampered));
    assert!(reason(net.block(&[tx]).remove(0)).contains("does not verify"));

    let verifier_before = net.balance(&verifier);
    let tx = net.tx(
        &chosen.account,
        Action::AddProof(proof(chosen, job, clean, b"a,b\n1,2\n", score)),
    );
    net.ok(&[tx]);
    assert_eq!(net.balance(&verifier), verifier_before + FEE - 1);
    assert_eq!(
        net.chain.data_file(clean).unwrap().unwrap().best_score,
        Some(9_000)
    );
    // A second answer to the same job: refused.
    let tx = net.tx(
        &chosen.account,
        Action::AddProof(proof(chosen, job, clean, b"a,b\n1,2\n", score)),
    );
    assert!(reason(net.block(&[tx]).remove(0)).contains("is not waiting for a proof"));

    // Rewards: only the owner, only with this file's proof, only once.
    let reward = |file_id, job_id| Action::RequestReward { file_id, job_id };
    let tx = net.tx(&stranger, reward(clean, job));
    assert!(reason(net.block(&[tx]).remove(0)).contains("only the owner"));
    let tx = net.tx(&owner, reward(other, job));
    assert!(reason(net.block(&[tx]).remove(0)).contains("job 1 proves file 1, not file 2"));
    let tx = net.tx(&owner, reward(clean, job));
    net.ok(&[tx]);
    let minted = 9_000 * (ONE_TOKEN / 10_000);
    assert_eq!(
        net.chain.dat_balance(clean, &owner.address()).unwrap(),
        minted
    );
    assert_eq!(net.chain.dat_balance(other, &owner.address()).unwrap(), 0);
    let tx = net.tx(&owner, reward(clean, job));
    assert!(reason(net.block(&[tx]).remove(0)).contains("already rewarded"));
    assert_eq!(
        net.chain.data_file(clean).unwrap().unwrap().dat_supply,
        minted
    );

    // DAT moves within its class and never beyond the balance.
    let tx = net.tx(
        &owner,
        Action::TransferDat {
            file_id: clean,
            to: stranger.address(),
            amount: minted / 4,
        },
    );
    net.ok(&[tx]);
    assert_eq!(
        net.chain.dat_holdings(&stranger.address(), 0, 10).unwrap(),
        vec![(clean, minted / 4)]
    );
    let tx = net.tx(
        &stranger,
        Action::TransferDat {
            file_id: other,
            to: owner.address(),
            amount: 1,
        },
    );
    assert!(matches!(
        net.block(&[tx]).remove(0),
        Some(TxFailure::InsufficientBalance { .. })
    ));
}

#[test]
fn a_rejected_file_mints_nothing_and_an_unanswered_job_refunds_its_fee() {
    let owner = AccountKey::generate();
    let mut net = Net::new(&[owner.address()], params());
    let workers = verifiers(&mut net, &owner);
    let file = add_file(&mut net, &owner, b"x,y\n");
    let (job, verifier) = request(&mut net, &owner, file);
    let (chosen, _) = drawn(&workers, &verifier);
    let rejection = DataVerdict::Rejected {
        reason: DataRejection::HashMismatch,
    };
    let tx = net.tx(
        &chosen.account,
        Action::AddProof(proof(chosen, job, file, b"not x,y", rejection)),
    );
    net.ok(&[tx]);
    assert_eq!(net.chain.data_file(file).unwrap().unwrap().best_score, None);
    let tx = net.tx(
        &owner,
        Action::RequestReward {
            file_id: file,
            job_id: job,
        },
    );
    assert!(reason(net.block(&[tx]).remove(0)).contains("has no score to reward"));
    assert_eq!(net.chain.dat_balance(file, &owner.address()).unwrap(), 0);

    // A verifier that never answers: after the timeout the fee comes back and the job is shut.
    let before = net.balance(&owner.address());
    let (job, verifier) = request(&mut net, &owner, file);
    let expires = net
        .chain
        .data_job(job)
        .unwrap()
        .unwrap()
        .expires_height
        .unwrap();
    while net.height < expires {
        net.ok(&[]);
    }
    let expired = net.chain.data_job(job).unwrap().unwrap();
    assert_eq!(expired.status, DataJobStatus::Expired);
    assert_eq!(
        net.balance(&owner.address()),
        before - 1,
        "only the transaction fee is spent"
    );
    assert!(net.chain.open_data_jobs(&verifier, 10).unwrap().is_empty());
    // The silent verifier pays in reputation, as a worker that lets a task time out does.
    let rep = net.chain.reputation(&verifier).unwrap();
    assert_eq!((rep.timeouts, rep.score), (1, -params().timeout_penalty));
    let (chosen, _) = drawn(&workers, &verifier);
    let late = proof(
        chosen,
        job,
        file,
        b"x,y\n",
        DataVerdict::Scored { score: 1 },
    );
    let tx = net.tx(&chosen.account, Action::AddProof(late));
    assert!(reason(net.block(&[tx]).remove(0)).contains("is not waiting for a proof"));
}

#[test]
fn a_data_key_must_be_signed_by_the_workers_own_live_enclave() {
    let owner = AccountKey::generate();
    let mut net = Net::new(&[owner.address()], params());
    let w = Worker::generate();
    let fund = net.tx(
        &owner,
        Action::Transfer {
            to: w.account.address(),
            amount: 200 * ONE_TOKEN,
        },
    );
    net.ok(&[fund]);
    let tx = serve_data(&mut net, &w, &w.enclave);
    assert!(reason(net.block(&[tx]).remove(0)).contains("has no live attested enclave"));
    let enrolment = enroll(&mut net, &w, 100 * ONE_TOKEN, b"verifier");
    net.ok(&enrolment);
    let impostor = verity_types::EnclaveKey::generate();
    let tx = serve_data(&mut net, &w, &impostor);
    assert!(reason(net.block(&[tx]).remove(0))
        .contains("not signed by the worker's registered enclave"));
    let tx = serve_data(&mut net, &w, &w.enclave);
    net.ok(&[tx]);
    let record = net
        .chain
        .data_verifier(&w.account.address())
        .unwrap()
        .unwrap();
    assert_eq!(record.rsa_public_key, RSA_KEY);
    assert_eq!(record.enclave_key, w.enclave.public());
    // A task worker that serves no data is never drawn for data.
    let plain = Worker::generate();
    let fund = net.tx(
        &owner,
        Action::Transfer {
            to: plain.account.address(),
            amount: 200 * ONE_TOKEN,
        },
    );
    net.ok(&[fund]);
    let enrolment = enroll(&mut net, &plain, 150 * ONE_TOKEN, b"verifier");
    net.ok(&enrolment);
    let file = add_file(&mut net, &owner, b"1\n");
    for _ in 0..4 {
        let (_, verifier) = request(&mut net, &owner, file);
        assert_eq!(verifier, w.account.address());
    }
}

fn model_spec() -> verity_types::ModelSpec {
    verity_types::ModelSpec {
        model_id: verity_types::Hash([0x11; 32]),
        name: "evaluator".into(),
        version: "1".into(),
        weights_root: verity_types::Hash([0x22; 32]),
        architecture: "mlp".into(),
        param_count: 100,
        size: 1234,
        license: "MIT".into(),
        tee_required: true,
        allowed_modes: vec![verity_types::Mode::Tee],
        tolerance_ppm: 0,
        language: None,
    }
}

/// Runs one TEE task naming `dataset` for `user` to settlement, by whichever worker is drawn.
fn run_task(net: &mut Net, user: &AccountKey, workers: &[Worker; 2], dataset: u64, fee: u128) {
    let submit = net.tx(
        user,
        Action::SubmitTask {
            model_id: model_spec().model_id,
            input: DataRef::of(&fee.to_le_bytes()),
            mode: verity_types::Mode::Tee,
            max_fee: fee,
            deadline_blocks: 100,
            input_commitment: None,
            dataset: Some(dataset),
            generation: None,
        },
    );
    let task_id = submit.hash();
    net.ok(&[submit]);
    net.ok(&[]);
    let task = net.chain.task(&task_id).unwrap().unwrap();
    let (worker, _) = drawn(workers, &task.worker.unwrap());
    let mut receipt = verity_types::TaskReceipt {
        task_id,
        model_id: task.model_id,
        input_hash: task.input.hash,
        output_hash: verity_types::Hash([0x33; 32]),
        output_size: 10,
        trace_root: verity_types::Hash([0x44; 32]),
        trace_len: 5,
        worker: worker.account.address(),
        enclave_key: [0; 32],
        signature: [0; 64],
    };
    worker.enclave.sign(CHAIN, &mut receipt);
    let tx = net.tx(
        &worker.account,
        Action::SubmitReceipts {
            receipts: vec![receipt],
        },
    );
    net.ok(&[tx]);
    let record = net.chain.record(&task_id).unwrap().unwrap();
    assert_eq!(record.settlement.data, fee / 20, "5 % of the fee");
}

#[test]
fn tasks_on_a_file_pay_its_dat_holders_pro_rata_and_only_its_permitted_users_run_them() {
    let owner = AccountKey::generate();
    let user = AccountKey::generate();
    let (holder, later) = (AccountKey::generate(), AccountKey::generate());
    let mut net = Net::new(&[owner.address(), user.address()], params());
    let workers = verifiers(&mut net, &owner);
    let tx = common::committed_model(&mut net, &owner, model_spec());
    net.ok(&[tx]);
    let fee = ONE_TOKEN;

    // No DAT yet: the data share goes to the file's owner.
    let unrewarded = add_file(&mut net, &owner, b"q\n1\n");
    let owner_before = net.balance(&owner.address());
    run_task(&mut net, &owner, &workers, unrewarded, fee);
    assert_eq!(
        net.balance(&owner.address()),
        owner_before - fee - 1 + fee / 5 + fee / 20,
        "it paid the fee and its transaction's; it got the model owner's 20 % and the data 5 %"
    );

    // A file with 1 DAT, a quarter of it given away.
    let file = add_file(&mut net, &owner, b"a\n1\n2\n");
    let (job, verifier) = request(&mut net, &owner, file);
    let (chosen, _) = drawn(&workers, &verifier);
    let scored = DataVerdict::Scored { score: 10_000 };
    let tx = net.tx(
        &chosen.account,
        Action::AddProof(proof(chosen, job, file, b"a\n1\n2\n", scored)),
    );
    net.ok(&[tx]);
    let reward = net.tx(
        &owner,
        Action::RequestReward {
            file_id: file,
            job_id: job,
        },
    );
    let give = net.tx(
        &owner,
        Action::TransferDat {
            file_id: file,
            to: holder.address(),
            amount: ONE_TOKEN / 4,
        },
    );
    net.ok(&[reward, give]);

    // Someone the owner did not permit cannot run tasks on it.
    let tx = net.tx(
        &user,
        Action::SubmitTask {
            model_id: model_spec().model_id,
            input: DataRef::of(b"x"),
            mode: verity_types::Mode::Tee,
            max_fee: fee,
            deadline_blocks: 100,
            input_commitment: None,
            dataset: Some(file),
            generation: None,
        },
    );
    assert!(reason(net.block(&[tx]).remove(0)).contains("may not use file"));
    let permit = net.tx(
        &owner,
        Action::AddPermission {
            file_id: file,
            grantee: user.address(),
        },
    );
    net.ok(&[permit]);
    run_task(&mut net, &user, &workers, file, fee);
    let share = fee / 20;
    let claimable =
        |net: &Net, who: &AccountKey| net.chain.dat_claimable(file, &who.address()).unwrap();
    assert_eq!(claimable(&net, &owner), share * 3 / 4);
    assert_eq!(claimable(&net, &holder), share / 4);

    // The holder claims once; a second claim finds nothing.
    let fund = net.tx(
        &owner,
        Action::Transfer {
            to: holder.address(),
            amount: ONE_TOKEN,
        },
    );
    net.ok(&[fund]);
    let before = net.balance(&holder.address());
    let tx = net.tx(&holder, Action::ClaimDataRewards { file_id: file });
    net.ok(&[tx]);
    assert_eq!(net.balance(&holder.address()), before + share / 4 - 1);
    let tx = net.tx(&holder, Action::ClaimDataRewards { file_id: file });
    assert!(reason(net.block(&[tx]).remove(0)).contains("nothing to claim"));

    // DAT passed on before the next task: the new holder earns from then on, the old one not.
    let pass = net.tx(
        &holder,
        Action::TransferDat {
            file_id: file,
            to: later.address(),
            amount: ONE_TOKEN / 4,
        },
    );
    net.ok(&[pass]);
    run_task(&mut net, &user, &workers, file, fee);
    assert_eq!(claimable(&net, &holder), 0);
    assert_eq!(claimable(&net, &later), share / 4);
    assert_eq!(claimable(&net, &owner), share * 3 / 2);
    // Everything still owed is in the pool.
    let pool = net.balance(&verity_state::modules::data::pool_account());
    assert!(pool >= claimable(&net, &owner) + claimable(&net, &later));
}

/// Attack: an owner pays for job after job on one file and claims each: every scored job used
/// to mint the score's worth again, so DAT had no limit but the owner's fees. A file's DAT is
/// worth its best score, minted once; a better score tops it up to that worth.
#[test]
fn many_jobs_on_one_file_mint_no_more_than_its_best_score() {
    let owner = AccountKey::generate();
    let mut net = Net::new(&[owner.address()], params());
    let workers = verifiers(&mut net, &owner);
    let file = add_file(&mut net, &owner, b"a,b\n1,2\n");
    let per_point = ONE_TOKEN / 10_000;
    let prove = |net: &mut Net, score: u32| -> u64 {
        let (job, verifier) = request(net, &owner, file);
        let (chosen, _) = drawn(&workers, &verifier);
        let verdict = DataVerdict::Scored { score };
        let tx = net.tx(
            &chosen.account,
            Action::AddProof(proof(chosen, job, file, b"a,b\n1,2\n", verdict)),
        );
        net.ok(&[tx]);
        job
    };
    let reward = |net: &mut Net, job_id: u64| {
        let tx = net.tx(
            &owner,
            Action::RequestReward {
                file_id: file,
                job_id,
            },
        );
        net.block(&[tx]).remove(0)
    };
    let first = prove(&mut net, 8_000);
    assert_eq!(reward(&mut net, first), None);
    for _ in 0..3 {
        let again = prove(&mut net, 8_000);
        let refused = reason(reward(&mut net, again));
        assert!(
            refused.contains("all that a score of 8000 is worth"),
            "{refused}"
        );
    }
    let lower = prove(&mut net, 5_000);
    assert!(reward(&mut net, lower).is_some());
    assert_eq!(
        net.chain.dat_balance(file, &owner.address()).unwrap(),
        8_000 * per_point
    );
    let better = prove(&mut net, 9_500);
    assert_eq!(reward(&mut net, better), None);
    assert_eq!(
        net.chain.dat_balance(file, &owner.address()).unwrap(),
        9_500 * per_point
    );
    assert_eq!(
        net.chain.data_file(file).unwrap().unwrap().dat_supply,
        9_500 * per_point
    );
}
