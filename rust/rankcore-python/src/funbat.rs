//! Bindings for FunBaT (`rankcore::funbat`): the per-mode Kalman smoother, its evidence and
//! interpolation, the CEP message sums and the predictive moments. Arrays arrive
//! C-contiguous (the Python layer makes sure) and leave flat; Python reshapes. No maths here.

use crate::arrays::vec_to_numpy;
use crate::run::{run, to_pyerr};
use numpy::{Element, PyReadonlyArray1, PyReadonlyArrayDyn};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList};
use rankcore::funbat::{self, CoreKind, Design, Kind, Ssm};
use rankcore::Float;

/// Two flat results as numpy arrays.
fn pair_to_numpy<'py, T: Element>(
    py: Python<'py>,
    a: Vec<T>,
    b: Vec<T>,
) -> (Bound<'py, PyAny>, Bound<'py, PyAny>) {
    (
        vec_to_numpy(py, a).into_any(),
        vec_to_numpy(py, b).into_any(),
    )
}

fn ssm(kind: &str, lengthscale: f64, variance: f64) -> PyResult<Ssm> {
    Ssm::new(Kind::parse(kind).map_err(to_pyerr)?, lengthscale, variance).map_err(to_pyerr)
}

fn core_kind(core: &str) -> PyResult<CoreKind> {
    match core {
        "tucker" => Ok(CoreKind::Tucker),
        "cp" => Ok(CoreKind::Cp),
        _ => Err(pyo3::exceptions::PyValueError::new_err(format!(
            "core must be 'tucker' or 'cp', got {core:?}"
        ))),
    }
}

fn arrays<'py, T: Element>(list: &Bound<'py, PyList>) -> PyResult<Vec<PyReadonlyArrayDyn<'py, T>>> {
    list.iter().map(|a| a.extract()).collect()
}

fn slices<'a, T: Element>(arrs: &'a [PyReadonlyArrayDyn<'_, T>]) -> PyResult<Vec<&'a [T]>> {
    arrs.iter().map(|a| Ok(a.as_slice()?)).collect()
}

fn smooth_impl<'py, T: Float + Element>(
    py: Python<'py>,
    model: Ssm,
    r: usize,
    x: &Bound<'py, PyAny>,
    lam: &Bound<'py, PyAny>,
    eta: &Bound<'py, PyAny>,
) -> PyResult<Bound<'py, PyDict>> {
    let x: PyReadonlyArray1<'py, T> = x.extract()?;
    let lam: PyReadonlyArrayDyn<'py, T> = lam.extract()?;
    let eta: PyReadonlyArrayDyn<'py, T> = eta.extract()?;
    let (xs, ls, es) = (x.as_slice()?, lam.as_slice()?, eta.as_slice()?);
    let st = run(py, |_| funbat::smooth(&model, r, xs, ls, es))?;
    let (m, c) = st.marginals();
    let d = PyDict::new(py);
    d.set_item("mean", vec_to_numpy(py, m))?;
    d.set_item("cov", vec_to_numpy(py, c))?;
    d.set_item("log_z", st.log_z)?;
    d.set_item("d", st.d)?;
    d.set_item("filt_mean", vec_to_numpy(py, st.filt_mean))?;
    d.set_item("filt_cov", vec_to_numpy(py, st.filt_cov))?;
    d.set_item("state_mean", vec_to_numpy(py, st.mean))?;
    d.set_item("state_cov", vec_to_numpy(py, st.cov))?;
    Ok(d)
}

/// Joint Kalman filter + RTS smoother of one mode's `r` functions at sorted nodes `x`, with
/// summed messages `lam` (`n × r × r`) and `eta` (`n × r`). Returns a dict: `mean` (`n·r`),
/// `cov` (`n·r·r`), `log_z`, `d`, and the full states `filt_mean`, `filt_cov`, `state_mean`,
/// `state_cov` (flat) for [`funbat_interpolate`].
#[pyfunction]
#[allow(clippy::too_many_arguments)]
pub fn funbat_smooth<'py>(
    py: Python<'py>,
    kind: &str,
    lengthscale: f64,
    variance: f64,
    r: usize,
    x: &Bound<'py, PyAny>,
    lam: &Bound<'py, PyAny>,
    eta: &Bound<'py, PyAny>,
) -> PyResult<Bound<'py, PyDict>> {
    let model = ssm(kind, lengthscale, variance)?;
    crate::by_dtype!(x, smooth_impl(py, model, r, x, lam, eta))
}

