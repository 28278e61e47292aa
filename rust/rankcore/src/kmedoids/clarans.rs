//! FastCLARANS (Schubert & Rousseeuw 2021): randomised local search. From random medoids,
//! draw random non-medoids and evaluate all k swaps of each at once (FastPAM1's O(n + k)
//! gains); take the best one if it lowers the loss; stop after `max_neighbor` draws in a row
//! without improvement. The best of `num_local` restarts is kept. Draws come from Philox
//! (seed, stream, restart, draw), so results do not depend on threads.

use super::dissimilarity::Dissimilarity;
use super::init::{sample, STREAM_CLARANS};
use super::state::State;
use super::{finish, row_of, Fit, Params, Progress};
use crate::rng::RandomMatrix;
use crate::{Float, Interrupt, Result};

pub fn clarans<T: Float, D: Dissimilarity<T>>(
    src: &D,
    params: &Params,
    w: &[f64],
    stop: &dyn Interrupt,
) -> Result<Fit> {
    let n = src.len();
    let k = params.n_clusters;
    let max_neighbor = if params.sample_size == 0 {
        250.max((0.025 * (n - k) as f64).ceil() as usize)
    } else {
        params.sample_size
    };
    let rng = RandomMatrix::new(params.seed, STREAM_CLARANS);
    let mut best: Option<(State<T>, Vec<usize>)> = None;
    let mut total = Progress::default();
    let mut buf = Vec::new();
    for run in 0..params.n_samples.max(1) {
        let start = sample(n, k, rng, 2 * run as u32);
        let mut st = State::new(src, &start, w);
        let mut fails = 0;
        let mut draw = 0u64;
        while fails < max_neighbor
            && st.k < n
            && total.n_iter < params.max_iter.saturating_mul(max_neighbor)
        {
            if draw % 256 == 0 {
                stop.check()?;
            }
            let x = ((rng.uniform_at(draw, 2 * run as u32 + 1) * n as f64) as usize).min(n - 1);
            draw += 1;
            if st.is_medoid[x] {
                continue;
            }
            total.n_iter += 1;
            let row = row_of(src, x, &mut buf).to_vec();
            let (change, slot) = st.best_swap(&row, w);
            if change < 0.0 {
                st.swap(slot, x, &row, w);
                total.n_swap += 1;
                fails = 0;
            } else {
                fails += 1;
            }
        }
        if params.verbose {
            eprintln!("kmedoids: CLARANS restart {} loss {:.6e}", run + 1, st.loss);
        }
        if best.as_ref().is_none_or(|(b, _)| st.loss < b.loss) {
            best = Some((st, start));
        }
    }
    let (st, start) = best.expect("at least one restart");
    total.converged = true;
    Ok(finish(st, total, start))
}
