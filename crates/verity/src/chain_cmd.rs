//! Chain commands: run validators (`devnet`, `node`, `genesis`) and talk to one (`keys`,
//! `transfer`, `account`, `status`).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context as _, Result};
use clap::Args;
use verity_client::{Client, PageRequest};
use verity_node::{
    mempool::SenderCache,
    run::{self},
};
use verity_state::{Genesis, GenesisAccount, Params};
use verity_types::{AccountKey, Action, Address, Hash, Mode, ONE_TOKEN};

use crate::tokens;

use crate::shared::{keys_dir, load_devnet_key, load_key, runtime, DEFAULT_NODE};
pub(crate) use verity_types::write_secret;

/// The chain id `verity devnet` uses.
pub const DEVNET_CHAIN_ID: &str = "verity-devnet";
const DEFAULT_LOGS: &str = "info,commonware=warn";

#[derive(Args)]
pub struct DevnetArgs {
    /// Number of validators, all in this process, talking over loopback TCP.
    #[arg(long, default_value_t = 4)]
    validators: u32,
    /// Where keys, genesis and all data live; reuse it to restart the same chain.
    #[arg(long, env = "VERITY_HOME", default_value = ".verity/devnet")]
    home: PathBuf,
    /// API port of the first validator; the others take the next ports.
    #[arg(long, default_value_t = 8545)]
    api_port: u16,
    /// p2p port of the first validator; the others take the next ports.
    #[arg(long, default_value_t = 30300)]
    p2p_port: u16,
    /// Workers started in this process, each with a dev (software) enclave.
    #[arg(long, default_value_t = 2)]
    workers: u32,
    /// Challengers started in this process: they re-execute every OP result in its window and
    /// dispute the wrong ones.
    #[arg(long, default_value_t = 1)]
    challengers: u32,
    /// FOR TESTING DISPUTES ONLY: the first N workers lie about graph node 1 of every task
    /// (`verity worker --dishonest 1`).
    #[arg(long, default_value_t = 0)]
    dishonest_workers: u32,
    /// How many of the workers also verify contributed data (`verity data contribute`).
    #[arg(long, default_value_t = 1)]
    data_verifiers: u32,
    /// Port of the first data verifier's `POST /proof`; the others take the next ports. By
    /// default the port after the last validator's API port (8549 with 4 validators).
    #[arg(long)]
    data_port: Option<u16>,
    /// Keep every validator's blobs on this IPFS node too (its RPC API, e.g.
    /// http://127.0.0.1:5001): uploads are added to it, missing blobs fetched from it; the data
    /// verifiers read files registered as `ipfs://CID` from it.
    #[arg(long, env = "VERITY_IPFS", value_name = "URL")]
    ipfs: Option<String>,
    /// Show the validators' and workers' logs instead of a status line every few seconds
    /// (`VERITY_LOG` also brings them back, with its own filter).
    #[arg(long)]
    log: bool,
    /// Port of the in-process workers' Prometheus metrics (`/metrics`); by default the port
    /// after the data verifiers' first (8550 with 4 validators).
    #[arg(long)]
    worker_metrics_port: Option<u16>,
    /// Blocks per epoch: each epoch's midpoint chooses the committee two epochs ahead by
    /// bonded stake (`verity validator list`). About 100 s at the devnet's pace.
    #[arg(long, default_value_t = 500, value_parser = clap::value_parser!(u64).range(10..))]
    epoch_blocks: u64,
}

/// What genesis bonds for each validator: ten times the least stake a validator needs.
pub(crate) const GENESIS_VALIDATOR_STAKE: u128 = 10_000 * ONE_TOKEN;

/// The model every devnet registers: the digits MLP (64 inputs, 10 classes).
pub(crate) const BUNDLED_MODEL: &[u8] = include_bytes!("../../../models/digits_mlp.onnx");
/// The bundled quantized model, registered with zk keys for `tee_zk` tasks.
pub(crate) const BUNDLED_INT8_MODEL: &[u8] = include_bytes!("../../../models/digits_mlp_int8.onnx");

/// The bundled language model (models/tiny_lm: a 4-layer GPT-2 trained on Moby-Dick), its
/// files by the names a language model's directory gives them.
const BUNDLED_LM: [(&str, &[u8]); 3] = [
    (
        "model.onnx",
        include_bytes!("../../../models/tiny_lm/model.onnx"),
    ),
    (
        "tokenizer.json",
        include_bytes!("../../../models/tiny_lm/tokenizer.json"),
    ),
    (
        "config.json",
        include_bytes!("../../../models/tiny_lm/config.json"),
    ),
];
/// The name the devnet registers it under: `verity chat --model tiny-lm`.
pub(crate) const BUNDLED_LM_NAME: &str = "tiny-lm";

