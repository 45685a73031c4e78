//! Softmax / LogSoftmax, ArgMax and BatchNormalization (inference mode).

use super::elementwise::with_numeric;
use super::{invalid, norm_axis, req, unsupported, Attrs, OpResult};
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
