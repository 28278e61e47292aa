//! Bindings for the GP-HM PDE solver (`rankcore::gp::pde`). No maths here: a `PdeProblem`
//! holds the validated problem (built once per fit, so the source and coefficients are not
//! converted at every objective evaluation); its methods evaluate the objective with its
//! gradient and the predictions without the GIL.

use crate::arrays::vec_to_numpy;
use crate::run::{run, to_pyerr};
use numpy::{Element, PyArray1, PyReadonlyArray1, PyReadonlyArray2};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList};
use rankcore::gp::kernels::Kernel1d;
use rankcore::gp::pde::{self, Nonlinearity, Params, Problem, Term};
use rankcore::Float;

enum Inner {
    F64(Problem<f64>),
    F32(Problem<f32>),
}

impl From<Problem<f64>> for Inner {
    fn from(p: Problem<f64>) -> Self {
        Inner::F64(p)
    }
}

impl From<Problem<f32>> for Inner {
    fn from(p: Problem<f32>) -> Self {
        Inner::F32(p)
    }
}

/// A PDE on a grid (see `rankcore::gp::pde`), in float64 or float32.
#[pyclass(frozen, module = "rankcore._core")]
pub struct PdeProblem {
    inner: Inner,
}

fn vec_of<'py, T: Element + Copy>(a: &Bound<'py, PyAny>) -> PyResult<Vec<T>> {
    let arr: PyReadonlyArray1<'py, T> = a.extract()?;
    Ok(arr.as_array().iter().copied().collect())
}

/// [`build`], wrapped as the dtype-tagged [`Inner`].
#[allow(clippy::too_many_arguments)]
fn build_inner<'py, T: Float + Element>(
    axes: Vec<Vec<f64>>,
    orders: Vec<Vec<usize>>,
    coefs: &Bound<'py, PyList>,
    source: &Bound<'py, PyAny>,
    boundary: Vec<usize>,
    boundary_values: &Bound<'py, PyAny>,
    boundary_weight: f64,
    nugget: f64,
) -> PyResult<Inner>
where
    Inner: From<Problem<T>>,
{
    let p = build::<T>(
        axes,
        orders,
        coefs,
        source,
        boundary,
        boundary_values,
        boundary_weight,
        nugget,
    )?;
    Ok(p.into())
}

#[allow(clippy::too_many_arguments)]
fn build<'py, T: Float + Element>(
    axes: Vec<Vec<f64>>,
    orders: Vec<Vec<usize>>,
    coefs: &Bound<'py, PyList>,
    source: &Bound<'py, PyAny>,
    boundary: Vec<usize>,
    boundary_values: &Bound<'py, PyAny>,
    boundary_weight: f64,
    nugget: f64,
) -> PyResult<Problem<T>> {
    if coefs.len() != orders.len() {
        return Err(PyValueError::new_err(
            "operator: one coefficient array per term is needed",
        ));
    }
    let terms = orders
        .into_iter()
        .zip(coefs.iter())
        .map(|(o, c)| {
            Ok(Term {
                coef: vec_of::<T>(&c)?,
                orders: o,
            })
        })
        .collect::<PyResult<Vec<_>>>()?;
    let prob = Problem {
        axes,
        terms,
        source: vec_of::<T>(source)?,
        boundary,
        boundary_values: vec_of::<T>(boundary_values)?,
        boundary_weight,
        nugget,
    };
    prob.validate().map_err(to_pyerr)?;
    Ok(prob)
}

fn params(
    kinds: Vec<String>,
    kparams: Vec<Vec<f64>>,
    log_tau_b: f64,
    log_tau_r: f64,
) -> PyResult<Params> {
    if kinds.len() != kparams.len() {
        return Err(PyValueError::new_err(
            "one parameter vector per kernel is needed",
        ));
    }
    let kernels = kinds
        .iter()
        .zip(&kparams)
        .map(|(k, p)| Kernel1d::from_params(k, p).map_err(to_pyerr))
        .collect::<PyResult<Vec<_>>>()?;
    Ok(Params {
        kernels,
        log_tau_b,
        log_tau_r,
    })
}