fn evidence_impl<'py, T: Float + Element>(
    py: Python<'py>,
    models: Vec<Ssm>,
    r: usize,
    x: &Bound<'py, PyAny>,
    lam: &Bound<'py, PyAny>,
    eta: &Bound<'py, PyAny>,
) -> PyResult<Vec<f64>> {
    let x: PyReadonlyArray1<'py, T> = x.extract()?;
    let lam: PyReadonlyArrayDyn<'py, T> = lam.extract()?;
    let eta: PyReadonlyArrayDyn<'py, T> = eta.extract()?;
    let (xs, ls, es) = (x.as_slice()?, lam.as_slice()?, eta.as_slice()?);
    run(py, |_| funbat::evidence(&models, r, xs, ls, es))
}

/// The approximate evidence for each `(lengthscale, variance)` row of `params` (`m × 2`),
/// evaluated in parallel; a list of `m` floats.
#[pyfunction]
pub fn funbat_evidence<'py>(
    py: Python<'py>,
    kind: &str,
    params: PyReadonlyArrayDyn<'py, f64>,
    r: usize,
    x: &Bound<'py, PyAny>,
    lam: &Bound<'py, PyAny>,
    eta: &Bound<'py, PyAny>,
) -> PyResult<Vec<f64>> {
    let p = params.as_slice()?;
    let models = p
        .chunks(2)
        .map(|c| ssm(kind, c[0], *c.get(1).unwrap_or(&f64::NAN)))
        .collect::<PyResult<Vec<_>>>()?;
    crate::by_dtype!(x, evidence_impl(py, models, r, x, lam, eta))
}

#[allow(clippy::too_many_arguments)]
fn interp_impl<'py, T: Float + Element>(
    py: Python<'py>,
    model: Ssm,
    r: usize,
    x: &Bound<'py, PyAny>,
    states: &Bound<'py, PyList>,
    xq: &Bound<'py, PyAny>,
) -> PyResult<(Bound<'py, PyAny>, Bound<'py, PyAny>)> {
    let x: PyReadonlyArray1<'py, T> = x.extract()?;
    let xq: PyReadonlyArray1<'py, T> = xq.extract()?;
    let st = arrays::<T>(states)?;
    let s = slices(&st)?;
    if s.len() != 4 {
        return Err(pyo3::exceptions::PyValueError::new_err(
            "states must be [filt_mean, filt_cov, state_mean, state_cov]",
        ));
    }
    let sm =
        funbat::smoother::from_parts(model.dim(), r, s[0], s[1], s[2], s[3]).map_err(to_pyerr)?;
    let (xs, qs) = (x.as_slice()?, xq.as_slice()?);
    let (m, c) = run(py, |_| funbat::interpolate(&model, xs, &sm, qs))?;
    Ok(pair_to_numpy(py, m, c))
}

/// The posterior marginal of one mode's `r` functions at coordinates `xq`, from the states
/// [`funbat_smooth`] returned (`states = [filt_mean, filt_cov, state_mean, state_cov]`):
/// means (`q·r`) and covariances (`q·r·r`), flat.
#[pyfunction]
#[allow(clippy::too_many_arguments)]
pub fn funbat_interpolate<'py>(
    py: Python<'py>,
    kind: &str,
    lengthscale: f64,
    variance: f64,
    r: usize,
    x: &Bound<'py, PyAny>,
    states: &Bound<'py, PyList>,
    xq: &Bound<'py, PyAny>,
) -> PyResult<(Bound<'py, PyAny>, Bound<'py, PyAny>)> {
    let model = ssm(kind, lengthscale, variance)?;
    crate::by_dtype!(x, interp_impl(py, model, r, x, states, xq))
}

