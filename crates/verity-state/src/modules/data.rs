//! `data`: contributed files, quality-proof jobs and Data Anchor Tokens (`docs/protocol.md` §14).
//!
//! A contributor registers an encrypted file with the hash of its plaintext (AddFile) and asks
//! for a proof with an escrowed fee (RequestProof). The next block's seed draws a verifier among
//! attested workers that serve data verification (ServeData), weighted like task workers. Only
//! that verifier may answer (AddProof), with its enclave's signature over the job, the file, the
//! plaintext hash and the verdict; a score needs the registered plaintext hash. RequestReward
//! mints the file's DAT to its owner, once per scored proof and only for the file it proves.
//! A job left unanswered expires and its fee goes back.
//!
//! A task that names a file pays the file's DAT holders a genesis share of its fee, pro rata,
//! at O(1) cost: the share goes to the data pool account and raises the file's earnings per
//! DAT; each holder's earnings are settled into what it may claim whenever its balance changes
//! (ClaimDataRewards pays them out).

use serde::{Deserialize, Serialize};
use verity_types::{
    sha256, verify_data_key, Address, Amount, DataProof, DataRef, DataVerdict, Hash, MAX_SCORE,
};

use crate::modules::{accounts, enclaves, reputation, schedule, sortition, staking, tasks};
use crate::overlay::Overlay;
use crate::store::Table;
use crate::{BlockCtx, StateError, TxFailure};

/// Domain of the verifier draw's entropy.
const DRAW_DOMAIN: &[u8] = b"verity/data-draw/v1";
/// Names a data job in a verifier's timeout record.
const JOB_TIMEOUT_DOMAIN: &[u8] = b"verity/data-job-timeout/v1";

/// Key prefixes under [`Table::Data`].
const NEXT_FILE: &[u8] = b"nf";
const NEXT_JOB: &[u8] = b"nj";
const FILE: u8 = b'f';
const OWNER_INDEX: u8 = b'o';
const PERMISSION: u8 = b'p';
const JOB: u8 = b'j';
const OPEN_JOB: u8 = b'v';
const VERIFIER: u8 = b'k';
const BALANCE: u8 = b'b';
const SUPPLY: u8 = b's';
const HOLDER_INDEX: u8 = b'h';
const FILE_JOB: u8 = b'i';
const EARNED_PER_DAT: u8 = b'a';
const HOLDER: u8 = b'c';

/// Fixed-point scale of the earnings per DAT base unit.
const EARNINGS_SCALE: u128 = 1_000_000_000_000_000_000;

/// The account that holds the data shares of task fees until their DAT holders claim them.
pub fn pool_account() -> Address {
    let digest = sha256(b"verity/data-pool/v1");
    Address(digest.0[..20].try_into().expect("20 bytes"))
}

/// Genesis parameters of the data module.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct DataParams {
    /// Blocks a drawn verifier has to answer before the job expires and its fee returns.
    pub proof_timeout_blocks: u64,
    /// Smallest proof fee.
    #[serde(with = "verity_types::amount")]
    pub min_proof_fee: Amount,
    /// DAT base units minted per score point: a perfect score (10 000) mints 10 000 × this.
    #[serde(with = "verity_types::amount")]
    pub dat_per_point: Amount,
}

impl Default for DataParams {
    fn default() -> Self {
        Self {
            proof_timeout_blocks: 100,
            min_proof_fee: 1,
            // A perfect score mints one whole DAT (18 decimals).
            dat_per_point: verity_types::ONE_TOKEN / u128::from(MAX_SCORE),
        }
    }
}

/// A registered file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct File {
    pub file_id: u64,
    pub owner: Address,
    /// The encrypted file in the blob store.
    #[schema(value_type = Object)]
    pub data: DataRef,
    /// An outside copy (IPFS, HTTP); may be empty.
    pub url: String,
    /// SHA-256 of the plaintext: a proof scores only this plaintext.
    pub plaintext_hash: Hash,
    /// A registered model whose accuracy on the rows multiplies the score.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub evaluation: Option<verity_types::Evaluation>,
    pub registered_height: u64,
    /// The best score any proof gave it, once one did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub best_score: Option<u32>,
    /// DAT minted for it so far.
    #[serde(with = "verity_types::amount")]
    #[schema(schema_with = verity_types::schema::amount)]
    pub dat_supply: Amount,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum JobStatus {
    /// Waiting for the next block's draw.
    Requested,
    Assigned,
    /// The verifier answered; see `verdict`.
    Proven,
    /// Nobody answered in time (or nobody could be drawn); the fee went back.
    Expired,
}

/// One proof job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Job {
    pub job_id: u64,
    pub file_id: u64,
    pub requester: Address,
    #[serde(with = "verity_types::amount")]
    #[schema(schema_with = verity_types::schema::amount)]
    pub fee: Amount,
    pub status: JobStatus,
    pub verifier: Option<Address>,
    pub requested_height: u64,
    /// The answer must land before this height.
    pub expires_height: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verdict: Option<DataVerdict>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proven_height: Option<u64>,
    /// Whether its DAT was minted.
    pub rewarded: bool,
}

