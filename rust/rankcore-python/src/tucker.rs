//! Bindings for n-mode products, Tucker decompositions and FLoRA (f32/f64, any strides).
//! No maths here: borrow the arrays, run the core through `run`, pack the result.

use crate::arrays::{to_numpy, view};
use crate::run::{run, to_pyerr};
use numpy::ndarray::{ArrayD, IxDyn, ShapeBuilder};
use numpy::{Element, PyArrayDyn, PyReadonlyArray2, PyReadonlyArrayDyn};
use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList};
use rankcore::tucker::{
    multi_mode_product_with, tucker, tucker_masked, Init, Method, SvdMethod, Tensor, TensorRef,
    TuckerParams,
};
use rankcore::{flora, invalid, Float};

/// Borrows an N-d numpy array as a strided tensor view (no copy).
fn tview<'a, T: Element + Copy>(a: &'a PyReadonlyArrayDyn<'_, T>) -> PyResult<TensorRef<'a, T>> {
    let arr = a.as_array();
    // SAFETY: pointer, shape and element strides of a live borrowed numpy array.
    unsafe { TensorRef::from_raw_parts(arr.as_ptr(), arr.shape(), arr.strides()) }.map_err(to_pyerr)
}

/// A new numpy array holding `t` with its own (positive, dense) strides.
fn tensor_to_numpy<'py, T: Element + Copy>(
    py: Python<'py>,
    t: Tensor<T>,
) -> PyResult<Bound<'py, PyArrayDyn<T>>> {
    let strides: Vec<usize> = t.strides.iter().map(|&s| s as usize).collect();
    let arr = ArrayD::from_shape_vec(IxDyn(&t.shape).strides(IxDyn(&strides)), t.data)
        .map_err(|e| PyTypeError::new_err(format!("internal layout error: {e}")))?;
    Ok(PyArrayDyn::from_owned_array(py, arr))
}

fn extract_mats<'py, T: Element>(
    list: &Bound<'py, PyList>,
) -> PyResult<Vec<PyReadonlyArray2<'py, T>>> {
    list.iter()
        .map(|m| m.extract::<PyReadonlyArray2<'py, T>>())
        .collect()
}

fn mmd_impl<'py, T: Float + Element>(
    t: &Bound<'py, PyAny>,
    mats: &Bound<'py, PyList>,
    modes: Vec<usize>,
) -> PyResult<Bound<'py, PyArrayDyn<T>>> {
    let py = t.py();
    let arr: PyReadonlyArrayDyn<'py, T> = t.extract()?;
    let ms = extract_mats::<T>(mats)?;
    if ms.len() != modes.len() {
        return Err(to_pyerr(invalid!("one mode per matrix is needed")));
    }
    let tv = tview(&arr)?;
    let pairs: Vec<(usize, faer::MatRef<'_, T>)> =
        modes.iter().copied().zip(ms.iter().map(view)).collect();
    let out = run(py, |stop| multi_mode_product_with(tv, &pairs, stop))?;
    tensor_to_numpy(py, out)
}

/// `T ×_{modes[i]} mats[i]` for all i, in the flop-optimal order. Every array must share
/// T's dtype.
#[pyfunction]
pub fn multi_mode_dot<'py>(
    t: &Bound<'py, PyAny>,
    mats: &Bound<'py, PyList>,
    modes: Vec<usize>,
) -> PyResult<Bound<'py, PyAny>> {
    crate::by_dtype!(t, mmd_impl(t, mats, modes) => into_any)
}

fn get<'py, T: FromPyObjectOwned<'py>>(d: &Bound<'py, PyDict>, key: &str) -> PyResult<T> {
    d.get_item(key)?
        .ok_or_else(|| PyTypeError::new_err(format!("missing option {key}")))?
        .extract::<T>()
        .map_err(Into::into)
}

fn params<'py, T: Float + Element>(
    o: &Bound<'py, PyDict>,
    init: Option<Vec<faer::Mat<T>>>,
) -> PyResult<TuckerParams<T>> {
    let method = match get::<String>(o, "method")?.as_str() {
        "hosvd" => Method::Hosvd,
        "sthosvd" => Method::StHosvd,
        "hooi" => Method::Hooi,
        other => {
            return Err(to_pyerr(invalid!(
                "method must be 'hooi', 'hosvd' or 'sthosvd', got {other:?}"
            )))
        }
    };
    let seed: u64 = get(o, "seed")?;
    let svd = match get::<String>(o, "svd")?.as_str() {
        "exact" => SvdMethod::Exact,
        "randomized" => SvdMethod::Randomized {
            n_oversamples: get(o, "n_oversamples")?,
            n_iter: get(o, "n_power_iter")?,
            seed,
        },
        other => {
            return Err(to_pyerr(invalid!(
                "svd must be 'exact' or 'randomized', got {other:?}"
            )))
        }
    };
    let init = match (init, get::<String>(o, "init")?.as_str()) {
        (Some(fs), _) => Init::Given(fs),
        (None, "random") => Init::Random(seed),
        _ => Init::Svd,
    };
    Ok(TuckerParams {
        modes: get(o, "modes")?,
        ranks: get(o, "ranks")?,
        error_tol: get(o, "error_tol")?,
        method,
        svd,
        init,
        fixed: get(o, "fixed")?,
        n_iter_max: get(o, "n_iter_max")?,
        tol: get(o, "tol")?,
        mask_repeats: get(o, "mask_repeats")?,
        verbose: get(o, "verbose")?,
    })
}

