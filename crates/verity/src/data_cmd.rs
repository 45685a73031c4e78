//! `verity data` and `verity dat`: contributed data. The contributor's own round trip (encrypt a
//! file with the password only their account key can derive, and open it again), the quality
//! score, the whole contribution on chain (`contribute`), and the Data Anchor Tokens it earns.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use verity_client::api::{DataFile, DataJob, DataJobStatus, ProofRequest, TxStatus};
use verity_client::Client;
use verity_data::envelope;
use verity_types::{sha256, Action, Address, DataRef, DataVerdict};

use crate::shared::send;
use crate::shared::{keys_dir, load_key, runtime, DEFAULT_NODE};
use crate::tokens;

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
    /// Contribute FILE: encrypt it with your key's password, upload it, register it, have a
    /// drawn verifier's enclave check and score it, and claim its Data Anchor Tokens.
    Contribute(ContributeArgs),
    /// Contributed files, newest registrations last.
    List {
        /// Only this owner's files.
        #[arg(long)]
        owner: Option<Address>,
        #[arg(long)]
        json: bool,
        #[arg(long, env = "VERITY_NODE", default_value = DEFAULT_NODE)]
        node: String,
    },
    /// One contributed file and its proof jobs.
    Show {
        id: u64,
        #[arg(long)]
        json: bool,
        #[arg(long, env = "VERITY_NODE", default_value = DEFAULT_NODE)]
        node: String,
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
pub struct ContributeArgs {
    /// The plaintext: CSV or JSON lines.
    file: PathBuf,
    /// Your account key: a name in the keys directory or a path. It owns the file and its DAT.
    #[arg(long)]
    from: String,
    /// What the verifier is paid for the proof, in tokens (escrowed until it answers).
    #[arg(long, default_value = "1")]
    fee: String,
    /// An outside copy of the encrypted file to record with it (IPFS or HTTP URL).
    #[arg(long, default_value = "")]
    url: String,
    /// Put the encrypted file on this IPFS node (its RPC API) instead of the chain's blob
    /// store, and register it as `ipfs://CID`: verifiers read it from IPFS.
    #[arg(long, env = "VERITY_IPFS", value_name = "URL")]
    ipfs: Option<String>,
    /// The CSV column holding each row's class: the verifier multiplies the score by --model's
    /// accuracy on the rows, as `verity data score --label --model` does.
    #[arg(long, requires = "model")]
    label: Option<String>,
    /// A registered model (its id) that classifies the other columns of a row.
    #[arg(long, requires = "label")]
    model: Option<verity_types::Hash>,
    /// The message whose signature is the password (LazAI's default unless given).
    #[arg(long, default_value = envelope::PASSWORD_MESSAGE)]
    message: String,
    /// FOR TESTING REJECTIONS ONLY: register this file's hash as the plaintext instead of
    /// FILE's, as a contributor who lies about what they encrypted would.
    #[arg(long, value_name = "FILE", hide = true)]
    claim_plaintext_of: Option<PathBuf>,
    #[arg(long, env = "VERITY_NODE", default_value = DEFAULT_NODE)]
    node: String,
    #[arg(long, env = "VERITY_KEYS")]
    keys_dir: Option<PathBuf>,
}

#[derive(Subcommand)]
pub enum DatCommand {
    /// The Data Anchor Tokens ADDRESS holds, one class per contributed file.
    Balance {
        address: Address,
        #[arg(long)]
        json: bool,
        #[arg(long, env = "VERITY_NODE", default_value = DEFAULT_NODE)]
        node: String,
    },
    /// Collect what your DAT of one file earned from tasks that ran on the file.
    Claim {
        #[arg(long)]
        file: u64,
        #[arg(long)]
        from: String,
        #[arg(long, env = "VERITY_NODE", default_value = DEFAULT_NODE)]
        node: String,
        #[arg(long, env = "VERITY_KEYS")]
        keys_dir: Option<PathBuf>,
    },
    /// Send Data Anchor Tokens of FILE's class.
    Transfer {
        /// The file whose DAT to send.
        #[arg(long)]
        file: u64,
        #[arg(long)]
        to: Address,
        /// In DAT (18 decimals).
        amount: String,
        #[arg(long)]
        from: String,
        #[arg(long, env = "VERITY_NODE", default_value = DEFAULT_NODE)]
        node: String,
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
                let bytes = std::fs::read(&model)
                    .with_context(|| format!("reading {}", model.display()))?;
                let loaded =
                    verity_infer::Model::from_bytes(&bytes).context("loading the model")?;
                let engine = verity_infer::Engine::new(1)?;
                let correct =
                    verity_worker::data::correct_predictions(&data, &label, &loaded, &engine)?;
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
        DataCommand::Contribute(args) => runtime()?.block_on(contribute(args))?,
        DataCommand::List { owner, json, node } => runtime()?.block_on(async {
            let client = Client::new(&node);
            let mut files = Vec::new();
            let mut after = None;
            loop {
                let page = client
                    .data_files(owner.as_ref(), after, verity_client::api::MAX_PAGE)
                    .await?;
                files.extend(page.files);
                match page.next {
                    Some(next) => after = Some(next),
                    None => break,
                }
            }
            if json {
                outln!("{}", serde_json::to_string_pretty(&files)?);
            } else if files.is_empty() {
                outln!("no contributed files");
            }
            for file in files.iter().filter(|_| !json) {
                outln!("{}", file_line(file));
            }
            anyhow::Ok(())
        })?,
        DataCommand::Show { id, json, node } => runtime()?.block_on(async {
            let client = Client::new(&node);
            let file = client
                .data_file(id)
                .await?
                .with_context(|| format!("no data file {id}"))?;
            let jobs = jobs_of(&client, id).await?;
            if json {
                let doc = serde_json::json!({ "file": file, "jobs": jobs });
                outln!("{}", serde_json::to_string_pretty(&doc)?);
                return anyhow::Ok(());
            }
            outln!("file         {}", file.file_id);
            outln!("owner        {}", file.owner);
            outln!(
                "encrypted    {} ({} bytes)",
                verity_data::cid_of(&file.data.hash),
                file.data.size
            );
            if !file.url.is_empty() {
                outln!("url          {}", file.url);
            }
            outln!("plaintext    sha256 {}", file.plaintext_hash);
            outln!("registered   at height {}", file.registered_height);
            outln!("best score   {}", score_text(file.best_score));
            outln!("DAT minted   {}", tokens::format_dat(file.dat_supply));
            for job in &jobs {
                outln!("{}", job_line(job));
            }
            anyhow::Ok(())
        })?,
    }
    Ok(())
}

pub fn run_dat(cmd: DatCommand) -> Result<()> {
    runtime()?.block_on(async {
        match cmd {
            DatCommand::Balance {
                address,
                json,
                node,
            } => {
                let holdings = Client::new(&node).dat(&address).await?;
                if json {
                    outln!("{}", serde_json::to_string_pretty(&holdings)?);
                } else if holdings.holdings.is_empty() {
                    outln!("{address} holds no DAT");
                }
                for h in holdings.holdings.iter().filter(|_| !json) {
                    outln!(
                        "file {:>6}  {}  earned {} (claim with `verity dat claim`)",
                        h.file_id,
                        tokens::format_dat(h.balance),
                        tokens::format(h.claimable)
                    );
                }
            }
            DatCommand::Claim {
                file,
                from,
                node,
                keys_dir: dir,
            } => {
                let key = load_key(&from, &keys_dir(dir))?;
                let client = Client::new(&node);
                let before = client.account(&key.address()).await?.balance;
                let receipt =
                    send(&client, &key, Action::ClaimDataRewards { file_id: file }).await?;
                let receipt = succeed(receipt, "ClaimDataRewards")?;
                let after = client.account(&key.address()).await?.balance;
                outln!(
                    "claimed {} from file {file}'s task fees",
                    tokens::format((after + receipt.fee_paid).saturating_sub(before))
                );
            }
            DatCommand::Transfer {
                file,
                to,
                amount,
                from,
                node,
                keys_dir: dir,
            } => {
                let key = load_key(&from, &keys_dir(dir))?;
                let amount = tokens::parse(&amount, false).context("the amount")?;
                let client = Client::new(&node);
                let action = Action::TransferDat {
                    file_id: file,
                    to,
                    amount,
                };
                succeed(send(&client, &key, action).await?, "TransferDat")?;
                outln!("sent {} of file {file} to {to}", tokens::format_dat(amount));
            }
        }
        anyhow::Ok(())
    })
}

fn score_text(score: Option<u32>) -> String {
    match score {
        Some(s) => format!("{}.{:02} % ({s} basis points)", s / 100, s % 100),
        None => "none yet".into(),
    }
}

fn verdict_text(verdict: &DataVerdict) -> String {
    match verdict {
        DataVerdict::Scored { score } => format!("scored {}", score_text(Some(*score))),
        DataVerdict::Rejected { reason } => format!("rejected: {}", rejection_text(*reason)),
    }
}

fn rejection_text(reason: verity_types::DataRejection) -> &'static str {
    use verity_types::DataRejection::*;
    match reason {
        HashMismatch => "the decrypted plaintext is not the file that was registered",
        Undecryptable => "the file does not open with the wrapped password",
        Unavailable => "the encrypted file is not in the blob store",
        Unparseable => "the plaintext is neither CSV nor JSON lines",
    }
}

