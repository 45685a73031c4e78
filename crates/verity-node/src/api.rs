//! The HTTP API under `/v1` (`docs/protocol.md` §11): JSON in and out,
//! `{ "error": { "code", "message" } }` with a 4xx status for bad input, server-sent events for finalized blocks and task changes,
//! Prometheus metrics. Every body is a `verity_api` type, and the OpenAPI document is generated
//! from those types and the handlers' annotations.

use std::convert::Infallible;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::{
    extract::{
        rejection::{JsonRejection, QueryRejection},
        Path, Query, Request, State,
    },
    http::{HeaderMap, StatusCode},
    middleware::Next,
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
use utoipa::{IntoParams, OpenApi};
use verity_api::{
    AccountView, Assignments, ChallengerList, ChallengerView, DatasetList, DisputeList, ErrorBody,
    ErrorCode, ErrorDetail, ModelList, PolicyView, StatusView, StoredBlob, SubmitTx, TaskList,
    TaskView, TxState, TxView, UploadAuth, ValidatorInfo, WorkerList, WorkerView, DEV_TEE_LABEL,
    MAX_PAGE, UPLOAD_HEADER,
};
use verity_api::{Committee, EpochView, ValidatorList, ValidatorStatus, ValidatorView};
use verity_types::{Address, Hash};

use crate::app::NodeState;
use crate::uploads::{Quotas, UploadPolicy};

/// Everything the handlers read.
#[derive(Clone)]
pub struct ApiState {
    pub node: Arc<NodeState>,
    /// Task inputs, outputs and model files, by CID.
    pub blobs: verity_data::BlobStore,
    pub uploads: UploadPolicy,
    pub quotas: Arc<Quotas>,
    pub validators: Arc<Vec<ValidatorInfo>>,
    /// Renders the runtime's Prometheus registry.
    pub metrics: Arc<dyn Fn() -> String + Send + Sync>,
    /// This validator's position in the committee, which labels its metrics.
    pub index: usize,
}

/// Limits on the API's own resources (`[api_limits]` in `node.toml`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ApiLimits {
    /// Longest a request may take to produce its response, uploads included.
    pub request_timeout_secs: u64,
    /// Most open connections; further ones wait in the listen backlog.
    pub max_connections: usize,
    /// Most transaction submissions and blob uploads handled at once; more are answered 429
    /// with Retry-After, so that overload is shed at the door and the routes workers read
    /// (blobs, receipts, assignments) keep their share of the machine.
    pub max_inflight_writes: usize,
}

impl Default for ApiLimits {
    fn default() -> Self {
        Self {
            request_timeout_secs: 60,
            max_connections: 512,
            max_inflight_writes: 64,
        }
    }
}

#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: ErrorCode,
    message: String,
    retry_after: Option<Duration>,
}

impl ApiError {
    fn new(status: StatusCode, code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            retry_after: None,
        }
    }

    /// A 429 for load the node sheds: the client may try again in a second.
    fn overloaded(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            retry_after: Some(SHED_RETRY_AFTER),
            ..Self::new(StatusCode::TOO_MANY_REQUESTS, code, message)
        }
    }

    fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, ErrorCode::BadRequest, message)
    }

    fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, ErrorCode::NotFound, message)
    }

    fn internal(e: impl std::fmt::Display) -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            ErrorCode::Internal,
            e.to_string(),
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = Json(ErrorBody {
            error: ErrorDetail {
                code: self.code,
                message: self.message,
            },
        });
        let mut response = (self.status, body).into_response();
        if let Some(after) = self.retry_after {
            response.headers_mut().insert(
                "retry-after",
                after.as_secs().max(1).to_string().parse().expect("digits"),
            );
        }
        response
    }
}

type ApiResult<T> = Result<Json<T>, ApiError>;

/// What a shed request is told to wait before trying again.
const SHED_RETRY_AFTER: Duration = Duration::from_secs(1);

pub fn router(state: ApiState, limits: &ApiLimits) -> Router {
    let timeout = Duration::from_secs(limits.request_timeout_secs.max(1));
    let writes = Arc::new(tokio::sync::Semaphore::new(
        limits.max_inflight_writes.max(1),
    ));
    let shed = axum::middleware::from_fn_with_state(writes, shed_writes);
    Router::new()
        .route("/v1/txs", post(submit_tx).route_layer(shed.clone()))
        .route("/v1/txs/{hash}", get(get_tx))
        .route("/v1/accounts/{address}", get(get_account))
        .route("/v1/blocks/{height}", get(get_block))
        .route("/v1/status", get(status))
        .route("/v1/blobs", put(put_blob).route_layer(shed))
        .route("/v1/blobs/{cid}", get(get_blob))
        .route("/v1/models", get(list_models))
        .route("/v1/models/{id}", get(get_model))
        .route("/v1/datasets", get(list_datasets))
        .route("/v1/datasets/{id}", get(get_dataset))
        .route("/v1/tasks", get(list_tasks))
        .route("/v1/tasks/challengeable", get(list_challengeable))
        .route("/v1/tasks/{id}", get(get_task))
        .route("/v1/workers", get(list_workers))
        .route("/v1/workers/{address}", get(get_worker))
        .route("/v1/workers/{address}/assignments", get(get_assignments))
        .route("/v1/challengers", get(list_challengers))
        .route("/v1/challengers/{address}", get(get_challenger))
        .route("/v1/validators", get(list_validators))
        .route("/v1/epochs/current", get(current_epoch))
        .route("/v1/disputes", get(list_disputes))
        .route("/v1/disputes/{id}", get(get_dispute))
        .route("/v1/data/files", get(list_data_files))
        .route("/v1/data/files/{id}", get(get_data_file))
        .route("/v1/data/files/{id}/jobs", get(list_file_jobs))
        .route("/v1/data/jobs/{id}", get(get_data_job))
        .route("/v1/data/verifiers/{address}", get(get_data_verifier))
        .route("/v1/dat/{address}", get(get_dat))
        .route("/v1/attestation-policy", get(get_policy))
        .route("/v1/attestation-nonce", get(get_nonce))
        .route("/v1/events", get(events))
        .route("/v1/openapi.json", get(openapi))
        .route("/metrics", get(metrics))
        .fallback(|| async { ApiError::not_found("no such endpoint") })
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                ErrorCode::BadRequest,
                "this endpoint does not take that method",
            )
        })
        .layer(axum::middleware::from_fn_with_state(timeout, time_limit))
        .with_state(state)
}

