//! Operators that move data without arithmetic: Reshape, Flatten, Transpose, Concat, Squeeze,
//! Unsqueeze, Cast and Constant.

use super::elementwise::IntoData;
use super::{i64_values, invalid, norm_axis, unsupported, Attrs, OpResult};
use crate::tensor::{element_count, Data, DataType, Tensor};
use crate::{map_data, with_data};

#[derive(Debug, Clone)]
pub(crate) struct Reshape {
    allow_zero: bool,
}

impl Reshape {
    pub fn parse(a: &Attrs) -> OpResult<Reshape> {
        Ok(Reshape {
            allow_zero: a.int_or("allowzero", 0)? != 0,
        })
    }

    pub fn run(&self, x: &Tensor, shape: &Tensor) -> OpResult<Tensor> {
        let spec = i64_values(shape, "shape")?;
        let mut out = Vec::with_capacity(spec.len());
        let mut infer = None;
        for (i, &d) in spec.iter().enumerate() {
            match d {
                -1 if infer.is_none() => {
                    infer = Some(i);
                    out.push(1);
                }
                0 if !self.allow_zero => match x.shape().get(i) {
                    Some(&d) => out.push(d),
                    None => {
                        return invalid(format!(
                            "shape {spec:?}: 0 at {i} has no input dimension to copy"
                        ))
                    }
                },
                d if d >= 0 => out.push(d as usize),
                _ => return invalid(format!("shape {spec:?} is not a valid reshape target")),
            }
        }
        let known =
            element_count(&out).ok_or_else(|| super::OpError::Invalid("shape too large".into()))?;
        if let Some(i) = infer {
            if known == 0 || !x.len().is_multiple_of(known) {
                return invalid(format!("cannot reshape {:?} into {spec:?}", x.shape()));
            }
            out[i] = x.len() / known;
        } else if known != x.len() {
            return invalid(format!("cannot reshape {:?} into {spec:?}", x.shape()));
        }
        Ok(x.clone().reshaped(out))
    }
}

#[derive(Debug, Clone)]
pub(crate) struct Flatten {
    axis: i64,
}

impl Flatten {
    pub fn parse(a: &Attrs) -> OpResult<Flatten> {
        Ok(Flatten {
            axis: a.int_or("axis", 1)?,
        })
    }

    pub fn run(&self, x: &Tensor) -> OpResult<Tensor> {
        let rank = x.rank();
        // Flatten accepts axis == rank (everything in the first dimension).
        let axis = if self.axis == rank as i64 {
            rank
        } else {
            norm_axis(self.axis, rank)?
        };
        let rows: usize = x.shape()[..axis].iter().product();
        let cols: usize = x.shape()[axis..].iter().product();
        Ok(x.clone().reshaped(vec![rows, cols]))
    }
}

#[derive(Debug, Clone)]
pub(crate) struct Transpose {
    perm: Option<Vec<i64>>,
}

impl Transpose {
    pub fn parse(a: &Attrs) -> OpResult<Transpose> {
        Ok(Transpose {
            perm: a.ints("perm")?,
        })
    }

    pub fn run(&self, x: &Tensor) -> OpResult<Tensor> {
        let rank = x.rank();
        let perm: Vec<usize> = match &self.perm {
            None => (0..rank).rev().collect(),
            Some(p) => {
                let p: Vec<usize> = p
                    .iter()
                    .map(|&a| norm_axis(a, rank))
                    .collect::<OpResult<_>>()?;
                let mut seen = vec![false; rank];
                if p.len() != rank || p.iter().any(|&a| std::mem::replace(&mut seen[a], true)) {
                    return invalid(format!("perm {p:?} is not a permutation of rank {rank}"));
                }
                p
            }
        };
        Ok(transpose(x, &perm))
    }
}

/// Output axis `i` is input axis `perm[i]`.
pub(crate) fn transpose(x: &Tensor, perm: &[usize]) -> Tensor {
    let shape = x.shape();
    let out_shape: Vec<usize> = perm.iter().map(|&a| shape[a]).collect();
    let mut in_strides = vec![1usize; shape.len()];
    for i in (0..shape.len().saturating_sub(1)).rev() {
        in_strides[i] = in_strides[i + 1] * shape[i + 1];
    }
    let strides: Vec<usize> = perm.iter().map(|&a| in_strides[a]).collect();
    let data = map_data!(x.data(), v => gather_strided(v, &out_shape, &strides));
    Tensor::from_parts(out_shape, data)
}

