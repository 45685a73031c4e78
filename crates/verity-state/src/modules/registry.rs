//! `registry`: models and datasets, their owners, and ownership transfers.
//!
//! Registration is commit–reveal: a registration reveals the salt of a commitment
//! (`verity_types::registration_commitment`) its signer made in an earlier block. Whoever sees a
//! registration in the mempool, or the file in a blob store, cannot take the model or dataset
//! (and its owner share) by registering it first: they would need a commitment of their own from
//! an earlier block, made before they could know the file.

use serde::{Deserialize, Serialize};
use verity_types::{Address, Anchor, Asset, DataRef, Hash, LanguageSpec, Mode, ModelSpec};

use crate::modules::{enclaves, schedule};
use crate::overlay::Overlay;
use crate::store::Table;
use crate::{BlockCtx, StateError, TxFailure};

/// What the chain recorded of an ownership anchor: which attested enclave hashed the file for
/// the owner, and when. A registration without one is shown as an unanchored claim.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AnchorRecord {
    /// The worker whose enclave signed.
    pub worker: Address,
    #[serde(with = "verity_types::serde_hex::array")]
    #[schema(schema_with = verity_types::schema::hex_bytes)]
    pub enclave_key: [u8; 32],
    pub tee_kind: verity_tee::TeeKind,
    #[serde(with = "verity_types::serde_hex::bytes")]
    #[schema(schema_with = verity_types::schema::hex_bytes)]
    pub measurement: Vec<u8>,
    pub height: u64,
    /// Block time, Unix milliseconds.
    pub timestamp_ms: u64,
}

/// Checks an anchor of `id` for `owner`: signed by a registered enclave that is live and still
/// accepted by the policy, over this chain, asset, id and owner.
fn check_anchor(
    state: &Overlay<'_>,
    ctx: &BlockCtx<'_>,
    anchor: &Anchor,
    asset: Asset,
    id: &Hash,
    owner: &Address,
) -> Result<AnchorRecord, TxFailure> {
    let enclave =
        enclaves::by_key(state, &anchor.enclave_key)?.ok_or_else(|| TxFailure::Unauthorized {
            reason: "the anchor's enclave key is not registered".into(),
        })?;
    if !enclaves::is_usable(state, &enclave, ctx.timestamp_ms)? {
        return Err(TxFailure::Unauthorized {
            reason: "the anchor's enclave attestation has expired or is no longer accepted".into(),
        });
    }
    anchor
        .verify(&ctx.genesis.chain_id, asset, id, owner)
        .map_err(|e| TxFailure::Unauthorized {
            reason: format!("anchor: {e} (it must name this file and owner)"),
        })?;
    Ok(AnchorRecord {
        worker: enclave.worker,
        enclave_key: enclave.key,
        tee_kind: enclave.kind,
        measurement: enclave.measurement,
        height: ctx.height,
        timestamp_ms: ctx.timestamp_ms,
    })
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Model {
    #[serde(flatten)]
    pub spec: ModelSpec,
    pub owner: Address,
    pub registered_height: u64,
    /// Its Groth16 keys, once the owner set them: `tee_zk` tasks need them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zk: Option<ZkKeys>,
    /// The enclave that anchored the owner's claim; none: an unanchored claim.
    #[serde(default)]
    pub anchor: Option<AnchorRecord>,
}

/// A model's Groth16 keys (`docs/protocol.md` §13).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ZkKeys {
    /// Compressed arkworks encoding, three public inputs.
    #[serde(with = "verity_types::serde_hex::bytes")]
    #[schema(schema_with = verity_types::schema::hex_bytes)]
    pub verifying_key: Vec<u8>,
    /// SHA-256 of the proving key's blob.
    pub proving_key: Hash,
    pub set_height: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Dataset {
    pub dataset_id: Hash,
    pub name: String,
    pub data: DataRef,
    pub license: String,
    pub owner: Address,
    pub registered_height: u64,
    /// The enclave that anchored the owner's claim; none: an unanchored claim.
    #[serde(default)]
    pub anchor: Option<AnchorRecord>,
}

/// Key prefixes: one entry per model, per dataset and per open commitment.
pub const MODEL_PREFIX: &[u8] = b"m";
pub const DATASET_PREFIX: &[u8] = b"d";
const COMMITMENT_PREFIX: &[u8] = b"c";

/// An open registration commitment: the height it was made at.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Commitment {
    height: u64,
}

