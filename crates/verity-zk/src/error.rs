use ark_relations::r1cs::SynthesisError;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum ZkError {
    #[error("node {node:?} ({op}) cannot be proven: {reason}")]
    Unsupported {
        node: String,
        op: String,
        reason: String,
    },
    #[error("the model has no integer part to prove (no QuantizeLinear feeding integer nodes)")]
    NoIntegerPart,
    #[error("the model: {0}")]
    Model(String),
    #[error("tensor {name:?} has shape {actual:?}; the circuit is for {expected:?} (one sample)")]
    Shape {
        name: String,
        expected: Vec<usize>,
        actual: Vec<usize>,
    },
    #[error("the circuit computes {0:?} differently from verity-infer")]
    Mismatch(String),
    #[error("the circuit is not satisfied by the engine's own run")]
    Unsatisfied,
    #[error("constraint synthesis: {0}")]
    Synthesis(#[from] SynthesisError),
    #[error("{what}: {reason}")]
    Encoding { what: &'static str, reason: String },
    #[error("the proof does not verify")]
    Rejected,
}
