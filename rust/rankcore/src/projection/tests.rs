use super::*;
use crate::NeverInterrupt;
use faer::Mat;

fn sparse(d: usize, k: usize, density: f64, seed: u64) -> Projection {
    Projection::new(d, k, Family::Sparse { density }, seed).unwrap()
}

/// A test matrix with some exact zeros, so dense and CSR forms differ in what they store.
fn data(n: usize, d: usize) -> Mat<f64> {
    Mat::from_fn(n, d, |i, j| {
        let v = ((i * 31 + j * 17) % 23) as f64 - 11.0;
        if (i + 2 * j) % 5 == 0 {
            0.0
        } else {
            v / 7.0
        }
    })
}

/// CSR arrays of a dense matrix, sorted column indices, zeros dropped.
fn to_csr(a: &Mat<f64>) -> (Vec<i64>, Vec<i64>, Vec<f64>) {
    let (mut p, mut ix, mut v) = (vec![0i64], vec![], vec![]);
    for i in 0..a.nrows() {
        for j in 0..a.ncols() {
            if a[(i, j)] != 0.0 {
                ix.push(j as i64);
                v.push(a[(i, j)]);
            }
        }
        p.push(ix.len() as i64);
    }
    (p, ix, v)
}

fn dense_out(p: &Projection, x: MatRef<'_, f64>) -> Vec<f64> {
    let mut out = vec![f64::NAN; x.nrows() * p.n_components()];
    p.transform_dense(x, &mut out, &NeverInterrupt).unwrap();
    out
}

#[test]
fn entries_follow_the_documented_layout() {
    let (d, k, density, seed) = (37, 9, 0.3, 12345);
    let p = sparse(d, k, density, seed);
    let r = p.components_dense::<f64>();
    let rng = RandomMatrix::new(seed, STREAM_SPARSE);
    let t = (density * 2f64.powi(31)).ceil() as u64;
    let s = (1.0 / density).sqrt() / (k as f64).sqrt();
    for i in 0..k {
        for j in 0..d {
            let w = rng.u32_at(j as u64, i as u32);
            let want = if u64::from(w >> 1) >= t {
                0.0
            } else if w & 1 == 0 {
                s
            } else {
                -s
            };
            assert_eq!(r[(i, j)], want, "entry ({i}, {j})");
        }
    }
    let g = Projection::new(d, k, Family::Gaussian, seed).unwrap();
    let rg = g.components_dense::<f64>();
    let grng = RandomMatrix::new(seed, STREAM_GAUSSIAN);
    for i in 0..k {
        for j in 0..d {
            assert_eq!(rg[(i, j)], grng.normal_at(j as u64, i as u32) * (1.0 / 3.0));
        }
    }
}

