//! A validator fetches every registered model's file into its own blob store as soon as the
//! registration is final, from its IPFS node, so that a dispute over the model never finds it
//! without the file (and halts it). A validator with no source of the file says so.

use std::time::{Duration, Instant};

use verity_client::api::TxStatus;
use verity_data::BlobStore;
use verity_state::models::Loaded;
use verity_state::{Genesis, GenesisAccount, Params, StateError};
use verity_types::{
    registration_commitment, sha256, AccountKey, Action, Asset, Hash, Mode, ModelSpec, ONE_TOKEN,
};

mod common;
#[path = "../../verity-data/tests/support/jsipfs.rs"]
mod jsipfs;

fn model_bytes() -> Vec<u8> {
    std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../models/digits_mlp.onnx"
    ))
    .unwrap()
}

fn genesis(owner: &AccountKey) -> Genesis {
    Genesis {
        chain_id: "verity-model-files".into(),
        genesis_time_ms: 0,
        params: Params {
            min_fee: 1,
            fee_collector: verity_types::Address([0xfe; 20]),
            max_block_txs: 1_000,
            fee_per_weight: 0,
            max_block_weight: 2_000_000,
            governance: None,
            tasks: Default::default(),
            data: Default::default(),
            validators: Default::default(),
        },
        accounts: vec![GenesisAccount {
            address: owner.address(),
            balance: 1_000 * ONE_TOKEN,
        }],
        attestation_policy: None,
        validators: vec![],
    }
}

#[test]
#[ignore = "needs VERITY_JSIPFS; scripts/test runs it"]
fn a_registered_models_file_is_fetched_into_every_validators_store() {
    let (_daemon, url) = jsipfs::start();
    let bytes = model_bytes();
    let id = sha256(&bytes);
    let owner = AccountKey::generate();
    let ipfs_url = url.clone();
    common::with_node(
        genesis(&owner),
        move |config| config.ipfs = Some(ipfs_url),
        move |node| async move {
            // Another validator's upload: the file reaches IPFS, not this node's store.
            let elsewhere = tempfile::tempdir().unwrap();
            BlobStore::open(elsewhere.path(), 1 << 30)
                .unwrap()
                .with_ipfs(verity_data::ipfs::Ipfs::new(&url))
                .put(&bytes)
                .await
                .unwrap();
            let store = BlobStore::open(std::path::Path::new(&node.blobs), 1 << 30).unwrap();
            assert!(store.locate(&id).is_none());

            let salt = Hash([9; 32]);
            let spec = ModelSpec {
                model_id: id,
                name: "digits".into(),
                version: "1".into(),
                weights_root: Hash([1; 32]),
                architecture: "mlp".into(),
                param_count: 10,
                size: bytes.len() as u64,
                license: "MIT".into(),
                tee_required: false,
                allowed_modes: vec![Mode::Op],
                tolerance_ppm: 0,
                language: None,
            };
            for action in [
                Action::CommitRegistration {
                    commitment: registration_commitment(Asset::Model, &id, &owner.address(), &salt),
                },
                Action::RegisterModel {
                    spec,
                    salt,
                    anchor: None,
                },
            ] {
                let tx = node.client.submit_action(&owner, action, 0).await.unwrap();
                let receipt = node
                    .client
                    .wait_for_tx(&tx.hash(), Duration::from_secs(30))
                    .await
                    .unwrap();
                assert!(matches!(receipt.status, TxStatus::Success), "{receipt:?}");
            }
            let deadline = Instant::now() + Duration::from_secs(30);
            while store.locate(&id).is_none() {
                assert!(
                    Instant::now() < deadline,
                    "the registered model's file never reached this validator's store"
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            assert_eq!(std::fs::read(store.locate(&id).unwrap()).unwrap(), bytes);
        },
    );
}

#[test]
#[ignore = "needs VERITY_JSIPFS; scripts/test runs it"]
fn a_model_file_missing_here_is_fetched_on_demand_and_one_missing_everywhere_halts_with_the_remedy()
{
    let (_daemon, url) = jsipfs::start();
    let bytes = model_bytes();
    let id = sha256(&bytes);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (uploaded, here, alone) = (
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
    );
    let ipfs = verity_data::ipfs::Ipfs::new(&url);
    runtime.block_on(async {
        BlobStore::open(uploaded.path(), 1 << 30)
            .unwrap()
            .with_ipfs(ipfs.clone())
            .put(&bytes)
            .await
            .unwrap();
    });
    // Called from inside a runtime, as block execution is.
    runtime.block_on(async {
        let store = BlobStore::open(here.path(), 1 << 30)
            .unwrap()
            .with_ipfs(ipfs.clone());
        let models = verity_node::model_files::source(store.clone());
        assert!(matches!(models.get(&id), Ok(Loaded::Model(_))));
        assert!(store.locate(&id).is_some(), "the fetched file is kept");

        let models =
            verity_node::model_files::source(BlobStore::open(alone.path(), 1 << 30).unwrap());
        match models.get(&id) {
            Err(StateError::Halted(why)) => {
                assert!(
                    why.contains(&id.to_string()) && why.contains("PUT /v1/blobs"),
                    "{why}"
                )
            }
            Err(e) => panic!("a file missing everywhere must halt, got {e}"),
            Ok(_) => panic!("a file missing everywhere must halt"),
        }
    });
}
