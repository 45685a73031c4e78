//! The worker (ARCHITECTURE.md, crate map): stakes, creates its enclave key and registers it with attestation
//! evidence, watches its assignments, fetches inputs, runs the model with `verity-infer`,
//! uploads the output, and submits enclave-signed receipts in batches. Its coordinator duties
//! (dispatch across cores, latency tracking, batching receipts into transactions) live here too.

mod challenger;
pub mod data;
pub mod disputes;
mod journal;
pub mod language;
mod service;
mod zk;

pub use challenger::{run_challenger, ChallengerConfig};
pub use data::DataVerifierConfig;
pub use service::{compute, render_metrics, run, Computed, WorkerConfig, WorkerStats};
pub use verity_tee::produce::TeeSource;

use std::path::Path;

use anyhow::{Context, Result};
use verity_types::{write_secret, EnclaveKey};

/// Loads the enclave key at `path`, creating it (mode 0600) on first use.
pub fn load_or_create_enclave_key(path: &Path) -> Result<EnclaveKey> {
    if path.exists() {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading enclave key {}", path.display()))?;
        let seed: [u8; 32] = hex::decode(text.trim())
            .ok()
            .and_then(|b| b.try_into().ok())
            .with_context(|| format!("{} is not 32 bytes of hex", path.display()))?;
        return Ok(EnclaveKey::from_seed(seed));
    }
    let key = EnclaveKey::generate();
    write_secret(path, hex::encode(key.seed()).as_bytes())?;
    Ok(key)
}
