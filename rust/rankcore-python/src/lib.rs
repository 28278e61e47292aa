//! The `rankcore._core` extension: a thin PyO3 layer over the `rankcore` crate. It converts
//! arrays, releases the GIL and maps errors; all maths lives in the core.

mod arrays;
mod kmedoids;
mod rng;
mod run;
mod svd;

use pyo3::prelude::*;

/// Sets the number of threads rankcore's parallel code uses.
#[pyfunction]
fn set_num_threads(n: usize) -> PyResult<()> {
    rankcore::threads::set_num_threads(n).map_err(run::to_pyerr)
}

/// The number of threads rankcore's parallel code uses.
#[pyfunction]
fn get_num_threads() -> usize {
    rankcore::threads::num_threads()
}

#[pymodule]
fn _core(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(set_num_threads, m)?)?;
    m.add_function(wrap_pyfunction!(get_num_threads, m)?)?;
    // One `register` per algorithm module; each adds its own functions.
    svd::register(m)?;
    rng::register(m)?;
    kmedoids::register(m)?;
    Ok(())
}
