//! Validator bonds on a real `verity devnet` through the CLI: the genesis committee is bonded
//! and paid the fee pool at each epoch's end, a newcomer bonds an identity and is elected at the
//! next snapshot, nobody else can bond that identity, and unbonding is refused beyond the bond.

mod common;

use std::path::Path;

use common::devnet::{ok, start_devnet, verity, wait_for};
use serde_json::Value;

fn failed(node: &str, args: &[&str]) -> String {
    let out = verity(node, args);
    assert!(!out.status.success(), "verity {args:?} succeeded");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn validators(node: &str) -> Value {
    serde_json::from_str(&ok(node, &["validator", "list", "--json"])).unwrap()
}

fn status_of(list: &Value, identity: &str) -> Option<String> {
    list["validators"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["identity"] == identity)
        .map(|v| v["status"].as_str().unwrap().to_string())
}

/// A funded key named `name` under `keys`; its address.
fn funded_key(node: &str, devnet: &Path, keys: &Path, name: &str) -> String {
    let dir = keys.to_str().unwrap();
    ok(
        node,
        &["keys", "new", name, "--unencrypted", "--keys-dir", dir],
    );
    let address = ok(node, &["keys", "show", name, "--keys-dir", dir])
        .trim()
        .to_string();
    let dev = devnet.join("dev-account.key");
    ok(
        node,
        &[
            "transfer",
            "--from",
            dev.to_str().unwrap(),
            "--to",
            &address,
            "--amount",
            "50000",
            "--wait",
        ],
    );
    address
}

#[tokio::test(flavor = "multi_thread")]
async fn a_newcomer_bonds_is_elected_and_no_one_else_bonds_its_identity() {
    let home = tempfile::tempdir().unwrap();
    let devnet = start_devnet(
        home.path(),
        6_211,
        0,
        &["--epoch-blocks", "20", "--challengers", "0"],
    )
    .await;
    let node = format!("http://127.0.0.1:{}", devnet.api);
    let keys = home.path().join("keys");

    let list = validators(&node);
    assert_eq!(list["committee"]["members"].as_array().unwrap().len(), 4);
    for v in list["validators"].as_array().unwrap() {
        assert_eq!(v["status"], "active", "{v}");
        assert_eq!(v["bonded"], "10000000000000000000000");
    }

    // A newcomer: an account, and an identity key file like a validator's.
    let newcomer = funded_key(&node, &devnet.home, &keys, "newcomer");
    let identity_file = home.path().join("newcomer-validator.key");
    std::fs::write(
        &identity_file,
        format!("{{\"identity\": \"{}\"}}", hex_of(&[42u8; 32])),
    )
    .unwrap();
    let bond = ok(
        &node,
        &[
            "validator",
            "bond",
            "--from",
            "newcomer",
            "--keys-dir",
            keys.to_str().unwrap(),
            "--identity",
            identity_file.to_str().unwrap(),
            "--p2p",
            "127.0.0.1:39999",
            "--amount",
            "20000",
            "--wait",
        ],
    );
    let identity = bond
        .lines()
        .find_map(|l| l.strip_prefix("identity  "))
        .expect("the bond prints the identity")
        .trim()
        .to_string();
    assert!(bond.contains("success"), "{bond}");

    // Someone else holding the identity file still cannot bond it from another account.
    funded_key(&node, &devnet.home, &keys, "other");
    let refused = failed(
        &node,
        &[
            "validator",
            "bond",
            "--from",
            "other",
            "--keys-dir",
            keys.to_str().unwrap(),
            "--identity",
            identity_file.to_str().unwrap(),
            "--p2p",
            "127.0.0.1:39998",
            "--amount",
            "20000",
            "--wait",
        ],
    );
    assert!(refused.contains("bonded by another account"), "{refused}");

    // The next snapshot elects it (the largest stake); committees do not rotate in this
    // release, so it is elected, not active.
    wait_for("the newcomer to be elected", 120, async || {
        (status_of(&validators(&node), &identity).as_deref() == Some("elected")).then_some(())
    })
    .await;
    let epoch: Value = serde_json::from_str(&ok(&node, &["validator", "epoch", "--json"])).unwrap();
    let e = epoch["epoch"].as_u64().unwrap();
    assert_eq!(epoch["first_height"].as_u64().unwrap(), e * 20 + 1);
    assert_eq!(epoch["last_height"].as_u64().unwrap(), (e + 1) * 20);
    assert_eq!(epoch["committee"]["members"].as_array().unwrap().len(), 4);

    // The genesis validators are paid the fees at the end of each epoch.
    let validator_account = ok(
        &node,
        &[
            "keys",
            "show",
            devnet
                .home
                .join("validator-0/account.key")
                .to_str()
                .unwrap(),
        ],
    );
    wait_for("validator 0 to be paid", 120, async || {
        let account: Value =
            serde_json::from_str(&ok(&node, &["account", validator_account.trim(), "--json"]))
                .ok()?;
        (account["balance"] != "0").then_some(())
    })
    .await;

    // Prometheus metrics: the validator's (epoch, committee, execution counters) and the
    // in-process workers' on the port after the data verifier's.
    let http = reqwest::Client::new();
    let metrics = http
        .get(format!("{node}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for line in [
        "verity_committee_size 4",
        "verity_execution_lag_blocks ",
        "verity_task_status_changes_total{status=\"finalized\"}",
    ] {
        assert!(metrics.contains(line), "no {line:?} in\n{metrics}");
    }
    let applied: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("verity_txs_applied_total "))
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        applied >= 4,
        "the bonds and transfers were counted: {applied}"
    );
    let workers = http
        .get(format!("http://127.0.0.1:{}/metrics", devnet.api + 5))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        workers.contains("# TYPE verity_worker_task_latency_ms_sum counter"),
        "{workers}"
    );

    let too_much = failed(
        &node,
        &[
            "validator",
            "unbond",
            "--from",
            "newcomer",
            "--keys-dir",
            keys.to_str().unwrap(),
            "--amount",
            "20001",
            "--wait",
        ],
    );
    assert!(too_much.contains("can unbond 1 to"), "{too_much}");
    ok(
        &node,
        &[
            "validator",
            "unbond",
            "--from",
            "newcomer",
            "--keys-dir",
            keys.to_str().unwrap(),
            "--amount",
            "20000",
            "--wait",
        ],
    );
    let list = validators(&node);
    let entry = list["validators"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| {
            v["account"]
                .as_str()
                .unwrap()
                .eq_ignore_ascii_case(&newcomer)
        })
        .unwrap()
        .clone();
    assert_eq!(entry["bonded"], "0");
    assert_eq!(entry["unbonding"], "20000000000000000000000");
}

fn hex_of(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
