//! AWS Nitro attestation documents (COSE_Sign1 over CBOR, with a certificate chain inside).
#![no_main]

#[path = "common.rs"]
mod common;

use libfuzzer_sys::fuzz_target;
use verity_tee::{verify, TeeKind};

fuzz_target!(|document: &[u8]| {
    let evidence = common::evidence(document, None, &[]);
    let _ = verify(
        TeeKind::Nitro,
        &evidence,
        &common::open_policy(),
        common::NITRO_NOW,
    );
});
