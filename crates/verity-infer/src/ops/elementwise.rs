//! Element-wise operators with ONNX multidirectional broadcasting.
//!
//! Integer arithmetic wraps (two's complement), as in ONNX Runtime; integer division truncates
//! toward zero and fails on a zero divisor instead of trapping.

use super::{invalid, opt, req, unsupported, Attrs, OpResult};
use crate::tensor::{element_count, Data, Tensor};

/// Arithmetic on one element type.
pub(crate) trait Arith: Copy + PartialOrd {
    const ZERO: Self;
    fn add(self, o: Self) -> Self;
    fn sub(self, o: Self) -> Self;
    fn mul(self, o: Self) -> Self;
    /// `None` on an integer division by zero.
    fn div(self, o: Self) -> Option<Self>;
}

macro_rules! arith_float {
    ($($t:ty),*) => {$(
        impl Arith for $t {
            const ZERO: Self = 0.0;
            fn add(self, o: Self) -> Self { self + o }
            fn sub(self, o: Self) -> Self { self - o }
            fn mul(self, o: Self) -> Self { self * o }
            fn div(self, o: Self) -> Option<Self> { Some(self / o) }
        }
    )*};
}
macro_rules! arith_int {
    ($($t:ty),*) => {$(
        impl Arith for $t {
            const ZERO: Self = 0;
            fn add(self, o: Self) -> Self { self.wrapping_add(o) }
            fn sub(self, o: Self) -> Self { self.wrapping_sub(o) }
            fn mul(self, o: Self) -> Self { self.wrapping_mul(o) }
            fn div(self, o: Self) -> Option<Self> {
                if o == 0 { None } else { Some(self.wrapping_div(o)) }
            }
        }
    )*};
}
arith_float!(f32, f64);
arith_int!(i8, u8, i16, u16, i32, u32, i64, u64);

/// Runs `$body` with `$v` bound to the typed vector of a numeric `Data` (not bool), or
/// evaluates `$otherwise` for bool.
macro_rules! with_numeric {
    ($data:expr, $v:ident => $body:expr, bool => $otherwise:expr) => {
        match $data {
            Data::F32($v) => $body,
            Data::F64($v) => $body,
            Data::I8($v) => $body,
            Data::U8($v) => $body,
            Data::I16($v) => $body,
            Data::U16($v) => $body,
            Data::I32($v) => $body,
            Data::U32($v) => $body,
            Data::I64($v) => $body,
            Data::U64($v) => $body,
            Data::Bool(_) => $otherwise,
        }
    };
}
pub(crate) use with_numeric;

/// Runs `$body` with `$x` and `$y` bound to the typed vectors of two numeric `Data` of the same
/// type, or evaluates `$otherwise` (bool, or different types).
macro_rules! with_numeric_pair {
    ($a:expr, $b:expr, ($x:ident, $y:ident) => $body:expr, else => $otherwise:expr) => {
        match ($a, $b) {
            (Data::F32($x), Data::F32($y)) => $body,
            (Data::F64($x), Data::F64($y)) => $body,
            (Data::I8($x), Data::I8($y)) => $body,
            (Data::U8($x), Data::U8($y)) => $body,
            (Data::I16($x), Data::I16($y)) => $body,
            (Data::U16($x), Data::U16($y)) => $body,
            (Data::I32($x), Data::I32($y)) => $body,
            (Data::U32($x), Data::U32($y)) => $body,
            (Data::I64($x), Data::I64($y)) => $body,
            (Data::U64($x), Data::U64($y)) => $body,
            _ => $otherwise,
        }
    };
}
pub(crate) use with_numeric_pair;

