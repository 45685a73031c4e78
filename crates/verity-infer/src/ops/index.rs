//! Operators that pick, repeat or generate elements by index, with shapes known only at run
//! time: Shape, Size, Gather, Slice, Split, Expand, Tile, ConstantOfShape, Range and Trilu.

use super::elementwise::{broadcast_shape, for_each_broadcast_row, IntoData};
use super::{
    buffer_len, i64_values, invalid, norm_axis, opt, req, unsupported, Attrs, OpError, OpResult,
};
use crate::map_data;
use crate::tensor::{Data, Tensor};

fn i64_vector(v: Vec<i64>) -> Tensor {
    Tensor::from_parts(vec![v.len()], Data::I64(v))
}

/// Integer index values (int32 or int64), any shape.
fn index_values(t: &Tensor, what: &str) -> OpResult<Vec<i64>> {
    match t.data() {
        Data::I64(v) => Ok(v.clone()),
        Data::I32(v) => Ok(v.iter().map(|&i| i as i64).collect()),
        _ => invalid(format!("{what} must be int32 or int64, got {}", t.dtype())),
    }
}

/// Shape, with opset 15's `start`/`end` window (clamped, negative counting from the end).
#[derive(Debug, Clone)]
pub(crate) struct Shape {
    start: i64,
    end: Option<i64>,
}

impl Shape {
    pub fn parse(a: &Attrs) -> OpResult<Shape> {
        Ok(Shape {
            start: a.int_or("start", 0)?,
            end: a.int("end")?,
        })
    }

    pub fn run(&self, x: &Tensor) -> OpResult<Tensor> {
        let rank = x.rank() as i64;
        let clamp = |i: i64| (if i < 0 { i + rank } else { i }).clamp(0, rank) as usize;
        let (start, end) = (clamp(self.start), clamp(self.end.unwrap_or(rank)));
        let dims = x.shape()[start..end.max(start)]
            .iter()
            .map(|&d| d as i64)
            .collect();
        Ok(i64_vector(dims))
    }
}

pub(crate) fn size(x: &Tensor) -> Tensor {
    Tensor::scalar_i64(x.len() as i64)
}

/// Gather(data, indices) along `axis`: `out = data[:axis] ++ indices.shape ++ data[axis+1:]`.
#[derive(Debug, Clone)]
pub(crate) struct Gather {
    axis: i64,
}

impl Gather {
    pub fn parse(a: &Attrs) -> OpResult<Gather> {
        Ok(Gather {
            axis: a.int_or("axis", 0)?,
        })
    }

    pub fn run(&self, data: &Tensor, indices: &Tensor) -> OpResult<Tensor> {
        let axis = norm_axis(self.axis, data.rank())?;
        let len = data.shape()[axis];
        let picks = index_values(indices, "Gather's indices")?
            .into_iter()
            .map(|i| {
                let j = if i < 0 { i + len as i64 } else { i };
                if j < 0 || j >= len as i64 {
                    invalid(format!(
                        "Gather index {i} is out of range for an axis of {len}"
                    ))
                } else {
                    Ok(j as usize)
                }
            })
            .collect::<OpResult<Vec<usize>>>()?;
        let outer: usize = data.shape()[..axis].iter().product();
        let inner: usize = data.shape()[axis + 1..].iter().product();
        let mut shape = data.shape()[..axis].to_vec();
        shape.extend_from_slice(indices.shape());
        shape.extend_from_slice(&data.shape()[axis + 1..]);
        let n = buffer_len(&shape)?;
        let out = map_data!(data.data(), v => {
            let mut out = Vec::with_capacity(n);
            for o in 0..outer {
                for &p in &picks {
                    let at = (o * len + p) * inner;
                    out.extend_from_slice(&v[at..at + inner]);
                }
            }
            out
        });
        Ok(Tensor::from_parts(shape, out))
    }
}

