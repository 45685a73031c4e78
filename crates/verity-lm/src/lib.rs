//! Language models on the Verity engine.
//!
//! - [`Tokenizer`]: Hugging Face `tokenizer.json` files, the same ids as the Python package.
//! - [`sampling`]: greedy, temperature, top-k and top-p choices that anyone can reproduce from
//!   the logits, the seed and the position.
//! - [`LanguageModel::generate`]: prefill, then one decode step per token, reusing the model's
//!   key/value cache when its export has one.
//! - [`ChatTemplate`]: a chat model's Jinja template, turning messages into its prompt.
//! - [`task`]: a registered model's files, a task's prompt document and its output document.

mod chat;
pub mod dispute;
mod generate;
pub mod sampling;
pub mod task;
mod tokenizer;

pub use chat::{ChatError, ChatMessage, ChatTemplate};
pub use generate::{
    FinishReason, GenerateError, GenerateParams, Generation, KvCache, LanguageModel, ModelConfig,
    Pass, Token,
};
pub use sampling::{Choice, SamplingError, SamplingParams};
pub use task::{GenerationConfig, PromptRenderer, ServedModel, TaskError};
pub use tokenizer::{Tokenizer, TokenizerError};
