//! Groth16 on the bundled int8 models: what a model owner spends on the setup, a worker on a
//! proof, and a validator on a verification, beside the baseline of running the model with
//! verity-infer (what a TEE-only worker spends).
//!
//!     cargo bench -p verity-zk --bench groth16
//!
//! `scripts/zk-bench` runs this, ezkl on the same model, and prints both side by side.

use std::path::PathBuf;

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use verity_infer::{Engine, Model};
use verity_zk::ZkModel;

fn models_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../models")
}

fn bench_model(c: &mut Criterion, file: &str, samples: usize) {
    let model = Model::from_bytes(&std::fs::read(models_dir().join(file)).unwrap()).unwrap();
    let engine = Engine::new(1).unwrap();
    let circuit = ZkModel::compile(&model, &engine).unwrap();
    let input_file = std::fs::read(models_dir().join("samples/digit_0_label_7.json")).unwrap();
    let inputs = model.task_inputs(&input_file).unwrap();
    let quantized = circuit
        .quantized_inputs(&model, &engine, inputs.clone())
        .unwrap();
    let salt = verity_zk::commit::salt_of(&input_file);
    let key = verity_zk::setup(&circuit).unwrap();
    let (proof, _, public) = verity_zk::prove(&circuit, &key, quantized.clone(), salt).unwrap();
    let prepared = key.verifying_key().prepare();
    eprintln!(
        "{file}: {} constraints, proving key {} bytes, verifying key {} bytes, proof {} bytes",
        circuit.constraints,
        key.to_bytes().len(),
        key.verifying_key().to_bytes().len(),
        proof.to_bytes().len()
    );
    let mut group = c.benchmark_group(format!("groth16/{file}"));
    group.sample_size(samples);
    group.bench_function("inference (baseline)", |b| {
        b.iter(|| engine.run(&model, inputs.clone(), false).unwrap())
    });
    group.bench_function("setup", |b| {
        b.iter(|| verity_zk::setup(black_box(&circuit)).unwrap())
    });
    group.bench_function("prove", |b| {
        b.iter(|| verity_zk::prove(&circuit, &key, quantized.clone(), salt).unwrap())
    });
    group.bench_function("verify", |b| {
        b.iter(|| verity_zk::verify(&prepared, black_box(&public), black_box(&proof)).unwrap())
    });
    group.finish();
}

fn benches(c: &mut Criterion) {
    bench_model(c, "digits_mlp_int8.onnx", 20);
    bench_model(c, "digits_mlp_int8_wide.onnx", 10);
}

criterion_group!(groth16, benches);
criterion_main!(groth16);
