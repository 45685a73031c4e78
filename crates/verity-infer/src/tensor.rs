//! Dense tensors, their canonical hash, and conversion from `TensorProto`.

use std::fmt;

use sha2::{Digest, Sha256};
use verity_types::Hash;

use crate::proto::TensorProto;

/// Element types the engine computes on, with their ONNX `TensorProto.DataType` codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DataType {
    F32,
    F64,
    I8,
    U8,
    I16,
    U16,
    I32,
    U32,
    I64,
    U64,
    Bool,
}

impl DataType {
    pub fn onnx_code(self) -> i32 {
        match self {
            DataType::F32 => 1,
            DataType::U8 => 2,
            DataType::I8 => 3,
            DataType::U16 => 4,
            DataType::I16 => 5,
            DataType::I32 => 6,
            DataType::I64 => 7,
            DataType::Bool => 9,
            DataType::F64 => 11,
            DataType::U32 => 12,
            DataType::U64 => 13,
        }
    }

    /// Maps an ONNX data type code; `Err` carries the ONNX name of a type we do not compute on.
    pub fn from_onnx(code: i32) -> Result<DataType, String> {
        Ok(match code {
            1 => DataType::F32,
            2 => DataType::U8,
            3 => DataType::I8,
            4 => DataType::U16,
            5 => DataType::I16,
            6 => DataType::I32,
            7 => DataType::I64,
            9 => DataType::Bool,
            11 => DataType::F64,
            12 => DataType::U32,
            13 => DataType::U64,
            other => return Err(onnx_type_name(other)),
        })
    }

    pub fn size_of(self) -> usize {
        match self {
            DataType::I8 | DataType::U8 | DataType::Bool => 1,
            DataType::I16 | DataType::U16 => 2,
            DataType::F32 | DataType::I32 | DataType::U32 => 4,
            DataType::F64 | DataType::I64 | DataType::U64 => 8,
        }
    }

    pub fn is_float(self) -> bool {
        matches!(self, DataType::F32 | DataType::F64)
    }
}

fn onnx_type_name(code: i32) -> String {
    let name = match code {
        0 => "UNDEFINED",
        8 => "STRING",
        10 => "FLOAT16",
        14 => "COMPLEX64",
        15 => "COMPLEX128",
        16 => "BFLOAT16",
        17 => "FLOAT8E4M3FN",
        18 => "FLOAT8E4M3FNUZ",
        19 => "FLOAT8E5M2",
        20 => "FLOAT8E5M2FNUZ",
        21 => "UINT4",
        22 => "INT4",
        23 => "FLOAT4E2M1",
        24 => "FLOAT8E8M0",
        25 => "UINT2",
        26 => "INT2",
        _ => return format!("data type {code}"),
    };
    name.to_string()
}

impl fmt::Display for DataType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self {
            DataType::F32 => "float32",
            DataType::F64 => "float64",
            DataType::I8 => "int8",
            DataType::U8 => "uint8",
            DataType::I16 => "int16",
            DataType::U16 => "uint16",
            DataType::I32 => "int32",
            DataType::U32 => "uint32",
            DataType::I64 => "int64",
            DataType::U64 => "uint64",
            DataType::Bool => "bool",
        };
        f.write_str(name)
    }
}

/// Tensor storage, one variant per [`DataType`].
#[derive(Debug, Clone, PartialEq)]
pub enum Data {
    F32(Vec<f32>),
    F64(Vec<f64>),
    I8(Vec<i8>),
    U8(Vec<u8>),
    I16(Vec<i16>),
    U16(Vec<u16>),
    I32(Vec<i32>),
    U32(Vec<u32>),
    I64(Vec<i64>),
    U64(Vec<u64>),
    Bool(Vec<bool>),
}

/// Runs `$body` with `$v` bound to the typed vector inside a [`Data`].
#[macro_export]
#[doc(hidden)]
macro_rules! with_data {
    ($data:expr, $v:ident => $body:expr) => {
        match $data {
            $crate::Data::F32($v) => $body,
            $crate::Data::F64($v) => $body,
            $crate::Data::I8($v) => $body,
            $crate::Data::U8($v) => $body,
            $crate::Data::I16($v) => $body,
            $crate::Data::U16($v) => $body,
            $crate::Data::I32($v) => $body,
            $crate::Data::U32($v) => $body,
            $crate::Data::I64($v) => $body,
            $crate::Data::U64($v) => $body,
            $crate::Data::Bool($v) => $body,
        }
    };
}

