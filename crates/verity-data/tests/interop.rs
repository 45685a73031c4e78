//! Our envelopes against the real tools: GnuPG opens what we encrypt with the password, we open
//! what `gpg --symmetric --cipher-algo AES256 --armor` makes, and OpenSSL's `pkeyutl` opens a
//! password we wrapped to an RSA key it generated (and we open one it wrapped with OAEP-SHA1).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use verity_data::envelope;

fn tool(var: &str) -> PathBuf {
    std::env::var_os(var)
        .unwrap_or_else(|| {
            panic!("{var} is not set: scripts/test finds it on PATH (apt: gnupg, openssl)")
        })
        .into()
}

/// Runs `program` with `args`, feeding `stdin`; fails the test with its stderr unless it succeeds.
fn run(program: &Path, args: &[&str], stdin: &[u8]) -> Vec<u8> {
    use std::io::Write as _;
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{}: {e}", program.display()));
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{} {args:?}: {}",
        program.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// A private GnuPG home, so that no agent or keyring of the machine's is used.
fn gpg_args(home: &Path) -> Vec<String> {
    [
        "--homedir",
        home.to_str().unwrap(),
        "--batch",
        "--no-tty",
        "--pinentry-mode",
        "loopback",
    ]
    .map(String::from)
    .to_vec()
}

fn password() -> String {
    let key = verity_types::AccountKey::generate();
    envelope::password(&key, envelope::PASSWORD_MESSAGE)
}

fn sample() -> Vec<u8> {
    (0..200_000u32)
        .flat_map(|i| format!("{i},{},{}\n", i % 7, i * 31 % 1_000).into_bytes())
        .collect()
}

#[test]
#[ignore = "needs VERITY_GPG; scripts/test runs it"]
fn gnupg_opens_ours_and_we_open_gnupgs() {
    let gpg = tool("VERITY_GPG");
    let home = tempfile::tempdir().unwrap();
    std::fs::set_permissions(
        home.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o700),
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let data = sample();
    let password = password();

    // Ours, opened by gpg with the password on fd 0.
    let ours = dir.path().join("ours.asc");
    std::fs::write(&ours, envelope::encrypt(&data, &password).unwrap()).unwrap();
    let mut args = gpg_args(home.path());
    args.extend(["--passphrase-fd", "0", "--decrypt", ours.to_str().unwrap()].map(String::from));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    assert_eq!(run(&gpg, &args, password.as_bytes()), data);

    // gpg's, as LazAI's SDK makes it through python-gnupg, opened by us.
    let plain = dir.path().join("plain.csv");
    std::fs::write(&plain, &data).unwrap();
    let theirs = dir.path().join("theirs.asc");
    let mut args = gpg_args(home.path());
    args.extend(
        [
            "--passphrase-fd",
            "0",
            "--symmetric",
            "--cipher-algo",
            "AES256",
            "--armor",
            "--output",
            theirs.to_str().unwrap(),
            plain.to_str().unwrap(),
        ]
        .map(String::from),
    );
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    run(&gpg, &args, password.as_bytes());
    let armored = std::fs::read(&theirs).unwrap();
    assert!(armored.starts_with(b"-----BEGIN PGP MESSAGE-----"));
    assert_eq!(envelope::decrypt(&armored, &password).unwrap(), data);
    assert!(matches!(
        envelope::decrypt(&armored, "not the password"),
        Err(envelope::EnvelopeError::WrongPassword)
    ));
}

#[test]
#[ignore = "needs VERITY_OPENSSL; scripts/test runs it"]
fn openssl_opens_a_wrapped_password_and_we_open_its_oaep() {
    let openssl = tool("VERITY_OPENSSL");
    let dir = tempfile::tempdir().unwrap();
    let private = dir.path().join("verifier.pem");
    let public = dir.path().join("verifier.pub.pem");
    run(
        &openssl,
        &[
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:2048",
            "-out",
            private.to_str().unwrap(),
        ],
        b"",
    );
    run(
        &openssl,
        &[
            "pkey",
            "-in",
            private.to_str().unwrap(),
            "-pubout",
            "-out",
            public.to_str().unwrap(),
        ],
        b"",
    );
    let password = password();

    // Ours (PKCS#1 v1.5), opened by openssl.
    let wrapped =
        envelope::wrap_password(&password, &std::fs::read_to_string(&public).unwrap()).unwrap();
    let wrapped_file = dir.path().join("wrapped.bin");
    std::fs::write(&wrapped_file, hex::decode(&wrapped).unwrap()).unwrap();
    let opened = run(
        &openssl,
        &[
            "pkeyutl",
            "-decrypt",
            "-inkey",
            private.to_str().unwrap(),
            "-pkeyopt",
            "rsa_padding_mode:pkcs1",
            "-in",
            wrapped_file.to_str().unwrap(),
        ],
        b"",
    );
    assert_eq!(opened, password.as_bytes());

    // openssl's OAEP-SHA1 (as LazAI's Node SDK wraps), opened by us.
    let secret = dir.path().join("password.txt");
    std::fs::write(&secret, &password).unwrap();
    let oaep = run(
        &openssl,
        &[
            "pkeyutl",
            "-encrypt",
            "-pubin",
            "-inkey",
            public.to_str().unwrap(),
            "-pkeyopt",
            "rsa_padding_mode:oaep",
            "-pkeyopt",
            "rsa_oaep_md:sha1",
            "-in",
            secret.to_str().unwrap(),
        ],
        b"",
    );
    let private_pem = std::fs::read_to_string(&private).unwrap();
    assert_eq!(
        envelope::unwrap_password(&hex::encode(oaep), &private_pem).unwrap(),
        password
    );
}