/// Refuses a submission or upload at once, 429 with Retry-After, when as many as the node takes
/// are under way.
async fn shed_writes(
    State(permits): State<Arc<tokio::sync::Semaphore>>,
    request: Request,
    next: Next,
) -> Response {
    let Ok(_permit) = permits.try_acquire_owned() else {
        return ApiError::overloaded(
            ErrorCode::Overloaded,
            "the node is taking as many submissions and uploads as it can; retry shortly",
        )
        .into_response();
    };
    next.run(request).await
}

/// Ends a request that has not produced its response in time: a slow client cannot hold a
/// handler (and an upload's disk space) forever.
async fn time_limit(State(limit): State<Duration>, request: Request, next: Next) -> Response {
    match tokio::time::timeout(limit, next.run(request)).await {
        Ok(response) => response,
        Err(_) => ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            ErrorCode::Timeout,
            format!("the request took longer than {} s", limit.as_secs()),
        )
        .into_response(),
    }
}

fn parse<T: std::str::FromStr>(raw: &str, what: &str) -> Result<T, ApiError>
where
    T::Err: std::fmt::Display,
{
    raw.parse()
        .map_err(|e: T::Err| ApiError::bad_request(format!("invalid {what}: {e}")))
}

fn query<T>(query: Result<Query<T>, QueryRejection>) -> Result<T, ApiError> {
    query
        .map(|Query(q)| q)
        .map_err(|e| ApiError::bad_request(e.body_text()))
}

/// A page size from `limit`, refused outside 1..=MAX_PAGE rather than silently clamped.
fn page_size(limit: Option<u32>, default: u32) -> Result<usize, ApiError> {
    match limit.unwrap_or(default) {
        n @ 1..=MAX_PAGE => Ok(n as usize),
        n => Err(ApiError::bad_request(format!(
            "limit must be 1 to {MAX_PAGE}, got {n}"
        ))),
    }
}

/// The cursor of the next page: the last item's, when the page came back full.
fn next_cursor<T, C>(items: &[T], limit: usize, cursor: impl Fn(&T) -> C) -> Option<C> {
    (items.len() == limit)
        .then(|| items.last().map(cursor))
        .flatten()
}

/// A list's query when its cursor is an id.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct IdPage {
    /// Page size, 1 to 1000.
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<u32>,
    /// The previous page's `next`.
    #[param(value_type = Option<Hash>)]
    after: Option<Hash>,
}

/// `GET /v1/disputes`: a page of every dispute, or the open ones of one party.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct DisputeQuery {
    /// Page size, 1 to 1000.
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<u32>,
    /// The previous page's `next`.
    #[param(value_type = Option<Hash>)]
    after: Option<Hash>,
    /// Only the open disputes in which this address is the worker or the challenger (what it
    /// owes moves in); `after` does not apply.
    #[param(value_type = Option<Address>)]
    party: Option<Address>,
}

/// A list's query when its cursor is an address.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct AddressPage {
    /// Page size, 1 to 1000.
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<u32>,
    /// The previous page's `next`.
    #[param(value_type = Option<Address>)]
    after: Option<Address>,
}

#[utoipa::path(post, path = "/v1/txs", tag = "transactions",
    request_body = SubmitTx,
    responses(
        (status = 202, description = "admitted to the mempool", body = TxView),
        (status = 400, description = "malformed, invalid, or unpayable", body = ErrorBody),
        (status = 409, description = "this sender and nonce are already pending", body = ErrorBody),
        (status = 415, description = "the body is not JSON", body = ErrorBody),
        (status = 429, description = "the mempool is full or the node is taking all the submissions it can; see Retry-After", body = ErrorBody),
    ))]
async fn submit_tx(
    State(state): State<ApiState>,
    body: Result<Json<SubmitTx>, JsonRejection>,
) -> Result<(StatusCode, Json<TxView>), ApiError> {
    let Json(body) = body.map_err(|e| {
        let status = match e {
            JsonRejection::MissingJsonContentType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            _ => StatusCode::BAD_REQUEST,
        };
        ApiError::new(status, ErrorCode::BadRequest, e.body_text())
    })?;
    let raw = hex::decode(body.tx.trim().trim_start_matches("0x")).map_err(|_| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            ErrorCode::MalformedTransaction,
            "tx must be hex-encoded transaction bytes",
        )
    })?;
    let hash = state.node.submit(Bytes::from(raw)).map_err(|e| match e {
        crate::mempool::AdmitError::Full(_) => ApiError::overloaded(e.code(), e.to_string()),
        crate::mempool::AdmitError::Duplicate => {
            ApiError::new(StatusCode::CONFLICT, e.code(), e.to_string())
        }
        _ => ApiError::new(StatusCode::BAD_REQUEST, e.code(), e.to_string()),
    })?;
    Ok((
        StatusCode::ACCEPTED,
        Json(TxView {
            hash,
            status: TxState::Pending,
            receipt: None,
        }),
    ))
}

#[utoipa::path(get, path = "/v1/txs/{hash}", tag = "transactions",
    params(("hash" = Hash, Path, description = "the transaction's hash")),
    responses(
        (status = 200, description = "pending, or finalized with its receipt", body = TxView),
        (status = 400, body = ErrorBody),
        (status = 404, description = "neither pending nor finalized here", body = ErrorBody),
    ))]
async fn get_tx(State(state): State<ApiState>, Path(hash): Path<String>) -> ApiResult<TxView> {
    let hash: Hash = parse(&hash, "transaction hash")?;
    if let Some(receipt) = state
        .node
        .chain
        .receipt(&hash)
        .map_err(ApiError::internal)?
    {
        return Ok(Json(TxView {
            hash,
            status: TxState::Finalized,
            receipt: Some(receipt),
        }));
    }
    if state
        .node
        .mempool
        .lock()
        .expect("mempool lock")
        .contains(&hash)
    {
        return Ok(Json(TxView {
            hash,
            status: TxState::Pending,
            receipt: None,
        }));
    }
    Err(ApiError::not_found(format!(
        "no transaction {hash} is pending or finalized here"
    )))
}

#[utoipa::path(get, path = "/v1/accounts/{address}", tag = "accounts",
    params(("address" = Address, Path)),
    responses(
        (status = 200, description = "balance and nonces; an unknown account is empty", body = AccountView),
        (status = 400, body = ErrorBody),
    ))]
async fn get_account(
    State(state): State<ApiState>,
    Path(address): Path<String>,
) -> ApiResult<AccountView> {
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
    Ok(Json(AccountView {
        address,
        balance: account.balance,
        nonce: account.nonce,
        pending_nonce,
    }))
}

