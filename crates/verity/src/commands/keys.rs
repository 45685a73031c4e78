//! `verity keys`: account keys on disk, encrypted with a passphrase (Web3 Secret Storage v3,
//! the keystore geth, MetaMask and `eth_account` use), and the helpers every command loads its
//! `--from` key with.
//!
//! A key file is a keystore (JSON) or, as older releases and the devnet write them, the key's
//! hex; a hex file still works and says so. The passphrase comes from `--password-file`, else
//! from the file `VERITY_PASSWORD_FILE` names, else it is asked for on the terminal.

use std::io::Read as _;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _, Result};
use clap::Subcommand;
use verity_types::{write_secret, AccountKey};

use crate::keystore::{Keystore, STANDARD_SCRYPT};
use crate::shared::{key_path, keys_dir, load_key_file, new_passphrase, passphrase_for};

#[derive(Subcommand)]
pub enum KeysCommand {
    /// Create an account key, encrypted with a passphrase, saved with mode 0600.
    New {
        name: String,
        #[arg(long, env = "VERITY_KEYS")]
        keys_dir: Option<PathBuf>,
        /// A file whose first line is the passphrase (else VERITY_PASSWORD_FILE, else asked).
        #[arg(long, value_name = "FILE")]
        password_file: Option<PathBuf>,
        /// Store the key unencrypted (hex): for throwaway test keys only.
        #[arg(long)]
        unencrypted: bool,
    },
    /// Store a key you already have under NAME, encrypted.
    Import {
        name: String,
        /// A keystore file (geth, MetaMask, eth_account): kept as it is, after its passphrase
        /// is checked.
        #[arg(
            long,
            value_name = "FILE",
            conflicts_with = "hex",
            required_unless_present = "hex"
        )]
        keystore: Option<PathBuf>,
        /// A file holding the private key as hex (`-` reads it from standard input): encrypted
        /// with a new passphrase.
        #[arg(long, value_name = "FILE")]
        hex: Option<PathBuf>,
        #[arg(long, env = "VERITY_KEYS")]
        keys_dir: Option<PathBuf>,
        #[arg(long, value_name = "FILE")]
        password_file: Option<PathBuf>,
    },
    /// Write a key as a keystore file that geth, MetaMask and eth_account open.
    Export {
        /// A key name in the keys directory, or a key file.
        name: String,
        #[arg(long, value_name = "FILE")]
        keystore: PathBuf,
        #[arg(long, env = "VERITY_KEYS")]
        keys_dir: Option<PathBuf>,
        #[arg(long, value_name = "FILE")]
        password_file: Option<PathBuf>,
    },
    /// List saved keys and their addresses (no passphrase needed).
    List {
        #[arg(long, env = "VERITY_KEYS")]
        keys_dir: Option<PathBuf>,
    },
    /// Show a key's address (no passphrase needed).
    Show {
        name: String,
        #[arg(long, env = "VERITY_KEYS")]
        keys_dir: Option<PathBuf>,
    },
}

pub fn run(cmd: KeysCommand) -> Result<()> {
    match cmd {
        KeysCommand::New {
            name,
            keys_dir: dir,
            password_file,
            unencrypted,
        } => {
            let path = new_key_path(&keys_dir(dir), &name)?;
            let key = AccountKey::generate();
            if unencrypted {
                write_secret(&path, key.secret_hex().as_bytes())?;
            } else {
                let passphrase = new_passphrase(password_file.as_deref())?;
                write_keystore(
                    &path,
                    &Keystore::encrypt(&key, &passphrase, STANDARD_SCRYPT),
                )?;
            }
            outln!("{}  {}", key.address(), path.display());
        }
        KeysCommand::Import {
            name,
            keystore,
            hex,
            keys_dir: dir,
            password_file,
        } => {
            let path = new_key_path(&keys_dir(dir), &name)?;
            let address = match (keystore, hex) {
                (Some(file), _) => {
                    let text = std::fs::read(&file)
                        .with_context(|| format!("reading {}", file.display()))?;
                    let parsed = Keystore::parse(&text)
                        .with_context(|| format!("{} is not a keystore", file.display()))?;
                    let passphrase = passphrase_for(&file, password_file.as_deref())?;
                    let key = parsed
                        .decrypt(&passphrase)
                        .with_context(|| format!("opening {}", file.display()))?;
                    write_secret(&path, &text)?;
                    key.address()
                }
                (None, Some(file)) => {
                    let mut text = String::new();
                    if file == Path::new("-") {
                        std::io::stdin().read_to_string(&mut text)?;
                    } else {
                        text = std::fs::read_to_string(&file)
                            .with_context(|| format!("reading {}", file.display()))?;
                    }
                    let key = AccountKey::from_hex(text.trim())
                        .context("the hex is not a secp256k1 private key")?;
                    let passphrase = new_passphrase(password_file.as_deref())?;
                    write_keystore(
                        &path,
                        &Keystore::encrypt(&key, &passphrase, STANDARD_SCRYPT),
                    )?;
                    key.address()
                }
                (None, None) => bail!("name the key to import with --keystore or --hex"),
            };
            outln!("{address}  {}", path.display());
        }
        KeysCommand::Export {
            name,
            keystore,
            keys_dir: dir,
            password_file,
        } => {
            let source = key_path(&name, &keys_dir(dir));
            let text =
                std::fs::read(&source).with_context(|| format!("reading {}", source.display()))?;
            if Keystore::parse(&text).is_ok() {
                write_secret(&keystore, &text)?;
            } else {
                let key = load_key_file(&source)?;
                let passphrase = new_passphrase(password_file.as_deref())?;
                write_keystore(
                    &keystore,
                    &Keystore::encrypt(&key, &passphrase, STANDARD_SCRYPT),
                )?;
            }
            outln!("{}", keystore.display());
        }
        KeysCommand::List { keys_dir: dir } => {
            let dir = keys_dir(dir);
            let mut entries: Vec<_> = std::fs::read_dir(&dir)
                .with_context(|| format!("reading {}", dir.display()))?
                .filter_map(|e| e.ok())
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|e| e == "key"))
                .collect();
            entries.sort();
            for path in entries {
                let name = path.file_stem().unwrap_or_default().to_string_lossy();
                outln!("{name}  {}", key_address(&path)?);
            }
        }
        KeysCommand::Show {
            name,
            keys_dir: dir,
        } => {
            outln!("{}", key_address(&key_path(&name, &keys_dir(dir)))?);
        }
    }
    Ok(())
}

fn new_key_path(dir: &Path, name: &str) -> Result<PathBuf> {
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        bail!("key names use letters, digits, '-' and '_'");
    }
    std::fs::create_dir_all(dir)?;
    let path = dir.join(format!("{name}.key"));
    if path.exists() {
        bail!("{} already exists; not overwriting a key", path.display());
    }
    Ok(path)
}

fn write_keystore(path: &Path, keystore: &Keystore) -> Result<()> {
    write_secret(path, &serde_json::to_vec_pretty(keystore)?)
        .with_context(|| format!("writing {}", path.display()))
}

/// A key file's address, without its passphrase where the file states it.
fn key_address(path: &Path) -> Result<String> {
    let text = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    if let Ok(keystore) = Keystore::parse(&text) {
        if let Some(address) = keystore.stated_address() {
            let parsed: verity_types::Address = address
                .parse()
                .with_context(|| format!("{}: its address", path.display()))?;
            return Ok(parsed.to_string());
        }
    }
    Ok(load_key_file(path)?.address().to_string())
}
