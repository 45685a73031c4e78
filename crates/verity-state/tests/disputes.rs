//! OP mode through whole blocks with the real digits model: results wait out their window,
//! disputes are played to the end with real traces and a real one-step re-execution, the loser
//! is slashed, a disproven task runs again, and a side that stops answering loses on its clock.

use std::sync::Arc;

use verity_infer::merkle;
use verity_infer::{Engine, Model, StepWitness};
use verity_state::modules::disputes::{dispute_id, DisputeStatus};
use verity_state::modules::game::{Game, Phase, DEPTH};
use verity_state::{ModelSource, TaskParams, TaskStatus, TxFailure};
use verity_types::{
    sha256, AccountKey, Action, Address, DataRef, Hash, Mode, ModelSpec, SignedTx, TaskReceipt,
    ONE_TOKEN,
};

mod common;

use common::{enroll, Net, Worker, CHAIN};

const WINDOW: u64 = 5;
const CLOCK: u64 = 6;
const STAKE: u128 = 100 * ONE_TOKEN;
const BOND: u128 = 20 * ONE_TOKEN;
const MAX_FEE: u128 = ONE_TOKEN;

fn model_bytes() -> Vec<u8> {
    std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../models/digits_mlp.onnx"
    ))
    .unwrap()
}

fn input_bytes() -> Vec<u8> {
    std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../models/samples/digit_0_label_7.json"
    ))
    .unwrap()
}

fn params() -> TaskParams {
    TaskParams {
        min_worker_stake: 10 * ONE_TOKEN,
        protocol_treasury: Some(Address([0xee; 20])),
        challenge_window_blocks: WINDOW,
        dispute_clock_blocks: CLOCK,
        min_challenger_bond: 10 * ONE_TOKEN,
        dispute_bond: ONE_TOKEN,
        ..Default::default()
    }
}

/// A chain whose validators read the digits model's file.
fn net(funded: &[Address], params: TaskParams) -> Net {
    let bytes = model_bytes();
    let id = sha256(&bytes);
    let models = ModelSource::new(move |wanted| (*wanted == id).then(|| bytes.clone()));
    Net::with_models(funded, params, models)
}

/// What the test's parties know: the model, the input, and the honest trace's leaves.
struct Setup {
    net: Net,
    user: AccountKey,
    workers: Vec<Worker>,
    challenger: AccountKey,
    model: Arc<Model>,
    model_id: Hash,
    honest: Vec<Hash>,
    engine: Engine,
}

fn setup(workers: usize) -> Setup {
    setup_tolerant(workers, 0)
}

/// `setup` with the model registered to tolerate `tolerance_ppm`.
fn setup_tolerant(workers: usize, tolerance_ppm: u32) -> Setup {
    setup_with(workers, tolerance_ppm, params(), BOND)
}

/// `setup` under `params`, the challenger bonding `bond`.
fn setup_with(workers: usize, tolerance_ppm: u32, params: TaskParams, bond: u128) -> Setup {
    let owner = AccountKey::generate();
    let user = AccountKey::generate();
    let challenger = AccountKey::generate();
    let staff: Vec<Worker> = (0..workers).map(|_| Worker::generate()).collect();
    let mut funded = vec![owner.address(), user.address(), challenger.address()];
    funded.extend(staff.iter().map(|w| w.account.address()));
    let mut net = net(&funded, params);
    let bytes = model_bytes();
    let model = Arc::new(Model::from_bytes(&bytes).unwrap());
    let summary = Model::parse(&bytes).unwrap().summary();
    let mut txs = vec![
        common::committed_model(
            &mut net,
            &owner,
            ModelSpec {
                model_id: summary.model_id,
                name: "digits".into(),
                version: "1".into(),
                weights_root: summary.weights_root,
                architecture: "mlp".into(),
                param_count: summary.parameters,
                size: bytes.len() as u64,
                license: "MIT".into(),
                tee_required: false,
                allowed_modes: vec![Mode::Tee, Mode::Op],
                tolerance_ppm,
                language: None,
            },
        ),
        net.tx(&challenger, Action::RegisterChallenger { amount: bond }),
    ];
    for w in &staff {
        txs.extend(enroll(&mut net, w, STAKE, b"m"));
    }
    net.ok(&txs);
    let engine = Engine::new(1).unwrap();
    let input = model.task_inputs(&input_bytes()).unwrap();
    let trace = engine.run(&model, input, true).unwrap().trace.unwrap();
    Setup {
        net,
        user,
        workers: staff,
        challenger,
        model_id: summary.model_id,
        model,
        honest: trace.leaves().to_vec(),
        engine,
    }
}

impl Setup {
    /// Submits an OP task and runs the block that assigns it; returns its id and worker.
    fn op_task(&mut self) -> (Hash, usize) {
        let tx = self.net.tx(
            &self.user,
            Action::SubmitTask {
                model_id: self.model_id,
                input: DataRef::of(&input_bytes()),
                mode: Mode::Op,
                max_fee: MAX_FEE,
                deadline_blocks: 1_000,
                input_commitment: None,
                dataset: None,
                generation: None,
            },
        );
        self.net.ok(std::slice::from_ref(&tx));
        self.net.ok(&[]);
        let task = self.net.chain.task(&tx.hash()).unwrap().unwrap();
        assert_eq!(task.status, TaskStatus::Assigned);
        let worker = task.worker.unwrap();
        let index = self
            .workers
            .iter()
            .position(|w| w.account.address() == worker)
            .unwrap();
        (tx.hash(), index)
    }

    /// The id of the challenger's dispute of `task`'s current result.
    fn id_of(&self, task: Hash) -> Hash {
        let worker = self.net.chain.record(&task).unwrap().unwrap().worker;
        dispute_id(&task, &worker, &self.challenger.address())
    }

    /// The challenger's OpenDispute of `task` with its trace root and length.
    fn open_dispute(&mut self, task: Hash, trace_root: Hash, trace_len: u32) -> SignedTx {
        let challenger = self.challenger.clone();
        self.net.tx(
            &challenger,
            Action::OpenDispute {
                task_id: task,
                trace_root,
                trace_len,
            },
        )
    }

    /// The assigned worker's receipt for `leaves`.
    fn receipt(&mut self, task: Hash, worker: usize, leaves: &[Hash]) -> SignedTx {
        self.receipt_of(task, worker, leaves, b"output")
    }

