//! Sliding-window geometry (shared with Conv), MaxPool, AveragePool and GlobalAveragePool.

use super::{invalid, unsupported, Attrs, OpResult};
use crate::tensor::{Data, Tensor};

/// Window attributes as written on the node; resolved against an input by [`Window::resolve`].
#[derive(Debug, Clone)]
pub(crate) struct WindowAttrs {
    pub auto_pad: String,
    pub kernel: Option<Vec<i64>>,
    pub strides: Option<Vec<i64>>,
    pub dilations: Option<Vec<i64>>,
    pub pads: Option<Vec<i64>>,
    pub ceil_mode: bool,
}

impl WindowAttrs {
    pub fn parse(a: &Attrs) -> OpResult<WindowAttrs> {
        let auto_pad = a.string_or("auto_pad", "NOTSET")?;
        if !matches!(
            auto_pad.as_str(),
            "NOTSET" | "VALID" | "SAME_UPPER" | "SAME_LOWER"
        ) {
            return invalid(format!(
                "auto_pad {auto_pad:?} is not one of NOTSET, VALID, SAME_UPPER, SAME_LOWER"
            ));
        }
        Ok(WindowAttrs {
            auto_pad,
            kernel: a.ints("kernel_shape")?,
            strides: a.ints("strides")?,
            dilations: a.ints("dilations")?,
            pads: a.ints("pads")?,
            ceil_mode: a.int_or("ceil_mode", 0)? != 0,
        })
    }
}

/// A window resolved against the spatial dimensions of one input.
#[derive(Debug, Clone)]
pub(crate) struct Window {
    pub kernel: Vec<usize>,
    pub strides: Vec<usize>,
    pub dilations: Vec<usize>,
    pub pads_begin: Vec<usize>,
    pub pads_end: Vec<usize>,
    pub out: Vec<usize>,
}

fn positive(v: &Option<Vec<i64>>, rank: usize, what: &str) -> OpResult<Vec<usize>> {
    match v {
        None => Ok(vec![1; rank]),
        Some(v) if v.len() == rank && v.iter().all(|&x| x > 0) => {
            Ok(v.iter().map(|&x| x as usize).collect())
        }
        Some(v) => invalid(format!("{what} {v:?} must hold {rank} positive values")),
    }
}

impl Window {
    /// Resolves `attrs` for `input` spatial dimensions, using `kernel` where the node gives no
    /// kernel_shape (Conv infers it from the weights).
    pub fn resolve(
        attrs: &WindowAttrs,
        input: &[usize],
        kernel: Option<&[usize]>,
    ) -> OpResult<Window> {
        let rank = input.len();
        let kernel = match (&attrs.kernel, kernel) {
            (Some(k), _) => positive(&Some(k.clone()), rank, "kernel_shape")?,
            (None, Some(k)) => k.to_vec(),
            (None, None) => return invalid("kernel_shape is required"),
        };
        if kernel.len() != rank {
            return invalid(format!(
                "kernel {kernel:?} does not match {rank} spatial dimensions"
            ));
        }
        let strides = positive(&attrs.strides, rank, "strides")?;
        let dilations = positive(&attrs.dilations, rank, "dilations")?;
        let (mut pads_begin, mut pads_end) = (vec![0; rank], vec![0; rank]);
        let mut out = vec![0; rank];
        for d in 0..rank {
            let span = (kernel[d] - 1) * dilations[d] + 1;
            let (s, len) = (strides[d], input[d]);
            match attrs.auto_pad.as_str() {
                "SAME_UPPER" | "SAME_LOWER" => {
                    out[d] = len.div_ceil(s);
                    let total = ((out[d].max(1) - 1) * s + span).saturating_sub(len);
                    let small = total / 2;
                    (pads_begin[d], pads_end[d]) = if attrs.auto_pad == "SAME_UPPER" {
                        (small, total - small)
                    } else {
                        (total - small, small)
                    };
                }
                mode => {
                    if mode == "NOTSET" {
                        if let Some(p) = &attrs.pads {
                            if p.len() != 2 * rank || p.iter().any(|&x| x < 0) {
                                return invalid(format!(
                                    "pads {p:?} must hold {} non-negative values",
                                    2 * rank
                                ));
                            }
                            (pads_begin[d], pads_end[d]) = (p[d] as usize, p[d + rank] as usize);
                        }
                    }
                    let padded = len + pads_begin[d] + pads_end[d];
                    if padded < span {
                        return invalid(format!(
                            "window of {span} does not fit in dimension {d} of size {padded} (padded)"
                        ));
                    }
                    out[d] = if attrs.ceil_mode {
                        let o = (padded - span).div_ceil(s) + 1;
                        // The last window must start inside the input or its leading padding.
                        if (o - 1) * s >= len + pads_begin[d] {
                            o - 1
                        } else {
                            o
                        }
                    } else {
                        (padded - span) / s + 1
                    };
                }
            }
        }
        Ok(Window {
            kernel,
            strides,
            dilations,
            pads_begin,
            pads_end,
            out,
        })
    }

