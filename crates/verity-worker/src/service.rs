//! The worker's main loop.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context, Result};
use rayon::prelude::*;
use tracing::{info, warn};
use verity_client::api::{AttestationNonce, TxStatus, TxView, WorkerView};
use verity_client::{Client, ClientError, PageRequest};
use verity_data::cid_of;
use verity_infer::{Engine, Model};
use verity_tee::produce::{produce, EvidenceRequest, Host, TeeSource};
use verity_tee::Binding;
use verity_types::{
    sha256, AccountKey, Action, Address, Amount, EnclaveKey, FailureReason, FailureReceipt, Hash,
    Mode, SignedTx, TaskReceipt, TxBody, ZkReceipt, MAX_RECEIPTS_PER_TX,
};

use crate::journal::Journal;

/// What the software measurement of a dev enclave names.
const DEV_MEASUREMENT: &[u8] = concat!("verity-worker ", env!("CARGO_PKG_VERSION")).as_bytes();
/// How long to wait for a setup transaction.
const SETUP_TIMEOUT: Duration = Duration::from_secs(60);
/// Re-attest when less than this fraction of the attestation's life is left.
const REATTEST_WHEN_LEFT: f64 = 0.5;
/// How long an assigned task waits for a missing input or model before it is reported.
const MISSING_BLOB_GRACE: Duration = Duration::from_secs(2);
/// Longest wait between failed rounds.
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// How often a worker with a model-size cap looks for newly registered models that fit.
const MODEL_RECHECK: Duration = Duration::from_secs(10);

pub struct WorkerConfig {
    /// The node API the worker talks to.
    pub api: String,
    pub account: AccountKey,
    /// Enclave key, dev vendor key and the receipt journal live here.
    pub home: PathBuf,
    pub tee: TeeSource,
    /// Certificates sent with SNP reports when the interface gives none (VCEK, ASK, ARK).
    pub tee_certs: Vec<Vec<u8>>,
    /// Stake to hold, in base units.
    pub stake: Amount,
    /// Models to serve; empty serves every model.
    pub models: Vec<Hash>,
    /// The largest model (its files' bytes) it can hold: with a cap it declares only the
    /// registered models that fit, so it is never drawn for one it cannot hold. None: no cap.
    pub max_model_bytes: Option<u64>,
    /// Receipts per SubmitReceipts transaction.
    pub max_batch: usize,
    pub poll: Duration,
    pub label: String,
    /// Fault injection for testing disputes only: corrupt graph node N's output in every run,
    /// sign that result, and defend it. `None` for every real worker.
    pub dishonest: Option<usize>,
    /// Serve data verification too: where its `POST /proof` listens.
    pub data: Option<crate::data::DataVerifierConfig>,
}

/// Counters the worker keeps, shared with whoever started it.
#[derive(Default)]
pub struct WorkerStats {
    pub tasks_done: AtomicU64,
    pub receipts_submitted: AtomicU64,
    pub batches: AtomicU64,
    /// Sum of milliseconds from first seeing an assignment to submitting its receipt.
    pub latency_ms_total: AtomicU64,
}

/// Workers' counters in Prometheus' text format, each series labelled with its worker.
pub fn render_metrics(workers: &[(String, Arc<WorkerStats>)]) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    type Read = fn(&WorkerStats) -> u64;
    let metrics: [(&str, &str, &str, Read); 5] = [
        (
            "verity_worker_tasks_done_total",
            "counter",
            "tasks run to a receipt",
            |s| s.tasks_done.load(Ordering::Relaxed),
        ),
        (
            "verity_worker_receipts_submitted_total",
            "counter",
            "receipts sent to the chain",
            |s| s.receipts_submitted.load(Ordering::Relaxed),
        ),
        (
            "verity_worker_receipt_batches_total",
            "counter",
            "SubmitReceipts transactions sent",
            |s| s.batches.load(Ordering::Relaxed),
        ),
        (
            "verity_worker_task_latency_ms_sum",
            "counter",
            "milliseconds from seeing an assignment to submitting its receipt, summed (divide by the count for the mean)",
            |s| s.latency_ms_total.load(Ordering::Relaxed),
        ),
        (
            "verity_worker_task_latency_ms_count",
            "counter",
            "tasks the latency sum covers",
            |s| s.tasks_done.load(Ordering::Relaxed),
        ),
    ];
    for (name, kind, help, read) in metrics {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for (label, stats) in workers {
            let _ = writeln!(out, "{name}{{worker=\"{label}\"}} {}", read(stats));
        }
    }
    out
}

/// A computed result, ready to be signed into a receipt.
pub struct Computed {
    pub output: Vec<u8>,
    pub trace_root: Hash,
    pub trace_len: u32,
}

