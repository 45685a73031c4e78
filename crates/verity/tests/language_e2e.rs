//! Language-model tasks end to end on `verity devnet` and its bundled model (tiny-lm):
//! `verity chat` answers with the same tokens a local run of the registered files gives; an
//! account that cannot pay gets a clear error and nothing is escrowed; the official `openai`
//! Python package drives `verity gateway` (chat and completion, each whole and streamed, models,
//! errors)
//! and every answer's `verity` object names the task that holds it on chain; and a gateway
//! behind a node that forges answers returns errors, never the forged text.

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::devnet::{spawn, start_devnet, wait_for, Devnet};
use serde_json::Value;
use verity_client::Client;
use verity_infer::Engine;
use verity_lm::{GenerationConfig, ServedModel};
use verity_types::{
    sampling_seed, AccountKey, EnclaveKey, GenerationDocument, Hash, PromptDocument, PromptMessage,
};

fn verity(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_verity"))
        .args(args)
        .output()
        .unwrap()
}

fn verity_ok(args: &[&str]) -> String {
    let out = verity(args);
    assert!(
        out.status.success(),
        "verity {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// The bundled model's registered files, as a worker holds them.
fn local_model(dir: &Path) -> ServedModel {
    let src = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../models/tiny_lm");
    for name in ["model.onnx", "tokenizer.json"] {
        std::fs::copy(src.join(name), dir.join(name)).unwrap();
    }
    let config = GenerationConfig::from_dir(&src).unwrap();
    std::fs::write(dir.join("generation.json"), config.to_json()).unwrap();
    ServedModel::load(dir).unwrap()
}

/// A task's output file, as bytes and read.
async fn output_file(client: &Client, task: &Hash) -> (Vec<u8>, GenerationDocument) {
    let view = client.task(task).await.unwrap().unwrap();
    let record = view.record.expect("a record");
    let bytes = client
        .get_blob(&verity_data::cid_of(&record.output_hash))
        .await
        .unwrap()
        .unwrap();
    let doc = serde_json::from_slice(&bytes).unwrap();
    (bytes, doc)
}

async fn output_of(client: &Client, task: &Hash) -> GenerationDocument {
    output_file(client, task).await.1
}

fn task_id_of(verity: &Value) -> Hash {
    verity["task_id"].as_str().unwrap().parse().unwrap()
}

/// Starts `verity gateway` paying from `key` in front of `node`, once it listens.
async fn start_gateway(
    home: &Path,
    key: &Path,
    node: &str,
    seed: u16,
) -> (common::devnet::Killed, String) {
    for attempt in 0..common::PORT_ATTEMPTS {
        let port = common::ports(1, seed, attempt).0;
        let log = home.join(format!("gateway-{port}.log"));
        let listen = format!("127.0.0.1:{port}");
        let process = spawn(
            &[
                "gateway",
                "--key",
                key.to_str().unwrap(),
                "--node",
                node,
                "--listen",
                &listen,
                "--api-key",
                "sesame",
                "--timeout-secs",
                "60",
            ],
            &log,
        );
        let up = wait_for("the gateway", 60, async || {
            if common::port_taken_in(&log) {
                return Some(false);
            }
            let text = std::fs::read_to_string(&log).ok()?;
            text.contains("gateway listening").then_some(true)
        })
        .await;
        if up {
            return (process, format!("http://{listen}/v1"));
        }
    }
    panic!("every port tried for the gateway was taken");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs VERITY_PYTHON with the openai package; scripts/test runs it"]
async fn chat_and_the_openai_package_get_verified_answers_from_the_devnet() {
    let home = tempfile::tempdir().unwrap();
    let Devnet {
        client,
        home: devnet_home,
        api,
        process: _devnet,
        ..
    } = start_devnet(home.path(), 31, 2, &[]).await;
    let node = format!("http://127.0.0.1:{api}");
    let key = devnet_home.join("dev-account.key");
    let key = key.to_str().unwrap();

    // `verity chat`: the answer is the registered model's own greedy continuation.
    let out = verity_ok(&[
        "chat",
        "--model",
        "tiny-lm",
        "Call me Ishmael.",
        "--from",
        key,
        "--node",
        &node,
        "--max-tokens",
        "16",
        "--json",
    ]);
    let chat: Value = serde_json::from_str(&out).unwrap();
    let task: Hash = chat["task_id"].as_str().unwrap().parse().unwrap();
    assert_eq!(chat["mode"], "tee");
    assert_eq!(chat["attestation"], "dev TEE, not hardware-backed");
    assert!(chat["verified"].as_array().unwrap().len() >= 6);
    let models = tempfile::tempdir().unwrap();
    let local = local_model(models.path());
    let doc = PromptDocument {
        messages: Some(vec![PromptMessage {
            role: "user".into(),
            content: "Call me Ishmael.".into(),
        }]),
        prompt: None,
        max_tokens: 16,
        temperature: 0.0,
        top_k: None,
        top_p: None,
        seed: None,
        stop: Vec::new(),
    };
    let ids = local.renderer().prompt_ids(&doc).unwrap();
    let expected = local
        .run(
            &Engine::new(1).unwrap(),
            &doc,
            &ids,
            sampling_seed(&doc, &task),
            |_| {},
        )
        .unwrap();
    // Byte for byte: a JSON float read back may lose its last bit, its text does not.
    let (on_chain, _) = output_file(&client, &task).await;
    assert_eq!(
        String::from_utf8(on_chain).unwrap(),
        String::from_utf8(verity_lm::task::output_bytes(&expected)).unwrap(),
        "the worker's answer is the model's"
    );
    assert_eq!(chat["text"], expected.text);
    let shown = verity_ok(&["task", "show", &task.to_string(), "--node", &node, "--json"]);
    let shown: Value = serde_json::from_str(&shown).unwrap();
    assert_eq!(shown["output"]["text"], expected.text);
    assert_eq!(shown["task"]["generation"]["max_tokens"], 16);

    // An account that cannot pay: a clear error, and nothing sent.
    let poor = AccountKey::generate();
    let poor_key = home.path().join("poor.key");
    std::fs::write(&poor_key, poor.secret_hex()).unwrap();
    let refused = verity(&[
        "chat",
        "--model",
        "tiny-lm",
        "Hello",
        "--from",
        poor_key.to_str().unwrap(),
        "--node",
        &node,
    ]);
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success());
    assert!(stderr.contains("but this request needs"), "{stderr}");
    let account = client.account(&poor.address()).await.unwrap();
    assert_eq!((account.balance, account.pending_nonce), (0, 0));

    // A worker that holds at most 1 MB declares the models that fit, not the language model:
    // it is never drawn for it.
    let small = AccountKey::generate();
    let small_key = home.path().join("small.key");
    std::fs::write(&small_key, small.secret_hex()).unwrap();
    verity_ok(&[
        "transfer",
        "--from",
        key,
        "--to",
        &small.address().to_string(),
        "--amount",
        "2000",
        "--wait",
        "--node",
        &node,
    ]);
    let _small_worker = spawn(
        &[
            "worker",
            "--key",
            small_key.to_str().unwrap(),
            "--home",
            home.path().join("small-worker").to_str().unwrap(),
            "--node",
            &node,
            "--max-model-bytes",
            "1000000",
        ],
        &home.path().join("small-worker.log"),
    );
    let served = wait_for("the capped worker's models", 90, async || {
        let models = client.worker(&small.address()).await.ok()?.stake?.models;
        (!models.is_empty()).then_some(models)
    })
    .await;
    let lm: Hash = chat["model_id"].as_str().unwrap().parse().unwrap();
    assert!(!served.contains(&lm), "{served:?}");
    assert!(served.contains(&common::devnet::model_id("digits_mlp.onnx")));

    // The official openai package against the gateway.
    let (_gateway, base_url) = start_gateway(home.path(), Path::new(key), &node, 32).await;
    let python = std::env::var("VERITY_PYTHON").expect("VERITY_PYTHON");
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../scripts/openai_gateway_check.py"
    );
    let out = Command::new(python)
        .args([script, &base_url, "sesame", "tiny-lm"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let calls: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(calls["models"]
        .as_array()
        .unwrap()
        .contains(&Value::from("tiny-lm")));
    for (call, field) in [
        ("chat", "content"),
        ("stream", "content"),
        ("completion", "text"),
        ("stream_completion", "text"),
    ] {
        let verity = &calls[call]["verity"];
        assert_eq!(verity["verification"], "verified", "{call}: {verity}");
        assert_eq!(verity["mode"], "tee");
        let output = output_of(&client, &task_id_of(verity)).await;
        assert_eq!(
            calls[call][field].as_str().unwrap(),
            output.text,
            "{call}: the answer is the one on chain"
        );
        assert!(!output.tokens.is_empty());
    }
    assert_eq!(
        calls["chat"]["usage"]["completion_tokens"],
        output_of(&client, &task_id_of(&calls["chat"]["verity"]))
            .await
            .tokens
            .len()
    );
    let errors = &calls["errors"];
    assert_eq!(errors["unknown_model"]["code"], "model_not_found");
    assert!(errors["too_long"]["message"]
        .as_str()
        .unwrap()
        .contains("context of 256 tokens"));
    assert_eq!(errors["wrong_key"]["code"], "invalid_api_key");
}

/// How the node in front of the gateway lies.
const HONEST: u8 = 0;
/// Serves another output file than the one the enclave signed.
const SWAP_OUTPUT: u8 = 1;
/// Rewrites the record to a forged output, signed by an enclave key of its own.
const FORGE_RECEIPT: u8 = 2;

struct Proxy {
    upstream: String,
    http: reqwest::Client,
    mode: AtomicU8,
    forger: EnclaveKey,
}

fn forged_output() -> Vec<u8> {
    br#"{"prompt_ids":[1],"tokens":[],"text":"FORGED","finish_reason":"stop","seed":0}"#.to_vec()
}

async fn forward(
    axum::extract::State(proxy): axum::extract::State<Arc<Proxy>>,
    request: axum::extract::Request,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let path = request
        .uri()
        .path_and_query()
        .map(|p| p.to_string())
        .unwrap_or_default();
    let method = request.method().clone();
    let headers = request.headers().clone();
    let body = axum::body::to_bytes(request.into_body(), 64 << 20)
        .await
        .unwrap();
    let mode = proxy.mode.load(Ordering::SeqCst);
    if method == axum::http::Method::GET && path.starts_with("/v1/blobs/") && mode != HONEST {
        return forged_output().into_response();
    }
    let mut upstream = proxy
        .http
        .request(method.clone(), format!("{}{path}", proxy.upstream))
        .body(body);
    for (name, value) in headers.iter() {
        if name != "host" && name != "content-length" {
            upstream = upstream.header(name, value);
        }
    }
    let response = upstream.send().await.unwrap();
    let status = response.status();
    let bytes = response.bytes().await.unwrap();
    if mode == FORGE_RECEIPT && path.starts_with("/v1/tasks/") && status.is_success() {
        let mut view: Value = serde_json::from_slice(&bytes).unwrap();
        if let Some(record) = view.get_mut("record").filter(|r| r.is_object()) {
            let mut parsed: verity_client::api::ExecutionRecord =
                serde_json::from_value(record.clone()).unwrap();
            let forged = forged_output();
            parsed.output_hash = verity_types::sha256(&forged);
            parsed.output_size = forged.len() as u64;
            let mut receipt = parsed.receipt();
            proxy.forger.sign("verity-devnet", &mut receipt);
            parsed.enclave_key = receipt.enclave_key;
            parsed.signature = receipt.signature;
            *record = serde_json::to_value(parsed).unwrap();
        }
        return (status, axum::Json(view)).into_response();
    }
    (status, bytes).into_response()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_behind_a_lying_node_returns_errors_not_the_forged_text_and_refuses_bad_requests()
{
    let home = tempfile::tempdir().unwrap();
    let devnet = start_devnet(home.path(), 41, 2, &[]).await;
    let key = devnet.home.join("dev-account.key");
    let proxy = Arc::new(Proxy {
        upstream: format!("http://127.0.0.1:{}", devnet.api),
        http: reqwest::Client::new(),
        mode: AtomicU8::new(HONEST),
        forger: EnclaveKey::generate(),
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let proxy_addr: SocketAddr = listener.local_addr().unwrap();
    let app = axum::Router::new()
        .fallback(forward)
        .with_state(proxy.clone());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let (_gateway, base_url) =
        start_gateway(home.path(), &key, &format!("http://{proxy_addr}"), 42).await;

    let http = reqwest::Client::new();
    let ask = async |mode: u8| {
        proxy.mode.store(mode, Ordering::SeqCst);
        let response = http
            .post(format!("{base_url}/chat/completions"))
            .bearer_auth("sesame")
            .json(&serde_json::json!({
                "model": "tiny-lm",
                "messages": [{"role": "user", "content": "Call me Ishmael."}],
                "max_tokens": 8,
            }))
            .timeout(Duration::from_secs(120))
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        (status, response.json::<Value>().await.unwrap())
    };
    // Through an honest node the answer comes back verified.
    let (status, body) = ask(HONEST).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["verity"]["verification"], "verified");
    for (mode, expected) in [
        (SWAP_OUTPUT, "not the one the enclave signed"),
        (FORGE_RECEIPT, "not by worker"),
    ] {
        let (status, body) = ask(mode).await;
        let text = body.to_string();
        assert_eq!(status, 502, "{text}");
        assert_eq!(body["error"]["code"], "unverified_answer");
        assert!(text.contains(expected), "{text} should say {expected:?}");
        assert!(!text.contains("FORGED"));
    }
    proxy.mode.store(HONEST, Ordering::SeqCst);

    // A mode the model does not allow: OpenAI's 400, before anything is sent.
    let response = http
        .post(format!("{base_url}/chat/completions"))
        .bearer_auth("sesame")
        .json(&serde_json::json!({
            "model": "tiny-lm",
            "messages": [{"role": "user", "content": "Hi"}],
            "verity_mode": "tee_zk",
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 400);
    let body: Value = response.json().await.unwrap();
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("does not allow mode tee_zk"));

    // A key that cannot pay: 402 insufficient_quota, and nothing escrowed or even sent.
    let poor = AccountKey::generate();
    let poor_key = home.path().join("poor.key");
    std::fs::write(&poor_key, poor.secret_hex()).unwrap();
    let (_poor_gateway, poor_url) = start_gateway(
        home.path(),
        &poor_key,
        &format!("http://127.0.0.1:{}", devnet.api),
        43,
    )
    .await;
    let response = http
        .post(format!("{poor_url}/completions"))
        .bearer_auth("sesame")
        .json(&serde_json::json!({"model": "tiny-lm", "prompt": "The sea", "max_tokens": 4}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 402);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "insufficient_quota");
    let account = devnet.client.account(&poor.address()).await.unwrap();
    assert_eq!((account.balance, account.pending_nonce), (0, 0));
}

/// SmolLM2-135M-Instruct (scripts/smollm2.py's float32 graph, 538 MB of external weights)
/// registered on a devnet by `verity model register DIR`, its weights stored as blobs in parts,
/// answers chat prompts in English through `verity chat` and through the gateway to the
/// official openai package.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs VERITY_SMOLLM2 (scripts/smollm2.py's output) and VERITY_PYTHON; scripts/test sets them"]
async fn smollm2_registered_on_a_devnet_answers_in_english() {
    let dir = std::env::var("VERITY_SMOLLM2").expect("VERITY_SMOLLM2");
    let home = tempfile::tempdir().unwrap();
    let Devnet {
        client,
        home: devnet_home,
        api,
        process: _devnet,
        ..
    } = start_devnet(home.path(), 51, 2, &[]).await;
    let node = format!("http://127.0.0.1:{api}");
    let key = devnet_home.join("dev-account.key");
    let key = key.to_str().unwrap();
    let id = verity_ok(&[
        "model",
        "register",
        &dir,
        "--name",
        "smollm2-135m-instruct",
        "--license",
        "Apache-2.0",
        "--from",
        key,
        "--node",
        &node,
    ]);
    let id: Hash = id.trim().parse().unwrap();
    let model = client.model(&id).await.unwrap().expect("registered");
    let language = model.spec.language.expect("a language model");
    let weights = language.weights.expect("external weights");
    assert_eq!(weights.name, "model.onnx.data");
    assert_eq!(weights.size(), Some(538_060_032));
    assert_eq!(weights.chunks.len(), 17, "32 MiB parts");
    assert!(model.spec.param_count > 130_000_000);
    for (question, expected) in [
        ("What is 2+2?", "4"),
        ("What is the capital of France?", "Paris"),
    ] {
        let out = verity_ok(&[
            "chat",
            "--model",
            "smollm2-135m-instruct",
            question,
            "--from",
            key,
            "--node",
            &node,
            "--max-tokens",
            "32",
            "--json",
        ]);
        let answer: Value = serde_json::from_str(&out).unwrap();
        let text = answer["text"].as_str().unwrap();
        println!("{question:?} -> {text:?}");
        assert!(text.contains(expected), "{question:?} -> {text:?}");
        assert_eq!(answer["finish_reason"], "stop");
        assert_eq!(answer["verified"].as_array().unwrap().len(), 7);
    }
    // And through the gateway, asked with the official openai package.
    let (_gateway, base_url) = start_gateway(home.path(), Path::new(key), &node, 52).await;
    let python = std::env::var("VERITY_PYTHON").expect("VERITY_PYTHON");
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../scripts/openai_gateway_check.py"
    );
    let out = Command::new(python)
        .args([
            script,
            &base_url,
            "sesame",
            "smollm2-135m-instruct",
            "What is the capital of France?",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let answer: Value = serde_json::from_slice(&out.stdout).unwrap();
    let content = answer["content"].as_str().unwrap();
    println!("openai package -> {content:?}");
    assert!(content.contains("Paris"), "{content:?}");
    assert_eq!(answer["verity"]["verification"], "verified");
    assert_eq!(
        output_of(&client, &task_id_of(&answer["verity"]))
            .await
            .text,
        content
    );
}

/// OP answers on the bundled model from a devnet whose workers are 2 of 3 dishonest (each
/// changes token 1 of its answers, keeping the forward pass) with one challenger: every
/// dishonest answer is disputed and lost at the sampling step, and `verity chat --mode op`
/// prints the honest answer once its window has closed undisputed. Reports the blocks from
/// opening to verdict and the largest dispute transaction.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn op_answers_from_dishonest_workers_are_disputed_and_lost() {
    const ANSWERS: usize = 6;
    let home = tempfile::tempdir().unwrap();
    let Devnet {
        client,
        home: devnet_home,
        api,
        process: _devnet,
        ..
    } = start_devnet(
        home.path(),
        35,
        3,
        &["--dishonest-workers", "2", "--challengers", "1"],
    )
    .await;
    wait_for("the challenger to bond", 120, async || {
        let list = client.challengers(&Default::default()).await.ok()?;
        (!list.challengers.is_empty()).then_some(())
    })
    .await;
    let liars: Vec<verity_types::Address> = (0..2)
        .map(|i| {
            let key = devnet_home.join(format!("worker-{i}")).join("account.key");
            AccountKey::from_hex(&std::fs::read_to_string(key).unwrap())
                .unwrap()
                .address()
        })
        .collect();
    let node = format!("http://127.0.0.1:{api}");
    let key = devnet_home.join("dev-account.key");
    // Each chat from its own key: the answers are asked for at once.
    let mut chats = Vec::new();
    for i in 0..ANSWERS {
        let user = AccountKey::generate();
        let user_key = home.path().join(format!("user-{i}.key"));
        std::fs::write(&user_key, user.secret_hex()).unwrap();
        verity_ok(&[
            "transfer",
            "--to",
            &user.address().to_string(),
            "--amount",
            "10",
            "--from",
            key.to_str().unwrap(),
            "--node",
            &node,
            // The chat checks the balance before it escrows: the transfer must be final first.
            "--wait",
        ]);
        let args = [
            "chat".to_string(),
            "--model".into(),
            "tiny-lm".into(),
            format!("Call me Ishmael. Chapter {i}."),
            "--from".into(),
            user_key.to_str().unwrap().into(),
            "--node".into(),
            node.clone(),
            "--mode".into(),
            "op".into(),
            "--max-tokens".into(),
            "32".into(),
            "--json".into(),
        ];
        chats.push(tokio::task::spawn_blocking(move || {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            verity(&args)
        }));
    }
    let started = std::time::Instant::now();
    let mut answers = Vec::new();
    for chat in chats {
        let out = chat.await.unwrap();
        assert!(
            out.status.success(),
            "verity chat --mode op: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        answers.push(serde_json::from_slice::<Value>(&out.stdout).unwrap());
    }
    eprintln!(
        "{ANSWERS} op answers verified {:.1} s after they were asked for",
        started.elapsed().as_secs_f64()
    );
    let models = tempfile::tempdir().unwrap();
    let local = local_model(models.path());
    let engine = Engine::new(1).unwrap();
    let mut disputes = Vec::new();
    for chat in &answers {
        assert_eq!(chat["mode"], "op");
        let verified: Vec<&str> = chat["verified"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        assert!(
            verified.contains(&"challenge window closed"),
            "{verified:?}"
        );
        let task = task_id_of(chat);
        let view = client.task(&task).await.unwrap().unwrap();
        let record = view.record.clone().unwrap();
        if liars.contains(&record.worker) {
            let log = std::fs::read_to_string(home.path().join("devnet.log")).unwrap_or_default();
            let relevant: Vec<&str> = log
                .lines()
                .filter(|l| l.contains("challenger") || l.contains("dispute") || l.contains("WARN"))
                .collect();
            panic!(
                "a liar's answer stood: task {task}, disputes {:?}\n{}",
                view.disputes,
                relevant[relevant.len().saturating_sub(60)..].join("\n")
            );
        }
        // The answer is the model's own: the same tokens a local run gives with the task's seed.
        let prompt = client
            .get_blob(&verity_data::cid_of(&view.task.input.hash))
            .await
            .unwrap()
            .unwrap();
        let doc: PromptDocument = serde_json::from_slice(&prompt).unwrap();
        let ids = local.renderer().prompt_ids(&doc).unwrap();
        let honest = local
            .run(&engine, &doc, &ids, sampling_seed(&doc, &task), |_| {})
            .unwrap();
        assert_eq!(output_of(&client, &task).await, honest);
        assert_eq!(view.task.disproven.len(), view.disputes.len());
        for d in &view.disputes {
            assert!(liars.contains(&d.worker), "only liars are disputed");
            assert_eq!(
                d.status,
                verity_client::api::DisputeStatus::ChallengerWon,
                "{:?}",
                d.verdict
            );
            let generation = d.generation.as_ref().expect("the token was opened");
            assert!(generation.sampling_only());
            assert!(generation.token_index <= 1);
            disputes.push((d.clone(), prompt.clone(), doc.clone()));
        }
    }
    assert!(
        !disputes.is_empty(),
        "no liar was drawn for any of the {ANSWERS} tasks"
    );
    let blocks = disputes
        .iter()
        .map(|(d, ..)| d.resolved_height.unwrap() - d.opened_height)
        .max()
        .unwrap();
    // The largest dispute transactions, rebuilt: the token's opening (the liar's document and
    // the prompt) and the sampling one-step.
    let mut largest = 0;
    for (d, prompt, doc) in &disputes {
        let limits = verity_types::GenerationLimits {
            prompt_tokens: local.renderer().prompt_ids(doc).unwrap().len() as u32,
            max_tokens: 32,
        };
        let lie = verity_worker::language::generate(
            &engine,
            &local,
            &d.task_id,
            &limits,
            prompt,
            Some(1),
        )
        .unwrap();
        let g = d.generation.as_ref().unwrap();
        let lm = local.language_model();
        let (prompt_ids, tokens) = g.sequence.split_at(g.prompt_tokens as usize);
        let replayed = lm.replay(&engine, prompt_ids, tokens).unwrap();
        let witness = lm
            .pass_witness(&engine, &replayed, verity_lm::dispute::PassTarget::Sampling)
            .unwrap();
        for action in [
            verity_types::Action::RevealToken {
                dispute_id: d.dispute_id,
                output: verity_lm::task::output_bytes(&lie),
                prompt: prompt.clone(),
                forward_root: g.challenger.forward_root,
                token: g.challenger.token,
            },
            verity_types::Action::OneStep {
                dispute_id: d.dispute_id,
                witness: witness.encode(),
                input: Vec::new(),
            },
        ] {
            let body = verity_types::TxBody {
                chain_id: "verity-devnet".into(),
                nonce: 0,
                fee: 0,
                action,
            };
            largest = largest.max(body.signed_len());
        }
    }
    eprintln!(
        "{} dishonest answers disputed and lost, at most {blocks} blocks from opening to verdict; largest dispute transaction {largest} bytes",
        disputes.len()
    );
    assert!(largest < 64 * 1024);
}