/// The sign is bit 0 and the non-zero test uses bits 1..=31 only, so given a non-zero the
/// sign is exactly balanced for every density, the tiniest included (with the sign taken
/// from the low bit of a word also compared against `ceil(δ · 2^32)`, `δ = 2e-9` gave
/// `P(+) = 5/9`).
#[test]
fn signs_are_balanced_given_nonzero_at_every_density() {
    for density in [2e-9, 1e-9, 3e-9, 2f64.powi(-31), 1e-6, 1.0 / 3.0, 0.5, 1.0] {
        let t = Projection::new(4, 1, Family::Sparse { density }, 0)
            .unwrap()
            .threshold();
        assert_eq!(t, (density * 2f64.powi(31)).ceil() as u64, "{density}");
        // Non-zero words are exactly [0, 2t): count signs over all of them (small t) or
        // over their first and last 2^16 (large t), plus words just past the boundary.
        let span = 2 * t;
        let mut words: Vec<u64> = (0..span.min(1 << 17)).collect();
        words.extend(span.saturating_sub(1 << 16).max(1 << 17)..span);
        let (mut pos, mut neg) = (0u64, 0u64);
        for &w in &words {
            match decode_entry(w as u32, t) {
                1 => pos += 1,
                -1 => neg += 1,
                _ => panic!("word {w} below 2t = {span} must be non-zero ({density})"),
            }
        }
        assert_eq!(pos, neg, "sign balance at density {density}");
        for w in span..(span + 64).min(1 << 32) {
            assert_eq!(decode_entry(w as u32, t), 0, "word {w} ({density})");
        }
    }
    // Density 1: every word, the largest included, is a non-zero.
    let t = Projection::new(4, 1, Family::Sparse { density: 1.0 }, 0)
        .unwrap()
        .threshold();
    assert_eq!(decode_entry(u32::MAX, t), -1);
    assert_eq!(decode_entry(u32::MAX - 1, t), 1);
    let r = sparse(13, 6, 1.0, 9).components_csr::<f64>().unwrap();
    let s = 1.0 / 6f64.sqrt();
    assert_eq!(r.data.len(), 13 * 6);
    assert!(r.data.iter().all(|&v| v == s || v == -s));
    // The generated stream: at density 0.5, signs of the non-zeros of a 400 × 500 matrix
    // are balanced within 4 standard deviations.
    let c = sparse(500, 400, 0.5, 4).components_csr::<f64>().unwrap();
    let n = c.data.len() as f64;
    let plus = c.data.iter().filter(|&&v| v > 0.0).count() as f64;
    assert!(
        (plus - n / 2.0).abs() < 4.0 * (n / 4.0).sqrt(),
        "{plus} of {n}"
    );
}

#[test]
fn dense_product_matches_reference_in_every_layout_and_block_size() {
    let (n, d, k) = (21, 50, 7);
    let x = data(n, d);
    for family in [Family::Sparse { density: 0.25 }, Family::Gaussian] {
        let p = Projection::new(d, k, family, 7).unwrap();
        let r = p.components_dense::<f64>();
        let want = &x * r.transpose();
        let base = dense_out(&p, x.as_ref());
        for i in 0..n {
            for c in 0..k {
                let tol = 1e-13 * (1.0 + want[(i, c)].abs()) * d as f64;
                assert!(
                    (base[i * k + c] - want[(i, c)]).abs() < tol,
                    "{family:?} ({i}, {c})"
                );
            }
        }
        // A transposed (row-major) view and small feature blocks.
        let xt = x.transpose().to_owned();
        let small = p.with_feature_block(8);
        for got in [dense_out(&p, xt.transpose()), dense_out(&small, x.as_ref())] {
            if family == Family::Gaussian {
                for (a, b) in got.iter().zip(&base) {
                    assert!((a - b).abs() < 1e-12);
                }
            } else {
                assert_eq!(got, base, "sparse families must be bit-identical");
            }
        }
    }
}

#[test]
fn identity_input_gives_the_components_exactly() {
    let (d, k) = (30, 5);
    let p = sparse(d, k, 0.4, 3);
    let eye = Mat::<f32>::identity(d, d);
    let mut out = vec![0f32; d * k];
    p.transform_dense(eye.as_ref(), &mut out, &NeverInterrupt)
        .unwrap();
    let r = p.components_dense::<f32>();
    for j in 0..d {
        for i in 0..k {
            assert_eq!(out[j * k + i], r[(i, j)]);
        }
    }
}

#[test]
fn csr_input_equals_dense_input() {
    let (n, d, k) = (40, 33, 6);
    let x = data(n, d);
    let (ip, ix, v) = to_csr(&x);
    let csr = CsrRef::new(n, d, &ip, &ix, &v).unwrap();
    for fb in [0, 4, 12] {
        let mut p = sparse(d, k, 0.3, 99);
        if fb > 0 {
            p = p.with_feature_block(fb);
        }
        let want = dense_out(&p, x.as_ref());
        let mut got = vec![0.0; n * k];
        p.transform_csr(csr, &mut got, &NeverInterrupt).unwrap();
        assert_eq!(got, want, "block {fb}");
        let c = p.transform_csr_to_csr(csr, &NeverInterrupt).unwrap();
        let mut back = vec![0.0; n * k];
        for i in 0..n {
            for q in c.indptr[i] as usize..c.indptr[i + 1] as usize {
                assert!(c.data[q] != 0.0);
                back[i * k + c.indices[q] as usize] = c.data[q];
            }
        }
        assert_eq!(back, want);
    }
    // Gaussian: same values up to rounding (GEMM vs. axpy order).
    let g = Projection::new(d, k, Family::Gaussian, 5)
        .unwrap()
        .with_feature_block(8);
    let want = dense_out(&g, x.as_ref());
    let mut got = vec![0.0; n * k];
    g.transform_csr(csr, &mut got, &NeverInterrupt).unwrap();
    for (a, b) in got.iter().zip(&want) {
        assert!((a - b).abs() < 1e-12);
    }
}

