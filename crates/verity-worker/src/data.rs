//! The data verifier (`docs/protocol.md` §14): the worker's enclave holds an RSA key that
//! contributors wrap their passwords to. It learns its proof jobs from the chain, takes each
//! job's wrapped password at LazAI's `POST /proof`, opens the file, checks the plaintext against
//! the registered hash, scores it, and answers with an enclave-signed AddProof.
//!
//! A request is written to disk (mode 0600) before it is acknowledged, so a restart loses none;
//! it is deleted once the chain no longer waits for the job.
//!
//! The same endpoint anchors ownership (`POST /anchor`): the enclave fetches a blob, hashes it
//! itself, and signs that the named owner registers that file.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result};
use axum::extract::rejection::JsonRejection;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use axum::{Json, Router};
use tracing::{info, warn};
use verity_client::api::{AnchorAnswer, AnchorRequest, DataJobStatus, ProofAnswer, ProofRequest};
use verity_client::Client;
use verity_data::envelope::{self, VerifierKey};
use verity_types::{
    sha256, write_secret, Address, Anchor, DataRejection, DataVerdict, EnclaveKey, Hash,
};

/// Where the data verifier listens and how contributors reach it.
#[derive(Debug, Clone)]
pub struct DataVerifierConfig {
    pub listen: SocketAddr,
    /// The URL of its `POST /proof` as contributors see it; recorded on chain.
    pub endpoint: String,
    /// An IPFS node's RPC API: a file registered with an `ipfs://CID` URL is read from it.
    pub ipfs: Option<String>,
}