/// A worker serving data verification.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct DataVerifier {
    pub worker: Address,
    /// DER (SPKI) RSA public key held by its enclave: contributors wrap passwords to it.
    #[serde(with = "verity_types::serde_hex::bytes")]
    #[schema(schema_with = verity_types::schema::hex_bytes)]
    pub rsa_public_key: Vec<u8>,
    /// Where its `POST /proof` listens.
    pub endpoint: String,
    /// The enclave key that signed the RSA key.
    #[serde(with = "verity_types::serde_hex::array")]
    #[schema(schema_with = verity_types::schema::hex_bytes)]
    pub enclave_key: [u8; 32],
    pub registered_height: u64,
}

/// A key: its prefix, then the parts (addresses as 20 bytes, ids big-endian, so that a scan
/// under a prefix runs in id order).
fn key(prefix: u8, parts: &[&[u8]]) -> Vec<u8> {
    let mut key = vec![prefix];
    for part in parts {
        key.extend_from_slice(part);
    }
    key
}

fn file_key(id: u64) -> Vec<u8> {
    key(FILE, &[&id.to_be_bytes()])
}

fn owner_key(owner: &Address, id: u64) -> Vec<u8> {
    key(OWNER_INDEX, &[&owner.0, &id.to_be_bytes()])
}

fn permission_key(file: u64, grantee: &Address) -> Vec<u8> {
    key(PERMISSION, &[&file.to_be_bytes(), &grantee.0])
}

fn job_key(id: u64) -> Vec<u8> {
    key(JOB, &[&id.to_be_bytes()])
}

fn open_job_key(verifier: &Address, job: u64) -> Vec<u8> {
    key(OPEN_JOB, &[&verifier.0, &job.to_be_bytes()])
}

fn file_job_key(file: u64, job: u64) -> Vec<u8> {
    key(FILE_JOB, &[&file.to_be_bytes(), &job.to_be_bytes()])
}

fn verifier_key(worker: &Address) -> Vec<u8> {
    key(VERIFIER, &[&worker.0])
}

fn balance_key(file: u64, holder: &Address) -> Vec<u8> {
    key(BALANCE, &[&file.to_be_bytes(), &holder.0])
}

fn supply_key(file: u64) -> Vec<u8> {
    key(SUPPLY, &[&file.to_be_bytes()])
}

/// The ids that end the index keys under `prefix` (a key built with no id), from `from` on.
fn ids_under(
    state: &Overlay<'_>,
    prefix: &[u8],
    from: u64,
    limit: usize,
) -> Result<Vec<u64>, StateError> {
    let start = [prefix, &from.to_be_bytes()].concat();
    Ok(state
        .scan_from(Table::Data, prefix, &start, limit)?
        .into_iter()
        .filter_map(|(key, _)| key[prefix.len()..].try_into().ok().map(u64::from_be_bytes))
        .collect())
}

fn u64_at(state: &Overlay<'_>, key: &[u8]) -> Result<u64, StateError> {
    match state.get(Table::Data, key)? {
        None => Ok(0),
        Some(raw) => Ok(u64::from_be_bytes(
            raw.try_into()
                .map_err(|_| StateError::Corrupt("data counter"))?,
        )),
    }
}

/// An amount (a balance, a supply, earnings per DAT); zero when absent.
fn u128_at(state: &Overlay<'_>, key: &[u8]) -> Result<u128, StateError> {
    match state.get(Table::Data, key)? {
        None => Ok(0),
        Some(raw) => Ok(u128::from_le_bytes(
            raw.try_into()
                .map_err(|_| StateError::Corrupt("data amount"))?,
        )),
    }
}

/// Takes the next id from the counter at `key`; ids start at 1.
fn next_id(state: &mut Overlay<'_>, key: &[u8]) -> Result<u64, TxFailure> {
    let id = u64_at(state, key)?
        .checked_add(1)
        .ok_or(TxFailure::Overflow)?;
    state.put(Table::Data, key.to_vec(), id.to_be_bytes().to_vec());
    Ok(id)
}

pub fn file(state: &Overlay<'_>, id: u64) -> Result<Option<File>, StateError> {
    state.get_json(Table::Data, &file_key(id), "data file")
}

pub fn job(state: &Overlay<'_>, id: u64) -> Result<Option<Job>, StateError> {
    state.get_json(Table::Data, &job_key(id), "data job")
}

pub fn verifier(state: &Overlay<'_>, worker: &Address) -> Result<Option<DataVerifier>, StateError> {
    state.get_json(Table::Data, &verifier_key(worker), "data verifier")
}

