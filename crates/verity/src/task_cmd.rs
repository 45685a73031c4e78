//! Task commands: blobs, models, tasks, and the worker.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context as _, Result};
use clap::{Args, Subcommand};
use serde_json::Value;
use verity_client::api::{Receipt, RecordStatus, TaskStatus, TaskView, TxStatus, TxView};
use verity_client::{Client, PageRequest};
use verity_infer::Model;
use verity_types::{AccountKey, Action, Asset, DataRef, Hash, Mode, ModelSpec};
use verity_worker::TeeSource;

use crate::chain_cmd::init_logs;
use crate::shared::{keys_dir, load_key, runtime, send, submit_next, DEFAULT_NODE};
use crate::tokens;

#[derive(Subcommand)]
pub enum BlobCommand {
    /// Upload a file to the node's blob store; prints its CID. The upload is signed by an
    /// account that holds the node's minimum balance, and counts against its quota.
    Put {
        file: PathBuf,
        /// Key name in the keys directory, or a key file path.
        #[arg(long)]
        from: String,
        #[arg(long, env = "VERITY_NODE", default_value = DEFAULT_NODE)]
        node: String,
        #[arg(long, env = "VERITY_KEYS")]
        keys_dir: Option<PathBuf>,
    },
    /// Download a blob by CID to a file (or standard output).
    Get {
        cid: String,
        #[arg(long, short)]
        output: Option<PathBuf>,
        #[arg(long, env = "VERITY_NODE", default_value = DEFAULT_NODE)]
        node: String,
    },
}

#[derive(Subcommand)]
pub enum ModelCommand {
    /// Upload an ONNX model and register it on chain; prints its model id. A directory is a
    /// language model: model.onnx (and its external data), tokenizer.json, and generation.json
    /// or the Hugging Face config files it is made from.
    Register(Box<RegisterModelArgs>),
    /// Registered models.
    List {
        #[arg(long, env = "VERITY_NODE", default_value = DEFAULT_NODE)]
        node: String,
        #[arg(long)]
        json: bool,
    },
    /// One model's record.
    Show {
        id: Hash,
        #[arg(long, env = "VERITY_NODE", default_value = DEFAULT_NODE)]
        node: String,
    },
}

#[derive(Args)]
pub struct RegisterModelArgs {
    /// An ONNX file, or a language model's directory.
    file: PathBuf,
    /// Key name in the keys directory, or a key file path; becomes the owner.
    #[arg(long)]
    from: String,
    /// Defaults to the file name.
    #[arg(long)]
    name: Option<String>,
    #[arg(long, default_value = "1")]
    version: String,
    #[arg(long, default_value = "unspecified")]
    license: String,
    #[arg(long, default_value = "onnx")]
    architecture: String,
    /// Verification modes the model allows, comma-separated: tee, op, tee-zk. Default: tee and
    /// op, and tee-zk with --zk.
    #[arg(long, value_delimiter = ',')]
    modes: Vec<Mode>,
    /// A directory from `verity zk setup`: its proving key is uploaded and its verifying key set
    /// on chain, for tee-zk tasks.
    #[arg(long)]
    zk: Option<PathBuf>,
    /// How far two honest runs' outputs may differ, in parts per million of the larger value
    /// (at least 1). 0, the default, is a bit-exact model: its OP disputes end in one
    /// re-executed step. Above 0, an OP dispute is settled by a third worker's run compared
    /// within this tolerance.
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u32).range(0..=1_000_000))]
    tolerance_ppm: u32,
    /// Anchor your ownership: a data verifier's attested enclave hashes the uploaded file and
    /// signs that you register it; the chain records that enclave. Without it the registration
    /// is shown as an unanchored claim.
    #[arg(long)]
    anchor: bool,
    /// A language model's price per prompt token, in tokens.
    #[arg(long, default_value = "0.00001")]
    input_price: String,
    /// A language model's price per generated token, in tokens.
    #[arg(long, default_value = "0.00002")]
    output_price: String,
    #[arg(long, env = "VERITY_NODE", default_value = DEFAULT_NODE)]
    node: String,
    #[arg(long, env = "VERITY_KEYS")]
    keys_dir: Option<PathBuf>,
}

