//! AMD SEV-SNP vectors from `tests/vectors/snp` (virtee/sev `tests/certs_data/`; a real Milan
//! report with its VCEK, ASK and ARK), at the fixed time their README gives.

use verity_tee::{verify, AttestationError, Evidence, Policy, SnpTcb, TeeKind};

const NOW: u64 = 1_700_000_000;

fn vector(name: &str) -> Vec<u8> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/vectors/snp/");
    std::fs::read(format!("{path}{name}")).unwrap()
}

fn milan() -> Evidence {
    let hex_text = String::from_utf8(vector("report_milan.hex")).unwrap();
    Evidence {
        report: hex::decode(hex_text.trim()).unwrap(),
        collateral: None,
        certs: vec![vector("vcek_milan.der"), vector("cert_chain_milan")],
    }
}

fn reason(result: Result<verity_tee::VerifiedEnclave, AttestationError>) -> String {
    match result {
        Err(AttestationError::Rejected { reason, .. }) => reason,
        other => panic!("expected a rejection, got {other:?}"),
    }
}

#[test]
fn milan_report_is_valid() {
    let enclave = verify(TeeKind::Snp, &milan(), &Policy::permissive(), NOW).unwrap();
    assert_eq!(enclave.kind, TeeKind::Snp);
    assert_eq!(enclave.measurement.len(), 48);
    assert_eq!(enclave.report_data.len(), 64);
    assert_eq!(enclave.tcb_status, "UpToDate");
}

#[test]
fn separate_ask_and_ark_files_work_too() {
    let mut evidence = milan();
    evidence.certs = vec![
        vector("milan_ark.pem"),
        vector("vcek_milan.der"),
        vector("milan_ask.pem"),
    ];
    assert!(verify(TeeKind::Snp, &evidence, &Policy::permissive(), NOW).is_ok());
}

#[test]
fn any_change_to_report_data_breaks_the_signature() {
    // report_data is at 0x50..0x90 of the report.
    for at in [0x50, 0x6f, 0x8f] {
        let mut evidence = milan();
        evidence.report[at] ^= 0x01;
        let reason = reason(verify(TeeKind::Snp, &evidence, &Policy::permissive(), NOW));
        assert!(reason.contains("signature"), "{reason}");
    }
}

#[test]
fn a_vcek_for_another_chip_is_rejected() {
    let evidence = Evidence {
        report: vector("mismatched_report.bin"),
        collateral: None,
        certs: vec![vector("mismatched_vcek.der"), vector("cert_chain_milan")],
    };
    let reason = reason(verify(TeeKind::Snp, &evidence, &Policy::permissive(), NOW));
    assert!(reason.contains("hwID"), "{reason}");
}

#[test]
fn certificates_outside_their_validity_are_rejected() {
    for now in [0, u64::from(u32::MAX) * 100] {
        let reason = reason(verify(TeeKind::Snp, &milan(), &Policy::permissive(), now));
        assert!(
            reason.contains("not yet valid") || reason.contains("expired"),
            "{reason}"
        );
    }
}

#[test]
fn a_flipped_bit_in_the_vceks_signature_is_rejected() {
    let mut evidence = milan();
    let at = evidence.certs[0].len() - 3;
    evidence.certs[0][at] ^= 0x01;
    let reason = reason(verify(TeeKind::Snp, &evidence, &Policy::permissive(), NOW));
    assert!(
        reason.starts_with("signature: Signer certificate does not RSA sign signee certificate"),
        "{reason}"
    );
}

/// reported_tcb (0x180..0x188: bootloader, TEE, reserved, SNP, microcode) must be the TCB the
/// VCEK was issued for; that is checked before the signature, so it is the reason given.
#[test]
fn a_report_claiming_another_tcb_than_its_vceks_is_rejected() {
    for (at, claims) in [
        (0x180, "bootloader: 2, tee: 0, snp: 8, microcode: 115"),
        (0x181, "bootloader: 3, tee: 1, snp: 8, microcode: 115"),
        (0x187, "bootloader: 3, tee: 0, snp: 8, microcode: 114"),
    ] {
        let mut evidence = milan();
        evidence.report[at] ^= 0x01;
        let reason = reason(verify(TeeKind::Snp, &evidence, &Policy::permissive(), NOW));
        assert!(
            reason.starts_with(
                "the VCEK certifies TCB TcbVersion { fmc: None, bootloader: 3, tee: 0, snp: 8, microcode: 115 }"
            ) && reason.ends_with(&format!("claims TcbVersion {{ fmc: None, {claims} }}")),
            "{reason}"
        );
    }
}

/// MEASUREMENT at 0x90..0xC0 of the report, read by a separate script.
#[test]
fn the_measurement_is_the_known_value_of_the_vector() {
    let enclave = verify(TeeKind::Snp, &milan(), &Policy::permissive(), NOW).unwrap();
    assert_eq!(
        hex::encode(enclave.measurement),
        "7a1e5c266c0108dbc9bb94fa926951320940915d0aafb42464bd88b579ea158d3e1a0dc39b2c60bd95b9c480cd81841f"
    );
    assert!(
        !enclave.debug,
        "the guest policy (0x30000) does not allow debugging"
    );
}

#[test]
fn an_unpinned_root_is_rejected() {
    let mut policy = Policy::permissive();
    policy.amd_roots = Some(vec![verity_tee::HexBytes(vec![0])]);
    let reason = reason(verify(TeeKind::Snp, &milan(), &policy, NOW));
    assert!(reason.contains("pinned"), "{reason}");
}

#[test]
fn a_tcb_under_the_policy_minimum_is_out_of_date() {
    let mut policy = Policy::permissive();
    policy.snp_min_tcb = SnpTcb {
        bootloader: 255,
        ..SnpTcb::default()
    };
    assert!(matches!(
        verify(TeeKind::Snp, &milan(), &policy, NOW),
        Err(AttestationError::TcbNotAccepted { status, .. }) if status == "OutOfDate"
    ));
}

#[test]
fn missing_or_garbage_certificates_are_clear_errors() {
    let mut evidence = milan();
    evidence.certs = vec![vector("vcek_milan.der")];
    assert!(matches!(
        verify(TeeKind::Snp, &evidence, &Policy::permissive(), NOW),
        Err(AttestationError::Missing { .. })
    ));
    evidence.certs = vec![b"not a certificate".to_vec()];
    assert!(matches!(
        verify(TeeKind::Snp, &evidence, &Policy::permissive(), NOW),
        Err(AttestationError::Malformed { .. })
    ));
    for len in [0, 10, 100, 1000] {
        let mut evidence = milan();
        evidence.report.truncate(len);
        assert_eq!(
            verify(TeeKind::Snp, &evidence, &Policy::permissive(), NOW),
            Err(AttestationError::Malformed {
                what: "SEV-SNP report",
                reason: format!("expected 1184 bytes, got {len}"),
            })
        );
    }
}
