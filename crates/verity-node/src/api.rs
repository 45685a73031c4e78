//! The HTTP API under `/v1` (DESIGN §7): JSON in and out, `{ "error": { "code", "message" } }`
//! with a 4xx status for bad input, server-sent events for finalized blocks, Prometheus metrics.

use std::convert::Infallible;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use axum::{
    extract::{Path, State},
    http::StatusCode,
    response::{
        sse::{Event, KeepAlive, Sse},
        IntoResponse, Response,
    },
    routing::{get, post, put},
    Json, Router,
};
use bytes::Bytes;
use futures::{Stream, StreamExt};
use serde::{Deserialize, Serialize};
use serde_json::json;
use verity_types::{Address, Hash};

use crate::app::NodeState;

/// A validator as the status endpoint lists it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ValidatorInfo {
    pub public_key: String,
    pub p2p: String,
    pub api: String,
}

/// Everything the handlers read.
#[derive(Clone)]
pub struct ApiState {
    pub node: Arc<NodeState>,
    /// Task inputs, outputs and model files, by CID.
    pub blobs: verity_data::BlobStore,
    pub validators: Arc<Vec<ValidatorInfo>>,
    /// Renders the runtime's Prometheus registry.
    pub metrics: Arc<dyn Fn() -> String + Send + Sync>,
    /// This validator's position in the committee, which labels its metrics.
    pub index: usize,
}

pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl ApiError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
        }
    }

    fn internal(e: impl std::fmt::Display) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (
            self.status,
            Json(json!({ "error": { "code": self.code, "message": self.message } })),
        )
            .into_response()
    }
}

type ApiResult<T> = Result<Json<T>, ApiError>;

pub fn router(state: ApiState) -> Router {
    Router::new()
        .route("/v1/txs", post(submit_tx))
        .route("/v1/txs/{hash}", get(get_tx))
        .route("/v1/accounts/{address}", get(get_account))
        .route("/v1/blocks/{height}", get(get_block))
        .route("/v1/status", get(status))
        .route("/v1/blobs", put(put_blob).post(put_blob))
        .route("/v1/blobs/{cid}", get(get_blob))
        .route("/v1/models", get(list_models))
        .route("/v1/models/{id}", get(get_model))
        .route("/v1/tasks", get(list_tasks))
        .route("/v1/tasks/{id}", get(get_task))
        .route("/v1/workers", get(list_workers))
        .route("/v1/workers/{address}", get(get_worker))
        .route("/v1/workers/{address}/assignments", get(get_assignments))
        .route("/v1/attestation-policy", get(get_policy))
        .route("/v1/attestation-nonce", get(get_nonce))
        .route("/v1/events", get(events))
        .route("/v1/openapi.json", get(openapi))
        .route("/metrics", get(metrics))
        .fallback(|| async {
            ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such endpoint")
        })
        .with_state(state)
}

#[derive(Deserialize)]
struct SubmitTx {
    /// The encoded signed transaction, hex with or without 0x.
    tx: String,
}

async fn submit_tx(
    State(state): State<ApiState>,
    body: Result<Json<SubmitTx>, axum::extract::rejection::JsonRejection>,
) -> Result<(StatusCode, Json<serde_json::Value>), ApiError> {
    let Json(body) =
        body.map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "bad_request", e.body_text()))?;
    let raw = hex::decode(body.tx.trim().trim_start_matches("0x")).map_err(|_| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "malformed_transaction",
            "tx must be hex-encoded transaction bytes",
        )
    })?;
    let hash = state.node.submit(Bytes::from(raw)).map_err(|e| {
        let status = match e {
            crate::mempool::AdmitError::Full(_) => StatusCode::SERVICE_UNAVAILABLE,
            crate::mempool::AdmitError::Duplicate => StatusCode::CONFLICT,
            _ => StatusCode::BAD_REQUEST,
        };
        ApiError::new(status, e.code(), e.to_string())
    })?;
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({ "hash": hash, "status": "pending" })),
    ))
}

fn parse<T: std::str::FromStr>(raw: &str, what: &str) -> Result<T, ApiError>
where
    T::Err: std::fmt::Display,
{
    raw.parse().map_err(|e: T::Err| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad_request",
            format!("invalid {what}: {e}"),
        )
    })
}

