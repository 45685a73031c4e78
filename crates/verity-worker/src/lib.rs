//! The worker (DESIGN §1): stakes, creates its enclave key and registers it with attestation
//! evidence, watches its assignments, fetches inputs, runs the model with `verity-infer`,
//! uploads the output, and submits enclave-signed receipts in batches. Its coordinator duties
//! (dispatch across cores, latency tracking, batching receipts into transactions) live here too.

mod journal;
mod output;
mod service;
pub mod tensor_file;

pub use output::output_document;
pub use service::{compute, run, Computed, WorkerConfig, WorkerStats};
pub use verity_tee::produce::TeeSource;

use std::path::Path;

use anyhow::{Context, Result};
use verity_types::EnclaveKey;

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

/// Writes a file readable only by its owner.
pub fn write_secret(path: &Path, contents: &[u8]) -> Result<()> {
    use std::io::Write as _;
    #[cfg(unix)]
    use std::os::unix::fs::OpenOptionsExt as _;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    options.mode(0o600);
    let mut file = options
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    file.write_all(contents)?;
    file.sync_all()?;
    Ok(())
}
