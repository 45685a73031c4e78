//! MatMul, Gemm, MatMulInteger and QLinearMatMul.
//!
//! Accumulation order, for every output element and every element type:
//! `acc = 0; for k in 0..K { acc = acc + a[i][k] * b[k][j] }` — a multiply rounded to the
//! element type, then an add rounded to it, never fused. The float kernel computes a tile of
//! outputs at once (vectorized across `j`), which changes which elements share a register, never
//! the sequence of operations any one element goes through.

use super::elementwise::{broadcast_map, broadcast_shape, Arith};
use super::quant::widen_i32;
use super::shape::transpose;
use super::{f32_scalar, invalid, opt, req, unsupported, Attrs, Ctx, OpResult};
use crate::kernels;
use crate::packed::{PackedMatrix, Packing};
use crate::tensor::{Data, DataType, Tensor};

/// Shapes of a (possibly batched, possibly 1-D) matrix product.
struct Plan {
    m: usize,
    k: usize,
    n: usize,
    /// For each output matrix, the index of the `a` matrix and the `b` matrix it multiplies.
    pairs: Vec<(usize, usize)>,
    out_shape: Vec<usize>,
}

fn plan(a: &[usize], b: &[usize]) -> OpResult<Plan> {
    if a.is_empty() || b.is_empty() {
        return invalid("MatMul inputs must have rank >= 1");
    }
    let a2: Vec<usize> = if a.len() == 1 {
        vec![1, a[0]]
    } else {
        a.to_vec()
    };
    let b2: Vec<usize> = if b.len() == 1 {
        vec![b[0], 1]
    } else {
        b.to_vec()
    };
    let (ra, rb) = (a2.len(), b2.len());
    let (m, k, k2, n) = (a2[ra - 2], a2[ra - 1], b2[rb - 2], b2[rb - 1]);
    if k != k2 {
        return invalid(format!(
            "cannot multiply {a:?} by {b:?}: inner dimensions {k} and {k2} differ"
        ));
    }
    let (ba, bb) = (&a2[..ra - 2], &b2[..rb - 2]);
    let batch = broadcast_shape(ba, bb)?;
    let ia: Vec<usize> = (0..ba.iter().product()).collect();
    let ib: Vec<usize> = (0..bb.iter().product()).collect();
    let (_, pairs) = broadcast_map(&ia, ba, &ib, bb, |x, y| (x, y))?;
    super::buffer_len(&[pairs.len(), m, n])?;
    let mut out_shape = batch;
    if a.len() > 1 {
        out_shape.push(m);
    }
    if b.len() > 1 {
        out_shape.push(n);
    }
    Ok(Plan {
        m,
        k,
        n,
        pairs,
        out_shape,
    })
}

/// Generic `c = a · b` for one `m×k` by `k×n` pair, in the documented order.
fn gemm_generic<T: Arith>(m: usize, k: usize, n: usize, a: &[T], b: &[T], c: &mut [T]) {
    for i in 0..m {
        let row = &mut c[i * n..(i + 1) * n];
        row.fill(T::ZERO);
        for kk in 0..k {
            let av = a[i * k + kk];
            for (cj, &bj) in row.iter_mut().zip(&b[kk * n..(kk + 1) * n]) {
                *cj = cj.add(av.mul(bj));
            }
        }
    }
}

/// Multiplies every pair of the plan with `kernel(m, k, n, a, b, c)`.
fn batched<T: Copy + Default>(
    p: &Plan,
    a: &[T],
    b: &[T],
    kernel: impl Fn(usize, usize, usize, &[T], &[T], &mut [T]),
) -> Vec<T> {
    let (m, k, n) = (p.m, p.k, p.n);
    let mut out = vec![T::default(); p.pairs.len() * m * n];
    for (o, &(ia, ib)) in p.pairs.iter().enumerate() {
        kernel(
            m,
            k,
            n,
            &a[ia * m * k..(ia + 1) * m * k],
            &b[ib * k * n..(ib + 1) * k * n],
            &mut out[o * m * n..(o + 1) * m * n],
        );
    }
    out
}

pub(crate) fn matmul(ctx: Ctx, a: &Tensor, b: &Tensor) -> OpResult<Tensor> {
    let p = plan(a.shape(), b.shape())?;
    macro_rules! generic {
        ($($variant:ident),*) => {
            match (a.data(), b.data()) {
                (Data::F32(x), Data::F32(y)) => Data::F32(batched(&p, x, y, |m, k, n, a, b, c| {
                    kernels::gemm_f32(ctx, m, k, n, a, b, c)
                })),
                $((Data::$variant(x), Data::$variant(y)) => Data::$variant(batched(&p, x, y, gemm_generic)),)*
                _ => return unsupported(format!("MatMul of {} by {}", a.dtype(), b.dtype())),
            }
        };
    }
    let data = generic!(F64, I32, U32, I64, U64);
    Ok(Tensor::from_parts(p.out_shape, data))
}

/// The rows and output shape of `a` (`[..., m, k]` or `[k]`) times a packed `k×n` weight: the
/// leading dimensions of `a` are the rows, and the output replaces `k` by `n`.
fn packed_plan(a: &Tensor, b: &PackedMatrix) -> OpResult<(usize, Vec<usize>)> {
    let (k, n) = (b.k(), b.n());
    let Some((&last, batch)) = a.shape().split_last() else {
        return invalid("MatMul inputs must have rank >= 1");
    };
    if last != k {
        return invalid(format!(
            "cannot multiply {:?} by [{k}, {n}]: inner dimensions {last} and {k} differ",
            a.shape()
        ));
    }
    let m: usize = batch.iter().product();
    super::buffer_len(&[m, n])?;
    let mut shape = batch.to_vec();
    shape.push(n);
    Ok((m, shape))
}

