//! FastPAM2 (Schubert & Rousseeuw 2019): one evaluation of all candidates per iteration, then
//! up to `k` swaps: for each medoid slot the best candidate (lowest index on ties); the slots
//! are taken in order of increasing change (then slot), the first swap is done at once and
//! each later one only if, re-evaluated against the state after the earlier swaps, it still
//! lowers the loss (and its candidate is not a medoid by then).

use super::dissimilarity::Dissimilarity;
use super::state::State;
use super::{eval_rows_checked, row_of, Progress};
use crate::{Float, Interrupt, Result};

pub fn fastpam2<T: Float, D: Dissimilarity<T>>(
    src: &D,
    st: &mut State<T>,
    w: &[f64],
    max_iter: usize,
    verbose: bool,
    stop: &dyn Interrupt,
) -> Result<Progress> {
    let n = src.len();
    let k = st.k;
    let mut p = Progress::default();
    let mut buf = Vec::new();
    while p.n_iter < max_iter {
        if k == n {
            p.converged = true;
            break;
        }
        stop.check()?;
        p.n_iter += 1;
        let cands: Vec<usize> = (0..n).filter(|&x| !st.is_medoid[x]).collect();
        let state = &*st;
        let changes: Vec<Vec<f64>> = eval_rows_checked(
            src,
            &cands,
            |_, row| {
                if k == 1 {
                    return vec![state.best_swap(row, w).0];
                }
                let mut ploss = state.removal.clone();
                let acc = state.swap_terms(row, w, &mut ploss);
                ploss.iter().map(|&l| l + acc).collect()
            },
            stop,
        )?;
        // Best candidate per slot: first minimum in candidate order.
        let mut best: Vec<(f64, usize)> = vec![(f64::INFINITY, usize::MAX); k];
        for (i, ch) in changes.iter().enumerate() {
            for s in 0..k {
                if ch[s] < best[s].0 {
                    best[s] = (ch[s], cands[i]);
                }
            }
        }
        let mut order: Vec<usize> = (0..k).filter(|&s| best[s].0 < 0.0).collect();
        if order.is_empty() {
            p.converged = true;
            break;
        }
        order.sort_by(|&a, &b| best[a].0.total_cmp(&best[b].0).then(a.cmp(&b)));
        for (rank, &s) in order.iter().enumerate() {
            let x = best[s].1;
            if st.is_medoid[x] {
                continue;
            }
            let row = row_of(src, x, &mut buf).to_vec();
            if rank > 0 && st.pair_change(&row, s, w) >= 0.0 {
                continue;
            }
            st.swap(s, x, &row, w);
            p.n_swap += 1;
        }
        if verbose {
            eprintln!(
                "kmedoids: iteration {} loss {:.6e} swaps {}",
                p.n_iter, st.loss, p.n_swap
            );
        }
    }
    Ok(p)
}