    /// The assigned worker's receipt for `leaves` and the output document `output`.
    fn receipt_of(
        &mut self,
        task: Hash,
        worker: usize,
        leaves: &[Hash],
        output: &[u8],
    ) -> SignedTx {
        let w = &self.workers[worker];
        let mut receipt = TaskReceipt {
            task_id: task,
            model_id: self.model_id,
            input_hash: sha256(&input_bytes()),
            output_hash: sha256(output),
            output_size: output.len() as u64,
            trace_root: merkle::root(leaves),
            trace_len: leaves.len() as u32,
            worker: w.account.address(),
            enclave_key: [0; 32],
            signature: [0; 64],
        };
        w.enclave.sign(CHAIN, &mut receipt);
        let account = self.workers[worker].account.clone();
        self.net.tx(
            &account,
            Action::SubmitReceipts {
                receipts: vec![receipt],
            },
        )
    }

    /// Plays the dissection to its one leaf, each side revealing from its own leaves; returns
    /// the disputed step.
    fn dissect(
        &mut self,
        id: Hash,
        worker: usize,
        worker_leaves: &[Hash],
        challenger_leaves: &[Hash],
    ) -> u64 {
        loop {
            let game = self.net.chain.dispute(&id).unwrap().unwrap().game.unwrap();
            if game.phase != Phase::Dissect {
                return game.start;
            }
            let of = |leaves: &[Hash]| revealed_children(&game, leaves);
            let account = self.workers[worker].account.clone();
            let challenger = self.challenger.clone();
            let txs = [
                self.net.tx(
                    &account,
                    Action::RevealChildren {
                        dispute_id: id,
                        hashes: of(worker_leaves),
                    },
                ),
                self.net.tx(
                    &challenger,
                    Action::RevealChildren {
                        dispute_id: id,
                        hashes: of(challenger_leaves),
                    },
                ),
            ];
            self.net.ok(&txs);
        }
    }

    /// Plays the dissection to its one leaf and has the worker send the honest one-step.
    fn dissect_and_one_step(
        &mut self,
        id: Hash,
        worker: usize,
        worker_leaves: &[Hash],
        challenger_leaves: &[Hash],
    ) -> u64 {
        let step = self.dissect(id, worker, worker_leaves, challenger_leaves);
        let account = self.workers[worker].account.clone();
        let witness = self.witness(step);
        let one_step = self.net.tx(
            &account,
            Action::OneStep {
                dispute_id: id,
                witness,
                input: input_bytes(),
            },
        );
        self.net.ok(&[one_step]);
        step
    }

    /// The honest witness of `step`, as anyone who ran the model can build it.
    fn witness(&self, step: u64) -> Vec<u8> {
        let input = self.model.task_inputs(&input_bytes()).unwrap();
        let (witness, _) = self
            .model
            .step_witness(&self.engine, input, step as usize)
            .unwrap();
        witness.encode()
    }
}

/// What a side holding `leaves` reveals in `game`'s round: its hashes of the span's
/// descendants [`DEPTH`] levels down.
fn revealed_children(game: &Game, leaves: &[Hash]) -> Vec<Hash> {
    game.span()
        .descendants(DEPTH)
        .iter()
        .map(|p| merkle::root(&leaves[p.start as usize..(p.start + p.len) as usize]))
        .collect()
}

/// The leaves of a worker that corrupted step `from`'s output: it and every later step differ.
fn corrupted(honest: &[Hash], from: usize) -> Vec<Hash> {
    let mut leaves = honest.to_vec();
    for (i, leaf) in leaves.iter_mut().enumerate().skip(from) {
        *leaf = sha256(&[b"lie".as_slice(), &(i as u64).to_le_bytes()].concat());
    }
    leaves
}

#[test]
fn an_unchallenged_op_result_settles_when_its_window_ends() {
    let mut s = setup(1);
    let user_before = s.net.balance(&s.user.address());
    let (task, worker) = s.op_task();
    let honest = s.honest.clone();
    let receipt = s.receipt(task, worker, &honest);
    s.net.ok(&[receipt]);
    let record = s.net.chain.record(&task).unwrap().unwrap();
    assert_eq!(
        record.status,
        verity_state::modules::records::RecordStatus::Submitted
    );
    let until = record.challenge_until.unwrap();
    assert_eq!(until, s.net.height + WINDOW);
    // Nothing is paid inside the window.
    let worker_address = s.workers[worker].account.address();
    let worker_before = s.net.balance(&worker_address);
    while s.net.height < until {
        s.net.ok(&[]);
        assert_eq!(
            s.net.chain.task(&task).unwrap().unwrap().status,
            TaskStatus::Challengeable
        );
    }
    s.net.ok(&[]);
    let task_now = s.net.chain.task(&task).unwrap().unwrap();
    assert_eq!(task_now.status, TaskStatus::Finalized);
    assert_eq!(
        s.net.balance(&worker_address),
        worker_before + MAX_FEE * 7 / 10
    );
    assert_eq!(s.net.chain.reputation(&worker_address).unwrap().score, 10);
    assert_eq!(s.net.balance(&s.user.address()), user_before - MAX_FEE - 1);
    // Too late to dispute now.
    let late = s.open_dispute(task, sha256(b"other"), honest.len() as u32);
    assert!(matches!(
        s.net.block(&[late])[0],
        Some(TxFailure::Invalid { .. })
    ));
}

