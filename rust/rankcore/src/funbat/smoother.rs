//! The joint Kalman filter and RTS smoother of one mode's `r` latent functions.
//!
//! The state at a coordinate stacks the `r` functions' SDE states (function `j` occupies
//! entries `j·d .. (j+1)·d`; `u_j` is entry `j·d`), so the state dimension is `D = d·r`; the
//! prior is block diagonal, the messages couple the functions. Each node `i` (a distinct
//! coordinate, sorted) carries the sum of its messages as a Gaussian factor in natural
//! parameters, `exp(−½ uᵀΛᵢu + ηᵢᵀu)` over `u = H z` (`Λᵢ` positive semi-definite, possibly
//! singular). The information-form update at a node is
//!
//! `P⁺ = (P⁻¹ + HᵀΛH)⁻¹ = P − PHᵀ (I + Λ H P Hᵀ)⁻¹ Λ H P`,
//! `m⁺ = m + P⁺ Hᵀ (η − Λ H m)`,
//!
//! which needs only an `r × r` solve and never inverts `Λ` or `P`. The filter starts from the
//! stationary prior (mean 0, covariance `P∞`) at the first node. The evidence
//! `log ∫ p(U) Πᵢ exp(−½ uᵢᵀΛᵢuᵢ + ηᵢᵀuᵢ) dU` accumulates node by node as
//! `−½ log|I + ΛC| − ½ μᵀΛμ + ηᵀμ + ½ gᵀC⁺g` (`μ, C` the predicted marginal of `u`,
//! `g = η − Λμ`, `C⁺` the filtered one).

use super::ssm::Ssm;
use crate::{invalid, Float, Result};
use faer::linalg::solvers::Solve;
use faer::Mat;
use rayon::prelude::*;

/// Query points per parallel block of [`interpolate`].
const QUERY_BLOCK: usize = 256;

/// Filtered and smoothed states of one mode at its nodes.
#[derive(Debug, Clone)]
pub struct Smoothed<T> {
    /// SDE state dimension per function.
    pub d: usize,
    /// Number of latent functions.
    pub r: usize,
    /// Filtered means, `n × D` row-major.
    pub filt_mean: Vec<T>,
    /// Filtered covariances, `n × D × D`.
    pub filt_cov: Vec<T>,
    /// Smoothed means, `n × D`.
    pub mean: Vec<T>,
    /// Smoothed covariances, `n × D × D`.
    pub cov: Vec<T>,
    /// The approximate evidence (see the module documentation).
    pub log_z: f64,
}

impl<T: Float> Smoothed<T> {
    /// The smoothed marginal of `u = Hz` at every node: means `n × r`, covariances `n × r × r`.
    pub fn marginals(&self) -> (Vec<T>, Vec<T>) {
        let (d, r) = (self.d, self.r);
        let dd = d * r;
        let n = self.mean.len() / dd;
        let mut m = Vec::with_capacity(n * r);
        let mut c = Vec::with_capacity(n * r * r);
        for i in 0..n {
            for a in 0..r {
                m.push(self.mean[i * dd + a * d]);
            }
            let p = &self.cov[i * dd * dd..(i + 1) * dd * dd];
            for a in 0..r {
                for b in 0..r {
                    c.push(p[(a * d) * dd + b * d]);
                }
            }
        }
        (m, c)
    }
}

/// The joint transition of `r` independent functions over one step: block diagonal with
/// the same `d × d` block, so products with it cost `O(d·D²)` instead of `O(D³)`.
struct Step<T> {
    d: usize,
    a: Mat<T>,
    q: Mat<T>,
}

impl<T: Float> Step<T> {
    fn new(ssm: &Ssm, dt: f64) -> Self {
        let (a, q) = ssm.transition::<T>(dt);
        Self { d: ssm.dim(), a, q }
    }

