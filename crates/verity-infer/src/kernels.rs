//! The float32 matrix-product kernel shared by MatMul, Gemm and Conv.
//!
//! Each output element sums its k products in blocks of KB consecutive k: within a block
//! `fma(a[k-1], b[k-1], ... fma(a1, b1, fma(a0, b0, 0)))`, k ascending, each step a fused
//! multiply-add (IEEE 754 `fusedMultiplyAdd`, one rounding), which is exactly specified, so
//! every machine gets the same bits; then the block sums are added in ascending block order
//! (`(s0 + s1) + s2 …`; no k at all gives 0). Blocking is for accuracy: one long chain of 1,536 roundings drifts
//! about twice as far from the exact sum as onnxruntime's blocked sums do (measured on SmolLM2's
//! logits against a float64 evaluation). The kernel keeps a tile of MR×NR outputs in registers
//! and vectorizes across the NR columns, which only decides which elements are computed side by
//! side. On x86-64 the same code is compiled a second time for AVX2 with FMA and picked at run
//! time; elsewhere `f32::mul_add` is the hardware instruction (aarch64) or the C library's
//! correctly rounded `fmaf` (slower, same bits).

use crate::ops::Ctx;
use crate::packed::PackedMatrix;

/// Products summed in one fused multiply-add chain before the chain's sum is added to the total.
const KB: usize = 256;
/// Output rows per register tile.
const MR: usize = 4;
/// Output columns per register tile (and per strip of a packed weight).
pub(crate) const NR: usize = 16;
/// Output columns a streamed row keeps in memory (8 KB: a decode step's rows of 1,536 in one pass).
const NC: usize = 2048;
/// Below this many multiply-adds a product is not worth handing to other threads.
const PARALLEL_MIN_MACS: usize = 1 << 18;

/// `c = a · b` for a row-major `m×k` matrix `a` and `k×n` matrix `b`; `c` is `m×n`.
pub(crate) fn gemm_f32(
    ctx: Ctx,
    m: usize,
    k: usize,
    n: usize,
    a: &[f32],
    b: &[f32],
    c: &mut [f32],
) {
    debug_assert!(a.len() >= m * k && b.len() >= k * n && c.len() >= m * n);
    split(ctx, m, k, n, a, c, |rows, a, j0, width, c, ldc| {
        block(rows, k, width, a, &b[j0..], n, c, ldc)
    });
}

/// `c = a · btᵀ` for a row-major `m×k` matrix `a` and `n×k` matrix `bt` (Gemm's `transB`, the
/// layout of a tied embedding used as the output projection). NR columns of `btᵀ` are packed at
/// a time into a small panel and multiplied by the same kernel, so every element gets exactly
/// the sums `gemm_f32` gives it on the transposed matrix, without building that matrix.
pub(crate) fn gemm_f32_bt(
    ctx: Ctx,
    m: usize,
    k: usize,
    n: usize,
    a: &[f32],
    bt: &[f32],
    c: &mut [f32],
) {
    debug_assert!(a.len() >= m * k && bt.len() >= n * k && c.len() >= m * n);
    split(ctx, m, k, n, a, c, |rows, a, j0, width, c, ldc| {
        panels(rows, k, width, a, &bt[j0 * k..], c, ldc)
    });
}

/// `c = a · b` for a row-major `m×k` matrix `a` and a weight packed at load (see
/// [`crate::packed`]): the same sums as [`gemm_f32`] on the weight as stored, read strip by
/// strip, front to back.
pub(crate) fn gemm_f32_packed(ctx: Ctx, m: usize, a: &[f32], b: &PackedMatrix, c: &mut [f32]) {
    let (k, n) = (b.k(), b.n());
    debug_assert!(a.len() >= m * k && c.len() >= m * n);
    split(ctx, m, k, n, a, c, |rows, a, j0, width, c, ldc| {
        strips(rows, k, width, a, &b.strips()[(j0 / NR) * k * NR..], c, ldc)
    });
}

/// `c` (row stride `ldc`) = `a · b` for `b` given as packed strips of `k×NR`.
fn strips(m: usize, k: usize, n: usize, a: &[f32], strips: &[f32], c: &mut [f32], ldc: usize) {
    #[cfg(target_arch = "x86_64")]
    if avx2_fma() {
        if k == 0 {
            for row in 0..m {
                c[row * ldc..row * ldc + n].fill(0.0);
            }
            return;
        }
        for (s, j) in (0..n).step_by(NR).enumerate() {
            let strip = &strips[s * k * NR..(s + 1) * k * NR];
            for k0 in (0..k).step_by(KB) {
                let kc = KB.min(k - k0);
                // SAFETY: the CPU supports AVX2 and FMA, checked just above.
                unsafe {
                    tiles_avx2(
                        m,
                        k,
                        (k0, kc),
                        a,
                        &strip[k0 * NR..(k0 + kc) * NR],
                        (j, NR.min(n - j)),
                        c,
                        ldc,
                    )
                };
            }
        }
        return;
    }
    strips_portable(m, k, n, a, strips, c, ldc);
}

