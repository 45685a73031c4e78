//! `verity dataset`: register a dataset's file on chain (commit–reveal, optionally anchored by
//! a data verifier's enclave) and read the registered ones. Contributed, encrypted data that
//! earns Data Anchor Tokens is `verity data`; this is the ownership record of a public file.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use verity_client::api::Dataset;
use verity_client::{Client, PageRequest};
use verity_types::{sha256, Action, Asset, DataRef, Hash};

use crate::shared::{keys_dir, load_key, runtime, DEFAULT_NODE};
use crate::task_cmd::commit_and_register;

#[derive(Subcommand)]
pub enum DatasetCommand {
    /// Upload a file and register it as a dataset you own; prints its id (SHA-256 of the file).
    Register(RegisterDatasetArgs),
    /// Registered datasets, with their owners and anchors.
    List {
        #[arg(long, env = "VERITY_NODE", default_value = DEFAULT_NODE)]
        node: String,
        #[arg(long)]
        json: bool,
    },
    /// One dataset's record.
    Show {
        id: Hash,
        #[arg(long, env = "VERITY_NODE", default_value = DEFAULT_NODE)]
        node: String,
    },
}

#[derive(Args)]
pub struct RegisterDatasetArgs {
    file: PathBuf,
    /// Key name in the keys directory, or a key file path; becomes the owner.
    #[arg(long)]
    from: String,
    /// Defaults to the file name.
    #[arg(long)]
    name: Option<String>,
    #[arg(long, default_value = "unspecified")]
    license: String,
    /// Anchor your ownership: a data verifier's attested enclave hashes the uploaded file and
    /// signs that you register it. Without it the registration is shown as an unanchored claim.
    #[arg(long)]
    anchor: bool,
    #[arg(long, env = "VERITY_NODE", default_value = DEFAULT_NODE)]
    node: String,
    #[arg(long, env = "VERITY_KEYS")]
    keys_dir: Option<PathBuf>,
}

pub fn run(cmd: DatasetCommand) -> Result<()> {
    runtime()?.block_on(async {
        match cmd {
            DatasetCommand::Register(args) => register(args).await,
            DatasetCommand::List { node, json } => {
                let client = Client::new(&node);
                let mut page = PageRequest::default();
                loop {
                    let list = client.datasets(&page).await?;
                    for d in &list.datasets {
                        if json {
                            outln!("{}", serde_json::to_string(d)?);
                        } else {
                            outln!("{}", line(d));
                        }
                    }
                    match list.next {
                        Some(next) => page.after = Some(next),
                        None => break,
                    }
                }
                Ok(())
            }
            DatasetCommand::Show { id, node } => {
                let dataset = Client::new(&node)
                    .dataset(&id)
                    .await?
                    .with_context(|| format!("no dataset {id} on {node}"))?;
                outln!("{}", serde_json::to_string_pretty(&dataset)?);
                Ok(())
            }
        }
    })
}

async fn register(args: RegisterDatasetArgs) -> Result<()> {
    let key = load_key(&args.from, &keys_dir(args.keys_dir))?;
    let bytes =
        std::fs::read(&args.file).with_context(|| format!("reading {}", args.file.display()))?;
    let name = args.name.unwrap_or_else(|| {
        args.file
            .file_name()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "dataset".into())
    });
    let data = DataRef {
        hash: sha256(&bytes),
        size: bytes.len() as u64,
        encrypted: false,
    };
    let client = Client::new(&args.node);
    if let Some(existing) = client.dataset(&data.hash).await? {
        if existing.owner != key.address() {
            bail!(
                "dataset {} is already registered, by {}",
                data.hash,
                existing.owner
            );
        }
        outln!("{}", data.hash);
        return Ok(());
    }
    let license = args.license;
    commit_and_register(
        &client,
        &key,
        Asset::Dataset,
        data.hash,
        vec![bytes],
        args.anchor,
        |salt, anchor| Action::RegisterDataset {
            name,
            data,
            license,
            salt,
            anchor,
        },
    )
    .await?;
    outln!("{}", data.hash);
    Ok(())
}

fn line(d: &Dataset) -> String {
    let anchor = match &d.anchor {
        Some(a) => format!("anchored by {}'s {} enclave", a.worker, a.tee_kind),
        None => "unanchored claim".into(),
    };
    format!(
        "{}  {}  {} bytes  {}  owner {} ({anchor})",
        d.dataset_id, d.name, d.data.size, d.license, d.owner
    )
}