/// GatherND(data, indices): each row of `indices`' last axis (k long) picks `data[b.., i0, …,
/// ik-1]` within batch `b` (the first `batch_dims` axes, shared by both), a slice of the
/// remaining axes; `out = indices.shape[..-1] ++ data.shape[batch_dims + k..]`. What
/// torch.export writes for advanced indexing (a causal mask's `mask[:, None, rows, cols]`).
#[derive(Debug, Clone)]
pub(crate) struct GatherNd {
    batch_dims: i64,
}

impl GatherNd {
    pub fn parse(a: &Attrs) -> OpResult<GatherNd> {
        Ok(GatherNd {
            batch_dims: a.int_or("batch_dims", 0)?,
        })
    }

    pub fn run(&self, data: &Tensor, indices: &Tensor) -> OpResult<Tensor> {
        let (r, q) = (data.rank(), indices.rank());
        let b = usize::try_from(self.batch_dims)
            .ok()
            .filter(|&b| b < r.min(q))
            .ok_or_else(|| {
                OpError::Invalid(format!(
                    "GatherND batch_dims {} must be below both ranks ({r} and {q})",
                    self.batch_dims
                ))
            })?;
        let k = indices.shape()[q - 1];
        if k == 0 || k > r - b {
            return invalid(format!(
                "GatherND index rows of {k} do not fit data {:?} after {b} batch axes",
                data.shape()
            ));
        }
        if indices.shape()[..b] != data.shape()[..b] {
            return invalid(format!(
                "GatherND batch axes differ: data {:?}, indices {:?}",
                data.shape(),
                indices.shape()
            ));
        }
        let picks = index_values(indices, "GatherND's indices")?;
        let batches: usize = data.shape()[..b].iter().product();
        let batch_len: usize = data.shape()[b..].iter().product();
        let slice_len: usize = data.shape()[b + k..].iter().product();
        let rows_per_batch: usize = indices.shape()[b..q - 1].iter().product();
        // Where each row's picks land: the flat offset within a batch of each chosen slice.
        let mut offsets = Vec::with_capacity(batches * rows_per_batch);
        for (row, pick) in picks.chunks(k).enumerate() {
            let mut at = (row / rows_per_batch.max(1)) * batch_len;
            let mut stride = batch_len;
            for (axis, &i) in pick.iter().enumerate() {
                let len = data.shape()[b + axis];
                stride /= len.max(1);
                let j = if i < 0 { i + len as i64 } else { i };
                if j < 0 || j >= len as i64 {
                    return invalid(format!(
                        "GatherND index {i} is out of range for axis {} of {len}",
                        b + axis
                    ));
                }
                at += j as usize * stride;
            }
            offsets.push(at);
        }
        let mut shape = indices.shape()[..q - 1].to_vec();
        shape.extend_from_slice(&data.shape()[b + k..]);
        let n = buffer_len(&shape)?;
        let out = map_data!(data.data(), v => {
            let mut out = Vec::with_capacity(n);
            for &at in &offsets {
                out.extend_from_slice(&v[at..at + slice_len]);
            }
            out
        });
        Ok(Tensor::from_parts(shape, out))
    }
}

/// Slice(data, starts, ends, axes?, steps?), or opset < 10's attributes, with ONNX's clamping.
#[derive(Debug, Clone)]
pub(crate) struct Slice {
    /// From attributes (opset < 10).
    legacy: Option<LegacySlice>,
}

#[derive(Debug, Clone)]
struct LegacySlice {
    starts: Vec<i64>,
    ends: Vec<i64>,
    axes: Option<Vec<i64>>,
}

impl Slice {
    pub fn parse(a: &Attrs, opset: i64) -> OpResult<Slice> {
        if opset >= 10 {
            return Ok(Slice { legacy: None });
        }
        let (Some(starts), Some(ends)) = (a.ints("starts")?, a.ints("ends")?) else {
            return invalid("Slice needs starts and ends attributes before opset 10");
        };
        Ok(Slice {
            legacy: Some(LegacySlice {
                starts,
                ends,
                axes: a.ints("axes")?,
            }),
        })
    }

