//! Generation: a prefill pass over the prompt, then one decode step per token.
//!
//! Models exported with past key values (optimum's `past_key_values.{i}.key|value` inputs and
//! `present.{i}.key|value` outputs) get each step's keys and values back and feed them to the
//! next, so a token costs one position's work against the cache. Models without them rerun
//! the whole sequence each step. Either way the engine's results are the same bits: every dot
//! product and every softmax sum runs over the sequence in ascending order, and a masked
//! position adds an exact zero.

use std::ops::ControlFlow;
use std::path::Path;

use serde::{Deserialize, Serialize};
use verity_infer::{Data, Dim, Engine, InferError, Model, Tensor};
use verity_types::Hash;

use crate::sampling::{choose, SamplingError, SamplingParams};

/// Why generation could not start or go on.
#[derive(Debug, thiserror::Error)]
pub enum GenerateError {
    #[error(transparent)]
    Engine(#[from] InferError),
    #[error(transparent)]
    Sampling(#[from] SamplingError),
    #[error("the model is not a language model this engine can drive: {0}")]
    NotALanguageModel(String),
    #[error("token id {id} is not in the model's vocabulary of {vocab}")]
    TokenOutOfRange { id: u32, vocab: usize },
    #[error("the prompt has {prompt} tokens; the model's context holds {context}")]
    PromptTooLong { prompt: usize, context: usize },
    #[error("the prompt is empty")]
    EmptyPrompt,
    #[error("the cache already holds {cached} positions of a {sequence}-token sequence: nothing to feed")]
    CacheCoversSequence { cached: usize, sequence: usize },
    #[error("the model's logits have shape {0:?}; expected [1, sequence, vocabulary]")]
    LogitsShape(Vec<usize>),
    #[error("reading {path}: {reason}")]
    Config { path: String, reason: String },
}

/// What generation knows about a model beyond its graph: from `config.json` and
/// `generation_config.json` beside it (Hugging Face's names), or given.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ModelConfig {
    /// Tokens that end generation.
    pub eos_token_ids: Vec<u32>,
    /// Positions the model can attend over, prompt included.
    pub context: Option<usize>,
    /// The token that opens a sequence, for chat templates that name it.
    pub bos_token_id: Option<u32>,
}

impl ModelConfig {
    /// Reads `config.json` and `generation_config.json` in `dir`, where present.
    pub fn from_dir(dir: &Path) -> Result<ModelConfig, GenerateError> {
        let mut config = ModelConfig::default();
        for name in ["config.json", "generation_config.json"] {
            let path = dir.join(name);
            let Ok(bytes) = std::fs::read(&path) else {
                continue;
            };
            let bad = |reason: String| GenerateError::Config {
                path: path.display().to_string(),
                reason,
            };
            let json: serde_json::Value =
                serde_json::from_slice(&bytes).map_err(|e| bad(e.to_string()))?;
            match &json["eos_token_id"] {
                serde_json::Value::Null => {}
                serde_json::Value::Number(n) => {
                    config.eos_token_ids =
                        vec![token_id(n).ok_or_else(|| bad(format!("eos_token_id {n}")))?]
                }
                serde_json::Value::Array(ids) => {
                    config.eos_token_ids = ids
                        .iter()
                        .map(|v| v.as_number().and_then(token_id))
                        .collect::<Option<_>>()
                        .ok_or_else(|| bad("eos_token_id holds something other than ids".into()))?
                }
                other => return Err(bad(format!("eos_token_id {other}"))),
            }
            if let Some(n) = json["bos_token_id"].as_number() {
                config.bos_token_id =
                    Some(token_id(n).ok_or_else(|| bad(format!("bos_token_id {n}")))?);
            }
            for key in ["max_position_embeddings", "n_positions", "n_ctx"] {
                if let Some(n) = json[key].as_u64() {
                    config.context = Some(n as usize);
                    break;
                }
            }
        }
        Ok(config)
    }
}

fn token_id(n: &serde_json::Number) -> Option<u32> {
    n.as_u64().and_then(|v| u32::try_from(v).ok())
}

/// One past/present pair of a layer: where its past goes in the inputs, where its present
/// comes out.
#[derive(Debug, Clone)]
pub(crate) struct CacheSlot {
    pub(crate) input: usize,
    pub(crate) output: usize,
    /// [heads, head_dim] of the cache tensor [batch, heads, length, head_dim].
    heads: usize,
    head_dim: usize,
}

/// The keys and values of the positions a model has seen, for the next pass to continue from.
#[derive(Debug, Clone)]
pub struct KvCache {
    pub(crate) tensors: Vec<Tensor>,
    /// How many positions the tensors hold.
    pub(crate) positions: usize,
}

impl KvCache {
    /// How many positions the cache holds.
    pub fn positions(&self) -> usize {
        self.positions
    }
}

/// What one forward pass gives.
#[derive(Debug, Clone)]
pub struct Pass {
    /// The logits of the sequence's last position.
    pub last_logits: Vec<f32>,
    /// The cache after the pass.
    pub cache: KvCache,
    /// The pass's trace root, with tracing on.
    pub trace_root: Option<Hash>,
}

/// A language model ready to generate: the graph's inputs and outputs mapped to their roles.
pub struct LanguageModel {
    model: Model,
    config: ModelConfig,
    input_ids: usize,
    attention_mask: Option<usize>,
    position_ids: Option<usize>,
    pub(crate) logits: usize,
    pub(crate) cache: Vec<CacheSlot>,
    vocab: Option<usize>,
}

/// How a generation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FinishReason {
    /// An end-of-sequence token, or the caller stopped it (a stop string).
    Stop,
    /// `max_tokens`, or the model's context, reached.
    Length,
}