#[derive(Subcommand)]
pub enum TaskCommand {
    /// Upload an input and submit an inference task.
    Submit(SubmitArgs),
    /// A task's status, worker, result hash, output and heights.
    Show {
        id: Hash,
        #[arg(long, env = "VERITY_NODE", default_value = DEFAULT_NODE)]
        node: String,
        #[arg(long)]
        json: bool,
    },
    /// The most recent tasks, newest first.
    List {
        #[arg(long, default_value_t = 20)]
        limit: u32,
        /// Tasks older than this one: the last id of the previous page.
        #[arg(long)]
        after: Option<Hash>,
        #[arg(long, env = "VERITY_NODE", default_value = DEFAULT_NODE)]
        node: String,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Args)]
pub struct SubmitArgs {
    #[arg(long)]
    model: Hash,
    /// The input tensor: JSON (nested array) or .npy.
    #[arg(long)]
    input: PathBuf,
    #[arg(long, default_value = "tee")]
    mode: Mode,
    /// Key name in the keys directory, or a key file path; pays the fee.
    #[arg(long)]
    from: String,
    /// Task fee escrowed until the result settles, in tokens (base units with --base-units).
    #[arg(long, default_value = "0.01")]
    max_fee: String,
    /// Read --max-fee as base units (10^18 per token).
    #[arg(long)]
    base_units: bool,
    /// Blocks before an unfinished task expires and is refunded.
    #[arg(long, default_value_t = 600)]
    deadline_blocks: u64,
    /// The contributed file (its id) the task runs on, with its owner's permission: its DAT
    /// holders get a share of the fee.
    #[arg(long, value_name = "FILE_ID")]
    dataset: Option<u64>,
    /// Wait for the result, showing progress.
    #[arg(long)]
    wait: bool,
    #[arg(long, env = "VERITY_NODE", default_value = DEFAULT_NODE)]
    node: String,
    #[arg(long, env = "VERITY_KEYS")]
    keys_dir: Option<PathBuf>,
}

#[derive(Args)]
pub struct WorkerArgs {
    /// The worker's account key (name or path); it stakes and pays receipt fees.
    #[arg(long, env = "VERITY_WORKER_KEY")]
    key: String,
    /// Enclave key, dev TEE key and receipt journal.
    #[arg(long, env = "VERITY_WORKER_HOME", default_value = ".verity/worker")]
    home: PathBuf,
    /// Where evidence comes from: auto (the first of configfs-tsm, /dev/sev-guest, /dev/nsm),
    /// tdx, snp, nitro, or dev (software, devnet only).
    #[arg(long, env = "VERITY_TEE", default_value = "dev")]
    tee: String,
    /// Certificates to send with SNP reports when the kernel gives none (VCEK, then ASK and
    /// ARK), DER or PEM.
    #[arg(long = "tee-cert")]
    tee_certs: Vec<PathBuf>,
    /// Stake to hold, in tokens.
    #[arg(long, default_value = "1000")]
    stake: String,
    /// Serve only these models (repeatable); every model when absent.
    #[arg(long = "model")]
    models: Vec<Hash>,
    /// The largest model it can hold, in bytes of its files (a language model's weights,
    /// graph, tokenizer and config together): it declares only the registered models that fit,
    /// so it is never drawn for one it cannot hold. No cap when absent.
    #[arg(long, value_name = "BYTES")]
    max_model_bytes: Option<u64>,
    /// FOR TESTING DISPUTES ONLY: corrupt the output of graph node STEP in every task, sign
    /// that wrong result, and defend it. Such a worker loses every dispute and 5 % of its stake
    /// each time.
    #[arg(long, value_name = "STEP")]
    dishonest: Option<usize>,
    #[arg(long, default_value_t = 128)]
    max_batch: usize,
    /// Serve Prometheus metrics (tasks done, receipts, latency) at http://ADDR/metrics.
    #[arg(long, value_name = "ADDR")]
    metrics_listen: Option<std::net::SocketAddr>,
    /// Also verify contributed data: listen for LazAI's `POST /proof` at this address.
    #[arg(long, value_name = "ADDR")]
    data_listen: Option<std::net::SocketAddr>,
    /// The URL contributors reach that endpoint at (recorded on chain); http://ADDR when
    /// absent.
    #[arg(long, value_name = "URL", requires = "data_listen")]
    data_endpoint: Option<String>,
    /// The IPFS node (RPC API) to read contributed files registered with an `ipfs://` URL from.
    #[arg(
        long,
        env = "VERITY_IPFS",
        value_name = "URL",
        requires = "data_listen"
    )]
    ipfs: Option<String>,
    #[arg(long, env = "VERITY_NODE", default_value = DEFAULT_NODE)]
    node: String,
    #[arg(long, env = "VERITY_KEYS")]
    keys_dir: Option<PathBuf>,
}

