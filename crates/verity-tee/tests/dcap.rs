//! Intel DCAP vectors from `tests/vectors/dcap` (real SGX and TDX quotes with their collateral,
//! from Phala-Network/dcap-qvl `sample/`), at the fixed times their README gives.

use verity_tee::{verify, AttestationError, Evidence, HexBytes, KindRule, Policy, TeeKind};

const NOW: u64 = 1_751_500_000;
const DAY: u64 = 86_400;

fn vector(name: &str) -> Vec<u8> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/vectors/dcap/");
    std::fs::read(format!("{path}{name}")).unwrap()
}

fn evidence(quote: &str, collateral: &str) -> Evidence {
    Evidence {
        report: vector(quote),
        collateral: Some(vector(collateral)),
        certs: Vec::new(),
    }
}

fn sgx() -> Evidence {
    evidence("sgx_quote", "sgx_quote_collateral.json")
}

fn tdx() -> Evidence {
    evidence("tdx_quote", "tdx_quote_collateral.json")
}

fn rejected(result: Result<verity_tee::VerifiedEnclave, AttestationError>) -> String {
    match result {
        Err(AttestationError::Rejected { reason, .. }) => reason,
        other => panic!("expected a vendor rejection, got {other:?}"),
    }
}

#[test]
fn sgx_quote_is_valid_with_its_tcb_status_and_advisories() {
    let enclave = verify(TeeKind::Sgx, &sgx(), &Policy::permissive(), NOW).unwrap();
    assert_eq!(enclave.kind, TeeKind::Sgx);
    assert_eq!(enclave.tcb_status, "ConfigurationAndSWHardeningNeeded");
    assert_eq!(enclave.advisories, ["INTEL-SA-00289", "INTEL-SA-00615"]);
    assert_eq!(enclave.measurement.len(), 32);
    assert_eq!(enclave.report_data.len(), 64);
}

#[test]
fn tdx_quote_is_valid_and_up_to_date() {
    let enclave = verify(TeeKind::Tdx, &tdx(), &Policy::permissive(), NOW).unwrap();
    assert_eq!(enclave.kind, TeeKind::Tdx);
    assert_eq!(enclave.tcb_status, "UpToDate");
    assert_eq!(enclave.measurement.len(), 5 * 48, "MRTD and four RTMRs");
    assert!(!enclave.debug);
}

#[test]
fn outdated_tdx_platform_has_no_matching_tcb_level() {
    let evidence = evidence("tdx_quote_outdated", "tdx_quote_outdated_collateral.json");
    let reason = rejected(verify(
        TeeKind::Tdx,
        &evidence,
        &Policy::permissive(),
        1_772_600_000,
    ));
    assert_eq!(reason, "No matching TCB level found");
}

#[test]
fn collateral_outside_its_validity_is_rejected() {
    for now in [NOW - 40 * DAY, NOW + 40 * DAY] {
        for (kind, evidence) in [(TeeKind::Sgx, sgx()), (TeeKind::Tdx, tdx())] {
            let reason = rejected(verify(kind, &evidence, &Policy::permissive(), now));
            assert!(
                ["expired", "future", "not yet valid"]
                    .iter()
                    .any(|word| reason.contains(word)),
                "{kind} at {now}: {reason}"
            );
        }
    }
}

