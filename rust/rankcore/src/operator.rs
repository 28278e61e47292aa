//! Matrices seen only through products: dense views, CSR matrices, their transposes and
//! implicitly column-centred versions. Randomized methods touch the data only through these
//! products, so centring costs a rank-one correction instead of a dense copy.

use crate::linalg;
use crate::sparse::{to_panels, CsrOwned, CsrRef, SpIndex, PANEL, SCATTER_BYTES};
use crate::{Float, Result};
use faer::{MatMut, MatRef};
use rayon::prelude::*;
use std::sync::{Arc, Mutex, OnceLock};

/// A shift subtracted from a matrix before taking its norm: `A - 1·sᵀ` (`Cols`, one value per
/// column) or `A - s·1ᵀ` (`Rows`).
#[derive(Clone, Copy)]
pub enum Shift<'s, T> {
    None,
    Cols(&'s [T]),
    Rows(&'s [T]),
}

/// A linear operator known through its products.
pub trait LinOp<T: Float>: Sync {
    fn shape(&self) -> (usize, usize);
    /// `out = A·x`.
    fn mul(&self, x: MatRef<'_, T>, out: MatMut<'_, T>);
    /// `out = Aᵀ·y`.
    fn mul_t(&self, y: MatRef<'_, T>, out: MatMut<'_, T>);
    /// `‖A - shift‖²_F`, accumulated in f64 in a fixed order.
    fn sq_norm(&self, shift: Shift<'_, T>) -> f64;
    /// Column sums (`rows == false`) or row sums, accumulated in f64 in a fixed order.
    fn sums(&self, rows: bool) -> Vec<f64>;
}

/// A dense matrix with any strides (C or Fortran order, sliced, read-only: all borrowed).
pub struct Dense<'a, T> {
    a: MatRef<'a, T>,
}

impl<'a, T: Float> Dense<'a, T> {
    pub fn new(a: MatRef<'a, T>) -> Self {
        Self { a }
    }
}

impl<T: Float> LinOp<T> for Dense<'_, T> {
    fn shape(&self) -> (usize, usize) {
        self.a.shape()
    }
    fn mul(&self, x: MatRef<'_, T>, out: MatMut<'_, T>) {
        linalg::matmul(out, self.a, x);
    }
    fn mul_t(&self, y: MatRef<'_, T>, out: MatMut<'_, T>) {
        linalg::matmul(out, self.a.transpose(), y);
    }
    fn sq_norm(&self, shift: Shift<'_, T>) -> f64 {
        let a = self.a;
        let cols: Vec<f64> = (0..a.ncols())
            .into_par_iter()
            .map(|j| {
                let col = a.col(j).iter().enumerate();
                match shift {
                    Shift::None => col.map(|(_, &x)| x.to_f64().powi(2)).sum::<f64>(),
                    Shift::Cols(s) => col
                        .map(|(_, &x)| (x.to_f64() - s[j].to_f64()).powi(2))
                        .sum(),
                    Shift::Rows(s) => col
                        .map(|(i, &x)| (x.to_f64() - s[i].to_f64()).powi(2))
                        .sum(),
                }
            })
            .collect();
        cols.iter().sum()
    }
    fn sums(&self, rows: bool) -> Vec<f64> {
        let a = if rows { self.a.transpose() } else { self.a };
        (0..a.ncols())
            .into_par_iter()
            .map(|j| a.col(j).iter().map(|x| x.to_f64()).sum())
            .collect()
    }
}

/// `(Aᵀ, A in canonical form if A had duplicates)`, built on first use.
type Transposed<T, I> = (CsrOwned<T, I>, Option<CsrOwned<T, I>>);

/// A CSR matrix seen through its products. `A·X` gathers rows of `X`; `Aᵀ·Y` scatters the
/// rows of `A` when its output fits in cache ([`SCATTER_BYTES`]) and otherwise gathers over
/// an explicit transpose. The transpose (with duplicate entries summed) is built on first
/// use, which is also when norms and column sums need it; input with duplicate entries is
/// then also kept in canonical form (norms need each entry once).
pub struct Sparse<'a, T, I> {
    a: CsrRef<'a, T, I>,
    transposed: OnceLock<Transposed<T, I>>,
    /// The dense operand copied into panels ([`to_panels`]), reused from product to product.
    scratch: Mutex<Vec<T>>,
    /// The scatter's partial outputs, reused likewise.
    partials: Mutex<Vec<T>>,
}

impl<'a, T: Float, I: SpIndex> Sparse<'a, T, I> {
    pub fn new(a: CsrRef<'a, T, I>) -> Result<Self> {
        a.check_transposable()?;
        Ok(Self {
            a,
            transposed: OnceLock::new(),
            scratch: Mutex::new(Vec::new()),
            partials: Mutex::new(Vec::new()),
        })
    }

    fn transposed(&self) -> &Transposed<T, I> {
        self.transposed.get_or_init(|| {
            let (at, had_duplicates) = self.a.transpose().expect("checked in new");
            let canonical =
                had_duplicates.then(|| at.as_ref().transpose().expect("checked in new").0);
            (at, canonical)
        })
    }

    fn at(&self) -> CsrRef<'_, T, I> {
        self.transposed().0.as_ref()
    }

    /// `A` with each entry once.
    fn canonical(&self) -> CsrRef<'_, T, I> {
        self.transposed().1.as_ref().map_or(self.a, |c| c.as_ref())
    }
}

