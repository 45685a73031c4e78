//! Language models on the network (`docs/protocol.md` §16): the files one registered language
//! model binds, its prices per token, what a generation task reserves, and the documents a
//! generation reads and writes.
//!
//! A language model's id is the hash of its four files' hashes, so one id names the graph, the
//! weights, the tokenizer and the generation config together: nobody can register the same
//! graph with another tokenizer under the same id.

use serde::{Deserialize, Serialize};

use crate::codec::{DecodeError, Reader, Writer};
use crate::{sha256, Amount, DataRef, Hash};

/// Domain tag of a language model's id.
pub const LANGUAGE_MODEL_DOMAIN: &[u8] = b"verity/language-model/v1";
/// Domain tag of one generated token's leaf in a generation's trace.
pub const GENERATION_STEP_DOMAIN: &[u8] = b"verity/generation-step/v1";
/// Domain tag of a generation's sampling seed, when the prompt names none.
pub const SAMPLING_SEED_DOMAIN: &[u8] = b"verity/sampling-seed/v1";
/// The architecture field every language model registers with (LP-035's `transformer`).
pub const TRANSFORMER: &str = "transformer";
/// Longest external-data file name a language model declares.
pub const MAX_WEIGHTS_NAME_LEN: usize = 255;
/// Most parts a weights file is stored in.
pub const MAX_WEIGHT_CHUNKS: usize = 4096;
/// The size of the parts `verity model register` cuts a weights file into: under a node's
/// largest blob (64 MiB by default), so a 540 MB model goes through any blob store.
pub const WEIGHT_CHUNK_BYTES: usize = 32 << 20;

/// A graph's external data file: the name the graph refers to it by, and its bytes as blobs
/// whose concatenation, in order, is the file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ExternalWeights {
    /// The `location` the ONNX graph gives, e.g. `model.onnx.data`.
    pub name: String,
    pub chunks: Vec<DataRef>,
}

impl ExternalWeights {
    /// The file's size; `None` on overflow.
    pub fn size(&self) -> Option<u64> {
        self.chunks
            .iter()
            .try_fold(0u64, |total, chunk| total.checked_add(chunk.size))
    }
}

/// One file of a language model: the name a worker stores it under, and its parts in order
/// (only the weights have more than one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelFile<'a> {
    pub name: &'a str,
    pub parts: Vec<&'a DataRef>,
}

/// What a language model's registration adds to its [`crate::ModelSpec`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct LanguageSpec {
    /// The ONNX graph file.
    pub graph: DataRef,
    /// Its external data file, when the weights are stored outside the graph.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weights: Option<ExternalWeights>,
    /// Hugging Face `tokenizer.json`.
    pub tokenizer: DataRef,
    /// The generation config (`verity_lm::GenerationConfig` as JSON): end-of-sequence tokens,
    /// context length, chat template.
    pub generation: DataRef,
    /// Positions the model attends over, prompt and answer together.
    pub context: u32,
    /// Price of each prompt token.
    #[serde(with = "crate::amount")]
    #[schema(schema_with = crate::schema::amount)]
    pub input_token_price: Amount,
    /// Price of each generated token.
    #[serde(with = "crate::amount")]
    #[schema(schema_with = crate::schema::amount)]
    pub output_token_price: Amount,
}

impl LanguageSpec {
    /// The model id these files make: SHA-256(`LANGUAGE_MODEL_DOMAIN` ‖ graph hash ‖ weights
    /// flag, then name, part count and each part's hash ‖ tokenizer hash ‖ generation config
    /// hash). Hashes only, unlike the wire encoding below, which also carries sizes and prices.
    pub fn model_id(&self) -> Hash {
        let mut w = Writer::new();
        w.fixed(LANGUAGE_MODEL_DOMAIN).fixed(&self.graph.hash.0);
        match &self.weights {
            None => {
                w.u8(0);
            }
            Some(weights) => {
                w.u8(1).str(&weights.name).u32(weights.chunks.len() as u32);
                for chunk in &weights.chunks {
                    w.fixed(&chunk.hash.0);
                }
            }
        }
        w.fixed(&self.tokenizer.hash.0)
            .fixed(&self.generation.hash.0);
        sha256(&w.finish())
    }

