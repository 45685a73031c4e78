//! Attestation (`docs/protocol.md` §9): verify TEE evidence offline against a policy the chain holds, and
//! return what it proves — which code runs (the measurement), what it committed to
//! (report_data, bound to an enclave key), and how current the platform is (TCB status).
//!
//! Every verifier takes `now` from the caller (the block timestamp on chain), so verification is
//! deterministic: the same evidence, policy and `now` give the same verdict on every validator.

mod binding;
mod dcap;
mod dev;
mod nitro;
mod policy;
pub mod produce;
mod snp;

use serde::{Deserialize, Serialize};

pub use binding::{attestation_nonce, Binding, ATTESTATION_NONCE_DOMAIN, REPORT_DATA_DOMAIN};
pub use dcap::Dcap;
pub use dev::{Dev, DevReport, DEV_REPORT_DOMAIN};
pub use nitro::Nitro;
pub use policy::{KindRule, Policy, SnpTcb};
pub use snp::Snp;

/// The kinds of evidence Verity understands.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum TeeKind {
    /// Intel TDX, a DCAP quote (v4/v5) over a TD report.
    Tdx,
    /// Intel SGX, a DCAP quote (v3) over an enclave report.
    Sgx,
    /// AMD SEV-SNP attestation report.
    Snp,
    /// AWS Nitro Enclaves attestation document.
    Nitro,
    /// A software enclave signed by a local key: devnet only, never hardware-backed.
    Dev,
}

impl TeeKind {
    pub fn as_str(self) -> &'static str {
        match self {
            TeeKind::Tdx => "tdx",
            TeeKind::Sgx => "sgx",
            TeeKind::Snp => "snp",
            TeeKind::Nitro => "nitro",
            TeeKind::Dev => "dev",
        }
    }
}

impl std::fmt::Display for TeeKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for TeeKind {
    type Err = AttestationError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s {
            "tdx" => TeeKind::Tdx,
            "sgx" => TeeKind::Sgx,
            "snp" => TeeKind::Snp,
            "nitro" => TeeKind::Nitro,
            "dev" => TeeKind::Dev,
            other => {
                return Err(AttestationError::Malformed {
                    what: "kind",
                    reason: format!(
                        "unknown TEE kind {other:?}; expected tdx, sgx, snp, nitro or dev"
                    ),
                })
            }
        })
    }
}

/// The evidence to verify, as the enclave and its vendor produced it.
#[derive(Debug, Clone, Default)]
pub struct Evidence {
    /// The quote, report or attestation document.
    pub report: Vec<u8>,
    /// Vendor collateral (DCAP: the QuoteCollateralV3 JSON with TCB info, QE identity and CRLs).
    pub collateral: Option<Vec<u8>>,
    /// Certificates that do not travel inside the report (SNP: VCEK, ASK, ARK), DER or PEM.
    pub certs: Vec<Vec<u8>>,
}

/// What valid evidence proves.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VerifiedEnclave {
    pub kind: TeeKind,
    /// TDX: MRTD ‖ RTMR0..3; SGX: MRENCLAVE; SNP: MEASUREMENT; Nitro: PCR0 ‖ PCR1 ‖ PCR2.
    #[serde(with = "hex_bytes")]
    pub measurement: Vec<u8>,
    /// What the enclave put in its report: for Verity, [`Binding::report_data`].
    #[serde(with = "hex_bytes")]
    pub report_data: Vec<u8>,
    /// The platform's TCB status as the vendor's collateral rates it (e.g. `UpToDate`).
    pub tcb_status: String,
    /// Security advisories that apply to this platform's TCB level.
    pub advisories: Vec<String>,
    /// Whether the enclave runs in debug mode (its memory is readable by the host).
    pub debug: bool,
    /// When the evidence says it was made, unix seconds, for kinds that carry a time (Nitro, dev).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issued_at: Option<u64>,
    /// The Nitro document's `nonce` field, when the enclave set it.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "opt_hex_bytes"
    )]
    pub nonce: Option<Vec<u8>>,
    /// The Nitro document's `public_key` field, when the enclave set it.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "opt_hex_bytes"
    )]
    pub public_key: Option<Vec<u8>>,
}