/// MatMul by a weight packed at load: `a` is `[..., m, k]` (or `[k]`) and the weight `k×n`.
pub(crate) fn matmul_packed(ctx: Ctx, a: &Tensor, b: &PackedMatrix) -> OpResult<Tensor> {
    let (m, shape) = packed_plan(a, b)?;
    let Data::F32(av) = a.data() else {
        return unsupported(format!("MatMul of {} by float32", a.dtype()));
    };
    let mut c = vec![0f32; m * b.n()];
    kernels::gemm_f32_packed(ctx, m, av, b, &mut c);
    Ok(Tensor::from_parts(shape, Data::F32(c)))
}

#[derive(Debug, Clone)]
pub(crate) struct Gemm {
    alpha: f32,
    beta: f32,
    trans_a: bool,
    trans_b: bool,
}

impl Gemm {
    pub fn parse(a: &Attrs) -> OpResult<Gemm> {
        a.ignore(&["broadcast"]); // opset < 7: broadcasting is always on since
        Ok(Gemm {
            alpha: a.float_or("alpha", 1.0)?,
            beta: a.float_or("beta", 1.0)?,
            trans_a: a.int_or("transA", 0)? != 0,
            trans_b: a.int_or("transB", 0)? != 0,
        })
    }

    /// Whether B may be packed at load, and if so whether it is stored transposed (`transB`):
    /// only when A is used as given.
    pub fn packs_b_transposed(&self) -> Option<bool> {
        (!self.trans_a).then_some(self.trans_b)
    }

    /// `y = alpha * (A·B) + beta * C`, each product and sum rounded in that order; a factor of
    /// exactly 1 is skipped, which leaves every result bit unchanged.
    pub fn run(&self, ctx: Ctx, inputs: &[Option<&Tensor>]) -> OpResult<Tensor> {
        let a = req(inputs, 0)?;
        let y = match ctx.packed {
            Some(b) if !self.trans_a => {
                if a.rank() != 2 {
                    return invalid(format!("Gemm needs 2-D inputs, got {:?}", a.shape()));
                }
                matmul_packed(ctx, a, b)?
            }
            _ => self.product(ctx, a, req(inputs, 1)?)?,
        };
        let shape = y.shape().to_vec();
        let Data::F32(mut yv) = y.into_data() else {
            return unsupported(format!("Gemm on {}", a.dtype()));
        };
        if self.alpha != 1.0 {
            yv.iter_mut().for_each(|v| *v *= self.alpha);
        }
        if let Some(c) = opt(inputs, 2) {
            let Data::F32(cv) = c.data() else {
                return invalid(format!("Gemm bias must be float32, got {}", c.dtype()));
            };
            let beta = self.beta;
            let (sum_shape, sum) = broadcast_map(&yv, &shape, cv, c.shape(), |acc, c| {
                if beta == 1.0 {
                    acc + c
                } else {
                    acc + beta * c
                }
            })?;
            if sum_shape != shape {
                return invalid(format!(
                    "Gemm bias {:?} does not broadcast to {:?}",
                    c.shape(),
                    shape
                ));
            }
            yv = sum;
        }
        Ok(Tensor::from_parts(shape, Data::F32(yv)))
    }

    /// `A·B` (either transposed as the attributes say) for a B that was not packed.
    fn product(&self, ctx: Ctx, a: &Tensor, b: &Tensor) -> OpResult<Tensor> {
        if a.rank() != 2 || b.rank() != 2 {
            return invalid(format!(
                "Gemm needs 2-D inputs, got {:?} and {:?}",
                a.shape(),
                b.shape()
            ));
        }
        let a_transposed;
        let a = if self.trans_a {
            a_transposed = transpose(a, &[1, 0]);
            &a_transposed
        } else {
            a
        };
        Ok(match (self.trans_b, a.data(), b.data()) {
            // B as stored ([N, K]), without a transposed copy: a tied embedding used as the
            // output projection is the model's largest weight.
            (true, Data::F32(av), Data::F32(bv)) => {
                let (m, k) = (a.shape()[0], a.shape()[1]);
                let (n, k2) = (b.shape()[0], b.shape()[1]);
                if k != k2 {
                    return invalid(format!(
                        "cannot multiply {:?} by the transpose of {:?}: inner dimensions {k} and {k2} differ",
                        a.shape(),
                        b.shape()
                    ));
                }
                super::buffer_len(&[m, n])?;
                let mut c = vec![0f32; m * n];
                kernels::gemm_f32_bt(ctx, m, k, n, av, bv, &mut c);
                Tensor::from_parts(vec![m, n], Data::F32(c))
            }
            (true, _, _) => matmul(ctx, a, &transpose(b, &[1, 0]))?,
            (false, _, _) => matmul(ctx, a, b)?,
        })
    }
}

