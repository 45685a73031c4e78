//! Keys at rest: `verity keys` writes and reads Web3 Secret Storage v3 keystores, and they open
//! both ways with the official `eth_account` package (what MetaMask-compatible Python tools
//! use); a wrong passphrase is named; files are 0600; plain hex key files still load, with a
//! warning.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output};

fn verity(dir: &Path, args: &[&str], password_file: Option<&Path>) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_verity"));
    command
        .args(args)
        .env("VERITY_KEYS", dir.join("keys"))
        .env_remove("VERITY_PASSWORD_FILE")
        .stdin(std::process::Stdio::null());
    if let Some(file) = password_file {
        command.env("VERITY_PASSWORD_FILE", file);
    }
    command.output().unwrap()
}

fn ok(dir: &Path, args: &[&str], password_file: Option<&Path>) -> String {
    let out = verity(dir, args, password_file);
    assert!(
        out.status.success(),
        "verity {args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Runs Python with eth_account; its stdout.
fn python(script: &str, args: &[&str]) -> String {
    let python = std::env::var("VERITY_PYTHON")
        .expect("VERITY_PYTHON is not set: scripts/test installs eth-account and sets it");
    let out = Command::new(python)
        .arg("-c")
        .arg(script)
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "python: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

#[test]
fn keystores_open_both_ways_with_eth_account() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let password = d.join("password");
    std::fs::write(&password, "correct horse battery staple\n").unwrap();

    // eth_account → verity: its default keystore (scrypt n = 2^18, r = 1, p = 8).
    let theirs = d.join("theirs.json");
    let address = python(
        "import json, sys; from eth_account import Account\n\
         acct = Account.create()\n\
         open(sys.argv[1], 'w').write(json.dumps(Account.encrypt(acct.key, 'correct horse battery staple')))\n\
         print(acct.address)",
        &[theirs.to_str().unwrap()],
    );
    let imported = ok(
        d,
        &[
            "keys",
            "import",
            "bob",
            "--keystore",
            theirs.to_str().unwrap(),
            "--password-file",
            password.to_str().unwrap(),
        ],
        None,
    );
    assert!(imported.starts_with(&address), "{imported} vs {address}");
    assert_eq!(ok(d, &["keys", "show", "bob"], None).trim(), address);
    let mode = std::fs::metadata(d.join("keys/bob.key"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);

    // verity → eth_account: a new key exported as a keystore.
    let created = ok(d, &["keys", "new", "carol"], Some(&password));
    let carol = created.split_whitespace().next().unwrap().to_string();
    let exported = d.join("carol.json");
    ok(
        d,
        &[
            "keys",
            "export",
            "carol",
            "--keystore",
            exported.to_str().unwrap(),
        ],
        None,
    );
    let opened = python(
        "import json, sys; from eth_account import Account\n\
         key = Account.decrypt(json.load(open(sys.argv[1])), 'correct horse battery staple')\n\
         print(Account.from_key(key).address)",
        &[exported.to_str().unwrap()],
    );
    assert_eq!(opened, carol);
    let mode = std::fs::metadata(&exported).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);

    // A plain hex key imported, then exported: eth_account opens it under the new passphrase.
    let hex_key = python(
        "from eth_account import Account\nprint(Account.create().key.hex())",
        &[],
    );
    let hex_file = d.join("plain.hex");
    std::fs::write(&hex_file, &hex_key).unwrap();
    let dave = ok(
        d,
        &[
            "keys",
            "import",
            "dave",
            "--hex",
            hex_file.to_str().unwrap(),
        ],
        Some(&password),
    );
    let expected = python(
        "import sys; from eth_account import Account\nprint(Account.from_key(sys.argv[1]).address)",
        &[&hex_key],
    );
    assert!(dave.starts_with(&expected), "{dave} vs {expected}");

    // A wrong passphrase is named; so is a missing one without a terminal.
    let wrong = d.join("wrong");
    std::fs::write(&wrong, "tr0ub4dor\n").unwrap();
    let out = verity(
        d,
        &[
            "keys",
            "export",
            "bob",
            "--keystore",
            d.join("x.json").to_str().unwrap(),
        ],
        None,
    );
    assert!(
        out.status.success(),
        "exporting a keystore copies it as it is"
    );
    let out = verity(
        d,
        &["transfer", "--from", "bob", "--to", &carol, "--amount", "1"],
        Some(&wrong),
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("wrong passphrase"), "{stderr}");
    let out = verity(
        d,
        &["transfer", "--from", "bob", "--to", &carol, "--amount", "1"],
        None,
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("VERITY_PASSWORD_FILE"), "{stderr}");

    // An unencrypted key file still loads, with a warning.
    let plain = d.join("keys/erin.key");
    std::fs::write(&plain, &hex_key).unwrap();
    let out = verity(
        d,
        &[
            "transfer",
            "--from",
            "erin",
            "--to",
            &carol,
            "--amount",
            "1",
            "--node",
            "http://127.0.0.1:9",
        ],
        None,
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("unencrypted key"), "{stderr}");
}