    pub fn run(&self, inputs: &[Option<&Tensor>]) -> OpResult<Tensor> {
        let x = req(inputs, 0)?;
        let (starts, ends, axes, steps) = match &self.legacy {
            Some(l) => (l.starts.clone(), l.ends.clone(), l.axes.clone(), None),
            None => (
                index_values(req(inputs, 1)?, "starts")?,
                index_values(req(inputs, 2)?, "ends")?,
                opt(inputs, 3)
                    .map(|t| index_values(t, "axes"))
                    .transpose()?,
                opt(inputs, 4)
                    .map(|t| index_values(t, "steps"))
                    .transpose()?,
            ),
        };
        let rank = x.rank();
        let axes = axes.unwrap_or_else(|| (0..starts.len() as i64).collect());
        let steps = steps.unwrap_or_else(|| vec![1; starts.len()]);
        if ends.len() != starts.len() || axes.len() != starts.len() || steps.len() != starts.len() {
            return invalid(format!(
                "Slice's starts, ends, axes and steps differ in length ({}, {}, {}, {})",
                starts.len(),
                ends.len(),
                axes.len(),
                steps.len()
            ));
        }
        // Per axis: first index, step and count.
        let mut plan: Vec<(i64, i64, usize)> = x.shape().iter().map(|&d| (0, 1, d)).collect();
        let mut seen = vec![false; rank];
        for i in 0..starts.len() {
            let axis = norm_axis(axes[i], rank)?;
            if std::mem::replace(&mut seen[axis], true) {
                return invalid(format!("Slice names axis {axis} twice"));
            }
            let step = steps[i];
            if step == 0 {
                return invalid("Slice's step is 0");
            }
            let dim = x.shape()[axis] as i64;
            let norm = |v: i64| if v < 0 { v.saturating_add(dim) } else { v };
            let (start, end) = if step > 0 {
                (norm(starts[i]).clamp(0, dim), norm(ends[i]).clamp(0, dim))
            } else {
                (
                    norm(starts[i]).clamp(0, dim - 1),
                    norm(ends[i]).clamp(-1, dim - 1),
                )
            };
            let span = if step > 0 { end - start } else { start - end };
            let count = if span <= 0 {
                0
            } else {
                (span + step.abs() - 1) / step.abs()
            };
            plan[axis] = (start, step, count as usize);
        }
        let shape: Vec<usize> = plan.iter().map(|p| p.2).collect();
        let n = buffer_len(&shape)?;
        let mut strides = vec![1i64; rank];
        for d in (0..rank.saturating_sub(1)).rev() {
            strides[d] = strides[d + 1] * x.shape()[d + 1] as i64;
        }
        // Row by row along the last axis: a contiguous copy where its step is 1.
        let (first, step, len) = plan.last().copied().unwrap_or((0, 1, 1));
        let outer = &shape[..rank.saturating_sub(1)];
        let data = map_data!(x.data(), v => {
            let mut out = Vec::with_capacity(n);
            if n > 0 {
                let mut idx = vec![0usize; outer.len()];
                for _ in 0..n / len {
                    let base: i64 = (0..outer.len())
                        .map(|d| (plan[d].0 + plan[d].1 * idx[d] as i64) * strides[d])
                        .sum::<i64>()
                        + first;
                    if step == 1 {
                        out.extend_from_slice(&v[base as usize..base as usize + len]);
                    } else {
                        out.extend((0..len as i64).map(|j| v[(base + j * step) as usize]));
                    }
                    for d in (0..outer.len()).rev() {
                        idx[d] += 1;
                        if idx[d] < outer[d] {
                            break;
                        }
                        idx[d] = 0;
                    }
                }
            }
            out
        });
        Ok(Tensor::from_parts(shape, data))
    }
}

