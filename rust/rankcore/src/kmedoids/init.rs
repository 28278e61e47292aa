//! Initial medoids: PAM BUILD, LAB (linear approximative BUILD), random, k-medoids++,
//! scikit-learn-extra's "heuristic", or indices given by the user.
//!
//! Every choice is deterministic: ties go to the lowest index, random draws come from Philox
//! keyed by (seed, stream) and indexed by draw number, so no thread count changes them.

use super::dissimilarity::Dissimilarity;
use super::eval_rows_checked;
use crate::rng::RandomMatrix;
use crate::{invalid, Float, Interrupt, Result};

/// Philox streams of the random parts of k-medoids (distinct from other modules' uses).
pub const STREAM_RANDOM: u32 = 0x4b4d_0001;
pub const STREAM_KPP: u32 = 0x4b4d_0002;
pub const STREAM_LAB: u32 = 0x4b4d_0003;
pub const STREAM_CLARA: u32 = 0x4b4d_0004;
pub const STREAM_CLARANS: u32 = 0x4b4d_0005;
pub const STREAM_ONEBATCH: u32 = 0x4b4d_0006;

/// How the first medoids are chosen.
#[derive(Clone, Debug, PartialEq)]
pub enum Init {
    /// BUILD while its O(n²k) work stays small ([`AUTO_BUILD_WORK`]), LAB beyond.
    Auto,
    Build,
    Lab,
    Random,
    KMedoidsPlusPlus,
    /// The `k` points with the smallest total dissimilarity (scikit-learn-extra's default).
    Heuristic,
    Given(Vec<usize>),
}

impl Init {
    pub fn parse(name: &str) -> Result<Self> {
        Ok(match name {
            "auto" => Self::Auto,
            "build" => Self::Build,
            "lab" => Self::Lab,
            "random" => Self::Random,
            "k-medoids++" => Self::KMedoidsPlusPlus,
            "heuristic" => Self::Heuristic,
            other => {
                return Err(invalid!(
                    "init must be 'auto', 'build', 'lab', 'random', 'k-medoids++', 'heuristic' or an array of medoid indices, got {other:?}"
                ))
            }
        })
    }
}

/// Checks user-given medoids: `k` distinct indices in `0..n`.
pub fn check_given(med: &[usize], n: usize, k: usize) -> Result<()> {
    if med.len() != k {
        return Err(invalid!(
            "medoid_indices must hold n_clusters = {k} indices, got {}",
            med.len()
        ));
    }
    let mut seen = vec![false; n];
    for &m in med {
        if m >= n {
            return Err(invalid!("medoid_indices must be in [0, {n}), got {m}"));
        }
        if std::mem::replace(&mut seen[m], true) {
            return Err(invalid!(
                "medoid_indices must be distinct, {m} appears twice"
            ));
        }
    }
    Ok(())
}

/// `Init::Auto` takes BUILD while `n² k` is at most this (about a second on one core), LAB
/// (linear approximative BUILD, O(n k)) beyond.
pub const AUTO_BUILD_WORK: f64 = 2.5e9;

/// Runs the chosen initialisation.
pub fn initialize<T: Float, D: Dissimilarity<T>>(
    src: &D,
    k: usize,
    init: &Init,
    w: &[f64],
    seed: u64,
    stop: &dyn Interrupt,
) -> Result<Vec<usize>> {
    let n = src.len();
    match init {
        Init::Given(m) => {
            check_given(m, n, k)?;
            Ok(m.clone())
        }
        Init::Random => Ok(sample(n, k, RandomMatrix::new(seed, STREAM_RANDOM), 0)),
        Init::Auto if (n as f64).powi(2) * k as f64 <= AUTO_BUILD_WORK => build(src, k, w, stop),
        Init::Auto => lab(src, k, w, seed, stop),
        Init::Build => build(src, k, w, stop),
        Init::Lab => lab(src, k, w, seed, stop),
        Init::KMedoidsPlusPlus => kpp(src, k, w, seed, stop),
        Init::Heuristic => {
            let all: Vec<usize> = (0..n).collect();
            let totals = eval_rows_checked(src, &all, |_, row| weighted_sum(row, w), stop)?;
            let mut order: Vec<usize> = (0..n).collect();
            order.sort_by(|&a, &b| totals[a].total_cmp(&totals[b]).then(a.cmp(&b)));
            order.truncate(k);
            Ok(order)
        }
    }
}

/// `m` distinct indices of `0..n`, uniformly (a partial Fisher–Yates shuffle driven by
/// Philox column `col`).
pub fn sample(n: usize, m: usize, rng: RandomMatrix, col: u32) -> Vec<usize> {
    let mut perm: Vec<usize> = (0..n).collect();
    for i in 0..m.min(n) {
        let u = rng.uniform_at(i as u64, col);
        let j = i + ((u * (n - i) as f64) as usize).min(n - i - 1);
        perm.swap(i, j);
    }
    perm.truncate(m.min(n));
    perm
}

fn weighted_sum<T: Float>(row: &[T], w: &[f64]) -> f64 {
    row.iter().zip(w).map(|(&d, &w)| w * d.to_f64()).sum()
}

/// The first index with the smallest value (NaN-free input).
fn argmin(v: &[f64], allowed: impl Fn(usize) -> bool) -> Option<usize> {
    let mut best: Option<usize> = None;
    for (i, &x) in v.iter().enumerate() {
        if allowed(i) && best.is_none_or(|b| x < v[b]) {
            best = Some(i);
        }
    }
    best
}

