//! DCAP collateral (TCB info, QE identity, CRLs, certificate chains as JSON) for a real quote.
#![no_main]

#[path = "common.rs"]
mod common;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&pick, collateral)) = data.split_first() else {
        return;
    };
    let (kind, quote, _) = common::dcap(pick);
    common::verify_dcap(kind, quote, collateral);
});