/// The verifier's key and its stored requests.
pub(crate) struct DataVerifier {
    key: Arc<VerifierKey>,
    ipfs: Option<verity_data::ipfs::Ipfs>,
    requests: PathBuf,
    /// Jobs whose proof was sent and is waiting for a block.
    sent: HashSet<u64>,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for DataVerifier {
    fn drop(&mut self) {
        self.server.abort();
    }
}

fn request_path(dir: &Path, job: u64) -> PathBuf {
    dir.join(format!("{job}.json"))
}

/// A proof request as the verifier keeps it until the job closes.
#[derive(serde::Serialize, serde::Deserialize)]
struct StoredRequest {
    assigned_height: u64,
    request: ProofRequest,
}

/// Loads the RSA key at `path`, creating it (mode 0600) on first use.
fn load_or_create_key(path: &Path) -> Result<VerifierKey> {
    if path.exists() {
        let pem = std::fs::read_to_string(path)
            .with_context(|| format!("reading the data verifier key {}", path.display()))?;
        return VerifierKey::from_pem(&pem).with_context(|| format!("{}", path.display()));
    }
    let key = VerifierKey::generate()?;
    write_secret(path, key.to_pem()?.as_bytes())?;
    Ok(key)
}

#[derive(Clone)]
struct Endpoint {
    client: Client,
    address: Address,
    requests: PathBuf,
    chain_id: String,
    enclave: Arc<EnclaveKey>,
}

fn answer(status: StatusCode, error: Option<String>) -> (StatusCode, Json<ProofAnswer>) {
    (
        status,
        Json(ProofAnswer {
            success: error.is_none(),
            error,
        }),
    )
}

/// `POST /proof`: accepts a request for a job the chain assigned to this verifier, for the file
/// the job names, and stores it.
async fn take_request(
    State(endpoint): State<Endpoint>,
    body: Result<Json<ProofRequest>, JsonRejection>,
) -> (StatusCode, Json<ProofAnswer>) {
    let request = match body {
        Ok(Json(request)) => request,
        Err(e) => return answer(StatusCode::BAD_REQUEST, Some(e.body_text())),
    };
    if hex::decode(request.encryption_key.trim().trim_start_matches("0x")).is_err() {
        return answer(
            StatusCode::BAD_REQUEST,
            Some("encryption_key is not hex".into()),
        );
    }
    let job = match endpoint.client.data_job(request.job_id).await {
        Ok(Some(job)) => job,
        Ok(None) => {
            return answer(
                StatusCode::NOT_FOUND,
                Some(format!("no data job {}", request.job_id)),
            )
        }
        Err(e) => {
            return answer(
                StatusCode::SERVICE_UNAVAILABLE,
                Some(format!("cannot reach the chain: {e}")),
            )
        }
    };
    if job.file_id != request.file_id {
        return answer(
            StatusCode::BAD_REQUEST,
            Some(format!(
                "job {} is for file {}, not {}",
                job.job_id, job.file_id, request.file_id
            )),
        );
    }
    if request.signer(&endpoint.chain_id) != Some(job.requester) {
        return answer(
            StatusCode::UNAUTHORIZED,
            Some(format!(
                "the request must be signed by job {}'s requester {} for chain {}",
                job.job_id, job.requester, endpoint.chain_id
            )),
        );
    }
    if job.verifier != Some(endpoint.address) || job.status != DataJobStatus::Assigned {
        return answer(
            StatusCode::CONFLICT,
            Some(format!(
                "job {} is not waiting for this verifier ({})",
                job.job_id, endpoint.address
            )),
        );
    }
    let stored = serde_json::to_vec(&StoredRequest {
        // Drawn in the block after the request: a view of the chain from that height on lists
        // the job while it is open.
        assigned_height: job.requested_height.saturating_add(1),
        request,
    })
    .expect("a request serializes");
    if let Err(e) = write_secret(&request_path(&endpoint.requests, job.job_id), &stored) {
        warn!(job = job.job_id, error = %e, "cannot store a proof request");
        return answer(
            StatusCode::INTERNAL_SERVER_ERROR,
            Some("the verifier cannot store the request".into()),
        );
    }
    info!(job = job.job_id, file = job.file_id, "proof request taken");
    answer(StatusCode::OK, None)
}

/// `POST /anchor`: hashes the blob inside the enclave and signs the owner's claim to it.
async fn anchor(
    State(endpoint): State<Endpoint>,
    body: Result<Json<AnchorRequest>, JsonRejection>,
) -> Result<Json<AnchorAnswer>, (StatusCode, Json<ProofAnswer>)> {
    let request = body.map_err(|e| answer(StatusCode::BAD_REQUEST, Some(e.body_text())))?;
    let bytes = match endpoint.client.get_blob(&request.cid).await {
        Ok(Some(bytes)) => bytes,
        Ok(None) => {
            return Err(answer(
                StatusCode::NOT_FOUND,
                Some(format!("the blob store has no {}", request.cid)),
            ))
        }
        Err(e) => {
            return Err(answer(
                StatusCode::BAD_REQUEST,
                Some(format!("cannot fetch {}: {e}", request.cid)),
            ))
        }
    };
    let id = sha256(&bytes);
    let anchor = Anchor::sign(
        &endpoint.enclave,
        &endpoint.chain_id,
        request.asset,
        &id,
        &request.owner,
    );
    info!(%id, owner = %request.owner, "ownership anchored");
    Ok(Json(AnchorAnswer { id, anchor }))
}

impl DataVerifier {
    /// Loads (or creates) the key under `home` and starts `POST /proof` and `POST /anchor` on
    /// `config.listen`.
    pub(crate) async fn start(
        home: &Path,
        config: &DataVerifierConfig,
        client: Client,
        address: Address,
        chain_id: &str,
        enclave: &EnclaveKey,
    ) -> Result<Self> {
        let key = load_or_create_key(&home.join("data-verifier.pem"))?;
        let requests = home.join("data-requests");
        std::fs::create_dir_all(&requests)
            .with_context(|| format!("creating {}", requests.display()))?;
        let listener = tokio::net::TcpListener::bind(config.listen)
            .await
            .with_context(|| format!("binding the data verifier to {}", config.listen))?;
        let app = Router::new()
            .route("/proof", post(take_request))
            .route("/anchor", post(anchor))
            .with_state(Endpoint {
                client,
                address,
                requests: requests.clone(),
                chain_id: chain_id.to_string(),
                enclave: Arc::new(EnclaveKey::from_seed(enclave.seed())),
            });
        let server = tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app).await {
                warn!(error = %e, "the data verifier's endpoint stopped");
            }
        });
        info!(listen = %config.listen, endpoint = %config.endpoint, "data verifier listening");
        Ok(Self {
            key: Arc::new(key),
            ipfs: config.ipfs.as_deref().map(verity_data::ipfs::Ipfs::new),
            requests,
            sent: HashSet::new(),
            server,
        })
    }

    pub(crate) fn public_der(&self) -> Vec<u8> {
        self.key.public_der()
    }

    /// The jobs to prove now: open on chain at `height`, with a stored request, not sent yet.
    /// A request whose job the chain no longer lists at a height where it would be listed if
    /// open is deleted; one taken after the view was read waits for the next view.
    pub(crate) fn due(&mut self, open: &[u64], height: u64) -> Vec<(u64, ProofRequest)> {
        self.sent.retain(|job| open.contains(job));
        let mut due = Vec::new();
        let Ok(entries) = std::fs::read_dir(&self.requests) else {
            return due;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let Some(job) = path
                .file_stem()
                .and_then(|s| s.to_str())
                .and_then(|s| s.parse::<u64>().ok())
            else {
                continue;
            };
            let stored = std::fs::read(&path)
                .ok()
                .and_then(|b| serde_json::from_slice::<StoredRequest>(&b).ok());
            let Some(stored) = stored else {
                warn!(job, path = %path.display(), "unreadable proof request; deleting it");
                let _ = std::fs::remove_file(&path);
                continue;
            };
            if !open.contains(&job) {
                if height >= stored.assigned_height {
                    let _ = std::fs::remove_file(&path);
                }
                continue;
            }
            if !self.sent.contains(&job) {
                due.push((job, stored.request));
            }
        }
        due.sort_by_key(|(job, _)| *job);
        due
    }

    pub(crate) fn mark_sent(&mut self, job: u64) {
        self.sent.insert(job);
    }

    pub(crate) fn key(&self) -> Arc<VerifierKey> {
        self.key.clone()
    }

    /// The encrypted file's bytes: from the IPFS node when the file's URL is `ipfs://CID` and
    /// one is configured, else (or when IPFS has none) from the node's blob store. `examine`
    /// checks them against the registered hash either way.
    pub(crate) async fn ciphertext(
        &self,
        client: &Client,
        file: &verity_client::api::DataFile,
    ) -> Result<Option<Vec<u8>>> {
        if let (Some(ipfs), Some(cid)) = (&self.ipfs, file.url.strip_prefix("ipfs://")) {
            match verity_data::ipfs::parse(cid) {
                Ok(cid) => match tokio::time::timeout(IPFS_TIMEOUT, ipfs.cat(&cid)).await {
                    Ok(Ok(bytes)) => return Ok(Some(bytes)),
                    Ok(Err(e)) => {
                        warn!(file = file.file_id, error = %e, "the IPFS copy is unavailable")
                    }
                    Err(_) => warn!(file = file.file_id, "the IPFS node did not answer in time"),
                },
                Err(e) => {
                    warn!(file = file.file_id, error = %e, "the file's IPFS URL is not a CID")
                }
            }
        }
        Ok(client
            .get_blob(&verity_data::cid_of(&file.data.hash))
            .await?)
    }
}

