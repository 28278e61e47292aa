//! Strided tensor views, owned dense tensors, n-mode products and Gram matrices of
//! unfoldings, all without materialising an unfolding.
//!
//! Layout: an n-mode product `T ×ₙ M` is `Y₍ₙ₎ = M·T₍ₙ₎`. The columns of the unfolding are the
//! multi-indices of the other modes, in any order we like, so we group the other modes into
//! as few (size, stride) pairs as their strides allow (all other modes of a C- or F-ordered
//! tensor form at most two groups: those before `n` and those after). The largest group is the
//! column dimension of one strided GEMM; the other groups are a batch of such GEMMs. Results
//! are allocated in the input's memory order (numpy's `order="K"`), so every group of the
//! input is also a group of the output.
//!
//! Determinism: whether the batch or the rows of one GEMM run in parallel depends on the
//! shapes only, and partial sums are added in a fixed order, so 1 and N threads give
//! bit-identical results.

use crate::linalg::{gemm, matmul};
use crate::operator::{LinOp, Shift};
use crate::{invalid, Float, Interrupt, NeverInterrupt, Result};
use faer::{Accum, Mat, MatMut, MatRef};
use rayon::prelude::*;
use std::marker::PhantomData;

/// Largest supported order (number of modes).
pub const MAX_ORDER: usize = 8;

/// A read-only strided N-d view (order 1 to [`MAX_ORDER`]); strides are in elements and may
/// be negative or zero.
#[derive(Clone, Copy)]
pub struct TensorRef<'a, T> {
    ptr: *const T,
    ndim: usize,
    shape: [usize; MAX_ORDER],
    strides: [isize; MAX_ORDER],
    _life: PhantomData<&'a T>,
}

// SAFETY: a TensorRef is a shared borrow of `T`s; it is only read through.
unsafe impl<T: Sync> Send for TensorRef<'_, T> {}
unsafe impl<T: Sync> Sync for TensorRef<'_, T> {}

impl<'a, T: Copy> TensorRef<'a, T> {
    /// # Safety
    /// Every offset `Σ iₖ·strides[k]` with `0 ≤ iₖ < shape[k]` must be a valid read of a `T`
    /// from `ptr` for the lifetime `'a`.
    pub unsafe fn from_raw_parts(
        ptr: *const T,
        shape: &[usize],
        strides: &[isize],
    ) -> Result<Self> {
        let ndim = shape.len();
        if ndim == 0 || ndim > MAX_ORDER || strides.len() != ndim {
            return Err(invalid!(
                "tensor order must be between 1 and {MAX_ORDER}, got {ndim}"
            ));
        }
        let mut s = [1usize; MAX_ORDER];
        let mut st = [0isize; MAX_ORDER];
        s[..ndim].copy_from_slice(shape);
        st[..ndim].copy_from_slice(strides);
        Ok(Self {
            ptr,
            ndim,
            shape: s,
            strides: st,
            _life: PhantomData,
        })
    }

    pub fn ndim(&self) -> usize {
        self.ndim
    }
    pub fn shape(&self) -> &[usize] {
        &self.shape[..self.ndim]
    }
    pub fn strides(&self) -> &[isize] {
        &self.strides[..self.ndim]
    }
    pub fn len(&self) -> usize {
        self.shape().iter().product()
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    pub fn as_ptr(&self) -> *const T {
        self.ptr
    }

    /// Calls `f(value)` for every element in C order (last index fastest).
    pub fn for_each_c(&self, mut f: impl FnMut(T)) {
        let n = self.ndim;
        if self.is_empty() {
            return;
        }
        let mut idx = [0usize; MAX_ORDER];
        let (last, ls) = (self.shape[n - 1], self.strides[n - 1]);
        let mut base: isize = 0;
        loop {
            for i in 0..last {
                // SAFETY: the index is inside the shape (see `from_raw_parts`).
                f(unsafe { *self.ptr.offset(base + i as isize * ls) });
            }
            // advance the outer multi-index
            let mut k = n - 1;
            loop {
                if k == 0 {
                    return;
                }
                k -= 1;
                idx[k] += 1;
                base += self.strides[k];
                if idx[k] < self.shape[k] {
                    break;
                }
                base -= self.strides[k] * idx[k] as isize;
                idx[k] = 0;
            }
        }
    }

    /// The elements as one slice (in memory order) when the view is dense with positive
    /// strides.
    pub fn dense_slice(&self) -> Option<&[T]> {
        let (shape, strides) = (self.shape(), self.strides());
        if self.is_empty() || strides.iter().any(|&s| s < 0) {
            return None;
        }
        let order = memory_order(strides, shape);
        let dense = dense_strides(shape, &order);
        let same = (0..shape.len()).all(|k| shape[k] == 1 || strides[k] == dense[k]);
        // SAFETY: dense strides over `len` elements starting at the view's pointer.
        same.then(|| unsafe { std::slice::from_raw_parts(self.ptr, self.len()) })
    }

    /// The view with its modes permuted: mode `i` of the result is mode `perm[i]` of `self`
    /// (numpy's `transpose(perm)`). `perm` must be a permutation of `0..ndim`.
    pub fn permuted(&self, perm: &[usize]) -> Result<Self> {
        check_order(perm, self.ndim)?;
        let mut out = *self;
        for (i, &k) in perm.iter().enumerate() {
            out.shape[i] = self.shape[k];
            out.strides[i] = self.strides[k];
        }
        Ok(out)
    }

    /// A dense copy in C order.
    pub fn to_c_vec(&self) -> Vec<T> {
        let mut v = Vec::with_capacity(self.len());
        self.for_each_c(|x| v.push(x));
        v
    }
}

impl<T: Float> TensorRef<'_, T> {
    /// `‖T‖²_F` accumulated in f64 (in C order, so deterministic).
    pub fn sq_norm(&self) -> f64 {
        let mut s = 0.0f64;
        self.for_each_c(|x| s += x.to_f64() * x.to_f64());
        s
    }