fn strips_portable(
    m: usize,
    k: usize,
    n: usize,
    a: &[f32],
    strips: &[f32],
    c: &mut [f32],
    ldc: usize,
) {
    for (s, j) in (0..n).step_by(NR).enumerate() {
        let strip = &strips[s * k * NR..(s + 1) * k * NR];
        block_body(m, k, NR.min(n - j), a, strip, NR, &mut c[j..], ldc);
    }
}

/// Packs `bt` (`n×k`, row-major) as strips of `k×NR` (see [`crate::packed`]) into `out`, which
/// holds `ceil(n / NR)·k·NR` zeroed floats.
pub(crate) fn pack_transposed(k: usize, n: usize, bt: &[f32], out: &mut [f32]) {
    for (s, strip) in out.chunks_exact_mut(k * NR).enumerate() {
        let (j, w) = (s * NR, NR.min(n - s * NR));
        #[cfg(target_arch = "x86_64")]
        if w == NR && avx2_fma() {
            // SAFETY: the CPU supports AVX2 and FMA, checked just above.
            unsafe { pack_transposed_avx2(k, &bt[j * k..(j + NR) * k], strip) };
            continue;
        }
        for x in 0..w {
            for (kk, &v) in bt[(j + x) * k..(j + x + 1) * k].iter().enumerate() {
                strip[kk * NR + x] = v;
            }
        }
    }
}

/// Hands parts of an `m×n` product to `part(rows, a_rows, first_column, width, c_part, ldc)`:
/// whole tiles of rows per thread when there are enough rows, tiles of columns when there is
/// one row (batch size 1), else everything to the calling thread. Threads split outputs, never a
/// sum, so the split never changes a bit.
fn split(
    ctx: Ctx,
    m: usize,
    k: usize,
    n: usize,
    a: &[f32],
    c: &mut [f32],
    part: impl Fn(usize, &[f32], usize, usize, &mut [f32], usize) + Sync,
) {
    let threads = ctx.threads();
    if threads > 1 && m * k * n >= PARALLEL_MIN_MACS && n > 0 {
        if m >= threads * MR {
            let rows = m.div_ceil(threads).next_multiple_of(MR);
            ctx.for_each_chunk(&mut c[..m * n], rows * n, |i, chunk| {
                let (r0, r) = (i * rows, chunk.len() / n);
                part(r, &a[r0 * k..(r0 + r) * k], 0, n, chunk, n);
            });
            return;
        }
        if m == 1 && n >= threads * NR {
            let cols = n.div_ceil(threads).next_multiple_of(NR);
            ctx.for_each_chunk(&mut c[..n], cols, |i, chunk| {
                let width = chunk.len();
                part(1, a, i * cols, width, chunk, width);
            });
            return;
        }
    }
    part(m, a, 0, n, c, n);
}

/// `c` (row stride `ldc`) = `a · btᵀ`: a decode step's few rows straight from `bt` where the
/// CPU has AVX2 and FMA, else NR columns at a time through a packed `k×NR` panel.
fn panels(m: usize, k: usize, n: usize, a: &[f32], bt: &[f32], c: &mut [f32], ldc: usize) {
    #[cfg(target_arch = "x86_64")]
    if m < MR && avx2_fma() {
        for i in 0..m {
            // SAFETY: the CPU supports AVX2 and FMA, checked just above.
            unsafe {
                transposed_row_avx2(
                    k,
                    n,
                    &a[i * k..(i + 1) * k],
                    bt,
                    &mut c[i * ldc..i * ldc + n],
                )
            };
        }
        return;
    }
    let mut panel = vec![0f32; k * NR];
    let mut j = 0;
    while j < n {
        let w = NR.min(n - j);
        #[cfg(target_arch = "x86_64")]
        let packed = w == NR && avx2_fma() && {
            // SAFETY: the CPU supports AVX2 and FMA, checked just above.
            unsafe { pack_transposed_avx2(k, &bt[j * k..(j + NR) * k], &mut panel) };
            true
        };
        #[cfg(not(target_arch = "x86_64"))]
        let packed = false;
        if !packed {
            for x in 0..w {
                for (kk, &v) in bt[(j + x) * k..(j + x + 1) * k].iter().enumerate() {
                    panel[kk * NR + x] = v;
                }
            }
        }
        block(m, k, w, a, &panel, NR, &mut c[j..], ldc);
        j += w;
    }
}

