//! Bindings for grid Gaussian processes (`rankcore::gp`): kernel matrices and their
//! derivatives, the log marginal likelihood with its gradient (full and incomplete grids),
//! and predictions. No maths here.

use crate::arrays::{to_numpy, vec_to_numpy};
use crate::kron::{eig_from, grid_to_numpy, mats};
use crate::run::{run, to_pyerr};
use numpy::{Element, PyReadonlyArray1, PyReadonlyArray2};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList};
use rankcore::gp::incomplete::lml_incomplete;
use rankcore::gp::kernels::Kernel1d;
use rankcore::gp::likelihood::{lml_full, Lml};
use rankcore::gp::predict::{predict_grid, predict_points};
use rankcore::kron::PcgParams;
use rankcore::Float;

fn kernel(kind: &str, params: &PyReadonlyArray1<'_, f64>) -> PyResult<Kernel1d> {
    Kernel1d::from_params(kind, params.as_slice()?).map_err(to_pyerr)
}

/// `∂ᵃ_x ∂ᵇ_x' k(x1[i], x2[j])` for a 1-D kernel (float64).
#[pyfunction]
pub fn gp_kernel_matrix<'py>(
    py: Python<'py>,
    kind: &str,
    params: PyReadonlyArray1<'py, f64>,
    x1: PyReadonlyArray1<'py, f64>,
    x2: PyReadonlyArray1<'py, f64>,
    a: usize,
    b: usize,
) -> PyResult<Bound<'py, PyAny>> {
    let k = kernel(kind, &params)?;
    let (s1, s2) = (x1.as_slice()?, x2.as_slice()?);
    let m = run(py, |_| k.matrix(s1, s2, a, b))?;
    Ok(to_numpy(py, &m, false).into_any())
}

/// `[Σ_ij ∂K_p[i, j] · W[i, j]]_p` for a 1-D kernel on the points `x × x` (float64), with
/// the GIL released; `W` is C-contiguous `n × n`.
#[pyfunction]
pub fn gp_kernel_grad_contract(
    py: Python<'_>,
    kind: &str,
    params: PyReadonlyArray1<'_, f64>,
    x: PyReadonlyArray1<'_, f64>,
    w: PyReadonlyArray2<'_, f64>,
) -> PyResult<Vec<f64>> {
    let k = kernel(kind, &params)?;
    let (n0, n1) = (w.as_array().nrows(), w.as_array().ncols());
    let (xs, ws) = (x.as_slice()?, w.as_slice()?);
    run(py, |_| {
        let wm = faer::MatRef::from_row_major_slice(ws, n0, n1);
        k.grad_contract(xs, wm)
    })
}

/// `[∂K/∂θ_p]` for every parameter of a 1-D kernel (float64).
#[pyfunction]
pub fn gp_kernel_grads<'py>(
    py: Python<'py>,
    kind: &str,
    params: PyReadonlyArray1<'py, f64>,
    x1: PyReadonlyArray1<'py, f64>,
    x2: PyReadonlyArray1<'py, f64>,
) -> PyResult<Bound<'py, PyList>> {
    let k = kernel(kind, &params)?;
    let (s1, s2) = (x1.as_slice()?, x2.as_slice()?);
    let ms = run(py, |_| Ok(k.grad_matrices(s1, s2)))?;
    let out = PyList::empty(py);
    for m in ms {
        out.append(to_numpy(py, &m, false))?;
    }
    Ok(out)
}

fn pack<'py, T: Float + Element>(
    py: Python<'py>,
    l: Lml<T>,
    batch: usize,
) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("value", l.value)?;
    d.set_item("d_scale", l.d_scale)?;
    d.set_item("d_noise", l.d_noise)?;
    let f = PyList::empty(py);
    for m in &l.d_factor {
        f.append(to_numpy(py, m, false))?;
    }
    d.set_item("d_factor", f)?;
    d.set_item("alpha", grid_to_numpy(py, l.alpha, batch)?)?;
    Ok(d)
}

fn lml_impl<'py, T: Float + Element>(
    py: Python<'py>,
    qs: &Bound<'py, PyList>,
    lams: &Bound<'py, PyList>,
    scale: f64,
    noise: f64,
    y: &Bound<'py, PyAny>,
    grad: bool,
) -> PyResult<Bound<'py, PyDict>> {
    let eig = eig_from::<T>(qs, lams)?;
    let y: PyReadonlyArray2<'py, T> = y.extract()?;
    let batch = y.as_array().nrows();
    let ys = y.as_slice()?;
    let l = run(py, |_| {
        lml_full(&eig, T::from_f64(scale), noise, ys, batch, grad)
    })?;
    pack(py, l, batch)
}