/// Like [`with_data!`] but builds a new `Data` of the same variant from `$body`.
#[macro_export]
#[doc(hidden)]
macro_rules! map_data {
    ($data:expr, $v:ident => $body:expr) => {
        match $data {
            $crate::Data::F32($v) => $crate::Data::F32($body),
            $crate::Data::F64($v) => $crate::Data::F64($body),
            $crate::Data::I8($v) => $crate::Data::I8($body),
            $crate::Data::U8($v) => $crate::Data::U8($body),
            $crate::Data::I16($v) => $crate::Data::I16($body),
            $crate::Data::U16($v) => $crate::Data::U16($body),
            $crate::Data::I32($v) => $crate::Data::I32($body),
            $crate::Data::U32($v) => $crate::Data::U32($body),
            $crate::Data::I64($v) => $crate::Data::I64($body),
            $crate::Data::U64($v) => $crate::Data::U64($body),
            $crate::Data::Bool($v) => $crate::Data::Bool($body),
        }
    };
}

impl Data {
    pub fn dtype(&self) -> DataType {
        match self {
            Data::F32(_) => DataType::F32,
            Data::F64(_) => DataType::F64,
            Data::I8(_) => DataType::I8,
            Data::U8(_) => DataType::U8,
            Data::I16(_) => DataType::I16,
            Data::U16(_) => DataType::U16,
            Data::I32(_) => DataType::I32,
            Data::U32(_) => DataType::U32,
            Data::I64(_) => DataType::I64,
            Data::U64(_) => DataType::U64,
            Data::Bool(_) => DataType::Bool,
        }
    }

    pub fn len(&self) -> usize {
        with_data!(self, v => v.len())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Appends the little-endian bytes of every element (bool as one byte, 0 or 1).
    pub fn write_le_bytes(&self, out: &mut impl FnMut(&[u8])) {
        macro_rules! each {
            ($v:expr) => {
                for x in $v {
                    out(&x.to_le_bytes());
                }
            };
        }
        match self {
            Data::F32(v) => each!(v),
            Data::F64(v) => each!(v),
            Data::I8(v) => each!(v),
            Data::U8(v) => out(v),
            Data::I16(v) => each!(v),
            Data::U16(v) => each!(v),
            Data::I32(v) => each!(v),
            Data::U32(v) => each!(v),
            Data::I64(v) => each!(v),
            Data::U64(v) => each!(v),
            Data::Bool(v) => {
                for &b in v {
                    out(&[b as u8]);
                }
            }
        }
    }
}

/// A dense, row-major tensor.
#[derive(Clone, PartialEq)]
pub struct Tensor {
    shape: Vec<usize>,
    data: Data,
}

/// Why a tensor could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TensorError {
    #[error("shape {shape:?} holds {expected} elements but {actual} were given")]
    ElementCount {
        shape: Vec<usize>,
        expected: usize,
        actual: usize,
    },
    #[error("shape {0:?} is too large")]
    TooLarge(Vec<i64>),
    #[error("negative dimension in shape {0:?}")]
    NegativeDim(Vec<i64>),
    #[error("element type {0} is not supported")]
    UnsupportedType(String),
    #[error("the tensor's data is stored outside the model file (external data): load the model from its file, with the data file beside it")]
    ExternalData,
    #[error("external data: {0}")]
    External(String),
    #[error("raw_data holds {actual} bytes but {expected} were expected")]
    RawDataLength { expected: usize, actual: usize },
}

/// The most elements a tensor or an op's buffer may span: 2^28, a GiB of float32. Every
/// dimension counts, a zero one as one, so that a tensor with no elements cannot carry huge
/// dimensions into the buffers an op sizes from them.
pub const MAX_ELEMENTS: usize = 1 << 28;

/// Number of elements in `shape`, or `None` when the shape spans more than [`MAX_ELEMENTS`]
/// (zero dimensions counted as one).
pub fn element_count(shape: &[usize]) -> Option<usize> {
    let mut span = 1usize;
    for &d in shape {
        span = span.checked_mul(d.max(1)).filter(|&n| n <= MAX_ELEMENTS)?;
    }
    Some(shape.iter().product())
}

