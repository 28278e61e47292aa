//! Bindings for the random projections and FastRP. No maths here: unpack the arrays, run
//! the core through `run`, pack the result.

use crate::arrays::{to_numpy, vec_to_numpy, view};
use crate::run::{run, to_pyerr};
use numpy::{Element, PyArray2, PyArrayMethods, PyReadonlyArray1, PyReadonlyArray2};
use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyTuple};
use rankcore::projection::fastrp::{fastrp, FastRpParams, Variant};
use rankcore::projection::{CsrParts, Family, Projection};
use rankcore::sparse::{CsrRef, SpIndex};
use rankcore::{invalid, Float};

fn get<'py, T: FromPyObjectOwned<'py>>(d: &Bound<'py, PyDict>, key: &str) -> PyResult<T> {
    d.get_item(key)?
        .ok_or_else(|| PyTypeError::new_err(format!("missing option {key}")))?
        .extract::<T>()
        .map_err(Into::into)
}

/// The projection an options dict describes: `kind` ("gaussian" or "sparse"),
/// `n_features`, `n_components`, `density` (sparse), `seed`, and optionally `stream`.
fn projection(opts: &Bound<'_, PyDict>) -> PyResult<Projection> {
    let family = match get::<String>(opts, "kind")?.as_str() {
        "gaussian" => Family::Gaussian,
        "sparse" => Family::Sparse {
            density: get(opts, "density")?,
        },
        other => {
            return Err(to_pyerr(invalid!(
                "kind must be 'gaussian' or 'sparse', got {other:?}"
            )))
        }
    };
    let p = Projection::new(
        get(opts, "n_features")?,
        get(opts, "n_components")?,
        family,
        get(opts, "seed")?,
    )
    .map_err(to_pyerr)?;
    Ok(match get::<Option<u32>>(opts, "stream")? {
        Some(s) => p.with_stream(s),
        None => p,
    })
}

fn csr_tuple<'py, T: Element>(py: Python<'py>, c: CsrParts<T>) -> PyResult<Bound<'py, PyTuple>> {
    PyTuple::new(
        py,
        [
            vec_to_numpy(py, c.data).into_any(),
            vec_to_numpy(py, c.indices).into_any(),
            vec_to_numpy(py, c.indptr).into_any(),
        ],
    )
}

fn dense_impl<'py, T: Float + Element>(
    x: &Bound<'py, PyAny>,
    p: Projection,
) -> PyResult<Bound<'py, PyAny>> {
    let py = x.py();
    let arr: PyReadonlyArray2<'py, T> = x.extract()?;
    let mat = view(&arr);
    let out = PyArray2::<T>::zeros(py, [mat.nrows(), p.n_components()], false);
    {
        let mut rw = out.readwrite();
        let slice = rw.as_slice_mut()?;
        run(py, |stop| p.transform_dense(mat, slice, stop))?;
    }
    Ok(out.into_any())
}

/// `X @ R.T` for a dense float32/float64 array (any strides), as a new C-order array.
#[pyfunction]
pub fn projection_transform_dense<'py>(
    x: &Bound<'py, PyAny>,
    opts: &Bound<'py, PyDict>,
) -> PyResult<Bound<'py, PyAny>> {
    let p = projection(opts)?;
    if x.extract::<PyReadonlyArray2<'py, f64>>().is_ok() {
        dense_impl::<f64>(x, p)
    } else if x.extract::<PyReadonlyArray2<'py, f32>>().is_ok() {
        dense_impl::<f32>(x, p)
    } else {
        Err(PyTypeError::new_err(
            "X must be a 2-D float32 or float64 numpy array",
        ))
    }
}

type Parts<'a, 'py> = (
    &'a Bound<'py, PyAny>,
    &'a Bound<'py, PyAny>,
    &'a Bound<'py, PyAny>,
);

