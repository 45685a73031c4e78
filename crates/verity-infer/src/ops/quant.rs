//! QuantizeLinear and DequantizeLinear, per tensor or per axis (blocked quantization and the
//! 4-bit / 8-bit float formats are rejected).

use super::{invalid, norm_axis, opt, req, unsupported, Attrs, OpResult};
use crate::tensor::{Data, DataType, Tensor};

fn reject_blocks(a: &Attrs) -> OpResult<()> {
    if a.int_or("block_size", 0)? != 0 {
        return unsupported("blocked quantization (block_size > 0) is not supported");
    }
    Ok(())
}

/// The scale (and zero point) that applies to each element of `x`: one value, or one per index
/// along `axis`.
fn per_element_index(x: &Tensor, params: usize, axis: i64) -> OpResult<impl Fn(usize) -> usize> {
    let (len, inner) = if params == 1 {
        (1, 1)
    } else {
        let axis = norm_axis(axis, x.rank())?;
        if x.shape()[axis] != params {
            return invalid(format!(
                "{params} scales do not match axis {axis} of input {:?}",
                x.shape()
            ));
        }
        (params, x.shape()[axis + 1..].iter().product::<usize>())
    };
    Ok(move |i: usize| (i / inner) % len)
}

fn scales(t: &Tensor) -> OpResult<&[f32]> {
    match t.data() {
        Data::F32(v) if t.rank() <= 1 && !v.is_empty() => Ok(v),
        Data::F32(_) => invalid(format!(
            "scale must be a scalar or 1-D, got {:?}",
            t.shape()
        )),
        _ => unsupported(format!("{} scales are not supported", t.dtype())),
    }
}

/// The elements of an integer tensor of at most 32 bits, widened to i32.
pub(crate) fn widen_i32(data: &Data) -> Option<Vec<i32>> {
    Some(match data {
        Data::U8(v) => v.iter().map(|&e| e as i32).collect(),
        Data::I8(v) => v.iter().map(|&e| e as i32).collect(),
        Data::U16(v) => v.iter().map(|&e| e as i32).collect(),
        Data::I16(v) => v.iter().map(|&e| e as i32).collect(),
        Data::I32(v) => v.clone(),
        _ => return None,
    })
}

/// A zero point widened to i32, one per scale (or none: all zero).
fn zero_points(zp: Option<&Tensor>, n_scales: usize) -> OpResult<Option<Vec<i32>>> {
    let Some(zp) = zp else { return Ok(None) };
    let Some(v) = widen_i32(zp.data()) else {
        return unsupported(format!("{} zero points are not supported", zp.dtype()));
    };
    if v.len() != n_scales {
        return invalid(format!("{} zero points for {n_scales} scales", v.len()));
    }
    Ok(Some(v))
}

#[derive(Debug, Clone)]
pub(crate) struct Quantize {
    axis: i64,
    output: Option<DataType>,
}

impl Quantize {
    pub fn parse(a: &Attrs) -> OpResult<Quantize> {
        reject_blocks(a)?;
        a.ignore(&["saturate"]); // only affects float8 outputs, which are rejected
        if a.int("precision")?.is_some_and(|p| p != 0) {
            return unsupported("the precision attribute is not supported");
        }
        let output =
            match a.int_or("output_dtype", 0)? {
                0 => None,
                code => Some(DataType::from_onnx(code as i32).or_else(|name| {
                    unsupported(format!("quantizing to {name} is not supported"))
                })?),
            };
        Ok(Quantize {
            axis: a.int_or("axis", 1)?,
            output,
        })
    }

    /// `y = saturate(round_half_even(x / scale) + zero_point)`, the division in float32.
    pub fn run(&self, inputs: &[Option<&Tensor>]) -> OpResult<Tensor> {
        let x = req(inputs, 0)?;
        let Data::F32(xv) = x.data() else {
            return unsupported(format!("quantizing {} is not supported", x.dtype()));
        };
        let scale = scales(req(inputs, 1)?)?;
        let zp_tensor = opt(inputs, 2);
        let target = match (zp_tensor.map(Tensor::dtype), self.output) {
            (Some(z), Some(o)) if z != o => {
                return invalid(format!(
                    "output_dtype {o} differs from the zero point's {z}"
                ))
            }
            (Some(z), _) => z,
            (None, Some(o)) => o,
            (None, None) => DataType::U8,
        };
        let zp = zero_points(zp_tensor, scale.len())?;
        let which = per_element_index(x, scale.len(), self.axis)?;
        let q = |i: usize, v: f32, lo: i32, hi: i32| -> i32 {
            let j = which(i);
            let r = (v / scale[j]).round_ties_even();
            // `as i32` saturates (NaN -> 0), then the zero point shifts and the range clamps.
            (r as i32)
                .saturating_add(zp.as_ref().map_or(0, |z| z[j]))
                .clamp(lo, hi)
        };
        macro_rules! go {
            ($variant:ident, $t:ty) => {
                Data::$variant(
                    xv.iter()
                        .enumerate()
                        .map(|(i, &v)| q(i, v, <$t>::MIN as i32, <$t>::MAX as i32) as $t)
                        .collect(),
                )
            };
        }
        let data = match target {
            DataType::U8 => go!(U8, u8),
            DataType::I8 => go!(I8, i8),
            DataType::U16 => go!(U16, u16),
            DataType::I16 => go!(I16, i16),
            other => return unsupported(format!("quantizing to {other} is not supported")),
        };
        Ok(Tensor::from_parts(x.shape().to_vec(), data))
    }
}

