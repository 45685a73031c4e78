//! Softmax / LogSoftmax, ArgMax, BatchNormalization (inference mode), LayerNormalization,
//! RMSNormalization and Gelu.

use super::elementwise::with_numeric;
use super::{invalid, norm_axis, opt, req, unsupported, Attrs, OpResult};
use crate::tensor::{Data, Tensor};

#[derive(Debug, Clone)]
pub(crate) struct Softmax {
    axis: i64,
    log: bool,
    /// Opsets before 13 flatten the input to 2-D at `axis` and normalize each row.
    legacy: bool,
}

impl Softmax {
    pub fn parse(a: &Attrs, opset: i64, log: bool) -> OpResult<Softmax> {
        let legacy = opset < 13;
        let axis = a.int_or("axis", if legacy { 1 } else { -1 })?;
        Ok(Softmax { axis, log, legacy })
    }

    /// For each slice along the axis: `m = max(x)` (in index order), `e = exp(x - m)`,
    /// `s = e[0] + e[1] + ...` (left to right), then `e / s`, or `(x - m) - ln(s)` for LogSoftmax.
    pub fn run(&self, x: &Tensor) -> OpResult<Tensor> {
        let Data::F32(v) = x.data() else {
            return unsupported(format!("softmax on {} is not supported", x.dtype()));
        };
        let shape = x.shape();
        let axis = norm_axis(self.axis, shape.len().max(1))?;
        let (len, inner) = if self.legacy || shape.is_empty() {
            (shape[axis.min(shape.len())..].iter().product::<usize>(), 1)
        } else {
            (shape[axis], shape[axis + 1..].iter().product::<usize>())
        };
        let mut out = vec![0f32; v.len()];
        if len == 0 {
            return Ok(Tensor::from_parts(shape.to_vec(), Data::F32(out)));
        }
        let outer = v.len() / (len * inner);
        if inner == 1 && !self.log {
            // Rows along the last axis (attention's): the same sums, exp eight at a time.
            for (row, out) in v.chunks(len).zip(out.chunks_mut(len)) {
                let m = row
                    .iter()
                    .fold(f32::NEG_INFINITY, |m, &x| if x > m { x } else { m });
                for (e, &x) in out.iter_mut().zip(row) {
                    *e = x - m;
                }
                crate::exp::exp_in_place(out);
                let s = out.iter().fold(0f32, |s, &e| s + e);
                out.iter_mut().for_each(|e| *e /= s);
            }
            return Ok(Tensor::from_parts(shape.to_vec(), Data::F32(out)));
        }
        for o in 0..outer {
            for i in 0..inner {
                let at = |k: usize| o * len * inner + k * inner + i;
                let mut m = f32::NEG_INFINITY;
                for k in 0..len {
                    if v[at(k)] > m {
                        m = v[at(k)];
                    }
                }
                let mut s = 0f32;
                for k in 0..len {
                    let e = libm::expf(v[at(k)] - m);
                    out[at(k)] = e;
                    s += e;
                }
                if self.log {
                    let ls = libm::logf(s);
                    for k in 0..len {
                        out[at(k)] = (v[at(k)] - m) - ls;
                    }
                } else {
                    for k in 0..len {
                        out[at(k)] /= s;
                    }
                }
            }
        }
        Ok(Tensor::from_parts(shape.to_vec(), Data::F32(out)))
    }
}

#[derive(Debug, Clone)]
pub(crate) struct ArgMax {
    pub(crate) axis: i64,
    pub(crate) keepdims: bool,
    pub(crate) select_last: bool,
}

impl ArgMax {
    pub fn parse(a: &Attrs) -> OpResult<ArgMax> {
        Ok(ArgMax {
            axis: a.int_or("axis", 0)?,
            keepdims: a.int_or("keepdims", 1)? != 0,
            select_last: a.int_or("select_last_index", 0)? != 0,
        })
    }

