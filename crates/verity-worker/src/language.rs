//! Language-model tasks: a registered model's files fetched once into the worker's home (each
//! part checked against the hash the chain holds), loaded once and kept; each task's prompt checked
//! against what its escrow reserved, generated with the seed fixed before the worker was drawn,
//! and turned into an output document and its trace commitment.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result};
use tracing::{info, warn};
use verity_client::Client;
use verity_data::cid_of;
use verity_infer::Engine;
use verity_lm::task::{holds, output_bytes, parse_prompt, trace_root};
use verity_lm::ServedModel;
use verity_types::{
    sampling_seed, sha256, FailureReason, GenerationDocument, GenerationLimits, Hash,
};

use crate::Computed;

/// The language models a worker has loaded, and where their files live.
pub struct LanguageModels {
    dir: PathBuf,
    loaded: HashMap<Hash, Arc<ServedModel>>,
}

impl LanguageModels {
    pub fn new(home: &Path) -> Self {
        Self {
            dir: home.join("models"),
            loaded: HashMap::new(),
        }
    }

    /// The model, or why it cannot be had: a network error (retry), or a reason to report.
    pub async fn get(
        &mut self,
        client: &Client,
        id: &Hash,
    ) -> Result<Result<Arc<ServedModel>, FailureReason>> {
        if let Some(model) = self.loaded.get(id) {
            return Ok(Ok(model.clone()));
        }
        let Some(language) = client.model(id).await?.and_then(|m| m.spec.language) else {
            return Ok(Err(FailureReason::ModelInvalid));
        };
        let dir = self.dir.join(id.to_string());
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        for file in language.files() {
            let path = dir.join(file.name);
            if holds(&path, &file.parts) {
                continue;
            }
            // Part by part into a temporary file, each checked before it is written, renamed
            // whole at the end: a crash leaves a temporary file, never a torn model, and no
            // more than one part is in memory.
            let partial = dir.join(format!(".{}.partial", file.name));
            let mut out = std::fs::File::create(&partial)
                .with_context(|| format!("creating {}", partial.display()))?;
            for part in &file.parts {
                let Some(bytes) = client.get_blob(&cid_of(&part.hash)).await? else {
                    return Ok(Err(FailureReason::ModelUnavailable));
                };
                if sha256(&bytes) != part.hash {
                    return Ok(Err(FailureReason::ModelInvalid));
                }
                out.write_all(&bytes)
                    .with_context(|| format!("writing {}", partial.display()))?;
            }
            out.sync_all()?;
            std::fs::rename(&partial, &path)
                .with_context(|| format!("writing {}", path.display()))?;
        }
        let loaded = tokio::task::spawn_blocking(move || ServedModel::load(&dir)).await?;
        match loaded {
            Ok(model) => {
                info!(model = %id, "language model loaded");
                let model = Arc::new(model);
                self.loaded.insert(*id, model.clone());
                Ok(Ok(model))
            }
            Err(e) => {
                warn!(model = %id, error = %e, "the language model's files do not load");
                Ok(Err(FailureReason::ModelInvalid))
            }
        }
    }
}

/// Runs one generation task: its prompt document must render to exactly the prompt tokens and
/// ask for exactly the max tokens its escrow reserved; anything else fails the task as input
/// that does not fit. With `corrupt` (fault injection, `--dishonest N`), token N of the answer
/// (the last if it is shorter) is replaced by the next id, its forward pass kept.
pub fn compute(
    engine: &Engine,
    model: &ServedModel,
    task_id: &Hash,
    limits: &GenerationLimits,
    input: &[u8],
    corrupt: Option<usize>,
) -> Result<Computed, FailureReason> {
    let out = generate(engine, model, task_id, limits, input, corrupt)?;
    Ok(Computed {
        trace_root: trace_root(&out),
        trace_len: out.tokens.len() as u32,
        output: output_bytes(&out),
    })
}

/// The output document of [`compute`].
pub fn generate(
    engine: &Engine,
    model: &ServedModel,
    task_id: &Hash,
    limits: &GenerationLimits,
    input: &[u8],
    corrupt: Option<usize>,
) -> Result<GenerationDocument, FailureReason> {
    let unfit = |why: String| {
        warn!(task = %task_id, %why, "the prompt does not fit its task");
        FailureReason::InputDoesNotFit
    };
    let doc = parse_prompt(input).map_err(|e| unfit(e.to_string()))?;
    let prompt_ids = model
        .renderer()
        .prompt_ids(&doc)
        .map_err(|e| unfit(e.to_string()))?;
    if prompt_ids.len() != limits.prompt_tokens as usize || doc.max_tokens != limits.max_tokens {
        return Err(unfit(format!(
            "it has {} prompt tokens and max_tokens {}; the task reserved {} and {}",
            prompt_ids.len(),
            doc.max_tokens,
            limits.prompt_tokens,
            limits.max_tokens
        )));
    }
    let seed = sampling_seed(&doc, task_id);
    let mut out = model
        .run(engine, &doc, &prompt_ids, seed, |_| {})
        .map_err(|e| unfit(e.to_string()))?;
    if let Some(n) = corrupt {
        change_token(model, &mut out, n);
    }
    Ok(out)
}

/// Fault injection: token `n` (the last if there are fewer) becomes the next id in the
/// vocabulary, and the text is decoded again; the forward passes are kept.
fn change_token(model: &ServedModel, out: &mut GenerationDocument, n: usize) {
    let i = n.min(out.tokens.len().saturating_sub(1));
    let Some(token) = out.tokens.get_mut(i) else {
        return;
    };
    let vocab = model.renderer().tokenizer().vocab_size().max(2) as u32;
    token.id = (token.id + 1) % vocab;
    let eos = &model.renderer().config().eos_token_ids;
    let ids: Vec<u32> = out
        .tokens
        .iter()
        .map(|t| t.id)
        .filter(|id| !eos.contains(id))
        .collect();
    if let Ok(text) = model.renderer().tokenizer().decode(&ids) {
        out.text = text;
    }
}
