//! Tasks and their receipts (`docs/protocol.md` §10): what a user asks for, and what a worker's enclave signs
//! about the result.
//!
//! A receipt's signature is ed25519 by the worker's enclave key over
//! SHA-256(`RECEIPT_DOMAIN` ‖ chain id ‖ the receipt's fields), so it binds the domain tag and the
//! chain id like every other signature here.

use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::codec::{DecodeError, Reader, Writer};
use crate::{sha256, Address, Hash};

/// Domain tag of receipt signatures.
pub const RECEIPT_DOMAIN: &[u8] = b"verity/receipt/v1";
/// Domain tag of a `tee_zk` result's enclave signature: the receipt and the proof's commitments.
pub const ZK_RECEIPT_DOMAIN: &[u8] = b"verity/zk-receipt/v1";
/// Largest proof a ZkReceipt carries (a compressed Groth16 proof over BN254 is 128 bytes).
pub const MAX_PROOF_BYTES: usize = 256;

/// Off-chain data, named by the SHA-256 of its bytes (its CIDv1 follows from that digest).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct DataRef {
    pub hash: Hash,
    pub size: u64,
    /// Whether the bytes are an encrypted envelope rather than the plain input.
    pub encrypted: bool,
}

impl DataRef {
    pub fn of(bytes: &[u8]) -> Self {
        Self {
            hash: sha256(bytes),
            size: bytes.len() as u64,
            encrypted: false,
        }
    }

    pub(crate) fn encode(&self, w: &mut Writer) {
        w.fixed(&self.hash.0)
            .u64(self.size)
            .u8(u8::from(self.encrypted));
    }

    pub(crate) fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(Self {
            hash: Hash(r.array("data hash")?),
            size: r.u64("data size")?,
            encrypted: match r.u8("encrypted flag")? {
                0 => false,
                1 => true,
                tag => {
                    return Err(DecodeError::UnknownTag {
                        what: "encrypted flag",
                        tag,
                    })
                }
            },
        })
    }
}

/// How a task's result is verified.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// An attested enclave key signs the result.
    Tee,
    /// As TEE, plus a zero-knowledge proof of the inference.
    TeeZk,
    /// Optimistic: a trace commitment and a challenge window.
    Op,
}

impl Mode {
    pub const ALL: [Mode; 3] = [Mode::Tee, Mode::TeeZk, Mode::Op];

    pub fn tag(self) -> u8 {
        match self {
            Mode::Tee => 0,
            Mode::TeeZk => 1,
            Mode::Op => 2,
        }
    }

    pub fn from_tag(tag: u8) -> Result<Self, DecodeError> {
        match tag {
            0 => Ok(Mode::Tee),
            1 => Ok(Mode::TeeZk),
            2 => Ok(Mode::Op),
            tag => Err(DecodeError::UnknownTag { what: "mode", tag }),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Tee => "tee",
            Mode::TeeZk => "tee_zk",
            Mode::Op => "op",
        }
    }
}

impl std::fmt::Display for Mode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Mode {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "tee" => Ok(Mode::Tee),
            "tee_zk" | "tee-zk" | "tee+zk" => Ok(Mode::TeeZk),
            "op" => Ok(Mode::Op),
            other => Err(format!(
                "unknown mode {other:?}; expected tee, tee_zk or op"
            )),
        }
    }
}

/// An enclave's ed25519 key: what workers sign receipts with.
pub struct EnclaveKey {
    key: SigningKey,
}

