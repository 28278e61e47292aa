//! k-medoids clustering: PAM, FastPAM1, FastPAM2, FasterPAM, alternating (Voronoi) iteration
//! and FastCLARA, over any [`Dissimilarity`] source, with BUILD / LAB / random / k-medoids++
//! initialisation, sample weights and the medoid silhouette.
//!
//! Schubert & Rousseeuw, "Faster k-Medoids Clustering: Improving the PAM, CLARA, and CLARANS
//! Algorithms" (SISAP 2019) and "Fast and Eager k-Medoids Clustering: O(k) Runtime Improvement
//! of the PAM, CLARA, and CLARANS Algorithms" (Information Systems 101, 2021).
//!
//! **Weights.** A point with weight `w` counts as `w` copies of itself: the loss is
//! `Σ_o w_o d(o, medoid(o))` and every swap gain is weighted the same way. The weight of a
//! medoid candidate enters only through its own assignment cost (which is zero once it is a
//! medoid), exactly as its duplicates would.
//!
//! **Determinism.** Candidate swaps are evaluated in parallel blocks against the current
//! state, and the first improving candidate in the sequential order (FasterPAM) or the best
//! one with the lowest (candidate, slot) on ties (PAM, FastPAM1) is taken; candidates after
//! it are re-evaluated. Every sum runs in a fixed order, so 1 and N threads give the same
//! bits as the sequential algorithm.

pub mod alternate;
pub mod clara;
pub mod clarans;
pub mod csr;
pub mod dissimilarity;
pub mod fasterpam;
pub mod fastpam1;
pub mod fastpam2;
pub mod init;
pub mod msc;
pub mod onebatch;
pub mod silhouette;
pub mod state;

use crate::{invalid, Float, Interrupt, Result};
use dissimilarity::Dissimilarity;
use init::Init;
use rayon::prelude::*;
use state::State;

/// The swap (or alternating) strategy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    Pam,
    FastPam1,
    FastPam2,
    FasterPam,
    Alternate,
    Clara,
    /// FasterMSC: eager swaps maximising the medoid silhouette.
    FasterMsc,
    /// FastCLARANS: randomised swaps, best of `n_samples` restarts.
    Clarans,
    /// OneBatchPAM: eager swaps with the loss estimated on one batch of `sample_size` points.
    OneBatch,
}

impl Method {
    pub fn parse(name: &str) -> Result<Self> {
        Ok(match name {
            "pam" => Self::Pam,
            "fastpam1" => Self::FastPam1,
            "fastpam2" => Self::FastPam2,
            "fasterpam" => Self::FasterPam,
            "alternate" => Self::Alternate,
            "clara" => Self::Clara,
            "fastermsc" => Self::FasterMsc,
            "clarans" => Self::Clarans,
            "onebatch" => Self::OneBatch,
            other => {
                return Err(invalid!(
                    "method must be 'fasterpam', 'fastpam1', 'fastpam2', 'pam', 'alternate', 'clara', 'clarans', 'onebatch' or 'fastermsc', got {other:?}"
                ))
            }
        })
    }
}

/// Parameters of one run.
#[derive(Clone, Debug)]
pub struct Params {
    pub n_clusters: usize,
    pub method: Method,
    pub init: Init,
    /// Passes over the candidates (FasterPAM, alternate), swaps (PAM, FastPAM1) or
    /// iterations (FastPAM2). 0 only assigns the points to the initial medoids.
    pub max_iter: usize,
    pub seed: u64,
    pub verbose: bool,
    /// CLARA: number of samples and sample size (0: 80 + 4k); OneBatchPAM: batch size in
    /// `sample_size` (0: see [`onebatch::batch_size`]).
    pub n_samples: usize,
    pub sample_size: usize,
    /// Feature input: materialise the n×n matrix (same kernel, same bits) when it takes at
    /// most this many bytes; every pass then reads rows instead of recomputing them.
    pub matrix_budget: usize,
}