    /// Whether every element is finite. A dense view (any memory order) is read as one slice
    /// in chunks whose test vectorises (FLoRA's `delta_vjp` spent an eighth of its time
    /// checking a 256×256×3×3 gradient element by element).
    pub fn all_finite(&self) -> bool {
        if let Some(data) = self.dense_slice() {
            let finite = |part: &[T]| {
                part.chunks(256)
                    .all(|c| c.iter().fold(true, |ok, &x| ok & x.is_finite()))
            };
            // in parallel for large views (FLoRA checks its whole gradient on every call)
            return if data.len() >= PAR_FINITE {
                data.par_chunks(PAR_FINITE / 4).all(finite)
            } else {
                finite(data)
            };
        }
        let mut ok = true;
        self.for_each_c(|x| ok &= x.is_finite());
        ok
    }
}

/// Elements from which [`TensorRef::all_finite`] reads a dense view in parallel.
const PAR_FINITE: usize = 1 << 17;

/// An owned dense tensor. Its strides are a dense layout in some memory order (C order
/// unless it was produced from a view in another order).
#[derive(Clone, Debug, PartialEq)]
pub struct Tensor<T> {
    pub data: Vec<T>,
    pub shape: Vec<usize>,
    pub strides: Vec<isize>,
}

/// Dense strides for `shape` in the memory order `order` (`order[0]` varies slowest).
fn dense_strides(shape: &[usize], order: &[usize]) -> Vec<isize> {
    let mut strides = vec![0isize; shape.len()];
    let mut acc = 1isize;
    for &k in order.iter().rev() {
        strides[k] = acc;
        acc *= shape[k].max(1) as isize;
    }
    strides
}

impl<T: Float> Tensor<T> {
    /// Zeros in C order.
    pub fn zeros(shape: &[usize]) -> Self {
        let order: Vec<usize> = (0..shape.len()).collect();
        Self::zeros_in_order(shape, &order)
    }

    fn zeros_in_order(shape: &[usize], order: &[usize]) -> Self {
        Self {
            data: vec![T::ZERO; shape.iter().product()],
            shape: shape.to_vec(),
            strides: dense_strides(shape, order),
        }
    }

    /// The tensor of a fully written [`uninit_buffer`].
    ///
    /// # Safety
    /// Every element of `buf` must have been written.
    unsafe fn from_uninit(
        buf: Vec<MaybeUninit<T>>,
        shape: Vec<usize>,
        strides: Vec<isize>,
    ) -> Self {
        let mut buf = std::mem::ManuallyDrop::new(buf);
        let (ptr, len, cap) = (buf.as_mut_ptr() as *mut T, buf.len(), buf.capacity());
        // SAFETY: same allocation, layout and length; MaybeUninit<T> has T's layout, and the
        // caller guarantees every element is initialised.
        let data = unsafe { Vec::from_raw_parts(ptr, len, cap) };
        Self {
            data,
            shape,
            strides,
        }
    }

    /// A C-ordered tensor from C-ordered data.
    pub fn from_c_vec(shape: &[usize], data: Vec<T>) -> Result<Self> {
        if data.len() != shape.iter().product::<usize>() {
            return Err(invalid!("data length does not match the shape {shape:?}"));
        }
        let order: Vec<usize> = (0..shape.len()).collect();
        Ok(Self {
            data,
            strides: dense_strides(shape, &order),
            shape: shape.to_vec(),
        })
    }

