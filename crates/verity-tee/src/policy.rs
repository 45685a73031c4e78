//! What the chain accepts: which kinds and measurements, which TCB statuses, debug or not.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::{AttestationError, HexBytes, TeeKind, VerifiedEnclave};

/// An attestation policy, as a TOML/JSON file or as the chain stores it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    /// Accepted kinds. A kind that is absent is rejected; `dev` also needs `allow_dev`.
    pub kinds: BTreeMap<TeeKind, KindRule>,
    /// TCB statuses accepted, as the vendor names them (`UpToDate`, `SWHardeningNeeded`, …).
    pub accepted_tcb_statuses: Vec<String>,
    #[serde(default)]
    pub allow_debug: bool,
    /// Software enclaves signed by a local key: devnets only.
    #[serde(default)]
    pub allow_dev: bool,
    /// Oldest accepted evidence, in seconds: by the evidence's own timestamp (Nitro, dev) and, on
    /// chain, by the time of the block whose attestation nonce it binds (every kind).
    #[serde(default)]
    pub max_age_secs: Option<u64>,
    /// AMD root keys (ARK certificates, DER as hex) SEV-SNP chains may end in; AMD's published
    /// Milan, Genoa and Turin ARKs when absent.
    #[serde(default)]
    pub amd_roots: Option<Vec<HexBytes>>,
    /// Lowest SEV-SNP TCB accepted; a lower one is reported as `OutOfDate`.
    #[serde(default)]
    pub snp_min_tcb: SnpTcb,
    /// Highest VMPL an SNP report may be requested from (0 is the most privileged level).
    #[serde(default)]
    pub snp_max_vmpl: u32,
    /// The root every DCAP chain must end in, DER as hex; Intel's SGX root CA when absent.
    #[serde(default)]
    pub intel_root_ca: Option<HexBytes>,
    /// Oldest DCAP collateral accepted, by Intel's TCB evaluation data number (TCB info and QE
    /// identity). Collateral travels with the evidence; this keeps a worker from presenting
    /// superseded collateral that still rates its platform better, before it expires.
    #[serde(default)]
    pub dcap_min_tcb_evaluation: Option<u32>,
}

/// The rule for one kind of evidence.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct KindRule {
    /// Allowed measurements, hex. Absent means any measurement of this kind.
    #[serde(default)]
    pub measurements: Option<Vec<HexBytes>>,
}

/// Minimum security patch levels of the SEV-SNP firmware components.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SnpTcb {
    #[serde(default)]
    pub bootloader: u8,
    #[serde(default)]
    pub tee: u8,
    #[serde(default)]
    pub snp: u8,
    #[serde(default)]
    pub microcode: u8,
}

/// TCB statuses that mean "the platform is patched, possibly with configuration or software
/// mitigations still to apply" — not OutOfDate, not Revoked.
const CURRENT_TCB_STATUSES: [&str; 4] = [
    "UpToDate",
    "SWHardeningNeeded",
    "ConfigurationNeeded",
    "ConfigurationAndSWHardeningNeeded",
];

impl Policy {
    /// Every hardware kind, any measurement, current TCB only, no debug, no dev enclaves.
    pub fn permissive() -> Self {
        Self {
            kinds: [TeeKind::Tdx, TeeKind::Sgx, TeeKind::Snp, TeeKind::Nitro]
                .into_iter()
                .map(|k| (k, KindRule::default()))
                .collect(),
            accepted_tcb_statuses: CURRENT_TCB_STATUSES.map(String::from).to_vec(),
            allow_debug: false,
            allow_dev: false,
            max_age_secs: None,
            intel_root_ca: None,
            dcap_min_tcb_evaluation: None,
            amd_roots: None,
            snp_min_tcb: SnpTcb::default(),
            snp_max_vmpl: 0,
        }
    }

