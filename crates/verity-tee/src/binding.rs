//! Binding an enclave key to evidence: the enclave puts a digest of its public key, the chain id,
//! its worker's address and a nonce the chain issued in report_data, so evidence cannot be
//! replayed for another key, chain or worker, nor kept and replayed later.
//!
//! Freshness: every finalized block issues an attestation nonce (a digest of the block's hash).
//! Evidence that binds it cannot have been made before that block, so the block's timestamp
//! bounds the evidence's age — also for TDX, SGX and SNP reports, which carry no time of their
//! own.

use sha2::{Digest, Sha256, Sha512};
use verity_types::Address;

use crate::{AttestationError, VerifiedEnclave};

/// Domain tag of the report_data digest.
pub const REPORT_DATA_DOMAIN: &[u8] = b"verity/enclave-key/v2";
/// Domain tag of a block's attestation nonce.
pub const ATTESTATION_NONCE_DOMAIN: &[u8] = b"verity/attestation-nonce/v1";

/// The attestation nonce block `height` (with hash `block_hash`) issues on `chain_id`.
pub fn attestation_nonce(chain_id: &str, height: u64, block_hash: &[u8; 32]) -> [u8; 32] {
    let mut hasher = Sha256::new();
    hasher.update(ATTESTATION_NONCE_DOMAIN);
    hasher.update((chain_id.len() as u32).to_le_bytes());
    hasher.update(chain_id.as_bytes());
    hasher.update(height.to_be_bytes());
    hasher.update(block_hash);
    hasher.finalize().into()
}

/// What evidence must commit to, to register an enclave key.
#[derive(Debug, Clone, Copy)]
pub struct Binding<'a> {
    pub chain_id: &'a str,
    pub worker: &'a Address,
    pub enclave_key: &'a [u8],
    /// The chain's attestation nonce the evidence was made for.
    pub nonce: &'a [u8; 32],
}

impl Binding<'_> {
    /// report_data = SHA-512(domain ‖ len(chain id) u32 LE ‖ chain id ‖ worker address ‖ nonce ‖
    /// enclave public key): 64 bytes, the size of the report_data field of TDX, SGX and SNP
    /// reports.
    pub fn report_data(&self) -> [u8; 64] {
        let mut hasher = Sha512::new();
        hasher.update(REPORT_DATA_DOMAIN);
        hasher.update((self.chain_id.len() as u32).to_le_bytes());
        hasher.update(self.chain_id.as_bytes());
        hasher.update(self.worker.0);
        hasher.update(self.nonce);
        hasher.update(self.enclave_key);
        hasher.finalize().into()
    }
}

impl VerifiedEnclave {
    /// Checks that this evidence commits to `binding`: report_data, and for Nitro documents the
    /// `nonce` and `public_key` fields where the enclave filled them in.
    pub fn check_binding(&self, binding: &Binding<'_>) -> Result<(), AttestationError> {
        if self.report_data.as_slice() != binding.report_data().as_slice() {
            return Err(AttestationError::ReportDataMismatch);
        }
        if let Some(nonce) = &self.nonce {
            if nonce.as_slice() != binding.nonce.as_slice() {
                return Err(AttestationError::NonceMismatch);
            }
        }
        if let Some(key) = &self.public_key {
            if key.as_slice() != binding.enclave_key {
                return Err(AttestationError::PublicKeyMismatch);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::TeeKind;

    fn binding<'a>(chain: &'a str, worker: &'a Address, key: &'a [u8]) -> Binding<'a> {
        Binding {
            chain_id: chain,
            worker,
            enclave_key: key,
            nonce: &[5; 32],
        }
    }

    #[test]
    fn every_input_changes_the_digest() {
        let worker = Address([1; 20]);
        let base = binding("verity-devnet", &worker, b"key").report_data();
        assert_ne!(base, binding("verity-other", &worker, b"key").report_data());
        assert_ne!(
            base,
            binding("verity-devnet", &Address([2; 20]), b"key").report_data()
        );
        assert_ne!(
            base,
            binding("verity-devnet", &worker, b"kez").report_data()
        );
        let other_nonce = Binding {
            nonce: &[6; 32],
            ..binding("verity-devnet", &worker, b"key")
        };
        assert_ne!(base, other_nonce.report_data());
        // The length prefix keeps chain id and address from sliding into each other.
        assert_ne!(
            binding("a", &worker, b"").report_data(),
            binding("", &worker, b"").report_data()
        );
    }

    #[test]
    fn nonces_differ_per_chain_height_and_block() {
        let base = attestation_nonce("c", 1, &[0; 32]);
        assert_ne!(base, attestation_nonce("d", 1, &[0; 32]));
        assert_ne!(base, attestation_nonce("c", 2, &[0; 32]));
        assert_ne!(base, attestation_nonce("c", 1, &[1; 32]));
    }

    fn enclave(report_data: [u8; 64]) -> VerifiedEnclave {
        VerifiedEnclave {
            kind: TeeKind::Nitro,
            measurement: vec![],
            report_data: report_data.to_vec(),
            tcb_status: "UpToDate".into(),
            advisories: vec![],
            debug: false,
            issued_at: None,
            nonce: None,
            public_key: None,
        }
    }

    #[test]
    fn nitro_nonce_and_public_key_fields_must_match_when_present() {
        let worker = Address([1; 20]);
        let bound = binding("c", &worker, b"key");
        let mut e = enclave(bound.report_data());
        assert_eq!(e.check_binding(&bound), Ok(()));
        e.nonce = Some(vec![5; 32]);
        e.public_key = Some(b"key".to_vec());
        assert_eq!(e.check_binding(&bound), Ok(()));
        e.nonce = Some(vec![6; 32]);
        assert_eq!(
            e.check_binding(&bound),
            Err(AttestationError::NonceMismatch)
        );
        e.nonce = None;
        e.public_key = Some(b"other key".to_vec());
        assert_eq!(
            e.check_binding(&bound),
            Err(AttestationError::PublicKeyMismatch)
        );
        assert_eq!(
            enclave([0; 64]).check_binding(&bound),
            Err(AttestationError::ReportDataMismatch)
        );
    }
}
