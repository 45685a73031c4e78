//! OP disputes over a language model's generation, through whole blocks with the bundled model
//! (models/tiny_lm): the token game finds the first token whose leaf differs, the challenger
//! opens it with the worker's signed output document, and the game goes down to that token's
//! forward pass (an op re-executed) or its sampling (the token drawn again from recomputed
//! logits). A worker that changes one token, or one op of one pass, loses; a challenger that
//! disputes an honest answer loses; a document that contradicts the prompt or the seed loses at
//! once.

use std::collections::HashMap;
use std::path::PathBuf;

use verity_infer::{merkle, Engine};
use verity_lm::dispute::{PassTarget, PassWitness};
use verity_lm::task::{output_bytes, trace_root};
use verity_lm::{GenerationConfig, ServedModel};
use verity_state::modules::disputes::{dispute_id, Dispute, DisputeStatus};
use verity_state::modules::game::{Game, Phase, DEPTH};
use verity_state::{ModelSource, TaskParams, TaskStatus};
use verity_types::{
    sampling_seed, sha256, AccountKey, Action, Address, DataRef, GenerationDocument,
    GenerationLimits, Hash, LanguageSpec, Mode, ModelSpec, PromptDocument, SignedTx, TaskReceipt,
    ONE_TOKEN,
};

mod common;

use common::{committed_model, enroll, Net, Worker, CHAIN};

const WINDOW: u64 = 5;
const CLOCK: u64 = 8;
const STAKE: u128 = 100 * ONE_TOKEN;
const BOND: u128 = 20 * ONE_TOKEN;
const MAX_TOKENS: u32 = 12;

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

fn model_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../models/tiny_lm")
}

/// The model's registered files: graph, tokenizer and generation config.
fn files() -> Vec<Vec<u8>> {
    let dir = model_dir();
    vec![
        std::fs::read(dir.join("model.onnx")).unwrap(),
        std::fs::read(dir.join("tokenizer.json")).unwrap(),
        GenerationConfig::from_dir(&dir).unwrap().to_json(),
    ]
}

fn prompt() -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "prompt": "Call me Ishmael. Some years ago",
        "max_tokens": MAX_TOKENS,
        "temperature": 0.9,
        "top_k": 50,
    }))
    .unwrap()
}

struct Setup {
    net: Net,
    user: AccountKey,
    worker: Worker,
    challenger: AccountKey,
    spec: ModelSpec,
    served: ServedModel,
    engine: Engine,
    _dir: tempfile::TempDir,
}

fn setup() -> Setup {
    let files = files();
    let language = LanguageSpec {
        graph: DataRef::of(&files[0]),
        weights: None,
        tokenizer: DataRef::of(&files[1]),
        generation: DataRef::of(&files[2]),
        context: 256,
        input_token_price: 10,
        output_token_price: 30,
    };
    let by_hash: HashMap<Hash, Vec<u8>> = files.iter().map(|f| (sha256(f), f.clone())).collect();
    let dir = tempfile::tempdir().unwrap();
    let models = ModelSource::new(move |hash| by_hash.get(hash).cloned())
        .with_language_dir(dir.path().join("validator"));
    let owner = AccountKey::generate();
    let user = AccountKey::generate();
    let challenger = AccountKey::generate();
    let worker = Worker::generate();
    let funded = [
        owner.address(),
        user.address(),
        challenger.address(),
        worker.account.address(),
    ];
    let mut net = Net::with_models(&funded, params(), models);
    let spec = ModelSpec {
        model_id: language.model_id(),
        name: "tiny-lm".into(),
        version: "1".into(),
        weights_root: Hash([7; 32]),
        architecture: "transformer".into(),
        param_count: 1_000_000,
        size: language.graph.size,
        license: "MIT".into(),
        tee_required: false,
        allowed_modes: vec![Mode::Tee, Mode::Op],
        tolerance_ppm: 0,
        language: Some(Box::new(language)),
    };
    let mut txs = vec![
        committed_model(&mut net, &owner, spec.clone()),
        net.tx(&challenger, Action::RegisterChallenger { amount: BOND }),
    ];
    txs.extend(enroll(&mut net, &worker, STAKE, b"m"));
    net.ok(&txs);
    // The parties' own copy of the files, as a worker stores them.
    let own = dir.path().join("party");
    std::fs::create_dir_all(&own).unwrap();
    for (name, bytes) in ["model.onnx", "tokenizer.json", "generation.json"]
        .iter()
        .zip(&files)
    {
        std::fs::write(own.join(name), bytes).unwrap();
    }
    let served = ServedModel::load(&own).unwrap();
    Setup {
        net,
        user,
        worker,
        challenger,
        spec,
        served,
        engine: Engine::new(1).unwrap(),
        _dir: dir,
    }
}

