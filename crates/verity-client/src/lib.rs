//! A typed client for a Verity node's `/v1` HTTP API.

use serde::de::DeserializeOwned;
use serde_json::{json, Value};
use thiserror::Error;
use verity_types::{Address, SignedTx};

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
        code: String,
        message: String,
    },
    #[error("unexpected response from the node: {0}")]
    Decode(String),
}

impl ClientError {
    /// Whether the node refused a transaction because its nonce raced another of the same
    /// sender's (used, taken by a pending one, or far ahead after a lost one): signing again
    /// with the account's pending nonce is the remedy.
    pub fn is_nonce_race(&self) -> bool {
        matches!(
            self,
            ClientError::Api { code, .. } if matches!(
                code.as_str(),
                "bad_nonce" | "duplicate_transaction" | "replacement_underpriced" | "nonce_too_far_ahead"
            )
        )
    }
}

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
            .build()
            .unwrap_or_default();
        Self { base, http }
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

    async fn call<T: DeserializeOwned>(
        &self,
        request: reqwest::RequestBuilder,
    ) -> Result<T, ClientError> {
        let response = self.send(request).await?;
        let status = response.status();
        let body: Value = response
            .json()
            .await
            .map_err(|e| ClientError::Decode(e.to_string()))?;
        if !status.is_success() {
            let error = &body["error"];
            return Err(ClientError::Api {
                status: status.as_u16(),
                code: error["code"].as_str().unwrap_or("unknown").to_string(),
                message: error["message"].as_str().unwrap_or("").to_string(),
            });
        }
        serde_json::from_value(body).map_err(|e| ClientError::Decode(e.to_string()))
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Submits a signed transaction; returns the node's answer (hash and status).
    pub async fn submit(&self, tx: &SignedTx) -> Result<Value, ClientError> {
        self.submit_raw(&tx.encode()).await
    }

    pub async fn submit_raw(&self, bytes: &[u8]) -> Result<Value, ClientError> {
        let body = json!({ "tx": format!("0x{}", hex::encode(bytes)) });
        self.call(self.http.post(self.url("/v1/txs")).json(&body))
            .await
    }

    pub async fn tx(&self, hash: &verity_types::Hash) -> Result<Value, ClientError> {
        self.call(self.http.get(self.url(&format!("/v1/txs/{hash}"))))
            .await
    }

    pub async fn account(&self, address: &Address) -> Result<Value, ClientError> {
        self.call(self.http.get(self.url(&format!("/v1/accounts/{address}"))))
            .await
    }

    pub async fn block(&self, height: u64) -> Result<Value, ClientError> {
        self.call(self.http.get(self.url(&format!("/v1/blocks/{height}"))))
            .await
    }

    pub async fn status(&self) -> Result<Value, ClientError> {
        self.call(self.http.get(self.url("/v1/status"))).await
    }

    /// GET of any `/v1` path, decoded as `T`.
    pub async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, ClientError> {
        self.call(self.http.get(self.url(path))).await
    }

    /// GET that answers `None` for a 404.
    pub async fn find<T: DeserializeOwned>(&self, path: &str) -> Result<Option<T>, ClientError> {
        match self.get(path).await {
            Ok(v) => Ok(Some(v)),
            Err(ClientError::Api { status: 404, .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Uploads a blob; returns the node's answer (`cid`, `hash`, `size`).
    pub async fn put_blob(&self, bytes: Vec<u8>) -> Result<Value, ClientError> {
        self.call(self.http.put(self.url("/v1/blobs")).body(bytes))
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
            let status = response.status().as_u16();
            let body: Value = response.json().await.unwrap_or_default();
            return Err(ClientError::Api {
                status,
                code: body["error"]["code"].as_str().unwrap_or("unknown").into(),
                message: body["error"]["message"].as_str().unwrap_or("").into(),
            });
        }
        let bytes = response
            .bytes()
            .await
            .map_err(|e| ClientError::Decode(e.to_string()))?;
        Ok(Some(bytes.to_vec()))
    }

    /// The chain's transaction prices, from its status.
    pub async fn fee_schedule(&self) -> Result<verity_types::FeeSchedule, ClientError> {
        let status = self.status().await?;
        serde_json::from_value(status["fees"].clone())
            .map_err(|e| ClientError::Decode(format!("status fees: {e}")))
    }

    /// The nonce the account's next transaction should carry: its committed nonce, past every
    /// consecutive transaction the node already holds pending.
    pub async fn pending_nonce(&self, address: &Address) -> Result<u64, ClientError> {
        let account = self.account(address).await?;
        account["pending_nonce"]
            .as_u64()
            .or_else(|| account["nonce"].as_u64())
            .ok_or_else(|| ClientError::Decode("account without a nonce".into()))
    }

    /// The account's next nonce as the node's committed state has it.
    pub async fn nonce(&self, address: &Address) -> Result<u64, ClientError> {
        let account = self.account(address).await?;
        account["nonce"]
            .as_u64()
            .ok_or_else(|| ClientError::Decode("account without a nonce".into()))
    }

    /// Waits until a transaction is finalized; returns its receipt.
    pub async fn wait_for_tx(
        &self,
        hash: &verity_types::Hash,
        timeout: std::time::Duration,
    ) -> Result<Value, ClientError> {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            match self.tx(hash).await {
                Ok(v) if v["status"] == "finalized" => return Ok(v["receipt"].clone()),
                Ok(_) | Err(ClientError::Api { status: 404, .. }) => {}
                Err(e) => return Err(e),
            }
            if std::time::Instant::now() >= deadline {
                return Err(ClientError::Decode(format!(
                    "transaction {hash} not finalized within {timeout:?}"
                )));
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    }
}
