//! Signed transactions: canonical encoding, signing digest, hash.
//!
//! Encoding of a signed transaction (all integers little-endian):
//! `version u8 (=1) ‖ chain_id (u32 len ‖ utf8) ‖ nonce u64 ‖ fee u128 ‖ action ‖ signature [65]`.
//! The signature is secp256k1 r ‖ s ‖ v over keccak256(`TX_DOMAIN` ‖ body), where body is the
//! encoding without the signature, so it binds the domain tag and the chain id.

use serde::{Deserialize, Serialize};

use crate::address::{keccak256, recover_signer, AccountKey, Address, SignatureError};
use crate::codec::{DecodeError, Reader, Writer};
use crate::language::{GenerationLimits, LanguageSpec};
use crate::task::{DataRef, FailureReceipt, Mode, TaskReceipt};
use crate::{sha256, Amount, Hash};

/// Domain tag for transaction signatures: a signature for anything else never verifies here.
pub const TX_DOMAIN: &[u8] = b"verity/tx/v1";
/// Largest encoded transaction accepted anywhere.
pub const MAX_TX_BYTES: usize = 256 * 1024;
/// Longest chain id.
pub const MAX_CHAIN_ID_LEN: usize = 64;

const TX_VERSION: u8 = 1;

/// What a transaction does. Each module adds its own variants.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Action {
    /// Move `amount` base units from the signer to `to`.
    Transfer {
        to: Address,
        #[serde(with = "crate::amount")]
        amount: Amount,
    },
    /// Lock `amount` as the signer's worker stake.
    Stake {
        #[serde(with = "crate::amount")]
        amount: Amount,
    },
    /// Start unbonding `amount` of stake; it returns after the chain's unbonding delay.
    Unstake {
        #[serde(with = "crate::amount")]
        amount: Amount,
    },
    /// The models this worker serves; empty means every model.
    ServeModels {
        models: Vec<Hash>,
    },
    /// Register a model, revealing a commitment ([`registration_commitment`]) the signer made
    /// at least one block earlier.
    /// With an anchor, an attested enclave vouches that it hashed the file for the signer.
    RegisterModel {
        spec: ModelSpec,
        salt: Hash,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        anchor: Option<crate::Anchor>,
    },
    /// Register a dataset, revealing a commitment as RegisterModel does.
    RegisterDataset {
        name: String,
        data: DataRef,
        license: String,
        salt: Hash,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        anchor: Option<crate::Anchor>,
    },
    /// Commit to a registration to come: nobody who sees the registration can then take the
    /// model or dataset by registering it first.
    CommitRegistration {
        commitment: Hash,
    },
    TransferOwnership {
        asset: Asset,
        id: Hash,
        to: Address,
    },
    /// Register (or re-attest) an enclave key with evidence that binds it to the signer.
    RegisterEnclave {
        /// `tdx`, `sgx`, `snp`, `nitro` or `dev`.
        kind: String,
        #[serde(with = "crate::serde_hex::array")]
        enclave_key: [u8; 32],
        /// The block whose attestation nonce the evidence binds; it bounds the evidence's age.
        nonce_height: u64,
        #[serde(with = "crate::serde_hex::bytes")]
        report: Vec<u8>,
        /// Vendor collateral; empty when the kind needs none.
        #[serde(with = "crate::serde_hex::bytes")]
        collateral: Vec<u8>,
        #[serde(with = "crate::serde_hex::bytes_list")]
        certs: Vec<Vec<u8>>,
    },
    /// Replace the chain's attestation policy (JSON); governance key only.
    SetAttestationPolicy {
        #[serde(with = "crate::serde_hex::bytes")]
        policy: Vec<u8>,
    },
    /// Ask for an inference. `max_fee` is escrowed until the task settles or is refunded.
    SubmitTask {
        model_id: Hash,
        input: DataRef,
        mode: Mode,
        #[serde(with = "crate::amount")]
        max_fee: Amount,
        /// Blocks from submission after which an unfinished task expires and is refunded.
        deadline_blocks: u64,
        /// `tee_zk` tasks: the Poseidon commitment to the quantized input that the result's
        /// proof must state (`verity_zk::input_commitment` of the input file); none otherwise.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        input_commitment: Option<Hash>,
        /// The contributed file (data module id) the task runs on, with the file's permission:
        /// a genesis share of its fee goes to the file's DAT holders.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        dataset: Option<u64>,
        /// A language model's task: the prompt's tokens and the most it may generate, which
        /// the escrow covers at the model's prices.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        generation: Option<GenerationLimits>,
    },
    /// Results of many tasks in one transaction; all apply or none.
    SubmitReceipts {
        receipts: Vec<TaskReceipt>,
    },
    /// Withdraw a task that has no worker yet; its escrow is refunded.
    CancelTask {
        task_id: Hash,
    },
    /// Tasks the worker's enclave could not run, each with its reason.
    ReportFailures {
        failures: Vec<FailureReceipt>,
    },
    /// Bond `amount` more as a challenger of OP results.
    RegisterChallenger {
        #[serde(with = "crate::amount")]
        amount: Amount,
    },
    /// Start unbonding `amount` of the challenger bond; it returns after the unbonding delay.
    UnbondChallenger {
        #[serde(with = "crate::amount")]
        amount: Amount,
    },
    /// Dispute an OP result inside its window with the challenger's own trace root and length.
    OpenDispute {
        task_id: Hash,
        trace_root: Hash,
        trace_len: u32,
    },
    /// One dissection move: the hashes of the disputed span's descendants.
    RevealChildren {
        dispute_id: Hash,
        hashes: Vec<Hash>,
    },
    /// The last move: the disputed step's inputs with their proofs (`verity_infer::StepWitness`
    /// bytes) and the task's input file, for the validators to re-execute that step.
    OneStep {
        dispute_id: Hash,
        #[serde(with = "crate::serde_hex::bytes")]
        witness: Vec<u8>,
        #[serde(with = "crate::serde_hex::bytes")]
        input: Vec<u8>,
    },
    /// A language model's dispute, once the token game has found the first token whose leaves
    /// differ: the challenger opens both sides' leaf there with the worker's output document
    /// (which the worker signed; it holds every token and forward root), the task's prompt
    /// document, and the challenger's own forward root and token at that index.
    RevealToken {
        dispute_id: Hash,
        #[serde(with = "crate::serde_hex::bytes")]
        output: Vec<u8>,
        #[serde(with = "crate::serde_hex::bytes")]
        prompt: Vec<u8>,
        forward_root: Hash,
        token: u32,
    },
    /// A tolerant model's dispute: the disputed worker's output document, or the referee's
    /// (the third worker re-running the task), for the validators to compare within tolerance.
    RevealOutput {
        dispute_id: Hash,
        #[serde(with = "crate::serde_hex::bytes")]
        output: Vec<u8>,
    },
    /// The model owner sets the model's Groth16 keys, once: the verifying key on chain, the
    /// proving key as a blob (by hash) for workers. Allows `tee_zk` tasks on it.
    SetZkKeys {
        model_id: Hash,
        #[serde(with = "crate::serde_hex::bytes")]
        verifying_key: Vec<u8>,
        proving_key: Hash,
    },
    /// A `tee_zk` task's result with its proof.
    SubmitZkReceipt(crate::ZkReceipt),
    /// Serve data verification: the RSA key contributors wrap passwords to and the URL of the
    /// verifier's `POST /proof`, the key signed by the worker's registered enclave key.
    ServeData {
        #[serde(with = "crate::serde_hex::bytes")]
        rsa_public_key: Vec<u8>,
        endpoint: String,
        #[serde(with = "crate::serde_hex::array")]
        signature: [u8; 64],
    },
    /// Register an encrypted file: where it is (`data.hash` names the ciphertext in the blob
    /// store; `url` an outside copy, may be empty) and the SHA-256 of its plaintext.
    /// With an evaluation, the verifier also runs the registered model on the file's rows.
    AddFile {
        data: DataRef,
        url: String,
        plaintext_hash: Hash,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        evaluation: Option<crate::Evaluation>,
    },
    /// The file's owner lets `grantee` use the file in tasks.
    AddPermission {
        file_id: u64,
        grantee: Address,
    },
    /// Ask for a quality proof of a file; `fee` is escrowed and paid to the drawn verifier.
    RequestProof {
        file_id: u64,
        #[serde(with = "crate::amount")]
        fee: Amount,
    },
    /// The drawn verifier's enclave-signed answer.
    AddProof(crate::DataProof),
    /// Mint the file's Data Anchor Tokens for a scored proof of that file, once.
    RequestReward {
        file_id: u64,
        job_id: u64,
    },
    /// Collect what the signer's DAT of one file earned from tasks that ran on the file.
    ClaimDataRewards {
        file_id: u64,
    },
    /// Move Data Anchor Tokens of one file's class.
    TransferDat {
        file_id: u64,
        to: Address,
        #[serde(with = "crate::amount")]
        amount: Amount,
    },
    /// Bond `amount` as the stake of the validator `identity`, reached at `p2p`: the first bond
    /// of an account names its identity; later ones add stake (and may move the address).
    /// `proof` is the identity's signature over the chain, the signer and the address
    /// ([`crate::validator::bond_message`]).
    BondValidator {
        identity: crate::ValidatorIdentity,
        p2p: String,
        #[serde(with = "crate::amount")]
        amount: Amount,
        #[serde(with = "crate::serde_hex::array")]
        proof: [u8; 64],
    },
    /// Start unbonding `amount` of the signer's validator stake; it returns after the chain's
    /// unbonding epochs.
    UnbondValidator {
        #[serde(with = "crate::amount")]
        amount: Amount,
    },
}