/// Exact log marginal likelihood on a full grid; `Y` is `B × N` C-contiguous. Returns a dict
/// with `value`, `d_scale`, `d_noise`, `d_factor` (∂/∂K_d matrices) and `alpha` (`B × N`).
#[pyfunction]
pub fn gp_lml<'py>(
    py: Python<'py>,
    qs: &Bound<'py, PyList>,
    lams: &Bound<'py, PyList>,
    scale: f64,
    noise: f64,
    y: &Bound<'py, PyAny>,
    grad: bool,
) -> PyResult<Bound<'py, PyDict>> {
    crate::by_dtype!(y, lml_impl(py, qs, lams, scale, noise, y, grad))
}

#[allow(clippy::too_many_arguments)]
fn inc_impl<'py, T: Float + Element>(
    py: Python<'py>,
    qs: &Bound<'py, PyList>,
    lams: &Bound<'py, PyList>,
    scale: f64,
    observed: PyReadonlyArray1<'py, i64>,
    noise: &Bound<'py, PyAny>,
    y: &Bound<'py, PyAny>,
    tol: f64,
    max_iter: usize,
    grad: bool,
) -> PyResult<Bound<'py, PyDict>> {
    let eig = eig_from::<T>(qs, lams)?;
    let obs: Vec<usize> = observed
        .as_slice()?
        .iter()
        .map(|&i| i.max(0) as usize)
        .collect();
    let noise: PyReadonlyArray1<'py, T> = noise.extract()?;
    let y: PyReadonlyArray1<'py, T> = y.extract()?;
    let (ns, ys) = (noise.as_slice()?, y.as_slice()?);
    let params = PcgParams { tol, max_iter };
    let r = run(py, |stop| {
        lml_incomplete(&eig, T::from_f64(scale), &obs, ns, ys, params, grad, stop)
    })?;
    let d = pack(py, r.lml, 1)?;
    d.set_item("n_iter", r.n_iter)?;
    d.set_item("rel_residual", r.rel_residual)?;
    d.set_item("converged", r.converged)?;
    Ok(d)
}

/// Approximate log marginal likelihood on an incomplete grid (PCG + Wilson et al. 2014
/// log-determinant). `observed`: increasing int64 cell indices; `noise`, `y`: per observed cell.
#[pyfunction]
#[allow(clippy::too_many_arguments)]
pub fn gp_lml_incomplete<'py>(
    py: Python<'py>,
    qs: &Bound<'py, PyList>,
    lams: &Bound<'py, PyList>,
    scale: f64,
    observed: PyReadonlyArray1<'py, i64>,
    noise: &Bound<'py, PyAny>,
    y: &Bound<'py, PyAny>,
    tol: f64,
    max_iter: usize,
    grad: bool,
) -> PyResult<Bound<'py, PyDict>> {
    crate::by_dtype!(
        y,
        inc_impl(py, qs, lams, scale, observed, noise, y, tol, max_iter, grad)
    )
}

fn grid_impl<'py, T: Float + Element>(
    py: Python<'py>,
    qs: &Bound<'py, PyList>,
    lams: &Bound<'py, PyList>,
    scale: f64,
    noise: f64,
    alpha: &Bound<'py, PyAny>,
    want_var: bool,
) -> PyResult<(Bound<'py, PyAny>, Bound<'py, PyAny>)> {
    let eig = eig_from::<T>(qs, lams)?;
    let a: PyReadonlyArray2<'py, T> = alpha.extract()?;
    let batch = a.as_array().nrows();
    let s = a.as_slice()?;
    let (m, v) = run(py, |_| {
        predict_grid(&eig, T::from_f64(scale), noise, s, batch, want_var)
    })?;
    Ok((
        grid_to_numpy(py, m, batch)?.into_any(),
        vec_to_numpy(py, v).into_any(),
    ))
}

/// Posterior mean (`B × N`) and latent variance (`N`, empty unless `want_var`) on the grid.
#[pyfunction]
pub fn gp_predict_grid<'py>(
    py: Python<'py>,
    qs: &Bound<'py, PyList>,
    lams: &Bound<'py, PyList>,
    scale: f64,
    noise: f64,
    alpha: &Bound<'py, PyAny>,
    want_var: bool,
) -> PyResult<(Bound<'py, PyAny>, Bound<'py, PyAny>)> {
    crate::by_dtype!(
        alpha,
        grid_impl(py, qs, lams, scale, noise, alpha, want_var)
    )
}

