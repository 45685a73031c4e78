//! The output document a task produces: the same JSON `verity infer run --json --trace` prints.

use serde_json::{json, Value};
use verity_infer::{with_data, Model, RunOutput, Tensor};

fn values(t: &Tensor) -> Value {
    with_data!(t.data(), v => json!(v))
}

/// `{"model_id", "outputs": [{"name", "dtype", "shape", "hash", "data"}], "trace"?}`.
pub fn output_document(model: &Model, out: &RunOutput) -> Value {
    let outputs: Vec<Value> = out
        .outputs
        .iter()
        .map(|(name, t)| {
            json!({
                "name": name,
                "dtype": t.dtype().to_string(),
                "shape": t.shape(),
                "hash": t.hash(),
                "data": values(t),
            })
        })
        .collect();
    let mut doc = json!({ "model_id": model.model_id(), "outputs": outputs });
    if let Some(trace) = &out.trace {
        doc["trace"] = json!({ "root": trace.root(), "steps": trace.len() });
    }
    doc
}
