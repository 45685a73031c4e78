//! AWS Nitro Enclaves: a COSE_Sign1 attestation document. nitro_attest checks the certificate
//! chain up to the AWS Nitro root G1 (pinned by fingerprint), each certificate's validity at
//! `now` and the COSE signature; the document's age, PCRs and user data are checked here.

use nitro_attest::UnparsedAttestationDoc;

use crate::{Attestation, AttestationError, Evidence, Policy, TeeKind, VerifiedEnclave};

/// How far in the future a document's timestamp may be before it is rejected (clock skew).
const MAX_FUTURE_SECS: u64 = 300;

/// The Nitro verifier.
pub struct Nitro;

impl Attestation for Nitro {
    fn kind(&self) -> TeeKind {
        TeeKind::Nitro
    }

    fn verify(
        &self,
        evidence: &Evidence,
        policy: &Policy,
        now: u64,
    ) -> Result<VerifiedEnclave, AttestationError> {
        let now_time = i64::try_from(now)
            .ok()
            .and_then(|n| time::OffsetDateTime::from_unix_timestamp(n).ok())
            .ok_or_else(|| {
                AttestationError::rejected(TeeKind::Nitro, format!("time {now} is out of range"))
            })?;
        let doc = UnparsedAttestationDoc::from(evidence.report.as_slice())
            .parse_and_verify(now_time)
            .map_err(|e| AttestationError::rejected(TeeKind::Nitro, error_chain(&e)))?;

        let issued = u64::try_from(doc.timestamp.unix_timestamp()).unwrap_or(0);
        if issued > now.saturating_add(MAX_FUTURE_SECS) {
            return Err(AttestationError::rejected(
                TeeKind::Nitro,
                format!("the document is dated {issued}, after now ({now})"),
            ));
        }
        if let Some(max_age) = policy.max_age_secs {
            if now.saturating_sub(issued) > max_age {
                return Err(AttestationError::rejected(
                    TeeKind::Nitro,
                    format!(
                        "the document is {} s old; the policy accepts at most {max_age} s",
                        now - issued
                    ),
                ));
            }
        }
        // Debug-mode enclaves report all-zero PCRs, which nitro_attest leaves out.
        let pcr = |i: u16| doc.pcrs.get(&i).map(|d| d.value.clone());
        let (measurement, debug) = match (pcr(0), pcr(1), pcr(2)) {
            (Some(p0), Some(p1), Some(p2)) => ([p0, p1, p2].concat(), false),
            _ => (Vec::new(), true),
        };
        let enclave = VerifiedEnclave {
            kind: TeeKind::Nitro,
            measurement,
            report_data: doc.user_data.map(|d| d.into_vec()).unwrap_or_default(),
            // AWS patches the Nitro hypervisor itself: there is no platform TCB to rate.
            tcb_status: "UpToDate".into(),
            advisories: Vec::new(),
            debug,
            issued_at: Some(issued),
            nonce: doc.nonce.map(|d| d.into_vec()),
            public_key: doc.public_key.map(|d| d.into_vec()),
        };
        policy.check(&enclave)?;
        Ok(enclave)
    }
}

/// The error and its sources, so that "certificate 3 expired" is not reduced to "certificate".
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(e) = source {
        text.push_str(": ");
        text.push_str(&e.to_string());
        source = e.source();
    }
    text
}
