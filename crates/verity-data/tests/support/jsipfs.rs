//! A js-ipfs 0.66.1 daemon (npm, pinned by scripts/npm's lockfile) for tests: a fresh repository,
//! offline, no swarm addresses, no bootstrap peers, on ports of its own. Included by path from
//! each crate's tests that need it.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Daemon {
    child: Child,
    _repo: tempfile::TempDir,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn jsipfs(repo: &Path, args: &[&str]) -> Command {
    let bin: PathBuf = std::env::var_os("VERITY_JSIPFS")
        .expect("VERITY_JSIPFS is not set: scripts/test installs js-ipfs (scripts/npm) and sets it")
        .into();
    // Both crates that include this file sit two levels below the repository root.
    let polyfill = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/npm/polyfill.cjs");
    let mut command = Command::new("node");
    command
        .arg("-r")
        .arg(polyfill)
        .arg(bin)
        .args(args)
        .env("IPFS_PATH", repo);
    command
}

fn run(command: &mut Command) {
    let out = command.output().unwrap();
    assert!(
        out.status.success(),
        "{command:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A fresh daemon on ports near `base`, retried on others if one is taken.
pub fn start() -> (Daemon, String) {
    for attempt in 0..6u16 {
        let base = 12_000 + (std::process::id() as u16 % 2_000) * 4 + attempt * 8_011 % 9_000;
        let repo = tempfile::tempdir().unwrap();
        run(jsipfs(repo.path(), &["init", "--empty-repo"]).stdout(Stdio::null()));
        for (key, value) in [
            ("Addresses.Swarm", "[]".to_string()),
            ("Bootstrap", "[]".to_string()),
            ("Addresses.API", format!("\"/ip4/127.0.0.1/tcp/{base}\"")),
            (
                "Addresses.Gateway",
                format!("\"/ip4/127.0.0.1/tcp/{}\"", base + 1),
            ),
            (
                "Addresses.RPC",
                format!("\"/ip4/127.0.0.1/tcp/{}/ws\"", base + 2),
            ),
        ] {
            run(jsipfs(repo.path(), &["config", "--json", key, &value]).stdout(Stdio::null()));
        }
        let log = repo.path().join("daemon.log");
        // Both streams in one log: EADDRINUSE comes on stderr.
        let child = jsipfs(repo.path(), &["daemon", "--offline"])
            .stdout(std::fs::File::create(&log).unwrap())
            .stderr(std::fs::OpenOptions::new().append(true).open(&log).unwrap())
            .spawn()
            .unwrap();
        let mut daemon = Daemon { child, _repo: repo };
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            let exited = daemon.child.try_wait().unwrap();
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            if text.contains("Daemon is ready") {
                return (daemon, format!("http://127.0.0.1:{base}"));
            }
            if text.contains("EADDRINUSE") {
                break;
            }
            if let Some(status) = exited {
                panic!("js-ipfs exited ({status}) before it was ready:\n{text}");
            }
            assert!(
                Instant::now() < deadline,
                "js-ipfs was not ready in 90 s:\n{text}"
            );

            std::thread::sleep(Duration::from_millis(200));
        }
    }
    panic!("every set of ports tried was taken");
}
