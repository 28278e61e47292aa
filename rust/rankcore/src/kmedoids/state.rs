//! The swap state shared by PAM, FastPAM1/2 and FasterPAM: for every point its nearest and
//! second-nearest medoid (slot and distance), the n×k distances to the medoids (so a swap never
//! recomputes a distance), the removal loss of each medoid and the weighted loss.
//!
//! Distances stay in the source's dtype `T`; every loss and gain is accumulated in f64, each
//! term `w_o · (d_a - d_b)` formed from exact f64 conversions, so integer-valued distances and
//! weights give exact (tie-preserving) gains.

use super::dissimilarity::Dissimilarity;
use crate::Float;
use rayon::prelude::*;

/// Points per parallel chunk in the O(n) state updates; fixed so sums are ordered the same way
/// for any thread count.
const CHUNK: usize = 2048;
const NONE: u32 = u32::MAX;

pub struct State<T> {
    /// Points whose loss is tracked (all objects, or OneBatchPAM's batch).
    pub n: usize,
    pub k: usize,
    /// Medoids, as object indices.
    pub med: Vec<usize>,
    /// Whether each object is a medoid (indexed by object, like `med`).
    pub is_medoid: Vec<bool>,
    /// Points are the objects themselves, so a medoid is always its own nearest point. False
    /// for a batch of points ([`State::for_batch`]), whose indices are not object indices.
    own: bool,
    pub near: Vec<u32>,
    pub dn: Vec<T>,
    pub seco: Vec<u32>,
    pub ds: Vec<T>,
    /// `dm[o * k + s] = d(med[s], o)`.
    pub dm: Vec<T>,
    /// Loss increase when medoid `s` is removed (its points go to their second nearest).
    pub removal: Vec<f64>,
    pub loss: f64,
}

impl<T: Float> State<T> {
    /// Assigns every point for the medoids `med` (distinct, validated by the caller).
    pub fn new<D: Dissimilarity<T>>(src: &D, med: &[usize], w: &[f64]) -> Self {
        let (n, k) = (src.len(), med.len());
        let mut rows = vec![T::ZERO; k * n];
        rows.par_chunks_mut(n)
            .zip(med.par_iter())
            .for_each(|(r, &m)| src.rows_into(&[m], r));
        Self::from_rows(n, n, med, &rows, w, true)
    }

    /// The state of a batch of `m` points (weights `w`, one per point) for medoids `med`
    /// among `objects` objects; `rows[s * m + b]` is the dissimilarity of medoid `s` to point
    /// `b`. No point is taken to be a medoid itself (OneBatchPAM).
    pub fn for_batch(m: usize, objects: usize, med: &[usize], rows: &[T], w: &[f64]) -> Self {
        Self::from_rows(m, objects, med, rows, w, false)
    }

    fn from_rows(
        n: usize,
        objects: usize,
        med: &[usize],
        rows: &[T],
        w: &[f64],
        own: bool,
    ) -> Self {
        let k = med.len();
        let mut dm = vec![T::ZERO; n * k];
        dm.par_chunks_mut(k).enumerate().for_each(|(o, d)| {
            for s in 0..k {
                d[s] = rows[s * n + o];
            }
        });
        let mut is_medoid = vec![false; objects];
        for &m in med {
            is_medoid[m] = true;
        }
        let mut st = Self {
            n,
            k,
            med: med.to_vec(),
            is_medoid,
            own,
            near: vec![0; n],
            dn: vec![T::ZERO; n],
            seco: vec![NONE; n],
            ds: vec![T::ZERO; n],
            dm,
            removal: vec![0.0; k],
            loss: 0.0,
        };
        st.reassign_all(w);
        st
    }

