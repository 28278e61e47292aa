//! Alternating (Voronoi) iteration, as in k-means and scikit-learn-extra's
//! `method="alternate"`: assign every point to its nearest medoid, then move each medoid to
//! the member of its cluster with the least total (weighted) dissimilarity to the cluster,
//! until no medoid moves. A medoid only moves for a strictly smaller cost (then to the lowest
//! index), so the iteration cannot cycle. Usually worse than the swap methods; kept for
//! comparison.

use super::dissimilarity::Dissimilarity;
use super::state::State;
use super::{eval_rows_checked, Progress};
use crate::{Float, Interrupt, Result};

pub fn alternate<T: Float, D: Dissimilarity<T>>(
    src: &D,
    st: &mut State<T>,
    w: &[f64],
    max_iter: usize,
    verbose: bool,
    stop: &dyn Interrupt,
) -> Result<Progress> {
    let n = src.len();
    let mut p = Progress::default();
    while p.n_iter < max_iter {
        stop.check()?;
        p.n_iter += 1;
        let labels = st.near.clone();
        let all: Vec<usize> = (0..n).collect();
        let cost = eval_rows_checked(
            src,
            &all,
            |x, row| {
                let c = labels[x];
                let mut total = 0.0;
                for o in 0..n {
                    if labels[o] == c {
                        total += w[o] * row[o].to_f64();
                    }
                }
                total
            },
            stop,
        )?;
        let mut med = st.med.clone();
        for (x, &c) in cost.iter().enumerate() {
            let s = labels[x] as usize;
            if c < cost[med[s]] || (c == cost[med[s]] && x < med[s] && med[s] != st.med[s]) {
                med[s] = x;
            }
        }
        let moved = med.iter().zip(&st.med).filter(|(a, b)| a != b).count();
        if moved == 0 {
            p.converged = true;
            break;
        }
        p.n_swap += moved;
        *st = State::new(src, &med, w);
        if verbose {
            eprintln!(
                "kmedoids: iteration {} loss {:.6e} moved {}",
                p.n_iter, st.loss, moved
            );
        }
    }
    Ok(p)
}