/// Split along `axis` into the sizes of the `split` input (or attribute before opset 13), or
/// into `num_outputs` parts (opset 18; the last one smaller when the axis does not divide).
#[derive(Debug, Clone)]
pub(crate) struct Split {
    axis: i64,
    sizes: Option<Vec<i64>>,
    num_outputs: Option<i64>,
    outputs: usize,
}

impl Split {
    pub fn parse(a: &Attrs, opset: i64, outputs: usize) -> OpResult<Split> {
        Ok(Split {
            axis: a.int_or("axis", 0)?,
            sizes: if opset < 13 { a.ints("split")? } else { None },
            num_outputs: if opset >= 18 {
                a.int("num_outputs")?
            } else {
                None
            },
            outputs,
        })
    }

    pub fn run(&self, inputs: &[Option<&Tensor>]) -> OpResult<Vec<Tensor>> {
        let x = req(inputs, 0)?;
        let axis = norm_axis(self.axis, x.rank())?;
        let dim = x.shape()[axis];
        let sizes: Vec<usize> = match (&self.sizes, opt(inputs, 1), self.num_outputs) {
            (Some(s), _, _) => to_sizes(s)?,
            (None, Some(t), _) => to_sizes(&i64_values(t, "split")?)?,
            (None, None, Some(parts)) => {
                let parts = usize::try_from(parts).ok().filter(|&p| p > 0).map_or_else(
                    || invalid(format!("num_outputs {parts} is not positive")),
                    Ok,
                )?;
                // Equal parts of the axis rounded up; the last one takes what is left.
                let each = dim.div_ceil(parts);
                (0..parts)
                    .map(|i| each.min(dim.saturating_sub(i * each)))
                    .collect()
            }
            (None, None, None) => {
                let parts = self.outputs;
                if parts == 0 || !dim.is_multiple_of(parts) {
                    return invalid(format!(
                        "an axis of {dim} does not split into {parts} equal parts"
                    ));
                }
                vec![dim / parts; parts]
            }
        };
        if sizes.iter().sum::<usize>() != dim {
            return invalid(format!(
                "split sizes {sizes:?} do not add up to the axis' {dim}"
            ));
        }
        let outer: usize = x.shape()[..axis].iter().product();
        let inner: usize = x.shape()[axis + 1..].iter().product();
        let mut first = 0;
        let mut outs = Vec::with_capacity(sizes.len());
        for &size in &sizes {
            let mut shape = x.shape().to_vec();
            shape[axis] = size;
            let data = map_data!(x.data(), v => {
                let mut out = Vec::with_capacity(outer * size * inner);
                for o in 0..outer {
                    let at = (o * dim + first) * inner;
                    out.extend_from_slice(&v[at..at + size * inner]);
                }
                out
            });
            outs.push(Tensor::from_parts(shape, data));
            first += size;
        }
        Ok(outs)
    }
}

fn to_sizes(v: &[i64]) -> OpResult<Vec<usize>> {
    v.iter()
        .map(|&s| usize::try_from(s).or_else(|_| invalid(format!("split size {s} is negative"))))
        .collect()
}

/// Non-negative dimensions from a shape tensor.
fn dims(t: &Tensor, what: &str) -> OpResult<Vec<usize>> {
    i64_values(t, what)?
        .into_iter()
        .map(|d| {
            usize::try_from(d).or_else(|_| invalid(format!("{what} has a negative entry {d}")))
        })
        .collect()
}

/// Expand(x, shape): `x` broadcast to the broadcast of its shape and `shape`.
pub(crate) fn expand(x: &Tensor, shape: &Tensor) -> OpResult<Tensor> {
    let out = broadcast_shape(x.shape(), &dims(shape, "Expand's shape")?)?;
    let n = buffer_len(&out)?;
    let data = map_data!(x.data(), v => {
        let mut o = Vec::with_capacity(n);
        for_each_broadcast_row(&out, [x.shape()], |[start], [step], len| match step {
            0 => o.extend(std::iter::repeat_n(v[start], len)),
            _ => o.extend_from_slice(&v[start..start + len]),
        });
        o
    });
    Ok(Tensor::from_parts(out, data))
}