#[test]
fn a_lying_worker_is_disproven_slashed_and_its_task_runs_again() {
    let mut s = setup(2);
    let user_before = s.net.balance(&s.user.address());
    let (task, liar) = s.op_task();
    let lie = corrupted(&s.honest, 1);
    let receipt = s.receipt(task, liar, &lie);
    s.net.ok(&[receipt]);
    let honest = s.honest.clone();
    let challenger = s.challenger.clone();
    let open = s.open_dispute(task, merkle::root(&honest), honest.len() as u32);
    s.net.ok(&[open]);
    let id = s.id_of(task);
    let liar_address = s.workers[liar].account.address();
    // The worker's stake cannot leave while the dispute is open.
    let account = s.workers[liar].account.clone();
    let unstake = s.net.tx(&account, Action::Unstake { amount: 1 });
    assert!(matches!(
        s.net.block(&[unstake])[0],
        Some(TxFailure::Invalid { .. })
    ));
    let step = s.dissect(id, liar, &lie, &honest);
    assert_eq!(step, 1, "the first corrupted step");
    // A witness for another step, or a forged input, is refused and the game goes on.
    let wrong_step = s.witness(0);
    let forged = s.net.tx(
        &challenger,
        Action::OneStep {
            dispute_id: id,
            witness: wrong_step,
            input: input_bytes(),
        },
    );
    assert!(matches!(
        s.net.block(&[forged])[0],
        Some(TxFailure::Invalid { .. })
    ));
    let witness = s.witness(step);
    let other_input = s.net.tx(
        &challenger,
        Action::OneStep {
            dispute_id: id,
            witness: witness.clone(),
            input: b"[[0]]".to_vec(),
        },
    );
    assert!(matches!(
        s.net.block(&[other_input])[0],
        Some(TxFailure::Invalid { .. })
    ));
    let challenger_before = s.net.balance(&challenger.address());
    let one_step = s.net.tx(
        &challenger,
        Action::OneStep {
            dispute_id: id,
            witness,
            input: input_bytes(),
        },
    );
    s.net.ok(&[one_step]);
    let dispute = s.net.chain.dispute(&id).unwrap().unwrap();
    assert_eq!(dispute.status, DisputeStatus::ChallengerWon, "{dispute:?}");
    // 5 % of the stake: half to the challenger, half burned.
    assert_eq!(s.net.stake(&liar_address), STAKE - STAKE / 20);
    assert_eq!(
        s.net.balance(&challenger.address()),
        challenger_before - 1 + STAKE / 40
    );
    let rep = s.net.chain.reputation(&liar_address).unwrap();
    assert_eq!((rep.score, rep.frauds), (-50, 1));
    let stats = s
        .net
        .chain
        .challenger(&challenger.address())
        .unwrap()
        .unwrap();
    assert_eq!(
        (
            stats.disputes_won,
            stats.open_disputes,
            stats.locked,
            stats.reputation
        ),
        (1, 0, 0, 10)
    );
    // No move after the verdict.
    let late = s.net.tx(
        &challenger,
        Action::RevealChildren {
            dispute_id: id,
            hashes: vec![honest[1]],
        },
    );
    assert!(matches!(
        s.net.block(&[late])[0],
        Some(TxFailure::Invalid { .. })
    ));
    // The task runs again, on the other worker, from the same escrow.
    let task_now = s.net.chain.task(&task).unwrap().unwrap();
    assert_eq!(task_now.status, TaskStatus::Assigned);
    assert_eq!(task_now.disproven, vec![liar_address]);
    let other = 1 - liar;
    assert_eq!(task_now.worker, Some(s.workers[other].account.address()));
    let receipt = s.receipt(task, other, &honest);
    s.net.ok(&[receipt]);
    for _ in 0..=WINDOW {
        s.net.ok(&[]);
    }
    let record = s.net.chain.record(&task).unwrap().unwrap();
    assert_eq!(record.trace_root, merkle::root(&honest));
    assert_eq!(
        s.net.chain.task(&task).unwrap().unwrap().status,
        TaskStatus::Finalized
    );
    // The submitter paid the escrow once (and its one transaction's fee).
    assert_eq!(s.net.balance(&s.user.address()), user_before - MAX_FEE - 1);
}

#[test]
fn a_frivolous_challenger_loses_its_bond_share_to_the_worker() {
    let mut s = setup(1);
    let (task, worker) = s.op_task();
    let honest = s.honest.clone();
    let receipt = s.receipt(task, worker, &honest);
    s.net.ok(&[receipt]);
    let made_up = corrupted(&honest, 3);
    let challenger = s.challenger.clone();
    let open = s.open_dispute(task, merkle::root(&made_up), honest.len() as u32);
    s.net.ok(&[open]);
    let id = s.id_of(task);
    let worker_address = s.workers[worker].account.address();
    let before = s.net.chain.account(&worker_address).unwrap();
    let step = s.dissect_and_one_step(id, worker, &honest, &made_up);
    assert_eq!(step, 3);
    // Each of the worker's moves paid a fee of 1.
    let fees = u128::from(s.net.chain.account(&worker_address).unwrap().nonce - before.nonce);
    let dispute = s.net.chain.dispute(&id).unwrap().unwrap();
    assert_eq!(dispute.status, DisputeStatus::WorkerWon);
    let stats = s
        .net
        .chain
        .challenger(&challenger.address())
        .unwrap()
        .unwrap();
    assert_eq!(stats.bond, BOND - BOND / 20);
    assert_eq!((stats.disputes_lost, stats.reputation), (1, -10));
    assert_eq!(
        s.net.balance(&worker_address),
        before.balance - fees + BOND / 40
    );
    // The result stands and settles when its window ends.
    let until = s
        .net
        .chain
        .record(&task)
        .unwrap()
        .unwrap()
        .challenge_until
        .unwrap();
    while s.net.height <= until {
        assert_eq!(
            s.net.chain.task(&task).unwrap().unwrap().status,
            TaskStatus::Challengeable
        );
        s.net.ok(&[]);
    }
    assert_eq!(
        s.net.chain.task(&task).unwrap().unwrap().status,
        TaskStatus::Finalized
    );
}

#[test]
fn a_side_that_stops_answering_loses_on_its_clock() {
    for silent_worker in [true, false] {
        let mut s = setup(1);
        let (task, worker) = s.op_task();
        let honest = s.honest.clone();
        let lie = corrupted(&honest, 2);
        let worker_leaves = if silent_worker { &lie } else { &honest };
        let challenger_leaves = if silent_worker { &honest } else { &lie };
        let receipt = s.receipt(task, worker, worker_leaves);
        s.net.ok(&[receipt]);
        let challenger = s.challenger.clone();
        let open = s.open_dispute(task, merkle::root(challenger_leaves), honest.len() as u32);
        s.net.ok(&[open]);
        let id = s.id_of(task);
        // Only the honest side moves; the other never does.
        let game = s.net.chain.dispute(&id).unwrap().unwrap().game.unwrap();
        let hashes = revealed_children(&game, &honest);
        let mover = if silent_worker {
            challenger.clone()
        } else {
            s.workers[worker].account.clone()
        };
        let reveal = s.net.tx(
            &mover,
            Action::RevealChildren {
                dispute_id: id,
                hashes,
            },
        );
        s.net.ok(&[reveal]);
        for _ in 0..CLOCK + 1 {
            s.net.ok(&[]);
        }
        let dispute = s.net.chain.dispute(&id).unwrap().unwrap();
        let expected = if silent_worker {
            DisputeStatus::ChallengerWon
        } else {
            DisputeStatus::WorkerWon
        };
        assert_eq!(dispute.status, expected, "silent worker: {silent_worker}");
        assert!(dispute.verdict.unwrap().contains("clock ran out"));
        assert!(dispute.resolved_height.unwrap() <= dispute.opened_height + CLOCK + 2);
    }
}