#[utoipa::path(get, path = "/v1/blocks/{height}", tag = "chain",
    params(("height" = u64, Path)),
    responses(
        (status = 200, body = verity_api::BlockRecord),
        (status = 400, body = ErrorBody),
        (status = 404, description = "not finalized yet", body = ErrorBody),
    ))]
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
        .ok_or_else(|| ApiError::not_found(format!("block {height} is not finalized yet")))
}

#[utoipa::path(get, path = "/v1/status", tag = "chain",
    responses((status = 200, body = StatusView)))]
async fn status(State(state): State<ApiState>) -> ApiResult<StatusView> {
    let chain = &state.node.chain;
    let params = &chain.genesis().params;
    Ok(Json(StatusView {
        chain_id: chain.genesis().chain_id.clone(),
        node: state.node.label.clone(),
        height: chain.height().map_err(ApiError::internal)?,
        finalized_height: state.node.finalized_tip.load(Ordering::Relaxed),
        state_root: chain.state_root().map_err(ApiError::internal)?,
        mempool: state.node.mempool.lock().expect("mempool lock").len() as u64,
        validators: (*state.validators).clone(),
        peers: connected_peers(&(state.metrics)(), state.index),
        fees: verity_types::FeeSchedule {
            fee_per_weight: params.fee_per_weight,
            min_fee: params.min_fee,
        },
        max_block_weight: params.max_block_weight,
        halted: state.node.halted.load(Ordering::Relaxed),
        equivocations: state.node.evidence.lock().expect("evidence lock").len() as u64,
        refused_proposals: state.node.refused_proposals.load(Ordering::Relaxed),
    }))
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

#[utoipa::path(get, path = "/v1/events", tag = "chain",
    responses((status = 200,
        description = "Server-sent events: `event: block` with a BlockRecord per finalized block, `event: task` with a Task per task change, `event: dispute` with a Dispute per dispute move (schema Event)",
        content_type = "text/event-stream", body = String)))]
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
    let disputes = state.node.dispute_updates().map(|dispute| {
        Ok(Event::default()
            .event("dispute")
            .json_data(&*dispute)
            .unwrap_or_else(|_| Event::default().event("dispute")))
    });
    let all = futures::stream::select(futures::stream::select(blocks, tasks), disputes);
    Sse::new(all).keep_alive(KeepAlive::default())
}

/// Checks an upload's authorisation and charges its declared size to the signer's quota;
/// answers the authorisation, its signer and what was charged. Content this node already holds
/// is charged nothing: a replayed header, or a client's retry, adds nothing to the disk.
fn authorize_upload(
    state: &ApiState,
    headers: &HeaderMap,
    declared: u64,
) -> Result<(UploadAuth, Address, u64), ApiError> {
    let unauthorized = |message: String| {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            ErrorCode::UploadUnauthorized,
            message,
        )
    };
    let header = headers
        .get(UPLOAD_HEADER)
        .ok_or_else(|| {
            unauthorized(format!(
                "an upload needs an {UPLOAD_HEADER} header signed by a funded account"
            ))
        })?
        .to_str()
        .map_err(|_| unauthorized(format!("the {UPLOAD_HEADER} header is not text")))?;
    let auth = UploadAuth::parse(header).map_err(|e| unauthorized(e.to_string()))?;
    let chain = &state.node.chain;
    let signer = auth
        .signer(&chain.genesis().chain_id)
        .map_err(|e| unauthorized(e.to_string()))?;
    let height = chain.height().map_err(ApiError::internal)?;
    if auth.height > height.saturating_add(1) {
        return Err(unauthorized(format!(
            "the upload signs height {}, ahead of this node's {height}",
            auth.height
        )));
    }
    if height - auth.height.min(height) > state.uploads.max_age_blocks {
        return Err(unauthorized(format!(
            "the upload signs height {}, more than {} blocks before {height}; sign a recent one",
            auth.height, state.uploads.max_age_blocks
        )));
    }
    let account = chain.account(&signer).map_err(ApiError::internal)?;
    // A signature over other content, another chain or another height recovers some address
    // the chain has never seen: that is a bad signature, not a poor account.
    if account.balance == 0 && account.nonce == 0 {
        return Err(unauthorized(format!(
            "the upload signature recovers {signer}, an account this chain does not know; sign this chain's id, the content's SHA-256 and a recent height"
        )));
    }
    let balance = account.balance;
    if balance < state.uploads.min_balance {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            ErrorCode::BalanceTooLow,
            format!(
                "{signer} holds {balance} base units; uploading needs {}",
                state.uploads.min_balance
            ),
        ));
    }
    if state.blobs.locate(&auth.content).is_some() {
        return Ok((auth, signer, 0));
    }
    state
        .quotas
        .charge(
            signer,
            declared,
            state.uploads.quota_bytes,
            Duration::from_secs(state.uploads.window_secs),
            Instant::now(),
        )
        .map_err(|over| ApiError {
            retry_after: Some(over.retry_after),
            ..ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                ErrorCode::QuotaExceeded,
                format!(
                    "{signer} uploaded {} of its {} bytes per {} s",
                    over.used, state.uploads.quota_bytes, state.uploads.window_secs
                ),
            )
        })?;
    Ok((auth, signer, declared))
}

#[utoipa::path(put, path = "/v1/blobs", tag = "blobs",
    params(("x-verity-upload" = String, Header,
        description = "`<content hash>:<height>:<signature>`: an account's signature over (`verity/blob-upload/v1`, chain id, height, content hash), with a height at most `max_age_blocks` old",
        pattern = "^(0x)?[0-9a-fA-F]{64}:[0-9]{1,20}:(0x)?[0-9a-fA-F]{130}$")),
    request_body(content = Vec<u8>, content_type = "application/octet-stream", description = "the blob's bytes"),
    responses(
        (status = 201, description = "stored; its CIDv1", body = StoredBlob),
        (status = 400, description = "the bytes do not hash to the signed content hash", body = ErrorBody),
        (status = 401, description = "no valid, recent upload signature", body = ErrorBody),
        (status = 403, description = "the signer holds less than the node's minimum balance", body = ErrorBody),
        (status = 408, description = "the upload took too long", body = ErrorBody),
        (status = 411, description = "no Content-Length header", body = ErrorBody),
        (status = 413, description = "larger than the node accepts", body = ErrorBody),
        (status = 429, description = "the signer's quota is used up, or the node is taking all the uploads it can; see Retry-After", body = ErrorBody),
        (status = 507, description = "the node's free disk is below its floor", body = ErrorBody),
    ))]
