//! AMD SEV-SNP: the report's signature and the ARK → ASK → VCEK/VLEK chain are checked by the
//! `sev` crate; what it leaves out is checked here: the chain ends in a pinned AMD root, every
//! certificate is valid at `now`, the VCEK was issued for this chip (hwID) at the TCB the report
//! claims, that TCB meets the policy's minimum, and the guest's debug and VMPL settings.

use der::Decode as _;
use sev::certs::snp::{builtin, ca, Certificate, Chain, Verifiable as _};
use sev::firmware::guest::AttestationReport;
use sev::firmware::host::TcbVersion;
use sev::parser::ByteParser as _;
use x509_cert::Certificate as X509;

use crate::{Attestation, AttestationError, Evidence, Policy, TeeKind, VerifiedEnclave};

/// AMD's VCEK extensions (VCEK specification, table 8).
mod oid {
    use der::oid::ObjectIdentifier as Oid;
    pub const BOOTLOADER: Oid = Oid::new_unwrap("1.3.6.1.4.1.3704.1.3.1");
    pub const TEE: Oid = Oid::new_unwrap("1.3.6.1.4.1.3704.1.3.2");
    pub const SNP: Oid = Oid::new_unwrap("1.3.6.1.4.1.3704.1.3.3");
    pub const MICROCODE: Oid = Oid::new_unwrap("1.3.6.1.4.1.3704.1.3.8");
    pub const HW_ID: Oid = Oid::new_unwrap("1.3.6.1.4.1.3704.1.4");
}

/// The SEV-SNP verifier.
pub struct Snp;

impl Attestation for Snp {
    fn kind(&self) -> TeeKind {
        TeeKind::Snp
    }

    fn verify(
        &self,
        evidence: &Evidence,
        policy: &Policy,
        now: u64,
    ) -> Result<VerifiedEnclave, AttestationError> {
        let report = AttestationReport::from_bytes(&evidence.report)
            .map_err(|e| AttestationError::malformed("SEV-SNP report", e))?;
        check_signature_padding(&evidence.report)?;
        let PinnedChain {
            chain,
            ark,
            ask,
            vek,
        } = chain(&evidence.certs, policy)?;
        for (role, cert) in [("ARK", &ark), ("ASK", &ask), ("VCEK", &vek)] {
            check_validity(role, cert, now)?;
        }
        // The chip and TCB first: for a VCEK of another chip that is the precise reason.
        check_vcek_binding(&vek, &report)?;
        (&chain, &report)
            .verify()
            .map_err(|e| AttestationError::rejected(TeeKind::Snp, format!("signature: {e}")))?;

        evaluate(&report, policy)
    }
}

/// Where the signature starts in a report, and how many bytes of each of its 72-byte,
/// little-endian R and S are used (P-384).
const SIGNATURE_AT: usize = 0x2a0;
const SCALAR_BYTES: usize = 48;

/// The signature area's unused bytes (the zero extension of R and S, and the reserved rest) are
/// outside what the signature covers: the firmware writes them as zero, and a report with
/// anything else there was changed after signing, so it is refused rather than accepted as
/// another encoding of the same report.
fn check_signature_padding(report: &[u8]) -> Result<(), AttestationError> {
    let area = report.get(SIGNATURE_AT..).unwrap_or_default();
    let unused = area.iter().enumerate().find(|&(i, &byte)| {
        let used = i < SCALAR_BYTES || (72..72 + SCALAR_BYTES).contains(&i);
        !used && byte != 0
    });
    match unused {
        None => Ok(()),
        Some((i, _)) => Err(AttestationError::rejected(
            TeeKind::Snp,
            format!(
                "byte {:#x} of the report, in the signature's unused bytes, is not zero",
                SIGNATURE_AT + i
            ),
        )),
    }
}

