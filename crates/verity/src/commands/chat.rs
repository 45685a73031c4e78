//! `verity chat`: a question to a registered language model, answered as a task whose answer
//! is checked here before it is printed.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Result;
use clap::Args;
use verity_client::Client;
use verity_types::{Mode, PromptDocument, PromptMessage};

use super::language::LanguageModelClient;
use crate::shared::{keys_dir, load_key, runtime, DEFAULT_NODE};

#[derive(Args)]
pub struct ChatArgs {
    /// The question.
    message: String,
    /// The language model: its registered name or id.
    #[arg(long)]
    model: String,
    /// Key name in the keys directory, or a key file path; pays the escrow.
    #[arg(long)]
    from: String,
    /// tee (an attested enclave signs the answer), or op (the answer stands once its challenge
    /// window has closed with no dispute lost: slower, and any challenger can disprove a token).
    #[arg(long, default_value = "tee")]
    mode: Mode,
    /// Most tokens in the answer; the escrow reserves them, and what is not generated comes back.
    #[arg(long, default_value_t = 64)]
    max_tokens: u32,
    /// A system message before the question.
    #[arg(long)]
    system: Option<String>,
    /// 0, the default, is greedy.
    #[arg(long, default_value_t = 0.0)]
    temperature: f64,
    #[arg(long)]
    top_k: Option<u32>,
    #[arg(long)]
    top_p: Option<f64>,
    /// The sampling seed; drawn from the task id when absent.
    #[arg(long)]
    seed: Option<u64>,
    /// End the answer before this string (repeatable, at most 4).
    #[arg(long)]
    stop: Vec<String>,
    #[arg(long, default_value_t = 600)]
    deadline_blocks: u64,
    /// Print one JSON object: the answer, the task, the worker and what was verified.
    #[arg(long)]
    json: bool,
    #[arg(long, env = "VERITY_NODE", default_value = DEFAULT_NODE)]
    node: String,
    #[arg(long, env = "VERITY_KEYS")]
    keys_dir: Option<PathBuf>,
}

pub fn run(args: ChatArgs) -> Result<()> {
    runtime()?.block_on(chat(args))
}

async fn chat(args: ChatArgs) -> Result<()> {
    let key = load_key(&args.from, &keys_dir(args.keys_dir))?;
    let lm = LanguageModelClient::open(Client::new(&args.node), &args.model).await?;
    let mut messages = Vec::new();
    if let Some(system) = args.system {
        messages.push(PromptMessage {
            role: "system".into(),
            content: system,
        });
    }
    messages.push(PromptMessage {
        role: "user".into(),
        content: args.message,
    });
    let document = PromptDocument {
        messages: Some(messages),
        prompt: None,
        max_tokens: args.max_tokens,
        temperature: args.temperature,
        top_k: args.top_k,
        top_p: args.top_p,
        seed: args.seed,
        stop: args.stop,
    };
    let prepared = lm.prepare(document, args.mode)?;
    let task_id = lm
        .submit(&key, &prepared, args.mode, args.deadline_blocks)
        .await?;
    eprintln!(
        "task {task_id}: {} prompt tokens, up to {} in the answer, {} escrowed",
        prepared.limits.prompt_tokens,
        prepared.limits.max_tokens,
        crate::tokens::format(prepared.escrow)
    );
    let answer = lm
        .wait(&task_id, &prepared, Duration::from_secs(300), |status| {
            eprintln!("  {status}")
        })
        .await?;
    let record = &answer.record;
    if args.json {
        let doc = serde_json::json!({
            "task_id": task_id,
            "model": lm.name(),
            "model_id": lm.id(),
            "text": answer.output.text,
            "finish_reason": answer.output.finish_reason,
            "ids": answer.output.tokens.iter().map(|t| t.id).collect::<Vec<_>>(),
            "logprobs": answer.output.tokens.iter().map(|t| t.logprob).collect::<Vec<_>>(),
            "prompt_tokens": prepared.limits.prompt_tokens,
            "completion_tokens": answer.output.tokens.len(),
            "worker": record.worker,
            "mode": record.mode,
            "enclave": hex::encode(record.enclave_key),
            "attestation": answer.attestation,
            "record_height": record.finalized_height,
            "fee": crate::tokens::format(prepared.escrow - record.settlement.refund),
            "verified": answer.checks,
        });
        outln!("{}", serde_json::to_string_pretty(&doc)?);
        return Ok(());
    }
    // The answer token by token, now that it is verified.
    for piece in lm.pieces(&answer) {
        crate::output::bytes(piece.as_bytes())?;
        tokio::time::sleep(Duration::from_millis(15)).await;
    }
    outln!();
    outln!("task      {task_id}");
    outln!("model     {} ({})", lm.name(), lm.id());
    outln!("worker    {}", record.worker);
    outln!("mode      {} ({})", record.mode, answer.attestation);
    outln!(
        "tokens    {} prompt + {} answer ({}); fee {}, {} refunded",
        prepared.limits.prompt_tokens,
        answer.output.tokens.len(),
        match answer.output.finish_reason {
            verity_types::GenerationFinish::Stop => "stop",
            verity_types::GenerationFinish::Length => "length",
        },
        crate::tokens::format(prepared.escrow - record.settlement.refund),
        crate::tokens::format(record.settlement.refund)
    );
    outln!(
        "verified  {} (record final at height {})",
        answer.checks.join(", "),
        record.finalized_height
    );
    Ok(())
}
