//! One-step re-execution as validators run it in a dispute: a witness decoded from arbitrary
//! bytes, and the honest witness built from an arbitrary task input (any shape, any size the
//! reader accepts), each checked by `verify_step` against the bundled models: errors, never a
//! panic or an allocation without bound. The first byte picks the model, the second the step.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use verity_infer::{Commitments, Engine, InputWitness, Model, StepWitness};
use verity_types::Hash;

const MODELS: [&[u8]; 2] = [
    include_bytes!("../../models/digits_mlp.onnx"),
    include_bytes!("../../models/conv_random.onnx"),
];

fn models() -> &'static [(Model, Engine)] {
    static LOADED: OnceLock<Vec<(Model, Engine)>> = OnceLock::new();
    LOADED.get_or_init(|| {
        MODELS
            .iter()
            .map(|bytes| {
                (
                    Model::from_bytes(bytes).expect("bundled model"),
                    Engine::new(1).expect("engine"),
                )
            })
            .collect()
    })
}

fuzz_target!(|bytes: &[u8]| {
    let [pick, step, rest @ ..] = bytes else {
        return;
    };
    let (model, engine) = &models()[usize::from(*pick) % MODELS.len()];
    let steps = model.step_count() as u64;
    if let Ok(witness) = StepWitness::decode(rest) {
        let commitments = Commitments {
            trace_root: Hash::ZERO,
            trace_len: steps,
            weights_root: model.weights_root(),
            input_hashes: witness
                .inputs
                .iter()
                .flatten()
                .filter_map(|w| match w {
                    InputWitness::Carried { tensor, .. } => Some(tensor.hash()),
                    InputWitness::ModelWeight | InputWitness::Recomputed => None,
                })
                .take(model.inputs().len())
                .collect(),
        };
        let _ = model.verify_step(engine, &commitments, &witness);
    }
    let Ok(inputs) = model.task_inputs(rest) else {
        return;
    };
    let input_hashes = inputs.iter().map(|t| t.hash()).collect();
    let step = usize::from(*step) % model.step_count();
    if let Ok((witness, trace)) = model.step_witness(engine, inputs, step) {
        let decoded = StepWitness::decode(&witness.encode()).expect("a witness decodes");
        let commitments = Commitments {
            trace_root: trace.root(),
            trace_len: steps,
            weights_root: model.weights_root(),
            input_hashes,
        };
        model
            .verify_step(engine, &commitments, &decoded)
            .expect("an honest witness verifies");
    }
});
