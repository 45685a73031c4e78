//! The bundled models against ONNX Runtime, determinism across runs and threads, one-step
//! re-execution, and rejection of bad models and inputs.

mod common;

use common::{bundled, digit, digits_test, model, model_bytes};
use verity_infer::{
    Commitments, Data, Engine, InferError, InputProof, InputWitness, Model, StepWitness, Tensor,
};

/// onnxruntime's outputs, written by scripts/ort_reference.py to `VERITY_ORT_REFERENCE`.
fn reference() -> serde_json::Value {
    let path = std::env::var_os("VERITY_ORT_REFERENCE").expect(
        "VERITY_ORT_REFERENCE is not set: scripts/test writes the onnxruntime reference and sets it",
    );
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path:?}: {e}"));
    serde_json::from_str(&text).unwrap()
}

/// A JSON array of numbers from the reference file, each read with `read`.
fn numbers<T>(array: &serde_json::Value, read: impl Fn(&serde_json::Value) -> Option<T>) -> Vec<T> {
    let items = array.as_array().expect("reference values are arrays");
    items
        .iter()
        .map(|x| read(x).expect("reference values are numbers"))
        .collect()
}

fn argmax_rows(v: &[f32], cols: usize) -> Vec<usize> {
    v.chunks(cols)
        .map(|r| {
            r.iter()
                .enumerate()
                .fold(0, |best, (i, &x)| if x > r[best] { i } else { best })
        })
        .collect()
}

#[test]
#[ignore = "needs VERITY_ORT_REFERENCE; scripts/test runs it"]
fn matches_onnxruntime_on_every_test_sample() {
    let reference = reference();
    let engine = Engine::new(1).unwrap();
    let (_, labels) = digits_test();
    for (name, model, input) in bundled() {
        let run = engine.run(&model, vec![input], false).unwrap();
        let theirs = &reference[name];
        for (out_name, ours) in &run.outputs {
            let want = &theirs[out_name.as_str()];
            let shape: Vec<usize> = numbers(&want["shape"], |d| d.as_u64().map(|d| d as usize));
            assert_eq!(ours.shape(), shape, "{name} {out_name}: shape");
            match ours.data() {
                Data::F32(v) => {
                    let w: Vec<f32> = numbers(&want["data"], |x| x.as_f64().map(|x| x as f32));
                    let max_diff = v
                        .iter()
                        .zip(&w)
                        .map(|(a, b)| (a - b).abs())
                        .fold(0f32, f32::max);
                    let cols = *shape.last().unwrap();
                    let same_argmax = argmax_rows(v, cols) == argmax_rows(&w, cols);
                    println!("{name} {out_name}: max |ours - onnxruntime| = {max_diff:.3e} over {} values; argmax equal on all {} rows: {same_argmax}", v.len(), v.len() / cols);
                    assert!(
                        max_diff <= 1e-5,
                        "{name} {out_name}: max abs diff {max_diff}"
                    );
                    assert!(same_argmax, "{name} {out_name}: argmax differs");
                }
                Data::I64(v) => {
                    let w: Vec<i64> = numbers(&want["data"], serde_json::Value::as_i64);
                    assert_eq!(v, &w, "{name} {out_name}");
                    if name.starts_with("digits") {
                        let correct = v.iter().zip(&labels).filter(|(a, b)| a == b).count();
                        println!("{name}: labels equal onnxruntime's on all {} samples; test accuracy {:.4}", v.len(), correct as f64 / v.len() as f64);
                    }
                }
                other => panic!(
                    "{name} {out_name}: unexpected output type {:?}",
                    other.dtype()
                ),
            }
        }
    }
}

