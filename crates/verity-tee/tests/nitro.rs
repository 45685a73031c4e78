//! AWS Nitro vectors from `tests/vectors/nitro` (nitro_attest's test document; evervault's
//! attestation-doc-validation test data), at the fixed times their README gives.

use base64::Engine as _;
use verity_tee::{verify, AttestationError, Evidence, KindRule, Policy, TeeKind};

const COSE_NOW: u64 = 1_736_179_625;
const EVERVAULT_NOW: u64 = 1_695_049_410;
const HOUR: u64 = 3_600;

fn vector(name: &str) -> Vec<u8> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/vectors/nitro/");
    std::fs::read(format!("{path}{name}")).unwrap()
}

fn evidence(report: Vec<u8>) -> Evidence {
    Evidence {
        report,
        ..Evidence::default()
    }
}

fn cose() -> Evidence {
    evidence(vector("attestation.cose"))
}

fn evervault() -> Evidence {
    let text = String::from_utf8(vector("valid-attestation-doc-base64")).unwrap();
    evidence(
        base64::engine::general_purpose::STANDARD
            .decode(text.trim())
            .unwrap(),
    )
}

/// Test documents come from debug-mode or test enclaves; accept debug to see the rest.
fn policy() -> Policy {
    let mut policy = Policy::permissive();
    policy.allow_debug = true;
    policy
}

#[test]
fn both_documents_are_valid_at_their_time() {
    for (evidence, now) in [(cose(), COSE_NOW), (evervault(), EVERVAULT_NOW)] {
        let enclave = verify(TeeKind::Nitro, &evidence, &policy(), now).unwrap();
        assert_eq!(enclave.kind, TeeKind::Nitro);
        if !enclave.debug {
            assert_eq!(enclave.measurement.len(), 3 * 48, "PCR0..2, SHA-384");
        }
    }
}

#[test]
fn outside_the_leaf_validity_is_rejected() {
    for (evidence, now) in [(cose(), COSE_NOW), (evervault(), EVERVAULT_NOW)] {
        for at in [now - 4 * HOUR, now + 4 * HOUR] {
            let result = verify(TeeKind::Nitro, &evidence, &policy(), at);
            match result {
                Err(AttestationError::Rejected { reason, .. }) => assert!(
                    reason.contains("expired") || reason.contains("not yet valid"),
                    "{reason}"
                ),
                other => panic!("at {at}: {other:?}"),
            }
        }
    }
}

#[test]
fn flipped_bits_in_the_signature_or_payload_are_rejected() {
    let original = cose();
    let len = original.report.len();
    for at in [len - 10, len / 2, 40] {
        let mut tampered = original.clone();
        tampered.report[at] ^= 0x01;
        assert!(
            verify(TeeKind::Nitro, &tampered, &policy(), COSE_NOW).is_err(),
            "flipped bit at {at} accepted"
        );
    }
}

#[test]
fn stale_documents_and_other_measurements_are_rejected() {
    let mut stale = policy();
    stale.max_age_secs = Some(1);
    let now = COSE_NOW + 60;
    assert!(verify(TeeKind::Nitro, &cose(), &policy(), now).is_ok());
    match verify(TeeKind::Nitro, &cose(), &stale, now) {
        Err(AttestationError::Rejected { reason, .. }) => {
            assert!(reason.contains("old"), "{reason}")
        }
        other => panic!("{other:?}"),
    }

    let mut pinned = policy();
    pinned.kinds.insert(
        TeeKind::Nitro,
        KindRule {
            measurements: Some(vec![verity_tee::HexBytes(vec![0xff; 144])]),
        },
    );
    assert!(matches!(
        verify(TeeKind::Nitro, &cose(), &pinned, COSE_NOW),
        Err(AttestationError::MeasurementNotAllowed { .. })
    ));
}

#[test]
fn debug_enclaves_need_a_policy_that_allows_them() {
    for (evidence, now) in [(cose(), COSE_NOW), (evervault(), EVERVAULT_NOW)] {
        let enclave = verify(TeeKind::Nitro, &evidence, &policy(), now).unwrap();
        let strict = verify(TeeKind::Nitro, &evidence, &Policy::permissive(), now);
        if enclave.debug {
            assert_eq!(strict, Err(AttestationError::DebugNotAllowed));
        } else {
            assert!(strict.is_ok());
        }
    }
}

#[test]
fn garbage_is_an_error_not_a_panic() {
    for bytes in [
        &[][..],
        &[0xd2][..],
        &[0x84, 0x40, 0xa0, 0x40, 0x40][..],
        b"hello",
    ] {
        assert!(verify(
            TeeKind::Nitro,
            &evidence(bytes.to_vec()),
            &policy(),
            COSE_NOW
        )
        .is_err());
    }
}

#[test]
fn the_documents_public_key_must_be_the_enclave_key_being_registered() {
    let enclave = verify(TeeKind::Nitro, &cose(), &policy(), COSE_NOW).unwrap();
    assert_eq!(enclave.issued_at, Some(COSE_NOW));
    let key = enclave
        .public_key
        .clone()
        .expect("this document carries a public key");
    // Give the document the report_data a binding expects, so that only the key decides.
    let worker = verity_types::Address([1; 20]);
    let nonce = [2; 32];
    let binding = |enclave_key| verity_tee::Binding {
        chain_id: "verity-test",
        worker: &worker,
        enclave_key,
        nonce: &nonce,
    };
    let mut bound = enclave.clone();
    bound.report_data = binding(&key).report_data().to_vec();
    assert_eq!(bound.check_binding(&binding(&key)), Ok(()));
    let other = [7u8; 32];
    bound.report_data = binding(&other).report_data().to_vec();
    assert_eq!(
        bound.check_binding(&binding(&other)),
        Err(AttestationError::PublicKeyMismatch)
    );
}