pub fn blob(cmd: BlobCommand) -> Result<()> {
    runtime()?.block_on(async {
        match cmd {
            BlobCommand::Put {
                file,
                from,
                node,
                keys_dir: dir,
            } => {
                let key = load_key(&from, &keys_dir(dir))?;
                let bytes =
                    std::fs::read(&file).with_context(|| format!("reading {}", file.display()))?;
                let stored = Client::new(&node).put_blob(bytes, &key).await?;
                outln!("{}", stored.cid);
            }
            BlobCommand::Get { cid, output, node } => {
                let bytes = Client::new(&node)
                    .get_blob(&cid)
                    .await?
                    .with_context(|| format!("no blob {cid} on {node}"))?;
                match output {
                    Some(path) => std::fs::write(&path, bytes)
                        .with_context(|| format!("writing {}", path.display()))?,
                    None => crate::output::bytes(&bytes).context("writing the blob to stdout")?,
                }
            }
        }
        Ok(())
    })
}

/// The registration of an ONNX file: its id, weights root and size come from the bytes.
pub fn model_spec(
    bytes: &[u8],
    name: String,
    version: String,
    license: String,
    architecture: String,
    modes: Vec<Mode>,
    tolerance_ppm: u32,
) -> Result<ModelSpec> {
    let summary = Model::parse(bytes)?.summary();
    ensure!(
        summary.unsupported.is_empty(),
        "the model uses ops verity-infer does not support: {:?}",
        summary
            .unsupported
            .iter()
            .map(|u| &u.op)
            .collect::<Vec<_>>()
    );
    Ok(ModelSpec {
        model_id: summary.model_id,
        name,
        version,
        weights_root: summary.weights_root,
        architecture,
        param_count: summary.parameters,
        size: bytes.len() as u64,
        license,
        tee_required: modes == [Mode::Tee],
        allowed_modes: modes,
        tolerance_ppm,
        language: None,
    })
}

/// Registers a model unless it is already registered (then only uploads it), by
/// [`commit_and_register`]. Returns the model id.
pub async fn register_model(
    client: &Client,
    key: &AccountKey,
    bytes: Vec<u8>,
    spec: ModelSpec,
    anchored: bool,
) -> Result<Hash> {
    let id = spec.model_id;
    if client.model(&id).await?.is_some() {
        client
            .put_blob(bytes, key)
            .await
            .context("uploading the model")?;
        return Ok(id);
    }
    commit_and_register(
        client,
        key,
        Asset::Model,
        id,
        vec![bytes],
        anchored,
        |salt, anchor| Action::RegisterModel { spec, salt, anchor },
    )
    .await?;
    Ok(id)
}

/// Registers a language model (its spec from [`crate::commands::language::language_model_spec`])
/// unless it is already registered (then only uploads its files). Returns the model id.
pub async fn register_language_model(
    client: &Client,
    key: &AccountKey,
    spec: ModelSpec,
    files: Vec<Vec<u8>>,
) -> Result<Hash> {
    let id = spec.model_id;
    if client.model(&id).await?.is_some() {
        for file in files {
            client
                .put_blob(file, key)
                .await
                .context("uploading the model's files")?;
        }
        return Ok(id);
    }
    commit_and_register(client, key, Asset::Model, id, files, false, |salt, _| {
        Action::RegisterModel {
            spec,
            salt,
            anchor: None,
        }
    })
    .await?;
    Ok(id)
}