#[test]
fn results_do_not_depend_on_thread_count() {
    let (n, d, k) = (300, 120, 16);
    let x = data(n, d);
    let run = |threads: usize| {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        pool.install(|| {
            [Family::Sparse { density: 0.1 }, Family::Gaussian]
                .map(|f| dense_out(&Projection::new(d, k, f, 1).unwrap(), x.as_ref()))
        })
    };
    assert_eq!(run(1), run(3));
}

#[test]
fn density_scale_and_signs() {
    let (d, k, density) = (20_000, 50, 0.05);
    let c = sparse(d, k, density, 2024).components_csr::<f64>().unwrap();
    let total = (d * k) as f64;
    let nnz = c.data.len() as f64;
    let sd = (total * density * (1.0 - density)).sqrt();
    assert!((nnz - total * density).abs() < 4.0 * sd, "nnz {nnz}");
    let s = (1.0 / density).sqrt() / (k as f64).sqrt();
    assert!(c.data.iter().all(|&v| v.abs() == s));
    let pos = c.data.iter().filter(|&&v| v > 0.0).count() as f64;
    assert!(
        (pos - nnz / 2.0).abs() < 4.0 * (nnz / 4.0).sqrt(),
        "positives {pos}"
    );
}

#[test]
fn bad_input_is_an_error() {
    for density in [0.0, -0.1, 1.5, f64::NAN] {
        assert!(Projection::new(5, 2, Family::Sparse { density }, 0).is_err());
    }
    assert!(Projection::new(0, 2, Family::Gaussian, 0).is_err());
    assert!(Projection::new(5, 0, Family::Gaussian, 0).is_err());
    let p = sparse(5, 2, 0.5, 0);
    let x = Mat::<f64>::zeros(3, 4);
    let mut out = vec![0.0; 6];
    assert!(p
        .transform_dense(x.as_ref(), &mut out, &NeverInterrupt)
        .is_err());
    let x = Mat::<f64>::zeros(3, 5);
    let mut short = vec![0.0; 5];
    assert!(p
        .transform_dense(x.as_ref(), &mut short, &NeverInterrupt)
        .is_err());
}

#[test]
fn non_finite_input_is_an_error_for_the_sparse_families() {
    // Also in a feature without non-zeros: every element is checked.
    let p = sparse(40, 3, 0.01, 1);
    for bad in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
        for (r, c) in [(0, 0), (13, 39), (5, 17)] {
            let mut x = data(14, 40);
            x[(r, c)] = bad;
            let mut out = vec![0.0; 14 * 3];
            assert!(p
                .transform_dense(x.as_ref(), &mut out, &NeverInterrupt)
                .is_err());
        }
    }
}

mod fastrp_tests {
    use super::super::fastrp::{
        fastrp, fastrp_with, inv_norm, plan, Add, Buf, FastRpParams, Isa, Variant,
    };
    use super::super::{Family, Projection, STREAM_SPARSE};
    use crate::sparse::CsrRef;
    use crate::{Float, NeverInterrupt};

    fn params(variant: Variant) -> FastRpParams {
        FastRpParams {
            variant,
            n_components: 16,
            iteration_weights: vec![0.0, 1.0, 1.0],
            normalization_strength: -0.5,
            self_influence: 0.0,
            property_dim: 0,
            density: 1.0 / 3.0,
            transition: true,
            normalize: false,
            seed: 3,
        }
    }