    /// The input coordinate of kernel tap `t` for output position `o` along `d`, if inside.
    #[inline]
    pub fn tap(&self, d: usize, o: usize, t: usize, len: usize) -> Option<usize> {
        let pos =
            (o * self.strides[d] + t * self.dilations[d]) as isize - self.pads_begin[d] as isize;
        (pos >= 0 && (pos as usize) < len).then_some(pos as usize)
    }

    /// Whether tap `t` of output `o` along `d` lies within the input plus its declared padding.
    fn in_padded(&self, d: usize, o: usize, t: usize, len: usize) -> bool {
        o * self.strides[d] + t * self.dilations[d] < self.pads_begin[d] + len + self.pads_end[d]
    }
}

/// Calls `f` with every multi-index in `0..dims` in row-major order.
fn for_each_index(dims: &[usize], mut f: impl FnMut(&[usize])) {
    if dims.contains(&0) {
        return;
    }
    let mut idx = vec![0; dims.len()];
    loop {
        f(&idx);
        let mut d = dims.len();
        loop {
            if d == 0 {
                return;
            }
            d -= 1;
            idx[d] += 1;
            if idx[d] < dims[d] {
                break;
            }
            idx[d] = 0;
        }
    }
}

#[derive(Debug, Clone)]
pub(crate) struct Pool {
    window: WindowAttrs,
    /// AveragePool: whether padded positions count in the divisor.
    count_include_pad: bool,
    max: bool,
}

impl Pool {
    pub fn parse(a: &Attrs, max: bool) -> OpResult<Pool> {
        let window = WindowAttrs::parse(a)?;
        if window.kernel.is_none() {
            return invalid("kernel_shape is required");
        }
        let count_include_pad = if max {
            if a.int_or("storage_order", 0)? != 0 {
                return unsupported("storage_order=1 (column-major indices) is not supported");
            }
            false
        } else {
            a.int_or("count_include_pad", 0)? != 0
        };
        Ok(Pool {
            window,
            count_include_pad,
            max,
        })
    }

    /// MaxPool returns the values and the flat input index of each maximum (first one wins);
    /// AveragePool sums each window in row-major tap order, then divides by the tap count.
    pub fn run(&self, x: &Tensor) -> OpResult<Vec<Tensor>> {
        if x.rank() < 3 {
            return invalid(format!(
                "pooling needs [N, C, spatial...], got {:?}",
                x.shape()
            ));
        }
        let spatial = &x.shape()[2..];
        let w = Window::resolve(&self.window, spatial, None)?;
        let planes = x.shape()[0] * x.shape()[1];
        let mut out_shape = x.shape()[..2].to_vec();
        out_shape.extend_from_slice(&w.out);
        if self.max {
            macro_rules! max {
                ($($variant:ident),*) => {
                    match x.data() {
                        $(Data::$variant(v) => {
                            let (vals, idx) = max_pool(v, planes, spatial, &w);
                            (Data::$variant(vals), idx)
                        })*
                        _ => return unsupported(format!("MaxPool on {}", x.dtype())),
                    }
                };
            }
            let (vals, idx) = max!(F32, F64, I8, U8);
            return Ok(vec![
                Tensor::from_parts(out_shape.clone(), vals),
                Tensor::from_parts(out_shape, Data::I64(idx)),
            ]);
        }
        let Data::F32(v) = x.data() else {
            return unsupported(format!("AveragePool on {}", x.dtype()));
        };
        Ok(vec![Tensor::from_parts(
            out_shape,
            Data::F32(self.average(v, planes, spatial, &w)),
        )])
    }