    pub fn run(&self, x: &Tensor) -> OpResult<Tensor> {
        let shape = x.shape();
        let axis = norm_axis(self.axis, shape.len())?;
        let (len, inner) = (shape[axis], shape[axis + 1..].iter().product::<usize>());
        if len == 0 {
            return invalid("ArgMax over an empty axis");
        }
        let indices = with_numeric!(x.data(), v => argmax(v, len, inner, self.select_last),
            bool => return unsupported("ArgMax on bool"));
        let mut out_shape = shape.to_vec();
        if self.keepdims {
            out_shape[axis] = 1;
        } else {
            out_shape.remove(axis);
        }
        Ok(Tensor::from_parts(out_shape, Data::I64(indices)))
    }
}

/// Index of the first (or last) maximum along the axis; NaN never wins.
fn argmax<T: PartialOrd + Copy>(v: &[T], len: usize, inner: usize, select_last: bool) -> Vec<i64> {
    let outer = v.len() / (len * inner);
    let mut out = Vec::with_capacity(outer * inner);
    for o in 0..outer {
        for i in 0..inner {
            let at = |k: usize| v[o * len * inner + k * inner + i];
            let mut best = 0;
            for k in 1..len {
                let better = if select_last {
                    at(k) >= at(best)
                } else {
                    at(k) > at(best)
                };
                // A NaN in the first slot is replaced by the first comparable value.
                if better || at(best).partial_cmp(&at(best)).is_none() {
                    best = k;
                }
            }
            out.push(best as i64);
        }
    }
    out
}

#[derive(Debug, Clone)]
pub(crate) struct BatchNorm {
    epsilon: f32,
}

impl BatchNorm {
    pub fn parse(a: &Attrs) -> OpResult<BatchNorm> {
        if a.int_or("training_mode", 0)? != 0 {
            return unsupported("training_mode=1 is not supported (inference only)");
        }
        if a.int_or("spatial", 1)? != 1 {
            return unsupported("spatial=0 is not supported");
        }
        a.ignore(&["momentum", "is_test", "consumed_inputs"]);
        Ok(BatchNorm {
            epsilon: a.float_or("epsilon", 1e-5)?,
        })
    }

    /// `y = (x - mean) / sqrt(var + epsilon) * scale + bias`, evaluated in that order.
    pub fn run(&self, inputs: &[Option<&Tensor>]) -> OpResult<Tensor> {
        let x = req(inputs, 0)?;
        if inputs.iter().skip(5).any(Option::is_some) {
            return unsupported("running mean/variance outputs are training-only");
        }
        let Data::F32(xv) = x.data() else {
            return unsupported(format!("BatchNormalization on {}", x.dtype()));
        };
        if x.rank() < 2 {
            return invalid(format!("input must have rank >= 2, got {:?}", x.shape()));
        }
        let channels = x.shape()[1];
        let mut params = Vec::with_capacity(4);
        for (i, name) in [(1, "scale"), (2, "bias"), (3, "mean"), (4, "var")] {
            let t = req(inputs, i)?;
            match t.data() {
                Data::F32(p) if p.len() == channels && t.rank() == 1 => params.push(p),
                _ => {
                    return invalid(format!(
                        "{name} must be float32 of shape [{channels}], got {} {:?}",
                        t.dtype(),
                        t.shape()
                    ))
                }
            }
        }
        let (scale, bias, mean, var) = (params[0], params[1], params[2], params[3]);
        let denom: Vec<f32> = var.iter().map(|&v| (v + self.epsilon).sqrt()).collect();
        let spatial: usize = x.shape()[2..].iter().product();
        let mut out = Vec::with_capacity(xv.len());
        for (i, chunk) in xv.chunks(spatial.max(1)).enumerate() {
            let c = i % channels;
            out.extend(
                chunk
                    .iter()
                    .map(|&e| (e - mean[c]) / denom[c] * scale[c] + bias[c]),
            );
        }
        Ok(Tensor::from_parts(x.shape().to_vec(), Data::F32(out)))
    }
}

/// LayerNormalization (opset 17) and RMSNormalization (opset 23) over the axes from `axis` on:
/// `y = (x - mean) / sqrt(var + epsilon) * scale + bias`, or `x / sqrt(mean(x²) + epsilon) *
/// scale` for RMS. Sums run left to right in float32; `scale` and `bias` have the normalized
/// shape (leading ones allowed).
#[derive(Debug, Clone)]
pub(crate) struct Normalization {
    axis: i64,
    epsilon: f32,
    rms: bool,
}

