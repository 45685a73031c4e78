//! The generated OpenAPI document against a real devnet, checked by schemathesis (PyPI,
//! installed by scripts/test): no 5xx, every status, content type, header and body as the
//! document says, schema-valid input accepted and invalid input refused. One run generates
//! every parameter; a second names real objects (a finished task, its transaction, a worker,
//! the model, the input blob) so that full bodies are validated too. The checks left out are
//! named in scripts/schemathesis.toml with why.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use verity_client::api::TaskStatus;
use verity_client::Client;

/// schemathesis, from `VERITY_SCHEMATHESIS`; CI must have it.
fn schemathesis() -> PathBuf {
    std::env::var_os("VERITY_SCHEMATHESIS")
        .expect("VERITY_SCHEMATHESIS is not set: scripts/test installs schemathesis and sets it")
        .into()
}

struct Devnet(Child);

impl Drop for Devnet {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn verity(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_verity"))
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "verity {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn run_schemathesis(tool: &Path, config: &Path, api: u16, extra: &[&str]) {
    let out = Command::new(tool)
        .arg("--no-color")
        .arg("--config-file")
        .arg(config)
        .args([
            "run",
            &format!("http://127.0.0.1:{api}/v1/openapi.json"),
            "--exclude-path",
            "/v1/events",
            "--workers",
            "1",
            "--seed",
            "1",
        ])
        .args(extra)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "schemathesis found problems:\n{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Every operation but the event stream was tested.
    let counts = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("Operations:"))
        .and_then(|l| {
            let (selected, total) = l.trim().split_once(" selected / ")?;
            Some((
                selected.parse::<u32>().ok()?,
                total.split_whitespace().next()?.parse::<u32>().ok()?,
            ))
        });
    assert!(
        matches!(counts, Some((selected, total)) if selected + 1 == total && selected > 0),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs VERITY_SCHEMATHESIS; scripts/test runs it"]
async fn the_generated_document_holds_for_every_endpoint() {
    let tool = schemathesis();
    let home = tempfile::tempdir().unwrap();
    let devnet_home = home.path().join("devnet");
    let log = home.path().join("devnet.log");
    let mut started = None;
    for attempt in 0..common::PORT_ATTEMPTS {
        let (api, p2p) = common::ports(1, 7_103, attempt);
        let _ = std::fs::remove_dir_all(&devnet_home);
        let devnet = Devnet(
            Command::new(env!("CARGO_BIN_EXE_verity"))
                .args(["devnet", "--validators", "1", "--workers", "1", "--home"])
                .arg(&devnet_home)
                .args([
                    "--api-port",
                    &api.to_string(),
                    "--p2p-port",
                    &p2p.to_string(),
                ])
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(&log).unwrap())
                .spawn()
                .unwrap(),
        );
        let node = format!("http://127.0.0.1:{api}");
        let client = Client::new(&node);
        let deadline = Instant::now() + Duration::from_secs(120);
        let ready = loop {
            if common::port_taken_in(&log) {
                break None;
            }
            let ready = async {
                let model = client
                    .models(&Default::default())
                    .await
                    .ok()?
                    .models
                    .into_iter()
                    .find(|m| m.spec.name == "digits-mlp")?
                    .spec
                    .model_id;
                let workers = client.workers(&Default::default()).await.ok()?.workers;
                let worker = workers.iter().find(|w| w.enclave.is_some())?.address;
                Some((model, worker))
            };
            if let Some(found) = ready.await {
                break Some(found);
            }
            assert!(Instant::now() < deadline, "the devnet did not come up");
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        if let Some((model, worker)) = ready {
            started = Some((devnet, api, node, client, model, worker));
            break;
        }
    }
    let (_devnet, api, node, client, model, worker) =
        started.expect("every set of ports tried was taken");

    // One real task, through the CLI with a fee in tokens, so there is something to look at.
    let input = home.path().join("input.json");
    std::fs::write(&input, format!("[[{}]]", vec!["0.5"; 64].join(","))).unwrap();
    let key = devnet_home.join("dev-account.key");
    let out = verity(&[
        "task",
        "submit",
        "--model",
        &model.to_string(),
        "--input",
        input.to_str().unwrap(),
        "--from",
        key.to_str().unwrap(),
        "--max-fee",
        "0.05",
        "--wait",
        "--node",
        &node,
    ]);
    let task: verity_types::Hash = out
        .lines()
        .find_map(|l| l.strip_prefix("task "))
        .and_then(|id| id.trim().parse().ok())
        .unwrap_or_else(|| panic!("no task id in {out}"));
    assert!(out.contains("max fee      0.05 VRT"), "{out}");
    let view = client.task(&task).await.unwrap().unwrap();
    assert_eq!(view.task.status, TaskStatus::Finalized);

    let config = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/schemathesis.toml");
    run_schemathesis(&tool, &config, api, &["--max-examples", "40"]);

    // Again with real objects in the paths, so full bodies are validated.
    let real = home.path().join("real.toml");
    let mut text = std::fs::read_to_string(&config).unwrap();
    for (path, name, value) in [
        ("/v1/tasks/{id}", "id", task.to_string()),
        ("/v1/txs/{hash}", "hash", task.to_string()),
        ("/v1/models/{id}", "id", model.to_string()),
        ("/v1/workers/{address}", "address", worker.to_string()),
        (
            "/v1/workers/{address}/assignments",
            "address",
            worker.to_string(),
        ),
        ("/v1/accounts/{address}", "address", worker.to_string()),
        ("/v1/blocks/{height}", "height", "1".to_string()),
        ("/v1/blobs/{cid}", "cid", view.input_cid.clone()),
    ] {
        text.push_str(&format!(
            "\n[[operations]]\ninclude-path = \"{path}\"\nparameters = {{ \"path.{name}\" = \"{value}\" }}\n"
        ));
    }
    std::fs::write(&real, text).unwrap();
    run_schemathesis(
        &tool,
        &real,
        api,
        &["--max-examples", "10", "--phases", "fuzzing"],
    );
}