fn sparse_impl<'py, T: Float + Element, I: SpIndex + Element>(
    py: Python<'py>,
    shape: (usize, usize),
    parts: Parts<'_, 'py>,
    p: Projection,
    dense_output: bool,
) -> PyResult<Bound<'py, PyAny>> {
    let indptr: PyReadonlyArray1<'py, I> = parts.0.extract()?;
    let indices: PyReadonlyArray1<'py, I> = parts.1.extract()?;
    let data: PyReadonlyArray1<'py, T> = parts.2.extract()?;
    let (indptr, indices, data) = (indptr.as_slice()?, indices.as_slice()?, data.as_slice()?);
    if dense_output {
        let out = PyArray2::<T>::zeros(py, [shape.0, p.n_components()], false);
        {
            let mut rw = out.readwrite();
            let slice = rw.as_slice_mut()?;
            run(py, |stop| {
                let x = CsrRef::new(shape.0, shape.1, indptr, indices, data)?;
                p.transform_csr(x, slice, stop)
            })?;
        }
        return Ok(out.into_any());
    }
    let c = run(py, |stop| {
        let x = CsrRef::new(shape.0, shape.1, indptr, indices, data)?;
        p.transform_csr_to_csr(x, stop)
    })?;
    Ok(csr_tuple(py, c)?.into_any())
}

/// `X @ R.T` for a CSR matrix given by its arrays (`indptr` and `indices` of one int dtype,
/// contiguous). Returns a C-order array when `dense_output`, else `(data, indices, indptr)`
/// of the CSR result.
#[pyfunction]
#[pyo3(signature = (shape, indptr, indices, data, opts, dense_output))]
pub fn projection_transform_sparse<'py>(
    py: Python<'py>,
    shape: (usize, usize),
    indptr: &Bound<'py, PyAny>,
    indices: &Bound<'py, PyAny>,
    data: &Bound<'py, PyAny>,
    opts: &Bound<'py, PyDict>,
    dense_output: bool,
) -> PyResult<Bound<'py, PyAny>> {
    let p = projection(opts)?;
    let parts = (indptr, indices, data);
    let wide = indptr.extract::<PyReadonlyArray1<'py, i64>>().is_ok();
    let double = data.extract::<PyReadonlyArray1<'py, f64>>().is_ok();
    match (double, wide) {
        (true, true) => sparse_impl::<f64, i64>(py, shape, parts, p, dense_output),
        (true, false) => sparse_impl::<f64, i32>(py, shape, parts, p, dense_output),
        (false, true) => sparse_impl::<f32, i64>(py, shape, parts, p, dense_output),
        (false, false) => sparse_impl::<f32, i32>(py, shape, parts, p, dense_output),
    }
}

fn components_impl<'py, T: Float + Element>(
    py: Python<'py>,
    p: Projection,
    dense: bool,
) -> PyResult<Bound<'py, PyAny>> {
    if dense || p.family() == Family::Gaussian {
        let m = run(py, |_| Ok(p.components_dense::<T>()))?;
        return Ok(to_numpy(py, &m, false).into_any());
    }
    let c = run(py, |_| p.components_csr::<T>())?;
    Ok(csr_tuple(py, c)?.into_any())
}

/// The matrix `R` (`n_components × n_features`): a dense array for the Gaussian family or
/// when `dense`, else `(data, indices, indptr)` of its CSR form.
#[pyfunction]
#[pyo3(signature = (opts, dtype, dense=false))]
pub fn projection_components<'py>(
    py: Python<'py>,
    opts: &Bound<'py, PyDict>,
    dtype: &str,
    dense: bool,
) -> PyResult<Bound<'py, PyAny>> {
    let p = projection(opts)?;
    match dtype {
        "float64" => components_impl::<f64>(py, p, dense),
        "float32" => components_impl::<f32>(py, p, dense),
        other => Err(to_pyerr(invalid!(
            "dtype must be 'float64' or 'float32', got {other:?}"
        ))),
    }
}

fn fastrp_params(opts: &Bound<'_, PyDict>) -> PyResult<FastRpParams> {
    let variant = match get::<String>(opts, "variant")?.as_str() {
        "paper" => Variant::Paper,
        "gds" => Variant::Gds,
        other => {
            return Err(to_pyerr(invalid!(
                "variant must be 'paper' or 'gds', got {other:?}"
            )))
        }
    };
    Ok(FastRpParams {
        variant,
        n_components: get(opts, "n_components")?,
        iteration_weights: get(opts, "iteration_weights")?,
        normalization_strength: get(opts, "normalization_strength")?,
        self_influence: get(opts, "self_influence")?,
        property_dim: get(opts, "property_dim")?,
        density: get(opts, "density")?,
        transition: get(opts, "transition")?,
        normalize: get(opts, "normalize")?,
        seed: get(opts, "seed")?,
    })
}