/// Widens a uint8/int8 tensor to i32 and subtracts its zero point, which is a scalar or (for
/// `per_axis = Some(axis)`) one value per index along that axis of a 2-D operand.
fn centered(
    x: &Tensor,
    zero_point: Option<&Tensor>,
    per_axis: usize,
    what: &str,
) -> OpResult<Vec<i32>> {
    let widen = |t: &Tensor| -> OpResult<Vec<i32>> {
        match (t.dtype(), widen_i32(t.data())) {
            (DataType::U8 | DataType::I8, Some(v)) => Ok(v),
            _ => invalid(format!("{what} must be uint8 or int8, got {}", t.dtype())),
        }
    };
    let mut v = widen(x)?;
    let Some(zp) = zero_point else { return Ok(v) };
    if zp.dtype() != x.dtype() {
        return invalid(format!(
            "{what} zero point is {}, expected {}",
            zp.dtype(),
            x.dtype()
        ));
    }
    let z = widen(zp)?;
    let rank = x.rank();
    if z.len() == 1 {
        v.iter_mut().for_each(|e| *e -= z[0]);
    } else if rank >= 2 && z.len() == x.shape()[rank - 2 + per_axis] {
        let (rows, cols) = (x.shape()[rank - 2], x.shape()[rank - 1]);
        for (i, e) in v.iter_mut().enumerate() {
            let (r, c) = ((i / cols) % rows, i % cols);
            *e -= z[if per_axis == 0 { r } else { c }];
        }
    } else {
        return unsupported(format!(
            "{what} zero point of shape {:?} for input {:?}",
            zp.shape(),
            x.shape()
        ));
    }
    Ok(v)
}

/// Integer product `(a - a_zero) · (b - b_zero)` in int32 (wrapping, so order-independent).
fn integer_product(
    ctx: Ctx,
    a: &Tensor,
    az: Option<&Tensor>,
    b: &Tensor,
    bz: Option<&Tensor>,
) -> OpResult<(Vec<usize>, Vec<i32>)> {
    let p = plan(a.shape(), b.shape())?;
    let av = centered(a, az, 0, "A")?;
    let scalar_bz = bz.is_none_or(|z| z.len() == 1 && z.dtype() == b.dtype());
    if b.rank() == 2 && scalar_bz {
        // A weight matrix: multiplied as stored, never widened into an int32 copy.
        let bz = match bz {
            Some(z) => centered(z, None, 0, "B zero point")?[0],
            None => 0,
        };
        let mut c = vec![0i32; p.pairs.len() * p.m * p.n];
        match b.data() {
            Data::U8(bv) => int_product_split(ctx, p.k, p.n, &av, bv, bz, &mut c),
            Data::I8(bv) => int_product_split(ctx, p.k, p.n, &av, bv, bz, &mut c),
            _ => return invalid(format!("B must be uint8 or int8, got {}", b.dtype())),
        }
        return Ok((p.out_shape.clone(), c));
    }
    let bv = centered(b, bz, 1, "B")?;
    Ok((p.out_shape.clone(), batched(&p, &av, &bv, gemm_generic)))
}

/// `int_product`, with whole tiles of rows handed to the engine's threads when there are enough,
/// and a decode step's single row split by columns (integer sums: no split changes a bit).
fn int_product_split<B: Copy + Into<i32> + Sync>(
    ctx: Ctx,
    k: usize,
    n: usize,
    a: &[i32],
    b: &[B],
    bz: i32,
    c: &mut [i32],
) {
    const TILE: usize = 4;
    let (threads, m) = (ctx.threads(), a.len() / k.max(1));
    if threads > 1 && k > 0 && n > 0 && m >= threads * TILE && m * k * n >= 1 << 18 {
        let rows = m.div_ceil(threads).next_multiple_of(TILE);
        ctx.for_each_chunk(&mut c[..m * n], rows * n, |i, chunk| {
            let r0 = i * rows;
            let r = chunk.len() / n;
            int_product(k, n, &a[r0 * k..(r0 + r) * k], b, bz, chunk);
        });
        return;
    }
    // Each thread streams its part of every row of `b`, front to back.
    const COLUMNS: usize = 64;
    if threads > 1 && m == 1 && n >= threads * COLUMNS && k * n >= 1 << 21 {
        let cols = n.div_ceil(threads).next_multiple_of(COLUMNS);
        ctx.for_each_chunk(&mut c[..n], cols, |i, chunk| {
            int_row_columns(k, n, i * cols, &a[..k], b, bz, chunk)
        });
        return;
    }
    int_product(k, n, a, b, bz, c);
}

/// Columns `j0..j0 + c.len()` of one row's product `a · (b - bz)`, `b` a `k×n` byte matrix.
fn int_row_columns<B: Copy + Into<i32>>(
    k: usize,
    n: usize,
    j0: usize,
    a: &[i32],
    b: &[B],
    bz: i32,
    c: &mut [i32],
) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU supports AVX2, checked just above.
        unsafe { int_row_columns_avx2(k, n, j0, a, b, bz, c) };
        return;
    }
    int_row_columns_body(k, n, j0, a, b, bz, c);
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn int_row_columns_avx2<B: Copy + Into<i32>>(
    k: usize,
    n: usize,
    j0: usize,
    a: &[i32],
    b: &[B],
    bz: i32,
    c: &mut [i32],
) {
    int_row_columns_body(k, n, j0, a, b, bz, c);
}

#[inline(always)]
fn int_row_columns_body<B: Copy + Into<i32>>(
    k: usize,
    n: usize,
    j0: usize,
    a: &[i32],
    b: &[B],
    bz: i32,
    c: &mut [i32],
) {
    let w = c.len();
    for (kk, &av) in a.iter().enumerate().take(k) {
        let brow = &b[kk * n + j0..kk * n + j0 + w];
        for (cj, &bj) in c.iter_mut().zip(brow) {
            *cj = cj.wrapping_add(av.wrapping_mul(bj.into()));
        }
    }
    subtract_zero_point(k, w, a, bz, c);
}

