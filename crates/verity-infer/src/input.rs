//! Reading input tensors from files: a JSON (nested) array or a NumPy `.npy` file. Workers
//! read task inputs with it, and validators read them the same way in a one-step, so both give
//! the same tensor, bit for bit.

use crate::tensor::{decode_raw, Data, DataType, Tensor};

/// Why an input file is not a tensor.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InputError(String);

type Result<T> = std::result::Result<T, InputError>;

macro_rules! bail {
    ($($t:tt)*) => { return Err(InputError(format!($($t)*))) };
}

macro_rules! ensure {
    ($cond:expr, $($t:tt)*) => { if !$cond { bail!($($t)*) } };
}

/// `.context(...)` for the parser's options and results, as anyhow spells it.
trait Context<T> {
    fn context(self, what: &str) -> Result<T>;
    fn with_context(self, what: impl FnOnce() -> String) -> Result<T>;
}

impl<T> Context<T> for Option<T> {
    fn context(self, what: &str) -> Result<T> {
        self.ok_or_else(|| InputError(what.to_string()))
    }
    fn with_context(self, what: impl FnOnce() -> String) -> Result<T> {
        self.ok_or_else(|| InputError(what()))
    }
}

impl<T, E: std::fmt::Display> Context<T> for std::result::Result<T, E> {
    fn context(self, what: &str) -> Result<T> {
        self.map_err(|e| InputError(format!("{what}: {e}")))
    }
    fn with_context(self, what: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|e| InputError(format!("{}: {e}", what())))
    }
}

/// Reads `bytes` as `.npy` if they start with NumPy's magic, else as JSON. JSON numbers are
/// converted to `dtype` (the model's declared input type); a value that does not fit is an error.
pub fn read_tensor(bytes: &[u8], dtype: DataType) -> Result<Tensor> {
    if bytes.starts_with(b"\x93NUMPY") {
        let t = read_npy(bytes).context("reading .npy")?;
        return Ok(t);
    }
    let text = std::str::from_utf8(bytes).context("input is neither .npy nor UTF-8 JSON")?;
    let value: serde_json::Value = serde_json::from_str(text).context("input is not valid JSON")?;
    from_json(&value, dtype)
}

fn from_json(value: &serde_json::Value, dtype: DataType) -> Result<Tensor> {
    let mut shape = Vec::new();
    let mut probe = value;
    while let serde_json::Value::Array(items) = probe {
        shape.push(items.len());
        match items.first() {
            Some(first) => probe = first,
            None => break,
        }
    }
    let mut numbers = Vec::new();
    flatten(value, &shape, 0, &mut numbers)?;
    let ints = |lo: f64, hi: f64| -> Result<Vec<i64>> {
        numbers
            .iter()
            .map(|&x| {
                ensure!(
                    x.fract() == 0.0 && x >= lo && x <= hi,
                    "{x} is not a valid {dtype} value"
                );
                Ok(x as i64)
            })
            .collect()
    };
    let data = match dtype {
        DataType::F32 => Data::F32(numbers.iter().map(|&x| x as f32).collect()),
        DataType::F64 => Data::F64(numbers),
        DataType::I64 => Data::I64(ints(-(2f64.powi(53)), 2f64.powi(53))?),
        DataType::I32 => Data::I32(
            ints(i32::MIN as f64, i32::MAX as f64)?
                .into_iter()
                .map(|x| x as i32)
                .collect(),
        ),
        DataType::I8 => Data::I8(ints(-128.0, 127.0)?.into_iter().map(|x| x as i8).collect()),
        DataType::U8 => Data::U8(ints(0.0, 255.0)?.into_iter().map(|x| x as u8).collect()),
        other => bail!("JSON input for {other} tensors is not supported; use .npy"),
    };
    Tensor::new(shape, data).context("tensor")
}

fn flatten(v: &serde_json::Value, shape: &[usize], depth: usize, out: &mut Vec<f64>) -> Result<()> {
    match v {
        serde_json::Value::Array(items) => {
            ensure!(
                depth < shape.len() && items.len() == shape[depth],
                "ragged array: every row at depth {depth} must have {} elements",
                shape.get(depth).copied().unwrap_or(0)
            );
            items
                .iter()
                .try_for_each(|x| flatten(x, shape, depth + 1, out))
        }
        serde_json::Value::Number(n) => {
            ensure!(
                depth == shape.len(),
                "ragged array: a number at depth {depth}, expected depth {}",
                shape.len()
            );
            out.push(n.as_f64().context("number out of range")?);
            Ok(())
        }
        other => bail!("expected numbers and arrays, found {other}"),
    }
}

