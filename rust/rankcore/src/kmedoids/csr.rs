//! Distances computed on the fly from the rows of a sparse (CSR) feature matrix, never
//! densified.
//!
//! Each distance merges the two rows' sorted column lists and sums [`term`] over the union in
//! increasing column order. A column absent from both rows would add an exact zero to the
//! dense sum, so the result is bit-identical to the dense source
//! ([`super::dissimilarity::Features`]) on the densified matrix: the same medoids, labels and
//! loss, whichever form the data come in.

use super::dissimilarity::{
    finish, symmetric_matrix, term, Dissimilarity, Fma, Materialise, Metric,
};
use crate::{invalid, Result};
use rayon::prelude::*;

/// Rows requested at once: amortises the per-request buffer of the callers.
const BLOCK: usize = 4;

/// A CSR matrix (`n` rows, `d` columns, canonical: column indices strictly increasing within
/// each row) and a metric.
pub struct CsrFeatures<'a, T> {
    indptr: &'a [i64],
    indices: &'a [i64],
    values: &'a [T],
    n: usize,
    metric: Metric,
    /// Euclidean norms of the rows (cosine only), from the same sum.
    norms: Vec<T>,
}

impl<'a, T: Fma> CsrFeatures<'a, T> {
    /// Validates the structure (`indptr` of length `n + 1` from 0 to `nnz`, non-decreasing;
    /// column indices in `[0, d)` and strictly increasing in each row) and the values (finite).
    pub fn new(
        indptr: &'a [i64],
        indices: &'a [i64],
        values: &'a [T],
        d: usize,
        metric: Metric,
    ) -> Result<Self> {
        let n = indptr.len().saturating_sub(1);
        if n == 0 || d == 0 {
            return Err(invalid!(
                "X must be a non-empty n_samples × n_features matrix"
            ));
        }
        let nnz = values.len();
        if indptr[0] != 0 || indptr[n] != nnz as i64 || indices.len() != nnz {
            return Err(invalid!(
                "X is not a valid CSR matrix: indptr must run from 0 to nnz = {nnz}"
            ));
        }
        let bad_row = (0..n).into_par_iter().find_first(|&i| {
            let (a, b) = (indptr[i], indptr[i + 1]);
            if a < 0 || a > b || b > nnz as i64 {
                return true;
            }
            let cols = &indices[a as usize..b as usize];
            cols.iter().any(|&c| c < 0 || c as usize >= d) || cols.windows(2).any(|w| w[0] >= w[1])
        });
        if let Some(i) = bad_row {
            return Err(invalid!(
                "X is not a valid CSR matrix: row {i} has column indices out of [0, {d}), \
                 repeated or unsorted"
            ));
        }
        if values.par_iter().any(|v| !v.is_finite()) {
            return Err(invalid!("X contains NaN or infinity"));
        }
        let mut f = Self {
            indptr,
            indices,
            values,
            n,
            metric,
            norms: Vec::new(),
        };
        if metric == Metric::Cosine {
            f.norms = (0..n).into_par_iter().map(|i| f.raw(i, i).sqrt()).collect();
        }
        Ok(f)
    }

    #[inline(always)]
    fn row(&self, i: usize) -> (&[i64], &[T]) {
        let (a, b) = (self.indptr[i] as usize, self.indptr[i + 1] as usize);
        (&self.indices[a..b], &self.values[a..b])
    }

    /// The metric's sum for one pair, before the finish: a merge of the two rows.
    fn raw(&self, i: usize, j: usize) -> T {
        let ((ca, va), (cb, vb)) = (self.row(i), self.row(j));
        let m = self.metric;
        let (mut p, mut q) = (0, 0);
        let mut acc = T::ZERO;
        while p < ca.len() && q < cb.len() {
            if ca[p] == cb[q] {
                acc = term(m, va[p], vb[q], acc);
                p += 1;
                q += 1;
            } else if ca[p] < cb[q] {
                acc = term(m, va[p], T::ZERO, acc);
                p += 1;
            } else {
                acc = term(m, T::ZERO, vb[q], acc);
                q += 1;
            }
        }
        if m != Metric::Cosine {
            // The rest of either row against zeros (cosine's products with zero add nothing).
            for &a in &va[p..] {
                acc = term(m, a, T::ZERO, acc);
            }
            for &b in &vb[q..] {
                acc = term(m, T::ZERO, b, acc);
            }
        }
        acc
    }