pub fn balance(state: &Overlay<'_>, file: u64, holder: &Address) -> Result<Amount, StateError> {
    match state.get(Table::Data, &balance_key(file, holder))? {
        None => Ok(0),
        Some(raw) => Ok(u128::from_le_bytes(
            raw.try_into()
                .map_err(|_| StateError::Corrupt("DAT balance"))?,
        )),
    }
}

fn holder_key(holder: &Address, file: u64) -> Vec<u8> {
    key(HOLDER_INDEX, &[&holder.0, &file.to_be_bytes()])
}

fn put_balance(state: &mut Overlay<'_>, file: u64, holder: &Address, amount: Amount) {
    let key = balance_key(file, holder);
    if amount == 0 {
        state.delete(Table::Data, key);
        state.delete(Table::Data, holder_key(holder, file));
    } else {
        state.put(Table::Data, key, amount.to_le_bytes().to_vec());
        state.put(Table::Data, holder_key(holder, file), Vec::new());
    }
}

pub fn may_use(state: &Overlay<'_>, file: &File, user: &Address) -> Result<bool, StateError> {
    Ok(file.owner == *user
        || state
            .get(Table::Data, &permission_key(file.file_id, user))?
            .is_some())
}

/// Files by id from `after` (exclusive), optionally one owner's, at most `limit`.
pub fn files(
    state: &Overlay<'_>,
    owner: Option<&Address>,
    after: u64,
    limit: usize,
) -> Result<Vec<File>, StateError> {
    let start = after.saturating_add(1);
    let ids: Vec<u64> = match owner {
        Some(owner) => ids_under(state, &key(OWNER_INDEX, &[&owner.0]), start, limit)?,
        None => (start..=u64_at(state, NEXT_FILE)?).take(limit).collect(),
    };
    ids.into_iter()
        .filter_map(|id| file(state, id).transpose())
        .collect()
}

/// Jobs still waiting for `verifier`'s answer, oldest first.
pub fn open_jobs(
    state: &Overlay<'_>,
    verifier: &Address,
    limit: usize,
) -> Result<Vec<Job>, StateError> {
    ids_under(state, &key(OPEN_JOB, &[&verifier.0]), 0, limit)?
        .into_iter()
        .filter_map(|id| job(state, id).transpose())
        .collect()
}

/// A file's proof jobs by id after `after`.
pub fn jobs_of(
    state: &Overlay<'_>,
    file: u64,
    after: u64,
    limit: usize,
) -> Result<Vec<Job>, StateError> {
    let prefix = key(FILE_JOB, &[&file.to_be_bytes()]);
    ids_under(state, &prefix, after.saturating_add(1), limit)?
        .into_iter()
        .filter_map(|id| job(state, id).transpose())
        .collect()
}

/// ServeData: an attested worker offers data verification with an RSA key its live enclave
/// signed. It enters the verifier pool with its task draw weight.
pub fn serve(
    state: &mut Overlay<'_>,
    ctx: &BlockCtx<'_>,
    worker: &Address,
    rsa_public_key: &[u8],
    endpoint: &str,
    signature: &[u8; 64],
) -> Result<(), TxFailure> {
    if rsa_public_key.is_empty() {
        return Err(TxFailure::Invalid {
            reason: "the RSA public key is empty".into(),
        });
    }
    if !(endpoint.starts_with("http://") || endpoint.starts_with("https://")) {
        return Err(TxFailure::Invalid {
            reason: format!("the endpoint {endpoint:?} is not an http(s) URL"),
        });
    }
    let enclave = enclaves::current(state, worker)?
        .filter(|e| enclaves::is_usable(state, e, ctx.timestamp_ms).unwrap_or(false))
        .ok_or_else(|| TxFailure::Unauthorized {
            reason: format!("{worker} has no live attested enclave"),
        })?;
    verify_data_key(
        &ctx.genesis.chain_id,
        worker,
        rsa_public_key,
        &enclave.key,
        signature,
    )
    .map_err(|_| TxFailure::Unauthorized {
        reason: "the RSA key is not signed by the worker's registered enclave key".into(),
    })?;
    let record = DataVerifier {
        worker: *worker,
        rsa_public_key: rsa_public_key.to_vec(),
        endpoint: endpoint.to_string(),
        enclave_key: enclave.key,
        registered_height: ctx.height,
    };
    state.put_json(Table::Data, verifier_key(worker), &record);
    Ok(())
}

