//! Four validators as four `verity node` processes on loopback, from files `verity genesis`
//! wrote: transfers through the API, one validator killed (SIGKILL) while the other three keep
//! finalizing, then restarted on the same data directory until it has caught up to the same
//! state root.

mod common;

use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::Value;
use verity_client::api::{AccountView, TaskStatus, TxState};
use verity_client::Client;
use verity_types::{AccountKey, Action, Address, SignedTx, TxBody, ONE_TOKEN};

const VALIDATORS: usize = 4;
const CHAIN_ID: &str = "verity-process-test";
const FEE: u128 = 1_000;

struct Network {
    home: tempfile::TempDir,
    /// Validator 0's API port; validator i's is `api + i`.
    api: u16,
    children: Mutex<Vec<Option<Child>>>,
    clients: Vec<Client>,
}

impl Network {
    fn config(&self, i: usize) -> PathBuf {
        self.home
            .path()
            .join(format!("validator-{i}"))
            .join("node.toml")
    }

    /// Writes a genesis for four validators with `flags` (funds, attestation policy) and starts
    /// them, waiting for each to finalize a block; on other ports, with a new genesis, when one
    /// was taken.
    async fn launch(seed: u16, flags: &[&str]) -> Self {
        for attempt in 0..common::PORT_ATTEMPTS {
            let (api, p2p) = common::ports(VALIDATORS as u16, seed, attempt);
            let home = tempfile::tempdir().unwrap();
            genesis(home.path(), api, p2p, flags);
            let mut net = Network {
                home,
                api,
                children: Mutex::new((0..VALIDATORS).map(|_| None).collect()),
                clients: (0..VALIDATORS)
                    .map(|i| Client::new(&format!("127.0.0.1:{}", api + i as u16)))
                    .collect(),
            };
            for i in 0..VALIDATORS {
                net.start(i);
            }
            let mut up = true;
            for i in 0..VALIDATORS {
                up = net
                    .wait_for(
                        &format!("validator {i} to finalize a block"),
                        Duration::from_secs(90),
                        || {
                            let net = &net;
                            async move {
                                if (0..VALIDATORS).any(|v| common::port_taken_in(&net.log(v))) {
                                    return Some(false);
                                }
                                net.height(i).await.filter(|h| *h >= 1).map(|_| true)
                            }
                        },
                    )
                    .await;
                if !up {
                    break;
                }
            }
            if up {
                return net;
            }
        }
        panic!("every set of ports tried was taken");
    }

    fn log(&self, i: usize) -> PathBuf {
        self.home.path().join(format!("validator-{i}.log"))
    }