async fn put_blob(
    State(state): State<ApiState>,
    headers: HeaderMap,
    body: axum::body::Body,
) -> Result<(StatusCode, Json<StoredBlob>), ApiError> {
    use verity_data::BlobError;
    // The quota and the disk floor are charged up front, so the length must be known: a body
    // without one (chunked) would be charged nothing.
    let declared: u64 = headers
        .get("content-length")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::LENGTH_REQUIRED,
                ErrorCode::LengthRequired,
                "an upload needs a Content-Length header",
            )
        })?;
    let blob_error = |e: BlobError| match e {
        BlobError::TooLarge { .. } => ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            ErrorCode::BlobTooLarge,
            e.to_string(),
        ),
        BlobError::DiskFull { .. } => ApiError::new(
            StatusCode::INSUFFICIENT_STORAGE,
            ErrorCode::InsufficientStorage,
            e.to_string(),
        ),
        BlobError::HashMismatch { .. } => ApiError::new(
            StatusCode::BAD_REQUEST,
            ErrorCode::HashMismatch,
            e.to_string(),
        ),
        BlobError::Upload(_) => {
            ApiError::new(StatusCode::BAD_REQUEST, ErrorCode::BadUpload, e.to_string())
        }
        other => ApiError::internal(other),
    };
    if declared > state.blobs.max_bytes() {
        return Err(blob_error(BlobError::TooLarge {
            limit: state.blobs.max_bytes(),
        }));
    }
    let _space = state.blobs.reserve(declared).map_err(blob_error)?;
    let (auth, signer, charged) = authorize_upload(&state, &headers, declared)?;
    match state
        .blobs
        .put_stream(body.into_data_stream(), Some(auth.content))
        .await
    {
        Ok(blob) => {
            // Charge what arrived, not what the header claimed (content already held was
            // charged nothing).
            if charged > 0 {
                match blob.size.cmp(&declared) {
                    std::cmp::Ordering::Less => state.quotas.refund(signer, declared - blob.size),
                    std::cmp::Ordering::Greater => {
                        let _ = state.quotas.charge(
                            signer,
                            blob.size - declared,
                            u64::MAX,
                            Duration::from_secs(state.uploads.window_secs),
                            Instant::now(),
                        );
                    }
                    std::cmp::Ordering::Equal => {}
                }
            }
            Ok((
                StatusCode::CREATED,
                Json(StoredBlob {
                    cid: blob.cid,
                    ipfs_cid: blob.ipfs_cid,
                    hash: blob.hash,
                    size: blob.size,
                }),
            ))
        }
        Err(e) => {
            state.quotas.refund(signer, charged);
            Err(blob_error(e))
        }
    }
}

#[utoipa::path(get, path = "/v1/blobs/{cid}", tag = "blobs",
    params(("cid" = String, Path, description = "CIDv1 in base32 with a SHA-256 digest: the raw CID (`bafkrei…`), or the dag-pb IPFS file CID `PUT /v1/blobs` answered as `ipfs_cid` (`bafybei…`)", pattern = "^baf[ky]bei[a-h][a-z2-7]{50}[aeimquy4]$")),
    responses(
        (status = 200, description = "the blob's bytes (from this node's store, or from its IPFS node)", content_type = "application/octet-stream", body = Vec<u8>),
        (status = 400, body = ErrorBody),
        (status = 404, body = ErrorBody),
    ))]
async fn get_blob(
    State(state): State<ApiState>,
    Path(cid): Path<String>,
) -> Result<Response, ApiError> {
    let hash = state
        .blobs
        .resolve(&cid)
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, ErrorCode::BadCid, e.to_string()))?
        .ok_or_else(|| ApiError::not_found(format!("no blob {cid} here")))?;
    let path = state
        .blobs
        .fetch(&hash)
        .await
        .map_err(ApiError::internal)?
        .ok_or_else(|| ApiError::not_found(format!("no blob {cid} here")))?;
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

#[utoipa::path(get, path = "/v1/models", tag = "models",
    params(IdPage),
    responses(
        (status = 200, description = "registered models in id order", body = ModelList),
        (status = 400, body = ErrorBody),
    ))]
async fn list_models(
    State(state): State<ApiState>,
    page: Result<Query<IdPage>, QueryRejection>,
) -> ApiResult<ModelList> {
    let page = query(page)?;
    let limit = page_size(page.limit, 100)?;
    let models = state
        .node
        .chain
        .models(page.after.as_ref(), limit)
        .map_err(ApiError::internal)?;
    let next = next_cursor(&models, limit, |m| m.spec.model_id);
    Ok(Json(ModelList { models, next }))
}

#[utoipa::path(get, path = "/v1/models/{id}", tag = "models",
    params(("id" = Hash, Path, description = "the model id: SHA-256 of its ONNX file")),
    responses(
        (status = 200, body = verity_api::Model),
        (status = 400, body = ErrorBody),
        (status = 404, body = ErrorBody),
    ))]
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
        .ok_or_else(|| ApiError::not_found(format!("no model {id}")))
}

#[utoipa::path(get, path = "/v1/datasets", tag = "models",
    params(IdPage),
    responses(
        (status = 200, description = "registered datasets in id order", body = DatasetList),
        (status = 400, body = ErrorBody),
    ))]
async fn list_datasets(
    State(state): State<ApiState>,
    page: Result<Query<IdPage>, QueryRejection>,
) -> ApiResult<DatasetList> {
    let page = query(page)?;
    let limit = page_size(page.limit, 100)?;
    let datasets = state
        .node
        .chain
        .datasets(page.after.as_ref(), limit)
        .map_err(ApiError::internal)?;
    let next = next_cursor(&datasets, limit, |d| d.dataset_id);
    Ok(Json(DatasetList { datasets, next }))
}

#[utoipa::path(get, path = "/v1/datasets/{id}", tag = "models",
    params(("id" = Hash, Path, description = "the dataset id: SHA-256 of its file")),
    responses(
        (status = 200, body = verity_api::Dataset),
        (status = 400, body = ErrorBody),
        (status = 404, body = ErrorBody),
    ))]
async fn get_dataset(
    State(state): State<ApiState>,
    Path(id): Path<String>,
) -> ApiResult<verity_state::Dataset> {
    let id: Hash = parse(&id, "dataset id")?;
    state
        .node
        .chain
        .dataset(&id)
        .map_err(ApiError::internal)?
        .map(Json)
        .ok_or_else(|| ApiError::not_found(format!("no dataset {id}")))
}

#[utoipa::path(get, path = "/v1/tasks/{id}", tag = "tasks",
    params(("id" = Hash, Path, description = "the task id: its SubmitTask's hash")),
    responses(
        (status = 200, description = "the task, its record once verified, the CIDs; dev-TEE results are labelled", body = TaskView),
        (status = 400, body = ErrorBody),
        (status = 404, body = ErrorBody),
    ))]