/// Genesis of a devnet: the dev account (also governance) and every worker funded, dev
/// enclaves allowed, a short assignment timeout so that a dead worker's tasks move on quickly.
pub(crate) fn devnet_genesis(chain_id: &str, dev: &Address, workers: &[Address]) -> Genesis {
    let mut accounts = vec![GenesisAccount {
        address: *dev,
        balance: 1_000_000_000 * ONE_TOKEN,
    }];
    accounts.extend(workers.iter().map(|w| GenesisAccount {
        address: *w,
        balance: 100_000 * ONE_TOKEN,
    }));
    Genesis {
        chain_id: chain_id.into(),
        genesis_time_ms: now_ms(),
        params: Params {
            governance: Some(*dev),
            tasks: verity_state::TaskParams {
                assignment_timeout_blocks: 20,
                // 20 blocks are about four seconds here: a dev worker on a shared 2-core machine
                // delivers 128 well within them.
                max_open_assignments: 128,
                // A devnet makes about five blocks a second: 150 of them give a challenger
                // half a minute to fetch and re-execute a result, and 150 a side to answer a
                // move, as 20 and 40 do on a network with blocks seconds apart.
                challenge_window_blocks: 150,
                dispute_clock_blocks: 150,
                // Longer than a window and the longest dispute (603 blocks here): about three
                // minutes.
                unbonding_blocks: 1_000,
                ..Default::default()
            },
            ..default_params()
        },
        accounts,
        attestation_policy: Some(verity_tee::Policy::devnet()),
        validators: vec![],
    }
}

/// Starts `count` in-process workers against the given APIs (round robin), keys and state under
/// `home/worker-i`.
/// Which of the devnet's workers verify contributed data: the first `count`, on loopback ports
/// from `first_port`.
#[derive(Clone, Copy)]
pub(crate) struct DataVerifiers<'a> {
    pub count: u32,
    pub first_port: u16,
    /// Where they read files registered with an `ipfs://` URL.
    pub ipfs: Option<&'a str>,
}

impl DataVerifiers<'_> {
    pub const NONE: Self = Self {
        count: 0,
        first_port: 0,
        ipfs: None,
    };

    fn config(&self, worker: usize) -> Result<Option<verity_worker::DataVerifierConfig>> {
        if worker >= self.count as usize {
            return Ok(None);
        }
        let port = u16::try_from(usize::from(self.first_port) + worker)
            .context("--data-port: the data verifiers' ports run past 65535")?;
        let listen = std::net::SocketAddr::from(([127, 0, 0, 1], port));
        Ok(Some(verity_worker::DataVerifierConfig {
            listen,
            endpoint: format!("http://{listen}"),
            ipfs: self.ipfs.map(str::to_string),
        }))
    }
}

pub(crate) fn spawn_workers(
    home: &Path,
    apis: &[std::net::SocketAddr],
    count: u32,
    dishonest: u32,
    data: DataVerifiers<'_>,
) -> Result<Vec<Arc<verity_worker::WorkerStats>>> {
    let mut all = Vec::new();
    for i in 0..count as usize {
        let dir = home.join(format!("worker-{i}"));
        let account = load_devnet_key(&dir.join("account.key"))?;
        let stats = Arc::new(verity_worker::WorkerStats::default());
        let config = verity_worker::WorkerConfig {
            api: apis[i % apis.len()].to_string(),
            account,
            home: dir,
            tee: verity_worker::TeeSource::Dev,
            tee_certs: Vec::new(),
            stake: 1_000 * ONE_TOKEN,
            models: Vec::new(),
            max_model_bytes: None,
            max_batch: 128,
            poll: Duration::from_millis(100),
            label: format!("w{i}"),
            // Fault injection: the first `dishonest` workers lie about graph node 1.
            dishonest: (i < dishonest as usize).then_some(1),
            data: data.config(i)?,
        };
        let s = stats.clone();
        tokio::spawn(async move {
            if let Err(e) = verity_worker::run(config, s, std::future::pending()).await {
                tracing::error!(error = %format!("{e:#}"), "worker stopped");
            }
        });
        all.push(stats);
    }
    Ok(all)
}

#[derive(Args)]
pub struct NodeArgs {
    /// The validator's node.toml (written by `verity genesis`).
    #[arg(long, env = "VERITY_CONFIG")]
    config: PathBuf,
    #[command(flatten)]
    overrides: NodeOverrides,
}

