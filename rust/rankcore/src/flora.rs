//! FLoRA adapters (Si et al. 2024, "FLoRA: Low-Rank Core Space for N-dimension"): the
//! change of an N-d weight is `ΔW = s · G ×₁ U₁ ×₂ U₂ … ×_N U_N`, a small core `G`
//! (r₁×…×r_N) times one factor `Uₖ` (Iₖ×rₖ) per mode of the weight.
//!
//! [`delta`] forms ΔW in the flop-optimal mode order; [`delta_vjp`] returns the gradients of
//! a loss with respect to `G` and every `Uₖ` from `∂L/∂ΔW` without forming anything larger
//! than ΔW:
//!   `∂L/∂G  = s · R ×ₖ Uₖᵀ (all k)`,
//!   `∂L/∂Uₖ = s · (R ×_{m≠k} U_mᵀ)₍ₖ₎ · G₍ₖ₎ᵀ`,
//! where `R = ∂L/∂ΔW`. The leave-one-out products `R ×_{m≠k} U_mᵀ` share their work through a
//! split of the modes: contracting one group of modes serves every mode of the other group,
//! so the full-size `R` is read twice instead of N times.

use crate::linalg::gemm;
use crate::tucker::tensor::{
    memory_order, multi_mode_product_in, multi_mode_product_with as product, Tensor, TensorRef,
};
use crate::{Error, Float, Interrupt, Result};
use faer::{Accum, Mat, MatRef};
use rayon::prelude::*;

fn check<T: Float>(core: TensorRef<'_, T>, factors: &[MatRef<'_, T>]) -> Result<()> {
    if factors.len() != core.ndim() {
        return Err(Error::InvalidShape(format!(
            "factors must hold one matrix per mode of core ({}), got {}",
            core.ndim(),
            factors.len()
        )));
    }
    for (k, (f, &r)) in factors.iter().zip(core.shape()).enumerate() {
        if f.ncols() != r {
            return Err(Error::InvalidShape(format!(
                "factors[{k}] has {} columns but core has {r} entries along mode {k}",
                f.ncols()
            )));
        }
    }
    // Values are checked here rather than by the Python layer: five small `isfinite` passes
    // there cost a fifth of a 256×256×3×3 `delta`.
    finite(core, "core")?;
    for (k, f) in factors.iter().enumerate() {
        if !f.is_all_finite() {
            return Err(non_finite(&format!("factors[{k}]"), f.has_nan()));
        }
    }
    Ok(())
}

/// The Python layer's message for NaN (reported first) or infinity in `name`.
fn non_finite(name: &str, nan: bool) -> Error {
    let what = if nan { "NaN" } else { "infinity" };
    Error::InvalidValue(format!(
        "{name} contains {what}; only finite values are supported"
    ))
}

fn finite<T: Float>(t: TensorRef<'_, T>, name: &str) -> Result<()> {
    if t.all_finite() {
        return Ok(());
    }
    let mut nan = false;
    t.for_each_c(|x| nan |= x.to_f64().is_nan());
    Err(non_finite(name, nan))
}

