//! Helpers shared by the integration tests that start real processes.
#![allow(dead_code)] // each test binary uses a part

pub mod devnet;
#[path = "../../../verity-data/tests/support/jsipfs.rs"]
pub mod jsipfs;

/// How many sets of ports a test tries before it gives up.
pub const PORT_ATTEMPTS: u16 = 6;

/// The API and p2p base ports of a test's network for `attempt`, each with room for `n`
/// consecutive ports, away from the devnet's defaults and the ephemeral range. Nothing is probed: a port another
/// process holds makes ours fail to bind with "Address already in use" ([`port_taken`]), and the
/// test starts again on the next attempt's ports. `seed` keeps the callers of one test binary
/// apart; the process id keeps test binaries apart.
pub fn ports(n: u16, seed: u16, attempt: u16) -> (u16, u16) {
    let pid = std::process::id() as u16;
    // 10000..32000: below Linux's ephemeral range, where outgoing connections take their ports.
    let base = |salt: u16| {
        10_000
            + (pid
                .wrapping_mul(31)
                .wrapping_add(seed)
                .wrapping_add(salt)
                .wrapping_add(attempt.wrapping_mul(7_919)))
                % (22_000 - n)
    };
    let api = base(0);
    let mut p2p = base(4_999);
    if p2p.abs_diff(api) < n {
        p2p = api + n;
    }
    (api, p2p)
}

/// Whether a process's output says one of its ports was taken.
pub fn port_taken(output: &str) -> bool {
    output.contains("Address already in use")
}

/// The same for a log file (absent: no).
pub fn port_taken_in(log: &std::path::Path) -> bool {
    std::fs::read_to_string(log).is_ok_and(|text| port_taken(&text))
}

/// The bundled digits' held-out split as a CSV: 64 pixel columns `p0..p63`, then `label`
/// (360 rows; the digits MLP labels 349 right).
pub fn digits_csv() -> String {
    let split: serde_json::Value = serde_json::from_slice(
        &std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../models/samples/digits_test.json"
        ))
        .unwrap(),
    )
    .unwrap();
    let mut csv: String = (0..64).map(|i| format!("p{i},")).collect();
    csv.push_str("label\n");
    for (pixels, label) in split["pixels"]
        .as_array()
        .unwrap()
        .iter()
        .zip(split["labels"].as_array().unwrap())
    {
        for p in pixels.as_array().unwrap() {
            csv.push_str(&format!("{p},"));
        }
        csv.push_str(&format!("{label}\n"));
    }
    csv
}
