//! An IPFS node through the Kubo RPC API (`/api/v0/add`, `/api/v0/cat`, `/api/v0/block/get`),
//! which Kubo and js-ipfs both serve. Nothing it answers is trusted: an added file's CID must be
//! the one [`crate::unixfs::file_cid`] computes, and fetched bytes must hash to the CID asked
//! for, so an IPFS node and the embedded store name every file alike.

use cid::Cid;
use thiserror::Error;

use crate::unixfs;

#[derive(Debug, Error)]
pub enum IpfsError {
    #[error("the IPFS node at {url} did not answer: {reason}")]
    Unreachable { url: String, reason: String },
    #[error("the IPFS node answered {status}: {body}")]
    Refused { status: u16, body: String },
    #[error("the IPFS node's answer is not what the API returns: {0}")]
    BadAnswer(String),
    #[error("not a CID: {0}")]
    BadCid(String),
    #[error("the IPFS node named the file {got}; its bytes make {expected}")]
    CidMismatch { expected: String, got: String },
}

/// A client of one IPFS node's RPC API, e.g. `http://127.0.0.1:5001`.
#[derive(Clone)]
pub struct Ipfs {
    http: reqwest::Client,
    url: String,
}

impl Ipfs {
    pub fn new(url: &str) -> Self {
        Self {
            http: reqwest::Client::new(),
            url: url.trim_end_matches('/').to_string(),
        }
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    async fn post(
        &self,
        path: &str,
        form: Option<reqwest::multipart::Form>,
    ) -> Result<Vec<u8>, IpfsError> {
        let mut request = self.http.post(format!("{}{path}", self.url));
        if let Some(form) = form {
            request = request.multipart(form);
        }
        let unreachable = |e: reqwest::Error| IpfsError::Unreachable {
            url: self.url.clone(),
            reason: e.to_string(),
        };
        let response = request.send().await.map_err(unreachable)?;
        let status = response.status();
        let body = response.bytes().await.map_err(unreachable)?;
        if !status.is_success() {
            return Err(IpfsError::Refused {
                status: status.as_u16(),
                body: String::from_utf8_lossy(&body).chars().take(300).collect(),
            });
        }
        Ok(body.to_vec())
    }

    /// Adds `bytes` as a file (CIDv1, raw leaves) and returns its CID, checked against ours.
    pub async fn add(&self, bytes: Vec<u8>) -> Result<Cid, IpfsError> {
        let expected = unixfs::blocks(&bytes).0;
        // js-ipfs refuses a part without a content type; Kubo does not mind one.
        let part = reqwest::multipart::Part::bytes(bytes)
            .file_name("file")
            .mime_str("application/octet-stream")
            .expect("a valid MIME type");
        let form = reqwest::multipart::Form::new().part("file", part);
        let body = self
            .post(
                "/api/v0/add?cid-version=1&raw-leaves=true&pin=true&quieter=true",
                Some(form),
            )
            .await?;
        // One JSON object per line; the file's is the last.
        let last = body
            .split(|&b| b == b'\n')
            .rfind(|line| !line.is_empty())
            .ok_or_else(|| IpfsError::BadAnswer("an empty answer to add".into()))?;
        let answer: serde_json::Value =
            serde_json::from_slice(last).map_err(|e| IpfsError::BadAnswer(e.to_string()))?;
        let named = answer["Hash"]
            .as_str()
            .ok_or_else(|| IpfsError::BadAnswer(format!("no Hash in {answer}")))?;
        let got = parse(named)?;
        if got != expected {
            return Err(IpfsError::CidMismatch {
                expected: expected.to_string(),
                got: got.to_string(),
            });
        }
        Ok(got)
    }

    /// The file `cid` names, checked: its bytes must make the same CID.
    pub async fn cat(&self, cid: &Cid) -> Result<Vec<u8>, IpfsError> {
        let bytes = self.post(&format!("/api/v0/cat?arg={cid}"), None).await?;
        let made = unixfs::blocks(&bytes).0;
        if made != *cid {
            return Err(IpfsError::CidMismatch {
                expected: made.to_string(),
                got: cid.to_string(),
            });
        }
        Ok(bytes)
    }

    /// One block, checked against its CID's digest.
    pub async fn block(&self, cid: &Cid) -> Result<Vec<u8>, IpfsError> {
        let bytes = self
            .post(&format!("/api/v0/block/get?arg={cid}"), None)
            .await?;
        let digest = <sha2::Sha256 as sha2::Digest>::digest(&bytes);
        if cid.hash().digest() != digest.as_slice() {
            return Err(IpfsError::BadAnswer(format!(
                "block {cid}'s bytes do not hash to its CID"
            )));
        }
        Ok(bytes)
    }
}

/// A CID in any base (js-ipfs answers base58btc unless asked otherwise).
pub fn parse(text: &str) -> Result<Cid, IpfsError> {
    Cid::try_from(text.trim()).map_err(|e| IpfsError::BadCid(format!("{text}: {e}")))
}
