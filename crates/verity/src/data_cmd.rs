//! `verity data`: contributed data. The contributor's own round trip (encrypt a file with the
//! password only their account key can derive, and open it again) and the quality score.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use verity_data::envelope;

use crate::chain_cmd::{keys_dir, load_key};

#[derive(Subcommand)]
pub enum DataCommand {
    /// Encrypt FILE for contribution (OpenPGP, AES-256, armored), to the password your key
    /// derives; GnuPG opens it with that password.
    Encrypt(CryptArgs),
    /// Open a file encrypted with `verity data encrypt` (or `gpg --symmetric`) by your key.
    Decrypt(CryptArgs),
    /// Score a plaintext file as a verifier does: CSV or JSON lines; the formula is in the
    /// README. Deterministic: anyone holding the file gets the same score.
    Score {
        file: PathBuf,
        #[arg(long)]
        json: bool,
    },
    /// Print the password your key derives (EIP-191 personal_sign of the message), to open the
    /// file elsewhere, e.g. `gpg --decrypt --passphrase-fd 0`.
    Password {
        /// Your account key: a name in the keys directory or a path.
        #[arg(long)]
        from: String,
        #[arg(long, default_value = envelope::PASSWORD_MESSAGE)]
        message: String,
        #[arg(long, env = "VERITY_KEYS")]
        keys_dir: Option<PathBuf>,
    },
}

#[derive(Args)]
pub struct CryptArgs {
    /// Your account key: a name in the keys directory or a path.
    #[arg(long)]
    from: String,
    #[arg(long = "in")]
    input: PathBuf,
    #[arg(long = "out")]
    output: PathBuf,
    /// The message whose signature is the password (LazAI's default unless given).
    #[arg(long, default_value = envelope::PASSWORD_MESSAGE)]
    message: String,
    #[arg(long, env = "VERITY_KEYS")]
    keys_dir: Option<PathBuf>,
}

pub fn run(cmd: DataCommand) -> Result<()> {
    match cmd {
        DataCommand::Encrypt(args) => {
            let password = password_of(&args.from, &args.message, args.keys_dir)?;
            let plaintext = std::fs::read(&args.input)
                .with_context(|| format!("reading {}", args.input.display()))?;
            let armored = envelope::encrypt(&plaintext, &password)?;
            std::fs::write(&args.output, armored)
                .with_context(|| format!("writing {}", args.output.display()))?;
            eprintln!(
                "encrypted {} ({} bytes) to {}",
                args.input.display(),
                plaintext.len(),
                args.output.display()
            );
        }
        DataCommand::Decrypt(args) => {
            let password = password_of(&args.from, &args.message, args.keys_dir)?;
            let message = std::fs::read(&args.input)
                .with_context(|| format!("reading {}", args.input.display()))?;
            let plaintext = envelope::decrypt(&message, &password)
                .with_context(|| format!("opening {}", args.input.display()))?;
            std::fs::write(&args.output, &plaintext)
                .with_context(|| format!("writing {}", args.output.display()))?;
            eprintln!(
                "decrypted {} ({} bytes) to {}",
                args.input.display(),
                plaintext.len(),
                args.output.display()
            );
        }
        DataCommand::Score { file, json } => {
            let data =
                std::fs::read(&file).with_context(|| format!("reading {}", file.display()))?;
            let quality = verity_data::quality::score(&data)
                .with_context(|| format!("scoring {}", file.display()))?;
            if json {
                outln!("{}", serde_json::to_string_pretty(&quality)?);
            } else {
                outln!(
                    "score     {}.{:02} % ({} basis points)",
                    quality.score / 100,
                    quality.score % 100,
                    quality.score
                );
                outln!("format    {:?}", quality.format);
                outln!(
                    "rows      {} ({} fit the schema of {} columns)",
                    quality.rows,
                    quality.valid,
                    quality.columns
                );
                outln!("distinct  {}", quality.distinct);
                outln!("missing   {} cells", quality.missing);
            }
        }
        DataCommand::Password {
            from,
            message,
            keys_dir,
        } => outln!("{}", password_of(&from, &message, keys_dir)?),
    }
    Ok(())
}

fn password_of(from: &str, message: &str, dir: Option<PathBuf>) -> Result<String> {
    let key = load_key(from, &keys_dir(dir))?;
    Ok(envelope::password(&key, message))
}