/// Tile(x, repeats): each axis repeated `repeats[axis]` times.
pub(crate) fn tile(x: &Tensor, repeats: &Tensor) -> OpResult<Tensor> {
    let reps = dims(repeats, "Tile's repeats")?;
    if reps.len() != x.rank() {
        return invalid(format!(
            "Tile's repeats {reps:?} do not match the rank {} of {:?}",
            x.rank(),
            x.shape()
        ));
    }
    let out: Vec<usize> = x.shape().iter().zip(&reps).map(|(&d, &r)| d * r).collect();
    let n = buffer_len(&out)?;
    let rank = x.rank();
    let data = map_data!(x.data(), v => {
        let mut o = Vec::with_capacity(n);
        let mut strides = vec![1usize; rank];
        for d in (0..rank.saturating_sub(1)).rev() {
            strides[d] = strides[d + 1] * x.shape()[d + 1];
        }
        let mut idx = vec![0usize; rank];
        for _ in 0..n {
            let at: usize = (0..rank).map(|d| (idx[d] % x.shape()[d]) * strides[d]).sum();
            o.push(v[at]);
            for d in (0..rank).rev() {
                idx[d] += 1;
                if idx[d] < out[d] {
                    break;
                }
                idx[d] = 0;
            }
        }
        o
    });
    Ok(Tensor::from_parts(out, data))
}

/// ConstantOfShape(shape): every element the one-element `value` attribute (float 0 without).
#[derive(Debug, Clone)]
pub(crate) struct ConstantOfShape {
    value: Tensor,
}

impl ConstantOfShape {
    pub fn parse(a: &Attrs) -> OpResult<ConstantOfShape> {
        let value = match a.tensor("value")? {
            Some(t) => Tensor::from_proto(t).or_else(|e| invalid(format!("value: {e}")))?,
            None => Tensor::from_parts(vec![1], Data::F32(vec![0.0])),
        };
        if value.len() != 1 {
            return invalid(format!(
                "ConstantOfShape's value must hold one element, it holds {}",
                value.len()
            ));
        }
        Ok(ConstantOfShape { value })
    }

    pub fn run(&self, shape: &Tensor) -> OpResult<Tensor> {
        let out = dims(shape, "ConstantOfShape's shape")?;
        let n = buffer_len(&out)?;
        let data = map_data!(self.value.data(), v => vec![v[0]; n]);
        Ok(Tensor::from_parts(out, data))
    }
}

/// Range(start, limit, delta): `max(ceil((limit - start) / delta), 0)` elements, computed in the
/// inputs' type, each the previous plus `delta` as ONNX's definition accumulates them.
pub(crate) fn range(start: &Tensor, limit: &Tensor, delta: &Tensor) -> OpResult<Tensor> {
    if [start, limit, delta].iter().any(|t| t.len() != 1) {
        return invalid("Range takes three one-element tensors");
    }
    fn sequence<T: Copy>(n: f64, start: T, delta: T, add: impl Fn(T, T) -> T) -> OpResult<Tensor>
    where
        Vec<T>: IntoData,
    {
        if !n.is_finite() {
            return invalid("Range's length is not finite (a zero or NaN delta)");
        }
        let n = buffer_len(&[n.max(0.0).min(usize::MAX as f64) as usize])?;
        let mut v = Vec::with_capacity(n);
        let mut next = start;
        for _ in 0..n {
            v.push(next);
            next = add(next, delta);
        }
        Ok(Tensor::from_parts(vec![n], v.into_data()))
    }
    // Integer lengths in exact 128-bit arithmetic: ceil(span / delta).
    fn int_len(s: i64, l: i64, d: i64) -> f64 {
        if d == 0 {
            return f64::NAN;
        }
        let (span, d) = (l as i128 - s as i128, d as i128);
        let n = span / d + i128::from(span % d != 0 && (span < 0) == (d < 0));
        n as f64
    }
    match (start.data(), limit.data(), delta.data()) {
        (Data::F32(s), Data::F32(l), Data::F32(d)) => {
            sequence(((l[0] - s[0]) / d[0]).ceil() as f64, s[0], d[0], |a, b| {
                a + b
            })
        }
        (Data::F64(s), Data::F64(l), Data::F64(d)) => {
            sequence(((l[0] - s[0]) / d[0]).ceil(), s[0], d[0], |a, b| a + b)
        }
        (Data::I64(s), Data::I64(l), Data::I64(d)) => {
            sequence(int_len(s[0], l[0], d[0]), s[0], d[0], i64::wrapping_add)
        }
        (Data::I32(s), Data::I32(l), Data::I32(d)) => sequence(
            int_len(s[0].into(), l[0].into(), d[0].into()),
            s[0],
            d[0],
            i32::wrapping_add,
        ),
        (Data::I16(s), Data::I16(l), Data::I16(d)) => sequence(
            int_len(s[0].into(), l[0].into(), d[0].into()),
            s[0],
            d[0],
            i16::wrapping_add,
        ),
        _ => unsupported(format!(
            "Range over {}, {} and {}",
            start.dtype(),
            limit.dtype(),
            delta.dtype()
        )),
    }
}