impl Action {
    /// Whether the action changes what makes its sender eligible as a worker: stake, served
    /// models or enclave.
    pub fn changes_worker(&self) -> bool {
        matches!(
            self,
            Action::Stake { .. }
                | Action::Unstake { .. }
                | Action::ServeModels { .. }
                | Action::RegisterEnclave { .. }
                | Action::ServeData { .. }
        )
    }
}

/// Domain tag of registration commitments.
pub const REGISTRATION_DOMAIN: &[u8] = b"verity/register/v1";

/// SHA-256(domain ‖ asset (0 model, 1 dataset) ‖ id ‖ owner ‖ salt): what CommitRegistration
/// carries and the registration later reveals. The id is the model id or the dataset's data hash.
pub fn registration_commitment(asset: Asset, id: &Hash, owner: &Address, salt: &Hash) -> Hash {
    let mut w = Writer::new();
    w.fixed(REGISTRATION_DOMAIN)
        .u8(match asset {
            Asset::Model => 0,
            Asset::Dataset => 1,
        })
        .fixed(&id.0)
        .fixed(&owner.0)
        .fixed(&salt.0);
    sha256(&w.finish())
}

/// A registered asset's kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Asset {
    Model,
    Dataset,
}

/// What RegisterModel records (the Model fields of the seeds).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ModelSpec {
    /// SHA-256 of the ONNX file; the file's CID follows from it.
    pub model_id: Hash,
    pub name: String,
    pub version: String,
    /// Merkle root of the initializers (`verity_infer::Model::weights_root`).
    pub weights_root: Hash,
    pub architecture: String,
    pub param_count: u64,
    /// Size of the ONNX file in bytes.
    pub size: u64,
    pub license: String,
    pub tee_required: bool,
    pub allowed_modes: Vec<Mode>,
    /// Allowed deviation of outputs in parts per million; 0 means bit-exact.
    pub tolerance_ppm: u32,
    /// A language model's files and prices; its `model_id` is [`LanguageSpec::model_id`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub language: Option<Box<LanguageSpec>>,
}

/// Most hashes one dissection move reveals (k = 16).
pub const MAX_REVEALED: usize = 16;
/// Largest one-step witness and task input a OneStep carries.
pub const MAX_WITNESS_BYTES: usize = 192 * 1024;
pub const MAX_ONE_STEP_INPUT_BYTES: usize = 60 * 1024;
/// Largest output document a RevealOutput carries: a tolerant model's OP result must fit, so that
/// a dispute can compare it.
pub const MAX_REVEALED_OUTPUT_BYTES: usize = 192 * 1024;
/// Largest verifying key SetZkKeys carries (ours, for three public inputs, is 360 bytes).
pub const MAX_VERIFYING_KEY_BYTES: usize = 1024;