#[allow(clippy::too_many_arguments)]
fn objective_impl<'py, T: Float + Element>(
    py: Python<'py>,
    prob: &Problem<T>,
    p: &Params,
    u: &Bound<'py, PyAny>,
    phi: Option<&Bound<'py, PyAny>>,
    dphi: Option<&Bound<'py, PyAny>>,
    grad: bool,
) -> PyResult<Bound<'py, PyDict>> {
    let u: PyReadonlyArray1<'py, T> = u.extract()?;
    let phi: Option<PyReadonlyArray1<'py, T>> = phi.map(|a| a.extract()).transpose()?;
    let dphi: Option<PyReadonlyArray1<'py, T>> = dphi.map(|a| a.extract()).transpose()?;
    let us = u.as_slice()?;
    let nl = match (&phi, &dphi) {
        (Some(v), Some(d)) => Some((v.as_slice()?, d.as_slice()?)),
        (None, None) => None,
        _ => return Err(PyValueError::new_err("phi and dphi must be given together")),
    };
    let o = run(py, |stop| {
        let nl = nl.map(|(value, deriv)| Nonlinearity { value, deriv });
        pde::objective(prob, p, us, nl, grad, stop)
    })?;
    let d = PyDict::new(py);
    d.set_item("value", o.value)?;
    d.set_item("prior", o.prior)?;
    d.set_item("boundary_sq", o.boundary_sq)?;
    d.set_item("residual_sq", o.residual_sq)?;
    d.set_item("residual", vec_to_numpy(py, o.residual))?;
    d.set_item("grad_u", vec_to_numpy(py, o.grad_u))?;
    let gk = PyList::empty(py);
    for g in o.grad_kernels {
        gk.append(PyArray1::from_vec(py, g))?;
    }
    d.set_item("grad_kernels", gk)?;
    d.set_item("grad_log_tau_b", o.grad_log_tau_b)?;
    d.set_item("grad_log_tau_r", o.grad_log_tau_r)?;
    Ok(d)
}

fn predict_grid_impl<'py, T: Float + Element>(
    py: Python<'py>,
    prob: &Problem<T>,
    p: &Params,
    u: &Bound<'py, PyAny>,
    test_axes: Vec<Vec<f64>>,
    orders: Vec<usize>,
) -> PyResult<Bound<'py, PyAny>> {
    let u: PyReadonlyArray1<'py, T> = u.extract()?;
    let us = u.as_slice()?;
    let v = run(py, |_| pde::predict_grid(prob, p, us, &test_axes, &orders))?;
    Ok(vec_to_numpy(py, v).into_any())
}

fn predict_points_impl<'py, T: Float + Element>(
    py: Python<'py>,
    prob: &Problem<T>,
    p: &Params,
    u: &Bound<'py, PyAny>,
    points: PyReadonlyArray2<'py, f64>,
) -> PyResult<Bound<'py, PyAny>> {
    let u: PyReadonlyArray1<'py, T> = u.extract()?;
    let us = u.as_slice()?;
    let pts = crate::arrays::view(&points);
    let v = run(py, |_| pde::predict_points(prob, p, us, pts))?;
    Ok(vec_to_numpy(py, v).into_any())
}

