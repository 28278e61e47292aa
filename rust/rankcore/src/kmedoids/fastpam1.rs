//! PAM's SWAP (Kaufman & Rousseeuw) and FastPAM1 (Schubert & Rousseeuw 2019): each
//! iteration performs the single best swap over all (medoid, non-medoid) pairs, until none
//! lowers the loss. FastPAM1 evaluates the `k` swaps of a candidate together in O(n + k)
//! (shared term plus removal loss) and so makes exactly PAM's choices, O(k) times faster.
//!
//! **Tie rule** (both): among pairs with the smallest change, the lowest candidate index,
//! then the lowest medoid slot, i.e. the first minimum when candidates are scanned in index
//! order and slots in slot order with a strict `<`.

use super::dissimilarity::Dissimilarity;
use super::state::State;
use super::{eval_rows_checked, row_of, Progress};
use crate::{Float, Interrupt, Result};

/// `original`: the O(k n²)-per-iteration PAM, kept as the reference.
pub fn fastpam1<T: Float, D: Dissimilarity<T>>(
    src: &D,
    st: &mut State<T>,
    w: &[f64],
    max_iter: usize,
    verbose: bool,
    original: bool,
    stop: &dyn Interrupt,
) -> Result<Progress> {
    let n = src.len();
    let mut p = Progress::default();
    let mut buf = Vec::new();
    loop {
        if st.k == n {
            p.converged = true;
            break;
        }
        if p.n_iter >= max_iter {
            break;
        }
        stop.check()?;
        p.n_iter += 1;
        let cands: Vec<usize> = (0..n).filter(|&x| !st.is_medoid[x]).collect();
        let state = &*st;
        let gains = eval_rows_checked(
            src,
            &cands,
            |_, row| {
                if original {
                    let mut best = (f64::INFINITY, 0);
                    for s in 0..state.k {
                        let c = state.pair_change(row, s, w);
                        if c < best.0 {
                            best = (c, s);
                        }
                    }
                    best
                } else {
                    state.best_swap(row, w)
                }
            },
            stop,
        )?;
        let mut best: Option<usize> = None;
        for (i, g) in gains.iter().enumerate() {
            if best.is_none_or(|b| g.0 < gains[b].0) {
                best = Some(i);
            }
        }
        let Some(b) = best.filter(|&b| gains[b].0 < 0.0) else {
            p.converged = true;
            break;
        };
        let (x, slot) = (cands[b], gains[b].1);
        let row = row_of(src, x, &mut buf).to_vec();
        st.swap(slot, x, &row, w);
        p.n_swap += 1;
        if verbose {
            eprintln!("kmedoids: iteration {} loss {:.6e}", p.n_iter, st.loss);
        }
    }
    Ok(p)
}