#[test]
fn identical_bytes_and_trace_roots_across_runs_and_threads() {
    for (name, model, input) in bundled() {
        let first = Engine::new(1)
            .unwrap()
            .run(&model, vec![input.clone()], true)
            .unwrap();
        let want_root = first.trace.as_ref().unwrap().root();
        let want_outputs: Vec<_> = first.outputs.iter().map(|(_, t)| t.hash()).collect();
        for threads in [1, 2, 4] {
            let engine = Engine::new(threads).unwrap();
            for _ in 0..20 {
                let run = engine.run(&model, vec![input.clone()], true).unwrap();
                assert_eq!(
                    run.trace.unwrap().root(),
                    want_root,
                    "{name}, {threads} threads"
                );
                let outputs: Vec<_> = run.outputs.iter().map(|(_, t)| t.hash()).collect();
                assert_eq!(outputs, want_outputs, "{name}, {threads} threads");
            }
        }
    }
}

/// Pinned values: the same on every machine and build. If `models/make_models.py` is changed and
/// re-run, these change with it (and only then).
#[test]
fn trace_roots_are_pinned() {
    let engine = Engine::new(1).unwrap();
    let mut got = Vec::new();
    let mut want_all = Vec::new();
    for (name, input, want) in [
        (
            "digits_mlp.onnx",
            digit(0),
            "0xd1fcfb53927b7d7f97c2f7920689f1b7ce851377731142306476f71bee78c1a8",
        ),
        (
            "digits_mlp_int8.onnx",
            digit(0),
            "0x6cf4fcbcc345b1a0db94e7f807f9c1e2c8e5e244afd97e6efbb32ef59a807078",
        ),
        (
            "conv_random.onnx",
            common::conv_image(),
            "0x3530aedde0ca51d0e94ecaf98903ce6564c03f8c7cd31f35ee799dce364a824f",
        ),
    ] {
        let run = engine.run(&model(name), vec![input], true).unwrap();
        got.push((name, run.trace.unwrap().root().to_hex()));
        want_all.push((name, want.to_string()));
    }
    assert_eq!(got, want_all);
}

#[test]
fn every_step_re_executes_to_its_leaf() {
    let engine = Engine::new(1).unwrap();
    let mut largest = (0, "", 0);
    for (name, model, input) in bundled() {
        let input_hash = input.hash();
        for step in 0..model.step_count() {
            let (witness, trace) = model
                .step_witness(&engine, vec![input.clone()], step)
                .unwrap();
            let commitments = Commitments {
                trace_root: trace.root(),
                trace_len: trace.len() as u64,
                weights_root: model.weights_root(),
                input_hashes: vec![input_hash],
            };
            // The witness travels as bytes: it decodes to itself, and a cut is refused.
            let bytes = witness.encode();
            let decoded = StepWitness::decode(&bytes).unwrap();
            assert_eq!(decoded, witness, "{name} step {step}");
            assert!(StepWitness::decode(&bytes[..bytes.len() - 1]).is_err());
            largest = largest.max((bytes.len(), name, step));
            let outcome = model.verify_step(&engine, &commitments, &decoded).unwrap();
            assert_eq!(outcome.leaf, trace.leaves()[step], "{name} step {step}");
            assert_eq!(
                outcome.outputs,
                trace.steps()[step].outputs,
                "{name} step {step}"
            );
        }
    }
    eprintln!(
        "largest one-step witness: {} bytes ({} step {})",
        largest.0, largest.1, largest.2
    );
}