#[test]
fn an_op_task_too_large_to_dispute_is_refused() {
    let mut s = setup(1);
    let user = s.user.clone();
    let tx = s.net.tx(
        &user,
        Action::SubmitTask {
            model_id: s.model_id,
            input: DataRef {
                hash: sha256(b"big"),
                size: verity_types::MAX_ONE_STEP_INPUT_BYTES as u64 + 1,
                encrypted: false,
            },
            mode: Mode::Op,
            max_fee: MAX_FEE,
            deadline_blocks: 100,
            input_commitment: None,
            dataset: None,
            generation: None,
        },
    );
    assert!(matches!(
        s.net.block(&[tx])[0],
        Some(TxFailure::Invalid { .. })
    ));
}

#[test]
fn a_wrong_trace_length_is_settled_at_once_by_the_model() {
    let mut s = setup(1);
    let (task, worker) = s.op_task();
    let honest = s.honest.clone();
    let receipt = s.receipt(task, worker, &honest);
    s.net.ok(&[receipt]);
    let longer: Vec<Hash> = honest.iter().copied().chain([sha256(b"extra")]).collect();
    let open = s.open_dispute(task, merkle::root(&longer), longer.len() as u32);
    s.net.ok(&[open]);
    let dispute = s.net.chain.dispute(&s.id_of(task)).unwrap().unwrap();
    assert_eq!(dispute.status, DisputeStatus::WorkerWon);
    // Checking the step witness decoder is wired: garbage is refused without a panic.
    assert!(StepWitness::decode(&[1, 2, 3]).is_err());
}

/// The output document of the model on the test input: honest, or with node `corrupt` changed.
fn output_document(s: &Setup, corrupt: Option<usize>) -> Vec<u8> {
    let input = s.model.task_inputs(&input_bytes()).unwrap();
    let run = match corrupt {
        Some(step) => s.engine.run_corrupted(&s.model, input, step).unwrap(),
        None => s.engine.run(&s.model, input, true).unwrap(),
    };
    serde_json::to_vec(&verity_infer::output::document(&s.model, &run)).unwrap()
}

/// A tolerant model's OP result disputed by the challenger: the task, its worker, the dispute
/// id and the referee's index among the workers.
fn tolerant_dispute(s: &mut Setup, worker_output: &[u8]) -> (Hash, usize, Hash, usize) {
    let (task, worker) = s.op_task();
    let honest = s.honest.clone();
    let receipt = s.receipt_of(task, worker, &corrupted(&honest, 1), worker_output);
    s.net.ok(&[receipt]);
    let open = s.open_dispute(task, merkle::root(&honest), honest.len() as u32);
    let id = s.id_of(task);
    // Nobody reveals before the referee is known: it is drawn with the next block's seed, which
    // neither the challenger nor the proposer of the opening block knew.
    let account = s.workers[worker].account.clone();
    let early = s.net.tx(
        &account,
        Action::RevealOutput {
            dispute_id: id,
            output: worker_output.to_vec(),
        },
    );
    let failures = s.net.block(&[open, early]);
    assert_eq!(failures[0], None);
    assert!(
        reason_of(&failures[1]).contains("drawn in the block after its opening"),
        "{failures:?}"
    );
    let dispute = s.net.chain.dispute(&id).unwrap().unwrap();
    assert!(
        dispute.game.is_none(),
        "a tolerant model's dispute has no dissection"
    );
    assert!(dispute.referee.is_none());
    s.net.ok(&[]);
    let check = s.net.chain.dispute(&id).unwrap().unwrap().referee.unwrap();
    assert_eq!(check.deadline, dispute.opened_height + 1 + CLOCK);
    assert_ne!(check.referee, s.workers[worker].account.address());
    let referee = s
        .workers
        .iter()
        .position(|w| w.account.address() == check.referee)
        .unwrap();
    (task, worker, id, referee)
}

fn reason_of(failure: &Option<TxFailure>) -> String {
    failure
        .as_ref()
        .map(ToString::to_string)
        .unwrap_or_default()
}

fn reveal(s: &mut Setup, who: &AccountKey, id: Hash, output: &[u8]) -> Option<TxFailure> {
    let tx = s.net.tx(
        who,
        Action::RevealOutput {
            dispute_id: id,
            output: output.to_vec(),
        },
    );
    s.net.block(&[tx]).remove(0)
}

#[test]
fn a_tolerant_result_beyond_tolerance_loses_to_the_referees_run() {
    let mut s = setup_tolerant(3, 1_000);
    let lie = output_document(&s, Some(1));
    let honest = output_document(&s, None);
    let (task, liar, id, referee) = tolerant_dispute(&mut s, &lie);
    let liar_key = s.workers[liar].account.clone();
    let referee_key = s.workers[referee].account.clone();
    let stake_before = s.net.stake(&liar_key.address());
    // Only the parties reveal, each only what it committed to or ran.
    let challenger = s.challenger.clone();
    assert!(matches!(
        reveal(&mut s, &challenger, id, &honest),
        Some(TxFailure::Unauthorized { .. })
    ));
    assert!(matches!(
        reveal(&mut s, &liar_key, id, &honest),
        Some(TxFailure::Invalid { .. })
    ));
    assert!(matches!(
        reveal(&mut s, &referee_key, id, b"{}"),
        Some(TxFailure::Invalid { .. })
    ));
    assert_eq!(reveal(&mut s, &liar_key, id, &lie), None);
    assert_eq!(reveal(&mut s, &referee_key, id, &honest), None);
    let dispute = s.net.chain.dispute(&id).unwrap().unwrap();
    assert_eq!(dispute.status, DisputeStatus::ChallengerWon);
    assert!(dispute.verdict.unwrap().contains("differs"));
    assert_eq!(s.net.stake(&liar_key.address()), stake_before / 100 * 95);
    assert_eq!(
        s.net.chain.reputation(&liar_key.address()).unwrap().score,
        -50
    );
    // The referee's run counts as work done; the task runs again without the liar.
    assert_eq!(
        s.net
            .chain
            .reputation(&referee_key.address())
            .unwrap()
            .score,
        10
    );
    s.net.ok(&[]);
    let again = s.net.chain.task(&task).unwrap().unwrap();
    assert_eq!(again.status, TaskStatus::Assigned);
    assert_ne!(again.worker, Some(liar_key.address()));
}

