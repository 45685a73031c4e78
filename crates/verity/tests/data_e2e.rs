//! Contributed data end to end on `verity devnet` with one data verifier, through
//! `verity data contribute`: a clean CSV, one with duplicate rows and missing values, and one
//! whose plaintext is not the one registered. The first two are proven with the documented
//! scores (the clean one higher) and their DAT minted once each; a second reward, and a reward
//! claimed with the other file's proof, are refused; the third is rejected and mints nothing.
//! The verifier's `POST /proof` refuses a request for a job it does not owe and a malformed
//! body. Then a 10 MiB file goes the whole way, timed.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::devnet::{ok, start_devnet, verity, Devnet};
use verity_client::api::{DataJobStatus, ProofRequest, TxStatus};
use verity_client::{Client, ClientError};
use verity_types::{AccountKey, Action, DataRejection, DataVerdict, ONE_TOKEN};

const CLEAN: &str = "age,income,city\n34,52000,Oslo\n29,48000,Bergen\n41,61000,Oslo\n52,75000,Trondheim\n23,31000,Bergen\n";
const DIRTY: &str = "age,income,city\n34,52000,Oslo\n34,52000,Oslo\n29,,Bergen\n41,NA,Oslo\n34,52000,Oslo\n,31000,\n";

/// The documented score of a plaintext, in basis points.
fn documented_score(plaintext: &str) -> u32 {
    verity_data::quality::score(plaintext.as_bytes())
        .unwrap()
        .score
}