    /// `A M` for a `D × c` matrix `M`.
    fn left(&self, m: &Mat<T>) -> Mat<T> {
        let d = self.d;
        Mat::from_fn(m.nrows(), m.ncols(), |i, c| {
            let (blk, s) = (i / d, i % d);
            let mut acc = T::ZERO;
            for t in 0..d {
                acc += self.a[(s, t)] * m[(blk * d + t, c)];
            }
            acc
        })
    }

    /// `A P Aᵀ + Q`, symmetrised.
    fn sandwich(&self, p: &Mat<T>) -> Mat<T> {
        let d = self.d;
        let l = self.left(p);
        let mut out = Mat::from_fn(p.nrows(), p.ncols(), |i, j| {
            let (blk, s) = (j / d, j % d);
            let mut acc = T::ZERO;
            for t in 0..d {
                acc += l[(i, blk * d + t)] * self.a[(s, t)];
            }
            if i / d == blk {
                acc += self.q[(i % d, s)];
            }
            acc
        });
        sym(&mut out);
        out
    }
}

fn joint_stationary<T: Float>(ssm: &Ssm, r: usize) -> Mat<T> {
    let d = ssm.dim();
    let p = ssm.stationary::<T>();
    Mat::from_fn(d * r, d * r, |i, j| {
        if i / d == j / d {
            p[(i % d, j % d)]
        } else {
            T::ZERO
        }
    })
}

fn sym<T: Float>(p: &mut Mat<T>) {
    let n = p.nrows();
    let half = T::from_f64(0.5);
    for j in 0..n {
        for i in 0..j {
            let v = half * (p[(i, j)] + p[(j, i)]);
            p[(i, j)] = v;
            p[(j, i)] = v;
        }
    }
}

fn load<T: Float>(s: &[T], n: usize) -> Mat<T> {
    Mat::from_fn(n, n, |i, j| s[i * n + j])
}

fn store<T: Float>(p: &Mat<T>, dst: &mut [T]) {
    let n = p.nrows();
    for i in 0..n {
        for j in 0..n {
            dst[i * n + j] = p[(i, j)];
        }
    }
}

fn check_inputs<T: Float>(r: usize, x: &[T], lam: &[T], eta: &[T]) -> Result<usize> {
    let n = x.len();
    if r == 0 {
        return Err(invalid!("rank must be at least 1"));
    }
    if n == 0 {
        return Err(invalid!("x must hold at least one node"));
    }
    if lam.len() != n * r * r || eta.len() != n * r {
        return Err(invalid!(
            "lam must have {} and eta {} entries for {n} nodes and rank {r}, got {} and {}",
            n * r * r,
            n * r,
            lam.len(),
            eta.len()
        ));
    }
    for w in x.windows(2) {
        if !(w[1] > w[0]) {
            return Err(invalid!("x must be finite and strictly increasing"));
        }
    }
    if !x.iter().chain(lam).chain(eta).all(|v| v.is_finite()) {
        return Err(invalid!("x, lam and eta must be finite"));
    }
    Ok(n)
}

/// `(m⁺, P⁺, log-evidence increment)` of one information-form update.
fn update<T: Float>(
    d: usize,
    r: usize,
    m: &Mat<T>,
    p: &Mat<T>,
    lam: &[T],
    eta: &[T],
) -> Result<(Mat<T>, Mat<T>, f64)> {
    let dd = d * r;
    let l = Mat::from_fn(r, r, |a, b| lam[a * r + b]);
    let ph = Mat::from_fn(dd, r, |i, b| p[(i, b * d)]);
    let c = Mat::from_fn(r, r, |a, b| p[(a * d, b * d)]);
    let mu = Mat::from_fn(r, 1, |a, _| m[(a * d, 0)]);
    let s = Mat::<T>::identity(r, r) + &l * &c;
    let lu = s.partial_piv_lu();
    let mut logdet = 0.0;
    for a in 0..r {
        let u = lu.U()[(a, a)].to_f64();
        if !(u != 0.0) {
            return Err(invalid!("singular update matrix in the Kalman filter"));
        }
        logdet += u.abs().ln();
    }
    let x = lu.solve(&l); // (I + ΛC)⁻¹ Λ
    let mut pn = p - &ph * &x * ph.transpose();
    sym(&mut pn);
    let eta_m = Mat::from_fn(r, 1, |a, _| eta[a]);
    let g = &eta_m - &l * &mu;
    let pnh = Mat::from_fn(dd, r, |i, b| pn[(i, b * d)]);
    let mn = m + &pnh * &g;
    let cplus = Mat::from_fn(r, r, |a, b| pn[(a * d, b * d)]);
    let quad_l = (mu.transpose() * &l * &mu)[(0, 0)].to_f64();
    let lin = (eta_m.transpose() * &mu)[(0, 0)].to_f64();
    let quad_g = (g.transpose() * &cplus * &g)[(0, 0)].to_f64();
    crate::linalg::clear_upper();
    let dz = -0.5 * logdet - 0.5 * quad_l + lin + 0.5 * quad_g;
    Ok((mn, pn, dz))
}