impl Tensor {
    pub fn new(shape: Vec<usize>, data: Data) -> Result<Tensor, TensorError> {
        let expected = element_count(&shape)
            .ok_or_else(|| TensorError::TooLarge(shape.iter().map(|&d| d as i64).collect()))?;
        if expected != data.len() {
            return Err(TensorError::ElementCount {
                shape,
                expected,
                actual: data.len(),
            });
        }
        Ok(Tensor { shape, data })
    }

    /// Builds a tensor whose element count is known to match (kernels compute both together).
    pub(crate) fn from_parts(shape: Vec<usize>, data: Data) -> Tensor {
        debug_assert_eq!(element_count(&shape), Some(data.len()));
        Tensor { shape, data }
    }

    pub fn scalar_i64(v: i64) -> Tensor {
        Tensor::from_parts(vec![], Data::I64(vec![v]))
    }

    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    pub fn rank(&self) -> usize {
        self.shape.len()
    }

    pub fn len(&self) -> usize {
        self.data.len()
    }

    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    pub fn dtype(&self) -> DataType {
        self.data.dtype()
    }

    pub fn data(&self) -> &Data {
        &self.data
    }

    pub fn into_data(self) -> Data {
        self.data
    }

    pub fn as_f32(&self) -> Option<&[f32]> {
        match &self.data {
            Data::F32(v) => Some(v),
            _ => None,
        }
    }

    /// Same data, new shape; the caller guarantees the element count is unchanged.
    pub(crate) fn reshaped(mut self, shape: Vec<usize>) -> Tensor {
        debug_assert_eq!(element_count(&shape), Some(self.data.len()));
        self.shape = shape;
        self
    }

    /// This tensor with every element changed (one added, booleans flipped): fault injection
    /// for testing disputes, a worker that lies about one step's output by enough to change the
    /// model's answer. An empty tensor comes back unchanged.
    pub fn perturbed(&self) -> Tensor {
        let mut data = self.data.clone();
        match &mut data {
            Data::F32(v) => v.iter_mut().for_each(|x| *x += 1.0),
            Data::F64(v) => v.iter_mut().for_each(|x| *x += 1.0),
            Data::I8(v) => v.iter_mut().for_each(|x| *x = x.wrapping_add(1)),
            Data::U8(v) => v.iter_mut().for_each(|x| *x = x.wrapping_add(1)),
            Data::I16(v) => v.iter_mut().for_each(|x| *x = x.wrapping_add(1)),
            Data::U16(v) => v.iter_mut().for_each(|x| *x = x.wrapping_add(1)),
            Data::I32(v) => v.iter_mut().for_each(|x| *x = x.wrapping_add(1)),
            Data::U32(v) => v.iter_mut().for_each(|x| *x = x.wrapping_add(1)),
            Data::I64(v) => v.iter_mut().for_each(|x| *x = x.wrapping_add(1)),
            Data::U64(v) => v.iter_mut().for_each(|x| *x = x.wrapping_add(1)),
            Data::Bool(v) => v.iter_mut().for_each(|x| *x = !*x),
        }
        Tensor {
            shape: self.shape.clone(),
            data,
        }
    }

    /// The canonical hash of a tensor (`docs/protocol.md` §12):
    /// `SHA-256(dtype || shape || little-endian bytes)`.
    ///
    /// Encoding: dtype as its ONNX code in 4 bytes LE, the rank in 4 bytes LE, each dimension in
    /// 8 bytes LE, then the elements in row-major order, each little-endian.
    pub fn hash(&self) -> Hash {
        let mut hasher = Sha256::new();
        hasher.update((self.dtype().onnx_code() as u32).to_le_bytes());
        hasher.update((self.shape.len() as u32).to_le_bytes());
        for &d in &self.shape {
            hasher.update((d as u64).to_le_bytes());
        }
        if let Data::F32(v) = &self.data {
            // The common case, fed in blocks rather than four bytes at a time.
            let mut buf = [0u8; 4096];
            for chunk in v.chunks(1024) {
                for (dst, x) in buf.chunks_exact_mut(4).zip(chunk) {
                    dst.copy_from_slice(&x.to_le_bytes());
                }
                hasher.update(&buf[..chunk.len() * 4]);
            }
        } else {
            self.data.write_le_bytes(&mut |b| hasher.update(b));
        }
        Hash(hasher.finalize().into())
    }