    /// A ring of 200 nodes with chords, and node 200 isolated.
    fn ring() -> (Vec<i64>, Vec<i64>, Vec<f64>) {
        let n = 200;
        let (mut p, mut ix, mut w) = (vec![0i64], vec![], vec![]);
        for v in 0..=n {
            if v < n {
                for u in [(v + 1) % n, (v + n - 1) % n, (v * 7) % n] {
                    ix.push(u as i64);
                    w.push(1.0 + (u % 3) as f64);
                }
            }
            p.push(ix.len() as i64);
        }
        (p, ix, w)
    }

    #[test]
    fn threads_isolated_nodes_and_bad_weights() {
        let (p, ix, w) = ring();
        let a = CsrRef::new(201, 201, &p, &ix, &w).unwrap();
        for variant in [Variant::Paper, Variant::Gds] {
            let prm = params(variant);
            let run = |threads: usize| {
                let pool = rayon::ThreadPoolBuilder::new()
                    .num_threads(threads)
                    .build()
                    .unwrap();
                let mut out = vec![0.0; 201 * 16];
                pool.install(|| fastrp(a, None, &prm, &mut out, &NeverInterrupt))
                    .unwrap();
                out
            };
            let one = run(1);
            assert_eq!(one, run(3));
            assert!(one[200 * 16..].iter().all(|&x| x == 0.0), "isolated node");
            assert!(one[..16].iter().any(|&x| x != 0.0));
        }
        let mut bad = w.clone();
        bad[5] = -1.0;
        let a = CsrRef::new(201, 201, &p, &ix, &bad).unwrap();
        let mut out = vec![0.0; 201 * 16];
        assert!(fastrp(a, None, &params(Variant::Gds), &mut out, &NeverInterrupt).is_err());
    }

    /// FastRP written plainly: `E₀` dense from the projection's components, every power in
    /// its own buffer, every contribution added to a zeroed output (the algorithm of the
    /// module docs with the same operations per entry and the same row norms).
    fn plain<T: Float>(a: CsrRef<'_, T, i64>, p: &FastRpParams) -> Vec<T> {
        let (n, k) = (a.shape().0, p.n_components);
        let gds = p.variant == Variant::Gds;
        let degree: Vec<f64> = if gds {
            (0..n).map(|v| a.row_entries(v).0.len() as f64).collect()
        } else {
            a.row_sums()
        };
        let r = Projection::new(n, k, Family::Sparse { density: p.density }, p.seed)
            .unwrap()
            .with_stream(STREAM_SPARSE)
            .components_dense::<f64>();
        let e0: Vec<T> = (0..n * k)
            .map(|i| {
                let (v, c) = (i / k, i % k);
                let d = degree[v];
                let l = if d > 0.0 {
                    d.powf(p.normalization_strength)
                } else {
                    1.0
                };
                T::from_f64(r[(c, v)] * l)
            })
            .collect();
        let mut out = vec![T::ZERO; n * k];
        let add = |out: &mut [T], rows: &[T], w: f64, norm: bool| {
            for (o, y) in out.chunks_mut(k).zip(rows.chunks(k)) {
                let g = if norm { inv_norm(y) } else { T::ONE };
                for (x, &y) in o.iter_mut().zip(y) {
                    *x += T::from_f64(w) * (g * y);
                }
            }
        };
        if p.self_influence != 0.0 {
            add(&mut out, &e0, p.self_influence, gds || p.normalize);
        }
        let mut prev = e0;
        for &alpha in &p.iteration_weights {
            let mut cur = vec![T::ZERO; n * k];
            for v in 0..n {
                let row = &mut cur[v * k..(v + 1) * k];
                let (cols, vals) = a.row_entries(v);
                for (&u, &w) in cols.iter().zip(vals) {
                    let u = u as usize;
                    for (x, &y) in row.iter_mut().zip(&prev[u * k..(u + 1) * k]) {
                        *x += w * y;
                    }
                }
                let d = degree[v];
                let post = if gds {
                    inv_norm(row)
                } else if p.transition {
                    T::from_f64(if d > 0.0 { 1.0 / d } else { 0.0 })
                } else {
                    T::ONE
                };
                row.iter_mut().for_each(|x| *x *= post);
            }
            if alpha != 0.0 {
                add(&mut out, &cur, alpha, !gds && p.normalize);
            }
            prev = cur;
        }
        out
    }