/// `panel[kk][x] = rows[x][kk]` for NR rows of `k`, eight by eight through register transposes.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn pack_transposed_avx2(k: usize, rows: &[f32], panel: &mut [f32]) {
    use std::arch::x86_64::*;
    assert!(rows.len() >= NR * k && panel.len() >= k * NR);
    let mut kk = 0;
    while kk + 8 <= k {
        for half in 0..NR / 8 {
            // SAFETY: rows 8*half..8*half+8 each hold k values, and kk + 8 <= k.
            let r: [__m256; 8] =
                std::array::from_fn(|x| _mm256_loadu_ps(rows[(8 * half + x) * k + kk..].as_ptr()));
            for (i, column) in transpose8(r).into_iter().enumerate() {
                _mm256_storeu_ps(panel[(kk + i) * NR + 8 * half..].as_mut_ptr(), column);
            }
        }
        kk += 8;
    }
    for kk in kk..k {
        for x in 0..NR {
            panel[kk * NR + x] = rows[x * k + kk];
        }
    }
}

/// One row: `c[j] = a · bt[j]` for `n` rows of `bt` (each `k` long), eight rows side by side:
/// an 8×8 block of `bt` (eight rows, eight consecutive k) is transposed in registers so that
/// vector lane x carries row j+x, and the eight columns are added in ascending k, each by a
/// fused multiply-add, as every kernel here sums. Reads `bt` front to back with no packed copy.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn transposed_row_avx2(k: usize, n: usize, a: &[f32], bt: &[f32], c: &mut [f32]) {
    use std::arch::x86_64::*;
    assert!(a.len() >= k && bt.len() >= n * k && c.len() >= n);
    let mut j = 0;
    while j + 8 <= n {
        let rows: [*const f32; 8] = std::array::from_fn(|x| bt[(j + x) * k..].as_ptr());
        let mut total = _mm256_setzero_ps();
        for k0 in (0..k).step_by(KB) {
            let k = k.min(k0 + KB);
            let mut acc = _mm256_setzero_ps();
            let mut kk = k0;
            while kk + 8 <= k {
                // SAFETY: each row has k elements from rows[x] and kk + 8 <= k.
                let r: [__m256; 8] = std::array::from_fn(|x| _mm256_loadu_ps(rows[x].add(kk)));
                let columns = transpose8(r);
                for (i, column) in columns.into_iter().enumerate() {
                    acc = _mm256_fmadd_ps(_mm256_set1_ps(a[kk + i]), column, acc);
                }
                kk += 8;
            }
            while kk < k {
                let column = _mm256_setr_ps(
                    *rows[0].add(kk),
                    *rows[1].add(kk),
                    *rows[2].add(kk),
                    *rows[3].add(kk),
                    *rows[4].add(kk),
                    *rows[5].add(kk),
                    *rows[6].add(kk),
                    *rows[7].add(kk),
                );
                acc = _mm256_fmadd_ps(_mm256_set1_ps(a[kk]), column, acc);
                kk += 1;
            }
            total = if k0 == 0 {
                acc
            } else {
                _mm256_add_ps(total, acc)
            };
        }
        _mm256_storeu_ps(c[j..j + 8].as_mut_ptr(), total);
        j += 8;
    }
    for (x, out) in c[j..n].iter_mut().enumerate() {
        let row = &bt[(j + x) * k..(j + x + 1) * k];
        *out = row
            .chunks(KB)
            .zip(a.chunks(KB))
            .map(|(row, a)| {
                row.iter()
                    .zip(a)
                    .fold(0f32, |acc, (&b, &a)| a.mul_add(b, acc))
            })
            .reduce(|total, block| total + block)
            .unwrap_or(0.0);
    }
}

