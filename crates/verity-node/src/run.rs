//! Running validators for real: genesis and key files, TCP p2p between validators (commonware
//! `lookup`: fixed peers with known addresses, authenticated and encrypted), redb state, and the
//! HTTP API. `verity devnet` runs several in one process; `verity node` runs one.

use std::fs;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context as _, Result};
use commonware_cryptography::{ed25519, ChaCha20Poly1305, Signer as _};
use commonware_p2p::{authenticated::lookup, AddressableManager as _};
use commonware_runtime::{tokio as cw_tokio, Metrics as _, Supervisor as _};
use commonware_stream::{
    cups::{self, Cups},
    sake::{self, Sake},
};
use commonware_utils::{ordered::Map, NZUsize};
use serde::{Deserialize, Serialize};
use verity_state::{Chain, Genesis, RedbStore, Store};
use verity_types::write_secret;

use crate::api::{self, ApiLimits, ApiState};
use crate::app::NodeState;
use crate::block::Block;
use crate::committee;
use crate::listener::LimitedListener;
use crate::mempool::SenderCache;
use crate::uploads::{Quotas, UploadPolicy};
use crate::validator::{self, channel, Channels, ValidatorConfig};
use verity_api::ValidatorInfo;

/// What every validator of one chain shares.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct GenesisFile {
    pub chain: Genesis,
    pub validators: Vec<ValidatorInfo>,
    /// The committee's BLS12-381 public polynomial, hex.
    pub threshold_polynomial: String,
}

/// A validator's secrets. Written with mode 0600; never logged.
#[derive(Serialize, Deserialize)]
pub struct ValidatorKeys {
    pub identity: String,
    pub share: String,
}

/// One validator's settings (`node.toml`). Relative paths are relative to the file.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct NodeConfig {
    pub genesis: PathBuf,
    pub keys: PathBuf,
    /// State and consensus storage.
    pub data: PathBuf,
    pub p2p_listen: SocketAddr,
    pub api_listen: SocketAddr,
    /// Milliseconds a leader has to propose before the view times out.
    #[serde(default = "default_leader_timeout_ms")]
    pub leader_timeout_ms: u64,
    /// The blob store; `data/blobs` when absent. Validators of one devnet share one.
    #[serde(default)]
    pub blobs: Option<PathBuf>,
    /// Largest blob the API accepts.
    #[serde(default = "default_max_blob_bytes")]
    pub max_blob_bytes: u64,
    /// An IPFS node's RPC API (Kubo or js-ipfs, e.g. `http://127.0.0.1:5001`): every blob is
    /// added to it, and blobs missing from the store are fetched from it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipfs: Option<String>,
    /// Who may upload blobs, how much, and the disk floor they never eat into.
    #[serde(default)]
    pub uploads: UploadPolicy,
    #[serde(default)]
    pub api_limits: ApiLimits,
}

fn default_max_blob_bytes() -> u64 {
    64 * 1024 * 1024
}

fn default_leader_timeout_ms() -> u64 {
    2_000
}

impl NodeConfig {
    pub fn load(path: &Path) -> Result<Self> {
        let text = fs::read_to_string(path)
            .with_context(|| format!("reading node config {}", path.display()))?;
        let mut config: NodeConfig =
            toml::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
        let base = path.parent().unwrap_or(Path::new("."));
        for p in [&mut config.genesis, &mut config.keys, &mut config.data]
            .into_iter()
            .chain(config.blobs.as_mut())
        {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        }
        Ok(config)
    }

    /// Loads every file in `paths`.
    pub fn load_all(paths: &[PathBuf]) -> Result<Vec<Self>> {
        paths.iter().map(|p| Self::load(p)).collect()
    }
}

/// Layout of a generated network under one home directory.
pub struct NetworkLayout {
    pub genesis: PathBuf,
    pub nodes: Vec<PathBuf>,
}