/// Every node.toml field, overridable by a flag or a `VERITY_` environment variable.
#[derive(Args)]
struct NodeOverrides {
    /// genesis.json shared by the committee.
    #[arg(long, env = "VERITY_GENESIS")]
    genesis: Option<PathBuf>,
    /// This validator's key file (mode 0600).
    #[arg(long, env = "VERITY_VALIDATOR_KEYS")]
    keys: Option<PathBuf>,
    /// State and consensus storage directory.
    #[arg(long, env = "VERITY_DATA")]
    data: Option<PathBuf>,
    #[arg(long, env = "VERITY_P2P_LISTEN")]
    p2p_listen: Option<std::net::SocketAddr>,
    #[arg(long, env = "VERITY_API_LISTEN")]
    api_listen: Option<std::net::SocketAddr>,
    /// Milliseconds a leader has to propose before the view times out.
    #[arg(long, env = "VERITY_LEADER_TIMEOUT_MS")]
    leader_timeout_ms: Option<u64>,
    /// Keep blobs on an IPFS node too, through its RPC API (Kubo or js-ipfs), e.g.
    /// http://127.0.0.1:5001: every upload is added to it, missing blobs are fetched from it.
    #[arg(long, env = "VERITY_IPFS", value_name = "URL")]
    ipfs: Option<String>,
}

impl NodeOverrides {
    fn apply(self, config: &mut run::NodeConfig) {
        if let Some(v) = self.genesis {
            config.genesis = v;
        }
        if let Some(v) = self.keys {
            config.keys = v;
        }
        if let Some(v) = self.data {
            config.data = v;
        }
        if let Some(v) = self.p2p_listen {
            config.p2p_listen = v;
        }
        if let Some(v) = self.api_listen {
            config.api_listen = v;
        }
        if let Some(v) = self.leader_timeout_ms {
            config.leader_timeout_ms = v;
        }
        if let Some(v) = self.ipfs {
            config.ipfs = Some(v);
        }
    }
}

#[derive(Args)]
pub struct GenesisArgs {
    /// Where to write genesis.json and validator-i/ directories.
    #[arg(long)]
    home: PathBuf,
    #[arg(long, default_value_t = 4)]
    validators: u32,
    #[arg(long, default_value = "verity-local")]
    chain_id: String,
    /// Accounts funded at genesis, as ADDRESS=WHOLE_TOKENS (repeatable).
    #[arg(long = "fund", value_name = "ADDRESS=TOKENS")]
    funds: Vec<String>,
    /// Accept dev (software) enclaves: for test networks only.
    #[arg(long)]
    allow_dev: bool,
    /// An enclave measurement this network accepts, as KIND=HEX with KIND one of tdx, sgx, snp,
    /// nitro (repeatable). Only the kinds named are accepted.
    #[arg(long = "measurement", value_name = "KIND=HEX")]
    measurements: Vec<String>,
    /// Accept any code in any hardware TEE: every hardware kind, any measurement.
    #[arg(long)]
    allow_any_measurement: bool,
    /// The account that may change the attestation policy; required without --allow-dev.
    #[arg(long)]
    governance: Option<Address>,
    #[arg(long, default_value_t = 8545)]
    api_port: u16,
    #[arg(long, default_value_t = 30300)]
    p2p_port: u16,
    /// Whole tokens genesis bonds for each validator (an account for it is written to
    /// validator-i/account.key); 0 fixes the committee at genesis, with no bonds or epochs.
    #[arg(long, default_value_t = 10_000)]
    validator_stake: u64,
    /// Blocks per epoch.
    #[arg(long, default_value_t = 1_000, value_parser = clap::value_parser!(u64).range(10..))]
    epoch_blocks: u64,
}

#[derive(Args)]
pub struct TransferArgs {
    /// Key name in the keys directory, or a path to a key file.
    #[arg(long)]
    from: String,
    #[arg(long)]
    to: Address,
    /// Amount in tokens, e.g. 1.5 (base units with --base-units).
    #[arg(long)]
    amount: String,
    /// Fee in tokens; the chain's price for the transfer's weight when absent.
    #[arg(long)]
    fee: Option<String>,
    /// Read --amount and --fee as base units (10^18 per token).
    #[arg(long)]
    base_units: bool,
    #[arg(long, env = "VERITY_NODE", default_value = DEFAULT_NODE)]
    node: String,
    #[arg(long, env = "VERITY_KEYS")]
    keys_dir: Option<PathBuf>,
    /// Wait until the transfer is finalized and print its receipt.
    #[arg(long)]
    wait: bool,
}

