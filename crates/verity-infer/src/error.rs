use crate::tensor::TensorError;

/// Everything that can go wrong loading a model, running it, or checking a step.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InferError {
    #[error("not a valid ONNX model: {0}")]
    Decode(String),
    #[error("cannot read {path}: {reason}")]
    Read { path: String, reason: String },
    #[error("invalid ONNX model: {0}")]
    InvalidModel(String),
    #[error("initializer {name:?}: {source}")]
    Initializer { name: String, source: TensorError },
    #[error("node {node:?} ({op}): {reason}")]
    Unsupported {
        node: String,
        op: String,
        reason: String,
    },
    #[error("node {node:?} ({op}) failed: {reason}")]
    NodeFailed {
        node: String,
        op: String,
        reason: String,
    },
    #[error("input {name:?}: {reason}")]
    Input { name: String, reason: String },
    #[error("expected {expected} input tensor(s), got {actual}")]
    InputCount { expected: usize, actual: usize },
    #[error("invalid step witness: {0}")]
    Witness(String),
    #[error("thread pool: {0}")]
    Threads(String),
}
