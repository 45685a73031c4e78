//! Groth16 over BN254: a per-model setup, proving, verifying, and the keys' and proofs' bytes
//! (arkworks' compressed encoding: a proof is 128 bytes).

use ark_bn254::{Bn254, Fr};
use ark_groth16::{Groth16, PreparedVerifyingKey};
use ark_serialize::{
    CanonicalDeserialize, CanonicalSerialize, Compress, SerializationError, Validate,
};
use ark_snark::SNARK;
use rand_core::OsRng;
use verity_infer::Tensor;
use verity_types::Hash;

use crate::circuit::{InferenceCircuit, Statement, ZkModel};
use crate::commit::{from_hash, model_input, to_hash};
use crate::ZkError;

/// Bytes of a compressed proof.
pub const PROOF_BYTES: usize = 128;

pub struct ProvingKey(pub(crate) ark_groth16::ProvingKey<Bn254>);
#[derive(Clone)]
pub struct VerifyingKey(pub(crate) ark_groth16::VerifyingKey<Bn254>);
#[derive(Clone, Debug, PartialEq)]
pub struct Proof(pub(crate) ark_groth16::Proof<Bn254>);

/// What a proof states in public: which model, and commitments to its inputs and outputs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PublicInputs {
    pub model_id: Hash,
    pub input_commitment: Hash,
    pub output_commitment: Hash,
}

impl PublicInputs {
    /// The three field elements, in the circuit's order; an error if a commitment is not a
    /// field element.
    pub fn elements(&self) -> Result<[Fr; 3], ZkError> {
        let element = |h: &Hash, what| {
            from_hash(h).ok_or(ZkError::Encoding {
                what,
                reason: "not below the BN254 scalar modulus".into(),
            })
        };
        Ok([
            model_input(&self.model_id),
            element(&self.input_commitment, "input commitment")?,
            element(&self.output_commitment, "output commitment")?,
        ])
    }
}

fn encode(x: &impl CanonicalSerialize) -> Vec<u8> {
    let mut out = Vec::with_capacity(x.compressed_size());
    x.serialize_compressed(&mut out)
        .expect("writing to a Vec cannot fail");
    out
}

/// Our own words for arkworks' decoding errors: these reasons reach receipts and state roots,
/// which must not change with a dependency's wording.
fn decode_reason(e: &SerializationError) -> &'static str {
    match e {
        SerializationError::NotEnoughSpace | SerializationError::IoError(_) => "too short",
        SerializationError::InvalidData => "a point off the curve or a value out of range",
        SerializationError::UnexpectedFlags => "unexpected flag bits",
    }
}

/// Decodes all of `bytes` (compressed), checking the points when `validate` says so.
fn decode<T: CanonicalDeserialize>(
    what: &'static str,
    bytes: &[u8],
    validate: Validate,
) -> Result<T, ZkError> {
    let mut reader = bytes;
    let value = T::deserialize_with_mode(&mut reader, Compress::Yes, validate).map_err(|e| {
        ZkError::Encoding {
            what,
            reason: decode_reason(&e).into(),
        }
    })?;
    if !reader.is_empty() {
        return Err(ZkError::Encoding {
            what,
            reason: format!("{} bytes left over", reader.len()),
        });
    }
    Ok(value)
}

impl ProvingKey {
    pub fn to_bytes(&self) -> Vec<u8> {
        encode(&self.0)
    }

    /// Decodes a proving key without checking that its points lie on the curve: a bad key
    /// can only make proofs that fail to verify, and the check costs seconds for a large key.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, ZkError> {
        decode("proving key", bytes, Validate::No).map(ProvingKey)
    }

    pub fn verifying_key(&self) -> VerifyingKey {
        VerifyingKey(self.0.vk.clone())
    }
}

impl VerifyingKey {
    pub fn to_bytes(&self) -> Vec<u8> {
        encode(&self.0)
    }

