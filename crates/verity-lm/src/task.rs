//! A registered language model as the network runs it: the directory of its four files, the
//! prompt document a task names, and the output document whose hash the receipt signs.
//!
//! Workers run [`ServedModel::run`]; clients and the gateway use [`ServedModel::prompt_ids`]
//! (through [`PromptRenderer`], without the graph) to count the prompt's tokens for the
//! escrow, and [`trace_root`] to check a receipt against its output document.

use std::ops::ControlFlow;
use std::path::Path;

use serde::{Deserialize, Serialize};
use verity_infer::{Engine, Model};
use verity_types::{
    generation_leaf, DataRef, GeneratedToken, GenerationDocument, GenerationFinish, Hash,
    PromptDocument,
};

use crate::{
    ChatMessage, ChatTemplate, FinishReason, GenerateError, GenerateParams, LanguageModel,
    ModelConfig, SamplingParams, Tokenizer, TokenizerError,
};

/// Most stop strings a prompt names, and the longest.
pub const MAX_STOP_STRINGS: usize = 4;
pub const MAX_STOP_LEN: usize = 64;

/// Why a task's prompt or model could not be used.
#[derive(Debug, thiserror::Error)]
pub enum TaskError {
    #[error(transparent)]
    Generate(#[from] GenerateError),
    #[error(transparent)]
    Tokenizer(#[from] TokenizerError),
    #[error(transparent)]
    Chat(#[from] crate::ChatError),
    #[error("the prompt document is not valid: {0}")]
    Prompt(String),
    #[error("the generation config is not valid: {0}")]
    Config(String),
    #[error("the tokenizer has {tokenizer} tokens but the model scores {model}: they do not belong together")]
    VocabularyMismatch { tokenizer: usize, model: usize },
}

/// The generation config a language model registers (`generation.json`): what generation
/// needs beyond the graph and the tokenizer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GenerationConfig {
    /// Tokens that end generation.
    pub eos_token_ids: Vec<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bos_token_id: Option<u32>,
    /// Positions the model attends over, prompt included.
    pub context: u32,
    /// A chat model's Jinja template; without one, chat messages are joined by newlines into
    /// a text to continue.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chat_template: Option<String>,
}

impl GenerationConfig {
    /// From a Hugging Face model directory: `config.json`, `generation_config.json` and the
    /// chat template (`chat_template.jinja` or `tokenizer_config.json`).
    pub fn from_dir(dir: &Path) -> Result<GenerationConfig, TaskError> {
        let config = ModelConfig::from_dir(dir)?;
        let context = config.context.ok_or_else(|| {
            TaskError::Config(format!(
                "{} gives no context length (max_position_embeddings, n_positions or n_ctx in config.json)",
                dir.display()
            ))
        })?;
        let context = u32::try_from(context)
            .map_err(|_| TaskError::Config(format!("a context of {context} positions")))?;
        if config.eos_token_ids.is_empty() {
            return Err(TaskError::Config(format!(
                "{} names no end-of-sequence token (eos_token_id)",
                dir.display()
            )));
        }
        let chat_template = ChatTemplate::from_dir(dir, "", "")?.map(|t| t.source().to_string());
        Ok(GenerationConfig {
            eos_token_ids: config.eos_token_ids,
            bos_token_id: config.bos_token_id,
            context,
            chat_template,
        })
    }

    pub fn from_json(bytes: &[u8]) -> Result<GenerationConfig, TaskError> {
        let config: GenerationConfig =
            serde_json::from_slice(bytes).map_err(|e| TaskError::Config(e.to_string()))?;
        if config.eos_token_ids.is_empty() {
            return Err(TaskError::Config("no end-of-sequence token".into()));
        }
        Ok(config)
    }

    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec_pretty(self).expect("a config serializes")
    }

    fn model_config(&self) -> ModelConfig {
        ModelConfig {
            eos_token_ids: self.eos_token_ids.clone(),
            context: Some(self.context as usize),
            bos_token_id: self.bos_token_id,
        }
    }
}

/// Parses and checks a prompt document: one of `messages` and `prompt`, sampling parameters in
/// range, at most [`MAX_STOP_STRINGS`] non-empty stop strings.
pub fn parse_prompt(bytes: &[u8]) -> Result<PromptDocument, TaskError> {
    let doc: PromptDocument =
        serde_json::from_slice(bytes).map_err(|e| TaskError::Prompt(e.to_string()))?;
    check_prompt(&doc)?;
    Ok(doc)
}

/// The checks of [`parse_prompt`], for a document built in memory.
pub fn check_prompt(doc: &PromptDocument) -> Result<(), TaskError> {
    let bad = |reason: &str| Err(TaskError::Prompt(reason.into()));
    match (&doc.messages, &doc.prompt) {
        (Some(messages), None) if messages.is_empty() => return bad("messages is empty"),
        (Some(_), None) | (None, Some(_)) => {}
        _ => return bad("give exactly one of messages and prompt"),
    }
    if doc.max_tokens == 0 {
        return bad("max_tokens must be at least 1");
    }
    if doc.stop.len() > MAX_STOP_STRINGS {
        return bad("at most 4 stop strings");
    }
    if doc
        .stop
        .iter()
        .any(|s| s.is_empty() || s.len() > MAX_STOP_LEN)
    {
        return bad("a stop string has 1 to 64 bytes");
    }
    sampling(doc, 0)
        .check()
        .map_err(|e| TaskError::Prompt(e.to_string()))
}

/// The sampling a task's prompt document asks for, with the task's seed.
pub fn sampling(doc: &PromptDocument, seed: u64) -> SamplingParams {
    SamplingParams {
        temperature: doc.temperature,
        top_k: doc.top_k.map(|k| k as usize),
        top_p: doc.top_p,
        seed,
    }
}

/// What turns a prompt document into token ids: the tokenizer and the generation config,
/// without the graph (clients count a prompt's tokens with it).
pub struct PromptRenderer {
    tokenizer: Tokenizer,
    config: GenerationConfig,
    template: Option<ChatTemplate>,
}

impl PromptRenderer {
    pub fn new(tokenizer: Tokenizer, config: GenerationConfig) -> Result<Self, TaskError> {
        let name = |id: Option<u32>| id.and_then(|id| tokenizer.token(id)).unwrap_or_default();
        let template = config
            .chat_template
            .as_deref()
            .map(|source| {
                ChatTemplate::new(
                    source,
                    &name(config.bos_token_id),
                    &name(config.eos_token_ids.first().copied()),
                )
            })
            .transpose()?;
        Ok(Self {
            tokenizer,
            config,
            template,
        })
    }

