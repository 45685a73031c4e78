//! Blob uploads tried as an attacker would: without a signature, with a forged, stale or
//! future one, from an account without funds, past the quota, with bytes other than those
//! signed, and onto a disk below its floor. Each is refused with its own status, nothing is
//! stored, and the chain keeps finalizing throughout. Runs one real validator.

mod common;

use std::time::Duration;

use common::{wait_for_height, with_node, Node};
use commonware_runtime::Spawner as _;
use verity_client::api::{ErrorCode, UploadAuth};
use verity_client::{Client, ClientError};
use verity_node::run::NodeConfig;
use verity_node::uploads::UploadPolicy;
use verity_node::{mempool::SenderCache, run};
use verity_state::{Genesis, GenesisAccount, Params};
use verity_types::{sha256, AccountKey, Address, ONE_TOKEN};

const CHAIN_ID: &str = "verity-upload-test";

fn genesis(accounts: &[(Address, u128)]) -> Genesis {
    Genesis {
        chain_id: CHAIN_ID.into(),
        genesis_time_ms: 0,
        params: Params {
            min_fee: 1_000,
            fee_collector: Address([0xfe; 20]),
            max_block_txs: 1_000,
            fee_per_weight: 1,
            max_block_weight: 2_000_000,
            governance: None,
            tasks: Default::default(),
            data: Default::default(),
            validators: Default::default(),
        },
        accounts: accounts
            .iter()
            .map(|&(address, balance)| GenesisAccount { address, balance })
            .collect(),
        attestation_policy: None,
        validators: vec![],
    }
}

fn refused(result: Result<impl std::fmt::Debug, ClientError>, status: u16, code: ErrorCode) {
    match result {
        Err(ClientError::Api {
            status: got,
            code: got_code,
            message,
        }) => {
            assert_eq!((got, got_code), (status, code), "{message}");
            assert!(!message.is_empty());
        }
        other => panic!("expected {status} {code}, got {other:?}"),
    }
}

/// Blobs stored under the store directory (not counting its temporary folder).
fn stored(dir: &str) -> usize {
    std::fs::read_dir(dir)
        .unwrap()
        .filter(|e| e.as_ref().unwrap().path().is_file())
        .count()
}

