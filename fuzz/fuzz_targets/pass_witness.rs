//! A generation dispute's one-step as validators run it: a pass witness decoded from arbitrary
//! bytes and checked against the bundled language model for an arbitrary pass of a fixed
//! prompt, as an op or as the sampling step: errors, never a panic or an allocation without
//! bound. The first byte picks the pass and the target, the second the step.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use verity_infer::{Engine, Model};
use verity_lm::dispute::{PassTarget, PassWitness};
use verity_lm::{LanguageModel, ModelConfig, SamplingParams};
use verity_types::Hash;

const GRAPH: &[u8] = include_bytes!("../../models/tiny_lm/model.onnx");

fn model() -> &'static (LanguageModel, Engine) {
    static LOADED: OnceLock<(LanguageModel, Engine)> = OnceLock::new();
    LOADED.get_or_init(|| {
        let config = ModelConfig {
            context: Some(256),
            ..Default::default()
        };
        let model = Model::from_bytes(GRAPH).expect("bundled model");
        (
            LanguageModel::new(model, config).expect("a language model"),
            Engine::new(1).expect("engine"),
        )
    })
}

const PROMPT: [u32; 5] = [310, 1020, 44, 17, 901];

fuzz_target!(|bytes: &[u8]| {
    let [pick, step, rest @ ..] = bytes else {
        return;
    };
    let Ok(witness) = PassWitness::decode(rest) else {
        return;
    };
    let (lm, engine) = model();
    let pass = usize::from(pick % 4);
    let sequence: Vec<u32> = PROMPT.iter().copied().chain(0..pass as u32).collect();
    let target = match pick & 0x80 {
        0 => PassTarget::Step(usize::from(*step) % lm.model().step_count()),
        _ => PassTarget::Sampling,
    };
    let root = Hash([*step; 32]);
    let _ = lm.check_pass(
        engine,
        PROMPT.len(),
        &sequence,
        (pass > 0).then_some(&root),
        [&root, &root],
        &witness,
        target,
        &SamplingParams::default(),
    );
});