/// Builds a `Data` of the variant of `$a` and `$b` from `$body`, with `$x` and `$y` bound to
/// their typed vectors, or evaluates `$otherwise` when their types differ.
macro_rules! map_pair {
    ($a:expr, $b:expr, ($x:ident, $y:ident) => $body:expr, else => $otherwise:expr) => {
        match ($a, $b) {
            (Data::F32($x), Data::F32($y)) => Data::F32($body),
            (Data::F64($x), Data::F64($y)) => Data::F64($body),
            (Data::I8($x), Data::I8($y)) => Data::I8($body),
            (Data::U8($x), Data::U8($y)) => Data::U8($body),
            (Data::I16($x), Data::I16($y)) => Data::I16($body),
            (Data::U16($x), Data::U16($y)) => Data::U16($body),
            (Data::I32($x), Data::I32($y)) => Data::I32($body),
            (Data::U32($x), Data::U32($y)) => Data::U32($body),
            (Data::I64($x), Data::I64($y)) => Data::I64($body),
            (Data::U64($x), Data::U64($y)) => Data::U64($body),
            (Data::Bool($x), Data::Bool($y)) => Data::Bool($body),
            _ => $otherwise,
        }
    };
}
pub(crate) use map_pair;

/// The broadcast shape of `a` and `b` (numpy rules).
pub(crate) fn broadcast_shape(a: &[usize], b: &[usize]) -> OpResult<Vec<usize>> {
    let rank = a.len().max(b.len());
    let mut out = vec![0; rank];
    for (i, o) in out.iter_mut().enumerate() {
        let da = if i + a.len() >= rank {
            a[i + a.len() - rank]
        } else {
            1
        };
        let db = if i + b.len() >= rank {
            b[i + b.len() - rank]
        } else {
            1
        };
        *o = match (da, db) {
            (x, y) if x == y => x,
            (1, y) => y,
            (x, 1) => x,
            _ => {
                return invalid(format!(
                    "shapes {a:?} and {b:?} cannot be broadcast together"
                ))
            }
        };
    }
    Ok(out)
}

/// Strides of `shape` (row-major) seen through the broadcast `out` shape: 0 on stretched axes.
pub(crate) fn broadcast_strides(shape: &[usize], out: &[usize]) -> Vec<usize> {
    let mut strides = vec![0; out.len()];
    let offset = out.len() - shape.len();
    let mut stride = 1;
    for i in (0..shape.len()).rev() {
        strides[i + offset] = if shape[i] == 1 { 0 } else { stride };
        stride *= shape[i];
    }
    strides
}

/// Applies `f` element by element over the broadcast of `a` and `b`.
pub(crate) fn broadcast_map<A: Copy, B: Copy, O>(
    a: &[A],
    a_shape: &[usize],
    b: &[B],
    b_shape: &[usize],
    mut f: impl FnMut(A, B) -> O,
) -> OpResult<(Vec<usize>, Vec<O>)> {
    let shape = broadcast_shape(a_shape, b_shape)?;
    let n = element_count(&shape).ok_or_else(|| super::OpError::Invalid("too large".into()))?;
    if a_shape == b_shape {
        return Ok((shape, a.iter().zip(b).map(|(&x, &y)| f(x, y)).collect()));
    }
    let mut out = Vec::with_capacity(n);
    if n == 0 {
        return Ok((shape, out));
    }
    let sa = broadcast_strides(a_shape, &shape);
    let sb = broadcast_strides(b_shape, &shape);
    let rank = shape.len();
    let (inner, ia, ib) = if rank == 0 {
        (1, 0, 0)
    } else {
        (shape[rank - 1], sa[rank - 1], sb[rank - 1])
    };
    let outer_rank = rank.saturating_sub(1);
    let mut idx = vec![0usize; outer_rank];
    let (mut oa, mut ob) = (0usize, 0usize);
    for _ in 0..n / inner {
        // Rows read as slices where they can be, so the loop has no index arithmetic.
        match (ia, ib) {
            (1, 1) => {
                let rows = a[oa..oa + inner].iter().zip(&b[ob..ob + inner]);
                out.extend(rows.map(|(&x, &y)| f(x, y)));
            }
            (1, 0) => {
                let y = b[ob];
                out.extend(a[oa..oa + inner].iter().map(|&x| f(x, y)));
            }
            (0, 1) => {
                let x = a[oa];
                out.extend(b[ob..ob + inner].iter().map(|&y| f(x, y)));
            }
            _ => {
                for j in 0..inner {
                    out.push(f(a[oa + j * ia], b[ob + j * ib]));
                }
            }
        }
        for d in (0..outer_rank).rev() {
            idx[d] += 1;
            oa += sa[d];
            ob += sb[d];
            if idx[d] < shape[d] {
                break;
            }
            oa -= sa[d] * shape[d];
            ob -= sb[d] * shape[d];
            idx[d] = 0;
        }
    }
    Ok((shape, out))
}