    /// Decodes an ONNX `TensorProto`.
    pub fn from_proto(proto: &TensorProto) -> Result<Tensor, TensorError> {
        if proto.data_location == 1 {
            return Err(TensorError::ExternalData);
        }
        if proto.dims.iter().any(|&d| d < 0) {
            return Err(TensorError::NegativeDim(proto.dims.clone()));
        }
        let shape: Vec<usize> = proto.dims.iter().map(|&d| d as usize).collect();
        let count = element_count(&shape)
            .filter(|&n| n <= isize::MAX as usize / 8)
            .ok_or_else(|| TensorError::TooLarge(proto.dims.clone()))?;
        let dtype = DataType::from_onnx(proto.data_type).map_err(TensorError::UnsupportedType)?;
        let data = if !proto.raw_data.is_empty() || typed_field_len(proto, dtype) == 0 {
            decode_raw(dtype, &proto.raw_data, count)?
        } else {
            decode_typed(dtype, proto)
        };
        Tensor::new(shape, data)
    }
}

fn typed_field_len(p: &TensorProto, dtype: DataType) -> usize {
    match dtype {
        DataType::F32 => p.float_data.len(),
        DataType::F64 => p.double_data.len(),
        DataType::I64 => p.int64_data.len(),
        DataType::U32 | DataType::U64 => p.uint64_data.len(),
        _ => p.int32_data.len(),
    }
}

fn decode_typed(dtype: DataType, p: &TensorProto) -> Data {
    // ONNX stores the narrow integer types and bool widened into int32_data.
    match dtype {
        DataType::F32 => Data::F32(p.float_data.clone()),
        DataType::F64 => Data::F64(p.double_data.clone()),
        DataType::I64 => Data::I64(p.int64_data.clone()),
        DataType::U32 => Data::U32(p.uint64_data.iter().map(|&x| x as u32).collect()),
        DataType::U64 => Data::U64(p.uint64_data.clone()),
        DataType::I32 => Data::I32(p.int32_data.clone()),
        DataType::I8 => Data::I8(p.int32_data.iter().map(|&x| x as i8).collect()),
        DataType::U8 => Data::U8(p.int32_data.iter().map(|&x| x as u8).collect()),
        DataType::I16 => Data::I16(p.int32_data.iter().map(|&x| x as i16).collect()),
        DataType::U16 => Data::U16(p.int32_data.iter().map(|&x| x as u16).collect()),
        DataType::Bool => Data::Bool(p.int32_data.iter().map(|&x| x != 0).collect()),
    }
}

/// Decodes `count` little-endian elements of `dtype` from `raw`.
pub fn decode_raw(dtype: DataType, raw: &[u8], count: usize) -> Result<Data, TensorError> {
    let expected = count
        .checked_mul(dtype.size_of())
        .ok_or_else(|| TensorError::TooLarge(vec![count as i64]))?;
    if raw.len() != expected {
        return Err(TensorError::RawDataLength {
            expected,
            actual: raw.len(),
        });
    }
    macro_rules! le {
        ($t:ty, $n:expr) => {{
            let mut values = storage::<$t>(count);
            values.extend(
                raw.chunks_exact($n)
                    .map(|c| <$t>::from_le_bytes(c.try_into().expect("chunk of exact size"))),
            );
            values
        }};
    }
    Ok(match dtype {
        DataType::F32 => Data::F32(le!(f32, 4)),
        DataType::F64 => Data::F64(le!(f64, 8)),
        DataType::I8 => Data::I8({
            let mut values = storage::<i8>(count);
            values.extend(raw.iter().map(|&b| b as i8));
            values
        }),
        DataType::U8 => Data::U8({
            let mut values = storage::<u8>(count);
            values.extend_from_slice(raw);
            values
        }),
        DataType::I16 => Data::I16(le!(i16, 2)),
        DataType::U16 => Data::U16(le!(u16, 2)),
        DataType::I32 => Data::I32(le!(i32, 4)),
        DataType::U32 => Data::U32(le!(u32, 4)),
        DataType::I64 => Data::I64(le!(i64, 8)),
        DataType::U64 => Data::U64(le!(u64, 8)),
        DataType::Bool => Data::Bool(raw.iter().map(|&b| b != 0).collect()),
    })
}

