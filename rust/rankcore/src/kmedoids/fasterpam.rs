//! FasterPAM (Schubert & Rousseeuw 2021): eager swaps. Candidates are visited in index
//! order, pass after pass; the first candidate whose best swap lowers the loss is swapped in
//! at once. Stops after a full pass (up to the last swap) without improvement.
//!
//! Parallel form: a block of upcoming candidates is evaluated at once against the current
//! state; the first improving one in order is applied and the candidates after it are
//! evaluated again against the new state, so the sequence of swaps is that of the sequential
//! algorithm for any block size and thread count. The block doubles after a block without a
//! swap and halves after one with a swap (early passes swap often, late passes rarely).
//!
//! The loop is shared with FasterMSC through the [`Eager`] trait.

use super::dissimilarity::Dissimilarity;
use super::state::State;
use super::{eval_rows, row_of, Progress};
use crate::{Float, Interrupt, Result};
use rayon::prelude::*;

/// An objective optimised by eager swaps.
pub trait Eager<T: Float>: Sync {
    fn state(&self) -> &State<T>;
    /// `(change of the objective, slot)` of the best swap with the candidate of `row`;
    /// negative is an improvement.
    fn best(&self, row: &[T]) -> (f64, usize);
    fn apply(&mut self, slot: usize, x: usize, row: &[T]);
    /// The value minimised (for the convergence check and `verbose`).
    fn objective(&self) -> f64;
    /// The objective as `verbose` prints it.
    fn describe(&self) -> String;
    /// Changes no better than `-min_gain()` count as none: a swap whose exact change is zero
    /// may come out a rounding error below it, and taking it would end the search early.
    fn min_gain(&self) -> f64 {
        0.0
    }
}

/// The k-medoids loss (FasterPAM).
struct Loss<'a, T> {
    st: &'a mut State<T>,
    w: &'a [f64],
}

impl<T: Float> Eager<T> for Loss<'_, T> {
    fn state(&self) -> &State<T> {
        self.st
    }
    fn best(&self, row: &[T]) -> (f64, usize) {
        self.st.best_swap(row, self.w)
    }
    fn apply(&mut self, slot: usize, x: usize, row: &[T]) {
        self.st.swap(slot, x, row, self.w);
    }
    fn objective(&self) -> f64 {
        self.st.loss
    }
    fn describe(&self) -> String {
        format!("loss {:.6e}", self.st.loss)
    }
}

pub fn fasterpam<T: Float, D: Dissimilarity<T>>(
    src: &D,
    st: &mut State<T>,
    w: &[f64],
    max_iter: usize,
    verbose: bool,
    stop: &dyn Interrupt,
) -> Result<Progress> {
    eager(src, &mut Loss { st, w }, max_iter, verbose, stop)
}

/// Bytes of computed rows [`eager_over`] keeps for a block.
const ROW_CACHE_BYTES: usize = 64 << 20;

/// The rows of `cands` computed into `rows` (one after another), in the source's blocks.
fn block_rows<T: Float, D: Dissimilarity<T>>(src: &D, cands: &[usize], rows: &mut Vec<T>) {
    let (n, pb) = (src.len(), src.preferred_block());
    rows.resize(cands.len() * n, T::ZERO);
    rows.par_chunks_mut(pb * n)
        .zip(cands.par_chunks(pb))
        .for_each(|(out, c)| src.rows_into(c, out));
}

/// FasterPAM's eager swaps with only the candidates `order` (see [`eager_over`]).
pub fn fasterpam_over<T: Float, D: Dissimilarity<T>>(
    src: &D,
    st: &mut State<T>,
    w: &[f64],
    order: &[usize],
    max_iter: usize,
    verbose: bool,
    stop: &dyn Interrupt,
) -> Result<Progress> {
    eager_over(src, &mut Loss { st, w }, order, max_iter, verbose, stop)
}

/// The eager swap loop (see the module documentation) over all objects as candidates.
pub fn eager<T: Float, D: Dissimilarity<T>, E: Eager<T>>(
    src: &D,
    prob: &mut E,
    max_iter: usize,
    verbose: bool,
    stop: &dyn Interrupt,
) -> Result<Progress> {
    let all: Vec<usize> = (0..src.len()).collect();
    eager_over(src, prob, &all, max_iter, verbose, stop)
}