    /// The files a worker fetches to serve the model, with the names it stores them under.
    pub fn files(&self) -> Vec<ModelFile<'_>> {
        let one = |name, file| ModelFile {
            name,
            parts: vec![file],
        };
        let mut files = vec![one("model.onnx", &self.graph)];
        if let Some(weights) = &self.weights {
            files.push(ModelFile {
                name: &weights.name,
                parts: weights.chunks.iter().collect(),
            });
        }
        files.push(one("tokenizer.json", &self.tokenizer));
        files.push(one("generation.json", &self.generation));
        files
    }

    /// Every blob the model is stored in: what validators and workers hold.
    pub fn blobs(&self) -> Vec<&DataRef> {
        self.files().into_iter().flat_map(|f| f.parts).collect()
    }

    /// What `prompt_tokens` in and `output_tokens` out cost; `None` on overflow.
    pub fn fee(&self, prompt_tokens: u32, output_tokens: u32) -> Option<Amount> {
        let input = self.input_token_price.checked_mul(prompt_tokens.into())?;
        let output = self.output_token_price.checked_mul(output_tokens.into())?;
        input.checked_add(output)
    }

    /// The escrow a task with `limits` must cover: its prompt and every token it may generate.
    pub fn escrow(&self, limits: &GenerationLimits) -> Option<Amount> {
        self.fee(limits.prompt_tokens, limits.max_tokens)
    }

    pub(crate) fn encode(&self, w: &mut Writer) {
        self.graph.encode(w);
        match &self.weights {
            None => {
                w.u8(0);
            }
            Some(weights) => {
                w.u8(1).str(&weights.name).u32(weights.chunks.len() as u32);
                for chunk in &weights.chunks {
                    chunk.encode(w);
                }
            }
        }
        self.tokenizer.encode(w);
        self.generation.encode(w);
        w.u32(self.context)
            .u128(self.input_token_price)
            .u128(self.output_token_price);
    }

    pub(crate) fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(Self {
            graph: DataRef::decode(r)?,
            weights: match r.u8("weights flag")? {
                0 => None,
                1 => {
                    let name = r.string("weights file name", MAX_WEIGHTS_NAME_LEN)?;
                    let count = r.u32("weight chunks")? as usize;
                    if count > MAX_WEIGHT_CHUNKS {
                        return Err(DecodeError::TooLong {
                            what: "weight chunks",
                            len: count,
                            limit: MAX_WEIGHT_CHUNKS,
                        });
                    }
                    let chunks = (0..count)
                        .map(|_| DataRef::decode(r))
                        .collect::<Result<_, _>>()?;
                    Some(ExternalWeights { name, chunks })
                }
                tag => {
                    return Err(DecodeError::UnknownTag {
                        what: "weights flag",
                        tag,
                    })
                }
            },
            tokenizer: DataRef::decode(r)?,
            generation: DataRef::decode(r)?,
            context: r.u32("context length")?,
            input_token_price: r.u128("input token price")?,
            output_token_price: r.u128("output token price")?,
        })
    }
}

/// What a generation task reserves: the prompt's length in the model's tokens (the worker
/// checks it) and the most tokens it may generate. The escrow covers both at the model's
/// prices; what is not generated goes back at settlement.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct GenerationLimits {
    pub prompt_tokens: u32,
    pub max_tokens: u32,
}

impl GenerationLimits {
    pub(crate) fn encode(&self, w: &mut Writer) {
        w.u32(self.prompt_tokens).u32(self.max_tokens);
    }

    pub(crate) fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(Self {
            prompt_tokens: r.u32("prompt tokens")?,
            max_tokens: r.u32("max tokens")?,
        })
    }
}

/// One chat message of a prompt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PromptMessage {
    pub role: String,
    pub content: String,
}

/// A generation task's input file: chat messages or a text to continue, and how to sample.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PromptDocument {
    /// Chat messages, rendered with the model's chat template.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub messages: Option<Vec<PromptMessage>>,
    /// A text to continue (a completion); exactly one of `messages` and `prompt`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt: Option<String>,
    pub max_tokens: u32,
    /// 0, the default, is greedy.
    #[serde(default)]
    pub temperature: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_k: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_p: Option<f64>,
    /// The sampling seed; without one it is drawn from the task id ([`sampling_seed`]), fixed
    /// when the task is submitted, before any worker is drawn.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
    /// Generation stops before the first of these strings in the answer.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub stop: Vec<String>,
}

/// The seed a generation samples with: the prompt's own, else the first 8 bytes (little-endian)
/// of SHA-256(`SAMPLING_SEED_DOMAIN` ‖ task id).
pub fn sampling_seed(prompt: &PromptDocument, task_id: &Hash) -> u64 {
    prompt.seed.unwrap_or_else(|| {
        let digest = sha256(&[SAMPLING_SEED_DOMAIN, &task_id.0].concat());
        u64::from_le_bytes(digest.0[..8].try_into().expect("8 bytes"))
    })
}