fn file_line(file: &DataFile) -> String {
    format!(
        "file {:>6}  owner {}  {} bytes  best score {}  minted {}",
        file.file_id,
        file.owner,
        file.data.size,
        score_text(file.best_score),
        tokens::format_dat(file.dat_supply)
    )
}

fn job_line(job: &DataJob) -> String {
    let verifier = job
        .verifier
        .map(|v| format!(" verifier {v}"))
        .unwrap_or_default();
    let verdict = job
        .verdict
        .as_ref()
        .map(|v| format!(": {}", verdict_text(v)))
        .unwrap_or_default();
    let rewarded = if job.rewarded { ", DAT minted" } else { "" };
    format!(
        "job {:>6}  {:?}{verifier}{verdict}{rewarded}",
        job.job_id, job.status
    )
}

fn succeed(
    receipt: verity_client::api::Receipt,
    what: &str,
) -> Result<verity_client::api::Receipt> {
    if let TxStatus::Failed { error } = &receipt.status {
        bail!("{what} failed: {error}");
    }
    Ok(receipt)
}

/// One step of `contribute`, timed, on standard error.
struct Progress {
    started: Instant,
    step: u32,
}

impl Progress {
    const STEPS: u32 = 7;

    fn step(&mut self, what: impl std::fmt::Display) {
        self.step += 1;
        eprintln!(
            "[{:>5.1}s] {}/{} {what}",
            self.started.elapsed().as_secs_f64(),
            self.step,
            Self::STEPS
        );
    }
}