    /// `fastrp` (on an output full of NaN) equals [`plain`] bit for bit.
    fn assert_planned_equals_plain<T: Float>(a: CsrRef<'_, T, i64>, prm: &FastRpParams) {
        let mut out = vec![T::from_f64(f64::NAN); a.shape().0 * prm.n_components];
        fastrp(a, None, prm, &mut out, &NeverInterrupt).unwrap();
        let want = plain(a, prm);
        assert!(
            out.iter()
                .zip(&want)
                .all(|(x, y)| x.to_f64().to_bits() == y.to_f64().to_bits()),
            "{prm:?}"
        );
    }

    fn weights_cases() -> Vec<(f64, Vec<f64>)> {
        let mut cases = vec![];
        for w0 in [0.0, 0.7] {
            for a in [
                vec![],
                vec![0.0],
                vec![2.0],
                vec![0.0, 1.0, 1.0],
                vec![1.0, 1.0, 7.81, 45.28],
                vec![0.0, 0.0, 1.0],
                vec![0.0, 0.0, 0.0, 1.0],
                vec![1.0, 0.0, 0.0],
                vec![0.5, 0.0, 2.0, 0.0, 3.0],
                vec![0.0, 2.0, 0.0, 0.0, 1.0],
            ] {
                cases.push((w0, a));
            }
        }
        cases
    }

    /// The buffer plan, the compact `E₀` and the fused last power change no bit of the
    /// result, whatever the weights (zeros first, last, between; `w₀`), for both variants,
    /// both precisions and a row length that is not a multiple of 32.
    #[test]
    fn planned_passes_equal_the_plain_algorithm() {
        let (p, ix, w) = ring();
        let w32: Vec<f32> = w.iter().map(|&x| x as f32).collect();
        let a64 = CsrRef::new(201, 201, &p, &ix, &w).unwrap();
        let a32 = CsrRef::new(201, 201, &p, &ix, &w32).unwrap();
        for variant in [Variant::Paper, Variant::Gds] {
            for (transition, normalize) in [(true, false), (false, true)] {
                for (w0, alphas) in weights_cases() {
                    let prm = FastRpParams {
                        n_components: 40,
                        iteration_weights: alphas.clone(),
                        self_influence: w0,
                        transition,
                        normalize,
                        ..params(variant)
                    };
                    assert_planned_equals_plain(a64, &prm);
                    assert_planned_equals_plain(a32, &prm);
                }
            }
        }
    }

    /// Each step reads what the step before it wrote, never writes the place it reads or
    /// that holds the sum, and the output serves as scratch only before anything is added.
    #[test]
    fn plans_use_few_buffers_and_never_overwrite_live_rows() {
        let uses = |w0: f64, a: &[f64]| {
            let steps = plan(w0, a);
            let mut prev = None;
            let mut added = false;
            let mut carry = 0.0;
            for s in &steps {
                assert_eq!(s.carry, carry, "{w0} {a:?}");
                if carry != 0.0 {
                    assert!(s.read.is_some() && s.read != Some(Buf::Out) && s.add != Add::No);
                    added = true;
                }
                carry = 0.0;
                if s.gather {
                    assert_eq!(s.read, prev, "{w0} {a:?}");
                    prev = s.write;
                }
                assert!(s.write.is_none() || s.write != s.read);
                if s.write == Some(Buf::Out) {
                    assert!(!added && s.add == Add::No, "{w0} {a:?}");
                }
                match s.add {
                    Add::No => assert_eq!(s.alpha, 0.0),
                    Add::InPass { first } => {
                        assert_eq!(first, !added);
                        assert_ne!(s.read, Some(Buf::Out));
                        added = true;
                    }
                    Add::After => {
                        assert!(!added && s.read == Some(Buf::Out) && s.write.is_some());
                        added = true;
                    }
                    Add::Next => {
                        assert!(!added && s.read == Some(Buf::Out) && s.write.is_some());
                        carry = s.alpha;
                    }
                }
            }
            assert_eq!(carry, 0.0, "{w0} {a:?}");
            assert_eq!(added, w0 != 0.0 || a.iter().any(|&x| x != 0.0));
            [Buf::X, Buf::Y]
                .into_iter()
                .filter(|b| steps.iter().any(|s| s.write == Some(*b)))
                .count()
        };
        // GDS's default needs one scratch buffer, the paper's two, a single power none.
        assert_eq!(uses(0.0, &[0.0, 1.0, 1.0]), 1);
        assert_eq!(uses(0.0, &[1.0, 1.0, 7.81, 45.28]), 2);
        assert_eq!(uses(0.0, &[3.0, 0.0, 0.0]), 0);
        assert_eq!(uses(0.0, &[0.0, 0.0, 0.0, 1.0]), 1);
        assert!(plan(0.0, &[0.0, 0.0]).is_empty());
        for (w0, a) in weights_cases() {
            assert!(uses(w0, &a) <= 2);
        }
    }