/// Runs `model` on one input blob: the task's output document and trace commitment. With
/// `corrupt`, node N's output is changed first (fault injection, `--dishonest`).
pub fn compute(
    engine: &Engine,
    model: &Model,
    input: &[u8],
    corrupt: Option<usize>,
) -> Result<Computed> {
    compute_with(engine, model, input, corrupt, |_| Ok(()))
}

/// Runs `model` on a task's input file with its trace: honestly, or (fault injection for
/// tests) with node `corrupt`'s output changed; a node past the last means the last.
pub fn run_task(
    engine: &Engine,
    model: &Model,
    input: &[u8],
    corrupt: Option<usize>,
) -> Result<verity_infer::RunOutput> {
    let inputs = model
        .task_inputs(input)
        .context("decoding the task input")?;
    Ok(match corrupt {
        Some(step) => engine.run_corrupted(
            model,
            inputs,
            step.min(model.step_count().saturating_sub(1)),
        )?,
        None => engine.run(model, inputs, true)?,
    })
}

/// [`compute`], letting `extend` add to the output document before it is written (once: a
/// JSON float read back and written again may not keep its last digit).
pub fn compute_with(
    engine: &Engine,
    model: &Model,
    input: &[u8],
    corrupt: Option<usize>,
    extend: impl FnOnce(&mut serde_json::Value) -> Result<()>,
) -> Result<Computed> {
    let out = run_task(engine, model, input, corrupt)?;
    let trace = out.trace.as_ref().context("the engine returned no trace")?;
    let (trace_root, trace_len) = (trace.root(), trace.len() as u32);
    let mut doc = verity_infer::output::document(model, &out);
    extend(&mut doc)?;
    Ok(Computed {
        output: serde_json::to_vec(&doc)?,
        trace_root,
        trace_len,
    })
}

/// What one assigned task runs on.
enum Job {
    Plain(Arc<Model>),
    /// A `tee_zk` model with its prover, and the input commitment the task names.
    Zk(Arc<Model>, Arc<crate::zk::Prover>, Option<Hash>),
    /// A language model, and what the task's escrow reserved.
    Language(Arc<verity_lm::ServedModel>, verity_types::GenerationLimits),
}

struct Worker {
    config: WorkerConfig,
    client: Client,
    chain_id: String,
    /// The chain's prices: every transaction pays exactly what its weight costs.
    fees: verity_types::FeeSchedule,
    address: Address,
    enclave: EnclaveKey,
    nonce: u64,
    journal: Journal,
    models: HashMap<Hash, Arc<Model>>,
    engine: Arc<Engine>,
    first_seen: HashMap<Hash, Instant>,
    stats: Arc<WorkerStats>,
    /// Its part in disputes: defending its results, refereeing others'.
    player: crate::disputes::Player,
    /// Circuits and proving keys of the `tee_zk` models it has proven for.
    provers: HashMap<Hash, Arc<crate::zk::Prover>>,
    /// The language models it has served.
    /// Shared with the dispute player: a model is loaded once for both.
    language_models: Arc<tokio::sync::Mutex<crate::language::LanguageModels>>,
    /// Its data verifier role, when it serves one.
    data: Option<crate::data::DataVerifier>,
    /// When it last declared the models that fit its `max_model_bytes`.
    models_checked: Option<Instant>,
    /// When it last loaded the language models it serves.
    languages_checked: Instant,
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Starts the worker and runs until `stop` resolves.
pub async fn run(
    config: WorkerConfig,
    stats: Arc<WorkerStats>,
    stop: impl std::future::Future<Output = ()>,
) -> Result<()> {
    tokio::pin!(stop);
    // A stop request is honoured at every await: during setup, a round, or a back-off.
    let mut worker = tokio::select! {
        _ = &mut stop => return Ok(()),
        worker = Worker::start(config, stats) => worker?,
    };
    let mut failures: u32 = 0;
    loop {
        let busy = tokio::select! {
            _ = &mut stop => return Ok(()),
            busy = worker.round() => busy,
        };
        let wait = match busy {
            Ok(true) => {
                failures = 0;
                continue;
            }
            Ok(false) => {
                failures = 0;
                worker.config.poll
            }
            Err(e) => {
                // Back off while the node is unreachable or failing: 0.5 s, doubling to 30 s.
                let wait = Duration::from_millis(500u64.saturating_mul(1 << failures.min(6)))
                    .min(MAX_BACKOFF);
                failures += 1;
                warn!(worker = %worker.config.label, error = %format!("{e:#}"), retry_in_ms = wait.as_millis() as u64, "worker round failed; retrying");
                wait
            }
        };
        tokio::select! {
            _ = &mut stop => return Ok(()),
            _ = tokio::time::sleep(wait) => {}
        }
    }
}

impl Worker {
    async fn start(config: WorkerConfig, stats: Arc<WorkerStats>) -> Result<Self> {
        let client = Client::new(&config.api);
        let status = client
            .status()
            .await
            .with_context(|| format!("reaching the node at {}", config.api))?;
        let chain_id = status.chain_id;
        std::fs::create_dir_all(&config.home)
            .with_context(|| format!("creating {}", config.home.display()))?;
        let enclave = crate::load_or_create_enclave_key(&config.home.join("enclave.key"))?;
        let journal = Journal::open(&config.home.join("receipts.journal"))?;
        let address = config.account.address();
        // Pending, not committed: transactions it sent before a restart may still be waiting.
        let nonce = client.pending_nonce(&address).await?;
        let fees = client.fee_schedule().await?;
        let engine = Arc::new(Engine::new(1)?);
        let language_models = Arc::new(tokio::sync::Mutex::new(
            crate::language::LanguageModels::new(&config.home),
        ));
        let player = crate::disputes::Player::new(
            address,
            engine.clone(),
            config.dishonest,
            language_models.clone(),
        );
        let data = match &config.data {
            Some(data) => Some(
                crate::data::DataVerifier::start(
                    &config.home,
                    data,
                    client.clone(),
                    address,
                    &chain_id,
                    &enclave,
                )
                .await?,
            ),
            None => None,
        };
        let mut worker = Self {
            fees,
            engine,
            config,
            client,
            chain_id,
            address,
            enclave,
            nonce,
            journal,
            models: HashMap::new(),
            first_seen: HashMap::new(),
            stats,
            player,
            provers: HashMap::new(),
            language_models,
            data,
            models_checked: None,
            languages_checked: Instant::now(),
        };
        worker.setup().await?;
        Ok(worker)
    }