    pub fn view(&self) -> TensorRef<'_, T> {
        // SAFETY: dense strides over our own buffer.
        unsafe { TensorRef::from_raw_parts(self.data.as_ptr(), &self.shape, &self.strides) }
            .expect("owned tensors have a valid order")
    }

    /// `‖T‖²_F` in f64, in storage order.
    pub fn sq_norm(&self) -> f64 {
        self.data.iter().map(|&x| x.to_f64() * x.to_f64()).sum()
    }

    /// The same tensor in C order (a copy unless it already is).
    pub fn into_c_order(self) -> Self {
        let order: Vec<usize> = (0..self.shape.len()).collect();
        if self.strides == dense_strides(&self.shape, &order) {
            return self;
        }
        let data = self.view().to_c_vec();
        Self::from_c_vec(&self.shape, data).expect("same length")
    }
}

/// One group of modes that behaves as a single index: `size` values at stride `a` in the
/// input and `b` in the output.
#[derive(Clone, Copy, Debug)]
struct Group {
    size: usize,
    a: isize,
    b: isize,
}

/// The memory order of a view: modes sorted by decreasing |stride| (ties by mode index), so
/// `order[0]` varies slowest, as C order's `0..n` does.
pub fn memory_order(strides: &[isize], shape: &[usize]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..strides.len()).collect();
    order.sort_by(|&p, &q| {
        let (sp, sq) = (strides[p].unsigned_abs(), strides[q].unsigned_abs());
        sq.cmp(&sp)
            .then((shape[q] > 1).cmp(&(shape[p] > 1)))
            .then(p.cmp(&q))
    });
    order
}

/// `len` elements for a product to write before anything reads them.
fn uninit_buffer<T>(len: usize) -> Vec<MaybeUninit<T>> {
    let mut v = Vec::with_capacity(len);
    // SAFETY: MaybeUninit needs no initialisation.
    unsafe { v.set_len(len) };
    v
}

/// Groups the modes other than `skip` into as few index groups as both stride sets allow.
/// Modes of size one are dropped (any stride is fine for them).
fn groups(shape: &[usize], a: &[isize], b: &[isize], skip: usize) -> Vec<Group> {
    let mut modes: Vec<usize> = (0..shape.len())
        .filter(|&k| k != skip && shape[k] > 1)
        .collect();
    // fastest-varying first (smallest |stride| in the input)
    modes.sort_by_key(|&k| (a[k].unsigned_abs(), k));
    let mut out: Vec<Group> = Vec::new();
    for k in modes {
        if let Some(g) = out.last_mut() {
            if a[k] == g.a * g.size as isize && b[k] == g.b * g.size as isize {
                g.size *= shape[k];
                continue;
            }
        }
        out.push(Group {
            size: shape[k],
            a: a[k],
            b: b[k],
        });
    }
    out
}

/// The batch of a grouped layout: the largest group is the GEMM's column index, the rest are
/// enumerated as batch items with their input and output offsets.
struct Batch {
    cols: Group,
    offsets: Vec<(isize, isize)>,
}

/// With `contiguous_cols` (mode products, whose output does not depend on the batch layout),
/// a group contiguous in both tensors, at least [`UNIT_COLS`] long and leaving at most
/// [`UNIT_ITEMS`] batch items, is the GEMM's column index even when another group is longer
/// (the unfoldings' column order is the batch layout's, which the randomized range finder's
/// test matrices and the dask path follow, so theirs stays the longest group):
/// faer then reads and writes whole columns instead of packing strided ones. FLoRA's middle
/// mode of a C-order 32×32×3×3 core (the 3×3 modes contiguous, the other mode 32 long with
/// stride 288): 9 strided GEMMs took 0.11 ms, 32 contiguous ones 0.03 ms.
const UNIT_COLS: usize = 8;
const UNIT_ITEMS: usize = 64;

fn batch(mut gs: Vec<Group>, contiguous_cols: bool) -> Batch {
    if gs.is_empty() {
        return Batch {
            cols: Group {
                size: 1,
                a: 1,
                b: 1,
            },
            offsets: vec![(0, 0)],
        };
    }
    let big = (0..gs.len())
        .max_by_key(|&i| (gs[i].size, std::cmp::Reverse(i)))
        .expect("non-empty");
    let items: usize = gs.iter().map(|g| g.size).product();
    let unit = (0..gs.len()).find(|&i| {
        contiguous_cols
            && gs[i].a == 1
            && gs[i].b == 1
            && gs[i].size >= UNIT_COLS
            && items / gs[i].size <= UNIT_ITEMS
    });
    let big = unit.unwrap_or(big);
    let cols = gs.remove(big);
    let mut offsets = vec![(0isize, 0isize)];
    for g in &gs {
        let mut next = Vec::with_capacity(offsets.len() * g.size);
        for &(oa, ob) in &offsets {
            for i in 0..g.size as isize {
                next.push((oa + i * g.a, ob + i * g.b));
            }
        }
        offsets = next;
    }
    Batch { cols, offsets }
}

