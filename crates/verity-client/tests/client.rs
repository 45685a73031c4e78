//! The client against a scripted HTTP server: what it sends (paths, page queries, the upload
//! signature) and how it reads what comes back (API errors by code, 404 as absent, a body that
//! is no API error, an overloaded node's short Retry-After waited out, a long one returned at
//! once).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use std::io::{Read, Write};
use std::net::TcpListener;
use verity_client::api::{ErrorCode, StatusView, StoredBlob, UploadAuth, UPLOAD_HEADER};
use verity_client::{Client, ClientError, PageRequest};
use verity_types::{sha256, AccountKey, FeeSchedule, Hash};

/// Answers each request with the next of `responses` (status line, extra headers, body) and
/// records each request's head (its request line and headers); a plain thread, so the client's
/// runtime is all tokio.
type Scripted = (&'static str, &'static str, &'static str);

async fn serve(responses: Vec<Scripted>) -> (String, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    std::thread::spawn(move || {
        for (status, headers, body) in responses {
            let (mut socket, _) = listener.accept().unwrap();
            let mut request = Vec::new();
            let mut buf = [0u8; 1024];
            while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                let n = socket.read(&mut buf).unwrap();
                if n == 0 {
                    break;
                }
                request.extend_from_slice(&buf[..n]);
            }
            let text = String::from_utf8_lossy(&request);
            let head = text.split("\r\n\r\n").next().unwrap_or("");
            log.lock().unwrap().push(head.to_string());
            let reply = format!(
                "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n{headers}\r\n{body}",
                body.len()
            );
            socket.write_all(reply.as_bytes()).unwrap();
        }
    });
    (format!("http://{address}"), seen)
}

fn request_line(head: &str) -> &str {
    head.lines().next().unwrap_or("")
}

/// A header's value in a recorded request head.
fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().skip(1).find_map(|line| {
        let (key, value) = line.split_once(':')?;
        key.eq_ignore_ascii_case(name).then(|| value.trim())
    })
}

const EMPTY_PAGE: &str = r#"{"tasks":[],"next":null}"#;
const OVERLOADED: &str = r#"{"error":{"code":"overloaded","message":"busy"}}"#;

#[tokio::test]
async fn a_page_request_sends_its_cursor_and_limit() {
    let (url, seen) = serve(vec![("200 OK", "", EMPTY_PAGE), ("200 OK", "", EMPTY_PAGE)]).await;
    let client = Client::new(&url);
    let after = Hash([0xab; 32]);
    let page = client
        .tasks(&PageRequest {
            after: Some(after),
            limit: Some(5),
        })
        .await
        .unwrap();
    assert!(page.tasks.is_empty() && page.next.is_none());
    client.tasks(&PageRequest::default()).await.unwrap();
    let seen = seen.lock().unwrap().clone();
    assert_eq!(
        request_line(&seen[0]),
        format!("GET /v1/tasks?after={after}&limit=5 HTTP/1.1")
    );
    assert_eq!(request_line(&seen[1]), "GET /v1/tasks HTTP/1.1");
}

#[tokio::test]
async fn api_errors_map_to_their_codes_and_a_404_is_absent() {
    let (url, _) = serve(vec![
        (
            "404 Not Found",
            "",
            r#"{"error":{"code":"not_found","message":"no task"}}"#,
        ),
        (
            "400 Bad Request",
            "",
            r#"{"error":{"code":"bad_request","message":"limit must be 1 to 1000, got 0"}}"#,
        ),
        ("500 Internal Server Error", "", "<html>oops</html>"),
    ])
    .await;
    let client = Client::new(&url);
    assert!(client.task(&Hash([1; 32])).await.unwrap().is_none());
    match client
        .tasks(&PageRequest {
            after: None,
            limit: Some(0),
        })
        .await
    {
        Err(ClientError::Api {
            status: 400,
            code: ErrorCode::BadRequest,
            message,
        }) => {
            assert!(message.contains("limit"), "{message}")
        }
        other => panic!("expected a bad_request error, got {other:?}"),
    }
    match client.tasks(&PageRequest::default()).await {
        Err(ClientError::Decode(why)) => assert!(why.contains("HTTP 500"), "{why}"),
        other => panic!("a body that is no API error must be a decode error, got {other:?}"),
    }
}