    fn average(&self, v: &[f32], planes: usize, spatial: &[usize], w: &Window) -> Vec<f32> {
        let plane_len: usize = spatial.iter().product();
        let mut out = Vec::with_capacity(planes * w.out.iter().product::<usize>());
        let strides = row_strides(spatial);
        for p in 0..planes {
            let plane = &v[p * plane_len..(p + 1) * plane_len];
            for_each_index(&w.out, |o| {
                let (mut sum, mut count, mut padded_count) = (0f32, 0u32, 0u32);
                for_each_index(&w.kernel, |t| {
                    let mut offset = 0;
                    let mut inside = true;
                    let mut in_padded = true;
                    for d in 0..spatial.len() {
                        match w.tap(d, o[d], t[d], spatial[d]) {
                            Some(pos) => offset += pos * strides[d],
                            None => inside = false,
                        }
                        in_padded &= w.in_padded(d, o[d], t[d], spatial[d]);
                    }
                    if inside {
                        sum += plane[offset];
                        count += 1;
                    }
                    padded_count += in_padded as u32;
                });
                let divisor = if self.count_include_pad {
                    padded_count
                } else {
                    count
                };
                out.push(sum / divisor as f32);
            });
        }
        out
    }
}

fn row_strides(dims: &[usize]) -> Vec<usize> {
    let mut s = vec![1; dims.len()];
    for d in (0..dims.len().saturating_sub(1)).rev() {
        s[d] = s[d + 1] * dims[d + 1];
    }
    s
}

fn max_pool<T: PartialOrd + Copy>(
    v: &[T],
    planes: usize,
    spatial: &[usize],
    w: &Window,
) -> (Vec<T>, Vec<i64>) {
    let plane_len: usize = spatial.iter().product();
    let n_out = planes * w.out.iter().product::<usize>();
    let (mut vals, mut idx) = (Vec::with_capacity(n_out), Vec::with_capacity(n_out));
    let strides = row_strides(spatial);
    for p in 0..planes {
        let base = p * plane_len;
        for_each_index(&w.out, |o| {
            let mut best: Option<usize> = None;
            for_each_index(&w.kernel, |t| {
                let mut offset = 0;
                for d in 0..spatial.len() {
                    match w.tap(d, o[d], t[d], spatial[d]) {
                        Some(pos) => offset += pos * strides[d],
                        None => return,
                    }
                }
                if best.is_none_or(|b| v[base + offset] > v[base + b]) {
                    best = Some(offset);
                }
            });
            // Every output window overlaps the input (Window::resolve guarantees it).
            let b = best.unwrap_or(0);
            vals.push(v[base + b]);
            idx.push((base + b) as i64);
        });
    }
    (vals, idx)
}

/// Mean over all spatial positions of each channel: a left-to-right sum, then one division.
pub(crate) fn global_average(x: &Tensor) -> OpResult<Tensor> {
    if x.rank() < 3 {
        return invalid(format!(
            "GlobalAveragePool needs [N, C, spatial...], got {:?}",
            x.shape()
        ));
    }
    let Data::F32(v) = x.data() else {
        return unsupported(format!("GlobalAveragePool on {}", x.dtype()));
    };
    let plane: usize = x.shape()[2..].iter().product();
    let out: Vec<f32> = if plane == 0 {
        vec![f32::NAN; x.shape()[0] * x.shape()[1]]
    } else {
        v.chunks(plane)
            .map(|c| c.iter().fold(0f32, |s, &e| s + e) / plane as f32)
            .collect()
    };
    let mut shape = x.shape()[..2].to_vec();
    shape.extend(std::iter::repeat_n(1, x.rank() - 2));
    Ok(Tensor::from_parts(shape, Data::F32(out)))
}