/// Calls `f` with each operand's flat offset for every element of the broadcast shape `out`, in
/// row-major order; `shapes` are the operands' shapes, each broadcastable to `out`.
pub(crate) fn for_each_broadcast<const N: usize>(
    out: &[usize],
    shapes: [&[usize]; N],
    mut f: impl FnMut([usize; N]),
) {
    for_each_broadcast_row(out, shapes, |start, step, len| {
        for i in 0..len {
            f(std::array::from_fn(|k| start[k] + i * step[k]));
        }
    });
}

/// Calls `f(offsets, steps, len)` for each row of `out`'s innermost axis, in row-major order:
/// element `i` of the row is at `offsets[k] + i * steps[k]` in operand `k` (a step of 0 where
/// that operand is broadcast along the axis, 1 where it is contiguous).
pub(crate) fn for_each_broadcast_row<const N: usize>(
    out: &[usize],
    shapes: [&[usize]; N],
    mut f: impl FnMut([usize; N], [usize; N], usize),
) {
    let n: usize = out.iter().product();
    if n == 0 {
        return;
    }
    let Some(last) = out.len().checked_sub(1) else {
        f([0; N], [0; N], 1);
        return;
    };
    let strides = shapes.map(|s| broadcast_strides(s, out));
    let steps = std::array::from_fn(|k| strides[k][last]);
    let len = out[last];
    let mut idx = vec![0usize; last];
    let mut offsets = [0usize; N];
    for _ in 0..n / len {
        f(offsets, steps, len);
        for d in (0..last).rev() {
            idx[d] += 1;
            for (o, s) in offsets.iter_mut().zip(&strides) {
                *o += s[d];
            }
            if idx[d] < out[d] {
                break;
            }
            for (o, s) in offsets.iter_mut().zip(&strides) {
                *o -= s[d] * out[d];
            }
            idx[d] = 0;
        }
    }
}

#[derive(Debug, Clone, Copy)]
pub(crate) enum BinaryOp {
    Add,
    Sub,
    Mul,
    Div,
}

impl BinaryOp {
    fn apply<T: Arith>(
        self,
        a: &[T],
        sa: &[usize],
        b: &[T],
        sb: &[usize],
    ) -> OpResult<(Vec<usize>, Vec<T>)> {
        match self {
            BinaryOp::Add => broadcast_map(a, sa, b, sb, T::add),
            BinaryOp::Sub => broadcast_map(a, sa, b, sb, T::sub),
            BinaryOp::Mul => broadcast_map(a, sa, b, sb, T::mul),
            BinaryOp::Div => {
                let mut by_zero = false;
                let r = broadcast_map(a, sa, b, sb, |x, y| {
                    x.div(y).unwrap_or_else(|| {
                        by_zero = true;
                        T::ZERO
                    })
                })?;
                if by_zero {
                    return invalid("integer division by zero");
                }
                Ok(r)
            }
        }
    }

    pub fn run(self, a: &Tensor, b: &Tensor) -> OpResult<Tensor> {
        if a.dtype() != b.dtype() {
            return invalid(format!(
                "operands have different element types: {} and {}",
                a.dtype(),
                b.dtype()
            ));
        }
        macro_rules! go {
            ($variant:ident, $x:expr, $y:expr) => {{
                let (shape, v) = self.apply($x, a.shape(), $y, b.shape())?;
                Tensor::from_parts(shape, Data::$variant(v))
            }};
        }
        Ok(match (a.data(), b.data()) {
            (Data::F32(x), Data::F32(y)) => go!(F32, x, y),
            (Data::F64(x), Data::F64(y)) => go!(F64, x, y),
            (Data::I8(x), Data::I8(y)) => go!(I8, x, y),
            (Data::U8(x), Data::U8(y)) => go!(U8, x, y),
            (Data::I16(x), Data::I16(y)) => go!(I16, x, y),
            (Data::U16(x), Data::U16(y)) => go!(U16, x, y),
            (Data::I32(x), Data::I32(y)) => go!(I32, x, y),
            (Data::U32(x), Data::U32(y)) => go!(U32, x, y),
            (Data::I64(x), Data::I64(y)) => go!(I64, x, y),
            (Data::U64(x), Data::U64(y)) => go!(U64, x, y),
            _ => return unsupported(format!("arithmetic on {} is not supported", a.dtype())),
        })
    }
}