/// Leaf `index` of a generation's trace: SHA-256(`GENERATION_STEP_DOMAIN` ‖ index u32 LE ‖ the
/// forward pass's trace root ‖ the chosen token id u32 LE). The receipt's trace root is the
/// Merkle root of the leaves, so a dispute can name the first token whose pass or choice differs.
pub fn generation_leaf(index: u32, forward_root: &Hash, token: u32) -> Hash {
    let mut w = Writer::new();
    w.fixed(GENERATION_STEP_DOMAIN)
        .u32(index)
        .fixed(&forward_root.0)
        .u32(token);
    sha256(&w.finish())
}

/// Why a generation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum GenerationFinish {
    /// An end-of-sequence token or a stop string.
    Stop,
    /// `max_tokens`, or the model's context, reached.
    Length,
}

/// One generated token in an output document.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct GeneratedToken {
    pub id: u32,
    /// Natural log of its probability under the model (at temperature 1).
    pub logprob: f64,
    /// The trace root of the forward pass whose logits chose it.
    pub trace_root: Hash,
}

/// A generation task's output file. The receipt's trace root is the Merkle root of the tokens'
/// [`generation_leaf`]s, and its trace length the number of tokens.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct GenerationDocument {
    /// The prompt as the model saw it, in its tokens.
    pub prompt_ids: Vec<u32>,
    pub tokens: Vec<GeneratedToken>,
    /// The answer: the tokens' text, without an end-of-sequence token or a stop string.
    pub text: String,
    pub finish_reason: GenerationFinish,
    /// The seed it sampled with.
    pub seed: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> LanguageSpec {
        LanguageSpec {
            graph: DataRef::of(b"graph"),
            weights: None,
            tokenizer: DataRef::of(b"tokenizer"),
            generation: DataRef::of(b"config"),
            context: 256,
            input_token_price: 2,
            output_token_price: 5,
        }
    }

    #[test]
    fn the_id_binds_every_file() {
        let base = spec();
        let mut other = base.clone();
        other.tokenizer = DataRef::of(b"another tokenizer");
        assert_ne!(base.model_id(), other.model_id());
        let mut other = base.clone();
        other.generation = DataRef::of(b"another config");
        assert_ne!(base.model_id(), other.model_id());
        let mut other = base.clone();
        other.weights = Some(ExternalWeights {
            name: "model.onnx.data".into(),
            chunks: vec![DataRef::of(b"wei"), DataRef::of(b"ghts")],
        });
        assert_ne!(base.model_id(), other.model_id());
        // The same bytes cut otherwise are other blobs: another id.
        let mut recut = other.clone();
        recut.weights.as_mut().unwrap().chunks = vec![DataRef::of(b"weights")];
        assert_ne!(recut.model_id(), other.model_id());
        assert_eq!(other.weights.as_ref().unwrap().size(), Some(7));
        assert_eq!(other.blobs().len(), 5);
        // Prices and context are terms, not files: the id stays.
        let mut other = base.clone();
        other.output_token_price = 7;
        assert_eq!(base.model_id(), other.model_id());
    }

    #[test]
    fn fees_are_checked() {
        let s = spec();
        assert_eq!(s.fee(10, 4), Some(40));
        let limits = GenerationLimits {
            prompt_tokens: 3,
            max_tokens: 8,
        };
        assert_eq!(s.escrow(&limits), Some(46));
        let dear = LanguageSpec {
            output_token_price: Amount::MAX,
            ..s
        };
        assert_eq!(dear.fee(0, 2), None);
    }

    #[test]
    fn a_prompt_seed_wins_and_the_task_id_gives_one_otherwise() {
        let mut doc = PromptDocument {
            messages: None,
            prompt: Some("hi".into()),
            max_tokens: 4,
            temperature: 0.0,
            top_k: None,
            top_p: None,
            seed: Some(9),
            stop: Vec::new(),
        };
        assert_eq!(sampling_seed(&doc, &Hash([1; 32])), 9);
        doc.seed = None;
        let a = sampling_seed(&doc, &Hash([1; 32]));
        assert_ne!(a, sampling_seed(&doc, &Hash([2; 32])));
        assert_eq!(a, sampling_seed(&doc, &Hash([1; 32])));
    }
}