#[test]
fn a_result_within_tolerance_stands_and_the_challenger_pays() {
    let mut s = setup_tolerant(3, 1_000);
    let honest = output_document(&s, None);
    // The worker's values differ from the referee's in the last digits only: within 1000 ppm.
    let mut doc: serde_json::Value = serde_json::from_slice(&honest).unwrap();
    let first = doc["outputs"][0]["data"][0].as_f64().unwrap();
    doc["outputs"][0]["data"][0] = serde_json::json!(first * (1.0 + 1e-4));
    let nearby = serde_json::to_vec(&doc).unwrap();
    assert_ne!(nearby, honest);
    let (task, worker, id, referee) = tolerant_dispute(&mut s, &nearby);
    let worker_key = s.workers[worker].account.clone();
    let referee_key = s.workers[referee].account.clone();
    let bond_before = s
        .net
        .chain
        .challenger(&s.challenger.address())
        .unwrap()
        .unwrap()
        .bond;
    assert_eq!(reveal(&mut s, &referee_key, id, &honest), None);
    assert_eq!(reveal(&mut s, &worker_key, id, &nearby), None);
    let dispute = s.net.chain.dispute(&id).unwrap().unwrap();
    assert_eq!(
        dispute.status,
        DisputeStatus::WorkerWon,
        "{:?}",
        dispute.verdict
    );
    let bond = s
        .net
        .chain
        .challenger(&s.challenger.address())
        .unwrap()
        .unwrap()
        .bond;
    assert_eq!(bond, bond_before / 100 * 95);
    // No move after the end.
    assert!(matches!(
        reveal(&mut s, &referee_key, id, &honest),
        Some(TxFailure::Invalid { .. })
    ));
    while s.net.chain.task(&task).unwrap().unwrap().status == TaskStatus::Challengeable {
        s.net.ok(&[]);
    }
    assert_eq!(
        s.net.chain.task(&task).unwrap().unwrap().status,
        TaskStatus::Finalized
    );
}

#[test]
fn a_worker_that_does_not_reveal_its_output_loses_on_the_deadline() {
    let mut s = setup_tolerant(3, 1_000);
    let honest = output_document(&s, None);
    let (_, worker, id, referee) = tolerant_dispute(&mut s, &honest);
    let referee_key = s.workers[referee].account.clone();
    assert_eq!(reveal(&mut s, &referee_key, id, &honest), None);
    for _ in 0..CLOCK + 1 {
        s.net.ok(&[]);
    }
    let dispute = s.net.chain.dispute(&id).unwrap().unwrap();
    assert_eq!(dispute.status, DisputeStatus::ChallengerWon);
    assert!(dispute.verdict.unwrap().contains("did not reveal"));
    let address = s.workers[worker].account.address();
    assert_eq!(s.net.chain.reputation(&address).unwrap().score, -50);
}

#[test]
fn a_silent_referee_is_penalised_and_replaced() {
    let mut s = setup_tolerant(4, 1_000);
    let honest = output_document(&s, None);
    let (_, worker, id, first) = tolerant_dispute(&mut s, &honest);
    let worker_key = s.workers[worker].account.clone();
    assert_eq!(reveal(&mut s, &worker_key, id, &honest), None);
    for _ in 0..CLOCK + 1 {
        s.net.ok(&[]);
    }
    let first_address = s.workers[first].account.address();
    let dispute = s.net.chain.dispute(&id).unwrap().unwrap();
    assert_eq!(dispute.status, DisputeStatus::Open);
    let check = dispute.referee.unwrap();
    assert_eq!(check.timed_out, vec![first_address]);
    assert_ne!(check.referee, first_address);
    assert!(s.net.chain.reputation(&first_address).unwrap().score < 0);
    // The silent referee cannot answer late; the new one settles it.
    let first_key = s.workers[first].account.clone();
    assert!(matches!(
        reveal(&mut s, &first_key, id, &honest),
        Some(TxFailure::Unauthorized { .. })
    ));
    let second = s
        .workers
        .iter()
        .position(|w| w.account.address() == check.referee)
        .unwrap();
    let second_key = s.workers[second].account.clone();
    assert_eq!(reveal(&mut s, &second_key, id, &honest), None);
    let dispute = s.net.chain.dispute(&id).unwrap().unwrap();
    assert_eq!(dispute.status, DisputeStatus::WorkerWon);
}

#[test]
fn a_tolerant_dispute_with_nobody_to_referee_is_refused() {
    // One worker only: after it, nobody is left to re-run the task.
    let mut s = setup_tolerant(1, 1_000);
    let honest = output_document(&s, None);
    let (task, worker) = s.op_task();
    let leaves = s.honest.clone();
    let receipt = s.receipt_of(task, worker, &leaves, &honest);
    s.net.ok(&[receipt]);
    let challenger = s.challenger.clone();
    let open = s.open_dispute(task, sha256(b"mine"), leaves.len() as u32);
    let failure = s.net.block(&[open]).remove(0);
    assert!(
        matches!(&failure, Some(TxFailure::Invalid { reason }) if reason.contains("referee")),
        "{failure:?}"
    );
    let record = s
        .net
        .chain
        .challenger(&challenger.address())
        .unwrap()
        .unwrap();
    assert_eq!(record.locked, 0);
}

