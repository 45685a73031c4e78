//! SEV-SNP certificates (DER or PEM, one or a chain) for the real Milan report. The first byte
//! picks whether the fuzzed bytes stand for the VCEK or for the ASK+ARK chain.
#![no_main]

#[path = "common.rs"]
mod common;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&pick, cert)) = data.split_first() else {
        return;
    };
    let certs: [&[u8]; 2] = if pick & 1 == 0 {
        [cert, common::SNP_CHAIN]
    } else {
        [common::SNP_VCEK, cert]
    };
    common::verify_snp(&common::snp_report(), &certs);
});