/// Solves `P X = B` for a symmetric positive definite `P` (Cholesky, or LU where round-off
/// has made `P` indefinite).
fn spd_solve<T: Float>(p: &Mat<T>, b: &Mat<T>) -> Mat<T> {
    let x = match p.llt(faer::Side::Lower) {
        Ok(llt) => llt.solve(b),
        Err(_) => p.partial_piv_lu().solve(b),
    };
    crate::linalg::clear_upper();
    x
}

fn run<T: Float>(
    ssm: &Ssm,
    r: usize,
    x: &[T],
    lam: &[T],
    eta: &[T],
    smooth: bool,
) -> Result<Smoothed<T>> {
    let n = check_inputs(r, x, lam, eta)?;
    let d = ssm.dim();
    let dd = d * r;
    let mut out = Smoothed {
        d,
        r,
        filt_mean: vec![T::ZERO; n * dd],
        filt_cov: vec![T::ZERO; n * dd * dd],
        mean: Vec::new(),
        cov: Vec::new(),
        log_z: 0.0,
    };
    // Predicted covariances and transitions are kept for the backward pass.
    let mut pred_mean = vec![T::ZERO; if smooth { n * dd } else { 0 }];
    let mut pred_cov = vec![T::ZERO; if smooth { n * dd * dd } else { 0 }];
    let mut m = Mat::<T>::zeros(dd, 1);
    let mut p = joint_stationary::<T>(ssm, r);
    for i in 0..n {
        if i > 0 {
            let step = Step::<T>::new(ssm, (x[i] - x[i - 1]).to_f64());
            let mf = Mat::from_fn(dd, 1, |k, _| out.filt_mean[(i - 1) * dd + k]);
            let pf = load(&out.filt_cov[(i - 1) * dd * dd..i * dd * dd], dd);
            m = step.left(&mf);
            p = step.sandwich(&pf);
        }
        if smooth {
            for k in 0..dd {
                pred_mean[i * dd + k] = m[(k, 0)];
            }
            store(&p, &mut pred_cov[i * dd * dd..(i + 1) * dd * dd]);
        }
        let (mn, pn, dz) = update(
            d,
            r,
            &m,
            &p,
            &lam[i * r * r..(i + 1) * r * r],
            &eta[i * r..(i + 1) * r],
        )?;
        out.log_z += dz;
        for k in 0..dd {
            out.filt_mean[i * dd + k] = mn[(k, 0)];
        }
        store(&pn, &mut out.filt_cov[i * dd * dd..(i + 1) * dd * dd]);
    }
    if !smooth {
        return Ok(out);
    }
    out.mean = out.filt_mean.clone();
    out.cov = out.filt_cov.clone();
    for i in (0..n.saturating_sub(1)).rev() {
        let step = Step::<T>::new(ssm, (x[i + 1] - x[i]).to_f64());
        let pf = load(&out.filt_cov[i * dd * dd..(i + 1) * dd * dd], dd);
        let pp = load(&pred_cov[(i + 1) * dd * dd..(i + 2) * dd * dd], dd);
        let ps1 = load(&out.cov[(i + 1) * dd * dd..(i + 2) * dd * dd], dd);
        // J = P_f Aᵀ P_p⁻¹ = (P_p⁻¹ A P_f)ᵀ.
        let jt = spd_solve(&pp, &step.left(&pf));
        let j = jt.transpose();
        let dm = Mat::from_fn(dd, 1, |k, _| {
            out.mean[(i + 1) * dd + k] - pred_mean[(i + 1) * dd + k]
        });
        let mf = Mat::from_fn(dd, 1, |k, _| out.filt_mean[i * dd + k]);
        let ms = &mf + j * &dm;
        let mut ps = &pf + j * (&ps1 - &pp) * jt.as_ref();
        sym(&mut ps);
        for k in 0..dd {
            out.mean[i * dd + k] = ms[(k, 0)];
        }
        store(&ps, &mut out.cov[i * dd * dd..(i + 1) * dd * dd]);
    }
    Ok(out)
}