/// An empty vector with room for `count` values, not yet written. On Linux a large one (weights,
/// mostly) is advised onto transparent huge pages before its first write: a matrix-vector
/// product reads every weight once per token, and with 4 KB pages one core's reads of a 540 MB
/// model run about a quarter slower (page walks, and prefetches that stop at every page).
fn storage<T>(count: usize) -> Vec<T> {
    let mut values = Vec::with_capacity(count);
    #[cfg(target_os = "linux")]
    {
        const HUGE_PAGE: usize = 2 << 20;
        let bytes = count.saturating_mul(std::mem::size_of::<T>());
        if bytes >= HUGE_PAGE {
            let start = values.as_mut_ptr() as usize;
            let first = start.next_multiple_of(4096);
            let end = (start + bytes) & !4095;
            if end > first {
                // SAFETY: the range lies inside this vector's allocation, which nothing else
                // uses, and MADV_HUGEPAGE only changes how its pages are backed, never its
                // contents; failure (a kernel without THP) leaves ordinary pages, so it is ignored.
                unsafe {
                    libc::madvise(first as *mut libc::c_void, end - first, libc::MADV_HUGEPAGE)
                };
            }
        }
    }
    values
}

impl fmt::Debug for Tensor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Tensor<{}>{:?}", self.dtype(), self.shape)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A zero dimension counts as one: a tensor of no elements cannot carry dimensions whose
    /// product would size a kernel's buffers past the limit.
    #[test]
    fn every_dimension_counts_against_the_element_limit() {
        assert_eq!(element_count(&[0, 5]), Some(0));
        assert_eq!(element_count(&[1 << 14, 1 << 14]), Some(MAX_ELEMENTS));
        assert_eq!(element_count(&[1 << 14, (1 << 14) + 1]), None);
        assert_eq!(element_count(&[0, 1, 1 << 20, 1 << 20]), None);
        assert_eq!(element_count(&[usize::MAX, 2]), None);
        assert!(Tensor::new(vec![0, 1, 1 << 20, 1 << 20], Data::F32(vec![])).is_err());
        assert!(decode_raw(DataType::F64, &[], usize::MAX).is_err());
    }

    #[test]
    fn hash_binds_dtype_shape_and_bytes() {
        let a = Tensor::new(vec![2, 2], Data::F32(vec![1.0, 2.0, 3.0, 4.0])).unwrap();
        let reshaped = Tensor::new(vec![4], Data::F32(vec![1.0, 2.0, 3.0, 4.0])).unwrap();
        let same_bits_other_type = Tensor::new(
            vec![2, 2],
            Data::U32([1.0f32, 2.0, 3.0, 4.0].map(f32::to_bits).to_vec()),
        )
        .unwrap();
        assert_ne!(a.hash(), reshaped.hash());
        assert_ne!(a.hash(), same_bits_other_type.hash());
        assert_eq!(a.hash(), a.clone().hash());
    }

    #[test]
    fn hash_encoding_is_pinned() {
        // dtype 1 (4 bytes), rank 1 (4 bytes), dim 1 (8 bytes), 1.0f32 LE.
        let t = Tensor::new(vec![1], Data::F32(vec![1.0])).unwrap();
        let mut bytes = vec![1, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0];
        bytes.extend_from_slice(&1.0f32.to_le_bytes());
        assert_eq!(t.hash(), verity_types::sha256(&bytes));
    }

    #[test]
    fn element_count_mismatch_is_an_error() {
        let err = Tensor::new(vec![3], Data::I64(vec![1])).unwrap_err();
        assert!(err.to_string().contains("holds 3 elements but 1"));
    }

    #[test]
    fn raw_data_of_the_wrong_length_is_rejected() {
        let proto = TensorProto {
            dims: vec![2],
            data_type: 1,
            raw_data: vec![0; 7],
            ..Default::default()
        };
        assert_eq!(
            Tensor::from_proto(&proto).unwrap_err(),
            TensorError::RawDataLength {
                expected: 8,
                actual: 7
            }
        );
    }

    #[test]
    fn unsupported_types_are_named() {
        let proto = TensorProto {
            dims: vec![1],
            data_type: 10,
            raw_data: vec![0; 2],
            ..Default::default()
        };
        assert_eq!(
            Tensor::from_proto(&proto).unwrap_err().to_string(),
            "element type FLOAT16 is not supported"
        );
    }
}
