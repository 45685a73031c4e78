//! What the language-model tests share: loading a model directory, the onnxruntime reference
//! (scripts/ort_reference.py), and the checks made on every model against it.

#![allow(dead_code)] // each test binary uses its own subset

use std::path::Path;

use verity_infer::{Engine, Model};
use verity_lm::{
    GenerateParams, Generation, LanguageModel, ModelConfig, SamplingParams, Tokenizer,
};

pub fn load(dir: &Path) -> LanguageModel {
    let model = Model::from_file(&dir.join("model.onnx")).unwrap();
    LanguageModel::new(model, ModelConfig::from_dir(dir).unwrap()).unwrap()
}

pub fn tokenizer(dir: &Path) -> Tokenizer {
    Tokenizer::from_file(&dir.join("tokenizer.json")).unwrap()
}

/// onnxruntime's and the `tokenizers` package's answers for one model.
pub fn reference(key: &str) -> serde_json::Value {
    let path = std::env::var_os("VERITY_ORT_REFERENCE").expect(
        "VERITY_ORT_REFERENCE is not set: scripts/test writes the onnxruntime reference and sets it",
    );
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path:?}: {e}"));
    let all: serde_json::Value = serde_json::from_str(&text).unwrap();
    let section = all[key].clone();
    assert!(
        !section.is_null(),
        "{path:?} has no {key:?}: rerun scripts/ort_reference.py (with VERITY_SMOLLM2 set for SmolLM2)"
    );
    section
}

pub fn ids(v: &serde_json::Value) -> Vec<u32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as u32)
        .collect()
}

pub fn greedy(max_tokens: usize) -> GenerateParams {
    GenerateParams {
        max_tokens,
        sampling: SamplingParams::default(),
        trace: false,
        no_cache: false,
    }
}

/// The tokenizer's ids equal the Python package's on the reference's texts (over a megabyte),
/// and decoding gives the text back.
pub fn check_tokenizer(tok: &Tokenizer, reference: &serde_json::Value) {
    let mut bytes = 0;
    for case in reference["tokenizer"].as_array().unwrap() {
        let text = case["text"].as_str().unwrap();
        let want = ids(&case["ids"]);
        let ours = tok.encode(text).unwrap();
        let first_difference = ours.iter().zip(&want).position(|(a, b)| a != b);
        assert!(
            ours == want,
            "{} ids vs {}; first difference at {first_difference:?}",
            ours.len(),
            want.len()
        );
        assert_eq!(tok.decode(&ours).unwrap(), text, "decode(encode(x)) == x");
        bytes += text.len();
    }
    assert!(bytes >= 1 << 20, "only {bytes} bytes compared");
}

pub fn floats(v: &serde_json::Value) -> Vec<f32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap() as f32)
        .collect()
}

pub fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0f32, f32::max)
}

/// How close last-position logits must be.
pub struct Tolerance {
    /// To onnxruntime's float32 logits.
    pub onnxruntime: f32,
    /// To the same graph evaluated in float64 (where the reference has it): the exact answer
    /// that both engines' float32 arithmetic approximates.
    pub float64: f32,
}

/// Each prompt's last-position logits within `tolerance`, and the greedy continuation (with the
/// cache) identical to onnxruntime's.
pub fn check_against_onnxruntime(
    lm: &LanguageModel,
    tok: &Tokenizer,
    reference: &serde_json::Value,
    tolerance: Tolerance,
) {
    let engine = Engine::new(1).unwrap();
    let prompts = reference["prompts"].as_array().unwrap();
    assert!(prompts.len() >= 5);
    for case in prompts {
        let text = case["text"].as_str().unwrap();
        let prompt = ids(&case["ids"]);
        assert_eq!(tok.encode(text).unwrap(), prompt, "{text:?}");
        let ours = lm.prefill_logits(&engine, &prompt).unwrap();
        let theirs = floats(&case["last_logits"]);
        let to_ort = max_abs_diff(&ours, &theirs);
        print!("{text:?}: max |ours - onnxruntime| = {to_ort:.2e}");
        if !case["float64_last_logits"].is_null() {
            let exact = floats(&case["float64_last_logits"]);
            let ours_error = max_abs_diff(&ours, &exact);
            let ort_error = max_abs_diff(&theirs, &exact);
            print!("; against float64: ours {ours_error:.2e}, onnxruntime's {ort_error:.2e}");
            assert!(
                ours_error <= tolerance.float64,
                "{text:?}: logits are {ours_error} from the float64 evaluation"
            );
        }
        println!();
        assert!(
            to_ort <= tolerance.onnxruntime,
            "{text:?}: logits differ from onnxruntime's by {to_ort}"
        );
        let want = ids(&case["greedy"]);
        let got = lm
            .generate(&engine, &prompt, &greedy(want.len()), |_| {})
            .unwrap();
        println!("  greedy: {:?}", tok.decode(&got.ids()).unwrap());
        assert_eq!(got.ids(), want, "{text:?}");
    }
}

/// Sampling with the same seed gives the same tokens and log-probabilities, bit for bit, on
/// 1, 2 and 4 threads, with the cache and by rerunning the whole sequence each step.
pub fn check_bit_identical(lm: &LanguageModel, prompt: &[u32], max_tokens: usize) {
    let params = GenerateParams {
        max_tokens,
        sampling: SamplingParams {
            temperature: 0.8,
            top_k: Some(40),
            top_p: Some(0.95),
            seed: 11,
        },
        trace: true,
        no_cache: false,
    };
    let run = |threads: usize, no_cache: bool| {
        let engine = Engine::new(threads).unwrap();
        lm.generate(
            &engine,
            prompt,
            &GenerateParams { no_cache, ..params },
            |_| {},
        )
        .unwrap()
    };
    let first = run(1, false);
    assert_eq!(first.tokens.len(), max_tokens);
    let bits = |g: &Generation| -> Vec<(u32, u64)> {
        g.tokens
            .iter()
            .map(|t| (t.id, t.logprob.to_bits()))
            .collect()
    };
    for threads in [1, 2, 4] {
        let again = run(threads, false);
        assert_eq!(again, first, "{threads} threads, with the cache");
        let rerun = run(threads, true);
        assert_eq!(bits(&rerun), bits(&first), "{threads} threads, no cache");
    }
}

/// KL(p || q) in nats between the softmax distributions of two rows of logits.
pub fn kl_divergence(p_logits: &[f32], q_logits: &[f32]) -> f64 {
    let log_softmax = |v: &[f32]| -> Vec<f64> {
        let max = v.iter().fold(f64::MIN, |m, &x| m.max(x as f64));
        let sum: f64 = v.iter().map(|&x| (x as f64 - max).exp()).sum();
        v.iter().map(|&x| x as f64 - max - sum.ln()).collect()
    };
    let (lp, lq) = (log_softmax(p_logits), log_softmax(q_logits));
    lp.iter().zip(&lq).map(|(a, b)| a.exp() * (a - b)).sum()
}