    fn fill_rows(&self, rows: &[usize], cols: usize, out: &mut [T]) {
        for (r, &i) in rows.iter().enumerate() {
            for (j, o) in out[r * self.n..r * self.n + cols].iter_mut().enumerate() {
                *o = self.get(i, j);
            }
        }
    }
}

impl<T: Fma> Dissimilarity<T> for CsrFeatures<'_, T> {
    fn len(&self) -> usize {
        self.n
    }
    fn rows_into(&self, rows: &[usize], out: &mut [T]) {
        self.fill_rows(rows, self.n, out);
    }
    fn preferred_block(&self) -> usize {
        BLOCK
    }
    fn get(&self, i: usize, j: usize) -> T {
        finish(self.metric, self.raw(i, j), i, j, &self.norms)
    }
}

impl<T: Fma> Materialise<T> for CsrFeatures<'_, T> {
    fn to_matrix(&self) -> Vec<T> {
        symmetric_matrix(self.n, BLOCK, |rows, cols, out| {
            self.fill_rows(rows, cols, out)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kmedoids::dissimilarity::Features;

    /// A dense matrix with about a third of its entries zero, and its CSR form.
    fn sample(n: usize, d: usize) -> (Vec<f64>, Vec<i64>, Vec<i64>, Vec<f64>) {
        let x: Vec<f64> = (0..n * d)
            .map(|t| {
                let v = ((t * 7919) % 31) as f64 / 7.0 - 2.0;
                if t % 3 == 1 {
                    0.0
                } else {
                    v
                }
            })
            .collect();
        let (mut indptr, mut indices, mut values) = (vec![0i64], vec![], vec![]);
        for i in 0..n {
            for l in 0..d {
                if x[i * d + l] != 0.0 {
                    indices.push(l as i64);
                    values.push(x[i * d + l]);
                }
            }
            indptr.push(indices.len() as i64);
        }
        (x, indptr, indices, values)
    }

    #[test]
    fn bit_identical_to_the_dense_source() {
        let (n, d) = (13, 9);
        let (x, indptr, indices, values) = sample(n, d);
        for m in [
            Metric::Euclidean,
            Metric::SqEuclidean,
            Metric::Manhattan,
            Metric::Cosine,
        ] {
            let dense = Features::new(&x, n, d, m).unwrap().to_matrix();
            let sparse = CsrFeatures::new(&indptr, &indices, &values, d, m).unwrap();
            assert_eq!(sparse.to_matrix(), dense, "{m:?}");
            let mut rows = vec![0.0; 3 * n];
            sparse.rows_into(&[4, 0, 12], &mut rows);
            assert_eq!(&rows[..n], &dense[4 * n..5 * n]);
            assert_eq!(&rows[2 * n..], &dense[12 * n..]);
        }
    }

    #[test]
    fn malformed_structure_is_an_error() {
        let (ip, ix, v) = (vec![0i64, 2, 3], vec![0i64, 2, 1], vec![1.0f64, 2.0, 3.0]);
        assert!(CsrFeatures::new(&ip, &ix, &v, 3, Metric::Euclidean).is_ok());
        let e = |ip: &[i64], ix: &[i64], v: &[f64], d| {
            CsrFeatures::new(ip, ix, v, d, Metric::Euclidean).is_err()
        };
        assert!(e(&ip, &ix, &v, 2)); // column 2 out of range
        assert!(e(&ip, &[2, 0, 1], &v, 3)); // unsorted
        assert!(e(&ip, &[1, 1, 1], &v, 3)); // repeated
        assert!(e(&[0, 2, 4], &ix, &v, 3)); // indptr past nnz
        assert!(e(&[0, 3, 2], &ix, &v, 3)); // decreasing indptr
        assert!(e(&ip, &ix, &[1.0, f64::NAN, 3.0], 3));
        assert!(e(&[0], &[], &[], 3)); // no rows
    }
}