    async fn send(&mut self, action: Action) -> Result<Hash> {
        for attempt in 0..2 {
            let tx = self.sign(action.clone());
            match self.client.submit(&tx).await {
                Ok(_) => {
                    self.nonce += 1;
                    return Ok(tx.hash());
                }
                // Our count drifted from the chain's: a transaction was lost, or one we sent
                // before a restart is still pending. Take the node's pending nonce and retry.
                Err(e) if attempt == 0 && e.is_nonce_race() => {
                    self.nonce = self.client.pending_nonce(&self.address).await?;
                }
                Err(e) => return Err(e.into()),
            }
        }
        bail!("could not find a usable nonce")
    }

    async fn send_and_wait(&mut self, action: Action) -> Result<()> {
        let name = action.name();
        let hash = self.send(action).await?;
        let receipt = self.client.wait_for_tx(&hash, SETUP_TIMEOUT).await?;
        if let TxStatus::Failed { error } = receipt.status {
            bail!("{name} failed: {error}");
        }
        Ok(())
    }

    /// Stake, models and enclave, each only when the chain does not already have them.
    async fn setup(&mut self) -> Result<()> {
        let view = self.client.worker(&self.address).await?;
        let staked = view.stake.as_ref().map_or(0, |s| s.stake);
        if staked < self.config.stake {
            self.send_and_wait(Action::Stake {
                amount: self.config.stake - staked,
            })
            .await
            .context("staking")?;
            info!(worker = %self.config.label, stake = %self.config.stake, "staked");
        }
        if self.config.max_model_bytes.is_some() {
            self.declare_models_that_fit().await?;
        } else if !self.config.models.is_empty() {
            let mut wanted = self.config.models.clone();
            wanted.sort();
            let current = view.stake.as_ref().map(|s| s.models.clone());
            if current.as_ref() != Some(&wanted) {
                self.send_and_wait(Action::ServeModels { models: wanted })
                    .await
                    .context("declaring served models")?;
            }
        }
        // Loaded before it attests: until then it is not drawn, so no task of it times out
        // while half a gigabyte of weights is fetched.
        self.load_language_models().await?;
        self.attest_if_needed(&view).await?;
        self.serve_data_if_needed().await
    }

    /// Fetches and loads every registered language model it serves that it has not loaded yet,
    /// so that its first task of one is not spent fetching files (which can outlast the task's
    /// timeout); again every `MODEL_RECHECK` for models registered since.
    async fn load_language_models(&mut self) -> Result<()> {
        self.languages_checked = Instant::now();
        let served = self
            .client
            .worker(&self.address)
            .await?
            .stake
            .map(|s| s.models)
            .unwrap_or_default();
        // With a cap and nothing that fits, it serves nothing.
        if served.is_empty() && self.config.max_model_bytes.is_some() {
            return Ok(());
        }
        let mut page = PageRequest::default();
        loop {
            let list = self.client.models(&page).await?;
            for model in &list.models {
                let id = model.spec.model_id;
                if model.spec.language.is_none() || !(served.is_empty() || served.contains(&id)) {
                    continue;
                }
                match self
                    .language_models
                    .lock()
                    .await
                    .get(&self.client, &id)
                    .await?
                {
                    Ok(_) => {}
                    Err(reason) => {
                        warn!(worker = %self.config.label, model = %id, ?reason, "cannot load this language model yet")
                    }
                }
            }
            match list.next {
                Some(next) => page.after = Some(next),
                None => break,
            }
        }
        Ok(())
    }

