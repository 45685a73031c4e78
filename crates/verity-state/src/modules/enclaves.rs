//! `enclaves`: the chain's attestation policy and the enclave keys registered under it.
//!
//! Evidence is verified once, at RegisterEnclave, with the block's timestamp as `now`; its
//! report_data must bind the enclave key to the signer and this chain. Each task then costs one
//! signature check against a registered, unexpired key.

use serde::{Deserialize, Serialize};
use verity_tee::{Evidence, Policy, TeeKind};
use verity_types::Address;

use crate::overlay::Overlay;
use crate::store::Table;
use crate::{BlockCtx, StateError, TxFailure};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Enclave {
    pub worker: Address,
    #[serde(with = "verity_types::serde_hex::array")]
    pub key: [u8; 32],
    pub kind: TeeKind,
    #[serde(with = "verity_types::serde_hex::bytes")]
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
    let policy = Policy::parse(text).map_err(|e| TxFailure::Invalid {
        reason: e.to_string(),
    })?;
    put_policy(state, &policy);
    Ok(())
}

/// RegisterEnclave: verifies the evidence at the block's time against the chain's policy and
/// checks that it binds `key` to `worker` on this chain. Registering again (re-attestation)
/// renews the key's expiry.
pub fn register(
    state: &mut Overlay<'_>,
    ctx: &BlockCtx<'_>,
    worker: &Address,
    kind: &str,
    key: &[u8; 32],
    evidence: &Evidence,
) -> Result<Enclave, TxFailure> {
    let rejected = |reason: String| TxFailure::Attestation { reason };
    let kind: TeeKind = kind
        .parse()
        .map_err(|e: verity_tee::AttestationError| rejected(e.to_string()))?;
    let policy =
        policy(state)?.ok_or_else(|| rejected("this chain has no attestation policy".into()))?;
    let now_secs = ctx.timestamp_ms / 1000;
    let verified = verity_tee::verify(kind, evidence, &policy, now_secs)
        .map_err(|e| rejected(e.to_string()))?;
    verified
        .check_binding(&ctx.genesis.chain_id, worker, key)
        .map_err(|e| rejected(e.to_string()))?;
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
    state.put_json(Table::Enclaves, key_entry(key), &enclave);
    state.put(Table::Enclaves, worker_entry(worker), key.to_vec());
    Ok(enclave)
}