/// Why evidence was rejected. Each variant names the check that failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AttestationError {
    #[error("malformed {what}: {reason}")]
    Malformed { what: &'static str, reason: String },
    /// The vendor-side verification failed: signature, certificate chain, CRL, collateral
    /// validity or TCB matching. `reason` is the precise failure.
    #[error("{kind} evidence rejected: {reason}")]
    Rejected { kind: TeeKind, reason: String },
    #[error("TCB status {status} is not accepted by the policy (accepted: {accepted})")]
    TcbNotAccepted { status: String, accepted: String },
    #[error("the enclave runs in debug mode and the policy does not allow debug enclaves")]
    DebugNotAllowed,
    #[error("measurement {measurement} is not on the policy's allow-list for {kind}")]
    MeasurementNotAllowed { kind: TeeKind, measurement: String },
    #[error("the policy does not accept {0} evidence")]
    KindNotAllowed(TeeKind),
    #[error("report_data does not bind this enclave key for this chain, worker and nonce")]
    ReportDataMismatch,
    #[error("the document's nonce is not the chain's attestation nonce")]
    NonceMismatch,
    #[error("the document's public_key is not the enclave key being registered")]
    PublicKeyMismatch,
    #[error("the evidence is {age} s old; the policy accepts at most {max_age} s")]
    Stale { age: u64, max_age: u64 },
    #[error("{what} is missing: {why}")]
    Missing {
        what: &'static str,
        why: &'static str,
    },
}

impl AttestationError {
    /// The failure without text from the verifying libraries (dcap-qvl, sev, nitro_attest, der,
    /// serde): what the chain records, so that upgrading one never changes a state root.
    pub fn stable_reason(&self) -> String {
        match self {
            Self::Malformed { what, .. } => format!("malformed {what}"),
            Self::Rejected { kind, .. } => {
                format!("{kind} evidence failed its vendor verification")
            }
            other => other.to_string(),
        }
    }

    pub(crate) fn rejected(kind: TeeKind, reason: impl Into<String>) -> Self {
        Self::Rejected {
            kind,
            reason: reason.into(),
        }
    }

    pub(crate) fn malformed(what: &'static str, reason: impl std::fmt::Display) -> Self {
        Self::Malformed {
            what,
            reason: reason.to_string(),
        }
    }
}

/// One verifier per kind of evidence.
pub trait Attestation {
    fn kind(&self) -> TeeKind;

    /// Verifies `evidence` at time `now` (unix seconds) and applies `policy`.
    fn verify(
        &self,
        evidence: &Evidence,
        policy: &Policy,
        now: u64,
    ) -> Result<VerifiedEnclave, AttestationError>;
}

/// Verifies evidence of any kind.
pub fn verify(
    kind: TeeKind,
    evidence: &Evidence,
    policy: &Policy,
    now: u64,
) -> Result<VerifiedEnclave, AttestationError> {
    match kind {
        TeeKind::Tdx | TeeKind::Sgx => Dcap { kind }.verify(evidence, policy, now),
        TeeKind::Snp => Snp.verify(evidence, policy, now),
        TeeKind::Nitro => Nitro.verify(evidence, policy, now),
        TeeKind::Dev => Dev.verify(evidence, policy, now),
    }
}

/// Bytes that travel as hex text in JSON and TOML (a `0x` prefix is accepted), decoded once when
/// the document is read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct HexBytes(#[serde(with = "hex_bytes")] pub Vec<u8>);

impl utoipa::PartialSchema for HexBytes {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        verity_types::schema::hex_bytes().into()
    }
}

impl utoipa::ToSchema for HexBytes {}

mod hex_bytes {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(bytes))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let text = String::deserialize(d)?;
        hex::decode(text.trim_start_matches("0x")).map_err(serde::de::Error::custom)
    }
}

mod opt_hex_bytes {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &Option<Vec<u8>>, s: S) -> Result<S::Ok, S::Error> {
        match bytes {
            Some(bytes) => super::hex_bytes::serialize(bytes, s),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<u8>>, D::Error> {
        Option::<super::HexBytes>::deserialize(d).map(|b| b.map(|b| b.0))
    }
}