#[test]
fn one_step_rejects_inputs_that_do_not_match_the_commitments() {
    let engine = Engine::new(1).unwrap();
    let model = model("digits_mlp.onnx");
    let input = digit(0);
    // Step 1 is dense1: MatMul(x, w1), reading step 0's output and an initializer.
    let (witness, trace) = model.step_witness(&engine, vec![input.clone()], 1).unwrap();
    let commitments = Commitments {
        trace_root: trace.root(),
        trace_len: trace.len() as u64,
        weights_root: model.weights_root(),
        input_hashes: vec![input.hash()],
    };
    assert!(model.verify_step(&engine, &commitments, &witness).is_ok());

    let flip = |t: &Tensor| {
        let mut v = t.as_f32().unwrap().to_vec();
        v[0] += 1.0;
        Tensor::new(t.shape().to_vec(), Data::F32(v)).unwrap()
    };
    // The activation is carried; the weight is read from the verifier's own model.
    let Some(InputWitness::Carried { tensor, proof }) = witness.inputs[0].clone() else {
        panic!("step 0's output is carried")
    };
    assert_eq!(witness.inputs[1], Some(InputWitness::ModelWeight));
    let mut bad = witness.clone();
    bad.inputs[0] = Some(InputWitness::Carried {
        tensor: flip(&tensor),
        proof: proof.clone(),
    });
    let err = model.verify_step(&engine, &commitments, &bad).unwrap_err();
    assert!(matches!(err, InferError::Witness(_)), "{err}");
    // A weight carried instead must prove itself against the weights root: a changed one does not.
    let weight = model.initializer("w1").expect("dense1's weight is w1");
    let mut carried = witness.clone();
    carried.inputs[1] = Some(InputWitness::Carried {
        tensor: flip(&weight),
        proof: InputProof::Initializer(verity_infer::MerkleProof {
            index: 0,
            leaf_count: 0,
            siblings: vec![],
        }),
    });
    let err = model
        .verify_step(&engine, &commitments, &carried)
        .unwrap_err();
    assert!(
        err.to_string().contains("is not in the weights root"),
        "{err}"
    );
    // A step output passed off as a model weight is refused.
    let mut posing = witness.clone();
    posing.inputs[0] = Some(InputWitness::ModelWeight);
    let err = model
        .verify_step(&engine, &commitments, &posing)
        .unwrap_err();
    assert!(
        err.to_string().contains("not from the model's weights"),
        "{err}"
    );
    let mut wrong_root = commitments.clone();
    wrong_root.trace_root.0[0] ^= 1;
    assert!(model.verify_step(&engine, &wrong_root, &witness).is_err());
    let mut wrong_weights = commitments.clone();
    wrong_weights.weights_root.0[0] ^= 1;
    assert!(model
        .verify_step(&engine, &wrong_weights, &witness)
        .is_err());
    let mut wrong_kind = witness.clone();
    wrong_kind.inputs[0] = Some(InputWitness::Carried {
        tensor,
        proof: InputProof::GraphInput,
    });
    assert!(model
        .verify_step(&engine, &commitments, &wrong_kind)
        .is_err());

    // Step 0 reads the graph input: a different input fails against the committed hash.
    let (w0, _) = model.step_witness(&engine, vec![digit(1)], 0).unwrap();
    assert!(model.verify_step(&engine, &commitments, &w0).is_err());
}

#[test]
fn bad_models_and_inputs_are_errors_with_reasons() {
    let bytes = model_bytes("digits_mlp.onnx");
    for cut in [1, 10, bytes.len() / 2, bytes.len() - 1] {
        let err = Model::from_bytes(&bytes[..cut])
            .err()
            .unwrap_or_else(|| panic!("truncated at {cut} loaded"));
        assert!(
            matches!(
                err,
                InferError::Decode(_)
                    | InferError::InvalidModel(_)
                    | InferError::Initializer { .. }
            ),
            "cut {cut}: {err}"
        );
    }
    let err = Model::from_bytes(b"this is not an onnx file at all")
        .err()
        .unwrap();
    assert!(err.to_string().contains("not a valid ONNX model"), "{err}");
    assert!(Model::from_bytes(&[]).is_err());

    let model = model("digits_mlp.onnx");
    let engine = Engine::new(1).unwrap();
    let wrong_shape = Tensor::new(vec![1, 63], Data::F32(vec![0.0; 63])).unwrap();
    let err = engine.run(&model, vec![wrong_shape], false).err().unwrap();
    assert_eq!(
        err.to_string(),
        r#"input "pixels": expected float32[N, 64], got float32 [1, 63]"#
    );
    let wrong_type = Tensor::new(vec![1, 64], Data::I64(vec![0; 64])).unwrap();
    let err = engine.run(&model, vec![wrong_type], false).err().unwrap();
    assert_eq!(
        err.to_string(),
        r#"input "pixels": expected float32[N, 64], got int64 [1, 64]"#
    );
    let err = engine.run(&model, vec![], false).err().unwrap();
    assert!(matches!(
        err,
        InferError::InputCount {
            expected: 1,
            actual: 0
        }
    ));
}

