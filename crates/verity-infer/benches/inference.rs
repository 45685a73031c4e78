//! Single-threaded inference speed of verity-infer against tract-onnx (the baseline), on the
//! bundled digits MLP (batch 1) and the 1.62 M-MAC random CNN, plus the cost of the trace.
//!
//!     cargo bench -p verity-infer --bench inference
//!
//! Each group holds `tract` (baseline), `verity` and `verity+trace`, measured in the same run.

use std::path::PathBuf;

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use tract_onnx::prelude::*;
use verity_infer::{Data, Engine, Model, Tensor as VTensor};

fn models_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../models")
}

fn input(shape: &[usize], seed: u32) -> Vec<f32> {
    let n: usize = shape.iter().product();
    // Pixel-like values, deterministic.
    (0..n)
        .map(|i| ((i as u32).wrapping_mul(2654435761).wrapping_add(seed) >> 28) as f32)
        .collect()
}

fn bench_model(c: &mut Criterion, group: &str, file: &str, shape: &[usize]) {
    let path = models_dir().join(file);
    let data = input(shape, 7);

    let tract_model = tract_onnx::onnx()
        .model_for_path(&path)
        .and_then(|m| m.with_input_fact(0, f32::fact(shape).into()))
        .and_then(|m| m.into_optimized())
        .and_then(|m| m.into_runnable())
        .expect("tract loads the model");
    let tract_input: TValue = tract_ndarray::ArrayD::from_shape_vec(shape.to_vec(), data.clone())
        .unwrap()
        .into_tensor()
        .into();

    let model = Model::from_bytes(&std::fs::read(&path).unwrap()).unwrap();
    let engine = Engine::new(1).unwrap();
    let ours = VTensor::new(shape.to_vec(), Data::F32(data)).unwrap();

    // Same answer from both before timing anything.
    let theirs = tract_model.run(tvec!(tract_input.clone())).unwrap();
    let theirs: Vec<f32> = theirs[0]
        .to_plain_array_view::<f32>()
        .unwrap()
        .iter()
        .copied()
        .collect();
    let mine = engine.run(&model, vec![ours.clone()], false).unwrap();
    let mine = mine.outputs[0].1.as_f32().unwrap();
    let diff = mine
        .iter()
        .zip(&theirs)
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    assert!(diff < 1e-4, "{group}: verity and tract differ by {diff}");

    let mut g = c.benchmark_group(group);
    g.bench_function("tract", |b| {
        b.iter(|| {
            tract_model
                .run(tvec!(black_box(tract_input.clone())))
                .unwrap()
        })
    });
    g.bench_function("verity", |b| {
        b.iter(|| {
            engine
                .run(&model, vec![black_box(ours.clone())], false)
                .unwrap()
        })
    });
    g.bench_function("verity+trace", |b| {
        b.iter(|| {
            engine
                .run(&model, vec![black_box(ours.clone())], true)
                .unwrap()
        })
    });
    g.finish();
}

fn benches(c: &mut Criterion) {
    bench_model(c, "digits_mlp_batch1", "digits_mlp.onnx", &[1, 64]);
    bench_model(
        c,
        "conv_random_1.6M_MAC",
        "conv_random.onnx",
        &[1, 3, 32, 32],
    );
}

criterion_group!(inference, benches);
criterion_main!(inference);
