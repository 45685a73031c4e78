//! Contributed data: what a data verifier's enclave signs (`docs/protocol.md` §14).
//!
//! A proof is ed25519 by the verifier's registered enclave key over
//! SHA-256(`DATA_PROOF_DOMAIN` ‖ chain id ‖ job id ‖ file id ‖ plaintext hash ‖ verdict ‖
//! worker ‖ enclave key), so it cannot be moved to another job, file or chain.

use serde::{Deserialize, Serialize};

use crate::codec::{DecodeError, Reader, Writer};
use crate::task::{enclave_digest, verify_enclave_signature};
use crate::{Address, Hash, ReceiptError};

/// Domain tag of data proofs.
pub const DATA_PROOF_DOMAIN: &[u8] = b"verity/data-proof/v1";
/// Domain tag of a verifier's RSA key, signed by its enclave key.
pub const DATA_KEY_DOMAIN: &[u8] = b"verity/data-key/v1";
/// Domain tag of ownership anchors.
pub const ANCHOR_DOMAIN: &[u8] = b"verity/anchor/v1";

/// An attested enclave's statement that `owner` registered the file whose SHA-256 is the
/// asset's id: it hashed the file itself and signed SHA-256(`ANCHOR_DOMAIN` ‖ chain id ‖ asset
/// (0 model, 1 dataset) ‖ id ‖ owner).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Anchor {
    #[serde(with = "crate::serde_hex::array")]
    #[schema(schema_with = crate::schema::hex_bytes)]
    pub enclave_key: [u8; 32],
    #[serde(with = "crate::serde_hex::array")]
    #[schema(schema_with = crate::schema::hex_bytes)]
    pub signature: [u8; 64],
}

fn anchor_digest(chain_id: &str, asset: crate::Asset, id: &Hash, owner: &Address) -> Hash {
    enclave_digest(ANCHOR_DOMAIN, chain_id, |w| {
        w.u8(match asset {
            crate::Asset::Model => 0,
            crate::Asset::Dataset => 1,
        })
        .fixed(&id.0)
        .fixed(&owner.0);
    })
}

impl Anchor {
    /// Signs the anchor of `id` for `owner` with `enclave`.
    pub fn sign(
        enclave: &crate::EnclaveKey,
        chain_id: &str,
        asset: crate::Asset,
        id: &Hash,
        owner: &Address,
    ) -> Self {
        Self {
            enclave_key: enclave.public(),
            signature: enclave.sign_digest(&anchor_digest(chain_id, asset, id, owner)),
        }
    }

    pub fn verify(
        &self,
        chain_id: &str,
        asset: crate::Asset,
        id: &Hash,
        owner: &Address,
    ) -> Result<(), ReceiptError> {
        verify_enclave_signature(
            &self.enclave_key,
            &anchor_digest(chain_id, asset, id, owner),
            &self.signature,
        )
    }

    pub(crate) fn encode(anchor: &Option<Self>, w: &mut Writer) {
        match anchor {
            None => w.u8(0),
            Some(a) => w.u8(1).fixed(&a.enclave_key).fixed(&a.signature),
        };
    }

    pub(crate) fn decode(r: &mut Reader<'_>) -> Result<Option<Self>, DecodeError> {
        match r.u8("anchor flag")? {
            0 => Ok(None),
            1 => Ok(Some(Self {
                enclave_key: r.array("anchor enclave key")?,
                signature: r.array("anchor signature")?,
            })),
            tag => Err(DecodeError::UnknownTag {
                what: "anchor flag",
                tag,
            }),
        }
    }
}

/// The best quality score: 100.00 %.
pub const MAX_SCORE: u32 = 10_000;
/// Largest RSA public key (DER) a verifier registers; RSA-4096 SPKI is 550 bytes.
pub const MAX_RSA_KEY_BYTES: usize = 1024;
/// Longest file URL or verifier endpoint.
pub const MAX_URL_LEN: usize = 256;

/// How a labeled file is scored beyond its shape: the registered model's accuracy on it, with
/// `label` the CSV column holding each row's class and the other columns the model's input.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Evaluation {
    pub label: String,
    pub model_id: Hash,
}

impl Evaluation {
    pub(crate) fn encode(evaluation: &Option<Self>, w: &mut Writer) {
        match evaluation {
            None => w.u8(0),
            Some(e) => w.u8(1).str(&e.label).fixed(&e.model_id.0),
        };
    }

