//! Bindings for k-medoids: unpack the dissimilarity source (square matrix, condensed vector or
//! features), run the core through `run`, pack the result. No maths here.

use crate::arrays::vec_to_numpy;
use crate::run::{run, to_pyerr};
use numpy::{Element, PyArrayMethods, PyReadonlyArray1, PyReadonlyArray2, PyUntypedArrayMethods};
use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;
use pyo3::types::PyDict;
use rankcore::kmedoids::csr::CsrFeatures;
use rankcore::kmedoids::dissimilarity::{
    Condensed, Dissimilarity, Features, Fma, Materialise, Metric, Square,
};
use rankcore::kmedoids::init::Init;
use rankcore::kmedoids::msc::DynFit;
use rankcore::kmedoids::silhouette::medoid_silhouette;
use rankcore::kmedoids::{kmedoids, Method, Params};
use rankcore::{invalid, Float, Interrupt};

fn get<'py, T: FromPyObjectOwned<'py>>(d: &Bound<'py, PyDict>, key: &str) -> PyResult<T> {
    d.get_item(key)?
        .ok_or_else(|| PyTypeError::new_err(format!("missing option {key}")))?
        .extract::<T>()
        .map_err(Into::into)
}

fn params(opts: &Bound<'_, PyDict>) -> PyResult<Params> {
    let mut p = Params::new(get(opts, "n_clusters")?);
    p.method = Method::parse(&get::<String>(opts, "method")?).map_err(to_pyerr)?;
    p.init = match get::<Vec<usize>>(opts, "medoids") {
        Ok(m) => Init::Given(m),
        Err(_) => Init::parse(&get::<String>(opts, "init")?).map_err(to_pyerr)?,
    };
    p.max_iter = get(opts, "max_iter")?;
    p.seed = get(opts, "seed")?;
    p.verbose = get(opts, "verbose")?;
    p.n_samples = get(opts, "n_samples")?;
    p.sample_size = get(opts, "sample_size")?;
    p.matrix_budget = get(opts, "matrix_budget")?;
    Ok(p)
}

/// Calls `f` with the dissimilarity source named by `kind` over `data` (dtype `T`).
fn with_source<T: Fma + Element, R: Send>(
    kind: &str,
    data: &Bound<'_, PyAny>,
    metric: &str,
    f: impl FnOnce(&dyn SourceRun<T>, &dyn Interrupt) -> rankcore::Result<R> + Send,
) -> PyResult<R> {
    let py = data.py();
    match kind {
        "square" => {
            let a: PyReadonlyArray2<'_, T> = data.extract()?;
            let n = a.shape()[0];
            let s = a.as_slice()?;
            run(py, |stop| {
                let src = Square::new(s, n)?;
                f(&Wrap(src), stop)
            })
        }
        "condensed" => {
            let a: PyReadonlyArray1<'_, T> = data.extract()?;
            let s = a.as_slice()?;
            run(py, |stop| f(&Wrap(Condensed::new(s)?), stop))
        }
        "features" => {
            let a: PyReadonlyArray2<'_, T> = data.extract()?;
            let (n, d) = (a.shape()[0], a.shape()[1]);
            let s = a.as_slice()?;
            let metric = Metric::parse(metric).map_err(to_pyerr)?;
            run(py, |stop| {
                f(&FeatWrap(Features::new(s, n, d, metric)?), stop)
            })
        }
        "csr" => {
            type Csr<'py, T> = (
                PyReadonlyArray1<'py, T>,
                PyReadonlyArray1<'py, i64>,
                PyReadonlyArray1<'py, i64>,
                usize,
            );
            let (values, indptr, indices, d): Csr<'_, T> = data.extract()?;
            let (v, p, i) = (values.as_slice()?, indptr.as_slice()?, indices.as_slice()?);
            let metric = Metric::parse(metric).map_err(to_pyerr)?;
            run(py, |stop| {
                f(&FeatWrap(CsrFeatures::new(p, i, v, d, metric)?), stop)
            })
        }
        other => Err(to_pyerr(invalid!("unknown dissimilarity kind {other:?}"))),
    }
}

