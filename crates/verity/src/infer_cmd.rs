//! `verity infer run` and `verity infer inspect`.

use std::path::PathBuf;

use anyhow::{ensure, Context, Result};
use clap::{Args, Subcommand};
use serde_json::json;
use verity_infer::{with_data, Engine, Model, Tensor, SUPPORTED_OPS};

use verity_infer::read_tensor;

#[derive(Subcommand)]
pub enum InferCommand {
    /// Run a model on an input and print its outputs (and, with --trace, the trace root).
    Run(RunArgs),
    /// List a model's inputs, outputs, ops and weights root, and which ops are unsupported.
    Inspect(InspectArgs),
}

#[derive(Args)]
pub struct RunArgs {
    /// The ONNX model file.
    #[arg(long)]
    model: PathBuf,
    /// Input tensor file, JSON (nested array) or .npy; repeat once per model input, in order.
    #[arg(long, required = true)]
    input: Vec<PathBuf>,
    /// Worker threads. Results are bit-identical for every value.
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Record the execution trace and print its Merkle root and step count.
    #[arg(long)]
    trace: bool,
    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
pub struct InspectArgs {
    /// The ONNX model file.
    #[arg(long)]
    model: PathBuf,
    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,
}

pub fn run(cmd: InferCommand) -> Result<()> {
    match cmd {
        InferCommand::Run(args) => run_model(args),
        InferCommand::Inspect(args) => inspect(args),
    }
}

fn read(path: &PathBuf) -> Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))
}

fn preview(t: &Tensor) -> String {
    const SHOWN: usize = 20;
    let all: Vec<String> =
        with_data!(t.data(), v => v.iter().take(SHOWN).map(|x| format!("{x:?}")).collect());
    let more = t.len().saturating_sub(SHOWN);
    let tail = if more > 0 {
        format!(", … ({more} more)")
    } else {
        String::new()
    };
    format!("[{}{tail}]", all.join(", "))
}

fn run_model(args: RunArgs) -> Result<()> {
    let model = Model::from_bytes(&read(&args.model)?)
        .with_context(|| format!("cannot load {}", args.model.display()))?;
    ensure!(
        args.input.len() == model.inputs().len(),
        "the model has {} input(s) ({}); {} --input given",
        model.inputs().len(),
        model
            .inputs()
            .iter()
            .map(|i| i.name.as_str())
            .collect::<Vec<_>>()
            .join(", "),
        args.input.len()
    );
    let mut inputs = Vec::new();
    for (path, spec) in args.input.iter().zip(model.inputs()) {
        let dtype = spec
            .dtype
            .clone()
            .map_err(|t| anyhow::anyhow!("input {:?} has unsupported type {t}", spec.name))?;
        inputs.push(
            read_tensor(&read(path)?, dtype)
                .with_context(|| format!("input file {}", path.display()))?,
        );
    }
    let engine = Engine::new(args.threads)?;
    let out = engine.run(&model, inputs, args.trace)?;
    if args.json {
        let doc = verity_infer::output::document(&model, &out);
        outln!("{}", serde_json::to_string_pretty(&doc)?);
        return Ok(());
    }
    outln!("model_id    {}", model.model_id());
    for (name, t) in &out.outputs {
        outln!(
            "output      {name}: {}{:?} {}",
            t.dtype(),
            t.shape(),
            preview(t)
        );
    }
    if let Some(trace) = &out.trace {
        outln!("trace_root  {}", trace.root());
        outln!("trace_steps {}", trace.len());
    }
    Ok(())
}

fn inspect(args: InspectArgs) -> Result<()> {
    let s = Model::parse(&read(&args.model)?)
        .with_context(|| format!("cannot load {}", args.model.display()))?
        .summary();
    if args.json {
        let doc = json!({
            "model_id": s.model_id, "weights_root": s.weights_root, "ir_version": s.ir_version, "opset": s.opset,
            "producer": s.producer, "nodes": s.nodes, "parameters": s.parameters,
            "inputs": s.inputs.iter().map(|v| json!({"name": v.name, "type": v.describe()})).collect::<Vec<_>>(),
            "outputs": s.outputs.iter().map(|v| json!({"name": v.name, "type": v.describe()})).collect::<Vec<_>>(),
            "ops": s.ops,
            "initializers": s.initializers.iter().map(|(n, t, sh)| json!({"name": n, "dtype": t.to_string(), "shape": sh})).collect::<Vec<_>>(),
            "unsupported": s.unsupported.iter().map(|u| json!({"node": u.node, "op": u.op, "reason": u.reason})).collect::<Vec<_>>(),
        });
        outln!("{}", serde_json::to_string_pretty(&doc)?);
        return Ok(());
    }
    outln!("model_id      {}", s.model_id);
    outln!("weights_root  {}", s.weights_root);
    outln!(
        "format        ONNX IR {}, opset {}, producer {:?}",
        s.ir_version,
        s.opset,
        s.producer
    );
    for v in &s.inputs {
        outln!("input         {}: {}", v.name, v.describe());
    }
    for v in &s.outputs {
        outln!("output        {}: {}", v.name, v.describe());
    }
    outln!(
        "weights       {} initializers, {} parameters",
        s.initializers.len(),
        s.parameters
    );
    for (name, dtype, shape) in &s.initializers {
        outln!("  {name}: {dtype}{shape:?}");
    }
    outln!(
        "nodes         {} (the trace has one step per node)",
        s.nodes
    );
    for (op, count) in &s.ops {
        let mark = if SUPPORTED_OPS.contains(&op.as_str()) {
            ""
        } else {
            "  (unsupported)"
        };
        outln!("  {op} x{count}{mark}");
    }
    if s.unsupported.is_empty() {
        outln!("supported     yes: every node can run");
    } else {
        outln!(
            "supported     no: {} node(s) cannot run",
            s.unsupported.len()
        );
        for u in &s.unsupported {
            outln!("  node {:?} ({}): {}", u.node, u.op, u.reason);
        }
    }
    Ok(())
}