/// Longest name, version, license or architecture string.
pub const MAX_LABEL_LEN: usize = 128;
/// Most receipts in one SubmitReceipts.
pub const MAX_RECEIPTS_PER_TX: usize = 192;
/// Most models one worker lists.
pub const MAX_SERVED_MODELS: usize = 64;
const MAX_EVIDENCE_LEN: usize = 32 * 1024;
const MAX_CERTS: usize = 8;

fn encode_modes(modes: &[Mode]) -> u8 {
    modes.iter().fold(0, |bits, m| bits | (1 << m.tag()))
}

fn decode_modes(bits: u8) -> Result<Vec<Mode>, DecodeError> {
    if bits >> Mode::ALL.len() != 0 {
        return Err(DecodeError::Invalid {
            what: "allowed modes",
            reason: "unknown mode bit",
        });
    }
    Ok(Mode::ALL
        .into_iter()
        .filter(|m| bits & (1 << m.tag()) != 0)
        .collect())
}

fn bool_of(r: &mut Reader<'_>, what: &'static str) -> Result<bool, DecodeError> {
    match r.u8(what)? {
        0 => Ok(false),
        1 => Ok(true),
        tag => Err(DecodeError::UnknownTag { what, tag }),
    }
}

fn count(r: &mut Reader<'_>, what: &'static str, limit: usize) -> Result<usize, DecodeError> {
    let n = r.u32(what)? as usize;
    if n > limit {
        return Err(DecodeError::TooLong {
            what,
            len: n,
            limit,
        });
    }
    Ok(n)
}