    pub fn from_bytes(bytes: &[u8]) -> Result<Self, ZkError> {
        let vk: ark_groth16::VerifyingKey<Bn254> = decode("verifying key", bytes, Validate::Yes)?;
        if vk.gamma_abc_g1.len() != 4 {
            return Err(ZkError::Encoding {
                what: "verifying key",
                reason: format!(
                    "it is for {} public inputs, not 3",
                    vk.gamma_abc_g1.len().saturating_sub(1)
                ),
            });
        }
        Ok(VerifyingKey(vk))
    }

    /// The key with its pairing of α and β computed once, for verifying many proofs.
    pub fn prepare(&self) -> PreparedKey {
        PreparedKey(ark_groth16::prepare_verifying_key(&self.0))
    }
}

#[derive(Clone)]
pub struct PreparedKey(PreparedVerifyingKey<Bn254>);

impl Proof {
    pub fn to_bytes(&self) -> Vec<u8> {
        encode(&self.0)
    }

    pub fn from_bytes(bytes: &[u8]) -> Result<Self, ZkError> {
        decode("proof", bytes, Validate::Yes).map(Proof)
    }
}

/// A fresh per-model setup from the operating system's randomness: whoever knows that
/// randomness can forge proofs for this model, so on a network the setup must come from a
/// ceremony (`docs/protocol.md` §13). Not generic over the RNG, so that the prover's code is
/// compiled (optimized) here, whoever calls it.
pub fn setup(model: &ZkModel) -> Result<ProvingKey, ZkError> {
    let rng = &mut OsRng;
    let circuit = InferenceCircuit {
        model,
        inputs: model.zero_inputs(),
        salt: Fr::from(0u64),
    };
    let (pk, _) = Groth16::<Bn254>::circuit_specific_setup(circuit, rng)?;
    Ok(ProvingKey(pk))
}

/// Proves that `model`'s integer part maps the quantized `inputs` to its outputs, with
/// commitments under `salt` ([`crate::commit::salt_of`] the task's input file); returns the
/// proof and what it states.
pub fn prove(
    model: &ZkModel,
    key: &ProvingKey,
    inputs: Vec<Tensor>,
    salt: Fr,
) -> Result<(Proof, Statement, PublicInputs), ZkError> {
    let rng = &mut OsRng;
    // The statement, natively, and a check that the witness satisfies it before proving.
    let cs = ark_relations::r1cs::ConstraintSystem::<Fr>::new_ref();
    let statement = model.synthesize(&cs, inputs.clone(), salt)?;
    if !cs.is_satisfied()? {
        return Err(ZkError::Unsatisfied);
    }
    let circuit = InferenceCircuit {
        model,
        inputs,
        salt,
    };
    let proof = Groth16::<Bn254>::prove(&key.0, circuit, rng)?;
    let public = PublicInputs {
        model_id: model.model_id,
        input_commitment: to_hash(&statement.input_commitment),
        output_commitment: to_hash(&statement.output_commitment),
    };
    Ok((Proof(proof), statement, public))
}

/// Checks `proof` against the prepared key and the public inputs.
pub fn verify(key: &PreparedKey, public: &PublicInputs, proof: &Proof) -> Result<(), ZkError> {
    verify_elements(key, &public.elements()?, proof)
}

pub(crate) fn verify_elements(
    key: &PreparedKey,
    elements: &[Fr; 3],
    proof: &Proof,
) -> Result<(), ZkError> {
    // Arkworks errs only for a key of another input count or a degenerate pairing: either way
    // the proof does not verify, in our words rather than the library's.
    match Groth16::<Bn254>::verify_with_processed_vk(&key.0, elements, &proof.0) {
        Ok(true) => Ok(()),
        Ok(false) | Err(_) => Err(ZkError::Rejected),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn undecodable_keys_and_proofs_are_told_in_our_words() {
        let reason = |r: Result<Proof, ZkError>| r.unwrap_err().to_string();
        assert_eq!(reason(Proof::from_bytes(&[0; 10])), "proof: too short");
        assert_eq!(
            reason(Proof::from_bytes(&[0xff; PROOF_BYTES])),
            "proof: unexpected flag bits"
        );
        assert_eq!(
            VerifyingKey::from_bytes(&[])
                .err()
                .expect("an empty key is refused")
                .to_string(),
            "verifying key: too short"
        );
    }
}
