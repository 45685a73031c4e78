//! `enclaves`: the chain's attestation policy and the enclave keys registered under it.
//!
//! Evidence is verified once, at RegisterEnclave, with the block's timestamp as `now`; its
//! report_data must bind the enclave key to the signer, this chain and a recent block's
//! attestation nonce. Each task then costs one signature check against a registered, unexpired
//! key.

use serde::{Deserialize, Serialize};
use verity_tee::{attestation_nonce, Binding, Evidence, Policy, TeeKind};
use verity_types::Address;

use crate::overlay::Overlay;
use crate::store::Table;
use crate::{BlockCtx, BlockRecord, StateError, TxFailure};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Enclave {
    pub worker: Address,
    #[serde(with = "verity_types::serde_hex::array")]
    #[schema(schema_with = verity_types::schema::hex_bytes)]
    pub key: [u8; 32],
    pub kind: TeeKind,
    #[serde(with = "verity_types::serde_hex::bytes")]
    #[schema(schema_with = verity_types::schema::hex_bytes)]
    pub measurement: Vec<u8>,
    pub tcb_status: String,
    pub registered_height: u64,
    /// Block time of the attestation, Unix milliseconds.
    pub attested_at_ms: u64,
    pub expires_at_ms: u64,
}

impl Enclave {
    /// A software enclave: shown everywhere as "dev TEE, not hardware-backed".
    pub fn is_dev(&self) -> bool {
        self.kind == TeeKind::Dev
    }

    pub fn is_live(&self, now_ms: u64) -> bool {
        now_ms < self.expires_at_ms
    }
}

const POLICY: &[u8] = b"policy";

fn key_entry(key: &[u8; 32]) -> Vec<u8> {
    [b"k".as_slice(), key].concat()
}

fn worker_entry(worker: &Address) -> Vec<u8> {
    [b"w".as_slice(), &worker.0].concat()
}

pub fn policy(state: &Overlay<'_>) -> Result<Option<Policy>, StateError> {
    state.get_json(Table::Enclaves, POLICY, "attestation policy")
}

pub fn put_policy(state: &mut Overlay<'_>, policy: &Policy) {
    state.put_json(Table::Enclaves, POLICY.to_vec(), policy);
}

pub fn by_key(state: &Overlay<'_>, key: &[u8; 32]) -> Result<Option<Enclave>, StateError> {
    state.get_json(Table::Enclaves, &key_entry(key), "enclave")
}

/// The worker's most recently registered enclave.
/// Whether `enclave` may sign results now: unexpired, and its kind and measurement still
/// accepted by the chain's policy (governance may have removed them since it registered).
pub fn is_usable(state: &Overlay<'_>, enclave: &Enclave, now_ms: u64) -> Result<bool, StateError> {
    if !enclave.is_live(now_ms) {
        return Ok(false);
    }
    Ok(policy(state)?.is_some_and(|p| p.accepts(enclave.kind, &enclave.measurement)))
}

pub fn current(state: &Overlay<'_>, worker: &Address) -> Result<Option<Enclave>, StateError> {
    let Some(raw) = state.get(Table::Enclaves, &worker_entry(worker))? else {
        return Ok(None);
    };
    let key: [u8; 32] = raw
        .try_into()
        .map_err(|_| StateError::Corrupt("worker enclave key"))?;
    by_key(state, &key)
}

pub fn set_policy(
    state: &mut Overlay<'_>,
    ctx: &BlockCtx<'_>,
    sender: &Address,
    raw: &[u8],
) -> Result<(), TxFailure> {
    match ctx.genesis.params.governance {
        Some(governance) if governance == *sender => {}
        Some(governance) => {
            return Err(TxFailure::Unauthorized {
                reason: format!("only the governance account {governance} may set the policy"),
            })
        }
        None => {
            return Err(TxFailure::Unauthorized {
                reason: "this chain has no governance account".into(),
            })
        }
    }
    let text = std::str::from_utf8(raw).map_err(|_| TxFailure::Invalid {
        reason: "policy is not UTF-8".into(),
    })?;
    let policy = Policy::parse(text).map_err(|e| TxFailure::Attestation {
        reason: "the attestation policy does not parse".into(),
        detail: e.to_string(),
    })?;
    put_policy(state, &policy);
    Ok(())
}

