//! DCAP collateral (TCB info, QE identity, CRLs, certificate chains as JSON) for a real quote.
#![no_main]

#[path = "common.rs"]
mod common;

use libfuzzer_sys::fuzz_target;
use verity_tee::{verify, TeeKind};

fuzz_target!(|data: &[u8]| {
    let Some((&pick, collateral)) = data.split_first() else {
        return;
    };
    let (kind, quote) = if pick & 1 == 0 {
        (TeeKind::Tdx, common::TDX_QUOTE)
    } else {
        (TeeKind::Sgx, common::SGX_QUOTE)
    };
    let evidence = common::evidence(quote, Some(collateral), &[]);
    let _ = verify(kind, &evidence, &common::open_policy(), common::DCAP_NOW);
});