/// `ΔW = scale · core ×ₖ factors[k]`.
pub fn delta<T: Float>(
    core: TensorRef<'_, T>,
    factors: &[MatRef<'_, T>],
    scale: T,
    stop: &dyn Interrupt,
) -> Result<Tensor<T>> {
    check(core, factors)?;
    // the scale goes on the smallest tensor, the core
    let mut scaled = Tensor::from_c_vec(core.shape(), core.to_c_vec())?;
    scaled.data.iter_mut().for_each(|x| *x *= scale);
    let mats: Vec<(usize, MatRef<'_, T>)> = factors.iter().copied().enumerate().collect();
    product(scaled.view(), &mats, stop)
}

/// Gradients of `delta(core, factors, scale)` given `grad = ∂L/∂ΔW`: `(∂L/∂core, ∂L/∂factors)`.
///
/// The inner product behind `∂L/∂Uₖ` may take each other mode's factor on either side:
/// `(R ×_{m≠k} U_mᵀ)₍ₖ₎·G₍ₖ₎ᵀ = (R ×_{m∈S} U_mᵀ)₍ₖ₎·(G ×_{m∉S, m≠k} U_m)₍ₖ₎ᵀ` for any set `S`
/// of modes. Modes whose factor shrinks (`rₖ < Iₖ`) are contracted on the gradient's side,
/// where they make the large tensor small; the others (a full-rank 3×3 kernel mode, say) are
/// applied to the core, the smallest tensor, instead of in extra passes over gradient-sized
/// ones. At 256×256×3×3 with ranks 32×32×3×3 that removes six of the eight products on
/// 73,728-element tensors.
pub fn delta_vjp<T: Float>(
    core: TensorRef<'_, T>,
    factors: &[MatRef<'_, T>],
    grad: TensorRef<'_, T>,
    scale: T,
    stop: &dyn Interrupt,
) -> Result<(Tensor<T>, Vec<Mat<T>>)> {
    check(core, factors)?;
    let want: Vec<usize> = factors.iter().map(|f| f.nrows()).collect();
    if grad.shape() != want.as_slice() {
        return Err(Error::InvalidShape(format!(
            "grad_delta must have the shape of delta {want:?}, got {:?}",
            grad.shape()
        )));
    }
    finite(grad, "grad_delta")?;
    let n = core.ndim();
    let (shrink, widen): (Vec<usize>, Vec<usize>) =
        (0..n).partition(|&k| factors[k].ncols() < factors[k].nrows());
    // loo[k] = R ×_{m ∈ shrink, m≠k} U_mᵀ for k in `shrink`
    let mut loo: Vec<Option<Tensor<T>>> = vec![None; n];
    if !shrink.is_empty() {
        leave_one_out(grad, factors, &shrink, &mut loo, stop)?;
    }
    // small = R ×_{m ∈ shrink} U_mᵀ, from the leave-one-out product cheapest to finish
    let small = match shrink.iter().min_by_key(|&&k| {
        loo[k]
            .as_ref()
            .map_or(0, |a| a.data.len() * factors[k].ncols())
    }) {
        Some(&k) => {
            let a = loo[k].as_ref().expect("filled");
            product(a.view(), &transposed(factors, &[k]), stop)?
        }
        None => product(grad, &[], stop)?,
    };
    // the core with the widening factors applied, all of them or all but one
    let expanded = |skip: Option<usize>| -> Result<Tensor<T>> {
        let modes: Vec<usize> = widen.iter().copied().filter(|&m| Some(m) != skip).collect();
        let mats: Vec<(usize, MatRef<'_, T>)> = modes.iter().map(|&m| (m, factors[m])).collect();
        product(core, &mats, stop)
    };
    let core_widened = expanded(None)?;
    // The gradients are independent: computed side by side, each by one sequential GEMM (the
    // two of a convolution's channel modes are 4.7 MFLOP each, the kernel modes' tiny). Rayon
    // halves the list, so large and small ones alternate to give each half a large one.
    let mut by_size: Vec<usize> = (0..n).collect();
    by_size.sort_by_key(|&k| std::cmp::Reverse(loo[k].as_ref().map_or(0, |a| a.data.len())));
    let alternating: Vec<usize> = (0..n)
        .map(|i| {
            if i % 2 == 0 {
                by_size[i / 2]
            } else {
                by_size[n - 1 - i / 2]
            }
        })
        .collect();
    let mut grads: Vec<(usize, Mat<T>)> = alternating
        .into_par_iter()
        .with_max_len(1)
        .map(|k| -> Result<(usize, Mat<T>)> {
            let mut g = match &loo[k] {
                Some(a) => cross(a, &core_widened, k)?,
                None => cross(&small, &expanded(Some(k))?, k)?,
            };
            for j in 0..g.ncols() {
                g.col_mut(j).iter_mut().for_each(|x| *x *= scale);
            }
            Ok((k, g))
        })
        .collect::<Result<_>>()?;
    grads.sort_by_key(|&(k, _)| k);
    let grads: Vec<Mat<T>> = grads.into_iter().map(|(_, g)| g).collect();
    let mut gc = product(small.view(), &transposed(factors, &widen), stop)?.into_c_order();
    gc.data.iter_mut().for_each(|x| *x *= scale);
    Ok((gc, grads))
}

/// `(m, U_mᵀ)` for the modes `m` in `modes`: the products that contract them.
fn transposed<'a, T: Float>(
    factors: &[MatRef<'a, T>],
    modes: &[usize],
) -> Vec<(usize, MatRef<'a, T>)> {
    modes.iter().map(|&m| (m, factors[m].transpose())).collect()
}

/// Fills `out[k] = t ×_{m ∈ rest, m≠k} U_mᵀ` for every `k` in `rest` (the modes of `t` to
/// contract), by splitting `rest` in two halves. Each `out[k]` is stored with mode `k`
/// slowest, so that [`cross`] reads its unfolding in place.
fn leave_one_out<T: Float>(
    t: TensorRef<'_, T>,
    factors: &[MatRef<'_, T>],
    rest: &[usize],
    out: &mut Vec<Option<Tensor<T>>>,
    stop: &dyn Interrupt,
) -> Result<()> {
    if rest.len() == 1 {
        out[rest[0]] = Some(product_in(t, &[], rest[0], stop)?);
        return Ok(());
    }
    // Split off the most-shrinking mode (largest Iₖ/rₖ): the other modes' products are then
    // all computed on the tensor it has already shrunk, and its own leave-one-out product
    // contracts the others starting from the one that shrinks most. For a convolution
    // (out, in, kh, kw) this reads the full-size gradient in two GEMMs.
    let big = *rest
        .iter()
        .max_by(|&&a, &&b| {
            let ra = t.shape()[a] as f64 / factors[a].ncols() as f64;
            let rb = t.shape()[b] as f64 / factors[b].ncols() as f64;
            ra.total_cmp(&rb).then(b.cmp(&a))
        })
        .expect("rest is not empty");
    let left = [big];
    let right: Vec<usize> = rest.iter().copied().filter(|&m| m != big).collect();
    for (keep, contract) in [(&left[..], &right[..]), (&right[..], &left[..])] {
        let mats = transposed(factors, contract);
        if keep.len() == 1 {
            out[keep[0]] = Some(product_in(t, &mats, keep[0], stop)?);
        } else {
            let part = product(t, &mats, stop)?;
            leave_one_out(part.view(), factors, keep, out, stop)?;
        }
    }
    Ok(())
}

/// The modes of `t` in its memory order, but with `first` moved to the front and the modes
/// in `last` to the back.
fn order_for(t: TensorRef<'_, impl Copy>, first: usize, last: &[usize]) -> Vec<usize> {
    let mem = memory_order(t.strides(), t.shape());
    let mut order = vec![first];
    order.extend(mem.iter().filter(|&&m| m != first && !last.contains(&m)));
    order.extend(mem.iter().filter(|&&m| m != first && last.contains(&m)));
    order
}

/// `t ×_m M_m …` stored with mode `first` slowest and the product modes fastest (a single
/// product is then one GEMM writing its result row by row).
fn product_in<T: Float>(
    t: TensorRef<'_, T>,
    mats: &[(usize, MatRef<'_, T>)],
    first: usize,
    stop: &dyn Interrupt,
) -> Result<Tensor<T>> {
    let modes: Vec<usize> = mats.iter().map(|&(m, _)| m).collect();
    multi_mode_product_in(t, mats, &order_for(t, first, &modes), stop)
}

/// `A₍ₖ₎·B₍ₖ₎ᵀ` for two tensors equal in shape except along mode `k`, as one GEMM: `A`'s
/// unfolding is read in place when mode `k` is its slowest (copied otherwise), and `B` (the
/// core-sized side) is copied into the same column order.
fn cross<T: Float>(a: &Tensor<T>, b: &Tensor<T>, k: usize) -> Result<Mat<T>> {
    let order = order_for(a.view(), k, &[]);
    let a_first;
    let xa: &[T] = if memory_order(&a.strides, &a.shape)[0] == k {
        &a.data
    } else {
        a_first = a.view().permuted(&order)?.to_c_vec();
        &a_first
    };
    let xb = b.view().permuted(&order)?.to_c_vec();
    let (ia, ib) = (a.shape[k], b.shape[k]);
    let cols: usize = (0..a.shape.len())
        .filter(|&m| m != k)
        .map(|m| a.shape[m])
        .product();
    let ma = MatRef::from_row_major_slice(xa, ia, cols);
    let mb = MatRef::from_row_major_slice(&xb, ib, cols);
    let mut g = Mat::<T>::zeros(ia, ib);
    gemm(g.as_mut(), Accum::Replace, ma, mb.transpose(), T::ONE);
    Ok(g)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::NeverInterrupt;

    fn t(shape: &[usize], seed: u64) -> Tensor<f64> {
        let n: usize = shape.iter().product();
        let d = (0..n)
            .map(|i| ((i as u64 * 2654435761 + seed * 977) % 1000) as f64 / 500.0 - 1.0)
            .collect();
        Tensor::from_c_vec(shape, d).unwrap()
    }

    fn m(r: usize, c: usize, seed: u64) -> Mat<f64> {
        Mat::from_fn(r, c, |i, j| {
            ((i * 31 + j * 17 + seed as usize * 7) % 23) as f64 / 11.0 - 1.0
        })
    }

    #[test]
    fn vjp_matches_finite_differences() {
        let core = t(&[2, 3, 2], 1);
        let fs = [m(4, 2, 1), m(5, 3, 2), m(3, 2, 3)];
        let fr: Vec<MatRef<'_, f64>> = fs.iter().map(|f| f.as_ref()).collect();
        let r = t(&[4, 5, 3], 5);
        let s = 0.7;
        let loss = |c: &Tensor<f64>, f: &[MatRef<'_, f64>]| -> f64 {
            let d = delta(c.view(), f, s, &NeverInterrupt)
                .unwrap()
                .into_c_order();
            d.data.iter().zip(&r.data).map(|(a, b)| a * b).sum()
        };
        let (gc, gf) = delta_vjp(core.view(), &fr, r.view(), s, &NeverInterrupt).unwrap();
        let h = 1e-6;
        for i in 0..core.data.len() {
            let mut cp = core.clone();
            cp.data[i] += h;
            let mut cm = core.clone();
            cm.data[i] -= h;
            let fd = (loss(&cp, &fr) - loss(&cm, &fr)) / (2.0 * h);
            assert!((fd - gc.data[i]).abs() < 1e-7, "core {i}");
        }
        for k in 0..3 {
            for i in 0..fs[k].nrows() {
                for j in 0..fs[k].ncols() {
                    let mut fp = fs.clone();
                    fp[k][(i, j)] += h;
                    let mut fm = fs.clone();
                    fm[k][(i, j)] -= h;
                    let a: Vec<MatRef<'_, f64>> = fp.iter().map(|f| f.as_ref()).collect();
                    let b: Vec<MatRef<'_, f64>> = fm.iter().map(|f| f.as_ref()).collect();
                    let fd = (loss(&core, &a) - loss(&core, &b)) / (2.0 * h);
                    assert!((fd - gf[k][(i, j)]).abs() < 1e-7, "factor {k} ({i},{j})");
                }
            }
        }
    }
}