    /// Nearest and second nearest of every point from `dm`, then loss and removal loss.
    /// Ties go to the lowest slot, except that a medoid is always its own nearest.
    pub fn reassign_all(&mut self, w: &[f64]) {
        let (k, med, is_med, own) = (self.k, &self.med, &self.is_medoid, self.own);
        let dm = &self.dm;
        (
            self.near.par_chunks_mut(CHUNK),
            self.dn.par_chunks_mut(CHUNK),
        )
            .into_par_iter()
            .zip((
                self.seco.par_chunks_mut(CHUNK),
                self.ds.par_chunks_mut(CHUNK),
            ))
            .enumerate()
            .for_each(|(c, ((near, dn), (seco, ds)))| {
                for r in 0..near.len() {
                    let o = c * CHUNK + r;
                    let d = &dm[o * k..(o + 1) * k];
                    let (a, b) = nearest_two(d, own_slot(own, o, is_med, med), None);
                    near[r] = a as u32;
                    dn[r] = d[a];
                    seco[r] = b.map_or(NONE, |b| b as u32);
                    ds[r] = b.map_or(T::ZERO, |b| d[b]);
                }
            });
        self.refresh_losses(w);
    }

    /// Loss and removal loss from the assignment, in fixed chunk order.
    pub fn refresh_losses(&mut self, w: &[f64]) {
        let k = self.k;
        let parts: Vec<(f64, Vec<f64>)> = (0..self.n.div_ceil(CHUNK))
            .into_par_iter()
            .map(|c| {
                let mut rem = vec![0.0; k];
                let mut loss = 0.0;
                for o in c * CHUNK..((c + 1) * CHUNK).min(self.n) {
                    loss += w[o] * self.dn[o].to_f64();
                    if self.seco[o] != NONE {
                        rem[self.near[o] as usize] +=
                            w[o] * (self.ds[o].to_f64() - self.dn[o].to_f64());
                    }
                }
                (loss, rem)
            })
            .collect();
        self.loss = 0.0;
        self.removal.fill(0.0);
        for (l, rem) in parts {
            self.loss += l;
            for (a, b) in self.removal.iter_mut().zip(rem) {
                *a += b;
            }
        }
    }

    /// The best swap of candidate `x` (whose row is `row`): `(change of the loss, slot)`,
    /// the lowest slot among equal changes. Exact PAM gains for all `k` slots in O(n + k)
    /// (Schubert & Rousseeuw's FastPAM1 decomposition: a shared term plus the removal loss
    /// corrected per slot).
    pub fn best_swap(&self, row: &[T], w: &[f64]) -> (f64, usize) {
        if self.k == 1 {
            let mut change = 0.0;
            for o in 0..self.n {
                change += w[o] * (row[o].to_f64() - self.dn[o].to_f64());
            }
            return (change, 0);
        }
        let mut ploss = self.removal.clone();
        let acc = self.swap_terms(row, w, &mut ploss);
        let mut best = 0;
        for s in 1..self.k {
            if ploss[s] < ploss[best] {
                best = s;
            }
        }
        (ploss[best] + acc, best)
    }

    /// Adds the per-slot corrections of candidate `row` to `ploss`; returns the shared term.
    #[inline]
    pub fn swap_terms(&self, row: &[T], w: &[f64], ploss: &mut [f64]) -> f64 {
        let mut acc = 0.0;
        for o in 0..self.n {
            let (d, dn, ds) = (row[o], self.dn[o], self.ds[o]);
            if d < dn {
                let (d, dn, ds) = (d.to_f64(), dn.to_f64(), ds.to_f64());
                acc += w[o] * (d - dn);
                ploss[self.near[o] as usize] += w[o] * (dn - ds);
            } else if d < ds {
                ploss[self.near[o] as usize] += w[o] * (d.to_f64() - ds.to_f64());
            }
        }
        acc
    }

    /// The change of the loss when slot `s` is replaced by the candidate of `row`, computed
    /// the way the original PAM does (one pair at a time, O(n)).
    pub fn pair_change(&self, row: &[T], s: usize, w: &[f64]) -> f64 {
        let mut change = 0.0;
        for o in 0..self.n {
            let d = row[o].to_f64();
            let dn = self.dn[o].to_f64();
            let other = if self.near[o] as usize == s {
                if self.seco[o] == NONE {
                    f64::INFINITY
                } else {
                    self.ds[o].to_f64()
                }
            } else {
                dn
            };
            change += w[o] * (d.min(other) - dn);
        }
        change
    }