#[pymethods]
impl PdeProblem {
    /// Builds and validates a problem. `axes`: float64 coordinates per dimension; `orders`:
    /// per term, the derivative order along each dimension; `coefs`: per term, one value or
    /// one per cell (dtype of the problem); `source` (N); `boundary` (flat indices) and
    /// `boundary_values`; `boundary_weight` (w_b) and `nugget` (ν). The dtype of `source`
    /// (float32 or float64) sets the precision of the grid computations.
    #[new]
    #[allow(clippy::too_many_arguments)]
    fn new<'py>(
        axes: Vec<Vec<f64>>,
        orders: Vec<Vec<usize>>,
        coefs: &Bound<'py, PyList>,
        source: &Bound<'py, PyAny>,
        boundary: Vec<usize>,
        boundary_values: &Bound<'py, PyAny>,
        boundary_weight: f64,
        nugget: f64,
    ) -> PyResult<Self> {
        let inner = crate::by_dtype!(
            source,
            build_inner(
                axes,
                orders,
                coefs,
                source,
                boundary,
                boundary_values,
                boundary_weight,
                nugget
            )
        )?;
        Ok(Self { inner })
    }

    /// The objective, its diagnostics and (when `grad`) its gradient, as a dict.
    #[pyo3(signature = (kinds, kparams, log_tau_b, log_tau_r, u, phi=None, dphi=None, grad=true))]
    #[allow(clippy::too_many_arguments)]
    fn objective<'py>(
        &self,
        py: Python<'py>,
        kinds: Vec<String>,
        kparams: Vec<Vec<f64>>,
        log_tau_b: f64,
        log_tau_r: f64,
        u: &Bound<'py, PyAny>,
        phi: Option<&Bound<'py, PyAny>>,
        dphi: Option<&Bound<'py, PyAny>>,
        grad: bool,
    ) -> PyResult<Bound<'py, PyDict>> {
        let p = params(kinds, kparams, log_tau_b, log_tau_r)?;
        match &self.inner {
            Inner::F64(prob) => objective_impl(py, prob, &p, u, phi, dphi, grad),
            Inner::F32(prob) => objective_impl(py, prob, &p, u, phi, dphi, grad),
        }
    }

    /// The conditional mean (or a derivative, `orders` per dimension) on a tensor grid.
    fn predict_grid<'py>(
        &self,
        py: Python<'py>,
        kinds: Vec<String>,
        kparams: Vec<Vec<f64>>,
        u: &Bound<'py, PyAny>,
        test_axes: Vec<Vec<f64>>,
        orders: Vec<usize>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let p = params(kinds, kparams, 0.0, 0.0)?;
        match &self.inner {
            Inner::F64(prob) => predict_grid_impl(py, prob, &p, u, test_axes, orders),
            Inner::F32(prob) => predict_grid_impl(py, prob, &p, u, test_axes, orders),
        }
    }

    /// The conditional mean at arbitrary points (`M × D` float64).
    fn predict_points<'py>(
        &self,
        py: Python<'py>,
        kinds: Vec<String>,
        kparams: Vec<Vec<f64>>,
        u: &Bound<'py, PyAny>,
        points: PyReadonlyArray2<'py, f64>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let p = params(kinds, kparams, 0.0, 0.0)?;
        match &self.inner {
            Inner::F64(prob) => predict_points_impl(py, prob, &p, u, points),
            Inner::F32(prob) => predict_points_impl(py, prob, &p, u, points),
        }
    }

    /// Lower Cholesky factors of `K_d + νI` (float64, one per dimension).
    fn cholesky_factors<'py>(
        &self,
        py: Python<'py>,
        kinds: Vec<String>,
        kparams: Vec<Vec<f64>>,
    ) -> PyResult<Bound<'py, PyList>> {
        let p = params(kinds, kparams, 0.0, 0.0)?;
        let ls = match &self.inner {
            Inner::F64(prob) => run(py, |_| pde::cholesky_factors(prob, &p))?,
            Inner::F32(prob) => run(py, |_| pde::cholesky_factors(prob, &p))?,
        };
        let out = PyList::empty(py);
        for l in &ls {
            out.append(crate::arrays::to_numpy(py, l, false))?;
        }
        Ok(out)
    }

    /// `Σ_m Σ_ij ∂K_d⁽ᵐ⁾/∂θ_p ∘ W_m` for every parameter of dimension `d`: `w` for `K_d` (its
    /// nugget included), `w1`, `w2` for the derivative matrices `K_d⁽¹⁾`, `K_d⁽²⁾` (float64
    /// `n_d × n_d`; None leaves an order out).
    #[pyo3(signature = (kinds, kparams, d, w, w1=None, w2=None))]
    #[allow(clippy::too_many_arguments)]
    fn kernel_contract<'py>(
        &self,
        py: Python<'py>,
        kinds: Vec<String>,
        kparams: Vec<Vec<f64>>,
        d: usize,
        w: Option<PyReadonlyArray2<'py, f64>>,
        w1: Option<PyReadonlyArray2<'py, f64>>,
        w2: Option<PyReadonlyArray2<'py, f64>>,
    ) -> PyResult<Vec<f64>> {
        let p = params(kinds, kparams, 0.0, 0.0)?;
        let ws = [
            w.as_ref().map(crate::arrays::view),
            w1.as_ref().map(crate::arrays::view),
            w2.as_ref().map(crate::arrays::view),
        ];
        match &self.inner {
            Inner::F64(prob) => run(py, |_| pde::kernel_contract(prob, &p, d, ws)),
            Inner::F32(prob) => run(py, |_| pde::kernel_contract(prob, &p, d, ws)),
        }
    }
}

/// Flat C-order indices of the cells on the faces of a grid of shape `shape`.
#[pyfunction]
fn pde_boundary_cells(shape: Vec<usize>) -> Vec<usize> {
    pde::boundary_cells(&shape)
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PdeProblem>()?;
    m.add_function(wrap_pyfunction!(pde_boundary_cells, m)?)
}
