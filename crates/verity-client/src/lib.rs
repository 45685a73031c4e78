//! A typed client for a Verity node's `/v1` HTTP API: every method takes and returns the
//! `verity_api` types the node itself serves.

use futures::{StreamExt as _, TryStreamExt as _};
use serde::de::DeserializeOwned;
use thiserror::Error;
use verity_api::{
    AccountView, Assignments, ErrorBody, ErrorCode, ModelList, PolicyView, StatusView, StoredBlob,
    SubmitTx, TaskList, TaskView, TxState, TxView, UploadAuth, WorkerList, WorkerView,
    UPLOAD_HEADER,
};
use verity_types::{AccountKey, Address, Hash, SignedTx};

pub use verity_api as api;

#[derive(Debug, Error)]
pub enum ClientError {
    #[error("cannot reach the node at {url}: {source}")]
    Unreachable {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    /// The node answered with an API error.
    #[error("{code}: {message}")]
    Api {
        status: u16,
        code: ErrorCode,
        message: String,
    },
    #[error("unexpected response from the node: {0}")]
    Decode(String),
    /// A data verifier's `POST /proof` refused the request.
    #[error("the data verifier at {url} refused the request (HTTP {status}): {message}")]
    VerifierRefused {
        url: String,
        status: u16,
        message: String,
    },
    #[error("transaction {hash} was not finalized within {waited:?}")]
    NotFinalized {
        hash: Hash,
        waited: std::time::Duration,
    },
}

impl ClientError {
    /// Whether the node refused a transaction because its nonce raced another of the same
    /// sender's (used, taken by a pending one, or far ahead after a lost one): signing again
    /// with the account's pending nonce is the remedy.
    pub fn is_nonce_race(&self) -> bool {
        matches!(
            self,
            ClientError::Api {
                code: ErrorCode::BadNonce
                    | ErrorCode::DuplicateTransaction
                    | ErrorCode::ReplacementUnderpriced
                    | ErrorCode::NonceTooFarAhead,
                ..
            }
        )
    }

    /// The API error code, when the node answered with one.
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            ClientError::Api { code, .. } => Some(*code),
            _ => None,
        }
    }
}

/// One page of a list: at most `limit` items after the cursor `after`.
#[derive(Debug, Clone, Default)]
pub struct PageRequest<C> {
    pub after: Option<C>,
    pub limit: Option<u32>,
}

impl<C: std::fmt::Display> PageRequest<C> {
    fn query(&self) -> String {
        let mut parts = Vec::new();
        if let Some(after) = &self.after {
            parts.push(format!("after={after}"));
        }
        if let Some(limit) = self.limit {
            parts.push(format!("limit={limit}"));
        }
        if parts.is_empty() {
            String::new()
        } else {
            format!("?{}", parts.join("&"))
        }
    }
}

/// How often a request a node shed for overload is sent again before its 429 is returned.
const OVERLOAD_RETRIES: u32 = 30;
/// The longest Retry-After waited out; longer ones (a spent quota) are returned at once.
const MAX_RETRY_AFTER_SECS: u64 = 2;
/// Blob transfers one batch call keeps in flight. Each takes a connection, and a node holds a
/// bounded number open (`max_connections`): hundreds at once from one worker would take every
/// slot and leave the rest of its requests, and everyone else's, in the listen backlog.
const BLOB_CONCURRENCY: usize = 16;
/// Idle connections kept per node, and for how long: an idle one still holds one of the node's
/// connection slots.
const MAX_IDLE_CONNECTIONS: usize = 32;
const IDLE_CONNECTION_SECS: u64 = 15;

#[derive(Clone)]
pub struct Client {
    base: String,
    http: reqwest::Client,
}

impl Client {
    /// `base` is the node's address, e.g. `http://127.0.0.1:8545`.
    pub fn new(base: &str) -> Self {
        let base = if base.starts_with("http://") || base.starts_with("https://") {
            base.trim_end_matches('/').to_string()
        } else {
            format!("http://{}", base.trim_end_matches('/'))
        };
        // No call may hang a worker or a command forever on a node that stopped answering.
        let http = reqwest::Client::builder()
            .connect_timeout(std::time::Duration::from_secs(5))
            .timeout(std::time::Duration::from_secs(60))
            .pool_max_idle_per_host(MAX_IDLE_CONNECTIONS)
            .pool_idle_timeout(std::time::Duration::from_secs(IDLE_CONNECTION_SECS))
            .build()
            .unwrap_or_default();
        Self { base, http }
    }