#[derive(Args)]
pub struct AccountArgs {
    address: Address,
    #[arg(long, env = "VERITY_NODE", default_value = DEFAULT_NODE)]
    node: String,
    /// The node's answer as JSON, amounts in base units.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
pub struct StatusArgs {
    #[arg(long, env = "VERITY_NODE", default_value = DEFAULT_NODE)]
    node: String,
}

/// Logs to stderr, filtered by `VERITY_LOG` (tracing's env-filter syntax) or `default`.
pub(crate) fn init_logs(default: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("VERITY_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default))
        // The proof system opens a span per gadget: listening to them makes proving ~100x
        // slower and says nothing a user can act on.
        .add_directive("r1cs=off".parse().expect("a valid directive"));
    // Logs go to stderr: stdout carries what a command reports (`--json` documents, ids that
    // scripts capture), which a warning logged under load must not interleave with.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

pub(crate) fn default_params() -> Params {
    Params {
        min_fee: 1,
        fee_collector: Address([0xfe; 20]),
        max_block_txs: 4_000,
        fee_per_weight: 1,
        max_block_weight: 2_000_000,
        governance: None,
        tasks: Default::default(),
        data: Default::default(),
        validators: Default::default(),
    }
}

/// Registers the bundled digits model, owned by `owner`; returns its id.
pub(crate) async fn register_bundled_model(client: &Client, owner: &AccountKey) -> Result<Hash> {
    let spec = crate::task_cmd::model_spec(
        BUNDLED_MODEL,
        "digits-mlp".into(),
        "1".into(),
        "MIT".into(),
        "mlp".into(),
        vec![Mode::Tee, Mode::Op],
        0,
    )?;
    crate::task_cmd::register_model(client, owner, BUNDLED_MODEL.to_vec(), spec, false)
        .await
        .context("registering the bundled model")
}

/// Registers the bundled language model, owned by `owner`, from its files written under
/// `home/tiny-lm`; returns its id.
pub(crate) async fn register_bundled_language_model(
    client: &Client,
    owner: &AccountKey,
    home: &Path,
) -> Result<Hash> {
    let dir = home.join("tiny-lm");
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    for (name, bytes) in BUNDLED_LM {
        std::fs::write(dir.join(name), bytes)
            .with_context(|| format!("writing {}", dir.join(name).display()))?;
    }
    let (spec, files) = crate::commands::language::language_model_spec(
        &dir,
        BUNDLED_LM_NAME.into(),
        "1".into(),
        "MIT".into(),
        crate::tokens::parse("0.00001", false)?,
        crate::tokens::parse("0.00002", false)?,
        vec![Mode::Tee, Mode::Op],
    )?;
    crate::task_cmd::register_language_model(client, owner, spec, files)
        .await
        .context("registering the bundled language model")
}

/// Registers the bundled int8 model with Groth16 keys, owned by `owner`. The keys come from a
/// local random setup made once and kept under `home/zk-digits-int8`: a restarted devnet
/// finds the same keys on chain.
pub(crate) async fn register_bundled_zk_model(
    client: &Client,
    owner: &AccountKey,
    home: &Path,
) -> Result<Hash> {
    let spec = crate::task_cmd::model_spec(
        BUNDLED_INT8_MODEL,
        "digits-mlp-int8".into(),
        "1".into(),
        "MIT".into(),
        "mlp".into(),
        vec![Mode::Tee, Mode::TeeZk],
        0,
    )?;
    let dir = home.join("zk-digits-int8");
    if !dir.join(crate::zk_cmd::VERIFYING_KEY).exists() {
        let model = verity_infer::Model::from_bytes(BUNDLED_INT8_MODEL)?;
        let out = dir.clone();
        tokio::task::spawn_blocking(move || crate::zk_cmd::setup_keys(&model, &out))
            .await?
            .context("the zk setup of the bundled int8 model")?;
    }
    let (proving, verifying) = crate::zk_cmd::read_keys(&dir)?;
    let id =
        crate::task_cmd::register_model(client, owner, BUNDLED_INT8_MODEL.to_vec(), spec, false)
            .await?;
    crate::task_cmd::set_zk_keys(client, owner, &id, proving, verifying)
        .await
        .context("setting the bundled int8 model's zk keys")?;
    Ok(id)
}

/// Starts `count` in-process challengers, keys under `home/challenger-i`; an account with less
/// than its bond and fees is funded from the dev account first.
pub(crate) async fn spawn_challengers(
    home: &Path,
    apis: &[std::net::SocketAddr],
    dev: &AccountKey,
    count: u32,
) -> Result<()> {
    let client = Client::new(&apis[0].to_string());
    let bond = verity_state::TaskParams::default().min_challenger_bond;
    for i in 0..count as usize {
        let path = home.join(format!("challenger-{i}")).join("account.key");
        let account = if path.exists() {
            load_devnet_key(&path)?
        } else {
            let key = AccountKey::generate();
            write_secret(&path, key.secret_hex().as_bytes())?;
            key
        };
        if client.account(&account.address()).await?.balance < bond {
            let tx = client
                .submit_action(
                    dev,
                    Action::Transfer {
                        to: account.address(),
                        amount: 10 * bond,
                    },
                    0,
                )
                .await
                .context("funding a challenger")?;
            client
                .wait_for_tx(&tx.hash(), Duration::from_secs(60))
                .await?;
        }
        let config = verity_worker::ChallengerConfig {
            api: apis[i % apis.len()].to_string(),
            account,
            bond,
            models: Vec::new(),
            frivolous: false,
            poll: Duration::from_millis(200),
            label: format!("c{i}"),
            home: home.join(format!("challenger-{i}")),
        };
        tokio::spawn(async move {
            if let Err(e) = verity_worker::run_challenger(config, std::future::pending()).await {
                tracing::error!(error = %format!("{e:#}"), "challenger stopped");
            }
        });
    }
    Ok(())
}

/// Creates `count` worker account keys, `worker-i/account.key` under `home`, where
/// [`spawn_workers`] loads them; returns their addresses for genesis.
pub(crate) fn create_worker_accounts(home: &Path, count: u32) -> Result<Vec<Address>> {
    (0..count)
        .map(|i| {
            let key = AccountKey::generate();
            let path = home.join(format!("worker-{i}")).join("account.key");
            write_secret(&path, key.secret_hex().as_bytes())?;
            Ok(key.address())
        })
        .collect()
}

/// `verity devnet`: creates the network on first run, then starts every validator in-process.
pub fn devnet(args: DevnetArgs) -> Result<()> {
    let quiet = !args.log && std::env::var_os("VERITY_LOG").is_none();
    init_logs(if quiet { "warn" } else { DEFAULT_LOGS });
    let home = args.home;
    let genesis_path = home.join("genesis.json");
    let dev_key_path = home.join("dev-account.key");
    if !genesis_path.exists() {
        let dev = AccountKey::generate();
        std::fs::create_dir_all(&home)?;
        write_secret(&dev_key_path, dev.secret_hex().as_bytes())?;
        let workers = create_worker_accounts(&home, args.workers)?;
        let mut chain = devnet_genesis(DEVNET_CHAIN_ID, &dev.address(), &workers);
        chain.params.validators.epoch_blocks = args.epoch_blocks;
        run::write_network(
            &home,
            chain,
            args.validators,
            (args.p2p_port, args.api_port),
            Some(GENESIS_VALIDATOR_STAKE),
        )?;
    }
    let dev = load_devnet_key(&dev_key_path).context("reading the dev account key")?;
    let mut configs = run::NodeConfig::load_all(&node_configs(&home)?)?;
    for config in &mut configs {
        config.ipfs.clone_from(&args.ipfs);
    }
    let storage = home.join("consensus");
    commonware_runtime::Runner::start(run::runner(&storage), |context| async move {
        // Caught from here on: a stop during the setup below ends it cleanly, and the next start
        // resumes it (registrations and stakes already on chain are found there).
        let mut signals = crate::shutdown::Listener::install()?;
        let setup = async {
            let started = run::start_nodes(&context, configs, SenderCache::default()).await?;
            outln!(
                "Verity devnet: {} validators, chain {DEVNET_CHAIN_ID}",
                started.len()
            );
            for (i, s) in started.iter().enumerate() {
                outln!(
                    "  validator {i}: API http://{}  p2p {}  data {}",
                    s.api,
                    s.p2p,
                    s.data.display()
                );
            }
            let apis: Vec<_> = started.iter().map(|s| s.api).collect();
            let client = Client::new(&apis[0].to_string());
            let model_id = register_bundled_model(&client, &dev).await?;
            let zk_model_id = register_bundled_zk_model(&client, &dev, &home).await?;
            let lm_id = register_bundled_language_model(&client, &dev, &home).await?;
            let data_verifiers = DataVerifiers {
                count: args.data_verifiers.min(args.workers),
                first_port: match args.data_port {
                    Some(port) => port,
                    None => u16::try_from(u32::from(args.api_port) + args.validators)
                        .context("--api-port: no port is left after the validators' for data")?,
                },
                ipfs: args.ipfs.as_deref(),
            };
            let worker_stats = spawn_workers(
                &home,
                &apis,
                args.workers,
                args.dishonest_workers,
                data_verifiers,
            )?;
            let metrics_port = match args.worker_metrics_port {
                Some(port) => port,
                None => data_verifiers
                    .first_port
                    .checked_add(1)
                    .context("--api-port: no port is left for the workers' metrics")?,
            };
            let worker_metrics = crate::task_cmd::serve_worker_metrics(
                std::net::SocketAddr::from(([127, 0, 0, 1], metrics_port)),
                worker_stats
                    .iter()
                    .enumerate()
                    .map(|(i, stats)| (format!("w{i}"), stats.clone()))
                    .collect(),
            )
            .await?;
            spawn_challengers(&home, &apis, &dev, args.challengers).await?;
            // The banner says "ready" only once the setup is final: the dev account's setup
            // transactions are finalized and the workers can take tasks.
            eprintln!("waiting for {} workers to stake and attest…", args.workers);
            if let Err(e) = wait_for_workers(&client, args.workers as usize).await {
                eprintln!("warning: {e:#}; see `verity devnet --log`");
            }
            if let Err(e) = wait_for_challengers(&client, args.challengers as usize).await {
                eprintln!("warning: {e:#}; see `verity devnet --log`");
            }
            if let Err(e) = wait_for_data_verifiers(&client, &home, data_verifiers.count).await {
                eprintln!("warning: {e:#}; see `verity devnet --log`");
            }
            outln!(
                "  workers:     {} (dev TEE, not hardware-backed){}",
                args.workers,
                if args.dishonest_workers > 0 {
                    format!(
                        "; {} DISHONEST, for testing disputes",
                        args.dishonest_workers
                    )
                } else {
                    String::new()
                }
            );
            outln!(
                "  challengers: {} (re-execute OP results and dispute wrong ones)",
                args.challengers
            );
            if data_verifiers.count > 0 {
                outln!(
                    "  data:        {} verifier(s), POST /proof from http://127.0.0.1:{}",
                    data_verifiers.count,
                    data_verifiers.first_port
                );
            }
            outln!("  model:       {model_id} (digits-mlp, bundled; tee and op)");
            outln!("  zk model:    {zk_model_id} (digits-mlp-int8, bundled; tee and tee-zk, keys from a local setup)");
            outln!("  language:    {lm_id} ({BUNDLED_LM_NAME}, bundled GPT-2 style model trained on Moby-Dick; tee, op)");
            outln!("  genesis:     {}", home.join("genesis.json").display());
            outln!(
                "  metrics:     http://{}/metrics (each validator's), http://{worker_metrics}/metrics (the workers')",
                apis[0]
            );
            outln!(
                "  dev account: {} (key in {}, mode 0600)",
                dev.address(),
                dev_key_path.display()
            );
            outln!(
            "  try:         verity task submit --model {model_id} --input models/samples/digit_0_label_7.json --from {} --wait",
            dev_key_path.display()
        );
            outln!(
                "  chat:        verity chat --model {BUNDLED_LM_NAME} \"Call me Ishmael.\" --from {}",
                dev_key_path.display()
            );
            outln!(
                "  gateway:     verity gateway --key {} --node http://{} --listen 127.0.0.1:8080",
                dev_key_path.display(),
                apis[0]
            );
            outln!(
            "Ctrl-C (or SIGTERM) stops the network; run the same command to start it again where it left off."
        );
            if quiet {
                let node = started[0].node.clone();
                tokio::spawn(async move {
                    loop {
                        tokio::time::sleep(STATUS_EVERY).await;
                        outln!("{}", status_line(&node));
                    }
                });
            }
            Ok::<(), anyhow::Error>(())
        };
        let signal = tokio::select! {
            ready = setup => {
                ready?;
                signals.wait().await
            }
            signal = signals.wait() => {
                eprintln!("{signal} before the devnet was ready; the next start resumes the setup");
                signal
            }
        };
        stop(context, signal).await
    })
}

/// How often a quiet devnet prints its status line.
const STATUS_EVERY: Duration = Duration::from_secs(5);

/// Waits until `count` workers have staked and registered an enclave (2 minutes at most); a
/// node that does not answer yet is asked again.
pub(crate) async fn wait_for_workers(client: &Client, count: usize) -> Result<()> {
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    loop {
        let ready = client
            .workers(&PageRequest {
                after: None,
                limit: Some(verity_client::api::MAX_PAGE),
            })
            .await
            .map(|list| list.workers.iter().filter(|w| w.enclave.is_some()).count())
            .unwrap_or(0);
        if ready >= count {
            return Ok(());
        }
        if std::time::Instant::now() > deadline {
            bail!("only {ready} of {count} workers registered an enclave within 120 s");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Waits until the first `count` workers serve data verification (2 minutes at most).
pub(crate) async fn wait_for_data_verifiers(
    client: &Client,
    home: &Path,
    count: u32,
) -> Result<()> {
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    for i in 0..count {
        let worker =
            load_devnet_key(&home.join(format!("worker-{i}")).join("account.key"))?.address();
        loop {
            let serving = client
                .data_verifier(&worker)
                .await
                .map(|v| v.verifier.is_some())
                .unwrap_or(false);
            if serving {
                break;
            }
            if std::time::Instant::now() > deadline {
                bail!("worker {i} did not register as a data verifier within 120 s");
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    Ok(())
}

/// Waits until `count` challengers have bonded (2 minutes at most): OP results submitted before
/// would go unwatched.
pub(crate) async fn wait_for_challengers(client: &Client, count: usize) -> Result<()> {
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    loop {
        let bonded = client
            .challengers(&PageRequest {
                after: None,
                limit: Some(verity_client::api::MAX_PAGE),
            })
            .await
            .map(|list| list.challengers.len())
            .unwrap_or(0);
        if bonded >= count {
            return Ok(());
        }
        if std::time::Instant::now() > deadline {
            bail!("only {bonded} of {count} challengers bonded within 120 s");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// One line of what the devnet is doing: height, mempool, recent tasks by status, workers.
fn status_line(node: &verity_node::app::NodeState) -> String {
    let chain = &node.chain;
    let height = chain.height().unwrap_or(0);
    let pending = node.mempool.lock().map(|m| m.len()).unwrap_or(0);
    let mut finalized = 0;
    let mut open = 0;
    for task in chain.recent_tasks(None, 1_000).unwrap_or_default() {
        match task.status {
            verity_state::TaskStatus::Finalized => finalized += 1,
            status if !status.is_final() => open += 1,
            _ => {}
        }
    }
    let workers = chain
        .workers(None, 1_000)
        .unwrap_or_default()
        .iter()
        .filter(|w| chain.enclave(w).ok().flatten().is_some())
        .count();
    format!(
        "height {height}  mempool {pending}  tasks: {open} open, {finalized} finalized (last 1,000)  workers {workers}"
    )
}

fn node_configs(home: &Path) -> Result<Vec<PathBuf>> {
    let mut configs = Vec::new();
    for i in 0.. {
        let path = home.join(format!("validator-{i}")).join("node.toml");
        if !path.exists() {
            break;
        }
        configs.push(path);
    }
    if configs.is_empty() {
        bail!("no validator-*/node.toml under {}", home.display());
    }
    Ok(configs)
}

async fn shutdown_on_signal(context: commonware_runtime::tokio::Context) -> Result<()> {
    let signal = crate::shutdown::requested().await?;
    stop(context, signal).await
}

async fn stop(context: commonware_runtime::tokio::Context, signal: &str) -> Result<()> {
    eprintln!("{signal}: stopping, finishing writes…");
    use commonware_runtime::Spawner as _;
    let _ = context.stop(0, Some(Duration::from_secs(10))).await;
    Ok(())
}

/// `verity node --config FILE`: one validator in its own process.
pub fn node(args: NodeArgs) -> Result<()> {
    init_logs(DEFAULT_LOGS);
    let mut config = run::NodeConfig::load(&args.config)?;
    args.overrides.apply(&mut config);
    let configs = vec![config.clone()];
    commonware_runtime::Runner::start(
        run::runner(&config.data.join("consensus")),
        |context| async move {
            let started = run::start_nodes(&context, configs, SenderCache::default()).await?;
            for s in &started {
                outln!(
                    "validator {}: API http://{}  p2p {}  data {}",
                    s.node.label,
                    s.api,
                    s.p2p,
                    s.data.display()
                );
            }
            shutdown_on_signal(context).await
        },
    )
}

/// `verity genesis`: deals a committee and writes every validator's files.
pub fn genesis(args: GenesisArgs) -> Result<()> {
    let policy = genesis_policy(&args)?;
    let mut accounts = Vec::new();
    for fund in &args.funds {
        let (address, amount) = fund
            .split_once('=')
            .with_context(|| format!("--fund {fund:?}: expected ADDRESS=TOKENS"))?;
        let balance = tokens::parse(amount, false).with_context(|| format!("--fund {fund:?}"))?;
        accounts.push(GenesisAccount {
            address: address
                .parse()
                .with_context(|| format!("--fund {fund:?}"))?,
            balance,
        });
    }
    let chain = Genesis {
        chain_id: args.chain_id,
        genesis_time_ms: now_ms(),
        params: Params {
            governance: args.governance,
            validators: verity_state::ValidatorParams {
                epoch_blocks: args.epoch_blocks,
                ..Default::default()
            },
            ..default_params()
        },
        accounts,
        attestation_policy: Some(policy),
        validators: vec![],
    };
    let stake = (args.validator_stake > 0).then(|| u128::from(args.validator_stake) * ONE_TOKEN);
    let layout = run::write_network(
        &args.home,
        chain,
        args.validators,
        (args.p2p_port, args.api_port),
        stake,
    )?;
    outln!("genesis: {}", layout.genesis.display());
    for node in layout.nodes {
        outln!(
            "node config: {}   (run: verity node --config {})",
            node.display(),
            node.display()
        );
    }
    Ok(())
}

/// The attestation policy `verity genesis` writes. Outside a devnet it names the measurements it
/// accepts and who may change them: a network that accepts any code in any TEE verifies
/// nothing, so that takes an explicit flag.
fn genesis_policy(args: &GenesisArgs) -> Result<verity_tee::Policy> {
    if args.allow_dev {
        return Ok(verity_tee::Policy::devnet());
    }
    if args.governance.is_none() {
        bail!("a network without dev enclaves needs --governance ADDRESS: the account that may change its attestation policy (add or retire measurements)");
    }
    let mut measurements = Vec::new();
    for m in &args.measurements {
        let (kind, hex) = m
            .split_once('=')
            .with_context(|| format!("--measurement {m:?}: expected KIND=HEX"))?;
        let kind: verity_tee::TeeKind = kind
            .parse()
            .map_err(|e| anyhow::anyhow!("--measurement {m:?}: {e}"))?;
        if kind == verity_tee::TeeKind::Dev {
            bail!("--measurement {m:?}: dev enclaves are for devnets; use --allow-dev");
        }
        let bytes = hex::decode(hex.trim_start_matches("0x"))
            .with_context(|| format!("--measurement {m:?}: the measurement is not hex"))?;
        if bytes.is_empty() {
            bail!("--measurement {m:?}: the measurement is empty");
        }
        measurements.push((kind, bytes));
    }
    match (measurements.is_empty(), args.allow_any_measurement) {
        (true, true) => Ok(verity_tee::Policy::permissive()),
        (false, false) => Ok(verity_tee::Policy::strict(&measurements)),
        (true, false) => bail!("name the enclave measurements this network accepts with --measurement KIND=HEX (repeatable), or pass --allow-any-measurement to accept any code in any TEE"),
        (false, true) => bail!("--measurement and --allow-any-measurement contradict each other"),
    }
}

pub fn transfer(args: TransferArgs) -> Result<()> {
    let key = load_key(&args.from, &keys_dir(args.keys_dir))?;
    runtime()?.block_on(async {
        let client = Client::new(&args.node);
        let action = Action::Transfer {
            to: args.to,
            amount: tokens::parse(&args.amount, args.base_units).context("--amount")?,
        };
        let fee = match &args.fee {
            Some(fee) => tokens::parse(fee, args.base_units).context("--fee")?,
            None => 0,
        };
        crate::shared::submit_and_report(&client, &key, action, fee, args.wait, "the transfer")
            .await
    })
}

pub fn account(args: AccountArgs) -> Result<()> {
    runtime()?.block_on(async {
        let account = Client::new(&args.node).account(&args.address).await?;
        if args.json {
            outln!("{}", serde_json::to_string_pretty(&account)?);
        } else {
            outln!("address        {}", account.address);
            outln!("balance        {}", tokens::format(account.balance));
            outln!("nonce          {}", account.nonce);
            outln!("pending nonce  {}", account.pending_nonce);
        }
        Ok(())
    })
}

pub fn status(args: StatusArgs) -> Result<()> {
    runtime()?.block_on(async {
        let answer = Client::new(&args.node).status().await?;
        outln!("{}", serde_json::to_string_pretty(&answer)?);
        Ok(())
    })
}