/// The eager swap loop with the candidates `order` (distinct objects), visited in that
/// order pass after pass; a pass ends at the candidate after the last swap, as in
/// [`eager`]. Every object still counts in the objective.
pub fn eager_over<T: Float, D: Dissimilarity<T>, E: Eager<T>>(
    src: &D,
    prob: &mut E,
    order: &[usize],
    max_iter: usize,
    verbose: bool,
    stop: &dyn Interrupt,
) -> Result<Progress> {
    let n = order.len();
    let mut p = Progress::default();
    if prob.state().k == src.len() || n == 0 {
        p.converged = true;
        return Ok(p);
    }
    // One thread: blocks of one (no evaluation is ever wasted). More: a few candidates per
    // thread, so that a block's work outweighs its scheduling (stored rows are cheap).
    let threads = rayon::current_num_threads();
    let min_block = if threads == 1 {
        src.preferred_block()
    } else {
        4 * threads * src.preferred_block()
    };
    let max_block = (64 * min_block).max(256);
    // A block's computed rows are kept until it is done: at most ROW_CACHE_BYTES of them.
    let stored = src.stored_row(0).is_some();
    let cap = if stored {
        usize::MAX
    } else {
        let row_bytes = (src.len() * std::mem::size_of::<T>()).max(1);
        (ROW_CACHE_BYTES / row_bytes).max(threads * src.preferred_block())
    };
    let (min_block, max_block) = (min_block.min(cap), max_block.min(cap));
    let mut block = min_block;
    // Positions in `order`: the loop runs from `j` until it comes back to `lastswap`.
    let mut lastswap = n;
    let mut at = vec![usize::MAX; src.len()];
    order.iter().enumerate().for_each(|(i, &x)| at[x] = i);
    let mut rows: Vec<T> = Vec::new();
    let mut buf = Vec::new();
    while p.n_iter < max_iter {
        p.n_iter += 1;
        let (swaps_before, last) = (p.n_swap, prob.objective());
        let mut j = 0;
        while j < n && j != lastswap {
            stop.check()?;
            let limit = if lastswap > j { lastswap.min(n) } else { n };
            let end = (j + block).min(limit);
            let pos: Vec<usize> = (j..end)
                .filter(|&i| !prob.state().is_medoid[order[i]])
                .collect();
            let cands: Vec<usize> = pos.iter().map(|&i| order[i]).collect();
            if !stored {
                block_rows(src, &cands, &mut rows);
            }
            // The rows do not depend on the medoids: after a swap, the rest of the block is
            // evaluated again from the same rows (unless the medoid swapped out is one of
            // its candidates; then the next block starts right after the swap).
            let mut i0 = 0;
            j = end;
            loop {
                let view = &*prob;
                let row = |i: usize| -> &[T] {
                    match src.stored_row(cands[i]) {
                        Some(r) => r,
                        None => &rows[i * src.len()..(i + 1) * src.len()],
                    }
                };
                let gains: Vec<(f64, usize)> = if stored {
                    eval_rows(src, &cands[i0..], |_, r| view.best(r))
                } else {
                    (i0..cands.len())
                        .into_par_iter()
                        .map(|i| view.best(row(i)))
                        .collect()
                };
                let tol = prob.min_gain();
                let Some(r) = gains.iter().position(|g| g.0 < -tol) else {
                    if i0 == 0 {
                        block = (block * 2).min(max_block);
                    }
                    break;
                };
                let (i, slot) = (i0 + r, gains[r].1);
                let out = prob.state().med[slot];
                let x = cands[i];
                let new_row = if stored {
                    row_of(src, x, &mut buf).to_vec()
                } else {
                    row(i).to_vec()
                };
                prob.apply(slot, x, &new_row);
                p.n_swap += 1;
                lastswap = pos[i];
                block = (block / 2).max(min_block);
                i0 = i + 1;
                if i0 == cands.len() || (at[out] > pos[i] && at[out] < end) {
                    j = pos[i] + 1;
                    break;
                }
            }
        }
        if verbose {
            eprintln!(
                "kmedoids: pass {} {} swaps {}",
                p.n_iter,
                prob.describe(),
                p.n_swap - swaps_before
            );
        }
        if p.n_swap == swaps_before || prob.objective() >= last {
            p.converged = true;
            break;
        }
    }
    Ok(p)
}
