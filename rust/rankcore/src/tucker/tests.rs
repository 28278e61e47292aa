use super::*;
use crate::NeverInterrupt;
use faer::Mat;

fn pseudo(shape: &[usize], seed: u64) -> Tensor<f64> {
    let n: usize = shape.iter().product();
    let data = (0..n)
        .map(|i| {
            let x = (i as u64)
                .wrapping_mul(2654435761)
                .wrapping_add(seed * 40503)
                % 1000;
            x as f64 / 500.0 - 1.0
        })
        .collect();
    Tensor::from_c_vec(shape, data).unwrap()
}

fn mat(m: usize, n: usize, seed: u64) -> Mat<f64> {
    Mat::from_fn(m, n, |i, j| {
        let x = (i as u64 * 7919 + j as u64 * 104729 + seed * 31) % 997;
        x as f64 / 498.5 - 1.0
    })
}

/// Plain reference: loops over every index.
fn naive_mode_product(t: &Tensor<f64>, m: &Mat<f64>, n: usize) -> Vec<f64> {
    let shape = &t.shape;
    let mut out_shape = shape.clone();
    out_shape[n] = m.nrows();
    let c = t.view().to_c_vec();
    let total: usize = out_shape.iter().product();
    let mut out = vec![0.0; total];
    let nd = shape.len();
    for (o, val) in out.iter_mut().enumerate() {
        let mut idx = vec![0; nd];
        let mut r = o;
        for k in (0..nd).rev() {
            idx[k] = r % out_shape[k];
            r /= out_shape[k];
        }
        let j = idx[n];
        let mut s = 0.0;
        for k in 0..shape[n] {
            idx[n] = k;
            let mut off = 0;
            for d in 0..nd {
                off = off * shape[d] + idx[d];
            }
            s += m[(j, k)] * c[off];
        }
        *val = s;
    }
    out
}

fn fortran(t: &Tensor<f64>) -> Tensor<f64> {
    let order: Vec<usize> = (0..t.shape.len()).rev().collect();
    let mut strides = vec![0isize; t.shape.len()];
    let mut acc = 1;
    for &k in order.iter().rev() {
        strides[k] = acc;
        acc *= t.shape[k] as isize;
    }
    let mut data = vec![0.0; t.data.len()];
    let c = t.view().to_c_vec();
    let nd = t.shape.len();
    for (i, v) in c.iter().enumerate() {
        let mut r = i;
        let mut off = 0isize;
        for k in (0..nd).rev() {
            off += (r % t.shape[k]) as isize * strides[k];
            r /= t.shape[k];
        }
        data[off as usize] = *v;
    }
    Tensor {
        data,
        shape: t.shape.clone(),
        strides,
    }
}

#[test]
fn mode_product_matches_loops_c_and_f() {
    for shape in [
        vec![3usize, 4],
        vec![5, 1, 6],
        vec![2, 3, 4, 5],
        vec![3, 2, 2, 3, 2],
        // GEMM path, contracted mode between others: a contiguous column group of 9 (few
        // items, chosen over the longer strided group) and of 9 with 300 items (not chosen)
        vec![20, 24, 9],
        vec![300, 20, 9],
        vec![9, 20, 3, 3],
    ] {
        let t = pseudo(&shape, 1);
        let tf = fortran(&t);
        for n in 0..shape.len() {
            let m = mat(if shape[n] > 16 { 19 } else { 3 }, shape[n], n as u64);
            let want = naive_mode_product(&t, &m, n);
            for src in [&t, &tf] {
                let y = mode_product(src.view(), m.as_ref(), n).unwrap();
                let got = y.view().to_c_vec();
                for (a, b) in got.iter().zip(&want) {
                    assert!((a - b).abs() < 1e-12, "{shape:?} mode {n}");
                }
            }
            // any output order: the same values, laid out densely in that order
            let nd = shape.len();
            let rotated: Vec<usize> = (0..nd).map(|i| (i + n) % nd).collect();
            let product_last: Vec<usize> = (0..nd).filter(|&k| k != n).chain([n]).collect();
            for order in [rotated, product_last] {
                for src in [&t, &tf] {
                    let y = mode_product_in(src.view(), m.as_ref(), n, &order, &NeverInterrupt)
                        .unwrap();
                    assert_eq!(tensor::memory_order(&y.strides, &y.shape)[..], order[..]);
                    let got = y.view().to_c_vec();
                    for (a, b) in got.iter().zip(&want) {
                        assert!((a - b).abs() < 1e-12, "{shape:?} mode {n} order {order:?}");
                    }
                }
            }
        }
    }
}