/// Attack: a challenger whose slash rate is high against its dispute bond holds two disputes and
/// loses one. Slashing the whole bond's share used to leave the bond below the other dispute's
/// lock, and `bond - locked` then wrapped: UnbondChallenger minted tokens (a debug build
/// panicked on every validator). A slash takes at most what the other open disputes leave free.
#[test]
fn a_lost_dispute_never_takes_the_bond_below_the_other_locks() {
    let params = TaskParams {
        min_challenger_bond: 2 * ONE_TOKEN,
        dispute_bond: ONE_TOKEN,
        slash_bps: 7_500,
        ..params()
    };
    let mut s = setup_with(2, 0, params, 2 * ONE_TOKEN);
    let honest = s.honest.clone();
    let (first, w1) = s.op_task();
    let receipt = s.receipt(first, w1, &honest);
    s.net.ok(&[receipt]);
    let (second, w2) = s.op_task();
    let receipt = s.receipt(second, w2, &honest);
    s.net.ok(&[receipt]);
    // One dispute stays open, locking half the bond; the other has a wrong trace length and
    // loses at once.
    let made_up = corrupted(&honest, 2);
    let open = s.open_dispute(first, merkle::root(&made_up), honest.len() as u32);
    let losing = s.open_dispute(second, merkle::root(&made_up), honest.len() as u32 + 1);
    s.net.ok(&[open, losing]);
    let challenger = s.challenger.address();
    let lost = s.net.chain.dispute(&s.id_of(second)).unwrap().unwrap();
    assert_eq!(lost.status, DisputeStatus::WorkerWon, "{lost:?}");
    assert_eq!(
        lost.slashed, ONE_TOKEN,
        "75 % of the bond, capped at what the open dispute leaves free"
    );
    let record = s.net.chain.challenger(&challenger).unwrap().unwrap();
    assert_eq!((record.bond, record.locked), (ONE_TOKEN, ONE_TOKEN));
    // Nothing is free to unbond, least of all more than was bonded.
    let key = s.challenger.clone();
    for amount in [1, u128::MAX - 1] {
        let unbond = s.net.tx(&key, Action::UnbondChallenger { amount });
        assert!(
            matches!(s.net.block(&[unbond])[0], Some(TxFailure::Invalid { .. })),
            "unbonding {amount} with every token locked"
        );
    }
    // The open dispute can still be lost and slashed: the bond covers it.
    let open_id = s.id_of(first);
    while s.net.chain.dispute(&open_id).unwrap().unwrap().status == DisputeStatus::Open {
        s.net.ok(&[]);
    }
    let record = s.net.chain.challenger(&challenger).unwrap().unwrap();
    assert!(record.bond >= record.locked, "{record:?}");
    assert_eq!(record.locked, 0);
}

/// Attack: a worker sends a false OP result and unstakes everything at once, before anyone
/// disputes it. Its stake used to leave the reach of the slash, which took only `stake`, and
/// came back before the longest dispute could end. Unbonding stake is slashable, and unbonding
/// outlasts the window and the longest dispute.
#[test]
fn unstaking_with_a_false_result_does_not_escape_the_slash() {
    let mut s = setup(2);
    let (task, liar) = s.op_task();
    let lie = corrupted(&s.honest, 1);
    let receipt = s.receipt(task, liar, &lie);
    let account = s.workers[liar].account.clone();
    let escape = s.net.tx(&account, Action::Unstake { amount: STAKE });
    s.net.ok(&[receipt, escape]);
    let liar_address = account.address();
    let staked = s.net.chain.worker(&liar_address).unwrap().unwrap();
    assert_eq!((staked.stake, staked.unbonding), (0, STAKE));
    let unstaked_at = s.net.height;
    // The game is played slowly, leaving the one-step just time: the slash must still find the
    // stake.
    let id = disprove(&mut s, task, liar, &lie, CLOCK - 2);
    let dispute = s.net.chain.dispute(&id).unwrap().unwrap();
    assert_eq!(dispute.slashed, STAKE / 20, "5 % of the unbonding stake");
    let before = s.net.balance(&liar_address);
    let due = unstaked_at + params().unbonding_blocks;
    assert!(
        s.net.height < due,
        "the verdict came before the stake's return"
    );
    while s.net.height < due {
        s.net.ok(&[]);
    }
    assert_eq!(
        s.net.balance(&liar_address),
        before + STAKE - STAKE / 20,
        "what the slash left comes back, no more"
    );
    let staked = s.net.chain.worker(&liar_address).unwrap().unwrap();
    assert_eq!((staked.stake, staked.unbonding), (0, 0));
}

/// The genesis rule behind the test above: unbonding shorter than a window and the longest
/// dispute is refused, naming the bound.
#[test]
fn unbonding_shorter_than_a_dispute_is_refused_at_genesis() {
    let mut params = verity_state::Params {
        min_fee: 1,
        fee_collector: Address([0xfe; 20]),
        max_block_txs: 10,
        fee_per_weight: 0,
        max_block_weight: 2_000_000,
        governance: None,
        tasks: TaskParams::default(),
        data: Default::default(),
        validators: Default::default(),
    };
    params.validate().unwrap();
    let exposure = params.tasks.challenge_window_blocks
        + verity_state::modules::disputes::longest_dispute_blocks(
            params.tasks.dispute_clock_blocks,
        );
    assert_eq!(
        exposure,
        20 + 123,
        "three referees of 41 blocks each after a 20-block window"
    );
    params.tasks.unbonding_blocks = exposure;
    let error = params.validate().unwrap_err();
    assert!(
        error.contains("unbonding_blocks") && error.contains("143"),
        "{error}"
    );
    params.tasks.unbonding_blocks = exposure + 1;
    params.validate().unwrap();
}

/// Fault: two equal Unstake (and two equal UnbondChallenger) in one block. The schedule keyed
/// its entries by the hash of their content, so the second overwrote the first and only one
/// amount ever came back.
#[test]
fn two_equal_unbondings_in_one_block_both_return() {
    let mut s = setup(1);
    let worker = s.workers[0].account.clone();
    let challenger = s.challenger.clone();
    let txs = [
        s.net.tx(&worker, Action::Unstake { amount: ONE_TOKEN }),
        s.net.tx(&worker, Action::Unstake { amount: ONE_TOKEN }),
        s.net
            .tx(&challenger, Action::UnbondChallenger { amount: ONE_TOKEN }),
        s.net
            .tx(&challenger, Action::UnbondChallenger { amount: ONE_TOKEN }),
    ];
    s.net.ok(&txs);
    let (worker_before, challenger_before) = (
        s.net.balance(&worker.address()),
        s.net.balance(&challenger.address()),
    );
    for _ in 0..params().unbonding_blocks {
        s.net.ok(&[]);
    }
    assert_eq!(
        s.net.balance(&worker.address()),
        worker_before + 2 * ONE_TOKEN
    );
    assert_eq!(
        s.net.balance(&challenger.address()),
        challenger_before + 2 * ONE_TOKEN
    );
    let staked = s.net.chain.worker(&worker.address()).unwrap().unwrap();
    assert_eq!((staked.stake, staked.unbonding), (STAKE - 2 * ONE_TOKEN, 0));
    let bonded = s
        .net
        .chain
        .challenger(&challenger.address())
        .unwrap()
        .unwrap();
    assert_eq!((bonded.bond, bonded.unbonding), (BOND - 2 * ONE_TOKEN, 0));
}