/// How long a verifier waits for the IPFS node's copy of a file.
const IPFS_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// How many labeled rows of `data` (`verity_data::quality::labeled`) the classifier labels as
/// their `label` column says: the rows are one batch input, and the output named `label` (or the
/// first) is either the classes or one row of scores per input row (its argmax, first on ties).
pub fn correct_predictions(
    data: &[u8],
    label: &str,
    model: &verity_infer::Model,
    engine: &verity_infer::Engine,
) -> Result<u64> {
    use verity_infer::{Data, Tensor};
    let (rows, labels) = verity_data::quality::labeled(data, label)?;
    let Some(width) = rows.first().map(Vec::len) else {
        return Ok(0);
    };
    let input = Tensor::new(vec![rows.len(), width], Data::F32(rows.concat()))
        .context("the rows as one input")?;
    let run = engine
        .run(model, vec![input], false)
        .context("running the model on the rows")?;
    let (_, output) = run
        .outputs
        .iter()
        .find(|(name, _)| name == "label")
        .or_else(|| run.outputs.first())
        .context("the model has no output")?;
    let predicted: Vec<i64> = match output.data() {
        Data::I64(v) => v.clone(),
        Data::F32(v) => {
            let classes = v.len() / labels.len().max(1);
            v.chunks(classes.max(1))
                .map(|row| {
                    (0..row.len()).fold(0, |best, i| if row[i] > row[best] { i } else { best })
                        as i64
                })
                .collect()
        }
        other => anyhow::bail!(
            "the model's output is {:?}, not labels or scores",
            other.dtype()
        ),
    };
    Ok(predicted
        .iter()
        .zip(&labels)
        .filter(|(p, l)| p == l)
        .count() as u64)
}

