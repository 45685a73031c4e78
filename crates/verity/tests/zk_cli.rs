//! `verity zk` without a chain: setup, prove and verify on the bundled int8 model, and the
//! errors a user meets (a float model, a tampered proof, a malformed file).

use std::path::PathBuf;
use std::process::{Command, Output};

fn repo(path: &str) -> String {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(path)
        .to_str()
        .unwrap()
        .to_string()
}

fn verity(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_verity"))
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn setup_prove_and_verify_a_proof_and_refuse_a_tampered_one() {
    let dir = tempfile::tempdir().unwrap();
    let path = |name: &str| dir.path().join(name).to_str().unwrap().to_string();
    let model = repo("models/digits_mlp_int8.onnx");
    let setup = verity(&["zk", "setup", "--model", &model, "--out", &path("keys")]);
    assert!(
        setup.status.success(),
        "{}",
        String::from_utf8_lossy(&setup.stderr)
    );
    let text = String::from_utf8_lossy(&setup.stdout);
    assert!(text.contains("4716 constraints"), "{text}");
    let input = repo("models/samples/digit_0_label_7.json");
    let prove = verity(&[
        "zk",
        "prove",
        "--model",
        &model,
        "--keys",
        &path("keys"),
        "--input",
        &input,
        "--out",
        &path("proof"),
    ]);
    assert!(
        prove.status.success(),
        "{}",
        String::from_utf8_lossy(&prove.stderr)
    );
    assert!(String::from_utf8_lossy(&prove.stdout).contains("label        I64([7])"));
    let vk = format!("{}/verification_key.json", path("keys"));
    let public = format!("{}/public.json", path("proof"));
    let proof = format!("{}/proof.json", path("proof"));
    let ok = verity(&[
        "zk", "verify", "--vk", &vk, "--proof", &proof, "--public", &public,
    ]);
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&ok.stdout).trim(), "proof verified");

    // Another public signal: exit 1 with the reason.
    let mut signals: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&public).unwrap()).unwrap();
    signals[1] = serde_json::json!("12345");
    std::fs::write(path("other.json"), serde_json::to_vec(&signals).unwrap()).unwrap();
    let refused = verity(&[
        "zk",
        "verify",
        "--vk",
        &vk,
        "--proof",
        &proof,
        "--public",
        &path("other.json"),
    ]);
    assert_eq!(refused.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("does not verify"));
    // A malformed proof file: exit 1 naming what is wrong.
    std::fs::write(path("bad.json"), br#"{"pi_a": ["1", "3", "1"]}"#).unwrap();
    let bad = verity(&[
        "zk",
        "verify",
        "--vk",
        &vk,
        "--proof",
        &path("bad.json"),
        "--public",
        &public,
    ]);
    assert_eq!(bad.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("not on the curve"));
}

#[test]
fn a_float_model_has_nothing_to_prove() {
    let dir = tempfile::tempdir().unwrap();
    let out = verity(&[
        "zk",
        "setup",
        "--model",
        &repo("models/digits_mlp.onnx"),
        "--out",
        dir.path().to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no integer part"));
}
