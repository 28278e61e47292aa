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

use crate::tucker::tensor::{multi_mode_product_with as product, Tensor, TensorRef};
use crate::{Error, Float, Interrupt, Result};
use faer::{Accum, Mat, MatRef};

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
    let modes: Vec<usize> = (0..n).collect();
    let mut loo: Vec<Option<Tensor<T>>> = vec![None; n];
    leave_one_out(grad, factors, &modes, &mut loo, stop)?;
    let core_c = Tensor::from_c_vec(core.shape(), core.to_c_vec())?;
    let mut grads = Vec::with_capacity(n);
    for (k, a) in loo.iter().enumerate() {
        let a = a
            .as_ref()
            .expect("every mode is filled")
            .clone()
            .into_c_order();
        let mut g = cross(&a, &core_c, k);
        for j in 0..g.ncols() {
            g.col_mut(j).iter_mut().for_each(|x| *x *= scale);
        }
        grads.push(g);
    }
    // ∂L/∂G from the leave-one-out product of the mode whose contraction is cheapest
    let k0 = (0..n)
        .min_by_key(|&k| {
            let a = loo[k].as_ref().expect("filled");
            a.data.len() * factors[k].ncols()
        })
        .expect("order >= 1");
    let a0 = loo[k0].take().expect("filled");
    let mut gc = product(a0.view(), &[(k0, factors[k0].transpose())], stop)?.into_c_order();
    gc.data.iter_mut().for_each(|x| *x *= scale);
    Ok((gc, grads))
}

/// Fills `out[k] = t ×_{m ∈ rest, m≠k} U_mᵀ` for every `k` in `rest` (the modes of `t` not yet
/// contracted), by splitting `rest` in two halves.
fn leave_one_out<T: Float>(
    t: TensorRef<'_, T>,
    factors: &[MatRef<'_, T>],
    rest: &[usize],
    out: &mut Vec<Option<Tensor<T>>>,
    stop: &dyn Interrupt,
) -> Result<()> {
    if rest.len() == 1 {
        out[rest[0]] = Some(product(t, &[], stop)?);
        return Ok(());
    }
    // Split off the most-shrinking mode (largest Iₖ/rₖ): the other modes' products are then
    // all computed on the tensor it has already shrunk, and its own leave-one-out product
    // contracts the others starting from the one that shrinks most. For a convolution
    // (out, in, kh, kw) this reads the full-size gradient in two GEMMs instead of three plus
    // two passes of the kernel modes.
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
        let mats: Vec<(usize, MatRef<'_, T>)> = contract
            .iter()
            .map(|&m| (m, factors[m].transpose()))
            .collect();
        let part = product(t, &mats, stop)?;
        if keep.len() == 1 {
            out[keep[0]] = Some(part);
        } else {
            leave_one_out(part.view(), factors, keep, out, stop)?;
        }
    }
    Ok(())
}

/// `A₍ₖ₎·B₍ₖ₎ᵀ` for two C-ordered tensors equal in shape except along mode `k`.
fn cross<T: Float>(a: &Tensor<T>, b: &Tensor<T>, k: usize) -> Mat<T> {
    let before: usize = a.shape[..k].iter().product();
    let after: usize = a.shape[k + 1..].iter().product();
    let (ia, ib) = (a.shape[k], b.shape[k]);
    let mut g = Mat::<T>::zeros(ia, ib);
    for p in 0..before {
        // SAFETY: slab p of each C-ordered tensor is a (I_k × after) row-major block.
        let (xa, xb) = unsafe {
            (
                MatRef::from_raw_parts(
                    a.data.as_ptr().add(p * ia * after),
                    ia,
                    after,
                    after as isize,
                    1,
                ),
                MatRef::from_raw_parts(
                    b.data.as_ptr().add(p * ib * after),
                    ib,
                    after,
                    after as isize,
                    1,
                ),
            )
        };
        crate::linalg::gemm(g.as_mut(), Accum::Add, xa, xb.transpose(), T::ONE);
    }
    g
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