/// The attestation nonce block `height` issued, and the block's time (Unix milliseconds).
pub fn nonce_at(
    state: &Overlay<'_>,
    chain_id: &str,
    height: u64,
) -> Result<Option<([u8; 32], u64)>, StateError> {
    let block: Option<BlockRecord> =
        state.get_json(Table::Blocks, &height.to_be_bytes(), "block")?;
    Ok(block.map(|b| {
        (
            attestation_nonce(chain_id, height, &b.hash.0),
            b.timestamp_ms,
        )
    }))
}

/// What a RegisterEnclave transaction claims.
pub struct Claim<'a> {
    pub kind: &'a str,
    pub key: &'a [u8; 32],
    pub nonce_height: u64,
    pub evidence: &'a Evidence,
}

/// RegisterEnclave: verifies the evidence at the block's time against the chain's policy and
/// checks that it binds `key` to `worker` on this chain and a recent block's nonce, whose time
/// bounds the evidence's age. Registering again (re-attestation) renews the key's expiry.
pub fn register(
    state: &mut Overlay<'_>,
    ctx: &BlockCtx<'_>,
    worker: &Address,
    claim: &Claim<'_>,
) -> Result<Enclave, TxFailure> {
    let rejected = |reason: String| TxFailure::Attestation {
        reason,
        detail: String::new(),
    };
    let kind: TeeKind = claim
        .kind
        .parse()
        .map_err(|e: verity_tee::AttestationError| TxFailure::attestation(&e))?;
    let policy =
        policy(state)?.ok_or_else(|| rejected("this chain has no attestation policy".into()))?;
    let window = ctx.genesis.params.tasks.attestation_nonce_blocks;
    let nonce_height = claim.nonce_height;
    if nonce_height == 0 || nonce_height >= ctx.height {
        return Err(rejected(format!(
            "nonce height {nonce_height} is not a finalized block before this one ({})",
            ctx.height
        )));
    }
    if ctx.height - nonce_height > window {
        return Err(rejected(format!(
            "the nonce of block {nonce_height} is stale: {} blocks old, at most {window} accepted",
            ctx.height - nonce_height
        )));
    }
    let (nonce, nonce_time_ms) = nonce_at(state, &ctx.genesis.chain_id, nonce_height)?
        .ok_or(StateError::Corrupt("missing block record"))?;
    let now_secs = ctx.timestamp_ms / 1000;
    let verified = verity_tee::verify(kind, claim.evidence, &policy, now_secs)
        .map_err(|e| TxFailure::attestation(&e))?;
    let binding = Binding {
        chain_id: &ctx.genesis.chain_id,
        worker,
        enclave_key: claim.key,
        nonce: &nonce,
    };
    verified
        .check_binding(&binding)
        .and_then(|()| policy.check_age(nonce_time_ms / 1000, now_secs))
        .map_err(|e| TxFailure::attestation(&e))?;
    let key = claim.key;
    if let Some(existing) = by_key(state, key)? {
        if existing.worker != *worker {
            return Err(rejected(format!(
                "enclave key is registered to another worker, {}",
                existing.worker
            )));
        }
    }
    let ttl_ms = ctx
        .genesis
        .params
        .tasks
        .enclave_ttl_secs
        .saturating_mul(1000);
    let enclave = Enclave {
        worker: *worker,
        key: *key,
        kind,
        measurement: verified.measurement,
        tcb_status: verified.tcb_status,
        registered_height: ctx.height,
        attested_at_ms: ctx.timestamp_ms,
        expires_at_ms: ctx.timestamp_ms.saturating_add(ttl_ms),
    };
    insert(state, &enclave);
    Ok(enclave)
}

/// Records a verified enclave as its worker's current one.
pub fn insert(state: &mut Overlay<'_>, enclave: &Enclave) {
    state.put_json(Table::Enclaves, key_entry(&enclave.key), enclave);
    state.put(
        Table::Enclaves,
        worker_entry(&enclave.worker),
        enclave.key.to_vec(),
    );
}
