//! `exp` over a slice of float32, bit for bit the `libm` crate's `expf` (FreeBSD's algorithm:
//! argument reduction by ln 2 split in two, a rational approximation, then a scale by 2^k) on
//! every input, eight at a time where the CPU has AVX2.
//!
//! The vector path performs libm's float operations in libm's order — each multiply, add and
//! divide rounded on its own, never fused — on lanes where libm takes its main path with a
//! normal result (-86 < x < 88); any group of eight with another value (a NaN, an infinity, an
//! overflow, a subnormal result) goes to `libm::expf` itself. So Sigmoid and Softmax, which
//! spend most of their time here, give the same bits as before on every machine.

/// Replaces each `x` in `xs` by `libm::expf(x)`.
pub(crate) fn exp_in_place(xs: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU supports AVX2, checked just above.
        unsafe { exp_avx2(xs) };
        return;
    }
    xs.iter_mut().for_each(|x| *x = libm::expf(*x));
}

// libm's constants (src/math/expf.rs), by their bits.
const LN2_HI: f32 = f32::from_bits(0x3f317200);
const LN2_LO: f32 = f32::from_bits(0x35bfbe8e);
const INV_LN2: f32 = f32::from_bits(0x3fb8aa3b);
const P1: f32 = f32::from_bits(0x3e2aaa8f);
const P2: f32 = f32::from_bits(0xbb355215);
/// |x| above which k is rounded from x / ln 2 (1.5 ln 2), and above which it is ±1 (0.5 ln 2).
const ABOVE_1_5_LN2: u32 = 0x3f851592;
const ABOVE_0_5_LN2: u32 = 0x3eb17218;
/// |x| at or below which libm returns `1 + x` (2^-14).
const TINY: u32 = 0x39000000;

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn exp_avx2(xs: &mut [f32]) {
    use std::arch::x86_64::*;
    let mut chunks = xs.chunks_exact_mut(8);
    for chunk in &mut chunks {
        let x = _mm256_loadu_ps(chunk.as_ptr());
        let in_range = _mm256_and_ps(
            _mm256_cmp_ps::<_CMP_GT_OQ>(x, _mm256_set1_ps(-86.0)),
            _mm256_cmp_ps::<_CMP_LT_OQ>(x, _mm256_set1_ps(88.0)),
        );
        if _mm256_movemask_ps(in_range) != 0xff {
            chunk.iter_mut().for_each(|x| *x = libm::expf(*x));
            continue;
        }
        let abs = _mm256_andnot_ps(_mm256_set1_ps(-0.0), x);
        let negative = _mm256_cmp_ps::<_CMP_LT_OQ>(x, _mm256_setzero_ps());
        let above =
            |bits: u32| _mm256_cmp_ps::<_CMP_GT_OQ>(abs, _mm256_set1_ps(f32::from_bits(bits)));
        // k = (int)(x / ln2 ± 0.5) far out, ±1 nearer, 0 near zero.
        let half = _mm256_blendv_ps(_mm256_set1_ps(0.5), _mm256_set1_ps(-0.5), negative);
        let k_far = _mm256_cvttps_epi32(_mm256_add_ps(
            _mm256_mul_ps(_mm256_set1_ps(INV_LN2), x),
            half,
        ));
        let one = _mm256_blendv_ps(_mm256_set1_ps(1.0), _mm256_set1_ps(-1.0), negative);
        let k_near = _mm256_and_ps(one, above(ABOVE_0_5_LN2));
        let k = _mm256_blendv_ps(
            _mm256_cvtepi32_ps(k_far),
            k_near,
            _mm256_xor_ps(
                above(ABOVE_1_5_LN2),
                _mm256_castsi256_ps(_mm256_set1_epi32(-1)),
            ),
        );
        let hi = _mm256_sub_ps(x, _mm256_mul_ps(k, _mm256_set1_ps(LN2_HI)));
        let lo = _mm256_mul_ps(k, _mm256_set1_ps(LN2_LO));
        let r = _mm256_sub_ps(hi, lo);
        let rr = _mm256_mul_ps(r, r);
        let c = _mm256_sub_ps(
            r,
            _mm256_mul_ps(
                rr,
                _mm256_add_ps(_mm256_set1_ps(P1), _mm256_mul_ps(rr, _mm256_set1_ps(P2))),
            ),
        );
        let two = _mm256_set1_ps(2.0);
        let q = _mm256_div_ps(_mm256_mul_ps(r, c), _mm256_sub_ps(two, c));
        let y = _mm256_add_ps(_mm256_set1_ps(1.0), _mm256_add_ps(_mm256_sub_ps(q, lo), hi));
        // y · 2^k, exact: k is in [-124, 127] here, so 2^k and the result are normal.
        let scale = _mm256_slli_epi32::<23>(_mm256_add_epi32(
            _mm256_cvtps_epi32(k),
            _mm256_set1_epi32(127),
        ));
        let scaled = _mm256_mul_ps(y, _mm256_castsi256_ps(scale));
        let tiny = _mm256_cmp_ps::<_CMP_LE_OQ>(abs, _mm256_set1_ps(f32::from_bits(TINY)));
        let result = _mm256_blendv_ps(scaled, _mm256_add_ps(_mm256_set1_ps(1.0), x), tiny);
        _mm256_storeu_ps(chunk.as_mut_ptr(), result);
    }
    chunks
        .into_remainder()
        .iter_mut()
        .for_each(|x| *x = libm::expf(*x));
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every 251st float32 bit pattern (17 million values: every sign, exponent and special
    /// value class) against libm, in slices whose lengths leave remainders. (Run once with a
    /// step of 1 in release: all 2^32 equal.)
    #[test]
    fn equals_libm_bit_for_bit() {
        const STEP: usize = 251;
        let specials = [
            0.0,
            -0.0,
            f32::INFINITY,
            f32::NEG_INFINITY,
            f32::NAN,
            88.0,
            -86.0,
        ];
        let mut patterns = (0..=u32::MAX).step_by(STEP).map(f32::from_bits);
        let mut chunk: Vec<f32> = specials.to_vec();
        loop {
            let mut got = chunk.clone();
            exp_in_place(&mut got);
            for (&x, &y) in chunk.iter().zip(&got) {
                let want = libm::expf(x);
                assert!(
                    y.to_bits() == want.to_bits() || (y.is_nan() && want.is_nan()),
                    "exp({x:e}) = {y:e}, libm {want:e}"
                );
            }
            chunk = patterns.by_ref().take(1_000_003).collect();
            if chunk.is_empty() {
                break;
            }
        }
    }
}