impl EnclaveKey {
    pub fn generate() -> Self {
        let mut seed = [0u8; 32];
        rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut seed);
        Self::from_seed(seed)
    }

    pub fn from_seed(seed: [u8; 32]) -> Self {
        Self {
            key: SigningKey::from_bytes(&seed),
        }
    }

    /// The secret seed, for writing a key file. Handle with care.
    pub fn seed(&self) -> [u8; 32] {
        self.key.to_bytes()
    }

    pub fn public(&self) -> [u8; 32] {
        self.key.verifying_key().to_bytes()
    }

    /// Signs `receipt` for `chain_id`, filling in its enclave key and signature.
    pub fn sign(&self, chain_id: &str, receipt: &mut TaskReceipt) {
        receipt.enclave_key = self.public();
        let digest = receipt.signing_digest(chain_id);
        receipt.signature = self.key.sign(&digest.0).to_bytes();
    }

    /// Signs a `tee_zk` result: the receipt's fields and the proof's commitments together.
    pub fn sign_zk(&self, chain_id: &str, zk: &mut ZkReceipt) {
        zk.receipt.enclave_key = self.public();
        let digest = zk.signing_digest(chain_id);
        zk.receipt.signature = self.key.sign(&digest.0).to_bytes();
    }

    /// Signs a domain-tagged digest (one of the `*_digest` functions of this crate).
    pub(crate) fn sign_digest(&self, digest: &Hash) -> [u8; 64] {
        self.key.sign(&digest.0).to_bytes()
    }

    /// Signs a data verifier's proof of one job.
    pub fn sign_data_proof(&self, chain_id: &str, proof: &mut crate::DataProof) {
        proof.enclave_key = self.public();
        let digest = proof.signing_digest(chain_id);
        proof.signature = self.key.sign(&digest.0).to_bytes();
    }

    /// Signs the RSA key a data verifier's enclave holds, binding it to `worker`.
    pub fn sign_data_key(
        &self,
        chain_id: &str,
        worker: &Address,
        rsa_public_key: &[u8],
    ) -> [u8; 64] {
        self.key
            .sign(&crate::data::data_key_digest(chain_id, worker, rsa_public_key).0)
            .to_bytes()
    }

    pub fn sign_failure(&self, chain_id: &str, failure: &mut FailureReceipt) {
        failure.enclave_key = self.public();
        let digest = failure.signing_digest(chain_id);
        failure.signature = self.key.sign(&digest.0).to_bytes();
    }
}

impl std::fmt::Debug for EnclaveKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "EnclaveKey({})", hex::encode(self.public()))
    }
}

/// The Verifiable Compute Receipt: what a worker's enclave attests it computed for one task.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskReceipt {
    pub task_id: Hash,
    pub model_id: Hash,
    pub input_hash: Hash,
    /// SHA-256 of the output document; the output's CID follows from it.
    pub output_hash: Hash,
    pub output_size: u64,
    pub trace_root: Hash,
    pub trace_len: u32,
    pub worker: Address,
    #[serde(with = "crate::serde_hex::array")]
    pub enclave_key: [u8; 32],
    #[serde(with = "crate::serde_hex::array")]
    pub signature: [u8; 64],
}

/// Encoded size of one receipt.
pub const RECEIPT_BYTES: usize = 32 * 5 + 8 + 4 + 20 + 32 + 64;

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ReceiptError {
    #[error("the enclave key is not a valid ed25519 public key")]
    BadKey,
    #[error("the enclave signature does not verify over this receipt")]
    BadSignature,
}

impl TaskReceipt {
    fn encode_fields(&self, w: &mut Writer) {
        w.fixed(&self.task_id.0)
            .fixed(&self.model_id.0)
            .fixed(&self.input_hash.0)
            .fixed(&self.output_hash.0)
            .u64(self.output_size)
            .fixed(&self.trace_root.0)
            .u32(self.trace_len)
            .fixed(&self.worker.0)
            .fixed(&self.enclave_key);
    }

    pub(crate) fn encode(&self, w: &mut Writer) {
        self.encode_fields(w);
        w.fixed(&self.signature);
    }