    /// [`Policy::permissive`] plus dev enclaves: what `verity devnet` runs with.
    pub fn devnet() -> Self {
        let mut policy = Self::permissive();
        policy.allow_dev = true;
        policy.kinds.insert(TeeKind::Dev, KindRule::default());
        policy
    }

    /// Parses a policy from TOML or JSON text.
    pub fn parse(text: &str) -> Result<Self, AttestationError> {
        let parsed = if text.trim_start().starts_with('{') {
            serde_json::from_str(text).map_err(|e| e.to_string())
        } else {
            toml_like(text)
        };
        parsed.map_err(|reason| AttestationError::malformed("policy", reason))
    }

    /// Checks the evidence's age against `max_age_secs`. On chain, evidence that binds a nonce
    /// is no older than the block that issued it, so `made_at` is that block's time (unix
    /// seconds).
    pub fn check_age(&self, made_at: u64, now: u64) -> Result<(), AttestationError> {
        match self.max_age_secs {
            Some(max_age) if now.saturating_sub(made_at) > max_age => {
                Err(AttestationError::Stale {
                    age: now - made_at,
                    max_age,
                })
            }
            _ => Ok(()),
        }
    }

    /// Whether an enclave registered earlier with this kind and measurement is still accepted:
    /// governance may have removed its measurement or kind since.
    pub fn accepts(&self, kind: TeeKind, measurement: &[u8]) -> bool {
        let Some(rule) = self.kinds.get(&kind) else {
            return false;
        };
        if kind == TeeKind::Dev && !self.allow_dev {
            return false;
        }
        rule.measurements
            .as_ref()
            .is_none_or(|allowed| allowed.iter().any(|m| m.0 == measurement))
    }

    /// Whether any kind this policy accepts takes any measurement at all.
    pub fn accepts_any_measurement(&self) -> bool {
        self.kinds.values().any(|rule| rule.measurements.is_none())
    }

    /// Hardware kinds with only the given measurements: what a production network runs with.
    pub fn strict(measurements: &[(TeeKind, Vec<u8>)]) -> Self {
        let mut kinds: BTreeMap<TeeKind, KindRule> = BTreeMap::new();
        for (kind, measurement) in measurements {
            kinds
                .entry(*kind)
                .or_default()
                .measurements
                .get_or_insert_with(Vec::new)
                .push(HexBytes(measurement.clone()));
        }
        Self {
            kinds,
            ..Self::permissive()
        }
    }

    /// Applies the policy to evidence that verified.
    pub fn check(&self, enclave: &VerifiedEnclave) -> Result<(), AttestationError> {
        let rule = self
            .kinds
            .get(&enclave.kind)
            .filter(|_| enclave.kind != TeeKind::Dev || self.allow_dev)
            .ok_or(AttestationError::KindNotAllowed(enclave.kind))?;
        if enclave.debug && !self.allow_debug {
            return Err(AttestationError::DebugNotAllowed);
        }
        if !self.accepted_tcb_statuses.contains(&enclave.tcb_status) {
            return Err(AttestationError::TcbNotAccepted {
                status: enclave.tcb_status.clone(),
                accepted: self.accepted_tcb_statuses.join(", "),
            });
        }
        if let Some(allowed) = &rule.measurements {
            if !allowed.iter().any(|m| m.0 == enclave.measurement) {
                return Err(AttestationError::MeasurementNotAllowed {
                    kind: enclave.kind,
                    measurement: hex::encode(&enclave.measurement),
                });
            }
        }
        Ok(())
    }
}

fn toml_like(text: &str) -> Result<Policy, String> {
    toml::from_str(text).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_nonce_block_time_bounds_the_age() {
        let mut policy = Policy::permissive();
        assert_eq!(policy.check_age(0, 1_000_000), Ok(()), "no max age");
        policy.max_age_secs = Some(600);
        assert_eq!(policy.check_age(1_000, 1_600), Ok(()));
        assert_eq!(
            policy.check_age(1_000, 1_601),
            Err(AttestationError::Stale {
                age: 601,
                max_age: 600
            })
        );
    }
}
