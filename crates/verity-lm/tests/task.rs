//! A registered language model as a worker runs it (models/tiny_lm): the prompt document in,
//! the output document and its trace root out, deterministic for a seed, stopping where the
//! prompt says.

use std::path::{Path, PathBuf};

use verity_infer::Engine;
use verity_lm::task::{output_bytes, parse_prompt, trace_root};
use verity_lm::{GenerationConfig, ServedModel};
use verity_types::{generation_leaf, GenerationFinish, PromptDocument, PromptMessage};

fn model_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../models/tiny_lm")
}

/// The model's registered files, as a worker stores them.
fn served() -> (tempfile::TempDir, ServedModel) {
    let dir = tempfile::tempdir().unwrap();
    let src = model_dir();
    for name in ["model.onnx", "tokenizer.json"] {
        std::fs::copy(src.join(name), dir.path().join(name)).unwrap();
    }
    let config = GenerationConfig::from_dir(&src).unwrap();
    assert_eq!(config.context, 256);
    assert_eq!(config.eos_token_ids, vec![0]);
    std::fs::write(dir.path().join("generation.json"), config.to_json()).unwrap();
    let model = ServedModel::load(dir.path()).unwrap();
    (dir, model)
}

fn prompt(text: &str, max_tokens: u32) -> PromptDocument {
    PromptDocument {
        messages: None,
        prompt: Some(text.into()),
        max_tokens,
        temperature: 0.0,
        top_k: None,
        top_p: None,
        seed: None,
        stop: Vec::new(),
    }
}

fn run(model: &ServedModel, doc: &PromptDocument, seed: u64) -> verity_types::GenerationDocument {
    let ids = model.renderer().prompt_ids(doc).unwrap();
    model
        .run(&Engine::new(1).unwrap(), doc, &ids, seed, |_| {})
        .unwrap()
}

#[test]
fn a_prompt_document_runs_to_an_output_whose_root_binds_every_token() {
    let (_dir, model) = served();
    let doc = prompt("Call me Ishmael.", 12);
    let mut streamed = String::new();
    let ids = model.renderer().prompt_ids(&doc).unwrap();
    let out = model
        .run(&Engine::new(2).unwrap(), &doc, &ids, 7, |piece| {
            streamed.push_str(piece)
        })
        .unwrap();
    assert_eq!(out.prompt_ids, ids);
    assert_eq!(out.seed, 7);
    assert!(!out.tokens.is_empty() && out.tokens.len() <= 12);
    assert!(out.text.starts_with(&streamed) && !streamed.is_empty());
    // Greedy is the same as the engine's own generation, and the same on one thread.
    assert_eq!(out, run(&model, &doc, 7));
    let leaves: Vec<_> = out
        .tokens
        .iter()
        .enumerate()
        .map(|(i, t)| generation_leaf(i as u32, &t.trace_root, t.id))
        .collect();
    assert_eq!(trace_root(&out), verity_infer::merkle::root(&leaves));
    // Another token anywhere changes the root.
    let mut forged = out.clone();
    forged.tokens[0].id ^= 1;
    assert_ne!(trace_root(&forged), trace_root(&out));
    // The output file is JSON that reads back the same.
    let back: verity_types::GenerationDocument =
        serde_json::from_slice(&output_bytes(&out)).unwrap();
    assert_eq!(back, out);
}

#[test]
fn sampling_follows_the_seed_and_stop_strings_end_the_answer() {
    let (_dir, model) = served();
    let mut doc = prompt("The whale", 24);
    doc.temperature = 0.9;
    doc.top_k = Some(40);
    let a = run(&model, &doc, 1);
    assert_eq!(a, run(&model, &doc, 1), "a seed gives one answer");
    let others: Vec<_> = (2..6).map(|seed| run(&model, &doc, seed).text).collect();
    assert!(others.iter().any(|t| *t != a.text), "seeds differ");

    // Stop at the first space of the greedy answer: the text ends before it.
    let greedy = run(&model, &prompt("The whale", 24), 0);
    let space = greedy.text.trim_start().find(' ').expect("several words");
    let mut stopped = prompt("The whale", 24);
    stopped.stop = vec![" ".into()];
    let out = run(&model, &stopped, 0);
    assert_eq!(out.finish_reason, GenerationFinish::Stop);
    assert!(!out.text.trim_start().contains(' '), "{:?}", out.text);
    assert!(out.tokens.len() < greedy.tokens.len() || space == 0);
    assert!(greedy.text.starts_with(&out.text));
}

#[test]
fn chat_messages_render_and_bad_prompts_are_refused_with_a_reason() {
    let (_dir, model) = served();
    let chat = PromptDocument {
        messages: Some(vec![PromptMessage {
            role: "user".into(),
            content: "Call me Ishmael.".into(),
        }]),
        prompt: None,
        ..prompt("", 4)
    };
    // A model without a chat template continues the messages' text.
    assert_eq!(
        model.renderer().prompt_ids(&chat).unwrap(),
        model
            .renderer()
            .prompt_ids(&prompt("Call me Ishmael.", 4))
            .unwrap()
    );
    for (json, expected) in [
        (r#"{"max_tokens": 4}"#, "exactly one of messages and prompt"),
        (
            r#"{"prompt": "a", "messages": [], "max_tokens": 4}"#,
            "exactly one",
        ),
        (r#"{"messages": [], "max_tokens": 4}"#, "messages is empty"),
        (r#"{"prompt": "a", "max_tokens": 0}"#, "max_tokens"),
        (
            r#"{"prompt": "a", "max_tokens": 4, "temperature": -1}"#,
            "temperature",
        ),
        (r#"{"prompt": "a", "max_tokens": 4, "top_p": 2}"#, "top"),
        (
            r#"{"prompt": "a", "max_tokens": 4, "stop": [""]}"#,
            "stop string",
        ),
        (
            r#"{"prompt": "a", "max_tokens": 4, "logit_bias": {}}"#,
            "unknown field",
        ),
        (r#"[1, 2]"#, "invalid type"),
    ] {
        let err = parse_prompt(json.as_bytes()).unwrap_err().to_string();
        assert!(
            err.contains(expected),
            "{json}: {err:?} should say {expected:?}"
        );
    }
}

#[test]
fn a_missing_or_broken_file_is_named() {
    let (dir, _) = served();
    std::fs::write(dir.path().join("generation.json"), b"{\"context\": 5}").unwrap();
    let err = ServedModel::load(dir.path()).err().unwrap().to_string();
    assert!(err.contains("generation config"), "{err}");
    std::fs::remove_file(dir.path().join("tokenizer.json")).unwrap();
    let err = ServedModel::load(Path::new(dir.path()))
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("tokenizer.json"), "{err}");
}