/// A pointer that may cross threads; each batch item writes a disjoint part of the output.
#[derive(Clone, Copy)]
struct SendPtr<T>(*mut T);
unsafe impl<T> Send for SendPtr<T> {}
unsafe impl<T> Sync for SendPtr<T> {}

impl<T> SendPtr<T> {
    /// The pointer; a method, so that closures capture the whole (Send) wrapper rather than
    /// its raw-pointer field.
    fn get(self) -> *mut T {
        self.0
    }
}

/// Batch items at or above which the batch (not the rows of one GEMM) runs in parallel.
const PAR_BATCH: usize = 8;

/// `T ×ₙ M` (`M` is J×Iₙ): the result has `shape[n] = J`, in the input's memory order.
pub fn mode_product<T: Float>(
    t: TensorRef<'_, T>,
    m: MatRef<'_, T>,
    n: usize,
) -> Result<Tensor<T>> {
    mode_product_with(t, m, n, &NeverInterrupt)
}

/// [`mode_product`] with a safe point before each block of the product (each GEMM of a batch,
/// each chunk of fibres), so that Ctrl-C stops even one long product.
pub fn mode_product_with<T: Float>(
    t: TensorRef<'_, T>,
    m: MatRef<'_, T>,
    n: usize,
    stop: &dyn Interrupt,
) -> Result<Tensor<T>> {
    mode_product_in(t, m, n, &memory_order(t.strides(), t.shape()), stop)
}

/// [`mode_product_with`] with the result in the memory order `order` (a permutation of the
/// modes, `order[0]` slowest) instead of the input's.
pub fn mode_product_in<T: Float>(
    t: TensorRef<'_, T>,
    m: MatRef<'_, T>,
    n: usize,
    order: &[usize],
    stop: &dyn Interrupt,
) -> Result<Tensor<T>> {
    let shape = t.shape();
    check_order(order, shape.len())?;
    if n >= shape.len() {
        return Err(invalid!("mode must be in [0, {}), got {n}", shape.len()));
    }
    if m.ncols() != shape[n] {
        return Err(Error::InvalidShape(format!(
            "matrix for mode {n} has {} columns, but the tensor has {} entries along that mode",
            m.ncols(),
            shape[n]
        )));
    }
    let j = m.nrows();
    let mut out_shape = shape.to_vec();
    out_shape[n] = j;
    if t.is_empty() || j == 0 {
        return Ok(Tensor::<T>::zeros_in_order(&out_shape, order));
    }
    // The output is not zeroed first (that cost a tenth of a FLoRA `delta` at 256×256×3×3):
    // the batch items below write every element once, GEMMs with `Accum::Replace` (which never
    // read their destination) or fibres that assign before adding; on an early return
    // (interrupt) the buffer is dropped unread.
    let strides = dense_strides(&out_shape, order);
    let mut buf = uninit_buffer::<T>(out_shape.iter().product());
    let bt = batch(groups(shape, t.strides(), &strides, n), true);
    let (sa, sb) = (t.strides()[n], strides[n]);
    let c = bt.cols;
    let yp = SendPtr(buf.as_mut_ptr() as *mut T);
    if shape[n] <= SMALL && j <= SMALL {
        small_product(t, m, &bt, (sa, sb), yp, stop)?;
        // SAFETY: every element written (above).
        return Ok(unsafe { Tensor::from_uninit(buf, out_shape, strides) });
    }
    let item = |(oa, ob): (isize, isize), par: bool| {
        // SAFETY: (oa, ob) index inside both tensors; items write disjoint output slices.
        let (x, dst) = unsafe {
            (
                MatRef::from_raw_parts(t.as_ptr().offset(oa), c.size, shape[n], c.a, sa),
                MatMut::from_raw_parts_mut({ yp }.0.offset(ob), c.size, j, c.b, sb),
            )
        };
        // Y₍ₙ₎ᵀ = T₍ₙ₎ᵀ·Mᵀ: the long column index is the GEMM's row index.
        if par {
            matmul(dst, x, m.transpose());
        } else {
            gemm(dst, Accum::Replace, x, m.transpose(), T::ONE);
        }
    };
    let checked = |o, par| stop.check().map(|()| item(o, par));
    if bt.offsets.len() >= PAR_BATCH {
        bt.offsets.par_iter().try_for_each(|&o| checked(o, false))?;
    } else {
        bt.offsets.iter().try_for_each(|&o| checked(o, true))?;
    }
    // SAFETY: every element written (above).
    Ok(unsafe { Tensor::from_uninit(buf, out_shape, strides) })
}

