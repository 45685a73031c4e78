//! Verification time per kind of evidence, over the real vectors. Baseline: the dev kind (JSON
//! parsing and one secp256k1 recovery), measured in the same run.

use criterion::{criterion_group, criterion_main, Criterion};
use verity_tee::{verify, DevReport, Evidence, Policy, TeeKind};
use verity_types::{AccountKey, Address};

fn vector(path: &str) -> Vec<u8> {
    std::fs::read(format!(
        "{}/tests/vectors/{path}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
}

fn bench(c: &mut Criterion) {
    let policy = Policy {
        allow_debug: true,
        ..Policy::devnet()
    };

    let report_data = verity_tee::Binding {
        chain_id: "bench",
        worker: &Address([1; 20]),
        enclave_key: b"key",
        nonce: &[0; 32],
    }
    .report_data();
    let dev = DevReport::sign(&AccountKey::generate(), b"worker", &report_data, 1_000);
    let cases = [
        (
            "dev (baseline)",
            TeeKind::Dev,
            Evidence {
                report: dev.to_bytes(),
                ..Evidence::default()
            },
            1_000,
        ),
        (
            "sgx",
            TeeKind::Sgx,
            Evidence {
                report: vector("dcap/sgx_quote"),
                collateral: Some(vector("dcap/sgx_quote_collateral.json")),
                certs: vec![],
            },
            1_751_500_000,
        ),
        (
            "tdx",
            TeeKind::Tdx,
            Evidence {
                report: vector("dcap/tdx_quote"),
                collateral: Some(vector("dcap/tdx_quote_collateral.json")),
                certs: vec![],
            },
            1_751_500_000,
        ),
        (
            "snp",
            TeeKind::Snp,
            Evidence {
                report: hex::decode(
                    String::from_utf8(vector("snp/report_milan.hex"))
                        .unwrap()
                        .trim(),
                )
                .unwrap(),
                collateral: None,
                certs: vec![vector("snp/vcek_milan.der"), vector("snp/cert_chain_milan")],
            },
            1_700_000_000,
        ),
        (
            "nitro",
            TeeKind::Nitro,
            Evidence {
                report: vector("nitro/attestation.cose"),
                ..Evidence::default()
            },
            1_736_179_625,
        ),
    ];
    let mut group = c.benchmark_group("attestation_verify");
    group.sample_size(20);
    for (name, kind, evidence, now) in &cases {
        verify(*kind, evidence, &policy, *now).expect("the vector verifies");
        group.bench_function(*name, |b| {
            b.iter(|| verify(*kind, evidence, &policy, *now).unwrap())
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
