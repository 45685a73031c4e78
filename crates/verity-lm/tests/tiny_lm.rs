//! The bundled language model (models/tiny_lm): its tokenizer against the Python `tokenizers`
//! package, its logits and greedy continuations against onnxruntime, and the engine's own
//! results bit-identical across threads, runs, and the cached and uncached paths.

use std::path::PathBuf;

use verity_infer::{Data, Engine, Model, Tensor};
use verity_lm::{
    FinishReason, GenerateError, GenerateParams, LanguageModel, ModelConfig, SamplingParams,
    Tokenizer,
};

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../models/tiny_lm")
}

fn load() -> LanguageModel {
    let bytes = std::fs::read(dir().join("model.onnx")).unwrap();
    let model = Model::from_bytes(&bytes).unwrap();
    LanguageModel::new(model, ModelConfig::from_dir(&dir()).unwrap()).unwrap()
}

fn tokenizer() -> Tokenizer {
    Tokenizer::from_file(&dir().join("tokenizer.json")).unwrap()
}

/// onnxruntime's and the `tokenizers` package's answers, written by scripts/ort_reference.py.
fn reference() -> serde_json::Value {
    let path = std::env::var_os("VERITY_ORT_REFERENCE").expect(
        "VERITY_ORT_REFERENCE is not set: scripts/test writes the onnxruntime reference and sets it",
    );
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path:?}: {e}"));
    let all: serde_json::Value = serde_json::from_str(&text).unwrap();
    all["tiny_lm"].clone()
}

fn ids(v: &serde_json::Value) -> Vec<u32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as u32)
        .collect()
}

fn greedy(max_tokens: usize) -> GenerateParams {
    GenerateParams {
        max_tokens,
        sampling: SamplingParams::default(),
        trace: false,
        no_cache: false,
    }
}

#[test]
#[ignore = "needs VERITY_ORT_REFERENCE; scripts/test runs it"]
fn the_tokenizer_gives_the_python_packages_ids_on_a_megabyte_of_text() {
    let reference = reference();
    let tok = tokenizer();
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

#[test]
#[ignore = "needs VERITY_ORT_REFERENCE; scripts/test runs it"]
fn logits_and_greedy_continuations_match_onnxruntime() {
    let reference = reference();
    let lm = load();
    let engine = Engine::new(1).unwrap();
    let prompts = reference["prompts"].as_array().unwrap();
    assert!(prompts.len() >= 5);
    for case in prompts {
        let text = case["text"].as_str().unwrap();
        let prompt = ids(&case["ids"]);
        assert_eq!(tokenizer().encode(text).unwrap(), prompt, "{text:?}");
        // Last-position logits of the prefill.
        let ours = last_logits(&lm, &engine, &prompt);
        let theirs: Vec<f32> = case["last_logits"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_f64().unwrap() as f32)
            .collect();
        assert_eq!(ours.len(), theirs.len());
        let max_diff = ours
            .iter()
            .zip(&theirs)
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        println!("{text:?}: max |ours - onnxruntime| = {max_diff:.2e}");
        assert!(max_diff <= 1e-4, "{text:?}: logits differ by {max_diff}");
        // Greedy continuation, 32 tokens, with the cache.
        let want = ids(&case["greedy"]);
        let got = lm
            .generate(&engine, &prompt, &greedy(want.len()), |_| {})
            .unwrap();
        assert_eq!(got.ids(), want, "{text:?}");
    }
}

/// The prefill's last row of logits, through the graph directly.
fn last_logits(lm: &LanguageModel, engine: &Engine, prompt: &[u32]) -> Vec<f32> {
    let model = lm.model();
    let inputs = model
        .inputs()
        .iter()
        .map(|spec| {
            if spec.name == "input_ids" {
                let v = prompt.iter().map(|&t| t as i64).collect::<Vec<_>>();
                Tensor::new(vec![1, v.len()], Data::I64(v)).unwrap()
            } else {
                Tensor::new(vec![1, 4, 0, 32], Data::F32(vec![])).unwrap()
            }
        })
        .collect();
    let run = engine.run(model, inputs, false).unwrap();
    let logits = &run.outputs[0].1;
    let vocab = *logits.shape().last().unwrap();
    logits.as_f32().unwrap()[logits.len() - vocab..].to_vec()
}

#[test]
fn the_cache_threads_and_runs_do_not_change_a_bit() {
    let lm = load();
    let prompt = tokenizer()
        .encode("Call me Ishmael. Some years ago")
        .unwrap();
    let params = GenerateParams {
        max_tokens: 24,
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
            &prompt,
            &GenerateParams { no_cache, ..params },
            |_| {},
        )
        .unwrap()
    };
    let first = run(1, false);
    assert_eq!(first.tokens.len(), 24);
    let bits = |g: &verity_lm::Generation| -> Vec<(u32, u64)> {
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

#[test]
#[ignore = "needs VERITY_ORT_REFERENCE (the book's text); scripts/test runs it"]
fn the_bundled_model_continues_english_with_english_words() {
    let lm = load();
    let tok = tokenizer();
    let prompt = tok.encode("The whale").unwrap();
    let params = GenerateParams {
        max_tokens: 40,
        sampling: SamplingParams {
            temperature: 0.7,
            top_k: Some(20),
            top_p: None,
            seed: 3,
        },
        trace: false,
        no_cache: false,
    };
    let out = lm
        .generate(&Engine::new(1).unwrap(), &prompt, &params, |_| {})
        .unwrap();
    let text = tok.decode(&out.ids()).unwrap();
    // Most of its words are words of the book it learned from.
    let reference = reference();
    let book = reference["tokenizer"][0]["text"]
        .as_str()
        .unwrap()
        .to_lowercase();
    let known: std::collections::HashSet<&str> = book
        .split(|c: char| !c.is_alphabetic())
        .filter(|w| !w.is_empty())
        .collect();
    let words: Vec<String> = text
        .split(|c: char| !c.is_alphabetic())
        .filter(|w| w.len() > 1)
        .map(str::to_lowercase)
        .collect();
    let english = words.iter().filter(|w| known.contains(w.as_str())).count();
    println!("{text:?}: {english} of {} words in the book", words.len());
    assert!(
        words.len() >= 10 && english * 10 >= words.len() * 8,
        "{text:?}"
    );
}

#[test]
fn bad_prompts_are_clear_errors() {
    let lm = load();
    let engine = Engine::new(1).unwrap();
    let err = lm
        .generate(&engine, &[5, 1024], &greedy(1), |_| {})
        .unwrap_err();
    assert!(
        matches!(
            err,
            GenerateError::TokenOutOfRange {
                id: 1024,
                vocab: 1024
            }
        ),
        "{err}"
    );
    let long = vec![5; 257];
    let err = lm.generate(&engine, &long, &greedy(1), |_| {}).unwrap_err();
    assert_eq!(
        err.to_string(),
        "the prompt has 257 tokens; the model's context holds 256"
    );
    assert!(matches!(
        lm.generate(&engine, &[], &greedy(1), |_| {}),
        Err(GenerateError::EmptyPrompt)
    ));
    // A prompt that fills the context leaves room for exactly one token.
    let full = vec![5; 256];
    let out = lm.generate(&engine, &full, &greedy(8), |_| {}).unwrap();
    assert_eq!(out.tokens.len(), 1);
    assert_eq!(out.finish_reason, FinishReason::Length);
}
