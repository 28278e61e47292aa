//! Randomized SVD against faer's exact SVD on matrices with known spectra.

use super::*;
use crate::linalg::qr_thin;
use crate::linalg::svd_thin;
use crate::operator::{Dense, Sparse};
use crate::sparse::CsrRef;
use crate::NeverInterrupt;

fn normal(m: usize, n: usize, seed: u64) -> Mat<f64> {
    let mut a = Mat::zeros(m, n);
    RandomMatrix::new(seed, 7).fill_normal(0, 0, a.as_mut());
    a
}

/// `U diag(s) Vᵀ` with random orthonormal `U`, `V`.
fn with_spectrum(m: usize, n: usize, s: &[f64], seed: u64) -> Mat<f64> {
    let (u, _) = qr_thin(normal(m, s.len(), seed).as_ref());
    let (v, _) = qr_thin(normal(n, s.len(), seed + 1).as_ref());
    let mut us = u.clone();
    for (j, &sj) in s.iter().enumerate() {
        us.col_mut(j).iter_mut().for_each(|x| *x *= sj);
    }
    &us * v.transpose()
}

fn exact_singular_values(a: &Mat<f64>) -> Vec<f64> {
    svd_thin(a.as_ref()).unwrap().1
}

fn params(k: usize, n_iter: usize, transpose: bool) -> RsvdParams {
    RsvdParams {
        n_components: k,
        n_oversamples: 10,
        n_iter,
        normalizer: Normalizer::Lu,
        transpose,
        seed: 42,
    }
}

fn rel_residual(a: &Mat<f64>, svd: &Svd<f64>) -> f64 {
    let mut us = svd.u.clone();
    for (j, &sj) in svd.s.iter().enumerate() {
        us.col_mut(j).iter_mut().for_each(|x| *x *= sj);
    }
    let r = a - &us * svd.v.transpose();
    r.norm_l2() / a.norm_l2()
}

fn to_csr(a: &Mat<f64>) -> (Vec<i64>, Vec<i64>, Vec<f64>) {
    let (mut p, mut idx, mut d) = (vec![0i64], vec![], vec![]);
    for i in 0..a.nrows() {
        for j in 0..a.ncols() {
            if a[(i, j)] != 0.0 {
                idx.push(j as i64);
                d.push(a[(i, j)]);
            }
        }
        p.push(idx.len() as i64);
    }
    (p, idx, d)
}

#[test]
fn exact_low_rank_is_recovered() {
    let s: Vec<f64> = (0..6).map(|j| 10.0 / (j + 1) as f64).collect();
    for &(m, n, transpose) in &[(80, 50, false), (50, 80, true), (50, 80, false)] {
        let a = with_spectrum(m, n, &s, 3);
        let dense = Dense::new(a.as_ref());
        let svd = randomized_svd(
            &Operator::new(&dense, false),
            &params(6, 2, transpose),
            &NeverInterrupt,
        )
        .unwrap();
        for (got, want) in svd.s.iter().zip(&s) {
            assert!((got - want).abs() < 1e-12 * s[0], "{got} vs {want}");
        }
        assert!(rel_residual(&a, &svd) < 1e-13);
        assert_eq!((svd.u.nrows(), svd.v.nrows()), (m, n));
    }
}

#[test]
fn sparse_matches_dense_and_csc_matches_csr() {
    let mut a = normal(120, 70, 5);
    for i in 0..120 {
        for j in 0..70 {
            if (i * 7 + j * 3) % 5 != 0 {
                a[(i, j)] = 0.0;
            }
        }
    }
    let p = params(8, 3, false);
    let dense = Dense::new(a.as_ref());
    let want = randomized_svd(&Operator::new(&dense, false), &p, &NeverInterrupt).unwrap();
    let (ip, ix, d) = to_csr(&a);
    let sparse = Sparse::new(CsrRef::new(120, 70, &ip, &ix, &d).unwrap()).unwrap();
    let got = randomized_svd(&Operator::new(&sparse, false), &p, &NeverInterrupt).unwrap();
    // The same arithmetic up to summation order.
    for (g, w) in got.s.iter().zip(&want.s) {
        assert!((g - w).abs() < 1e-12 * want.s[0]);
    }
    // The transpose as CSR, read as CSC of `a`.
    let at = a.transpose().to_owned();
    let (tp, tx, td) = to_csr(&at);
    let csc = Sparse::new(CsrRef::new(70, 120, &tp, &tx, &td).unwrap()).unwrap();
    let got = randomized_svd(&Operator::new(&csc, true), &p, &NeverInterrupt).unwrap();
    for (g, w) in got.s.iter().zip(&want.s) {
        assert!((g - w).abs() < 1e-12 * want.s[0]);
    }
}