/// `c = a · (b - bz)` for rows of `a` (int32, already centered) by a `k×n` byte matrix `b`, in
/// wrapping int32 arithmetic like every integer op here, where any order of the sums gives the
/// same bits: each row of `b` is widened as it is read and added into four rows of `c` at a
/// time, and `bz · Σ a` is taken off at the end.
fn int_product<B: Copy + Into<i32>>(
    k: usize,
    n: usize,
    a: &[i32],
    b: &[B],
    bz: i32,
    c: &mut [i32],
) {
    if k == 0 {
        return;
    }
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        let m = a.len() / k;
        // SAFETY: the CPU supports AVX2, checked just above.
        unsafe {
            if m >= INT_TILE_ROWS {
                int_product_tiled_avx2(m, k, n, a, b, c);
                subtract_zero_point(k, n, a, bz, c);
            } else {
                int_product_avx2(k, n, a, b, bz, c)
            }
        };
        return;
    }
    int_product_body(k, n, a, b, bz, c);
}

/// `c -= bz · Σ_k a[i][k]` for every row i: B's zero point, taken off after the product.
fn subtract_zero_point(k: usize, n: usize, a: &[i32], bz: i32, c: &mut [i32]) {
    subtract_zero_points(k, n, a, &[bz], c);
}

/// `c[i][j] -= bz[j] · Σ_k a[i][k]`, with one zero point for every column (`bz` of one value)
/// or one per column.
fn subtract_zero_points(k: usize, n: usize, a: &[i32], bz: &[i32], c: &mut [i32]) {
    if bz.iter().all(|&z| z == 0) {
        return;
    }
    for (a_row, c_row) in a.chunks(k.max(1)).zip(c.chunks_mut(n.max(1))) {
        let sum = a_row.iter().fold(0i32, |s, &x| s.wrapping_add(x));
        match bz {
            &[z] => {
                let off = z.wrapping_mul(sum);
                c_row.iter_mut().for_each(|cj| *cj = cj.wrapping_sub(off));
            }
            _ => {
                for (cj, &z) in c_row.iter_mut().zip(bz) {
                    *cj = cj.wrapping_sub(z.wrapping_mul(sum));
                }
            }
        }
    }
}

/// `m` rows of centered `a` (k values each, each fitting 16 bits) as 16-bit values, each row
/// padded with a zero to an even length `k2` (returned) so that it reads as k-pairs.
fn rows_as_pairs(m: usize, k: usize, a: &[i32]) -> (Vec<i16>, usize) {
    let k2 = k.next_multiple_of(2);
    let mut a16 = vec![0i16; m * k2];
    for (dst, src) in a16.chunks_mut(k2).zip(a.chunks(k.max(1))) {
        for (d, &s) in dst.iter_mut().zip(src) {
            *d = s as i16;
        }
    }
    (a16, k2)
}

/// Rows of `c` per tile of the AVX2 integer product.
#[cfg(target_arch = "x86_64")]
const INT_TILE_ROWS: usize = 4;
/// k per packed block of the AVX2 integer product (even: k is taken in pairs).
#[cfg(target_arch = "x86_64")]
const INT_KC: usize = 256;

