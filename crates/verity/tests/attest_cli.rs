//! `verity attest verify` as a user runs it over the real vectors: exit codes, JSON verdicts
//! and reasons.

use std::process::{Command, Output};

fn vector(path: &str) -> String {
    format!(
        "{}/../verity-tee/tests/vectors/{path}",
        env!("CARGO_MANIFEST_DIR")
    )
}

fn attest(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_verity"))
        .args(["attest", "verify"])
        .args(args)
        .output()
        .unwrap()
}

fn json(output: &Output) -> serde_json::Value {
    serde_json::from_slice(&output.stdout).unwrap()
}

#[test]
fn valid_evidence_exits_0_with_a_json_verdict() {
    let (quote, collateral) = (
        vector("dcap/sgx_quote"),
        vector("dcap/sgx_quote_collateral.json"),
    );
    let output = attest(&[
        "--kind",
        "sgx",
        "--report",
        &quote,
        "--collateral",
        &collateral,
        "--now",
        "1751500000",
        "--json",
    ]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let verdict = json(&output);
    assert_eq!(verdict["valid"], true);
    assert_eq!(verdict["tcb_status"], "ConfigurationAndSWHardeningNeeded");

    // SNP with the report as hex text and the ASK+ARK chain as one PEM file.
    let (report, vcek, chain) = (
        vector("snp/report_milan.hex"),
        vector("snp/vcek_milan.der"),
        vector("snp/cert_chain_milan"),
    );
    let output = attest(&[
        "--kind",
        "snp",
        "--report",
        &report,
        "--certs",
        &vcek,
        &chain,
        "--now",
        "1700000000",
        "--json",
    ]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(json(&output)["kind"], "snp");
}

#[test]
fn invalid_evidence_exits_1_with_the_reason() {
    let (quote, collateral) = (
        vector("dcap/tdx_quote_outdated"),
        vector("dcap/tdx_quote_outdated_collateral.json"),
    );
    let output = attest(&[
        "--kind",
        "tdx",
        "--report",
        &quote,
        "--collateral",
        &collateral,
        "--now",
        "1772600000",
        "--json",
    ]);
    assert_eq!(output.status.code(), Some(1));
    let verdict = json(&output);
    assert_eq!(verdict["valid"], false);
    assert!(verdict["error"]["message"]
        .as_str()
        .unwrap()
        .contains("TCB level"));
    assert!(String::from_utf8_lossy(&output.stderr).contains("not valid"));
}

#[test]
fn the_policy_file_decides_about_debug_enclaves() {
    // The base64 Nitro test document comes from a debug-mode enclave.
    let document = vector("nitro/valid-attestation-doc-base64");
    let now = "1695049410";
    let output = attest(&["--kind", "nitro", "--report", &document, "--now", now]);
    assert_eq!(output.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&output.stderr).contains("debug"));

    let dir = std::env::temp_dir().join(format!("verity-attest-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let policy = dir.join("policy.toml");
    std::fs::write(
        &policy,
        "accepted_tcb_statuses = [\"UpToDate\"]\nallow_debug = true\n[kinds.nitro]\n",
    )
    .unwrap();
    let output = attest(&[
        "--kind",
        "nitro",
        "--report",
        &document,
        "--now",
        now,
        "--policy",
        policy.to_str().unwrap(),
    ]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(String::from_utf8_lossy(&output.stdout).contains("debug"));
}

#[test]
fn bad_arguments_are_explained() {
    let output = attest(&["--kind", "quantum", "--report", "x", "--now", "1"]);
    assert!(!output.status.success());
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("expected tdx, sgx, snp, nitro or dev")
    );
    let output = attest(&["--kind", "sgx", "--report", "/nonexistent", "--now", "1"]);
    assert_eq!(output.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&output.stderr).contains("/nonexistent"));
}

#[test]
fn produced_dev_evidence_verifies_with_its_binding_and_not_with_another() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("evidence");
    let (key, worker, nonce) = (
        "11".repeat(32),
        "0x0202020202020202020202020202020202020202",
        "33".repeat(32),
    );
    let binding = |key: &str| {
        [
            "--enclave-key",
            key,
            "--chain-id",
            "verity-test",
            "--worker",
            worker,
            "--nonce",
            &nonce,
        ]
        .map(String::from)
    };
    let produced = Command::new(env!("CARGO_BIN_EXE_verity"))
        .args(["attest", "produce", "--tee", "dev", "--out"])
        .arg(&out)
        .args(binding(&key))
        .output()
        .unwrap();
    assert!(
        produced.status.success(),
        "{}",
        String::from_utf8_lossy(&produced.stderr)
    );
    assert!(String::from_utf8_lossy(&produced.stdout).contains("verity attest verify --kind dev"));

    let policy = dir.path().join("devnet.toml");
    std::fs::write(
        &policy,
        "accepted_tcb_statuses = [\"UpToDate\"]\nallow_dev = true\n[kinds.dev]\n",
    )
    .unwrap();
    let report = out.join("report.bin");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        .to_string();
    let verify = |key: &str| {
        let mut args = vec![
            "--kind".to_string(),
            "dev".into(),
            "--report".into(),
            report.display().to_string(),
            "--policy".into(),
            policy.display().to_string(),
            "--now".into(),
            now.clone(),
            "--json".into(),
        ];
        args.extend(binding(key));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        attest(&args)
    };
    let output = verify(&key);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(json(&output)["valid"], true);

    let output = verify(&"44".repeat(32));
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(json(&output)["error"]["code"], "report_data_mismatch");
}

#[test]
fn producing_without_a_tee_names_the_interfaces_it_looked_for() {
    let interfaces = [
        "/sys/kernel/config/tsm/report",
        "/dev/sev-guest",
        "/dev/nsm",
    ];
    if interfaces.iter().any(|p| std::path::Path::new(p).exists()) {
        eprintln!("this machine has a TEE interface; nothing to check");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_verity"))
        .args(["attest", "produce", "--tee", "auto", "--out"])
        .arg(dir.path())
        .args(["--enclave-key", "00", "--chain-id", "c", "--worker"])
        .args(["0x0202020202020202020202020202020202020202", "--nonce"])
        .arg("00".repeat(32))
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    for path in interfaces {
        assert!(stderr.contains(path), "{stderr}");
    }
}