    /// With `max_model_bytes`: declares the registered models (of `models`, when it names
    /// some) whose files fit, so that it is never drawn for one it cannot hold; again every
    /// `MODEL_RECHECK` as models are registered.
    async fn declare_models_that_fit(&mut self) -> Result<()> {
        let Some(cap) = self.config.max_model_bytes else {
            return Ok(());
        };
        self.models_checked = Some(Instant::now());
        let mut fits = Vec::new();
        let mut too_large = 0;
        let mut page = PageRequest::default();
        loop {
            let list = self.client.models(&page).await?;
            for model in &list.models {
                let id = model.spec.model_id;
                if !self.config.models.is_empty() && !self.config.models.contains(&id) {
                    continue;
                }
                let bytes = match &model.spec.language {
                    Some(language) => language
                        .blobs()
                        .iter()
                        .try_fold(0u64, |total, blob| total.checked_add(blob.size)),
                    None => Some(model.spec.size),
                };
                match bytes {
                    Some(bytes) if bytes <= cap => fits.push(id),
                    _ => too_large += 1,
                }
            }
            match list.next {
                Some(next) => page.after = Some(next),
                None => break,
            }
        }
        // An empty list would mean every model: with nothing that fits, nothing is declared.
        if fits.is_empty() {
            warn!(worker = %self.config.label, cap, "no registered model fits --max-model-bytes; serving none until one does");
            return Ok(());
        }
        if fits.len() > verity_types::MAX_SERVED_MODELS {
            warn!(worker = %self.config.label, fitting = fits.len(), "more models fit than one declaration lists; serving the first {}", verity_types::MAX_SERVED_MODELS);
            fits.truncate(verity_types::MAX_SERVED_MODELS);
        }
        fits.sort();
        let current = self
            .client
            .worker(&self.address)
            .await?
            .stake
            .map(|s| s.models);
        if current.as_ref() != Some(&fits) {
            info!(worker = %self.config.label, serving = fits.len(), too_large, cap, "declaring the models that fit");
            self.send_and_wait(Action::ServeModels { models: fits })
                .await
                .context("declaring served models")?;
        }
        Ok(())
    }

    /// Registers the data verifier's RSA key and endpoint, signed by the enclave key, unless the
    /// chain already has them.
    async fn serve_data_if_needed(&mut self) -> Result<()> {
        let (Some(data), Some(config)) = (&self.data, &self.config.data) else {
            return Ok(());
        };
        let rsa_public_key = data.public_der();
        let endpoint = config.endpoint.clone();
        let view = self.client.data_verifier(&self.address).await?;
        if view.verifier.is_some_and(|v| {
            v.rsa_public_key == rsa_public_key
                && v.endpoint == endpoint
                && v.enclave_key == self.enclave.public()
        }) {
            return Ok(());
        }
        let signature = self
            .enclave
            .sign_data_key(&self.chain_id, &self.address, &rsa_public_key);
        self.send_and_wait(Action::ServeData {
            rsa_public_key,
            endpoint: endpoint.clone(),
            signature,
        })
        .await
        .context("registering as a data verifier")?;
        info!(worker = %self.config.label, %endpoint, "serving data verification");
        Ok(())
    }

