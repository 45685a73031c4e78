//! Every parser and verifier, fed arbitrary bytes and mutated copies of real evidence: an error
//! is fine, a panic is not. This is the deterministic, seconds-long pass that every test run
//! makes; the coverage-guided fuzzers are the cargo-fuzz targets in `fuzz/` (`scripts/fuzz`).

use proptest::prelude::*;
use verity_tee::{verify, Evidence, Policy, TeeKind};

fn vector(path: &str) -> Vec<u8> {
    std::fs::read(format!(
        "{}/tests/vectors/{path}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
}

fn real(kind: TeeKind) -> Evidence {
    match kind {
        TeeKind::Tdx => Evidence {
            report: vector("dcap/tdx_quote"),
            collateral: Some(vector("dcap/tdx_quote_collateral.json")),
            certs: vec![],
        },
        TeeKind::Sgx => Evidence {
            report: vector("dcap/sgx_quote"),
            collateral: Some(vector("dcap/sgx_quote_collateral.json")),
            certs: vec![],
        },
        TeeKind::Snp => Evidence {
            report: hex::decode(String::from_utf8(vector("snp/report_milan.hex")).unwrap().trim())
                .unwrap(),
            collateral: None,
            certs: vec![vector("snp/vcek_milan.der"), vector("snp/cert_chain_milan")],
        },
        TeeKind::Nitro => Evidence {
            report: vector("nitro/attestation.cose"),
            ..Evidence::default()
        },
        TeeKind::Dev => Evidence {
            report: br#"{"measurement":"00","report_data":"00","timestamp":1,"signer":"0x0000000000000000000000000000000000000000","signature":"00"}"#.to_vec(),
            ..Evidence::default()
        },
    }
}

/// Each kind's vectors are valid at their own time: fuzzing there gets past the validity checks
/// to the ones after parsing.
fn valid_time(kind: TeeKind) -> u64 {
    match kind {
        TeeKind::Tdx | TeeKind::Sgx | TeeKind::Dev => 1_751_500_000,
        TeeKind::Snp => 1_700_000_000,
        TeeKind::Nitro => 1_736_179_625,
    }
}

fn kinds() -> impl Strategy<Value = TeeKind> {
    prop_oneof![
        Just(TeeKind::Tdx),
        Just(TeeKind::Sgx),
        Just(TeeKind::Snp),
        Just(TeeKind::Nitro),
        Just(TeeKind::Dev),
    ]
}

fn policy() -> Policy {
    Policy {
        allow_debug: true,
        ..Policy::devnet()
    }
}

/// Which part of the evidence a mutation hits.
#[derive(Debug, Clone, Copy)]
enum Part {
    Report,
    Collateral,
    Cert,
}

#[test]
fn every_real_vector_verifies_at_its_valid_time() {
    for kind in [TeeKind::Tdx, TeeKind::Sgx, TeeKind::Snp, TeeKind::Nitro] {
        verify(kind, &real(kind), &policy(), valid_time(kind))
            .unwrap_or_else(|e| panic!("{kind}: {e}"));
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic(kind in kinds(), bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        let mut evidence = real(kind);
        evidence.report = bytes;
        let _ = verify(kind, &evidence, &policy(), valid_time(kind));
    }

    #[test]
    fn mutated_real_evidence_never_panics(
        kind in kinds(),
        part in prop_oneof![Just(Part::Report), Just(Part::Collateral), Just(Part::Cert)],
        flips in proptest::collection::vec((any::<prop::sample::Index>(), 1u8..=255), 1..8),
        cut in proptest::option::of(any::<prop::sample::Index>()),
    ) {
        let mut evidence = real(kind);
        let target = match part {
            Part::Report => Some(&mut evidence.report),
            Part::Collateral => evidence.collateral.as_mut(),
            Part::Cert => evidence.certs.first_mut(),
        };
        if let Some(bytes) = target.filter(|b| !b.is_empty()) {
            for (at, mask) in &flips {
                let i = at.index(bytes.len());
                bytes[i] ^= mask;
            }
            if let Some(cut) = cut {
                let len = cut.index(bytes.len());
                bytes.truncate(len);
            }
        }
        // Mutated evidence may still verify only where the bytes hit are not what is attested
        // (padding, an unsigned header field): then it must prove exactly what the original
        // proves. Dev's vector is not a valid report, so nothing mutated from it verifies.
        if let Ok(claims) = verify(kind, &evidence, &policy(), valid_time(kind)) {
            let original = verify(kind, &real(kind), &policy(), valid_time(kind));
            prop_assert_eq!(Ok(claims), original, "{} evidence changed and still verified", kind);
        }
    }
}

/// Each kind's report with one byte flipped at 256 spread positions: almost every flip is
/// refused, and a flip that verifies proves exactly what the original does.
#[test]
fn flipped_report_bytes_are_refused_or_prove_the_same() {
    for kind in [TeeKind::Tdx, TeeKind::Sgx, TeeKind::Snp, TeeKind::Nitro] {
        let original = verify(kind, &real(kind), &policy(), valid_time(kind)).unwrap();
        let len = real(kind).report.len();
        let positions: Vec<usize> = (0..256).map(|i| i * len / 256).collect();
        let mut refused = 0;
        for &at in &positions {
            let mut evidence = real(kind);
            evidence.report[at] ^= 0x5a;
            match verify(kind, &evidence, &policy(), valid_time(kind)) {
                Err(_) => refused += 1,
                Ok(claims) => assert_eq!(claims, original, "{kind}: byte {at} flipped"),
            }
        }
        assert!(
            refused * 10 >= positions.len() * 9,
            "{kind}: only {refused} of {} flipped reports refused",
            positions.len()
        );
    }
}