impl Action {
    fn encode(&self, w: &mut Writer) {
        match self {
            Action::Transfer { to, amount } => {
                w.u8(0).fixed(&to.0).u128(*amount);
            }
            Action::Stake { amount } => {
                w.u8(1).u128(*amount);
            }
            Action::Unstake { amount } => {
                w.u8(2).u128(*amount);
            }
            Action::ServeModels { models } => {
                w.u8(3).u32(models.len() as u32);
                for m in models {
                    w.fixed(&m.0);
                }
            }
            Action::RegisterModel { spec, salt, anchor } => {
                w.u8(4)
                    .fixed(&spec.model_id.0)
                    .str(&spec.name)
                    .str(&spec.version)
                    .fixed(&spec.weights_root.0)
                    .str(&spec.architecture)
                    .u64(spec.param_count)
                    .u64(spec.size)
                    .str(&spec.license)
                    .u8(u8::from(spec.tee_required))
                    .u8(encode_modes(&spec.allowed_modes))
                    .u32(spec.tolerance_ppm);
                match &spec.language {
                    None => {
                        w.u8(0);
                    }
                    Some(language) => {
                        w.u8(1);
                        language.encode(w);
                    }
                }
                w.fixed(&salt.0);
                crate::Anchor::encode(anchor, w);
            }
            Action::RegisterDataset {
                name,
                data,
                license,
                salt,
                anchor,
            } => {
                w.u8(5).str(name);
                data.encode(w);
                w.str(license).fixed(&salt.0);
                crate::Anchor::encode(anchor, w);
            }
            Action::CommitRegistration { commitment } => {
                w.u8(29).fixed(&commitment.0);
            }
            Action::TransferOwnership { asset, id, to } => {
                w.u8(6)
                    .u8(match asset {
                        Asset::Model => 0,
                        Asset::Dataset => 1,
                    })
                    .fixed(&id.0)
                    .fixed(&to.0);
            }
            Action::RegisterEnclave {
                kind,
                enclave_key,
                nonce_height,
                report,
                collateral,
                certs,
            } => {
                w.u8(7)
                    .str(kind)
                    .fixed(enclave_key)
                    .u64(*nonce_height)
                    .bytes(report)
                    .bytes(collateral)
                    .u32(certs.len() as u32);
                for c in certs {
                    w.bytes(c);
                }
            }
            Action::SetAttestationPolicy { policy } => {
                w.u8(8).bytes(policy);
            }
            Action::SubmitTask {
                model_id,
                input,
                mode,
                max_fee,
                deadline_blocks,
                input_commitment,
                dataset,
                generation,
            } => {
                w.u8(9).fixed(&model_id.0);
                input.encode(w);
                w.u8(mode.tag()).u128(*max_fee).u64(*deadline_blocks);
                match input_commitment {
                    None => w.u8(0),
                    Some(c) => w.u8(1).fixed(&c.0),
                };
                match dataset {
                    None => w.u8(0),
                    Some(file) => w.u8(1).u64(*file),
                };
                match generation {
                    None => {
                        w.u8(0);
                    }
                    Some(limits) => {
                        w.u8(1);
                        limits.encode(w);
                    }
                }
            }
            Action::SubmitReceipts { receipts } => {
                w.u8(10).u32(receipts.len() as u32);
                for r in receipts {
                    r.encode(w);
                }
            }
            Action::CancelTask { task_id } => {
                w.u8(11).fixed(&task_id.0);
            }
            Action::ReportFailures { failures } => {
                w.u8(12).u32(failures.len() as u32);
                for f in failures {
                    f.encode(w);
                }
            }
            Action::RegisterChallenger { amount } => {
                w.u8(13).u128(*amount);
            }
            Action::UnbondChallenger { amount } => {
                w.u8(14).u128(*amount);
            }
            Action::OpenDispute {
                task_id,
                trace_root,
                trace_len,
            } => {
                w.u8(15)
                    .fixed(&task_id.0)
                    .fixed(&trace_root.0)
                    .u32(*trace_len);
            }
            Action::RevealChildren { dispute_id, hashes } => {
                w.u8(16).fixed(&dispute_id.0).u32(hashes.len() as u32);
                for h in hashes {
                    w.fixed(&h.0);
                }
            }
            Action::OneStep {
                dispute_id,
                witness,
                input,
            } => {
                w.u8(17).fixed(&dispute_id.0).bytes(witness).bytes(input);
            }
            Action::RevealOutput { dispute_id, output } => {
                w.u8(18).fixed(&dispute_id.0).bytes(output);
            }
            Action::RevealToken {
                dispute_id,
                output,
                prompt,
                forward_root,
                token,
            } => {
                w.u8(30)
                    .fixed(&dispute_id.0)
                    .bytes(output)
                    .bytes(prompt)
                    .fixed(&forward_root.0)
                    .u32(*token);
            }
            Action::SetZkKeys {
                model_id,
                verifying_key,
                proving_key,
            } => {
                w.u8(19)
                    .fixed(&model_id.0)
                    .bytes(verifying_key)
                    .fixed(&proving_key.0);
            }
            Action::SubmitZkReceipt(zk) => {
                w.u8(20);
                zk.encode(w);
            }
            Action::ServeData {
                rsa_public_key,
                endpoint,
                signature,
            } => {
                w.u8(21)
                    .bytes(rsa_public_key)
                    .str(endpoint)
                    .fixed(signature);
            }
            Action::AddFile {
                data,
                url,
                plaintext_hash,
                evaluation,
            } => {
                w.u8(22);
                data.encode(w);
                w.str(url).fixed(&plaintext_hash.0);
                crate::Evaluation::encode(evaluation, w);
            }
            Action::AddPermission { file_id, grantee } => {
                w.u8(23).u64(*file_id).fixed(&grantee.0);
            }
            Action::RequestProof { file_id, fee } => {
                w.u8(24).u64(*file_id).u128(*fee);
            }
            Action::AddProof(proof) => {
                w.u8(25);
                proof.encode(w);
            }
            Action::RequestReward { file_id, job_id } => {
                w.u8(26).u64(*file_id).u64(*job_id);
            }
            Action::TransferDat {
                file_id,
                to,
                amount,
            } => {
                w.u8(27).u64(*file_id).fixed(&to.0).u128(*amount);
            }
            Action::ClaimDataRewards { file_id } => {
                w.u8(28).u64(*file_id);
            }
            Action::BondValidator {
                identity,
                p2p,
                amount,
                proof,
            } => {
                w.u8(31)
                    .fixed(&identity.0)
                    .str(p2p)
                    .u128(*amount)
                    .fixed(proof);
            }
            Action::UnbondValidator { amount } => {
                w.u8(32).u128(*amount);
            }
        }
    }

    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(match r.u8("action tag")? {
            0 => Action::Transfer {
                to: Address(r.array("transfer recipient")?),
                amount: r.u128("transfer amount")?,
            },
            1 => Action::Stake {
                amount: r.u128("stake amount")?,
            },
            2 => Action::Unstake {
                amount: r.u128("unstake amount")?,
            },
            3 => {
                let n = count(r, "served models", MAX_SERVED_MODELS)?;
                let models = (0..n)
                    .map(|_| r.array("model id").map(Hash))
                    .collect::<Result<_, _>>()?;
                Action::ServeModels { models }
            }
            4 => Action::RegisterModel {
                spec: ModelSpec {
                    model_id: Hash(r.array("model id")?),
                    name: r.string("model name", MAX_LABEL_LEN)?,
                    version: r.string("model version", MAX_LABEL_LEN)?,
                    weights_root: Hash(r.array("weights root")?),
                    architecture: r.string("architecture", MAX_LABEL_LEN)?,
                    param_count: r.u64("param count")?,
                    size: r.u64("model size")?,
                    license: r.string("license", MAX_LABEL_LEN)?,
                    tee_required: bool_of(r, "tee_required")?,
                    allowed_modes: decode_modes(r.u8("allowed modes")?)?,
                    tolerance_ppm: r.u32("tolerance")?,
                    language: match r.u8("language model flag")? {
                        0 => None,
                        1 => Some(Box::new(LanguageSpec::decode(r)?)),
                        tag => {
                            return Err(DecodeError::UnknownTag {
                                what: "language model flag",
                                tag,
                            })
                        }
                    },
                },
                salt: Hash(r.array("registration salt")?),
                anchor: crate::Anchor::decode(r)?,
            },
            5 => Action::RegisterDataset {
                name: r.string("dataset name", MAX_LABEL_LEN)?,
                data: DataRef::decode(r)?,
                license: r.string("license", MAX_LABEL_LEN)?,
                salt: Hash(r.array("registration salt")?),
                anchor: crate::Anchor::decode(r)?,
            },
            6 => Action::TransferOwnership {
                asset: match r.u8("asset kind")? {
                    0 => Asset::Model,
                    1 => Asset::Dataset,
                    tag => {
                        return Err(DecodeError::UnknownTag {
                            what: "asset kind",
                            tag,
                        })
                    }
                },
                id: Hash(r.array("asset id")?),
                to: Address(r.array("new owner")?),
            },
            7 => {
                let kind = r.string("TEE kind", 16)?;
                let enclave_key = r.array("enclave key")?;
                let nonce_height = r.u64("nonce height")?;
                let report = r.bytes("report", MAX_EVIDENCE_LEN)?.to_vec();
                let collateral = r.bytes("collateral", MAX_EVIDENCE_LEN)?.to_vec();
                let n = count(r, "certificates", MAX_CERTS)?;
                let certs = (0..n)
                    .map(|_| r.bytes("certificate", MAX_EVIDENCE_LEN).map(<[u8]>::to_vec))
                    .collect::<Result<_, _>>()?;
                Action::RegisterEnclave {
                    kind,
                    enclave_key,
                    nonce_height,
                    report,
                    collateral,
                    certs,
                }
            }
            8 => Action::SetAttestationPolicy {
                policy: r.bytes("policy", MAX_EVIDENCE_LEN)?.to_vec(),
            },
            9 => Action::SubmitTask {
                model_id: Hash(r.array("model id")?),
                input: DataRef::decode(r)?,
                mode: Mode::from_tag(r.u8("mode")?)?,
                max_fee: r.u128("max fee")?,
                deadline_blocks: r.u64("deadline")?,
                input_commitment: match r.u8("input commitment flag")? {
                    0 => None,
                    1 => Some(Hash(r.array("input commitment")?)),
                    tag => {
                        return Err(DecodeError::UnknownTag {
                            what: "input commitment flag",
                            tag,
                        })
                    }
                },
                dataset: match r.u8("dataset flag")? {
                    0 => None,
                    1 => Some(r.u64("dataset file id")?),
                    tag => {
                        return Err(DecodeError::UnknownTag {
                            what: "dataset flag",
                            tag,
                        })
                    }
                },
                generation: match r.u8("generation flag")? {
                    0 => None,
                    1 => Some(GenerationLimits::decode(r)?),
                    tag => {
                        return Err(DecodeError::UnknownTag {
                            what: "generation flag",
                            tag,
                        })
                    }
                },
            },
            10 => {
                let n = count(r, "receipts", MAX_RECEIPTS_PER_TX)?;
                let receipts = (0..n)
                    .map(|_| TaskReceipt::decode(r))
                    .collect::<Result<_, _>>()?;
                Action::SubmitReceipts { receipts }
            }
            11 => Action::CancelTask {
                task_id: Hash(r.array("task id")?),
            },
            12 => {
                let n = count(r, "failures", MAX_RECEIPTS_PER_TX)?;
                let failures = (0..n)
                    .map(|_| FailureReceipt::decode(r))
                    .collect::<Result<_, _>>()?;
                Action::ReportFailures { failures }
            }
            13 => Action::RegisterChallenger {
                amount: r.u128("bond amount")?,
            },
            14 => Action::UnbondChallenger {
                amount: r.u128("unbond amount")?,
            },
            15 => Action::OpenDispute {
                task_id: Hash(r.array("task id")?),
                trace_root: Hash(r.array("trace root")?),
                trace_len: r.u32("trace length")?,
            },
            16 => {
                let dispute_id = Hash(r.array("dispute id")?);
                let n = count(r, "revealed hashes", MAX_REVEALED)?;
                let hashes = (0..n)
                    .map(|_| r.array("revealed hash").map(Hash))
                    .collect::<Result<_, _>>()?;
                Action::RevealChildren { dispute_id, hashes }
            }
            17 => Action::OneStep {
                dispute_id: Hash(r.array("dispute id")?),
                witness: r.bytes("witness", MAX_WITNESS_BYTES)?.to_vec(),
                input: r.bytes("task input", MAX_ONE_STEP_INPUT_BYTES)?.to_vec(),
            },
            18 => Action::RevealOutput {
                dispute_id: Hash(r.array("dispute id")?),
                output: r
                    .bytes("output document", MAX_REVEALED_OUTPUT_BYTES)?
                    .to_vec(),
            },
            19 => Action::SetZkKeys {
                model_id: Hash(r.array("model id")?),
                verifying_key: r.bytes("verifying key", MAX_VERIFYING_KEY_BYTES)?.to_vec(),
                proving_key: Hash(r.array("proving key hash")?),
            },
            20 => Action::SubmitZkReceipt(crate::ZkReceipt::decode(r)?),
            21 => Action::ServeData {
                rsa_public_key: r
                    .bytes("RSA public key", crate::MAX_RSA_KEY_BYTES)?
                    .to_vec(),
                endpoint: r.string("verifier endpoint", crate::MAX_URL_LEN)?,
                signature: r.array("data key signature")?,
            },
            22 => Action::AddFile {
                data: DataRef::decode(r)?,
                url: r.string("file url", crate::MAX_URL_LEN)?,
                plaintext_hash: Hash(r.array("plaintext hash")?),
                evaluation: crate::Evaluation::decode(r)?,
            },
            23 => Action::AddPermission {
                file_id: r.u64("file id")?,
                grantee: Address(r.array("grantee")?),
            },
            24 => Action::RequestProof {
                file_id: r.u64("file id")?,
                fee: r.u128("proof fee")?,
            },
            25 => Action::AddProof(crate::DataProof::decode(r)?),
            26 => Action::RequestReward {
                file_id: r.u64("file id")?,
                job_id: r.u64("job id")?,
            },
            27 => Action::TransferDat {
                file_id: r.u64("file id")?,
                to: Address(r.array("DAT recipient")?),
                amount: r.u128("DAT amount")?,
            },
            28 => Action::ClaimDataRewards {
                file_id: r.u64("file id")?,
            },
            29 => Action::CommitRegistration {
                commitment: Hash(r.array("registration commitment")?),
            },
            30 => Action::RevealToken {
                dispute_id: Hash(r.array("dispute id")?),
                output: r
                    .bytes("output document", MAX_REVEALED_OUTPUT_BYTES)?
                    .to_vec(),
                prompt: r
                    .bytes("prompt document", MAX_ONE_STEP_INPUT_BYTES)?
                    .to_vec(),
                forward_root: Hash(r.array("forward root")?),
                token: r.u32("token")?,
            },
            31 => Action::BondValidator {
                identity: crate::ValidatorIdentity(r.array("validator identity")?),
                p2p: r.string("p2p address", crate::validator::MAX_P2P_ADDRESS_LEN)?,
                amount: r.u128("bond amount")?,
                proof: r.array("bond proof")?,
            },
            32 => Action::UnbondValidator {
                amount: r.u128("unbond amount")?,
            },
            tag => {
                return Err(DecodeError::UnknownTag {
                    what: "action",
                    tag,
                })
            }
        })
    }

    pub fn name(&self) -> &'static str {
        match self {
            Action::Transfer { .. } => "transfer",
            Action::Stake { .. } => "stake",
            Action::Unstake { .. } => "unstake",
            Action::ServeModels { .. } => "serve_models",
            Action::RegisterModel { .. } => "register_model",
            Action::CommitRegistration { .. } => "commit_registration",
            Action::RegisterDataset { .. } => "register_dataset",
            Action::TransferOwnership { .. } => "transfer_ownership",
            Action::RegisterEnclave { .. } => "register_enclave",
            Action::SetAttestationPolicy { .. } => "set_attestation_policy",
            Action::SubmitTask { .. } => "submit_task",
            Action::SubmitReceipts { .. } => "submit_receipts",
            Action::CancelTask { .. } => "cancel_task",
            Action::ReportFailures { .. } => "report_failures",
            Action::RegisterChallenger { .. } => "register_challenger",
            Action::UnbondChallenger { .. } => "unbond_challenger",
            Action::OpenDispute { .. } => "open_dispute",
            Action::RevealChildren { .. } => "reveal_children",
            Action::OneStep { .. } => "one_step",
            Action::RevealOutput { .. } => "reveal_output",
            Action::RevealToken { .. } => "reveal_token",
            Action::SetZkKeys { .. } => "set_zk_keys",
            Action::SubmitZkReceipt(_) => "submit_zk_receipt",
            Action::ServeData { .. } => "serve_data",
            Action::AddFile { .. } => "add_file",
            Action::AddPermission { .. } => "add_permission",
            Action::RequestProof { .. } => "request_proof",
            Action::AddProof(_) => "add_proof",
            Action::RequestReward { .. } => "request_reward",
            Action::TransferDat { .. } => "transfer_dat",
            Action::ClaimDataRewards { .. } => "claim_data_rewards",
            Action::BondValidator { .. } => "bond_validator",
            Action::UnbondValidator { .. } => "unbond_validator",
        }
    }

    /// What the action takes from the signer's balance beyond the fee.
    pub fn spend(&self) -> Amount {
        match self {
            Action::Transfer { amount, .. }
            | Action::Stake { amount }
            | Action::RegisterChallenger { amount } => *amount,
            Action::SubmitTask { max_fee, .. } => *max_fee,
            Action::RequestProof { fee, .. } => *fee,
            _ => 0,
        }
    }
}

