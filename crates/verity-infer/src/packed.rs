//! Constant weights of matrix products, packed once when the model loads.
//!
//! A float32 weight `B` (`k×n`, or `n×k` for Gemm's `transB`) is stored as strips of [`NR`]
//! columns, each strip `k×NR` values laid out row after row (the last strip padded with zeros),
//! which is the panel the float32 kernel reads. A byte weight of MatMulInteger is stored as
//! strips of [`NR`] columns too, each strip a run of k-pairs: for rows `2p` and `2p + 1`, 32
//! bytes `b[2p][j], b[2p+1][j]` for the strip's 16 columns j, which widen straight into the
//! 16-bit pairs `vpmaddwd` multiplies (an odd k gets a zero row). A decode step then reads every weight once, front to
//! back in one stream, instead of a few rows of a row-major matrix at a time or, for a tied
//! embedding used as the output projection, eight rows through register transposes. All the
//! packed weights of a model share one allocation aligned to a huge page and advised onto
//! transparent huge pages on Linux. Packing moves values only, so every product keeps the bits
//! the kernel's documented order gives.

use std::alloc::{alloc_zeroed, dealloc, Layout};
use std::ptr::NonNull;
use std::sync::Arc;

use crate::kernels::NR;
use crate::tensor::{Data, Tensor};

/// Alignment of the packed weights: a transparent huge page.
const HUGE_PAGE: usize = 2 << 20;
/// Each matrix starts on a cache line.
const LINE: usize = 64;

/// One zeroed, huge-page-aligned allocation that holds every packed weight of a model.
struct Arena {
    ptr: NonNull<u8>,
    len: usize,
    layout: Option<Layout>,
}

// SAFETY: the arena owns its allocation; it is written only through `&mut self` while the
// model loads and only read once shared.
unsafe impl Send for Arena {}
// SAFETY: as above: shared references only read.
unsafe impl Sync for Arena {}

impl Arena {
    /// Room for `len` bytes, all zero; `None` if the allocation fails.
    fn zeroed(len: usize) -> Option<Arena> {
        if len == 0 {
            return Some(Arena {
                ptr: NonNull::dangling(),
                len: 0,
                layout: None,
            });
        }
        let layout = Layout::from_size_align(len.next_multiple_of(HUGE_PAGE), HUGE_PAGE).ok()?;
        // SAFETY: the layout has a non-zero size.
        let ptr = NonNull::new(unsafe { alloc_zeroed(layout) })?;
        #[cfg(target_os = "linux")]
        // SAFETY: the range is this allocation, which nothing else uses; MADV_HUGEPAGE changes
        // how its pages are backed, never its contents, and failure (no THP) is harmless.
        unsafe {
            libc::madvise(ptr.as_ptr().cast(), layout.size(), libc::MADV_HUGEPAGE);
        }
        Some(Arena {
            ptr,
            len,
            layout: Some(layout),
        })
    }

    /// `count` values of `T` from byte `offset`, a multiple of [`LINE`].
    fn view<T: Plain>(&self, offset: usize, count: usize) -> &[T] {
        if count == 0 {
            return &[]; // an empty arena's pointer is dangling, and not aligned for T
        }
        assert!(
            offset.is_multiple_of(LINE) && offset + count * std::mem::size_of::<T>() <= self.len
        );
        // SAFETY: in bounds (asserted); aligned, as the base is and the offset is a multiple of
        // 64; every byte is initialized (zeroed, then written) and any bytes are a valid `T`.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr().add(offset).cast(), count) }
    }

    fn view_mut<T: Plain>(&mut self, offset: usize, count: usize) -> &mut [T] {
        if count == 0 {
            return &mut [];
        }
        assert!(
            offset.is_multiple_of(LINE) && offset + count * std::mem::size_of::<T>() <= self.len
        );
        // SAFETY: as in `view`, and `&mut self` makes the access unique.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr().add(offset).cast(), count) }
    }
}

/// Types for which every bit pattern is a value, aligned to at most 64 bytes.
trait Plain: Copy {}
impl Plain for f32 {}
impl Plain for u8 {}

impl Drop for Arena {
    fn drop(&mut self) {
        if let Some(layout) = self.layout {
            // SAFETY: allocated in `zeroed` with this very layout.
            unsafe { dealloc(self.ptr.as_ptr(), layout) };
        }
    }
}

/// How a weight is packed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Packing {
    /// float32, stored `k×n`, or `n×k` (`transposed`: Gemm's `transB`).
    Float { transposed: bool },
    /// uint8 or int8 (`signed`), stored `k×n`: MatMulInteger's B.
    Bytes { signed: bool },
}

/// Where one packed weight lies in its arena, and how it was stored.
#[derive(Debug, Clone, Copy)]
struct Placement {
    offset: usize,
    k: usize,
    n: usize,
    packing: Packing,
}