/// Registers `asset` `id` made of `files`, commit first: a CommitRegistration with a fresh salt,
/// final before the files are uploaded (nobody can know them before the commitment is on
/// chain), then the registration `register(salt, anchor)` makes, which reveals it, anchored by a
/// data verifier's enclave (over the first file) when `anchored`.
#[allow(clippy::too_many_arguments)]
pub async fn commit_and_register(
    client: &Client,
    key: &AccountKey,
    asset: Asset,
    id: Hash,
    files: Vec<Vec<u8>>,
    anchored: bool,
    register: impl FnOnce(Hash, Option<verity_types::Anchor>) -> Action,
) -> Result<()> {
    let mut salt = [0u8; 32];
    rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut salt);
    let salt = Hash(salt);
    let commitment = verity_types::registration_commitment(asset, &id, &key.address(), &salt);
    let receipt = send(client, key, Action::CommitRegistration { commitment }).await?;
    if let TxStatus::Failed { error } = receipt.status {
        bail!("CommitRegistration failed: {error}");
    }
    let mut stored = Vec::new();
    for file in files {
        stored.push(
            client
                .put_blob(file, key)
                .await
                .context("uploading the file")?,
        );
    }
    let anchor = match (anchored, stored.first()) {
        (true, Some(first)) => {
            Some(anchor_of(client, asset, &first.cid, &key.address(), &id).await?)
        }
        _ => None,
    };
    let receipt = send(client, key, register(salt, anchor)).await?;
    if let TxStatus::Failed { error } = receipt.status {
        bail!("the registration failed: {error}");
    }
    Ok(())
}

/// An anchor of the blob `cid` for `owner`, from the first data verifier that gives one.
async fn anchor_of(
    client: &Client,
    asset: Asset,
    cid: &str,
    owner: &verity_types::Address,
    id: &Hash,
) -> Result<verity_types::Anchor> {
    let request = verity_client::api::AnchorRequest {
        asset,
        cid: cid.to_string(),
        owner: *owner,
    };
    let mut page = PageRequest::default();
    let mut refusals = Vec::new();
    loop {
        let list = client.workers(&page).await?;
        for worker in &list.workers {
            let Some(verifier) = client.data_verifier(&worker.address).await?.verifier else {
                continue;
            };
            match client.request_anchor(&verifier.endpoint, &request).await {
                Ok(answer) if answer.id == *id => return Ok(answer.anchor),
                Ok(answer) => refusals.push(format!(
                    "{} hashed the file to {}, not {id}",
                    verifier.endpoint, answer.id
                )),
                Err(e) => refusals.push(e.to_string()),
            }
        }
        match list.next {
            Some(next) => page.after = Some(next),
            None => break,
        }
    }
    bail!(
        "no data verifier anchored the file{}",
        if refusals.is_empty() {
            " (none serves)".to_string()
        } else {
            format!(": {}", refusals.join("; "))
        }
    )
}

/// Uploads a model's proving key and sets its keys on chain, unless they are set already. The
/// two keys must belong together.
pub async fn set_zk_keys(
    client: &Client,
    key: &AccountKey,
    model: &Hash,
    proving: Vec<u8>,
    verifying: Vec<u8>,
) -> Result<()> {
    if client.model(model).await?.and_then(|m| m.zk).is_some() {
        return Ok(());
    }
    let checked = proving.clone();
    let paired = tokio::task::spawn_blocking(move || {
        verity_zk::ProvingKey::from_bytes(&checked).map(|k| k.verifying_key().to_bytes())
    })
    .await??;
    ensure!(
        paired == verifying,
        "the proving key and the verifying key come from different setups"
    );
    let proving_key = verity_types::sha256(&proving);
    client
        .put_blob(proving, key)
        .await
        .context("uploading the proving key")?;
    let receipt = send(
        client,
        key,
        Action::SetZkKeys {
            model_id: *model,
            verifying_key: verifying,
            proving_key,
        },
    )
    .await?;
    if let TxStatus::Failed { error } = receipt.status {
        bail!("SetZkKeys failed: {error}");
    }
    Ok(())
}

