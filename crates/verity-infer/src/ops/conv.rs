//! Conv (1-D and 2-D, grouped, strided, dilated, padded) as im2col + the shared matrix kernel.
//!
//! Each output element is `(sum over input channel c, kernel row y, kernel column x in that
//! order of w * input) + bias`: the column matrix lays taps out in (c, y, x) order and the matrix
//! kernel accumulates them in ascending order. Padding taps contribute `w * 0`.

use super::pool::{TapTables, Window, WindowAttrs};
use super::{invalid, opt, req, unsupported, Attrs, Ctx, OpResult};
use crate::kernels::gemm_f32;
use crate::tensor::{Data, Tensor};

#[derive(Debug, Clone)]
pub(crate) struct Conv {
    window: WindowAttrs,
    group: usize,
}

impl Conv {
    pub fn parse(a: &Attrs) -> OpResult<Conv> {
        let window = WindowAttrs::parse(a)?;
        if window.ceil_mode {
            return invalid("Conv has no ceil_mode");
        }
        let group = a.int_or("group", 1)?;
        if group < 1 {
            return invalid(format!("group {group} must be positive"));
        }
        Ok(Conv {
            window,
            group: group as usize,
        })
    }

    pub fn run(&self, ctx: Ctx, inputs: &[Option<&Tensor>]) -> OpResult<Tensor> {
        let (x, w) = (req(inputs, 0)?, req(inputs, 1)?);
        let (Data::F32(xv), Data::F32(wv)) = (x.data(), w.data()) else {
            return unsupported(format!("Conv on {} and {}", x.dtype(), w.dtype()));
        };
        let spatial_rank = x.rank().saturating_sub(2);
        if !(1..=2).contains(&spatial_rank) || w.rank() != x.rank() {
            return unsupported(format!(
                "Conv over input {:?} with weights {:?} (1-D and 2-D convolutions are supported)",
                x.shape(),
                w.shape()
            ));
        }
        let (n, c) = (x.shape()[0], x.shape()[1]);
        let (m, cg) = (w.shape()[0], w.shape()[1]);
        let g = self.group;
        if c != cg * g || m % g != 0 {
            return invalid(format!(
                "input channels {c} and weights {:?} do not fit group {g}",
                w.shape()
            ));
        }
        let win = Window::resolve(&self.window, &x.shape()[2..], Some(&w.shape()[2..]))?;
        if win.kernel != w.shape()[2..] {
            return invalid(format!(
                "kernel_shape {:?} does not match weights {:?}",
                win.kernel,
                w.shape()
            ));
        }
        let bias = match opt(inputs, 2) {
            None => None,
            Some(b) => match b.data() {
                Data::F32(bv) if bv.len() == m => Some(bv),
                _ => {
                    return invalid(format!(
                        "bias must be float32 [{m}], got {} {:?}",
                        b.dtype(),
                        b.shape()
                    ))
                }
            },
        };
        // 1-D convolutions are lifted to 2-D with a height of one (depth is always one here).
        let taps = TapTables::new(&win, &x.shape()[2..])?;
        let [_, h, wd] = taps.dims;
        let [_, kh, kw] = taps.kernel;
        let [_, oh, ow] = taps.out;
        let (mg, k, p) = (m / g, cg * kh * kw, oh * ow);
        let mut cols = vec![0f32; super::buffer_len(&[k, p])?];
        let mut out = vec![0f32; super::buffer_len(&[n, m, p])?];
        for b in 0..n {
            for gi in 0..g {
                for ic in 0..cg {
                    let plane = &xv[((b * c) + gi * cg + ic) * h * wd..][..h * wd];
                    for ky in 0..kh {
                        for kx in 0..kw {
                            let row = &mut cols[((ic * kh + ky) * kw + kx) * p..][..p];
                            for oy in 0..oh {
                                let dst = &mut row[oy * ow..(oy + 1) * ow];
                                let Some(iy) = taps.taps[1][oy * kh + ky] else {
                                    dst.fill(0.0);
                                    continue;
                                };
                                let src = &plane[iy * wd..(iy + 1) * wd];
                                for (ox, d) in dst.iter_mut().enumerate() {
                                    *d = taps.taps[2][ox * kw + kx].map_or(0.0, |ix| src[ix]);
                                }
                            }
                        }
                    }
                }
                let weights = &wv[gi * mg * k..(gi + 1) * mg * k];
                let dst = &mut out[(b * m + gi * mg) * p..(b * m + (gi + 1) * mg) * p];
                gemm_f32(ctx, mg, k, p, weights, &cols, dst);
            }
        }
        if let Some(bias) = bias {
            for (i, row) in out.chunks_mut(p.max(1)).enumerate() {
                let bv = bias[i % m];
                row.iter_mut().for_each(|v| *v += bv);
            }
        }
        let mut shape = vec![n, m];
        shape.extend_from_slice(&win.out);
        Ok(Tensor::from_parts(shape, Data::F32(out)))
    }
}
