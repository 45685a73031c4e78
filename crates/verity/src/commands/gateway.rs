//! `verity gateway`: the user's side of the OpenAI API. It holds the user's key, turns each
//! request into a generation task, checks the answer itself (receipt signature, registered
//! enclave, attestation policy, finality, output hash, trace root) and only then answers, with
//! OpenAI's fields plus a `verity` object saying what was verified. No node is trusted.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context as _, Result};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use clap::Args;
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::sync::Mutex;
use tracing::{info, warn};
use verity_client::Client;
use verity_types::{AccountKey, GenerationFinish, Mode, PromptDocument, PromptMessage};

use super::language::{
    language_models, GenerationError, LanguageModelClient, Prepared, VerifiedAnswer,
};
use crate::chain_cmd::init_logs;
use crate::shared::{keys_dir, load_key, runtime, DEFAULT_NODE};

#[derive(Args)]
pub struct GatewayArgs {
    /// The key that signs and pays for every request's task (name or key file path).
    #[arg(long)]
    key: String,
    #[arg(long, env = "VERITY_NODE", default_value = DEFAULT_NODE)]
    node: String,
    #[arg(long, env = "VERITY_GATEWAY_LISTEN", default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// Require `Authorization: Bearer KEY` on every request.
    #[arg(long, env = "VERITY_GATEWAY_API_KEY")]
    api_key: Option<String>,
    /// Verification mode of the tasks: tee, or op (an answer stands once its challenge window
    /// has closed undisputed). A request's `verity_mode` field overrides it.
    #[arg(long, default_value = "tee")]
    mode: Mode,
    /// Longest wait for a verified answer.
    #[arg(long, default_value_t = 300)]
    timeout_secs: u64,
    #[arg(long, env = "VERITY_KEYS")]
    keys_dir: Option<PathBuf>,
}

struct Gateway {
    client: Client,
    key: AccountKey,
    api_key: Option<String>,
    mode: Mode,
    timeout: Duration,
    /// Opened models by the name or id requests use.
    models: Mutex<HashMap<String, Arc<LanguageModelClient>>>,
    /// One submission at a time: the key's nonces are counted in order.
    submitting: Mutex<()>,
}

pub fn run(args: GatewayArgs) -> Result<()> {
    init_logs("info");
    runtime()?.block_on(serve(args))
}

async fn serve(args: GatewayArgs) -> Result<()> {
    let key = load_key(&args.key, &keys_dir(args.keys_dir))?;
    let client = Client::new(&args.node);
    let status = client
        .status()
        .await
        .with_context(|| format!("reaching the node at {}", args.node))?;
    let gateway = Arc::new(Gateway {
        client,
        key,
        api_key: args.api_key,
        mode: args.mode,
        timeout: Duration::from_secs(args.timeout_secs),
        models: Mutex::new(HashMap::new()),
        submitting: Mutex::new(()),
    });
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("listening on {}", args.listen))?;
    let address = listener.local_addr()?;
    info!(chain = %status.chain_id, node = %args.node, account = %gateway.key.address(), "OpenAI-compatible gateway on http://{address}/v1");
    eprintln!(
        "gateway listening on http://{address}/v1 (chain {}, paying from {})",
        status.chain_id,
        gateway.key.address()
    );
    let mut signals = crate::shutdown::Listener::install()?;
    axum::serve(listener, router(gateway))
        .with_graceful_shutdown(async move {
            let name = signals.wait().await;
            info!(signal = name, "gateway stopping");
        })
        .await?;
    Ok(())
}

fn router(gateway: Arc<Gateway>) -> Router {
    Router::new()
        .route("/v1/models", get(list_models))
        .route("/v1/chat/completions", post(chat_completions))
        .route("/v1/completions", post(completions))
        .fallback(|| async {
            ApiError::new(
                StatusCode::NOT_FOUND,
                "invalid_request_error",
                "unknown path: the gateway serves /v1/models, /v1/chat/completions and /v1/completions",
            )
        })
        .with_state(gateway)
}

/// OpenAI's error shape: `{"error": {"message", "type", "param", "code"}}`.
struct ApiError {
    status: StatusCode,
    kind: &'static str,
    code: Option<&'static str>,
    message: String,
}

impl ApiError {
    fn new(status: StatusCode, kind: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            kind,
            code: None,
            message: message.into(),
        }
    }

    fn invalid(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_request_error", message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = json!({"error": {
            "message": self.message,
            "type": self.kind,
            "param": null,
            "code": self.code,
        }});
        (self.status, Json(body)).into_response()
    }
}