async fn get_tx(
    State(state): State<ApiState>,
    Path(hash): Path<String>,
) -> ApiResult<serde_json::Value> {
    let hash: Hash = parse(&hash, "transaction hash")?;
    if let Some(receipt) = state
        .node
        .chain
        .receipt(&hash)
        .map_err(ApiError::internal)?
    {
        return Ok(Json(
            json!({ "hash": hash, "status": "finalized", "receipt": receipt }),
        ));
    }
    if state
        .node
        .mempool
        .lock()
        .expect("mempool lock")
        .contains(&hash)
    {
        return Ok(Json(json!({ "hash": hash, "status": "pending" })));
    }
    Err(ApiError::new(
        StatusCode::NOT_FOUND,
        "not_found",
        format!("no transaction {hash} is pending or finalized here"),
    ))
}

async fn get_account(
    State(state): State<ApiState>,
    Path(address): Path<String>,
) -> ApiResult<serde_json::Value> {
    let address: Address = parse(&address, "address")?;
    let account = state
        .node
        .chain
        .account(&address)
        .map_err(ApiError::internal)?;
    let pending_nonce = state
        .node
        .mempool
        .lock()
        .expect("mempool lock")
        .pending_nonce(&address, account.nonce);
    Ok(Json(json!({
        "address": address,
        "balance": account.balance.to_string(),
        "nonce": account.nonce,
        "pending_nonce": pending_nonce,
    })))
}

async fn get_block(
    State(state): State<ApiState>,
    Path(height): Path<String>,
) -> ApiResult<verity_state::BlockRecord> {
    let height: u64 = parse(&height, "height")?;
    state
        .node
        .chain
        .block(height)
        .map_err(ApiError::internal)?
        .map(Json)
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::NOT_FOUND,
                "not_found",
                format!("block {height} is not finalized yet"),
            )
        })
}

async fn status(State(state): State<ApiState>) -> ApiResult<serde_json::Value> {
    let chain = &state.node.chain;
    Ok(Json(json!({
        "chain_id": chain.genesis().chain_id,
        "node": state.node.label,
        "height": chain.height().map_err(ApiError::internal)?,
        "finalized_height": state.node.finalized_tip.load(Ordering::Relaxed),
        "state_root": chain.state_root().map_err(ApiError::internal)?,
        "mempool": state.node.mempool.lock().expect("mempool lock").len(),
        "validators": *state.validators,
        "peers": connected_peers(&(state.metrics)(), state.index),
        "fees": verity_types::FeeSchedule {
            fee_per_weight: chain.genesis().params.fee_per_weight,
            min_fee: chain.genesis().params.min_fee,
        },
        "max_block_weight": chain.genesis().params.max_block_weight,
        "halted": state.node.halted.load(Ordering::Relaxed),
        "equivocations": state.node.evidence.lock().expect("evidence lock").len(),
        "refused_proposals": state.node.refused_proposals.load(Ordering::Relaxed),
    })))
}

/// Peers the p2p layer reports connected to validator `index`. The tracker publishes them only
/// as a gauge (one series per connected peer, removed on disconnect), so read them from there.
fn connected_peers(metrics: &str, index: usize) -> Vec<String> {
    let index_label = format!("index=\"{index}\"");
    metrics
        .lines()
        .filter_map(|line| line.strip_prefix("validator_p2p_tracker_directory_connected{"))
        .filter_map(|line| line.split_once('}').map(|(labels, _)| labels))
        .filter(|labels| labels.split(',').any(|l| l == index_label))
        .filter_map(|labels| {
            labels
                .split(',')
                .find_map(|l| l.strip_prefix("peer=\""))
                .map(|peer| peer.trim_end_matches('"').to_string())
        })
        .collect()
}

async fn events(
    State(state): State<ApiState>,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let blocks = state.node.finalized_blocks().map(|record| {
        Ok(Event::default()
            .event("block")
            .json_data(&*record)
            .unwrap_or_else(|_| Event::default().event("block")))
    });
    let tasks = state.node.task_updates().map(|task| {
        Ok(Event::default()
            .event("task")
            .json_data(&*task)
            .unwrap_or_else(|_| Event::default().event("task")))
    });
    Sse::new(futures::stream::select(blocks, tasks)).keep_alive(KeepAlive::default())
}

fn not_found(what: String) -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "not_found", what)
}

async fn put_blob(
    State(state): State<ApiState>,
    body: axum::body::Body,
) -> Result<(StatusCode, Json<serde_json::Value>), ApiError> {
    use verity_data::BlobError;
    let blob = state
        .blobs
        .put_stream(body.into_data_stream(), None)
        .await
        .map_err(|e| match e {
            BlobError::TooLarge { .. } => ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "blob_too_large",
                e.to_string(),
            ),
            BlobError::Upload(_) => {
                ApiError::new(StatusCode::BAD_REQUEST, "bad_upload", e.to_string())
            }
            other => ApiError::internal(other),
        })?;
    Ok((
        StatusCode::CREATED,
        Json(json!({ "cid": blob.cid, "hash": blob.hash, "size": blob.size })),
    ))
}

