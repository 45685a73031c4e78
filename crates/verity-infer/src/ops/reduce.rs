//! Reductions: ReduceSum, ReduceMean, ReduceMax, ReduceMin, ReduceProd, and CumSum.
//!
//! Order: each output accumulates its inputs in row-major order of the reduced indices, one
//! element at a time, in the input's type (float sums are not reassociated or widened), so the
//! result never depends on the thread count. Integer sums and products wrap.

use super::elementwise::{with_numeric, Arith, IntoData};
use super::{i64_values, invalid, norm_axis, opt, req, unsupported, Attrs, OpResult};
use crate::tensor::{Data, Tensor};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Reduction {
    Sum,
    Mean,
    Max,
    Min,
    Prod,
}

#[derive(Debug, Clone)]
pub(crate) struct Reduce {
    kind: Reduction,
    keep_dims: bool,
    /// Axes from the attribute (before the op took them as an input).
    axes: Option<Vec<i64>>,
    /// With no axes given: reduce nothing (true) or everything (false).
    noop_with_empty_axes: bool,
}

impl Reduce {
    /// ReduceSum takes its axes as an input from opset 13, the others from opset 18.
    pub fn parse(a: &Attrs, kind: Reduction, opset: i64) -> OpResult<Reduce> {
        let axes_as_input = opset >= if kind == Reduction::Sum { 13 } else { 18 };
        Ok(Reduce {
            kind,
            keep_dims: a.int_or("keepdims", 1)? != 0,
            axes: if axes_as_input { None } else { a.ints("axes")? },
            noop_with_empty_axes: axes_as_input && a.int_or("noop_with_empty_axes", 0)? != 0,
        })
    }

    pub fn run(&self, inputs: &[Option<&Tensor>]) -> OpResult<Tensor> {
        let x = req(inputs, 0)?;
        let axes = match (&self.axes, opt(inputs, 1)) {
            (Some(a), _) => a.clone(),
            (None, Some(t)) => i64_values(t, "axes")?,
            (None, None) => vec![],
        };
        let rank = x.rank();
        let mut reduced = vec![false; rank];
        if axes.is_empty() {
            if self.noop_with_empty_axes {
                return Ok(x.clone());
            }
            reduced.iter_mut().for_each(|r| *r = true);
        }
        for &a in &axes {
            let a = norm_axis(a, rank)?;
            if std::mem::replace(&mut reduced[a], true) {
                return invalid(format!("axis {a} is reduced twice"));
            }
        }
        let kept: Vec<usize> = (0..rank)
            .map(|d| if reduced[d] { 1 } else { x.shape()[d] })
            .collect();
        let out_len: usize = kept.iter().product();
        let count: usize = (0..rank)
            .filter(|&d| reduced[d])
            .map(|d| x.shape()[d])
            .product();
        if count > 0 && (0..rank).all(|d| !reduced[d] || (d..rank).all(|e| reduced[e])) {
            // The reduced axes are the last ones: each output reduces `count` consecutive
            // elements, in the same order as the general walk below.
            let data = with_numeric!(x.data(), v => reduce_groups(self.kind, v, count),
                bool => return unsupported(format!("{:?} on bool is not supported", self.kind)));
            return Ok(Tensor::from_parts(
                self.out_shape(x.shape(), &reduced, kept),
                data,
            ));
        }
        // Each input element's output offset, walking the input in row-major order.
        let mut out_index = Vec::with_capacity(x.len());
        let mut idx = vec![0usize; rank];
        let mut strides = vec![1usize; rank];
        for d in (0..rank.saturating_sub(1)).rev() {
            strides[d] = strides[d + 1] * kept[d + 1];
        }
        let mut offset = 0usize;
        for _ in 0..x.len() {
            out_index.push(offset);
            for d in (0..rank).rev() {
                idx[d] += 1;
                if !reduced[d] {
                    offset += strides[d];
                }
                if idx[d] < x.shape()[d] {
                    break;
                }
                if !reduced[d] {
                    offset -= strides[d] * x.shape()[d];
                }
                idx[d] = 0;
            }
        }
        let data = with_numeric!(x.data(), v => reduce(self.kind, v, &out_index, out_len, count),
            bool => return unsupported(format!("{:?} on bool is not supported", self.kind)));
        Ok(Tensor::from_parts(
            self.out_shape(x.shape(), &reduced, kept),
            data,
        ))
    }

