//! Constant float32 weights of matrix products, packed once when the model loads.
//!
//! A weight `B` (`k×n`, or `n×k` for Gemm's `transB`) is stored as strips of [`NR`] columns,
//! each strip `k×NR` values laid out row after row (the last strip padded with zeros), which is
//! the panel the float32 kernel reads. A decode step then reads every weight once, front to
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
const LINE_FLOATS: usize = 16;

/// One zeroed, huge-page-aligned allocation that holds every packed weight of a model.
pub(crate) struct Arena {
    ptr: NonNull<f32>,
    len: usize,
    layout: Option<Layout>,
}

// SAFETY: the arena owns its allocation; it is written only through `&mut self` while the
// model loads and only read once shared.
unsafe impl Send for Arena {}
// SAFETY: as above: shared references only read.
unsafe impl Sync for Arena {}

impl Arena {
    /// Room for `len` floats, all zero; `None` if the allocation fails.
    pub fn zeroed(len: usize) -> Option<Arena> {
        if len == 0 {
            return Some(Arena {
                ptr: NonNull::dangling(),
                len: 0,
                layout: None,
            });
        }
        let bytes = len.checked_mul(4)?.next_multiple_of(HUGE_PAGE);
        let layout = Layout::from_size_align(bytes, HUGE_PAGE).ok()?;
        // SAFETY: the layout has a non-zero size.
        let ptr = NonNull::new(unsafe { alloc_zeroed(layout) } as *mut f32)?;
        #[cfg(target_os = "linux")]
        // SAFETY: the range is this allocation, which nothing else uses; MADV_HUGEPAGE changes
        // how its pages are backed, never its contents, and failure (no THP) is harmless.
        unsafe {
            libc::madvise(ptr.as_ptr().cast(), bytes, libc::MADV_HUGEPAGE);
        }
        Some(Arena {
            ptr,
            len,
            layout: Some(layout),
        })
    }

    fn slice(&self) -> &[f32] {
        // SAFETY: `ptr` points to `len` initialized (zeroed, then written) floats.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }

    fn slice_mut(&mut self) -> &mut [f32] {
        // SAFETY: as in `slice`, and `&mut self` makes the access unique.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }
}

impl Drop for Arena {
    fn drop(&mut self) {
        if let Some(layout) = self.layout {
            // SAFETY: allocated in `zeroed` with this very layout.
            unsafe { dealloc(self.ptr.as_ptr().cast(), layout) };
        }
    }
}

/// Where one packed weight lies in its arena, and the shape it was stored with.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Placement {
    offset: usize,
    k: usize,
    n: usize,
    /// Stored `n×k` (Gemm's `transB`) rather than `k×n`.
    transposed: bool,
}

impl Placement {
    /// Floats a packed `k×n` weight takes.
    fn floats(k: usize, n: usize) -> Option<usize> {
        n.div_ceil(NR).checked_mul(k)?.checked_mul(NR)
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

    /// Reserves room for a weight of `k×n` (stored transposed if `transposed`) and returns its
    /// index; `None` if the sizes overflow.
    pub fn reserve(&mut self, k: usize, n: usize, transposed: bool) -> Option<usize> {
        let offset = self.len.next_multiple_of(LINE_FLOATS);
        self.len = offset.checked_add(Placement::floats(k, n)?)?;
        self.placements.push(Placement {
            offset,
            k,
            n,
            transposed,
        });
        Some(self.placements.len() - 1)
    }

    /// Packs weight `index` from `tensor` (float32, the shape it was reserved with).
    pub fn pack(&mut self, index: usize, tensor: &Tensor) -> Result<(), String> {
        if self.arena.is_none() {
            self.arena = Some(Arena::zeroed(self.len).ok_or_else(|| {
                format!("cannot allocate {} MB of packed weights", self.len >> 18)
            })?);
        }
        let p = self.placements[index];
        let expected = if p.transposed { [p.n, p.k] } else { [p.k, p.n] };
        let Data::F32(values) = tensor.data() else {
            return Err(format!("a {} weight cannot be packed", tensor.dtype()));
        };
        if tensor.shape() != expected {
            return Err(format!(
                "weight of shape {:?} packed as {expected:?}",
                tensor.shape()
            ));
        }
        if p.k == 0 {
            return Ok(()); // nothing to multiply by: every product is zero
        }
        let arena = self.arena.as_mut().expect("allocated above").slice_mut();
        let out = &mut arena[p.offset..p.offset + Placement::floats(p.k, p.n).unwrap_or(0)];
        if p.transposed {
            crate::kernels::pack_transposed(p.k, p.n, values, out);
        } else {
            for (s, strip) in out.chunks_exact_mut(p.k * NR).enumerate() {
                let (j, w) = (s * NR, NR.min(p.n - s * NR));
                for (kk, row) in strip.chunks_exact_mut(NR).enumerate() {
                    row[..w].copy_from_slice(&values[kk * p.n + j..kk * p.n + j + w]);
                }
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

    /// The strips, `k×NR` values each, `ceil(n / NR)` of them.
    pub fn strips(&self) -> &[f32] {
        let p = self.placement;
        let len = Placement::floats(p.k, p.n).unwrap_or(0);
        &self.arena.slice()[p.offset..p.offset + len]
    }

    /// The weight as the model stores it (`k×n`, or `n×k` when packed from `transB`).
    pub fn unpack(&self) -> Tensor {
        let Placement {
            k, n, transposed, ..
        } = self.placement;
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
}

#[cfg(test)]
mod tests {
    use super::*;

    fn matrix(rows: usize, cols: usize, seed: u32) -> Tensor {
        let values = (0..rows * cols)
            .map(|i| (i as u32).wrapping_mul(2654435761).wrapping_add(seed) as f32 / 1e9)
            .collect();
        Tensor::from_parts(vec![rows, cols], Data::F32(values))
    }

    #[test]
    fn packed_weights_unpack_to_what_was_stored() {
        let mut packer = Packer::new();
        let shapes = [
            (3, 5, false),
            (37, 40, true),
            (16, 16, false),
            (1, 33, true),
            (0, 7, false),
        ];
        let tensors: Vec<Tensor> = shapes
            .iter()
            .enumerate()
            .map(|(i, &(k, n, t))| {
                packer.reserve(k, n, t).unwrap();
                if t {
                    matrix(n, k, i as u32)
                } else {
                    matrix(k, n, i as u32)
                }
            })
            .collect();
        for (i, t) in tensors.iter().enumerate() {
            packer.pack(i, t).unwrap();
        }
        let packed = packer.finish();
        for ((p, t), &(k, n, _)) in packed.iter().zip(&tensors).zip(&shapes) {
            assert_eq!((p.k(), p.n()), (k, n));
            assert_eq!(&p.unpack(), t);
            assert_eq!(
                p.strips().as_ptr() as usize % 64,
                0,
                "strips start on a cache line"
            );
        }
    }

    #[test]
    fn a_weight_of_another_shape_or_type_is_refused() {
        let mut packer = Packer::new();
        packer.reserve(4, 8, false).unwrap();
        assert!(packer.pack(0, &matrix(8, 4, 0)).is_err());
        let ints = Tensor::from_parts(vec![4, 8], Data::I32(vec![0; 32]));
        assert!(packer.pack(0, &ints).is_err());
    }
}
