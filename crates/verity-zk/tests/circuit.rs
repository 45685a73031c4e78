//! The circuit of the bundled int8 digits model against verity-infer: the same outputs on every
//! test sample, proofs that verify, and proofs that do not when anything is changed.

use std::sync::OnceLock;

use verity_infer::{Engine, Model, Tensor};
use verity_zk::{prove, setup, verify, Proof, ProvingKey, PublicInputs, ZkError, ZkModel};

fn models_dir() -> String {
    concat!(env!("CARGO_MANIFEST_DIR"), "/../../models").to_string()
}

fn load(name: &str) -> Model {
    Model::from_bytes(&std::fs::read(format!("{}/{name}", models_dir())).unwrap()).unwrap()
}

struct Fixture {
    model: Model,
    engine: Engine,
    circuit: ZkModel,
    key: ProvingKey,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let model = load("digits_mlp_int8.onnx");
        let engine = Engine::new(1).unwrap();
        let circuit = ZkModel::compile(&model, &engine).unwrap();
        let key = setup(&circuit).unwrap();
        Fixture {
            model,
            engine,
            circuit,
            key,
        }
    })
}

/// The test split's images, one task input each.
fn samples() -> Vec<Vec<Tensor>> {
    let raw: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(format!("{}/samples/digits_test.json", models_dir())).unwrap(),
    )
    .unwrap();
    raw["pixels"]
        .as_array()
        .unwrap()
        .iter()
        .map(|pixels| {
            let bytes = serde_json::to_vec(&serde_json::json!([pixels])).unwrap();
            fixture().model.task_inputs(&bytes).unwrap()
        })
        .collect()
}

fn salt(i: usize) -> ark_bn254::Fr {
    verity_zk::commit::salt_of(&i.to_le_bytes())
}

#[test]
fn the_circuit_is_the_models_integer_part() {
    let f = fixture();
    let names =
        |specs: &[verity_zk::TensorSpec]| specs.iter().map(|s| s.name.clone()).collect::<Vec<_>>();
    assert_eq!(names(&f.circuit.inputs), ["x_q"]);
    assert_eq!(names(&f.circuit.outputs), ["logits_q", "label"]);
    assert_eq!(f.circuit.inputs[0].shape, [1, 64]);
    eprintln!(
        "digits_mlp_int8: {} constraints, {} witness variables",
        f.circuit.constraints, f.circuit.witnesses
    );
}

#[test]
fn the_circuit_computes_what_the_engine_computes_on_every_test_sample() {
    let f = fixture();
    let samples = samples();
    assert!(samples.len() >= 300, "{} samples", samples.len());
    for (i, input) in samples.into_iter().enumerate() {
        let values = f.engine.run_values(&f.model, input.clone()).unwrap();
        let quantized = f
            .circuit
            .quantized_inputs(&f.model, &f.engine, input)
            .unwrap();
        let statement = verity_zk::Statement::of(&f.circuit, quantized).unwrap();
        for (spec, got) in f.circuit.outputs.iter().zip(&statement.outputs) {
            assert_eq!(*got, *values[&spec.name], "sample {i}, {}", spec.name);
        }
    }
}

#[test]
fn a_proof_verifies_and_nothing_else_does() {
    let f = fixture();
    let samples = samples();
    let vk = f.key.verifying_key().prepare();
    let prove_sample = |i: usize| {
        let quantized = f
            .circuit
            .quantized_inputs(&f.model, &f.engine, samples[i].clone())
            .unwrap();
        prove(&f.circuit, &f.key, quantized, salt(i)).unwrap()
    };
    let (proof, statement, public) = prove_sample(0);
    assert_eq!(proof.to_bytes().len(), verity_zk::PROOF_BYTES);
    verify(&vk, &public, &proof).unwrap();
    // Round trips through bytes.
    let back = Proof::from_bytes(&proof.to_bytes()).unwrap();
    verify(&vk, &public, &back).unwrap();
    let vk_back = verity_zk::VerifyingKey::from_bytes(&f.key.verifying_key().to_bytes()).unwrap();
    verify(&vk_back.prepare(), &public, &proof).unwrap();
    assert_eq!(statement.outputs.len(), 2);

    // Another input's commitments, another output, another model id: rejected.
    let (_, _, other) = prove_sample(1);
    for wrong in [
        PublicInputs {
            input_commitment: other.input_commitment,
            ..public
        },
        PublicInputs {
            output_commitment: other.output_commitment,
            ..public
        },
        PublicInputs {
            model_id: verity_types::sha256(b"another model"),
            ..public
        },
    ] {
        assert!(matches!(
            verify(&vk, &wrong, &proof),
            Err(ZkError::Rejected)
        ));
    }
    // A tampered proof: flipping a byte gives bytes that do not decode or a proof that fails.
    for i in [0, 40, 100] {
        let mut bytes = proof.to_bytes();
        bytes[i] ^= 1;
        match Proof::from_bytes(&bytes) {
            Err(ZkError::Encoding { .. }) => {}
            Ok(tampered) => assert!(matches!(
                verify(&vk, &public, &tampered),
                Err(ZkError::Rejected)
            )),
            Err(e) => panic!("unexpected {e}"),
        }
    }
    // A commitment that is not a field element is an encoding error, not a panic.
    let huge = PublicInputs {
        input_commitment: verity_types::Hash([0xff; 32]),
        ..public
    };
    assert!(matches!(
        verify(&vk, &huge, &proof),
        Err(ZkError::Encoding { .. })
    ));
}