#[derive(Debug, Clone)]
pub(crate) struct Dequantize {
    axis: i64,
}

impl Dequantize {
    pub fn parse(a: &Attrs) -> OpResult<Dequantize> {
        reject_blocks(a)?;
        if a.int_or("output_dtype", 0)? != 0 {
            return unsupported("the output_dtype attribute is not supported");
        }
        Ok(Dequantize {
            axis: a.int_or("axis", 1)?,
        })
    }

    /// `y = (float(x) - float(zero_point)) * scale`, in float32.
    pub fn run(&self, inputs: &[Option<&Tensor>]) -> OpResult<Tensor> {
        let x = req(inputs, 0)?;
        let scale = scales(req(inputs, 1)?)?;
        if let Some(z) = opt(inputs, 2) {
            if z.dtype() != x.dtype() {
                return invalid(format!(
                    "zero point is {}, input is {}",
                    z.dtype(),
                    x.dtype()
                ));
            }
        }
        let zp = zero_points(opt(inputs, 2), scale.len())?;
        let which = per_element_index(x, scale.len(), self.axis)?;
        let Some(widened) = widen_i32(x.data()) else {
            return unsupported(format!("dequantizing {} is not supported", x.dtype()));
        };
        let out = widened
            .iter()
            .enumerate()
            .map(|(i, &v)| {
                let j = which(i);
                let z = zp.as_ref().map_or(0.0, |z| z[j] as f32);
                (v as f32 - z) * scale[j]
            })
            .collect();
        Ok(Tensor::from_parts(x.shape().to_vec(), Data::F32(out)))
    }
}

/// DynamicQuantizeLinear: uint8 quantization with the scale and zero point computed from the
/// input's range (widened to include 0), as `onnxruntime.quantization.quantize_dynamic` models
/// use before each MatMulInteger: `scale = (max - min) / 255` (1/255 when the range is empty),
/// `zero_point = round_half_even(clamp(-min / scale, 0, 255))`,
/// `y = clamp(round_half_even(x / scale) + zero_point, 0, 255)`, all in float32.
pub(crate) fn dynamic_quantize(x: &Tensor) -> OpResult<Vec<Tensor>> {
    let Data::F32(v) = x.data() else {
        return unsupported(format!(
            "DynamicQuantizeLinear of {} is not supported",
            x.dtype()
        ));
    };
    if let Some(i) = v.iter().position(|e| !e.is_finite()) {
        return invalid(format!(
            "DynamicQuantizeLinear of a non-finite value ({} at flat index {i})",
            v[i]
        ));
    }
    let (y, scale, zero_point) = quantize_dynamic(v);
    Ok(vec![
        Tensor::from_parts(x.shape().to_vec(), Data::U8(y)),
        Tensor::from_parts(vec![], Data::F32(vec![scale])),
        Tensor::from_parts(vec![], Data::U8(vec![zero_point as u8])),
    ])
}

/// DynamicQuantizeLinear's arithmetic: `(y, scale, zero_point)` for finite `v`.
fn quantize_dynamic(v: &[f32]) -> (Vec<u8>, f32, f32) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU supports AVX2, checked just above.
        return unsafe { quantize_dynamic_avx2(v) };
    }
    quantize_dynamic_body(v)
}

/// The same code compiled for AVX2, where rounding to even is an instruction rather than a call
/// to the C library's `rintf` (each exact, so the bits are the same).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn quantize_dynamic_avx2(v: &[f32]) -> (Vec<u8>, f32, f32) {
    quantize_dynamic_body(v)
}

#[inline(always)]
fn quantize_dynamic_body(v: &[f32]) -> (Vec<u8>, f32, f32) {
    let max = v.iter().fold(0f32, |m, &e| m.max(e));
    let min = v.iter().fold(0f32, |m, &e| m.min(e));
    let scale = if max == min { 1.0 } else { max - min } / 255.0;
    let zero_point = (-min / scale).clamp(0.0, 255.0).round_ties_even();
    let y = v
        .iter()
        .map(|&e| ((e / scale).round_ties_even() + zero_point).clamp(0.0, 255.0) as u8)
        .collect();
    (y, scale, zero_point)
}