#[test]
fn a_flipped_bit_anywhere_that_is_signed_is_rejected() {
    let original = tdx();
    let quote = &original.report;
    // TDX v4 layout: 48-byte header, 584-byte TD report (report_data is its last 64 bytes), then
    // the signature data (length, ECDSA signature, attestation key, certification data).
    let report_data_at = 48 + 584 - 64;
    let signature_at = 48 + 584 + 4;
    // Inside the PCK leaf certificate: the first PEM certificate of the chain at the end.
    let pem = b"-----BEGIN CERTIFICATE-----";
    let pck_cert_at = quote.windows(pem.len()).position(|w| w == pem).unwrap() + pem.len() + 200;
    for (what, at, expected) in [
        (
            "report_data",
            report_data_at,
            "ISV enclave report signature is invalid",
        ),
        (
            "quote signature",
            signature_at,
            "ISV enclave report signature is invalid",
        ),
        (
            "PCK certificate",
            pck_cert_at,
            "Failed to verify certificate chain: UnknownIssuer",
        ),
    ] {
        let mut tampered = original.clone();
        tampered.report[at] ^= 0x01;
        let reason = rejected(verify(TeeKind::Tdx, &tampered, &Policy::permissive(), NOW));
        assert_eq!(reason, expected, "a flipped bit in the {what}");
    }
}

#[test]
fn policy_rejects_other_measurements_statuses_and_kinds() {
    let enclave = verify(TeeKind::Tdx, &tdx(), &Policy::permissive(), NOW).unwrap();

    let mut pinned = Policy::permissive();
    pinned.kinds.insert(
        TeeKind::Tdx,
        KindRule {
            measurements: Some(vec![HexBytes(enclave.measurement.clone())]),
        },
    );
    assert!(verify(TeeKind::Tdx, &tdx(), &pinned, NOW).is_ok());
    pinned.kinds.insert(
        TeeKind::Tdx,
        KindRule {
            measurements: Some(vec![HexBytes(vec![0; 240])]),
        },
    );
    assert!(matches!(
        verify(TeeKind::Tdx, &tdx(), &pinned, NOW),
        Err(AttestationError::MeasurementNotAllowed { .. })
    ));

    let mut strict = Policy::permissive();
    strict.accepted_tcb_statuses = vec!["UpToDate".into()];
    assert!(matches!(
        verify(TeeKind::Sgx, &sgx(), &strict, NOW),
        Err(AttestationError::TcbNotAccepted { .. })
    ));

    let mut no_sgx = Policy::permissive();
    no_sgx.kinds.remove(&TeeKind::Sgx);
    assert_eq!(
        verify(TeeKind::Sgx, &sgx(), &no_sgx, NOW),
        Err(AttestationError::KindNotAllowed(TeeKind::Sgx))
    );
}

#[test]
fn a_quote_of_the_other_kind_is_rejected() {
    assert_eq!(
        rejected(verify(TeeKind::Sgx, &tdx(), &Policy::permissive(), NOW)),
        "the quote is a tdx quote"
    );
    assert_eq!(
        rejected(verify(TeeKind::Tdx, &sgx(), &Policy::permissive(), NOW)),
        "the quote is a sgx quote"
    );
}

#[test]
fn report_data_that_binds_another_key_is_rejected() {
    let enclave = verify(TeeKind::Tdx, &tdx(), &Policy::permissive(), NOW).unwrap();
    let worker = verity_types::Address([7; 20]);
    assert_eq!(
        enclave.check_binding(&verity_tee::Binding {
            chain_id: "verity-devnet",
            worker: &worker,
            enclave_key: b"some enclave key",
            nonce: &[0; 32],
        }),
        Err(AttestationError::ReportDataMismatch)
    );
}

#[test]
fn malformed_input_is_an_error_not_a_panic() {
    let mut evidence = tdx();
    evidence.collateral = Some(b"{not json".to_vec());
    assert!(matches!(
        verify(TeeKind::Tdx, &evidence, &Policy::permissive(), NOW),
        Err(AttestationError::Malformed { .. })
    ));
    for len in [0, 1, 47, 48, 100, 600, 1000] {
        let mut evidence = tdx();
        evidence.report.truncate(len);
        let reason = rejected(verify(TeeKind::Tdx, &evidence, &Policy::permissive(), NOW));
        assert!(
            reason.starts_with("Failed to decode quote"),
            "{len}: {reason}"
        );
    }
    let mut evidence = tdx();
    evidence.collateral = None;
    assert!(matches!(
        verify(TeeKind::Tdx, &evidence, &Policy::permissive(), NOW),
        Err(AttestationError::Missing { .. })
    ));
}