    fn out_shape(&self, shape: &[usize], reduced: &[bool], kept: Vec<usize>) -> Vec<usize> {
        if self.keep_dims {
            kept
        } else {
            (0..shape.len())
                .filter(|&d| !reduced[d])
                .map(|d| shape[d])
                .collect()
        }
    }
}

/// A numeric type a product starts from one of and a mean divides by a count; its lowest and
/// highest values are what Max and Min of nothing give (as ONNX defines them: -inf and +inf
/// for floats).
pub(crate) trait Reducible: Arith {
    const ONE: Self;
    const LOWEST: Self;
    const HIGHEST: Self;
    fn from_count(n: usize) -> Self;
}

/// The larger of two, a NaN winning (unlike `fmax`, a NaN input makes a NaN result).
#[allow(clippy::eq_op)] // x != x is the NaN test that also compiles for integers.
pub(crate) fn max_nan<T: PartialOrd + Copy>(a: T, b: T) -> T {
    if a != a {
        a
    } else if b != b || b > a {
        b
    } else {
        a
    }
}

/// The smaller of two, a NaN winning.
#[allow(clippy::eq_op)]
pub(crate) fn min_nan<T: PartialOrd + Copy>(a: T, b: T) -> T {
    if a != a {
        a
    } else if b != b || b < a {
        b
    } else {
        a
    }
}

fn reduce<T: Reducible>(
    kind: Reduction,
    v: &[T],
    out_index: &[usize],
    out_len: usize,
    count: usize,
) -> Data
where
    Vec<T>: IntoData,
{
    let mut out: Vec<Option<T>> = vec![None; out_len];
    for (&x, &o) in v.iter().zip(out_index) {
        out[o] = Some(match out[o] {
            None => x,
            Some(acc) => step(kind, acc, x),
        });
    }
    finish(kind, out, count)
}

/// `reduce` where each output reduces `count` consecutive elements (`count` > 0).
fn reduce_groups<T: Reducible>(kind: Reduction, v: &[T], count: usize) -> Data
where
    Vec<T>: IntoData,
{
    let out = v
        .chunks(count)
        .map(|group| group.iter().copied().reduce(|acc, x| step(kind, acc, x)));
    finish(kind, out, count)
}

/// One element into a running reduction.
fn step<T: Reducible>(kind: Reduction, acc: T, x: T) -> T {
    match kind {
        Reduction::Sum | Reduction::Mean => acc.add(x),
        Reduction::Prod => acc.mul(x),
        Reduction::Max => max_nan(acc, x),
        Reduction::Min => min_nan(acc, x),
    }
}

/// The outputs from their running reductions (`None`: nothing was reduced).
fn finish<T: Reducible>(
    kind: Reduction,
    out: impl IntoIterator<Item = Option<T>>,
    count: usize,
) -> Data
where
    Vec<T>: IntoData,
{
    let empty = match kind {
        Reduction::Prod => T::ONE,
        Reduction::Max => T::LOWEST,
        Reduction::Min => T::HIGHEST,
        Reduction::Sum | Reduction::Mean => T::ZERO,
    };
    let n = T::from_count(count);
    out.into_iter()
        .map(|acc| {
            let acc = acc.unwrap_or(empty);
            if kind == Reduction::Mean {
                acc.div(n).unwrap_or(T::ZERO)
            } else {
                acc
            }
        })
        .collect::<Vec<T>>()
        .into_data()
}

macro_rules! reducible {
    ($($t:ty => $one:expr, $lowest:expr, $highest:expr);*) => {$(
        impl Reducible for $t {
            const ONE: Self = $one;
            const LOWEST: Self = $lowest;
            const HIGHEST: Self = $highest;
            fn from_count(n: usize) -> Self { n as $t }
        }
    )*};
}
reducible!(
    f32 => 1.0, f32::NEG_INFINITY, f32::INFINITY;
    f64 => 1.0, f64::NEG_INFINITY, f64::INFINITY;
    i8 => 1, i8::MIN, i8::MAX;
    u8 => 1, u8::MIN, u8::MAX;
    i16 => 1, i16::MIN, i16::MAX;
    u16 => 1, u16::MIN, u16::MAX;
    i32 => 1, i32::MIN, i32::MAX;
    u32 => 1, u32::MIN, u32::MAX;
    i64 => 1, i64::MIN, i64::MAX;
    u64 => 1, u64::MIN, u64::MAX
);

