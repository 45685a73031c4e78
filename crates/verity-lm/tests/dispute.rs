//! A generation's one-steps on the bundled model (models/tiny_lm): pass `i` rebuilt from the
//! prompt and the tokens before it, one op re-executed from a witness, and the token sampled
//! again from logits recomputed from the hidden state. A witness that lies about the cache, the
//! step or the roots is refused.

use std::path::PathBuf;

use verity_infer::{Engine, InputWitness, StepWitness};
use verity_lm::dispute::{PassOutcome, PassTarget, PassWitness, MAX_CARRIED_ELEMENTS};
use verity_lm::{GenerateParams, LanguageModel, ModelConfig, SamplingParams};

fn model() -> LanguageModel {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../models/tiny_lm");
    let model = verity_infer::Model::from_file(&dir.join("model.onnx")).unwrap();
    LanguageModel::new(model, ModelConfig::from_dir(&dir).unwrap()).unwrap()
}

const PROMPT: [u32; 6] = [310, 1020, 44, 17, 901, 5];

fn sampling() -> SamplingParams {
    SamplingParams {
        temperature: 0.8,
        top_k: Some(40),
        top_p: Some(0.95),
        seed: 11,
    }
}

/// A traced generation of 8 tokens: their ids and each pass's trace root.
fn generation(lm: &LanguageModel, engine: &Engine) -> (Vec<u32>, Vec<verity_types::Hash>) {
    let params = GenerateParams {
        max_tokens: 8,
        sampling: sampling(),
        trace: true,
        no_cache: false,
    };
    let out = lm.generate(engine, &PROMPT, &params, |_| {}).unwrap();
    let ids = out.tokens.iter().map(|t| t.id).collect();
    let roots = out.tokens.iter().map(|t| t.trace_root.unwrap()).collect();
    (ids, roots)
}

#[test]
fn every_pass_replays_to_its_root_and_its_ops_and_token_check_out() {
    let lm = model();
    let engine = Engine::new(1).unwrap();
    let (ids, roots) = generation(&lm, &engine);
    for i in [0usize, 1, 5] {
        let replayed = lm.replay(&engine, &PROMPT, &ids[..i]).unwrap();
        let run = engine
            .run(lm.model(), replayed.inputs.clone(), true)
            .unwrap();
        let trace = run.trace.unwrap();
        assert_eq!(trace.root(), roots[i], "pass {i} replays to its root");
        let sequence = [&PROMPT[..], &ids[..i]].concat();
        let previous = i.checked_sub(1).map(|p| roots[p]);
        // One op of the pass, anywhere: the one-step yields the honest leaf.
        for step in [0, lm.model().step_count() / 2, lm.model().step_count() - 1] {
            let witness = lm
                .pass_witness(&engine, &replayed, PassTarget::Step(step))
                .unwrap();
            let witness = PassWitness::decode(&witness.encode()).unwrap();
            let outcome = lm
                .check_pass(
                    &engine,
                    PROMPT.len(),
                    &sequence,
                    previous.as_ref(),
                    [&roots[i], &roots[i]],
                    &witness,
                    PassTarget::Step(step),
                    &sampling(),
                )
                .unwrap();
            assert_eq!(
                outcome,
                PassOutcome::Step(verity_infer::StepOutcome {
                    outputs: trace.steps()[step].outputs.clone(),
                    leaf: trace.leaves()[step],
                })
            );
        }
        // The token: recomputed logits, sampled at the same position with the same seed.
        let witness = lm
            .pass_witness(&engine, &replayed, PassTarget::Sampling)
            .unwrap();
        let outcome = lm
            .check_pass(
                &engine,
                PROMPT.len(),
                &sequence,
                previous.as_ref(),
                [&roots[i], &roots[i]],
                &witness,
                PassTarget::Sampling,
                &sampling(),
            )
            .unwrap();
        match outcome {
            PassOutcome::Token(choice) => assert_eq!(choice.token, ids[i], "pass {i}"),
            other => panic!("{other:?}"),
        }
        assert!(witness.encode().len() < 64 * 1024);
    }
}

