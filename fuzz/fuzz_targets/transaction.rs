//! Transactions as they arrive from the network (RegisterEnclave carries evidence): decoding
//! never panics, and whatever decodes re-encodes to the same bytes (one encoding per
//! transaction, so its hash is its identity).
#![no_main]

use libfuzzer_sys::fuzz_target;
use verity_types::SignedTx;

fuzz_target!(|bytes: &[u8]| {
    if let Ok(tx) = SignedTx::decode(bytes) {
        assert_eq!(tx.encode(), bytes, "decode and encode disagree");
        let _ = tx.sender();
    }
});