    pub(crate) fn decode(r: &mut Reader<'_>) -> Result<Option<Self>, DecodeError> {
        match r.u8("evaluation flag")? {
            0 => Ok(None),
            1 => Ok(Some(Self {
                label: r.string("label column", crate::MAX_LABEL_LEN)?,
                model_id: Hash(r.array("evaluation model id")?),
            })),
            tag => Err(DecodeError::UnknownTag {
                what: "evaluation flag",
                tag,
            }),
        }
    }
}

/// What the verifier found in a contributed file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(tag = "verdict", rename_all = "snake_case")]
pub enum DataVerdict {
    /// The plaintext matches the registered hash; its quality score in basis points.
    Scored {
        score: u32,
    },
    Rejected {
        reason: DataRejection,
    },
}

/// Why a verifier gives no score.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DataRejection {
    /// The decrypted plaintext is not the file the owner registered.
    HashMismatch,
    /// The wrapped password or the envelope does not open.
    Undecryptable,
    /// The encrypted file is not where the registration says, or not the bytes it names.
    Unavailable,
    /// The plaintext is neither CSV nor JSON lines.
    Unparseable,
}

impl DataRejection {
    fn tag(self) -> u8 {
        match self {
            DataRejection::HashMismatch => 0,
            DataRejection::Undecryptable => 1,
            DataRejection::Unavailable => 2,
            DataRejection::Unparseable => 3,
        }
    }

    fn from_tag(tag: u8) -> Result<Self, DecodeError> {
        Ok(match tag {
            0 => DataRejection::HashMismatch,
            1 => DataRejection::Undecryptable,
            2 => DataRejection::Unavailable,
            3 => DataRejection::Unparseable,
            tag => {
                return Err(DecodeError::UnknownTag {
                    what: "data rejection",
                    tag,
                })
            }
        })
    }
}

/// A verifier's answer to one proof job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct DataProof {
    pub job_id: u64,
    pub file_id: u64,
    /// SHA-256 of the decrypted plaintext; zero when it could not be decrypted.
    pub plaintext_hash: Hash,
    pub verdict: DataVerdict,
    pub worker: Address,
    #[serde(with = "crate::serde_hex::array")]
    #[schema(schema_with = crate::schema::hex_bytes)]
    pub enclave_key: [u8; 32],
    #[serde(with = "crate::serde_hex::array")]
    #[schema(schema_with = crate::schema::hex_bytes)]
    pub signature: [u8; 64],
}

impl DataProof {
    fn encode_fields(&self, w: &mut Writer) {
        w.u64(self.job_id)
            .u64(self.file_id)
            .fixed(&self.plaintext_hash.0);
        match self.verdict {
            DataVerdict::Scored { score } => w.u8(0).u32(score),
            DataVerdict::Rejected { reason } => w.u8(1).u8(reason.tag()),
        };
        w.fixed(&self.worker.0).fixed(&self.enclave_key);
    }

    pub(crate) fn encode(&self, w: &mut Writer) {
        self.encode_fields(w);
        w.fixed(&self.signature);
    }

    pub(crate) fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let job_id = r.u64("proof job id")?;
        let file_id = r.u64("proof file id")?;
        let plaintext_hash = Hash(r.array("plaintext hash")?);
        let verdict = match r.u8("verdict")? {
            0 => DataVerdict::Scored {
                score: r.u32("score")?,
            },
            1 => DataVerdict::Rejected {
                reason: DataRejection::from_tag(r.u8("rejection")?)?,
            },
            tag => {
                return Err(DecodeError::UnknownTag {
                    what: "verdict",
                    tag,
                })
            }
        };
        Ok(Self {
            job_id,
            file_id,
            plaintext_hash,
            verdict,
            worker: Address(r.array("proof worker")?),
            enclave_key: r.array("proof enclave key")?,
            signature: r.array("proof signature")?,
        })
    }

    /// SHA-256(domain ‖ chain id ‖ fields): what the enclave signs.
    pub fn signing_digest(&self, chain_id: &str) -> Hash {
        enclave_digest(DATA_PROOF_DOMAIN, chain_id, |w| self.encode_fields(w))
    }

    pub fn verify(&self, chain_id: &str) -> Result<(), ReceiptError> {
        verify_enclave_signature(
            &self.enclave_key,
            &self.signing_digest(chain_id),
            &self.signature,
        )
    }
}