/// Default [`Params::matrix_budget`]: 256 MiB (n = 8192 in f32, 5792 in f64).
pub const MATRIX_BUDGET: usize = 256 << 20;

impl Params {
    pub fn new(n_clusters: usize) -> Self {
        Self {
            n_clusters,
            method: Method::FasterPam,
            init: Init::Build,
            max_iter: 300,
            seed: 0,
            verbose: false,
            n_samples: 5,
            sample_size: 0,
            matrix_budget: MATRIX_BUDGET,
        }
    }
}

/// The result of a run.
#[derive(Clone, Debug, PartialEq)]
pub struct Fit {
    /// Medoid indices; cluster `c` is the one of `medoids[c]`.
    pub medoids: Vec<usize>,
    /// Cluster of each point (the nearest medoid; ties to the lowest cluster, a medoid to its
    /// own cluster).
    pub labels: Vec<usize>,
    /// Weighted loss `Σ w_o d(o, medoid(o))`, accumulated in f64.
    pub loss: f64,
    pub n_iter: usize,
    pub n_swap: usize,
    /// Whether the run stopped at a local optimum rather than at `max_iter`.
    pub converged: bool,
    /// Medoids the initialisation chose.
    pub init_medoids: Vec<usize>,
}

/// Counters a swap loop reports.
#[derive(Clone, Copy, Debug, Default)]
pub struct Progress {
    pub n_iter: usize,
    pub n_swap: usize,
    pub converged: bool,
}

/// Validates `k` and the weights (None: all ones).
pub fn check_inputs(n: usize, k: usize, weights: Option<&[f64]>) -> Result<Vec<f64>> {
    if k == 0 || k > n {
        return Err(invalid!(
            "n_clusters must be in [1, n_samples = {n}], got {k}"
        ));
    }
    match weights {
        None => Ok(vec![1.0; n]),
        Some(w) => {
            if w.len() != n {
                return Err(invalid!(
                    "sample_weight must have length n_samples = {n}, got {}",
                    w.len()
                ));
            }
            if w.iter().any(|&v| !v.is_finite() || v < 0.0) {
                return Err(invalid!("sample_weight must be finite and non-negative"));
            }
            if !w.iter().any(|&v| v > 0.0) {
                return Err(invalid!("sample_weight must not be all zero"));
            }
            Ok(w.to_vec())
        }
    }
}

/// Error for dissimilarities that overflowed `T` (inputs are finite, so an infinite loss or a
/// NaN silhouette can only come from distances past `T::MAX`): no silent `inf` results.
pub(crate) fn overflow_error<T: Float>() -> crate::Error {
    let ty = if std::mem::size_of::<T>() == 4 {
        "float32"
    } else {
        "float64"
    };
    invalid!(
        "dissimilarities overflowed the {ty} range (infinite distances or loss); \
         use float64 input or rescale the data"
    )
}

/// Clusters the `src.len()` objects into `params.n_clusters` clusters.
pub fn kmedoids<T: Float, D: Dissimilarity<T>>(
    src: &D,
    params: &Params,
    weights: Option<&[f64]>,
    stop: &dyn Interrupt,
) -> Result<Fit> {
    let fit = fit_any(src, params, weights, stop)?;
    if !fit.loss.is_finite() {
        return Err(overflow_error::<T>());
    }
    Ok(fit)
}

