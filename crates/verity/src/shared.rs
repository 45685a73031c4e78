//! What every command shares: the default node, the runtime, loading `--from` keys (keystores
//! or plain hex, `commands/keys.rs` writes them), sending an action, and a receipt's line.

use std::path::{Path, PathBuf};
use std::sync::Once;
use std::time::Duration;

use anyhow::{bail, Context as _, Result};
use verity_client::api::{Receipt, TxStatus};
use verity_client::Client;
use verity_types::{AccountKey, Action, Amount, SignedTx};

use crate::keystore::Keystore;
use crate::tokens;

pub(crate) const DEFAULT_NODE: &str = "http://127.0.0.1:8545";

pub(crate) fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
}

pub(crate) fn keys_dir(dir: Option<PathBuf>) -> PathBuf {
    dir.unwrap_or_else(|| PathBuf::from(".verity/keys"))
}

/// A key name in the keys directory, or a path.
pub(crate) fn key_path(name_or_path: &str, dir: &Path) -> PathBuf {
    let by_name = dir.join(format!("{name_or_path}.key"));
    if by_name.exists() {
        by_name
    } else {
        PathBuf::from(name_or_path)
    }
}

/// A key by name in the keys directory, or by path; asks for its passphrase if it has one.
pub(crate) fn load_key(name_or_path: &str, dir: &Path) -> Result<AccountKey> {
    load_key_file(&key_path(name_or_path, dir))
}

/// A key file: a keystore (opened with its passphrase) or plain hex (with a warning).
pub(crate) fn load_key_file(path: &Path) -> Result<AccountKey> {
    let text = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    if let Ok(keystore) = Keystore::parse(&text) {
        let passphrase = passphrase_for(path, None)?;
        return keystore
            .decrypt(&passphrase)
            .with_context(|| format!("opening {}", path.display()));
    }
    let key = plain_key(path, &text).map_err(|_| {
        anyhow::anyhow!(
            "{} is neither a keystore nor an account key in hex",
            path.display()
        )
    })?;
    warn_unencrypted(path);
    Ok(key)
}

/// Loads a key the devnet itself wrote (unencrypted, on purpose): no warning.
pub(crate) fn load_devnet_key(path: &Path) -> Result<AccountKey> {
    plain_key(
        path,
        &std::fs::read(path).with_context(|| format!("reading {}", path.display()))?,
    )
}

/// A key file holding the key's hex.
fn plain_key(path: &Path, text: &[u8]) -> Result<AccountKey> {
    std::str::from_utf8(text)
        .ok()
        .and_then(|hex| AccountKey::from_hex(hex).ok())
        .with_context(|| format!("{} is not an account key in hex", path.display()))
}

fn warn_unencrypted(path: &Path) {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        eprintln!(
            "warning: {} holds an unencrypted key; `verity keys import NAME --hex {}` stores it \
             encrypted",
            path.display(),
            path.display()
        );
    });
}

/// The passphrase of `path`: `--password-file`, else `VERITY_PASSWORD_FILE`, else asked.
pub(crate) fn passphrase_for(path: &Path, file: Option<&Path>) -> Result<Vec<u8>> {
    if let Some(passphrase) = passphrase_from_file(file)? {
        return Ok(passphrase);
    }
    rpassword::prompt_password(format!("passphrase for {}: ", path.display()))
        .map(String::into_bytes)
        .map_err(|_| no_terminal(&format!("{} is encrypted", path.display())))
}

/// A passphrase for a new keystore, asked twice on a terminal.
pub(crate) fn new_passphrase(file: Option<&Path>) -> Result<Vec<u8>> {
    if let Some(passphrase) = passphrase_from_file(file)? {
        if passphrase.is_empty() {
            bail!("the password file is empty; a keystore needs a passphrase");
        }
        return Ok(passphrase);
    }
    let ask = |prompt: &str| {
        rpassword::prompt_password(prompt)
            .map_err(|_| no_terminal("a new key is encrypted with a passphrase"))
    };
    let first = ask("passphrase for the new key: ")?;
    if first.is_empty() {
        bail!("a keystore needs a passphrase");
    }
    if ask("again: ")? != first {
        bail!("the passphrases differ");
    }
    Ok(first.into_bytes())
}

fn passphrase_from_file(file: Option<&Path>) -> Result<Option<Vec<u8>>> {
    let file = match file {
        Some(file) => file.to_path_buf(),
        None => match std::env::var_os("VERITY_PASSWORD_FILE") {
            Some(file) => PathBuf::from(file),
            None => return Ok(None),
        },
    };
    let text = std::fs::read_to_string(&file)
        .with_context(|| format!("reading the password file {}", file.display()))?;
    Ok(Some(
        text.lines().next().unwrap_or_default().as_bytes().to_vec(),
    ))
}

fn no_terminal(why: &str) -> anyhow::Error {
    anyhow::anyhow!(
        "{why}, and there is no terminal to ask for its passphrase: give --password-file FILE \
         or set VERITY_PASSWORD_FILE"
    )
}

/// Submits `action` from `key` with the account's pending nonce and a fee of at least its
/// weight's price (`min_fee` when higher); one nonce race is retried.
pub(crate) async fn submit_next(
    client: &Client,
    key: &AccountKey,
    action: Action,
    min_fee: Amount,
) -> Result<SignedTx> {
    client
        .submit_action(key, action, min_fee)
        .await
        .map_err(|e| match e.is_nonce_race() {
            true => anyhow::anyhow!(
                "another transaction of this account keeps taking the next nonce; try again ({e})"
            ),
            false => e.into(),
        })
}

/// Submits `action` with the account's next nonce and waits for its receipt.
pub(crate) async fn send(client: &Client, key: &AccountKey, action: Action) -> Result<Receipt> {
    let tx = submit_next(client, key, action, 0).await?;
    Ok(client
        .wait_for_tx(&tx.hash(), Duration::from_secs(60))
        .await?)
}

/// A finalized transaction in one line: its block, outcome and fee.
pub(crate) fn receipt_line(receipt: &Receipt) -> String {
    let outcome = match &receipt.status {
        TxStatus::Success => "success".to_string(),
        TxStatus::Failed { error } => format!("failed: {error}"),
    };
    format!(
        "finalized in block {}: {outcome}; fee paid {}",
        receipt.height,
        tokens::format(receipt.fee_paid)
    )
}

/// Submits `action` (a fee of at least `min_fee`) and prints its hash; with `wait`, waits for
/// its receipt and prints it, and a failed one is an error naming `what`.
pub(crate) async fn submit_and_report(
    client: &Client,
    key: &AccountKey,
    action: Action,
    min_fee: Amount,
    wait: bool,
    what: &str,
) -> Result<()> {
    let tx = submit_next(client, key, action, min_fee).await?;
    let hash = tx.hash();
    outln!("submitted {hash}");
    if wait {
        let receipt = client
            .wait_for_tx(&hash, Duration::from_secs(60))
            .await
            .context("check `verity status`")?;
        outln!("{}", receipt_line(&receipt));
        if let TxStatus::Failed { error } = receipt.status {
            bail!("{what} failed: {error}");
        }
    }
    Ok(())
}