/// AddFile: registers an encrypted file under a new sequential id.
pub fn add_file(
    state: &mut Overlay<'_>,
    ctx: &BlockCtx<'_>,
    owner: &Address,
    data: &DataRef,
    url: &str,
    plaintext_hash: &Hash,
    evaluation: Option<&verity_types::Evaluation>,
) -> Result<u64, TxFailure> {
    if data.size == 0 {
        return Err(TxFailure::Invalid {
            reason: "a contributed file must not be empty".into(),
        });
    }
    if !data.encrypted {
        return Err(TxFailure::Invalid {
            reason: "a contributed file must be encrypted (DataRef.encrypted)".into(),
        });
    }
    if let Some(e) = evaluation {
        if e.label.trim().is_empty() {
            return Err(TxFailure::Invalid {
                reason: "the label column must be named".into(),
            });
        }
        if crate::modules::registry::model(state, &e.model_id)?.is_none() {
            return Err(TxFailure::NotFound {
                what: format!("model {}", e.model_id),
            });
        }
    }
    let file_id = next_id(state, NEXT_FILE)?;
    let record = File {
        file_id,
        owner: *owner,
        data: *data,
        url: url.to_string(),
        plaintext_hash: *plaintext_hash,
        evaluation: evaluation.cloned(),
        registered_height: ctx.height,
        best_score: None,
        dat_supply: 0,
    };
    state.put_json(Table::Data, file_key(file_id), &record);
    state.put(Table::Data, owner_key(owner, file_id), Vec::new());
    Ok(file_id)
}

fn owned_file(state: &Overlay<'_>, sender: &Address, file_id: u64) -> Result<File, TxFailure> {
    let record = file(state, file_id)?.ok_or_else(|| TxFailure::NotFound {
        what: format!("data file {file_id}"),
    })?;
    if record.owner != *sender {
        return Err(TxFailure::Unauthorized {
            reason: format!(
                "only the owner {} may do this for file {file_id}",
                record.owner
            ),
        });
    }
    Ok(record)
}

/// AddPermission: the owner lets `grantee` use the file in tasks.
pub fn add_permission(
    state: &mut Overlay<'_>,
    sender: &Address,
    file_id: u64,
    grantee: &Address,
) -> Result<(), TxFailure> {
    owned_file(state, sender, file_id)?;
    state.put(Table::Data, permission_key(file_id, grantee), Vec::new());
    Ok(())
}

/// RequestProof: escrows `fee` and queues the job for the next block's draw. Only the owner or
/// a permitted user may have the file checked, so nobody can spend a verifier on another's file
/// to grief it.
pub fn request_proof(
    state: &mut Overlay<'_>,
    ctx: &BlockCtx<'_>,
    sender: &Address,
    file_id: u64,
    fee: Amount,
) -> Result<u64, TxFailure> {
    let record = file(state, file_id)?.ok_or_else(|| TxFailure::NotFound {
        what: format!("data file {file_id}"),
    })?;
    if !may_use(state, &record, sender)? {
        return Err(TxFailure::Unauthorized {
            reason: format!("{sender} may not use file {file_id}"),
        });
    }
    let min = ctx.genesis.params.data.min_proof_fee;
    if fee < min {
        return Err(TxFailure::Invalid {
            reason: format!("the proof fee {fee} is below the minimum {min}"),
        });
    }
    if !sortition::has_data_weight(state)? {
        return Err(TxFailure::Invalid {
            reason: "no attested worker serves data verification".into(),
        });
    }
    accounts::debit(state, sender, fee)?;
    let job_id = next_id(state, NEXT_JOB)?;
    let job = Job {
        job_id,
        file_id,
        requester: *sender,
        fee,
        status: JobStatus::Requested,
        verifier: None,
        requested_height: ctx.height,
        expires_height: None,
        verdict: None,
        proven_height: None,
        rewarded: false,
    };
    state.put_json(Table::Data, job_key(job_id), &job);
    state.put(Table::Data, file_job_key(file_id, job_id), Vec::new());
    // Drawn with the next block's seed, which nobody knew when this transaction was chosen.
    schedule::push(
        state,
        schedule::Kind::DataAssign,
        ctx.height.saturating_add(1),
        &job_id,
    )?;
    Ok(job_id)
}

/// Draws the verifier of each job requested in the previous block; expires unanswered jobs.
pub fn begin_block(state: &mut Overlay<'_>, ctx: &BlockCtx<'_>) -> Result<(), StateError> {
    for job_id in schedule::take::<u64>(state, schedule::Kind::DataAssign, ctx.height)? {
        let Some(mut job) = job(state, job_id)? else {
            continue;
        };
        match draw(state, ctx, job_id)? {
            Some(verifier) => {
                let expires = ctx
                    .height
                    .saturating_add(ctx.genesis.params.data.proof_timeout_blocks);
                job.status = JobStatus::Assigned;
                job.verifier = Some(verifier);
                job.expires_height = Some(expires);
                state.put(Table::Data, open_job_key(&verifier, job_id), Vec::new());
                schedule::push(state, schedule::Kind::DataExpiry, expires, &job_id)?;
            }
            None => expire(state, &mut job)?,
        }
        state.put_json(Table::Data, job_key(job_id), &job);
    }
    for job_id in schedule::take::<u64>(state, schedule::Kind::DataExpiry, ctx.height)? {
        let Some(mut job) = job(state, job_id)? else {
            continue;
        };
        if job.status != JobStatus::Assigned {
            continue;
        }
        if let Some(verifier) = job.verifier {
            state.delete(Table::Data, open_job_key(&verifier, job_id));
            // Silence costs as a task's timeout does: reputation, hence draw weight, forgiven
            // later; the cause names the job so that each silence counts.
            let params = &ctx.genesis.params.tasks;
            let cause = sha256(&[JOB_TIMEOUT_DOMAIN, &job_id.to_be_bytes()].concat());
            reputation::record_timeout(
                state,
                &verifier,
                &cause,
                params.timeout_penalty,
                ctx.height,
                params.timeout_forgiven_after_blocks,
            )?;
            sortition::refresh(state, ctx, &verifier)?;
        }
        expire(state, &mut job)?;
        state.put_json(Table::Data, job_key(job_id), &job);
    }
    Ok(())
}