/// Parses NumPy's `.npy` format (versions 1–3, C order, little-endian or single-byte types).
fn read_npy(bytes: &[u8]) -> Result<Tensor> {
    ensure!(bytes.len() >= 10, "truncated header");
    let (header_len, start) = match bytes[6] {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10usize),
        2 | 3 => {
            ensure!(bytes.len() >= 12, "truncated header");
            (
                u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize,
                12,
            )
        }
        v => bail!("unsupported .npy version {v}"),
    };
    let end = start
        .checked_add(header_len)
        .filter(|&e| e <= bytes.len())
        .context("truncated header")?;
    let header = std::str::from_utf8(&bytes[start..end]).context("header is not text")?;
    let field = |key: &str| -> Result<&str> {
        let at = header
            .find(&format!("'{key}'"))
            .with_context(|| format!("header has no '{key}'"))?;
        let rest = header[at + key.len() + 2..].trim_start();
        Ok(rest
            .strip_prefix(':')
            .context("malformed header")?
            .trim_start())
    };
    let descr = field("descr")?;
    let descr = descr
        .strip_prefix('\'')
        .and_then(|d| d.split('\'').next())
        .context("malformed descr")?;
    let dtype = match descr {
        "<f4" => DataType::F32,
        "<f8" => DataType::F64,
        "|i1" => DataType::I8,
        "|u1" => DataType::U8,
        "<i2" => DataType::I16,
        "<u2" => DataType::U16,
        "<i4" => DataType::I32,
        "<u4" => DataType::U32,
        "<i8" => DataType::I64,
        "<u8" => DataType::U64,
        "|b1" => DataType::Bool,
        other => bail!("unsupported .npy dtype {other}"),
    };
    ensure!(
        field("fortran_order")?.starts_with("False"),
        "Fortran-ordered arrays are not supported"
    );
    let shape_text = field("shape")?;
    let inner = shape_text
        .strip_prefix('(')
        .and_then(|s| s.split(')').next())
        .context("malformed shape")?;
    let shape = inner
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse::<usize>()
                .with_context(|| format!("bad dimension {s:?}"))
        })
        .collect::<Result<Vec<_>>>()?;
    let count = shape
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .context("shape too large")?;
    let data = decode_raw(dtype, &bytes[end..], count).context("data")?;
    Tensor::new(shape, data).context("tensor")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_nested_arrays_give_the_shape() {
        let t = read_tensor(b"[[1, 2, 3], [4, 5, 6]]", DataType::F32).unwrap();
        assert_eq!(t.shape(), &[2, 3]);
        assert_eq!(t.as_f32().unwrap(), &[1., 2., 3., 4., 5., 6.]);
    }

    #[test]
    fn ragged_or_non_numeric_json_is_rejected() {
        assert!(read_tensor(b"[[1, 2], [3]]", DataType::F32).is_err());
        assert!(read_tensor(b"[[1, 2], 3]", DataType::F32).is_err());
        assert!(read_tensor(b"[\"a\"]", DataType::F32).is_err());
        assert!(read_tensor(b"[1.5]", DataType::I64).is_err());
        assert!(read_tensor(b"not json", DataType::F32).is_err());
    }

    #[test]
    fn npy_round_trip() {
        let header = "{'descr': '<f4', 'fortran_order': False, 'shape': (1, 2), }";
        let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
        let padded = format!("{header:<width$}\n", width = 64 - 10 - 1);
        bytes.extend_from_slice(&(padded.len() as u16).to_le_bytes());
        bytes.extend_from_slice(padded.as_bytes());
        bytes.extend_from_slice(&1.5f32.to_le_bytes());
        bytes.extend_from_slice(&(-2f32).to_le_bytes());
        let t = read_tensor(&bytes, DataType::F32).unwrap();
        assert_eq!(t.shape(), &[1, 2]);
        assert_eq!(t.as_f32().unwrap(), &[1.5, -2.0]);
        assert!(read_tensor(&bytes[..bytes.len() - 1], DataType::F32).is_err());
    }
}