pub fn model(cmd: ModelCommand) -> Result<()> {
    runtime()?.block_on(async {
        match cmd {
            ModelCommand::Register(args) if args.file.is_dir() => {
                let key = load_key(&args.from, &keys_dir(args.keys_dir))?;
                ensure!(
                    !args.anchor,
                    "--anchor is not supported for language models yet"
                );
                ensure!(
                    args.zk.is_none(),
                    "tee-zk is for small integer models, not language models"
                );
                let name = args.name.unwrap_or_else(|| {
                    args.file
                        .file_name()
                        .map(|s| s.to_string_lossy().into_owned())
                        .unwrap_or_else(|| "language-model".into())
                });
                let modes = match args.modes.is_empty() {
                    true => vec![Mode::Tee],
                    false => args.modes,
                };
                let (spec, files) = crate::commands::language::language_model_spec(
                    &args.file,
                    name,
                    args.version,
                    args.license,
                    tokens::parse(&args.input_price, false).context("--input-price")?,
                    tokens::parse(&args.output_price, false).context("--output-price")?,
                    modes,
                )?;
                let client = Client::new(&args.node);
                let id = register_language_model(&client, &key, spec, files).await?;
                outln!("{id}");
            }
            ModelCommand::Register(args) => {
                let key = load_key(&args.from, &keys_dir(args.keys_dir))?;
                let bytes = std::fs::read(&args.file)
                    .with_context(|| format!("reading {}", args.file.display()))?;
                let name = args.name.unwrap_or_else(|| {
                    args.file
                        .file_stem()
                        .map(|s| s.to_string_lossy().into_owned())
                        .unwrap_or_else(|| "model".into())
                });
                let modes = match (args.modes.is_empty(), &args.zk) {
                    (false, _) => args.modes,
                    (true, None) => vec![Mode::Tee, Mode::Op],
                    (true, Some(_)) => vec![Mode::Tee, Mode::Op, Mode::TeeZk],
                };
                let keys = args
                    .zk
                    .as_deref()
                    .map(crate::zk_cmd::read_keys)
                    .transpose()?;
                let spec = model_spec(
                    &bytes,
                    name,
                    args.version,
                    args.license,
                    args.architecture,
                    modes,
                    args.tolerance_ppm,
                )?;
                let client = Client::new(&args.node);
                let id = register_model(&client, &key, bytes, spec, args.anchor).await?;
                if let Some((proving, verifying)) = keys {
                    set_zk_keys(&client, &key, &id, proving, verifying).await?;
                }
                outln!("{id}");
            }
            ModelCommand::List { node, json } => {
                let client = Client::new(&node);
                let mut page = PageRequest::default();
                loop {
                    let list = client.models(&page).await?;
                    for m in &list.models {
                        if json {
                            outln!("{}", serde_json::to_string(m)?);
                        } else {
                            let anchor = match &m.anchor {
                                Some(a) => {
                                    format!("anchored by {}'s {} enclave", a.worker, a.tee_kind)
                                }
                                None => "unanchored claim".into(),
                            };
                            outln!(
                                "{}  {} v{}  {} params  owner {} ({anchor})",
                                m.spec.model_id,
                                m.spec.name,
                                m.spec.version,
                                m.spec.param_count,
                                m.owner,
                            );
                        }
                    }
                    match list.next {
                        Some(next) => page.after = Some(next),
                        None => break,
                    }
                }
            }
            ModelCommand::Show { id, node } => {
                let model = Client::new(&node)
                    .model(&id)
                    .await?
                    .with_context(|| format!("no model {id} on {node}"))?;
                outln!("{}", serde_json::to_string_pretty(&model)?);
            }
        }
        Ok(())
    })
}