impl Placement {
    /// Bytes a packed `k×n` weight takes.
    fn bytes(k: usize, n: usize, packing: Packing) -> Option<usize> {
        let strips = n.div_ceil(NR);
        match packing {
            Packing::Float { .. } => strips.checked_mul(k)?.checked_mul(NR * 4),
            Packing::Bytes { .. } => strips.checked_mul(k.div_ceil(2))?.checked_mul(2 * NR),
        }
    }
}

/// Lays out the weights to pack in one arena, then packs them there one at a time, so that a
/// model's weights are never held twice while it loads.
pub(crate) struct Packer {
    placements: Vec<Placement>,
    len: usize,
    arena: Option<Arena>,
}

impl Packer {
    pub fn new() -> Packer {
        Packer {
            placements: Vec::new(),
            len: 0,
            arena: None,
        }
    }

    /// Reserves room for a `k×n` weight packed as `packing` and returns its index; `None` if
    /// the sizes overflow.
    pub fn reserve(&mut self, k: usize, n: usize, packing: Packing) -> Option<usize> {
        let offset = self.len.checked_next_multiple_of(LINE)?;
        self.len = offset.checked_add(Placement::bytes(k, n, packing)?)?;
        self.placements.push(Placement {
            offset,
            k,
            n,
            packing,
        });
        Some(self.placements.len() - 1)
    }

    /// Packs weight `index` from `tensor`, which must have the shape and type it was reserved
    /// with.
    pub fn pack(&mut self, index: usize, tensor: &Tensor) -> Result<(), String> {
        if self.arena.is_none() {
            self.arena = Some(Arena::zeroed(self.len).ok_or_else(|| {
                format!("cannot allocate {} MB of packed weights", self.len >> 20)
            })?);
        }
        let p = self.placements[index];
        let (k, n) = (p.k, p.n);
        let expected = match p.packing {
            Packing::Float { transposed: true } => [n, k],
            _ => [k, n],
        };
        if tensor.shape() != expected {
            return Err(format!(
                "weight of shape {:?} packed as {expected:?}",
                tensor.shape()
            ));
        }
        let arena = self.arena.as_mut().expect("allocated above");
        match (p.packing, tensor.data()) {
            (Packing::Float { transposed }, Data::F32(values)) => {
                if k == 0 {
                    return Ok(()); // nothing to multiply by: every product is zero
                }
                let out = arena.view_mut::<f32>(p.offset, n.div_ceil(NR) * k * NR);
                if transposed {
                    crate::kernels::pack_transposed(k, n, values, out);
                } else {
                    for (s, strip) in out.chunks_exact_mut(k * NR).enumerate() {
                        let (j, w) = (s * NR, NR.min(n - s * NR));
                        for (kk, row) in strip.chunks_exact_mut(NR).enumerate() {
                            row[..w].copy_from_slice(&values[kk * n + j..kk * n + j + w]);
                        }
                    }
                }
            }
            (Packing::Bytes { signed: false }, Data::U8(values)) => {
                pack_pairs(k, n, values, arena.view_mut(p.offset, pair_bytes(k, n)))
            }
            (Packing::Bytes { signed: true }, Data::I8(values)) => {
                let values: Vec<u8> = values.iter().map(|&v| v as u8).collect();
                pack_pairs(k, n, &values, arena.view_mut(p.offset, pair_bytes(k, n)))
            }
            (packing, _) => {
                return Err(format!(
                    "a {} weight cannot be packed as {packing:?}",
                    tensor.dtype()
                ))
            }
        }
        Ok(())
    }

    /// The packed weights, in the order they were reserved.
    pub fn finish(self) -> Vec<Arc<PackedMatrix>> {
        let arena = Arc::new(
            self.arena
                .unwrap_or_else(|| Arena::zeroed(0).expect("an empty arena needs no memory")),
        );
        self.placements
            .into_iter()
            .map(|placement| {
                Arc::new(PackedMatrix {
                    arena: arena.clone(),
                    placement,
                })
            })
            .collect()
    }
}

/// Bytes of a `k×n` byte weight packed in k-pairs.
fn pair_bytes(k: usize, n: usize) -> usize {
    n.div_ceil(NR) * k.div_ceil(2) * 2 * NR
}

/// `out[s][p][2x + h] = b[2p + h][NR·s + x]`, zero past the matrix (see the module header).
fn pack_pairs(k: usize, n: usize, b: &[u8], out: &mut [u8]) {
    let pairs = k.div_ceil(2);
    for kk in 0..k {
        let (p, h) = (kk / 2, kk % 2);
        for (j, &v) in b[kk * n..(kk + 1) * n].iter().enumerate() {
            out[((j / NR) * pairs + p) * 2 * NR + 2 * (j % NR) + h] = v;
        }
    }
}

/// A packed constant weight: the `k×n` right operand of a product.
pub(crate) struct PackedMatrix {
    arena: Arc<Arena>,
    placement: Placement,
}

impl PackedMatrix {
    pub fn k(&self) -> usize {
        self.placement.k
    }

    pub fn n(&self) -> usize {
        self.placement.n
    }

    pub fn packing(&self) -> Packing {
        self.placement.packing
    }