    /// Proves the data jobs whose requests have come in: fetch, open, check, score, sign, send.
    async fn prove_data(&mut self) -> Result<bool> {
        let Some(data) = self.data.as_mut() else {
            return Ok(false);
        };
        let view = self.client.data_verifier(&self.address).await?;
        let open: Vec<u64> = view.open_jobs.iter().map(|j| j.job_id).collect();
        let due = data.due(&open, view.height);
        let key = data.key();
        let mut busy = false;
        for (job_id, request) in due {
            let Some(job) = view.open_jobs.iter().find(|j| j.job_id == job_id) else {
                continue;
            };
            let Some(file) = self.client.data_file(job.file_id).await? else {
                continue;
            };
            // A labeled file is scored with its registered model too; without the model the job
            // waits for a later round (or expires and is refunded), never a wrong score.
            let model = match &file.evaluation {
                Some(evaluation) => match self.model(&evaluation.model_id).await? {
                    Ok(model) => Some((evaluation.label.clone(), model)),
                    Err(reason) => {
                        warn!(job = job_id, model = %evaluation.model_id, ?reason, "cannot load the file's evaluation model; will retry");
                        continue;
                    }
                },
                None => None,
            };
            let ciphertext = match &self.data {
                Some(data) => data.ciphertext(&self.client, &file).await?,
                None => None,
            };
            let (key, engine) = (key.clone(), self.engine.clone());
            let started = Instant::now();
            let (plaintext_hash, verdict) = tokio::task::spawn_blocking(move || {
                let evaluator = model.as_ref().map(|(label, model)| crate::data::Evaluator {
                    label,
                    model,
                    engine: &engine,
                });
                crate::data::examine(
                    &key,
                    ciphertext.as_deref(),
                    &file.data.hash,
                    &request.encryption_key,
                    &file.plaintext_hash,
                    evaluator.as_ref(),
                )
            })
            .await?;
            let mut proof = verity_types::DataProof {
                job_id,
                file_id: job.file_id,
                plaintext_hash,
                verdict,
                worker: self.address,
                enclave_key: [0; 32],
                signature: [0; 64],
            };
            self.enclave.sign_data_proof(&self.chain_id, &mut proof);
            self.send(Action::AddProof(proof)).await?;
            info!(worker = %self.config.label, job = job_id, file = job.file_id, ?verdict, ms = started.elapsed().as_millis() as u64, "data proof sent");
            if let Some(data) = self.data.as_mut() {
                data.mark_sent(job_id);
            }
            busy = true;
        }
        Ok(busy)
    }

    /// The chain's newest attestation nonce, waiting for block 1 on a chain that just started.
    async fn attestation_nonce(&self) -> Result<AttestationNonce> {
        let started = Instant::now();
        loop {
            match self
                .client
                .attestation_nonce()
                .await
                .context("fetching the chain's attestation nonce")?
            {
                Some(nonce) => return Ok(nonce),
                None if started.elapsed() < SETUP_TIMEOUT => {
                    tokio::time::sleep(Duration::from_millis(200)).await
                }
                None => bail!("no block was finalized within {SETUP_TIMEOUT:?}"),
            }
        }
    }

    async fn attest_if_needed(&mut self, view: &WorkerView) -> Result<()> {
        let enclave = view.enclave.as_ref();
        let ours = enclave.is_some_and(|e| e.key == self.enclave.public());
        let attested = enclave.map_or(0, |e| e.attested_at_ms);
        let expires = enclave.map_or(0, |e| e.expires_at_ms);
        let life = expires.saturating_sub(attested) as f64;
        let left = expires.saturating_sub(now_ms()) as f64;
        if ours && left > life * REATTEST_WHEN_LEFT {
            return Ok(());
        }
        let nonce = self.attestation_nonce().await?;
        let enclave_key = self.enclave.public();
        let vendor = match self.config.tee {
            TeeSource::Dev => Some(load_dev_vendor(&self.config.home)?),
            _ => None,
        };
        let request = EvidenceRequest {
            binding: Binding {
                chain_id: &self.chain_id,
                worker: &self.address,
                enclave_key: &enclave_key,
                nonce: &nonce.nonce.0,
            },
            certs: &self.config.tee_certs,
            dev: vendor
                .as_ref()
                .map(|k| (k, DEV_MEASUREMENT, now_ms() / 1000)),
        };
        let (kind, evidence) = produce(self.config.tee, &request, &Host::linux())
            .context("producing attestation evidence")?;
        self.send_and_wait(Action::RegisterEnclave {
            kind: kind.to_string(),
            enclave_key,
            nonce_height: nonce.height,
            report: evidence.report,
            collateral: evidence.collateral.unwrap_or_default(),
            certs: evidence.certs,
        })
        .await
        .context("registering the enclave")?;
        info!(worker = %self.config.label, %kind, key = %hex::encode(self.enclave.public()), "enclave registered");
        Ok(())
    }

    /// The model, or why it cannot be had: a network error (retry), or a reason to report.
    async fn model(&mut self, id: &Hash) -> Result<Result<Arc<Model>, FailureReason>> {
        if let Some(model) = self.models.get(id) {
            return Ok(Ok(model.clone()));
        }
        let Some(bytes) = self.client.get_blob(&cid_of(id)).await? else {
            return Ok(Err(FailureReason::ModelUnavailable));
        };
        if sha256(&bytes) != *id {
            return Ok(Err(FailureReason::ModelInvalid));
        }
        let Ok(model) = Model::from_bytes(&bytes) else {
            return Ok(Err(FailureReason::ModelInvalid));
        };
        let model = Arc::new(model);
        self.models.insert(*id, model.clone());
        Ok(Ok(model))
    }