/// Object-safe view of a source that runs the algorithms monomorphised on its concrete type.
trait SourceRun<T: Float>: Sync {
    fn fit(
        &self,
        p: &Params,
        w: Option<&[f64]>,
        stop: &dyn Interrupt,
    ) -> rankcore::Result<rankcore::kmedoids::Fit>;
    fn silhouette(&self, med: &[usize]) -> rankcore::Result<(f64, Vec<f64>)>;
    fn dynmsc(&self, p: &Params, k_min: usize, stop: &dyn Interrupt) -> rankcore::Result<DynFit>;
    fn matrix(&self) -> Vec<T>;
    fn len(&self) -> usize;
}

struct Wrap<D>(D);
/// Features (dense or CSR): may materialise the matrix first (see `kmedoids_features`).
struct FeatWrap<D>(D);

impl<T: Float, D: Materialise<T>> SourceRun<T> for FeatWrap<D> {
    fn fit(
        &self,
        p: &Params,
        w: Option<&[f64]>,
        stop: &dyn Interrupt,
    ) -> rankcore::Result<rankcore::kmedoids::Fit> {
        rankcore::kmedoids::kmedoids_features(&self.0, p, w, stop)
    }
    fn silhouette(&self, med: &[usize]) -> rankcore::Result<(f64, Vec<f64>)> {
        medoid_silhouette(&self.0, med)
    }
    fn dynmsc(&self, p: &Params, k_min: usize, stop: &dyn Interrupt) -> rankcore::Result<DynFit> {
        rankcore::kmedoids::dynmsc(&self.0, p, k_min, stop)
    }
    fn matrix(&self) -> Vec<T> {
        self.0.to_matrix()
    }
    fn len(&self) -> usize {
        self.0.len()
    }
}

impl<T: Float, D: Dissimilarity<T>> SourceRun<T> for Wrap<D> {
    fn fit(
        &self,
        p: &Params,
        w: Option<&[f64]>,
        stop: &dyn Interrupt,
    ) -> rankcore::Result<rankcore::kmedoids::Fit> {
        kmedoids(&self.0, p, w, stop)
    }
    fn silhouette(&self, med: &[usize]) -> rankcore::Result<(f64, Vec<f64>)> {
        medoid_silhouette(&self.0, med)
    }
    fn dynmsc(&self, p: &Params, k_min: usize, stop: &dyn Interrupt) -> rankcore::Result<DynFit> {
        rankcore::kmedoids::dynmsc(&self.0, p, k_min, stop)
    }
    fn matrix(&self) -> Vec<T> {
        let n = self.0.len();
        let mut out = vec![T::ZERO; n * n];
        let rows: Vec<usize> = (0..n).collect();
        use rayon::prelude::*;
        out.par_chunks_mut(n * 4)
            .zip(rows.par_chunks(4))
            .for_each(|(o, r)| self.0.rows_into(r, o));
        out
    }
    fn len(&self) -> usize {
        self.0.len()
    }
}

fn fit_impl<'py, T: Fma + Element>(
    kind: &str,
    data: &Bound<'py, PyAny>,
    metric: &str,
    opts: &Bound<'py, PyDict>,
) -> PyResult<Bound<'py, PyDict>> {
    let py = data.py();
    let p = params(opts)?;
    let weights: Option<PyReadonlyArray1<'py, f64>> = get(opts, "sample_weight")?;
    let w = match &weights {
        Some(a) => Some(a.as_slice()?),
        None => None,
    };
    let fit = with_source::<T, _>(kind, data, metric, |src, stop| src.fit(&p, w, stop))?;
    let d = PyDict::new(py);
    let idx = |v: Vec<usize>| v.into_iter().map(|x| x as i64).collect::<Vec<_>>();
    d.set_item("medoids", vec_to_numpy(py, idx(fit.medoids)))?;
    d.set_item("labels", vec_to_numpy(py, idx(fit.labels)))?;
    d.set_item("init_medoids", vec_to_numpy(py, idx(fit.init_medoids)))?;
    d.set_item("loss", fit.loss)?;
    d.set_item("n_iter", fit.n_iter)?;
    d.set_item("n_swap", fit.n_swap)?;
    d.set_item("converged", fit.converged)?;
    Ok(d)
}