    /// The prompt's tokens: chat messages through the chat template (or joined by newlines for
    /// a model without one), or the text to continue.
    pub fn prompt_ids(&self, doc: &PromptDocument) -> Result<Vec<u32>, TaskError> {
        let text = match (&doc.messages, &doc.prompt) {
            (Some(messages), _) => {
                let messages: Vec<ChatMessage> = messages
                    .iter()
                    .map(|m| ChatMessage::new(&m.role, &m.content))
                    .collect();
                match &self.template {
                    Some(template) => template.render(&messages, true)?,
                    None => messages
                        .iter()
                        .map(|m| m.content.as_str())
                        .collect::<Vec<_>>()
                        .join("\n"),
                }
            }
            (None, Some(text)) => text.clone(),
            (None, None) => return Err(TaskError::Prompt("no prompt".into())),
        };
        let ids = self.tokenizer.encode(&text)?;
        if ids.is_empty() {
            return Err(TaskError::Prompt("the prompt has no tokens".into()));
        }
        Ok(ids)
    }

    pub fn tokenizer(&self) -> &Tokenizer {
        &self.tokenizer
    }

    pub fn config(&self) -> &GenerationConfig {
        &self.config
    }
}

/// A language model loaded from a worker's copy of its registered files.
pub struct ServedModel {
    lm: LanguageModel,
    renderer: PromptRenderer,
}

impl ServedModel {
    /// Loads `model.onnx` (with its external data), `tokenizer.json` and `generation.json`
    /// from `dir`.
    pub fn load(dir: &Path) -> Result<ServedModel, TaskError> {
        let model = Model::from_file(&dir.join("model.onnx")).map_err(GenerateError::from)?;
        let tokenizer = Tokenizer::from_file(&dir.join("tokenizer.json"))?;
        let config_path = dir.join("generation.json");
        let config_bytes = std::fs::read(&config_path)
            .map_err(|e| TaskError::Config(format!("reading {}: {e}", config_path.display())))?;
        let config = GenerationConfig::from_json(&config_bytes)?;
        let lm = LanguageModel::new(model, config.model_config())?;
        if let Some(vocab) = lm.vocab_size() {
            if tokenizer.vocab_size() > vocab {
                return Err(TaskError::VocabularyMismatch {
                    tokenizer: tokenizer.vocab_size(),
                    model: vocab,
                });
            }
        }
        Ok(ServedModel {
            lm,
            renderer: PromptRenderer::new(tokenizer, config)?,
        })
    }

    pub fn renderer(&self) -> &PromptRenderer {
        &self.renderer
    }

    pub fn language_model(&self) -> &LanguageModel {
        &self.lm
    }

