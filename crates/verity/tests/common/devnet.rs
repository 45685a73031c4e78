//! A `verity devnet` process for end-to-end tests, on ports of its own.

use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use verity_client::Client;
use verity_types::{sha256, Hash};

pub struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub fn spawn(args: &[&str], log: &Path) -> Killed {
    let log = std::fs::File::create(log).unwrap();
    Killed(
        Command::new(env!("CARGO_BIN_EXE_verity"))
            .args(args)
            .env("VERITY_LOG", "info,commonware=warn")
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .stdin(Stdio::null())
            .spawn()
            .expect("verity starts"),
    )
}

/// Runs `verity` against `node`.
pub fn verity(node: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_verity"))
        .args(args)
        .env("VERITY_NODE", node)
        .output()
        .unwrap()
}

/// Runs `verity` against `node`, which must succeed; its stdout.
pub fn ok(node: &str, args: &[&str]) -> String {
    let out = verity(node, args);
    assert!(
        out.status.success(),
        "verity {args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

pub async fn wait_for<T>(what: &str, secs: u64, mut probe: impl AsyncFnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = probe().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The id of a bundled model: its file's SHA-256.
pub fn model_id(file: &str) -> Hash {
    sha256(
        &std::fs::read(format!(
            "{}/../../models/{file}",
            env!("CARGO_MANIFEST_DIR")
        ))
        .unwrap(),
    )
}

/// A running `verity devnet` process, once its bundled model is registered.
pub struct Devnet {
    pub process: Killed,
    /// A client of validator 0.
    pub client: Client,
    pub model: Hash,
    pub home: std::path::PathBuf,
    /// Validator 0's API port; validator i's is `api + i`.
    pub api: u16,
}

/// Starts `verity devnet` with `workers` workers and `extra` flags under `home/devnet`, on
/// other ports when one it chose was taken.
pub async fn start_devnet(home: &Path, port_seed: u16, workers: u32, extra: &[&str]) -> Devnet {
    let devnet_home = home.join("devnet");
    let log = home.join("devnet.log");
    let model = model_id("digits_mlp.onnx");
    for attempt in 0..super::PORT_ATTEMPTS {
        let (api, p2p) = super::ports(5, port_seed, attempt);
        let (workers, api_port, p2p_port) = (workers.to_string(), api.to_string(), p2p.to_string());
        let mut args = vec![
            "devnet",
            "--home",
            devnet_home.to_str().unwrap(),
            "--workers",
            &workers,
            "--api-port",
            &api_port,
            "--p2p-port",
            &p2p_port,
        ];
        args.extend_from_slice(extra);
        let devnet = spawn(&args, &log);
        let client = Client::new(&format!("127.0.0.1:{api}"));
        let up = wait_for("the bundled model", 120, async || {
            if super::port_taken_in(&log) {
                return Some(false);
            }
            client.model(&model).await.ok()?.map(|_| true)
        })
        .await;
        if !up {
            drop(devnet);
            // Its genesis names the taken ports: the next attempt starts a new chain.
            let _ = std::fs::remove_dir_all(&devnet_home);
            continue;
        }
        // The banner's last line comes once the devnet's own setup (the dev account's
        // transactions, workers and challengers) is final: the dev account's nonce is the tests'
        // from then on.
        wait_for("the devnet's setup to be final", 120, async || {
            std::fs::read_to_string(&log)
                .ok()?
                .contains("Ctrl-C (or SIGTERM) stops the network")
                .then_some(())
        })
        .await;
        return Devnet {
            process: devnet,
            client,
            model,
            home: devnet_home,
            api,
        };
    }
    panic!("every set of ports tried was taken");
}