/// CumSum(x, axis): running sums along one axis, each the previous plus one element.
#[derive(Debug, Clone)]
pub(crate) struct CumSum {
    exclusive: bool,
    reverse: bool,
}

impl CumSum {
    pub fn parse(a: &Attrs) -> OpResult<CumSum> {
        Ok(CumSum {
            exclusive: a.int_or("exclusive", 0)? != 0,
            reverse: a.int_or("reverse", 0)? != 0,
        })
    }

    pub fn run(&self, x: &Tensor, axis: &Tensor) -> OpResult<Tensor> {
        let axis = match axis.data() {
            Data::I64(v) if v.len() == 1 => v[0],
            Data::I32(v) if v.len() == 1 => v[0] as i64,
            _ => {
                return invalid(format!(
                    "CumSum's axis must be one int32 or int64, got {} {:?}",
                    axis.dtype(),
                    axis.shape()
                ))
            }
        };
        let axis = norm_axis(axis, x.rank())?;
        let len = x.shape()[axis];
        let inner: usize = x.shape()[axis + 1..].iter().product();
        let data = with_numeric!(x.data(), v => cumsum(v, len, inner, self.exclusive, self.reverse).into_data(),
            bool => return unsupported("CumSum on bool is not supported"));
        Ok(Tensor::from_parts(x.shape().to_vec(), data))
    }
}

fn cumsum<T: Arith>(v: &[T], len: usize, inner: usize, exclusive: bool, reverse: bool) -> Vec<T> {
    let mut out = vec![T::ZERO; v.len()];
    if len == 0 || inner == 0 {
        return out;
    }
    for block in 0..v.len() / (len * inner) {
        let base = block * len * inner;
        for i in 0..inner {
            let mut acc = T::ZERO;
            for step in 0..len {
                let k = if reverse { len - 1 - step } else { step };
                let at = base + k * inner + i;
                if exclusive {
                    out[at] = acc;
                    acc = acc.add(v[at]);
                } else {
                    acc = acc.add(v[at]);
                    out[at] = acc;
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(shape: &[usize], v: Vec<f32>) -> Tensor {
        Tensor::new(shape.to_vec(), Data::F32(v)).unwrap()
    }

    fn reduce_op(kind: Reduction, keep_dims: bool, axes: &[i64]) -> Reduce {
        Reduce {
            kind,
            keep_dims,
            axes: Some(axes.to_vec()),
            noop_with_empty_axes: false,
        }
    }

    #[test]
    fn reductions_over_inner_and_outer_axes() {
        let x = f(&[2, 3], vec![1., 2., 3., 4., 5., 6.]);
        let rows = reduce_op(Reduction::Sum, true, &[-1])
            .run(&[Some(&x)])
            .unwrap();
        assert_eq!(rows.shape(), &[2, 1]);
        assert_eq!(rows.as_f32().unwrap(), &[6., 15.]);
        let cols = reduce_op(Reduction::Mean, false, &[0])
            .run(&[Some(&x)])
            .unwrap();
        assert_eq!(cols.shape(), &[3]);
        assert_eq!(cols.as_f32().unwrap(), &[2.5, 3.5, 4.5]);
        let all = reduce_op(Reduction::Max, false, &[])
            .run(&[Some(&x)])
            .unwrap();
        assert_eq!(all.shape(), &[] as &[usize]);
        assert_eq!(all.as_f32().unwrap(), &[6.]);
        let nan = f(&[2], vec![f32::NAN, 1.0]);
        assert!(reduce_op(Reduction::Max, false, &[0])
            .run(&[Some(&nan)])
            .unwrap()
            .as_f32()
            .unwrap()[0]
            .is_nan());
        assert!(reduce_op(Reduction::Sum, false, &[0, 0])
            .run(&[Some(&x)])
            .is_err());
    }

    #[test]
    fn cumsum_inclusive_exclusive_and_reversed() {
        let x = f(&[2, 3], vec![1., 2., 3., 4., 5., 6.]);
        let axis = Tensor::scalar_i64(1);
        let run = |exclusive, reverse| {
            CumSum { exclusive, reverse }
                .run(&x, &axis)
                .unwrap()
                .as_f32()
                .unwrap()
                .to_vec()
        };
        assert_eq!(run(false, false), [1., 3., 6., 4., 9., 15.]);
        assert_eq!(run(true, false), [0., 1., 3., 0., 4., 9.]);
        assert_eq!(run(false, true), [6., 5., 3., 15., 11., 6.]);
    }
}