#[allow(clippy::too_many_arguments)]
fn points_impl<'py, T: Float + Element>(
    py: Python<'py>,
    qs: &Bound<'py, PyList>,
    lams: &Bound<'py, PyList>,
    scale: f64,
    noise: f64,
    alpha: &Bound<'py, PyAny>,
    cross: &Bound<'py, PyList>,
    prior_var: f64,
    want_var: bool,
) -> PyResult<(Bound<'py, PyAny>, Bound<'py, PyAny>)> {
    let eig = eig_from::<T>(qs, lams)?;
    let a: PyReadonlyArray1<'py, T> = alpha.extract()?;
    let s = a.as_slice()?;
    let cs = mats::<T>(cross)?;
    let (m, v) = run(py, |_| {
        let refs: Vec<_> = cs.iter().map(|c| c.as_ref()).collect();
        predict_points(
            &eig,
            T::from_f64(scale),
            noise,
            s,
            &refs,
            prior_var,
            want_var,
        )
    })?;
    Ok((
        vec_to_numpy(py, m).into_any(),
        vec_to_numpy(py, v).into_any(),
    ))
}

/// Posterior mean and latent variance at off-grid points from per-dimension cross-covariances.
#[pyfunction]
#[allow(clippy::too_many_arguments)]
pub fn gp_predict_points<'py>(
    py: Python<'py>,
    qs: &Bound<'py, PyList>,
    lams: &Bound<'py, PyList>,
    scale: f64,
    noise: f64,
    alpha: &Bound<'py, PyAny>,
    cross: &Bound<'py, PyList>,
    prior_var: f64,
    want_var: bool,
) -> PyResult<(Bound<'py, PyAny>, Bound<'py, PyAny>)> {
    crate::by_dtype!(
        alpha,
        points_impl(py, qs, lams, scale, noise, alpha, cross, prior_var, want_var)
    )
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(gp_kernel_matrix, m)?)?;
    m.add_function(wrap_pyfunction!(gp_kernel_grads, m)?)?;
    m.add_function(wrap_pyfunction!(gp_kernel_grad_contract, m)?)?;
    m.add_function(wrap_pyfunction!(gp_lml, m)?)?;
    m.add_function(wrap_pyfunction!(gp_lml_incomplete, m)?)?;
    m.add_function(wrap_pyfunction!(gp_predict_grid, m)?)?;
    m.add_function(wrap_pyfunction!(gp_predict_points, m)?)?;
    register_pcg(m)
}

#[allow(clippy::too_many_arguments)]
fn pcg_impl<'py, T: Float + Element>(
    py: Python<'py>,
    qs: &Bound<'py, PyList>,
    lams: &Bound<'py, PyList>,
    scale: f64,
    observed: PyReadonlyArray1<'py, i64>,
    noise: &Bound<'py, PyAny>,
    b: &Bound<'py, PyAny>,
    tol: f64,
    max_iter: usize,
) -> PyResult<(Bound<'py, PyAny>, usize, f64)> {
    use rankcore::kron::{pcg, Incomplete};
    let eig = eig_from::<T>(qs, lams)?;
    let obs: Vec<usize> = observed
        .as_slice()?
        .iter()
        .map(|&i| i.max(0) as usize)
        .collect();
    let noise: PyReadonlyArray1<'py, T> = noise.extract()?;
    let b: PyReadonlyArray2<'py, T> = b.extract()?;
    let rows = b.as_array().nrows();
    let (ns, bs) = (noise.as_slice()?, b.as_slice()?);
    let params = PcgParams { tol, max_iter };
    let (x, it, res) = run(py, |stop| {
        let sys = Incomplete::new(&eig, T::from_f64(scale), &obs, ns)?;
        let m = obs.len();
        let mut x = Vec::with_capacity(rows * m);
        let (mut it, mut worst) = (0usize, 0.0f64);
        for r in 0..rows {
            let out = pcg(&sys, &bs[r * m..(r + 1) * m], params, stop)?;
            it = it.max(out.n_iter);
            worst = worst.max(out.rel_residual);
            x.extend(out.x);
        }
        Ok((x, it, worst))
    })?;
    Ok((grid_to_numpy(py, x, rows)?.into_any(), it, res))
}

/// Solves `(P K Pᵀ + D) x = b` for each row of `b` by PCG; returns `(x, max iterations,
/// worst relative residual)`.
#[pyfunction]
#[allow(clippy::too_many_arguments)]
pub fn gp_pcg_solve<'py>(
    py: Python<'py>,
    qs: &Bound<'py, PyList>,
    lams: &Bound<'py, PyList>,
    scale: f64,
    observed: PyReadonlyArray1<'py, i64>,
    noise: &Bound<'py, PyAny>,
    b: &Bound<'py, PyAny>,
    tol: f64,
    max_iter: usize,
) -> PyResult<(Bound<'py, PyAny>, usize, f64)> {
    crate::by_dtype!(
        b,
        pcg_impl(py, qs, lams, scale, observed, noise, b, tol, max_iter)
    )
}

pub fn register_pcg(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(gp_pcg_solve, m)?)
}