async fn get_blob(
    State(state): State<ApiState>,
    Path(cid): Path<String>,
) -> Result<Response, ApiError> {
    let hash = verity_data::parse_cid(&cid)
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "bad_cid", e.to_string()))?;
    let path = state
        .blobs
        .locate(&hash)
        .ok_or_else(|| not_found(format!("no blob {cid} here")))?;
    let file = tokio::fs::File::open(&path)
        .await
        .map_err(ApiError::internal)?;
    let len = file.metadata().await.map_err(ApiError::internal)?.len();
    let body = axum::body::Body::from_stream(tokio_util::io::ReaderStream::new(file));
    Ok((
        [
            ("content-type", "application/octet-stream".to_string()),
            ("content-length", len.to_string()),
        ],
        body,
    )
        .into_response())
}

#[derive(Deserialize)]
struct Page {
    limit: Option<usize>,
    after: Option<String>,
}

const MAX_PAGE: usize = 1_000;

async fn list_models(
    State(state): State<ApiState>,
    axum::extract::Query(page): axum::extract::Query<Page>,
) -> ApiResult<serde_json::Value> {
    let after: Option<Hash> = page
        .after
        .as_deref()
        .map(|a| parse(a, "model id"))
        .transpose()?;
    let limit = page.limit.unwrap_or(100).min(MAX_PAGE);
    let models = state
        .node
        .chain
        .models(after.as_ref(), limit)
        .map_err(ApiError::internal)?;
    Ok(Json(json!({ "models": models })))
}

async fn get_model(
    State(state): State<ApiState>,
    Path(id): Path<String>,
) -> ApiResult<verity_state::Model> {
    let id: Hash = parse(&id, "model id")?;
    state
        .node
        .chain
        .model(&id)
        .map_err(ApiError::internal)?
        .map(Json)
        .ok_or_else(|| not_found(format!("no model {id}")))
}

/// A task as the API shows it: its state, its verified record once there is one, and the
/// output's CID.
fn task_view(
    task: &verity_state::Task,
    record: Option<verity_state::ExecutionRecord>,
) -> serde_json::Value {
    let mut view = json!({ "task": task, "input_cid": verity_data::cid_of(&task.input.hash) });
    if let Some(record) = record {
        view["output_cid"] = json!(verity_data::cid_of(&record.output_hash));
        if record.dev_tee {
            view["attestation"] = json!("dev TEE, not hardware-backed");
        } else {
            view["attestation"] = json!(record.tee_kind);
        }
        view["record"] = json!(record);
    }
    view
}

async fn get_task(
    State(state): State<ApiState>,
    Path(id): Path<String>,
) -> ApiResult<serde_json::Value> {
    let id: Hash = parse(&id, "task id")?;
    let chain = &state.node.chain;
    let task = chain
        .task(&id)
        .map_err(ApiError::internal)?
        .ok_or_else(|| not_found(format!("no task {id}")))?;
    let record = chain.record(&id).map_err(ApiError::internal)?;
    Ok(Json(task_view(&task, record)))
}

async fn list_tasks(
    State(state): State<ApiState>,
    axum::extract::Query(page): axum::extract::Query<Page>,
) -> ApiResult<serde_json::Value> {
    let limit = page.limit.unwrap_or(50).min(MAX_PAGE);
    let tasks = state
        .node
        .chain
        .recent_tasks(limit)
        .map_err(ApiError::internal)?;
    Ok(Json(json!({ "tasks": tasks })))
}

fn worker_view(state: &ApiState, address: &Address) -> Result<serde_json::Value, ApiError> {
    let chain = &state.node.chain;
    let stake = chain.worker(address).map_err(ApiError::internal)?;
    let reputation = chain.reputation(address).map_err(ApiError::internal)?;
    let enclave = chain.enclave(address).map_err(ApiError::internal)?;
    let attestation = enclave.as_ref().map(|e| {
        if e.is_dev() {
            "dev TEE, not hardware-backed".to_string()
        } else {
            e.kind.to_string()
        }
    });
    Ok(json!({
        "address": address,
        "stake": stake,
        "reputation": reputation,
        "enclave": enclave,
        "attestation": attestation,
    }))
}