/// The elements of `v` at `shape` with `strides`, in row-major order: the innermost axis in a
/// plain loop (a copy where its stride is 1), the outer axes by carrying an index.
fn gather_strided<T: Copy>(v: &[T], shape: &[usize], strides: &[usize]) -> Vec<T> {
    let n: usize = shape.iter().product();
    let mut out = Vec::with_capacity(n);
    // Axes of length 1 move nothing.
    let (shape, strides): (Vec<usize>, Vec<usize>) = shape
        .iter()
        .zip(strides)
        .filter(|(&d, _)| d != 1)
        .map(|(&d, &s)| (d, s))
        .unzip();
    let Some(last) = shape.len().checked_sub(1) else {
        out.extend(v.first().copied());
        return out;
    };
    if n == 0 {
        return out;
    }
    let (len, step) = (shape[last], strides[last]);
    let mut idx = vec![0usize; last];
    let mut offset = 0usize;
    for _ in 0..n / len {
        if step == 1 {
            out.extend_from_slice(&v[offset..offset + len]);
        } else {
            out.extend((0..len).map(|i| v[offset + i * step]));
        }
        for d in (0..last).rev() {
            idx[d] += 1;
            offset += strides[d];
            if idx[d] < shape[d] {
                break;
            }
            offset -= strides[d] * shape[d];
            idx[d] = 0;
        }
    }
    out
}

#[derive(Debug, Clone)]
pub(crate) struct Concat {
    axis: i64,
}

impl Concat {
    pub fn parse(a: &Attrs) -> OpResult<Concat> {
        match a.int("axis")? {
            Some(axis) => Ok(Concat { axis }),
            None => invalid("Concat requires the axis attribute"),
        }
    }

    pub fn run(&self, inputs: &[Option<&Tensor>]) -> OpResult<Tensor> {
        let parts: Vec<&Tensor> = inputs.iter().flatten().copied().collect();
        let Some(first) = parts.first() else {
            return invalid("Concat needs at least one input");
        };
        let axis = norm_axis(self.axis, first.rank())?;
        let mut out_shape = first.shape().to_vec();
        out_shape[axis] = 0;
        for p in &parts {
            let same_rest = p.rank() == first.rank()
                && (0..p.rank()).all(|d| d == axis || p.shape()[d] == first.shape()[d]);
            if p.dtype() != first.dtype() || !same_rest {
                return invalid(format!(
                    "cannot concatenate {} {:?} with {} {:?} on axis {axis}",
                    first.dtype(),
                    first.shape(),
                    p.dtype(),
                    p.shape()
                ));
            }
            out_shape[axis] += p.shape()[axis];
        }
        let outer: usize = first.shape()[..axis].iter().product();
        let inner: usize = first.shape()[axis + 1..].iter().product();
        let mismatch = || super::OpError::Invalid("Concat inputs differ in element type".into());
        macro_rules! cat {
            ($($variant:ident),*) => {
                match first.data() {
                    $(Data::$variant(_) => {
                        let blocks = parts
                            .iter()
                            .map(|p| match p.data() {
                                Data::$variant(v) => Ok((v.as_slice(), p.shape()[axis] * inner)),
                                _ => Err(mismatch()),
                            })
                            .collect::<OpResult<Vec<_>>>()?;
                        Data::$variant(interleave(&blocks, outer))
                    })*
                }
            };
        }
        let data = cat!(F32, F64, I8, U8, I16, U16, I32, U32, I64, U64, Bool);
        Ok(Tensor::from_parts(out_shape, data))
    }
}

/// For each of `outer` rows, appends each part's block of that row in turn.
fn interleave<T: Copy>(parts: &[(&[T], usize)], outer: usize) -> Vec<T> {
    let mut out = Vec::with_capacity(parts.iter().map(|(v, _)| v.len()).sum());
    for o in 0..outer {
        for &(v, block) in parts {
            out.extend_from_slice(&v[o * block..(o + 1) * block]);
        }
    }
    out
}

