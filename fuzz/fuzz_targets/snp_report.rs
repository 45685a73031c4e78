//! SEV-SNP attestation reports against the real Milan VCEK, ASK and ARK.
#![no_main]

#[path = "common.rs"]
mod common;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|report: &[u8]| {
    common::verify_snp(report, &[common::SNP_VCEK, common::SNP_CHAIN]);
});
