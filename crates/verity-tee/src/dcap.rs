//! Intel SGX and TDX: DCAP quotes verified offline by dcap-qvl against supplied collateral
//! (TCB info, QE identity, CRLs) and the Intel SGX root CA.

use dcap_qvl::quote::Report;
use dcap_qvl::verify::QuoteVerifier;
use dcap_qvl::QuoteCollateralV3;

use crate::{Attestation, AttestationError, Evidence, Policy, TeeKind, VerifiedEnclave};

/// SGX enclave ATTRIBUTES flag: the enclave was launched in debug mode.
const SGX_ATTRIBUTE_DEBUG: u8 = 0x02;
/// TDX TD_ATTRIBUTES bit 0: the TD is debuggable.
const TD_ATTRIBUTE_DEBUG: u8 = 0x01;

/// A DCAP verifier for one kind (`Tdx` or `Sgx`).
pub struct Dcap {
    pub kind: TeeKind,
}

impl Attestation for Dcap {
    fn kind(&self) -> TeeKind {
        self.kind
    }

    fn verify(
        &self,
        evidence: &Evidence,
        policy: &Policy,
        now: u64,
    ) -> Result<VerifiedEnclave, AttestationError> {
        let collateral = evidence
            .collateral
            .as_deref()
            .ok_or(AttestationError::Missing {
                what: "collateral",
                why: "DCAP quotes are verified against TCB info, QE identity and CRLs",
            })?;
        let collateral: QuoteCollateralV3 = serde_json::from_slice(collateral)
            .map_err(|e| AttestationError::malformed("DCAP collateral", e))?;
        // The debug decision is ours (the policy's); dcap-qvl is told to let debug through so
        // that a debug enclave is reported as such rather than as a generic failure.
        let verifier = match &policy.intel_root_ca {
            None => QuoteVerifier::new_prod(),
            Some(root) => QuoteVerifier::new(root.0.clone()),
        };
        let report = verifier
            .allow_debug(true)
            .verify(&evidence.report, &collateral, now)
            .map_err(|e| AttestationError::rejected(self.kind, format!("{e:#}")))?;
        let (kind, measurement, report_data, debug) = match &report.report {
            Report::SgxEnclave(r) => (
                TeeKind::Sgx,
                r.mr_enclave.to_vec(),
                r.report_data.to_vec(),
                r.attributes[0] & SGX_ATTRIBUTE_DEBUG != 0,
            ),
            Report::TD10(r) => td(r),
            Report::TD15(r) => td(&r.base),
            Report::TD15Ex(r) => td(&r.base.base),
        };
        // Checked after dcap-qvl, which has authenticated both documents by then.
        if let Some(min) = policy.dcap_min_tcb_evaluation {
            for (what, document) in [
                ("TCB info", &collateral.tcb_info),
                ("QE identity", &collateral.qe_identity),
            ] {
                let number = tcb_evaluation_number(document).ok_or_else(|| {
                    AttestationError::malformed(
                        "DCAP collateral",
                        format!("the {what} has no tcbEvaluationDataNumber"),
                    )
                })?;
                if number < min {
                    return Err(AttestationError::rejected(
                        self.kind,
                        format!("the collateral's {what} has TCB evaluation data number {number}; the policy requires at least {min}"),
                    ));
                }
            }
        }
        if kind != self.kind {
            return Err(AttestationError::rejected(
                self.kind,
                format!("the quote is a {kind} quote"),
            ));
        }
        let enclave = VerifiedEnclave {
            kind,
            measurement,
            report_data,
            tcb_status: report.status,
            advisories: report.advisory_ids,
            debug,
            issued_at: None,
            nonce: None,
            public_key: None,
        };
        policy.check(&enclave)?;
        Ok(enclave)
    }
}

/// The `tcbEvaluationDataNumber` of a TCB info or QE identity JSON document.
fn tcb_evaluation_number(document: &str) -> Option<u32> {
    let value: serde_json::Value = serde_json::from_str(document).ok()?;
    value["tcbEvaluationDataNumber"]
        .as_u64()
        .and_then(|n| u32::try_from(n).ok())
}

/// MRTD ‖ RTMR0 ‖ RTMR1 ‖ RTMR2 ‖ RTMR3: the TD's build-time and run-time measurements.
fn td(r: &dcap_qvl::quote::TDReport10) -> (TeeKind, Vec<u8>, Vec<u8>, bool) {
    let measurement = [r.mr_td, r.rt_mr0, r.rt_mr1, r.rt_mr2, r.rt_mr3].concat();
    (
        TeeKind::Tdx,
        measurement,
        r.report_data.to_vec(),
        r.td_attributes[0] & TD_ATTRIBUTE_DEBUG != 0,
    )
}