fn fit_any<T: Float, D: Dissimilarity<T>>(
    src: &D,
    params: &Params,
    weights: Option<&[f64]>,
    stop: &dyn Interrupt,
) -> Result<Fit> {
    let n = src.len();
    let k = params.n_clusters;
    let w = check_inputs(n, k, weights)?;
    match params.method {
        Method::Clara => return clara::clara(src, params, &w, stop),
        Method::Clarans => return clarans::clarans(src, params, &w, stop),
        Method::OneBatch => return onebatch::onebatch(src, params, &w, stop),
        _ => {}
    }
    let init_medoids = init::initialize(src, k, &params.init, &w, params.seed, stop)?;
    let mut st = State::new(src, &init_medoids, &w);
    if params.verbose {
        eprintln!("kmedoids: init loss {:.6e}", st.loss);
    }
    let it = params.max_iter;
    let v = params.verbose;
    let p = match params.method {
        Method::FasterPam => fasterpam::fasterpam(src, &mut st, &w, it, v, stop)?,
        Method::FastPam1 => fastpam1::fastpam1(src, &mut st, &w, it, v, false, stop)?,
        Method::Pam => fastpam1::fastpam1(src, &mut st, &w, it, v, true, stop)?,
        Method::FastPam2 => fastpam2::fastpam2(src, &mut st, &w, it, v, stop)?,
        Method::Alternate => alternate::alternate(src, &mut st, &w, it, v, stop)?,
        Method::FasterMsc => {
            if weights.is_some() {
                return Err(invalid!(
                    "sample_weight is not supported by method='fastermsc'"
                ));
            }
            msc::fastermsc(src, &mut st, it, v, stop)?
        }
        Method::Clara | Method::Clarans | Method::OneBatch => unreachable!("handled above"),
    };
    Ok(finish(st, p, init_medoids))
}

/// [`kmedoids`] on features (dense or CSR): on the materialised matrix when it fits in
/// `params.matrix_budget` (and the method does not sample), else with on-the-fly distances.
pub fn kmedoids_features<T: Float, D: dissimilarity::Materialise<T>>(
    src: &D,
    params: &Params,
    weights: Option<&[f64]>,
    stop: &dyn Interrupt,
) -> Result<Fit> {
    let n = src.len();
    let bytes = n.saturating_mul(n).saturating_mul(std::mem::size_of::<T>());
    let sampled = [Method::Clara, Method::Clarans, Method::OneBatch].contains(&params.method);
    if !sampled && bytes <= params.matrix_budget {
        check_inputs(n, params.n_clusters, weights)?;
        let m = dissimilarity::Owned::from_computed(src.to_matrix(), n);
        return kmedoids(&m, params, weights, stop);
    }
    kmedoids(src, params, weights, stop)
}

/// DynMSC (see [`msc::dynmsc`]) from `params.n_clusters` (the largest k) down to `k_min`,
/// starting from `params.init`.
pub fn dynmsc<T: Float, D: Dissimilarity<T>>(
    src: &D,
    params: &Params,
    k_min: usize,
    stop: &dyn Interrupt,
) -> Result<msc::DynFit> {
    let n = src.len();
    let w = check_inputs(n, params.n_clusters, None)?;
    let start = init::initialize(src, params.n_clusters, &params.init, &w, params.seed, stop)?;
    let fit = msc::dynmsc(src, &start, k_min, params.max_iter, params.verbose, stop)?;
    if !fit.loss.is_finite() || fit.per_k.iter().any(|p| p.1.is_nan()) {
        return Err(overflow_error::<T>());
    }
    Ok(fit)
}

fn finish<T: Float>(st: State<T>, p: Progress, init_medoids: Vec<usize>) -> Fit {
    Fit {
        labels: st.labels(),
        medoids: st.med,
        loss: st.loss,
        n_iter: p.n_iter,
        n_swap: p.n_swap,
        converged: p.converged,
        init_medoids,
    }
}

/// `f(x, d(x, ·))` for every candidate `x`, in parallel, results in the order of `cands`.
/// Stored rows are read in place; computed ones are made in the source's preferred blocks.
pub fn eval_rows<T: Float, D: Dissimilarity<T>, R: Send>(
    src: &D,
    cands: &[usize],
    f: impl Fn(usize, &[T]) -> R + Sync,
) -> Vec<R> {
    let n = src.len();
    if src.stored_row(0).is_some() {
        return cands
            .par_iter()
            .map(|&x| f(x, src.stored_row(x).expect("stored rows are all stored")))
            .collect();
    }
    cands
        .par_chunks(src.preferred_block())
        .flat_map_iter(|ch| {
            let mut buf = vec![T::ZERO; ch.len() * n];
            src.rows_into(ch, &mut buf);
            ch.iter()
                .enumerate()
                .map(|(r, &x)| f(x, &buf[r * n..(r + 1) * n]))
                .collect::<Vec<_>>()
        })
        .collect()
}