/// A file's evaluation as the verifier runs it: the label column, the registered model, and
/// the engine to run it on.
pub struct Evaluator<'a> {
    pub label: &'a str,
    pub model: &'a verity_infer::Model,
    pub engine: &'a verity_infer::Engine,
}

/// What the enclave finds in a file: the plaintext's hash (zero when it did not open) and the
/// verdict. `ciphertext` is what the blob store gave for the file's registered blob. With an
/// evaluator, the score is multiplied by the model's accuracy on the rows
/// (`verity_data::quality::with_accuracy`); a label column the file lacks is `unparseable`.
pub fn examine(
    key: &VerifierKey,
    ciphertext: Option<&[u8]>,
    registered_blob: &Hash,
    wrapped_password: &str,
    registered_plaintext: &Hash,
    evaluator: Option<&Evaluator<'_>>,
) -> (Hash, DataVerdict) {
    let rejected = |hash, reason| (hash, DataVerdict::Rejected { reason });
    let Some(ciphertext) = ciphertext.filter(|c| sha256(c) == *registered_blob) else {
        return rejected(Hash::ZERO, DataRejection::Unavailable);
    };
    let Ok(password) = key.unwrap_password(wrapped_password) else {
        return rejected(Hash::ZERO, DataRejection::Undecryptable);
    };
    let Ok(plaintext) = envelope::decrypt(ciphertext, &password) else {
        return rejected(Hash::ZERO, DataRejection::Undecryptable);
    };
    let hash = sha256(&plaintext);
    if hash != *registered_plaintext {
        return rejected(hash, DataRejection::HashMismatch);
    }
    let Ok(quality) = verity_data::quality::score(&plaintext) else {
        return rejected(hash, DataRejection::Unparseable);
    };
    let score = match evaluator {
        None => quality.score,
        Some(e) => match correct_predictions(&plaintext, e.label, e.model, e.engine) {
            Ok(correct) => verity_data::quality::with_accuracy(&quality, correct),
            Err(_) => return rejected(hash, DataRejection::Unparseable),
        },
    };
    (hash, DataVerdict::Scored { score })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(job: u64) -> ProofRequest {
        ProofRequest {
            job_id: job,
            file_id: 1,
            file_url: String::new(),
            encryption_key: "00".into(),
            encryption_seed: None,
            proof_url: None,
            nonce: None,
            signature: None,
        }
    }

    #[tokio::test]
    async fn a_request_taken_after_the_view_was_read_is_kept_and_a_closed_jobs_is_deleted() {
        let dir = tempfile::tempdir().unwrap();
        let mut verifier = DataVerifier {
            key: Arc::new(VerifierKey::generate().unwrap()),
            ipfs: None,
            requests: dir.path().to_path_buf(),
            sent: HashSet::new(),
            server: tokio::spawn(async {}),
        };
        let store = |job: u64, assigned_height: u64| {
            let stored = StoredRequest {
                assigned_height,
                request: request(job),
            };
            write_secret(
                &request_path(dir.path(), job),
                &serde_json::to_vec(&stored).unwrap(),
            )
            .unwrap();
        };
        store(1, 10); // open at height 12
        store(2, 10); // closed: not listed at height 12
        store(3, 13); // taken after the height-12 view was read
        std::fs::write(request_path(dir.path(), 4), b"not json").unwrap();
        let due = verifier.due(&[1], 12);
        assert_eq!(due.iter().map(|(job, _)| *job).collect::<Vec<_>>(), [1]);
        assert!(request_path(dir.path(), 1).exists());
        assert!(!request_path(dir.path(), 2).exists());
        assert!(request_path(dir.path(), 3).exists());
        assert!(!request_path(dir.path(), 4).exists());
        // Once sent, a job is not due again while the chain still lists it.
        verifier.mark_sent(1);
        assert!(verifier.due(&[1, 3], 13).iter().all(|(job, _)| *job == 3));
    }

    #[test]
    fn a_file_is_scored_only_when_it_opens_to_the_registered_plaintext() {
        let key = VerifierKey::generate().unwrap();
        let password = "0a1b";
        let plaintext = b"a,b\n1,2\n1,2\n,4\n";
        let ciphertext = envelope::encrypt(plaintext, password).unwrap().into_bytes();
        let blob = sha256(&ciphertext);
        let wrapped = envelope::wrap_password_der(password, &key.public_der()).unwrap();
        let registered = sha256(plaintext);
        let quality = verity_data::quality::score(plaintext).unwrap();
        assert_eq!(
            examine(&key, Some(&ciphertext), &blob, &wrapped, &registered, None),
            (
                registered,
                DataVerdict::Scored {
                    score: quality.score
                }
            )
        );
        let reason = |(_, verdict)| match verdict {
            DataVerdict::Rejected { reason } => reason,
            other => panic!("{other:?}"),
        };
        // Another plaintext than the one registered.
        assert_eq!(
            reason(examine(
                &key,
                Some(&ciphertext),
                &blob,
                &wrapped,
                &Hash([1; 32]),
                None
            )),
            DataRejection::HashMismatch
        );
        // Bytes that are not the registered blob, or none.
        assert_eq!(
            reason(examine(
                &key,
                Some(b"other"),
                &blob,
                &wrapped,
                &registered,
                None
            )),
            DataRejection::Unavailable
        );
        assert_eq!(
            reason(examine(&key, None, &blob, &wrapped, &registered, None)),
            DataRejection::Unavailable
        );
        // A password wrapped to another key, or the wrong password.
        let other = VerifierKey::generate().unwrap();
        let elsewhere = envelope::wrap_password_der(password, &other.public_der()).unwrap();
        assert_eq!(
            reason(examine(
                &key,
                Some(&ciphertext),
                &blob,
                &elsewhere,
                &registered,
                None
            )),
            DataRejection::Undecryptable
        );
        let wrong = envelope::wrap_password_der("ffff", &key.public_der()).unwrap();
        assert_eq!(
            reason(examine(
                &key,
                Some(&ciphertext),
                &blob,
                &wrong,
                &registered,
                None
            )),
            DataRejection::Undecryptable
        );
        // Binary data that opens and matches, but is no table.
        let binary = [0xff_u8, 0xfe, 0x00];
        let sealed = envelope::encrypt(&binary, password).unwrap().into_bytes();
        assert_eq!(
            reason(examine(
                &key,
                Some(&sealed),
                &sha256(&sealed),
                &wrapped,
                &sha256(&binary),
                None
            )),
            DataRejection::Unparseable
        );
    }
}
