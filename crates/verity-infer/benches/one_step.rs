//! What a validator spends re-executing the last step of a dispute: decoding the witness,
//! checking every input's proof and running one node, for every step of the bundled models,
//! against the baseline of running the whole model once (what a validator would spend if it
//! simply re-ran the task).
//!
//!     cargo bench -p verity-infer --bench one_step
//!
//! Each group is one model: `whole run` (baseline), then `step i (Op)` for each node.

use std::path::PathBuf;

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use verity_infer::{Commitments, Data, Engine, Model, StepWitness, Tensor};

fn models_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../models")
}

fn input(shape: &[usize]) -> Tensor {
    let n: usize = shape.iter().product();
    let data = (0..n)
        .map(|i| ((i as u32).wrapping_mul(2654435761) >> 28) as f32)
        .collect();
    Tensor::new(shape.to_vec(), Data::F32(data)).unwrap()
}

fn bench_model(c: &mut Criterion, file: &str, shape: &[usize]) {
    let model = Model::from_bytes(&std::fs::read(models_dir().join(file)).unwrap()).unwrap();
    let engine = Engine::new(1).unwrap();
    let x = input(shape);
    let mut group = c.benchmark_group(format!("one_step/{file}"));
    group.bench_function("whole run", |b| {
        b.iter(|| engine.run(&model, vec![x.clone()], false).unwrap())
    });
    for step in 0..model.step_count() {
        let (witness, trace) = model.step_witness(&engine, vec![x.clone()], step).unwrap();
        let bytes = witness.encode();
        let commitments = Commitments {
            trace_root: trace.root(),
            trace_len: trace.len() as u64,
            weights_root: model.weights_root(),
            input_hashes: vec![x.hash()],
        };
        let op = trace.steps()[step].op.clone();
        group.bench_function(format!("step {step} ({op}, {} bytes)", bytes.len()), |b| {
            b.iter(|| {
                let witness = StepWitness::decode(black_box(&bytes)).unwrap();
                model.verify_step(&engine, &commitments, &witness).unwrap()
            })
        });
    }
    group.finish();
}

fn one_step(c: &mut Criterion) {
    bench_model(c, "digits_mlp.onnx", &[1, 64]);
    bench_model(c, "conv_random.onnx", &[1, 3, 32, 32]);
}

criterion_group!(benches, one_step);
criterion_main!(benches);