/// [`eval_rows`] in chunks of candidates with a Ctrl-C check between them, so that a full
/// sweep over n on-the-fly rows stays interruptible (results are the same as one call).
pub fn eval_rows_checked<T: Float, D: Dissimilarity<T>, R: Send>(
    src: &D,
    cands: &[usize],
    f: impl Fn(usize, &[T]) -> R + Sync,
    stop: &dyn Interrupt,
) -> Result<Vec<R>> {
    let mut out = Vec::with_capacity(cands.len());
    for chunk in cands.chunks(1024) {
        stop.check()?;
        out.extend(eval_rows(src, chunk, &f));
    }
    Ok(out)
}

/// Row `x` of the source, borrowed when stored, else computed into `buf`.
pub fn row_of<'a, T: Float, D: Dissimilarity<T>>(
    src: &'a D,
    x: usize,
    buf: &'a mut Vec<T>,
) -> &'a [T] {
    if src.stored_row(x).is_some() {
        return src.stored_row(x).expect("checked");
    }
    buf.resize(src.len(), T::ZERO);
    src.rows_into(&[x], buf);
    buf
}

#[cfg(test)]
mod tests {
    use super::dissimilarity::{Condensed, Features, Materialise, Metric, Owned};
    use super::*;
    use crate::NeverInterrupt;

    fn points(n: usize) -> Vec<f64> {
        (0..2 * n).map(|t| ((t * 7919 + 13) % 11) as f64).collect()
    }

    fn run<D: Dissimilarity<f64>>(src: &D, k: usize, method: Method, init: Init) -> Fit {
        let mut p = Params::new(k);
        p.method = method;
        p.init = init;
        kmedoids(src, &p, None, &NeverInterrupt).unwrap()
    }

    #[test]
    fn fastpam1_makes_pams_swaps_and_fasterpam_is_swap_optimal() {
        let x = points(40);
        let f = Features::new(&x, 40, 2, Metric::Manhattan).unwrap();
        let m = Owned {
            data: f.to_matrix(),
            n: 40,
        };
        for k in 1..6 {
            let start = Init::Given((0..k).map(|i| 3 * i + 1).collect());
            let a = run(&m, k, Method::Pam, start.clone());
            let b = run(&m, k, Method::FastPam1, start.clone());
            assert_eq!((a.medoids.clone(), a.loss), (b.medoids.clone(), b.loss));
            let c = run(&f, k, Method::FasterPam, start);
            // no single swap improves the FasterPAM result
            let loss = |med: &[usize]| -> f64 {
                (0..40)
                    .map(|o| {
                        med.iter()
                            .map(|&s| m.data[s * 40 + o])
                            .fold(f64::INFINITY, f64::min)
                    })
                    .sum()
            };
            assert_eq!(loss(&c.medoids), c.loss);
            for x in 0..40 {
                for s in 0..k {
                    let mut t = c.medoids.clone();
                    t[s] = x;
                    assert!(loss(&t) >= c.loss);
                }
            }
        }
    }

    #[test]
    fn threads_do_not_change_the_result() {
        let x = points(300);
        let f = Features::new(&x, 300, 2, Metric::Euclidean).unwrap();
        let fit = |t: usize| {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(t)
                .build()
                .unwrap();
            pool.install(|| run(&f, 7, Method::FasterPam, Init::KMedoidsPlusPlus))
        };
        assert_eq!(fit(1), fit(3));
    }

