//! Philox random matrices, exposed so that tests (and later the GPU path) can check that
//! entry (i, j) depends on (seed, stream, i, j) only.

use crate::arrays::to_numpy;
use crate::run::to_pyerr;
use numpy::PyArray2;
use pyo3::prelude::*;
use rankcore::invalid;
use rankcore::rng::RandomMatrix;

/// A block of the random matrix `kind` ("normal", "uniform" or "rademacher") for the given
/// seed and stream, rows `row0..row0+nrows`, columns `col0..col0+ncols`, as float64.
#[pyfunction]
#[pyo3(signature = (kind, seed, stream, row0, col0, nrows, ncols))]
pub fn random_matrix<'py>(
    py: Python<'py>,
    kind: &str,
    seed: u64,
    stream: u32,
    row0: u64,
    col0: u32,
    nrows: usize,
    ncols: usize,
) -> PyResult<Bound<'py, PyArray2<f64>>> {
    let rng = RandomMatrix::new(seed, stream);
    let mut out = faer::Mat::<f64>::zeros(nrows, ncols);
    match kind {
        "normal" => rng.fill_normal(row0, col0, out.as_mut()),
        "uniform" => rng.fill_uniform(row0, col0, out.as_mut()),
        "rademacher" => rng.fill_rademacher(row0, col0, out.as_mut()),
        other => {
            return Err(to_pyerr(invalid!(
                "kind must be 'normal', 'uniform' or 'rademacher', got {other:?}"
            )))
        }
    }
    Ok(to_numpy(py, &out, false))
}

/// Adds this module's functions to `rankcore._core`.
pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(random_matrix, m)?)?;
    Ok(())
}