/// k-medoids on a source: `kind` is "square" (C-contiguous n×n), "condensed" (pdist vector),
/// "features" (C-contiguous n×d with `metric`) or "csr" (a tuple `(values, indptr, indices,
/// n_features)`, int64 indices, canonical rows, with `metric`); dtype float32 or float64.
/// Returns a dict.
#[pyfunction]
pub fn kmedoids_fit<'py>(
    kind: &str,
    data: &Bound<'py, PyAny>,
    metric: &str,
    opts: &Bound<'py, PyDict>,
) -> PyResult<Bound<'py, PyDict>> {
    crate::by_dtype!(data, fit_impl(kind, data, metric, opts))
}

fn sil_impl<'py, T: Fma + Element>(
    kind: &str,
    data: &Bound<'py, PyAny>,
    metric: &str,
    medoids: Vec<usize>,
) -> PyResult<(f64, Bound<'py, numpy::PyArray1<f64>>)> {
    let py = data.py();
    let (mean, values) =
        with_source::<T, _>(kind, data, metric, |src, _| src.silhouette(&medoids))?;
    Ok((mean, vec_to_numpy(py, values)))
}

/// Medoid silhouette (mean, per-point values) of the given medoids.
#[pyfunction]
pub fn kmedoids_silhouette<'py>(
    kind: &str,
    data: &Bound<'py, PyAny>,
    metric: &str,
    medoids: Vec<usize>,
) -> PyResult<(f64, Bound<'py, numpy::PyArray1<f64>>)> {
    crate::by_dtype!(data, sil_impl(kind, data, metric, medoids))
}

fn matrix_impl<'py, T: Fma + Element>(
    kind: &str,
    data: &Bound<'py, PyAny>,
    metric: &str,
) -> PyResult<Bound<'py, PyAny>> {
    let py = data.py();
    let (n, m) = with_source::<T, _>(kind, data, metric, |src, _| Ok((src.len(), src.matrix())))?;
    let arr = numpy::PyArray1::from_vec(py, m);
    Ok(arr.reshape([n, n])?.into_any())
}

/// The full n×n dissimilarity matrix of a source, from the same kernel the algorithms use.
#[pyfunction]
pub fn kmedoids_matrix<'py>(
    kind: &str,
    data: &Bound<'py, PyAny>,
    metric: &str,
) -> PyResult<Bound<'py, PyAny>> {
    crate::by_dtype!(data, matrix_impl(kind, data, metric))
}

fn dyn_impl<'py, T: Fma + Element>(
    kind: &str,
    data: &Bound<'py, PyAny>,
    metric: &str,
    opts: &Bound<'py, PyDict>,
) -> PyResult<Bound<'py, PyDict>> {
    let py = data.py();
    let p = params(opts)?;
    let k_min: usize = get(opts, "min_clusters")?;
    let fit = with_source::<T, _>(kind, data, metric, |src, stop| src.dynmsc(&p, k_min, stop))?;
    let d = PyDict::new(py);
    let idx = |v: Vec<usize>| v.into_iter().map(|x| x as i64).collect::<Vec<_>>();
    d.set_item("medoids", vec_to_numpy(py, idx(fit.medoids)))?;
    d.set_item("labels", vec_to_numpy(py, idx(fit.labels)))?;
    d.set_item("silhouette", fit.silhouette)?;
    d.set_item("loss", fit.loss)?;
    d.set_item("n_swap", fit.n_swap)?;
    let ks: Vec<i64> = fit.per_k.iter().map(|t| t.0 as i64).collect();
    let sils: Vec<f64> = fit.per_k.iter().map(|t| t.1).collect();
    d.set_item("ks", vec_to_numpy(py, ks))?;
    d.set_item("silhouettes", vec_to_numpy(py, sils))?;
    Ok(d)
}

/// DynMSC: FasterMSC for k = n_clusters down to min_clusters; the k of the best silhouette.
#[pyfunction]
pub fn kmedoids_dynmsc<'py>(
    kind: &str,
    data: &Bound<'py, PyAny>,
    metric: &str,
    opts: &Bound<'py, PyDict>,
) -> PyResult<Bound<'py, PyDict>> {
    crate::by_dtype!(data, dyn_impl(kind, data, metric, opts))
}

/// Adds this module's functions to `rankcore._core`.
pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(kmedoids_fit, m)?)?;
    m.add_function(wrap_pyfunction!(kmedoids_silhouette, m)?)?;
    m.add_function(wrap_pyfunction!(kmedoids_matrix, m)?)?;
    m.add_function(wrap_pyfunction!(kmedoids_dynmsc, m)?)?;
    Ok(())
}