#[test]
fn uploads_need_a_recent_signature_from_a_funded_account_within_its_quota() {
    let rich = AccountKey::generate();
    let other = AccountKey::generate();
    let poor = AccountKey::generate();
    let genesis = genesis(&[
        (rich.address(), 100 * ONE_TOKEN),
        (other.address(), 100 * ONE_TOKEN),
        (poor.address(), ONE_TOKEN / 2),
    ]);
    let policy = UploadPolicy {
        min_balance: ONE_TOKEN,
        quota_bytes: 1_000,
        window_secs: 3_600,
        max_age_blocks: 3,
        disk_floor_bytes: 0,
    };
    with_node(
        genesis,
        |config| config.uploads = policy,
        move |node| async move {
            let Node { client, blobs, .. } = node;
            let bytes = vec![7u8; 600];
            let hash = sha256(&bytes);
            let height = client.status().await.unwrap().height;

            // No header, a malformed one, a forged signature, another chain's.
            refused(
                client.put_blob_with(bytes.clone(), "").await,
                401,
                ErrorCode::UploadUnauthorized,
            );
            refused(
                client.put_blob_with(bytes.clone(), "not a header").await,
                401,
                ErrorCode::UploadUnauthorized,
            );
            let forged = format!("{hash}:{height}:{}", "00".repeat(65));
            refused(
                client.put_blob_with(bytes.clone(), &forged).await,
                401,
                ErrorCode::UploadUnauthorized,
            );
            let elsewhere = UploadAuth::sign(&rich, "another-chain", hash, height);
            refused(
                client
                    .put_blob_with(bytes.clone(), &elsewhere.to_header())
                    .await,
                401,
                ErrorCode::UploadUnauthorized,
            );
            // A height from the future.
            let ahead = UploadAuth::sign(&rich, CHAIN_ID, hash, height + 50);
            refused(
                client
                    .put_blob_with(bytes.clone(), &ahead.to_header())
                    .await,
                401,
                ErrorCode::UploadUnauthorized,
            );
            // An account below the minimum balance.
            refused(
                client.put_blob(bytes.clone(), &poor).await,
                403,
                ErrorCode::BalanceTooLow,
            );
            // Bytes other than those signed.
            let swapped = UploadAuth::sign(&rich, CHAIN_ID, sha256(b"something else"), height);
            refused(
                client
                    .put_blob_with(bytes.clone(), &swapped.to_header())
                    .await,
                400,
                ErrorCode::HashMismatch,
            );
            assert_eq!(stored(&blobs), 0, "refused uploads store nothing");

            // A good upload is stored, and a captured header is useless for other bytes.
            let auth = UploadAuth::sign(&rich, CHAIN_ID, hash, height);
            let blob = client
                .put_blob_with(bytes.clone(), &auth.to_header())
                .await
                .expect("a signed upload is stored");
            assert_eq!(blob.hash, hash);
            assert_eq!(client.get_blob(&blob.cid).await.unwrap().unwrap(), bytes);
            refused(
                client.put_blob_with(vec![8u8; 10], &auth.to_header()).await,
                400,
                ErrorCode::HashMismatch,
            );
            // Replayed with the same bytes (by whoever saw it, or a client's retry) it stores
            // nothing new and charges nothing: the signer's quota is not drained by others.
            for _ in 0..3 {
                client
                    .put_blob_with(bytes.clone(), &auth.to_header())
                    .await
                    .expect("content already held is charged nothing");
            }
            assert_eq!(stored(&blobs), 1);

            // Past the quota: 600 + 600 > 1000 bytes. Another account has its own.
            refused(
                client.put_blob(vec![9u8; 600], &rich).await,
                429,
                ErrorCode::QuotaExceeded,
            );
            client
                .put_blob(vec![9u8; 600], &other)
                .await
                .expect("another account's quota is its own");
            assert_eq!(stored(&blobs), 2);

            // A header signed at an old height goes stale.
            let now = wait_for_height(&client, height + 5).await;
            let stale = UploadAuth::sign(&other, CHAIN_ID, sha256(&[1]), now - 5);
            refused(
                client.put_blob_with(vec![1], &stale.to_header()).await,
                401,
                ErrorCode::UploadUnauthorized,
            );
            // The chain kept finalizing through all of it.
            wait_for_height(&client, now + 2).await;
        },
    );
}

#[test]
fn a_node_below_its_disk_floor_answers_507_and_keeps_finalizing() {
    let key = AccountKey::generate();
    let genesis = genesis(&[(key.address(), 100 * ONE_TOKEN)]);
    let policy = UploadPolicy {
        disk_floor_bytes: u64::MAX / 2,
        ..UploadPolicy::default()
    };
    with_node(
        genesis,
        |config| config.uploads = policy,
        move |node| async move {
            let Node { client, blobs, .. } = node;
            refused(
                client.put_blob(vec![1, 2, 3], &key).await,
                507,
                ErrorCode::InsufficientStorage,
            );
            assert_eq!(stored(&blobs), 0);
            let height = client.status().await.unwrap().height;
            wait_for_height(&client, height + 2).await;
        },
    );
}

/// Sends `head` (request line and headers, asking the server to close) and `body` over one
/// connection and returns the status code and the answer's error code. The connection is not
/// half-closed: hyper drops a connection whose client stopped sending before it answered.
async fn raw_request(api: std::net::SocketAddr, head: &str, body: &[u8]) -> (u16, String) {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let mut stream = tokio::net::TcpStream::connect(api).await.unwrap();
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(body).await.unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut answer))
        .await
        .expect("an answer within 10 s")
        .unwrap();
    let text = String::from_utf8_lossy(&answer);
    let status = text
        .get(9..12)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP answer: {text:?}"));
    let json = text.split("\r\n\r\n").nth(1).unwrap_or_default();
    let code = serde_json::from_str::<serde_json::Value>(json)
        .map(|v| v["error"]["code"].as_str().unwrap_or_default().to_string())
        .unwrap_or_default();
    (status, code)
}

