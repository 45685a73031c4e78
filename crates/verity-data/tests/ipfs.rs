//! Against a real IPFS daemon: js-ipfs 0.66.1 from npm (pinned by scripts/npm's lockfile), which
//! this test starts itself, offline, with no swarm and no bootstrap peers. Its CIDs equal ours
//! for 5 B, 1 MiB and 10 MiB files, and what it serves back is checked against them.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use verity_data::ipfs::{Ipfs, IpfsError};
use verity_data::unixfs;

struct Daemon {
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
fn start() -> (Daemon, String) {
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
        let child = jsipfs(repo.path(), &["daemon", "--offline"])
            .stdout(std::fs::File::create(&log).unwrap())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let daemon = Daemon { child, _repo: repo };
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            if text.contains("Daemon is ready") {
                return (daemon, format!("http://127.0.0.1:{base}"));
            }
            if text.contains("EADDRINUSE") {
                break;
            }
            assert!(Instant::now() < deadline, "js-ipfs did not start:\n{text}");
            std::thread::sleep(Duration::from_millis(200));
        }
    }
    panic!("every set of ports tried was taken");
}

fn file(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| {
            (i as u64)
                .wrapping_mul(2_654_435_761)
                .wrapping_add(u64::from(seed)) as u8
        })
        .collect()
}

#[test]
#[ignore = "needs VERITY_JSIPFS; scripts/test runs it"]
fn a_js_ipfs_daemon_names_files_as_we_do_and_serves_them_back() {
    let (_daemon, url) = start();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let ipfs = Ipfs::new(&url);
        for data in [b"hello".to_vec(), file(1 << 20, 1), file(10 << 20, 2)] {
            let ours = unixfs::file_cid(&data);
            // `add` itself refuses a CID other than ours.
            let cid = ipfs.add(data.clone()).await.unwrap();
            assert_eq!(cid.to_string(), ours, "{} bytes", data.len());
            assert_eq!(ipfs.cat(&cid).await.unwrap(), data);
            let (root, blocks) = unixfs::blocks(&data);
            let root_block = &blocks.last().unwrap().1;
            assert_eq!(&ipfs.block(&root).await.unwrap(), root_block);
        }
        // A CID it does not hold, offline: an error from the node, not a hang or a panic.
        let missing = verity_data::ipfs::parse(&unixfs::file_cid(b"never added")).unwrap();
        let answer = tokio::time::timeout(Duration::from_secs(30), ipfs.cat(&missing)).await;
        assert!(
            matches!(answer, Ok(Err(IpfsError::Refused { .. })) | Err(_)),
            "{answer:?}"
        );
    });
}
