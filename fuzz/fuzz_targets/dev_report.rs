//! Dev reports (JSON with a secp256k1 signature).
#![no_main]

#[path = "common.rs"]
mod common;

use libfuzzer_sys::fuzz_target;
use verity_tee::{verify, TeeKind};

fuzz_target!(|report: &[u8]| {
    let evidence = common::evidence(report, None, &[]);
    let _ = verify(TeeKind::Dev, &evidence, &common::open_policy(), 1_000_000);
});