/// The codes of the HTTP edge that need a misbehaving client or a failing disk: a blob over the
/// limit, a body cut short, a request slower than the time limit, a CID that is not one, and a
/// store that cannot write (internal: the node's fault, said without details).
#[test]
fn the_http_edge_answers_each_failure_with_its_code() {
    let key = AccountKey::generate();
    let genesis = genesis(&[(key.address(), 100 * ONE_TOKEN)]);
    let configure = |config: &mut NodeConfig| {
        config.max_blob_bytes = 100;
        config.api_limits.request_timeout_secs = 1;
    };
    with_node(genesis, configure, move |node| async move {
        let Node { client, api, blobs } = node;
        refused(
            client.put_blob(vec![1; 101], &key).await,
            413,
            ErrorCode::BlobTooLarge,
        );

        let height = client.status().await.unwrap().height;
        let auth =
            |bytes: &[u8]| UploadAuth::sign(&key, CHAIN_ID, sha256(bytes), height).to_header();
        let head = |framing: &str, bytes: &[u8]| {
            format!(
                "PUT /v1/blobs HTTP/1.1\r\nhost: {api}\r\nconnection: close\r\n{}: {}\r\ncontent-type: application/octet-stream\r\n{framing}\r\n\r\n",
                verity_api::UPLOAD_HEADER,
                auth(bytes)
            )
        };
        // A chunked body has no length to charge the quota and the disk floor with up front
        // (review: it was charged nothing): refused before it is read.
        let bytes = [3u8; 50];
        assert_eq!(
            raw_request(api, &head("transfer-encoding: chunked", &bytes), b"32\r\n").await,
            (411, "length_required".into())
        );
        // Declares 50 bytes, sends 10 and waits past the 1 s limit.
        {
            use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
            let mut stream = tokio::net::TcpStream::connect(api).await.unwrap();
            stream
                .write_all(head("content-length: 50", &bytes).as_bytes())
                .await
                .unwrap();
            stream.write_all(&bytes[..10]).await.unwrap();
            let mut answer = Vec::new();
            tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut answer))
                .await
                .expect("answered within the limit")
                .unwrap();
            let text = String::from_utf8_lossy(&answer);
            assert!(text.starts_with("HTTP/1.1 408"), "{text}");
            assert!(text.contains("\"code\":\"timeout\""), "{text}");
        }
        refused(client.get_blob("not-a-cid").await, 400, ErrorCode::BadCid);
        assert_eq!(stored(&blobs), 0);

        // The store's directory replaced by a file: writing fails, and says only that.
        std::fs::remove_dir_all(&blobs).unwrap();
        std::fs::write(&blobs, b"not a directory").unwrap();
        match client.put_blob(vec![4; 10], &key).await {
            Err(ClientError::Api {
                status,
                code,
                message,
            }) => {
                assert_eq!((status, code), (500, ErrorCode::Internal), "{message}");
            }
            other => panic!("expected 500 internal, got {other:?}"),
        }
        // The chain does not depend on it.
        wait_for_height(&client, height + 2).await;
    });
}

/// Before block 1 there is no attestation nonce: a validator of two, alone, finalizes nothing.
#[test]
fn no_nonce_before_the_first_block() {
    let home = tempfile::tempdir().unwrap();
    let layout = run::write_network(home.path(), genesis(&[]), 2, (0, 0), None).unwrap();
    let storage = home.path().join("consensus");
    commonware_runtime::Runner::start(run::runner(&storage), |context| async move {
        let mut configs = run::NodeConfig::load_all(&layout.nodes).unwrap();
        configs.truncate(1);
        let started = run::start_nodes(&context, configs, SenderCache::default())
            .await
            .unwrap();
        let api = started[0].api;
        let answer = reqwest::get(format!("http://{api}/v1/attestation-nonce"))
            .await
            .unwrap();
        assert_eq!(answer.status().as_u16(), 503);
        let body: serde_json::Value = answer.json().await.unwrap();
        assert_eq!(body["error"]["code"], "no_blocks_yet", "{body}");
        // The client reads that code as "none yet".
        let client = Client::new(&api.to_string());
        assert!(client.attestation_nonce().await.unwrap().is_none());
        assert_eq!(client.status().await.unwrap().height, 0);
        context.stop(0, Some(Duration::from_secs(5))).await.ok();
    });
}