/// How a side's generation differs from the honest one.
#[derive(Clone, Copy)]
enum Lie {
    None,
    /// Token `i` replaced by another id; its forward pass and every other token kept.
    Token(usize),
    /// Token `i`'s forward pass ran with op `step`'s output changed; the token kept.
    Op(usize, usize),
    /// The document claims another seed.
    Seed,
}

/// A side's generation: its document and, for an op lie, the corrupted pass's leaves.
struct Side {
    doc: GenerationDocument,
    corrupted_pass: Option<(usize, Vec<Hash>)>,
}

impl Side {
    fn leaves(&self) -> Vec<Hash> {
        verity_lm::task::token_leaves(&self.doc)
    }
}

impl Setup {
    fn prompt_doc(&self) -> PromptDocument {
        verity_lm::task::parse_prompt(&prompt()).unwrap()
    }

    fn prompt_ids(&self) -> Vec<u32> {
        self.served
            .renderer()
            .prompt_ids(&self.prompt_doc())
            .unwrap()
    }

    /// Submits an OP generation task and runs the block that assigns it.
    fn op_task(&mut self) -> Hash {
        let limits = GenerationLimits {
            prompt_tokens: self.prompt_ids().len() as u32,
            max_tokens: MAX_TOKENS,
        };
        let user = self.user.clone();
        let tx = self.net.tx(
            &user,
            Action::SubmitTask {
                model_id: self.spec.model_id,
                input: DataRef::of(&prompt()),
                mode: Mode::Op,
                max_fee: ONE_TOKEN,
                deadline_blocks: 1_000,
                input_commitment: None,
                dataset: None,
                generation: Some(limits),
            },
        );
        self.net.ok(std::slice::from_ref(&tx));
        self.net.ok(&[]);
        let task = self.net.chain.task(&tx.hash()).unwrap().unwrap();
        assert_eq!(task.status, TaskStatus::Assigned);
        tx.hash()
    }

    /// The generation `lie` makes for `task`.
    fn generate(&self, task: &Hash, lie: Lie) -> Side {
        let doc = self.prompt_doc();
        let seed = sampling_seed(&doc, task);
        let mut out = self
            .served
            .run(&self.engine, &doc, &self.prompt_ids(), seed, |_| {})
            .unwrap();
        assert_eq!(out.tokens.len(), MAX_TOKENS as usize, "{}", out.text);
        let mut corrupted_pass = None;
        match lie {
            Lie::None => {}
            Lie::Token(i) => out.tokens[i].id = (out.tokens[i].id + 1) % 2048,
            Lie::Op(i, step) => {
                let lm = self.served.language_model();
                let tokens: Vec<u32> = out.tokens[..i].iter().map(|t| t.id).collect();
                let replayed = lm.replay(&self.engine, &out.prompt_ids, &tokens).unwrap();
                let run = self
                    .engine
                    .run_corrupted(lm.model(), replayed.inputs, step)
                    .unwrap();
                let trace = run.trace.unwrap();
                out.tokens[i].trace_root = trace.root();
                corrupted_pass = Some((i, trace.leaves().to_vec()));
            }
            Lie::Seed => out.seed ^= 1,
        }
        Side {
            doc: out,
            corrupted_pass,
        }
    }

    fn receipt(&mut self, task: Hash, side: &Side) -> SignedTx {
        let output = output_bytes(&side.doc);
        let mut receipt = TaskReceipt {
            task_id: task,
            model_id: self.spec.model_id,
            input_hash: sha256(&prompt()),
            output_hash: sha256(&output),
            output_size: output.len() as u64,
            trace_root: trace_root(&side.doc),
            trace_len: side.doc.tokens.len() as u32,
            worker: self.worker.account.address(),
            enclave_key: [0; 32],
            signature: [0; 64],
        };
        self.worker.enclave.sign(CHAIN, &mut receipt);
        let account = self.worker.account.clone();
        self.net.tx(
            &account,
            Action::SubmitReceipts {
                receipts: vec![receipt],
            },
        )
    }

    fn dispute(&self, id: &Hash) -> Dispute {
        self.net.chain.dispute(id).unwrap().unwrap()
    }