/// Filters and smooths one mode: `x` the sorted distinct coordinates (`n`), `lam` the summed
/// message precisions (`n × r × r`), `eta` the summed message shifts (`n × r`).
pub fn smooth<T: Float>(ssm: &Ssm, r: usize, x: &[T], lam: &[T], eta: &[T]) -> Result<Smoothed<T>> {
    run(ssm, r, x, lam, eta, true)
}

/// The approximate evidence of each model in `models` (filter only), in parallel; the
/// results are in the order of `models` and do not depend on the thread count.
pub fn evidence<T: Float>(
    models: &[Ssm],
    r: usize,
    x: &[T],
    lam: &[T],
    eta: &[T],
) -> Result<Vec<f64>> {
    check_inputs(r, x, lam, eta)?;
    models
        .par_iter()
        .map(|m| run(m, r, x, lam, eta, false).map(|s| s.log_z))
        .collect()
}

/// The posterior marginal of `u` at query coordinates `xq` (any order, any values), from a
/// mode's filtered and smoothed states at its nodes `x`. Exact: a query between two nodes is
/// an extra node without observation (predicted from the left node's filtered state, then
/// one RTS step against the right node's smoothed state); before the first node the prior
/// is smoothed against the first node; after the last node the smoothed state is predicted
/// forward. Returns means `q × r` and covariances `q × r × r`.
pub fn interpolate<T: Float>(
    ssm: &Ssm,
    x: &[T],
    st: &Smoothed<T>,
    xq: &[T],
) -> Result<(Vec<T>, Vec<T>)> {
    let (d, r) = (st.d, st.r);
    let dd = d * r;
    let n = x.len();
    if n == 0 || st.mean.len() != n * dd || st.filt_mean.len() != n * dd {
        return Err(invalid!("the smoothed states do not match the {n} nodes"));
    }
    if d != ssm.dim() {
        return Err(invalid!("the states do not match the kernel"));
    }
    if !xq.iter().all(|v| v.is_finite()) {
        return Err(invalid!("query coordinates must be finite"));
    }
    let col = |v: &[T], i: usize| Mat::from_fn(dd, 1, |k, _| v[i * dd + k]);
    let cov = |v: &[T], i: usize| load(&v[i * dd * dd..(i + 1) * dd * dd], dd);
    let one = |xs: T| -> (Mat<T>, Mat<T>) {
        let i = x.partition_point(|&v| v <= xs); // nodes x[..i] ≤ xs
        if i > 0 && x[i - 1] == xs {
            return (col(&st.mean, i - 1), cov(&st.cov, i - 1));
        }
        if i == n {
            let step = Step::<T>::new(ssm, (xs - x[n - 1]).to_f64());
            return (
                step.left(&col(&st.mean, n - 1)),
                step.sandwich(&cov(&st.cov, n - 1)),
            );
        }
        let (m1, p1) = if i == 0 {
            (Mat::<T>::zeros(dd, 1), joint_stationary::<T>(ssm, r))
        } else {
            let step = Step::<T>::new(ssm, (xs - x[i - 1]).to_f64());
            (
                step.left(&col(&st.filt_mean, i - 1)),
                step.sandwich(&cov(&st.filt_cov, i - 1)),
            )
        };
        let step = Step::<T>::new(ssm, (x[i] - xs).to_f64());
        let pp = step.sandwich(&p1);
        let jt = spd_solve(&pp, &step.left(&p1));
        let j = jt.transpose();
        let m = &m1 + j * (col(&st.mean, i) - step.left(&m1));
        let p = &p1 + j * (cov(&st.cov, i) - &pp) * jt.as_ref();
        (m, p)
    };
    let q = xq.len();
    let mut means = vec![T::ZERO; q * r];
    let mut covs = vec![T::ZERO; q * r * r];
    means
        .par_chunks_mut(QUERY_BLOCK * r)
        .zip(covs.par_chunks_mut(QUERY_BLOCK * r * r))
        .enumerate()
        .for_each(|(blk, (mb, cb))| {
            let q0 = blk * QUERY_BLOCK;
            for t in 0..mb.len() / r {
                let (m, p) = one(xq[q0 + t]);
                for a in 0..r {
                    mb[t * r + a] = m[(a * d, 0)];
                    for b in 0..r {
                        cb[(t * r + a) * r + b] =
                            T::from_f64(0.5) * (p[(a * d, b * d)] + p[(b * d, a * d)]);
                    }
                }
            }
        });
    Ok((means, covs))
}