    /// A `tee_zk` model's prover: its circuit and proving key, the key fetched from the blob
    /// store by the hash the chain holds.
    async fn prover(
        &mut self,
        id: &Hash,
        model: &Arc<Model>,
    ) -> Result<Result<Arc<crate::zk::Prover>, FailureReason>> {
        if let Some(prover) = self.provers.get(id) {
            return Ok(Ok(prover.clone()));
        }
        let Some(keys) = self.client.model(id).await?.and_then(|m| m.zk) else {
            return Ok(Err(FailureReason::ModelInvalid));
        };
        let Some(bytes) = self.client.get_blob(&cid_of(&keys.proving_key)).await? else {
            return Ok(Err(FailureReason::ModelUnavailable));
        };
        if sha256(&bytes) != keys.proving_key {
            return Ok(Err(FailureReason::ModelInvalid));
        }
        let model = model.clone();
        let loaded =
            tokio::task::spawn_blocking(move || crate::zk::Prover::load(&model, &bytes)).await?;
        match loaded {
            Ok(prover) => {
                let prover = Arc::new(prover);
                self.provers.insert(*id, prover.clone());
                Ok(Ok(prover))
            }
            Err(e) => {
                warn!(model = %id, error = %format!("{e:#}"), "the model's zk keys are unusable");
                Ok(Err(FailureReason::ModelInvalid))
            }
        }
    }

    /// Whether a task has waited long enough for a missing blob to give up on it. Inputs and
    /// models are uploaded before tasks name them, so one still missing is missing for good;
    /// the grace only covers a store that is slow to show a fresh upload.
    fn gave_up_waiting(&self, task: &Hash) -> bool {
        self.first_seen
            .get(task)
            .is_some_and(|seen| seen.elapsed() >= MISSING_BLOB_GRACE)
    }

