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
        /// The CSV column holding each row's class; with --model, the score is multiplied by
        /// the model's accuracy on the file.
        #[arg(long, requires = "model")]
        label: Option<String>,
        /// An ONNX classifier taking the other columns as one row of numbers.
        #[arg(long, requires = "label")]
        model: Option<PathBuf>,
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
        DataCommand::Score {
            file,
            label,
            model,
            json,
        } => {
            let data =
                std::fs::read(&file).with_context(|| format!("reading {}", file.display()))?;
            let mut quality = verity_data::quality::score(&data)
                .with_context(|| format!("scoring {}", file.display()))?;
            if let (Some(label), Some(model)) = (label, model) {
                let correct = correct_predictions(&data, &label, &model)?;
                eprintln!(
                    "accuracy  {correct} of {} rows labeled right by {}",
                    quality.rows,
                    model.display()
                );
                quality.score = verity_data::quality::with_accuracy(&quality, correct);
            }
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

/// How many rows of `data` the classifier at `model` labels as their `label` column says.
fn correct_predictions(data: &[u8], label: &str, model: &std::path::Path) -> Result<u64> {
    use verity_infer::{Data, Engine, Model, Tensor};
    let (rows, labels) = verity_data::quality::labeled(data, label)?;
    let Some(width) = rows.first().map(Vec::len) else {
        return Ok(0);
    };
    let bytes = std::fs::read(model).with_context(|| format!("reading {}", model.display()))?;
    let model = Model::from_bytes(&bytes).context("loading the model")?;
    let input = Tensor::new(vec![rows.len(), width], Data::F32(rows.concat()))
        .context("the rows as one input")?;
    let run = Engine::new(1)?
        .run(&model, vec![input], false)
        .context("running the model on the rows")?;
    let (_, output) = run
        .outputs
        .iter()
        .find(|(name, _)| name == "label")
        .or_else(|| run.outputs.first())
        .context("the model has no output")?;
    let predicted: Vec<i64> = match output.data() {
        Data::I64(v) => v.clone(),
        Data::F32(v) => {
            let classes = v.len() / labels.len().max(1);
            v.chunks(classes.max(1))
                .map(|row| {
                    (0..row.len()).fold(0, |best, i| if row[i] > row[best] { i } else { best })
                        as i64
                })
                .collect()
        }
        other => anyhow::bail!(
            "the model's output is {:?}, not labels or scores",
            other.dtype()
        ),
    };
    Ok(predicted
        .iter()
        .zip(&labels)
        .filter(|(p, l)| p == l)
        .count() as u64)
}
