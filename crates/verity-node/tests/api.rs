//! Bad input through the HTTP API: every malformed or invalid transaction gets a 4xx JSON error
//! with a stable code, and none of them changes state. Runs one real validator (TCP p2p, redb,
//! axum) in a tokio runtime.

use std::time::Duration;

use commonware_runtime::Spawner as _;
use serde_json::{json, Value};
use verity_client::api::{Receipt, TxStatus};
use verity_client::{Client, ClientError};
use verity_node::{mempool::SenderCache, run};
use verity_state::{Genesis, GenesisAccount, Params};
use verity_types::{AccountKey, Action, Address, SignedTx, TxBody, ONE_TOKEN};

const CHAIN_ID: &str = "verity-api-test";
const FEE: u128 = 1_000;

fn transfer(key: &AccountKey, chain_id: &str, nonce: u64, to: Address, amount: u128) -> SignedTx {
    TxBody {
        chain_id: chain_id.into(),
        nonce,
        fee: FEE,
        action: Action::Transfer { to, amount },
    }
    .sign(key)
}

/// Submits and expects a 4xx answer with `code`; returns the message.
async fn rejected(client: &Client, bytes: &[u8], code: &str) -> String {
    match client.submit_raw(bytes).await {
        Err(ClientError::Api {
            status,
            code: got,
            message,
        }) => {
            assert!((400..500).contains(&status), "{code}: status {status}");
            assert_eq!(got.as_str(), code, "{message}");
            assert!(!message.is_empty());
            message
        }
        other => panic!("expected {code}, got {other:?}"),
    }
}

async fn wait_finalized(client: &Client, tx: &SignedTx) -> Receipt {
    client
        .wait_for_tx(&tx.hash(), Duration::from_secs(15))
        .await
        .expect("finalized")
}

async fn balance(client: &Client, address: &Address) -> (u128, u64) {
    let account = client.account(address).await.expect("account");
    (account.balance, account.nonce)
}

