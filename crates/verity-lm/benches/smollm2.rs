//! SmolLM2-135M-Instruct on the engine against onnxruntime (the baseline, its Python package
//! driven by scripts/ort_bench.py) and tract, in one run: a prefill pass over 16 and 128 prompt
//! tokens, and one decode step after a cache of 64 positions (tokens/s = 1 / its time); float32
//! and int8; 1 and 2 threads.
//!
//!     VERITY_SMOLLM2=target/smollm2 VERITY_PYTHON=.venv/bin/python \
//!         cargo bench -p verity-lm --bench smollm2
//!
//! scripts/smollm2.py builds the model directory; the virtualenv needs onnxruntime
//! (scripts/requirements-test.txt). Each group holds `onnxruntime`, `verity` and, on one thread,
//! `tract` when tract can run the model (it says why not otherwise).

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::Duration;

use criterion::{black_box, criterion_group, criterion_main, BatchSize, Criterion};
use tract_onnx::prelude::*;
use verity_infer::{Engine, Model};
use verity_lm::{KvCache, LanguageModel, ModelConfig};

/// What one measurement runs.
#[derive(Clone, Copy)]
enum Case {
    /// One pass over this many prompt tokens, from an empty cache.
    Prefill(usize),
    /// One token after a cache of this many positions.
    Decode(usize),
}

impl Case {
    fn name(self) -> String {
        match self {
            Case::Prefill(n) => format!("prefill-{n}"),
            Case::Decode(n) => format!("decode-{n}"),
        }
    }
}

const CASES: [Case; 3] = [Case::Prefill(16), Case::Prefill(128), Case::Decode(64)];

/// The benchmark's token ids (scripts/ort_bench.py's `prompt` is the same formula).
fn prompt(n: usize) -> Vec<u32> {
    (0..n)
        .map(|i| ((i * 7919 + 13) % 40000 + 100) as u32)
        .collect()
}

/// scripts/ort_bench.py for one model and thread count.
struct Onnxruntime {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl Onnxruntime {
    fn start(dir: &Path, threads: usize) -> Onnxruntime {
        let python = std::env::var_os("VERITY_PYTHON").unwrap_or_else(|| "python3".into());
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/ort_bench.py");
        let mut child = Command::new(&python)
            .arg(script)
            .arg(dir)
            .arg(threads.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("starting {python:?} scripts/ort_bench.py: {e}"));
        let stdin = child.stdin.take().unwrap();
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        stdout.read_line(&mut line).unwrap();
        assert_eq!(line.trim(), "ready", "scripts/ort_bench.py did not start");
        Onnxruntime {
            child,
            stdin,
            stdout,
        }
    }

    fn time(&mut self, case: Case, iters: u64) -> Duration {
        writeln!(self.stdin, "{} {iters}", case.name()).unwrap();
        let mut line = String::new();
        self.stdout.read_line(&mut line).unwrap();
        Duration::from_secs_f64(line.trim().parse().expect("seconds from ort_bench.py"))
    }
}

impl Drop for Onnxruntime {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// tract's plan for one case with every shape fixed, or why it has none.
fn tract_plan(
    dir: &Path,
    lm: &LanguageModel,
    case: Case,
) -> Result<(Arc<TypedRunnableModel>, TVec<TValue>), String> {
    let (fed, past) = match case {
        Case::Prefill(n) => (n, 0),
        Case::Decode(n) => (1, n),
    };
    let mut model = tract_onnx::onnx()
        .model_for_path(dir.join("model.onnx"))
        .map_err(|e| format!("{e:#}"))?;
    let mut inputs = TVec::new();
    for (i, spec) in lm.model().inputs().iter().enumerate() {
        let value: Tensor = match spec.name.as_str() {
            "input_ids" => tract_ndarray::Array2::from_shape_fn((1, fed), |(_, j)| {
                prompt(past + fed)[past + j] as i64
            })
            .into_tensor(),
            "attention_mask" => tract_ndarray::Array2::<i64>::ones((1, past + fed)).into_tensor(),
            "position_ids" => {
                tract_ndarray::Array2::from_shape_fn((1, fed), |(_, j)| (past + j) as i64)
                    .into_tensor()
            }
            name if name.starts_with("past_key_values.") => {
                let dims = spec.dims.as_deref().unwrap_or(&[]);
                let fixed = |d: usize| match dims.get(d) {
                    Some(verity_infer::Dim::Fixed(n)) => *n,
                    _ => 1,
                };
                tract_ndarray::Array4::<f32>::zeros((1, fixed(1), past, fixed(3))).into_tensor()
            }
            other => return Err(format!("unexpected input {other}")),
        };
        model = model
            .with_input_fact(
                i,
                InferenceFact::dt_shape(value.datum_type(), value.shape()),
            )
            .map_err(|e| format!("{e:#}"))?;
        inputs.push(value.into());
    }
    let plan = model
        .into_optimized()
        .and_then(|m| m.into_runnable())
        .map_err(|e| format!("{e:#}"))?;
    Ok((plan, inputs))
}

fn bench_variant(c: &mut Criterion, variant: &str, dir: &Path) {
    let model = Model::from_file(&dir.join("model.onnx")).expect("the model loads");
    let lm = LanguageModel::new(model, ModelConfig::from_dir(dir).unwrap()).unwrap();
    for threads in [1, 2] {
        let engine = Engine::new(threads).unwrap();
        let mut ort = Onnxruntime::start(dir, threads);
        for case in CASES {
            let mut group =
                c.benchmark_group(format!("smollm2_{variant}/{}/{threads}t", case.name()));
            group.sample_size(10);
            group.bench_function("onnxruntime", |b| {
                b.iter_custom(|iters| ort.time(case, iters))
            });
            match case {
                Case::Prefill(n) => {
                    let ids = prompt(n);
                    group.bench_function("verity", |b| {
                        b.iter(|| {
                            lm.forward(&engine, black_box(&ids), lm.empty_cache(), false)
                                .unwrap()
                        })
                    });
                }
                Case::Decode(n) => {
                    let ids = prompt(n + 1);
                    let cache: KvCache = lm
                        .forward(&engine, &ids[..n], lm.empty_cache(), false)
                        .unwrap()
                        .cache;
                    group.bench_function("verity", |b| {
                        b.iter_batched(
                            || cache.clone(),
                            |cache| lm.forward(&engine, black_box(&ids), cache, false).unwrap(),
                            BatchSize::LargeInput,
                        )
                    });
                }
            }
            if threads == 1 {
                match tract_plan(dir, &lm, case) {
                    Ok((plan, inputs)) => {
                        group.bench_function("tract", |b| {
                            b.iter(|| plan.run(black_box(inputs.clone())).unwrap())
                        });
                    }
                    Err(why) => eprintln!("tract does not run {variant} {}: {why}", case.name()),
                }
            }
            group.finish();
        }
    }
}

fn benches(c: &mut Criterion) {
    let Some(dir) = std::env::var_os("VERITY_SMOLLM2").map(PathBuf::from) else {
        eprintln!("VERITY_SMOLLM2 is not set: build the model with scripts/smollm2.py (see this file's header)");
        return;
    };
    bench_variant(c, "fp32", &dir);
    bench_variant(c, "int8", &dir.join("int8"));
}

criterion_group!(smollm2, benches);
criterion_main!(smollm2);