fn expire(state: &mut Overlay<'_>, job: &mut Job) -> Result<(), StateError> {
    job.status = JobStatus::Expired;
    // The escrow left the requester's balance, so giving it back cannot overflow.
    accounts::credit(state, &job.requester, job.fee)
        .map_err(|_| StateError::Corrupt("refund of a data job overflows"))
}

/// A verifier for `job_id` from the block seed among eligible data verifiers; at most
/// [`tasks::MAX_DRAWS`] walks.
fn draw(
    state: &mut Overlay<'_>,
    ctx: &BlockCtx<'_>,
    job_id: u64,
) -> Result<Option<Address>, StateError> {
    for attempt in 0..tasks::MAX_DRAWS {
        let mut input = DRAW_DOMAIN.to_vec();
        input.extend_from_slice(&ctx.seed.0);
        input.extend_from_slice(&job_id.to_be_bytes());
        input.extend_from_slice(&attempt.to_le_bytes());
        let Some(worker) = sortition::draw_data(state, &sha256(&input))? else {
            return Ok(None);
        };
        let stake = staking::get(state, &worker)?.unwrap_or_default();
        if verifier(state, &worker)?.is_some()
            && tasks::draw_weight(state, ctx, &worker, &stake)?.is_some()
        {
            return Ok(Some(worker));
        }
        sortition::refresh(state, ctx, &worker)?;
    }
    Ok(None)
}

/// AddProof: the job's drawn verifier answers, signed by its live enclave. The fee is its pay
/// for either verdict; a score must prove the registered plaintext.
pub fn add_proof(
    state: &mut Overlay<'_>,
    ctx: &BlockCtx<'_>,
    sender: &Address,
    proof: &DataProof,
) -> Result<(), TxFailure> {
    let mut job = job(state, proof.job_id)?.ok_or_else(|| TxFailure::NotFound {
        what: format!("data job {}", proof.job_id),
    })?;
    if job.status != JobStatus::Assigned {
        return Err(TxFailure::Invalid {
            reason: format!("data job {} is not waiting for a proof", proof.job_id),
        });
    }
    if job.verifier != Some(*sender) || proof.worker != *sender {
        return Err(TxFailure::Unauthorized {
            reason: format!("data job {} is not assigned to {sender}", proof.job_id),
        });
    }
    if proof.file_id != job.file_id {
        return Err(TxFailure::Invalid {
            reason: format!(
                "data job {} is for file {}, not {}",
                proof.job_id, job.file_id, proof.file_id
            ),
        });
    }
    let enclave = enclaves::by_key(state, &proof.enclave_key)?
        .filter(|e| e.worker == *sender)
        .ok_or_else(|| TxFailure::Unauthorized {
            reason: "the signing enclave key is not registered to the verifier".into(),
        })?;
    if !enclaves::is_usable(state, &enclave, ctx.timestamp_ms)? {
        return Err(TxFailure::Unauthorized {
            reason: "the signing enclave's attestation has expired or is no longer accepted".into(),
        });
    }
    proof
        .verify(&ctx.genesis.chain_id)
        .map_err(|e| TxFailure::Unauthorized {
            reason: format!("data proof: {e}"),
        })?;
    let mut record = file(state, job.file_id)?.ok_or(StateError::Corrupt("job without file"))?;
    if let DataVerdict::Scored { score } = proof.verdict {
        if score > MAX_SCORE {
            return Err(TxFailure::Invalid {
                reason: format!("score {score} is over {MAX_SCORE}"),
            });
        }
        if proof.plaintext_hash != record.plaintext_hash {
            return Err(TxFailure::Invalid {
                reason: format!(
                    "the proof scores plaintext {}, file {} registered {}",
                    proof.plaintext_hash, job.file_id, record.plaintext_hash
                ),
            });
        }
        record.best_score = Some(record.best_score.map_or(score, |b| b.max(score)));
        state.put_json(Table::Data, file_key(job.file_id), &record);
    }
    accounts::credit(state, sender, job.fee)?;
    state.delete(Table::Data, open_job_key(sender, job.job_id));
    job.status = JobStatus::Proven;
    job.verdict = Some(proof.verdict);
    job.proven_height = Some(ctx.height);
    state.put_json(Table::Data, job_key(job.job_id), &job);
    Ok(())
}