/// A chain's transaction prices, fixed at genesis.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct FeeSchedule {
    #[serde(with = "crate::amount")]
    #[schema(schema_with = crate::schema::amount)]
    pub fee_per_weight: Amount,
    #[serde(with = "crate::amount")]
    #[schema(schema_with = crate::schema::amount)]
    pub min_fee: Amount,
}

/// The signed part of a transaction.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TxBody {
    pub chain_id: String,
    pub nonce: u64,
    #[serde(with = "crate::amount")]
    pub fee: Amount,
    pub action: Action,
}

impl TxBody {
    fn encode_into(&self, w: &mut Writer) {
        w.u8(TX_VERSION)
            .str(&self.chain_id)
            .u64(self.nonce)
            .u128(self.fee);
        self.action.encode(w);
    }

    /// Bytes of this body once signed: what its weight is charged on.
    pub fn signed_len(&self) -> usize {
        let mut w = Writer::new();
        self.encode_into(&mut w);
        w.finish().len() + 65
    }

    /// The least fee this transaction must offer on a chain with these prices: its weight ×
    /// `fee_per_weight`, never below `min_fee` (saturating: such a fee is unpayable anyway).
    pub fn required_fee(&self, prices: &FeeSchedule) -> Amount {
        let weight = crate::weight::of(&self.action, self.signed_len());
        prices
            .fee_per_weight
            .saturating_mul(weight.into())
            .max(prices.min_fee)
    }

