//! `tee_zk` tasks through whole blocks with real Groth16 proofs of the bundled int8 model: a
//! proven result finalizes with its proof recorded; a tampered proof, a proof about another
//! input, a proof under another model's key and a result without a proof are each refused with
//! nothing recorded; only the owner sets a model's keys, once.

use std::sync::OnceLock;

use verity_infer::{Engine, Model};
use verity_state::{ModelSource, TaskParams, TaskStatus, TxFailure};
use verity_types::{
    sha256, AccountKey, Action, Address, DataRef, Hash, Mode, ModelSpec, SignedTx, TaskReceipt,
    ZkReceipt, ONE_TOKEN,
};
use verity_zk::{ProvingKey, ZkModel};

mod common;

use common::{enroll, Net, Worker, CHAIN};

fn read(path: &str) -> Vec<u8> {
    std::fs::read(format!("{}/../../{path}", env!("CARGO_MANIFEST_DIR"))).unwrap()
}

/// A model file with its circuit and keys, made once per test binary.
struct Zk {
    bytes: Vec<u8>,
    model: Model,
    circuit: ZkModel,
    key: ProvingKey,
}

fn zk(path: &'static str) -> Zk {
    let bytes = read(path);
    let model = Model::from_bytes(&bytes).unwrap();
    let circuit = ZkModel::compile(&model, &Engine::new(1).unwrap()).unwrap();
    let key = verity_zk::setup(&circuit).unwrap();
    Zk {
        bytes,
        model,
        circuit,
        key,
    }
}

fn small() -> &'static Zk {
    static ZK: OnceLock<Zk> = OnceLock::new();
    ZK.get_or_init(|| zk("models/digits_mlp_int8.onnx"))
}

fn wide() -> &'static Zk {
    static ZK: OnceLock<Zk> = OnceLock::new();
    ZK.get_or_init(|| zk("models/digits_mlp_int8_wide.onnx"))
}

fn spec(z: &Zk) -> ModelSpec {
    let summary = z.model.summary();
    ModelSpec {
        model_id: summary.model_id,
        name: "digits-int8".into(),
        version: "1".into(),
        weights_root: summary.weights_root,
        architecture: "mlp".into(),
        param_count: summary.parameters,
        size: z.bytes.len() as u64,
        license: "MIT".into(),
        tee_required: false,
        allowed_modes: vec![Mode::Tee, Mode::TeeZk],
        tolerance_ppm: 0,
        language: None,
    }
}

fn sample(i: usize) -> Vec<u8> {
    let all: serde_json::Value =
        serde_json::from_slice(&read("models/samples/digits_test.json")).unwrap();
    serde_json::to_vec(&serde_json::json!([all["pixels"][i]])).unwrap()
}

struct Setup {
    net: Net,
    owner: AccountKey,
    user: AccountKey,
    workers: Vec<Worker>,
}

fn setup() -> Setup {
    let (owner, user) = (AccountKey::generate(), AccountKey::generate());
    let workers: Vec<Worker> = (0..2).map(|_| Worker::generate()).collect();
    let mut funded = vec![owner.address(), user.address()];
    funded.extend(workers.iter().map(|w| w.account.address()));
    let params = TaskParams {
        min_worker_stake: 10 * ONE_TOKEN,
        protocol_treasury: Some(Address([0xee; 20])),
        ..Default::default()
    };
    let mut net = Net::with_models(&funded, params, ModelSource::none());
    let mut txs = common::committed_models(&mut net, &owner, vec![spec(small()), spec(wide())]);
    for w in &workers {
        txs.extend(enroll(&mut net, w, 100 * ONE_TOKEN, b"m"));
    }
    net.ok(&txs);
    let mut s = Setup {
        net,
        owner: owner.clone(),
        user,
        workers,
    };
    for z in [small(), wide()] {
        let set = set_keys(&mut s, &owner, z);
        s.net.ok(&[set]);
    }
    s
}

fn set_keys(s: &mut Setup, from: &AccountKey, z: &Zk) -> SignedTx {
    s.net.tx(
        from,
        Action::SetZkKeys {
            model_id: z.model.model_id(),
            verifying_key: z.key.verifying_key().to_bytes(),
            proving_key: sha256(&z.key.to_bytes()),
        },
    )
}