/// Overload is shed at the door: with as many submissions and uploads under way as the node
/// takes (one here, held by a client that sends its body slowly), the next upload and the next
/// transaction are answered 429 `overloaded` with Retry-After at once, while the reads workers
/// need (status, a blob) answer as usual; once the slow one ends, uploads are taken again.
#[test]
fn writes_past_the_limit_are_shed_with_retry_after_and_reads_still_answer() {
    let key = AccountKey::generate();
    let genesis = genesis(&[(key.address(), 100 * ONE_TOKEN)]);
    let configure = |config: &mut NodeConfig| {
        config.api_limits.max_inflight_writes = 1;
        config.api_limits.request_timeout_secs = 30;
    };
    with_node(genesis, configure, move |node| async move {
        use tokio::io::AsyncWriteExt as _;
        let Node { client, api, .. } = node;
        let stored = client
            .put_blob(b"a blob to read".to_vec(), &key)
            .await
            .unwrap();
        let height = client.status().await.unwrap().height;
        let auth = UploadAuth::sign(&key, CHAIN_ID, sha256(&[7; 50]), height).to_header();
        let mut slow = tokio::net::TcpStream::connect(api).await.unwrap();
        slow.write_all(
            format!(
                "PUT /v1/blobs HTTP/1.1\r\nhost: {api}\r\n{}: {auth}\r\ncontent-type: application/octet-stream\r\ncontent-length: 50\r\n\r\n",
                verity_api::UPLOAD_HEADER
            )
            .as_bytes(),
        )
        .await
        .unwrap();
        slow.write_all(&[7; 10]).await.unwrap();
        tokio::time::sleep(Duration::from_millis(300)).await;

        let shed = reqwest::Client::new()
            .put(format!("http://{api}/v1/blobs"))
            .header(
                verity_api::UPLOAD_HEADER,
                UploadAuth::sign(&key, CHAIN_ID, sha256(b"x"), height).to_header(),
            )
            .body(b"x".to_vec())
            .send()
            .await
            .unwrap();
        assert_eq!(shed.status(), 429);
        assert_eq!(shed.headers()["retry-after"], "1");
        let body: serde_json::Value = shed.json().await.unwrap();
        assert_eq!(body["error"]["code"], "overloaded");
        let transfer = verity_types::TxBody {
            chain_id: CHAIN_ID.into(),
            nonce: 0,
            fee: ONE_TOKEN / 1_000,
            action: verity_types::Action::Transfer {
                to: Address([9; 20]),
                amount: 1,
            },
        }
        .sign(&key);
        // Raw, since the client waits out a short Retry-After and sends again.
        let shed = reqwest::Client::new()
            .post(format!("http://{api}/v1/txs"))
            .json(&serde_json::json!({ "tx": hex::encode(transfer.encode()) }))
            .send()
            .await
            .unwrap();
        assert_eq!(shed.status(), 429);
        assert_eq!(shed.headers()["retry-after"], "1");

        let started = std::time::Instant::now();
        client.status().await.unwrap();
        assert_eq!(
            client.get_blob(&stored.cid).await.unwrap().unwrap(),
            b"a blob to read"
        );
        assert!(started.elapsed() < Duration::from_secs(2), "reads waited");

        drop(slow);
        tokio::time::sleep(Duration::from_millis(300)).await;
        client
            .put_blob(b"after the slow one".to_vec(), &key)
            .await
            .unwrap();
        client.submit(&transfer).await.unwrap();
    });
}