    /// Replaces the medoid in slot `s` by `x` (whose distance row is `row`) and updates the
    /// assignment, using the cached distances to the other medoids.
    pub fn swap(&mut self, s: usize, x: usize, row: &[T], w: &[f64]) {
        let k = self.k;
        self.is_medoid[self.med[s]] = false;
        self.is_medoid[x] = true;
        self.med[s] = x;
        let (med, is_med, own) = (&self.med, &self.is_medoid, self.own);
        (
            self.near.par_chunks_mut(CHUNK),
            self.dn.par_chunks_mut(CHUNK),
        )
            .into_par_iter()
            .zip((
                self.seco.par_chunks_mut(CHUNK),
                self.ds.par_chunks_mut(CHUNK),
            ))
            .zip(self.dm.par_chunks_mut(CHUNK * k))
            .enumerate()
            .for_each(|(c, (((near, dn), (seco, ds)), dm))| {
                for r in 0..near.len() {
                    let o = c * CHUNK + r;
                    let d = &mut dm[r * k..(r + 1) * k];
                    d[s] = row[o];
                    let (a, b) = if own && o == x {
                        nearest_two(d, Some(s), None)
                    } else {
                        let own = own_slot(own, o, is_med, med);
                        update_two(d, s, near[r] as usize, seco[r], own)
                    };
                    near[r] = a as u32;
                    dn[r] = d[a];
                    seco[r] = b.map_or(NONE, |b| b as u32);
                    ds[r] = b.map_or(T::ZERO, |b| d[b]);
                }
            });
        self.refresh_losses(w);
    }

    /// Labels (slot of the nearest medoid) as `usize`.
    pub fn labels(&self) -> Vec<usize> {
        self.near.iter().map(|&s| s as usize).collect()
    }
}

/// The slot whose medoid is point `o`, if points are objects (`own`) and `o` is a medoid.
#[inline]
fn own_slot(own: bool, o: usize, is_med: &[bool], med: &[usize]) -> Option<usize> {
    if own && is_med[o] {
        med.iter().position(|&m| m == o)
    } else {
        None
    }
}

/// Nearest and second-nearest slot of one point from its distances `d` to the medoids; `own`
/// is the slot whose medoid is the point itself (always nearest). Ties: lowest slot.
#[inline]
fn nearest_two<T: Float>(
    d: &[T],
    own: Option<usize>,
    _hint: Option<usize>,
) -> (usize, Option<usize>) {
    let mut a = own.unwrap_or(0);
    for (s, &v) in d.iter().enumerate() {
        if own.is_none() && v < d[a] {
            a = s;
        }
    }
    let mut b: Option<usize> = None;
    for (s, &v) in d.iter().enumerate() {
        if s != a && b.is_none_or(|b| v < d[b]) {
            b = Some(s);
        }
    }
    (a, b)
}

/// The update after slot `s` changed, for a point that is not the new medoid. A full rescan
/// of the k cached distances only when the nearest or second nearest may have changed
/// otherwise than by the new medoid coming closer; the result is always what
/// [`nearest_two`] gives (so assignment ties are broken identically everywhere).
#[inline]
fn update_two<T: Float>(
    d: &[T],
    s: usize,
    near: usize,
    seco: u32,
    own: Option<usize>,
) -> (usize, Option<usize>) {
    if own.is_some() || near == s || seco as usize == s || seco == NONE {
        return nearest_two(d, own, None);
    }
    // Slot s is neither nearest nor second: only its new distance can move it up.
    let (a, b) = (near, seco as usize);
    let v = d[s];
    if v < d[a] || (v == d[a] && s < a) {
        (s, Some(a))
    } else if v < d[b] || (v == d[b] && s < b) {
        (a, Some(s))
    } else {
        (a, Some(b))
    }
}
