//! Bindings for the Kronecker algebra (`rankcore::kron`). No maths here: unpack arrays, run
//! the core without the GIL, pack the results. Factor lists are small (`n_d × n_d`) and are
//! copied; grid-sized arrays must be C-contiguous and are borrowed.

use crate::arrays::{to_numpy, vec_to_numpy, view};
use crate::run::run;
use numpy::ndarray::Array2;
use numpy::{Element, PyArray2, PyReadonlyArray1, PyReadonlyArray2};
use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;
use pyo3::types::PyList;
use rankcore::kron::{self, KronEig};
use rankcore::Float;

/// Copies a list of 2-D arrays into faer matrices.
pub fn mats<'py, T: Float + Element>(list: &Bound<'py, PyList>) -> PyResult<Vec<faer::Mat<T>>> {
    list.iter()
        .map(|a| {
            let arr: PyReadonlyArray2<'py, T> = a.extract()?;
            Ok(view(&arr).to_owned())
        })
        .collect()
}

/// Copies a list of 1-D arrays.
pub fn vecs<'py, T: Float + Element>(list: &Bound<'py, PyList>) -> PyResult<Vec<Vec<T>>> {
    list.iter()
        .map(|a| {
            let arr: PyReadonlyArray1<'py, T> = a.extract()?;
            Ok(arr.as_array().iter().copied().collect())
        })
        .collect()
}

/// The eigendecomposition from `(Qs, lams)` lists.
pub fn eig_from<'py, T: Float + Element>(
    qs: &Bound<'py, PyList>,
    lams: &Bound<'py, PyList>,
) -> PyResult<KronEig<T>> {
    KronEig::from_parts(mats(qs)?, vecs(lams)?).map_err(crate::run::to_pyerr)
}

/// A C-order `(rows × cols)` numpy array from a flat vector.
pub fn grid_to_numpy<'py, T: Element>(
    py: Python<'py>,
    v: Vec<T>,
    rows: usize,
) -> PyResult<Bound<'py, PyArray2<T>>> {
    let cols = v.len().checked_div(rows).unwrap_or(0);
    let arr =
        Array2::from_shape_vec((rows, cols), v).map_err(|e| PyTypeError::new_err(e.to_string()))?;
    Ok(PyArray2::from_owned_array(py, arr))
}

fn eigh_impl<'py, T: Float + Element>(
    py: Python<'py>,
    ks: &Bound<'py, PyList>,
) -> PyResult<(Bound<'py, PyList>, Bound<'py, PyList>)> {
    let ms = mats::<T>(ks)?;
    let eig = run(py, |_| {
        let refs: Vec<_> = ms.iter().map(|m| m.as_ref()).collect();
        KronEig::new(&refs)
    })?;
    let qs = PyList::empty(py);
    let ls = PyList::empty(py);
    for (q, l) in eig.q.iter().zip(eig.lam) {
        qs.append(to_numpy(py, q, false))?;
        ls.append(vec_to_numpy(py, l))?;
    }
    Ok((qs, ls))
}

/// Per-factor eigendecompositions `(Qs, lams)`; negative round-off eigenvalues clamped to 0.
#[pyfunction]
pub fn kron_eigh<'py>(
    py: Python<'py>,
    ks: &Bound<'py, PyList>,
) -> PyResult<(Bound<'py, PyList>, Bound<'py, PyList>)> {
    match ks.iter().next() {
        Some(k0) => crate::by_dtype!(&k0, eigh_impl(py, ks)),
        None => eigh_impl::<f64>(py, ks),
    }
}

fn apply_impl<'py, T: Float + Element>(
    py: Python<'py>,
    ms: &Bound<'py, PyList>,
    x: &Bound<'py, PyAny>,
) -> PyResult<Bound<'py, PyArray2<T>>> {
    let ms = mats::<T>(ms)?;
    let x: PyReadonlyArray2<'py, T> = x.extract()?;
    let batch = x.as_array().nrows();
    let xs = x.as_slice()?;
    let out = run(py, |_| {
        let refs: Vec<_> = ms.iter().map(|m| m.as_ref()).collect();
        kron::kron_apply(&refs, xs, batch)
    })?;
    grid_to_numpy(py, out, batch)
}

/// `(A₁ ⊗ … ⊗ A_D) x` for each row of the C-contiguous `x` (`B × Π n_d`).
#[pyfunction]
pub fn kron_apply<'py>(
    py: Python<'py>,
    mats: &Bound<'py, PyList>,
    x: &Bound<'py, PyAny>,
) -> PyResult<Bound<'py, PyAny>> {
    crate::by_dtype!(x, apply_impl(py, mats, x) => into_any)
}

fn solve_impl<'py, T: Float + Element>(
    py: Python<'py>,
    qs: &Bound<'py, PyList>,
    lams: &Bound<'py, PyList>,
    scale: f64,
    noise: f64,
    y: &Bound<'py, PyAny>,
) -> PyResult<Bound<'py, PyAny>> {
    let eig = eig_from::<T>(qs, lams)?;
    let y: PyReadonlyArray2<'py, T> = y.extract()?;
    let batch = y.as_array().nrows();
    let ys = y.as_slice()?;
    let out = run(py, |_| {
        kron::kron_solve(&eig, T::from_f64(scale), noise, ys, batch)
    })?;
    Ok(grid_to_numpy(py, out, batch)?.into_any())
}

/// `(s·K + σ²I)⁻¹ Y` for the rows of `Y`, from the factors' eigendecompositions.
#[pyfunction]
pub fn kron_solve_eig<'py>(
    py: Python<'py>,
    qs: &Bound<'py, PyList>,
    lams: &Bound<'py, PyList>,
    scale: f64,
    noise: f64,
    y: &Bound<'py, PyAny>,
) -> PyResult<Bound<'py, PyAny>> {
    crate::by_dtype!(y, solve_impl(py, qs, lams, scale, noise, y))
}

fn scalar_impl<'py, T: Float + Element>(
    py: Python<'py>,
    qs: &Bound<'py, PyList>,
    lams: &Bound<'py, PyList>,
    scale: f64,
    noise: f64,
    diag: bool,
) -> PyResult<Bound<'py, PyAny>> {
    let eig = eig_from::<T>(qs, lams)?;
    if diag {
        let d = run(py, |_| kron::kron_inv_diag(&eig, T::from_f64(scale), noise))?;
        Ok(vec_to_numpy(py, d).into_any())
    } else {
        let v = run(py, |_| kron::kron_logdet(&eig, T::from_f64(scale), noise))?;
        Ok(v.into_pyobject(py)?.into_any())
    }
}

/// `log det(s·K + σ²I)` (`diag=False`) or the diagonal of its inverse (`diag=True`).
#[pyfunction]
pub fn kron_logdet_eig<'py>(
    py: Python<'py>,
    qs: &Bound<'py, PyList>,
    lams: &Bound<'py, PyList>,
    scale: f64,
    noise: f64,
    diag: bool,
) -> PyResult<Bound<'py, PyAny>> {
    match qs.iter().next() {
        Some(q0) => crate::by_dtype!(&q0, scalar_impl(py, qs, lams, scale, noise, diag)),
        None => scalar_impl::<f64>(py, qs, lams, scale, noise, diag),
    }
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(kron_eigh, m)?)?;
    m.add_function(wrap_pyfunction!(kron_apply, m)?)?;
    m.add_function(wrap_pyfunction!(kron_solve_eig, m)?)?;
    m.add_function(wrap_pyfunction!(kron_logdet_eig, m)?)?;
    Ok(())
}
