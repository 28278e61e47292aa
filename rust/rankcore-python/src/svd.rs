//! Bindings for randomized SVD (dense and CSR/CSC, f32/f64). No maths here: unpack the
//! arrays, run the core through `run`, pack the result.

use crate::arrays::{to_numpy, vec_to_numpy, view};
use crate::run::{run, to_pyerr};
use numpy::{Element, PyArray1, PyArray2, PyReadonlyArray1, PyReadonlyArray2};
use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;
use pyo3::types::PyDict;
use rankcore::linalg::{centred_gram, eigh_desc};
use rankcore::operator::{Dense, LinOp, Operator, Sparse};
use rankcore::sparse::{CsrRef, SpIndex};
use rankcore::svd::{adaptive_svd, randomized_svd, AdaptiveParams, Normalizer, RsvdParams, Svd};
use rankcore::{invalid, Float};

/// Options shared by the dense and sparse entry points, already validated in Python.
#[derive(Clone, Copy)]
struct Options {
    n_components: usize,
    n_oversamples: usize,
    n_iter: usize,
    normalizer: Normalizer,
    transpose: bool,
    seed: u64,
    center: bool,
    tol: Option<f64>,
    block_size: usize,
}

fn options(opts: &Bound<'_, PyDict>) -> PyResult<Options> {
    fn get<'py, T: FromPyObjectOwned<'py>>(d: &Bound<'py, PyDict>, key: &str) -> PyResult<T> {
        d.get_item(key)?
            .ok_or_else(|| PyTypeError::new_err(format!("missing option {key}")))?
            .extract::<T>()
            .map_err(Into::into)
    }
    let normalizer = match get::<String>(opts, "power_iteration_normalizer")?.as_str() {
        "none" => Normalizer::None,
        "LU" => Normalizer::Lu,
        "QR" => Normalizer::Qr,
        other => {
            return Err(to_pyerr(invalid!(
                "power_iteration_normalizer must be 'LU', 'QR' or 'none', got {other:?}"
            )))
        }
    };
    Ok(Options {
        n_components: get(opts, "n_components")?,
        n_oversamples: get(opts, "n_oversamples")?,
        n_iter: get(opts, "n_iter")?,
        normalizer,
        transpose: get(opts, "transpose")?,
        seed: get(opts, "seed")?,
        center: get(opts, "center")?,
        tol: get(opts, "tol")?,
        block_size: get(opts, "block_size")?,
    })
}

type Packed<T> = (Svd<T>, Option<Vec<T>>);

/// Runs the fixed-rank or fixed-accuracy method on a (possibly transposed) operator.
fn solve<T: Float>(
    inner: &dyn LinOp<T>,
    transposed: bool,
    o: Options,
    stop: &dyn rankcore::Interrupt,
) -> rankcore::Result<Packed<T>> {
    let mut op = Operator::new(inner, transposed);
    let mut mean = None;
    if o.center {
        let (centred, mu) = op.centred();
        op = centred;
        mean = Some(mu);
    }
    let svd = match o.tol {
        Some(tol) => {
            let p = AdaptiveParams {
                tol,
                block_size: o.block_size,
                n_iter: o.n_iter,
                max_rank: o.n_components,
                transpose: o.transpose,
                seed: o.seed,
            };
            adaptive_svd(&op, &p, stop)?
        }
        None => {
            let p = RsvdParams {
                n_components: o.n_components,
                n_oversamples: o.n_oversamples,
                n_iter: o.n_iter,
                normalizer: o.normalizer,
                transpose: o.transpose,
                seed: o.seed,
            };
            randomized_svd(&op, &p, stop)?
        }
    };
    Ok((svd, mean))
}

fn pack<'py, T: Float + Element>(
    py: Python<'py>,
    (svd, mean): Packed<T>,
) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("U", to_numpy(py, &svd.u, false))?;
    d.set_item("S", vec_to_numpy(py, svd.s))?;
    d.set_item("Vt", to_numpy(py, &svd.v, true))?;
    d.set_item("mean", mean.map(|m| vec_to_numpy(py, m)))?;
    d.set_item("rel_error", svd.rel_error)?;
    Ok(d)
}

fn dense_impl<'py, T: Float + Element>(
    a: &Bound<'py, PyAny>,
    o: Options,
) -> PyResult<Bound<'py, PyDict>> {
    let py = a.py();
    let arr: PyReadonlyArray2<'py, T> = a.extract()?;
    let mat = view(&arr);
    let out = run(py, |stop| solve(&Dense::new(mat), false, o, stop))?;
    pack(py, out)
}

/// Randomized SVD of a dense float32/float64 array (any strides). Returns a dict with
/// `U`, `S`, `Vt`, `mean` (when centred) and `rel_error` (fixed-accuracy mode).
#[pyfunction]
pub fn rsvd_dense<'py>(
    a: &Bound<'py, PyAny>,
    opts: &Bound<'py, PyDict>,
) -> PyResult<Bound<'py, PyDict>> {
    let o = options(opts)?;
    if a.extract::<PyReadonlyArray2<'py, f64>>().is_ok() {
        dense_impl::<f64>(a, o)
    } else if a.extract::<PyReadonlyArray2<'py, f32>>().is_ok() {
        dense_impl::<f32>(a, o)
    } else {
        Err(PyTypeError::new_err(
            "A must be a 2-D float32 or float64 numpy array",
        ))
    }
}

