//! Integer arithmetic inside an R1CS over BN254's scalar field. Every value carries its native
//! integer beside its variable, and bounds that hold for every admissible input: the shape of
//! the constraint system depends only on the bounds, never on the values, so one verifying key
//! serves every input. Linear operations (adding, scaling by a constant) cost no constraint;
//! a product of two variables costs one; a comparison or a division costs one per bit of the
//! range it must rule on.

use ark_bn254::Fr;
use ark_r1cs_std::alloc::AllocVar;
use ark_r1cs_std::boolean::Boolean;
use ark_r1cs_std::eq::EqGadget;
use ark_r1cs_std::fields::fp::FpVar;
use ark_r1cs_std::fields::FieldVar;
use ark_r1cs_std::select::CondSelectGadget;
use ark_relations::r1cs::{ConstraintSystemRef, SynthesisError};

/// `v` as a field element (negative integers wrap to `p − |v|`).
pub fn fr(v: i128) -> Fr {
    if v >= 0 {
        Fr::from(v as u128)
    } else {
        -Fr::from(v.unsigned_abs())
    }
}

/// Bits needed to write every integer in `0..=span`.
pub fn bit_len(span: u128) -> usize {
    (128 - span.leading_zeros()) as usize
}

/// An integer in the circuit: its variable (or constant), its value, and bounds `lo ≤ value ≤
/// hi` that every admissible input respects.
#[derive(Clone)]
pub struct Num {
    pub var: FpVar<Fr>,
    pub value: i128,
    pub lo: i128,
    pub hi: i128,
}

impl Num {
    pub fn constant(v: i128) -> Num {
        Num {
            var: FpVar::Constant(fr(v)),
            value: v,
            lo: v,
            hi: v,
        }
    }

    pub fn is_constant(&self) -> bool {
        matches!(self.var, FpVar::Constant(_))
    }

    pub fn add(&self, o: &Num) -> Num {
        Num {
            var: &self.var + &o.var,
            value: self.value + o.value,
            lo: self.lo.saturating_add(o.lo),
            hi: self.hi.saturating_add(o.hi),
        }
    }

    pub fn neg(&self) -> Num {
        Num {
            var: self.var.negate().expect("negation never fails"),
            value: -self.value,
            lo: self.hi.saturating_neg(),
            hi: self.lo.saturating_neg(),
        }
    }

    pub fn sub(&self, o: &Num) -> Num {
        self.add(&o.neg())
    }

    /// The product; one constraint unless a side is a constant.
    pub fn mul(&self, o: &Num) -> Num {
        // Bounds saturate rather than overflow; a saturated bound fails the type check later.
        let corners = [
            self.lo.saturating_mul(o.lo),
            self.lo.saturating_mul(o.hi),
            self.hi.saturating_mul(o.lo),
            self.hi.saturating_mul(o.hi),
        ];
        Num {
            var: &self.var * &o.var,
            value: self.value * o.value,
            lo: *corners.iter().min().expect("four corners"),
            hi: *corners.iter().max().expect("four corners"),
        }
    }
}

/// A boolean in the circuit with its value.
#[derive(Clone)]
pub struct Bit {
    pub var: Boolean<Fr>,
    pub value: bool,
}

impl Bit {
    pub fn constant(value: bool) -> Bit {
        Bit {
            var: Boolean::Constant(value),
            value,
        }
    }
}

/// Constrains `x − offset` (which the caller knows lies in `0..2^n`) to its `n` bits, little
/// endian, and returns them: n + 1 constraints.
fn bits(
    cs: &ConstraintSystemRef<Fr>,
    x: &Num,
    offset: i128,
    n: usize,
) -> Result<Vec<Bit>, SynthesisError> {
    let shifted = x.value - offset;
    debug_assert!(shifted >= 0 && bit_len(shifted as u128) <= n);
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let value = (shifted >> i) & 1 == 1;
        out.push(Bit {
            var: Boolean::new_witness(cs.clone(), || Ok(value))?,
            value,
        });
    }
    let vars: Vec<Boolean<Fr>> = out.iter().map(|b| b.var.clone()).collect();
    let sum = Boolean::le_bits_to_fp(&vars)?;
    sum.enforce_equal(&(&x.var - FpVar::Constant(fr(offset))))?;
    Ok(out)
}