#[derive(Debug, Clone, Copy)]
pub(crate) enum UnaryOp {
    Relu,
    Sigmoid,
    Tanh,
    Identity,
    Neg,
    Abs,
    Exp,
    Log,
    Sqrt,
    Reciprocal,
    Sin,
    Cos,
    Floor,
    Ceil,
    Erf,
}

/// A float function in both widths.
type FloatFns = (fn(f32) -> f32, fn(f64) -> f64);

impl UnaryOp {
    /// The float-only ops, each from `libm` (software, identical everywhere) or IEEE-exact
    /// arithmetic: never the platform's math library.
    fn float_fns(self) -> Option<FloatFns> {
        Some(match self {
            // sigmoid(x) = 1 / (1 + exp(-x)).
            UnaryOp::Sigmoid => (
                |x| 1.0 / (1.0 + libm::expf(-x)),
                |x| 1.0 / (1.0 + libm::exp(-x)),
            ),
            UnaryOp::Tanh => (libm::tanhf, libm::tanh),
            UnaryOp::Exp => (libm::expf, libm::exp),
            UnaryOp::Log => (libm::logf, libm::log),
            UnaryOp::Sqrt => (libm::sqrtf, libm::sqrt),
            UnaryOp::Reciprocal => (|x| 1.0 / x, |x| 1.0 / x),
            UnaryOp::Sin => (libm::sinf, libm::sin),
            UnaryOp::Cos => (libm::cosf, libm::cos),
            UnaryOp::Floor => (libm::floorf, libm::floor),
            UnaryOp::Ceil => (libm::ceilf, libm::ceil),
            UnaryOp::Erf => (libm::erff, libm::erf),
            _ => return None,
        })
    }

    pub fn run(self, x: &Tensor) -> OpResult<Tensor> {
        let shape = x.shape().to_vec();
        if let (UnaryOp::Sigmoid | UnaryOp::Exp, Data::F32(v)) = (self, x.data()) {
            // The same bits as `float_fns`, with exp eight at a time.
            let mut out: Vec<f32> = if matches!(self, UnaryOp::Sigmoid) {
                v.iter().map(|&x| -x).collect()
            } else {
                v.clone()
            };
            crate::exp::exp_in_place(&mut out);
            if matches!(self, UnaryOp::Sigmoid) {
                out.iter_mut().for_each(|e| *e = 1.0 / (1.0 + *e));
            }
            return Ok(Tensor::from_parts(shape, Data::F32(out)));
        }
        if let Some((single, double)) = self.float_fns() {
            let data = match x.data() {
                Data::F32(v) => Data::F32(v.iter().map(|&x| single(x)).collect()),
                Data::F64(v) => Data::F64(v.iter().map(|&x| double(x)).collect()),
                d => return unsupported(format!("{self:?} on {} is not supported", d.dtype())),
            };
            return Ok(Tensor::from_parts(shape, data));
        }
        // Integers wrap as two's complement does: the negation of the minimum is itself.
        macro_rules! map {
            ($variant:ident, $v:expr, $f:expr) => {
                Data::$variant($v.iter().map($f).collect())
            };
        }
        let data = match (self, x.data()) {
            (UnaryOp::Identity, d) => d.clone(),
            (UnaryOp::Neg, Data::F32(v)) => map!(F32, v, |&x| -x),
            (UnaryOp::Neg, Data::F64(v)) => map!(F64, v, |&x| -x),
            (UnaryOp::Neg, Data::I8(v)) => map!(I8, v, |&x| x.wrapping_neg()),
            (UnaryOp::Neg, Data::I16(v)) => map!(I16, v, |&x| x.wrapping_neg()),
            (UnaryOp::Neg, Data::I32(v)) => map!(I32, v, |&x| x.wrapping_neg()),
            (UnaryOp::Neg, Data::I64(v)) => map!(I64, v, |&x| x.wrapping_neg()),
            (UnaryOp::Abs, Data::F32(v)) => map!(F32, v, |&x| x.abs()),
            (UnaryOp::Abs, Data::F64(v)) => map!(F64, v, |&x| x.abs()),
            (UnaryOp::Abs, Data::I8(v)) => map!(I8, v, |&x| x.wrapping_abs()),
            (UnaryOp::Abs, Data::I16(v)) => map!(I16, v, |&x| x.wrapping_abs()),
            (UnaryOp::Abs, Data::I32(v)) => map!(I32, v, |&x| x.wrapping_abs()),
            (UnaryOp::Abs, Data::I64(v)) => map!(I64, v, |&x| x.wrapping_abs()),
            (UnaryOp::Abs, d @ (Data::U8(_) | Data::U16(_) | Data::U32(_) | Data::U64(_))) => {
                d.clone()
            }
            (UnaryOp::Relu, d) => {
                with_numeric!(d, v => relu(v), bool => return unsupported("Relu on bool"))
            }
            (op, d) => return unsupported(format!("{op:?} on {} is not supported", d.dtype())),
        };
        Ok(Tensor::from_parts(shape, data))
    }
}