/// What the policy says of an authentic report: its TCB against the minimum, its VMPL, and
/// (through [`Policy::check`]) its debug bit and measurement.
fn evaluate(
    report: &AttestationReport,
    policy: &Policy,
) -> Result<VerifiedEnclave, AttestationError> {
    let min = &policy.snp_min_tcb;
    let tcb = &report.reported_tcb;
    let current = tcb.bootloader >= min.bootloader
        && tcb.tee >= min.tee
        && tcb.snp >= min.snp
        && tcb.microcode >= min.microcode;
    if report.vmpl > policy.snp_max_vmpl {
        return Err(AttestationError::rejected(
            TeeKind::Snp,
            format!(
                "the report was requested at VMPL {}, above the policy's maximum {}",
                report.vmpl, policy.snp_max_vmpl
            ),
        ));
    }
    let enclave = VerifiedEnclave {
        kind: TeeKind::Snp,
        measurement: report.measurement.to_vec(),
        report_data: report.report_data.to_vec(),
        // SNP has no vendor TCB rating: "up to date" means at or above the policy's minimum.
        tcb_status: if current { "UpToDate" } else { "OutOfDate" }.into(),
        advisories: Vec::new(),
        debug: report.policy.debug_allowed(),
        issued_at: None,
        nonce: None,
        public_key: None,
    };
    policy.check(&enclave)?;
    Ok(enclave)
}

/// The chain as `sev` verifies it, and its certificates as x509-cert reads their fields.
struct PinnedChain {
    chain: Chain,
    ark: X509,
    ask: X509,
    vek: X509,
}

/// Sorts the supplied certificates into ARK (self-signed), ASK (signed by the ARK's subject)
/// and VCEK/VLEK, and pins the ARK.
fn chain(files: &[Vec<u8>], policy: &Policy) -> Result<PinnedChain, AttestationError> {
    let mut certs = Vec::new();
    for file in files {
        for cert in parse_certs(file)? {
            let fields = X509::from(cert.clone());
            certs.push((cert, fields));
        }
    }
    let self_signed = |c: &X509| c.tbs_certificate.subject == c.tbs_certificate.issuer;
    let (ark, ark_x509) = certs
        .iter()
        .find(|(_, x)| self_signed(x))
        .ok_or(AttestationError::Missing {
            what: "ARK certificate",
            why: "the chain must end in AMD's root key",
        })?
        .clone();
    let (ask, ask_x509) = certs
        .iter()
        .find(|(_, x)| {
            !self_signed(x) && x.tbs_certificate.issuer == ark_x509.tbs_certificate.subject
        })
        .ok_or(AttestationError::Missing {
            what: "ASK certificate",
            why: "the ARK signs the ASK, which signs the VCEK",
        })?
        .clone();
    let (vek, vek_x509) = certs
        .iter()
        .find(|(_, x)| x.tbs_certificate.issuer == ask_x509.tbs_certificate.subject)
        .ok_or(AttestationError::Missing {
            what: "VCEK certificate",
            why: "the report is signed by the chip's VCEK (or a VLEK)",
        })?
        .clone();

    let ark_der = ark
        .to_der()
        .map_err(|e| AttestationError::malformed("ARK certificate", e))?;
    let pinned = match &policy.amd_roots {
        Some(roots) => roots.iter().any(|root| root.0 == ark_der),
        None => [
            builtin::milan::ark(),
            builtin::genoa::ark(),
            builtin::turin::ark(),
        ]
        .into_iter()
        .filter_map(Result::ok)
        .filter_map(|c| c.to_der().ok())
        .any(|der| der == ark_der),
    };
    if !pinned {
        return Err(AttestationError::rejected(
            TeeKind::Snp,
            "the ARK is not a pinned AMD root",
        ));
    }
    Ok(PinnedChain {
        chain: Chain {
            ca: ca::Chain { ark, ask },
            vek,
        },
        ark: ark_x509,
        ask: ask_x509,
        vek: vek_x509,
    })
}

/// DER, or PEM holding one or more certificates.
fn parse_certs(bytes: &[u8]) -> Result<Vec<Certificate>, AttestationError> {
    const BEGIN: &str = "-----BEGIN CERTIFICATE-----";
    const END: &str = "-----END CERTIFICATE-----";
    let Ok(text) = std::str::from_utf8(bytes) else {
        return Ok(vec![Certificate::from_der(bytes)
            .map_err(|e| AttestationError::malformed("DER certificate", e))?]);
    };
    let mut certs = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find(BEGIN) {
        let end = rest[start..]
            .find(END)
            .ok_or_else(|| AttestationError::malformed("PEM certificate", "no END line"))?
            + start
            + END.len();
        certs.push(
            Certificate::from_pem(&rest.as_bytes()[start..end])
                .map_err(|e| AttestationError::malformed("PEM certificate", e))?,
        );
        rest = &rest[end..];
    }
    if certs.is_empty() {
        return Err(AttestationError::malformed(
            "certificate",
            "neither DER nor PEM",
        ));
    }
    Ok(certs)
}