use crate::Error;
use std::mem::MaybeUninit;

/// Mode and matrix sizes up to which a product is done fibre by fibre: a GEMM with an inner
/// dimension of 3 (a 3×3 kernel mode) runs at a fraction of memory speed, a plain loop at it.
const SMALL: usize = 16;
/// Multiply-adds below which [`small_product`] runs on the calling thread: at 9,216 elements
/// and a 3×3 matrix (FLoRA's kernel modes of a 32×32×3×3 core) the pool's wake-up took
/// longer than the product.
const SEQUENTIAL_WORK: usize = 1 << 16;
/// Fibres per parallel task of [`small_product`].
const FIBRES: usize = 4096;
/// Strided fibres gathered per block by [`small_product`].
const LANES: usize = 64;

/// `Y = T ×ₙ M` for small `M` (at most [`SMALL`]×[`SMALL`]): each output fibre is `M` times
/// the input fibre, summed in index order (so the result does not depend on threads).
fn small_product<T: Float>(
    t: TensorRef<'_, T>,
    m: MatRef<'_, T>,
    bt: &Batch,
    (sa, sb): (isize, isize),
    yp: SendPtr<T>,
    stop: &dyn Interrupt,
) -> Result<()> {
    let (j, i_n) = m.shape();
    let mut coef = [T::ZERO; SMALL * SMALL];
    for jj in 0..j {
        for k in 0..i_n {
            coef[jj * SMALL + k] = m[(jj, k)];
        }
    }
    let c = bt.cols;
    let per_item = c.size.div_ceil(FIBRES);
    let tasks = bt.offsets.len() * per_item;
    let task = |task: usize| -> Result<()> {
        stop.check()?;
        let (b, part) = (task / per_item, task % per_item);
        let (c0, c1) = (part * FIBRES, c.size.min((part + 1) * FIBRES));
        let (oa, ob) = bt.offsets[b];
        let (ia, ib) = (oa + c0 as isize * c.a, ob + c0 as isize * c.b);
        let len = c1 - c0;
        let xp = t.as_ptr();
        // SAFETY (both branches): fibres lie inside the input view; each output fibre belongs
        // to one task.
        if c.a == 1 && c.b == 1 {
            // Fibres side by side in memory: one pass over the chunk per (output row, input
            // row) pair, long unit-stride loops that vectorise. y[j] = Σₖ m[j,k]·x[k], k
            // ascending.
            for jj in 0..j {
                for k in 0..i_n {
                    let a = coef[jj * SMALL + k];
                    unsafe {
                        let x = std::slice::from_raw_parts(xp.offset(ia + k as isize * sa), len);
                        let y = std::slice::from_raw_parts_mut(
                            yp.get().offset(ib + jj as isize * sb),
                            len,
                        );
                        if k == 0 {
                            y.iter_mut().zip(x).for_each(|(y, &x)| *y = a * x);
                        } else {
                            y.iter_mut().zip(x).for_each(|(y, &x)| *y += a * x);
                        }
                    }
                }
            }
        } else {
            // Strided fibres (e.g. the last mode of a C-order tensor): gather a block of
            // fibres transposed into a local buffer, so that the sums run as unit-stride loops
            // across fibres (which vectorise) with the same terms in the same order, then
            // scatter the block's outputs.
            let mut xb = [T::ZERO; SMALL * LANES];
            let mut yb = [T::ZERO; LANES];
            for f0 in (0..len).step_by(LANES) {
                let nb = LANES.min(len - f0);
                // SAFETY: as above; pointers step along the fibres of this task's chunk.
                let mut src = unsafe { xp.offset(ia + f0 as isize * c.a) };
                for f in 0..nb {
                    let mut p = src;
                    for k in 0..i_n {
                        unsafe {
                            *xb.get_unchecked_mut(k * LANES + f) = *p;
                            p = p.offset(sa);
                        }
                    }
                    src = unsafe { src.offset(c.a) };
                }
                for jj in 0..j {
                    let row = &coef[jj * SMALL..jj * SMALL + i_n];
                    let y = &mut yb[..nb];
                    y.iter_mut()
                        .zip(&xb[..nb])
                        .for_each(|(y, &x)| *y = row[0] * x);
                    for (k, &a) in row.iter().enumerate().skip(1) {
                        y.iter_mut()
                            .zip(&xb[k * LANES..k * LANES + nb])
                            .for_each(|(y, &x)| *y += a * x);
                    }
                    let mut dst =
                        unsafe { yp.get().offset(ib + f0 as isize * c.b + jj as isize * sb) };
                    for &v in y.iter() {
                        unsafe {
                            *dst = v;
                            dst = dst.offset(c.b);
                        }
                    }
                }
            }
        }
        Ok(())
    };
    // Waking the thread pool costs more than a product of this size.
    if t.len() * j < SEQUENTIAL_WORK {
        (0..tasks).try_for_each(task)
    } else {
        (0..tasks).into_par_iter().try_for_each(task)
    }
}