impl Normalization {
    pub fn parse(a: &Attrs, rms: bool) -> OpResult<Normalization> {
        if a.int_or("stash_type", 1)? != 1 {
            return unsupported("a stash_type other than float32 is not supported");
        }
        Ok(Normalization {
            axis: a.int_or("axis", -1)?,
            epsilon: a.float_or("epsilon", 1e-5)?,
            rms,
        })
    }

    /// Y, then (LayerNormalization) the mean and the inverse standard deviation, each with the
    /// normalized axes kept as ones.
    pub fn run(&self, inputs: &[Option<&Tensor>]) -> OpResult<Vec<Tensor>> {
        let x = req(inputs, 0)?;
        let Data::F32(v) = x.data() else {
            return unsupported(format!("normalization of {} is not supported", x.dtype()));
        };
        let axis = norm_axis(self.axis, x.rank())?;
        let n: usize = x.shape()[axis..].iter().product();
        let affine = |i: usize, what: &str| -> OpResult<Option<&[f32]>> {
            let Some(t) = super::opt(inputs, i) else {
                return Ok(None);
            };
            let leading = t.rank().saturating_sub(x.rank() - axis);
            let fits = t.shape()[leading..] == x.shape()[axis..]
                && t.shape()[..leading].iter().all(|&d| d == 1);
            match t.data() {
                Data::F32(w) if fits => Ok(Some(w)),
                _ => invalid(format!(
                    "{what} must be float32 of the normalized shape {:?}, got {} {:?}",
                    &x.shape()[axis..],
                    t.dtype(),
                    t.shape()
                )),
            }
        };
        let Some(scale) = affine(1, "scale")? else {
            return invalid("required input 1 (scale) is missing");
        };
        let bias = if self.rms { None } else { affine(2, "bias")? };
        let rows = v.len().checked_div(n).unwrap_or(0);
        let mut y = vec![0f32; v.len()];
        let mut means = Vec::with_capacity(rows);
        let mut inv_stds = Vec::with_capacity(rows);
        for r in 0..rows {
            let row = &v[r * n..(r + 1) * n];
            let out = &mut y[r * n..(r + 1) * n];
            let mean = if self.rms {
                0.0
            } else {
                row.iter().fold(0f32, |s, &e| s + e) / n as f32
            };
            let var = row.iter().fold(0f32, |s, &e| s + (e - mean) * (e - mean)) / n as f32;
            let inv = 1.0 / libm::sqrtf(var + self.epsilon);
            for k in 0..n {
                let mut e = (row[k] - mean) * inv * scale[k];
                if let Some(b) = bias {
                    e += b[k];
                }
                out[k] = e;
            }
            means.push(mean);
            inv_stds.push(inv);
        }
        let y = Tensor::from_parts(x.shape().to_vec(), Data::F32(y));
        if self.rms {
            return Ok(vec![y]);
        }
        let mut stats_shape = x.shape()[..axis].to_vec();
        stats_shape.resize(x.rank(), 1);
        Ok(vec![
            y,
            Tensor::from_parts(stats_shape.clone(), Data::F32(means)),
            Tensor::from_parts(stats_shape, Data::F32(inv_stds)),
        ])
    }
}

/// Gelu (opset 20): `0.5·x·(1 + erf(x/√2))`, or with `approximate="tanh"`
/// `0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³)))`; erf and tanh from libm.
#[derive(Debug, Clone)]
pub(crate) struct Gelu {
    tanh: bool,
}

impl Gelu {
    pub fn parse(a: &Attrs) -> OpResult<Gelu> {
        match a.string_or("approximate", "none")?.as_str() {
            "none" => Ok(Gelu { tanh: false }),
            "tanh" => Ok(Gelu { tanh: true }),
            other => invalid(format!("Gelu approximate={other:?} is not none or tanh")),
        }
    }