#[allow(clippy::too_many_arguments)]
fn messages_impl<'py, T: Float + Element>(
    py: Python<'py>,
    k: Option<usize>,
    ranks: Vec<usize>,
    core: CoreKind,
    nodes: Vec<usize>,
    idx: PyReadonlyArrayDyn<'py, i64>,
    y: &Bound<'py, PyAny>,
    means: &Bound<'py, PyList>,
    seconds: &Bound<'py, PyList>,
    mu: Option<&Bound<'py, PyAny>>,
    m2: Option<&Bound<'py, PyAny>>,
    etau: f64,
) -> PyResult<(Bound<'py, PyAny>, Bound<'py, PyAny>)> {
    let y: PyReadonlyArray1<'py, T> = y.extract()?;
    let ma = arrays::<T>(means)?;
    let sa = arrays::<T>(seconds)?;
    let (mr, sr) = (slices(&ma)?, slices(&sa)?);
    let design = Design {
        ranks: &ranks,
        nodes: &nodes,
        idx: idx.as_slice()?,
        y: y.as_slice()?,
        core,
    };
    let (a, b) = match k {
        Some(k) => {
            let (Some(mu), Some(m2)) = (mu, m2) else {
                return Err(pyo3::exceptions::PyValueError::new_err(
                    "mode messages need the core's moments",
                ));
            };
            let mu: PyReadonlyArrayDyn<'py, T> = mu.extract()?;
            let m2: PyReadonlyArrayDyn<'py, T> = m2.extract()?;
            let (mus, m2s) = (mu.as_slice()?, m2.as_slice()?);
            run(py, |_| {
                funbat::mode_messages(&design, k, &mr, &sr, mus, m2s, T::from_f64(etau))
            })?
        }
        None => run(py, |_| funbat::core_sums(&design, &mr, &sr))?,
    };
    Ok(pair_to_numpy(py, a, b))
}

/// Message sums to every node of mode `k` (`E[τ]` included): `(lam, eta)`, flat
/// `n_k·r_k·r_k` and `n_k·r_k`. `idx`: `n × K` int64 node indices; `means[j]`: `n_j × r_j`;
/// `seconds[j]`: `n_j × r_j × r_j`; `mu`, `m2`: the core's mean and second moment.
#[pyfunction]
#[allow(clippy::too_many_arguments)]
pub fn funbat_mode_messages<'py>(
    py: Python<'py>,
    k: usize,
    ranks: Vec<usize>,
    core: &str,
    nodes: Vec<usize>,
    idx: PyReadonlyArrayDyn<'py, i64>,
    y: &Bound<'py, PyAny>,
    means: &Bound<'py, PyList>,
    seconds: &Bound<'py, PyList>,
    mu: &Bound<'py, PyAny>,
    m2: &Bound<'py, PyAny>,
    etau: f64,
) -> PyResult<(Bound<'py, PyAny>, Bound<'py, PyAny>)> {
    let core = core_kind(core)?;
    crate::by_dtype!(
        y,
        messages_impl(
            py,
            Some(k),
            ranks,
            core,
            nodes,
            idx,
            y,
            means,
            seconds,
            Some(mu),
            Some(m2),
            etau
        )
    )
}

/// The core's message sums `(Σ ⊗ₖ Sᵏ, Σ y ⊗ₖ mᵏ)` (Hadamard for `core="cp"`), flat `R·R`
/// and `R`.
#[pyfunction]
#[allow(clippy::too_many_arguments)]
pub fn funbat_core_sums<'py>(
    py: Python<'py>,
    ranks: Vec<usize>,
    core: &str,
    nodes: Vec<usize>,
    idx: PyReadonlyArrayDyn<'py, i64>,
    y: &Bound<'py, PyAny>,
    means: &Bound<'py, PyList>,
    seconds: &Bound<'py, PyList>,
) -> PyResult<(Bound<'py, PyAny>, Bound<'py, PyAny>)> {
    let core = core_kind(core)?;
    crate::by_dtype!(
        y,
        messages_impl(py, None, ranks, core, nodes, idx, y, means, seconds, None, None, 0.0)
    )
}

