//! Medoid-silhouette clustering: FasterMSC (eager swaps that raise the medoid silhouette)
//! and DynMSC (FasterMSC for k = k_max down to k_min, keeping the k of the best silhouette).
//!
//! Lenssen & Schubert, "Clustering by Direct Optimization of the Medoid Silhouette" (SISAP
//! 2022) and "Medoid Silhouette clustering with automatic cluster number selection"
//! (Information Systems 120, 2024).
//!
//! With `a`, `b`, `c` the distances of a point to its nearest, second and third medoid and
//! `x` its distance to a candidate, replacing medoid slot `s` changes the point's silhouette
//! `1 − a/b` to the one of the best two of `{b, c, x}` if `s` is its nearest, of `{a, c, x}` if
//! `s` is its second, else of `{a, b, x}`: so the gains of all k slots of one candidate come
//! in O(n + k), as in FastPAM1. Unweighted (sample weights are not supported here).

use super::dissimilarity::Dissimilarity;
use super::fasterpam::{eager, Eager};
use super::silhouette::sil;
use super::state::State;
use super::Progress;
use crate::{invalid, Float, Interrupt, Result};
use rayon::prelude::*;

/// Silhouette of the best two of three distances.
#[inline(always)]
fn sil3(x: f64, y: f64, z: f64) -> f64 {
    let (lo, hi) = if x <= y { (x, y) } else { (y, x) };
    if z < lo {
        sil(z, lo)
    } else if z < hi {
        sil(lo, z)
    } else {
        sil(lo, hi)
    }
}

/// FasterMSC's view of the swap state: the state plus each point's third-nearest distance.
pub struct Msc<'s, T> {
    pub st: &'s mut State<T>,
    pub third: Vec<f64>,
    ones: Vec<f64>,
}

impl<'s, T: Float> Msc<'s, T> {
    pub fn new(st: &'s mut State<T>) -> Self {
        let ones = vec![1.0; st.n];
        let mut m = Self {
            st,
            third: Vec::new(),
            ones,
        };
        m.refresh_third();
        m
    }

    fn refresh_third(&mut self) {
        let st = &*self.st;
        let k = st.k;
        self.third = (0..st.n)
            .into_par_iter()
            .map(|o| {
                let (n1, n2) = (st.near[o] as usize, st.seco[o] as usize);
                (0..k)
                    .filter(|&s| s != n1 && s != n2)
                    .map(|s| st.dm[o * k + s].to_f64())
                    .fold(f64::INFINITY, f64::min)
            })
            .collect();
    }

    /// Σ of the medoid silhouettes (0 for k = 1).
    pub fn total(&self) -> f64 {
        if self.st.k < 2 {
            return 0.0;
        }
        (0..self.st.n)
            .map(|o| sil(self.st.dn[o].to_f64(), self.st.ds[o].to_f64()))
            .sum()
    }

    /// Σ of the silhouettes after removing each slot (for DynMSC).
    pub fn removal_totals(&self) -> Vec<f64> {
        let st = &*self.st;
        let mut per = vec![0.0; st.k];
        let mut shared = 0.0;
        for o in 0..st.n {
            let (a, b, c) = (st.dn[o].to_f64(), st.ds[o].to_f64(), self.third[o]);
            let keep = sil(a, b);
            shared += keep;
            per[st.near[o] as usize] += sil(b, c) - keep;
            per[st.seco[o] as usize] += sil(a, c) - keep;
        }
        per.iter().map(|p| p + shared).collect()
    }
}

