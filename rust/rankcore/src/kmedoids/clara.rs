//! FastCLARA (Schubert & Rousseeuw 2021): FasterPAM on `n_samples` random subsamples of
//! `80 + 4k` points (the later ones containing the best medoids so far), each result scored
//! on all points; the best one is kept and every point assigned to it.

use super::dissimilarity::{Dissimilarity, Owned};
use super::init::{initialize, sample, Init, STREAM_CLARA};
use super::state::State;
use super::{fasterpam, finish, Fit, Params, Progress};
use crate::rng::RandomMatrix;
use crate::{Float, Interrupt, Result};
use rayon::prelude::*;

pub fn clara<T: Float, D: Dissimilarity<T>>(
    src: &D,
    params: &Params,
    w: &[f64],
    stop: &dyn Interrupt,
) -> Result<Fit> {
    let n = src.len();
    let k = params.n_clusters;
    let m = if params.sample_size == 0 {
        80 + 4 * k
    } else {
        params.sample_size
    }
    .clamp(k, n);
    let rng = RandomMatrix::new(params.seed, STREAM_CLARA);
    let mut best: Option<(f64, Vec<usize>)> = None;
    let mut total = Progress::default();
    let mut first_init = Vec::new();
    for s in 0..params.n_samples.max(1) {
        stop.check()?;
        // Start from the best medoids so far (or the given ones) and fill up at random.
        let mut keep: Vec<usize> = match (&best, &params.init) {
            (Some((_, med)), _) => med.clone(),
            (None, Init::Given(g)) => g.clone(),
            _ => Vec::new(),
        };
        let mut taken = vec![false; n];
        for &x in &keep {
            taken[x] = true;
        }
        for x in sample(n, n, rng, s as u32) {
            if keep.len() >= m {
                break;
            }
            if !taken[x] {
                taken[x] = true;
                keep.push(x);
            }
        }
        keep.sort_unstable();
        let sub = Owned {
            data: {
                let mut d = vec![T::ZERO; m * m];
                d.par_chunks_mut(m).enumerate().for_each(|(i, r)| {
                    for (j, v) in r.iter_mut().enumerate() {
                        *v = src.get(keep[i], keep[j]);
                    }
                });
                d
            },
            n: m,
        };
        let sw: Vec<f64> = keep.iter().map(|&x| w[x]).collect();
        let init = match (&best, &params.init) {
            (Some((_, med)), _) => Init::Given(
                med.iter()
                    .map(|x| keep.binary_search(x).unwrap_or(0))
                    .collect(),
            ),
            (None, Init::Given(g)) => Init::Given(
                g.iter()
                    .map(|x| keep.binary_search(x).unwrap_or(0))
                    .collect(),
            ),
            (None, other) => other.clone(),
        };
        let start = initialize(
            &sub,
            k,
            &init,
            &sw,
            params.seed.wrapping_add(s as u64),
            stop,
        )?;
        let mut st = State::new(&sub, &start, &sw);
        let p = fasterpam::fasterpam(&sub, &mut st, &sw, params.max_iter, false, stop)?;
        total.n_iter += p.n_iter;
        total.n_swap += p.n_swap;
        let med: Vec<usize> = st.med.iter().map(|&i| keep[i]).collect();
        if s == 0 {
            first_init = start.iter().map(|&i| keep[i]).collect();
        }
        let full = State::new(src, &med, w);
        if params.verbose {
            eprintln!("kmedoids: CLARA sample {} loss {:.6e}", s + 1, full.loss);
        }
        if best.as_ref().is_none_or(|(l, _)| full.loss < *l) {
            best = Some((full.loss, med));
        }
    }
    let (_, med) = best.expect("at least one sample");
    total.converged = true;
    Ok(finish(State::new(src, &med, w), total, first_init))
}