    /// A float32 weight's strips, `k×NR` values each, `ceil(n / NR)` of them; empty for a byte
    /// weight.
    pub fn strips(&self) -> &[f32] {
        let p = self.placement;
        match p.packing {
            Packing::Float { .. } => self.arena.view(p.offset, p.n.div_ceil(NR) * p.k * NR),
            Packing::Bytes { .. } => &[],
        }
    }

    /// A byte weight's strips, `ceil(k / 2)` pairs of `2·NR` bytes each, `ceil(n / NR)` of
    /// them; empty for a float32 weight.
    pub fn pair_strips(&self) -> &[u8] {
        let p = self.placement;
        match p.packing {
            Packing::Bytes { .. } => self.arena.view(p.offset, pair_bytes(p.k, p.n)),
            Packing::Float { .. } => &[],
        }
    }

    /// The weight as the model stores it.
    pub fn unpack(&self) -> Tensor {
        let Placement { k, n, packing, .. } = self.placement;
        match packing {
            Packing::Float { transposed } => {
                let strips = self.strips();
                let mut values = vec![0f32; k * n];
                for j in 0..n {
                    let strip = &strips[(j / NR) * k * NR..];
                    for kk in 0..k {
                        let v = strip[kk * NR + j % NR];
                        if transposed {
                            values[j * k + kk] = v;
                        } else {
                            values[kk * n + j] = v;
                        }
                    }
                }
                let shape = if transposed { vec![n, k] } else { vec![k, n] };
                Tensor::from_parts(shape, Data::F32(values))
            }
            Packing::Bytes { signed } => {
                let (strips, pairs) = (self.pair_strips(), k.div_ceil(2));
                let values = (0..k * n).map(|i| {
                    let (kk, j) = (i / n, i % n);
                    strips[((j / NR) * pairs + kk / 2) * 2 * NR + 2 * (j % NR) + kk % 2]
                });
                let data = if signed {
                    Data::I8(values.map(|v| v as i8).collect())
                } else {
                    Data::U8(values.collect())
                };
                Tensor::from_parts(vec![k, n], data)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn matrix(rows: usize, cols: usize, seed: u32) -> Tensor {
        let values = (0..rows * cols)
            .map(|i| ((i as u32).wrapping_mul(2654435761).wrapping_add(seed) >> 24) as f32 - 100.0)
            .collect();
        Tensor::from_parts(vec![rows, cols], Data::F32(values))
    }

    #[test]
    fn packed_weights_unpack_to_what_was_stored() {
        let mut packer = Packer::new();
        let float = |transposed| Packing::Float { transposed };
        let shapes = [
            (3, 5, float(false)),
            (37, 40, float(true)),
            (16, 16, float(false)),
            (1, 33, float(true)),
            (0, 7, float(false)),
            (7, 19, Packing::Bytes { signed: false }),
            (8, 32, Packing::Bytes { signed: true }),
        ];
        let tensors: Vec<Tensor> = shapes
            .iter()
            .enumerate()
            .map(|(i, &(k, n, packing))| {
                packer.reserve(k, n, packing).unwrap();
                let t = match packing {
                    Packing::Float { transposed: true } => matrix(n, k, i as u32),
                    _ => matrix(k, n, i as u32),
                };
                let Data::F32(values) = t.data() else {
                    unreachable!()
                };
                let data = match packing {
                    Packing::Bytes { signed: false } => {
                        Data::U8(values.iter().map(|&v| (v + 100.0) as u8).collect())
                    }
                    Packing::Bytes { signed: true } => {
                        Data::I8(values.iter().map(|&v| (v * 0.5) as i8).collect())
                    }
                    Packing::Float { .. } => return t,
                };
                Tensor::from_parts(t.shape().to_vec(), data)
            })
            .collect();
        for (i, t) in tensors.iter().enumerate() {
            packer.pack(i, t).unwrap();
        }
        let packed = packer.finish();
        for ((p, t), &(k, n, packing)) in packed.iter().zip(&tensors).zip(&shapes) {
            assert_eq!((p.k(), p.n(), p.packing()), (k, n, packing));
            assert_eq!(&p.unpack(), t);
            let start = match packing {
                Packing::Float { .. } => p.strips().as_ptr() as usize,
                Packing::Bytes { .. } => p.pair_strips().as_ptr() as usize,
            };
            if k > 0 {
                assert_eq!(start % 64, 0, "strips start on a cache line");
            }
        }
    }

    #[test]
    fn a_weight_of_another_shape_or_type_is_refused() {
        let mut packer = Packer::new();
        packer
            .reserve(4, 8, Packing::Float { transposed: false })
            .unwrap();
        packer
            .reserve(4, 8, Packing::Bytes { signed: true })
            .unwrap();
        assert!(packer.pack(0, &matrix(8, 4, 0)).is_err());
        let ints = Tensor::from_parts(vec![4, 8], Data::I32(vec![0; 32]));
        assert!(packer.pack(0, &ints).is_err());
        let unsigned = Tensor::from_parts(vec![4, 8], Data::U8(vec![0; 32]));
        assert!(packer.pack(1, &unsigned).is_err());
    }
}