    pub(crate) fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(Self {
            task_id: Hash(r.array("receipt task id")?),
            model_id: Hash(r.array("receipt model id")?),
            input_hash: Hash(r.array("receipt input hash")?),
            output_hash: Hash(r.array("receipt output hash")?),
            output_size: r.u64("receipt output size")?,
            trace_root: Hash(r.array("receipt trace root")?),
            trace_len: r.u32("receipt trace length")?,
            worker: Address(r.array("receipt worker")?),
            enclave_key: r.array("receipt enclave key")?,
            signature: r.array("receipt signature")?,
        })
    }

    /// SHA-256(domain ‖ chain id ‖ fields): what the enclave signs.
    pub fn signing_digest(&self, chain_id: &str) -> Hash {
        enclave_digest(RECEIPT_DOMAIN, chain_id, |w| self.encode_fields(w))
    }

    /// Checks the enclave signature on its own (batched checks use [`verify_receipts`]).
    pub fn verify(&self, chain_id: &str) -> Result<(), ReceiptError> {
        verify_enclave_signature(
            &self.enclave_key,
            &self.signing_digest(chain_id),
            &self.signature,
        )
    }
}

/// A `tee_zk` task's result: the receipt, the Poseidon commitments to the quantized input and
/// the integer outputs that the proof states in public, and the Groth16 proof. The enclave's
/// one signature (in `receipt.signature`) covers the receipt's fields and both commitments, so
/// it ties the proof's commitments to the files' SHA-256 hashes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ZkReceipt {
    #[schema(value_type = Object)]
    pub receipt: TaskReceipt,
    pub input_commitment: Hash,
    pub output_commitment: Hash,
    #[serde(with = "crate::serde_hex::bytes")]
    #[schema(schema_with = crate::schema::hex_bytes)]
    pub proof: Vec<u8>,
}

impl ZkReceipt {
    /// SHA-256(zk domain ‖ chain id ‖ receipt fields ‖ input commitment ‖ output commitment).
    pub fn signing_digest(&self, chain_id: &str) -> Hash {
        enclave_digest(ZK_RECEIPT_DOMAIN, chain_id, |w| {
            self.receipt.encode_fields(w);
            w.fixed(&self.input_commitment.0)
                .fixed(&self.output_commitment.0);
        })
    }

    pub fn verify(&self, chain_id: &str) -> Result<(), ReceiptError> {
        verify_enclave_signature(
            &self.receipt.enclave_key,
            &self.signing_digest(chain_id),
            &self.receipt.signature,
        )
    }

    pub(crate) fn encode(&self, w: &mut Writer) {
        self.receipt.encode(w);
        w.fixed(&self.input_commitment.0)
            .fixed(&self.output_commitment.0)
            .bytes(&self.proof);
    }

    pub(crate) fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(Self {
            receipt: TaskReceipt::decode(r)?,
            input_commitment: Hash(r.array("input commitment")?),
            output_commitment: Hash(r.array("output commitment")?),
            proof: r.bytes("proof", MAX_PROOF_BYTES)?.to_vec(),
        })
    }
}

/// SHA-256(domain ‖ chain id ‖ fields): what an enclave signs for a task.
pub(crate) fn enclave_digest(
    domain: &[u8],
    chain_id: &str,
    fields: impl FnOnce(&mut Writer),
) -> Hash {
    let mut w = Writer::new();
    w.fixed(domain).str(chain_id);
    fields(&mut w);
    sha256(&w.finish())
}

/// One ed25519 signature by an enclave key over a digest.
pub(crate) fn verify_enclave_signature(
    key: &[u8; 32],
    digest: &Hash,
    signature: &[u8; 64],
) -> Result<(), ReceiptError> {
    let key = VerifyingKey::from_bytes(key).map_err(|_| ReceiptError::BadKey)?;
    key.verify(&digest.0, &Signature::from_bytes(signature))
        .map_err(|_| ReceiptError::BadSignature)
}

/// Domain tag of failure receipts.
pub const FAILURE_DOMAIN: &[u8] = b"verity/task-failure/v1";

