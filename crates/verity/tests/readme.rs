//! The README's walkthrough as a test: every block fenced as ` ```sh walkthrough ` is read from
//! README.md (not copied here, so the two cannot drift) and run in order, in one bash, as a user
//! would run it from the repository's root with `verity devnet` in another terminal. Three things
//! differ from a user's terminal, all set from outside the text: the devnet, the gateway and the
//! benchmarks' throwaway networks listen on ports this test chooses (`VERITY_NODE`,
//! `VERITY_GATEWAY_LISTEN`, `VERITY_BENCH_*_PORT`), the passphrase a user types for a new key
//! comes from a file (`VERITY_PASSWORD_FILE`), and the benchmarks run at a small count. Then the devnet gets Ctrl-C and is started again on
//! the same home, and must resume the same chain with the walkthrough's task on it.

mod common;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The walkthrough blocks of README.md, in order.
fn walkthrough() -> Vec<String> {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../README.md"))
        .expect("README.md");
    let mut blocks = Vec::new();
    let mut lines = readme.lines();
    while let Some(line) = lines.next() {
        if line.trim() == "```sh walkthrough" {
            let block: Vec<&str> = lines.by_ref().take_while(|l| l.trim() != "```").collect();
            blocks.push(block.join("\n"));
        }
    }
    blocks
}

/// The benchmarks at a count a test can afford; the commands are otherwise as written.
const SMALL_COUNTS: [(&str, &str); 2] = [
    ("--count 5000", "--count 40"),
    ("--count 20000", "--count 200"),
];

struct Devnet(Child);