/// A challenger that unbonded below `min_challenger_bond` no longer disputes: the minimum is
/// what makes a challenger's frivolous disputes cost it.
#[test]
fn a_challenger_below_the_minimum_bond_cannot_dispute() {
    let mut s = setup(1);
    let (task, worker) = s.op_task();
    let lie = corrupted(&s.honest, 1);
    let receipt = s.receipt(task, worker, &lie);
    let challenger = s.challenger.clone();
    let unbond = s.net.tx(
        &challenger,
        Action::UnbondChallenger {
            amount: BOND - 5 * ONE_TOKEN,
        },
    );
    s.net.ok(&[receipt, unbond]);
    let honest = s.honest.clone();
    let open = s.open_dispute(task, merkle::root(&honest), honest.len() as u32);
    let failure = s.net.block(&[open]).remove(0);
    assert!(
        reason_of(&failure).contains("below the 10000000000000000000 a challenger needs"),
        "{failure:?}"
    );
}

/// Attack: a challenger opens a frivolous dispute, then unbonds all of its bond the dispute
/// does not lock. The slash of a lost dispute was a share of the bond left bonded, so this
/// made losing cost a share of the dispute's lock alone. The bond on its way out counts, as a
/// worker's unbonding stake does, and is slashed once the free bond is spent.
#[test]
fn unbonding_after_opening_a_dispute_does_not_shrink_its_slash() {
    let params = TaskParams {
        slash_bps: 2_000,
        ..params()
    };
    let unbonding_blocks = params.unbonding_blocks;
    let mut s = setup_with(1, 0, params, BOND);
    let (task, worker) = s.op_task();
    let honest = s.honest.clone();
    let receipt = s.receipt(task, worker, &honest);
    s.net.ok(&[receipt]);
    let made_up = corrupted(&honest, 3);
    let open = s.open_dispute(task, merkle::root(&made_up), honest.len() as u32);
    s.net.ok(&[open]);
    let key = s.challenger.clone();
    let unbond = s.net.tx(
        &key,
        Action::UnbondChallenger {
            amount: BOND - ONE_TOKEN,
        },
    );
    s.net.ok(&[unbond]);
    let unbonded_at = s.net.height;
    let id = s.id_of(task);
    s.dissect_and_one_step(id, worker, &honest, &made_up);
    let dispute = s.net.chain.dispute(&id).unwrap().unwrap();
    assert_eq!(dispute.status, DisputeStatus::WorkerWon);
    assert_eq!(
        dispute.slashed,
        BOND / 5,
        "20 % of the whole bond, not of the token left bonded"
    );
    let record = s.net.chain.challenger(&key.address()).unwrap().unwrap();
    assert_eq!(
        (record.bond, record.locked, record.unbonding),
        (0, 0, BOND - BOND / 5),
        "the free bond went first, the rest from the unbonding bond"
    );
    // What the slash left of the unbonding bond comes back when due, and the chain goes on.
    let before = s.net.balance(&key.address());
    while s.net.height < unbonded_at + unbonding_blocks {
        s.net.ok(&[]);
    }
    assert_eq!(s.net.balance(&key.address()), before + BOND - BOND / 5);
    let record = s.net.chain.challenger(&key.address()).unwrap().unwrap();
    assert_eq!((record.bond, record.unbonding), (0, 0));
}

/// Attack: the worker and a challenger are one person. The worker sends a false result and
/// has its own challenger dispute it first and then never move, hoping the dispute ends in the
/// worker's favour and keeps others out. Every challenger has a dispute of its own, so an
/// honest one still disproves the result; the stalling accomplice loses its share of the bond
/// to the worker, but the worker's slash outweighs it: the pair loses on balance.
#[test]
fn a_workers_own_challenger_cannot_shield_its_false_result() {
    let mut s = setup(2);
    let (task, liar) = s.op_task();
    let lie = corrupted(&s.honest, 1);
    let receipt = s.receipt(task, liar, &lie);
    let accomplice = AccountKey::generate();
    let fund = s.net.tx(
        &s.user.clone(),
        Action::Transfer {
            to: accomplice.address(),
            amount: BOND + ONE_TOKEN,
        },
    );
    s.net.ok(&[receipt, fund]);
    let register = s
        .net
        .tx(&accomplice, Action::RegisterChallenger { amount: BOND });
    s.net.ok(&[register]);
    let liar_address = s.workers[liar].account.address();
    let worth = |s: &Setup| -> u128 {
        let staked = s.net.chain.worker(&liar_address).unwrap().unwrap();
        let bonded = s
            .net
            .chain
            .challenger(&accomplice.address())
            .unwrap()
            .unwrap();
        s.net.balance(&liar_address)
            + staked.stake
            + staked.unbonding
            + s.net.balance(&accomplice.address())
            + bonded.bond
            + bonded.unbonding
    };
    let before = worth(&s);
    // The accomplice disputes first, with a made-up root, and then stalls.
    let stall = s.net.tx(
        &accomplice,
        Action::OpenDispute {
            task_id: task,
            trace_root: sha256(b"made up"),
            trace_len: s.honest.len() as u32,
        },
    );
    s.net.ok(&[stall]);
    let stalling = dispute_id(&task, &liar_address, &accomplice.address());
    let id = disprove(&mut s, task, liar, &lie, 0);
    assert_ne!(id, stalling);
    let stalled = s.net.chain.dispute(&stalling).unwrap().unwrap();
    assert_eq!(
        stalled.status,
        DisputeStatus::Moot,
        "the honest dispute decided it"
    );
    let task_now = s.net.chain.task(&task).unwrap().unwrap();
    assert!(task_now.disproven.contains(&liar_address));
    let slashed = s.net.chain.dispute(&id).unwrap().unwrap().slashed;
    assert_eq!(slashed, STAKE / 20);
    // The fees of the pair's own transactions aside, the pair lost the whole slash.
    assert!(
        worth(&s) + slashed <= before,
        "the pair is no better off than the slash"
    );
}

