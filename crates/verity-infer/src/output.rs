//! The output document of a run, `{"model_id", "outputs": [{"name", "dtype", "shape", "hash",
//! "data"}], "trace"?}`: what `verity infer run --json` prints and a task's result file holds.
//! Tolerant OP disputes compare two of them value by value (`docs/protocol.md` §12), so the
//! parser here is a validator's decoder: it refuses anything malformed with a reason.

use serde_json::{json, Number, Value};
use thiserror::Error;
use verity_types::Hash;

use crate::{with_data, Model, RunOutput, Tensor};

fn values(t: &Tensor) -> Value {
    with_data!(t.data(), v => json!(v))
}

/// The document of `out`, a run of `model`.
pub fn document(model: &Model, out: &RunOutput) -> Value {
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

#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("not an output document: {0}")]
pub struct OutputError(String);

fn malformed(why: impl Into<String>) -> OutputError {
    OutputError(why.into())
}

/// One graph output's values as the document states them. JSON has no NaN or infinity, so a
/// non-finite float is written as `null`.
#[derive(Debug, Clone, PartialEq)]
pub struct OutputValues {
    pub name: String,
    pub dtype: String,
    pub shape: Vec<u64>,
    pub data: Vec<Option<Number>>,
}

/// A parsed output document; the trace, if any, is left out: tolerant runs may differ there.
#[derive(Debug, Clone, PartialEq)]
pub struct OutputDocument {
    pub model_id: Hash,
    pub outputs: Vec<OutputValues>,
}

impl OutputDocument {
    pub fn parse(bytes: &[u8]) -> Result<Self, OutputError> {
        let doc: Value = serde_json::from_slice(bytes).map_err(|e| malformed(json_reason(&e)))?;
        let model_id = doc
            .get("model_id")
            .and_then(Value::as_str)
            .ok_or_else(|| malformed("no model_id string"))?
            .parse::<Hash>()
            .map_err(|e| malformed(format!("model_id: {e}")))?;
        let outputs = doc
            .get("outputs")
            .and_then(Value::as_array)
            .ok_or_else(|| malformed("no outputs array"))?
            .iter()
            .enumerate()
            .map(|(i, o)| parse_output(o).map_err(|e| malformed(format!("output {i}: {}", e.0))))
            .collect::<Result<_, _>>()?;
        Ok(OutputDocument { model_id, outputs })
    }
}

fn parse_output(o: &Value) -> Result<OutputValues, OutputError> {
    let text = |field: &str| {
        o.get(field)
            .and_then(Value::as_str)
            .map(str::to_string)
            .ok_or_else(|| malformed(format!("no {field} string")))
    };
    let shape: Vec<u64> = o
        .get("shape")
        .and_then(Value::as_array)
        .ok_or_else(|| malformed("no shape array"))?
        .iter()
        .map(|d| {
            d.as_u64()
                .ok_or_else(|| malformed("a dimension is not a count"))
        })
        .collect::<Result<_, _>>()?;
    let data: Vec<Option<Number>> = o
        .get("data")
        .and_then(Value::as_array)
        .ok_or_else(|| malformed("no data array"))?
        .iter()
        .map(|v| match v {
            Value::Number(n) => Ok(Some(n.clone())),
            Value::Null => Ok(None),
            _ => Err(malformed("a value is neither a number nor null")),
        })
        .collect::<Result<_, _>>()?;
    let elements = shape
        .iter()
        .try_fold(1u64, |n, d| n.checked_mul(*d))
        .ok_or_else(|| malformed("the shape's element count overflows"))?;
    if elements != data.len() as u64 {
        return Err(malformed(format!(
            "shape {shape:?} holds {elements} values, data has {}",
            data.len()
        )));
    }
    Ok(OutputValues {
        name: text("name")?,
        dtype: text("dtype")?,
        shape,
        data,
    })
}

/// Whether two documents agree within `tolerance_ppm`: same model, same outputs with the same
/// names, types and shapes, and every pair of values `a`, `b` with
/// `|a − b| ≤ tolerance_ppm × 10⁻⁶ × max(1, |a|, |b|)` (integers compared exactly in 128 bits,
/// non-finite floats only with each other). `Err` says where they first differ.
pub fn agree(a: &OutputDocument, b: &OutputDocument, tolerance_ppm: u32) -> Result<(), String> {
    if a.model_id != b.model_id {
        return Err(format!("models differ: {} and {}", a.model_id, b.model_id));
    }
    if a.outputs.len() != b.outputs.len() {
        return Err(format!(
            "{} outputs and {}",
            a.outputs.len(),
            b.outputs.len()
        ));
    }
    for (x, y) in a.outputs.iter().zip(&b.outputs) {
        if (&x.name, &x.dtype, &x.shape) != (&y.name, &y.dtype, &y.shape) {
            return Err(format!(
                "output {:?} {} {:?} against {:?} {} {:?}",
                x.name, x.dtype, x.shape, y.name, y.dtype, y.shape
            ));
        }
        for (i, (p, q)) in x.data.iter().zip(&y.data).enumerate() {
            if !values_agree(p.as_ref(), q.as_ref(), tolerance_ppm) {
                let show = |v: Option<&Number>| v.map_or("null".to_string(), Number::to_string);
                return Err(format!(
                    "output {:?} value {i}: {} against {}, beyond {tolerance_ppm} ppm",
                    x.name,
                    show(p.as_ref()),
                    show(q.as_ref())
                ));
            }
        }
    }
    Ok(())
}

fn integer(n: &Number) -> Option<i128> {
    n.as_i64()
        .map(i128::from)
        .or_else(|| n.as_u64().map(i128::from))
}

fn values_agree(p: Option<&Number>, q: Option<&Number>, tolerance_ppm: u32) -> bool {
    let (p, q) = match (p, q) {
        (None, None) => return true,
        (Some(p), Some(q)) => (p, q),
        _ => return false,
    };
    if let (Some(x), Some(y)) = (integer(p), integer(q)) {
        // |x − y| × 10⁶ ≤ tol × max(1, |x|, |y|), in integers: no rounding to argue about.
        let scale = x.unsigned_abs().max(y.unsigned_abs()).max(1);
        let diff = x.abs_diff(y);
        return diff.saturating_mul(1_000_000) <= u128::from(tolerance_ppm).saturating_mul(scale);
    }
    let (Some(x), Some(y)) = (p.as_f64(), q.as_f64()) else {
        return false;
    };
    let scale = x.abs().max(y.abs()).max(1.0);
    (x - y).abs() <= f64::from(tolerance_ppm) * 1e-6 * scale
}

/// serde_json's category and position rather than its wording: this reason can reach a
/// verdict in state, which must not change with a dependency's text.
fn json_reason(e: &serde_json::Error) -> String {
    let kind = match e.classify() {
        serde_json::error::Category::Io => "unreadable",
        serde_json::error::Category::Syntax => "a syntax error",
        serde_json::error::Category::Data => "an unexpected value",
        serde_json::error::Category::Eof => "cut short",
    };
    format!(
        "not JSON: {kind} at line {}, column {}",
        e.line(),
        e.column()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(values: &str) -> OutputDocument {
        let model = "0".repeat(64);
        OutputDocument::parse(
            format!(
                r#"{{"model_id":"{model}","outputs":[{{"name":"y","dtype":"f32","shape":[1,3],"hash":"x","data":{values}}}],"trace":{{"root":"r","steps":3}}}}"#
            )
            .as_bytes(),
        )
        .unwrap()
    }

    #[test]
    fn values_agree_within_the_tolerance_and_not_beyond() {
        let base = doc("[1.0, -2.0, 1000.0]");
        assert_eq!(agree(&base, &base, 0), Ok(()));
        // 1 ppm of max(1, |v|): 1e-6 at 1.0, 1e-3 at 1000.
        let near = doc("[1.0000009, -2.0, 1000.0009]");
        assert_eq!(agree(&base, &near, 1), Ok(()));
        assert!(agree(&base, &near, 0).is_err());
        let far = doc("[1.0, -2.0, 1000.01]");
        let why = agree(&base, &far, 1).unwrap_err();
        assert!(why.contains("value 2"), "{why}");
        // Non-finite values (null) agree only with each other.
        assert_eq!(agree(&doc("[null, 0, 0]"), &doc("[null, 0, 0]"), 0), Ok(()));
        assert!(agree(&doc("[null, 0, 0]"), &doc("[0, 0, 0]"), 1_000_000).is_err());
    }

    #[test]
    fn integers_compare_exactly() {
        let a = doc("[9007199254740993, 0, -5]");
        let b = doc("[9007199254740992, 0, -5]");
        assert!(agree(&a, &b, 0).is_err());
        assert_eq!(agree(&a, &b, 1), Ok(()));
    }

    #[test]
    fn shapes_names_and_models_must_match() {
        let a = doc("[1, 2, 3]");
        let mut b = a.clone();
        b.outputs[0].name = "z".into();
        assert!(agree(&a, &b, 1_000_000).is_err());
        let mut c = a.clone();
        c.model_id = Hash([1; 32]);
        assert!(agree(&a, &c, 1_000_000).is_err());
    }

    #[test]
    fn malformed_documents_are_refused_with_a_reason() {
        for (bytes, reason) in [
            (&b"not json"[..], "JSON"),
            (br#"{"outputs":[]}"#, "model_id"),
            (
                br#"{"model_id":"0000000000000000000000000000000000000000000000000000000000000000","outputs":[{"name":"y","dtype":"f32","shape":[2],"data":[1]}]}"#,
                "holds 2 values",
            ),
            (
                br#"{"model_id":"0000000000000000000000000000000000000000000000000000000000000000","outputs":[{"name":"y","dtype":"f32","shape":[1],"data":["1"]}]}"#,
                "neither a number",
            ),
            (
                br#"{"model_id":"0000000000000000000000000000000000000000000000000000000000000000","outputs":[{"name":"y","dtype":"f32","shape":[4294967296,4294967296,4294967296],"data":[]}]}"#,
                "overflows",
            ),
        ] {
            let err = OutputDocument::parse(bytes).unwrap_err().to_string();
            assert!(err.contains(reason), "{err}");
        }
    }

    #[test]
    fn a_json_error_is_told_in_our_words_not_serde_json_s() {
        let err = OutputDocument::parse(b"{\"model_id\": ")
            .unwrap_err()
            .to_string();
        assert!(
            err.ends_with("not JSON: cut short at line 1, column 13"),
            "{err}"
        );
        let err = OutputDocument::parse(b"[1,,]").unwrap_err().to_string();
        assert!(
            err.ends_with("not JSON: a syntax error at line 1, column 4"),
            "{err}"
        );
    }
}