/// Polls job `job_id` until `done` says so; gives up after five minutes.
async fn wait_for_job(
    client: &Client,
    job_id: u64,
    done: impl Fn(&DataJob) -> bool,
) -> Result<DataJob> {
    let started = Instant::now();
    loop {
        let job = client
            .data_job(job_id)
            .await?
            .with_context(|| format!("data job {job_id} disappeared"))?;
        if done(&job) || job.status == DataJobStatus::Expired {
            return Ok(job);
        }
        if started.elapsed() > Duration::from_secs(300) {
            bail!("data job {job_id} is still {:?} after 300 s", job.status);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn contribute(args: ContributeArgs) -> Result<()> {
    let key = load_key(&args.from, &keys_dir(args.keys_dir.clone()))?;
    let me = key.address();
    let plaintext =
        std::fs::read(&args.file).with_context(|| format!("reading {}", args.file.display()))?;
    let claimed = match &args.claim_plaintext_of {
        Some(path) => {
            sha256(&std::fs::read(path).with_context(|| format!("reading {}", path.display()))?)
        }
        None => sha256(&plaintext),
    };
    let fee = tokens::parse(&args.fee, false).context("--fee")?;
    let client = Client::new(&args.node);
    let mut progress = Progress {
        started: Instant::now(),
        step: 0,
    };

    progress.step(format_args!(
        "encrypting {} ({} bytes) with your key's password",
        args.file.display(),
        plaintext.len()
    ));
    let password = envelope::password(&key, &args.message);
    let sealed = {
        let password = password.clone();
        tokio::task::spawn_blocking(move || envelope::encrypt(&plaintext, &password)).await??
    }
    .into_bytes();

    let data = DataRef {
        encrypted: true,
        ..DataRef::of(&sealed)
    };
    let (cid, url) = match &args.ipfs {
        Some(ipfs) => {
            progress.step(format_args!(
                "adding {} encrypted bytes to the IPFS node at {ipfs}",
                sealed.len()
            ));
            let cid = verity_data::ipfs::Ipfs::new(ipfs)
                .add(sealed)
                .await
                .context("adding the encrypted file to IPFS")?
                .to_string();
            let url = match args.url.is_empty() {
                true => format!("ipfs://{cid}"),
                false => args.url.clone(),
            };
            (cid, url)
        }
        None => {
            progress.step(format_args!("uploading {} encrypted bytes", sealed.len()));
            let stored = client
                .put_blob(sealed, &key)
                .await
                .context("uploading the encrypted file")?;
            (stored.cid, args.url.clone())
        }
    };

    progress.step(format_args!("registering {cid}"));
    let receipt = send(
        &client,
        &key,
        Action::AddFile {
            data,
            url: url.clone(),
            plaintext_hash: claimed,
            evaluation: args
                .label
                .clone()
                .zip(args.model)
                .map(|(label, model_id)| verity_types::Evaluation { label, model_id }),
        },
    )
    .await?;
    let receipt = succeed(receipt, "AddFile")?;
    let file = registered_file(&client, &me, &data, receipt.height).await?;

    progress.step(format_args!(
        "file {}: asking for a proof (fee {})",
        file.file_id,
        tokens::format(fee)
    ));
    let receipt = send(
        &client,
        &key,
        Action::RequestProof {
            file_id: file.file_id,
            fee,
        },
    )
    .await?;
    let receipt = succeed(receipt, "RequestProof")?;
    let job = jobs_of(&client, file.file_id)
        .await?
        .into_iter()
        .rev()
        .find(|j| j.requester == me && j.requested_height == receipt.height)
        .context("the chain shows no job for this request")?;
    let job = wait_for_job(&client, job.job_id, |j| {
        j.status != DataJobStatus::Requested
    })
    .await?;
    let Some(verifier) = job
        .verifier
        .filter(|_| job.status == DataJobStatus::Assigned)
    else {
        bail!(
            "job {}: no data verifier could be drawn; the fee was refunded",
            job.job_id
        );
    };

    progress.step(format_args!(
        "job {}: sending the wrapped password to verifier {verifier}",
        job.job_id
    ));
    let record = client
        .data_verifier(&verifier)
        .await?
        .verifier
        .with_context(|| format!("{verifier} no longer serves data verification"))?;
    let encryption_key = envelope::wrap_password_der(&password, &record.rsa_public_key)
        .context("the verifier's RSA key")?;
    let mut request = ProofRequest {
        job_id: job.job_id,
        file_id: file.file_id,
        file_url: if url.is_empty() {
            format!("{}/v1/blobs/{cid}", client.base())
        } else {
            url.clone()
        },
        encryption_key,
        encryption_seed: None,
        proof_url: None,
        nonce: None,
        signature: None,
    };
    let chain_id = client.status().await?.chain_id;
    request.sign(&key, &chain_id);
    client
        .send_proof_request(&record.endpoint, &request)
        .await?;

    progress.step(format_args!(
        "job {}: waiting for the verifier's enclave to check and score it",
        job.job_id
    ));
    let job = wait_for_job(&client, job.job_id, |j| j.status == DataJobStatus::Proven).await?;
    let verdict = match job.verdict {
        Some(verdict) if job.status == DataJobStatus::Proven => verdict,
        _ => bail!(
            "job {}: the verifier did not answer in time; the fee was refunded",
            job.job_id
        ),
    };
    outln!("file         {}", file.file_id);
    outln!("job          {}", job.job_id);
    outln!("verdict      {}", verdict_text(&verdict));
    if let DataVerdict::Rejected { .. } = verdict {
        progress.step("rejected: no DAT for this file");
        bail!("file {} was rejected by its verifier", file.file_id);
    }

    progress.step(format_args!("job {}: claiming the file's DAT", job.job_id));
    let before = client.dat(&me).await?;
    let held = |h: &verity_client::api::DatHoldings| {
        h.holdings
            .iter()
            .find(|x| x.file_id == file.file_id)
            .map_or(0, |x| x.balance)
    };
    succeed(
        send(
            &client,
            &key,
            Action::RequestReward {
                file_id: file.file_id,
                job_id: job.job_id,
            },
        )
        .await?,
        "RequestReward",
    )?;
    let after = client.dat(&me).await?;
    outln!(
        "DAT minted   {} (file {}'s class, to {me})",
        tokens::format_dat(held(&after).saturating_sub(held(&before))),
        file.file_id
    );
    eprintln!("[{:>5.1}s] done", progress.started.elapsed().as_secs_f64());
    Ok(())
}

/// Every proof job of `file`, oldest first, page by page.
async fn jobs_of(client: &Client, file: u64) -> Result<Vec<DataJob>> {
    let mut jobs = Vec::new();
    let mut after = None;
    loop {
        let page = client.data_jobs_of(file, after).await?;
        jobs.extend(page.jobs);
        match page.next {
            Some(next) => after = Some(next),
            None => return Ok(jobs),
        }
    }
}

/// The file this account registered with `data` in the block at `height`.
async fn registered_file(
    client: &Client,
    owner: &Address,
    data: &DataRef,
    height: u64,
) -> Result<DataFile> {
    let mut after = None;
    loop {
        let page = client
            .data_files(Some(owner), after, verity_client::api::MAX_PAGE)
            .await?;
        if let Some(file) = page
            .files
            .iter()
            .find(|f| f.data == *data && f.registered_height == height)
        {
            return Ok(file.clone());
        }
        match page.next {
            Some(next) => after = Some(next),
            None => bail!("the chain shows no file registered by {owner} at height {height}"),
        }
    }
}

fn password_of(from: &str, message: &str, dir: Option<PathBuf>) -> Result<String> {
    let key = load_key(from, &keys_dir(dir))?;
    Ok(envelope::password(&key, message))
}
