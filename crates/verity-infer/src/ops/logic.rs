//! Comparisons, boolean logic and selection: Equal, Less, Greater, LessOrEqual, GreaterOrEqual,
//! And, Or, Xor, Not, Where, IsNaN and IsInf — what exporters build attention masks from.
//!
//! Comparisons follow IEEE 754: every comparison with NaN is false.

use super::elementwise::{
    broadcast_map, broadcast_shape, for_each_broadcast, map_pair, with_numeric_pair,
};
use super::{buffer_len, invalid, unsupported, Attrs, OpResult};
use crate::tensor::{Data, Tensor};

#[derive(Debug, Clone, Copy)]
pub(crate) enum Compare {
    Equal,
    Less,
    Greater,
    LessOrEqual,
    GreaterOrEqual,
}

impl Compare {
    fn holds<T: PartialOrd>(self, a: T, b: T) -> bool {
        match self {
            Compare::Equal => a == b,
            Compare::Less => a < b,
            Compare::Greater => a > b,
            Compare::LessOrEqual => a <= b,
            Compare::GreaterOrEqual => a >= b,
        }
    }

    pub fn run(self, a: &Tensor, b: &Tensor) -> OpResult<Tensor> {
        same_type(a, b)?;
        let (sa, sb) = (a.shape(), b.shape());
        let (shape, v) = match (a.data(), b.data()) {
            (Data::Bool(x), Data::Bool(y)) if matches!(self, Compare::Equal) => {
                broadcast_map(x, sa, y, sb, |p, q| p == q)?
            }
            (x, y) => with_numeric_pair!(x, y, (x, y) => {
                broadcast_map(x, sa, y, sb, |p, q| self.holds(p, q))?
            }, else => return unsupported(format!("{self:?} on {} is not supported", a.dtype()))),
        };
        Ok(Tensor::from_parts(shape, Data::Bool(v)))
    }
}

fn same_type(a: &Tensor, b: &Tensor) -> OpResult<()> {
    if a.dtype() != b.dtype() {
        return invalid(format!(
            "operands have different element types: {} and {}",
            a.dtype(),
            b.dtype()
        ));
    }
    Ok(())
}

#[derive(Debug, Clone, Copy)]
pub(crate) enum Logic {
    And,
    Or,
    Xor,
}

impl Logic {
    pub fn run(self, a: &Tensor, b: &Tensor) -> OpResult<Tensor> {
        let (Data::Bool(x), Data::Bool(y)) = (a.data(), b.data()) else {
            return invalid(format!(
                "{self:?} takes bool operands, got {} and {}",
                a.dtype(),
                b.dtype()
            ));
        };
        let f = match self {
            Logic::And => |p: bool, q: bool| p & q,
            Logic::Or => |p: bool, q: bool| p | q,
            Logic::Xor => |p: bool, q: bool| p ^ q,
        };
        let (shape, v) = broadcast_map(x, a.shape(), y, b.shape(), f)?;
        Ok(Tensor::from_parts(shape, Data::Bool(v)))
    }
}

pub(crate) fn not(x: &Tensor) -> OpResult<Tensor> {
    match x.data() {
        Data::Bool(v) => Ok(Tensor::from_parts(
            x.shape().to_vec(),
            Data::Bool(v.iter().map(|b| !b).collect()),
        )),
        _ => invalid(format!("Not takes a bool tensor, got {}", x.dtype())),
    }
}

/// Where(condition, x, y): `x` where the condition holds, else `y`, all three broadcast.
pub(crate) fn select(cond: &Tensor, x: &Tensor, y: &Tensor) -> OpResult<Tensor> {
    let Data::Bool(c) = cond.data() else {
        return invalid(format!(
            "Where's condition must be bool, got {}",
            cond.dtype()
        ));
    };
    let shape = broadcast_shape(&broadcast_shape(cond.shape(), x.shape())?, y.shape())?;
    let n = buffer_len(&shape)?;
    let shapes = [cond.shape(), x.shape(), y.shape()];
    let data = map_pair!(x.data(), y.data(), (xs, ys) => {
        let mut out = Vec::with_capacity(n);
        for_each_broadcast(&shape, shapes, |[i, j, k]| {
            out.push(if c[i] { xs[j] } else { ys[k] })
        });
        out
    }, else => return invalid(format!(
        "Where's branches have different element types: {} and {}",
        x.dtype(),
        y.dtype()
    )));
    Ok(Tensor::from_parts(shape, data))
}

