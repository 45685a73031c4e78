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