#[test]
fn products_in_an_order_check_it() {
    let t = pseudo(&[3, 4, 5], 2);
    let m = mat(2, 4, 1);
    for bad in [vec![0, 1], vec![0, 1, 1], vec![0, 1, 3]] {
        let err = mode_product_in(t.view(), m.as_ref(), 1, &bad, &NeverInterrupt);
        assert!(err.is_err(), "{bad:?}");
        let err = multi_mode_product_in(t.view(), &[(1, m.as_ref())], &bad, &NeverInterrupt);
        assert!(err.is_err(), "{bad:?}");
        assert!(t.view().permuted(&bad).is_err(), "{bad:?}");
    }
    // a chain keeps the order through every product
    let m0 = mat(6, 3, 2);
    let y = multi_mode_product_in(
        t.view(),
        &[(0, m0.as_ref()), (1, m.as_ref())],
        &[2, 0, 1],
        &NeverInterrupt,
    )
    .unwrap();
    assert_eq!(tensor::memory_order(&y.strides, &y.shape), vec![2, 0, 1]);
    let want = multi_mode_product(t.view(), &[(0, m0.as_ref()), (1, m.as_ref())]).unwrap();
    assert_eq!(y.view().to_c_vec(), want.view().to_c_vec());
    // a permuted view reads as numpy's transpose
    let p = t.view().permuted(&[2, 0, 1]).unwrap();
    assert_eq!(p.shape(), &[5, 3, 4]);
    let c = t.view().to_c_vec();
    let pc = p.to_c_vec();
    for (i, v) in pc.iter().enumerate() {
        let (a, b, k) = (i / 12, (i / 4) % 3, i % 4);
        assert_eq!(*v, c[b * 20 + k * 5 + a]);
    }
}

#[test]
fn chain_order_prefers_shrinking_first() {
    // 100x100x100 truncated to (2, 50, 90): the 2 first.
    let order = chain_order(&[100, 100, 100], &[(0, 90, 100), (1, 50, 100), (2, 2, 100)]);
    assert_eq!(order[0], 2);
}

#[test]
fn gram_matches_explicit() {
    let t = pseudo(&[4, 5, 6], 3);
    for n in 0..3 {
        let g = unfolding_gram(t.view(), n);
        // reference through mode products: G = T_(n) T_(n)^T
        let c = t.view().to_c_vec();
        let shape = [4usize, 5, 6];
        let mut want = Mat::<f64>::zeros(shape[n], shape[n]);
        for i in 0..4 {
            for j in 0..5 {
                for k in 0..6 {
                    let idx = [i, j, k];
                    for l in 0..shape[n] {
                        let mut idx2 = idx;
                        idx2[n] = l;
                        want[(idx[n], l)] +=
                            c[(i * 5 + j) * 6 + k] * c[(idx2[0] * 5 + idx2[1]) * 6 + idx2[2]];
                    }
                }
            }
        }
        assert!((&g - &want).norm_max() < 1e-12);
    }
}

fn low_rank(shape: &[usize], ranks: &[usize]) -> Tensor<f64> {
    let core = pseudo(ranks, 9);
    let fs: Vec<Mat<f64>> = shape
        .iter()
        .zip(ranks)
        .enumerate()
        .map(|(i, (&s, &r))| mat(s, r, 11 + i as u64))
        .collect();
    let modes: Vec<usize> = (0..shape.len()).collect();
    reconstruct(core.view(), &modes, &fs).unwrap()
}

fn params(modes: Vec<usize>, ranks: Vec<usize>, method: Method) -> TuckerParams<f64> {
    let k = modes.len();
    TuckerParams {
        modes,
        ranks,
        error_tol: None,
        method,
        svd: SvdMethod::Exact,
        init: Init::Svd,
        fixed: vec![false; k],
        n_iter_max: 20,
        tol: 1e-10,
        mask_repeats: 2,
        verbose: false,
    }
}

#[test]
fn exact_low_rank_is_recovered() {
    let x = low_rank(&[12, 10, 14], &[3, 2, 4]);
    for method in [Method::Hosvd, Method::StHosvd, Method::Hooi] {
        let r = tucker(
            x.view(),
            &params(vec![0, 1, 2], vec![3, 2, 4], method),
            &NeverInterrupt,
        )
        .unwrap();
        let rec = reconstruct(r.core.view(), &[0, 1, 2], &r.factors).unwrap();
        let d: f64 = rec
            .data
            .iter()
            .zip(&x.data)
            .map(|(a, b)| (a - b).powi(2))
            .sum::<f64>()
            .sqrt();
        assert!(d < 1e-10 * x.sq_norm().sqrt(), "{method:?}: {d}");
    }
}