/// Attack (review): an `.npy` of shape (0, 1, 1048576, 1048576) holds no bytes of data but sized
/// the CNN's convolution buffers from its dimensions; workers aborted on it and the task went
/// from worker to worker. It is refused as it is read, by the worker and by a validator alike.
#[test]
fn an_empty_input_with_huge_dimensions_is_refused_as_it_is_read() {
    let header = "{'descr': '<f4', 'fortran_order': False, 'shape': (0, 1, 1048576, 1048576), }";
    let mut npy = b"\x93NUMPY\x01\x00".to_vec();
    let padded = format!("{header:<117}\n");
    npy.extend_from_slice(&(padded.len() as u16).to_le_bytes());
    npy.extend_from_slice(padded.as_bytes());
    for file in ["conv_random.onnx", "digits_mlp.onnx"] {
        let err = model(file).task_inputs(&npy).unwrap_err();
        assert!(err.to_string().contains("too large"), "{file}: {err}");
    }
}

#[test]
fn a_corrupted_run_differs_from_its_step_on() {
    let engine = Engine::new(1).unwrap();
    for (name, model, input) in bundled() {
        let honest = engine.run(&model, vec![input.clone()], true).unwrap();
        let honest = honest.trace.unwrap();
        for step in [0, model.step_count() / 2, model.step_count() - 1] {
            let lie = engine
                .run_corrupted(&model, vec![input.clone()], step)
                .unwrap()
                .trace
                .unwrap();
            assert_eq!(
                lie.leaves()[..step],
                honest.leaves()[..step],
                "{name} {step}"
            );
            assert_ne!(lie.leaves()[step], honest.leaves()[step], "{name} {step}");
            assert_ne!(lie.root(), honest.root());
        }
    }
}

/// The README's claim: the bundled digits models classify at least 96 % of the held-out test
/// split correctly, as this engine runs them.
#[test]
fn the_digits_models_classify_at_least_96_percent_of_the_test_split() {
    let engine = Engine::new(1).unwrap();
    let (pixels, labels) = digits_test();
    for name in [
        "digits_mlp.onnx",
        "digits_mlp_int8.onnx",
        "digits_mlp_int8_wide.onnx",
    ] {
        let run = engine
            .run(&model(name), vec![pixels.clone()], false)
            .unwrap();
        let (_, label) = run.outputs.iter().find(|(n, _)| n == "label").unwrap();
        let Data::I64(predicted) = label.data() else {
            panic!("{name}: label is {}", label.dtype());
        };
        let correct = predicted
            .iter()
            .zip(&labels)
            .filter(|(a, b)| a == b)
            .count();
        let accuracy = correct as f64 / labels.len() as f64;
        eprintln!(
            "{name}: {correct} of {} correct ({accuracy:.4})",
            labels.len()
        );
        assert!(accuracy >= 0.96, "{name}: accuracy {accuracy:.4}");
    }
}

/// An attribute the op does not have is refused, naming the node and the attribute, rather
/// than ignored (it might change what the node computes).
#[test]
fn an_unknown_attribute_is_refused_with_the_nodes_name() {
    let bytes = std::fs::read(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../models/testdata/unknown_attribute.onnx"),
    )
    .unwrap();
    match Model::from_bytes(&bytes) {
        Err(InferError::Unsupported { node, op, reason }) => {
            assert_eq!(node, "relu_with_extra");
            assert_eq!(op, "Relu");
            assert!(reason.contains("attribute bogus"), "{reason}");
        }
        Err(other) => panic!("another error: {other}"),
        Ok(_) => panic!("a model with an unknown attribute loaded"),
    }
}