#[derive(Debug, Clone)]
pub(crate) struct Squeeze {
    /// From the attribute in opsets before 13; later ones take axes as input 1.
    axes: Option<Vec<i64>>,
}

impl Squeeze {
    pub fn parse(a: &Attrs, opset: i64) -> OpResult<Squeeze> {
        Ok(Squeeze {
            axes: if opset < 13 { a.ints("axes")? } else { None },
        })
    }

    pub fn run(&self, x: &Tensor, axes_input: Option<&Tensor>) -> OpResult<Tensor> {
        let axes = match (&self.axes, axes_input) {
            (Some(a), _) => Some(a.clone()),
            (None, Some(t)) => Some(i64_values(t, "axes")?),
            (None, None) => None,
        };
        let shape = x.shape();
        let out: Vec<usize> = match axes {
            None => shape.iter().copied().filter(|&d| d != 1).collect(),
            Some(axes) => {
                let axes: Vec<usize> = axes
                    .iter()
                    .map(|&a| norm_axis(a, shape.len()))
                    .collect::<OpResult<_>>()?;
                if let Some(&a) = axes.iter().find(|&&a| shape[a] != 1) {
                    return invalid(format!("cannot squeeze axis {a} of size {}", shape[a]));
                }
                (0..shape.len())
                    .filter(|d| !axes.contains(d))
                    .map(|d| shape[d])
                    .collect()
            }
        };
        Ok(x.clone().reshaped(out))
    }
}

#[derive(Debug, Clone)]
pub(crate) struct Unsqueeze {
    axes: Option<Vec<i64>>,
}

impl Unsqueeze {
    pub fn parse(a: &Attrs, opset: i64) -> OpResult<Unsqueeze> {
        Ok(Unsqueeze {
            axes: if opset < 13 { a.ints("axes")? } else { None },
        })
    }

    pub fn run(&self, x: &Tensor, axes_input: Option<&Tensor>) -> OpResult<Tensor> {
        let axes = match (&self.axes, axes_input) {
            (Some(a), _) => a.clone(),
            (None, Some(t)) => i64_values(t, "axes")?,
            (None, None) => return invalid("Unsqueeze requires axes"),
        };
        let rank = x.rank() + axes.len();
        let mut inserted = vec![false; rank];
        for &a in &axes {
            let a = norm_axis(a, rank)?;
            if std::mem::replace(&mut inserted[a], true) {
                return invalid(format!("axis {a} is repeated in {axes:?}"));
            }
        }
        let mut dims = x.shape().iter();
        let out = inserted
            .iter()
            .map(|&ins| if ins { 1 } else { *dims.next().unwrap_or(&1) })
            .collect();
        Ok(x.clone().reshaped(out))
    }
}

#[derive(Debug, Clone)]
pub(crate) struct Cast {
    pub(crate) to: DataType,
}

impl Cast {
    pub fn parse(a: &Attrs) -> OpResult<Cast> {
        a.ignore(&["saturate"]); // only meaningful for float8 targets, which are rejected below
        let Some(code) = a.int("to")? else {
            return invalid("Cast requires the `to` attribute");
        };
        let to = DataType::from_onnx(code as i32)
            .or_else(|name| unsupported(format!("Cast to {name} is not supported")))?;
        Ok(Cast { to })
    }

    /// Numeric conversions follow Rust's `as`: float to integer truncates toward zero and
    /// saturates (NaN becomes 0); integer to float rounds to nearest. Deterministic everywhere.
    pub fn run(&self, x: &Tensor) -> OpResult<Tensor> {
        macro_rules! to {
            ($t:ty) => {
                with_data!(x.data(), v => v.iter().map(|&e| CastTo::<$t>::cast(e)).collect::<Vec<$t>>().into_data())
            };
        }
        let data = match self.to {
            DataType::F32 => to!(f32),
            DataType::F64 => to!(f64),
            DataType::I8 => to!(i8),
            DataType::U8 => to!(u8),
            DataType::I16 => to!(i16),
            DataType::U16 => to!(u16),
            DataType::I32 => to!(i32),
            DataType::U32 => to!(u32),
            DataType::I64 => to!(i64),
            DataType::U64 => to!(u64),
            DataType::Bool => to!(bool),
        };
        Ok(Tensor::from_parts(x.shape().to_vec(), data))
    }
}