/// Reassembles a [`Smoothed`] from flat arrays (as the Python layer stores them).
pub fn from_parts<T: Float>(
    d: usize,
    r: usize,
    filt_mean: &[T],
    filt_cov: &[T],
    mean: &[T],
    cov: &[T],
) -> Result<Smoothed<T>> {
    let dd = d * r;
    let n = mean.len() / dd.max(1);
    if dd == 0
        || mean.len() != n * dd
        || filt_mean.len() != n * dd
        || cov.len() != n * dd * dd
        || filt_cov.len() != n * dd * dd
    {
        return Err(invalid!("inconsistent state arrays for d = {d}, r = {r}"));
    }
    Ok(Smoothed {
        d,
        r,
        filt_mean: filt_mean.to_vec(),
        filt_cov: filt_cov.to_vec(),
        mean: mean.to_vec(),
        cov: cov.to_vec(),
        log_z: 0.0,
    })
}

#[cfg(test)]
mod tests {
    use super::super::ssm::Kind;
    use super::*;
    use faer::linalg::solvers::DenseSolveCore;

    /// Dense reference: posterior of U (nodes × functions) with prior K ⊗ I and the messages.
    fn dense(
        ssm: &Ssm,
        r: usize,
        x: &[f64],
        lam: &[f64],
        eta: &[f64],
    ) -> (Mat<f64>, Mat<f64>, f64) {
        let n = x.len();
        let nr = n * r;
        let k = Mat::from_fn(nr, nr, |p, q| {
            if p % r == q % r {
                ssm.kernel(x[p / r] - x[q / r])
            } else {
                0.0
            }
        });
        let l = Mat::from_fn(nr, nr, |p, q| {
            if p / r == q / r {
                lam[(p / r) * r * r + (p % r) * r + q % r]
            } else {
                0.0
            }
        });
        let e = Mat::from_fn(nr, 1, |p, _| eta[p]);
        // Post = K (I + L K)⁻¹.
        let s = Mat::<f64>::identity(nr, nr) + &l * &k;
        let lu = s.partial_piv_lu();
        let post = &k * lu.inverse();
        let mean = &post * &e;
        crate::linalg::clear_upper();
        let mut logdet = 0.0;
        for a in 0..nr {
            logdet += lu.U()[(a, a)].abs().ln();
        }
        let lz = -0.5 * logdet + 0.5 * (e.transpose() * &post * &e)[(0, 0)];
        (mean, post, lz)
    }

