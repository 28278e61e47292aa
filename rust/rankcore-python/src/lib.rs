//! The `rankcore._core` extension: a thin PyO3 layer over the `rankcore` crate. It converts
//! arrays, releases the GIL and maps errors; all maths lives in the core.

mod arrays;
mod funbat;
mod gp;
mod kmedoids;
mod kron;
mod pde;
mod projection;
mod rng;
mod run;
mod svd;
mod tucker;

use pyo3::prelude::*;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

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

/// C entry point for threadpoolctl (see `python/rankcore/_threads.py`): with it,
/// `threadpool_limits(n)` governs rankcore's pool as it governs BLAS and OpenMP.
#[no_mangle]
pub extern "C" fn rankcore_get_num_threads() -> std::ffi::c_int {
    rankcore::threads::num_threads()
        .try_into()
        .unwrap_or(std::ffi::c_int::MAX)
}

/// C entry point for threadpoolctl; counts below 1 mean 1, as OpenBLAS treats them.
#[no_mangle]
pub extern "C" fn rankcore_set_num_threads(n: std::ffi::c_int) {
    let n = usize::try_from(n).unwrap_or(1).max(1);
    // Cannot fail for n >= 1; a C caller has nowhere to receive an error anyway.
    let _ = rankcore::threads::set_num_threads(n);
}

#[pymodule]
fn _core(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(set_num_threads, m)?)?;
    m.add_function(wrap_pyfunction!(get_num_threads, m)?)?;
    // One `register` per algorithm module; each adds its own functions.
    svd::register(m)?;
    rng::register(m)?;
    projection::register(m)?;
    kron::register(m)?;
    gp::register(m)?;
    tucker::register(m)?;
    kmedoids::register(m)?;
    pde::register(m)?;
    funbat::register(m)?;
    Ok(())
}