/// The 8×8 transpose of eight rows held in registers: lane x of result i is lane i of row x.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn transpose8(r: [std::arch::x86_64::__m256; 8]) -> [std::arch::x86_64::__m256; 8] {
    use std::arch::x86_64::*;
    let t0 = _mm256_unpacklo_ps(r[0], r[1]);
    let t1 = _mm256_unpackhi_ps(r[0], r[1]);
    let t2 = _mm256_unpacklo_ps(r[2], r[3]);
    let t3 = _mm256_unpackhi_ps(r[2], r[3]);
    let t4 = _mm256_unpacklo_ps(r[4], r[5]);
    let t5 = _mm256_unpackhi_ps(r[4], r[5]);
    let t6 = _mm256_unpacklo_ps(r[6], r[7]);
    let t7 = _mm256_unpackhi_ps(r[6], r[7]);
    let u0 = _mm256_shuffle_ps::<0x44>(t0, t2);
    let u1 = _mm256_shuffle_ps::<0xEE>(t0, t2);
    let u2 = _mm256_shuffle_ps::<0x44>(t1, t3);
    let u3 = _mm256_shuffle_ps::<0xEE>(t1, t3);
    let u4 = _mm256_shuffle_ps::<0x44>(t4, t6);
    let u5 = _mm256_shuffle_ps::<0xEE>(t4, t6);
    let u6 = _mm256_shuffle_ps::<0x44>(t5, t7);
    let u7 = _mm256_shuffle_ps::<0xEE>(t5, t7);
    [
        _mm256_permute2f128_ps::<0x20>(u0, u4),
        _mm256_permute2f128_ps::<0x20>(u1, u5),
        _mm256_permute2f128_ps::<0x20>(u2, u6),
        _mm256_permute2f128_ps::<0x20>(u3, u7),
        _mm256_permute2f128_ps::<0x31>(u0, u4),
        _mm256_permute2f128_ps::<0x31>(u1, u5),
        _mm256_permute2f128_ps::<0x31>(u2, u6),
        _mm256_permute2f128_ps::<0x31>(u3, u7),
    ]
}

/// Whether the CPU has what the `*_avx2` kernels are compiled for.
#[cfg(target_arch = "x86_64")]
fn avx2_fma() -> bool {
    std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
}

/// `c[i][j] = sum_k a[i][k] * b[k][j]` with row strides `ldb` and `ldc`.
#[allow(clippy::too_many_arguments)]
fn block(
    m: usize,
    k: usize,
    n: usize,
    a: &[f32],
    b: &[f32],
    ldb: usize,
    c: &mut [f32],
    ldc: usize,
) {
    #[cfg(target_arch = "x86_64")]
    if avx2_fma() {
        // SAFETY: the CPU supports AVX2 and FMA, checked just above.
        unsafe {
            if m >= TILE_ROWS_AVX2 {
                tiled_avx2(m, k, n, a, b, ldb, c, ldc)
            } else {
                block_avx2(m, k, n, a, b, ldb, c, ldc)
            }
        };
        return;
    }
    block_body(m, k, n, a, b, ldb, c, ldc);
}

/// Output rows per AVX2 register tile: 6×16 outputs are twelve of the sixteen vector registers,
/// leaving room for two rows of `b` and a broadcast element of `a`.
#[cfg(target_arch = "x86_64")]
const TILE_ROWS_AVX2: usize = 6;

/// `c = a · b` (row strides `ldb`, `ldc`) for at least one full tile of rows: for each block of
/// KB k and each NR columns, the block's rows of `b` are packed into a contiguous panel that
/// every tile of rows then reads from L1; each tile sums its block in registers and adds that
/// sum to `c` (or writes it, for the first block), the order every kernel here follows.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
#[allow(clippy::too_many_arguments)]
unsafe fn tiled_avx2(
    m: usize,
    k: usize,
    n: usize,
    a: &[f32],
    b: &[f32],
    ldb: usize,
    c: &mut [f32],
    ldc: usize,
) {
    if k == 0 {
        for row in 0..m {
            c[row * ldc..row * ldc + n].fill(0.0);
        }
        return;
    }
    let strips = n.div_ceil(NR);
    let mut panels = vec![0f32; if ldb == NR { 0 } else { KB * NR * strips }];
    for k0 in (0..k).step_by(KB) {
        let kc = KB.min(k - k0);
        if ldb != NR {
            // The block's rows of `b` read front to back (what the prefetcher follows), each
            // cut into the NR-column panels the tiles read.
            for kk in 0..kc {
                let row = &b[(k0 + kk) * ldb..(k0 + kk) * ldb + n];
                for (s, part) in row.chunks(NR).enumerate() {
                    let at = s * KB * NR + kk * NR;
                    panels[at..at + part.len()].copy_from_slice(part);
                }
            }
        }
        for j in (0..n).step_by(NR) {
            let block: &[f32] = if ldb == NR {
                // Already a packed `k×NR` panel (Gemm's transB path).
                &b[k0 * NR..(k0 + kc) * NR]
            } else {
                let at = (j / NR) * KB * NR;
                &panels[at..at + kc * NR]
            };
            tiles_avx2(m, k, (k0, kc), a, block, (j, NR.min(n - j)), c, ldc);
        }
    }
}