#[test]
fn policies_parse_from_toml_and_json() {
    let toml = r#"
accepted_tcb_statuses = ["UpToDate"]
allow_debug = false
[kinds.tdx]
measurements = ["ab01"]
[kinds.sgx]
"#;
    let policy = Policy::parse(toml).unwrap();
    assert_eq!(policy.kinds.len(), 2);
    let json = serde_json::to_string(&policy).unwrap();
    assert_eq!(Policy::parse(&json).unwrap(), policy);
    assert!(matches!(
        Policy::parse("allow_everything = true"),
        Err(AttestationError::Malformed { what: "policy", .. })
    ));
}

#[test]
fn chains_must_end_in_the_policy_root() {
    let mut policy = Policy::permissive();
    policy.intel_root_ca = Some(HexBytes(vector("Intel_SGX_RootCA.der")));
    assert!(verify(TeeKind::Sgx, &sgx(), &policy, NOW).is_ok());
    // Any other root, here the Intel root with one bit of its public key flipped, signed neither
    // the chain nor the CRL that comes with it.
    let mut other = vector("Intel_SGX_RootCA.der");
    let key_at = other
        .windows(4)
        .position(|w| w == [0x03, 0x42, 0x00, 0x04])
        .expect("an uncompressed P-256 key")
        + 20;
    other[key_at] ^= 0x01;
    policy.intel_root_ca = Some(HexBytes(other));
    assert_eq!(
        rejected(verify(TeeKind::Sgx, &sgx(), &policy, NOW)),
        "Failed to parse root CA CRL: InvalidCrlSignatureForPublicKey"
    );
}

#[test]
fn collateral_older_than_the_policy_minimum_is_rejected() {
    // Both sample collaterals are TCB evaluation 17.
    let mut policy = Policy::permissive();
    policy.dcap_min_tcb_evaluation = Some(17);
    assert!(verify(TeeKind::Sgx, &sgx(), &policy, NOW).is_ok());
    assert!(verify(TeeKind::Tdx, &tdx(), &policy, NOW).is_ok());
    policy.dcap_min_tcb_evaluation = Some(18);
    for (kind, evidence) in [(TeeKind::Sgx, sgx()), (TeeKind::Tdx, tdx())] {
        let error = verify(kind, &evidence, &policy, NOW).unwrap_err();
        assert!(
            error
                .to_string()
                .contains("TCB evaluation data number 17; the policy requires at least 18"),
            "{error}"
        );
    }
}

/// The measurements as the quotes carry them, read at the offsets of Intel's quote layouts (SGX
/// v3: MRENCLAVE at 112; TDX v4: MRTD at 184, RTMR0..3 at 376) by a separate script.
#[test]
fn measurements_are_the_known_values_of_the_vectors() {
    let sgx = verify(TeeKind::Sgx, &sgx(), &Policy::permissive(), NOW).unwrap();
    assert_eq!(
        hex::encode(sgx.measurement),
        "33d8736db756ed4997e04ba358d27833188f1932ff7b1d156904d3f560452fbb"
    );
    let tdx = verify(TeeKind::Tdx, &tdx(), &Policy::permissive(), NOW).unwrap();
    let (mrtd, rtmrs) = tdx.measurement.split_at(48);
    assert_eq!(
        hex::encode(mrtd),
        "91eb2b44d141d4ece09f0c75c2c53d247a3c68edd7fafe8a3520c942a604a407de03ae6dc5f87f27428b2538873118b7"
    );
    assert_eq!(
        hex::encode(&rtmrs[..48]),
        "44c0197b39157fdd7a4dcc44767f9d6b0bb3977c7a8e347b8492f827fe9d9e5c48aca29b220b80b6a540cf994b9bc9c0"
    );
    assert_eq!(rtmrs[144..], [0; 48], "RTMR3 is unused on this guest");
}