/// The chess clocks to the block: a move in the last block of a side's clock is taken, and a
/// side that waits one block longer has lost before its move is read (the clock is checked at
/// the start of the block).
#[test]
fn a_move_in_the_last_block_of_a_clock_counts_and_one_block_later_does_not() {
    for late in [false, true] {
        let mut s = setup(1);
        let (task, worker) = s.op_task();
        let honest = s.honest.clone();
        let lie = corrupted(&honest, 2);
        let receipt = s.receipt(task, worker, &lie);
        s.net.ok(&[receipt]);
        let open = s.open_dispute(task, merkle::root(&honest), honest.len() as u32);
        s.net.ok(&[open]);
        let id = s.id_of(task);
        let game = s.net.chain.dispute(&id).unwrap().unwrap().game.unwrap();
        let last = game.round_started + game.clocks[1];
        // The block about to run is at height `s.net.height + 1`.
        let wait = if late { last + 1 } else { last } - (s.net.height + 1);
        for _ in 0..wait {
            s.net.ok(&[]);
        }
        let hashes = revealed_children(&game, &honest);
        let challenger = s.challenger.clone();
        let reveal = s.net.tx(
            &challenger,
            Action::RevealChildren {
                dispute_id: id,
                hashes,
            },
        );
        let failure = s.net.block(&[reveal]).remove(0);
        let dispute = s.net.chain.dispute(&id).unwrap().unwrap();
        if late {
            assert_eq!(
                dispute.status,
                DisputeStatus::WorkerWon,
                "late: {dispute:?}"
            );
            assert!(reason_of(&failure).contains("is over"), "{failure:?}");
        } else {
            assert!(failure.is_none(), "a move at height {last}: {failure:?}");
            assert_eq!(dispute.status, DisputeStatus::Open);
            let game = dispute.game.unwrap();
            assert_eq!(game.clocks[1], 0, "the challenger spent its whole clock");
            assert!(game.revealed[1].is_some());
        }
    }
}

/// Plays and wins the challenger's dispute of `liar`'s false result `lie` of `task`, both
/// sides first idle for `idle_blocks`; returns the dispute's id.
fn disprove(s: &mut Setup, task: Hash, liar: usize, lie: &[Hash], idle_blocks: u64) -> Hash {
    let honest = s.honest.clone();
    let open = s.open_dispute(task, merkle::root(&honest), honest.len() as u32);
    s.net.ok(&[open]);
    let id = s.id_of(task);
    for _ in 0..idle_blocks {
        s.net.ok(&[]);
    }
    let step = s.dissect(id, liar, lie, &honest);
    let witness = s.witness(step);
    let challenger = s.challenger.clone();
    let one_step = s.net.tx(
        &challenger,
        Action::OneStep {
            dispute_id: id,
            witness,
            input: input_bytes(),
        },
    );
    s.net.ok(&[one_step]);
    let dispute = s.net.chain.dispute(&id).unwrap().unwrap();
    assert_eq!(dispute.status, DisputeStatus::ChallengerWon, "{dispute:?}");
    id
}

/// A disproven task runs again on another worker; if that one lies too, the same challenger
/// disputes it again. A dispute id naming only the task and the challenger refused that second
/// dispute as "already disputed", so the second lie stood.
#[test]
fn the_same_challenger_disputes_the_rerun_of_a_disproven_task() {
    let mut s = setup(2);
    let (task, first) = s.op_task();
    let lie = corrupted(&s.honest, 1);
    let receipt = s.receipt(task, first, &lie);
    s.net.ok(&[receipt]);
    let first_dispute = disprove(&mut s, task, first, &lie, 0);
    let second = 1 - first;
    s.net.ok(&[]);
    let rerun = s.net.chain.task(&task).unwrap().unwrap();
    assert_eq!(rerun.worker, Some(s.workers[second].account.address()));
    let lie = corrupted(&s.honest, 2);
    let receipt = s.receipt(task, second, &lie);
    s.net.ok(&[receipt]);
    let second_dispute = disprove(&mut s, task, second, &lie, 0);
    assert_ne!(first_dispute, second_dispute);
}

/// A challenger's work list is every OP result in its window, the window closing first first,
/// page by page, however many newer tasks there are; a closed window leaves it.
#[test]
fn every_open_window_is_listed_in_closing_order_and_pages() {
    let mut s = setup(1);
    let honest = s.honest.clone();
    let tasks: Vec<_> = (0..3).map(|_| s.op_task()).collect();
    // Receipts in successive blocks: windows closing one block apart.
    let mut results = Vec::new();
    for (task, worker) in tasks {
        let receipt = s.receipt(task, worker, &honest);
        s.net.ok(&[receipt]);
        results.push(task);
    }
    let ids = |tasks: Vec<verity_state::Task>| tasks.iter().map(|t| t.task_id).collect::<Vec<_>>();
    assert_eq!(
        ids(s.net.chain.challengeable_tasks(None, 10).unwrap()),
        results
    );
    // One at a time, each page after the last one's task.
    let mut paged = Vec::new();
    let mut after = None;
    loop {
        let page = s
            .net
            .chain
            .challengeable_tasks(after.as_ref().map(|(id, until)| (id, *until)), 1)
            .unwrap();
        let Some(task) = page.first() else { break };
        let until = s
            .net
            .chain
            .record(&task.task_id)
            .unwrap()
            .unwrap()
            .challenge_until;
        after = Some((task.task_id, until.unwrap()));
        paged.push(task.task_id);
    }
    assert_eq!(paged, results);
    // The first window closes: the others remain.
    let first_until = s
        .net
        .chain
        .record(&results[0])
        .unwrap()
        .unwrap()
        .challenge_until
        .unwrap();
    while s.net.height <= first_until {
        s.net.ok(&[]);
    }
    assert_eq!(
        s.net.chain.task(&results[0]).unwrap().unwrap().status,
        TaskStatus::Finalized
    );
    assert_eq!(
        ids(s.net.chain.challengeable_tasks(None, 10).unwrap()),
        results[1..]
    );
    for _ in 0..=WINDOW {
        s.net.ok(&[]);
    }
    assert!(s
        .net
        .chain
        .challengeable_tasks(None, 10)
        .unwrap()
        .is_empty());
}