/// IsNaN, and IsInf with its `detect_negative`/`detect_positive` attributes.
#[derive(Debug, Clone, Copy)]
pub(crate) struct FloatClass {
    nan: bool,
    negative_inf: bool,
    positive_inf: bool,
}

impl FloatClass {
    pub fn is_nan() -> FloatClass {
        FloatClass {
            nan: true,
            negative_inf: false,
            positive_inf: false,
        }
    }

    pub fn parse_is_inf(a: &Attrs) -> OpResult<FloatClass> {
        Ok(FloatClass {
            nan: false,
            negative_inf: a.int_or("detect_negative", 1)? != 0,
            positive_inf: a.int_or("detect_positive", 1)? != 0,
        })
    }

    fn test(self, x: f64) -> bool {
        (self.nan && x.is_nan())
            || (self.negative_inf && x == f64::NEG_INFINITY)
            || (self.positive_inf && x == f64::INFINITY)
    }

    pub fn run(self, x: &Tensor) -> OpResult<Tensor> {
        let v: Vec<bool> = match x.data() {
            Data::F32(v) => v.iter().map(|&e| self.test(e as f64)).collect(),
            Data::F64(v) => v.iter().map(|&e| self.test(e)).collect(),
            d => {
                return invalid(format!(
                    "IsNaN/IsInf take a float tensor, got {}",
                    d.dtype()
                ))
            }
        };
        Ok(Tensor::from_parts(x.shape().to_vec(), Data::Bool(v)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(shape: &[usize], v: Vec<f32>) -> Tensor {
        Tensor::new(shape.to_vec(), Data::F32(v)).unwrap()
    }

    #[test]
    fn comparisons_broadcast_and_nan_compares_false() {
        let a = f(&[3], vec![1.0, f32::NAN, 3.0]);
        let b = f(&[1], vec![2.0]);
        let lt = Compare::Less.run(&a, &b).unwrap();
        assert_eq!(lt.data(), &Data::Bool(vec![true, false, false]));
        let ge = Compare::GreaterOrEqual.run(&a, &b).unwrap();
        assert_eq!(ge.data(), &Data::Bool(vec![false, false, true]));
        let eq = Compare::Equal.run(&a, &a).unwrap();
        assert_eq!(eq.data(), &Data::Bool(vec![true, false, true]));
        let ints = Tensor::new(vec![1], Data::I64(vec![2])).unwrap();
        assert!(Compare::Equal.run(&a, &ints).is_err());
    }

    #[test]
    fn where_broadcasts_all_three() {
        let cond = Tensor::new(vec![2, 1], Data::Bool(vec![true, false])).unwrap();
        let x = f(&[1, 3], vec![1.0, 2.0, 3.0]);
        let y = f(&[], vec![f32::MIN]);
        let r = select(&cond, &x, &y).unwrap();
        assert_eq!(r.shape(), &[2, 3]);
        assert_eq!(
            r.as_f32().unwrap(),
            &[1.0, 2.0, 3.0, f32::MIN, f32::MIN, f32::MIN]
        );
        assert!(select(&x, &x, &y).is_err(), "a float condition");
    }

    #[test]
    fn is_inf_honours_its_directions() {
        let x = f(&[3], vec![f32::NEG_INFINITY, f32::INFINITY, f32::NAN]);
        let only_negative = FloatClass {
            nan: false,
            negative_inf: true,
            positive_inf: false,
        };
        assert_eq!(
            only_negative.run(&x).unwrap().data(),
            &Data::Bool(vec![true, false, false])
        );
        assert_eq!(
            FloatClass::is_nan().run(&x).unwrap().data(),
            &Data::Bool(vec![false, false, true])
        );
    }
}
