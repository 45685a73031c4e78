//! What `verity chat`, `verity gateway` and `verity model register DIR` share: a registered
//! language model opened on the user's side (its tokenizer and generation config fetched by the
//! chain's hashes), prompts turned into escrowed generation tasks, and answers checked here —
//! receipt signature, enclave, policy, finality, output hash and trace root — before anyone
//! sees them. The node is never trusted with an answer.

use std::path::Path;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{ensure, Context as _, Result};
use verity_client::api::{self, RecordStatus, TaskStatus, TxStatus, TxView};
use verity_client::{Client, ClientError, PageRequest};
use verity_data::cid_of;
use verity_lm::task::{check_prompt, trace_root};
use verity_lm::{GenerationConfig, PromptRenderer, Tokenizer};
use verity_types::{
    sampling_seed, sha256, AccountKey, Action, Amount, DataRef, ExternalWeights,
    GenerationDocument, GenerationLimits, Hash, LanguageSpec, Mode, ModelSpec, PromptDocument,
};

/// Why a generation could not be had; the gateway maps each kind to an HTTP status.
#[derive(Debug, thiserror::Error)]
pub enum GenerationError {
    /// The request is wrong: a prompt too long, a mode the model does not allow, bad
    /// parameters.
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    NotFound(String),
    /// The account cannot pay the escrow.
    #[error("{0}")]
    InsufficientFunds(String),
    /// The task ran and did not give an answer (failed, expired).
    #[error("{0}")]
    NoAnswer(String),
    /// An answer came back and did not pass the checks: it is not shown.
    #[error("the answer failed verification: {0}")]
    Unverified(String),
    #[error(transparent)]
    Node(#[from] ClientError),
    #[error("{0:#}")]
    Other(#[from] anyhow::Error),
}

type Outcome<T> = std::result::Result<T, GenerationError>;

fn invalid<T>(reason: impl Into<String>) -> Outcome<T> {
    Err(GenerationError::Invalid(reason.into()))
}

/// A language model registered on the chain, ready to turn prompts into tasks.
pub struct LanguageModelClient {
    pub client: Client,
    pub chain_id: String,
    pub model: api::Model,
    pub language: LanguageSpec,
    renderer: PromptRenderer,
}

/// A prompt ready to submit: its file, what it reserves, and what that costs at most.
pub struct Prepared {
    pub document: PromptDocument,
    pub bytes: Vec<u8>,
    pub limits: GenerationLimits,
    pub escrow: Amount,
}

/// An answer that passed every check.
pub struct VerifiedAnswer {
    pub task_id: Hash,
    pub output: GenerationDocument,
    pub record: api::ExecutionRecord,
    /// "dev TEE, not hardware-backed", or the hardware TEE kind.
    pub attestation: String,
    /// What was checked, in words.
    pub checks: Vec<&'static str>,
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Every registered language model, newest first.
pub async fn language_models(client: &Client) -> Outcome<Vec<api::Model>> {
    let mut page = PageRequest::default();
    let mut found = Vec::new();
    loop {
        let list = client.models(&page).await?;
        found.extend(
            list.models
                .into_iter()
                .filter(|m| m.spec.language.is_some()),
        );
        match list.next {
            Some(next) => page.after = Some(next),
            None => break,
        }
    }
    found.sort_by_key(|m| std::cmp::Reverse(m.registered_height));
    Ok(found)
}

impl LanguageModelClient {
    /// Opens the language model named `name_or_id` (its id, or its registered name: the
    /// newest registration of that name).
    pub async fn open(client: Client, name_or_id: &str) -> Outcome<Self> {
        let model = match name_or_id.parse::<Hash>() {
            Ok(id) => client
                .model(&id)
                .await?
                .ok_or_else(|| GenerationError::NotFound(format!("no model {id}")))?,
            Err(_) => language_models(&client)
                .await?
                .into_iter()
                .find(|m| m.spec.name == name_or_id)
                .ok_or_else(|| {
                    GenerationError::NotFound(format!(
                        "no language model named {name_or_id:?} (`verity model list` shows what is registered)"
                    ))
                })?,
        };
        let language = *model.spec.language.clone().ok_or_else(|| {
            GenerationError::Invalid(format!(
                "model {} ({}) is not a language model",
                model.spec.model_id, model.spec.name
            ))
        })?;
        let fetch = |file: DataRef, what: &'static str| {
            let client = client.clone();
            async move {
                let bytes = client
                    .get_blob(&cid_of(&file.hash))
                    .await?
                    .with_context(|| format!("the model's {what} is not in the blob store"))?;
                ensure!(
                    sha256(&bytes) == file.hash,
                    "the model's {what} does not hash to what the chain holds"
                );
                Ok::<_, anyhow::Error>(bytes)
            }
        };
        let tokenizer = fetch(language.tokenizer, "tokenizer").await?;
        let config = fetch(language.generation, "generation config").await?;
        let tokenizer = Tokenizer::from_bytes(&tokenizer, "the model's tokenizer.json")
            .map_err(anyhow::Error::from)?;
        let config = GenerationConfig::from_json(&config).map_err(anyhow::Error::from)?;
        let renderer = PromptRenderer::new(tokenizer, config).map_err(anyhow::Error::from)?;
        let chain_id = client.status().await?.chain_id;
        Ok(Self {
            client,
            chain_id,
            model,
            language,
            renderer,
        })
    }

    pub fn name(&self) -> &str {
        &self.model.spec.name
    }

    pub fn id(&self) -> Hash {
        self.model.spec.model_id
    }

    pub fn renderer(&self) -> &PromptRenderer {
        &self.renderer
    }

    /// Checks `document` and counts its prompt's tokens: what the task will reserve.
    pub fn prepare(&self, document: PromptDocument, mode: Mode) -> Outcome<Prepared> {
        if !self.model.spec.allowed_modes.contains(&mode) {
            return invalid(format!(
                "model {} does not allow mode {mode} (it allows {})",
                self.name(),
                modes(&self.model.spec)
            ));
        }
        check_prompt(&document).map_err(|e| GenerationError::Invalid(e.to_string()))?;
        let prompt_ids = self
            .renderer
            .prompt_ids(&document)
            .map_err(|e| GenerationError::Invalid(e.to_string()))?;
        let context = self.language.context as usize;
        if prompt_ids.len() + document.max_tokens as usize > context {
            return invalid(format!(
                "the prompt has {} tokens and max_tokens is {}: together over model {}'s context of {context} tokens",
                prompt_ids.len(),
                document.max_tokens,
                self.name()
            ));
        }
        let limits = GenerationLimits {
            prompt_tokens: prompt_ids.len() as u32,
            max_tokens: document.max_tokens,
        };
        let escrow = self
            .language
            .escrow(&limits)
            .ok_or_else(|| GenerationError::Invalid("the price overflows".into()))?;
        let bytes = serde_json::to_vec(&document).map_err(anyhow::Error::from)?;
        Ok(Prepared {
            document,
            bytes,
            limits,
            escrow,
        })
    }

    /// Uploads the prompt and submits its task; nothing is escrowed unless the account can pay.
    pub async fn submit(
        &self,
        key: &AccountKey,
        prepared: &Prepared,
        mode: Mode,
        deadline_blocks: u64,
    ) -> Outcome<Hash> {
        let status = self.client.status().await?;
        // Below the chain's minimum task fee the mempool refuses it, with the minimum named.
        let max_fee = prepared.escrow;
        let action = Action::SubmitTask {
            model_id: self.id(),
            input: DataRef::of(&prepared.bytes),
            mode,
            max_fee,
            deadline_blocks,
            input_commitment: None,
            dataset: None,
            generation: Some(prepared.limits),
        };
        let tx_fee = verity_types::TxBody {
            chain_id: status.chain_id.clone(),
            nonce: 0,
            fee: 0,
            action: action.clone(),
        }
        .required_fee(&status.fees);
        let balance = self.client.account(&key.address()).await?.balance;
        let needed = max_fee.saturating_add(tx_fee);
        if balance < needed {
            return Err(GenerationError::InsufficientFunds(format!(
                "{} holds {} but this request needs {} ({} escrow for {} prompt and {} answer tokens, {} transaction fee)",
                key.address(),
                crate::tokens::format(balance),
                crate::tokens::format(needed),
                crate::tokens::format(max_fee),
                prepared.limits.prompt_tokens,
                prepared.limits.max_tokens,
                crate::tokens::format(tx_fee),
            )));
        }
        self.client
            .put_blob(prepared.bytes.clone(), key)
            .await
            .map_err(|e| anyhow::Error::from(e).context("uploading the prompt"))?;
        let tx = self
            .client
            .submit_action(key, action, 0)
            .await
            .map_err(|e| match e {
                ClientError::Api {
                    status: 400..=499,
                    message,
                    ..
                } => GenerationError::Invalid(message),
                other => other.into(),
            })?;
        Ok(tx.hash())
    }

    /// Waits for task `task_id`'s answer and checks it; `progress` hears each status change.
    pub async fn wait(
        &self,
        task_id: &Hash,
        prepared: &Prepared,
        timeout: Duration,
        mut progress: impl FnMut(&str),
    ) -> Outcome<VerifiedAnswer> {
        let started = Instant::now();
        let mut last = String::new();
        loop {
            let status = match self.client.task(task_id).await? {
                None => match self.client.tx(task_id).await {
                    Ok(TxView {
                        receipt:
                            Some(api::Receipt {
                                status: TxStatus::Failed { error },
                                ..
                            }),
                        ..
                    }) => return invalid(format!("the task was refused: {error}")),
                    _ => "submitted".to_string(),
                },
                Some(view) => match view.task.status {
                    TaskStatus::Finalized => return self.verify(task_id, prepared).await,
                    TaskStatus::Failed => {
                        return Err(GenerationError::NoAnswer(format!(
                            "the worker's enclave could not run task {task_id}: {:?} (escrow refunded less the worker's fee)",
                            view.task.failure
                        )))
                    }
                    TaskStatus::Expired | TaskStatus::Cancelled => {
                        return Err(GenerationError::NoAnswer(format!(
                            "task {task_id} closed without an answer ({:?}); its escrow was refunded",
                            view.task.status
                        )))
                    }
                    other => match view.task.worker {
                        Some(worker) => format!("{other:?} to {worker}").to_lowercase(),
                        None => format!("{other:?}, waiting for a worker").to_lowercase(),
                    },
                },
            };
            if status != last {
                progress(&status);
                last = status;
            }
            if started.elapsed() > timeout {
                return Err(GenerationError::NoAnswer(format!(
                    "no answer after {} s; `verity task show {task_id}` tells where it is",
                    timeout.as_secs()
                )));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Checks a finalized task's answer without trusting the node: the record is for this
    /// task, model and prompt; the enclave's signature over it verifies; that enclave is the
    /// worker's registered one and the chain's policy accepts it; the record is final; the
    /// output file hashes to what was signed; its trace root and length are its tokens'; and
    /// it is the generation of this prompt with the seed fixed at submission.
    pub async fn verify(&self, task_id: &Hash, prepared: &Prepared) -> Outcome<VerifiedAnswer> {
        let unverified = |why: String| Err(GenerationError::Unverified(why));
        let view = self
            .client
            .task(task_id)
            .await?
            .ok_or_else(|| GenerationError::NotFound(format!("no task {task_id}")))?;
        let Some(record) = view.record else {
            return unverified(format!("task {task_id} is finalized but has no record"));
        };
        if record.task_id != *task_id
            || record.model_id != self.id()
            || record.input_hash != sha256(&prepared.bytes)
        {
            return unverified("the record is not for this task, model and prompt".into());
        }
        if record.status != RecordStatus::Finalized {
            return unverified(format!("the record is {:?}, not finalized", record.status));
        }
        if let Err(e) = record.verify_signature(&self.chain_id) {
            return unverified(format!("receipt: {e}"));
        }
        let worker = self.client.worker(&record.worker).await?;
        let Some(enclave) = worker.enclave else {
            return unverified(format!(
                "worker {} has no registered enclave",
                record.worker
            ));
        };
        if enclave.key != record.enclave_key {
            return unverified(format!(
                "the receipt is signed by {}, not by worker {}'s registered enclave",
                hex::encode(record.enclave_key),
                record.worker
            ));
        }
        if !enclave.is_live(now_ms()) {
            return unverified("the worker's enclave attestation has expired".into());
        }
        let policy = self.client.attestation_policy().await?.policy;
        if !policy.is_some_and(|p| p.accepts(enclave.kind, &enclave.measurement)) {
            return unverified(
                "the chain's attestation policy does not accept the enclave's kind and measurement"
                    .into(),
            );
        }
        let finalized = self.client.status().await?.finalized_height;
        if record.finalized_height == 0 || record.finalized_height > finalized {
            return unverified(format!(
                "the record's height {} is not final (finalized: {finalized})",
                record.finalized_height
            ));
        }
        // An op answer stands once its window has closed with no dispute against it open.
        let mut op_checks = Vec::new();
        if record.mode == Mode::Op {
            match record.challenge_until {
                Some(until) if until < finalized => {}
                _ => return unverified("the answer's challenge window is still open".into()),
            }
            if view
                .disputes
                .iter()
                .any(|d| d.worker == record.worker && d.status == api::DisputeStatus::Open)
            {
                return unverified("a dispute against the answer is still open".into());
            }
            op_checks = vec!["challenge window closed", "no dispute open"];
        }
        let Some(bytes) = self.client.get_blob(&cid_of(&record.output_hash)).await? else {
            return unverified("the output file is not in the blob store".into());
        };
        if sha256(&bytes) != record.output_hash || bytes.len() as u64 != record.output_size {
            return unverified("the output file is not the one the enclave signed".into());
        }
        let output: GenerationDocument = match serde_json::from_slice(&bytes) {
            Ok(doc) => doc,
            Err(e) => return unverified(format!("the output is not a generation document: {e}")),
        };
        if trace_root(&output) != record.trace_root
            || output.tokens.len() as u32 != record.trace_len
        {
            return unverified("the output's tokens are not the signed trace".into());
        }
        let expected_ids = self
            .renderer
            .prompt_ids(&prepared.document)
            .map_err(|e| GenerationError::Invalid(e.to_string()))?;
        if output.prompt_ids != expected_ids
            || output.seed != sampling_seed(&prepared.document, task_id)
        {
            return unverified("the output answers another prompt or seed".into());
        }
        let attestation = match enclave.is_dev() {
            true => "dev TEE, not hardware-backed".to_string(),
            false => enclave.kind.to_string(),
        };
        Ok(VerifiedAnswer {
            task_id: *task_id,
            output,
            record,
            attestation,
            checks: vec![
                "enclave signature",
                "registered enclave",
                "attestation policy",
                "finality",
                "output hash",
                "trace root",
                "prompt and seed",
            ]
            .into_iter()
            .chain(op_checks)
            .collect(),
        })
    }

    /// A verified answer's text in pieces, one per token as the tokenizer decodes it (a
    /// character split over tokens comes with its last token), for streaming.
    pub fn pieces(&self, answer: &VerifiedAnswer) -> Vec<String> {
        let full = answer.output.text.as_str();
        let ids: Vec<u32> = answer.output.tokens.iter().map(|t| t.id).collect();
        let mut out = Vec::new();
        let mut shown = 0;
        for end in 1..=ids.len() {
            let text = self
                .renderer
                .tokenizer()
                .decode(&ids[..end])
                .unwrap_or_default();
            let mut upto = text
                .bytes()
                .zip(full.bytes())
                .take_while(|(a, b)| a == b)
                .count();
            while !full.is_char_boundary(upto) {
                upto -= 1;
            }
            if upto > shown {
                out.push(full[shown..upto].to_string());
                shown = upto;
            }
        }
        if shown < full.len() {
            out.push(full[shown..].to_string());
        }
        out
    }
}

fn modes(spec: &ModelSpec) -> String {
    spec.allowed_modes
        .iter()
        .map(|m| m.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// A language model's registration from a Hugging Face style directory: `model.onnx` (with its
/// external data beside it), `tokenizer.json`, and `generation.json` or the config files it is
/// made from (`config.json`, `generation_config.json`, the chat template). Returns the spec
/// and the blobs to upload (the weights cut into parts of `WEIGHT_CHUNK_BYTES`).
pub fn language_model_spec(
    dir: &Path,
    name: String,
    version: String,
    license: String,
    input_token_price: Amount,
    output_token_price: Amount,
    modes: Vec<Mode>,
) -> Result<(ModelSpec, Vec<Vec<u8>>)> {
    let graph_path = dir.join("model.onnx");
    let model = verity_infer::Model::from_file(&graph_path)
        .with_context(|| format!("cannot load {}", graph_path.display()))?;
    let summary = model.summary();
    let external: Vec<String> = model.external_files().to_vec();
    ensure!(
        external.len() <= 1,
        "{} spreads its weights over {} files ({}); one external data file is supported",
        graph_path.display(),
        external.len(),
        external.join(", ")
    );
    let config = match std::fs::read(dir.join("generation.json")) {
        Ok(bytes) => GenerationConfig::from_json(&bytes)?,
        Err(_) => GenerationConfig::from_dir(dir)?,
    };
    let tokenizer_bytes = std::fs::read(dir.join("tokenizer.json"))
        .with_context(|| format!("reading {}", dir.join("tokenizer.json").display()))?;
    let tokenizer = Tokenizer::from_bytes(&tokenizer_bytes, "tokenizer.json")?;
    let lm = verity_lm::LanguageModel::new(model, verity_lm::ModelConfig::default())
        .with_context(|| format!("{} is not a language model", graph_path.display()))?;
    if let Some(vocab) = lm.vocab_size() {
        ensure!(
            tokenizer.vocab_size() <= vocab,
            "the tokenizer has {} tokens but the model scores {vocab}: they do not belong together",
            tokenizer.vocab_size()
        );
    }
    let graph = std::fs::read(&graph_path)?;
    let config_bytes = config.to_json();
    let mut files = vec![graph.clone()];
    // Weights go to the blob store in parts under a node's largest blob.
    let weights = match external.first() {
        Some(name) => {
            let data = std::fs::read(dir.join(name))
                .with_context(|| format!("reading {}", dir.join(name).display()))?;
            let chunks = data
                .chunks(verity_types::language::WEIGHT_CHUNK_BYTES)
                .map(|chunk| {
                    files.push(chunk.to_vec());
                    DataRef::of(chunk)
                })
                .collect();
            Some(ExternalWeights {
                name: name.clone(),
                chunks,
            })
        }
        None => None,
    };
    let language = LanguageSpec {
        graph: DataRef::of(&graph),
        weights,
        tokenizer: DataRef::of(&tokenizer_bytes),
        generation: DataRef::of(&config_bytes),
        context: config.context,
        input_token_price,
        output_token_price,
    };
    files.push(tokenizer_bytes);
    files.push(config_bytes);
    let spec = ModelSpec {
        model_id: language.model_id(),
        name,
        version,
        weights_root: summary.weights_root,
        architecture: verity_types::language::TRANSFORMER.into(),
        param_count: summary.parameters,
        size: graph.len() as u64,
        license,
        tee_required: modes == [Mode::Tee],
        allowed_modes: modes,
        tolerance_ppm: 0,
        language: Some(Box::new(language)),
    };
    Ok((spec, files))
}
