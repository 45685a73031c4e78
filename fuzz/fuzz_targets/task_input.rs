//! Task inputs (`.npy` or JSON) as workers and validators read them, and output documents as
//! validators compare them in a referee's check: errors, never panics. The first byte picks the
//! dtype the input is read as. Seeded with the bundled samples.
#![no_main]

use libfuzzer_sys::fuzz_target;
use verity_infer::{read_tensor, DataType, OutputDocument};

const DTYPES: [DataType; 4] = [DataType::F32, DataType::I64, DataType::I8, DataType::U8];

fuzz_target!(|bytes: &[u8]| {
    let Some((&pick, input)) = bytes.split_first() else {
        return;
    };
    let _ = read_tensor(input, DTYPES[usize::from(pick) % DTYPES.len()]);
    let _ = OutputDocument::parse(input);
});
