//! Models as users export them: GPT-2, LLaMA and Qwen2 (the transformers classes the hub's
//! checkpoints load into, small random configurations) through torch.onnx.export's TorchScript
//! exporter (opset 17, with and without past key values as optimum names them) and its
//! torch.export-based exporter (opsets 18 and 20), and optimum's decoder export with and without
//! past key values. scripts/torch_exports.py made them (it needs torch, so its outputs are
//! committed) with torch's and onnxruntime's answers.

mod common;

use std::path::{Path, PathBuf};

use verity_infer::Engine;

fn exports() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/exports");
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(&root)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("model.onnx").exists())
        .collect();
    dirs.sort();
    dirs
}

/// Every export loads, every op runs, the last position's logits are within 1e-4 of torch's
/// and onnxruntime's, and greedy continuations equal torch's `generate` token for token (the
/// cache path for the exports with past key values, the full rerun for the others).
#[test]
fn every_export_matches_torch_and_onnxruntime() {
    let dirs = exports();
    let names: Vec<String> = dirs
        .iter()
        .map(|d| d.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    for arch in ["gpt2", "llama", "qwen2"] {
        for kind in [
            "legacy",
            "legacy_past",
            "dynamo18",
            "dynamo20",
            "optimum",
            "optimum_past",
        ] {
            assert!(
                names.contains(&format!("{arch}_{kind}")),
                "{arch}_{kind} missing"
            );
        }
    }
    let engine = Engine::new(2).unwrap();
    for dir in dirs {
        let name = dir.file_name().unwrap().to_string_lossy().into_owned();
        let lm = common::load(&dir);
        assert_eq!(lm.has_cache(), name.ends_with("_past"), "{name}");
        let text = std::fs::read_to_string(dir.join("reference.json")).unwrap();
        let reference: serde_json::Value = serde_json::from_str(&text).unwrap();
        for case in reference["prompts"].as_array().unwrap() {
            let prompt = common::ids(&case["ids"]);
            let ours = lm.prefill_logits(&engine, &prompt).unwrap();
            let to_torch = common::max_abs_diff(&ours, &common::floats(&case["torch_last_logits"]));
            let to_ort =
                common::max_abs_diff(&ours, &common::floats(&case["onnxruntime_last_logits"]));
            println!("{name} {prompt:?}: |ours - torch| {to_torch:.2e}, |ours - onnxruntime| {to_ort:.2e}");
            assert!(to_torch <= 1e-4 && to_ort <= 1e-4, "{name} {prompt:?}");
            let want = common::ids(&case["greedy"]);
            let got = lm
                .generate(&engine, &prompt, &common::greedy(want.len()), |_| {})
                .unwrap();
            assert_eq!(got.ids(), want, "{name} {prompt:?}");
        }
    }
}
