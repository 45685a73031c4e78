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
    // The COSE signature's last bytes, the leaf certificate inside the payload, and PCR0.
    for (at, expected) in [
        (len - 10, "cose signature verification failed"),
        (len / 2, "certificate 1 (4c2ecc4dee288943.eu-central-1.aws.nitro-enclaves) signature verification failed: signature verification error"),
        (110, "cose signature verification failed"),
    ] {
        let mut tampered = original.clone();
        tampered.report[at] ^= 0x01;
        assert_eq!(
            verify(TeeKind::Nitro, &tampered, &policy(), COSE_NOW),
            Err(AttestationError::Rejected {
                kind: TeeKind::Nitro,
                reason: expected.into()
            }),
            "flipped bit at {at}"
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
        match verify(
            TeeKind::Nitro,
            &evidence(bytes.to_vec()),
            &policy(),
            COSE_NOW,
        ) {
            Err(AttestationError::Rejected { reason, .. }) => assert!(
                reason.starts_with("attestation document") && reason.contains("malformed"),
                "{reason}"
            ),
            other => panic!("{bytes:?}: {other:?}"),
        }
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

/// PCR0, PCR1 and PCR2 of the nitro_attest document: the 48-byte strings at offsets 104, 155 and
/// 206 of its bytes.
#[test]
fn the_measurement_is_the_known_value_of_the_vector() {
    let enclave = verify(TeeKind::Nitro, &cose(), &policy(), COSE_NOW).unwrap();
    assert!(!enclave.debug);
    let report = cose().report;
    for (pcr, at) in [104, 155, 206].into_iter().enumerate() {
        assert_eq!(
            enclave.measurement[pcr * 48..(pcr + 1) * 48],
            report[at..at + 48],
            "PCR{pcr}"
        );
    }
    assert_eq!(
        hex::encode(&enclave.measurement[..48]),
        "8bb159f202bb95d6d4d98e0e103918246cea734f1d57cd263e4fd56075ed53f6fa8c68854817a32749a241e11874c26b"
    );
}