fn check_validity(role: &str, cert: &X509, now: u64) -> Result<(), AttestationError> {
    let validity = &cert.tbs_certificate.validity;
    let not_before = validity.not_before.to_unix_duration().as_secs();
    let not_after = validity.not_after.to_unix_duration().as_secs();
    if now < not_before {
        return Err(AttestationError::rejected(
            TeeKind::Snp,
            format!("the {role} certificate is not yet valid at {now}"),
        ));
    }
    if now > not_after {
        return Err(AttestationError::rejected(
            TeeKind::Snp,
            format!("the {role} certificate expired before {now}"),
        ));
    }
    Ok(())
}

/// A VCEK is derived for one chip at one TCB: both must match the report. A VLEK carries no
/// hwID (it is per cloud provider), so only its TCB is compared.
fn check_vcek_binding(vek: &X509, report: &AttestationReport) -> Result<(), AttestationError> {
    let extension = |oid| {
        vek.tbs_certificate
            .extensions
            .iter()
            .flatten()
            .find(|e| e.extn_id == oid)
            .map(|e| e.extn_value.as_bytes().to_vec())
    };
    let spl = |oid, what: &'static str| -> Result<u8, AttestationError> {
        let raw = extension(oid)
            .ok_or_else(|| AttestationError::malformed("VCEK", format!("no {what} extension")))?;
        u8::from_der(&raw).map_err(|e| AttestationError::malformed("VCEK", format!("{what}: {e}")))
    };
    let certified = TcbVersion {
        fmc: report.reported_tcb.fmc,
        bootloader: spl(oid::BOOTLOADER, "bootloader SPL")?,
        tee: spl(oid::TEE, "TEE SPL")?,
        snp: spl(oid::SNP, "SNP SPL")?,
        microcode: spl(oid::MICROCODE, "microcode SPL")?,
    };
    let claimed = &report.reported_tcb;
    if (
        certified.bootloader,
        certified.tee,
        certified.snp,
        certified.microcode,
    ) != (
        claimed.bootloader,
        claimed.tee,
        claimed.snp,
        claimed.microcode,
    ) {
        return Err(AttestationError::rejected(
            TeeKind::Snp,
            format!("the VCEK certifies TCB {certified:?} but the report claims {claimed:?}"),
        ));
    }
    if let Some(raw) = extension(oid::HW_ID) {
        // Either the 64 raw bytes or a DER OCTET STRING around them.
        let hw_id = match raw.len() {
            64 => raw,
            _ => der::asn1::OctetString::from_der(&raw)
                .map_err(|e| AttestationError::malformed("VCEK hwID", e))?
                .into_bytes()
                .to_vec(),
        };
        if hw_id != report.chip_id {
            return Err(AttestationError::rejected(
                TeeKind::Snp,
                "the VCEK's hwID is not the report's chip id",
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    //! The checks after the signature, on the real Milan report with one field changed in memory:
    //! a signed report with VMPL 1 or the debug bit set is not among the vectors, and changing
    //! the bytes would break the signature before these checks run.
    use super::*;

    fn milan() -> AttestationReport {
        let hex_text = include_str!("../tests/vectors/snp/report_milan.hex");
        AttestationReport::from_bytes(&hex::decode(hex_text.trim()).unwrap()).unwrap()
    }

    #[test]
    fn a_report_from_a_less_privileged_vmpl_is_rejected() {
        let mut report = milan();
        report.vmpl = 1;
        let mut policy = Policy::permissive();
        assert_eq!(
            evaluate(&report, &policy).unwrap_err().to_string(),
            "snp evidence rejected: the report was requested at VMPL 1, above the policy's maximum 0"
        );
        policy.snp_max_vmpl = 1;
        assert!(evaluate(&report, &policy).is_ok());
    }

    #[test]
    fn a_guest_that_allows_debugging_needs_a_policy_that_allows_debug() {
        let mut report = milan();
        assert!(!report.policy.debug_allowed());
        report.policy.set_debug_allowed(true);
        let mut policy = Policy::permissive();
        assert_eq!(
            evaluate(&report, &policy),
            Err(AttestationError::DebugNotAllowed)
        );
        policy.allow_debug = true;
        assert!(evaluate(&report, &policy).unwrap().debug);
    }
}