#[test]
fn centring_is_implicit() {
    let mut a = with_spectrum(90, 40, &[5.0, 3.0, 1.0, 0.5], 8);
    for i in 0..90 {
        for j in 0..40 {
            a[(i, j)] += 100.0 + j as f64; // a large offset that centring must remove
        }
    }
    let mut centred = a.clone();
    for j in 0..40 {
        let mean = a.col(j).iter().sum::<f64>() / 90.0;
        centred.col_mut(j).iter_mut().for_each(|x| *x -= mean);
    }
    let exact = exact_singular_values(&centred);
    let dense = Dense::new(a.as_ref());
    for &transpose in &[false, true] {
        let (op, mean) = Operator::new(&dense, false).centred();
        assert!(
            (mean[3] - (103.0 + a.col(3).iter().map(|x| x - 103.0).sum::<f64>() / 90.0)).abs()
                < 1e-12
        );
        let svd = randomized_svd(&op, &params(4, 2, transpose), &NeverInterrupt).unwrap();
        for (g, w) in svd.s.iter().zip(&exact) {
            assert!((g - w).abs() < 1e-10 * exact[0], "{g} vs {w}");
        }
        assert!((op.sq_norm() - centred.norm_l2().powi(2)).abs() < 1e-9 * op.sq_norm());
    }
}

#[test]
fn thread_count_does_not_change_bits() {
    let a = with_spectrum(
        3000,
        300,
        &(0..40).map(|j| 0.8f64.powi(j)).collect::<Vec<_>>(),
        11,
    );
    let (ip, ix, d) = to_csr(&a);
    let run = |threads: usize| {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        pool.install(|| {
            let dense = Dense::new(a.as_ref());
            let sparse = Sparse::new(CsrRef::new(3000, 300, &ip, &ix, &d).unwrap()).unwrap();
            let p = params(10, 4, false);
            let x = randomized_svd(&Operator::new(&dense, false), &p, &NeverInterrupt).unwrap();
            let y = randomized_svd(&Operator::new(&sparse, false), &p, &NeverInterrupt).unwrap();
            (x.u, x.s, y.u, y.s)
        })
    };
    assert_eq!(run(1), run(3));
}

#[test]
fn adaptive_rank_is_the_smallest_meeting_tol() {
    // Spectrum 2^-j/2: the error of the best rank-r approximation is known exactly.
    let s: Vec<f64> = (0..60).map(|j| 0.5f64.powf(j as f64 / 2.0)).collect();
    let a = with_spectrum(300, 200, &s, 13);
    let dense = Dense::new(a.as_ref());
    let total: f64 = s.iter().map(|x| x * x).sum();
    for &tol in &[0.3, 0.1, 0.01, 1e-4] {
        let best = (1..=s.len())
            .find(|&r| (s[r..].iter().map(|x| x * x).sum::<f64>() / total).sqrt() <= tol)
            .unwrap();
        let p = AdaptiveParams {
            tol,
            block_size: 8,
            n_iter: 2,
            max_rank: usize::MAX,
            transpose: false,
            seed: 1,
        };
        let svd = adaptive_svd(&Operator::new(&dense, false), &p, &NeverInterrupt).unwrap();
        assert_eq!(svd.s.len(), best, "tol {tol}");
        let err = rel_residual(&a, &svd);
        assert!(err <= tol, "error {err} above tol {tol}");
        assert!(
            (err - svd.rel_error.unwrap()).abs() < 1e-6,
            "indicator {:?} vs {err}",
            svd.rel_error
        );
    }
}

#[test]
fn bad_parameters_are_errors() {
    let a = normal(10, 5, 1);
    let dense = Dense::new(a.as_ref());
    let op = Operator::new(&dense, false);
    assert!(randomized_svd(&op, &params(0, 1, false), &NeverInterrupt).is_err());
    assert!(randomized_svd(&op, &params(6, 1, false), &NeverInterrupt).is_err());
    let p = AdaptiveParams {
        tol: 0.0,
        block_size: 4,
        n_iter: 1,
        max_rank: 5,
        transpose: false,
        seed: 0,
    };
    assert!(adaptive_svd(&op, &p, &NeverInterrupt).is_err());
}

#[test]
fn interrupt_stops_the_computation() {
    struct Always;
    impl Interrupt for Always {
        fn check(&self) -> Result<()> {
            Err(crate::Error::Interrupted)
        }
    }
    let a = normal(30, 20, 1);
    let dense = Dense::new(a.as_ref());
    let r = randomized_svd(&Operator::new(&dense, false), &params(3, 2, false), &Always);
    assert_eq!(r.unwrap_err(), crate::Error::Interrupted);
}
