//! Overload: a network offered three times the task rate it sustains keeps finalizing at no less
//! than 80 % of that rate. Both figures come from `verity bench tasks` on fresh devnets in this
//! run: the sustained rate from a closed loop (a bounded number of tasks in flight), then an open
//! loop at three times it, whose surplus the nodes must shed (429) and queue (Pending) rather
//! than collapse under.
//!
//! Both rates are the steady ones, between the 10 % and the 90 % marks of finalizations: the
//! whole-run rate also counts the start-up and the drain after the last submission, when the
//! network is no longer overloaded, and swung from 0.79× to 1.03× over runs of the same build.

mod common;

use std::process::Command;

use serde_json::Value;

/// `verity bench tasks` with `args`, its `--json` report.
fn bench_tasks(args: &[&str], seed: u16) -> Value {
    (0..common::PORT_ATTEMPTS)
        .find_map(|attempt| {
            let (api, p2p) = common::ports(4, seed, attempt);
            let output = Command::new(env!("CARGO_BIN_EXE_verity"))
                .args(["bench", "tasks", "--json"])
                .args(args)
                .args(["--api-port", &api.to_string()])
                .args(["--p2p-port", &p2p.to_string()])
                .output()
                .unwrap();
            let stderr = String::from_utf8_lossy(&output.stderr);
            if common::port_taken(&stderr) {
                return None;
            }
            assert!(
                output.status.success(),
                "verity bench tasks {args:?}: {stderr}"
            );
            Some(serde_json::from_slice(&output.stdout).expect("a JSON report"))
        })
        .expect("every set of ports tried was taken")
}

fn rate(report: &Value, name: &str) -> f64 {
    report[name]
        .as_f64()
        .unwrap_or_else(|| panic!("{name} in {report}"))
}

#[test]
fn three_times_capacity_keeps_four_fifths_of_the_throughput() {
    // As many in flight as the devnet's three workers may hold (max_open_assignments 128 each).
    let unloaded = bench_tasks(&["--count", "1500", "--in-flight", "384"], 211);
    let capacity = rate(&unloaded, "steady_per_s");
    let offered = (3.0 * capacity).ceil() as u64;
    // Enough requests in flight that the offered rate, not the submitter, sets the load.
    let loaded = bench_tasks(
        &[
            "--count",
            "3000",
            "--users",
            "128",
            "--rate",
            &offered.to_string(),
            "--concurrency",
            "1024",
        ],
        223,
    );
    let throughput = rate(&loaded, "steady_per_s");
    eprintln!(
        "sustained {capacity:.0} tasks/s; offered {offered}/s: {throughput:.0} tasks/s ({:.2}×); \
         whole runs {:.0} and {:.0} tasks/s",
        throughput / capacity,
        rate(&unloaded, "finalized_per_s"),
        rate(&loaded, "finalized_per_s"),
    );
    assert!(
        throughput >= 0.8 * capacity,
        "offered {offered} tasks/s (3× the {capacity:.0} sustained), the network finalized only \
         {throughput:.0}/s: {loaded}"
    );
}