    #[test]
    fn smoother_equals_dense_gp() {
        let n = 9;
        let r = 2;
        let x: Vec<f64> = (0..n)
            .map(|i| 0.3 * i as f64 + 0.05 * ((i * i) % 5) as f64)
            .collect();
        let mut lam = vec![0.0; n * r * r];
        let mut eta = vec![0.0; n * r];
        for i in 0..n {
            let a = 1.0 + 0.3 * i as f64;
            let b = 0.2 * ((i % 3) as f64 - 1.0);
            lam[i * 4] = a;
            lam[i * 4 + 1] = b;
            lam[i * 4 + 2] = b;
            lam[i * 4 + 3] = 0.5 + 0.1 * i as f64;
            eta[i * 2] = (i as f64).sin();
            eta[i * 2 + 1] = (i as f64).cos();
        }
        for kind in [Kind::Matern12, Kind::Matern32] {
            let ssm = Ssm::new(kind, 0.6, 1.4).unwrap();
            let st = smooth(&ssm, r, &x, &lam, &eta).unwrap();
            let (m, c) = st.marginals();
            let (dm, dp, lz) = dense(&ssm, r, &x, &lam, &eta);
            for i in 0..n * r {
                assert!((m[i] - dm[(i, 0)]).abs() < 1e-10);
            }
            for i in 0..n {
                for a in 0..r {
                    for b in 0..r {
                        assert!(
                            (c[(i * r + a) * r + b] - dp[(i * r + a, i * r + b)]).abs() < 1e-10
                        );
                    }
                }
            }
            assert!((st.log_z - lz).abs() < 1e-9, "{} {}", st.log_z, lz);
            let ev = evidence(&[ssm], r, &x, &lam, &eta).unwrap();
            assert!((ev[0] - lz).abs() < 1e-9);
            // Interpolation at a node reproduces it; between nodes it matches the dense GP.
            let xq = [-0.4, x[2], 0.5 * (x[4] + x[5]), 5.0];
            let (qm, qc) = interpolate(&ssm, &x, &st, &xq).unwrap();
            for (t, &xs) in xq.iter().enumerate() {
                let mut xa = x.clone();
                xa.push(xs);
                let mut order: Vec<usize> = (0..=n).collect();
                order.sort_by(|&p, &q| xa[p].partial_cmp(&xa[q]).unwrap());
                if t == 1 {
                    for a in 0..r {
                        assert!((qm[t * r + a] - m[2 * r + a]).abs() < 1e-12);
                    }
                    continue;
                }
                let xs_sorted: Vec<f64> = order.iter().map(|&p| xa[p]).collect();
                let pos = order.iter().position(|&p| p == n).unwrap();
                let mut l2 = vec![0.0; (n + 1) * r * r];
                let mut e2 = vec![0.0; (n + 1) * r];
                for (slot, &p) in order.iter().enumerate() {
                    if p < n {
                        l2[slot * r * r..(slot + 1) * r * r]
                            .copy_from_slice(&lam[p * r * r..(p + 1) * r * r]);
                        e2[slot * r..(slot + 1) * r].copy_from_slice(&eta[p * r..(p + 1) * r]);
                    }
                }
                let (dm2, dp2, _) = dense(&ssm, r, &xs_sorted, &l2, &e2);
                for a in 0..r {
                    assert!((qm[t * r + a] - dm2[(pos * r + a, 0)]).abs() < 1e-9);
                    for b in 0..r {
                        assert!(
                            (qc[(t * r + a) * r + b] - dp2[(pos * r + a, pos * r + b)]).abs()
                                < 1e-9
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn rejects_unsorted_nodes() {
        let ssm = Ssm::new(Kind::Matern12, 1.0, 1.0).unwrap();
        assert!(smooth(&ssm, 1, &[0.0, 0.0], &[1.0, 1.0], &[0.0, 0.0]).is_err());
        assert!(smooth(&ssm, 1, &[0.0, 1.0], &[1.0], &[0.0, 0.0]).is_err());
    }
}