/// Every tile of rows times one `kc×NR` panel (the block of k from `k0`, for the `w` columns
/// from `j`): each tile sums the block in registers and adds that sum to `c`, or writes it for
/// the first block.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
#[allow(clippy::too_many_arguments)]
unsafe fn tiles_avx2(
    m: usize,
    k: usize,
    (k0, kc): (usize, usize),
    a: &[f32],
    panel: &[f32],
    (j, w): (usize, usize),
    c: &mut [f32],
    ldc: usize,
) {
    let mut i0 = 0;
    while i0 < m {
        let rows = TILE_ROWS_AVX2.min(m - i0);
        let tile = Tile {
            a: &a[i0 * k + k0..],
            lda: k,
            kc,
            panel,
        };
        let mut out = [[0f32; NR]; TILE_ROWS_AVX2];
        match rows {
            6 => tile_avx2::<6>(&tile, &mut out),
            5 => tile_avx2::<5>(&tile, &mut out),
            4 => tile_avx2::<4>(&tile, &mut out),
            3 => tile_avx2::<3>(&tile, &mut out),
            2 => tile_avx2::<2>(&tile, &mut out),
            _ => tile_avx2::<1>(&tile, &mut out),
        }
        for (r, sums) in out[..rows].iter().enumerate() {
            let dst = &mut c[(i0 + r) * ldc + j..(i0 + r) * ldc + j + w];
            if k0 == 0 {
                dst.copy_from_slice(&sums[..w]);
            } else {
                for (d, &s) in dst.iter_mut().zip(sums) {
                    *d += s;
                }
            }
        }
        i0 += rows;
    }
}

/// One tile's operands for one block of k: rows of `a` from their first k of the block, `lda`
/// apart, and the block's packed `kc×NR` panel of `b`.
#[cfg(target_arch = "x86_64")]
struct Tile<'a> {
    a: &'a [f32],
    lda: usize,
    kc: usize,
    panel: &'a [f32],
}

/// Sums R rows × NR columns over one block of k, k ascending, by fused multiply-adds from 0.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn tile_avx2<const R: usize>(tile: &Tile, out: &mut [[f32; NR]; TILE_ROWS_AVX2]) {
    use std::arch::x86_64::*;
    let Tile { a, lda, kc, panel } = *tile;
    assert!(R <= TILE_ROWS_AVX2 && panel.len() >= kc * NR && a.len() >= (R - 1) * lda + kc);
    let rows: [*const f32; R] = std::array::from_fn(|r| a[r * lda..].as_ptr());
    let mut acc = [[_mm256_setzero_ps(); 2]; R];
    let bp = panel.as_ptr();
    for kk in 0..kc {
        // SAFETY: kk < kc, the panel holds kc×NR values and each row of `a` kc values (asserted).
        let b0 = _mm256_loadu_ps(bp.add(kk * NR));
        let b1 = _mm256_loadu_ps(bp.add(kk * NR + 8));
        for r in 0..R {
            let av = _mm256_broadcast_ss(&*rows[r].add(kk));
            acc[r][0] = _mm256_fmadd_ps(av, b0, acc[r][0]);
            acc[r][1] = _mm256_fmadd_ps(av, b1, acc[r][1]);
        }
    }
    for r in 0..R {
        _mm256_storeu_ps(out[r].as_mut_ptr(), acc[r][0]);
        _mm256_storeu_ps(out[r][8..].as_mut_ptr(), acc[r][1]);
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
#[allow(clippy::too_many_arguments)]
unsafe fn block_avx2(
    m: usize,
    k: usize,
    n: usize,
    a: &[f32],
    b: &[f32],
    ldb: usize,
    c: &mut [f32],
    ldc: usize,
) {
    block_body(m, k, n, a, b, ldb, c, ldc);
}

#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn block_body(
    m: usize,
    k: usize,
    n: usize,
    a: &[f32],
    b: &[f32],
    ldb: usize,
    c: &mut [f32],
    ldc: usize,
) {
    let i = m - m % MR;
    if ldb == NR || i <= MR {
        // `b` is already a packed panel (rows NR apart), or read by one tile of rows only.
        for i0 in (0..i).step_by(MR) {
            rows::<MR>(i0, k, n, a, b, ldb, c, ldc);
        }
    } else {
        // Each NR columns of `b` copied once into a contiguous `k×NR` panel that every tile of
        // rows then reads from cache, rather than every tile walking `b` a cache line a row.
        let mut panel = vec![0f32; k * NR];
        for j in (0..n).step_by(NR) {
            let w = NR.min(n - j);
            for kk in 0..k {
                panel[kk * NR..kk * NR + w].copy_from_slice(&b[kk * ldb + j..kk * ldb + j + w]);
            }
            for i0 in (0..i).step_by(MR) {
                rows::<MR>(i0, k, w, a, &panel, NR, &mut c[j..], ldc);
            }
        }
    }
    match m - i {
        0 => {}
        1 => streamed::<1>(i, k, n, a, b, ldb, c, ldc),
        2 => streamed::<2>(i, k, n, a, b, ldb, c, ldc),
        _ => streamed::<3>(i, k, n, a, b, ldb, c, ldc),
    }
}