/// One generated token.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Token {
    pub id: u32,
    /// Natural log of its probability under the model.
    pub logprob: f64,
    /// The trace root of the forward pass that produced its logits (with tracing on).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trace_root: Option<Hash>,
}

/// What a generation produced.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Generation {
    pub prompt_ids: Vec<u32>,
    pub tokens: Vec<Token>,
    pub finish_reason: FinishReason,
}

impl Generation {
    pub fn ids(&self) -> Vec<u32> {
        self.tokens.iter().map(|t| t.id).collect()
    }
}

/// What to generate.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GenerateParams {
    pub max_tokens: usize,
    pub sampling: SamplingParams,
    /// Record each forward pass's trace root.
    pub trace: bool,
    /// Rerun the whole sequence each step even when the model has a cache (for checking that
    /// both paths agree).
    pub no_cache: bool,
}

impl LanguageModel {
    /// Maps `model`'s inputs and outputs: `input_ids` (int64 [batch, sequence]) required;
    /// `attention_mask`, `position_ids` and `past_key_values.{i}.key|value` with their
    /// `present.{i}.key|value` outputs when the export has them; logits from the output named
    /// `logits`, or the first one.
    pub fn new(model: Model, config: ModelConfig) -> Result<LanguageModel, GenerateError> {
        let not_lm = |why: String| GenerateError::NotALanguageModel(why);
        let find_input = |name: &str| model.inputs().iter().position(|s| s.name == name);
        let input_names = model
            .inputs()
            .iter()
            .map(|s| s.name.as_str())
            .collect::<Vec<_>>()
            .join(", ");
        let input_ids = find_input("input_ids").ok_or_else(|| {
            not_lm(format!(
                "it has no input named input_ids (its inputs: {})",
                input_names
            ))
        })?;
        let outputs = model.outputs();
        let logits = outputs.iter().position(|s| s.name == "logits").unwrap_or(0);
        let vocab = outputs[logits]
            .dims
            .as_ref()
            .and_then(|d| d.last())
            .and_then(|d| match d {
                Dim::Fixed(n) => Some(*n),
                Dim::Symbolic(_) => None,
            });
        let mut cache = Vec::new();
        for (i, spec) in model.inputs().iter().enumerate() {
            let Some(rest) = spec.name.strip_prefix("past_key_values.") else {
                continue;
            };
            let present = format!("present.{rest}");
            let output = outputs
                .iter()
                .position(|s| s.name == present)
                .ok_or_else(|| not_lm(format!("input {} has no output {present}", spec.name)))?;
            let fixed = |d: Option<&Dim>| match d {
                Some(Dim::Fixed(n)) => Some(*n),
                _ => None,
            };
            let dims = spec.dims.as_deref().unwrap_or(&[]);
            let (Some(heads), Some(head_dim), 4) =
                (fixed(dims.get(1)), fixed(dims.get(3)), dims.len())
            else {
                return Err(not_lm(format!(
                    "{} should be [batch, heads, past, head_dim] with heads and head_dim fixed, is {}",
                    spec.name,
                    spec.describe()
                )));
            };
            cache.push(CacheSlot {
                input: i,
                output,
                heads,
                head_dim,
            });
        }
        let known = 1 + cache.len();
        let attention_mask = find_input("attention_mask");
        let position_ids = find_input("position_ids");
        let named = known + attention_mask.is_some() as usize + position_ids.is_some() as usize;
        if named != model.inputs().len() {
            return Err(not_lm(format!(
                "it has inputs other than input_ids, attention_mask, position_ids and past_key_values.*: {}",
                input_names
            )));
        }
        Ok(LanguageModel {
            model,
            config,
            input_ids,
            attention_mask,
            position_ids,
            logits,
            cache,
            vocab,
        })
    }