#[tokio::test]
async fn a_short_retry_after_is_waited_out_and_a_long_one_returned_at_once() {
    let (url, seen) = serve(vec![
        ("429 Too Many Requests", "retry-after: 1\r\n", OVERLOADED),
        ("429 Too Many Requests", "retry-after: 1\r\n", OVERLOADED),
        ("200 OK", "", EMPTY_PAGE),
        ("429 Too Many Requests", "retry-after: 60\r\n", OVERLOADED),
    ])
    .await;
    let client = Client::new(&url);
    let started = Instant::now();
    client.tasks(&PageRequest::default()).await.unwrap();
    assert!(
        started.elapsed() >= Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(seen.lock().unwrap().len(), 3, "two sheds, then the answer");
    let started = Instant::now();
    match client.tasks(&PageRequest::default()).await {
        Err(e) => assert_eq!(e.code(), Some(ErrorCode::Overloaded), "{e}"),
        Ok(_) => panic!("a long Retry-After is the caller's to handle"),
    }
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(seen.lock().unwrap().len(), 4);
}

#[tokio::test]
async fn a_node_that_is_not_there_is_unreachable() {
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let client = Client::new(&format!("127.0.0.1:{port}"));
    match client.status().await {
        Err(ClientError::Unreachable { url, .. }) => assert!(url.ends_with(&port.to_string())),
        other => panic!("expected unreachable, got {other:?}"),
    }
}

/// `GET /v1/status` of a node on `chain_id` at `height`, as a scripted body.
fn status_body(chain_id: &str, height: u64) -> &'static str {
    let status = StatusView {
        chain_id: chain_id.into(),
        node: "scripted".into(),
        height,
        finalized_height: height,
        state_root: Hash([0; 32]),
        mempool: 0,
        validators: Vec::new(),
        peers: Vec::new(),
        fees: FeeSchedule {
            fee_per_weight: 1,
            min_fee: 1,
        },
        max_block_weight: 1_000_000,
        halted: false,
        equivocations: 0,
        refused_proposals: 0,
    };
    Box::leak(serde_json::to_string(&status).unwrap().into_boxed_str())
}

#[tokio::test]
async fn an_upload_is_signed_by_its_account_for_the_nodes_chain_height_and_content() {
    let bytes = b"an input file".to_vec();
    let stored = StoredBlob {
        cid: "bafkreiscripted".into(),
        ipfs_cid: String::new(),
        hash: sha256(&bytes),
        size: bytes.len() as u64,
    };
    let stored: &'static str = Box::leak(serde_json::to_string(&stored).unwrap().into_boxed_str());
    let (url, seen) = serve(vec![
        ("200 OK", "", status_body("chain-a", 41)),
        ("201 Created", "", stored),
    ])
    .await;
    let key = AccountKey::generate();
    let blob = Client::new(&url)
        .put_blob(bytes.clone(), &key)
        .await
        .unwrap();
    assert_eq!(blob.hash, sha256(&bytes));

    let seen = seen.lock().unwrap().clone();
    assert_eq!(request_line(&seen[0]), "GET /v1/status HTTP/1.1");
    assert_eq!(request_line(&seen[1]), "PUT /v1/blobs HTTP/1.1");
    let sent = header(&seen[1], UPLOAD_HEADER).expect("the upload carries its signature");
    let auth = UploadAuth::parse(sent).unwrap();
    // What the node checks: the signer's account, for its chain, over these bytes, at the
    // height it reported.
    assert_eq!(auth.signer("chain-a").unwrap(), key.address());
    assert_eq!(auth.content, sha256(&bytes));
    assert_eq!(auth.height, 41);
    assert_eq!(
        header(&seen[1], "content-length"),
        Some(bytes.len().to_string().as_str()),
        "the node charges quota by the declared length"
    );
    // The same signature read for another chain names another account.
    assert_ne!(auth.signer("chain-b").ok(), Some(key.address()));
}