/// RequestReward: for one scored proof of file `file_id`, mints to its owner what the file's
/// DAT supply lacks of `score × dat_per_point`, once per job: a file's supply never exceeds
/// its best score's worth, however many jobs its owner pays for.
pub fn request_reward(
    state: &mut Overlay<'_>,
    ctx: &BlockCtx<'_>,
    sender: &Address,
    file_id: u64,
    job_id: u64,
) -> Result<Amount, TxFailure> {
    let mut record = owned_file(state, sender, file_id)?;
    let mut job = job(state, job_id)?.ok_or_else(|| TxFailure::NotFound {
        what: format!("data job {job_id}"),
    })?;
    if job.file_id != file_id {
        return Err(TxFailure::Invalid {
            reason: format!(
                "job {job_id} proves file {}, not file {file_id}",
                job.file_id
            ),
        });
    }
    let Some(DataVerdict::Scored { score }) = job.verdict else {
        return Err(TxFailure::Invalid {
            reason: format!("job {job_id} has no score to reward"),
        });
    };
    if job.rewarded {
        return Err(TxFailure::Invalid {
            reason: format!("job {job_id} was already rewarded"),
        });
    }
    let worth = ctx
        .genesis
        .params
        .data
        .dat_per_point
        .checked_mul(score.into())
        .ok_or(TxFailure::Overflow)?;
    // A file's DAT is worth its best proven score, minted once: a better score tops it up, and
    // more jobs with the same score mint nothing.
    let supply = u128_at(state, &supply_key(file_id))?;
    let amount = worth.saturating_sub(supply);
    if amount == 0 {
        return Err(TxFailure::Invalid {
            reason: format!(
                "file {file_id} already has {supply} DAT, all that a score of {score} is worth"
            ),
        });
    }
    let held = balance(state, file_id, sender)?;
    let (held, supply) = (
        held.checked_add(amount).ok_or(TxFailure::Overflow)?,
        supply.checked_add(amount).ok_or(TxFailure::Overflow)?,
    );
    set_balance(state, file_id, sender, held)?;
    state.put(
        Table::Data,
        supply_key(file_id),
        supply.to_le_bytes().to_vec(),
    );
    record.dat_supply = supply;
    state.put_json(Table::Data, file_key(file_id), &record);
    job.rewarded = true;
    state.put_json(Table::Data, job_key(job_id), &job);
    Ok(amount)
}

/// TransferDat: moves DAT of one file's class, with what each side earned so far settled first.
pub fn transfer_dat(
    state: &mut Overlay<'_>,
    sender: &Address,
    file_id: u64,
    to: &Address,
    amount: Amount,
) -> Result<(), TxFailure> {
    let from_balance = balance(state, file_id, sender)?;
    if from_balance < amount {
        return Err(TxFailure::InsufficientBalance {
            needed: amount,
            available: from_balance,
        });
    }
    if sender == to {
        return Ok(());
    }
    let to_balance = balance(state, file_id, to)?
        .checked_add(amount)
        .ok_or(TxFailure::Overflow)?;
    set_balance(state, file_id, sender, from_balance - amount)?;
    set_balance(state, file_id, to, to_balance)?;
    Ok(())
}

/// What one holder of one file's DAT has earned and not claimed, as of its last balance change
/// (`debt` is what its balance had earned by then, by the earnings per DAT).
#[derive(Debug, Default, Clone, Copy, Serialize, Deserialize)]
struct Holder {
    #[serde(with = "verity_types::amount")]
    debt: Amount,
    #[serde(with = "verity_types::amount")]
    claimable: Amount,
}

fn holder_entry_key(file: u64, holder: &Address) -> Vec<u8> {
    key(HOLDER, &[&file.to_be_bytes(), &holder.0])
}

fn earned_per_dat_key(file: u64) -> Vec<u8> {
    key(EARNED_PER_DAT, &[&file.to_be_bytes()])
}

/// ⌊a × b / d⌋ exactly, through a 256-bit product; None when it does not fit in 128 bits.
pub(crate) fn mul_div(a: u128, b: u128, d: u128) -> Option<u128> {
    const LOW: u128 = u64::MAX as u128;
    let (a1, a0, b1, b0) = (a >> 64, a & LOW, b >> 64, b & LOW);
    let (p00, p01, p10, p11) = (a0 * b0, a0 * b1, a1 * b0, a1 * b1);
    let mid = (p00 >> 64) + (p01 & LOW) + (p10 & LOW);
    let low = (p00 & LOW) | (mid << 64);
    let high = p11 + (p01 >> 64) + (p10 >> 64) + (mid >> 64);
    if d == 0 || high >= d {
        return None;
    }
    // Long division, one bit at a time; the remainder stays below d.
    let (mut remainder, mut quotient) = (high, 0u128);
    for bit in (0..128).rev() {
        let carry = remainder >> 127;
        remainder = (remainder << 1) | ((low >> bit) & 1);
        quotient <<= 1;
        if carry == 1 || remainder >= d {
            remainder = remainder.wrapping_sub(d);
            quotient |= 1;
        }
    }
    Some(quotient)
}