fn relu<T: Arith>(v: &[T]) -> Data
where
    Vec<T>: IntoData,
{
    v.iter()
        .map(|&x| if x > T::ZERO { x } else { T::ZERO })
        .collect::<Vec<T>>()
        .into_data()
}

/// Wraps a typed vector back into [`Data`].
pub(crate) trait IntoData {
    fn into_data(self) -> Data;
}

macro_rules! into_data {
    ($($t:ty => $variant:ident),*) => {$(
        impl IntoData for Vec<$t> {
            fn into_data(self) -> Data { Data::$variant(self) }
        }
    )*};
}
into_data!(f32 => F32, f64 => F64, i8 => I8, u8 => U8, i16 => I16, u16 => U16, i32 => I32,
    u32 => U32, i64 => I64, u64 => U64, bool => Bool);

/// Max and Min over any number of inputs broadcast together, folded left to right; a NaN
/// operand makes a NaN result.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Extremum {
    Max,
    Min,
}

impl Extremum {
    pub fn run(self, inputs: &[Option<&Tensor>]) -> OpResult<Tensor> {
        let mut acc = req(inputs, 0)?.clone();
        for t in inputs[1..].iter().flatten() {
            let (shape, data) = with_numeric_pair!(acc.data(), t.data(), (x, y) => {
                let pick = match self {
                    Extremum::Max => super::reduce::max_nan,
                    Extremum::Min => super::reduce::min_nan,
                };
                let (shape, v) = broadcast_map(x, acc.shape(), y, t.shape(), pick)?;
                (shape, v.into_data())
            }, else => return invalid(format!(
                "{self:?} of {} and {}: the operands must have one numeric type",
                acc.dtype(),
                t.dtype()
            )));
            acc = Tensor::from_parts(shape, data);
        }
        Ok(acc)
    }
}

/// Pow(x, y) for a float base, with a float or integer exponent, by libm's `pow`.
pub(crate) fn pow(x: &Tensor, y: &Tensor) -> OpResult<Tensor> {
    let exponent: Vec<f64> = match y.data() {
        Data::F32(v) => v.iter().map(|&e| e as f64).collect(),
        Data::F64(v) => v.clone(),
        Data::I32(v) => v.iter().map(|&e| e as f64).collect(),
        Data::I64(v) => v.iter().map(|&e| e as f64).collect(),
        d => {
            return unsupported(format!(
                "Pow with a {} exponent is not supported",
                d.dtype()
            ))
        }
    };
    let (shape, data) = match x.data() {
        // x² is the RMS norm's square: `x * x`, which is what libm's powf gives for an exponent
        // of 2 (checked on every float32), at the cost of a multiply.
        Data::F32(b) if exponent == [2.0] && y.rank() <= x.rank() => (
            x.shape().to_vec(),
            Data::F32(b.iter().map(|&v| v * v).collect()),
        ),
        Data::F32(b) => {
            let e: Vec<f32> = exponent.iter().map(|&e| e as f32).collect();
            let (shape, v) = broadcast_map(b, x.shape(), &e, y.shape(), libm::powf)?;
            (shape, Data::F32(v))
        }
        Data::F64(b) => {
            let (shape, v) = broadcast_map(b, x.shape(), &exponent, y.shape(), libm::pow)?;
            (shape, Data::F64(v))
        }
        d => return unsupported(format!("Pow of a {} base is not supported", d.dtype())),
    };
    Ok(Tensor::from_parts(shape, data))
}