/// Under its signer: someone who copies a commitment from the mempool records it under their
/// own address, where it can neither block nor serve the author's.
fn commitment_key(owner: &Address, commitment: &Hash) -> Vec<u8> {
    [COMMITMENT_PREFIX, &owner.0, &commitment.0].concat()
}

/// CommitRegistration: records `commitment` for its signer until it is revealed or, unrevealed
/// for `registration_commitment_blocks`, pruned.
pub fn commit(
    state: &mut Overlay<'_>,
    ctx: &BlockCtx<'_>,
    owner: &Address,
    commitment: &Hash,
) -> Result<(), TxFailure> {
    let key = commitment_key(owner, commitment);
    if state.get(Table::Registry, &key)?.is_some() {
        return Err(TxFailure::Invalid {
            reason: format!("commitment {commitment} is already recorded"),
        });
    }
    state.put_json(
        Table::Registry,
        key.clone(),
        &Commitment { height: ctx.height },
    );
    let ttl = ctx.genesis.params.tasks.registration_commitment_blocks;
    schedule::push(
        state,
        schedule::Kind::CommitmentExpiry,
        ctx.height.saturating_add(ttl).saturating_add(1),
        &key,
    )?;
    Ok(())
}

/// Prunes the commitments left unrevealed too long.
pub fn begin_block(state: &mut Overlay<'_>, ctx: &BlockCtx<'_>) -> Result<(), StateError> {
    let ttl = ctx.genesis.params.tasks.registration_commitment_blocks;
    for key in schedule::take::<Vec<u8>>(state, schedule::Kind::CommitmentExpiry, ctx.height)? {
        // Revealed and made again since, the key holds a younger commitment: keep that one.
        let found: Option<Commitment> = state.get_json(Table::Registry, &key, "commitment")?;
        if found.is_some_and(|c| c.height.saturating_add(ttl) < ctx.height) {
            state.delete(Table::Registry, key);
        }
    }
    Ok(())
}

/// Consumes the signer's commitment to registering `id` with `salt`, which must be from an
/// earlier block.
fn reveal(
    state: &mut Overlay<'_>,
    owner: &Address,
    height: u64,
    asset: Asset,
    id: &Hash,
    salt: &Hash,
) -> Result<(), TxFailure> {
    let commitment = verity_types::registration_commitment(asset, id, owner, salt);
    let key = commitment_key(owner, &commitment);
    let found: Option<Commitment> = state.get_json(Table::Registry, &key, "commitment")?;
    match found {
        Some(c) if c.height < height => {
            state.delete(Table::Registry, key);
            Ok(())
        }
        Some(_) => Err(TxFailure::Invalid {
            reason: format!(
                "the commitment to {id} is from this block; reveal it in a later one"
            ),
        }),
        None => Err(TxFailure::Unauthorized {
            reason: format!(
                "no commitment by {owner} to registering {id} with this salt (never made, or unrevealed too long and pruned); send CommitRegistration in an earlier block"
            ),
        }),
    }
}

/// The loosest tolerance a model may declare: 100 %.
pub const MAX_TOLERANCE_PPM: u32 = 1_000_000;

pub fn model_key(id: &Hash) -> Vec<u8> {
    [MODEL_PREFIX, &id.0].concat()
}

pub fn dataset_key(id: &Hash) -> Vec<u8> {
    [DATASET_PREFIX, &id.0].concat()
}

pub fn model(state: &Overlay<'_>, id: &Hash) -> Result<Option<Model>, StateError> {
    state.get_json(Table::Registry, &model_key(id), "model")
}

