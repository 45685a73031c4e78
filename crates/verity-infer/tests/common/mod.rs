//! Bundled models and samples (`models/`, made by `models/make_models.py`).

#![allow(dead_code)] // each test binary uses its own subset

use std::path::PathBuf;

use verity_infer::{Data, Model, Tensor};

pub fn models_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../models")
}

pub fn model_bytes(name: &str) -> Vec<u8> {
    std::fs::read(models_dir().join(name)).unwrap_or_else(|e| panic!("models/{name}: {e}"))
}

pub fn model(name: &str) -> Model {
    Model::from_bytes(&model_bytes(name)).unwrap_or_else(|e| panic!("models/{name}: {e}"))
}

fn json(name: &str) -> serde_json::Value {
    let text = std::fs::read_to_string(models_dir().join("samples").join(name)).unwrap();
    serde_json::from_str(&text).unwrap()
}

/// The digits test split as one `[N, 64]` batch, and its labels.
pub fn digits_test() -> (Tensor, Vec<i64>) {
    let v = json("digits_test.json");
    let rows = v["pixels"].as_array().unwrap();
    let pixels: Vec<f32> = rows
        .iter()
        .flat_map(|r| {
            r.as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_f64().unwrap() as f32)
        })
        .collect();
    let labels = v["labels"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_i64().unwrap())
        .collect();
    (
        Tensor::new(vec![rows.len(), 64], Data::F32(pixels)).unwrap(),
        labels,
    )
}

/// One row of the digits test split as a `[1, 64]` tensor.
pub fn digit(i: usize) -> Tensor {
    let (all, _) = digits_test();
    let v = all.as_f32().unwrap()[i * 64..(i + 1) * 64].to_vec();
    Tensor::new(vec![1, 64], Data::F32(v)).unwrap()
}

/// The conv model's sample `[1, 3, 32, 32]` image.
pub fn conv_image() -> Tensor {
    fn flatten(v: &serde_json::Value, out: &mut Vec<f32>) {
        match v {
            serde_json::Value::Array(a) => a.iter().for_each(|x| flatten(x, out)),
            x => out.push(x.as_f64().unwrap() as f32),
        }
    }
    let mut data = Vec::new();
    flatten(&json("conv_image.json"), &mut data);
    Tensor::new(vec![1, 3, 32, 32], Data::F32(data)).unwrap()
}

/// Each bundled model with an input for it.
pub fn bundled() -> Vec<(&'static str, Model, Tensor)> {
    vec![
        ("digits_mlp.onnx", model("digits_mlp.onnx"), digits_test().0),
        (
            "digits_mlp_int8.onnx",
            model("digits_mlp_int8.onnx"),
            digits_test().0,
        ),
        ("conv_random.onnx", model("conv_random.onnx"), conv_image()),
    ]
}