/// The cheapest order in which to apply a chain of mode products, by dynamic programming
/// over subsets of modes (at most 2⁸ states). Applying a J×K matrix along a mode of a tensor
/// of `size` elements costs `size·J` multiply-adds and leaves `size·J/K` elements, and the
/// size after a subset of products does not depend on their order, so the DP is exact.
/// (The usual rule "most-shrinking first" is what the DP picks for truncations whose matrices
/// all shrink; it also handles chains that grow, such as FLoRA's ΔW.)
pub fn chain_order(shape: &[usize], mats: &[(usize, usize, usize)]) -> Vec<usize> {
    // mats: (mode, rows J, cols K); returns indices into `mats` in application order.
    let k = mats.len();
    let full = 1usize << k;
    let size_of = |subset: usize| -> f64 {
        let mut s: f64 = shape.iter().map(|&x| x as f64).product();
        for (i, &(_, jr, kc)) in mats.iter().enumerate() {
            if subset & (1 << i) != 0 {
                s = s / kc.max(1) as f64 * jr as f64;
            }
        }
        s
    };
    let mut cost = vec![f64::INFINITY; full];
    let mut prev = vec![usize::MAX; full];
    cost[0] = 0.0;
    for subset in 0..full {
        if !cost[subset].is_finite() {
            continue;
        }
        let size = size_of(subset);
        for (i, &(_, jr, _)) in mats.iter().enumerate() {
            if subset & (1 << i) != 0 {
                continue;
            }
            let next = subset | (1 << i);
            let c = cost[subset] + size * jr as f64;
            // Ties go to the candidate seen last, whose final product is on the lowest mode:
            // in C order that product is one contiguous GEMM over all the other modes.
            if c <= cost[next] {
                cost[next] = c;
                prev[next] = i;
            }
        }
    }
    let mut order = Vec::with_capacity(k);
    let mut s = full - 1;
    while s != 0 {
        let i = prev[s];
        order.push(i);
        s &= !(1 << i);
    }
    order.reverse();
    order
}

