//! The bundled language model (models/tiny_lm): its tokenizer against the Python `tokenizers`
//! package, its logits and greedy continuations against onnxruntime, and the engine's own
//! results bit-identical across threads, runs, and the cached and uncached paths.

mod common;

use std::path::PathBuf;

use common::{greedy, reference};
use verity_infer::Engine;
use verity_lm::{
    FinishReason, GenerateError, GenerateParams, LanguageModel, SamplingParams, Tokenizer,
};

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../models/tiny_lm")
}

fn load() -> LanguageModel {
    common::load(&dir())
}

fn tokenizer() -> Tokenizer {
    common::tokenizer(&dir())
}

#[test]
#[ignore = "needs VERITY_ORT_REFERENCE; scripts/test runs it"]
fn the_tokenizer_gives_the_python_packages_ids_on_a_megabyte_of_text() {
    common::check_tokenizer(&tokenizer(), &reference("tiny_lm"));
}

#[test]
#[ignore = "needs VERITY_ORT_REFERENCE; scripts/test runs it"]
fn logits_and_greedy_continuations_match_onnxruntime() {
    common::check_against_onnxruntime(
        &load(),
        &tokenizer(),
        &reference("tiny_lm"),
        common::Tolerance {
            onnxruntime: 1e-4,
            float64: 1e-4,
        },
    );
}

#[test]
fn the_cache_threads_and_runs_do_not_change_a_bit() {
    let prompt = tokenizer()
        .encode("Call me Ishmael. Some years ago")
        .unwrap();
    common::check_bit_identical(&load(), &prompt, 24);
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
    let reference = reference("tiny_lm");
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
        .generate(&engine, &[5, 2048], &greedy(1), |_| {})
        .unwrap_err();
    assert!(
        matches!(
            err,
            GenerateError::TokenOutOfRange {
                id: 2048,
                vocab: 2048
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