impl From<GenerationError> for ApiError {
    fn from(e: GenerationError) -> Self {
        let message = e.to_string();
        let (status, kind, code) = match e {
            GenerationError::Invalid(_) => (StatusCode::BAD_REQUEST, "invalid_request_error", None),
            GenerationError::NotFound(_) => (
                StatusCode::NOT_FOUND,
                "invalid_request_error",
                Some("model_not_found"),
            ),
            GenerationError::InsufficientFunds(_) => (
                StatusCode::PAYMENT_REQUIRED,
                "insufficient_quota",
                Some("insufficient_quota"),
            ),
            GenerationError::NoAnswer(_) => (StatusCode::GATEWAY_TIMEOUT, "server_error", None),
            GenerationError::Unverified(_) => (
                StatusCode::BAD_GATEWAY,
                "verification_error",
                Some("unverified_answer"),
            ),
            GenerationError::Node(_) | GenerationError::Other(_) => {
                (StatusCode::BAD_GATEWAY, "server_error", None)
            }
        };
        if status.is_server_error() {
            warn!(error = %message, "request failed");
        }
        Self {
            status,
            kind,
            code,
            message,
        }
    }
}

impl Gateway {
    fn authorize(&self, headers: &HeaderMap) -> Result<(), ApiError> {
        let Some(expected) = &self.api_key else {
            return Ok(());
        };
        let given = headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        match given {
            Some(key) if key == expected => Ok(()),
            _ => Err(ApiError {
                status: StatusCode::UNAUTHORIZED,
                kind: "invalid_request_error",
                code: Some("invalid_api_key"),
                message: "missing or wrong API key (Authorization: Bearer KEY)".into(),
            }),
        }
    }

    async fn model(&self, name: &str) -> Result<Arc<LanguageModelClient>, ApiError> {
        if let Some(model) = self.models.lock().await.get(name) {
            return Ok(model.clone());
        }
        let model = Arc::new(LanguageModelClient::open(self.client.clone(), name).await?);
        self.models
            .lock()
            .await
            .insert(name.to_string(), model.clone());
        Ok(model)
    }

    /// Submits the request's task and waits for its verified answer.
    async fn generate(
        &self,
        model: &LanguageModelClient,
        document: PromptDocument,
        mode: Mode,
    ) -> Result<(Prepared, VerifiedAnswer), ApiError> {
        let prepared = model.prepare(document, mode)?;
        let task_id = {
            let _turn = self.submitting.lock().await;
            model.submit(&self.key, &prepared, mode, 600).await?
        };
        info!(task = %task_id, model = model.name(), prompt_tokens = prepared.limits.prompt_tokens, max_tokens = prepared.limits.max_tokens, "task submitted");
        let answer = model
            .wait(&task_id, &prepared, self.timeout, |_| {})
            .await?;
        info!(task = %task_id, tokens = answer.output.tokens.len(), worker = %answer.record.worker, "answer verified");
        Ok((prepared, answer))
    }
}

/// The request fields both endpoints share; unknown fields are ignored, as OpenAI's clients
/// send many.
#[derive(Deserialize)]
struct Sampling {
    model: String,
    #[serde(default)]
    max_tokens: Option<u32>,
    #[serde(default)]
    max_completion_tokens: Option<u32>,
    #[serde(default)]
    temperature: Option<f64>,
    #[serde(default)]
    top_p: Option<f64>,
    /// Not OpenAI's, but common in compatible servers.
    #[serde(default)]
    top_k: Option<u32>,
    #[serde(default)]
    seed: Option<u64>,
    #[serde(default)]
    stop: Option<Stop>,
    #[serde(default)]
    stream: bool,
    #[serde(default)]
    n: Option<u32>,
    /// Verity's own: the verification mode of this request's task.
    #[serde(default)]
    verity_mode: Option<Mode>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Stop {
    One(String),
    Many(Vec<String>),
}

#[derive(Deserialize)]
struct ChatRequest {
    messages: Vec<ChatMessage>,
    #[serde(flatten)]
    sampling: Sampling,
}

#[derive(Deserialize)]
struct ChatMessage {
    role: String,
    content: MessageContent,
}

/// A message's content: a string, or OpenAI's list of parts of which text parts are read.
#[derive(Deserialize)]
#[serde(untagged)]
enum MessageContent {
    Text(String),
    Parts(Vec<ContentPart>),
}

#[derive(Deserialize)]
struct ContentPart {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    text: Option<String>,
}

#[derive(Deserialize)]
struct CompletionRequest {
    prompt: String,
    #[serde(flatten)]
    sampling: Sampling,
}

/// Parses a JSON body into `T`, answering OpenAI's error shape rather than axum's text.
fn parse<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|e| ApiError::invalid(format!("the request body: {e}")))
}