    pub fn model(&self) -> &Model {
        &self.model
    }

    pub fn config(&self) -> &ModelConfig {
        &self.config
    }

    /// The vocabulary size the graph declares for its logits, if it fixes one.
    pub fn vocab_size(&self) -> Option<usize> {
        self.vocab
    }

    /// Whether decode steps reuse the model's key/value cache.
    pub fn has_cache(&self) -> bool {
        !self.cache.is_empty()
    }

    /// Generates from `prompt`, calling `on_token` as each token is chosen.
    pub fn generate(
        &self,
        engine: &Engine,
        prompt: &[u32],
        params: &GenerateParams,
        mut on_token: impl FnMut(&Token),
    ) -> Result<Generation, GenerateError> {
        self.generate_until(engine, prompt, params, |token| {
            on_token(token);
            ControlFlow::Continue(())
        })
    }

    /// [`LanguageModel::generate`], ending with [`FinishReason::Stop`] after the first token
    /// for which `on_token` breaks (a stop string completed).
    pub fn generate_until(
        &self,
        engine: &Engine,
        prompt: &[u32],
        params: &GenerateParams,
        mut on_token: impl FnMut(&Token) -> ControlFlow<()>,
    ) -> Result<Generation, GenerateError> {
        params.sampling.check()?;
        self.check_prompt(prompt)?;
        let use_cache = self.has_cache() && !params.no_cache;
        let mut sequence: Vec<u32> = prompt.to_vec();
        let mut cache = self.empty_cache();
        let mut tokens = Vec::new();
        let mut finish = FinishReason::Length;
        while tokens.len() < params.max_tokens {
            // A pass over positions 0..len needs len within the context.
            if self.config.context.is_some_and(|c| sequence.len() > c) {
                break;
            }
            if !use_cache {
                cache = self.empty_cache();
            }
            let pass = self.forward(engine, &sequence, cache, params.trace)?;
            let choice = choose(&pass.last_logits, &params.sampling, sequence.len() as u64)?;
            cache = pass.cache;
            let token = Token {
                id: choice.token,
                logprob: choice.logprob,
                trace_root: pass.trace_root,
            };
            let flow = on_token(&token);
            sequence.push(token.id);
            tokens.push(token);
            if flow.is_break() || self.config.eos_token_ids.contains(&choice.token) {
                finish = FinishReason::Stop;
                break;
            }
        }
        Ok(Generation {
            prompt_ids: prompt.to_vec(),
            tokens,
            finish_reason: finish,
        })
    }

    /// A cache holding no positions: what the first pass starts from.
    pub fn empty_cache(&self) -> KvCache {
        KvCache {
            tensors: self
                .cache
                .iter()
                .map(|slot| {
                    Tensor::new(vec![1, slot.heads, 0, slot.head_dim], Data::F32(vec![]))
                        .expect("an empty tensor")
                })
                .collect(),
            positions: 0,
        }
    }

