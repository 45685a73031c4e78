//! Generation parameters and logits from a task's prompt document: choosing a token never
//! panics, and any token it picks is in the vocabulary with a log-probability ≤ 0. The first 25 bytes are the parameters
//! (temperature f64, top_k u32 with 0 for none, top_p f64 with anything outside (0, 1] taken
//! as given, seed u8), the rest the logits as f32s.
#![no_main]

use libfuzzer_sys::fuzz_target;
use verity_lm::sampling::choose;
use verity_lm::SamplingParams;

fuzz_target!(|bytes: &[u8]| {
    if bytes.len() < 25 {
        return;
    }
    let f64_at = |i: usize| f64::from_le_bytes(bytes[i..i + 8].try_into().unwrap());
    let top_k = u32::from_le_bytes(bytes[8..12].try_into().unwrap());
    let params = SamplingParams {
        temperature: f64_at(0),
        top_k: (top_k != 0).then_some(top_k as usize),
        top_p: (bytes[24] & 1 == 1).then(|| f64_at(12)),
        seed: bytes[20] as u64,
    };
    let logits: Vec<f32> = bytes[25..]
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
        .collect();
    if let Ok(choice) = choose(&logits, &params, bytes[21] as u64) {
        assert!((choice.token as usize) < logits.len());
        assert!(choice.logprob <= 0.0, "{choice:?}");
    }
});
