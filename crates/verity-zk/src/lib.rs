//! Zero-knowledge proofs of quantized-model inference (`docs/protocol.md` §13): the integer
//! part of an ONNX model compiled to an R1CS circuit over BN254 with verity-infer's exact
//! integer semantics, proven with Groth16. A proof states, in public, the model id and
//! Poseidon commitments to the quantized input and to the integer outputs; the tensors stay
//! private.
//!
//! ```no_run
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use verity_infer::{Engine, Model};
//! let model = Model::from_bytes(&std::fs::read("models/digits_mlp_int8.onnx")?)?;
//! let engine = Engine::new(1)?;
//! let circuit = verity_zk::ZkModel::compile(&model, &engine)?;
//! let key = verity_zk::setup(&circuit)?;
//! let file = std::fs::read("models/samples/digit_0_label_7.json")?;
//! let quantized = circuit.quantized_inputs(&model, &engine, model.task_inputs(&file)?)?;
//! let salt = verity_zk::commit::salt_of(&file);
//! let (proof, _, public) =
//!     verity_zk::prove(&circuit, &key, quantized, salt)?;
//! verity_zk::verify(&key.verifying_key().prepare(), &public, &proof)?;
//! # Ok(()) }
//! ```

mod circuit;
pub mod commit;
mod error;
mod gadgets;
mod keys;
pub mod snarkjs;

pub use circuit::{Statement, TensorSpec, ZkModel};
pub use error::ZkError;
pub use keys::{
    prove, setup, verify, PreparedKey, Proof, ProvingKey, PublicInputs, VerifyingKey, PROOF_BYTES,
};