/// Computes rows `i0..i0+R` of `c` (R < MR: a decode step's single row) reading `b` row by
/// row, NC columns at a time, with the sums in memory rather than registers: a register tile
/// would walk `b` down a column of tiles, one cache line per row of `b`, which the prefetcher
/// cannot follow across pages, where this reads it front to back. Same sums, same order.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn streamed<const R: usize>(
    i0: usize,
    k: usize,
    n: usize,
    a: &[f32],
    b: &[f32],
    ldb: usize,
    c: &mut [f32],
    ldc: usize,
) {
    let a_rows: [&[f32]; R] = std::array::from_fn(|r| &a[(i0 + r) * k..(i0 + r + 1) * k]);
    let mut total = [[0f32; NC]; R];
    let mut acc = [[0f32; NC]; R];
    let mut j = 0;
    while j < n {
        let w = NC.min(n - j);
        for row in total.iter_mut() {
            row[..w].fill(0.0);
        }
        let brow = |kk: usize| &b[kk * ldb + j..kk * ldb + j + w];
        for k0 in (0..k).step_by(KB) {
            let k = k.min(k0 + KB);
            for row in acc.iter_mut() {
                row[..w].fill(0.0);
            }
            // With several rows of `a`, four rows of `b` per visit to the sums: a quarter of the
            // loads and stores of them. A single row reads `b` one row at a time instead: one
            // stream front to back, which the prefetcher follows best (+15-30 % on a decode step).
            let mut kk = k0;
            while R > 1 && kk + 4 <= k {
                let (b0, b1, b2, b3) = (brow(kk), brow(kk + 1), brow(kk + 2), brow(kk + 3));
                for (r, sums) in acc.iter_mut().enumerate() {
                    let a = &a_rows[r][kk..kk + 4];
                    let columns = sums[..w].iter_mut().zip(b0).zip(b1).zip(b2).zip(b3);
                    for ((((sum, &x0), &x1), &x2), &x3) in columns {
                        let s = a[0].mul_add(x0, *sum);
                        let s = a[1].mul_add(x1, s);
                        let s = a[2].mul_add(x2, s);
                        *sum = a[3].mul_add(x3, s);
                    }
                }
                kk += 4;
            }
            while kk < k {
                let b0 = brow(kk);
                for (r, sums) in acc.iter_mut().enumerate() {
                    let av = a_rows[r][kk];
                    for (sum, &bv) in sums[..w].iter_mut().zip(b0) {
                        *sum = av.mul_add(bv, *sum);
                    }
                }
                kk += 1;
            }
            for (sums, part) in total.iter_mut().zip(&acc) {
                for (sum, &p) in sums[..w].iter_mut().zip(&part[..w]) {
                    *sum = if k0 == 0 { p } else { *sum + p };
                }
            }
        }
        for (r, row) in total.iter().enumerate() {
            c[(i0 + r) * ldc + j..(i0 + r) * ldc + j + w].copy_from_slice(&row[..w]);
        }
        j += w;
    }
}