fn sparse_impl<'py, T: Float + Element, I: SpIndex + Element>(
    py: Python<'py>,
    shape: (usize, usize),
    csc: bool,
    parts: (&Bound<'py, PyAny>, &Bound<'py, PyAny>, &Bound<'py, PyAny>),
    o: Options,
) -> PyResult<Bound<'py, PyDict>> {
    let indptr: PyReadonlyArray1<'py, I> = parts.0.extract()?;
    let indices: PyReadonlyArray1<'py, I> = parts.1.extract()?;
    let data: PyReadonlyArray1<'py, T> = parts.2.extract()?;
    let (indptr, indices, data) = (indptr.as_slice()?, indices.as_slice()?, data.as_slice()?);
    // A CSC matrix is the CSR matrix of its transpose.
    let (rows, cols) = if csc { (shape.1, shape.0) } else { shape };
    let out = run(py, |stop| {
        let csr = CsrRef::new(rows, cols, indptr, indices, data)?;
        let op = Sparse::new(csr)?;
        solve(&op, csc, o, stop)
    })?;
    pack(py, out)
}

/// Randomized SVD of a CSR (or CSC when `csc`) matrix given by its three arrays. `indptr`
/// and `indices` share one dtype (int32 or int64), `data` is float32 or float64; all three
/// must be contiguous.
#[pyfunction]
#[pyo3(signature = (shape, csc, indptr, indices, data, opts))]
pub fn rsvd_sparse<'py>(
    py: Python<'py>,
    shape: (usize, usize),
    csc: bool,
    indptr: &Bound<'py, PyAny>,
    indices: &Bound<'py, PyAny>,
    data: &Bound<'py, PyAny>,
    opts: &Bound<'py, PyDict>,
) -> PyResult<Bound<'py, PyDict>> {
    let o = options(opts)?;
    let parts = (indptr, indices, data);
    let wide = indptr.extract::<PyReadonlyArray1<'py, i64>>().is_ok();
    let double = data.extract::<PyReadonlyArray1<'py, f64>>().is_ok();
    match (double, wide) {
        (true, true) => sparse_impl::<f64, i64>(py, shape, csc, parts, o),
        (true, false) => sparse_impl::<f64, i32>(py, shape, csc, parts, o),
        (false, true) => sparse_impl::<f32, i64>(py, shape, csc, parts, o),
        (false, false) => sparse_impl::<f32, i32>(py, shape, csc, parts, o),
    }
}

/// `(G, mean)` as numpy arrays.
type GramOut<'py> = (Bound<'py, PyArray2<f64>>, Bound<'py, PyArray1<f64>>);
/// `(eigenvalues, eigenvectors, mean)` as numpy arrays.
type EighOut<'py> = (
    Bound<'py, PyArray1<f64>>,
    Bound<'py, PyArray2<f64>>,
    Bound<'py, PyArray1<f64>>,
);

fn gram_impl<'py, T: Float + Element>(
    x: &Bound<'py, PyAny>,
    center: bool,
) -> PyResult<GramOut<'py>> {
    let py = x.py();
    let arr: PyReadonlyArray2<'py, T> = x.extract()?;
    let mat = view(&arr);
    let (gram, mean) = run(py, |_| Ok(centred_gram(mat, center)))?;
    Ok((to_numpy(py, &gram, false), vec_to_numpy(py, mean)))
}

/// `(G, mean)` of a dense float32/float64 array `x` (any strides): the float64 column means
/// (zeros unless `center`) and Gram matrix `Σᵢ (xᵢ - μ)(xᵢ - μ)ᵀ` of its rows, in one pass
/// (`linalg::centred_gram`: the covariance route of PCA).
#[pyfunction]
pub fn centred_gram_dense<'py>(x: &Bound<'py, PyAny>, center: bool) -> PyResult<GramOut<'py>> {
    crate::by_dtype!(x, gram_impl(x, center))
}

fn covariance_impl<'py, T: Float + Element>(x: &Bound<'py, PyAny>) -> PyResult<EighOut<'py>> {
    let py = x.py();
    let arr: PyReadonlyArray2<'py, T> = x.extract()?;
    let mat = view(&arr);
    let (vals, vecs, mean) = run(py, |_| {
        let (gram, mean) = centred_gram(mat, true);
        // NaN or infinity in X reach the means; squares that overflow reach the Gram matrix
        if !mean.iter().all(|v| v.is_finite()) || !gram.is_all_finite() {
            return Err(rankcore::invalid!(
                "X contains NaN or infinity, or values whose squares overflow"
            ));
        }
        let (vecs, vals) = eigh_desc(gram.as_ref(), "eigendecomposition of the covariance")?;
        Ok((vals, vecs, mean))
    })?;
    Ok((
        vec_to_numpy(py, vals),
        to_numpy(py, &vecs, false),
        vec_to_numpy(py, mean),
    ))
}

/// `(eigenvalues, eigenvectors, mean)` of the centred Gram matrix of the rows of a dense
/// float32/float64 array `x` (all float64, eigenvalues non-increasing and clipped at zero):
/// [`centred_gram_dense`] and faer's symmetric eigensolver in one call, so that PCA's
/// covariance route never wakes BLAS threads that would then compete with ours.
#[pyfunction]
pub fn covariance_eigh_dense<'py>(x: &Bound<'py, PyAny>) -> PyResult<EighOut<'py>> {
    crate::by_dtype!(x, covariance_impl(x))
}

/// Adds this module's functions to `rankcore._core`.
pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(rsvd_dense, m)?)?;
    m.add_function(wrap_pyfunction!(rsvd_sparse, m)?)?;
    m.add_function(wrap_pyfunction!(centred_gram_dense, m)?)?;
    m.add_function(wrap_pyfunction!(covariance_eigh_dense, m)?)?;
    Ok(())
}