#[test]
fn randomized_recovers_low_rank() {
    let x = low_rank(&[30, 25, 20], &[3, 3, 2]);
    let mut p = params(vec![0, 1, 2], vec![3, 3, 2], Method::StHosvd);
    p.svd = SvdMethod::Randomized {
        n_oversamples: 5,
        n_iter: 2,
        seed: 3,
    };
    let r = tucker(x.view(), &p, &NeverInterrupt).unwrap();
    let rec = reconstruct(r.core.view(), &[0, 1, 2], &r.factors).unwrap();
    let d: f64 = rec
        .data
        .iter()
        .zip(&x.data)
        .map(|(a, b)| (a - b).powi(2))
        .sum::<f64>()
        .sqrt();
    assert!(d < 1e-9 * x.sq_norm().sqrt(), "{d}");
}

#[test]
fn bad_ranks_are_errors() {
    let x = pseudo(&[3, 4], 0);
    assert!(tucker(
        x.view(),
        &params(vec![0, 1], vec![0, 2], Method::Hooi),
        &NeverInterrupt
    )
    .is_err());
    assert!(tucker(
        x.view(),
        &params(vec![0, 1], vec![4, 2], Method::Hooi),
        &NeverInterrupt
    )
    .is_err());
    assert!(tucker(
        x.view(),
        &params(vec![0, 0], vec![1, 1], Method::Hooi),
        &NeverInterrupt
    )
    .is_err());
}

/// Fails from its `after`-th check on: a Ctrl-C that lands inside a product.
struct StopAfter {
    after: usize,
    seen: std::sync::atomic::AtomicUsize,
}

impl crate::Interrupt for StopAfter {
    fn check(&self) -> crate::Result<()> {
        let n = self.seen.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if n >= self.after {
            Err(crate::Error::Interrupted)
        } else {
            Ok(())
        }
    }
}

#[test]
fn one_mode_product_stops_between_its_blocks() {
    // Mode 1 of 40×12×20: a batch of 40 GEMMs (25×12 matrix) or of fibre chunks (5×12).
    let t = pseudo(&[40, 12, 20], 3);
    for m in [mat(25, 12, 4), mat(5, 12, 5)] {
        let stop = StopAfter {
            after: 3,
            seen: 0.into(),
        };
        let res = mode_product_with(t.view(), m.as_ref(), 1, &stop);
        assert!(matches!(res, Err(crate::Error::Interrupted)));
        let full = mode_product_with(t.view(), m.as_ref(), 1, &NeverInterrupt).unwrap();
        assert_eq!(
            full.data,
            mode_product(t.view(), m.as_ref(), 1).unwrap().data
        );
    }
}

#[test]
fn all_finite_sees_every_element_of_dense_and_strided_views() {
    let t = pseudo(&[5, 7, 3], 9);
    for bad in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
        for pos in [0, 17, 104] {
            let mut c = t.clone();
            c.data[pos] = bad;
            let f = fortran(&c);
            assert!(!c.view().all_finite() && !f.view().all_finite());
            assert!(c.view().dense_slice().is_some() && f.view().dense_slice().is_some());
            // every other element along the last mode: not dense, element by element
            let strides: Vec<isize> = c.strides.iter().map(|&s| s * 2).collect();
            // SAFETY: shape [3, 4, 2] with doubled strides stays inside the 105 elements.
            let view = unsafe { TensorRef::from_raw_parts(c.data.as_ptr(), &[3, 4, 2], &strides) }
                .unwrap();
            assert!(view.dense_slice().is_none());
            let seen =
                (0..3).any(|i| (0..4).any(|j| (0..2).any(|k| 42 * i + 6 * j + 2 * k == pos)));
            assert_eq!(view.all_finite(), !seen, "{pos}");
        }
    }
    assert!(t.view().all_finite());
    // large enough to be read in parallel chunks: a bad value in the last one is found
    let mut big = pseudo(&[700, 400], 3);
    assert!(big.view().all_finite());
    let last = big.data.len() - 1;
    big.data[last] = f64::NAN;
    assert!(!big.view().all_finite());
}