pub fn dataset(state: &Overlay<'_>, id: &Hash) -> Result<Option<Dataset>, StateError> {
    state.get_json(Table::Registry, &dataset_key(id), "dataset")
}

fn non_empty(what: &str, value: &str) -> Result<(), TxFailure> {
    if value.trim().is_empty() {
        return Err(TxFailure::Invalid {
            reason: format!("{what} must not be empty"),
        });
    }
    Ok(())
}

pub fn register_model(
    state: &mut Overlay<'_>,
    ctx: &BlockCtx<'_>,
    owner: &Address,
    spec: &ModelSpec,
    salt: &Hash,
    anchor: Option<&Anchor>,
) -> Result<(), TxFailure> {
    let height = ctx.height;
    non_empty("model name", &spec.name)?;
    non_empty("model version", &spec.version)?;
    if spec.allowed_modes.is_empty() {
        return Err(TxFailure::Invalid {
            reason: "a model must allow at least one verification mode".into(),
        });
    }
    if spec.size == 0 {
        return Err(TxFailure::Invalid {
            reason: "model size must be positive".into(),
        });
    }
    if spec.tolerance_ppm > MAX_TOLERANCE_PPM {
        return Err(TxFailure::Invalid {
            reason: format!(
                "a tolerance of {} ppm is over 100 % ({MAX_TOLERANCE_PPM} ppm)",
                spec.tolerance_ppm
            ),
        });
    }
    if let Some(language) = &spec.language {
        check_language_model(spec, language)?;
        if anchor.is_some() {
            return Err(TxFailure::Invalid {
                reason: "a language model's ownership anchor is not supported yet: register it without one".into(),
            });
        }
    }
    if model(state, &spec.model_id)?.is_some() {
        return Err(TxFailure::Invalid {
            reason: format!("model {} is already registered", spec.model_id),
        });
    }
    reveal(state, owner, height, Asset::Model, &spec.model_id, salt)?;
    let anchor = anchor
        .map(|a| check_anchor(state, ctx, a, Asset::Model, &spec.model_id, owner))
        .transpose()?;
    let record = Model {
        spec: spec.clone(),
        owner: *owner,
        registered_height: height,
        zk: None,
        anchor,
    };
    state.put_json(Table::Registry, model_key(&spec.model_id), &record);
    Ok(())
}

/// A language model's registration: its id is the hash of its files, it is a transformer, it
/// runs bit-exact in `tee` or `op`, and its context holds at least one token in and one out.
fn check_language_model(spec: &ModelSpec, language: &LanguageSpec) -> Result<(), TxFailure> {
    let invalid = |reason: String| Err(TxFailure::Invalid { reason });
    if spec.model_id != language.model_id() {
        return invalid(format!(
            "a language model's id is the hash of its files ({}), not {}",
            language.model_id(),
            spec.model_id
        ));
    }
    if spec.architecture != verity_types::language::TRANSFORMER {
        return invalid(format!(
            "a language model's architecture is {:?}, not {:?}",
            verity_types::language::TRANSFORMER,
            spec.architecture
        ));
    }
    if spec.allowed_modes.contains(&Mode::TeeZk) {
        return invalid(
            "tee_zk is for small integer models: proving a language model's forward passes is out of reach, so it allows tee and op".into(),
        );
    }
    if spec.tolerance_ppm != 0 {
        return invalid(
            "a language model is bit-exact: its sampled tokens depend on every bit of the logits"
                .into(),
        );
    }
    if language.context < 2 {
        return invalid(format!(
            "a context of {} tokens holds no prompt and answer",
            language.context
        ));
    }
    if language
        .blobs()
        .iter()
        .any(|file| file.encrypted || file.size == 0)
    {
        return invalid("a language model's files are plain and not empty".into());
    }
    if let Some(weights) = &language.weights {
        if weights.chunks.is_empty() || weights.size().is_none() {
            return invalid("a weights file has at least one part, and a size that fits".into());
        }
        let name = weights.name.as_str();
        let plain = !name.is_empty()
            && !name.starts_with('.')
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
        if !plain || ["model.onnx", "tokenizer.json", "generation.json"].contains(&name) {
            return invalid(format!(
                "the weights file name {name:?} must be a plain file name (letters, digits, . _ -) other than the model's other files"
            ));
        }
    }
    if spec.size != language.graph.size {
        return invalid(format!(
            "the model size {} is not its graph file's size {}",
            spec.size, language.graph.size
        ));
    }
    Ok(())
}

