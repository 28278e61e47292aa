//! FasterPAM (Schubert & Rousseeuw 2021): eager swaps. Candidates are visited in index
//! order, pass after pass; the first candidate whose best swap lowers the loss is swapped in
//! at once. Stops after a full pass (up to the last swap) without improvement.
//!
//! Parallel form: a block of upcoming candidates is evaluated at once against the current
//! state; the first improving one in order is applied and the candidates after it are
//! evaluated again against the new state, so the sequence of swaps is that of the sequential
//! algorithm for any block size and thread count. The block doubles after a block without a
//! swap and halves after one with a swap (early passes swap often, late passes rarely).

use super::dissimilarity::Dissimilarity;
use super::state::State;
use super::{eval_rows, row_of, Progress};
use crate::{Float, Interrupt, Result};

pub fn fasterpam<T: Float, D: Dissimilarity<T>>(
    src: &D,
    st: &mut State<T>,
    w: &[f64],
    max_iter: usize,
    verbose: bool,
    stop: &dyn Interrupt,
) -> Result<Progress> {
    let n = src.len();
    let mut p = Progress::default();
    if st.k == n {
        p.converged = true;
        return Ok(p);
    }
    let min_block = rayon::current_num_threads() * src.preferred_block();
    let max_block = (64 * min_block).max(256);
    let mut block = min_block;
    let mut lastswap = n;
    let mut buf = Vec::new();
    while p.n_iter < max_iter {
        p.n_iter += 1;
        let (swaps_before, lastloss) = (p.n_swap, st.loss);
        let mut j = 0;
        while j < n && j != lastswap {
            stop.check()?;
            let limit = if lastswap > j { lastswap.min(n) } else { n };
            let end = (j + block).min(limit);
            let cands: Vec<usize> = (j..end).filter(|&x| !st.is_medoid[x]).collect();
            let state = &*st;
            let gains = eval_rows(src, &cands, |_, row| state.best_swap(row, w));
            match gains.iter().position(|g| g.0 < 0.0) {
                Some(i) => {
                    let (x, slot) = (cands[i], gains[i].1);
                    let row = row_of(src, x, &mut buf).to_vec();
                    st.swap(slot, x, &row, w);
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
                "kmedoids: pass {} loss {:.6e} swaps {}",
                p.n_iter,
                st.loss,
                p.n_swap - swaps_before
            );
        }
        if p.n_swap == swaps_before || st.loss >= lastloss {
            p.converged = true;
            break;
        }
    }
    Ok(p)
}