impl<T: Float> Eager<T> for Msc<'_, T> {
    fn state(&self) -> &State<T> {
        self.st
    }
    /// (−gain, slot): negative means the silhouette sum rises.
    fn best(&self, row: &[T]) -> (f64, usize) {
        let st = &*self.st;
        let mut per = vec![0.0; st.k];
        let mut shared = 0.0;
        for o in 0..st.n {
            let (a, b, c) = (st.dn[o].to_f64(), st.ds[o].to_f64(), self.third[o]);
            let x = row[o].to_f64();
            let other = sil3(a, b, x);
            shared += other - sil(a, b);
            per[st.near[o] as usize] += sil3(b, c, x) - other;
            per[st.seco[o] as usize] += sil3(a, c, x) - other;
        }
        let mut best = 0;
        for s in 1..st.k {
            if per[s] > per[best] {
                best = s;
            }
        }
        (-(shared + per[best]), best)
    }
    fn apply(&mut self, slot: usize, x: usize, row: &[T]) {
        self.st.swap(slot, x, row, &self.ones);
        self.refresh_third();
    }
    fn objective(&self) -> f64 {
        -self.total()
    }
    fn describe(&self) -> String {
        format!("medoid silhouette {:.6}", self.total() / self.st.n as f64)
    }
    /// The silhouette gain sums n terms of size at most 2: its rounding error stays below
    /// `8 n ε`, so a swap must gain more than that (an exactly-zero gain once came out as
    /// +5e-18 and ended the search with a real improvement left).
    fn min_gain(&self) -> f64 {
        8.0 * self.st.n as f64 * f64::EPSILON
    }
}

/// FasterMSC from the state's medoids (k >= 2).
pub fn fastermsc<T: Float, D: Dissimilarity<T>>(
    src: &D,
    st: &mut State<T>,
    max_iter: usize,
    verbose: bool,
    stop: &dyn Interrupt,
) -> Result<Progress> {
    if st.k < 2 {
        return Err(invalid!("the medoid silhouette needs n_clusters >= 2"));
    }
    let mut m = Msc::new(st);
    eager(src, &mut m, max_iter, verbose, stop)
}

/// DynMSC's result: the best k, and the silhouette of each k tried.
#[derive(Clone, Debug, PartialEq)]
pub struct DynFit {
    pub medoids: Vec<usize>,
    pub labels: Vec<usize>,
    pub silhouette: f64,
    pub loss: f64,
    /// `(k, mean medoid silhouette, medoids)` for k = k_max down to k_min.
    pub per_k: Vec<(usize, f64, Vec<usize>)>,
    pub n_swap: usize,
}

/// DynMSC: FasterMSC at `start.len()` medoids, then repeatedly drops the medoid whose removal
/// keeps the highest silhouette and optimises again, down to `k_min`; returns the k with the
/// highest mean medoid silhouette (ties: the smaller k).
pub fn dynmsc<T: Float, D: Dissimilarity<T>>(
    src: &D,
    start: &[usize],
    k_min: usize,
    max_iter: usize,
    verbose: bool,
    stop: &dyn Interrupt,
) -> Result<DynFit> {
    let n = src.len();
    if k_min < 2 || k_min > start.len() {
        return Err(invalid!(
            "min_clusters must be in [2, max_clusters = {}], got {k_min}",
            start.len()
        ));
    }
    let ones = vec![1.0; n];
    let mut med = start.to_vec();
    let mut per_k = Vec::new();
    let mut n_swap = 0;
    let mut best: Option<(f64, State<T>)> = None;
    loop {
        let mut st = State::new(src, &med, &ones);
        let mut m = Msc::new(&mut st);
        n_swap += eager(src, &mut m, max_iter, false, stop)?.n_swap;
        let total = m.total();
        let drop = m.removal_totals();
        let k = med.len();
        let mean = total / n as f64;
        if verbose {
            eprintln!("kmedoids: DynMSC k = {k} medoid silhouette {mean:.6}");
        }
        let next_med = m.st.med.clone();
        per_k.push((k, mean, next_med.clone()));
        if best.as_ref().is_none_or(|(b, _)| mean >= *b) {
            best = Some((mean, st));
        }
        if k == k_min {
            break;
        }
        let mut s = 0;
        for t in 1..k {
            if drop[t] > drop[s] {
                s = t;
            }
        }
        med = next_med;
        med.remove(s);
    }
    let (silhouette, st) = best.expect("at least one k");
    Ok(DynFit {
        labels: st.labels(),
        loss: st.loss,
        medoids: st.med,
        silhouette,
        per_k,
        n_swap,
    })
}
