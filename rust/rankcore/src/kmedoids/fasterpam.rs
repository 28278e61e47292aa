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

/// The eager swap loop (see the module documentation).
pub fn eager<T: Float, D: Dissimilarity<T>, E: Eager<T>>(
    src: &D,
    prob: &mut E,
    max_iter: usize,
    verbose: bool,
    stop: &dyn Interrupt,
) -> Result<Progress> {
    let n = src.len();
    let mut p = Progress::default();
    if prob.state().k == n {
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
    let mut block = min_block;
    let mut lastswap = n;
    let mut buf = Vec::new();
    while p.n_iter < max_iter {
        p.n_iter += 1;
        let (swaps_before, last) = (p.n_swap, prob.objective());
        let mut j = 0;
        while j < n && j != lastswap {
            stop.check()?;
            let limit = if lastswap > j { lastswap.min(n) } else { n };
            let end = (j + block).min(limit);
            let cands: Vec<usize> = (j..end).filter(|&x| !prob.state().is_medoid[x]).collect();
            let view = &*prob;
            let gains = eval_rows(src, &cands, |_, row| view.best(row));
            let tol = prob.min_gain();
            match gains.iter().position(|g| g.0 < -tol) {
                Some(i) => {
                    let (x, slot) = (cands[i], gains[i].1);
                    let row = row_of(src, x, &mut buf).to_vec();
                    prob.apply(slot, x, &row);
                    p.n_swap += 1;
                    lastswap = x;
                    j = x + 1;
                    block = (block / 2).max(min_block);
                }
                None => {
                    j = end;
                    block = (block * 2).min(max_block);
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
