//! Attestation policies, TOML or JSON, as files and SetAttestationPolicy transactions carry them.
#![no_main]

use libfuzzer_sys::fuzz_target;
use verity_tee::Policy;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = Policy::parse(text);
    }
});