/// Trilu(x, k?): keeps the upper (or lower) triangle of the last two axes from diagonal `k`,
/// zeroing the rest.
#[derive(Debug, Clone)]
pub(crate) struct Trilu {
    upper: bool,
}

impl Trilu {
    pub fn parse(a: &Attrs) -> OpResult<Trilu> {
        Ok(Trilu {
            upper: a.int_or("upper", 1)? != 0,
        })
    }

    pub fn run(&self, x: &Tensor, k: Option<&Tensor>) -> OpResult<Tensor> {
        let k = match k {
            None => 0,
            Some(t) => match t.data() {
                Data::I64(v) if v.len() == 1 => v[0],
                _ => return invalid("Trilu's k must be one int64"),
            },
        };
        if x.rank() < 2 {
            return invalid(format!("Trilu needs rank 2 or more, got {:?}", x.shape()));
        }
        let (rows, cols) = (x.shape()[x.rank() - 2], x.shape()[x.rank() - 1]);
        let keep = |i: usize, j: usize| {
            let diff = j as i64 - i as i64;
            if self.upper {
                diff >= k
            } else {
                diff <= k
            }
        };
        let data = map_data!(x.data(), v => v
            .iter()
            .enumerate()
            .map(|(at, &e)| {
                let (i, j) = ((at / cols.max(1)) % rows.max(1), at % cols.max(1));
                if keep(i, j) { e } else { Default::default() }
            })
            .collect());
        Ok(Tensor::from_parts(x.shape().to_vec(), data))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(shape: &[usize], v: Vec<f32>) -> Tensor {
        Tensor::new(shape.to_vec(), Data::F32(v)).unwrap()
    }

    fn i(v: &[i64]) -> Tensor {
        i64_vector(v.to_vec())
    }

    #[test]
    fn gather_picks_rows_and_refuses_out_of_range() {
        let emb = f(&[3, 2], vec![0., 1., 10., 11., 20., 21.]);
        let ids = Tensor::new(vec![1, 2], Data::I64(vec![2, -3])).unwrap();
        let r = Gather { axis: 0 }.run(&emb, &ids).unwrap();
        assert_eq!(r.shape(), &[1, 2, 2]);
        assert_eq!(r.as_f32().unwrap(), &[20., 21., 0., 1.]);
        let bad = Tensor::new(vec![1], Data::I64(vec![3])).unwrap();
        let err = Gather { axis: 0 }.run(&emb, &bad).unwrap_err();
        assert!(err.reason().contains("out of range"), "{err:?}");
    }

    /// torch.export's `mask[:, None, rows, cols]`: picks by (row, col) pairs, negative indices
    /// counted from the end; bad indices and shapes are errors naming what is wrong.
    #[test]
    fn gather_nd_picks_slices_and_refuses_bad_indices() {
        let x = f(&[2, 2, 2], (0..8).map(|v| v as f32).collect());
        let pairs = Tensor::new(vec![2, 2], Data::I64(vec![1, 0, -2, 1])).unwrap();
        let r = GatherNd { batch_dims: 0 }.run(&x, &pairs).unwrap();
        assert_eq!(r.shape(), &[2, 2]);
        assert_eq!(r.as_f32().unwrap(), &[4., 5., 2., 3.]);
        let per_batch = Tensor::new(vec![2, 1], Data::I64(vec![1, 0])).unwrap();
        let r = GatherNd { batch_dims: 1 }.run(&x, &per_batch).unwrap();
        assert_eq!(r.as_f32().unwrap(), &[2., 3., 4., 5.]);
        let far = Tensor::new(vec![1, 1], Data::I64(vec![2])).unwrap();
        let err = GatherNd { batch_dims: 0 }.run(&x, &far).unwrap_err();
        assert!(err.reason().contains("out of range"), "{err:?}");
        let long = Tensor::new(vec![1, 4], Data::I64(vec![0; 4])).unwrap();
        let err = GatherNd { batch_dims: 0 }.run(&x, &long).unwrap_err();
        assert!(err.reason().contains("do not fit"), "{err:?}");
        let err = GatherNd { batch_dims: 2 }.run(&x, &pairs).unwrap_err();
        assert!(err.reason().contains("batch_dims"), "{err:?}");
    }

    #[test]
    fn slice_clamps_and_steps_backwards() {
        let x = f(&[5], vec![0., 1., 2., 3., 4.]);
        let s = Slice { legacy: None };
        let run = |a: &[i64], b: &[i64], step: &[i64]| {
            s.run(&[Some(&x), Some(&i(a)), Some(&i(b)), None, Some(&i(step))])
                .unwrap()
                .as_f32()
                .unwrap()
                .to_vec()
        };
        assert_eq!(run(&[1], &[i64::MAX], &[2]), [1., 3.]);
        assert_eq!(run(&[-1], &[i64::MIN], &[-1]), [4., 3., 2., 1., 0.]);
        assert_eq!(run(&[3], &[1], &[1]), [] as [f32; 0]);
    }

    #[test]
    fn split_expand_tile_and_trilu() {
        let x = f(&[2, 4], (0..8).map(|v| v as f32).collect());
        let parts = Split {
            axis: 1,
            sizes: None,
            num_outputs: None,
            outputs: 2,
        }
        .run(&[Some(&x)])
        .unwrap();
        assert_eq!(parts[1].as_f32().unwrap(), &[2., 3., 6., 7.]);
        let e = expand(&f(&[2, 1], vec![1., 2.]), &i(&[2, 3])).unwrap();
        assert_eq!(e.as_f32().unwrap(), &[1., 1., 1., 2., 2., 2.]);
        let t = tile(&f(&[1, 2], vec![1., 2.]), &i(&[2, 2])).unwrap();
        assert_eq!(t.as_f32().unwrap(), &[1., 2., 1., 2., 1., 2., 1., 2.]);
        let ones = f(&[3, 3], vec![1.; 9]);
        let causal = Trilu { upper: false }.run(&ones, None).unwrap();
        assert_eq!(
            causal.as_f32().unwrap(),
            &[1., 0., 0., 1., 1., 0., 1., 1., 1.]
        );
    }

    #[test]
    fn range_counts_like_onnx() {
        let s = |v: i64| Tensor::scalar_i64(v);
        let r = range(&s(10), &s(4), &s(-3)).unwrap();
        assert_eq!(r.data(), &Data::I64(vec![10, 7]));
        assert!(range(&s(0), &s(4), &s(0)).is_err());
        let big = range(&s(0), &s(i64::MAX), &s(1)).unwrap_err();
        assert!(big.reason().contains("limit"), "{big:?}");
    }
}