/// Computes rows `i0..i0+R` of `c`, NR columns at a time.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn rows<const R: usize>(
    i0: usize,
    k: usize,
    n: usize,
    a: &[f32],
    b: &[f32],
    ldb: usize,
    c: &mut [f32],
    ldc: usize,
) {
    let a_rows: [&[f32]; R] = std::array::from_fn(|r| &a[(i0 + r) * k..(i0 + r + 1) * k]);
    let mut j = 0;
    while j + NR <= n {
        let mut total = [[0f32; NR]; R];
        for k0 in (0..k).step_by(KB) {
            let mut acc = [[0f32; NR]; R];
            for kk in k0..k.min(k0 + KB) {
                let brow: &[f32; NR] = b[kk * ldb + j..kk * ldb + j + NR]
                    .try_into()
                    .expect("tile is NR wide");
                for r in 0..R {
                    let av = a_rows[r][kk];
                    for x in 0..NR {
                        acc[r][x] = av.mul_add(brow[x], acc[r][x]);
                    }
                }
            }
            for r in 0..R {
                for x in 0..NR {
                    total[r][x] = if k0 == 0 {
                        acc[r][x]
                    } else {
                        total[r][x] + acc[r][x]
                    };
                }
            }
        }
        for (r, row) in total.iter().enumerate() {
            c[(i0 + r) * ldc + j..(i0 + r) * ldc + j + NR].copy_from_slice(row);
        }
        j += NR;
    }
    if j < n {
        let w = n - j;
        let mut total = [[0f32; NR]; R];
        for k0 in (0..k).step_by(KB) {
            let mut acc = [[0f32; NR]; R];
            for kk in k0..k.min(k0 + KB) {
                let brow = &b[kk * ldb + j..kk * ldb + j + w];
                for r in 0..R {
                    let av = a_rows[r][kk];
                    for (x, &bv) in brow.iter().enumerate() {
                        acc[r][x] = av.mul_add(bv, acc[r][x]);
                    }
                }
            }
            for r in 0..R {
                for x in 0..w {
                    total[r][x] = if k0 == 0 {
                        acc[r][x]
                    } else {
                        total[r][x] + acc[r][x]
                    };
                }
            }
        }
        for (r, row) in total.iter().enumerate() {
            c[(i0 + r) * ldc + j..(i0 + r) * ldc + n].copy_from_slice(&row[..w]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tensor::{Data, Tensor};
    use proptest::prelude::*;

    /// The documented order, written as plainly as possible.
    fn reference(m: usize, k: usize, n: usize, a: &[f32], b: &[f32]) -> Vec<f32> {
        let mut c = vec![0f32; m * n];
        for i in 0..m {
            for j in 0..n {
                let mut total = 0f32;
                for k0 in (0..k).step_by(KB) {
                    let mut acc = 0f32;
                    for kk in k0..k.min(k0 + KB) {
                        acc = a[i * k + kk].mul_add(b[kk * n + j], acc);
                    }
                    total = if k0 == 0 { acc } else { total + acc };
                }
                c[i * n + j] = total;
            }
        }
        c
    }

    /// An `m×k` and a `k×n` matrix of values in ±500 from a 64-bit LCG seeded with `seed`.
    fn operands(m: usize, k: usize, n: usize, seed: u64) -> (Vec<f32>, Vec<f32>) {
        let mut s = seed;
        let mut next = || {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((s >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 1e3
        };
        let a = (0..m * k).map(|_| next()).collect();
        let b = (0..k * n).map(|_| next()).collect();
        (a, b)
    }

    proptest! {
        #[test]
        fn tiles_threads_and_vector_width_never_change_a_bit(
            m in 1usize..12, k in prop_oneof![0usize..40, 250usize..600], n in 1usize..70, seed in any::<u64>()
        ) {
            let (a, b) = operands(m, k, n, seed);
            let want = reference(m, k, n, &a, &b);
            let mut portable = vec![f32::NAN; m * n];
            block_body(m, k, n, &a, &b, n, &mut portable, n);
            prop_assert_eq!(bits(&portable), bits(&want));
            let pool = rayon::ThreadPoolBuilder::new().num_threads(3).build().unwrap();
            for ctx in [Ctx::with_pool(None), Ctx::with_pool(Some(&pool))] {
                let mut c = vec![f32::NAN; m * n];
                gemm_f32(ctx, m, k, n, &a, &b, &mut c);
                prop_assert_eq!(bits(&c), bits(&want));
            }
        }
    }

    /// Products big enough to be split across 2 to 5 threads: by rows (m ≥ 5 × MR) or, for a
    /// single row, by columns.
    fn threaded_shapes() -> impl Strategy<Value = (usize, usize, usize)> {
        prop_oneof![
            (Just(1usize), 512usize..=1024, 512usize..=1024),
            (20usize..=40, 350usize..=512, 64usize..=128),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

        #[test]
        fn the_threaded_split_never_changes_a_bit(
            (m, k, n) in threaded_shapes(), threads in 2usize..=5, seed in any::<u64>()
        ) {
            prop_assert!(m * k * n >= PARALLEL_MIN_MACS, "the shape must reach the threaded path");
            let (a, b) = operands(m, k, n, seed);
            let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
            let mut c = vec![f32::NAN; m * n];
            gemm_f32(Ctx::with_pool(Some(&pool)), m, k, n, &a, &b, &mut c);
            prop_assert_eq!(bits(&c), bits(&reference(m, k, n, &a, &b)));
        }
    }

    #[test]
    fn threaded_split_paths_match_the_reference() {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(4)
            .build()
            .unwrap();
        for (m, k, n) in [(64, 128, 64), (1, 1024, 512)] {
            let a: Vec<f32> = (0..m * k)
                .map(|i| ((i * 37 % 101) as f32 - 50.0) / 7.0)
                .collect();
            let b: Vec<f32> = (0..k * n)
                .map(|i| ((i * 53 % 97) as f32 - 48.0) / 3.0)
                .collect();
            let mut c = vec![0f32; m * n];
            gemm_f32(Ctx::with_pool(Some(&pool)), m, k, n, &a, &b, &mut c);
            assert_eq!(bits(&c), bits(&reference(m, k, n, &a, &b)));
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

        #[test]
        fn packed_weights_give_the_same_bits(
            (m, k, n) in (1usize..14, prop_oneof![0usize..40, 250usize..600], 1usize..70),
            seed in 0u64..1000,
            threads in 1usize..4,
        ) {
            let (a, b) = operands(m, k, n, seed);
            let want = bits(&reference(m, k, n, &a, &b));
            let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
            for trans_b in [false, true] {
                let packed = packed(k, n, &b, trans_b);
                for ctx in [Ctx::with_pool(None), Ctx::with_pool(Some(&pool))] {
                    let mut c = vec![f32::NAN; m * n];
                    gemm_f32_packed(ctx, m, &a, &packed, &mut c);
                    prop_assert_eq!(&bits(&c), &want);
                }
                let mut portable = vec![f32::NAN; m * n];
                strips_portable(m, k, n, &a, packed.strips(), &mut portable, n);
                prop_assert_eq!(&bits(&portable), &want);
            }
        }
    }

    /// The `k×n` matrix `b` packed, stored as given or (`trans_b`) transposed.
    fn packed(k: usize, n: usize, b: &[f32], trans_b: bool) -> std::sync::Arc<PackedMatrix> {
        let mut packer = crate::packed::Packer::new();
        packer
            .reserve(
                k,
                n,
                crate::packed::Packing::Float {
                    transposed: trans_b,
                },
            )
            .unwrap();
        let stored = if trans_b {
            Tensor::from_parts(vec![n, k], Data::F32(transposed(k, n, b)))
        } else {
            Tensor::from_parts(vec![k, n], Data::F32(b.to_vec()))
        };
        packer.pack(0, &stored).unwrap();
        packer.finish().remove(0)
    }

    #[test]
    fn packed_decode_rows_split_across_threads_give_the_same_bits() {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(3)
            .build()
            .unwrap();
        for (m, k, n) in [(1, 576, 1536), (1, 300, 1000), (37, 100, 200)] {
            let (a, b) = operands(m, k, n, 9);
            let packed = packed(k, n, &b, false);
            let mut c = vec![f32::NAN; m * n];
            gemm_f32_packed(Ctx::with_pool(Some(&pool)), m, &a, &packed, &mut c);
            assert_eq!(bits(&c), bits(&reference(m, k, n, &a, &b)), "{m}x{k}x{n}");
        }
    }

    proptest! {
        #[test]
        fn the_transposed_operand_gives_the_same_bits(
            (m, k, n) in (1usize..12, prop_oneof![0usize..40, 250usize..600], 1usize..70),
            seed in 0u64..1000,
            threads in 1usize..4,
        ) {
            let (a, b) = operands(m, k, n, seed);
            let bt = transposed(k, n, &b);
            let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
            let ctx = Ctx::with_pool(Some(&pool));
            let mut c = vec![f32::NAN; m * n];
            gemm_f32_bt(ctx, m, k, n, &a, &bt, &mut c);
            prop_assert_eq!(bits(&c), bits(&reference(m, k, n, &a, &b)));
        }
    }

    /// Large enough for the threaded paths (rows split, and one row split by columns).
    #[test]
    fn the_transposed_operand_gives_the_same_bits_when_threaded() {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(3)
            .build()
            .unwrap();
        for (m, k, n) in [(1, 300, 1000), (37, 100, 200)] {
            let (a, b) = operands(m, k, n, 5);
            let bt = transposed(k, n, &b);
            let mut c = vec![f32::NAN; m * n];
            gemm_f32_bt(Ctx::with_pool(Some(&pool)), m, k, n, &a, &bt, &mut c);
            assert_eq!(bits(&c), bits(&reference(m, k, n, &a, &b)), "{m}x{k}x{n}");
        }
    }

    /// `b` (k×n) as n×k.
    fn transposed(k: usize, n: usize, b: &[f32]) -> Vec<f32> {
        let mut bt = vec![0f32; n * k];
        for kk in 0..k {
            for j in 0..n {
                bt[j * k + kk] = b[kk * n + j];
            }
        }
        bt
    }

    fn bits(v: &[f32]) -> Vec<u32> {
        v.iter().map(|x| x.to_bits()).collect()
    }
}
