//! Binding an enclave key to evidence: the enclave puts a digest of its public key, the chain id
//! and its worker's address in report_data, so evidence cannot be replayed for another key, chain
//! or worker.

use sha2::{Digest, Sha512};
use verity_types::Address;

/// Domain tag of the report_data digest.
pub const REPORT_DATA_DOMAIN: &[u8] = b"verity/enclave-key/v1";

/// report_data = SHA-512(domain ‖ len(chain id) u32 LE ‖ chain id ‖ worker address ‖ enclave
/// public key): 64 bytes, the size of the report_data field of TDX, SGX and SNP reports.
pub fn enclave_report_data(chain_id: &str, worker: &Address, enclave_key: &[u8]) -> [u8; 64] {
    let mut hasher = Sha512::new();
    hasher.update(REPORT_DATA_DOMAIN);
    hasher.update((chain_id.len() as u32).to_le_bytes());
    hasher.update(chain_id.as_bytes());
    hasher.update(worker.0);
    hasher.update(enclave_key);
    hasher.finalize().into()
}

impl crate::VerifiedEnclave {
    /// Checks that this evidence commits to `enclave_key` for `worker` on `chain_id`.
    pub fn check_binding(
        &self,
        chain_id: &str,
        worker: &Address,
        enclave_key: &[u8],
    ) -> Result<(), crate::AttestationError> {
        let expected = enclave_report_data(chain_id, worker, enclave_key);
        if self.report_data.as_slice() == expected.as_slice() {
            Ok(())
        } else {
            Err(crate::AttestationError::ReportDataMismatch)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_input_changes_the_digest() {
        let worker = Address([1; 20]);
        let base = enclave_report_data("verity-devnet", &worker, b"key");
        assert_ne!(base, enclave_report_data("verity-other", &worker, b"key"));
        assert_ne!(
            base,
            enclave_report_data("verity-devnet", &Address([2; 20]), b"key")
        );
        assert_ne!(base, enclave_report_data("verity-devnet", &worker, b"kez"));
        // The length prefix keeps chain id and address from sliding into each other.
        assert_ne!(
            enclave_report_data("a", &worker, b""),
            enclave_report_data("", &worker, b"")
        );
    }
}
