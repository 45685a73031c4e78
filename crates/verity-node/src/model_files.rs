//! The model files a validator re-executes disputed steps from (`docs/protocol.md` §12). A
//! validator without a disputed model's file cannot execute that block as the others do and
//! halts, so every registered model's file is fetched into this node's blob store as soon as
//! its registration is final, and fetched again on demand should it still be missing.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use tracing::{info, warn};
use verity_data::BlobStore;
use verity_state::ModelSource;
use verity_types::Hash;

use crate::app::NodeState;

/// Registered models listed per read.
const MODEL_PAGE: usize = 500;

/// Longest a block's execution waits for a missing model file from the IPFS node.
const ON_DEMAND_FETCH: Duration = Duration::from_secs(60);

/// The state machine's model files: the blob store's, else its IPFS node's. The fetch runs on a
/// thread and runtime of its own: the state machine is called from async code that must not
/// block its own runtime on this.
pub fn source(blobs: BlobStore) -> ModelSource {
    ModelSource::new(move |id| {
        if let Some(path) = blobs.locate(id) {
            return std::fs::read(path).ok();
        }
        // A client of its own: a pooled connection of the node's would be driven by the very
        // runtime this call blocks.
        let ipfs = verity_data::ipfs::Ipfs::new(blobs.ipfs()?.url());
        let (blobs, id) = (blobs.clone().with_ipfs(ipfs), *id);
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            let path = runtime.block_on(async {
                tokio::time::timeout(ON_DEMAND_FETCH, blobs.fetch(&id))
                    .await
                    .ok()?
                    .ok()?
            })?;
            std::fs::read(path).ok()
        })
        .join()
        .ok()
        .flatten()
    })
}

/// Fetches into `blobs` each registered model's file it lacks (from its IPFS node); returns
/// the files still missing.
pub async fn pin_registered(node: &NodeState, blobs: &BlobStore) -> anyhow::Result<Vec<Hash>> {
    let mut missing = Vec::new();
    let mut after = None;
    loop {
        let page = node.chain.models(after.as_ref(), MODEL_PAGE)?;
        // A language model's id is the hash of its files' hashes: each of its files is held.
        let files = page.iter().flat_map(|model| match &model.spec.language {
            Some(language) => language.blobs().into_iter().map(|f| f.hash).collect(),
            None => vec![model.spec.model_id],
        });
        for id in files {
            if blobs.locate(&id).is_none() {
                match blobs.fetch(&id).await {
                    Ok(Some(_)) => {
                        info!(node = %node.label, file = %id, "fetched a registered model's file")
                    }
                    Ok(None) => missing.push(id),
                    Err(e) => {
                        warn!(node = %node.label, file = %id, error = %e, "fetching a registered model's file");
                        missing.push(id);
                    }
                }
            }
        }
        match page.last() {
            Some(last) if page.len() == MODEL_PAGE => after = Some(last.spec.model_id),
            _ => return Ok(missing),
        }
    }
}

/// Pins registered models' files at start and after every finalized block that carried
/// transactions, warning once of each file it cannot find: a dispute over that model would
/// halt this node.
pub fn keep_pinned(node: Arc<NodeState>, blobs: BlobStore) {
    tokio::spawn(async move {
        let mut warned = HashSet::new();
        let mut blocks = Box::pin(node.finalized_blocks());
        loop {
            match pin_registered(&node, &blobs).await {
                Ok(missing) => {
                    for id in missing {
                        if warned.insert(id) {
                            warn!(node = %node.label, file = %id, "a registered model's file is in neither this node's blob store nor its IPFS node: a dispute over it would halt this validator. Upload the file to this node (PUT /v1/blobs) or configure `ipfs`");
                        }
                    }
                }
                Err(e) => warn!(node = %node.label, error = %e, "listing registered models"),
            }
            loop {
                match blocks.next().await {
                    Some(record) if record.tx_hashes.is_empty() => {}
                    Some(_) => break,
                    None => return,
                }
            }
        }
    });
}