/// Constrains `lo ≤ x ≤ hi` and narrows `x`'s bounds to them. Free when the bounds already
/// hold; otherwise the bits of `x − lo`, and of `hi − x` unless `hi − lo + 1` is a power of two.
pub fn range(
    cs: &ConstraintSystemRef<Fr>,
    x: &Num,
    lo: i128,
    hi: i128,
) -> Result<Num, SynthesisError> {
    if x.lo >= lo && x.hi <= hi {
        return Ok(x.clone());
    }
    if x.value < lo || x.value > hi {
        return Err(SynthesisError::Unsatisfiable);
    }
    let span = (hi - lo) as u128;
    let n = bit_len(span);
    bits(cs, x, lo, n)?;
    if (span + 1).is_power_of_two() {
        return Ok(Num {
            lo,
            hi,
            ..x.clone()
        });
    }
    let above = Num::constant(hi).sub(x);
    bits(cs, &above, 0, n)?;
    Ok(Num {
        lo,
        hi,
        ..x.clone()
    })
}

/// Whether `x < 0`: free when the bounds decide it, else the bits of `x + 2^k` with `2^k`
/// past both bounds' magnitudes.
pub fn negative(cs: &ConstraintSystemRef<Fr>, x: &Num) -> Result<Bit, SynthesisError> {
    if x.lo >= 0 {
        return Ok(Bit::constant(false));
    }
    if x.hi < 0 {
        return Ok(Bit::constant(true));
    }
    let k = bit_len(x.lo.unsigned_abs().max(x.hi.unsigned_abs()));
    let b = bits(cs, x, -(1i128 << k), k + 1)?;
    let top = b[k].clone();
    Ok(Bit {
        var: !top.var,
        value: !top.value,
    })
}

/// `cond ? a : b`; one constraint.
pub fn select(cond: &Bit, a: &Num, b: &Num) -> Result<Num, SynthesisError> {
    let var = match cond.var {
        Boolean::Constant(true) => a.var.clone(),
        Boolean::Constant(false) => b.var.clone(),
        _ => FpVar::conditionally_select(&cond.var, &a.var, &b.var)?,
    };
    let (value, lo, hi) = match cond.var {
        Boolean::Constant(true) => (a.value, a.lo, a.hi),
        Boolean::Constant(false) => (b.value, b.lo, b.hi),
        _ => (
            if cond.value { a.value } else { b.value },
            a.lo.min(b.lo),
            a.hi.max(b.hi),
        ),
    };
    Ok(Num { var, value, lo, hi })
}

/// `max(x, c)` for a constant `c`.
pub fn max_const(cs: &ConstraintSystemRef<Fr>, x: &Num, c: i128) -> Result<Num, SynthesisError> {
    let below = negative(cs, &x.sub(&Num::constant(c)))?;
    let out = select(&below, &Num::constant(c), x)?;
    Ok(Num {
        lo: out.lo.max(c),
        hi: out.hi.max(c),
        ..out
    })
}

/// `min(x, c)` for a constant `c`.
pub fn min_const(cs: &ConstraintSystemRef<Fr>, x: &Num, c: i128) -> Result<Num, SynthesisError> {
    let above = negative(cs, &Num::constant(c).sub(x))?;
    let out = select(&above, &Num::constant(c), x)?;
    Ok(Num {
        lo: out.lo.min(c),
        hi: out.hi.min(c),
        ..out
    })
}

