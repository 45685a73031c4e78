//! TDX and SGX DCAP quotes (the first byte picks the kind) against their real collateral.
#![no_main]

#[path = "common.rs"]
mod common;

use libfuzzer_sys::fuzz_target;
use verity_tee::{verify, TeeKind};

fuzz_target!(|data: &[u8]| {
    let Some((&pick, quote)) = data.split_first() else {
        return;
    };
    let (kind, collateral) = if pick & 1 == 0 {
        (TeeKind::Tdx, common::TDX_COLLATERAL)
    } else {
        (TeeKind::Sgx, common::SGX_COLLATERAL)
    };
    let evidence = common::evidence(quote, Some(collateral), &[]);
    let _ = verify(kind, &evidence, &common::open_policy(), common::DCAP_NOW);
});
