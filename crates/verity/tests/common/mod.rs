//! Helpers shared by the integration tests that start real processes.

use std::net::TcpListener;

/// The first of `n` consecutive free loopback ports, away from the devnet's defaults. `seed`
/// keeps the callers of one test binary apart; the process id keeps test binaries apart.
pub fn free_ports(n: u16, seed: u16) -> u16 {
    let pid = std::process::id() as u16;
    for attempt in 0..200u16 {
        let base = 20_000
            + (pid
                .wrapping_mul(31)
                .wrapping_add(seed)
                .wrapping_add(attempt * 97))
                % 30_000;
        if (0..n).all(|i| TcpListener::bind(("127.0.0.1", base + i)).is_ok()) {
            return base;
        }
    }
    panic!("no {n} consecutive free ports");
}