/// `c = a · b` for `m` rows of `a` (already centered, so each value fits in 16 bits: a byte minus
/// a byte zero point) by a `k×n` byte matrix, many rows at a time: products of pairs of k summed
/// by `vpmaddwd` (16-bit × 16-bit, two products added into 32 bits: exact, since each product
/// is at most 255² in size), 4 rows × 16 columns in registers, `b` packed per block of k into a
/// panel of 16-bit pairs that every tile of rows reads. Integer sums: any order, same bits.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn int_product_tiled_avx2<B: Copy + Into<i32>>(
    m: usize,
    k: usize,
    n: usize,
    a: &[i32],
    b: &[B],
    c: &mut [i32],
) {
    use std::arch::x86_64::*;
    const NR: usize = 16;
    let (a16, k2) = rows_as_pairs(m, k, a);
    let mut panel = vec![0i16; INT_KC * NR];
    for k0 in (0..k).step_by(INT_KC) {
        let pairs = INT_KC.min(k - k0).div_ceil(2);
        for j in (0..n).step_by(NR) {
            let w = NR.min(n - j);
            // Pair p, column x: panel[p*32 + (x/8)*16 + (x%8)*2 + {0,1}] = b[k0+2p+{0,1}][j+x].
            for p in 0..pairs {
                let kk = k0 + 2 * p;
                if w == NR && kk + 1 < k {
                    // Whole pairs of whole rows: no bounds to test, so the interleave vectorizes.
                    let lo: &[B; NR] = b[kk * n + j..kk * n + j + NR].try_into().unwrap();
                    let hi: &[B; NR] = b[(kk + 1) * n + j..(kk + 1) * n + j + NR]
                        .try_into()
                        .unwrap();
                    let dst: &mut [i16; 2 * NR] =
                        (&mut panel[p * 32..p * 32 + 2 * NR]).try_into().unwrap();
                    for x in 0..NR {
                        dst[2 * x] = lo[x].into() as i16;
                        dst[2 * x + 1] = hi[x].into() as i16;
                    }
                    continue;
                }
                for half in 0..2 {
                    let kk = k0 + 2 * p + half;
                    for x in 0..NR {
                        let v = if x < w && kk < k {
                            b[kk * n + j + x].into() as i16
                        } else {
                            0
                        };
                        panel[p * 32 + (x / 8) * 16 + (x % 8) * 2 + half] = v;
                    }
                }
            }
            let mut i0 = 0;
            while i0 < m {
                let rows = INT_TILE_ROWS.min(m - i0);
                let mut acc = [[_mm256_setzero_si256(); 2]; INT_TILE_ROWS];
                let a_rows: [*const i16; INT_TILE_ROWS] =
                    std::array::from_fn(|r| a16[(i0 + r.min(rows - 1)) * k2 + k0..].as_ptr());
                let bp = panel.as_ptr();
                for p in 0..pairs {
                    // SAFETY: p < pairs ≤ INT_KC/2 panel pairs; each row of a16 holds k2 ≥
                    // k0 + 2*pairs values from k0 (k2 rounds k up to even).
                    let b0 = _mm256_loadu_si256(bp.add(p * 32) as *const __m256i);
                    let b1 = _mm256_loadu_si256(bp.add(p * 32 + 16) as *const __m256i);
                    for r in 0..INT_TILE_ROWS {
                        let pair = (a_rows[r].add(2 * p) as *const i32).read_unaligned();
                        let av = _mm256_set1_epi32(pair);
                        acc[r][0] = _mm256_add_epi32(acc[r][0], _mm256_madd_epi16(av, b0));
                        acc[r][1] = _mm256_add_epi32(acc[r][1], _mm256_madd_epi16(av, b1));
                    }
                }
                for (r, sums) in acc.iter().enumerate().take(rows) {
                    let mut out = [0i32; NR];
                    _mm256_storeu_si256(out.as_mut_ptr() as *mut __m256i, sums[0]);
                    _mm256_storeu_si256(out[8..].as_mut_ptr() as *mut __m256i, sums[1]);
                    let dst = &mut c[(i0 + r) * n + j..(i0 + r) * n + j + w];
                    if k0 == 0 {
                        dst.copy_from_slice(&out[..w]);
                    } else {
                        for (d, &s) in dst.iter_mut().zip(&out) {
                            *d = d.wrapping_add(s);
                        }
                    }
                }
                i0 += rows;
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn int_product_avx2<B: Copy + Into<i32>>(
    k: usize,
    n: usize,
    a: &[i32],
    b: &[B],
    bz: i32,
    c: &mut [i32],
) {
    int_product_body(k, n, a, b, bz, c);
}

#[inline(always)]
fn int_product_body<B: Copy + Into<i32>>(
    k: usize,
    n: usize,
    a: &[i32],
    b: &[B],
    bz: i32,
    c: &mut [i32],
) {
    const ROWS: usize = 4;
    for (a_rows, c_rows) in a.chunks(ROWS * k).zip(c.chunks_mut(ROWS * n)) {
        for kk in 0..k {
            let brow = &b[kk * n..(kk + 1) * n];
            for (a_row, c_row) in a_rows.chunks(k).zip(c_rows.chunks_mut(n)) {
                let av = a_row[kk];
                for (cj, &bj) in c_row.iter_mut().zip(brow) {
                    *cj = cj.wrapping_add(av.wrapping_mul(bj.into()));
                }
            }
        }
        subtract_zero_point(k, n, a_rows, bz, c_rows);
    }
}

pub(crate) fn matmul_integer(ctx: Ctx, inputs: &[Option<&Tensor>]) -> OpResult<Tensor> {
    let (a, az, bz) = (req(inputs, 0)?, opt(inputs, 2), opt(inputs, 3));
    let (shape, v) = match ctx.packed {
        Some(b) => packed_integer_product(ctx, a, az, b, bz)?,
        None => integer_product(ctx, a, az, req(inputs, 1)?, bz)?,
    };
    Ok(Tensor::from_parts(shape, Data::I32(v)))
}

/// `(a - a_zero) · (b - b_zero)` in int32 for a byte weight packed at load, whose zero point is
/// one value or one per column.
fn packed_integer_product(
    ctx: Ctx,
    a: &Tensor,
    az: Option<&Tensor>,
    b: &PackedMatrix,
    bz: Option<&Tensor>,
) -> OpResult<(Vec<usize>, Vec<i32>)> {
    let n = b.n();
    let Packing::Bytes { signed } = b.packing() else {
        return invalid("MatMulInteger's weight was packed as float32");
    };
    let (m, shape) = packed_plan(a, b)?;
    let av = centered(a, az, 0, "A")?;
    let zero = match bz {
        None => vec![0],
        Some(z) => {
            let expected = if signed { DataType::I8 } else { DataType::U8 };
            if z.dtype() != expected {
                return invalid(format!(
                    "B zero point is {}, expected {expected}",
                    z.dtype()
                ));
            }
            let z = centered(z, None, 0, "B zero point")?;
            if z.len() != 1 && z.len() != n {
                return unsupported(format!(
                    "B zero point of {} values for {n} columns",
                    z.len()
                ));
            }
            z
        }
    };
    let mut c = vec![0i32; m * n];
    int_product_packed(ctx, m, &av, b, signed, &mut c);
    subtract_zero_points(b.k(), n, &av, &zero, &mut c);
    Ok((shape, c))
}

/// `c = a · b` for `m` rows of `a` (centered: each value fits in 16 bits) by a packed byte
/// weight, in wrapping int32 (any order of the sums gives the same bits): whole tiles of rows
/// per thread when there are enough, else a row's strips of columns split between threads.
fn int_product_packed(
    ctx: Ctx,
    m: usize,
    a: &[i32],
    b: &PackedMatrix,
    signed: bool,
    c: &mut [i32],
) {
    let (k, n) = (b.k(), b.n());
    if k == 0 || n == 0 || m == 0 {
        return;
    }
    const TILE: usize = 4;
    let (a16, k2) = rows_as_pairs(m, k, a);
    let strips = b.pair_strips();
    let strip_len = k2 * kernels::NR;
    let part = |rows: usize, a: &[i16], j0: usize, width: usize, c: &mut [i32], ldc: usize| {
        let strips = &strips[(j0 / kernels::NR) * strip_len..];
        int_strips(rows, k2, width, a, strips, signed, c, ldc)
    };
    let threads = ctx.threads();
    if threads > 1 && m >= threads * TILE && m * k * n >= 1 << 18 {
        let rows = m.div_ceil(threads).next_multiple_of(TILE);
        ctx.for_each_chunk(&mut c[..m * n], rows * n, |i, chunk| {
            let r = chunk.len() / n;
            part(r, &a16[i * rows * k2..(i * rows + r) * k2], 0, n, chunk, n);
        });
        return;
    }
    if threads > 1 && m == 1 && n >= threads * kernels::NR && k * n >= 1 << 21 {
        let cols = n.div_ceil(threads).next_multiple_of(kernels::NR);
        ctx.for_each_chunk(&mut c[..n], cols, |i, chunk| {
            let width = chunk.len();
            part(1, &a16, i * cols, width, chunk, width);
        });
        return;
    }
    part(m, &a16, 0, n, c, n);
}

/// `c` (row stride `ldc`, `n` columns) = `a · b` for `m` rows of `a` as 16-bit values (`k2`
/// each, even) by packed pair strips of `b`.
#[allow(clippy::too_many_arguments)]
fn int_strips(
    m: usize,
    k2: usize,
    n: usize,
    a: &[i16],
    strips: &[u8],
    signed: bool,
    c: &mut [i32],
    ldc: usize,
) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU supports AVX2, checked just above.
        unsafe {
            if signed {
                int_strips_avx2::<true>(m, k2, n, a, strips, c, ldc)
            } else {
                int_strips_avx2::<false>(m, k2, n, a, strips, c, ldc)
            }
        };
        return;
    }
    int_strips_portable(m, k2, n, a, strips, signed, c, ldc);
}

#[allow(clippy::too_many_arguments)]
fn int_strips_portable(
    m: usize,
    k2: usize,
    n: usize,
    a: &[i16],
    strips: &[u8],
    signed: bool,
    c: &mut [i32],
    ldc: usize,
) {
    let nr = kernels::NR;
    let widen = |v: u8| if signed { v as i8 as i32 } else { v as i32 };
    for j in 0..n {
        let strip = &strips[(j / nr) * k2 * nr..];
        for i in 0..m {
            let row = &a[i * k2..(i + 1) * k2];
            let mut sum = 0i32;
            for (kk, &av) in row.iter().enumerate() {
                let v = widen(strip[(kk / 2) * 2 * nr + 2 * (j % nr) + kk % 2]);
                sum = sum.wrapping_add((av as i32).wrapping_mul(v));
            }
            c[i * ldc + j] = sum;
        }
    }
}

/// The AVX2 form of [`int_strips_portable`]: per strip, tiles of up to 4 rows × 16 columns in
/// registers; each 32 bytes of a strip (one k-pair for 16 columns) widen into two vectors of
/// 16-bit pairs that `vpmaddwd` multiplies by the rows' pairs of `a` (exact: a product is at
/// most 255² in size).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
#[allow(clippy::too_many_arguments)]
unsafe fn int_strips_avx2<const SIGNED: bool>(
    m: usize,
    k2: usize,
    n: usize,
    a: &[i16],
    strips: &[u8],
    c: &mut [i32],
    ldc: usize,
) {
    const NR: usize = kernels::NR;
    let pairs = k2 / 2;
    assert!(a.len() >= m * k2 && strips.len() >= n.div_ceil(NR) * pairs * 2 * NR);
    for (s, j) in (0..n).step_by(NR).enumerate() {
        let w = NR.min(n - j);
        let strip = &strips[s * pairs * 2 * NR..(s + 1) * pairs * 2 * NR];
        let mut i0 = 0;
        while i0 < m {
            let rows = 4.min(m - i0);
            let a = &a[i0 * k2..(i0 + rows) * k2];
            let mut out = [[0i32; NR]; 4];
            match rows {
                4 => int_tile_avx2::<SIGNED, 4>(k2, a, strip, &mut out),
                3 => int_tile_avx2::<SIGNED, 3>(k2, a, strip, &mut out),
                2 => int_tile_avx2::<SIGNED, 2>(k2, a, strip, &mut out),
                _ => int_tile_avx2::<SIGNED, 1>(k2, a, strip, &mut out),
            }
            for (r, sums) in out.iter().enumerate().take(rows) {
                c[(i0 + r) * ldc + j..(i0 + r) * ldc + j + w].copy_from_slice(&sums[..w]);
            }
            i0 += rows;
        }
    }
}

/// R rows of `a` (`k2` 16-bit values each) times one strip of pairs, into `out`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn int_tile_avx2<const SIGNED: bool, const R: usize>(
    k2: usize,
    a: &[i16],
    strip: &[u8],
    out: &mut [[i32; kernels::NR]; 4],
) {
    use std::arch::x86_64::*;
    let pairs = k2 / 2;
    assert!(R <= 4 && a.len() >= R * k2 && strip.len() >= pairs * 32);
    let rows: [*const i16; R] = std::array::from_fn(|r| a[r * k2..].as_ptr());
    let bp = strip.as_ptr();
    let mut acc = [[_mm256_setzero_si256(); 2]; R];
    for p in 0..pairs {
        // SAFETY: p < pairs, and the strip holds pairs × 32 bytes (asserted).
        let bytes = _mm256_loadu_si256(bp.add(p * 32) as *const __m256i);
        let (lo, hi) = (
            _mm256_castsi256_si128(bytes),
            _mm256_extracti128_si256::<1>(bytes),
        );
        let (b0, b1) = if SIGNED {
            (_mm256_cvtepi8_epi16(lo), _mm256_cvtepi8_epi16(hi))
        } else {
            (_mm256_cvtepu8_epi16(lo), _mm256_cvtepu8_epi16(hi))
        };
        for r in 0..R {
            // SAFETY: each row of `a` holds k2 = 2 × pairs values (asserted).
            let pair = (rows[r].add(2 * p) as *const i32).read_unaligned();
            let av = _mm256_set1_epi32(pair);
            acc[r][0] = _mm256_add_epi32(acc[r][0], _mm256_madd_epi16(av, b0));
            acc[r][1] = _mm256_add_epi32(acc[r][1], _mm256_madd_epi16(av, b1));
        }
    }
    for r in 0..R {
        _mm256_storeu_si256(out[r].as_mut_ptr() as *mut __m256i, acc[r][0]);
        _mm256_storeu_si256(out[r][8..].as_mut_ptr() as *mut __m256i, acc[r][1]);
    }
}

/// QLinearMatMul: the int32 product, scaled by `(a_scale * b_scale) / y_scale` (float32), then
/// `y = round_half_even(acc * scale + y_zero)` in float64 and saturated to the output type —
/// the ONNX reference evaluation, fixed.
pub(crate) fn qlinear_matmul(ctx: Ctx, inputs: &[Option<&Tensor>]) -> OpResult<Tensor> {
    let a = req(inputs, 0)?;
    let b = req(inputs, 3)?;
    let a_scale = f32_scalar(req(inputs, 1)?, "a_scale")?;
    let b_scale = f32_scalar(req(inputs, 4)?, "b_scale")?;
    let y_scale = f32_scalar(req(inputs, 6)?, "y_scale")?;
    let (shape, acc) = integer_product(ctx, a, opt(inputs, 2), b, opt(inputs, 5))?;
    let y_zero = req(inputs, 7)?;
    let scale = ((a_scale * b_scale) / y_scale) as f64;
    let requant = |lo: f64, hi: f64, zp: f64| {
        acc.iter()
            .map(move |&v| (v as f64 * scale + zp).round_ties_even().clamp(lo, hi))
    };
    let data = match y_zero.data() {
        Data::U8(z) if z.len() == 1 => {
            Data::U8(requant(0.0, 255.0, z[0] as f64).map(|v| v as u8).collect())
        }
        Data::I8(z) if z.len() == 1 => Data::I8(
            requant(-128.0, 127.0, z[0] as f64)
                .map(|v| v as i8)
                .collect(),
        ),
        _ => {
            return invalid(format!(
                "y_zero_point must be a one-element uint8 or int8 tensor, got {} {:?}",
                y_zero.dtype(),
                y_zero.shape()
            ))
        }
    };
    Ok(Tensor::from_parts(shape, data))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx() -> Ctx<'static> {
        Ctx::with_pool(None)
    }

    /// Attack: operands of reasonable size whose product is not (2^15 × 1 by 1 × 2^15 gives
    /// 2^30 elements), or an empty batch with huge matrices: refused before allocating.
    #[test]
    fn a_product_past_the_element_limit_is_refused_before_allocating() {
        let column = Tensor::new(vec![1 << 15, 1], Data::F32(vec![1.0; 1 << 15])).unwrap();
        let row = Tensor::new(vec![1, 1 << 15], Data::F32(vec![1.0; 1 << 15])).unwrap();
        let err = matmul(ctx(), &column, &row).unwrap_err();
        assert!(err.reason().contains("over the engine's limit"), "{err:?}");
        assert!(matmul(ctx(), &row, &column).is_ok());
    }

    #[test]
    fn matmul_handles_vectors_and_batches() {
        let a = Tensor::new(
            vec![2, 2, 3],
            Data::F32((0..12).map(|x| x as f32).collect()),
        )
        .unwrap();
        let b = Tensor::new(vec![3], Data::F32(vec![1., 0., -1.])).unwrap();
        let y = matmul(ctx(), &a, &b).unwrap();
        assert_eq!(y.shape(), &[2, 2]);
        assert_eq!(y.as_f32().unwrap(), &[-2., -2., -2., -2.]);
        let bad = Tensor::new(vec![4], Data::F32(vec![0.; 4])).unwrap();
        assert!(matmul(ctx(), &a, &bad).is_err());
    }

    /// Every path of the byte-weight product (the packed AVX2 tiles for 4+ rows, the row kernel
    /// below that, the portable loop) gives `Σ (a - az)(b - bz)` exactly, for uint8 and int8
    /// weights, odd k, k over a packed block and widths that are not whole tiles.
    #[test]
    fn a_packed_byte_weight_gives_the_unpacked_sums() {
        use crate::packed::Packer;
        use proptest::prelude::*;
        let shapes = (
            1usize..12,
            prop_oneof![1usize..9, 250usize..600],
            1usize..60,
        );
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(3)
            .build()
            .unwrap();
        proptest!(ProptestConfig::with_cases(48), |((m, k, n) in shapes, seed in any::<u64>(), signed in any::<bool>(), per_column in any::<bool>())| {
            let mut s = seed;
            let mut next = || {
                s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                (s >> 33) as u8
            };
            let a = Tensor::from_parts(vec![m, k], Data::U8((0..m * k).map(|_| next()).collect()));
            let az = Tensor::from_parts(vec![], Data::U8(vec![next()]));
            let zeros = if per_column { n } else { 1 };
            let (b, bz) = if signed {
                (Data::I8((0..k * n).map(|_| next() as i8).collect()), Data::I8((0..zeros).map(|_| next() as i8).collect()))
            } else {
                (Data::U8((0..k * n).map(|_| next()).collect()), Data::U8((0..zeros).map(|_| next()).collect()))
            };
            let b = Tensor::from_parts(vec![k, n], b);
            let bz = Tensor::from_parts(if per_column { vec![n] } else { vec![] }, bz);
            // Per-column zero points go through the widened path, which is the reference here.
            let want = integer_product(ctx(), &a, Some(&az), &b, Some(&bz)).unwrap();
            let mut packer = Packer::new();
            packer.reserve(k, n, Packing::Bytes { signed }).unwrap();
            packer.pack(0, &b).unwrap();
            let packed = packer.finish().remove(0);
            for threads in [None, Some(&pool)] {
                let ctx = Ctx { pool: threads, packed: Some(&packed) };
                let got = packed_integer_product(ctx, &a, Some(&az), &packed, Some(&bz)).unwrap();
                prop_assert_eq!(&got, &want);
            }
            let av = centered(&a, Some(&az), 0, "A").unwrap();
            let (a16, k2) = rows_as_pairs(m, k, &av);
            let mut portable = vec![0i32; m * n];
            int_strips_portable(m, k2, n, &a16, packed.pair_strips(), signed, &mut portable, n);
            let mut unpacked = vec![0i32; m * n];
            int_strips(m, k2, n, &a16, packed.pair_strips(), signed, &mut unpacked, n);
            prop_assert_eq!(portable, unpacked);
        });
    }

    #[test]
    fn the_byte_weight_product_is_exact_on_every_path() {
        use proptest::prelude::*;
        let shapes = (
            1usize..12,
            prop_oneof![1usize..9, 250usize..600],
            1usize..40,
        );
        proptest!(ProptestConfig::with_cases(48), |((m, k, n) in shapes, seed in any::<u64>(), bz in 0i32..256, signed in any::<bool>())| {
            let mut s = seed;
            let mut next = || {
                s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                (s >> 33) as u32
            };
            let a: Vec<i32> = (0..m * k).map(|_| (next() % 511) as i32 - 255).collect();
            let bytes: Vec<u8> = (0..k * n).map(|_| next() as u8).collect();
            let value = |x: u8| if signed { x as i8 as i32 } else { x as i32 };
            let bz = if signed { bz - 128 } else { bz };
            let mut want = vec![0i32; m * n];
            for i in 0..m {
                for j in 0..n {
                    want[i * n + j] = (0..k).fold(0i32, |acc, kk| {
                        acc.wrapping_add(a[i * k + kk].wrapping_mul(value(bytes[kk * n + j]) - bz))
                    });
                }
            }
            // The callers hand over zeroed outputs (the row kernels add into them).
            let mut got = vec![0; m * n];
            let mut portable = vec![0; m * n];
            if signed {
                let b: Vec<i8> = bytes.iter().map(|&x| x as i8).collect();
                int_product(k, n, &a, &b, bz, &mut got);
                int_product_body(k, n, &a, &b, bz, &mut portable);
            } else {
                int_product(k, n, &a, &bytes, bz, &mut got);
                int_product_body(k, n, &a, &bytes, bz, &mut portable);
            }
            prop_assert_eq!(&got, &want);
            prop_assert_eq!(&portable, &want);
        });
    }

    #[test]
    fn the_threaded_byte_weight_product_equals_one_thread() {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(3)
            .build()
            .unwrap();
        // Tiles of rows, and one row split by columns (a decode step, 1000 not a multiple of
        // the split).
        for (m, k, n) in [(41, 300, 40), (1, 576, 1000)] {
            let a: Vec<i32> = (0..m * k).map(|i| (i * 37 % 511) as i32 - 255).collect();
            let b: Vec<u8> = (0..k * n).map(|i| (i * 53 % 256) as u8).collect();
            let mut one = vec![0; m * n];
            int_product_split(ctx(), k, n, &a, &b, 7, &mut one);
            let mut three = vec![0; m * n];
            int_product_split(Ctx::with_pool(Some(&pool)), k, n, &a, &b, 7, &mut three);
            assert_eq!(one, three, "{m}x{k}x{n}");
        }
    }

    #[test]
    fn integer_matmul_subtracts_zero_points() {
        let a = Tensor::new(vec![1, 2], Data::U8(vec![10, 20])).unwrap();
        let b = Tensor::new(vec![2, 1], Data::U8(vec![3, 4])).unwrap();
        let az = Tensor::new(vec![], Data::U8(vec![10])).unwrap();
        let y = matmul_integer(ctx(), &[Some(&a), Some(&b), Some(&az), None]).unwrap();
        assert_eq!(y.data(), &Data::I32(vec![40]));
    }
}