    /// One forward pass over `sequence` after `cache`: the positions the cache does not hold
    /// are fed (all of them for an export without a cache), and the pass returns the last
    /// position's logits with the cache extended to the whole sequence.
    pub fn forward(
        &self,
        engine: &Engine,
        sequence: &[u32],
        cache: KvCache,
        trace: bool,
    ) -> Result<Pass, GenerateError> {
        let start = if self.has_cache() { cache.positions } else { 0 };
        if start >= sequence.len() {
            return Err(GenerateError::CacheCoversSequence {
                cached: start,
                sequence: sequence.len(),
            });
        }
        let run = engine.run(
            &self.model,
            self.inputs(sequence, start, cache.tensors),
            trace,
        )?;
        let mut outputs: Vec<Option<Tensor>> =
            run.outputs.into_iter().map(|(_, t)| Some(t)).collect();
        let logits = outputs[self.logits].take().expect("each output taken once");
        let tensors = self
            .cache
            .iter()
            .map(|slot| outputs[slot.output].take().expect("each output taken once"))
            .collect();
        Ok(Pass {
            last_logits: last_row(&logits)?.to_vec(),
            cache: KvCache {
                tensors,
                positions: if self.has_cache() { sequence.len() } else { 0 },
            },
            trace_root: run.trace.as_ref().map(|t| t.root()),
        })
    }

    /// The logits of the prompt's last position after one pass over the whole prompt (what the
    /// first generated token is chosen from).
    pub fn prefill_logits(
        &self,
        engine: &Engine,
        prompt: &[u32],
    ) -> Result<Vec<f32>, GenerateError> {
        let run = engine.run(&self.model, self.prefill_inputs(prompt)?, false)?;
        Ok(last_row(&run.outputs[self.logits].1)?.to_vec())
    }

    /// The graph's inputs for the prefill pass over `prompt` (the pass a dispute over the
    /// first token re-executes).
    pub fn prefill_inputs(&self, prompt: &[u32]) -> Result<Vec<Tensor>, GenerateError> {
        self.check_prompt(prompt)?;
        Ok(self.inputs(prompt, 0, self.empty_cache().tensors))
    }

    fn check_prompt(&self, prompt: &[u32]) -> Result<(), GenerateError> {
        if prompt.is_empty() {
            return Err(GenerateError::EmptyPrompt);
        }
        if let Some(vocab) = self.vocab {
            if let Some(&id) = prompt.iter().find(|&&id| id as usize >= vocab) {
                return Err(GenerateError::TokenOutOfRange { id, vocab });
            }
        }
        match self.config.context {
            Some(context) if prompt.len() > context => Err(GenerateError::PromptTooLong {
                prompt: prompt.len(),
                context,
            }),
            _ => Ok(()),
        }
    }

    /// The graph's inputs for feeding `sequence[start..]` after a cache of `start` positions.
    pub(crate) fn inputs(&self, sequence: &[u32], start: usize, past: Vec<Tensor>) -> Vec<Tensor> {
        let fed = &sequence[start..];
        let row = |v: Vec<i64>| {
            let n = v.len();
            Tensor::new(vec![1, n], Data::I64(v)).expect("one row")
        };
        let mut inputs: Vec<Option<Tensor>> = vec![None; self.model.inputs().len()];
        inputs[self.input_ids] = Some(row(fed.iter().map(|&t| t as i64).collect()));
        if let Some(i) = self.attention_mask {
            inputs[i] = Some(row(vec![1; sequence.len()]));
        }
        if let Some(i) = self.position_ids {
            inputs[i] = Some(row((start as i64..sequence.len() as i64).collect()));
        }
        for (slot, tensor) in self.cache.iter().zip(past) {
            inputs[slot.input] = Some(tensor);
        }
        inputs
            .into_iter()
            .map(|t| t.expect("every input is mapped to a role"))
            .collect()
    }
}

/// The logits of the last position of `[1, sequence, vocabulary]`.
pub(crate) fn last_row(logits: &Tensor) -> Result<&[f32], GenerateError> {
    match (logits.shape(), logits.data()) {
        ([1, seq, vocab], Data::F32(v)) if *seq > 0 && *vocab > 0 => {
            Ok(&v[(seq - 1) * vocab..seq * vocab])
        }
        (shape, _) => Err(GenerateError::LogitsShape(shape.to_vec())),
    }
}