pub fn task(cmd: TaskCommand) -> Result<()> {
    runtime()?.block_on(async {
        match cmd {
            TaskCommand::Submit(args) => submit(args).await,
            TaskCommand::Show { id, node, json } => {
                let client = Client::new(&node);
                let view = client
                    .task(&id)
                    .await?
                    .with_context(|| format!("no task {id} on {node}"))?;
                let output = fetch_output(&client, &view).await?;
                print_task(&view, output.as_deref(), json)
            }
            TaskCommand::List {
                limit,
                after,
                node,
                json,
            } => {
                let list = Client::new(&node)
                    .tasks(&PageRequest {
                        after,
                        limit: Some(limit),
                    })
                    .await?;
                if json {
                    outln!("{}", serde_json::to_string_pretty(&list)?);
                } else {
                    for t in &list.tasks {
                        outln!(
                            "{}  {:<9}  worker {}  submitted at {}",
                            t.task_id,
                            status_name(t.status),
                            t.worker.map_or("-".to_string(), |w| w.to_string()),
                            t.submitted_height,
                        );
                    }
                    if let Some(next) = list.next {
                        outln!("more: --after {next}");
                    }
                }
                Ok(())
            }
        }
    })
}

/// The commitment a `tee_zk` task names: the model (from the node's blob store) quantizes the
/// input here, and its circuit commits to the result under the input file's salt.
pub async fn zk_input_commitment(client: &Client, model_id: &Hash, input: &[u8]) -> Result<Hash> {
    let bytes = client
        .get_blob(&verity_data::cid_of(model_id))
        .await?
        .with_context(|| format!("model {model_id} is not in the node's blob store"))?;
    ensure!(
        verity_types::sha256(&bytes) == *model_id,
        "the node's copy of model {model_id} does not hash to it"
    );
    let input = input.to_vec();
    tokio::task::spawn_blocking(move || -> Result<Hash> {
        let model = Model::from_bytes(&bytes)?;
        let engine = verity_infer::Engine::new(1)?;
        let circuit = verity_zk::ZkModel::compile(&model, &engine)?;
        let quantized = circuit.quantized_inputs(&model, &engine, model.task_inputs(&input)?)?;
        Ok(circuit.input_commitment(&quantized, verity_zk::commit::salt_of(&input))?)
    })
    .await?
}