async fn get_task(State(state): State<ApiState>, Path(id): Path<String>) -> ApiResult<TaskView> {
    let id: Hash = parse(&id, "task id")?;
    let chain = &state.node.chain;
    let task = chain
        .task(&id)
        .map_err(ApiError::internal)?
        .ok_or_else(|| ApiError::not_found(format!("no task {id}")))?;
    let record = chain.record(&id).map_err(ApiError::internal)?;
    let disputes = chain
        .task_disputes(&id, MAX_PAGE as usize)
        .map_err(ApiError::internal)?;
    Ok(Json(TaskView {
        disputes,
        input_cid: verity_data::cid_of(&task.input.hash),
        output_cid: record.as_ref().map(|r| verity_data::cid_of(&r.output_hash)),
        attestation: record.as_ref().map(|r| {
            if r.dev_tee {
                DEV_TEE_LABEL.to_string()
            } else {
                r.tee_kind.to_string()
            }
        }),
        record,
        task,
    }))
}

#[utoipa::path(get, path = "/v1/tasks", tag = "tasks",
    params(IdPage),
    responses(
        (status = 200, description = "tasks, newest first", body = TaskList),
        (status = 400, body = ErrorBody),
        (status = 404, description = "`after` names no task", body = ErrorBody),
    ))]
async fn list_tasks(
    State(state): State<ApiState>,
    page: Result<Query<IdPage>, QueryRejection>,
) -> ApiResult<TaskList> {
    let page = query(page)?;
    let limit = page_size(page.limit, 50)?;
    let chain = &state.node.chain;
    let after =
        match &page.after {
            Some(id) => Some(chain.task(id).map_err(ApiError::internal)?.ok_or_else(|| {
                ApiError::not_found(format!("after: no task {id} to page after"))
            })?),
            None => None,
        };
    let tasks = chain
        .recent_tasks(after.as_ref(), limit)
        .map_err(ApiError::internal)?;
    let next = next_cursor(&tasks, limit, |t| t.task_id);
    Ok(Json(TaskList { tasks, next }))
}

#[utoipa::path(get, path = "/v1/tasks/challengeable", tag = "tasks",
    params(IdPage),
    responses(
        (status = 200, description = "OP results in their challenge window, the window closing first first", body = TaskList),
        (status = 400, body = ErrorBody),
        (status = 404, description = "`after` names no OP result in its window", body = ErrorBody),
    ))]
async fn list_challengeable(
    State(state): State<ApiState>,
    page: Result<Query<IdPage>, QueryRejection>,
) -> ApiResult<TaskList> {
    let page = query(page)?;
    let limit = page_size(page.limit, 50)?;
    let chain = &state.node.chain;
    let after = match &page.after {
        Some(id) => Some((
            id,
            chain
                .record(id)
                .map_err(ApiError::internal)?
                .and_then(|r| r.challenge_until)
                .ok_or_else(|| {
                    ApiError::not_found(format!(
                        "after: task {id} is not an OP result in its window"
                    ))
                })?,
        )),
        None => None,
    };
    let tasks = chain
        .challengeable_tasks(after, limit)
        .map_err(ApiError::internal)?;
    let next = next_cursor(&tasks, limit, |t| t.task_id);
    Ok(Json(TaskList { tasks, next }))
}

fn worker_view(state: &ApiState, address: &Address) -> Result<WorkerView, ApiError> {
    let chain = &state.node.chain;
    let enclave = chain.enclave(address).map_err(ApiError::internal)?;
    Ok(WorkerView {
        address: *address,
        stake: chain.worker(address).map_err(ApiError::internal)?,
        reputation: chain.reputation(address).map_err(ApiError::internal)?,
        attestation: enclave.as_ref().map(|e| {
            if e.is_dev() {
                DEV_TEE_LABEL.to_string()
            } else {
                e.kind.to_string()
            }
        }),
        enclave,
    })
}

#[utoipa::path(get, path = "/v1/workers", tag = "workers",
    params(AddressPage),
    responses(
        (status = 200, description = "staked workers in address order", body = WorkerList),
        (status = 400, body = ErrorBody),
    ))]
async fn list_workers(
    State(state): State<ApiState>,
    page: Result<Query<AddressPage>, QueryRejection>,
) -> ApiResult<WorkerList> {
    let page = query(page)?;
    let limit = page_size(page.limit, 100)?;
    let addresses = state
        .node
        .chain
        .workers(page.after.as_ref(), limit)
        .map_err(ApiError::internal)?;
    let workers = addresses
        .iter()
        .map(|w| worker_view(&state, w))
        .collect::<Result<Vec<_>, _>>()?;
    let next = next_cursor(&addresses, limit, |a| *a);
    Ok(Json(WorkerList { workers, next }))
}

#[utoipa::path(get, path = "/v1/workers/{address}", tag = "workers",
    params(("address" = Address, Path)),
    responses(
        (status = 200, description = "stake, reputation and enclave; empty for an address that never staked", body = WorkerView),
        (status = 400, body = ErrorBody),
    ))]
async fn get_worker(
    State(state): State<ApiState>,
    Path(address): Path<String>,
) -> ApiResult<WorkerView> {
    let address: Address = parse(&address, "address")?;
    Ok(Json(worker_view(&state, &address)?))
}

#[utoipa::path(get, path = "/v1/workers/{address}/assignments", tag = "workers",
    params(("address" = Address, Path), IdPage),
    responses(
        (status = 200, description = "tasks assigned to the worker and not yet answered, in id order", body = Assignments),
        (status = 400, body = ErrorBody),
    ))]
async fn get_assignments(
    State(state): State<ApiState>,
    Path(address): Path<String>,
    page: Result<Query<IdPage>, QueryRejection>,
) -> ApiResult<Assignments> {
    let address: Address = parse(&address, "address")?;
    let page = query(page)?;
    let limit = page_size(page.limit, MAX_PAGE)?;
    let chain = &state.node.chain;
    // The height first: the tasks are at least as new as the height the answer claims.
    let height = chain.height().map_err(ApiError::internal)?;
    let tasks = chain
        .assignments(&address, page.after.as_ref(), limit)
        .map_err(ApiError::internal)?;
    let next = next_cursor(&tasks, limit, |t| t.task_id);
    Ok(Json(Assignments {
        height,
        tasks,
        next,
    }))
}

#[utoipa::path(get, path = "/v1/challengers", tag = "disputes",
    params(AddressPage),
    responses(
        (status = 200, description = "bonded challengers in address order, with their bonds and records", body = ChallengerList),
        (status = 400, body = ErrorBody),
    ))]