/// Why a worker's enclave could not run a task. Stable codes: they enter the chain's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum FailureReason {
    /// The input blob could not be fetched.
    InputUnavailable,
    /// The fetched input does not hash to the task's input hash.
    InputMismatch,
    /// The model file could not be fetched.
    ModelUnavailable,
    /// The model file does not hash to its id, or does not load.
    ModelInvalid,
    /// The input does not fit the model (wrong shape, type or encoding).
    InputDoesNotFit,
    /// A tee_zk task's input commitment is not the commitment to its input: no proof the chain
    /// accepts can be made, so the task fails instead of timing out on honest workers.
    InputCommitmentMismatch,
}

impl FailureReason {
    pub const ALL: [FailureReason; 6] = [
        FailureReason::InputUnavailable,
        FailureReason::InputMismatch,
        FailureReason::ModelUnavailable,
        FailureReason::ModelInvalid,
        FailureReason::InputDoesNotFit,
        FailureReason::InputCommitmentMismatch,
    ];

    fn tag(self) -> u8 {
        self as u8 + 1
    }

    fn from_tag(tag: u8) -> Result<Self, DecodeError> {
        Self::ALL
            .get(usize::from(tag).wrapping_sub(1))
            .copied()
            .ok_or(DecodeError::UnknownTag {
                what: "failure reason",
                tag,
            })
    }
}

/// What a worker's enclave attests when it could not run a task: the task closes as Failed, the
/// submitter gets the escrow back less a fee for the worker's trouble, and nobody's reputation
/// changes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FailureReceipt {
    pub task_id: Hash,
    pub model_id: Hash,
    pub input_hash: Hash,
    pub worker: Address,
    pub reason: FailureReason,
    #[serde(with = "crate::serde_hex::array")]
    pub enclave_key: [u8; 32],
    #[serde(with = "crate::serde_hex::array")]
    pub signature: [u8; 64],
}

impl FailureReceipt {
    fn encode_fields(&self, w: &mut Writer) {
        w.fixed(&self.task_id.0)
            .fixed(&self.model_id.0)
            .fixed(&self.input_hash.0)
            .fixed(&self.worker.0)
            .u8(self.reason.tag())
            .fixed(&self.enclave_key);
    }

    pub(crate) fn encode(&self, w: &mut Writer) {
        self.encode_fields(w);
        w.fixed(&self.signature);
    }

    pub(crate) fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(Self {
            task_id: Hash(r.array("failure task id")?),
            model_id: Hash(r.array("failure model id")?),
            input_hash: Hash(r.array("failure input hash")?),
            worker: Address(r.array("failure worker")?),
            reason: FailureReason::from_tag(r.u8("failure reason")?)?,
            enclave_key: r.array("failure enclave key")?,
            signature: r.array("failure signature")?,
        })
    }

    /// SHA-256(domain ‖ chain id ‖ fields): what the enclave signs.
    pub fn signing_digest(&self, chain_id: &str) -> Hash {
        enclave_digest(FAILURE_DOMAIN, chain_id, |w| self.encode_fields(w))
    }

    pub fn verify(&self, chain_id: &str) -> Result<(), ReceiptError> {
        verify_enclave_signature(
            &self.enclave_key,
            &self.signing_digest(chain_id),
            &self.signature,
        )
    }
}