async fn list_workers(
    State(state): State<ApiState>,
    axum::extract::Query(page): axum::extract::Query<Page>,
) -> ApiResult<serde_json::Value> {
    let after: Option<Address> = page
        .after
        .as_deref()
        .map(|a| parse(a, "address"))
        .transpose()?;
    let limit = page.limit.unwrap_or(100).min(MAX_PAGE);
    let workers = state
        .node
        .chain
        .workers(after.as_ref(), limit)
        .map_err(ApiError::internal)?;
    let views = workers
        .iter()
        .map(|w| worker_view(&state, w))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Json(json!({ "workers": views })))
}

async fn get_worker(
    State(state): State<ApiState>,
    Path(address): Path<String>,
) -> ApiResult<serde_json::Value> {
    let address: Address = parse(&address, "address")?;
    Ok(Json(worker_view(&state, &address)?))
}

async fn get_assignments(
    State(state): State<ApiState>,
    Path(address): Path<String>,
    axum::extract::Query(page): axum::extract::Query<Page>,
) -> ApiResult<serde_json::Value> {
    let address: Address = parse(&address, "address")?;
    let limit = page.limit.unwrap_or(MAX_PAGE).min(MAX_PAGE);
    let tasks = state
        .node
        .chain
        .assignments(&address, limit)
        .map_err(ApiError::internal)?;
    Ok(Json(json!({
        "height": state.node.chain.height().map_err(ApiError::internal)?,
        "tasks": tasks,
    })))
}

async fn get_policy(State(state): State<ApiState>) -> ApiResult<serde_json::Value> {
    let policy = state
        .node
        .chain
        .attestation_policy()
        .map_err(ApiError::internal)?;
    Ok(Json(json!({ "policy": policy })))
}

async fn get_nonce(State(state): State<ApiState>) -> ApiResult<serde_json::Value> {
    let nonce = state
        .node
        .chain
        .attestation_nonce()
        .map_err(ApiError::internal)?
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "no_blocks_yet",
                "no block has been finalized yet; the first nonce comes with block 1",
            )
        })?;
    Ok(Json(
        serde_json::to_value(nonce).map_err(ApiError::internal)?,
    ))
}

async fn metrics(State(state): State<ApiState>) -> impl IntoResponse {
    let mut body = (state.metrics)();
    let node = &state.node;
    body.push_str(&format!(
        "# TYPE verity_height gauge\nverity_height {}\n# TYPE verity_finalized_height gauge\nverity_finalized_height {}\n# TYPE verity_mempool_size gauge\nverity_mempool_size {}\n# TYPE verity_halted gauge\nverity_halted {}\n# TYPE verity_refused_proposals counter\nverity_refused_proposals {}\n# TYPE verity_equivocation_evidence gauge\nverity_equivocation_evidence {}\n",
        node.chain.height().unwrap_or(0),
        node.finalized_tip.load(Ordering::Relaxed),
        node.mempool.lock().expect("mempool lock").len(),
        u8::from(node.halted.load(Ordering::Relaxed)),
        node.refused_proposals.load(Ordering::Relaxed),
        node.evidence.lock().expect("evidence lock").len(),
    ));
    ([("content-type", "text/plain; version=0.0.4")], body)
}

async fn openapi() -> Json<serde_json::Value> {
    Json(openapi_document())
}