    /// Plays a dispute from its opening to the verdict, both sides moving at once from their
    /// own generations; the honest side (`honest`) sends the one-step. Returns the dispute as
    /// it ended and the largest transaction it took.
    fn play(&mut self, task: Hash, worker: &Side, challenger: &Side) -> (Dispute, usize) {
        let open = self.net.tx(
            &self.challenger.clone(),
            Action::OpenDispute {
                task_id: task,
                trace_root: merkle::root(&challenger.leaves()),
                trace_len: challenger.doc.tokens.len() as u32,
            },
        );
        self.net.ok(std::slice::from_ref(&open));
        let id = dispute_id(
            &task,
            &self.worker.account.address(),
            &self.challenger.address(),
        );
        let mut largest = open.encode().len();
        let worker_account = self.worker.account.clone();
        let challenger_account = self.challenger.clone();
        loop {
            let dispute = self.dispute(&id);
            if dispute.status != DisputeStatus::Open {
                return (dispute, largest);
            }
            let game = dispute.game.clone().unwrap();
            let txs: Vec<SignedTx> = match (&dispute.generation, game.phase) {
                // The token game, then the ops game of the disputed pass.
                (generation, Phase::Dissect) => {
                    let (w, c) = match generation {
                        None => (worker.leaves(), challenger.leaves()),
                        Some(g) => (
                            self.pass_leaves(worker, g.token_index as usize),
                            self.pass_leaves(challenger, g.token_index as usize),
                        ),
                    };
                    vec![
                        self.net.tx(
                            &worker_account,
                            Action::RevealChildren {
                                dispute_id: id,
                                hashes: revealed(&game, &w),
                            },
                        ),
                        self.net.tx(
                            &challenger_account,
                            Action::RevealChildren {
                                dispute_id: id,
                                hashes: revealed(&game, &c),
                            },
                        ),
                    ]
                }
                (None, Phase::OneStep) => {
                    let i = game.start as usize;
                    let mine = &challenger.doc.tokens[i];
                    vec![self.net.tx(
                        &challenger_account,
                        Action::RevealToken {
                            dispute_id: id,
                            output: output_bytes(&worker.doc),
                            prompt: prompt(),
                            forward_root: mine.trace_root,
                            token: mine.id,
                        },
                    )]
                }
                (Some(g), Phase::OneStep) => {
                    let target = if g.sampling_only() {
                        PassTarget::Sampling
                    } else {
                        PassTarget::Step(game.start as usize)
                    };
                    let witness = self.honest_witness(&g.sequence, g.prompt_tokens, target);
                    vec![self.net.tx(
                        &challenger_account,
                        Action::OneStep {
                            dispute_id: id,
                            witness: witness.encode(),
                            input: Vec::new(),
                        },
                    )]
                }
                (_, Phase::Resolved { .. }) => unreachable!("a resolved game's dispute is over"),
            };
            largest = largest.max(txs.iter().map(|t| t.encode().len()).max().unwrap());
            self.net.ok(&txs);
        }
    }

    /// The leaves of a side's forward pass `i`.
    fn pass_leaves(&self, side: &Side, i: usize) -> Vec<Hash> {
        if let Some((at, leaves)) = &side.corrupted_pass {
            if *at == i {
                return leaves.clone();
            }
        }
        let lm = self.served.language_model();
        let tokens: Vec<u32> = side.doc.tokens[..i].iter().map(|t| t.id).collect();
        let replayed = lm
            .replay(&self.engine, &side.doc.prompt_ids, &tokens)
            .unwrap();
        let trace = self
            .engine
            .run(lm.model(), replayed.inputs, true)
            .unwrap()
            .trace
            .unwrap();
        trace.leaves().to_vec()
    }

    /// The honest one-step for the pass after `sequence`.
    fn honest_witness(
        &self,
        sequence: &[u32],
        prompt_tokens: u32,
        target: PassTarget,
    ) -> PassWitness {
        let (prompt, tokens) = sequence.split_at(prompt_tokens as usize);
        let lm = self.served.language_model();
        let replayed = lm.replay(&self.engine, prompt, tokens).unwrap();
        lm.pass_witness(&self.engine, &replayed, target).unwrap()
    }
}

/// The first MatMul at or after step `from`: an op whose output is activations, which a
/// corrupted run can change without breaking the pass.
fn matmul(from: usize) -> usize {
    let dir = model_dir();
    let model = verity_infer::Model::from_file(&dir.join("model.onnx")).unwrap();
    let lm = verity_lm::LanguageModel::new(model, verity_lm::ModelConfig::from_dir(&dir).unwrap())
        .unwrap();
    let engine = Engine::new(1).unwrap();
    let replayed = lm.replay(&engine, &[1, 2, 3], &[]).unwrap();
    let trace = engine
        .run(lm.model(), replayed.inputs, true)
        .unwrap()
        .trace
        .unwrap();
    (from..trace.steps().len())
        .find(|&s| trace.steps()[s].op == "MatMul")
        .unwrap()
}