/// Deals a committee of `n` and writes `genesis.json` plus `validator-i/{node.toml,
/// validator.key}` under `home`. Ports: p2p `p2p_base + i`, API `api_base + i`. With `stake`,
/// each validator also gets an account (`validator-i/account.key`) that genesis bonds `stake`
/// for, and the chain runs proof of stake (`verity_state::modules::validators`).
pub fn write_network(
    home: &Path,
    mut chain: Genesis,
    n: u32,
    (p2p_base, api_base): (u16, u16),
    stake: Option<verity_types::Amount>,
) -> Result<NetworkLayout> {
    fs::create_dir_all(home).with_context(|| format!("creating {}", home.display()))?;
    let mut rng = rand_core::UnwrapErr(rand::rngs::SysRng);
    let (keys, sharing, shares) = committee::deal_committee(&mut rng, n)?;
    let host = "127.0.0.1";
    let validators: Vec<ValidatorInfo> = keys
        .iter()
        .enumerate()
        .map(|(i, k)| ValidatorInfo {
            public_key: committee::encode_hex(&k.public_key()),
            p2p: format!("{host}:{}", p2p_base + i as u16),
            api: format!("{host}:{}", api_base + i as u16),
        })
        .collect();
    if let Some(stake) = stake {
        for (i, (key, info)) in keys.iter().zip(&validators).enumerate() {
            let account = verity_types::AccountKey::generate();
            let dir = home.join(format!("validator-{i}"));
            fs::create_dir_all(&dir)?;
            write_secret(&dir.join("account.key"), account.secret_hex().as_bytes())?;
            chain.validators.push(verity_state::GenesisValidator {
                account: account.address(),
                identity: verity_types::ValidatorIdentity(crate::app::identity_bytes(
                    &key.public_key(),
                )),
                p2p: info.p2p.clone(),
                stake,
            });
        }
    }
    chain.validate()?;
    let genesis = GenesisFile {
        chain,
        validators: validators.clone(),
        threshold_polynomial: committee::encode_hex(&sharing),
    };
    let genesis_path = home.join("genesis.json");
    let mut nodes = Vec::new();
    for (i, (key, share)) in keys.iter().zip(shares).enumerate() {
        let dir = home.join(format!("validator-{i}"));
        fs::create_dir_all(&dir)?;
        let secrets = ValidatorKeys {
            identity: committee::encode_hex(key),
            share: committee::encode_hex(&share),
        };
        write_secret(
            &dir.join("validator.key"),
            &serde_json::to_vec_pretty(&secrets)?,
        )?;
        let config = NodeConfig {
            genesis: PathBuf::from("../genesis.json"),
            keys: PathBuf::from("validator.key"),
            data: PathBuf::from("data"),
            p2p_listen: validators[i].p2p.parse()?,
            api_listen: validators[i].api.parse()?,
            leader_timeout_ms: default_leader_timeout_ms(),
            blobs: Some(PathBuf::from("../blobs")),
            max_blob_bytes: default_max_blob_bytes(),
            ipfs: None,
            uploads: UploadPolicy::default(),
            api_limits: ApiLimits::default(),
        };
        let path = dir.join("node.toml");
        fs::write(&path, toml::to_string_pretty(&config)?)?;
        nodes.push(path);
    }
    // Written last and renamed into place: a setup stopped before this leaves no genesis, and
    // the next start redoes it whole.
    let partial = home.join("genesis.json.partial");
    fs::write(&partial, serde_json::to_vec_pretty(&genesis)?)?;
    fs::rename(&partial, &genesis_path)?;
    Ok(NetworkLayout {
        genesis: genesis_path,
        nodes,
    })
}

/// A loaded validator ready to start.
struct Loaded {
    config: NodeConfig,
    genesis: GenesisFile,
    identity: ed25519::PrivateKey,
    scheme: crate::app::Scheme,
    committee: Vec<ed25519::PublicKey>,
    index: usize,
}

fn load(config: NodeConfig) -> Result<Loaded> {
    let genesis: GenesisFile = serde_json::from_slice(
        &fs::read(&config.genesis)
            .with_context(|| format!("reading genesis {}", config.genesis.display()))?,
    )
    .with_context(|| format!("parsing genesis {}", config.genesis.display()))?;
    if genesis.chain.params.validators.rotate_committees {
        bail!(
            "this genesis hands consensus to stake-elected committees (validators.rotate_committees), \
             which needs threshold-key resharing that this node does not run yet; its genesis \
             committee signs every epoch without it"
        );
    }
    let keys: ValidatorKeys = serde_json::from_slice(
        &fs::read(&config.keys).with_context(|| format!("reading {}", config.keys.display()))?,
    )
    .context("parsing the validator key file")?;
    let identity = committee::decode_private_key(&keys.identity)?;
    let committee: Vec<ed25519::PublicKey> = genesis
        .validators
        .iter()
        .map(|v| committee::decode_public_key(&v.public_key))
        .collect::<Result<_, _>>()?;
    let Some(index) = committee.iter().position(|k| *k == identity.public_key()) else {
        bail!("this validator's key is not in the genesis committee");
    };
    let sharing = committee::decode_sharing(&genesis.threshold_polynomial, committee.len())?;
    let share = committee::decode_share(&keys.share)?;
    let scheme = committee::signer(&genesis.chain.chain_id, &committee, sharing, share)?;
    Ok(Loaded {
        config,
        genesis,
        identity,
        scheme,
        committee,
        index,
    })
}

/// A running validator, for callers that report where things are.
pub struct Started {
    pub node: Arc<NodeState>,
    pub api: SocketAddr,
    pub p2p: SocketAddr,
    pub data: PathBuf,
}

/// Starts the validators configured by `configs` in this runtime; returns once all are serving.
pub async fn start_nodes(
    context: &cw_tokio::Context,
    configs: Vec<NodeConfig>,
    cache: SenderCache,
) -> Result<Vec<Started>> {
    let mut started = Vec::new();
    for config in configs {
        let loaded = load(config)?;
        started.push(start_one(context, loaded, cache.clone()).await?);
    }
    Ok(started)
}