/// `balance × per_dat / scale`: what a balance earned.
fn earned(balance: Amount, per_dat: u128) -> Amount {
    mul_div(balance, per_dat, EARNINGS_SCALE).unwrap_or(u128::MAX)
}

/// `amount × scale / supply`: what `amount` adds to the earnings per DAT.
fn per_dat(amount: Amount, supply: Amount) -> u128 {
    mul_div(amount, EARNINGS_SCALE, supply).unwrap_or(u128::MAX)
}

/// The holder's record with what its current balance earned since its last change added in.
fn settled(state: &Overlay<'_>, file: u64, holder: &Address) -> Result<Holder, StateError> {
    let mut entry: Holder = state
        .get_json(Table::Data, &holder_entry_key(file, holder), "DAT holder")?
        .unwrap_or_default();
    let now = earned(
        balance(state, file, holder)?,
        u128_at(state, &earned_per_dat_key(file))?,
    );
    entry.claimable = entry
        .claimable
        .saturating_add(now.saturating_sub(entry.debt));
    entry.debt = now;
    Ok(entry)
}

/// Sets a balance, settling what the old balance earned first.
fn set_balance(
    state: &mut Overlay<'_>,
    file: u64,
    holder: &Address,
    amount: Amount,
) -> Result<(), StateError> {
    let mut entry = settled(state, file, holder)?;
    put_balance(state, file, holder, amount);
    entry.debt = earned(amount, u128_at(state, &earned_per_dat_key(file))?);
    state.put_json(Table::Data, holder_entry_key(file, holder), &entry);
    Ok(())
}

/// What `holder` could claim now from file `file`'s task fees.
pub fn claimable(state: &Overlay<'_>, file: u64, holder: &Address) -> Result<Amount, StateError> {
    Ok(settled(state, file, holder)?.claimable)
}

/// The DAT holders' share of a task fee for file `file_id`: to the pool, raising the earnings
/// per DAT; to the file's owner while no DAT exists yet.
pub fn share_fee(state: &mut Overlay<'_>, file_id: u64, amount: Amount) -> Result<(), TxFailure> {
    if amount == 0 {
        return Ok(());
    }
    let record = file(state, file_id)?.ok_or_else(|| TxFailure::NotFound {
        what: format!("data file {file_id}"),
    })?;
    let supply = u128_at(state, &supply_key(file_id))?;
    if supply == 0 {
        return accounts::credit(state, &record.owner, amount);
    }
    accounts::credit(state, &pool_account(), amount)?;
    let key = earned_per_dat_key(file_id);
    let total = u128_at(state, &key)?.saturating_add(per_dat(amount, supply));
    state.put(Table::Data, key, total.to_le_bytes().to_vec());
    Ok(())
}

/// ClaimDataRewards: pays the sender what its DAT of file `file_id` earned. Rounding leaves dust
/// in the pool, never a shortfall: a claim never takes more than the pool holds.
pub fn claim(state: &mut Overlay<'_>, sender: &Address, file_id: u64) -> Result<Amount, TxFailure> {
    if file(state, file_id)?.is_none() {
        return Err(TxFailure::NotFound {
            what: format!("data file {file_id}"),
        });
    }
    let mut entry = settled(state, file_id, sender)?;
    let pool = accounts::get(state, &pool_account())?.balance;
    let paid = entry.claimable.min(pool);
    if paid == 0 {
        return Err(TxFailure::Invalid {
            reason: format!("{sender} has nothing to claim from file {file_id}"),
        });
    }
    accounts::debit(state, &pool_account(), paid)?;
    accounts::credit(state, sender, paid)?;
    entry.claimable -= paid;
    state.put_json(Table::Data, holder_entry_key(file_id, sender), &entry);
    Ok(paid)
}

