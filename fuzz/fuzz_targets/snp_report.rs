//! SEV-SNP attestation reports against the real Milan VCEK, ASK and ARK.
#![no_main]

#[path = "common.rs"]
mod common;

use libfuzzer_sys::fuzz_target;
use verity_tee::{verify, TeeKind};

fuzz_target!(|report: &[u8]| {
    let evidence = common::evidence(report, None, &[common::SNP_VCEK, common::SNP_CHAIN]);
    let _ = verify(
        TeeKind::Snp,
        &evidence,
        &common::open_policy(),
        common::SNP_NOW,
    );
});