    /// Sends a contributor's request to a data verifier's `POST /proof` at `endpoint` (its URL
    /// as the chain records it).
    pub async fn send_proof_request(
        &self,
        endpoint: &str,
        request: &api::ProofRequest,
    ) -> Result<(), ClientError> {
        let (url, status, answer) = self
            .post_to_verifier::<_, api::ProofAnswer>(endpoint, "proof", request)
            .await?;
        match answer.success {
            true => Ok(()),
            false => Err(ClientError::VerifierRefused {
                url,
                status,
                message: answer.error.unwrap_or_default(),
            }),
        }
    }

    /// Asks a data verifier's enclave (`POST /anchor` at `endpoint`) to hash a blob and sign
    /// that `request.owner` registers it.
    pub async fn request_anchor(
        &self,
        endpoint: &str,
        request: &api::AnchorRequest,
    ) -> Result<api::AnchorAnswer, ClientError> {
        Ok(self.post_to_verifier(endpoint, "anchor", request).await?.2)
    }

    /// POSTs `body` to a data verifier's `endpoint/path`: the URL, status and answer on
    /// success, its `{"success": false, "error"}` as [`ClientError::VerifierRefused`] otherwise.
    async fn post_to_verifier<B: serde::Serialize, T: DeserializeOwned>(
        &self,
        endpoint: &str,
        path: &str,
        body: &B,
    ) -> Result<(String, u16, T), ClientError> {
        let url = format!("{}/{path}", endpoint.trim_end_matches('/'));
        let response = self
            .http
            .post(&url)
            .json(body)
            .send()
            .await
            .map_err(|source| ClientError::Unreachable {
                url: url.clone(),
                source,
            })?;
        let status = response.status().as_u16();
        let decode = |e: reqwest::Error| ClientError::Decode(format!("{url}: HTTP {status}: {e}"));
        if response.status().is_success() {
            let answer = response.json().await.map_err(decode)?;
            return Ok((url, status, answer));
        }
        let answer: api::ProofAnswer = response.json().await.map_err(decode)?;
        Err(ClientError::VerifierRefused {
            url,
            status,
            message: answer.error.unwrap_or_default(),
        })
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    async fn send(
        &self,
        request: reqwest::RequestBuilder,
    ) -> Result<reqwest::Response, ClientError> {
        request
            .send()
            .await
            .map_err(|source| ClientError::Unreachable {
                url: self.base.clone(),
                source,
            })
    }

    /// The API error a non-success response carries.
    async fn api_error(response: reqwest::Response) -> ClientError {
        let status = response.status().as_u16();
        match response.json::<ErrorBody>().await {
            Ok(body) => ClientError::Api {
                status,
                code: body.error.code,
                message: body.error.message,
            },
            Err(e) => ClientError::Decode(format!("HTTP {status} without an error body: {e}")),
        }
    }

    async fn call<T: DeserializeOwned>(
        &self,
        request: reqwest::RequestBuilder,
    ) -> Result<T, ClientError> {
        let mut request = request;
        let mut retries = 0;
        let response = loop {
            let again = request.try_clone();
            let response = self.send(request).await?;
            // A node shedding load (429 with a short Retry-After) is asked again after it;
            // a long Retry-After (a spent upload quota) is the caller's to handle.
            let wait = (response.status() == reqwest::StatusCode::TOO_MANY_REQUESTS)
                .then(|| response.headers().get("retry-after"))
                .flatten()
                .and_then(|v| v.to_str().ok()?.parse::<u64>().ok())
                .filter(|&secs| secs <= MAX_RETRY_AFTER_SECS);
            match (wait, again) {
                (Some(secs), Some(next)) if retries < OVERLOAD_RETRIES => {
                    retries += 1;
                    tokio::time::sleep(std::time::Duration::from_secs(secs)).await;
                    request = next;
                }
                _ => break response,
            }
        };
        if !response.status().is_success() {
            return Err(Self::api_error(response).await);
        }
        response
            .json()
            .await
            .map_err(|e| ClientError::Decode(e.to_string()))
    }

    async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, ClientError> {
        self.call(self.http.get(self.url(path))).await
    }

    /// GET that answers `None` for a 404.
    async fn find<T: DeserializeOwned>(&self, path: &str) -> Result<Option<T>, ClientError> {
        match self.get(path).await {
            Ok(v) => Ok(Some(v)),
            Err(ClientError::Api { status: 404, .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Submits a signed transaction to the node's mempool.
    pub async fn submit(&self, tx: &SignedTx) -> Result<TxView, ClientError> {
        self.submit_raw(&tx.encode()).await
    }

    pub async fn submit_raw(&self, bytes: &[u8]) -> Result<TxView, ClientError> {
        let body = SubmitTx {
            tx: format!("0x{}", hex::encode(bytes)),
        };
        self.call(self.http.post(self.url("/v1/txs")).json(&body))
            .await
    }

    pub async fn tx(&self, hash: &Hash) -> Result<TxView, ClientError> {
        self.get(&format!("/v1/txs/{hash}")).await
    }

    pub async fn account(&self, address: &Address) -> Result<AccountView, ClientError> {
        self.get(&format!("/v1/accounts/{address}")).await
    }

    /// A finalized block; `None` before it is finalized.
    pub async fn block(&self, height: u64) -> Result<Option<api::BlockRecord>, ClientError> {
        self.find(&format!("/v1/blocks/{height}")).await
    }

    pub async fn status(&self) -> Result<StatusView, ClientError> {
        self.get("/v1/status").await
    }

    pub async fn models(&self, page: &PageRequest<Hash>) -> Result<ModelList, ClientError> {
        self.get(&format!("/v1/models{}", page.query())).await
    }

    pub async fn model(&self, id: &Hash) -> Result<Option<api::Model>, ClientError> {
        self.find(&format!("/v1/models/{id}")).await
    }

    pub async fn datasets(
        &self,
        page: &PageRequest<Hash>,
    ) -> Result<api::DatasetList, ClientError> {
        self.get(&format!("/v1/datasets{}", page.query())).await
    }

    pub async fn dataset(&self, id: &Hash) -> Result<Option<api::Dataset>, ClientError> {
        self.find(&format!("/v1/datasets/{id}")).await
    }

    /// Tasks, newest first.
    pub async fn tasks(&self, page: &PageRequest<Hash>) -> Result<TaskList, ClientError> {
        self.get(&format!("/v1/tasks{}", page.query())).await
    }

    /// OP results in their challenge window, the window closing first first.
    pub async fn challengeable_tasks(
        &self,
        page: &PageRequest<Hash>,
    ) -> Result<TaskList, ClientError> {
        self.get(&format!("/v1/tasks/challengeable{}", page.query()))
            .await
    }

    pub async fn task(&self, id: &Hash) -> Result<Option<TaskView>, ClientError> {
        self.find(&format!("/v1/tasks/{id}")).await
    }

    pub async fn workers(&self, page: &PageRequest<Address>) -> Result<WorkerList, ClientError> {
        self.get(&format!("/v1/workers{}", page.query())).await
    }

    pub async fn worker(&self, address: &Address) -> Result<WorkerView, ClientError> {
        self.get(&format!("/v1/workers/{address}")).await
    }

    pub async fn assignments(
        &self,
        worker: &Address,
        page: &PageRequest<Hash>,
    ) -> Result<Assignments, ClientError> {
        self.get(&format!("/v1/workers/{worker}/assignments{}", page.query()))
            .await
    }

    pub async fn challengers(
        &self,
        page: &PageRequest<Address>,
    ) -> Result<api::ChallengerList, ClientError> {
        self.get(&format!("/v1/challengers{}", page.query())).await
    }

    pub async fn challenger(&self, address: &Address) -> Result<api::ChallengerView, ClientError> {
        self.get(&format!("/v1/challengers/{address}")).await
    }

    /// Every validator that bonded and the committees of this epoch and the next.
    pub async fn validators(&self) -> Result<api::ValidatorList, ClientError> {
        self.get("/v1/validators").await
    }

    pub async fn current_epoch(&self) -> Result<api::EpochView, ClientError> {
        self.get("/v1/epochs/current").await
    }

    pub async fn disputes(
        &self,
        page: &PageRequest<Hash>,
    ) -> Result<api::DisputeList, ClientError> {
        self.get(&format!("/v1/disputes{}", page.query())).await
    }

    /// The open disputes in which `party` is the worker or the challenger.
    pub async fn open_disputes_of(
        &self,
        party: &Address,
    ) -> Result<Vec<api::Dispute>, ClientError> {
        let list: api::DisputeList = self
            .get(&format!(
                "/v1/disputes?party={party}&limit={}",
                api::MAX_PAGE
            ))
            .await?;
        Ok(list.disputes)
    }

    pub async fn dispute(&self, id: &Hash) -> Result<Option<api::Dispute>, ClientError> {
        self.find(&format!("/v1/disputes/{id}")).await
    }

    /// Contributed files in id order after `after`, one owner's when given.
    pub async fn data_files(
        &self,
        owner: Option<&Address>,
        after: Option<u64>,
        limit: u32,
    ) -> Result<api::DataFileList, ClientError> {
        let mut query = PageRequest {
            after,
            limit: Some(limit),
        }
        .query();
        if let Some(owner) = owner {
            query.push_str(&format!("&owner={owner}"));
        }
        self.get(&format!("/v1/data/files{query}")).await
    }

    pub async fn data_file(&self, id: u64) -> Result<Option<api::DataFile>, ClientError> {
        self.find(&format!("/v1/data/files/{id}")).await
    }

    /// A page of file `file`'s proof jobs, oldest first, after job `after` when given.
    pub async fn data_jobs_of(
        &self,
        file: u64,
        after: Option<u64>,
    ) -> Result<api::DataJobList, ClientError> {
        let query = PageRequest {
            after,
            limit: Some(api::MAX_PAGE),
        }
        .query();
        self.get(&format!("/v1/data/files/{file}/jobs{query}"))
            .await
    }

    pub async fn data_job(&self, id: u64) -> Result<Option<api::DataJob>, ClientError> {
        self.find(&format!("/v1/data/jobs/{id}")).await
    }

    /// A data verifier's registration and the jobs it owes a proof.
    pub async fn data_verifier(
        &self,
        address: &Address,
    ) -> Result<api::DataVerifierView, ClientError> {
        self.get(&format!("/v1/data/verifiers/{address}")).await
    }

    /// The Data Anchor Tokens `address` holds, by file.
    pub async fn dat(&self, address: &Address) -> Result<api::DatHoldings, ClientError> {
        self.get(&format!("/v1/dat/{address}?limit={}", api::MAX_PAGE))
            .await
    }

    pub async fn attestation_policy(&self) -> Result<PolicyView, ClientError> {
        self.get("/v1/attestation-policy").await
    }

    /// The newest attestation nonce; `None` before the first block.
    pub async fn attestation_nonce(&self) -> Result<Option<api::AttestationNonce>, ClientError> {
        match self.get("/v1/attestation-nonce").await {
            Ok(nonce) => Ok(Some(nonce)),
            Err(ClientError::Api {
                code: ErrorCode::NoBlocksYet,
                ..
            }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Uploads a blob, signed by `key`'s account against the node's chain and height.
    pub async fn put_blob(
        &self,
        bytes: Vec<u8>,
        key: &AccountKey,
    ) -> Result<StoredBlob, ClientError> {
        let status = self.status().await?;
        let auth = UploadAuth::sign(
            key,
            &status.chain_id,
            verity_types::sha256(&bytes),
            status.height,
        );
        self.put_blob_with(bytes, &auth.to_header()).await
    }

    /// Uploads several blobs at once, each signed by `key`'s account.
    pub async fn put_blobs(
        &self,
        blobs: Vec<Vec<u8>>,
        key: &AccountKey,
    ) -> Result<Vec<StoredBlob>, ClientError> {
        if blobs.is_empty() {
            return Ok(Vec::new());
        }
        let status = self.status().await?;
        futures::stream::iter(blobs.into_iter().map(|bytes| {
            let auth = UploadAuth::sign(
                key,
                &status.chain_id,
                verity_types::sha256(&bytes),
                status.height,
            );
            async move { self.put_blob_with(bytes, &auth.to_header()).await }
        }))
        .buffered(BLOB_CONCURRENCY)
        .try_collect()
        .await
    }

    /// Downloads blobs by CID, in order, `BLOB_CONCURRENCY` at a time; each `None` when the node
    /// does not hold it.
    pub async fn get_blobs(&self, cids: &[String]) -> Vec<Result<Option<Vec<u8>>, ClientError>> {
        futures::stream::iter(cids.to_vec())
            .map(|cid| async move { self.get_blob(&cid).await })
            .buffered(BLOB_CONCURRENCY)
            .collect()
            .await
    }

    /// Uploads a blob with a ready-made authorisation header.
    pub async fn put_blob_with(
        &self,
        bytes: Vec<u8>,
        authorization: &str,
    ) -> Result<StoredBlob, ClientError> {
        self.call(
            self.http
                .put(self.url("/v1/blobs"))
                .header(UPLOAD_HEADER, authorization)
                .header("content-type", "application/octet-stream")
                .body(bytes),
        )
        .await
    }

    /// Downloads a blob by CID; `None` when the node does not hold it.
    pub async fn get_blob(&self, cid: &str) -> Result<Option<Vec<u8>>, ClientError> {
        let response = self
            .send(self.http.get(self.url(&format!("/v1/blobs/{cid}"))))
            .await?;
        if response.status() == reqwest::StatusCode::NOT_FOUND {
            return Ok(None);
        }
        if !response.status().is_success() {
            return Err(Self::api_error(response).await);
        }
        let bytes = response
            .bytes()
            .await
            .map_err(|e| ClientError::Decode(e.to_string()))?;
        Ok(Some(bytes.to_vec()))
    }

    /// Signs `action` for the node's chain with the account's pending nonce (counting its
    /// transactions already pending) and a fee of at least what its weight costs (`min_fee` when
    /// higher), and submits it. A race with another transaction of the same sender, one that
    /// took the nonce between the read and the submission, is retried once with a fresh nonce.
    pub async fn submit_action(
        &self,
        key: &AccountKey,
        action: verity_types::Action,
        min_fee: verity_types::Amount,
    ) -> Result<SignedTx, ClientError> {
        let status = self.status().await?;
        let mut last = None;
        for _ in 0..2 {
            let mut body = verity_types::TxBody {
                chain_id: status.chain_id.clone(),
                nonce: self.pending_nonce(&key.address()).await?,
                fee: 0,
                action: action.clone(),
            };
            body.fee = body.required_fee(&status.fees).max(min_fee);
            let tx = body.sign(key);
            match self.submit(&tx).await {
                Ok(_) => return Ok(tx),
                Err(e) if e.is_nonce_race() => last = Some(e),
                Err(e) => return Err(e),
            }
        }
        Err(last.expect("two attempts failed"))
    }

    /// The chain's transaction prices, from its status.
    pub async fn fee_schedule(&self) -> Result<verity_types::FeeSchedule, ClientError> {
        Ok(self.status().await?.fees)
    }

    /// The nonce the account's next transaction should carry: its committed nonce, past every
    /// consecutive transaction the node already holds pending.
    pub async fn pending_nonce(&self, address: &Address) -> Result<u64, ClientError> {
        Ok(self.account(address).await?.pending_nonce)
    }

    /// The account's next nonce as the node's committed state has it.
    pub async fn nonce(&self, address: &Address) -> Result<u64, ClientError> {
        Ok(self.account(address).await?.nonce)
    }

    /// Waits until a transaction is finalized; returns its receipt.
    pub async fn wait_for_tx(
        &self,
        hash: &Hash,
        timeout: std::time::Duration,
    ) -> Result<api::Receipt, ClientError> {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            match self.tx(hash).await {
                Ok(TxView {
                    status: TxState::Finalized,
                    receipt: Some(receipt),
                    ..
                }) => return Ok(receipt),
                Ok(_) | Err(ClientError::Api { status: 404, .. }) => {}
                Err(e) => return Err(e),
            }
            if std::time::Instant::now() >= deadline {
                return Err(ClientError::NotFinalized {
                    hash: *hash,
                    waited: timeout,
                });
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    }
}