fn tucker_impl<'py, T: Float + Element>(
    t: &Bound<'py, PyAny>,
    o: &Bound<'py, PyDict>,
    mask: Option<&Bound<'py, PyAny>>,
    init: Option<&Bound<'py, PyList>>,
) -> PyResult<Bound<'py, PyDict>> {
    let py = t.py();
    let arr: PyReadonlyArrayDyn<'py, T> = t.extract()?;
    let init = match init {
        Some(l) => Some(
            extract_mats::<T>(l)?
                .iter()
                .map(|m| view(m).to_owned())
                .collect(),
        ),
        None => None,
    };
    let p = params::<T>(o, init)?;
    let tv = tview(&arr)?;
    let res = match mask {
        Some(m) => {
            let marr: PyReadonlyArrayDyn<'py, u8> = m.extract()?;
            let mv = tview(&marr)?;
            run(py, |stop| tucker_masked(tv, mv, &p, stop))?
        }
        None => run(py, |stop| tucker(tv, &p, stop))?,
    };
    let d = PyDict::new(py);
    d.set_item("core", tensor_to_numpy(py, res.core)?)?;
    let fs = PyList::empty(py);
    for f in &res.factors {
        fs.append(to_numpy(py, f, false))?;
    }
    d.set_item("factors", fs)?;
    d.set_item("errors", res.errors)?;
    d.set_item("n_iter", res.n_iter)?;
    d.set_item("converged", res.converged)?;
    Ok(d)
}

/// Tucker decomposition (options validated in Python; `mask` is a uint8 array of the
/// tensor's shape; `init` a list of factors for the decomposed modes).
#[pyfunction]
#[pyo3(signature = (t, opts, mask=None, init=None))]
pub fn tucker_decompose<'py>(
    t: &Bound<'py, PyAny>,
    opts: &Bound<'py, PyDict>,
    mask: Option<&Bound<'py, PyAny>>,
    init: Option<&Bound<'py, PyList>>,
) -> PyResult<Bound<'py, PyDict>> {
    crate::by_dtype!(t, tucker_impl(t, opts, mask, init))
}

fn delta_impl<'py, T: Float + Element>(
    core: &Bound<'py, PyAny>,
    factors: &Bound<'py, PyList>,
    scale: f64,
) -> PyResult<Bound<'py, PyAny>> {
    let py = core.py();
    let arr: PyReadonlyArrayDyn<'py, T> = core.extract()?;
    let ms = extract_mats::<T>(factors)?;
    let cv = tview(&arr)?;
    let fv: Vec<faer::MatRef<'_, T>> = ms.iter().map(view).collect();
    let out = run(py, |stop| flora::delta(cv, &fv, T::from_f64(scale), stop))?;
    Ok(tensor_to_numpy(py, out)?.into_any())
}

/// FLoRA's ΔW = scale · core ×ₖ factors[k].
#[pyfunction]
pub fn flora_delta<'py>(
    core: &Bound<'py, PyAny>,
    factors: &Bound<'py, PyList>,
    scale: f64,
) -> PyResult<Bound<'py, PyAny>> {
    crate::by_dtype!(core, delta_impl(core, factors, scale))
}

fn vjp_impl<'py, T: Float + Element>(
    core: &Bound<'py, PyAny>,
    factors: &Bound<'py, PyList>,
    grad: &Bound<'py, PyAny>,
    scale: f64,
) -> PyResult<(Bound<'py, PyAny>, Bound<'py, PyList>)> {
    let py = core.py();
    let arr: PyReadonlyArrayDyn<'py, T> = core.extract()?;
    let garr: PyReadonlyArrayDyn<'py, T> = grad.extract()?;
    let ms = extract_mats::<T>(factors)?;
    let cv = tview(&arr)?;
    let gv = tview(&garr)?;
    let fv: Vec<faer::MatRef<'_, T>> = ms.iter().map(view).collect();
    let (gc, gf) = run(py, |stop| {
        flora::delta_vjp(cv, &fv, gv, T::from_f64(scale), stop)
    })?;
    let out = PyList::empty(py);
    for f in &gf {
        out.append(to_numpy(py, f, false))?;
    }
    Ok((tensor_to_numpy(py, gc)?.into_any(), out))
}

/// Gradients of FLoRA's ΔW with respect to the core and the factors, given ∂L/∂ΔW.
#[pyfunction]
pub fn flora_delta_vjp<'py>(
    core: &Bound<'py, PyAny>,
    factors: &Bound<'py, PyList>,
    grad: &Bound<'py, PyAny>,
    scale: f64,
) -> PyResult<(Bound<'py, PyAny>, Bound<'py, PyList>)> {
    crate::by_dtype!(core, vjp_impl(core, factors, grad, scale))
}

/// Adds this module's functions to `rankcore._core`.
pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(multi_mode_dot, m)?)?;
    m.add_function(wrap_pyfunction!(tucker_decompose, m)?)?;
    m.add_function(wrap_pyfunction!(flora_delta, m)?)?;
    m.add_function(wrap_pyfunction!(flora_delta_vjp, m)?)?;
    Ok(())
}