    pub fn run(&self, x: &Tensor) -> OpResult<Tensor> {
        let Data::F32(v) = x.data() else {
            return unsupported(format!("Gelu on {} is not supported", x.dtype()));
        };
        // √(2/π) = (2/√π)·(1/√2).
        let sqrt_2_over_pi = std::f32::consts::FRAC_2_SQRT_PI * std::f32::consts::FRAC_1_SQRT_2;
        let f = |e: f32| {
            let inner = if self.tanh {
                libm::tanhf(sqrt_2_over_pi * (e + 0.044715 * e * e * e))
            } else {
                libm::erff(e * std::f32::consts::FRAC_1_SQRT_2)
            };
            0.5 * e * (1.0 + inner)
        };
        Ok(Tensor::from_parts(
            x.shape().to_vec(),
            Data::F32(v.iter().map(|&e| f(e)).collect()),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(shape: &[usize], v: Vec<f32>) -> Tensor {
        Tensor::new(shape.to_vec(), Data::F32(v)).unwrap()
    }

    #[test]
    fn layer_norm_centres_and_scales_each_row() {
        let x = f(&[2, 2], vec![1., 3., -2., 2.]);
        let scale = f(&[2], vec![1., 2.]);
        let bias = f(&[2], vec![0., 1.]);
        let ln = Normalization {
            axis: -1,
            epsilon: 0.0,
            rms: false,
        };
        let out = ln.run(&[Some(&x), Some(&scale), Some(&bias)]).unwrap();
        assert_eq!(out[0].as_f32().unwrap(), &[-1., 3., -1., 3.]);
        assert_eq!(out[1].shape(), &[2, 1]);
        assert_eq!(out[1].as_f32().unwrap(), &[2., 0.]);
        let wrong = f(&[3], vec![1.; 3]);
        assert!(ln.run(&[Some(&x), Some(&wrong)]).is_err());
    }

    #[test]
    fn rms_norm_divides_by_the_root_mean_square() {
        let x = f(&[1, 2], vec![3., 4.]);
        let rms = Normalization {
            axis: -1,
            epsilon: 0.0,
            rms: true,
        };
        let out = rms.run(&[Some(&x), Some(&f(&[2], vec![1., 1.]))]).unwrap();
        let inv = 1.0 / libm::sqrtf(12.5);
        assert_eq!(out[0].as_f32().unwrap(), &[3. * inv, 4. * inv]);
    }
}

/// Dropout as inference runs it: the input unchanged and, where the node asks for it, a mask of
/// all true. A graph that turns training mode on (opset 12's third input) with a nonzero ratio
/// is refused, since its output would be random.
#[derive(Debug, Clone)]
pub(crate) struct Dropout;

impl Dropout {
    pub fn parse(a: &Attrs) -> OpResult<Dropout> {
        // Opset < 12 carries the ratio (and before 7, is_test) as attributes; 12+ a seed.
        a.float("ratio")?;
        a.int("is_test")?;
        a.int("seed")?;
        Ok(Dropout)
    }

    pub fn run(&self, inputs: &[Option<&Tensor>]) -> OpResult<Vec<Tensor>> {
        let x = req(inputs, 0)?;
        if let Some(training) = opt(inputs, 2) {
            match training.data() {
                Data::Bool(v) if v.len() == 1 => {
                    let ratio = match opt(inputs, 1).map(|r| r.data()) {
                        None => 0.5,
                        Some(Data::F32(r)) if r.len() == 1 => r[0] as f64,
                        Some(Data::F64(r)) if r.len() == 1 => r[0],
                        Some(_) => return invalid("Dropout's ratio must be one float"),
                    };
                    // With a ratio of 0 training mode drops nothing: still the identity.
                    if v[0] && ratio != 0.0 {
                        return unsupported(
                            "Dropout in training mode with a nonzero ratio (random output) is not supported",
                        );
                    }
                }
                _ => {
                    return invalid(format!(
                        "Dropout's training_mode must be one bool, got {} {:?}",
                        training.dtype(),
                        training.shape()
                    ))
                }
            }
        }
        let mask = Tensor::from_parts(x.shape().to_vec(), Data::Bool(vec![true; x.len()]));
        Ok(vec![x.clone(), mask])
    }
}