#[test]
fn bad_transactions_get_4xx_json_errors_and_change_nothing() {
    let home = tempfile::tempdir().unwrap();
    let alice = AccountKey::generate();
    let bob = AccountKey::generate().address();
    let funded = 100 * ONE_TOKEN;
    let genesis = Genesis {
        chain_id: CHAIN_ID.into(),
        genesis_time_ms: 0,
        params: Params {
            min_fee: FEE,
            fee_collector: Address([0xfe; 20]),
            max_block_txs: 1_000,
            fee_per_weight: 1,
            max_block_weight: 2_000_000,
            governance: None,
            tasks: Default::default(),
            data: Default::default(),
            validators: Default::default(),
        },
        accounts: vec![GenesisAccount {
            address: alice.address(),
            balance: funded,
        }],
        attestation_policy: None,
        validators: vec![],
    };
    // One validator; port 0 everywhere lets the OS choose.
    let layout = run::write_network(home.path(), genesis, 1, (0, 0), None).unwrap();
    let storage = home.path().join("consensus");
    commonware_runtime::Runner::start(run::runner(&storage), |context| async move {
        let started = run::start_nodes(
            &context,
            run::NodeConfig::load_all(&layout.nodes).unwrap(),
            SenderCache::default(),
        )
        .await
        .unwrap();
        let api = started[0].api;
        let client = Client::new(&api.to_string());

        let first = transfer(&alice, CHAIN_ID, 0, bob, ONE_TOKEN);
        client
            .submit(&first)
            .await
            .expect("a valid transfer is accepted");
        let receipt = wait_finalized(&client, &first).await;
        assert_eq!(receipt.status, TxStatus::Success, "{receipt:?}");

        let mut refused = Vec::new();
        // Malformed bytes: truncated, trailing garbage, empty.
        let good = transfer(&alice, CHAIN_ID, 1, bob, 1).encode();
        rejected(&client, &good[..good.len() - 1], "malformed_transaction").await;
        let mut trailing = good.clone();
        trailing.push(0);
        rejected(&client, &trailing, "malformed_transaction").await;
        rejected(&client, &[], "malformed_transaction").await;
        // Wrong chain id.
        let other_chain = transfer(&alice, "another-chain", 1, bob, 1);
        rejected(&client, &other_chain.encode(), "wrong_chain_id").await;
        refused.push(other_chain.hash());
        // Bad signature: r = 0 is never valid.
        let mut forged = transfer(&alice, CHAIN_ID, 1, bob, 1);
        forged.signature = [0; 65];
        rejected(&client, &forged.encode(), "bad_signature").await;
        refused.push(forged.hash());
        // Replays: the same bytes again, and a new transaction reusing the spent nonce.
        rejected(&client, &first.encode(), "bad_nonce").await;
        let reused = transfer(&alice, CHAIN_ID, 0, bob, 2);
        rejected(&client, &reused.encode(), "bad_nonce").await;
        refused.push(reused.hash());
        // Overdraft and overflow.
        let overdraft = transfer(&alice, CHAIN_ID, 1, bob, funded);
        rejected(&client, &overdraft.encode(), "insufficient_balance").await;
        refused.push(overdraft.hash());
        let overflow = transfer(&alice, CHAIN_ID, 1, bob, u128::MAX);
        rejected(&client, &overflow.encode(), "overflow").await;
        refused.push(overflow.hash());
        // Fee under the chain's minimum.
        let cheap = TxBody {
            chain_id: CHAIN_ID.into(),
            nonce: 1,
            fee: FEE - 1,
            action: Action::Transfer { to: bob, amount: 1 },
        }
        .sign(&alice);
        rejected(&client, &cheap.encode(), "fee_too_low").await;
        refused.push(cheap.hash());
        // Tasks a block would refuse: an unknown model (none is registered here).
        let task = TxBody {
            chain_id: CHAIN_ID.into(),
            nonce: 1,
            fee: FEE,
            action: Action::SubmitTask {
                model_id: verity_types::Hash([0x42; 32]),
                input: verity_types::DataRef::of(b"input"),
                mode: verity_types::Mode::Tee,
                max_fee: ONE_TOKEN,
                deadline_blocks: 100,
                input_commitment: None,
                dataset: None,
                generation: None,
            },
        }
        .sign(&alice);
        rejected(&client, &task.encode(), "not_found").await;
        refused.push(task.hash());

        // The HTTP layer itself: not JSON, not hex, bad path parameters, unknown routes.
        let http = reqwest::Client::new();
        for (request, status, code) in [
            (
                http.post(format!("http://{api}/v1/txs")).body("not json"),
                415,
                "bad_request",
            ),
            (
                http.post(format!("http://{api}/v1/txs"))
                    .json(&json!({ "tx": "0xzz" })),
                400,
                "malformed_transaction",
            ),
            (
                http.get(format!("http://{api}/v1/accounts/0x1234")),
                400,
                "bad_request",
            ),
            (
                http.get(format!("http://{api}/v1/blocks/minus-one")),
                400,
                "bad_request",
            ),
            (
                http.get(format!("http://{api}/v1/blocks/999999")),
                404,
                "not_found",
            ),
            (http.get(format!("http://{api}/v1/nope")), 404, "not_found"),
            // Pages are 1 to 1000 items; cursors must name what they page after.
            (
                http.get(format!("http://{api}/v1/tasks?limit=0")),
                400,
                "bad_request",
            ),
            (
                http.get(format!("http://{api}/v1/models?limit=1001")),
                400,
                "bad_request",
            ),
            (
                http.get(format!("http://{api}/v1/workers?after=0x12")),
                400,
                "bad_request",
            ),
            (
                http.get(format!(
                    "http://{api}/v1/tasks?after={}",
                    verity_types::Hash([7; 32])
                )),
                404,
                "not_found",
            ),
        ] {
            let response = request.send().await.unwrap();
            assert_eq!(response.status().as_u16(), status);
            let body: Value = response.json().await.unwrap();
            assert_eq!(body["error"]["code"], code, "{body}");
        }

        // A valid follow-up finalizes: by then any refused transaction would have been included.
        let second = transfer(&alice, CHAIN_ID, 1, bob, 2 * ONE_TOKEN);
        client.submit(&second).await.unwrap();
        wait_finalized(&client, &second).await;

        for hash in &refused {
            match client.tx(hash).await {
                Err(ClientError::Api { status: 404, .. }) => {}
                other => panic!("refused transaction {hash} is known: {other:?}"),
            }
        }
        let (alice_balance, alice_nonce) = balance(&client, &alice.address()).await;
        assert_eq!(alice_nonce, 2);
        assert_eq!(alice_balance, funded - 3 * ONE_TOKEN - 2 * FEE);
        assert_eq!(balance(&client, &bob).await, (3 * ONE_TOKEN, 0));
        let status = client.status().await.unwrap();
        let height = status.height;
        let mut included = Vec::new();
        for h in 1..=height {
            let block = client.block(h).await.unwrap().expect("finalized");
            included.extend(block.tx_hashes);
        }
        assert_eq!(
            included,
            vec![first.hash(), second.hash()],
            "only the two valid transfers are on chain"
        );

        // The attestation nonce is the newest block's, derived from its hash.
        let nonce = client.attestation_nonce().await.unwrap().expect("a block");
        assert!(nonce.height >= height, "{nonce:?}");
        let block = client
            .block(nonce.height)
            .await
            .unwrap()
            .expect("finalized");
        let expected = verity_tee::attestation_nonce(CHAIN_ID, nonce.height, &block.hash.0);
        assert_eq!(nonce.nonce, verity_types::Hash(expected));
        assert_eq!(nonce.timestamp_ms, block.timestamp_ms);
        assert_eq!(
            nonce.usable_until_height,
            nonce.height + verity_state::TaskParams::default().attestation_nonce_blocks
        );
        let openapi: Value = http
            .get(format!("http://{api}/v1/openapi.json"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        for path in ["/v1/attestation-nonce", "/v1/tasks/{id}", "/v1/blobs"] {
            assert!(openapi["paths"].get(path).is_some(), "OpenAPI lacks {path}");
        }
        context.stop(0, Some(Duration::from_secs(5))).await.ok();
    });
}