/// Clip: `min(max(x, lo), hi)`; when `lo > hi` every element becomes `hi`, as ONNX specifies.
#[derive(Debug, Clone)]
pub(crate) struct Clip {
    /// Bounds from attributes (opset < 11); later opsets take them as inputs 1 and 2.
    pub(crate) legacy: Option<(f32, f32)>,
}

impl Clip {
    pub fn parse(a: &Attrs, opset: i64) -> OpResult<Clip> {
        if opset < 11 {
            let lo = a.float_or("min", f32::MIN)?;
            let hi = a.float_or("max", f32::MAX)?;
            return Ok(Clip {
                legacy: Some((lo, hi)),
            });
        }
        Ok(Clip { legacy: None })
    }

    pub fn run(&self, inputs: &[Option<&Tensor>]) -> OpResult<Tensor> {
        let x = req(inputs, 0)?;
        if let Some((lo, hi)) = self.legacy {
            return match x.data() {
                Data::F32(v) => Ok(Tensor::from_parts(
                    x.shape().to_vec(),
                    Data::F32(v.iter().map(|&e| clamp(e, Some(lo), Some(hi))).collect()),
                )),
                _ => unsupported(format!("Clip (opset < 11) on {}", x.dtype())),
            };
        }
        let (lo, hi) = (opt(inputs, 1), opt(inputs, 2));
        for b in [lo, hi].into_iter().flatten() {
            if b.dtype() != x.dtype() || b.len() != 1 {
                return invalid(format!(
                    "Clip bounds must be one-element {} tensors, got {} {:?}",
                    x.dtype(),
                    b.dtype(),
                    b.shape()
                ));
            }
        }
        macro_rules! bound {
            ($t:expr, $variant:ident) => {
                match $t.map(|t| t.data()) {
                    Some(Data::$variant(b)) => Some(b[0]),
                    _ => None,
                }
            };
        }
        macro_rules! go {
            ($variant:ident, $v:expr) => {
                Data::$variant(
                    $v.iter()
                        .map(|&e| clamp(e, bound!(lo, $variant), bound!(hi, $variant)))
                        .collect(),
                )
            };
        }
        let data = match x.data() {
            Data::F32(v) => go!(F32, v),
            Data::F64(v) => go!(F64, v),
            Data::I8(v) => go!(I8, v),
            Data::U8(v) => go!(U8, v),
            Data::I16(v) => go!(I16, v),
            Data::U16(v) => go!(U16, v),
            Data::I32(v) => go!(I32, v),
            Data::U32(v) => go!(U32, v),
            Data::I64(v) => go!(I64, v),
            Data::U64(v) => go!(U64, v),
            Data::Bool(_) => return unsupported("Clip on bool"),
        };
        Ok(Tensor::from_parts(x.shape().to_vec(), data))
    }
}