    /// The row norm's partial sums: equal to the plain sum up to rounding, exact on rows
    /// of small integers, 1 for a zero row, any length.
    #[test]
    fn inv_norm_sums_the_squares() {
        for k in [1usize, 7, 8, 9, 40, 128, 131] {
            let row: Vec<f64> = (0..k).map(|i| ((i * 37) % 11) as f64 - 5.0).collect();
            let ss: f64 = row.iter().map(|v| v * v).sum();
            let want = if ss > 0.0 { 1.0 / ss.sqrt() } else { 1.0 };
            assert_eq!(inv_norm(&row), want, "k = {k}");
            let row32: Vec<f32> = (1..=k).map(|i| (i as f32 * 0.37).sin()).collect();
            let ss: f64 = row32.iter().map(|&v| f64::from(v) * f64::from(v)).sum();
            assert!((f64::from(inv_norm(&row32)) * ss.sqrt() - 1.0).abs() < 1e-7);
        }
        assert_eq!(inv_norm(&[0.0f32; 20]), 1.0);
    }

    /// The AVX-512, AVX2 and scalar builds (those this CPU runs) give the same bits, on a
    /// row length with a partial mask word and with features.
    #[test]
    fn every_kernel_build_gives_the_same_bits() {
        let (p, ix, w) = ring();
        let w32: Vec<f32> = w.iter().map(|&x| x as f32).collect();
        let a = CsrRef::new(201, 201, &p, &ix, &w32).unwrap();
        let feats = faer::Mat::<f32>::from_fn(201, 5, |i, j| ((i * 7 + j * 3) % 11) as f32 - 5.0);
        let isas: Vec<Isa> = [Isa::Scalar, Isa::Avx2, Isa::Avx512]
            .into_iter()
            .filter(|&i| match i {
                Isa::Scalar => true,
                Isa::Avx2 => super::super::has_avx2(),
                Isa::Avx512 => super::super::has_avx512(),
            })
            .collect();
        for variant in [Variant::Paper, Variant::Gds] {
            for (w0, alphas) in weights_cases() {
                for features in [None, Some(feats.as_ref())] {
                    let prm = FastRpParams {
                        n_components: 45,
                        iteration_weights: alphas.clone(),
                        self_influence: w0,
                        property_dim: if features.is_some() { 6 } else { 0 },
                        ..params(variant)
                    };
                    let run = |isa| {
                        let mut out = vec![f32::NAN; 201 * 45];
                        fastrp_with(a, features, &prm, &mut out, &NeverInterrupt, isa).unwrap();
                        out.iter().map(|x| x.to_bits()).collect::<Vec<_>>()
                    };
                    let scalar = run(Isa::Scalar);
                    for &isa in &isas {
                        assert_eq!(run(isa), scalar, "{isa:?} {prm:?}");
                    }
                }
            }
        }
    }
}