    /// The digest the sender signs: keccak256(domain tag ‖ body).
    pub fn signing_digest(&self) -> [u8; 32] {
        let mut w = Writer::new();
        w.fixed(TX_DOMAIN);
        self.encode_into(&mut w);
        keccak256(&w.finish())
    }

    pub fn sign(self, key: &AccountKey) -> SignedTx {
        let signature = key.sign_digest(&self.signing_digest());
        SignedTx {
            body: self,
            signature,
        }
    }
}

/// A transaction with its sender's signature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedTx {
    pub body: TxBody,
    pub signature: [u8; 65],
}

impl SignedTx {
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::new();
        self.body.encode_into(&mut w);
        w.fixed(&self.signature);
        w.finish()
    }

    /// Decodes one transaction; rejects oversize input, unknown versions and trailing bytes.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        if bytes.len() > MAX_TX_BYTES {
            return Err(DecodeError::TooLong {
                what: "transaction",
                len: bytes.len(),
                limit: MAX_TX_BYTES,
            });
        }
        let mut r = Reader::new(bytes);
        let version = r.u8("transaction version")?;
        if version != TX_VERSION {
            return Err(DecodeError::UnknownTag {
                what: "transaction version",
                tag: version,
            });
        }
        let chain_id = r.string("chain id", MAX_CHAIN_ID_LEN)?;
        let nonce = r.u64("nonce")?;
        let fee = r.u128("fee")?;
        let action = Action::decode(&mut r)?;
        let signature = r.array("signature")?;
        r.finish()?;
        Ok(SignedTx {
            body: TxBody {
                chain_id,
                nonce,
                fee,
                action,
            },
            signature,
        })
    }

    /// SHA-256 of the encoded transaction: its id everywhere.
    pub fn hash(&self) -> Hash {
        sha256(&self.encode())
    }

    /// The address whose key signed this transaction.
    pub fn sender(&self) -> Result<Address, SignatureError> {
        recover_signer(&self.body.signing_digest(), &self.signature)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn transfer(chain_id: &str, nonce: u64) -> TxBody {
        TxBody {
            chain_id: chain_id.into(),
            nonce,
            fee: 10,
            action: Action::Transfer {
                to: Address([7; 20]),
                amount: 1_000,
            },
        }
    }

    #[test]
    fn round_trip_and_sender() {
        let key = AccountKey::generate();
        let tx = transfer("verity-test", 3).sign(&key);
        let bytes = tx.encode();
        let back = SignedTx::decode(&bytes).unwrap();
        assert_eq!(back, tx);
        assert_eq!(back.sender().unwrap(), key.address());
        assert_eq!(back.hash(), sha256(&bytes));
    }

    #[test]
    fn dispute_actions_round_trip_and_respect_their_limits() {
        let key = AccountKey::generate();
        let id = crate::sha256(b"dispute");
        for action in [
            Action::RegisterChallenger { amount: 7 },
            Action::UnbondChallenger { amount: 3 },
            Action::OpenDispute {
                task_id: id,
                trace_root: crate::sha256(b"root"),
                trace_len: 7,
            },
            Action::RevealChildren {
                dispute_id: id,
                hashes: vec![id; MAX_REVEALED],
            },
            Action::OneStep {
                dispute_id: id,
                witness: vec![1; MAX_WITNESS_BYTES],
                input: vec![2; MAX_ONE_STEP_INPUT_BYTES],
            },
            Action::RevealOutput {
                dispute_id: id,
                output: vec![3; MAX_REVEALED_OUTPUT_BYTES],
            },
            Action::RevealToken {
                dispute_id: id,
                output: vec![3; MAX_REVEALED_OUTPUT_BYTES],
                prompt: vec![4; MAX_ONE_STEP_INPUT_BYTES],
                forward_root: id,
                token: 7,
            },
            Action::SetZkKeys {
                model_id: id,
                verifying_key: vec![4; MAX_VERIFYING_KEY_BYTES],
                proving_key: id,
            },
            Action::SubmitZkReceipt(crate::ZkReceipt {
                receipt: TaskReceipt {
                    task_id: id,
                    model_id: id,
                    input_hash: id,
                    output_hash: id,
                    output_size: 9,
                    trace_root: id,
                    trace_len: 13,
                    worker: crate::Address([7; 20]),
                    enclave_key: [1; 32],
                    signature: [2; 64],
                },
                input_commitment: id,
                output_commitment: id,
                proof: vec![5; crate::MAX_PROOF_BYTES],
            }),
        ] {
            let tx = TxBody {
                chain_id: "verity-a".into(),
                nonce: 1,
                fee: 1,
                action,
            }
            .sign(&key);
            let bytes = tx.encode();
            assert!(bytes.len() <= MAX_TX_BYTES);
            assert_eq!(SignedTx::decode(&bytes).unwrap(), tx);
        }
        // One hash too many is refused.
        let tx = TxBody {
            chain_id: "verity-a".into(),
            nonce: 1,
            fee: 1,
            action: Action::RevealChildren {
                dispute_id: id,
                hashes: vec![id; MAX_REVEALED + 1],
            },
        }
        .sign(&key);
        assert!(SignedTx::decode(&tx.encode()).is_err());
    }

    #[test]
    fn a_commitment_binds_asset_id_owner_and_salt() {
        let (id, owner, salt) = (sha256(b"model"), Address([1; 20]), sha256(b"salt"));
        let c = registration_commitment(Asset::Model, &id, &owner, &salt);
        assert_ne!(
            c,
            registration_commitment(Asset::Dataset, &id, &owner, &salt)
        );
        assert_ne!(
            c,
            registration_commitment(Asset::Model, &salt, &owner, &salt)
        );
        assert_ne!(
            c,
            registration_commitment(Asset::Model, &id, &Address([2; 20]), &salt)
        );
        assert_ne!(c, registration_commitment(Asset::Model, &id, &owner, &id));
    }

    #[test]
    fn chain_id_is_signed() {
        let key = AccountKey::generate();
        let mut tx = transfer("verity-a", 0).sign(&key);
        tx.body.chain_id = "verity-b".into();
        assert_ne!(tx.sender().ok(), Some(key.address()));
    }

    #[test]
    fn rejects_malformed() {
        let key = AccountKey::generate();
        let bytes = transfer("c", 0).sign(&key).encode();
        assert!(SignedTx::decode(&bytes[..bytes.len() - 1]).is_err());
        let mut extra = bytes.clone();
        extra.push(1);
        assert_eq!(SignedTx::decode(&extra), Err(DecodeError::TrailingBytes(1)));
        let mut bad_version = bytes.clone();
        bad_version[0] = 9;
        assert!(SignedTx::decode(&bad_version).is_err());
        assert!(SignedTx::decode(&vec![0u8; MAX_TX_BYTES + 1]).is_err());
    }

    /// Valid transactions of many kinds, encoded: what the mutation property starts from.
    fn valid_encodings() -> &'static [Vec<u8>] {
        static ENCODINGS: std::sync::OnceLock<Vec<Vec<u8>>> = std::sync::OnceLock::new();
        ENCODINGS.get_or_init(signed_encodings)
    }

    fn signed_encodings() -> Vec<Vec<u8>> {
        let key = AccountKey::from_hex(&"11".repeat(32)).unwrap();
        let id = crate::sha256(b"id");
        let receipt = TaskReceipt {
            task_id: id,
            model_id: id,
            input_hash: id,
            output_hash: id,
            output_size: 9,
            trace_root: id,
            trace_len: 13,
            worker: Address([7; 20]),
            enclave_key: [1; 32],
            signature: [2; 64],
        };
        let actions = vec![
            Action::Transfer {
                to: Address([3; 20]),
                amount: 12_345,
            },
            Action::SubmitTask {
                model_id: id,
                input: DataRef::of(b"input"),
                mode: Mode::Tee,
                max_fee: 99,
                deadline_blocks: 10,
                input_commitment: None,
                dataset: None,
                generation: None,
            },
            Action::SubmitTask {
                model_id: id,
                input: DataRef::of(b"input"),
                mode: Mode::TeeZk,
                max_fee: 99,
                deadline_blocks: 10,
                input_commitment: Some(id),
                dataset: Some(4),
                generation: None,
            },
            Action::SubmitTask {
                model_id: id,
                input: DataRef::of(b"prompt"),
                mode: Mode::Op,
                max_fee: 1_000,
                deadline_blocks: 10,
                input_commitment: None,
                dataset: None,
                generation: Some(GenerationLimits {
                    prompt_tokens: 12,
                    max_tokens: 32,
                }),
            },
            Action::RegisterModel {
                spec: ModelSpec {
                    model_id: id,
                    name: "lm".into(),
                    version: "1".into(),
                    weights_root: id,
                    architecture: "transformer".into(),
                    param_count: 5,
                    size: 6,
                    license: "Apache-2.0".into(),
                    tee_required: false,
                    allowed_modes: vec![Mode::Tee, Mode::Op],
                    tolerance_ppm: 0,
                    language: Some(Box::new(LanguageSpec {
                        graph: DataRef::of(b"graph"),
                        weights: Some(crate::ExternalWeights {
                            name: "model.onnx.data".into(),
                            chunks: vec![DataRef::of(b"wei"), DataRef::of(b"ghts")],
                        }),
                        tokenizer: DataRef::of(b"tokenizer"),
                        generation: DataRef::of(b"config"),
                        context: 256,
                        input_token_price: 1,
                        output_token_price: 3,
                    })),
                },
                salt: id,
                anchor: None,
            },
            Action::SubmitReceipts {
                receipts: vec![receipt.clone(), receipt.clone()],
            },
            Action::OpenDispute {
                task_id: id,
                trace_root: id,
                trace_len: 7,
            },
            Action::RevealChildren {
                dispute_id: id,
                hashes: vec![id; 3],
            },
            Action::OneStep {
                dispute_id: id,
                witness: vec![1, 2, 3],
                input: b"[[1]]".to_vec(),
            },
            Action::RevealOutput {
                dispute_id: id,
                output: b"{}".to_vec(),
            },
            Action::RevealToken {
                dispute_id: id,
                output: b"{}".to_vec(),
                prompt: b"{}".to_vec(),
                forward_root: id,
                token: 3,
            },
            Action::SetZkKeys {
                model_id: id,
                verifying_key: vec![4; 40],
                proving_key: id,
            },
            Action::SubmitZkReceipt(crate::ZkReceipt {
                receipt,
                input_commitment: id,
                output_commitment: id,
                proof: vec![5; 128],
            }),
        ];
        let registrations = [
            Action::CommitRegistration { commitment: id },
            Action::RegisterDataset {
                name: "d".into(),
                data: DataRef::of(b"d"),
                license: "CC0".into(),
                salt: id,
                anchor: Some(crate::Anchor {
                    enclave_key: [3; 32],
                    signature: [4; 64],
                }),
            },
        ];
        let actions = actions
            .into_iter()
            .chain(registrations)
            .chain(data_actions(id));
        actions
            .into_iter()
            .map(|action| {
                TxBody {
                    chain_id: "verity-a".into(),
                    nonce: 3,
                    fee: 7,
                    action,
                }
                .sign(&key)
                .encode()
            })
            .collect()
    }

    /// One action of each data kind.
    fn data_actions(id: Hash) -> Vec<Action> {
        vec![
            Action::ServeData {
                rsa_public_key: vec![6; 294],
                endpoint: "http://127.0.0.1:7100".into(),
                signature: [7; 64],
            },
            Action::AddFile {
                data: DataRef::of(b"ciphertext"),
                url: "ipfs://bafk".into(),
                plaintext_hash: id,
                evaluation: Some(crate::Evaluation {
                    label: "label".into(),
                    model_id: id,
                }),
            },
            Action::AddPermission {
                file_id: 4,
                grantee: Address([8; 20]),
            },
            Action::RequestProof { file_id: 4, fee: 9 },
            Action::AddProof(crate::DataProof {
                job_id: 2,
                file_id: 4,
                plaintext_hash: id,
                verdict: crate::DataVerdict::Rejected {
                    reason: crate::DataRejection::HashMismatch,
                },
                worker: Address([9; 20]),
                enclave_key: [1; 32],
                signature: [2; 64],
            }),
            Action::RequestReward {
                file_id: 4,
                job_id: 2,
            },
            Action::TransferDat {
                file_id: 4,
                to: Address([3; 20]),
                amount: 5,
            },
            Action::ClaimDataRewards { file_id: 4 },
        ]
    }

    /// `action` in a transaction of `key`'s.
    fn signed(key: &AccountKey, action: Action) -> SignedTx {
        TxBody {
            chain_id: "verity-a".into(),
            nonce: 1,
            fee: 1,
            action,
        }
        .sign(key)
    }

    #[test]
    fn validator_actions_round_trip_and_bound_the_address() {
        let key = AccountKey::generate();
        let sign = |action| signed(&key, action);
        let bond = |p2p: String| Action::BondValidator {
            identity: crate::ValidatorIdentity([4; 32]),
            p2p,
            amount: 10,
            proof: [5; 64],
        };
        for action in [
            bond("127.0.0.1:7000".into()),
            Action::UnbondValidator { amount: 3 },
        ] {
            let tx = sign(action);
            assert_eq!(SignedTx::decode(&tx.encode()).unwrap(), tx);
        }
        let long = sign(bond("h".repeat(crate::validator::MAX_P2P_ADDRESS_LEN + 1)));
        assert!(SignedTx::decode(&long.encode()).is_err());
    }

    #[test]
    fn data_actions_round_trip_and_bound_their_strings() {
        let key = AccountKey::generate();
        let sign = |action| signed(&key, action);
        for action in data_actions(sha256(b"file")) {
            let tx = sign(action);
            assert_eq!(SignedTx::decode(&tx.encode()).unwrap(), tx);
        }
        let long_url = sign(Action::AddFile {
            data: DataRef::of(b"x"),
            url: "u".repeat(crate::MAX_URL_LEN + 1),
            plaintext_hash: Hash::ZERO,
            evaluation: None,
        });
        assert!(SignedTx::decode(&long_url.encode()).is_err());
        let long_key = sign(Action::ServeData {
            rsa_public_key: vec![0; crate::MAX_RSA_KEY_BYTES + 1],
            endpoint: String::new(),
            signature: [0; 64],
        });
        assert!(SignedTx::decode(&long_key.encode()).is_err());
    }

    /// One edit of an encoding: overwrite, insert or delete a byte, or cut the tail.
    fn mutate(bytes: &mut Vec<u8>, at: u16, kind: u8, value: u8) {
        if bytes.is_empty() {
            bytes.push(value);
            return;
        }
        let i = usize::from(at) % bytes.len();
        match kind % 4 {
            0 => bytes[i] = value,
            1 => bytes.insert(i, value),
            2 => {
                bytes.remove(i);
            }
            _ => bytes.truncate(i),
        }
    }

    proptest! {
        #[test]
        fn decode_never_panics_and_is_canonical(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            if let Ok(tx) = SignedTx::decode(&bytes) {
                prop_assert_eq!(tx.encode(), bytes);
            }
        }

        /// Random bytes rarely get past the first fields; edits of valid transactions reach
        /// every field's decoder. Whatever still decodes must encode back to the same bytes:
        /// one transaction, one encoding, one hash.
        #[test]
        fn mutated_valid_transactions_decode_canonically_or_not_at_all(
            which in 0usize..10,
            edits in proptest::collection::vec((any::<u16>(), any::<u8>(), any::<u8>()), 1..4),
        ) {
            let mut bytes = valid_encodings()[which].clone();
            for (at, kind, value) in edits {
                mutate(&mut bytes, at, kind, value);
            }
            if let Ok(tx) = SignedTx::decode(&bytes) {
                prop_assert_eq!(tx.encode(), bytes);
            }
        }
    }
}
