//! TDX and SGX DCAP quotes (the first byte picks the kind) against their real collateral.
#![no_main]

#[path = "common.rs"]
mod common;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&pick, quote)) = data.split_first() else {
        return;
    };
    let (kind, _, collateral) = common::dcap(pick);
    common::verify_dcap(kind, quote, collateral);
});