impl<T: Float, I: SpIndex> LinOp<T> for Sparse<'_, T, I> {
    fn shape(&self) -> (usize, usize) {
        self.a.shape()
    }
    fn mul(&self, x: MatRef<'_, T>, out: MatMut<'_, T>) {
        let mut panels = self.scratch.lock().unwrap_or_else(|e| e.into_inner());
        to_panels(x, &mut panels);
        self.a.mul_dense_panels(&panels, out);
    }
    fn mul_t(&self, y: MatRef<'_, T>, out: MatMut<'_, T>) {
        let stride = y.ncols().div_ceil(PANEL) * PANEL;
        if self.a.shape().1 * stride * std::mem::size_of::<T>() <= SCATTER_BYTES {
            let mut partials = self.partials.lock().unwrap_or_else(|e| e.into_inner());
            self.a.mul_t_dense(y, &mut partials, out);
        } else {
            let mut panels = self.scratch.lock().unwrap_or_else(|e| e.into_inner());
            to_panels(y, &mut panels);
            self.at().mul_dense_panels(&panels, out);
        }
    }
    fn sq_norm(&self, shift: Shift<'_, T>) -> f64 {
        match shift {
            Shift::None => self.at().shifted_row_sq_norms(None),
            Shift::Rows(s) => self.canonical().shifted_row_sq_norms(Some(s)),
            Shift::Cols(s) => self.at().shifted_row_sq_norms(Some(s)),
        }
    }
    fn sums(&self, rows: bool) -> Vec<f64> {
        if rows {
            self.a.row_sums()
        } else {
            self.at().row_sums()
        }
    }
}

/// Column means of the logical matrix, subtracted implicitly. `of_inner_rows` says whether,
/// seen from the inner operator, the means are per row (the logical matrix is its transpose).
struct Centring<T> {
    mean: Vec<T>,
    of_inner_rows: bool,
}

/// What the algorithms work on: an inner operator, possibly transposed, possibly with its
/// (logical) column means removed. Cloning is cheap.
#[derive(Clone)]
pub struct Operator<'a, T: Float> {
    inner: &'a dyn LinOp<T>,
    transposed: bool,
    centring: Option<Arc<Centring<T>>>,
}

impl<'a, T: Float> Operator<'a, T> {
    /// `inner` itself, or its transpose (how a CSC matrix is passed: the CSR of its transpose).
    pub fn new(inner: &'a dyn LinOp<T>, transposed: bool) -> Self {
        Self {
            inner,
            transposed,
            centring: None,
        }
    }

    /// The same matrix with its column means subtracted (`A - 1·μᵀ`); also returns `μ`.
    pub fn centred(self) -> (Self, Vec<T>) {
        let (m, _) = self.shape();
        // Sums in f64: a float32 running sum over 10⁶ rows would be off by far more than
        // the spread of the data around its mean.
        let sums = self.inner.sums(self.transposed);
        let mean: Vec<T> = sums.iter().map(|&s| T::from_f64(s / m as f64)).collect();
        let centring = Centring {
            mean: mean.clone(),
            of_inner_rows: self.transposed,
        };
        (
            Self {
                centring: Some(Arc::new(centring)),
                ..self
            },
            mean,
        )
    }

    /// The transpose, sharing the same data.
    pub fn t(&self) -> Self {
        Self {
            transposed: !self.transposed,
            ..self.clone()
        }
    }

    pub fn shape(&self) -> (usize, usize) {
        let (p, q) = self.inner.shape();
        if self.transposed {
            (q, p)
        } else {
            (p, q)
        }
    }

    pub fn mul(&self, x: MatRef<'_, T>, out: MatMut<'_, T>) {
        self.apply(false, x, out)
    }

    pub fn mul_t(&self, y: MatRef<'_, T>, out: MatMut<'_, T>) {
        self.apply(true, y, out)
    }

    /// `‖A‖²_F` of the logical (centred) matrix, in f64.
    pub fn sq_norm(&self) -> f64 {
        match &self.centring {
            None => self.inner.sq_norm(Shift::None),
            Some(c) if c.of_inner_rows => self.inner.sq_norm(Shift::Rows(&c.mean)),
            Some(c) => self.inner.sq_norm(Shift::Cols(&c.mean)),
        }
    }

    fn apply(&self, trans: bool, x: MatRef<'_, T>, mut out: MatMut<'_, T>) {
        // Seen from the inner operator C = inner - a·bᵀ, with (a, b) = (1, μ) for column
        // centring and (μ, 1) for row centring: C·x = inner·x - a(bᵀx), Cᵀ·x = innerᵀ·x - b(aᵀx).
        let along_inner_t = self.transposed ^ trans;
        if along_inner_t {
            self.inner.mul_t(x, out.as_mut());
        } else {
            self.inner.mul(x, out.as_mut());
        }
        let Some(c) = &self.centring else { return };
        // `mean_on_output`: the mean vector multiplies the output side (a for C·x, b for Cᵀ·x).
        let mean_on_output = c.of_inner_rows != along_inner_t;
        for col in 0..x.ncols() {
            let xc = x.col(col);
            let d = T::from_f64(if mean_on_output {
                xc.iter().map(|v| v.to_f64()).sum::<f64>()
            } else {
                xc.iter()
                    .zip(&c.mean)
                    .map(|(&v, &mu)| v.to_f64() * mu.to_f64())
                    .sum::<f64>()
            });
            let oc = out.as_mut().col_mut(col);
            for (i, o) in oc.iter_mut().enumerate() {
                *o -= if mean_on_output { c.mean[i] * d } else { d };
            }
        }
    }
}