/// The OpenAPI 3.1 description of this API.
pub fn openapi_document() -> serde_json::Value {
    let error = json!({ "$ref": "#/components/schemas/Error" });
    let errors = json!({
        "400": { "description": "bad input", "content": { "application/json": { "schema": error } } },
        "404": { "description": "not found", "content": { "application/json": { "schema": error } } }
    });
    let path_param = |name: &str, kind: &str| json!([ { "name": name, "in": "path", "required": true, "schema": { "type": kind } } ]);
    json!({
        "openapi": "3.1.0",
        "info": { "title": "Verity node API", "version": "1" },
        "paths": {
            "/v1/txs": { "post": {
                "summary": "Submit a signed transaction",
                "requestBody": { "required": true, "content": { "application/json": { "schema": {
                    "type": "object", "required": ["tx"],
                    "properties": { "tx": { "type": "string", "description": "hex of the encoded signed transaction" } } } } } },
                "responses": { "202": { "description": "admitted to the mempool" },
                    "400": errors["400"], "409": { "description": "already pending" } } } },
            "/v1/txs/{hash}": { "get": {
                "summary": "A transaction's status and receipt",
                "parameters": path_param("hash", "string"),
                "responses": { "200": { "description": "pending or finalized with its receipt" },
                    "400": errors["400"], "404": errors["404"] } } },
            "/v1/accounts/{address}": { "get": {
                "summary": "Balance and nonce of an account",
                "parameters": path_param("address", "string"),
                "responses": { "200": { "description": "the account" }, "400": errors["400"] } } },
            "/v1/blocks/{height}": { "get": {
                "summary": "A finalized block",
                "parameters": path_param("height", "integer"),
                "responses": { "200": { "description": "the block record" }, "400": errors["400"], "404": errors["404"] } } },
            "/v1/status": { "get": { "summary": "Chain status", "responses": { "200": { "description": "height, finalized height, state root, validators, connected peers, fees (fee_per_weight, min_fee), max_block_weight, halted, equivocations, refused_proposals" } } } },
            "/v1/blobs": { "put": {
                "summary": "Store a blob (request body: the raw bytes); answers its CIDv1",
                "responses": { "201": { "description": "the blob's CID and size" }, "400": errors["400"], "413": { "description": "larger than the node accepts" } } } },
            "/v1/blobs/{cid}": { "get": {
                "summary": "A stored blob's bytes",
                "parameters": path_param("cid", "string"),
                "responses": { "200": { "description": "application/octet-stream" }, "400": errors["400"], "404": errors["404"] } } },
            "/v1/models": { "get": { "summary": "Registered models, in id order", "responses": { "200": { "description": "the models" } } } },
            "/v1/models/{id}": { "get": {
                "summary": "One registered model",
                "parameters": path_param("id", "string"),
                "responses": { "200": { "description": "the model" }, "400": errors["400"], "404": errors["404"] } } },
            "/v1/tasks": { "get": { "summary": "The most recent tasks", "responses": { "200": { "description": "the tasks" } } } },
            "/v1/tasks/{id}": { "get": {
                "summary": "A task, its execution record and output CID; dev-TEE results are labelled",
                "parameters": path_param("id", "string"),
                "responses": { "200": { "description": "the task" }, "400": errors["400"], "404": errors["404"] } } },
            "/v1/workers": { "get": { "summary": "Staked workers", "responses": { "200": { "description": "the workers" } } } },
            "/v1/workers/{address}": { "get": {
                "summary": "A worker's stake, reputation and enclave",
                "parameters": path_param("address", "string"),
                "responses": { "200": { "description": "the worker" }, "400": errors["400"] } } },
            "/v1/workers/{address}/assignments": { "get": {
                "summary": "Tasks assigned to a worker and not yet answered",
                "parameters": path_param("address", "string"),
                "responses": { "200": { "description": "the assignments" }, "400": errors["400"] } } },
            "/v1/attestation-policy": { "get": { "summary": "The chain's attestation policy", "responses": { "200": { "description": "the policy, or null" } } } },
            "/v1/attestation-nonce": { "get": {
                "summary": "The newest block's attestation nonce, which RegisterEnclave evidence binds",
                "responses": { "200": { "description": "height, nonce, block time and the last height it is usable at" },
                    "503": { "description": "no block finalized yet", "content": { "application/json": { "schema": error } } } } } },
            "/v1/events": { "get": { "summary": "Server-sent events: `block` per finalized block, `task` per task change", "responses": { "200": { "description": "text/event-stream" } } } },
            "/v1/openapi.json": { "get": { "summary": "This document", "responses": { "200": { "description": "OpenAPI 3.1" } } } },
            "/metrics": { "get": { "summary": "Prometheus metrics", "responses": { "200": { "description": "text exposition format" } } } }
        },
        "components": { "schemas": { "Error": {
            "type": "object", "required": ["error"],
            "properties": { "error": { "type": "object", "required": ["code", "message"],
                "properties": { "code": { "type": "string" }, "message": { "type": "string" } } } } } } }
    })
}

#[cfg(test)]
mod tests {
    use super::connected_peers;

    #[test]
    fn connected_peers_are_read_for_one_validator() {
        let metrics = "\
# TYPE validator_p2p_tracker_directory_connected gauge
validator_p2p_tracker_directory_connected{index=\"0\",peer=\"aa\"} 1795463160654
validator_p2p_tracker_directory_connected{index=\"1\",peer=\"bb\"} 1795463161155
validator_p2p_tracker_directory_connected{index=\"0\",peer=\"cc\"} 1795463162165
validator_p2p_tracker_directory_reserved{index=\"0\"} 2
";
        assert_eq!(connected_peers(metrics, 0), ["aa", "cc"]);
        assert_eq!(connected_peers(metrics, 1), ["bb"]);
        assert!(connected_peers(metrics, 2).is_empty());
    }
}