fn created() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// The prompt document of a request: its messages or prompt, its sampling, and max tokens —
/// the request's, or as many as fit the context up to 128.
fn document(
    model: &LanguageModelClient,
    messages: Option<Vec<PromptMessage>>,
    prompt: Option<String>,
    sampling: &Sampling,
) -> Result<PromptDocument, ApiError> {
    if sampling.n.is_some_and(|n| n != 1) {
        return Err(ApiError::invalid(
            "n must be 1: each choice is its own verified task",
        ));
    }
    let stop = match &sampling.stop {
        None => Vec::new(),
        Some(Stop::One(s)) => vec![s.clone()],
        Some(Stop::Many(list)) => list.clone(),
    };
    let mut doc = PromptDocument {
        messages,
        prompt,
        max_tokens: 1,
        temperature: sampling.temperature.unwrap_or(0.0),
        top_k: sampling.top_k,
        top_p: sampling.top_p,
        seed: sampling.seed,
        stop,
    };
    doc.max_tokens = match sampling.max_completion_tokens.or(sampling.max_tokens) {
        Some(n) => n,
        None => {
            let used = model
                .renderer()
                .prompt_ids(&doc)
                .map_err(|e| ApiError::invalid(e.to_string()))?
                .len();
            (model.language.context as usize)
                .saturating_sub(used)
                .clamp(1, 128) as u32
        }
    };
    Ok(doc)
}

fn finish_reason(finish: GenerationFinish) -> &'static str {
    match finish {
        GenerationFinish::Stop => "stop",
        GenerationFinish::Length => "length",
    }
}

/// What the gateway checked, for the `verity` object of every answer.
fn verity_object(model: &LanguageModelClient, answer: &VerifiedAnswer) -> Value {
    let record = &answer.record;
    json!({
        "task_id": answer.task_id,
        "model_id": model.id(),
        "mode": record.mode,
        "worker": record.worker,
        "enclave": hex::encode(record.enclave_key),
        "attestation": answer.attestation,
        "record_height": record.finalized_height,
        "verification": "verified",
        "checks": answer.checks,
        "trace_root": record.trace_root,
        "output_hash": record.output_hash,
    })
}

fn usage(prepared: &Prepared, answer: &VerifiedAnswer) -> Value {
    let completion = answer.output.tokens.len() as u32;
    json!({
        "prompt_tokens": prepared.limits.prompt_tokens,
        "completion_tokens": completion,
        "total_tokens": prepared.limits.prompt_tokens + completion,
    })
}

/// The `verity` object rides on a stream's first and last chunks only.
fn keep_verity_at_ends(chunks: &mut [Value]) {
    let last = chunks.len().saturating_sub(1);
    for chunk in chunks.iter_mut().take(last).skip(1) {
        if let Some(fields) = chunk.as_object_mut() {
            fields.remove("verity");
        }
    }
}

/// Server-sent events of `chunks`, then `[DONE]`, as OpenAI streams.
fn stream(chunks: Vec<Value>) -> Response {
    let events = chunks
        .into_iter()
        .map(|chunk| Ok::<_, Infallible>(Event::default().data(chunk.to_string())))
        .chain(std::iter::once(Ok(Event::default().data("[DONE]"))));
    Sse::new(futures::stream::iter(events)).into_response()
}

async fn list_models(
    State(gateway): State<Arc<Gateway>>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    gateway.authorize(&headers)?;
    let models = language_models(&gateway.client)
        .await
        .map_err(ApiError::from)?;
    let data: Vec<Value> = models
        .iter()
        .map(|m| {
            let language = m.spec.language.as_ref();
            json!({
                "id": m.spec.name,
                "object": "model",
                "created": m.registered_height,
                "owned_by": m.owner,
                "verity": {
                    "model_id": m.spec.model_id,
                    "version": m.spec.version,
                    "modes": m.spec.allowed_modes,
                    "context": language.map(|l| l.context),
                    "input_token_price": language.map(|l| l.input_token_price.to_string()),
                    "output_token_price": language.map(|l| l.output_token_price.to_string()),
                },
            })
        })
        .collect();
    Ok(Json(json!({"object": "list", "data": data})))
}