/// SetZkKeys: the owner of a model that allows `tee_zk` sets its keys, once. The verifying key
/// must decode (its points on the curve, for three public inputs).
pub fn set_zk_keys(
    state: &mut Overlay<'_>,
    sender: &Address,
    height: u64,
    model_id: &Hash,
    verifying_key: &[u8],
    proving_key: &Hash,
) -> Result<(), TxFailure> {
    let mut record = model(state, model_id)?.ok_or_else(|| TxFailure::NotFound {
        what: format!("model {model_id}"),
    })?;
    if record.owner != *sender {
        return Err(TxFailure::Unauthorized {
            reason: format!(
                "only the owner {} may set the keys of {model_id}",
                record.owner
            ),
        });
    }
    if !record.spec.allowed_modes.contains(&Mode::TeeZk) {
        return Err(TxFailure::Invalid {
            reason: format!("model {model_id} does not allow tee_zk"),
        });
    }
    if record.zk.is_some() {
        return Err(TxFailure::Invalid {
            reason: format!("model {model_id} already has its zk keys; they never change"),
        });
    }
    verity_zk::VerifyingKey::from_bytes(verifying_key).map_err(|e| TxFailure::Invalid {
        reason: e.to_string(),
    })?;
    record.zk = Some(ZkKeys {
        verifying_key: verifying_key.to_vec(),
        proving_key: *proving_key,
        set_height: height,
    });
    state.put_json(Table::Registry, model_key(model_id), &record);
    Ok(())
}

#[allow(clippy::too_many_arguments)]
pub fn register_dataset(
    state: &mut Overlay<'_>,
    ctx: &BlockCtx<'_>,
    owner: &Address,
    name: &str,
    data: &DataRef,
    license: &str,
    salt: &Hash,
    anchor: Option<&Anchor>,
) -> Result<(), TxFailure> {
    let height = ctx.height;
    non_empty("dataset name", name)?;
    if dataset(state, &data.hash)?.is_some() {
        return Err(TxFailure::Invalid {
            reason: format!("dataset {} is already registered", data.hash),
        });
    }
    reveal(state, owner, height, Asset::Dataset, &data.hash, salt)?;
    let anchor = anchor
        .map(|a| check_anchor(state, ctx, a, Asset::Dataset, &data.hash, owner))
        .transpose()?;
    let record = Dataset {
        dataset_id: data.hash,
        name: name.to_string(),
        data: *data,
        license: license.to_string(),
        owner: *owner,
        registered_height: height,
        anchor,
    };
    state.put_json(Table::Registry, dataset_key(&data.hash), &record);
    Ok(())
}

pub fn transfer_ownership(
    state: &mut Overlay<'_>,
    sender: &Address,
    asset: Asset,
    id: &Hash,
    to: &Address,
) -> Result<(), TxFailure> {
    let not_owner = |owner: &Address| TxFailure::Unauthorized {
        reason: format!("only the owner {owner} may transfer {id}"),
    };
    match asset {
        Asset::Model => {
            let mut record = model(state, id)?.ok_or_else(|| TxFailure::NotFound {
                what: format!("model {id}"),
            })?;
            if record.owner != *sender {
                return Err(not_owner(&record.owner));
            }
            record.owner = *to;
            state.put_json(Table::Registry, model_key(id), &record);
        }
        Asset::Dataset => {
            let mut record = dataset(state, id)?.ok_or_else(|| TxFailure::NotFound {
                what: format!("dataset {id}"),
            })?;
            if record.owner != *sender {
                return Err(not_owner(&record.owner));
            }
            record.owner = *to;
            state.put_json(Table::Registry, dataset_key(id), &record);
        }
    }
    Ok(())
}
