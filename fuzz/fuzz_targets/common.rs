//! The real evidence each target mutates around, and a policy that lets parsing go as deep as it
//! can. Shared by every target with `#[path]`.

#![allow(dead_code)] // each target uses part of this

use verity_tee::{verify, Evidence, Policy, TeeKind};

macro_rules! vector {
    ($path:literal) => {
        include_bytes!(concat!("../../crates/verity-tee/tests/vectors/", $path))
    };
}

pub const TDX_QUOTE: &[u8] = vector!("dcap/tdx_quote");
pub const TDX_COLLATERAL: &[u8] = vector!("dcap/tdx_quote_collateral.json");
pub const SGX_QUOTE: &[u8] = vector!("dcap/sgx_quote");
pub const SGX_COLLATERAL: &[u8] = vector!("dcap/sgx_quote_collateral.json");
pub const DCAP_NOW: u64 = 1_751_500_000;
pub const SNP_REPORT_HEX: &[u8] = vector!("snp/report_milan.hex");
pub const SNP_VCEK: &[u8] = vector!("snp/vcek_milan.der");
pub const SNP_CHAIN: &[u8] = vector!("snp/cert_chain_milan");
pub const SNP_NOW: u64 = 1_700_000_000;
pub const NITRO_NOW: u64 = 1_736_179_625;

/// Every kind, debug and dev allowed: no early refusal before the parsers run.
pub fn open_policy() -> Policy {
    Policy {
        allow_debug: true,
        ..Policy::devnet()
    }
}

/// A real DCAP quote and its collateral: TDX for an even `pick`, SGX for an odd one.
pub fn dcap(pick: u8) -> (TeeKind, &'static [u8], &'static [u8]) {
    if pick & 1 == 0 {
        (TeeKind::Tdx, TDX_QUOTE, TDX_COLLATERAL)
    } else {
        (TeeKind::Sgx, SGX_QUOTE, SGX_COLLATERAL)
    }
}

/// Verifies a DCAP quote with its collateral at the vectors' time.
pub fn verify_dcap(kind: TeeKind, quote: &[u8], collateral: &[u8]) {
    let evidence = evidence(quote, Some(collateral), &[]);
    let _ = verify(kind, &evidence, &open_policy(), DCAP_NOW);
}

/// Verifies an SEV-SNP report with its certificates at the vectors' time.
pub fn verify_snp(report: &[u8], certs: &[&[u8]]) {
    let evidence = evidence(report, None, certs);
    let _ = verify(TeeKind::Snp, &evidence, &open_policy(), SNP_NOW);
}

pub fn snp_report() -> Vec<u8> {
    let text = std::str::from_utf8(SNP_REPORT_HEX).expect("hex text");
    (0..text.trim().len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text.trim()[i..i + 2], 16).expect("hex"))
        .collect()
}

pub fn evidence(report: &[u8], collateral: Option<&[u8]>, certs: &[&[u8]]) -> Evidence {
    Evidence {
        report: report.to_vec(),
        collateral: collateral.map(<[u8]>::to_vec),
        certs: certs.iter().map(|c| c.to_vec()).collect(),
    }
}
