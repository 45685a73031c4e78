//! SEV-SNP certificates (DER or PEM, one or a chain) for the real Milan report. The first byte
//! picks whether the fuzzed bytes stand for the VCEK or for the ASK+ARK chain.
#![no_main]

#[path = "common.rs"]
mod common;

use libfuzzer_sys::fuzz_target;
use verity_tee::{verify, TeeKind};

fuzz_target!(|data: &[u8]| {
    let Some((&pick, cert)) = data.split_first() else {
        return;
    };
    let certs: [&[u8]; 2] = if pick & 1 == 0 {
        [cert, common::SNP_CHAIN]
    } else {
        [common::SNP_VCEK, cert]
    };
    let evidence = common::evidence(&common::snp_report(), None, &certs);
    let _ = verify(
        TeeKind::Snp,
        &evidence,
        &common::open_policy(),
        common::SNP_NOW,
    );
});