/// `x / d` rounded toward zero (Rust's and ONNX Runtime's integer division) for a constant
/// `d ≠ 0`.
pub fn div_const(cs: &ConstraintSystemRef<Fr>, x: &Num, d: i128) -> Result<Num, SynthesisError> {
    if d < 0 {
        return Ok(div_const(cs, x, -d)?.neg());
    }
    let neg = negative(cs, x)?;
    let magnitude = select(&neg, &x.neg(), x)?;
    let magnitude = Num {
        lo: 0,
        hi: x.lo.unsigned_abs().max(x.hi.unsigned_abs()) as i128,
        ..magnitude
    };
    // magnitude = q·d + r with 0 ≤ r < d and q in its range: q is the floor.
    let (q_value, r_value) = (magnitude.value / d, magnitude.value % d);
    let q_hi = magnitude.hi / d;
    let q = Num {
        var: FpVar::new_witness(cs.clone(), || Ok(fr(q_value)))?,
        value: q_value,
        lo: 0,
        hi: q_hi,
    };
    let q = if q_hi == 0 {
        q.var.enforce_equal(&FpVar::zero())?;
        q
    } else {
        bits(cs, &q, 0, bit_len(q_hi as u128))?;
        q
    };
    let r = Num {
        var: &magnitude.var - &q.var * FpVar::Constant(fr(d)),
        value: r_value,
        lo: -(q_hi.saturating_mul(d)),
        hi: magnitude.hi,
    };
    range(cs, &r, 0, d - 1)?;
    let quotient = select(&neg, &q.neg(), &q)?;
    Ok(Num {
        lo: if x.lo < 0 { -q_hi } else { 0 },
        hi: if x.hi > 0 { q_hi } else { 0 },
        ..quotient
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use ark_relations::r1cs::ConstraintSystem;

    fn witness(cs: &ConstraintSystemRef<Fr>, v: i128, lo: i128, hi: i128) -> Num {
        Num {
            var: FpVar::new_witness(cs.clone(), || Ok(fr(v))).unwrap(),
            value: v,
            lo,
            hi,
        }
    }

    #[test]
    fn division_truncates_toward_zero_like_rust() {
        for d in [1i128, 2, 3, 7, 16, 1 << 20, -5] {
            for v in [-1000i128, -17, -16, -1, 0, 1, 15, 16, 17, 999] {
                let cs = ConstraintSystem::<Fr>::new_ref();
                let x = witness(&cs, v, -1000, 1000);
                let q = div_const(&cs, &x, d).unwrap();
                assert_eq!(q.value, v / d, "{v} / {d}");
                assert!(cs.is_satisfied().unwrap(), "{v} / {d}");
                assert!(q.lo <= q.value && q.value <= q.hi);
            }
        }
    }

    #[test]
    fn a_remainder_out_of_range_does_not_satisfy() {
        // 100 = 13·7 + 9 is not a division: 9 ≥ 7 fails the remainder's range.
        let cs = ConstraintSystem::<Fr>::new_ref();
        let r = witness(&cs, 9, -1000, 1000);
        let forged = Num { value: 2, ..r };
        range(&cs, &forged, 0, 6).unwrap();
        assert!(!cs.is_satisfied().unwrap());
    }

    #[test]
    fn comparisons_clip_and_select() {
        for v in [-300i128, -1, 0, 1, 254, 255, 256, 4000] {
            let cs = ConstraintSystem::<Fr>::new_ref();
            let x = witness(&cs, v, -5000, 5000);
            let clipped = min_const(&cs, &max_const(&cs, &x, 0).unwrap(), 255).unwrap();
            assert_eq!(clipped.value, v.clamp(0, 255));
            assert_eq!((clipped.lo, clipped.hi), (0, 255));
            assert_eq!(negative(&cs, &x).unwrap().value, v < 0);
            assert!(cs.is_satisfied().unwrap());
        }
    }

    #[test]
    fn ranges_reject_values_outside() {
        let cs = ConstraintSystem::<Fr>::new_ref();
        let x = witness(&cs, 200, -1000, 1000);
        assert!(range(&cs, &x, 0, 255).is_ok());
        assert!(cs.is_satisfied().unwrap());
        let cs = ConstraintSystem::<Fr>::new_ref();
        let x = witness(&cs, 300, -1000, 1000);
        assert!(range(&cs, &x, 0, 255).is_err());
        // A forged bit decomposition of an out-of-range value leaves the system unsatisfied.
        let cs = ConstraintSystem::<Fr>::new_ref();
        let x = witness(&cs, 300, -1000, 1000);
        let forged = Num { value: 44, ..x };
        bits(&cs, &forged, 0, 8).unwrap();
        assert!(!cs.is_satisfied().unwrap());
    }
}
