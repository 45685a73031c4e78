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

/// A window extent that did not overflow and stays within [`crate::tensor::MAX_ELEMENTS`];
/// `why` names it otherwise.
fn within_limit(extent: Option<usize>, why: impl FnOnce() -> String) -> OpResult<usize> {
    extent
        .filter(|&n| n <= crate::tensor::MAX_ELEMENTS)
        .ok_or_else(|| super::OpError::Invalid(why()))
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
            let span = within_limit(
                (kernel[d] - 1)
                    .checked_mul(dilations[d])
                    .and_then(|n| n.checked_add(1)),
                || {
                    format!(
                        "kernel {} dilated by {} is too large",
                        kernel[d], dilations[d]
                    )
                },
            )?;
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
                    let padded = within_limit(
                        len.checked_add(pads_begin[d])
                            .and_then(|n| n.checked_add(pads_end[d])),
                        || {
                            format!(
                                "pads {} and {} around dimension {d} of size {len} are too large",
                                pads_begin[d], pads_end[d]
                            )
                        },
                    )?;
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

/// Windows over at most three spatial dimensions, as lookup tables: for each dimension,
/// output position and kernel tap, the input coordinate (or `None` in padding), plus whether the
/// tap lies within the declared padding (for AveragePool's `count_include_pad`). Lower ranks
/// are lifted to 3-D with leading dimensions of size one.
pub(crate) struct TapTables {
    pub dims: [usize; 3],
    pub out: [usize; 3],
    pub kernel: [usize; 3],
    /// `taps[d][o * kernel[d] + t]`
    pub taps: [Vec<Option<usize>>; 3],
    in_padded: [Vec<bool>; 3],
}

impl TapTables {
    pub fn new(w: &Window, spatial: &[usize]) -> OpResult<TapTables> {
        let rank = spatial.len();
        if rank == 0 || rank > 3 {
            return unsupported(format!(
                "windows over {rank} spatial dimensions (1 to 3 are supported)"
            ));
        }
        let lift = |v: &[usize]| -> [usize; 3] {
            let mut a = [1; 3];
            a[3 - rank..].copy_from_slice(v);
            a
        };
        let (dims, out, kernel) = (lift(spatial), lift(&w.out), lift(&w.kernel));
        super::buffer_len(&out)?;
        for d3 in 0..3 {
            super::buffer_len(&[out[d3], kernel[d3]])?;
        }
        let mut taps: [Vec<Option<usize>>; 3] = Default::default();
        let mut in_padded: [Vec<bool>; 3] = Default::default();
        for d3 in 0..3 {
            if d3 < 3 - rank {
                taps[d3] = vec![Some(0)];
                in_padded[d3] = vec![true];
                continue;
            }
            let d = d3 - (3 - rank);
            for o in 0..out[d3] {
                for t in 0..kernel[d3] {
                    taps[d3].push(w.tap(d, o, t, spatial[d]));
                    in_padded[d3].push(w.in_padded(d, o, t, spatial[d]));
                }
            }
        }
        Ok(TapTables {
            dims,
            out,
            kernel,
            taps,
            in_padded,
        })
    }

    /// Calls `f(output index, taps)` for every output position in row-major order, where `taps`
    /// holds `(flat input offset or None, within declared padding)` in row-major tap order.
    fn each_window(&self, mut f: impl FnMut(usize, &[(Option<usize>, bool)])) {
        let [_, h, w] = self.dims;
        let [kd, kh, kw] = self.kernel;
        let mut buf = Vec::with_capacity(kd * kh * kw);
        let mut index = 0;
        for od in 0..self.out[0] {
            for oh in 0..self.out[1] {
                for ow in 0..self.out[2] {
                    buf.clear();
                    for td in od * kd..(od + 1) * kd {
                        for th in oh * kh..(oh + 1) * kh {
                            for tw in ow * kw..(ow + 1) * kw {
                                let offset =
                                    match (self.taps[0][td], self.taps[1][th], self.taps[2][tw]) {
                                        (Some(a), Some(b), Some(c)) => Some((a * h + b) * w + c),
                                        _ => None,
                                    };
                                let padded = self.in_padded[0][td]
                                    && self.in_padded[1][th]
                                    && self.in_padded[2][tw];
                                buf.push((offset, padded));
                            }
                        }
                    }
                    f(index, &buf);
                    index += 1;
                }
            }
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
        let tables = TapTables::new(&w, spatial)?;
        let planes = x.shape()[0] * x.shape()[1];
        let mut out_shape = x.shape()[..2].to_vec();
        out_shape.extend_from_slice(&w.out);
        super::buffer_len(&out_shape)?;
        if self.max {
            macro_rules! max {
                ($($variant:ident),*) => {
                    match x.data() {
                        $(Data::$variant(v) => {
                            let (vals, idx) = max_pool(v, planes, &tables);
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
            Data::F32(self.average(v, planes, &tables)),
        )])
    }

    fn average(&self, v: &[f32], planes: usize, t: &TapTables) -> Vec<f32> {
        let plane_len: usize = t.dims.iter().product();
        let per_plane: usize = t.out.iter().product();
        let mut out = vec![0f32; planes * per_plane];
        for p in 0..planes {
            let plane = &v[p * plane_len..(p + 1) * plane_len];
            let dst = &mut out[p * per_plane..(p + 1) * per_plane];
            t.each_window(|i, taps| {
                let (mut sum, mut count, mut padded_count) = (0f32, 0u32, 0u32);
                for &(offset, in_padded) in taps {
                    if let Some(o) = offset {
                        sum += plane[o];
                        count += 1;
                    }
                    padded_count += in_padded as u32;
                }
                let divisor = if self.count_include_pad {
                    padded_count
                } else {
                    count
                };
                dst[i] = sum / divisor as f32;
            });
        }
        out
    }
}

fn max_pool<T: PartialOrd + Copy + Default>(
    v: &[T],
    planes: usize,
    t: &TapTables,
) -> (Vec<T>, Vec<i64>) {
    let plane_len: usize = t.dims.iter().product();
    let per_plane: usize = t.out.iter().product();
    let (mut vals, mut idx) = (
        vec![T::default(); planes * per_plane],
        vec![0i64; planes * per_plane],
    );
    // The windows' input offsets, the same in every plane: listed once, not per plane.
    let (mut offsets, mut ends) = (Vec::new(), Vec::with_capacity(per_plane));
    t.each_window(|_, taps| {
        offsets.extend(taps.iter().filter_map(|&(o, _)| o));
        ends.push(offsets.len());
    });
    for p in 0..planes {
        let base = p * plane_len;
        let plane = &v[base..base + plane_len];
        let mut start = 0;
        for (i, &end) in ends.iter().enumerate() {
            // The first largest tap; every window overlaps the input (Window::resolve
            // guarantees it), so the 0 of an empty one is never used.
            let window = &offsets[start..end];
            let mut best = window.first().copied().unwrap_or(0);
            for &o in window.iter().skip(1) {
                if plane[o] > plane[best] {
                    best = o;
                }
            }
            vals[p * per_plane + i] = plane[best];
            idx[p * per_plane + i] = (base + best) as i64;
            start = end;
        }
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