fn revealed(game: &Game, leaves: &[Hash]) -> Vec<Hash> {
    game.span()
        .descendants(DEPTH)
        .iter()
        .map(|p| merkle::root(&leaves[p.start as usize..(p.start + p.len) as usize]))
        .collect()
}

/// Runs one dispute of a worker lying with `worker_lie` against a challenger lying with
/// `challenger_lie`; returns how it ended and the largest transaction.
fn played(worker_lie: Lie, challenger_lie: Lie) -> (Setup, Hash, Dispute, usize) {
    let mut s = setup();
    let task = s.op_task();
    let worker = s.generate(&task, worker_lie);
    let challenger = s.generate(&task, challenger_lie);
    let receipt = s.receipt(task, &worker);
    s.net.ok(&[receipt]);
    let (dispute, largest) = s.play(task, &worker, &challenger);
    (s, task, dispute, largest)
}

#[test]
fn a_worker_that_changes_one_token_loses_at_the_sampling_step() {
    let (s, task, dispute, largest) = played(Lie::Token(5), Lie::None);
    assert_eq!(
        dispute.status,
        DisputeStatus::ChallengerWon,
        "{:?}",
        dispute.verdict
    );
    let generation = dispute.generation.unwrap();
    assert_eq!(generation.token_index, 5);
    assert!(generation.sampling_only());
    assert!(
        dispute
            .verdict
            .as_deref()
            .unwrap()
            .contains("token 5 sampled again"),
        "{:?}",
        dispute.verdict
    );
    // The disproven result is rejected and the task waits for another worker (this chain has
    // no other).
    assert_eq!(
        s.net.chain.task(&task).unwrap().unwrap().status,
        TaskStatus::Pending
    );
    assert!(largest < 64 * 1024, "{largest} bytes");
}

#[test]
fn a_worker_that_corrupts_one_op_of_one_pass_loses_at_that_op() {
    let step = matmul(40);
    let (_, _, dispute, largest) = played(Lie::Op(7, step), Lie::None);
    assert_eq!(
        dispute.status,
        DisputeStatus::ChallengerWon,
        "{:?}",
        dispute.verdict
    );
    let generation = dispute.generation.unwrap();
    assert_eq!(generation.token_index, 7);
    assert!(!generation.sampling_only());
    assert!(generation.previous_root.is_some());
    assert!(
        dispute
            .verdict
            .as_deref()
            .unwrap()
            .contains(&format!("step {step} of token 7's forward pass")),
        "{:?}",
        dispute.verdict
    );

    assert!(largest < 64 * 1024, "{largest} bytes");
}

#[test]
fn the_first_pass_is_judged_from_the_prompt() {
    let (_, _, dispute, _) = played(Lie::Op(0, matmul(0)), Lie::None);
    assert_eq!(
        dispute.status,
        DisputeStatus::ChallengerWon,
        "{:?}",
        dispute.verdict
    );
    assert_eq!(dispute.generation.unwrap().token_index, 0);
}

#[test]
fn a_challenger_that_disputes_an_honest_answer_loses() {
    // A made-up token.
    let (_, _, dispute, _) = played(Lie::None, Lie::Token(3));
    assert_eq!(
        dispute.status,
        DisputeStatus::WorkerWon,
        "{:?}",
        dispute.verdict
    );
    // A made-up forward pass.
    let (_, _, dispute, _) = played(Lie::None, Lie::Op(2, matmul(10)));
    assert_eq!(
        dispute.status,
        DisputeStatus::WorkerWon,
        "{:?}",
        dispute.verdict
    );
}

#[test]
fn a_document_that_contradicts_the_task_loses_when_the_token_is_opened() {
    let mut s = setup();
    let task = s.op_task();
    let mut worker = s.generate(&task, Lie::Seed);
    // Its tokens differ from the honest ones somewhere, or the dispute could not open.
    worker.doc.tokens[2].id = (worker.doc.tokens[2].id + 7) % 2048;
    let challenger = s.generate(&task, Lie::None);
    let receipt = s.receipt(task, &worker);
    s.net.ok(&[receipt]);
    let (dispute, _) = s.play(task, &worker, &challenger);
    assert_eq!(dispute.status, DisputeStatus::ChallengerWon);
    assert!(
        dispute.verdict.as_deref().unwrap().contains("seed"),
        "{:?}",
        dispute.verdict
    );
}