/// PAM BUILD: the point of least total dissimilarity, then greedily the point that lowers the
/// loss most. O(n² k) distance reads; ties to the lowest index.
pub fn build<T: Float, D: Dissimilarity<T>>(
    src: &D,
    k: usize,
    w: &[f64],
    stop: &dyn Interrupt,
) -> Result<Vec<usize>> {
    let n = src.len();
    let all: Vec<usize> = (0..n).collect();
    let totals = eval_rows_checked(src, &all, |_, row| weighted_sum(row, w), stop)?;
    let first = argmin(&totals, |_| true).unwrap_or(0);
    let mut med = vec![first];
    let mut is_med = vec![false; n];
    is_med[first] = true;
    let mut dn = vec![T::ZERO; n];
    src.rows_into(&[first], &mut dn);
    while med.len() < k {
        stop.check()?;
        let cands: Vec<usize> = (0..n).filter(|&x| !is_med[x]).collect();
        // Loss change of adding x: Σ w_o min(0, d(x, o) - dn_o) (negative = better).
        let change = eval_rows_checked(
            src,
            &cands,
            |_, row| {
                let mut c = 0.0;
                for o in 0..n {
                    if row[o] < dn[o] {
                        c += w[o] * (row[o].to_f64() - dn[o].to_f64());
                    }
                }
                c
            },
            stop,
        )?;
        let best = argmin(&change, |_| true).map_or(cands[0], |i| cands[i]);
        add_medoid(src, best, &mut med, &mut is_med, &mut dn);
    }
    Ok(med)
}

fn add_medoid<T: Float, D: Dissimilarity<T>>(
    src: &D,
    x: usize,
    med: &mut Vec<usize>,
    is_med: &mut [bool],
    dn: &mut [T],
) {
    let mut row = vec![T::ZERO; src.len()];
    src.rows_into(&[x], &mut row);
    for (a, &b) in dn.iter_mut().zip(&row) {
        if b < *a {
            *a = b;
        }
    }
    med.push(x);
    is_med[x] = true;
}

/// LAB (Schubert & Rousseeuw 2021): BUILD on a fresh random subsample of `10 + ceil(sqrt(n))`
/// non-medoids per step, the sample serving both as candidates and as the points the gain is
/// measured on. O(k (n + m²)) distances instead of BUILD's O(k n²).
pub fn lab<T: Float, D: Dissimilarity<T>>(
    src: &D,
    k: usize,
    w: &[f64],
    seed: u64,
    stop: &dyn Interrupt,
) -> Result<Vec<usize>> {
    let n = src.len();
    let m = 10 + (n as f64).sqrt().ceil() as usize;
    let rng = RandomMatrix::new(seed, STREAM_LAB);
    let mut med = Vec::with_capacity(k);
    let mut is_med = vec![false; n];
    let mut dn: Vec<T> = Vec::new();
    let mut block: Vec<T> = Vec::new();
    for step in 0..k {
        stop.check()?;
        let free: Vec<usize> = (0..n).filter(|&x| !is_med[x]).collect();
        let pick = sample(free.len(), m, rng, step as u32);
        let s: Vec<usize> = pick.iter().map(|&i| free[i]).collect();
        block.resize(s.len() * s.len(), T::ZERO);
        src.members_block(&s, &mut block); // the blocked kernel where the source has one
        let cost: Vec<f64> = block
            .chunks(s.len())
            .map(|row| {
                row.iter()
                    .zip(&s)
                    .map(|(&d, &o)| {
                        let d = d.to_f64();
                        let cur = if step == 0 {
                            f64::INFINITY
                        } else {
                            dn[o].to_f64()
                        };
                        w[o] * if step == 0 { d } else { d.min(cur) - cur }
                    })
                    .sum::<f64>()
            })
            .collect();
        let best = s[argmin(&cost, |_| true).unwrap_or(0)];
        if step == 0 {
            dn = vec![T::ZERO; n];
            src.rows_into(&[best], &mut dn);
            med.push(best);
            is_med[best] = true;
        } else {
            add_medoid(src, best, &mut med, &mut is_med, &mut dn);
        }
    }
    Ok(med)
}

/// k-medoids++ (the k-means++ seeding with dissimilarities): the first medoid uniform, each
/// next one drawn with probability proportional to `w_o d(o, nearest medoid)²`.
pub fn kpp<T: Float, D: Dissimilarity<T>>(
    src: &D,
    k: usize,
    w: &[f64],
    seed: u64,
    stop: &dyn Interrupt,
) -> Result<Vec<usize>> {
    let n = src.len();
    let rng = RandomMatrix::new(seed, STREAM_KPP);
    let first = ((rng.uniform_at(0, 0) * n as f64) as usize).min(n - 1);
    let mut med = vec![first];
    let mut is_med = vec![false; n];
    is_med[first] = true;
    let mut dn = vec![T::ZERO; n];
    src.rows_into(&[first], &mut dn);
    for step in 1..k {
        stop.check()?;
        let weights: Vec<f64> = (0..n)
            .map(|o| {
                if is_med[o] {
                    0.0
                } else {
                    w[o] * dn[o].to_f64().powi(2)
                }
            })
            .collect();
        let total: f64 = weights.iter().sum();
        let x = if total > 0.0 {
            let target = rng.uniform_at(step as u64, 0) * total;
            let mut acc = 0.0;
            let mut pick = None;
            for (o, &p) in weights.iter().enumerate() {
                acc += p;
                if p > 0.0 && acc > target {
                    pick = Some(o);
                    break;
                }
            }
            // Rounding can leave `target` just above the last partial sum.
            pick.or_else(|| weights.iter().rposition(|&p| p > 0.0))
        } else {
            None
        };
        // All remaining points coincide with medoids (or weigh nothing): take the first free.
        let x = x.unwrap_or_else(|| (0..n).find(|&o| !is_med[o]).unwrap_or(0));
        add_medoid(src, x, &mut med, &mut is_med, &mut dn);
    }
    Ok(med)
}