#[test]
fn a_prompts_logits_are_recomputed_not_carried() {
    let lm = model();
    let engine = Engine::new(1).unwrap();
    // 40 prompt positions of 2048 logits are 80k elements: more than a witness carries.
    let prompt: Vec<u32> = (0..40).map(|i| 100 + i * 7).collect();
    let replayed = lm.replay(&engine, &prompt, &[]).unwrap();
    let witness = lm
        .pass_witness(&engine, &replayed, PassTarget::Sampling)
        .unwrap();
    let carried_max = witness
        .chain
        .iter()
        .flat_map(|w| w.inputs.iter().flatten())
        .filter_map(|input| match input {
            InputWitness::Carried { tensor, .. } => Some(tensor.len()),
            _ => None,
        })
        .max()
        .unwrap();
    assert!(carried_max <= MAX_CARRIED_ELEMENTS, "{carried_max}");
    let run = engine.run(lm.model(), replayed.inputs, true).unwrap();
    let root = run.trace.unwrap().root();
    let outcome = lm
        .check_pass(
            &engine,
            prompt.len(),
            &prompt,
            None,
            [&root, &root],
            &witness,
            PassTarget::Sampling,
            &SamplingParams::default(),
        )
        .unwrap();
    let greedy = lm.prefill_logits(&engine, &prompt).unwrap();
    let expected = verity_lm::sampling::choose(&greedy, &SamplingParams::default(), 40).unwrap();
    assert_eq!(outcome, PassOutcome::Token(expected));
}

#[test]
fn a_witness_that_lies_is_refused() {
    let lm = model();
    let engine = Engine::new(1).unwrap();
    let (ids, roots) = generation(&lm, &engine);
    let i = 3;
    let replayed = lm.replay(&engine, &PROMPT, &ids[..i]).unwrap();
    let sequence = [&PROMPT[..], &ids[..i]].concat();
    // The first step reading the cache: the attention's past keys.
    let step = (0..lm.model().step_count())
        .find(|&s| {
            let w = lm
                .pass_witness(&engine, &replayed, PassTarget::Step(s))
                .unwrap();
            w.chain[0].inputs.iter().flatten().any(|input| {
                matches!(input, InputWitness::Carried { proof: verity_infer::InputProof::GraphInput, tensor } if tensor.shape().len() == 4)
            })
        })
        .expect("some step reads the cache");
    let honest = lm
        .pass_witness(&engine, &replayed, PassTarget::Step(step))
        .unwrap();
    let check = |witness: &PassWitness, previous: &verity_types::Hash, tokens: &[u32]| {
        lm.check_pass(
            &engine,
            PROMPT.len(),
            tokens,
            Some(previous),
            [&roots[i], &roots[i]],
            witness,
            PassTarget::Step(step),
            &sampling(),
        )
    };
    assert!(check(&honest, &roots[i - 1], &sequence).is_ok());
    // The cache proven against another pass's root.
    assert!(check(&honest, &roots[i - 2], &sequence).is_err());
    // Another token before the pass: the ids input no longer hashes to the committed one
    // where the step reads it, or the cache does not follow.
    let mut other = sequence.clone();
    *other.last_mut().unwrap() ^= 1;
    let ids_step = lm
        .pass_witness(&engine, &replayed, PassTarget::Step(0))
        .unwrap();
    let check0 = |tokens: &[u32]| {
        lm.check_pass(
            &engine,
            PROMPT.len(),
            tokens,
            Some(&roots[i - 1]),
            [&roots[i], &roots[i]],
            &ids_step,
            PassTarget::Step(0),
            &sampling(),
        )
    };
    assert!(check0(&sequence).is_ok());
    assert!(check0(&other).is_err());
    // The cache proofs left out: the step reads an input nobody proved.
    let mut bare = honest.clone();
    bare.previous.clear();
    assert!(check(&bare, &roots[i - 1], &sequence).is_err());
    // A carried tensor changed.
    let mut forged = honest.clone();
    for input in forged.chain[0].inputs.iter_mut().flatten() {
        if let InputWitness::Carried { tensor, .. } = input {
            *tensor = tensor.perturbed();
            break;
        }
    }
    assert!(check(&forged, &roots[i - 1], &sequence).is_err());
    // A witness for another step than the one in dispute.
    let wrong = PassWitness {
        chain: vec![StepWitness {
            step: step + 1,
            inputs: honest.chain[0].inputs.clone(),
        }],
        previous: honest.previous.clone(),
    };
    assert!(check(&wrong, &roots[i - 1], &sequence).is_err());
    // Bytes that are not a witness.
    assert!(PassWitness::decode(&[1, 2, 3]).is_err());
    let mut trailing = honest.encode();
    trailing.push(0);
    assert!(PassWitness::decode(&trailing).is_err());
}