    /// Runs a task's prompt with the sampling seed `seed`: every forward pass traced, stopping
    /// at an end-of-sequence token, a stop string, `max_tokens` or the context.
    pub fn run(
        &self,
        engine: &Engine,
        doc: &PromptDocument,
        prompt_ids: &[u32],
        seed: u64,
        mut on_text: impl FnMut(&str),
    ) -> Result<GenerationDocument, TaskError> {
        check_prompt(doc)?;
        let params = GenerateParams {
            max_tokens: doc.max_tokens as usize,
            sampling: sampling(doc, seed),
            trace: true,
            no_cache: false,
        };
        let tokenizer = self.renderer.tokenizer();
        let eos = &self.renderer.config.eos_token_ids;
        let mut answer = Vec::new();
        let mut shown = 0;
        let mut stopped_at = None;
        let mut failure = None;
        let generation = self
            .lm
            .generate_until(engine, prompt_ids, &params, |token| {
                if eos.contains(&token.id) {
                    return ControlFlow::Continue(());
                }
                answer.push(token.id);
                let text = match tokenizer.decode(&answer) {
                    Ok(text) => text,
                    Err(e) => {
                        failure = Some(e);
                        return ControlFlow::Break(());
                    }
                };
                if let Some(at) = doc.stop.iter().filter_map(|s| text.find(s.as_str())).min() {
                    stopped_at = Some(at);
                    return ControlFlow::Break(());
                }
                // A character split over tokens decodes as U+FFFD until its last byte arrives;
                // text that may be the start of a stop string waits for the next token.
                let ready = text.len() - held_back(&text, &doc.stop);
                if !text.ends_with('\u{FFFD}') && ready > shown {
                    on_text(&text[shown..ready]);
                    shown = ready;
                }
                ControlFlow::Continue(())
            })?;
        if let Some(e) = failure {
            return Err(e.into());
        }
        if generation.tokens.is_empty() {
            return Err(TaskError::Prompt(format!(
                "the prompt's {} tokens fill the model's context",
                prompt_ids.len()
            )));
        }
        let mut text = tokenizer.decode(&answer)?;
        if let Some(at) = stopped_at {
            text.truncate(at);
        }
        let tokens = generation
            .tokens
            .iter()
            .map(|t| GeneratedToken {
                id: t.id,
                logprob: t.logprob,
                trace_root: t.trace_root.expect("traced generation"),
            })
            .collect();
        Ok(GenerationDocument {
            prompt_ids: generation.prompt_ids,
            tokens,
            text,
            finish_reason: match generation.finish_reason {
                FinishReason::Stop => GenerationFinish::Stop,
                FinishReason::Length => GenerationFinish::Length,
            },
            seed,
        })
    }
}

/// How many bytes at the end of `text` could begin one of `stops`.
fn held_back(text: &str, stops: &[String]) -> usize {
    stops
        .iter()
        .flat_map(|stop| (1..stop.len()).filter_map(move |k| stop.get(..k)))
        .filter(|prefix| text.ends_with(prefix))
        .map(str::len)
        .max()
        .unwrap_or(0)
}

/// A generation's trace leaves: each token's [`generation_leaf`].
pub fn token_leaves(doc: &GenerationDocument) -> Vec<Hash> {
    doc.tokens
        .iter()
        .enumerate()
        .map(|(i, t)| generation_leaf(i as u32, &t.trace_root, t.id))
        .collect()
}

/// The trace root a generation's receipt signs: the Merkle root of its [`token_leaves`].
pub fn trace_root(doc: &GenerationDocument) -> Hash {
    verity_infer::merkle::root(&token_leaves(doc))
}

/// The canonical bytes of an output document: what the receipt's output hash is over.
pub fn output_bytes(doc: &GenerationDocument) -> Vec<u8> {
    serde_json::to_vec(doc).expect("an output document serializes")
}

/// Largest part read back in one piece (blob stores hold far smaller ones).
const MAX_PART_BYTES: u64 = 1 << 30;

/// Whether the file at `path` is `parts` concatenated, read one part at a time: a model file
/// already in place is used only if every part of it checks.
pub fn holds(path: &Path, parts: &[&DataRef]) -> bool {
    use std::io::Read;
    let Ok(mut file) = std::fs::File::open(path) else {
        return false;
    };
    let expected = parts
        .iter()
        .try_fold(0u64, |total, part| total.checked_add(part.size));
    if expected.is_none() || file.metadata().map(|m| m.len()).ok() != expected {
        return false;
    }
    parts.iter().all(|part| {
        if part.size > MAX_PART_BYTES {
            return false;
        }
        let mut bytes = vec![0; part.size as usize];
        file.read_exact(&mut bytes).is_ok() && verity_types::sha256(&bytes) == part.hash
    })
}