async fn failure(client: &Client, key: &AccountKey, action: Action) -> String {
    let tx = client.submit_action(key, action, 0).await.unwrap();
    let receipt = client
        .wait_for_tx(&tx.hash(), Duration::from_secs(30))
        .await
        .unwrap();
    match receipt.status {
        TxStatus::Failed { error } => error.to_string(),
        TxStatus::Success => panic!("the transaction must fail"),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn contributed_files_are_proven_scored_and_rewarded_once() {
    let home = tempfile::tempdir().unwrap();
    let devnet = start_devnet(
        home.path(),
        6_007,
        1,
        &["--validators", "1", "--challengers", "0"],
    )
    .await;
    three_contributions(&devnet, home.path()).await;
    stale_and_malformed_requests_are_refused(&devnet).await;
    a_task_on_a_file_pays_its_holders(&devnet).await;
    an_anchored_model_registration(&devnet).await;
    datasets_are_registered_anchored_or_claimed(&devnet, home.path()).await;
    ten_mib_end_to_end(&devnet, home.path()).await;
    a_labeled_file_is_scored_with_its_registered_model(&devnet, home.path());
}

/// File 5: the digits' held-out split, labeled, evaluated by the registered digits MLP. The
/// verifier's score is what `verity data score --label --model` computes from the plaintext.
fn a_labeled_file_is_scored_with_its_registered_model(devnet: &Devnet, home: &Path) {
    let node = format!("http://127.0.0.1:{}", devnet.api);
    let key_path = devnet.home.join("dev-account.key");
    let path = home.join("digits.csv");
    std::fs::write(&path, common::digits_csv()).unwrap();
    let path = path.to_str().unwrap();
    let onnx = format!(
        "{}/../../models/digits_mlp.onnx",
        env!("CARGO_MANIFEST_DIR")
    );
    let local = ok(
        &node,
        &[
            "data", "score", path, "--label", "label", "--model", &onnx, "--json",
        ],
    );
    let local: serde_json::Value = serde_json::from_str(&local).unwrap();
    let score = local["score"].as_u64().unwrap();
    let model = devnet.model.to_string();
    let out = ok(
        &node,
        &[
            "data",
            "contribute",
            path,
            "--label",
            "label",
            "--model",
            &model,
            "--from",
            key_path.to_str().unwrap(),
        ],
    );
    assert!(out.contains(&format!("({score} basis points)")), "{out}");
}

/// `verity model register --anchor`: the data verifier's enclave hashes the uploaded file and
/// the chain records it; the devnet's own models show as unanchored claims.
async fn an_anchored_model_registration(devnet: &Devnet) {
    let node = format!("http://127.0.0.1:{}", devnet.api);
    let key_path = devnet.home.join("dev-account.key");
    let file = format!(
        "{}/../../models/digits_mlp_int8_wide.onnx",
        env!("CARGO_MANIFEST_DIR")
    );
    let id = ok(
        &node,
        &[
            "model",
            "register",
            &file,
            "--from",
            key_path.to_str().unwrap(),
            "--anchor",
        ],
    );
    let id: verity_types::Hash = id.trim().parse().unwrap();
    let model = devnet.client.model(&id).await.unwrap().unwrap();
    let anchor = model.anchor.expect("the registration is anchored");
    let verifier = devnet
        .client
        .data_jobs_of(1, None)
        .await
        .unwrap()
        .jobs
        .remove(0)
        .verifier
        .unwrap();
    assert_eq!(anchor.worker, verifier);
    let list = ok(&node, &["model", "list"]);
    assert!(
        list.contains(&format!("anchored by {verifier}'s dev enclave")),
        "{list}"
    );
    assert!(list.contains("unanchored claim"), "{list}");
}

/// `verity dataset register`: commit–reveal like a model, anchored by the data verifier's
/// enclave with `--anchor`, an unanchored claim without; someone else's file is refused.
async fn datasets_are_registered_anchored_or_claimed(devnet: &Devnet, home: &Path) {
    let node = format!("http://127.0.0.1:{}", devnet.api);
    let key_path = devnet.home.join("dev-account.key");
    let owner = AccountKey::from_hex(&std::fs::read_to_string(&key_path).unwrap())
        .unwrap()
        .address();
    let register = |file: &str, contents: &str, extra: &[&str]| {
        let path = home.join(file);
        std::fs::write(&path, contents).unwrap();
        let mut args = vec![
            "dataset",
            "register",
            path.to_str().unwrap(),
            "--from",
            key_path.to_str().unwrap(),
            "--license",
            "CC-BY-4.0",
        ];
        args.extend_from_slice(extra);
        let id = ok(&node, &args);
        let id: verity_types::Hash = id.trim().parse().unwrap();
        assert_eq!(id, verity_types::sha256(contents.as_bytes()));
        (id, path)
    };
    let (anchored, anchored_path) = register("census.csv", "age,city\n31,Oslo\n", &["--anchor"]);
    let (claimed, _) = register("weather.csv", "day,mm\n1,4\n", &[]);
    let record = devnet.client.dataset(&anchored).await.unwrap().unwrap();
    assert_eq!((record.owner, record.name.as_str()), (owner, "census.csv"));
    let anchor = record.anchor.expect("the registration is anchored");
    let verifier = devnet.client.data_verifier(&anchor.worker).await.unwrap();
    assert!(verifier.verifier.is_some(), "a data verifier anchored it");
    let record = devnet.client.dataset(&claimed).await.unwrap().unwrap();
    assert!(record.anchor.is_none());
    let list = ok(&node, &["dataset", "list"]);
    assert!(
        list.contains(&format!("{anchored}  census.csv"))
            && list.contains(&format!("anchored by {}'s dev enclave", anchor.worker)),
        "{list}"
    );
    assert!(
        list.contains(&format!("{claimed}  weather.csv")) && list.contains("unanchored claim"),
        "{list}"
    );
    // Another account cannot register the same file.
    let other = home.join("other.key");
    std::fs::write(&other, AccountKey::generate().secret_hex()).unwrap();
    let refused = verity(
        &node,
        &[
            "dataset",
            "register",
            anchored_path.to_str().unwrap(),
            "--from",
            other.to_str().unwrap(),
        ],
    );
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains(&format!(
            "dataset {anchored} is already registered, by {owner}"
        )),
        "{stderr}"
    );
    let shown = ok(&node, &["dataset", "show", &claimed.to_string()]);
    assert!(shown.contains("\"license\": \"CC-BY-4.0\""), "{shown}");
}

/// A task that names file 1 pays its DAT holder (the dev account) 5 % of its fee, which
/// `verity dat claim` collects.
async fn a_task_on_a_file_pays_its_holders(devnet: &Devnet) {
    let node = format!("http://127.0.0.1:{}", devnet.api);
    let key_path = devnet.home.join("dev-account.key");
    let key_arg = key_path.to_str().unwrap();
    let input = format!(
        "{}/../../models/samples/digit_0_label_7.json",
        env!("CARGO_MANIFEST_DIR")
    );
    let model = devnet.model.to_string();
    let out = ok(
        &node,
        &[
            "task",
            "submit",
            "--model",
            &model,
            "--input",
            &input,
            "--from",
            key_arg,
            "--max-fee",
            "1",
            "--dataset",
            "1",
            "--wait",
        ],
    );
    assert!(out.contains("file 1's DAT holders 0.05 VRT"), "{out}");
    let dev = AccountKey::from_hex(&std::fs::read_to_string(&key_path).unwrap()).unwrap();
    let balance = ok(&node, &["dat", "balance", &dev.address().to_string()]);
    assert!(balance.contains("earned 0.05 VRT"), "{balance}");
    let out = ok(&node, &["dat", "claim", "--file", "1", "--from", key_arg]);
    assert!(
        out.contains("claimed 0.05 VRT from file 1's task fees"),
        "{out}"
    );
    let out = verity(&node, &["dat", "claim", "--file", "1", "--from", key_arg]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("has nothing to claim from file 1"));
}

/// The clean, dirty and mismatched files, then the refused rewards: files 1 to 3.
async fn three_contributions(devnet: &Devnet, home: &Path) {
    let node = format!("http://127.0.0.1:{}", devnet.api);
    let client = &devnet.client;
    let key_path = devnet.home.join("dev-account.key");
    let key_arg = key_path.to_str().unwrap();
    let dev = AccountKey::from_hex(&std::fs::read_to_string(&key_path).unwrap()).unwrap();
    let file = |name: &str, text: &str| {
        let path = home.join(name);
        std::fs::write(&path, text).unwrap();
        path.to_str().unwrap().to_string()
    };
    let (clean, dirty) = (file("clean.csv", CLEAN), file("dirty.csv", DIRTY));

    let (clean_score, dirty_score) = (documented_score(CLEAN), documented_score(DIRTY));
    assert!(clean_score > dirty_score, "{clean_score} vs {dirty_score}");
    for (path, score) in [(&clean, clean_score), (&dirty, dirty_score)] {
        let out = ok(&node, &["data", "contribute", path, "--from", key_arg]);
        let expected = format!(
            "verdict      scored {}.{:02} % ({score} basis points)",
            score / 100,
            score % 100
        );
        assert!(out.contains(&expected), "{out}");
    }
    // The clean file encrypted, registered as if it were the dirty one.
    let out = verity(
        &node,
        &[
            "data",
            "contribute",
            &clean,
            "--claim-plaintext-of",
            &dirty,
            "--from",
            key_arg,
        ],
    );
    assert!(!out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("rejected: the decrypted plaintext is not the file that was registered"),
        "{stdout}"
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("file 3 was rejected by its verifier"));

    // What the chain holds: scores, one proof each, DAT minted once, none for file 3.
    let per_point = ONE_TOKEN / 10_000;
    let dat = client.dat(&dev.address()).await.unwrap();
    let held: Vec<(u64, u128)> = dat
        .holdings
        .iter()
        .map(|h| (h.file_id, h.balance))
        .collect();
    assert_eq!(
        held,
        [
            (1, u128::from(clean_score) * per_point),
            (2, u128::from(dirty_score) * per_point)
        ]
    );
    for (id, score) in [(1, clean_score), (2, dirty_score)] {
        let record = client.data_file(id).await.unwrap().unwrap();
        assert_eq!(record.best_score, Some(score));
        let jobs = client.data_jobs_of(id, None).await.unwrap().jobs;
        assert_eq!(jobs.len(), 1);
        assert!(jobs[0].rewarded);
    }
    let rejected = client.data_jobs_of(3, None).await.unwrap().jobs.remove(0);
    assert_eq!(
        rejected.verdict,
        Some(DataVerdict::Rejected {
            reason: DataRejection::HashMismatch
        })
    );
    assert_eq!(client.data_file(3).await.unwrap().unwrap().dat_supply, 0);

    // A second reward, and a reward with the other file's proof, are refused.
    let again = failure(
        client,
        &dev,
        Action::RequestReward {
            file_id: 1,
            job_id: 1,
        },
    )
    .await;
    assert!(again.contains("job 1 was already rewarded"), "{again}");
    let crossed = failure(
        client,
        &dev,
        Action::RequestReward {
            file_id: 2,
            job_id: 1,
        },
    )
    .await;
    assert!(
        crossed.contains("job 1 proves file 1, not file 2"),
        "{crossed}"
    );
    let rejected_reward = failure(
        client,
        &dev,
        Action::RequestReward {
            file_id: 3,
            job_id: 3,
        },
    )
    .await;
    assert!(
        rejected_reward.contains("has no score to reward"),
        "{rejected_reward}"
    );
    let balance = ok(&node, &["dat", "balance", &dev.address().to_string()]);
    assert!(balance.contains("file      1  1 DAT"), "{balance}");
}

/// The verifier's endpoint takes only requests for jobs it owes.
async fn stale_and_malformed_requests_are_refused(devnet: &Devnet) {
    let client = &devnet.client;
    let rejected = client.data_jobs_of(3, None).await.unwrap().jobs.remove(0);
    let verifier = rejected.verifier.unwrap();
    let endpoint = client
        .data_verifier(&verifier)
        .await
        .unwrap()
        .verifier
        .unwrap()
        .endpoint;
    let dev = AccountKey::from_hex(
        &std::fs::read_to_string(devnet.home.join("dev-account.key")).unwrap(),
    )
    .unwrap();
    let chain_id = client.status().await.unwrap().chain_id;
    let unsigned = ProofRequest {
        job_id: 1,
        file_id: 1,
        file_url: String::new(),
        encryption_key: "00ff".into(),
        encryption_seed: None,
        proof_url: None,
        nonce: None,
        signature: None,
    };
    // Attack (review): anyone who saw the job could send the verifier another key first and
    // have the file rejected. Only the job's requester's signature is taken: none, a
    // stranger's, or the requester's over another key or for another chain is refused.
    let stranger = AccountKey::generate();
    let signed = |key: &AccountKey, chain: &str, request: &ProofRequest| {
        let mut request = request.clone();
        request.sign(key, chain);
        request
    };
    let mut tampered = signed(&dev, &chain_id, &unsigned);
    tampered.encryption_key = "00fe".into();
    for forged in [
        unsigned.clone(),
        signed(&stranger, &chain_id, &unsigned),
        signed(&dev, "another-chain", &unsigned),
        tampered,
    ] {
        match client.send_proof_request(&endpoint, &forged).await {
            Err(ClientError::VerifierRefused {
                status: 401,
                message,
                ..
            }) => assert!(
                message.contains("must be signed by job 1's requester"),
                "{message}"
            ),
            other => panic!("a request not signed by the requester: {other:?}"),
        }
    }
    let stale = signed(&dev, &chain_id, &unsigned);
    match client.send_proof_request(&endpoint, &stale).await {
        Err(ClientError::VerifierRefused {
            status: 409,
            message,
            ..
        }) => assert!(
            message.contains("is not waiting for this verifier"),
            "{message}"
        ),
        other => panic!("a request for a proven job: {other:?}"),
    }
    let wrong_file = signed(
        &dev,
        &chain_id,
        &ProofRequest {
            file_id: 2,
            ..unsigned.clone()
        },
    );
    match client.send_proof_request(&endpoint, &wrong_file).await {
        Err(ClientError::VerifierRefused {
            status: 400,
            message,
            ..
        }) => assert!(message.contains("job 1 is for file 1, not 2"), "{message}"),
        other => panic!("a request naming another file: {other:?}"),
    }
    let malformed = reqwest::Client::new()
        .post(format!("{endpoint}/proof"))
        .header("content-type", "application/json")
        .body("{\"job_id\": \"one\"}")
        .send()
        .await
        .unwrap();
    assert_eq!(malformed.status(), 400);
    let answer: serde_json::Value = malformed.json().await.unwrap();
    assert_eq!(answer["success"], false);
}

/// 10 MiB of rows, end to end, timed: file 4.
async fn ten_mib_end_to_end(devnet: &Devnet, home: &Path) {
    let node = format!("http://127.0.0.1:{}", devnet.api);
    let key_path = devnet.home.join("dev-account.key");
    let key_arg = key_path.to_str().unwrap();
    let mut big = String::from("id,value,group\n");
    let mut row = 0u64;
    while big.len() < 10 * 1024 * 1024 {
        big.push_str(&format!("{row},{},{}\n", row * 7919 % 100_003, row % 17));
        row += 1;
    }
    let big_path = home.join("big.csv");
    std::fs::write(&big_path, &big).unwrap();
    let big_path = big_path.to_str().unwrap();
    let started = Instant::now();
    let out = ok(&node, &["data", "contribute", big_path, "--from", key_arg]);
    let seconds = started.elapsed().as_secs_f64();
    assert!(out.contains("verdict      scored 100.00 %"), "{out}");
    eprintln!(
        "10 MiB contributed, verified and rewarded end to end in {seconds:.1} s ({} rows)",
        row
    );
    let job = devnet
        .client
        .data_jobs_of(4, None)
        .await
        .unwrap()
        .jobs
        .remove(0);
    assert_eq!(job.status, DataJobStatus::Proven);
}

/// The same contributions with the devnet's blobs on a js-ipfs daemon: every upload is added to
/// it under the CID IPFS gives it (ours for 5 B, 1 MiB and 10 MiB), the node serves a blob by
/// either name, and a blob deleted from the node's directory comes back from IPFS.
#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs VERITY_JSIPFS; scripts/test runs it"]
async fn on_a_js_ipfs_daemon_every_blob_lives_in_ipfs() {
    use verity_data::{cid_of, ipfs, unixfs};
    let (_daemon, url) = common::jsipfs::start();
    let home = tempfile::tempdir().unwrap();
    let devnet = start_devnet(
        home.path(),
        6_011,
        1,
        &["--validators", "1", "--challengers", "0", "--ipfs", &url],
    )
    .await;
    let node = format!("http://127.0.0.1:{}", devnet.api);
    let client = &devnet.client;
    let key_path = devnet.home.join("dev-account.key");
    let key_arg = key_path.to_str().unwrap();
    let dev = AccountKey::from_hex(&std::fs::read_to_string(&key_path).unwrap()).unwrap();
    let daemon = ipfs::Ipfs::new(&url);
    three_contributions(&devnet, home.path()).await;

    let mut rows = String::from("id,value\n");
    for i in 0..60_000u32 {
        rows.push_str(&format!("{i},{}\n", i * 31 % 977));
    }
    assert!(rows.len() > 256 * 1024, "more than one IPFS block");
    // File 4 goes straight to IPFS (`--ipfs`), registered as ipfs://CID, never through the
    // node: the verifier reads it from the daemon. It is over one block, so the node could not
    // have guessed its CID from its SHA-256.
    let path = home.path().join("rows.csv");
    std::fs::write(&path, &rows).unwrap();
    let out = ok(
        &node,
        &[
            "data",
            "contribute",
            path.to_str().unwrap(),
            "--ipfs",
            &url,
            "--from",
            key_arg,
        ],
    );
    assert!(out.contains("verdict      scored 100.00 %"), "{out}");
    let file = client.data_file(4).await.unwrap().unwrap();
    let on_ipfs = file.url.strip_prefix("ipfs://").expect("an ipfs:// URL");
    let sealed = daemon.cat(&ipfs::parse(on_ipfs).unwrap()).await.unwrap();
    assert_eq!(verity_types::sha256(&sealed), file.data.hash);
    assert!(!devnet
        .home
        .join("blobs")
        .join(cid_of(&file.data.hash))
        .exists());

    // Files 1 to 3 went through the node, which added them to IPFS.
    for id in [1, 2, 3] {
        let record = client.data_file(id).await.unwrap().unwrap();
        let raw = cid_of(&record.data.hash);
        let bytes = client.get_blob(&raw).await.unwrap().unwrap();
        let named = unixfs::file_cid(&bytes);
        let cid = ipfs::parse(&named).unwrap();
        assert_eq!(
            daemon.cat(&cid).await.unwrap(),
            bytes,
            "file {id} is on IPFS"
        );
        assert_eq!(client.get_blob(&named).await.unwrap().unwrap(), bytes);
        let local = devnet.home.join("blobs").join(&raw);
        std::fs::remove_file(&local).unwrap();
        assert_eq!(
            client.get_blob(&raw).await.unwrap().unwrap(),
            bytes,
            "file {id} comes back from IPFS"
        );
        assert!(local.is_file(), "and is kept again");
    }
    let big = |len: usize| -> Vec<u8> { (0..len).map(|i| (i * 7 + i / 251) as u8).collect() };
    for data in [b"hello".to_vec(), big(1 << 20), big(10 << 20)] {
        let stored = client.put_blob(data.clone(), &dev).await.unwrap();
        assert_eq!(
            stored.ipfs_cid,
            unixfs::file_cid(&data),
            "{} bytes",
            data.len()
        );
        let on_ipfs = daemon
            .cat(&ipfs::parse(&stored.ipfs_cid).unwrap())
            .await
            .unwrap();
        assert_eq!(on_ipfs, data);
    }
}