async fn list_challengers(
    State(state): State<ApiState>,
    page: Result<Query<AddressPage>, QueryRejection>,
) -> ApiResult<ChallengerList> {
    let page = query(page)?;
    let limit = page_size(page.limit, 100)?;
    let found = state
        .node
        .chain
        .challengers(page.after.as_ref(), limit)
        .map_err(ApiError::internal)?;
    let next = next_cursor(&found, limit, |(a, _)| *a);
    let challengers = found
        .into_iter()
        .map(|(address, record)| ChallengerView {
            address,
            challenger: Some(record),
        })
        .collect();
    Ok(Json(ChallengerList { challengers, next }))
}

#[utoipa::path(get, path = "/v1/challengers/{address}", tag = "disputes",
    params(("address" = Address, Path)),
    responses(
        (status = 200, description = "bond, locked part, open disputes, wins, losses, rewards; empty for an address that never bonded", body = ChallengerView),
        (status = 400, body = ErrorBody),
    ))]
async fn get_challenger(
    State(state): State<ApiState>,
    Path(address): Path<String>,
) -> ApiResult<ChallengerView> {
    let address: Address = parse(&address, "address")?;
    let challenger = state
        .node
        .chain
        .challenger(&address)
        .map_err(ApiError::internal)?;
    Ok(Json(ChallengerView {
        address,
        challenger,
    }))
}

/// The executed height, its epoch, and the committees that sign it and the next one; an error
/// on a chain whose committee is fixed at genesis.
fn epoch_committees(state: &ApiState) -> Result<(u64, u64, Committee, Committee), ApiError> {
    let chain = &state.node.chain;
    if chain.genesis().validators.is_empty() {
        return Err(ApiError::not_found(
            "this chain's committee is fixed at genesis: it has no validator bonds or epochs",
        ));
    }
    let height = chain.height().map_err(ApiError::internal)?;
    let epoch = chain.genesis().params.validators.epoch_of(height);
    let committee = |epoch| {
        chain
            .signing_committee(epoch)
            .map_err(ApiError::internal)?
            .ok_or_else(|| ApiError::internal(format!("epoch {epoch} has no committee")))
    };
    Ok((height, epoch, committee(epoch)?, committee(epoch + 1)?))
}

#[utoipa::path(get, path = "/v1/validators", tag = "validators",
    responses(
        (status = 200, description = "every validator that bonded, in account order, with its status and this epoch's proposals; the committees of this epoch and the next", body = ValidatorList),
        (status = 404, description = "the chain's committee is fixed at genesis", body = ErrorBody),
    ))]
async fn list_validators(State(state): State<ApiState>) -> ApiResult<ValidatorList> {
    let (_, epoch, committee, next_committee) = epoch_committees(&state)?;
    let chain = &state.node.chain;
    let params = &chain.genesis().params.validators;
    let seated = |c: &Option<Committee>, v: &verity_api::Validator| {
        c.as_ref()
            .is_some_and(|c| c.members.iter().any(|m| m.identity == v.identity))
    };
    let later = [
        Some(next_committee.clone()),
        chain.participants(epoch + 1).map_err(ApiError::internal)?,
        chain.participants(epoch + 2).map_err(ApiError::internal)?,
    ];
    let current = Some(committee.clone());
    let validators = chain
        .validators()
        .map_err(ApiError::internal)?
        .into_iter()
        .map(|validator| {
            let status = if validator.jailed_through.is_some_and(|t| t >= epoch) {
                ValidatorStatus::Jailed
            } else if seated(&current, &validator) {
                ValidatorStatus::Active
            } else if later.iter().any(|c| seated(c, &validator)) {
                ValidatorStatus::Elected
            } else if validator.bonded >= params.min_validator_stake {
                ValidatorStatus::Standby
            } else {
                ValidatorStatus::Inactive
            };
            let proposals = chain
                .proposals(epoch, &validator.identity)
                .map_err(ApiError::internal)?;
            Ok(ValidatorView {
                validator,
                status,
                proposals,
            })
        })
        .collect::<Result<_, ApiError>>()?;
    Ok(Json(ValidatorList {
        epoch,
        validators,
        committee,
        next_committee,
    }))
}

#[utoipa::path(get, path = "/v1/epochs/current", tag = "validators",
    responses(
        (status = 200, description = "the epoch of the executed height: its heights, its snapshot, the committees that sign it and the next, and the one its snapshot chose", body = EpochView),
        (status = 404, description = "the chain's committee is fixed at genesis", body = ErrorBody),
    ))]
async fn current_epoch(State(state): State<ApiState>) -> ApiResult<EpochView> {
    let (height, epoch, committee, next_committee) = epoch_committees(&state)?;
    let params = &state.node.chain.genesis().params.validators;
    let chosen = state
        .node
        .chain
        .participants(epoch + 2)
        .map_err(ApiError::internal)?;
    Ok(Json(EpochView {
        epoch,
        height,
        epoch_blocks: params.epoch_blocks,
        first_height: params.first_height(epoch),
        last_height: params.last_height(epoch),
        snapshot_height: params.snapshot_height(epoch),
        committee,
        next_committee,
        chosen,
    }))
}

#[utoipa::path(get, path = "/v1/disputes", tag = "disputes",
    params(DisputeQuery),
    responses(
        (status = 200, description = "disputes of OP results in id order", body = DisputeList),
        (status = 400, body = ErrorBody),
    ))]
async fn list_disputes(
    State(state): State<ApiState>,
    page: Result<Query<DisputeQuery>, QueryRejection>,
) -> ApiResult<DisputeList> {
    let page = query(page)?;
    let limit = page_size(page.limit, 100)?;
    let chain = &state.node.chain;
    if let Some(party) = page.party {
        let disputes = chain
            .open_disputes_of(&party, limit)
            .map_err(ApiError::internal)?;
        return Ok(Json(DisputeList {
            disputes,
            next: None,
        }));
    }
    let disputes = chain
        .disputes(page.after.as_ref(), limit)
        .map_err(ApiError::internal)?;
    let next = next_cursor(&disputes, limit, |d| d.dispute_id);
    Ok(Json(DisputeList { disputes, next }))
}

#[utoipa::path(get, path = "/v1/disputes/{id}", tag = "disputes",
    params(("id" = Hash, Path, description = "SHA-256 of `verity/dispute/v1`, the task id and the challenger")),
    responses(
        (status = 200, description = "the dispute: both roots, the game (span, revealed hashes, clocks, phase), status and verdict", body = verity_api::Dispute),
        (status = 400, body = ErrorBody),
        (status = 404, body = ErrorBody),
    ))]