/// Verifies every receipt's enclave signature. All valid: one batched check (about twice as fast
/// per signature as one by one). Otherwise the index of the first bad receipt and why.
pub fn verify_receipts(
    chain_id: &str,
    receipts: &[TaskReceipt],
) -> Result<(), (usize, ReceiptError)> {
    let mut keys = Vec::with_capacity(receipts.len());
    for (i, r) in receipts.iter().enumerate() {
        keys.push(VerifyingKey::from_bytes(&r.enclave_key).map_err(|_| (i, ReceiptError::BadKey))?);
    }
    let digests: Vec<Hash> = receipts
        .iter()
        .map(|r| r.signing_digest(chain_id))
        .collect();
    let messages: Vec<&[u8]> = digests.iter().map(|d| d.0.as_slice()).collect();
    let signatures: Vec<Signature> = receipts
        .iter()
        .map(|r| Signature::from_bytes(&r.signature))
        .collect();
    if ed25519_dalek::verify_batch(&messages, &signatures, &keys).is_ok() {
        return Ok(());
    }
    for (i, r) in receipts.iter().enumerate() {
        r.verify(chain_id).map_err(|e| (i, e))?;
    }
    // The batch equation failed but every signature verifies alone: treat as the first one bad
    // rather than accept what the batch check refused.
    Err((0, ReceiptError::BadSignature))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn receipt(key: &EnclaveKey, task: u8) -> TaskReceipt {
        let mut r = TaskReceipt {
            task_id: Hash([task; 32]),
            model_id: Hash([2; 32]),
            input_hash: Hash([3; 32]),
            output_hash: Hash([4; 32]),
            output_size: 99,
            trace_root: Hash([5; 32]),
            trace_len: 7,
            worker: Address([6; 20]),
            enclave_key: [0; 32],
            signature: [0; 64],
        };
        key.sign("verity-test", &mut r);
        r
    }

    #[test]
    fn signature_binds_chain_and_every_field() {
        let key = EnclaveKey::generate();
        let r = receipt(&key, 1);
        r.verify("verity-test").unwrap();
        assert_eq!(r.verify("verity-other"), Err(ReceiptError::BadSignature));
        let mut tampered = r.clone();
        tampered.output_hash.0[0] ^= 1;
        assert_eq!(
            tampered.verify("verity-test"),
            Err(ReceiptError::BadSignature)
        );
        let mut w = Writer::new();
        r.encode(&mut w);
        let bytes = w.finish();
        assert_eq!(bytes.len(), RECEIPT_BYTES);
        let mut reader = Reader::new(&bytes);
        assert_eq!(TaskReceipt::decode(&mut reader).unwrap(), r);
    }

    #[test]
    fn a_failure_receipt_binds_its_reason_and_round_trips() {
        let key = EnclaveKey::generate();
        for reason in FailureReason::ALL {
            let mut f = FailureReceipt {
                task_id: Hash([1; 32]),
                model_id: Hash([2; 32]),
                input_hash: Hash([3; 32]),
                worker: Address([4; 20]),
                reason,
                enclave_key: [0; 32],
                signature: [0; 64],
            };
            key.sign_failure("verity-test", &mut f);
            f.verify("verity-test").unwrap();
            let mut w = Writer::new();
            f.encode(&mut w);
            let bytes = w.finish();
            assert_eq!(FailureReceipt::decode(&mut Reader::new(&bytes)).unwrap(), f);
            let mut other = f.clone();
            other.reason = FailureReason::ALL[(reason.tag() as usize) % 5];
            assert_eq!(other.verify("verity-test"), Err(ReceiptError::BadSignature));
        }
        let mut bad = Vec::new();
        bad.extend_from_slice(&[0u8; 32 * 3 + 20]);
        bad.push(9);
        assert!(FailureReceipt::decode(&mut Reader::new(&bad)).is_err());
    }

    #[test]
    fn batch_names_the_bad_receipt() {
        let key = EnclaveKey::generate();
        let mut batch: Vec<_> = (0..8).map(|i| receipt(&key, i)).collect();
        verify_receipts("verity-test", &batch).unwrap();
        batch[5].trace_len += 1;
        assert_eq!(
            verify_receipts("verity-test", &batch),
            Err((5, ReceiptError::BadSignature))
        );
        batch[2].enclave_key = [0xff; 32];
        assert!(matches!(
            verify_receipts("verity-test", &batch),
            Err((2, _))
        ));
    }
}