async fn chat_completions(
    State(gateway): State<Arc<Gateway>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    gateway.authorize(&headers)?;
    let request: ChatRequest = parse(&body)?;
    let model = gateway.model(&request.sampling.model).await?;
    let messages = request
        .messages
        .into_iter()
        .map(|m| {
            let content = match m.content {
                MessageContent::Text(text) => text,
                MessageContent::Parts(parts) => {
                    if let Some(part) = parts.iter().find(|p| p.kind != "text") {
                        return Err(ApiError::invalid(format!(
                            "content parts of type {:?} are not supported: only text",
                            part.kind
                        )));
                    }
                    parts.into_iter().filter_map(|p| p.text).collect()
                }
            };
            Ok(PromptMessage {
                role: m.role,
                content,
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let doc = document(&model, Some(messages), None, &request.sampling)?;
    let mode = request.sampling.verity_mode.unwrap_or(gateway.mode);
    let (prepared, answer) = gateway.generate(&model, doc, mode).await?;
    Ok(respond(
        Endpoint::Chat,
        &model,
        &request.sampling,
        &prepared,
        &answer,
    ))
}

async fn completions(
    State(gateway): State<Arc<Gateway>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    gateway.authorize(&headers)?;
    let request: CompletionRequest = parse(&body)?;
    let model = gateway.model(&request.sampling.model).await?;
    let doc = document(&model, None, Some(request.prompt), &request.sampling)?;
    let mode = request.sampling.verity_mode.unwrap_or(gateway.mode);
    let (prepared, answer) = gateway.generate(&model, doc, mode).await?;
    Ok(respond(
        Endpoint::Completion,
        &model,
        &request.sampling,
        &prepared,
        &answer,
    ))
}

/// Which OpenAI route an answer goes back on: they differ only in names and where the text
/// sits.
#[derive(Clone, Copy)]
enum Endpoint {
    Chat,
    Completion,
}

impl Endpoint {
    fn id_prefix(self) -> &'static str {
        match self {
            Endpoint::Chat => "chatcmpl",
            Endpoint::Completion => "cmpl",
        }
    }

    fn object(self, streamed: bool) -> &'static str {
        match (self, streamed) {
            (Endpoint::Chat, false) => "chat.completion",
            (Endpoint::Chat, true) => "chat.completion.chunk",
            (Endpoint::Completion, _) => "text_completion",
        }
    }

    /// A choice holding `text`: the whole answer, or one streamed piece of it.
    fn choice(self, text: &str, streamed: bool, finish: Option<&str>) -> Value {
        match (self, streamed) {
            (Endpoint::Chat, false) => json!({
                "index": 0,
                "message": {"role": "assistant", "content": text},
                "logprobs": null,
                "finish_reason": finish,
            }),
            (Endpoint::Chat, true) => {
                let delta = match finish {
                    Some(_) => json!({}),
                    None => json!({"content": text}),
                };
                json!({"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish})
            }
            (Endpoint::Completion, _) => {
                json!({"index": 0, "text": text, "logprobs": null, "finish_reason": finish})
            }
        }
    }
}

/// A verified answer in `endpoint`'s shape: one body, or (`stream: true`) its pieces as
/// server-sent chunks, the last with the finish reason and the usage.
fn respond(
    endpoint: Endpoint,
    model: &LanguageModelClient,
    sampling: &Sampling,
    prepared: &Prepared,
    answer: &VerifiedAnswer,
) -> Response {
    let id = format!("{}-{}", endpoint.id_prefix(), hex::encode(answer.task_id.0));
    let verity = verity_object(model, answer);
    let finish = finish_reason(answer.output.finish_reason);
    let object = |choice: Value| {
        json!({
            "id": id,
            "object": endpoint.object(sampling.stream),
            "created": created(),
            "model": sampling.model,
            "choices": [choice],
            "verity": verity,
        })
    };
    if !sampling.stream {
        let mut body = object(endpoint.choice(&answer.output.text, false, Some(finish)));
        body["usage"] = usage(prepared, answer);
        return Json(body).into_response();
    }
    let mut chunks = Vec::new();
    if let Endpoint::Chat = endpoint {
        chunks.push(object(json!({
            "index": 0,
            "delta": {"role": "assistant", "content": ""},
            "logprobs": null,
            "finish_reason": null,
        })));
    }
    for piece in model.pieces(answer) {
        chunks.push(object(endpoint.choice(&piece, true, None)));
    }
    let mut last = object(endpoint.choice("", true, Some(finish)));
    last["usage"] = usage(prepared, answer);
    chunks.push(last);
    keep_verity_at_ends(&mut chunks);
    stream(chunks)
}