    #[test]
    fn computed_rows_make_the_swaps_of_stored_rows() {
        // Computed rows are kept for a block and re-evaluated after a swap; stored rows are
        // read in place: the swap sequence must be the sequential one either way.
        let x = points(500);
        let f = Features::new(&x, 500, 2, Metric::Euclidean).unwrap();
        let m = Owned {
            data: f.to_matrix(),
            n: 500,
        };
        let params = |k: usize, method: Method, seed: u64| {
            let mut p = Params::new(k);
            (p.method, p.init, p.seed) = (method, Init::Random, seed);
            p
        };
        for (t, method) in [
            (1, Method::FasterPam),
            (3, Method::FasterPam),
            (3, Method::OneBatch),
        ] {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(t)
                .build()
                .unwrap();
            for (k, seed) in [(9, 0), (40, 1), (40, 2), (120, 3)] {
                let p = params(k, method, seed);
                let (a, b) = pool.install(|| {
                    let a = kmedoids(&f, &p, None, &NeverInterrupt).unwrap();
                    (a, kmedoids(&m, &p, None, &NeverInterrupt).unwrap())
                });
                assert_eq!(
                    (&a.medoids, a.loss, a.n_swap, a.n_iter),
                    (&b.medoids, b.loss, b.n_swap, b.n_iter)
                );
            }
        }
    }

    #[test]
    fn bad_inputs_are_errors_not_panics() {
        let c = Condensed::new(&[1.0f64, 2.0, 3.0]).unwrap();
        let p = Params::new(4);
        assert!(kmedoids(&c, &p, None, &NeverInterrupt).is_err());
        let p = Params::new(0);
        assert!(kmedoids(&c, &p, None, &NeverInterrupt).is_err());
        let p = Params::new(2);
        assert!(kmedoids(&c, &p, Some(&[1.0, -1.0, 1.0]), &NeverInterrupt).is_err());
        assert!(kmedoids(&c, &p, Some(&[0.0; 3]), &NeverInterrupt).is_err());
        assert!(kmedoids(&c, &p, Some(&[1.0; 2]), &NeverInterrupt).is_err());
        let mut p = Params::new(2);
        p.init = Init::Given(vec![1, 1]);
        assert!(kmedoids(&c, &p, None, &NeverInterrupt).is_err());
        p.init = Init::Given(vec![1, 5]);
        assert!(kmedoids(&c, &p, None, &NeverInterrupt).is_err());
        assert!(Features::new(&[f64::NAN, 1.0], 2, 1, Metric::Euclidean).is_err());
        assert!(Metric::parse("chebyshev").is_err() && Method::parse("kmeans").is_err());
    }

    #[test]
    fn medoid_silhouette_zero_distances_follow_kmedoids() {
        // Points 0 and 1 coincide and are both medoids: a = b = 0 gives 1 (as `kmedoids`),
        // points 2 and 3 are at distance 1 from both: 1 - 1/1 = 0.
        let m = Owned {
            data: vec![
                0.0, 0.0, 1.0, 1.0, //
                0.0, 0.0, 1.0, 1.0, //
                1.0, 1.0, 0.0, 2.0, //
                1.0, 1.0, 2.0, 0.0,
            ],
            n: 4,
        };
        let (mean, values) = silhouette::medoid_silhouette(&m, &[0, 1]).unwrap();
        assert_eq!(values, vec![1.0, 1.0, 0.0, 0.0]);
        assert_eq!(mean, 0.5);
    }

    #[test]
    fn overflowing_float32_distances_are_an_error() {
        let x: Vec<f32> = vec![3e38, 0.0, -3e38, 0.0, 1.0, 1.0, 2.0, 2.0, 0.0, 0.0];
        let f = Features::new(&x, 5, 2, Metric::Euclidean).unwrap();
        let e = kmedoids(&f, &Params::new(2), None, &NeverInterrupt).unwrap_err();
        assert!(format!("{e}").contains("float32"));
        assert!(silhouette::medoid_silhouette(&f, &[0, 2]).is_err());
        assert!(dynmsc(&f, &Params::new(3), 2, &NeverInterrupt).is_err());
    }
}