fn clamp<T: PartialOrd + Copy>(x: T, lo: Option<T>, hi: Option<T>) -> T {
    let mut y = x;
    if let Some(lo) = lo {
        if y < lo {
            y = lo;
        }
    }
    if let Some(hi) = hi {
        if y > hi {
            y = hi;
        }
    }
    y
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(shape: &[usize], v: Vec<f32>) -> Tensor {
        Tensor::new(shape.to_vec(), Data::F32(v)).unwrap()
    }

    #[test]
    fn broadcasting_follows_numpy() {
        let a = t(&[2, 3], vec![1., 2., 3., 4., 5., 6.]);
        let row = t(&[3], vec![10., 20., 30.]);
        let col = t(&[2, 1], vec![100., 200.]);
        let r = BinaryOp::Add.run(&a, &row).unwrap();
        assert_eq!(r.as_f32().unwrap(), &[11., 22., 33., 14., 25., 36.]);
        let c = BinaryOp::Add.run(&a, &col).unwrap();
        assert_eq!(c.as_f32().unwrap(), &[101., 102., 103., 204., 205., 206.]);
        let outer = BinaryOp::Mul.run(&col, &row).unwrap();
        assert_eq!(outer.shape(), &[2, 3]);
        assert_eq!(
            outer.as_f32().unwrap(),
            &[1000., 2000., 3000., 2000., 4000., 6000.]
        );
        assert!(BinaryOp::Add.run(&a, &t(&[2], vec![0., 0.])).is_err());
    }

    #[test]
    fn integer_division_by_zero_is_an_error_not_a_trap() {
        let a = Tensor::new(vec![2], Data::I32(vec![7, -7])).unwrap();
        let b = Tensor::new(vec![2], Data::I32(vec![2, 0])).unwrap();
        assert!(matches!(
            BinaryOp::Div.run(&a, &b),
            Err(super::super::OpError::Invalid(_))
        ));
        let ok = BinaryOp::Div
            .run(&a, &Tensor::new(vec![1], Data::I32(vec![2])).unwrap())
            .unwrap();
        assert_eq!(ok.data(), &Data::I32(vec![3, -3]));
    }

    #[test]
    fn integer_negation_and_absolute_value_wrap_and_unsigned_ones_are_refused() {
        let x = Tensor::new(vec![3], Data::I8(vec![i8::MIN, -3, 5])).unwrap();
        let neg = UnaryOp::Neg.run(&x).unwrap();
        assert_eq!(neg.data(), &Data::I8(vec![i8::MIN, 3, -5]));
        let abs = UnaryOp::Abs.run(&x).unwrap();
        assert_eq!(abs.data(), &Data::I8(vec![i8::MIN, 3, 5]));
        let unsigned = Tensor::new(vec![1], Data::U8(vec![7])).unwrap();
        assert!(UnaryOp::Neg.run(&unsigned).is_err());
        assert_eq!(
            UnaryOp::Abs.run(&unsigned).unwrap().data(),
            &Data::U8(vec![7])
        );
        assert_eq!(
            UnaryOp::Abs
                .run(&t(&[1], vec![-0.0]))
                .unwrap()
                .as_f32()
                .unwrap()[0]
                .to_bits(),
            0.0f32.to_bits(),
            "|-0| is +0"
        );
    }

    #[test]
    fn float_functions_come_from_libm_and_refuse_integers() {
        let x = t(&[4], vec![-1.5, 0.0, 0.5, 2.0]);
        let exp: fn(f32) -> f32 = libm::expf;
        let cases = [
            (UnaryOp::Exp, exp),
            (UnaryOp::Sin, libm::sinf),
            (UnaryOp::Cos, libm::cosf),
            (UnaryOp::Floor, libm::floorf),
        ];
        for (op, f) in cases {
            let y = op.run(&x).unwrap();
            let bits: Vec<u32> = y.as_f32().unwrap().iter().map(|v| v.to_bits()).collect();
            let expected: Vec<u32> = [-1.5f32, 0.0, 0.5, 2.0]
                .iter()
                .map(|&v| f(v).to_bits())
                .collect();
            assert_eq!(bits, expected, "{op:?}");
        }
        let y = UnaryOp::Reciprocal.run(&t(&[2], vec![4.0, 0.0])).unwrap();
        assert_eq!(y.as_f32().unwrap(), &[0.25, f32::INFINITY]);
        assert!(UnaryOp::Log
            .run(&t(&[1], vec![-1.0]))
            .unwrap()
            .as_f32()
            .unwrap()[0]
            .is_nan());
        let ints = Tensor::new(vec![1], Data::I32(vec![1])).unwrap();
        for op in [UnaryOp::Exp, UnaryOp::Sqrt, UnaryOp::Ceil] {
            assert!(op.run(&ints).is_err(), "{op:?} on int32");
        }
    }

    #[test]
    fn mixed_types_are_rejected() {
        let a = t(&[1], vec![1.]);
        let b = Tensor::new(vec![1], Data::I32(vec![1])).unwrap();
        assert!(BinaryOp::Add.run(&a, &b).is_err());
    }
}