/// SHA-256(key domain ‖ chain id ‖ worker ‖ RSA key): what a verifier's enclave signs to say
/// that it holds the RSA key contributors wrap passwords to.
pub(crate) fn data_key_digest(chain_id: &str, worker: &Address, rsa_public_key: &[u8]) -> Hash {
    enclave_digest(DATA_KEY_DOMAIN, chain_id, |w| {
        w.fixed(&worker.0).bytes(rsa_public_key);
    })
}

/// Checks a verifier's RSA key signature by `enclave_key`.
pub fn verify_data_key(
    chain_id: &str,
    worker: &Address,
    rsa_public_key: &[u8],
    enclave_key: &[u8; 32],
    signature: &[u8; 64],
) -> Result<(), ReceiptError> {
    verify_enclave_signature(
        enclave_key,
        &data_key_digest(chain_id, worker, rsa_public_key),
        signature,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::EnclaveKey;

    fn proof() -> DataProof {
        DataProof {
            job_id: 3,
            file_id: 7,
            plaintext_hash: Hash([9; 32]),
            verdict: DataVerdict::Scored { score: 8_125 },
            worker: Address([4; 20]),
            enclave_key: [0; 32],
            signature: [0; 64],
        }
    }

    #[test]
    fn a_signed_proof_binds_job_file_verdict_and_chain() {
        let key = EnclaveKey::from_seed([1; 32]);
        let mut signed = proof();
        key.sign_data_proof("verity-test", &mut signed);
        signed.verify("verity-test").unwrap();
        assert!(signed.verify("other-chain").is_err());
        let moved: [fn(&mut DataProof); 4] = [
            |p| p.job_id += 1,
            |p| p.file_id += 1,
            |p| p.plaintext_hash = Hash([8; 32]),
            |p| p.verdict = DataVerdict::Scored { score: 10_000 },
        ];
        for change in moved {
            let mut forged = signed.clone();
            change(&mut forged);
            assert_eq!(
                forged.verify("verity-test"),
                Err(ReceiptError::BadSignature)
            );
        }
        let mut w = Writer::new();
        signed.encode(&mut w);
        let bytes = w.finish();
        let mut r = Reader::new(&bytes);
        assert_eq!(DataProof::decode(&mut r).unwrap(), signed);
        r.finish().unwrap();
    }

    #[test]
    fn the_key_signature_binds_worker_and_key() {
        let enclave = EnclaveKey::from_seed([2; 32]);
        let worker = Address([5; 20]);
        let sig = enclave.sign_data_key("c", &worker, b"rsa key");
        verify_data_key("c", &worker, b"rsa key", &enclave.public(), &sig).unwrap();
        assert!(
            verify_data_key("c", &Address([6; 20]), b"rsa key", &enclave.public(), &sig).is_err()
        );
        assert!(verify_data_key("c", &worker, b"rsa kez", &enclave.public(), &sig).is_err());
    }

    #[test]
    fn an_anchor_binds_asset_id_owner_and_chain() {
        let enclave = EnclaveKey::from_seed([3; 32]);
        let (id, owner) = (Hash([7; 32]), Address([8; 20]));
        let anchor = Anchor::sign(&enclave, "c", crate::Asset::Model, &id, &owner);
        anchor
            .verify("c", crate::Asset::Model, &id, &owner)
            .unwrap();
        assert!(anchor
            .verify("d", crate::Asset::Model, &id, &owner)
            .is_err());
        assert!(anchor
            .verify("c", crate::Asset::Dataset, &id, &owner)
            .is_err());
        assert!(anchor
            .verify("c", crate::Asset::Model, &Hash([6; 32]), &owner)
            .is_err());
        assert!(anchor
            .verify("c", crate::Asset::Model, &id, &Address([9; 20]))
            .is_err());
    }

    #[test]
    fn unknown_verdict_and_rejection_tags_are_refused() {
        let mut w = Writer::new();
        w.u64(1).u64(2).fixed(&[0; 32]).u8(1).u8(9);
        let bytes = w.finish();
        assert!(DataProof::decode(&mut Reader::new(&bytes)).is_err());
        let mut w = Writer::new();
        w.u64(1).u64(2).fixed(&[0; 32]).u8(2);
        let bytes = w.finish();
        assert!(DataProof::decode(&mut Reader::new(&bytes)).is_err());
    }
}
