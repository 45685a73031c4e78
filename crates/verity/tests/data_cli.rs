//! `verity data encrypt/decrypt/password`: the contributor's own round trip from the CLI, and
//! the clear refusals of a wrong key or a file that is not an encrypted message. (GnuPG and
//! OpenSSL interoperate with the same library in `crates/verity-data/tests/interop.rs`.)

mod common;

use std::process::{Command, Output};

fn verity(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_verity"))
        .args(args)
        .output()
        .unwrap()
}

fn ok(args: &[&str]) -> String {
    let out = verity(args);
    assert!(
        out.status.success(),
        "verity {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn a_contributor_encrypts_and_decrypts_with_their_key_only() {
    let dir = tempfile::tempdir().unwrap();
    let path = |name: &str| dir.path().join(name).to_str().unwrap().to_string();
    let keys = path("keys");
    ok(&["keys", "new", "alice", "--unencrypted", "--keys-dir", &keys]);
    ok(&[
        "keys",
        "new",
        "mallory",
        "--unencrypted",
        "--keys-dir",
        &keys,
    ]);
    let data = b"id,text,label\n1,good,1\n2,bad,0\n";
    std::fs::write(path("data.csv"), data).unwrap();

    ok(&[
        "data",
        "encrypt",
        "--from",
        "alice",
        "--keys-dir",
        &keys,
        "--in",
        &path("data.csv"),
        "--out",
        &path("data.csv.asc"),
    ]);
    let armored = std::fs::read_to_string(path("data.csv.asc")).unwrap();
    assert!(
        armored.starts_with("-----BEGIN PGP MESSAGE-----"),
        "{armored}"
    );
    assert!(!armored.contains("good"), "the plaintext shows through");

    ok(&[
        "data",
        "decrypt",
        "--from",
        "alice",
        "--keys-dir",
        &keys,
        "--in",
        &path("data.csv.asc"),
        "--out",
        &path("opened.csv"),
    ]);
    assert_eq!(std::fs::read(path("opened.csv")).unwrap(), data);

    // The password is the key's personal_sign: 65 bytes, hex, the same every time.
    let password = ok(&["data", "password", "--from", "alice", "--keys-dir", &keys]);
    assert_eq!(password.trim().len(), 130, "{password}");
    assert_eq!(
        password,
        ok(&["data", "password", "--from", "alice", "--keys-dir", &keys])
    );

    // Another key's password does not open it; a plain file is not a message.
    let refused = verity(&[
        "data",
        "decrypt",
        "--from",
        "mallory",
        "--keys-dir",
        &keys,
        "--in",
        &path("data.csv.asc"),
        "--out",
        &path("stolen.csv"),
    ]);
    assert_eq!(refused.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains("the password does not open this message"),
        "{stderr}"
    );
    assert!(!dir.path().join("stolen.csv").exists());
    let refused = verity(&[
        "data",
        "decrypt",
        "--from",
        "alice",
        "--keys-dir",
        &keys,
        "--in",
        &path("data.csv"),
        "--out",
        &path("x"),
    ]);
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("not an OpenPGP message"), "{stderr}");
}

#[test]
fn the_score_follows_the_documented_formula() {
    let dir = tempfile::tempdir().unwrap();
    let clean = dir.path().join("clean.csv");
    let dirty = dir.path().join("dirty.csv");
    std::fs::write(&clean, "id,text,label\n1,a,0\n2,b,1\n3,c,0\n").unwrap();
    std::fs::write(&dirty, "id,text,label\n1,a,0\n1,a,0\n2,,1\n3,NA,0\n4,d\n").unwrap();
    let clean = ok(&["data", "score", clean.to_str().unwrap()]);
    assert!(
        clean.starts_with("score     100.00 % (10000 basis points)"),
        "{clean}"
    );
    let dirty = ok(&["data", "score", dirty.to_str().unwrap(), "--json"]);
    let dirty: serde_json::Value = serde_json::from_str(&dirty).unwrap();
    assert_eq!(dirty["score"], 5_000, "{dirty}");
    assert_eq!(dirty["rows"], 5);
    assert_eq!(dirty["distinct"], 3);
    let binary = dir.path().join("image.bin");
    std::fs::write(&binary, [0xff, 0xd8, 0xff, 0x00]).unwrap();
    let refused = verity(&["data", "score", binary.to_str().unwrap()]);
    assert_eq!(refused.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("not UTF-8 text"));
}

/// With a label column and a model, the score is multiplied by the model's accuracy: the bundled
/// digits MLP on the held-out split as a CSV (64 pixel columns and a label) gets 96.94 %.
#[test]
fn a_labeled_file_is_scored_with_a_models_accuracy() {
    let csv = common::digits_csv();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("digits.csv");
    std::fs::write(&file, csv).unwrap();
    let model = concat!(env!("CARGO_MANIFEST_DIR"), "/../../models/digits_mlp.onnx");
    let plain = ok(&["data", "score", file.to_str().unwrap(), "--json"]);
    let plain: serde_json::Value = serde_json::from_str(&plain).unwrap();
    let scored = ok(&[
        "data",
        "score",
        file.to_str().unwrap(),
        "--label",
        "label",
        "--model",
        model,
        "--json",
    ]);
    let scored: serde_json::Value = serde_json::from_str(&scored).unwrap();
    let rows = plain["rows"].as_u64().unwrap();
    assert_eq!(rows, 360);
    // 349 of 360 right (96.94 %), times the data's own score.
    let expected = plain["score"].as_u64().unwrap() * 349 / rows;
    assert_eq!(scored["score"].as_u64().unwrap(), expected, "{scored}");
    let refused = verity(&["data", "score", file.to_str().unwrap(), "--label", "label"]);
    assert_eq!(refused.status.code(), Some(2), "--label needs --model");
}