    fn start(&mut self, i: usize) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log(i))
            .unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_verity"))
            .args(["node", "--config"])
            .arg(self.config(i))
            .env("VERITY_LOG", "info,commonware=warn")
            .stdout(Stdio::from(log.try_clone().unwrap()))
            .stderr(Stdio::from(log))
            .spawn()
            .expect("spawn verity node");
        self.children.lock().unwrap()[i] = Some(child);
    }

    /// Sends signal `name` (as `kill -NAME` spells it) to validator `i`, and fails the test if
    /// the validator has not survived it a moment later.
    async fn survives_signal(&self, i: usize, name: &str) {
        let pid = self.children.lock().unwrap()[i]
            .as_ref()
            .expect("running")
            .id();
        let status = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(pid.to_string())
            .status()
            .unwrap();
        assert!(status.success(), "kill -{name} {pid}");
        tokio::time::sleep(Duration::from_millis(300)).await;
        let exited = self.children.lock().unwrap()[i]
            .as_mut()
            .and_then(|child| child.try_wait().unwrap());
        assert_eq!(exited, None, "validator {i} died of SIG{name}");
    }

    /// Sends SIGTERM, as a process manager stops a service, and expects a clean exit (status 0)
    /// that says why it stopped.
    fn terminates_cleanly(&mut self, i: usize) {
        let child = self.children.lock().unwrap()[i].take().expect("running");
        let (exit, _) = terminate(child, &format!("validator {i}"));
        let log = std::fs::read_to_string(self.log(i)).unwrap();
        assert!(
            exit.success(),
            "validator {i} exited with {exit} on SIGTERM"
        );
        assert!(log.contains("SIGTERM: stopping"), "validator {i}: {log}");
    }

    fn kill(&mut self, i: usize) {
        if let Some(mut child) = self.children.lock().unwrap()[i].take() {
            child.kill().unwrap();
            child.wait().unwrap();
        }
    }

    /// Each validator's process state, status and log tail, for a failure message.
    async fn report(&self) -> String {
        let mut report = String::new();
        for i in 0..VALIDATORS {
            let process = match self.children.lock().unwrap()[i]
                .as_mut()
                .map(Child::try_wait)
            {
                None => "not running".to_string(),
                Some(Ok(None)) => "running".to_string(),
                Some(Ok(Some(status))) => format!("exited: {status}"),
                Some(Err(e)) => format!("unknown: {e}"),
            };
            let status = match self.clients[i].status().await {
                Ok(s) => format!("height {} peers {:?}", s.height, s.peers),
                Err(e) => format!("API unreachable: {e}"),
            };
            let text = std::fs::read_to_string(self.log(i)).unwrap_or_default();
            let tail: Vec<&str> = text.lines().rev().take(40).collect();
            let tail: Vec<&str> = tail.into_iter().rev().collect();
            report += &format!(
                "--- validator {i}: process {process}; {status} ---\n{}\n",
                tail.join("\n")
            );
        }
        report
    }

    /// Polls `check` until it returns `Some`, or fails with every validator's log tail.
    async fn wait_for<T, F, Fut>(&self, what: &str, timeout: Duration, mut check: F) -> T
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Option<T>>,
    {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(value) = check().await {
                return value;
            }
            if Instant::now() > deadline {
                panic!("timed out waiting for {what}\n{}", self.report().await);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits until each validator in `validators` reports `tx` finalized.
    async fn wait_finalized(&self, validators: std::ops::Range<usize>, tx: &SignedTx, what: &str) {
        for i in validators {
            let what = format!("validator {i} to finalize {what}");
            self.wait_for(&what, Duration::from_secs(60), || async move {
                finalized(&self.clients[i], tx).await.then_some(())
            })
            .await;
        }
    }

    async fn peers(&self, i: usize) -> Option<usize> {
        let status = self.clients[i].status().await.ok()?;
        Some(status.peers.len())
    }

    async fn height(&self, i: usize) -> Option<u64> {
        let status = self.clients[i].status().await.ok()?;
        Some(status.height)
    }
}

impl Drop for Network {
    fn drop(&mut self) {
        for i in 0..VALIDATORS {
            self.kill(i);
        }
    }
}

/// Runs the CLI to completion; fails the test with its stderr unless it succeeds. Returns stdout.
fn verity_ok(args: &[&str]) -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_verity"))
        .args(args)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "verity {args:?}\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

/// `verity genesis` for the four validators, with `policy` (funds and attestation flags).
fn genesis(home: &Path, api: u16, p2p: u16, policy: &[&str]) {
    let (api, p2p, validators) = (api.to_string(), p2p.to_string(), VALIDATORS.to_string());
    let mut args = vec![
        "genesis",
        "--home",
        home.to_str().unwrap(),
        "--validators",
        &validators,
        "--chain-id",
        CHAIN_ID,
        "--api-port",
        &api,
        "--p2p-port",
        &p2p,
    ];
    args.extend_from_slice(policy);
    verity_ok(&args);
}

fn transfer(key: &AccountKey, nonce: u64, to: Address) -> SignedTx {
    TxBody {
        chain_id: CHAIN_ID.into(),
        nonce,
        fee: FEE,
        action: Action::Transfer {
            to,
            amount: ONE_TOKEN,
        },
    }
    .sign(key)
}

async fn finalized(client: &Client, tx: &SignedTx) -> bool {
    matches!(client.tx(&tx.hash()).await, Ok(v) if v.status == TxState::Finalized)
}

async fn account(client: &Client, address: &Address) -> Option<AccountView> {
    client.account(address).await.ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_processes_survive_a_killed_validator_and_it_catches_up() {
    let alice = AccountKey::generate();
    let bob = AccountKey::generate().address();
    let mut net = Network::launch(
        0,
        &[
            "--fund",
            &format!("{}=1000", alice.address()),
            "--governance",
            &alice.address().to_string(),
            "--measurement",
            &format!("tdx={}", "ab".repeat(48)),
        ],
    )
    .await;

    // A peer that resets a connection makes the next write to it raise SIGPIPE; a validator
    // must survive it (one died of it at startup once).
    for i in 0..VALIDATORS {
        net.survives_signal(i, "PIPE").await;
    }
    for i in 0..VALIDATORS {
        net.wait_for(
            &format!("validator {i} to see 3 peers"),
            Duration::from_secs(30),
            || {
                let net = &net;
                async move { (net.peers(i).await? == 3).then_some(()) }
            },
        )
        .await;
    }

    // Transfers through every validator's API.
    let mut nonce = 0;
    let mut sent = Vec::new();
    for round in 0..8 {
        let tx = transfer(&alice, nonce, bob);
        net.clients[round % VALIDATORS].submit(&tx).await.unwrap();
        nonce += 1;
        sent.push(tx);
    }
    let last = sent.last().unwrap().clone();
    net.wait_finalized(0..1, &last, "the first transfers").await;

    // Kill validator 3; the other three keep finalizing transfers.
    net.kill(3);
    let height_at_kill = net.height(0).await.unwrap();
    for round in 0..8 {
        let tx = transfer(&alice, nonce, bob);
        net.clients[round % 3].submit(&tx).await.unwrap();
        nonce += 1;
        sent.push(tx);
    }
    let last = sent.last().unwrap().clone();
    net.wait_finalized(0..3, &last, "transfers without validator 3")
        .await;
    net.wait_for(
        "validator 0 to see validator 3 gone",
        Duration::from_secs(30),
        || {
            let net = &net;
            async move { (net.peers(0).await? == 2).then_some(()) }
        },
    )
    .await;
    let target = net.height(0).await.unwrap();
    assert!(target > height_at_kill, "three validators kept finalizing");

    // Restart validator 3 on the same data: it catches up to the same state root.
    net.start(3);
    net.wait_for("validator 3 to catch up", Duration::from_secs(90), || {
        let net = &net;
        async move { net.height(3).await.filter(|h| *h >= target).map(|_| ()) }
    })
    .await;
    let mut roots = Vec::new();
    for i in 0..VALIDATORS {
        let block = net.clients[i]
            .block(target)
            .await
            .unwrap()
            .expect("finalized");
        roots.push((block.hash, block.state_root));
    }
    assert!(roots.iter().all(|r| *r == roots[0]), "{roots:?}");

    // The restarted validator takes transactions again, and the network finalizes them.
    let tx = transfer(&alice, nonce, bob);
    net.clients[3].submit(&tx).await.unwrap();
    sent.push(tx.clone());
    net.wait_finalized(0..VALIDATORS, &tx, "a transfer sent to validator 3")
        .await;

    // Every validator, the restarted one included, holds the whole history.
    for i in 0..VALIDATORS {
        let bob_account = account(&net.clients[i], &bob).await.unwrap();
        assert_eq!(
            bob_account.balance,
            sent.len() as u128 * ONE_TOKEN,
            "validator {i}"
        );
        for tx in &sent {
            assert!(
                finalized(&net.clients[i], tx).await,
                "validator {i}: {}",
                tx.hash()
            );
        }
    }

    // Process managers stop services with SIGTERM: every validator exits cleanly on it.
    for i in 0..VALIDATORS {
        net.terminates_cleanly(i);
    }
}

#[test]
fn bench_transfers_reports_rate_and_latency() {
    let stdout = (0..common::PORT_ATTEMPTS)
        .find_map(|attempt| {
            let (api, p2p) = common::ports(VALIDATORS as u16, 101, attempt);
            let output = Command::new(env!("CARGO_BIN_EXE_verity"))
                .args(["bench", "transfers", "--count", "400", "--senders", "16"])
                .args(["--api-port", &api.to_string()])
                .args(["--p2p-port", &p2p.to_string()])
                .output()
                .unwrap();
            let stderr = String::from_utf8_lossy(&output.stderr);
            if common::port_taken(&stderr) {
                return None;
            }
            assert!(output.status.success(), "verity bench transfers: {stderr}");
            Some(String::from_utf8(output.stdout).unwrap())
        })
        .expect("every set of ports tried was taken");
    assert!(stdout.contains("4 validators"), "{stdout}");
    assert!(stdout.contains("400 in"), "{stdout}");
    assert!(stdout.contains("p50") && stdout.contains("p99"), "{stdout}");
}

/// Sends SIGTERM to `child` and returns its exit status and stderr once it ends (30 s at most).
fn terminate(child: std::process::Child, what: &str) -> (std::process::ExitStatus, String) {
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut child = child;
    loop {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        assert!(Instant::now() < deadline, "{what} ignored SIGTERM");
        std::thread::sleep(Duration::from_millis(100));
    }
    let output = child.wait_with_output().unwrap();
    (
        output.status,
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// Process managers stop services with SIGTERM: `verity devnet` and `verity worker` finish
/// cleanly on it, as on Ctrl-C.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn devnet_and_worker_stop_cleanly_on_sigterm() {
    let home = tempfile::tempdir().unwrap();
    // Without --log or VERITY_LOG a devnet is quiet: its banner, then a status line.
    let banner = home.path().join("devnet.out");
    let mut started = None;
    for attempt in 0..common::PORT_ATTEMPTS {
        let (api, p2p) = common::ports(4, 3_331, attempt);
        let _ = std::fs::remove_dir_all(home.path().join("devnet"));
        let mut devnet = spawn_devnet(&home.path().join("devnet"), api, p2p, &banner);
        let client = Client::new(&format!("127.0.0.1:{api}"));
        let deadline = Instant::now() + Duration::from_secs(90);
        let up = loop {
            if devnet.try_wait().unwrap().is_some() {
                let mut stderr = String::new();
                devnet
                    .stderr
                    .take()
                    .unwrap()
                    .read_to_string(&mut stderr)
                    .unwrap();
                assert!(common::port_taken(&stderr), "the devnet exited: {stderr}");
                break false;
            }
            let height = client.status().await.ok().map(|s| s.height);
            if height.is_some_and(|h| h >= 1) {
                break true;
            }
            assert!(Instant::now() < deadline, "the devnet finalized no block");
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        if up {
            started = Some((devnet, client, api));
            break;
        }
    }
    let (devnet, client, api) = started.expect("every set of ports tried was taken");
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let out = std::fs::read_to_string(&banner).unwrap();
        // The banner's "try:" line comes once the workers can take tasks; a status line follows.
        if out.contains("try:") && out.lines().any(|l| l.starts_with("height ")) {
            let workers = client.workers(&Default::default()).await.unwrap();
            assert!(workers.workers[0].enclave.is_some(), "{workers:?}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no banner and status line: {out}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // A worker of its own, staking from the devnet's funded dev account.
    let worker = Command::new(env!("CARGO_BIN_EXE_verity"))
        .args(["worker", "--key"])
        .arg(home.path().join("devnet").join("dev-account.key"))
        .arg("--home")
        .arg(home.path().join("worker"))
        .args(["--node", &format!("http://127.0.0.1:{api}")])
        .env("VERITY_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn verity worker");
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (status, stderr) = terminate(worker, "the worker");
    assert!(status.success(), "worker exited with {status}: {stderr}");
    assert!(stderr.contains("SIGTERM: stopping the worker"), "{stderr}");
    let (status, stderr) = terminate(devnet, "the devnet");
    assert!(status.success(), "devnet exited with {status}: {stderr}");
    assert!(stderr.contains("SIGTERM: stopping"), "{stderr}");
    assert!(
        !stderr.contains(" INFO "),
        "a quiet devnet logs no info lines: {stderr}"
    );
}

/// Starts `verity devnet --workers 1` under `home` on `api`/`p2p`, its banner to `banner`.
fn spawn_devnet(home: &Path, api: u16, p2p: u16, banner: &Path) -> Child {
    Command::new(env!("CARGO_BIN_EXE_verity"))
        .args(["devnet", "--workers", "1", "--home"])
        .arg(home)
        .args([
            "--api-port",
            &api.to_string(),
            "--p2p-port",
            &p2p.to_string(),
        ])
        .env_remove("VERITY_LOG")
        .stdout(Stdio::from(std::fs::File::create(banner).unwrap()))
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn verity devnet")
}

/// A process manager that stops a devnet in its first seconds (review: the SIGTERM handler was
/// installed only once the setup was final, so the default action killed it with 143): it stops
/// cleanly, and the next start resumes the setup and becomes ready.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_devnet_stopped_during_its_setup_exits_cleanly_and_resumes() {
    let home = tempfile::tempdir().unwrap();
    let data = home.path().join("devnet");
    let banner = home.path().join("devnet.out");
    let mut chosen = None;
    for attempt in 0..common::PORT_ATTEMPTS {
        let (api, p2p) = common::ports(4, 4_441, attempt);
        let _ = std::fs::remove_dir_all(&data);
        let devnet = spawn_devnet(&data, api, p2p, &banner);
        // Its API answers once the validators are up, seconds before the setup is final.
        let client = Client::new(&format!("127.0.0.1:{api}"));
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut devnet = devnet;
        let up = loop {
            if devnet.try_wait().unwrap().is_some() {
                let mut stderr = String::new();
                devnet
                    .stderr
                    .take()
                    .unwrap()
                    .read_to_string(&mut stderr)
                    .unwrap();
                assert!(common::port_taken(&stderr), "the devnet exited: {stderr}");
                break false;
            }
            if client.status().await.is_ok() {
                break true;
            }
            assert!(Instant::now() < deadline, "the devnet's API never answered");
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        if !up {
            continue;
        }
        let ready_before = std::fs::read_to_string(&banner).unwrap().contains("try:");
        let (status, stderr) = terminate(devnet, "the devnet in its setup");
        assert!(status.success(), "devnet exited with {status}: {stderr}");
        assert!(stderr.contains("SIGTERM: stopping"), "{stderr}");
        if !ready_before {
            assert!(stderr.contains("before the devnet was ready"), "{stderr}");
        }
        chosen = Some((api, p2p));
        break;
    }
    let (api, p2p) = chosen.expect("every set of ports tried was taken");
    let devnet = spawn_devnet(&data, api, p2p, &banner);
    let deadline = Instant::now() + Duration::from_secs(120);
    while !std::fs::read_to_string(&banner).unwrap().contains("try:") {
        assert!(
            Instant::now() < deadline,
            "the restarted devnet never became ready: {}",
            std::fs::read_to_string(&banner).unwrap()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (status, stderr) = terminate(devnet, "the restarted devnet");
    assert!(status.success(), "devnet exited with {status}: {stderr}");
}

/// Outside a devnet, `verity genesis` writes the measurements it accepts and who governs them,
/// and will not write a policy that accepts any code in any TEE unless told so.
#[test]
fn genesis_writes_a_strict_attestation_policy() {
    let run = |extra: &[&str]| {
        let home = tempfile::tempdir().unwrap();
        let output = Command::new(env!("CARGO_BIN_EXE_verity"))
            .args(["genesis", "--validators", "1", "--home"])
            .arg(home.path())
            .args(extra)
            .output()
            .unwrap();
        let policy = std::fs::read(home.path().join("genesis.json"))
            .ok()
            .map(|raw| {
                serde_json::from_slice::<Value>(&raw).unwrap()["chain"]["attestation_policy"]
                    .clone()
            });
        (output, policy)
    };
    let gov = AccountKey::generate().address().to_string();
    let measurement = format!("snp={}", "cd".repeat(48));

    let (output, policy) = run(&["--measurement", &measurement]);
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("--governance"));
    assert!(policy.is_none(), "nothing written");

    let (output, policy) = run(&["--governance", &gov]);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("--allow-any-measurement"), "{stderr}");
    assert!(policy.is_none());

    let (output, policy) = run(&["--governance", &gov, "--measurement", &measurement]);
    assert!(output.status.success(), "{output:?}");
    let policy = policy.unwrap();
    assert_eq!(policy["kinds"].as_object().unwrap().len(), 1, "{policy}");
    assert_eq!(policy["kinds"]["snp"]["measurements"][0], "cd".repeat(48));
    assert_eq!(policy["allow_dev"], false);

    let (output, policy) = run(&["--governance", &gov, "--allow-any-measurement"]);
    assert!(output.status.success(), "{output:?}");
    assert!(policy.unwrap()["kinds"]["tdx"]["measurements"].is_null());

    let (output, _) = run(&["--governance", &gov, "--measurement", "dev=00"]);
    assert!(!output.status.success(), "dev needs --allow-dev");
}

/// A `verity worker` (dev enclave) for `key`, talking to `node`, logging to `log`.
fn spawn_worker(key: &Path, home: &Path, node: &str, log: &Path) -> Child {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .unwrap();
    Command::new(env!("CARGO_BIN_EXE_verity"))
        .args(["worker", "--key"])
        .arg(key)
        .arg("--home")
        .arg(home)
        .args(["--node", node])
        .env("VERITY_LOG", "info")
        .stdout(Stdio::from(log.try_clone().unwrap()))
        .stderr(Stdio::from(log))
        .spawn()
        .expect("spawn verity worker")
}

/// A worker's receipt batch is dropped: it sits in the mempool of the only validator left
/// running (no quorum, so no block), and that validator restarts with an empty mempool. The
/// worker finds its transaction gone, takes its nonce from the chain again, resubmits, and
/// every task finalizes once the network is back, with the worker's nonce where the chain
/// has it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_whose_batch_a_restarted_node_dropped_resumes_with_the_right_nonce() {
    const TASKS: usize = 3;
    let operator = AccountKey::generate();
    let user = AccountKey::generate();
    let mut net = Network::launch(
        13_001,
        &[
            "--allow-dev",
            "--fund",
            &format!("{}=100000", operator.address()),
            "--fund",
            &format!("{}=1000", user.address()),
        ],
    )
    .await;
    let home = net.home.path().to_path_buf();
    let keys = home.join("keys");
    std::fs::create_dir_all(&keys).unwrap();
    let (operator_key, user_key) = (keys.join("operator.key"), keys.join("user.key"));
    verity_types::write_secret(&operator_key, operator.secret_hex().as_bytes()).unwrap();
    verity_types::write_secret(&user_key, user.secret_hex().as_bytes()).unwrap();
    let worker_home = home.join("worker");
    let worker_log = home.join("worker.log");
    let api = net.api;
    let node = format!("http://127.0.0.1:{api}");
    let client = net.clients[0].clone();

    let model_file = concat!(env!("CARGO_MANIFEST_DIR"), "/../../models/digits_mlp.onnx");
    let model: verity_types::Hash = verity_ok(&[
        "model",
        "register",
        model_file,
        "--from",
        user_key.to_str().unwrap(),
        "--node",
        &node,
    ])
    .trim()
    .parse()
    .unwrap();

    // The worker stakes and attests, then goes away; tasks submitted meanwhile are assigned to
    // it, the only worker.
    let worker = spawn_worker(&operator_key, &worker_home, &node, &worker_log);
    net.wait_for("the worker to attest", Duration::from_secs(90), || {
        let client = &client;
        let operator = operator.address();
        async move { client.worker(&operator).await.ok()?.enclave.map(|_| ()) }
    })
    .await;
    let (exit, _) = terminate(worker, "the worker");
    assert!(
        exit.success(),
        "the worker exited with {exit}:\n{}",
        std::fs::read_to_string(&worker_log).unwrap()
    );
    let mut ids = Vec::new();
    for i in 0..TASKS {
        let input = serde_json::to_vec(&serde_json::json!([vec![i as f32 / 4.0; 64]])).unwrap();
        client.put_blob(input.clone(), &user).await.unwrap();
        let tx = TxBody {
            chain_id: CHAIN_ID.into(),
            nonce: client.pending_nonce(&user.address()).await.unwrap(),
            fee: 100_000,
            action: Action::SubmitTask {
                model_id: model,
                input: verity_types::DataRef::of(&input),
                mode: verity_types::Mode::Tee,
                max_fee: ONE_TOKEN / 100,
                deadline_blocks: 10_000,
                input_commitment: None,
                dataset: None,
                generation: None,
            },
        }
        .sign(&user);
        client.submit(&tx).await.unwrap();
        ids.push(tx.hash());
    }
    net.wait_for("the tasks to be assigned", Duration::from_secs(60), || {
        let (client, ids) = (&client, &ids);
        async move {
            for id in ids {
                if client.task(id).await.ok()??.task.status != TaskStatus::Assigned {
                    return None;
                }
            }
            Some(())
        }
    })
    .await;

    // Without validators 1 to 3 there is no quorum: the worker's batch waits in validator 0's
    // mempool, and is lost when validator 0 restarts.
    for i in 1..VALIDATORS {
        net.kill(i);
    }
    let committed_nonce = client.nonce(&operator.address()).await.unwrap();
    let worker = spawn_worker(&operator_key, &worker_home, &node, &worker_log);
    net.wait_for(
        "the worker's batch in the mempool",
        Duration::from_secs(60),
        || {
            let (client, operator) = (&client, operator.address());
            async move {
                let pending = client.pending_nonce(&operator).await.ok()?;
                (pending > committed_nonce).then_some(())
            }
        },
    )
    .await;
    net.kill(0);
    net.start(0);
    net.wait_for(
        "validator 0 to answer again",
        Duration::from_secs(60),
        || {
            let client = &client;
            async move { client.status().await.ok().map(|_| ()) }
        },
    )
    .await;
    for i in 1..VALIDATORS {
        net.start(i);
    }

    // Every task finalizes, by this worker, and its nonce is the chain's.
    let operator_address = operator.address();
    net.wait_for("every task to finalize", Duration::from_secs(120), || {
        let (client, ids) = (&client, &ids);
        async move {
            for id in ids {
                let view = client.task(id).await.ok()??;
                if view.task.status != TaskStatus::Finalized {
                    return None;
                }
                assert_eq!(view.task.worker, Some(operator_address));
                assert!(view.task.timed_out.is_empty(), "{view:?}");
            }
            Some(())
        }
    })
    .await;
    let log = std::fs::read_to_string(&worker_log).unwrap();
    assert!(
        log.contains("receipt batch lost; resubmitting its tasks"),
        "the worker never saw its batch lost:\n{log}"
    );
    net.wait_for(
        "the worker's nonce to settle",
        Duration::from_secs(30),
        || {
            let (client, operator) = (&client, operator.address());
            async move {
                let account = client.account(&operator).await.ok()?;
                (account.pending_nonce == account.nonce).then_some(())
            }
        },
    )
    .await;
    let (exit, _) = terminate(worker, "the worker");
    assert!(exit.success(), "the worker exited with {exit}:\n{log}");
}

/// A port another process holds is a one-line error naming it, for the API and for p2p (whose
/// listener commonware binds in a task of its own, where a failure was once a panic).
#[test]
fn a_taken_port_is_a_clear_error() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let home = tempfile::tempdir().unwrap();
    let (free_api, free_p2p) = common::ports(1, 29_011, 0);
    for (flag, other_flag, other, what) in [
        ("--api-port", "--p2p-port", free_p2p, "the API"),
        ("--p2p-port", "--api-port", free_api, "p2p"),
    ] {
        let output = Command::new(env!("CARGO_BIN_EXE_verity"))
            .args(["devnet", "--validators", "1", "--workers", "0", "--home"])
            .arg(home.path().join(what))
            .args([flag, &port.to_string(), other_flag, &other.to_string()])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(1), "{stderr}");
        assert!(
            stderr.contains(&format!(
                "binding {what} to 127.0.0.1:{port}: Address already in use"
            )),
            "{stderr}"
        );
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
}