async fn start_one(
    context: &cw_tokio::Context,
    loaded: Loaded,
    cache: SenderCache,
) -> Result<Started> {
    let Loaded {
        config,
        genesis,
        identity,
        scheme,
        committee,
        index,
    } = loaded;
    fs::create_dir_all(&config.data)
        .with_context(|| format!("creating {}", config.data.display()))?;
    let store: Arc<dyn Store> = Arc::new(
        RedbStore::open(&config.data.join("state.redb")).context("opening the state store")?,
    );
    let blob_dir = config
        .blobs
        .clone()
        .unwrap_or_else(|| config.data.join("blobs"));
    let blobs = verity_data::BlobStore::open(&blob_dir, config.max_blob_bytes)
        .context("opening the blob store")?
        .with_disk_floor(config.uploads.disk_floor_bytes);
    let blobs = match &config.ipfs {
        Some(url) => blobs.with_ipfs(verity_data::ipfs::Ipfs::new(url)),
        None => blobs,
    };
    // Disputes re-execute a step from the model file itself, read from the blob store.
    let models = crate::model_files::source(blobs.clone())
        .with_language_dir(config.data.join("language-models"));
    let chain = Chain::open(store, genesis.chain.clone())?.with_models(models);
    let label = format!("v{index}");
    let (node, gossip) = NodeState::new(chain, cache, label.clone());
    crate::model_files::keep_pinned(node.clone(), blobs.clone());

    let context = context.child("validator").with_attribute("index", index);
    let namespace = committee::namespace(&genesis.chain.chain_id);
    let handshake = Cups::<_, ChaCha20Poly1305>::new(
        Sake {
            signer: identity.clone(),
            synchrony_bound: Duration::from_secs(5),
            max_handshake_age: Duration::from_secs(10),
            version: sake::Version::V1,
        },
        cups::Version::V1,
    );
    // Both listeners before any task starts: an address in use is then this error, not a panic
    // in commonware's listener task. The p2p probe is released for commonware to bind again.
    let listener = tokio::net::TcpListener::bind(config.api_listen)
        .await
        .with_context(|| format!("binding the API to {}", config.api_listen))?;
    let api_addr = listener.local_addr()?;
    drop(
        std::net::TcpListener::bind(config.p2p_listen)
            .with_context(|| format!("binding p2p to {}", config.p2p_listen))?,
    );
    let p2p_config = lookup::Config::local(
        handshake,
        &namespace,
        config.p2p_listen,
        NZUsize!(committee.len().max(1)),
        validator::max_message_size(),
        NZUsize!(4096),
    );
    let (mut network, mut oracle) = lookup::Network::new(context.child("p2p"), p2p_config);
    let peers: Vec<(ed25519::PublicKey, commonware_p2p::Address)> = committee
        .iter()
        .zip(&genesis.validators)
        .map(|(key, info)| {
            let addr: SocketAddr = info
                .p2p
                .parse()
                .with_context(|| format!("validator p2p address {:?}", info.p2p))?;
            Ok((key.clone(), addr.into()))
        })
        .collect::<Result<_>>()?;
    let peers: Map<_, _> = peers
        .try_into()
        .map_err(|_| anyhow::anyhow!("genesis lists a validator twice"))?;
    oracle.track(0, peers);
    let quota = validator::channel_quota();
    let mut register = |c| network.register(c, quota);
    let channels = Channels {
        votes: register(channel::VOTES),
        certificates: register(channel::CERTIFICATES),
        resolver: register(channel::RESOLVER),
        backfill: register(channel::BACKFILL),
        blocks: register(channel::BLOCKS),
        txs: register(channel::TXS),
    };
    network.start();

    let genesis_block = Block::genesis(&genesis.chain.hash(), genesis.chain.genesis_time_ms);
    validator::start(
        context.child("node"),
        ValidatorConfig {
            public_key: identity.public_key(),
            scheme,
            partition_prefix: label.clone(),
            genesis: genesis_block,
            node: node.clone(),
            leader_timeout: Duration::from_millis(config.leader_timeout_ms),
        },
        oracle.clone(),
        oracle,
        channels,
        gossip,
    )
    .await;

    let metrics_context = context.child("api");
    let state = ApiState {
        blobs,
        uploads: config.uploads.clone(),
        quotas: Arc::new(Quotas::default()),
        node: node.clone(),
        validators: Arc::new(genesis.validators.clone()),
        metrics: Arc::new(move || metrics_context.encode()),
        index,
    };
    let router = api::router(state, &config.api_limits);
    let listener = LimitedListener::new(listener, config.api_limits.max_connections);
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, router).await {
            tracing::error!(error = %e, "API server stopped");
        }
    });
    Ok(Started {
        node,
        api: api_addr,
        p2p: config.p2p_listen,
        data: config.data,
    })
}

/// A tokio-backed commonware runtime storing consensus data under `dir`.
pub fn runner(dir: &Path) -> cw_tokio::Runner {
    cw_tokio::Runner::new(cw_tokio::Config::new().with_storage_directory(dir))
}