/// Every DAT class `holder` holds, as (file id, balance), from file `after` on.
pub fn holdings(
    state: &Overlay<'_>,
    holder: &Address,
    after: u64,
    limit: usize,
) -> Result<Vec<(u64, Amount)>, StateError> {
    let prefix = key(HOLDER_INDEX, &[&holder.0]);
    ids_under(state, &prefix, after.saturating_add(1), limit)?
        .into_iter()
        .map(|id| Ok((id, balance(state, id, holder)?)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::MemStore;
    use proptest::prelude::*;

    const HOLDERS: u8 = 4;

    fn holder(i: u8) -> Address {
        Address([i + 1; 20])
    }

    /// Mints `amount` of file 1's DAT to holder `to`, as RequestReward does.
    fn mint(state: &mut Overlay<'_>, to: u8, amount: Amount) {
        let held = balance(state, 1, &holder(to)).unwrap();
        set_balance(state, 1, &holder(to), held + amount).unwrap();
        let supply = u128_at(state, &supply_key(1)).unwrap() + amount;
        state.put(Table::Data, supply_key(1), supply.to_le_bytes().to_vec());
    }

    #[derive(Debug, Clone)]
    enum Step {
        Mint(u8, u64),
        Move(u8, u8, u64),
        Fee(u64),
        Claim(u8),
    }

    fn step() -> impl Strategy<Value = Step> {
        prop_oneof![
            (0..HOLDERS, 1..u64::MAX).prop_map(|(h, a)| Step::Mint(h, a)),
            (0..HOLDERS, 0..HOLDERS, any::<u64>()).prop_map(|(a, b, x)| Step::Move(a, b, x)),
            any::<u64>().prop_map(Step::Fee),
            (0..HOLDERS).prop_map(Step::Claim),
        ]
    }

    proptest! {
        /// Whatever holders do, the pool always covers what they may claim, and every base
        /// unit shared is either paid out or still in the pool.
        #[test]
        fn the_pool_covers_every_claim_and_loses_nothing(steps in proptest::collection::vec(step(), 1..40)) {
            let store = MemStore::default();
            let mut state = Overlay::new(&store);
            let owner = Address([0xee; 20]);
            state.put_json(Table::Data, file_key(1), &File {
                file_id: 1,
                owner,
                data: DataRef { encrypted: true, ..DataRef::of(b"x") },
                url: String::new(),
                plaintext_hash: Hash::ZERO,
                evaluation: None,
                registered_height: 1,
                best_score: None,
                dat_supply: 0,
            });
            let (mut shared, mut paid) = (0u128, 0u128);
            for step in steps {
                match step {
                    Step::Mint(h, a) => mint(&mut state, h, a.into()),
                    Step::Move(a, b, x) => {
                        let held = balance(&state, 1, &holder(a)).unwrap();
                        let amount = u128::from(x) % (held + 1);
                        transfer_dat(&mut state, &holder(a), 1, &holder(b), amount).unwrap();
                    }
                    Step::Fee(x) => {
                        let to_owner = u128_at(&state, &supply_key(1)).unwrap() == 0;
                        share_fee(&mut state, 1, x.into()).unwrap();
                        if !to_owner {
                            shared += u128::from(x);
                        }
                    }
                    Step::Claim(h) => {
                        if let Ok(amount) = claim(&mut state, &holder(h), 1) {
                            paid += amount;
                        }
                    }
                }
                let pool = accounts::get(&state, &pool_account()).unwrap().balance;
                prop_assert_eq!(pool + paid, shared);
                let owed: u128 = (0..HOLDERS)
                    .map(|h| claimable(&state, 1, &holder(h)).unwrap())
                    .sum();
                prop_assert!(owed <= pool, "owed {} > pool {}", owed, pool);
            }
        }
    }

    proptest! {
        #[test]
        fn mul_div_is_exact(a in any::<u128>(), b in any::<u128>(), d in 1..u128::MAX) {
            // Checked against a split that holds whenever a × b fits.
            if let Some(product) = a.checked_mul(b) {
                prop_assert_eq!(mul_div(a, b, d), Some(product / d));
            }
            // (a × d) / d = a always.
            prop_assert_eq!(mul_div(a, d, d), Some(a));
            prop_assert_eq!(mul_div(a, b, 0), None);
        }
    }

    #[test]
    fn mul_div_handles_products_past_128_bits() {
        let big = u128::MAX;
        assert_eq!(mul_div(big, big, big), Some(big));
        assert_eq!(mul_div(big, 2, 4), Some(big / 2));
        assert_eq!(mul_div(big, 2, 1), None);
        assert_eq!(mul_div(1 << 100, 1 << 100, 1 << 90), Some(1 << 110));
    }

    #[test]
    fn a_fee_is_shared_pro_rata() {
        let store = MemStore::default();
        let mut state = Overlay::new(&store);
        state.put_json(
            Table::Data,
            file_key(1),
            &File {
                file_id: 1,
                owner: Address([0xee; 20]),
                data: DataRef::of(b"x"),
                url: String::new(),
                plaintext_hash: Hash::ZERO,
                evaluation: None,
                registered_height: 1,
                best_score: None,
                dat_supply: 0,
            },
        );
        mint(&mut state, 0, 3 * verity_types::ONE_TOKEN);
        mint(&mut state, 1, verity_types::ONE_TOKEN);
        share_fee(&mut state, 1, 4_000).unwrap();
        assert_eq!(claimable(&state, 1, &holder(0)).unwrap(), 3_000);
        assert_eq!(claimable(&state, 1, &holder(1)).unwrap(), 1_000);
        assert_eq!(claim(&mut state, &holder(1), 1).unwrap(), 1_000);
        assert!(claim(&mut state, &holder(1), 1).is_err());
    }
}