impl Drop for Devnet {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_devnet(root: &Path, api: u16, p2p: u16, log: &Path) -> Devnet {
    Devnet(
        Command::new(root.join("target/release/verity"))
            .args(["devnet", "--home", ".verity/devnet"])
            .args([
                "--api-port",
                &api.to_string(),
                "--p2p-port",
                &p2p.to_string(),
            ])
            .current_dir(root)
            // Both streams in one log: "Address already in use" comes on stderr.
            .stdout(std::fs::File::create(log).unwrap())
            .stderr(std::fs::OpenOptions::new().append(true).open(log).unwrap())
            .stdin(Stdio::null())
            .spawn()
            .expect("verity devnet starts"),
    )
}

/// Waits for the devnet's banner to end (its setup is final); false if a port was taken. A
/// devnet that exits for another reason, or is not up in 180 s, fails the test with its log.
fn wait_ready(devnet: &mut Devnet, log: &Path) -> bool {
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        let exited = devnet.0.try_wait().unwrap();
        let text = std::fs::read_to_string(log).unwrap_or_default();
        if text.contains("Ctrl-C (or SIGTERM) stops the network") {
            return true;
        }
        if common::port_taken(&text) {
            return false;
        }
        if let Some(status) = exited {
            panic!("the devnet exited ({status}) before it was up:\n{text}");
        }
        assert!(
            Instant::now() < deadline,
            "the devnet did not come up in 180 s:\n{text}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn verity(root: &Path, node: &str, args: &[&str]) -> String {
    let out = Command::new(root.join("target/release/verity"))
        .args(args)
        .current_dir(root)
        .env("VERITY_NODE", node)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "verity {args:?}: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

fn height(root: &Path, node: &str) -> u64 {
    let status = verity(root, node, &["status"]);
    let status: serde_json::Value = serde_json::from_str(&status).unwrap();
    status["height"].as_u64().unwrap()
}

/// Ports the test takes from one base, API and p2p each: the devnet's 4 validators, data
/// verifier and workers' metrics, the gateway, and a benchmark network's 4.
const PORTS: u16 = 12;

/// How long the whole walkthrough may take: it takes about 4 minutes alone on a 2-core machine.
const WALKTHROUGH_LIMIT: Duration = Duration::from_secs(900);

/// Runs `walkthrough.sh` in its own process group, its output in files rather than pipes, and
/// returns its stdout once it succeeded. A command that never returns fails the test with what
/// was printed so far instead of holding CI, and whatever the script left running in the
/// background (the gateway, when a step after it failed) is killed with it.
fn run_walkthrough(
    root: &Path,
    node: &str,
    (bench_api, bench_p2p): (u16, u16),
    gateway: &str,
) -> String {
    use std::os::unix::process::CommandExt;
    let (out, err) = (root.join("walkthrough.out"), root.join("walkthrough.err"));
    std::fs::write(root.join("passphrase"), "a passphrase a user would type\n").unwrap();
    let mut run = Command::new("bash")
        .arg("walkthrough.sh")
        .current_dir(root)
        .env("VERITY_NODE", node)
        .env("VERITY_BENCH_API_PORT", bench_api.to_string())
        .env("VERITY_BENCH_P2P_PORT", bench_p2p.to_string())
        .env("VERITY_GATEWAY_LISTEN", gateway)
        .env("VERITY_PASSWORD_FILE", root.join("passphrase"))
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out).unwrap())
        .stderr(std::fs::File::create(&err).unwrap())
        .process_group(0)
        .spawn()
        .expect("bash starts");
    let deadline = Instant::now() + WALKTHROUGH_LIMIT;
    let status = loop {
        if let Some(status) = run.try_wait().unwrap() {
            break Some(status);
        }
        if Instant::now() >= deadline {
            break None;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let _ = Command::new("kill")
        .args(["-KILL", &format!("-{}", run.id())])
        .status();
    let _ = run.wait();
    let stdout = std::fs::read_to_string(&out).unwrap_or_default();
    let stderr = std::fs::read_to_string(&err).unwrap_or_default();
    match status {
        None => panic!(
            "the walkthrough did not finish in {} s; it printed:\n{stdout}\n{stderr}",
            WALKTHROUGH_LIMIT.as_secs()
        ),
        Some(status) => assert!(
            status.success(),
            "the walkthrough failed ({status}):\n{stdout}\n{stderr}"
        ),
    }
    stdout
}

#[test]
fn the_readme_walkthrough_runs_as_written_and_the_devnet_resumes_after_ctrl_c() {
    let blocks = walkthrough();
    assert!(
        blocks.len() >= 4,
        "README.md has {} walkthrough blocks",
        blocks.len()
    );
    let mut script = String::from("shopt -s expand_aliases\nset -euo pipefail\nset -x\n");
    for block in &blocks {
        script.push_str(block);
        script.push('\n');
    }
    for (written, small) in SMALL_COUNTS {
        assert!(
            script.contains(written),
            "the README no longer says {written}"
        );
        script = script.replace(written, small);
    }

    // The repository's root as the README's commands see it, with the binary where its alias
    // points (`target/release/verity`).
    let root = tempfile::tempdir().unwrap();
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap();
    for dir in ["models", "crates"] {
        std::os::unix::fs::symlink(repo.join(dir), root.path().join(dir)).unwrap();
    }
    std::fs::create_dir_all(root.path().join("target/release")).unwrap();
    std::os::unix::fs::symlink(
        env!("CARGO_BIN_EXE_verity"),
        root.path().join("target/release/verity"),
    )
    .unwrap();
    std::fs::write(root.path().join("walkthrough.sh"), &script).unwrap();

    let log = root.path().join("devnet.out");
    let (mut devnet, api, p2p) = (0..common::PORT_ATTEMPTS)
        .find_map(|attempt| {
            let (api, p2p) = common::ports(PORTS, 4_441, attempt);
            let _ = std::fs::remove_dir_all(root.path().join(".verity/devnet"));
            let mut devnet = start_devnet(root.path(), api, p2p, &log);
            wait_ready(&mut devnet, &log).then_some((devnet, api, p2p))
        })
        .expect("every set of ports tried was taken");
    let node = format!("http://127.0.0.1:{api}");
    // One block of ports for everything, so none can fall on another's: the devnet's APIs, its
    // data verifier and its workers' metrics (api..api+5), the gateway, the benchmarks'
    // throwaway networks.
    let (bench_api, bench_p2p) = (api + 7, p2p + 7);
    let gateway = format!("127.0.0.1:{}", api + 6);

    let stdout = run_walkthrough(root.path(), &node, (bench_api, bench_p2p), &gateway);
    // What the walkthrough's commands say, beyond succeeding.
    for expected in [
        "status       finalized",
        "balance        1.5",
        "TCB status",
        "zk proof     verified (Groth16, 128 bytes)",
        "verified  enclave signature, registered enclave",
        "\"verification\":\"verified\"",
    ] {
        assert!(stdout.contains(expected), "no {expected:?} in:\n{stdout}");
    }
    assert_eq!(
        std::fs::read(root.path().join("digit.json")).unwrap(),
        std::fs::read(repo.join("models/samples/digit_1_label_6.json")).unwrap(),
        "blob get returns what blob put stored"
    );

    // Ctrl-C, then the same command again: the same chain, further on.
    let task = std::fs::read_to_string(root.path().join("submitted.txt")).unwrap();
    let task = task.split_whitespace().nth(1).unwrap().to_string();
    let before = height(root.path(), &node);
    let interrupted = Command::new("kill")
        .args(["-INT", &devnet.0.id().to_string()])
        .status()
        .unwrap();
    assert!(interrupted.success());
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = devnet.0.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "the devnet ignored Ctrl-C");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(
        status.success(),
        "the devnet exited with {status} on Ctrl-C"
    );
    let mut restarted = start_devnet(root.path(), api, p2p, &log);
    assert!(
        wait_ready(&mut restarted, &log),
        "the restarted devnet could not bind its ports"
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    while height(root.path(), &node) <= before {
        assert!(
            Instant::now() < deadline,
            "the chain did not go on from {before}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let shown = verity(root.path(), &node, &["task", "show", &task]);
    assert!(shown.contains("status       finalized"), "{shown}");
}