fn moments_impl<'py, T: Float + Element>(
    py: Python<'py>,
    ranks: Vec<usize>,
    core: CoreKind,
    means: &Bound<'py, PyList>,
    seconds: Option<&Bound<'py, PyList>>,
    mu: &Bound<'py, PyAny>,
    m2: &Bound<'py, PyAny>,
) -> PyResult<(Bound<'py, PyAny>, Bound<'py, PyAny>)> {
    let ma = arrays::<T>(means)?;
    let sa = match seconds {
        Some(s) => arrays::<T>(s)?,
        None => Vec::new(),
    };
    let mr = slices(&ma)?;
    let sr = slices(&sa)?;
    let mu: PyReadonlyArrayDyn<'py, T> = mu.extract()?;
    let m2: PyReadonlyArrayDyn<'py, T> = m2.extract()?;
    let (mus, m2s) = (mu.as_slice()?, m2.as_slice()?);
    let want = seconds.is_some();
    let (a, b) = run(py, |_| {
        funbat::predict_moments(&ranks, core, &mr, want.then_some(sr.as_slice()), mus, m2s)
    })?;
    Ok(pair_to_numpy(py, a, b))
}

/// `(E[f], E[f²])` at `q` points from per-mode factor moments at those points (`means[k]`:
/// `q × r_k`; `seconds[k]`: `q × r_k × r_k`, or None for the means only, then `E[f²]` is
/// empty) and the core's mean and second moment.
#[pyfunction]
#[pyo3(signature = (ranks, core, means, seconds, mu, m2))]
pub fn funbat_predict_moments<'py>(
    py: Python<'py>,
    ranks: Vec<usize>,
    core: &str,
    means: &Bound<'py, PyList>,
    seconds: Option<&Bound<'py, PyList>>,
    mu: &Bound<'py, PyAny>,
    m2: &Bound<'py, PyAny>,
) -> PyResult<(Bound<'py, PyAny>, Bound<'py, PyAny>)> {
    let core = core_kind(core)?;
    crate::by_dtype!(mu, moments_impl(py, ranks, core, means, seconds, mu, m2))
}

fn posterior_impl<'py, T: Float + Element>(
    py: Python<'py>,
    lam: &Bound<'py, PyAny>,
    eta: &Bound<'py, PyAny>,
) -> PyResult<(Bound<'py, PyAny>, Bound<'py, PyAny>)> {
    let lam: PyReadonlyArrayDyn<'py, T> = lam.extract()?;
    let eta: PyReadonlyArrayDyn<'py, T> = eta.extract()?;
    let (ls, es) = (lam.as_slice()?, eta.as_slice()?);
    let (m, c) = run(py, |_| funbat::core_posterior(ls, es))?;
    Ok(pair_to_numpy(py, m, c))
}

/// The core's posterior mean (`R`) and covariance (flat `R·R`) for the precision `I + lam`
/// and shift `eta` (sequential Cholesky in the core).
#[pyfunction]
pub fn funbat_core_posterior<'py>(
    py: Python<'py>,
    lam: &Bound<'py, PyAny>,
    eta: &Bound<'py, PyAny>,
) -> PyResult<(Bound<'py, PyAny>, Bound<'py, PyAny>)> {
    crate::by_dtype!(eta, posterior_impl(py, lam, eta))
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(funbat_smooth, m)?)?;
    m.add_function(wrap_pyfunction!(funbat_evidence, m)?)?;
    m.add_function(wrap_pyfunction!(funbat_interpolate, m)?)?;
    m.add_function(wrap_pyfunction!(funbat_mode_messages, m)?)?;
    m.add_function(wrap_pyfunction!(funbat_core_sums, m)?)?;
    m.add_function(wrap_pyfunction!(funbat_predict_moments, m)?)?;
    m.add_function(wrap_pyfunction!(funbat_core_posterior, m)?)?;
    Ok(())
}
