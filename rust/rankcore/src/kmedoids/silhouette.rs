//! The medoid silhouette (Van der Laan, Pollard & Bryan 2003; Lenssen & Schubert 2022):
//! `s_o = 1 - a_o / b_o` with `a_o`, `b_o` the distances to the nearest and second-nearest
//! medoid (0 when `b_o = 0`), O(n k) instead of the silhouette's O(n²).

use super::dissimilarity::Dissimilarity;
use super::init::check_given;
use super::state::State;
use crate::{Float, Result};

/// Per-point medoid silhouettes for the given medoids, and their mean. With one medoid every
/// value is 0 (no second cluster to compare with).
pub fn medoid_silhouette<T: Float, D: Dissimilarity<T>>(
    src: &D,
    medoids: &[usize],
) -> Result<(f64, Vec<f64>)> {
    let n = src.len();
    check_given(medoids, n, medoids.len())?;
    if medoids.is_empty() {
        return Err(crate::invalid!("medoids must not be empty"));
    }
    let w = vec![1.0; n];
    let st = State::new(src, medoids, &w);
    let values: Vec<f64> = (0..n)
        .map(|o| {
            if st.k == 1 {
                return 0.0;
            }
            let (a, b) = (st.dn[o].to_f64(), st.ds[o].to_f64());
            if b > 0.0 {
                1.0 - a / b
            } else {
                0.0
            }
        })
        .collect();
    let mean = values.iter().sum::<f64>() / n as f64;
    Ok((mean, values))
}