    /// Settles journal entries whose transactions have a verdict; forgets lost ones.
    async fn reconcile(&mut self) -> Result<()> {
        for tx in self.journal.transactions() {
            match self.client.tx(&tx).await {
                Ok(TxView {
                    receipt: Some(receipt),
                    ..
                }) => {
                    if let TxStatus::Failed { error } = receipt.status {
                        warn!(worker = %self.config.label, %tx, %error, "receipt batch rejected");
                    }
                    self.journal.forget(&tx)?;
                }
                Ok(_) => {}
                // Neither pending nor finalized: lost (a node restart). Redo its tasks, and
                // count nonces from the chain again: ours ran ahead of the lost one.
                Err(ClientError::Api { status: 404, .. }) => {
                    warn!(worker = %self.config.label, %tx, "receipt batch lost; resubmitting its tasks");
                    self.journal.forget(&tx)?;
                    self.nonce = self.client.pending_nonce(&self.address).await?;
                }
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    /// One pass: new assignments are computed and their receipts submitted. Returns whether it
    /// found work.
    async fn round(&mut self) -> Result<bool> {
        self.reconcile().await?;
        if self
            .models_checked
            .is_some_and(|at| at.elapsed() >= MODEL_RECHECK)
        {
            self.declare_models_that_fit().await?;
        }
        if self.languages_checked.elapsed() >= MODEL_RECHECK {
            self.load_language_models().await?;
        }
        self.play_disputes().await?;
        let proved_data = self.prove_data().await?;
        let tasks = self
            .client
            .assignments(&self.address, &PageRequest::default())
            .await?
            .tasks;
        let mut assigned_ids = std::collections::HashSet::new();
        let mut todo = Vec::new();
        for task in &tasks {
            let id = task.task_id;
            self.first_seen.entry(id).or_insert_with(Instant::now);
            assigned_ids.insert(id);
            if !self.journal.contains(&id) {
                todo.push(task.clone());
            }
        }
        self.first_seen.retain(|id, _| assigned_ids.contains(id));
        if todo.is_empty() {
            return Ok(proved_data);
        }
        // Fetch models and inputs concurrently, compute on every core, upload outputs. A task
        // that cannot run is reported, not left to time out.
        let mut unrunnable: Vec<(Hash, Hash, Hash, FailureReason)> = Vec::new();
        let mut jobs = Vec::new();
        for task in &todo {
            let (id, model_id, input_hash) = (task.task_id, task.model_id, task.input.hash);
            if let Some(limits) = task.generation {
                let loaded = self
                    .language_models
                    .lock()
                    .await
                    .get(&self.client, &model_id)
                    .await;
                match loaded {
                    Ok(Ok(model)) => {
                        jobs.push((id, model_id, input_hash, Job::Language(model, limits)))
                    }
                    Ok(Err(FailureReason::ModelUnavailable)) if !self.gave_up_waiting(&id) => {
                        warn!(task = %id, model = %model_id, "language model files not in the blob store yet; will retry")
                    }
                    Ok(Err(reason)) => unrunnable.push((id, model_id, input_hash, reason)),
                    Err(e) => {
                        warn!(task = %id, model = %model_id, error = %format!("{e:#}"), "cannot fetch the language model; will retry")
                    }
                }
                continue;
            }
            // One model that cannot be fetched must not hold up tasks on the others.
            match self.model(&model_id).await {
                Ok(Ok(model)) if task.mode == Mode::TeeZk => {
                    match self.prover(&model_id, &model).await {
                        Ok(Ok(prover)) => jobs.push((
                            id,
                            model_id,
                            input_hash,
                            Job::Zk(model, prover, task.input_commitment),
                        )),
                        Ok(Err(FailureReason::ModelUnavailable)) if !self.gave_up_waiting(&id) => {
                            warn!(task = %id, model = %model_id, "proving key not in the blob store yet; will retry")
                        }
                        Ok(Err(reason)) => unrunnable.push((id, model_id, input_hash, reason)),
                        Err(e) => {
                            warn!(task = %id, model = %model_id, error = %format!("{e:#}"), "cannot load the proving key; will retry")
                        }
                    }
                }
                Ok(Ok(model)) => jobs.push((id, model_id, input_hash, Job::Plain(model))),
                Ok(Err(FailureReason::ModelUnavailable)) if !self.gave_up_waiting(&id) => {
                    warn!(task = %id, model = %model_id, "model not in the blob store yet; will retry")
                }
                Ok(Err(reason)) => unrunnable.push((id, model_id, input_hash, reason)),
                Err(e) => {
                    warn!(task = %id, model = %model_id, error = %format!("{e:#}"), "cannot reach the blob store for the model; will retry")
                }
            }
        }
        let cids: Vec<String> = jobs.iter().map(|(_, _, input, ..)| cid_of(input)).collect();
        let inputs = self.client.get_blobs(&cids).await;
        let mut work = Vec::new();
        for (job, input) in jobs.into_iter().zip(inputs) {
            match input? {
                Some(bytes) if sha256(&bytes) == job.2 => work.push((job, bytes)),
                Some(_) => unrunnable.push((job.0, job.1, job.2, FailureReason::InputMismatch)),
                None if self.gave_up_waiting(&job.0) => {
                    unrunnable.push((job.0, job.1, job.2, FailureReason::InputUnavailable))
                }
                None => warn!(task = %job.0, "input blob not found yet; will retry"),
            }
        }
        let engine = self.engine.clone();
        let corrupt = self.config.dishonest;
        let results = tokio::task::spawn_blocking(move || {
            work.into_par_iter()
                .map(|(job, input)| {
                    let result = match &job.3 {
                        Job::Zk(model, prover, committed) => {
                            crate::zk::compute_and_prove(&engine, model, prover, &input, corrupt)
                                .map(|p| {
                                    // A proof about another input than the one committed to is
                                    // refused on chain: the task fails, the submitter's doing.
                                    if Some(p.input_commitment) != *committed {
                                        return Err(FailureReason::InputCommitmentMismatch);
                                    }
                                    Ok((
                                        p.computed,
                                        Some((p.input_commitment, p.output_commitment, p.proof)),
                                    ))
                                })
                        }
                        Job::Plain(model) => {
                            compute(&engine, model, &input, corrupt).map(|c| Ok((c, None)))
                        }
                        Job::Language(model, limits) => Ok(crate::language::compute(
                            &engine, model, &job.0, limits, &input, corrupt,
                        )
                        .map(|c| (c, None))),
                    };
                    (job, result)
                })
                .collect::<Vec<_>>()
        })
        .await?;
        let mut receipts = Vec::new();
        let mut zk_receipts = Vec::new();
        let mut uploads = Vec::new();
        for ((id, model_id, input_hash, ..), result) in results {
            let (computed, zk) = match result {
                Ok(Ok(c)) => c,
                Ok(Err(reason)) => {
                    warn!(task = %id, ?reason, "the task cannot run on its input; reporting it");
                    unrunnable.push((id, model_id, input_hash, reason));
                    continue;
                }
                Err(e) => {
                    warn!(task = %id, error = %format!("{e:#}"), "the input does not fit the model; reporting it");
                    unrunnable.push((id, model_id, input_hash, FailureReason::InputDoesNotFit));
                    continue;
                }
            };
            let mut receipt = TaskReceipt {
                task_id: id,
                model_id,
                input_hash,
                output_hash: sha256(&computed.output),
                output_size: computed.output.len() as u64,
                trace_root: computed.trace_root,
                trace_len: computed.trace_len,
                worker: self.address,
                enclave_key: [0; 32],
                signature: [0; 64],
            };
            match zk {
                Some((input_commitment, output_commitment, proof)) => {
                    let mut zk = ZkReceipt {
                        receipt,
                        input_commitment,
                        output_commitment,
                        proof,
                    };
                    self.enclave.sign_zk(&self.chain_id, &mut zk);
                    zk_receipts.push(zk);
                }
                None => {
                    self.enclave.sign(&self.chain_id, &mut receipt);
                    receipts.push(receipt);
                }
            }
            uploads.push(computed.output);
        }
        self.client
            .put_blobs(uploads, &self.config.account)
            .await
            .context("uploading outputs")?;
        let chunk = self.config.max_batch.clamp(1, MAX_RECEIPTS_PER_TX);
        // One proof per transaction: each weighs as much as a batch of fifty receipts.
        for zk in zk_receipts {
            let ids = [zk.receipt.task_id];
            if self.submit_batch(&ids, Action::SubmitZkReceipt(zk)).await? {
                self.count_done(&ids);
            }
        }
        for batch in receipts.chunks(chunk) {
            let ids: Vec<Hash> = batch.iter().map(|r| r.task_id).collect();
            let action = Action::SubmitReceipts {
                receipts: batch.to_vec(),
            };
            if self.submit_batch(&ids, action).await? {
                self.count_done(&ids);
            }
        }
        let failures: Vec<FailureReceipt> = unrunnable
            .into_iter()
            .map(|(task_id, model_id, input_hash, reason)| {
                warn!(task = %task_id, ?reason, "reporting a task that cannot run");
                let mut failure = FailureReceipt {
                    task_id,
                    model_id,
                    input_hash,
                    worker: self.address,
                    reason,
                    enclave_key: [0; 32],
                    signature: [0; 64],
                };
                self.enclave.sign_failure(&self.chain_id, &mut failure);
                failure
            })
            .collect();
        for batch in failures.chunks(chunk) {
            let ids: Vec<Hash> = batch.iter().map(|f| f.task_id).collect();
            let action = Action::ReportFailures {
                failures: batch.to_vec(),
            };
            self.submit_batch(&ids, action).await?;
        }
        Ok(true)
    }

    /// Submits receipts or failure reports for `ids`; false when the node refused the nonce
    /// (the tasks are retried next round, with the nonce counted again).
    async fn submit_batch(&mut self, ids: &[Hash], action: Action) -> Result<bool> {
        let tx = self.sign(action);
        // Journal first: a crash after sending must not lead to a second submission.
        self.journal.record(ids, tx.hash())?;
        match self.client.submit(&tx).await {
            Ok(_) => {
                self.nonce += 1;
                Ok(true)
            }
            Err(e) if e.is_nonce_race() => {
                self.journal.forget(&tx.hash())?;
                self.nonce = self.client.pending_nonce(&self.address).await?;
                Ok(false)
            }
            Err(e) => {
                self.journal.forget(&tx.hash())?;
                Err(e.into())
            }
        }
    }

    fn count_done(&self, ids: &[Hash]) {
        let now = Instant::now();
        let latency: u64 = ids
            .iter()
            .filter_map(|id| self.first_seen.get(id))
            .map(|t| now.duration_since(*t).as_millis() as u64)
            .sum();
        let stats = &self.stats;
        stats
            .tasks_done
            .fetch_add(ids.len() as u64, Ordering::Relaxed);
        stats
            .receipts_submitted
            .fetch_add(ids.len() as u64, Ordering::Relaxed);
        stats.batches.fetch_add(1, Ordering::Relaxed);
        stats.latency_ms_total.fetch_add(latency, Ordering::Relaxed);
        info!(worker = %self.config.label, receipts = ids.len(), mean_ms = latency / ids.len().max(1) as u64, "receipts submitted");
    }

    /// Makes the move it owes in each open dispute it is in: against its results (the span's
    /// hashes from its own run, then the one-step; or its output, on a tolerant model) and as a
    /// referee (its own run's output).
    async fn play_disputes(&mut self) -> Result<()> {
        let moves = self
            .player
            .owed(&self.client, &std::collections::HashSet::new())
            .await?;
        for (round, action) in moves {
            info!(worker = %self.config.label, action = action.name(), "moving in a dispute");
            self.send(action).await?;
            self.player.sent(round);
        }
        Ok(())
    }

    fn sign(&self, action: Action) -> SignedTx {
        let mut body = TxBody {
            chain_id: self.chain_id.clone(),
            nonce: self.nonce,
            fee: 0,
            action,
        };
        body.fee = body.required_fee(&self.fees);
        body.sign(&self.config.account)
    }
}

/// The local key that signs dev attestation reports, created on first use.
fn load_dev_vendor(home: &std::path::Path) -> Result<AccountKey> {
    let path = home.join("dev-tee.key");
    if path.exists() {
        let text = std::fs::read_to_string(&path)?;
        return AccountKey::from_hex(&text).with_context(|| format!("reading {}", path.display()));
    }
    let key = AccountKey::generate();
    verity_types::write_secret(&path, key.secret_hex().as_bytes())?;
    Ok(key)
}
