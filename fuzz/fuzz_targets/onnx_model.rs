//! ONNX files as a validator or worker loads a registered model: parsing, validation and the
//! summary never panic, whatever the bytes. Seeded with the bundled models.
#![no_main]

use libfuzzer_sys::fuzz_target;
use verity_infer::Model;

fuzz_target!(|bytes: &[u8]| {
    if let Ok(model) = Model::parse(bytes) {
        let _ = model.summary();
        let _ = model.graph();
    }
    if let Ok(model) = Model::from_bytes(bytes) {
        let _ = model.weights_root();
    }
});