/// `T ×_{m₁} M₁ ×_{m₂} M₂ …` in the flop-optimal order (modes must be distinct).
pub fn multi_mode_product<T: Float>(
    t: TensorRef<'_, T>,
    mats: &[(usize, MatRef<'_, T>)],
) -> Result<Tensor<T>> {
    multi_mode_product_with(t, mats, &NeverInterrupt)
}

/// [`multi_mode_product`] with the safe points of [`mode_product_with`], so that Ctrl-C stops
/// a long chain within one block of one product.
pub fn multi_mode_product_with<T: Float>(
    t: TensorRef<'_, T>,
    mats: &[(usize, MatRef<'_, T>)],
    stop: &dyn Interrupt,
) -> Result<Tensor<T>> {
    multi_mode_product_in(t, mats, &memory_order(t.strides(), t.shape()), stop)
}

/// [`multi_mode_product_with`] with the result (and every intermediate) in the memory order
/// `order` instead of the input's.
pub fn multi_mode_product_in<T: Float>(
    t: TensorRef<'_, T>,
    mats: &[(usize, MatRef<'_, T>)],
    order: &[usize],
    stop: &dyn Interrupt,
) -> Result<Tensor<T>> {
    let shape = t.shape();
    check_order(order, shape.len())?;
    let mut seen = [false; MAX_ORDER];
    for &(mode, m) in mats {
        if mode >= shape.len() {
            return Err(invalid!("mode must be in [0, {}), got {mode}", shape.len()));
        }
        if seen[mode] {
            return Err(invalid!(
                "modes must be distinct, mode {mode} appears twice"
            ));
        }
        seen[mode] = true;
        if m.ncols() != shape[mode] {
            return Err(Error::InvalidShape(format!(
                "matrix for mode {mode} has {} columns, but the tensor has {} entries along that mode",
                m.ncols(),
                shape[mode]
            )));
        }
    }
    if mats.is_empty() {
        let mut y = Tensor::<T>::zeros_in_order(shape, order);
        copy_into(t, &mut y);
        return Ok(y);
    }
    let dims: Vec<(usize, usize, usize)> = mats
        .iter()
        .map(|&(md, m)| (md, m.nrows(), m.ncols()))
        .collect();
    let chain = chain_order(shape, &dims);
    let (first, rest) = (mats[chain[0]], &chain[1..]);
    let mut cur = mode_product_in(t, first.1, first.0, order, stop)?;
    for &i in rest {
        cur = mode_product_with(cur.view(), mats[i].1, mats[i].0, stop)?;
    }
    Ok(cur)
}

/// An error unless `order` is a permutation of `0..ndim`.
fn check_order(order: &[usize], ndim: usize) -> Result<()> {
    let mut seen = [false; MAX_ORDER];
    let ok = order.len() == ndim
        && order
            .iter()
            .all(|&k| k < ndim && !std::mem::replace(&mut seen[k], true));
    if ok {
        Ok(())
    } else {
        Err(invalid!(
            "order must be a permutation of 0..{ndim}, got {order:?}"
        ))
    }
}

/// Copies a view into a dense tensor of the same shape (any layouts).
fn copy_into<T: Float>(t: TensorRef<'_, T>, y: &mut Tensor<T>) {
    let c = t.to_c_vec();
    let shape = y.shape.clone();
    let strides = y.strides.clone();
    let n = shape.len();
    let mut idx = vec![0usize; n];
    for v in c {
        let off: isize = idx
            .iter()
            .zip(&strides)
            .map(|(&i, &s)| i as isize * s)
            .sum();
        y.data[off as usize] = v;
        for k in (0..n).rev() {
            idx[k] += 1;
            if idx[k] < shape[k] {
                break;
            }
            idx[k] = 0;
        }
    }
}

/// Batch items summed per partial Gram matrix (fixed, so the sum order is thread-independent).
const GRAM_CHUNKS: usize = 16;

/// The Gram matrix `T₍ₙ₎·T₍ₙ₎ᵀ` (Iₙ×Iₙ) without forming the unfolding.
pub fn unfolding_gram<T: Float>(t: TensorRef<'_, T>, n: usize) -> Mat<T> {
    let shape = t.shape();
    let i_n = shape[n];
    let bt = batch(groups(shape, t.strides(), t.strides(), n), false);
    let c = bt.cols;
    let sa = t.strides()[n];
    // SAFETY: offsets come from the view's own shape and strides.
    let block =
        |oa: isize| unsafe { MatRef::from_raw_parts(t.as_ptr().offset(oa), i_n, c.size, sa, c.a) };
    let mut g = Mat::<T>::zeros(i_n, i_n);
    if bt.offsets.len() == 1 {
        let x = block(bt.offsets[0].0);
        matmul(g.as_mut(), x, x.transpose());
        return g;
    }
    let per = bt.offsets.len().div_ceil(GRAM_CHUNKS);
    let partials: Vec<Mat<T>> = bt
        .offsets
        .par_chunks(per)
        .map(|chunk| {
            let mut p = Mat::<T>::zeros(i_n, i_n);
            for &(oa, _) in chunk {
                let x = block(oa);
                gemm(p.as_mut(), Accum::Add, x, x.transpose(), T::ONE);
            }
            p
        })
        .collect();
    for p in &partials {
        g += p;
    }
    g
}

/// [`unfolding_gram`] accumulated in f64 whatever `T` is: f32 input is widened block by
/// block, so the eigenvalues that choose the ranks are not limited by f32 rounding (the Gram
/// is only `Iₙ × Iₙ`, the widening costs one extra pass over the data).
pub fn unfolding_gram_f64<T: Float>(t: TensorRef<'_, T>, n: usize) -> Mat<f64> {
    if std::mem::size_of::<T>() == std::mem::size_of::<f64>() {
        let g = unfolding_gram(t, n);
        return Mat::from_fn(g.nrows(), g.ncols(), |i, j| g[(i, j)].to_f64());
    }
    let shape = t.shape();
    let i_n = shape[n];
    let bt = batch(groups(shape, t.strides(), t.strides(), n), false);
    let c = bt.cols;
    let sa = t.strides()[n];
    // SAFETY: offsets come from the view's own shape and strides.
    let block =
        |oa: isize| unsafe { MatRef::from_raw_parts(t.as_ptr().offset(oa), i_n, c.size, sa, c.a) };
    let per = bt.offsets.len().div_ceil(GRAM_CHUNKS).max(1);
    let partials: Vec<Mat<f64>> = bt
        .offsets
        .par_chunks(per)
        .map(|chunk| {
            let mut p = Mat::<f64>::zeros(i_n, i_n);
            for &(oa, _) in chunk {
                let x = block(oa);
                let w = Mat::<f64>::from_fn(i_n, c.size, |i, j| x[(i, j)].to_f64());
                gemm(p.as_mut(), Accum::Add, w.as_ref(), w.transpose(), 1.0);
            }
            p
        })
        .collect();
    let mut g = Mat::<f64>::zeros(i_n, i_n);
    for p in &partials {
        g += p;
    }
    g
}

/// The mode-`n` unfolding of a view as a [`LinOp`] (Iₙ × Πₖ≠ₙ Iₖ; the column order is the
/// batch layout's, which only matters for right singular vectors, never used here).
pub struct Unfolding<'a, T> {
    t: TensorRef<'a, T>,
    n: usize,
    cols: Group,
    offsets: Vec<isize>,
}

impl<'a, T: Float> Unfolding<'a, T> {
    pub fn new(t: TensorRef<'a, T>, n: usize) -> Self {
        let bt = batch(groups(t.shape(), t.strides(), t.strides(), n), false);
        Self {
            t,
            n,
            cols: bt.cols,
            offsets: bt.offsets.iter().map(|o| o.0).collect(),
        }
    }
    fn block(&self, b: usize) -> MatRef<'_, T> {
        let i_n = self.t.shape()[self.n];
        // SAFETY: offsets come from the view's own shape and strides.
        unsafe {
            MatRef::from_raw_parts(
                self.t.as_ptr().offset(self.offsets[b]),
                i_n,
                self.cols.size,
                self.t.strides()[self.n],
                self.cols.a,
            )
        }
    }
}

impl<T: Float> LinOp<T> for Unfolding<'_, T> {
    fn shape(&self) -> (usize, usize) {
        let i_n = self.t.shape()[self.n];
        (i_n, self.t.len() / i_n.max(1))
    }
    fn mul(&self, x: MatRef<'_, T>, mut out: MatMut<'_, T>) {
        let c = self.cols.size;
        let nb = self.offsets.len();
        if nb == 1 {
            matmul(out, self.block(0), x);
            return;
        }
        let per = nb.div_ceil(GRAM_CHUNKS);
        let starts: Vec<usize> = (0..nb).step_by(per).collect();
        let partials: Vec<Mat<T>> = starts
            .par_iter()
            .map(|&s| {
                let mut p = Mat::<T>::zeros(out.nrows(), out.ncols());
                for b in s..(s + per).min(nb) {
                    let xb = x.subrows(b * c, c);
                    gemm(p.as_mut(), Accum::Add, self.block(b), xb, T::ONE);
                }
                p
            })
            .collect();
        out.fill(T::ZERO);
        for p in &partials {
            out += p;
        }
    }
    fn mul_t(&self, y: MatRef<'_, T>, out: MatMut<'_, T>) {
        let c = self.cols.size;
        let nb = self.offsets.len();
        if nb == 1 {
            matmul(out, self.block(0).transpose(), y);
            return;
        }
        let ncols = out.ncols();
        let (rs, cs) = (out.row_stride(), out.col_stride());
        let op = SendPtr(out.as_ptr_mut());
        (0..nb).into_par_iter().for_each(|b| {
            // SAFETY: row block b of `out` is disjoint from the other items' blocks.
            let dst = unsafe {
                MatMut::from_raw_parts_mut(
                    { op }.0.offset(b as isize * c as isize * rs),
                    c,
                    ncols,
                    rs,
                    cs,
                )
            };
            gemm(dst, Accum::Replace, self.block(b).transpose(), y, T::ONE);
        });
    }
    fn sq_norm(&self, shift: Shift<'_, T>) -> f64 {
        debug_assert!(matches!(shift, Shift::None));
        self.t.sq_norm()
    }
    fn sums(&self, rows: bool) -> Vec<f64> {
        // Not needed by the range finder; computed plainly for completeness.
        let (m, n) = self.shape();
        let c = self.cols.size;
        let mut out = vec![0.0f64; if rows { m } else { n }];
        for b in 0..self.offsets.len() {
            let blk = self.block(b);
            for jj in 0..c {
                for i in 0..m {
                    let v = blk[(i, jj)].to_f64();
                    if rows {
                        out[i] += v;
                    } else {
                        out[b * c + jj] += v;
                    }
                }
            }
        }
        out
    }
}