/// One element converted to `T`.
trait CastTo<T> {
    fn cast(self) -> T;
}

macro_rules! cast_numeric {
    ($($from:ty),*) => {$(
        impl CastTo<f32> for $from { fn cast(self) -> f32 { self as f32 } }
        impl CastTo<f64> for $from { fn cast(self) -> f64 { self as f64 } }
        impl CastTo<i8> for $from { fn cast(self) -> i8 { self as i8 } }
        impl CastTo<u8> for $from { fn cast(self) -> u8 { self as u8 } }
        impl CastTo<i16> for $from { fn cast(self) -> i16 { self as i16 } }
        impl CastTo<u16> for $from { fn cast(self) -> u16 { self as u16 } }
        impl CastTo<i32> for $from { fn cast(self) -> i32 { self as i32 } }
        impl CastTo<u32> for $from { fn cast(self) -> u32 { self as u32 } }
        impl CastTo<i64> for $from { fn cast(self) -> i64 { self as i64 } }
        impl CastTo<u64> for $from { fn cast(self) -> u64 { self as u64 } }
        #[allow(clippy::float_cmp)]
        impl CastTo<bool> for $from { fn cast(self) -> bool { self != (0 as $from) } }
        impl CastTo<$from> for bool { fn cast(self) -> $from { self as u8 as $from } }
    )*};
}
cast_numeric!(f32, f64, i8, u8, i16, u16, i32, u32, i64, u64);

impl CastTo<bool> for bool {
    fn cast(self) -> bool {
        self
    }
}

/// The value of a Constant node.
pub(crate) fn constant(a: &Attrs) -> OpResult<Tensor> {
    let t = if let Some(t) = a.tensor("value")? {
        Tensor::from_proto(t).or_else(|e| unsupported(format!("constant value: {e}")))?
    } else if let Some(f) = a.float("value_float")? {
        Tensor::from_parts(vec![], Data::F32(vec![f]))
    } else if let Some(v) = a.floats("value_floats")? {
        Tensor::from_parts(vec![v.len()], Data::F32(v))
    } else if let Some(i) = a.int("value_int")? {
        Tensor::scalar_i64(i)
    } else if let Some(v) = a.ints("value_ints")? {
        Tensor::from_parts(vec![v.len()], Data::I64(v))
    } else {
        return unsupported("Constant without a tensor, float or int value is not supported");
    };
    Ok(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transpose_moves_axes() {
        let x = Tensor::new(vec![2, 3], Data::I32(vec![1, 2, 3, 4, 5, 6])).unwrap();
        let t = transpose(&x, &[1, 0]);
        assert_eq!(t.shape(), &[3, 2]);
        assert_eq!(t.data(), &Data::I32(vec![1, 4, 2, 5, 3, 6]));
    }

    #[test]
    fn reshape_infers_one_dimension_and_rejects_bad_targets() {
        let x = Tensor::new(vec![2, 6], Data::F32(vec![0.0; 12])).unwrap();
        let r = Reshape { allow_zero: false };
        let target = |v: Vec<i64>| Tensor::new(vec![v.len()], Data::I64(v)).unwrap();
        assert_eq!(
            r.run(&x, &target(vec![0, -1, 2])).unwrap().shape(),
            &[2, 3, 2]
        );
        assert!(r.run(&x, &target(vec![5, -1])).is_err());
        assert!(r.run(&x, &target(vec![-1, -1])).is_err());
        assert!(r.run(&x, &target(vec![-3, 4])).is_err());
    }

    #[test]
    fn cast_truncates_and_saturates() {
        let x = Tensor::new(vec![4], Data::F32(vec![1.9, -1.9, 300.0, f32::NAN])).unwrap();
        let c = Cast { to: DataType::U8 }.run(&x).unwrap();
        assert_eq!(c.data(), &Data::U8(vec![1, 0, 255, 0]));
    }
}