fn fastrp_impl<'py, T: Float + Element, I: SpIndex + Element>(
    py: Python<'py>,
    n: usize,
    parts: Parts<'_, 'py>,
    features: Option<&Bound<'py, PyAny>>,
    params: &FastRpParams,
) -> PyResult<Bound<'py, PyAny>> {
    let indptr: PyReadonlyArray1<'py, I> = parts.0.extract()?;
    let indices: PyReadonlyArray1<'py, I> = parts.1.extract()?;
    let data: PyReadonlyArray1<'py, T> = parts.2.extract()?;
    let (indptr, indices, data) = (indptr.as_slice()?, indices.as_slice()?, data.as_slice()?);
    let feats: Option<PyReadonlyArray2<'py, T>> = features.map(|f| f.extract()).transpose()?;
    let fview = feats.as_ref().map(view);
    // Allocated here rather than by numpy: for large outputs the allocator (mimalloc) hands
    // out fresh, zeroed pages starting at a 64-byte boundary (seen at 512 MB), so every
    // 128-value float32 row is 8 whole cache lines when a later power gathers it (numpy's
    // data sits 16 bytes past one). Only speed depends on it.
    let k = params.n_components;
    let mut out = vec![T::ZERO; n * k];
    run(py, |stop| {
        let a = CsrRef::new(n, n, indptr, indices, data)?;
        fastrp(a, fview, params, &mut out, stop)
    })?;
    let arr = numpy::ndarray::Array2::from_shape_vec((n, k), out)
        .expect("the shape matches the data by construction");
    Ok(PyArray2::from_owned_array(py, arr).into_any())
}

/// FastRP embeddings (`n × n_components`, C order) of the CSR adjacency given by its arrays;
/// `features` (`n × f`, same dtype as `data`) or None.
#[pyfunction]
#[pyo3(signature = (n, indptr, indices, data, features, opts))]
pub fn fastrp_embed<'py>(
    py: Python<'py>,
    n: usize,
    indptr: &Bound<'py, PyAny>,
    indices: &Bound<'py, PyAny>,
    data: &Bound<'py, PyAny>,
    features: Option<&Bound<'py, PyAny>>,
    opts: &Bound<'py, PyDict>,
) -> PyResult<Bound<'py, PyAny>> {
    let params = fastrp_params(opts)?;
    let parts = (indptr, indices, data);
    let wide = indptr.extract::<PyReadonlyArray1<'py, i64>>().is_ok();
    let double = data.extract::<PyReadonlyArray1<'py, f64>>().is_ok();
    match (double, wide) {
        (true, true) => fastrp_impl::<f64, i64>(py, n, parts, features, &params),
        (true, false) => fastrp_impl::<f64, i32>(py, n, parts, features, &params),
        (false, true) => fastrp_impl::<f32, i64>(py, n, parts, features, &params),
        (false, false) => fastrp_impl::<f32, i32>(py, n, parts, features, &params),
    }
}

/// Adds this module's functions to `rankcore._core`.
pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(projection_transform_dense, m)?)?;
    m.add_function(wrap_pyfunction!(projection_transform_sparse, m)?)?;
    m.add_function(wrap_pyfunction!(projection_components, m)?)?;
    m.add_function(wrap_pyfunction!(fastrp_embed, m)?)?;
    m.add(
        "PROJECTION_STREAM_SPARSE",
        rankcore::projection::STREAM_SPARSE,
    )?;
    m.add(
        "PROJECTION_STREAM_GAUSSIAN",
        rankcore::projection::STREAM_GAUSSIAN,
    )?;
    m.add(
        "PROJECTION_STREAM_FASTRP_FEATURES",
        rankcore::projection::STREAM_FASTRP_FEATURES,
    )?;
    Ok(())
}
