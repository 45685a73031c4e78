//! One validator in this process for a test: real p2p, storage and HTTP API, ports from the OS.
#![allow(dead_code)] // each test binary uses a part

use std::time::Duration;

use commonware_runtime::Spawner as _;

use verity_client::Client;
use verity_node::mempool::SenderCache;
use verity_node::run::{self, NodeConfig};
use verity_state::Genesis;

/// The validator a test runs against.
pub struct Node {
    pub client: Client,
    pub api: std::net::SocketAddr,
    /// The blob store's directory.
    pub blobs: String,
}

/// Runs `test` against one validator whose settings `configure` adjusts.
pub fn with_node<F, Fut>(genesis: Genesis, configure: impl FnOnce(&mut NodeConfig), test: F)
where
    F: FnOnce(Node) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let home = tempfile::tempdir().unwrap();
    let layout = run::write_network(home.path(), genesis, 1, (0, 0), None).unwrap();
    let blob_dir = home.path().join("blobs");
    let storage = home.path().join("consensus");
    commonware_runtime::Runner::start(run::runner(&storage), |context| async move {
        let mut configs = run::NodeConfig::load_all(&layout.nodes).unwrap();
        configure(&mut configs[0]);
        let started = run::start_nodes(&context, configs, SenderCache::default())
            .await
            .unwrap();
        let client = Client::new(&started[0].api.to_string());
        wait_for_height(&client, 1).await;
        let node = Node {
            client,
            api: started[0].api,
            blobs: blob_dir.display().to_string(),
        };
        test(node).await;
        context.stop(0, Some(Duration::from_secs(5))).await.ok();
    });
}

pub async fn wait_for_height(client: &Client, height: u64) -> u64 {
    for _ in 0..600 {
        if let Ok(status) = client.status().await {
            if status.height >= height {
                return status.height;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("height {height} not reached in 30 s");
}