async fn submit(args: SubmitArgs) -> Result<()> {
    let key = load_key(&args.from, &keys_dir(args.keys_dir))?;
    let input =
        std::fs::read(&args.input).with_context(|| format!("reading {}", args.input.display()))?;
    let client = Client::new(&args.node);
    if let Some(model) = client.model(&args.model).await? {
        ensure!(
            model.spec.language.is_none(),
            "model {} ({}) is a language model: ask it with `verity chat --model {}`",
            args.model,
            model.spec.name,
            model.spec.name
        );
    }
    let max_fee = tokens::parse(&args.max_fee, args.base_units).context("--max-fee")?;
    client
        .put_blob(input.clone(), &key)
        .await
        .context("uploading the input")?;
    let input_commitment = match args.mode {
        Mode::TeeZk => Some(zk_input_commitment(&client, &args.model, &input).await?),
        _ => None,
    };
    let action = Action::SubmitTask {
        model_id: args.model,
        input: DataRef::of(&input),
        mode: args.mode,
        max_fee,
        deadline_blocks: args.deadline_blocks,
        input_commitment,
        dataset: args.dataset,
        generation: None,
    };
    let tx = submit_next(&client, &key, action, 0).await?;
    let id = tx.hash();
    outln!("task {id}");
    if !args.wait {
        return Ok(());
    }
    let started = Instant::now();
    let mut last = String::new();
    loop {
        let (status, detail) = match client.task(&id).await? {
            None => match client.tx(&id).await {
                Ok(TxView {
                    receipt:
                        Some(Receipt {
                            status: TxStatus::Failed { error },
                            ..
                        }),
                    ..
                }) => bail!("the task was refused: {error}"),
                _ => ("submitted", "waiting for a block".to_string()),
            },
            Some(view) => {
                if view.task.status.is_final() {
                    eprintln!();
                    let output = fetch_output(&client, &view).await?;
                    return print_task(&view, output.as_deref(), false);
                }
                let detail = match view.task.worker {
                    Some(w) => format!("worker {w}"),
                    None => "waiting for an eligible worker".into(),
                };
                (status_name(view.task.status), detail)
            }
        };
        let line = format!(
            "[{:>5.1}s] {status}: {detail}",
            started.elapsed().as_secs_f64()
        );
        if line != last {
            eprint!("\r\x1b[2K{line}");
            last = line;
        }
        if started.elapsed() > Duration::from_secs(300) {
            bail!("no result after 300 s; `verity task show {id}` tells where it is");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The output document of a task view, once the task has a verified result.
async fn fetch_output(client: &Client, view: &TaskView) -> Result<Option<Vec<u8>>> {
    Ok(match &view.output_cid {
        Some(cid) => client.get_blob(cid).await?,
        None => None,
    })
}

fn status_name(status: TaskStatus) -> &'static str {
    match status {
        TaskStatus::Pending => "pending",
        TaskStatus::Assigned => "assigned",
        TaskStatus::Finalized => "finalized",
        TaskStatus::Cancelled => "cancelled",
        TaskStatus::Expired => "expired",
        TaskStatus::Failed => "failed",
        TaskStatus::Challengeable => "challengeable",
    }
}

/// One line for a finalized transaction: where, whether it succeeded, what it cost.
fn print_task(view: &TaskView, output: Option<&[u8]>, json: bool) -> Result<()> {
    let output_doc: Option<Value> = output.and_then(|b| serde_json::from_slice(b).ok());
    if json {
        let mut doc = serde_json::to_value(view)?;
        if let Some(out) = output_doc {
            doc["output"] = out;
        }
        outln!("{}", serde_json::to_string_pretty(&doc)?);
        return Ok(());
    }
    let task = &view.task;
    outln!("task         {}", task.task_id);
    outln!("status       {}", status_name(task.status));
    outln!("model        {}", task.model_id);
    outln!("mode         {}", task.mode);
    outln!(
        "worker       {}",
        task.worker.map_or("-".to_string(), |w| w.to_string())
    );
    outln!("input        {}", view.input_cid);
    outln!("max fee      {}", tokens::format(task.max_fee));
    if let Some(limits) = &task.generation {
        outln!(
            "generation   {} prompt tokens, up to {} generated (escrowed at the model's prices)",
            limits.prompt_tokens,
            limits.max_tokens
        );
    }
    outln!("submitted    height {}", task.submitted_height);
    if let Some(reason) = task.failure {
        outln!("failure      {} (reported by the worker's enclave; escrow refunded less the worker's fee)", serde_json::to_value(reason)?.as_str().unwrap_or("?"));
    }
    if let Some(record) = &view.record {
        outln!("result hash  {}", record.output_hash);
        outln!(
            "output       {}",
            view.output_cid.as_deref().unwrap_or_default()
        );
        outln!(
            "trace        {} ({} steps)",
            record.trace_root,
            record.trace_len
        );
        match (record.status, record.challenge_until) {
            (RecordStatus::Submitted, Some(until)) => outln!(
                "op result    submitted; disputes may open until height {until}, and it settles after"
            ),
            (RecordStatus::Rejected, _) => outln!("op result    disproven in a dispute; the task runs again"),
            _ => outln!("finalized    height {}", record.finalized_height),
        }
        outln!(
            "attestation  {}",
            view.attestation.as_deref().unwrap_or_default()
        );
        if let Some(zk) = &record.zk {
            outln!(
                "zk proof     verified (Groth16, {} bytes); input commitment {}, output commitment {}",
                zk.proof.len(),
                zk.input_commitment,
                zk.output_commitment
            );
        }
        let s = &record.settlement;
        let data = match view.task.dataset {
            Some(file) => format!("  file {file}'s DAT holders {}", tokens::format(s.data)),
            None => String::new(),
        };
        outln!(
            "fee split    worker {}  owner {}{data}  protocol {}",
            tokens::format(s.worker),
            tokens::format(s.owner),
            tokens::format(s.protocol)
        );
        if s.refund > 0 {
            outln!(
                "refund       {} (escrow for tokens not generated)",
                tokens::format(s.refund)
            );
        }
    }
    for d in &view.disputes {
        let referee = d
            .referee
            .as_ref()
            .map(|c| format!(", refereed by {}", c.referee))
            .unwrap_or_default();
        outln!(
            "dispute      {} by {}{referee}: {:?}{}",
            d.dispute_id,
            d.challenger,
            d.status,
            d.verdict
                .as_deref()
                .map(|v| format!(" ({v})"))
                .unwrap_or_default()
        );
    }
    if let Some(out) = output_doc {
        if task.generation.is_some() {
            outln!(
                "answer       {} ({} tokens, {})",
                out["text"],
                out["tokens"].as_array().map_or(0, Vec::len),
                out["finish_reason"].as_str().unwrap_or_default()
            );
        }
        for o in out["outputs"].as_array().into_iter().flatten() {
            outln!(
                "output       {}: {} {}",
                o["name"].as_str().unwrap_or_default(),
                o["dtype"].as_str().unwrap_or_default(),
                o["data"]
            );
        }
    }
    Ok(())
}

pub fn parse_tee(text: &str) -> Result<TeeSource> {
    Ok(match text {
        "auto" => TeeSource::Auto,
        "dev" => TeeSource::Dev,
        other => TeeSource::Hardware(other.parse().map_err(|e| anyhow::anyhow!("--tee: {e}"))?),
    })
}

pub fn worker(args: WorkerArgs) -> Result<()> {
    init_logs("info");
    let account = load_key(&args.key, &keys_dir(args.keys_dir))?;
    let config = verity_worker::WorkerConfig {
        api: args.node,
        account,
        home: args.home,
        tee: parse_tee(&args.tee)?,
        tee_certs: args
            .tee_certs
            .iter()
            .map(|p| std::fs::read(p).with_context(|| format!("reading {}", p.display())))
            .collect::<Result<_>>()?,
        stake: tokens::parse(&args.stake, false).context("--stake")?,
        models: args.models,
        max_model_bytes: args.max_model_bytes,
        max_batch: args.max_batch,
        poll: Duration::from_millis(100),
        label: "worker".into(),
        dishonest: args.dishonest,
        data: args
            .data_listen
            .map(|listen| verity_worker::DataVerifierConfig {
                listen,
                endpoint: args
                    .data_endpoint
                    .clone()
                    .unwrap_or_else(|| format!("http://{listen}")),
                ipfs: args.ipfs.clone(),
            }),
    };
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(async {
            let stats = Arc::new(verity_worker::WorkerStats::default());
            if let Some(listen) = args.metrics_listen {
                let at =
                    serve_worker_metrics(listen, vec![("worker".into(), stats.clone())]).await?;
                eprintln!("metrics at http://{at}/metrics");
            }
            verity_worker::run(config, stats, async {
                match crate::shutdown::requested().await {
                    Ok(signal) => eprintln!("{signal}: stopping the worker…"),
                    Err(e) => {
                        eprintln!("warning: {e:#}; the worker stops only when killed");
                        futures::future::pending().await
                    }
                }
            })
            .await
        })
}

/// Serves `workers`' counters at `GET /metrics` on `listen`; the address it bound.
pub(crate) async fn serve_worker_metrics(
    listen: std::net::SocketAddr,
    workers: Vec<(String, Arc<verity_worker::WorkerStats>)>,
) -> Result<std::net::SocketAddr> {
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("listening on {listen}"))?;
    let address = listener.local_addr()?;
    let workers = Arc::new(workers);
    let app = axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || {
            let workers = workers.clone();
            async move {
                (
                    [("content-type", "text/plain; version=0.0.4")],
                    verity_worker::render_metrics(&workers),
                )
            }
        }),
    );
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok(address)
}
