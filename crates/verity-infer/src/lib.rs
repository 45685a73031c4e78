//! Deterministic ONNX inference with an execution trace (ARCHITECTURE.md, invariants).
//!
//! The same model and inputs give the same output bytes and the same trace root on every run,
//! thread count and machine: kernels fix their order of floating-point operations, never fuse a
//! multiply with an add, and take transcendentals from `libm` (software) rather than the
//! platform. [`Engine::run`] optionally records a [`Trace`]: one leaf per node, a binary Merkle
//! root over the leaves. [`Model::verify_step`] re-executes a single node from inputs proven
//! against the trace root and the model's weights root, which is what validators do to end an
//! OP-mode dispute.
//!
//! ```no_run
//! # fn main() -> Result<(), verity_infer::InferError> {
//! use verity_infer::{Data, Engine, Model, Tensor};
//! let model = Model::from_bytes(&std::fs::read("models/digits_mlp.onnx").unwrap())?;
//! let input = Tensor::new(vec![1, 64], Data::F32(vec![0.0; 64])).unwrap();
//! let run = Engine::new(1)?.run(&model, vec![input], true)?;
//! println!("trace root {}", run.trace.unwrap().root());
//! # Ok(()) }
//! ```

mod engine;
mod error;
mod exp;
mod external;
mod graph;
mod input;
mod kernels;
pub mod merkle;
mod model;
mod ops;
pub mod output;
mod packed;
mod proto;
mod step;
mod tensor;

pub use engine::{step_leaf, Engine, RunOutput, Trace, TraceStep};
pub use error::InferError;
pub use graph::{GraphNode, NodeOp};
pub use input::{read_tensor, InputError};
pub use merkle::MerkleProof;
pub use model::{
    external_model_id, initializer_leaf, Dim, Model, ModelSummary, UnsupportedNode, ValueSpec,
};
pub use ops::SUPPORTED_OPS;
pub use output::{OutputDocument, OutputError};
pub use step::{Commitments, InputProof, InputWitness, OutputProof, StepOutcome, StepWitness};
pub use tensor::{decode_raw, Data, DataType, Tensor, TensorError};

/// Decodes a serialized ONNX `TensorProto` (the `.pb` files of the ONNX test suites).
pub fn tensor_from_pb(bytes: &[u8]) -> Result<Tensor, InferError> {
    use prost::Message;
    let proto = proto::TensorProto::decode(bytes).map_err(|e| InferError::Decode(e.to_string()))?;
    Tensor::from_proto(&proto)
        .map_err(|e| InferError::Decode(format!("tensor {:?}: {e}", proto.name)))
}