/// What proving `input` with `z`'s circuit and key states, and the proof.
fn prove(z: &Zk, input: &[u8]) -> (Hash, Hash, Vec<u8>) {
    let engine = Engine::new(1).unwrap();
    let quantized = z
        .circuit
        .quantized_inputs(&z.model, &engine, z.model.task_inputs(input).unwrap())
        .unwrap();
    let salt = verity_zk::commit::salt_of(input);
    let (proof, _, public) = verity_zk::prove(&z.circuit, &z.key, quantized, salt).unwrap();
    (
        public.input_commitment,
        public.output_commitment,
        proof.to_bytes(),
    )
}

impl Setup {
    /// A tee_zk task on the small model for `input`, assigned; its id and worker.
    fn task(&mut self, input: &[u8]) -> (Hash, usize) {
        let z = small();
        let engine = Engine::new(1).unwrap();
        let quantized = z
            .circuit
            .quantized_inputs(&z.model, &engine, z.model.task_inputs(input).unwrap())
            .unwrap();
        let commitment = z
            .circuit
            .input_commitment(&quantized, verity_zk::commit::salt_of(input))
            .unwrap();
        let user = self.user.clone();
        let tx = self.net.tx(
            &user,
            Action::SubmitTask {
                model_id: z.model.model_id(),
                input: DataRef::of(input),
                mode: Mode::TeeZk,
                max_fee: ONE_TOKEN,
                deadline_blocks: 100,
                input_commitment: Some(commitment),
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

    fn receipt(&self, task: Hash, worker: usize, input: &[u8]) -> TaskReceipt {
        TaskReceipt {
            task_id: task,
            model_id: small().model.model_id(),
            input_hash: sha256(input),
            output_hash: sha256(b"output"),
            output_size: 6,
            trace_root: Hash::ZERO,
            trace_len: 13,
            worker: self.workers[worker].account.address(),
            enclave_key: [0; 32],
            signature: [0; 64],
        }
    }

    /// Submits `(commitments, proof)` for the task as its worker's enclave would sign them.
    fn submit(
        &mut self,
        task: Hash,
        worker: usize,
        input: &[u8],
        (ic, oc, proof): (Hash, Hash, Vec<u8>),
    ) -> Option<TxFailure> {
        let mut zk = ZkReceipt {
            receipt: self.receipt(task, worker, input),
            input_commitment: ic,
            output_commitment: oc,
            proof,
        };
        self.workers[worker].enclave.sign_zk(CHAIN, &mut zk);
        let account = self.workers[worker].account.clone();
        let tx = self.net.tx(&account, Action::SubmitZkReceipt(zk));
        self.net.block(&[tx]).remove(0)
    }

    fn nothing_recorded(&self, task: &Hash) {
        assert!(self.net.chain.record(task).unwrap().is_none());
        assert_eq!(
            self.net.chain.task(task).unwrap().unwrap().status,
            TaskStatus::Assigned
        );
    }
}

fn rejected(failure: Option<TxFailure>, reason: &str) {
    match failure {
        Some(TxFailure::ReceiptRejected { reason: r, .. }) => {
            assert!(r.contains(reason), "{r}")
        }
        other => panic!("expected a rejection for {reason:?}, got {other:?}"),
    }
}

#[test]
fn a_proven_result_finalizes_with_its_proof() {
    let mut s = setup();
    let input = sample(0);
    let (task, worker) = s.task(&input);
    let proven = prove(small(), &input);
    assert_eq!(s.submit(task, worker, &input, proven.clone()), None);
    let record = s.net.chain.record(&task).unwrap().unwrap();
    let zk = record.zk.unwrap();
    assert_eq!(zk.proof, proven.2);
    assert_eq!(zk.output_commitment, proven.1);
    assert_eq!(
        s.net.chain.task(&task).unwrap().unwrap().status,
        TaskStatus::Finalized
    );
}

#[test]
fn a_tampered_proof_another_input_another_key_or_no_proof_records_nothing() {
    let mut s = setup();
    let input = sample(1);
    let (task, worker) = s.task(&input);
    let honest = prove(small(), &input);

    // A proof with one byte changed.
    let mut tampered = honest.clone();
    tampered.2[100] ^= 1;
    let failure = s.submit(task, worker, &input, tampered);
    assert!(
        matches!(&failure, Some(TxFailure::ReceiptRejected { reason, .. }) if reason.contains("proof")),
        "{failure:?}"
    );
    s.nothing_recorded(&task);

    // A valid proof about another input: its input commitment is not the task's.
    let other = prove(small(), &sample(2));
    rejected(
        s.submit(task, worker, &input, other.clone()),
        "input commitment",
    );
    s.nothing_recorded(&task);
    // ... nor with the task's input commitment put in its place.
    rejected(
        s.submit(task, worker, &input, (honest.0, other.1, other.2)),
        "does not verify",
    );
    s.nothing_recorded(&task);

    // A proof under another model's key, of the same input.
    let foreign = prove(wide(), &input);
    rejected(
        s.submit(task, worker, &input, (honest.0, foreign.1, foreign.2)),
        "does not verify",
    );
    s.nothing_recorded(&task);

    // The output commitment changed: the enclave signed it, the proof does not match it.
    let mut output = honest.1 .0;
    output[31] ^= 1;
    rejected(
        s.submit(
            task,
            worker,
            &input,
            (honest.0, Hash(output), honest.2.clone()),
        ),
        "proof",
    );
    s.nothing_recorded(&task);

    // A plain TEE receipt for a tee_zk task.
    let mut plain = s.receipt(task, worker, &input);
    s.workers[worker].enclave.sign(CHAIN, &mut plain);
    let account = s.workers[worker].account.clone();
    let tx = s.net.tx(
        &account,
        Action::SubmitReceipts {
            receipts: vec![plain],
        },
    );
    rejected(s.net.block(&[tx]).remove(0), "comes with a proof");
    s.nothing_recorded(&task);

    // A proof signed over other commitments than it carries: the enclave signature fails.
    let mut zk = ZkReceipt {
        receipt: s.receipt(task, worker, &input),
        input_commitment: honest.0,
        output_commitment: honest.1,
        proof: honest.2.clone(),
    };
    s.workers[worker].enclave.sign_zk(CHAIN, &mut zk);
    zk.output_commitment = other.1;
    let tx = s.net.tx(&account, Action::SubmitZkReceipt(zk));
    rejected(s.net.block(&[tx]).remove(0), "signature");
    s.nothing_recorded(&task);

    // The honest proof still goes through.
    assert_eq!(s.submit(task, worker, &input, honest), None);
}

#[test]
fn only_the_owner_sets_keys_once_and_tasks_must_commit_to_their_input() {
    let mut s = setup();
    // Already set: never again, by the owner or anyone.
    let owner = s.owner.clone();
    let again = set_keys(&mut s, &owner, small());
    assert!(matches!(
        s.net.block(&[again]).remove(0),
        Some(TxFailure::Invalid { .. })
    ));
    let stranger = s.user.clone();
    let theirs = set_keys(&mut s, &stranger, small());
    assert!(matches!(
        s.net.block(&[theirs]).remove(0),
        Some(TxFailure::Unauthorized { .. })
    ));
    // A tee_zk task without its input commitment, and a tee task with one.
    let user = s.user.clone();
    let input = sample(4);
    for (mode, commitment) in [(Mode::TeeZk, None), (Mode::Tee, Some(Hash([1; 32])))] {
        let tx = s.net.tx(
            &user,
            Action::SubmitTask {
                model_id: small().model.model_id(),
                input: DataRef::of(&input),
                mode,
                max_fee: ONE_TOKEN,
                deadline_blocks: 100,
                input_commitment: commitment,
                dataset: None,
                generation: None,
            },
        );
        assert!(matches!(
            s.net.block(&[tx]).remove(0),
            Some(TxFailure::Invalid { .. })
        ));
    }
}

#[test]
fn keys_that_do_not_decode_are_refused() {
    let owner = AccountKey::generate();
    let mut net = Net::new(&[owner.address()], TaskParams::default());
    let register = common::committed_model(&mut net, &owner, spec(small()));
    net.ok(&[register]);
    for vk in [
        vec![],
        vec![7; 360],
        wide().key.verifying_key().to_bytes()[..100].to_vec(),
    ] {
        let tx = net.tx(
            &owner,
            Action::SetZkKeys {
                model_id: small().model.model_id(),
                verifying_key: vk,
                proving_key: Hash::ZERO,
            },
        );
        assert!(matches!(
            net.block(&[tx]).remove(0),
            Some(TxFailure::Invalid { .. })
        ));
    }
}
