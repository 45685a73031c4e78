//! `dev`: a software enclave for devnets. Its reports are signed by a local secp256k1 key, so
//! they prove nothing about hardware; the chain accepts them only when its policy says
//! `allow_dev`, and everything that shows such a result labels it "dev TEE, not hardware-backed".

use serde::{Deserialize, Serialize};
use verity_types::{keccak256, recover_signer, AccountKey, Address};

use crate::{Attestation, AttestationError, Evidence, Policy, TeeKind, VerifiedEnclave};

/// Domain tag of a dev report signature.
pub const DEV_REPORT_DOMAIN: &[u8] = b"verity/dev-attestation/v1";

/// A dev attestation report, as JSON.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DevReport {
    /// What the software enclave says it runs (e.g. the SHA-256 of the worker binary), hex.
    pub measurement: String,
    /// 64 bytes, hex: [`crate::Binding::report_data`] of the enclave key.
    pub report_data: String,
    /// Unix seconds when the report was made.
    pub timestamp: u64,
    /// The address of the local key that signed.
    pub signer: Address,
    /// secp256k1 r ‖ s ‖ v over keccak256(domain ‖ measurement ‖ report_data ‖ timestamp), hex.
    pub signature: String,
}

fn digest(measurement: &[u8], report_data: &[u8; 64], timestamp: u64) -> [u8; 32] {
    let mut message = DEV_REPORT_DOMAIN.to_vec();
    message.extend_from_slice(&(measurement.len() as u32).to_le_bytes());
    message.extend_from_slice(measurement);
    message.extend_from_slice(report_data);
    message.extend_from_slice(&timestamp.to_le_bytes());
    keccak256(&message)
}

impl DevReport {
    /// Signs a report with a local key: what `verity worker --tee dev` produces.
    pub fn sign(
        key: &AccountKey,
        measurement: &[u8],
        report_data: &[u8; 64],
        timestamp: u64,
    ) -> Self {
        let signature = key.sign_digest(&digest(measurement, report_data, timestamp));
        Self {
            measurement: hex::encode(measurement),
            report_data: hex::encode(report_data),
            timestamp,
            signer: key.address(),
            signature: hex::encode(signature),
        }
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a dev report serializes")
    }
}

/// The dev verifier.
pub struct Dev;

impl Attestation for Dev {
    fn kind(&self) -> TeeKind {
        TeeKind::Dev
    }

    fn verify(
        &self,
        evidence: &Evidence,
        policy: &Policy,
        now: u64,
    ) -> Result<VerifiedEnclave, AttestationError> {
        // Refuse before parsing: without allow_dev nothing in a dev report matters.
        if !policy.allow_dev {
            return Err(AttestationError::KindNotAllowed(TeeKind::Dev));
        }
        let report: DevReport = serde_json::from_slice(&evidence.report)
            .map_err(|e| AttestationError::malformed("dev report", e))?;
        let measurement = hex::decode(&report.measurement)
            .map_err(|e| AttestationError::malformed("dev report", e))?;
        let report_data: [u8; 64] = hex::decode(&report.report_data)
            .map_err(|e| AttestationError::malformed("dev report", e))?
            .try_into()
            .map_err(|_| {
                AttestationError::malformed("dev report", "report_data must be 64 bytes")
            })?;
        let signature: [u8; 65] = hex::decode(&report.signature)
            .map_err(|e| AttestationError::malformed("dev report", e))?
            .try_into()
            .map_err(|_| AttestationError::malformed("dev report", "signature must be 65 bytes"))?;
        let signer = recover_signer(
            &digest(&measurement, &report_data, report.timestamp),
            &signature,
        )
        .map_err(|e| AttestationError::rejected(TeeKind::Dev, format!("signature: {e}")))?;
        if signer != report.signer {
            return Err(AttestationError::rejected(
                TeeKind::Dev,
                "the signature is not the named signer's",
            ));
        }
        if report.timestamp > now {
            return Err(AttestationError::rejected(
                TeeKind::Dev,
                format!(
                    "the report is dated {}, after now ({now})",
                    report.timestamp
                ),
            ));
        }
        if let Some(max_age) = policy.max_age_secs {
            if now - report.timestamp > max_age {
                return Err(AttestationError::rejected(
                    TeeKind::Dev,
                    format!(
                        "the report is {} s old; the policy accepts at most {max_age} s",
                        now - report.timestamp
                    ),
                ));
            }
        }
        let enclave = VerifiedEnclave {
            kind: TeeKind::Dev,
            measurement,
            report_data: report_data.to_vec(),
            tcb_status: "UpToDate".into(),
            advisories: Vec::new(),
            debug: false,
            issued_at: Some(report.timestamp),
            nonce: None,
            public_key: None,
        };
        policy.check(&enclave)?;
        Ok(enclave)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Binding;

    const WORKER: Address = Address([3; 20]);

    fn binding() -> Binding<'static> {
        Binding {
            chain_id: "verity-devnet",
            worker: &WORKER,
            enclave_key: b"enclave key",
            nonce: &[1; 32],
        }
    }

    fn signed() -> (Evidence, [u8; 64]) {
        let key = AccountKey::generate();
        let data = binding().report_data();
        let report = DevReport::sign(&key, b"worker build", &data, 1_000);
        (
            Evidence {
                report: report.to_bytes(),
                ..Evidence::default()
            },
            data,
        )
    }

    #[test]
    fn a_signed_report_verifies_only_where_dev_is_allowed() {
        let (evidence, data) = signed();
        let enclave = Dev.verify(&evidence, &Policy::devnet(), 1_010).unwrap();
        assert_eq!(enclave.report_data, data);
        assert_eq!(enclave.issued_at, Some(1_000));
        enclave.check_binding(&binding()).unwrap();
        assert_eq!(
            Dev.verify(&evidence, &Policy::permissive(), 1_010),
            Err(AttestationError::KindNotAllowed(TeeKind::Dev))
        );
    }

    #[test]
    fn tampered_future_and_garbage_reports_are_rejected() {
        let (evidence, _) = signed();
        let mut report: DevReport = serde_json::from_slice(&evidence.report).unwrap();
        report.timestamp += 1;
        let tampered = Evidence {
            report: report.to_bytes(),
            ..Evidence::default()
        };
        assert!(Dev.verify(&tampered, &Policy::devnet(), 2_000).is_err());
        assert!(Dev.verify(&evidence, &Policy::devnet(), 999).is_err());
        let garbage = Evidence {
            report: b"{\"measurement\":1}".to_vec(),
            ..Evidence::default()
        };
        assert!(matches!(
            Dev.verify(&garbage, &Policy::devnet(), 2_000),
            Err(AttestationError::Malformed { .. })
        ));
    }
}