#[test]
fn models_without_an_integer_part_are_refused_by_name() {
    let engine = Engine::new(1).unwrap();
    let err = ZkModel::compile(&load("digits_mlp.onnx"), &engine).unwrap_err();
    assert!(matches!(err, ZkError::NoIntegerPart), "{err}");
}

/// snarkjs, from `VERITY_SNARKJS`; CI must have it.
fn snarkjs() -> std::path::PathBuf {
    std::env::var_os("VERITY_SNARKJS")
        .expect("VERITY_SNARKJS is not set: scripts/test installs snarkjs and sets it")
        .into()
}

fn snarkjs_verify(tool: &std::path::Path, dir: &std::path::Path) -> bool {
    let out = std::process::Command::new(tool)
        .args(["groth16", "verify"])
        .arg(dir.join("verification_key.json"))
        .arg(dir.join("public.json"))
        .arg(dir.join("proof.json"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    eprintln!("snarkjs: {text}");
    out.status.success() && text.contains("OK")
}

#[test]
#[ignore = "needs VERITY_SNARKJS; scripts/test runs it"]
fn snarkjs_accepts_our_proofs_and_refuses_tampered_ones() {
    let tool = snarkjs();
    let f = fixture();
    let quantized = f
        .circuit
        .quantized_inputs(&f.model, &f.engine, samples()[3].clone())
        .unwrap();
    let (proof, _, public) = prove(&f.circuit, &f.key, quantized, salt(3)).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, v: serde_json::Value| {
        std::fs::write(
            dir.path().join(name),
            serde_json::to_vec_pretty(&v).unwrap(),
        )
        .unwrap()
    };
    let signals = public.elements().unwrap();
    write("verification_key.json", f.key.verifying_key().to_snarkjs());
    write("proof.json", proof.to_snarkjs());
    write(
        "public.json",
        verity_zk::snarkjs::public_to_snarkjs(&signals),
    );
    assert!(snarkjs_verify(&tool, dir.path()));
    // Our own reader takes the same files back.
    let read = |name: &str| -> serde_json::Value {
        serde_json::from_slice(&std::fs::read(dir.path().join(name)).unwrap()).unwrap()
    };
    let vk = verity_zk::VerifyingKey::from_snarkjs(&read("verification_key.json")).unwrap();
    let back = Proof::from_snarkjs(&read("proof.json")).unwrap();
    let signals_back = verity_zk::snarkjs::public_from_snarkjs(&read("public.json")).unwrap();
    verity_zk::snarkjs::verify_signals(&vk.prepare(), &signals_back, &back).unwrap();
    // Another public signal: snarkjs refuses it too.
    let mut other = signals;
    other[1] += ark_bn254::Fr::from(1u64);
    write("public.json", verity_zk::snarkjs::public_to_snarkjs(&other));
    assert!(!snarkjs_verify(&tool, dir.path()));
}

/// Why the commitments are Poseidon: the constraints each costs for the digits circuit's
/// 64-byte quantized input, beside SHA-256 of the same bytes (`docs/protocol.md` §13).
#[test]
fn commitment_costs() {
    use ark_bn254::Fr;
    use ark_crypto_primitives::crh::sha256::constraints::Sha256Gadget;
    use ark_r1cs_std::alloc::AllocVar;
    use ark_r1cs_std::fields::fp::FpVar;
    use ark_r1cs_std::uint8::UInt8;
    use ark_relations::r1cs::ConstraintSystem;

    let f = fixture();
    let quantized = f
        .circuit
        .quantized_inputs(&f.model, &f.engine, samples()[0].clone())
        .unwrap();
    let bytes: Vec<u8> = match quantized[0].data() {
        verity_infer::Data::U8(v) => v.clone(),
        other => panic!("{other:?}"),
    };
    // Poseidon over the packed bytes, as the circuit commits (its range checks apart).
    let cs = ConstraintSystem::<Fr>::new_ref();
    let words: Vec<FpVar<Fr>> = bytes
        .chunks(31)
        .map(|c| {
            let mut be = [0u8; 32];
            be[32 - c.len()..].copy_from_slice(c);
            FpVar::new_witness(cs.clone(), || {
                Ok(<Fr as ark_ff::PrimeField>::from_be_bytes_mod_order(&be))
            })
            .unwrap()
        })
        .collect();
    let before = cs.num_constraints();
    let salt = FpVar::new_witness(cs.clone(), || Ok(Fr::from(7u64))).unwrap();
    let _commitment =
        verity_zk::commit::commit_words(&cs, verity_zk::commit::INPUT_DOMAIN, &salt, &words)
            .unwrap();
    let poseidon = cs.num_constraints() - before;
    // SHA-256 of the same 64 bytes.
    let cs = ConstraintSystem::<Fr>::new_ref();
    let vars = UInt8::new_witness_vec(cs.clone(), &bytes).unwrap();
    let _digest = Sha256Gadget::digest(&vars).unwrap();
    let sha = cs.num_constraints();
    eprintln!(
        "commitment to 64 bytes: Poseidon {poseidon} constraints, SHA-256 {sha}; the digits circuit is {}",
        f.circuit.constraints
    );
    assert!(sha > 20 * poseidon, "Poseidon {poseidon}, SHA-256 {sha}");
}