async fn get_dispute(
    State(state): State<ApiState>,
    Path(id): Path<String>,
) -> ApiResult<verity_state::Dispute> {
    let id: Hash = parse(&id, "dispute id")?;
    state
        .node
        .chain
        .dispute(&id)
        .map_err(ApiError::internal)?
        .map(Json)
        .ok_or_else(|| ApiError::not_found(format!("no dispute {id}")))
}

/// A sequential id cursor: ids are counted from 1 and never reach 2^63, and the document states
/// them as int64.
fn seq_cursor(after: Option<u64>) -> Result<u64, ApiError> {
    match after {
        Some(n) if n > i64::MAX as u64 => Err(ApiError::bad_request(format!(
            "after must be at most {}, got {n}",
            i64::MAX
        ))),
        other => Ok(other.unwrap_or(0)),
    }
}

/// A sequential id in a path, bounded as [`seq_cursor`] is.
fn seq_id(raw: &str, what: &str) -> Result<u64, ApiError> {
    let id: u64 = parse(raw, what)?;
    if id > i64::MAX as u64 {
        return Err(ApiError::bad_request(format!(
            "{what} must be at most {}, got {id}",
            i64::MAX
        )));
    }
    Ok(id)
}

/// A list's query when its cursor is a sequential id, optionally one owner's.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct FilePage {
    /// Page size, 1 to 1000.
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<u32>,
    /// The previous page's `next`.
    after: Option<u64>,
    /// Only this owner's files.
    #[param(value_type = Option<Address>)]
    owner: Option<Address>,
}

#[utoipa::path(get, path = "/v1/data/files", tag = "data",
    params(FilePage),
    responses(
        (status = 200, description = "contributed files in id order", body = verity_api::DataFileList),
        (status = 400, body = ErrorBody),
    ))]
async fn list_data_files(
    State(state): State<ApiState>,
    page: Result<Query<FilePage>, QueryRejection>,
) -> ApiResult<verity_api::DataFileList> {
    let page = query(page)?;
    let limit = page_size(page.limit, 100)?;
    let files = state
        .node
        .chain
        .data_files(page.owner.as_ref(), seq_cursor(page.after)?, limit)
        .map_err(ApiError::internal)?;
    let next = next_cursor(&files, limit, |f| f.file_id);
    Ok(Json(verity_api::DataFileList { files, next }))
}

#[utoipa::path(get, path = "/v1/data/files/{id}", tag = "data",
    params(("id" = u64, Path)),
    responses(
        (status = 200, description = "the file: owner, encrypted blob, plaintext hash, best score, DAT supply", body = verity_api::DataFile),
        (status = 400, body = ErrorBody),
        (status = 404, body = ErrorBody),
    ))]
async fn get_data_file(
    State(state): State<ApiState>,
    Path(id): Path<String>,
) -> ApiResult<verity_api::DataFile> {
    let id = seq_id(&id, "file id")?;
    state
        .node
        .chain
        .data_file(id)
        .map_err(ApiError::internal)?
        .map(Json)
        .ok_or_else(|| ApiError::not_found(format!("no data file {id}")))
}

#[utoipa::path(get, path = "/v1/data/files/{id}/jobs", tag = "data",
    params(("id" = u64, Path), SeqPage),
    responses(
        (status = 200, description = "the file's proof jobs in id order", body = verity_api::DataJobList),
        (status = 400, body = ErrorBody),
    ))]
async fn list_file_jobs(
    State(state): State<ApiState>,
    Path(id): Path<String>,
    page: Result<Query<SeqPage>, QueryRejection>,
) -> ApiResult<verity_api::DataJobList> {
    let id = seq_id(&id, "file id")?;
    let page = query(page)?;
    let limit = page_size(page.limit, 100)?;
    let jobs = state
        .node
        .chain
        .data_jobs_of(id, seq_cursor(page.after)?, limit)
        .map_err(ApiError::internal)?;
    let next = next_cursor(&jobs, limit, |j| j.job_id);
    Ok(Json(verity_api::DataJobList { jobs, next }))
}

#[utoipa::path(get, path = "/v1/data/jobs/{id}", tag = "data",
    params(("id" = u64, Path)),
    responses(
        (status = 200, description = "the proof job: file, verifier, status and verdict", body = verity_api::DataJob),
        (status = 400, body = ErrorBody),
        (status = 404, body = ErrorBody),
    ))]
async fn get_data_job(
    State(state): State<ApiState>,
    Path(id): Path<String>,
) -> ApiResult<verity_api::DataJob> {
    let id = seq_id(&id, "job id")?;
    state
        .node
        .chain
        .data_job(id)
        .map_err(ApiError::internal)?
        .map(Json)
        .ok_or_else(|| ApiError::not_found(format!("no data job {id}")))
}

#[utoipa::path(get, path = "/v1/data/verifiers/{address}", tag = "data",
    params(("address" = Address, Path)),
    responses(
        (status = 200, description = "the data verifier's RSA key and endpoint, and the jobs it owes a proof", body = verity_api::DataVerifierView),
        (status = 400, body = ErrorBody),
    ))]
async fn get_data_verifier(
    State(state): State<ApiState>,
    Path(address): Path<String>,
) -> ApiResult<verity_api::DataVerifierView> {
    let address: Address = parse(&address, "address")?;
    let chain = &state.node.chain;
    let height = chain.height().map_err(ApiError::internal)?;
    Ok(Json(verity_api::DataVerifierView {
        address,
        verifier: chain.data_verifier(&address).map_err(ApiError::internal)?,
        height,
        open_jobs: chain
            .open_data_jobs(&address, MAX_PAGE as usize)
            .map_err(ApiError::internal)?,
    }))
}

/// `GET /v1/dat/{address}`'s query.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct SeqPage {
    /// Page size, 1 to 1000.
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<u32>,
    /// The previous page's `next`.
    after: Option<u64>,
}

#[utoipa::path(get, path = "/v1/dat/{address}", tag = "data",
    params(("address" = Address, Path), SeqPage),
    responses(
        (status = 200, description = "the Data Anchor Tokens the address holds, by file", body = verity_api::DatHoldings),
        (status = 400, body = ErrorBody),
    ))]
