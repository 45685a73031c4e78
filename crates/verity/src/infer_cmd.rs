//! `verity infer run`, `verity infer generate` and `verity infer inspect`.

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
    /// Continue a prompt with a language model, token by token, printing each token's id and
    /// log-probability.
    Generate(GenerateArgs),
    /// List a model's inputs, outputs, ops and weights root, and which ops are unsupported.
    Inspect(InspectArgs),
}

#[derive(Args)]
pub struct GenerateArgs {
    /// The ONNX language model (its config.json and generation_config.json, beside it, give
    /// the end-of-sequence tokens and the context length).
    #[arg(long)]
    model: PathBuf,
    /// A Hugging Face tokenizer.json [default: tokenizer.json beside the model, if there].
    #[arg(long)]
    tokenizer: Option<PathBuf>,
    /// The text to continue.
    #[arg(long, conflicts_with_all = ["tokens", "chat"], required_unless_present_any = ["tokens", "chat"])]
    prompt: Option<String>,
    /// A message to a chat model: formatted with the model's chat template
    /// (chat_template.jinja or tokenizer_config.json beside the model), the answer generated.
    #[arg(long, conflicts_with = "tokens")]
    chat: Option<String>,
    /// The system message before --chat's [default: the template's own].
    #[arg(long, requires = "chat")]
    system: Option<String>,
    /// The prompt as token ids, comma-separated.
    #[arg(long, value_delimiter = ',')]
    tokens: Option<Vec<u32>>,
    /// Tokens to generate at most.
    #[arg(long, default_value_t = 32)]
    max_tokens: usize,
    /// 0 picks the most likely token (greedy); higher values sample more freely.
    #[arg(long, default_value_t = 0.0)]
    temperature: f64,
    /// Sample among the K most likely tokens only.
    #[arg(long)]
    top_k: Option<usize>,
    /// Sample among the most likely tokens whose probability adds up to P.
    #[arg(long)]
    top_p: Option<f64>,
    /// The sampling seed: the same seed gives the same tokens.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Worker threads. Results are bit-identical for every value.
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Record each forward pass's trace and print its root.
    #[arg(long)]
    trace: bool,
    /// Rerun the whole sequence for every token instead of reusing the key/value cache.
    #[arg(long)]
    no_cache: bool,
    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,
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
        InferCommand::Generate(args) => generate(args),
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
    let model = Model::from_file(&args.model)
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

fn generate(args: GenerateArgs) -> Result<()> {
    let model = Model::from_file(&args.model)
        .with_context(|| format!("cannot load {}", args.model.display()))?;
    let dir = args
        .model
        .parent()
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("."));
    let tokenizer_path = args.tokenizer.clone().or_else(|| {
        let beside = dir.join("tokenizer.json");
        beside.exists().then_some(beside)
    });
    let tokenizer = tokenizer_path
        .as_deref()
        .map(verity_lm::Tokenizer::from_file)
        .transpose()?;
    let lm = verity_lm::LanguageModel::new(model, verity_lm::ModelConfig::from_dir(&dir)?)
        .with_context(|| format!("cannot generate with {}", args.model.display()))?;
    if let (Some(t), Some(vocab)) = (&tokenizer, lm.vocab_size()) {
        ensure!(
            t.vocab_size() <= vocab,
            "the tokenizer has {} tokens but the model scores {vocab}: they do not belong together",
            t.vocab_size()
        );
    }
    let prompt = match (&args.prompt, &args.chat, &args.tokens) {
        (_, _, Some(ids)) => ids.clone(),
        (Some(text), _, None) => tokenizer
            .as_ref()
            .context("--prompt needs a tokenizer: pass --tokenizer, or --tokens")?
            .encode(text)?,
        (None, Some(message), None) => {
            let tokenizer = tokenizer
                .as_ref()
                .context("--chat needs a tokenizer: pass --tokenizer")?;
            let name = |id: Option<u32>| id.and_then(|id| tokenizer.token(id)).unwrap_or_default();
            let config = lm.config();
            let template = verity_lm::ChatTemplate::from_dir(
                &dir,
                &name(config.bos_token_id),
                &name(config.eos_token_ids.first().copied()),
            )?
            .with_context(|| {
                format!(
                    "{} has no chat template (chat_template.jinja or tokenizer_config.json): use --prompt",
                    dir.display()
                )
            })?;
            let mut messages = Vec::new();
            if let Some(system) = &args.system {
                messages.push(verity_lm::ChatMessage::new("system", system));
            }
            messages.push(verity_lm::ChatMessage::new("user", message));
            tokenizer.encode(&template.render(&messages, true)?)?
        }
        (None, None, None) => anyhow::bail!("give --prompt, --chat or --tokens"),
    };
    let params = verity_lm::GenerateParams {
        max_tokens: args.max_tokens,
        sampling: verity_lm::SamplingParams {
            temperature: args.temperature,
            top_k: args.top_k,
            top_p: args.top_p,
            seed: args.seed,
        },
        trace: args.trace,
        no_cache: args.no_cache,
    };
    let engine = Engine::new(args.threads)?;
    let decode = |ids: &[u32]| -> Result<Option<String>> {
        Ok(match &tokenizer {
            Some(t) => Some(t.decode(ids)?),
            None => None,
        })
    };
    // Text as it is generated, on stderr so that --json stays one document on stdout.
    let mut shown = String::new();
    let mut generated = Vec::new();
    let mut stream_error = None;
    // A chat shows the answer only; a continuation shows the text it continues.
    if !args.json && args.chat.is_none() {
        if let Some(text) = decode(&prompt)? {
            eprint!("{text}");
        }
    }
    let generation = lm.generate(&engine, &prompt, &params, |token| {
        let end = lm.config().eos_token_ids.contains(&token.id);
        if !end {
            generated.push(token.id);
        }
        if args.json || stream_error.is_some() || end {
            return;
        }
        match decode(&generated) {
            // A character split over tokens decodes as U+FFFD until its last byte arrives.
            Ok(Some(text)) if !text.ends_with('\u{FFFD}') => {
                if let Some(new) = text.strip_prefix(shown.as_str()) {
                    eprint!("{new}");
                }
                shown = text;
            }
            Ok(_) => {}
            Err(e) => stream_error = Some(e),
        }
    })?;
    if let Some(e) = stream_error {
        return Err(e);
    }
    let ids = generation.ids();
    // The text stops before the end-of-sequence token (its id stays in `ids`).
    let text_ids = match generation.finish_reason {
        verity_lm::FinishReason::Stop => &ids[..ids.len() - 1],
        verity_lm::FinishReason::Length => &ids[..],
    };
    let text = decode(text_ids)?;
    let pieces: Vec<Option<String>> = ids.iter().map(|&id| decode(&[id])).collect::<Result<_>>()?;
    if args.json {
        let tokens: Vec<_> = generation
            .tokens
            .iter()
            .zip(&pieces)
            .map(|(t, piece)| {
                let mut o = json!({"id": t.id, "logprob": t.logprob});
                if let Some(piece) = piece {
                    o["text"] = json!(piece);
                }
                if let Some(root) = t.trace_root {
                    o["trace_root"] = json!(root);
                }
                o
            })
            .collect();
        let doc = json!({
            "model_id": lm.model().model_id(),
            "prompt_ids": generation.prompt_ids,
            "ids": ids,
            "text": text,
            "tokens": tokens,
            "finish_reason": generation.finish_reason,
            "kv_cache": lm.has_cache() && !args.no_cache,
        });
        outln!("{}", serde_json::to_string_pretty(&doc)?);
        return Ok(());
    }
    eprintln!();
    outln!("model_id       {}", lm.model().model_id());
    outln!("prompt         {} tokens", generation.prompt_ids.len());
    if let Some(text) = &text {
        outln!("text           {text:?}");
    }
    outln!("  #      id   logprob  token");
    for (n, (t, piece)) in generation.tokens.iter().zip(&pieces).enumerate() {
        let piece = piece
            .as_deref()
            .map(|p| format!("{p:?}"))
            .unwrap_or_default();
        let root = t
            .trace_root
            .map(|r| format!("  trace {r}"))
            .unwrap_or_default();
        outln!("{:>3} {:>7} {:>9.4}  {piece}{root}", n + 1, t.id, t.logprob);
    }
    let reason = match generation.finish_reason {
        verity_lm::FinishReason::Stop => "stop (end-of-sequence token)",
        verity_lm::FinishReason::Length => "length (max tokens or the model's context)",
    };
    outln!("finish         {reason}");
    Ok(())
}

fn inspect(args: InspectArgs) -> Result<()> {
    let s = Model::parse_file(&args.model)
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
