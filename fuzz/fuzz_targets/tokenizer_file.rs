//! `tokenizer.json` files as a worker loads a registered language model's: loading, encoding
//! and decoding never panic, whatever the bytes. Seeded with the bundled model's tokenizer.
#![no_main]

use libfuzzer_sys::fuzz_target;
use verity_lm::Tokenizer;

fuzz_target!(
    init: {
        // The tokenizers crate panics on some malformed files and our wrapper turns a panic into
        // an error: panics must unwind to it, as they do outside the fuzzer, not abort at once.
        // One that escapes the wrapper still reaches libFuzzer's catch and counts as a crash.
        std::panic::set_hook(Box::new(|_| {}));
    },
    |bytes: &[u8]| {
        if let Ok(tokenizer) = Tokenizer::from_bytes(bytes, "fuzz") {
            if let Ok(ids) = tokenizer.encode("Call me Ishmael. 12 ships, naïve café — 鯨 🐋") {
                let _ = tokenizer.decode(&ids);
            }
            let _ = tokenizer.decode(&[0, 1, 2, u32::MAX]);
            let _ = tokenizer.vocab_size();
        }
    }
);