async fn get_dat(
    State(state): State<ApiState>,
    Path(address): Path<String>,
    page: Result<Query<SeqPage>, QueryRejection>,
) -> ApiResult<verity_api::DatHoldings> {
    let address: Address = parse(&address, "address")?;
    let page = query(page)?;
    let limit = page_size(page.limit, 100)?;
    let found = state
        .node
        .chain
        .dat_holdings(&address, seq_cursor(page.after)?, limit)
        .map_err(ApiError::internal)?;
    let next = next_cursor(&found, limit, |(id, _)| *id);
    let holdings = found
        .into_iter()
        .map(|(file_id, balance)| {
            Ok(verity_api::DatHolding {
                file_id,
                balance,
                claimable: state
                    .node
                    .chain
                    .dat_claimable(file_id, &address)
                    .map_err(ApiError::internal)?,
            })
        })
        .collect::<Result<_, ApiError>>()?;
    Ok(Json(verity_api::DatHoldings {
        address,
        holdings,
        next,
    }))
}

#[utoipa::path(get, path = "/v1/attestation-policy", tag = "attestation",
    responses((status = 200, body = PolicyView)))]
async fn get_policy(State(state): State<ApiState>) -> ApiResult<PolicyView> {
    let policy = state
        .node
        .chain
        .attestation_policy()
        .map_err(ApiError::internal)?;
    Ok(Json(PolicyView { policy }))
}

#[utoipa::path(get, path = "/v1/attestation-nonce", tag = "attestation",
    responses(
        (status = 200, description = "the newest block's attestation nonce, which RegisterEnclave evidence binds", body = verity_api::AttestationNonce),
        (status = 503, description = "no block finalized yet", body = ErrorBody),
    ))]
async fn get_nonce(State(state): State<ApiState>) -> ApiResult<verity_state::AttestationNonce> {
    state
        .node
        .chain
        .attestation_nonce()
        .map_err(ApiError::internal)?
        .map(Json)
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                ErrorCode::NoBlocksYet,
                "no block has been finalized yet; the first nonce comes with block 1",
            )
        })
}

#[utoipa::path(get, path = "/metrics", tag = "chain",
    responses((status = 200, description = "Prometheus text exposition format", content_type = "text/plain", body = String)))]
async fn metrics(State(state): State<ApiState>) -> impl IntoResponse {
    let mut body = (state.metrics)();
    let node = &state.node;
    let height = node.chain.height().unwrap_or(0);
    let finalized = node.finalized_tip.load(Ordering::Relaxed);
    body.push_str(&format!(
        "# TYPE verity_height gauge\nverity_height {}\n# TYPE verity_finalized_height gauge\nverity_finalized_height {}\n# HELP verity_execution_lag_blocks finalized blocks not executed yet\n# TYPE verity_execution_lag_blocks gauge\nverity_execution_lag_blocks {}\n# TYPE verity_mempool_size gauge\nverity_mempool_size {}\n# TYPE verity_halted gauge\nverity_halted {}\n# TYPE verity_refused_proposals counter\nverity_refused_proposals {}\n# TYPE verity_equivocation_evidence gauge\nverity_equivocation_evidence {}\n",
        height,
        finalized,
        finalized.saturating_sub(height),
        node.mempool.lock().expect("mempool lock").len(),
        u8::from(node.halted.load(Ordering::Relaxed)),
        node.refused_proposals.load(Ordering::Relaxed),
        node.evidence.lock().expect("evidence lock").len(),
    ));
    if let Ok((_, epoch, committee, _)) = epoch_committees(&state) {
        body.push_str(&format!(
            "# TYPE verity_epoch gauge\nverity_epoch {epoch}\n# HELP verity_committee_size validators signing this epoch\n# TYPE verity_committee_size gauge\nverity_committee_size {}\n",
            committee.members.len()
        ));
    }
    node.metrics.render(&mut body);
    ([("content-type", "text/plain; version=0.0.4")], body)
}

#[utoipa::path(get, path = "/v1/openapi.json", tag = "chain",
    responses((status = 200, description = "this document, OpenAPI 3.1", body = Object)))]
async fn openapi() -> Json<utoipa::openapi::OpenApi> {
    Json(openapi_document())
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Verity node API",
        version = "1",
        description = "A Verity validator's HTTP API. Errors are `{\"error\": {\"code\", \"message\"}}` with a stable `code`. Lists page with `limit` (1 to 1000) and `after` (the previous page's `next`)."
    ),
    paths(
        submit_tx,
        get_tx,
        get_account,
        get_block,
        status,
        put_blob,
        get_blob,
        list_models,
        get_model,
        list_datasets,
        get_dataset,
        list_tasks,
        list_challengeable,
        get_task,
        list_workers,
        get_worker,
        get_assignments,
        list_challengers,
        get_challenger,
        list_validators,
        current_epoch,
        list_disputes,
        get_dispute,
        list_data_files,
        get_data_file,
        list_file_jobs,
        get_data_job,
        get_data_verifier,
        get_dat,
        get_policy,
        get_nonce,
        events,
        openapi,
        metrics
    ),
    components(schemas(ErrorBody, ErrorCode, verity_api::Event))
)]
struct ApiDoc;

/// The OpenAPI 3.1 description of this API, generated from its types and handlers.
pub fn openapi_document() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
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

    #[test]
    fn the_document_covers_every_route() {
        let doc = serde_json::to_value(super::openapi_document()).unwrap();
        let paths = doc["paths"].as_object().unwrap();
        for path in [
            "/v1/txs",
            "/v1/txs/{hash}",
            "/v1/accounts/{address}",
            "/v1/blocks/{height}",
            "/v1/status",
            "/v1/blobs",
            "/v1/blobs/{cid}",
            "/v1/models",
            "/v1/models/{id}",
            "/v1/datasets",
            "/v1/datasets/{id}",
            "/v1/tasks",
            "/v1/tasks/challengeable",
            "/v1/tasks/{id}",
            "/v1/workers",
            "/v1/workers/{address}",
            "/v1/workers/{address}/assignments",
            "/v1/challengers",
            "/v1/challengers/{address}",
            "/v1/validators",
            "/v1/epochs/current",
            "/v1/disputes",
            "/v1/disputes/{id}",
            "/v1/data/files",
            "/v1/data/files/{id}",
            "/v1/data/files/{id}/jobs",
            "/v1/data/jobs/{id}",
            "/v1/data/verifiers/{address}",
            "/v1/dat/{address}",
            "/v1/attestation-policy",
            "/v1/attestation-nonce",
            "/v1/events",
            "/v1/openapi.json",
            "/metrics",
        ] {
            assert!(paths.contains_key(path), "{path} missing");
        }
        let schemas = doc["components"]["schemas"].as_object().unwrap();
        for schema in [
            "ErrorBody",
            "ErrorCode",
            "Event",
            "Task",
            "Receipt",
            "TxFailure",
        ] {
            assert!(schemas.contains_key(schema), "{schema} missing");
        }
    }
}
